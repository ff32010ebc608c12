"""Rust core of runlog-store (``rust/``): atomic writes, locks, locked JSON patches, merging.

Every function releases the GIL while it does I/O. Failures raise the typed errors of
:mod:`runlog_store.exceptions` carrying ``path`` and ``run_id``: ``StorageError`` (with
``errno``), ``CorruptChunkError``, ``ChunkNotFoundError``, ``ChunkExistsError``,
``LockTimeoutError``; bad arguments raise ``ValueError``.
"""

from os import PathLike
from types import TracebackType
from typing import Literal

from runlog_store.exceptions import HashError, StorageError

__version__: str

_Path = str | PathLike[str]

def chunk_file_name(kind: Literal["StepLog", "BranchLog"], internal_name: str) -> str:
    """``StepLog-<key>.json`` / ``BranchLog-<key>.json`` for an internal name (docs/format.md)."""

def write_atomic(
    path: _Path, data: bytes, *, fsync: bool = True, exclusive: bool = False, run_id: str = ""
) -> None:
    """Temp file, write, fsync, rename (link when ``exclusive``), fsync of the folder."""

def read_file(path: _Path, *, run_id: str = "") -> bytes | None:
    """The whole file, or None when it does not exist."""

def patch_json(
    path: _Path,
    patch: bytes,
    *,
    lock_path: _Path,
    merge_keys: tuple[str, ...] | list[str] = (),
    create: bytes | None = None,
    fsync: bool = True,
    lock_timeout: float = 60.0,
    run_id: str = "",
) -> bytes:
    """Merge a JSON object into the one at ``path`` under the lock; returns the bytes written."""

def merge_run(
    run_dir: _Path, *, salvage: bool = False, run_id: str = ""
) -> tuple[bytes, list[tuple[str, str]]]:
    """The full run log of a chunked run folder, and (path, reason) of chunks salvage skipped."""

def clean_temp_files(folder: _Path, older_than: float = 60.0) -> int:
    """Remove temp files of dead writes older than ``older_than`` seconds."""

class FileLock:
    """An exclusive ``flock`` on ``path``, waited for at most ``timeout`` seconds."""

    def __init__(self, path: _Path, timeout: float = 60.0, run_id: str = "") -> None: ...
    @property
    def path(self) -> str: ...
    def __enter__(self) -> FileLock: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool: ...

def hash_file(path: _Path, algorithm: Literal["blake3", "sha256"] = "blake3") -> str:
    """Hex digest of a file's content; HashError naming the path on failure."""

def hash_files(
    paths: list[_Path],
    algorithm: Literal["blake3", "sha256"] = "blake3",
    *,
    jobs: int | None = None,
    cache: _Path | None = None,
) -> list[str | HashError]:
    """Digests in order, in parallel; a HashError instance in place of a file that failed."""

def copy_files(
    pairs: list[tuple[_Path, _Path]],
    algorithm: Literal["blake3", "sha256"] = "blake3",
    *,
    fsync: bool = True,
    jobs: int | None = None,
    cache: _Path | None = None,
    run_id: str = "",
) -> list[tuple[str, bool] | StorageError]:
    """Atomic copies hashed in the same pass: (digest, copied) or a StorageError per pair."""

def apply_patch(
    path: _Path,
    current: bytes | None,
    patch: bytes,
    *,
    merge_keys: tuple[str, ...] | list[str] = (),
    create: bytes | None = None,
    run_id: str = "",
) -> bytes:
    """The document ``patch`` turns ``current`` into, as ``patch_json`` would write it."""

def merge_chunks(
    location: _Path,
    run_log: bytes,
    objects: list[tuple[str, bytes]],
    *,
    salvage: bool = False,
    run_id: str = "",
) -> tuple[bytes, list[tuple[str, str]]]:
    """``merge_run`` of a run held in memory: RunLog.json and (name, bytes) of its objects."""

class Hasher:
    """A streaming BLAKE3 or SHA-256 hash of bytes passing through Python."""

    def __init__(self, algorithm: Literal["blake3", "sha256"] = "blake3") -> None: ...
    @property
    def algorithm(self) -> str: ...
    def update(self, data: bytes) -> None: ...
    def hexdigest(self) -> str: ...
