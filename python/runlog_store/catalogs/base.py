"""The catalog API of runnable (``BaseCatalog``): files a step puts or gets, with content hashes.

A catalog keeps a copy of each file a step ``put`` under the run's folder, and copies files back
for a step that ``get``s them; each call returns ``DataCatalog`` entries (name, data_hash, paths,
stage) for the step's run log. Outside a runnable run, pass ``run_id=`` to each call.

``put`` and ``get`` are written once here, over a few primitives each catalog supplies
(``location``, ``_store_files``, ``_stored_matches``, ``_fetch_files``; see ``BaseCatalog``).
Long transfers report progress to the ``callback=`` they are given (``runlog_store.callbacks``);
nothing here draws.

What more than one catalog needs is here too, so that no catalog module imports another: the
settings of a catalog in a folder (``CatalogFolder``), globs over object names
(``glob_regex``), transfers on threads (``run_in_threads``, ``batches_in_threads``) and the
first failure of a batch (``raise_first_failure``).

What a catalog keeps is read as what it is, never through a link: listings of stored files
(``folder_files``) neither follow nor hand out symbolic links, reads refuse a path that passes
through one (``refuse_links``), and the hash cache is never kept through one
(``usable_hash_cache``). Temp files get names that fit wherever the final name fits
(``temp_beside``).
"""

from __future__ import annotations

import os
import re
import stat
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from runlog_store import _core
from runlog_store._paths import ensure_folder, validate_run_id
from runlog_store.callbacks import NO_PROGRESS, Callback, in_batches
from runlog_store.exceptions import CatalogError, NoMatchingFilesError, RunLogStoreError
from runlog_store.hashing import HashAlgorithm, format_data_hash
from runlog_store.models import DataCatalog

# runnable keeps each task's captured output in the catalog under this suffix; a get never
# hands them back and a retry's sync leaves them behind (they belong to the run that ran).
EXECUTION_LOG_SUFFIX = ".execution.log"
# The hash cache of a catalog in a folder, at the folder's top; the Rust core locks it through
# a file of the same name with this suffix.
HASH_CACHE_FILE = ".runlog-hash-cache"
HASH_CACHE_LOCK_SUFFIX = ".lock"
# The longest file name, in bytes, of the file systems a catalog lives on (Linux's NAME_MAX).
NAME_MAX_BYTES = 255
# How many hex digits of a long name's BLAKE3 stand for it in its temp file's name (the Rust
# core's rule, rust/copier.rs).
LONG_NAME_STEM_HEX = 32
# Transfers wait on the network, not on a core: threads overlap the waits.
TRANSFER_THREADS = 8

T = TypeVar("T")
R = TypeVar("R")


class StoredFile(BaseModel):
    """A file in a run's catalog that a ``get`` matched: its place relative to the run's data
    folder, its size, and where the catalog keeps it (a path or an object key)."""

    relative: str
    size: int
    source: str


