"""Checks that keep every run inside its log folder, done before anything touches storage."""

from __future__ import annotations

import os
import re
import shutil
import stat

from runlog_store import _core
from runlog_store.exceptions import InvalidNameError, InvalidRunIdError

MAX_RUN_ID_BYTES = 200
# Control characters and the path separators of either system.
_FORBIDDEN = r"\x00-\x1f\x7f/\\"
_FORBIDDEN_IN_RUN_ID = re.compile(f"[{_FORBIDDEN}]")
# The ASCII run ids the checks below accept, in one match: a first character that is neither
# a dot nor forbidden, then up to the size limit that are not forbidden (one byte each).
_PLAIN_RUN_ID = re.compile(f"[^.{_FORBIDDEN}][^{_FORBIDDEN}]{{0,{MAX_RUN_ID_BYTES - 1}}}")


def validate_run_id(run_id: object) -> str:
    """Return ``run_id`` if it can name a file or folder safely, else raise InvalidRunIdError.

    The rules are those of docs/format.md: non-empty, at most 200 UTF-8 bytes, no leading dot
    (so neither ``.`` nor ``..``), no ``/``, ``\\``, NUL or other control characters.
    """
    if isinstance(run_id, str) and is_plain_run_id(run_id):
        return run_id
    return _checked_run_id(run_id)


def is_plain_run_id(name: str) -> bool:
    """Whether ``name`` is an ASCII run id the rules accept, in one match and without building
    an error: the common case, which an index build asks of every name of a log folder (100,000
    in a tenth of the time the rules one by one take). False for any name that is not ASCII."""
    return name.isascii() and _PLAIN_RUN_ID.fullmatch(name) is not None


def _checked_run_id(run_id: object) -> str:
    """``validate_run_id`` by each rule in turn, the error saying which one ``run_id`` breaks."""
    if not isinstance(run_id, str):
        raise InvalidRunIdError(
            repr(run_id), f"a run id must be a string, not {type(run_id).__name__}"
        )
    if not run_id:
        raise InvalidRunIdError(run_id, "a run id must not be empty")
    try:
        size = len(run_id.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidRunIdError(
            run_id, "a run id must be valid unicode (no lone surrogates)"
        ) from None
    if size > MAX_RUN_ID_BYTES:
        raise InvalidRunIdError(
            run_id, f"a run id must be at most {MAX_RUN_ID_BYTES} bytes, not {size}"
        )
    if run_id.startswith("."):
        raise InvalidRunIdError(run_id, "a run id must not start with '.'")
    forbidden = _FORBIDDEN_IN_RUN_ID.search(run_id)
    if forbidden is not None:
        char = forbidden.group()
        if char in "/\\":
            raise InvalidRunIdError(run_id, f"a run id must not contain {char!r}")
        raise InvalidRunIdError(run_id, f"a run id must not contain the control character {char!r}")
    return run_id


def validate_internal_name(name: object, *, run_id: str = "") -> str:
    """Return ``name`` if it can be stored; the chunk name encoding makes any string safe."""
    if not isinstance(name, str):
        raise InvalidNameError(name, f"must be a string, not {type(name).__name__}", run_id=run_id)
    if not name:
        raise InvalidNameError(name, "must not be empty", run_id=run_id)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidNameError(
            name, "must be valid unicode (no lone surrogates)", run_id=run_id
        ) from None
    return name


def ensure_folder(folder: str, *, fsync: bool = True, run_id: str = "") -> None:
    """Create a folder and any missing parents, durably with ``fsync``: the parent of every
    folder created is fsynced, so the folder's name survives a power cut (a write acknowledged
    inside a folder whose name was lost would be lost with it). A StorageError names it."""
    if os.path.isdir(folder):
        return  # the common case, without a system call per parent
    _core.ensure_dir(folder, fsync=fsync, run_id=run_id)


DELETING_PREFIX = ".deleting-"


def remove_folder_atomically(folder: str, *, run_id: str = "") -> None:
    """Remove a folder and everything in it so that readers see all of it or none of it: it is
    first renamed, in one atomic step, to a hidden name beside it (which listings skip), then
    removed. FileNotFoundError when it is not there (another deleter got there first).

    Anything but a folder in its place (a symbolic link to someone else's folder, a FIFO,
    which removing as a folder would open and wait on forever) is removed itself, never what it
    points to."""
    parent, name = os.path.split(os.path.normpath(folder))
    doomed = os.path.join(parent, f"{DELETING_PREFIX}{name}-{os.getpid()}")
    os.rename(folder, doomed)
    if not stat.S_ISDIR(os.lstat(doomed).st_mode):
        os.unlink(doomed)
        return
    shutil.rmtree(doomed)
