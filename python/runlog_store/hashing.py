"""Content hashes of files, computed by the Rust core (``rust/hasher.rs``).

BLAKE3 is the default: it is fast on one core and splits across all of them for big files.
SHA-256 gives exactly the digests runnable records (and hashlib computes). Every byte is
hashed, whatever the size of the file.

In a run log a BLAKE3 digest is written ``blake3:<hex>`` and a SHA-256 one as bare hex, as
runnable writes it, so each ``data_hash`` says how to check it (docs/format.md).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from typing import Literal, overload

from runlog_store import _core
from runlog_store.exceptions import HashError

HashAlgorithm = Literal["blake3", "sha256"]
ALGORITHMS: tuple[HashAlgorithm, ...] = ("blake3", "sha256")
StrPath = str | os.PathLike[str]

_HEX64 = re.compile(r"[0-9a-f]{64}")
# runnable 0.50 records a fingerprint (size, first and last MiB), not a content hash, for files
# of this size or more.
RUNNABLE_FINGERPRINT_MIN_BYTES = 1 << 30
_RUNNABLE_CHUNK = 1 << 20


def hash_file(path: StrPath, algorithm: HashAlgorithm = "blake3") -> str:
    """The hex digest of a file's content; HashError naming the path if it cannot be read."""
    return _core.hash_file(path, algorithm)


@overload
def hash_files(
    paths: Iterable[StrPath],
    algorithm: HashAlgorithm = ...,
    jobs: int | None = ...,
    *,
    return_exceptions: Literal[False] = ...,
    cache: StrPath | None = ...,
) -> list[str]: ...


@overload
def hash_files(
    paths: Iterable[StrPath],
    algorithm: HashAlgorithm = ...,
    jobs: int | None = ...,
    *,
    return_exceptions: Literal[True],
    cache: StrPath | None = ...,
) -> list[str | HashError]: ...


def hash_files(
    paths: Iterable[StrPath],
    algorithm: HashAlgorithm = "blake3",
    jobs: int | None = None,
    *,
    return_exceptions: bool = False,
    cache: StrPath | None = None,
) -> list[str] | list[str | HashError]:
    """Hex digests of many files, in the order given, hashed in parallel with the GIL released.

    ``jobs`` limits the threads (default: every core). A file that cannot be hashed raises its
    HashError, after every other file was hashed; with ``return_exceptions=True`` its HashError
    takes its place in the list instead (like ``asyncio.gather``). ``cache`` names a hash cache
    file: files whose device, inode, size, mtime and ctime are unchanged since they were hashed
    are not read again.
    """
    results = _core.hash_files(list(paths), algorithm, jobs=jobs, cache=cache)
    if not return_exceptions:
        for result in results:
            if isinstance(result, HashError):
                raise result
    return results


def format_data_hash(algorithm: HashAlgorithm, digest: str) -> str:
    """The ``data_hash`` of a run log: bare hex for SHA-256 (runnable's), prefixed otherwise."""
    return digest if algorithm == "sha256" else f"{algorithm}:{digest}"


def parse_data_hash(data_hash: str) -> tuple[HashAlgorithm, str] | None:
    """``(algorithm, hex)`` of a recorded ``data_hash``; None if it is in no known form."""
    algorithm, sep, digest = data_hash.partition(":")
    if not sep:
        algorithm, digest = "sha256", data_hash
    if algorithm not in ALGORITHMS or not _HEX64.fullmatch(digest):
        return None
    return algorithm, digest


def runnable_fingerprint(path: StrPath) -> str:
    """What runnable 0.50 records as ``data_hash`` for a file of 1 GiB or more: SHA-256 of the
    size, the first MiB and the last MiB. Not a content hash; used to recognise such entries."""
    size = os.stat(path).st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        first = handle.read(_RUNNABLE_CHUNK)
        digest.update(first)
        if size > _RUNNABLE_CHUNK:
            handle.seek(-min(_RUNNABLE_CHUNK, size - len(first)), os.SEEK_END)
            digest.update(handle.read(_RUNNABLE_CHUNK))
    return digest.hexdigest()