class BaseCatalog(ABC, BaseModel):
    """Base of every catalog; its pydantic fields are its YAML config keys.

    ``put`` and ``get`` are written here once. A catalog supplies:

    - ``location()``: where it keeps files (``catalog_handler_location`` of its entries);
    - ``_store_files(run_id, sources, relatives, sizes, callback)``: copy files into the run's
      catalog, returning their hex digests (of the bytes stored);
    - ``_stored_matches(run_id, pattern)``: the run's stored files a ``get`` pattern matches;
    - ``_fetch_files(run_id, files, callback)``: copy those into the compute data folder,
      returning their hex digests (of the bytes written);
    - ``sync_between_runs``, and the run-level operations it supports (``run_files``...).

    Hashing without a copy (``store_copy=False``) goes through the Rust core in parallel, with
    the hash cache ``_hash_cache()`` names (none by default).
    """

    service_name: str = ""
    service_type: str = "catalog"
    compute_data_folder: str = Field(default=".", min_length=1)
    hash_algorithm: HashAlgorithm = "blake3"

    model_config = ConfigDict(extra="forbid")

    # --- what a catalog supplies --------------------------------------------------------------

    @abstractmethod
    def location(self) -> str:
        """Where the catalog keeps its files, for summaries and entries (never secrets)."""

    @abstractmethod
    def _store_files(
        self,
        run_id: str,
        sources: Sequence[Path],
        relatives: Sequence[Path],
        sizes: Sequence[int],
        callback: Callback,
    ) -> list[str]:
        """Copy ``sources`` into the run's catalog at ``relatives``; their hex digests."""

    @abstractmethod
    def _stored_matches(self, run_id: str, pattern: str) -> list[StoredFile]:
        """The run's stored files (execution logs left out) that the glob ``pattern`` matches,
        as ``Path.glob`` matches them; empty when none does."""

    @abstractmethod
    def _fetch_files(
        self, run_id: str, files: Sequence[StoredFile], callback: Callback
    ) -> list[str]:
        """Copy ``files`` into the compute data folder at their relative paths; hex digests."""

    @abstractmethod
    def sync_between_runs(self, previous_run_id: str, run_id: str) -> None:
        """Copy every catalog file of a previous run into this run's catalog (a retry)."""

    def _hash_cache(self) -> str | None:
        """A hash cache file for hashing compute-folder files, or None."""
        return None

    def _run_location(self, run_id: str) -> str:
        """Where a run's files are, for messages."""
        return f"{self.location()}/{run_id}"

    # --- the API, written once ----------------------------------------------------------------

    def get_summary(self) -> dict[str, Any]:
        return {
            "Type": self.service_name,
            "Location": self.location(),
            "compute_data_folder": self.compute_data_folder,
            "hash_algorithm": self.hash_algorithm,
        }

    def put(
        self,
        name: str,
        allow_file_not_found_exc: bool = False,
        store_copy: bool = True,
        *,
        run_id: str | None = None,
        callback: Callback = NO_PROGRESS,
    ) -> list[DataCatalog]:
        """Hash (and, with ``store_copy``, copy into the catalog) the compute folder's files
        matching the glob ``name``; their entries for the step's run log."""
        run_id = self._run_id(run_id)
        sources, relatives, sizes = self._put_sources(name, allow_file_not_found_exc, run_id)
        if not sources:
            return []
        if store_copy:
            digests = self._store_files(run_id, sources, relatives, sizes, callback)
        else:
            cache = self._hash_cache()
            results = in_batches(
                f"hash {name}",
                [str(path) for path in sources],
                sizes,
                lambda batch: _core.hash_files(list(batch), self.hash_algorithm, cache=cache),
                callback,
            )
            digests = digests_or_first_failure(results)
        return self._entries(
            "put", [f"{run_id}/{rel.as_posix()}" for rel in relatives], relatives, digests
        )

    def get(
        self, name: str, *, run_id: str | None = None, callback: Callback = NO_PROGRESS
    ) -> list[DataCatalog]:
        """Copy the run's catalog files matching the glob ``name`` into the compute folder."""
        run_id = self._run_id(run_id)
        matches = self._stored_matches(run_id, name)
        if not matches:
            where = self._run_location(run_id)
            raise NoMatchingFilesError(
                f"no file matches {name!r} in the catalog of run {run_id!r} ({where})",
                path=where,
                run_id=run_id,
            )
        digests = self._fetch_files(run_id, matches, callback)
        relatives = [Path(found.relative) for found in matches]
        return self._entries("get", [rel.as_posix() for rel in relatives], relatives, digests)

    def _entries(
        self,
        stage: Literal["put", "get"],
        catalog_paths: Sequence[str],
        relatives: Sequence[Path],
        digests: Sequence[str],
    ) -> list[DataCatalog]:
        location = self.location()
        return [
            DataCatalog(
                name=rel.as_posix(),
                data_hash=format_data_hash(self.hash_algorithm, digest),
                catalog_relative_path=catalog_path,
                catalog_handler_location=location,
                stage=stage,
            )
            for rel, catalog_path, digest in zip(relatives, catalog_paths, digests, strict=True)
        ]

    # --- a run's catalog as a whole: what copying and pruning runs need --------------------

    def run_files(self, run_id: str) -> dict[str, int]:
        """Every file of a run's catalog (its execution logs too), as POSIX paths relative to
        the run's folder, with their sizes; empty when the run has no catalog here."""
        raise CatalogError(f"the {self.service_name} catalog cannot list the files of a run")

    def download_run(self, run_id: str, folder: Path, callback: Callback = NO_PROGRESS) -> int:
        """Copy every file of a run's catalog under ``folder`` (same relative paths); the
        number of bytes copied."""
        raise CatalogError(f"the {self.service_name} catalog cannot export the files of a run")

    def upload_run(self, run_id: str, folder: Path, callback: Callback = NO_PROGRESS) -> int:
        """Copy every file under ``folder`` into a run's catalog (same relative paths); the
        number of bytes copied."""
        raise CatalogError(f"the {self.service_name} catalog cannot import the files of a run")

    def delete_run(self, run_id: str) -> int:
        """Remove a run's catalog; the number of files removed (0 when it had none)."""
        raise CatalogError(f"the {self.service_name} catalog cannot delete the files of a run")

    def local_run_folder(self, run_id: str) -> Path | None:
        """The folder holding a run's catalog when it is on this machine's file system, so it
        can be read in place instead of downloaded; None for remote catalogs."""
        return None

    def _put_sources(
        self, name: str, allow_file_not_found_exc: bool, run_id: str
    ) -> tuple[list[Path], list[Path], list[int]]:
        """The files a put of ``name`` takes: (paths, paths relative to the compute folder,
        sizes); empty when nothing matches and that is allowed."""
        source_root = Path(self.compute_data_folder)
        if not source_root.is_dir():
            raise CatalogError(
                f"compute data folder {source_root} does not exist (create it before a put)",
                path=str(source_root),
                run_id=run_id,
            )
        sized = glob_file_sizes(source_root, name, run_id)
        matches = [path for path, _ in sized]
        if not matches:
            if allow_file_not_found_exc:
                return [], [], []
            raise NoMatchingFilesError(
                f"no file matches {name!r} in {source_root}", path=str(source_root), run_id=run_id
            )
        relatives = [relative_inside(path, source_root, name) for path in matches]
        return matches, relatives, [size for _, size in sized]

    def _run_id(self, run_id: str | None) -> str:
        """The run id given, else the one of the runnable run this is called in."""
        if run_id is None:
            run_id = _runnable_run_id()
        if run_id is None:
            raise CatalogError(
                f"{self.service_name} catalog: no run id; pass run_id= (outside a runnable run)"
            )
        return validate_run_id(run_id)


def _runnable_run_id() -> str | None:
    try:
        from runnable import context  # type: ignore[import-untyped]
    except ImportError:
        return None
    current = context.get_run_context()
    run_id = getattr(current, "run_id", None)
    return run_id if isinstance(run_id, str) and run_id else None


class CatalogFolder(BaseModel):
    """The settings of a catalog kept in a local or shared folder, and the hash cache at its
    top; listed before ``BaseCatalog`` among a catalog's bases, so that its ``location`` and
    ``_hash_cache`` are the catalog's."""

    catalog_location: str = Field(default=".catalog", min_length=1)
    fsync: bool = True

    def location(self) -> str:
        return self.catalog_location

    def _hash_cache(self) -> str | None:
        """The hash cache file (the catalog folder is made if it is not there yet), or None
        when what is at its place is a link or not a file: see ``usable_hash_cache``."""
        ensure_folder(self.catalog_location, fsync=self.fsync)
        return usable_hash_cache(os.path.join(self.catalog_location, HASH_CACHE_FILE))


def usable_hash_cache(path: str) -> str | None:
    """``path`` when a hash cache may be kept there, else None: a put then hashes without a
    cache (it reads every file, as a first put does) and works all the same.

    A symbolic link (or anything but a regular file) at the cache's place or at its lock's is
    not the catalog's: whoever can write the catalog folder put it there, and reading,
    appending or creating through it would read or grow a file elsewhere. It is left as it is,
    never followed; removing it gives the catalog its cache back."""
    for candidate in (path, path + HASH_CACHE_LOCK_SUFFIX):
        try:
            found = os.lstat(candidate)
        except FileNotFoundError:
            continue
        except OSError:
            return None
        if not stat.S_ISREG(found.st_mode):
            return None
    return path


def raise_first_failure(results: Sequence[object]) -> None:
    """Raise the first exception among a batch's results (returned, so every file was tried),
    its message saying how many more failed."""
    failures = [r for r in results if isinstance(r, Exception)]
    if failures:
        first = failures[0]
        if len(failures) > 1 and isinstance(first, RunLogStoreError):
            first.message = f"{first.message} (and {len(failures) - 1} more files failed)"
            first.args = (first.message,)
        raise first


def digests_or_first_failure(results: Sequence[str | Exception]) -> list[str]:
    """The digests, or the first failure (after every file was tried), saying how many failed."""
    raise_first_failure(results)
    return [r for r in results if isinstance(r, str)]


def run_in_threads(tasks: Sequence[Callable[[], R]]) -> list[R]:
    """Run transfer tasks on threads (they wait on the network), keeping their order; the
    first failure is raised after every task has finished."""
    if not tasks:
        return []
    with ThreadPoolExecutor(max_workers=min(TRANSFER_THREADS, len(tasks))) as pool:
        futures = [pool.submit(task) for task in tasks]
        results: list[R] = []
        failure: BaseException | None = None
        for future in futures:
            try:
                results.append(future.result())
            except BaseException as exc:  # re-raised below, after the rest
                failure = failure or exc
    if failure is not None:
        raise failure
    return results


def batches_in_threads(
    description: str,
    items: Sequence[T],
    sizes: Sequence[int],
    task: Callable[[T], R],
    callback: Callback,
) -> list[R]:
    """``task`` of every item, on threads, batch after batch, reporting the bytes done to
    ``callback`` (``sizes`` are the items')."""
    return in_batches(
        description,
        items,
        sizes,
        lambda batch: run_in_threads([partial(task, item) for item in batch]),
        callback,
    )


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A glob as ``Path.glob`` reads it, for names that are not files (object keys, manifest
    paths): ``*`` and ``?`` stay within one path part, ``**/`` spans any number of parts
    (none included)."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:[^/]+/)*")
            i += 3
        elif pattern.startswith("**", i) and i + 2 == len(pattern):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(pattern[i]))
                i += 1
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def file_size(path: str | os.PathLike[str]) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def data_prefix(compute_data_folder: str) -> Path:
    """The compute folder's place inside a run's catalog folder, as runnable joins it on; an
    absolute or escaping folder would land outside the catalog, so only an inward one is kept
    (``.`` and those give no prefix)."""
    prefix = Path(os.path.normpath(compute_data_folder))
    if prefix.is_absolute() or prefix.parts[:1] == ("..",) or str(prefix) == ".":
        return Path()
    return prefix


def folder_files(
    root: Path, *, links: Literal["skip", "refuse"] = "skip", run_id: str = ""
) -> dict[str, int]:
    """Regular files under ``root`` (relative POSIX path -> size), temp files of writes in
    flight left out; empty when ``root`` does not exist.

    No symbolic link is followed, ``root`` included: a link (to a file or a folder, inside the
    folder or out of it) is no file of a catalog. ``links="skip"`` leaves links out (a listing
    that only counts); ``links="refuse"`` makes the first one a CatalogError naming it (a read
    that would copy what it points to)."""
    found: dict[str, int] = {}
    if root.is_symlink():
        if links == "refuse":
            raise _linked_error(root, run_id)
        return found
    if not root.is_dir():
        return found
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except FileNotFoundError:
            continue
        for entry in entries:
            path = folder / entry.name
            if entry.is_symlink():
                if links == "refuse":
                    raise _linked_error(path, run_id)
            elif entry.is_dir(follow_symlinks=False):
                pending.append(path)
            elif entry.is_file(follow_symlinks=False) and not _core.is_temp_name(
                require_recordable_name(path, run_id).name
            ):
                size = entry.stat(follow_symlinks=False).st_size
                found[path.relative_to(root).as_posix()] = size
    # In the order of Path objects, part by part ("a/b" before "a.txt"), as glob results are.
    return dict(sorted(found.items(), key=lambda item: item[0].split("/")))


def refuse_links(base: Path, path: Path, run_id: str = "") -> None:
    """A CatalogError naming the first part of ``path`` below ``base`` that is a symbolic link
    (``path`` itself included): a catalog's stored files are never read through one. ``base``
    is the catalog's configured place, links and all."""
    current = base
    for part in path.relative_to(base).parts:
        current = current / part
        if current.is_symlink():
            raise _linked_error(current, run_id)


def require_recordable_name(path: Path, run_id: str) -> Path:
    """``path``, if a run log can record its name: JSON holds Unicode text, so a file whose name
    is not UTF-8 (undecodable bytes, which Python keeps as surrogates) is a CatalogError naming
    it with those bytes written out, instead of an encoding error deep in a copy or a dump."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise CatalogError(
            f"{shown} has a name that is not UTF-8: a run log cannot record it (rename the file)",
            path=shown,
            run_id=run_id,
        ) from None
    return path


def _linked_error(path: Path, run_id: str) -> CatalogError:
    return CatalogError(
        f"{path} is a symbolic link in the catalog: a catalog's files are never read through "
        "one (remove it, or put the file it points to into the catalog)",
        path=str(path),
        run_id=run_id,
    )


def glob_files(root: Path, pattern: str, run_id: str) -> list[Path]:
    """Every match but folders (as runnable does); see ``glob_file_sizes``."""
    return [path for path, _ in glob_file_sizes(root, pattern, run_id)]


def _stat_size(path: Path) -> int | None:
    """The size of what is at ``path`` (following links), None for a folder; 0 when it cannot
    be stat'ed (a broken link: its copy then fails naming it)."""
    try:
        found = os.stat(path)
    except OSError:
        return 0
    return None if stat.S_ISDIR(found.st_mode) else found.st_size


def glob_file_sizes(root: Path, pattern: str, run_id: str) -> list[tuple[Path, int]]:
    """Every match but folders (as runnable does), with its size from the one ``stat`` that
    also tells a folder apart. A FIFO, socket or broken link is kept, so its copy fails with
    an error naming it instead of being skipped without a word. A pattern the file system
    cannot look up (a part longer than a file name can be) is a CatalogError naming it."""
    try:
        sized = [(path, _stat_size(path)) for path in root.glob(pattern)]
        found = [
            (require_recordable_name(path, run_id), size)
            for path, size in sized
            if size is not None
        ]
        # Sorted by parts: the same order as comparing Path objects, without their slow __lt__.
        return sorted(found, key=lambda item: _parts(item[0]))
    except (ValueError, NotImplementedError) as exc:
        raise CatalogError(
            f"{pattern!r} is not a usable glob pattern: {exc}", path=str(root), run_id=run_id
        ) from exc
    except OSError as exc:
        longest = max((len(os.fsencode(part)) for part in pattern.split("/")), default=0)
        why = (
            f"a part of it is {longest} bytes, longer than a file name can be "
            f"({NAME_MAX_BYTES} bytes)"
            if longest > NAME_MAX_BYTES
            else exc.strerror or str(exc)
        )
        raise CatalogError(
            f"cannot match {pattern!r} in {root}: {why}", path=str(root), run_id=run_id
        ) from exc


def temp_beside(target: Path, *, short: bool = False) -> Path:
    """A fresh temp file beside ``target``, in the Rust writers' pattern (listings skip it,
    cleaners recognise it), whose name fits wherever ``target``'s does: a name too long to
    take the pattern's additions is stood for by a fixed-length stem of its BLAKE3, as the
    core's own copies do. ``short`` takes that stem whatever the name, for a temp file that a
    writer of object storage downloads wraps in a temp name of its own."""
    if not short and writer_temp_fits(target):
        return Path(_core.temp_path(target))
    hasher = _core.Hasher("blake3")
    hasher.update(os.fsencode(target.name))
    return Path(_core.temp_path(target.with_name(hasher.hexdigest()[:LONG_NAME_STEM_HEX])))


def writer_temp_fits(target: Path) -> bool:
    """Whether the temp name the Rust writers give a write of ``target`` fits in a file name."""
    return len(os.fsencode(Path(_core.temp_path(target)).name)) <= NAME_MAX_BYTES


def _parts(path: Path) -> tuple[str, ...]:
    return path.parts


def relative_inside(path: Path, root: Path, pattern: str) -> Path:
    """``path`` relative to ``root``; a CatalogError if the glob reached outside it."""
    try:
        relative = path.relative_to(root)
    except ValueError:
        relative = Path("..")
    if ".." in relative.parts:
        raise CatalogError(
            f"pattern {pattern!r} matches {path}, outside {root}: catalog names must stay "
            "inside the folder"
        )
    return relative


__all__ = [
    "EXECUTION_LOG_SUFFIX",
    "HASH_CACHE_FILE",
    "NAME_MAX_BYTES",
    "BaseCatalog",
    "CatalogFolder",
    "StoredFile",
    "batches_in_threads",
    "folder_files",
    "glob_regex",
    "raise_first_failure",
    "refuse_links",
    "run_in_threads",
    "temp_beside",
    "usable_hash_cache",
    "writer_temp_fits",
]
