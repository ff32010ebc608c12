"""Rust core of runlog-store (``rust/``): atomic writes, locks, locked JSON patches, merging.

Every function releases the GIL while it does I/O. Failures raise the typed errors of
:mod:`runlog_store.exceptions` carrying ``path`` and ``run_id``: ``StorageError`` (with
``errno``), ``HashError``, ``CorruptChunkError`` (and its ``RunIdMismatchError``),
``NestingTooDeepError``, ``ChunkNotFoundError``, ``ChunkExistsError``, ``LockTimeoutError``;
bad arguments raise ``ValueError``. Importing the module checks that every class it raises
exists in :mod:`runlog_store.exceptions` (``RAISED_EXCEPTIONS``).

Files in a store's folders are opened without following a symlink below the folder the user
configured, as regular files only (a FIFO or a device is an error naming it, never waited for),
and read only up to ``MAX_FILE_BYTES``; a stored document that is none of those is a
``CorruptChunkError``.

The chunk byte format (docs/format.md) is owned here: Python never builds or cuts chunk bytes
itself, it calls the functions and uses the names below.
"""

from collections.abc import Iterable, Sequence
from os import PathLike
from types import TracebackType
from typing import Any, Final, Literal

from runlog_store.exceptions import HashError, StorageError

__version__: str

RAISED_EXCEPTIONS: Final[tuple[str, ...]]
"""Names of the classes of runlog_store.exceptions the core raises."""

RUN_LOG_FILE: Final[str]
"""``RunLog.json``: the run-level document of a run folder or prefix."""
LAYOUT_MARKER: Final[str]
"""``.layout``: marks a run created by runlog-store (every step has its own chunk)."""
LAYOUT_MARKER_TEXT: Final[bytes]
"""The content of the layout marker."""
CREATED_NS_KEY: Final[str]
"""``_created_ns``: the chunk header key, first in every chunk."""
CHUNK_INDEX_KEY: Final[str]
"""``_chunks``: a sealed branch chunk's {chunk name: ETag} index of the steps it embeds."""
SNAPSHOT_NAME: Final[str]
"""``.merged.json``: the snapshot of an ended run's merged document (object storage)."""
TEMP_MARKER: Final[str]
"""``.tmp-``: marks temp files of writes in flight (``.<name>.tmp-<pid>-<nanos>-<n>``)."""
MAX_FILE_BYTES: Final[int]
"""The largest file (or object) a store reads: 1 GiB. Larger ones are refused unread."""
MAX_NESTING: Final[int]
"""How deep a run log may nest (JSON objects and arrays, the run log itself as level 1): 128,
below what every reader reads back. Writes past it raise NestingTooDeepError."""

_Path = str | PathLike[str]

def chunk_with_header(created_ns: int, document: bytes) -> bytes:
    """``document`` (a JSON object, ``{}`` too) with ``"_created_ns": created_ns`` put first.
    ValueError when it is not a JSON object or already has the key."""

def split_chunk_header(chunk: bytes) -> tuple[int | None, bytes]:
    """The header's creation time and the chunk without it; ``(None, chunk)`` for chunks of
    older layouts (no header). ValueError for a header that does not end in an integer."""

def seal_branch_patch(
    patch: bytes, steps: Sequence[tuple[str, bytes]], index: Sequence[tuple[str, str]]
) -> bytes:
    """The patch sealing an ending branch: ``patch`` plus ``"steps": {internal name: step
    chunk as stored}`` and ``"_chunks": {chunk name: ETag}``, in the order given. ``patch``
    unchanged when both lists are empty. ValueError for a patch or step chunk that is not a JSON
    object, a patch that already has those keys, or a name given twice."""

def sealed_step_chunks(branch_chunks: Iterable[bytes], listed: dict[str, str]) -> set[str]:
    """Step chunk names that sealed branch chunks embed with the ETag ``listed`` now has."""

def encode_snapshot(etags: dict[str, str], merged: bytes) -> bytes:
    """A ``.merged.json``: the sorted ETag map as its first line, then the merged document."""

def decode_snapshot(data: bytes, etags: dict[str, str]) -> bytes | None:
    """The merged document of a snapshot built from exactly ``etags``, else None."""

def document_status(document: bytes) -> str | None:
    """The top-level ``"status"`` of a run log document; None when unreadable or absent."""

def is_temp_name(name: str) -> bool:
    """Whether a file name is a temp file of a write in flight."""

def temp_path(target: _Path) -> str:
    """A fresh temp path beside ``target`` in the atomic writer's pattern, for code that
    writes a file itself and renames it onto ``target``. ValueError if it names no file."""

def ensure_dir(path: _Path, *, fsync: bool = True, run_id: str = "") -> None:
    """Create a folder and every missing parent; with ``fsync`` their names are durable on
    return. StorageError (with errno) naming what is in the way or failed."""

def chunk_file_name(kind: Literal["StepLog", "BranchLog"], internal_name: str) -> str:
    """``StepLog-<key>.json`` / ``BranchLog-<key>.json`` for an internal name (docs/format.md)."""

def write_atomic(
    path: _Path, data: bytes, *, fsync: bool = True, exclusive: bool = False, run_id: str = ""
) -> None:
    """Temp file, write, fsync, rename (link when ``exclusive``), fsync of the folder."""

def read_file(path: _Path, *, run_id: str = "") -> bytes | None:
    """The whole stored document, or None when it does not exist; CorruptChunkError for a
    symlink, a FIFO, a device or a file past MAX_FILE_BYTES in its place."""

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
    """The full run log of a chunked run folder, and (path, reason) of chunks salvage skipped;
    with ``run_id``, RunIdMismatchError when its ``RunLog.json`` names another run."""

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
    view: Literal["full", "run", "branch", "step"] = "full",
    name: str = "",
) -> tuple[bytes | None, list[tuple[str, str]]]:
    """A run held in memory (object storage) merged: its run-level document and (name, bytes)
    of its other objects. ``view``: the full run log, the run's fields and root steps without
    branches ("run"), or the branch or step ``name`` with its direct steps (None when missing).
    Also (path, reason) of what a salvage left out."""

def merge_rows(
    location: _Path,
    run_log: bytes,
    rows: list[tuple[str, str, int, bytes]],
    *,
    salvage: bool = False,
    run_id: str = "",
    view: Literal["full", "run", "branch", "step"] = "full",
    name: str = "",
) -> tuple[bytes | None, list[tuple[str, str]]]:
    """A run held as rows of a database merged as ``merge_chunks`` merges one in memory: its
    run-level document and (kind "step" or "branch", internal name, created_ns, body without
    header) of its steps and branches; chunk names and headers made in Rust."""

def fold_plan(
    location: _Path,
    run_log: bytes,
    objects: list[tuple[str, bytes]],
    *,
    naming: Literal["objects", "folder"] = "objects",
    run_id: str = "",
) -> list[tuple[str, list[tuple[str, str]]]]:
    """Per document of a run held in memory, the (internal name, object name) of each step
    whose newest copy is its own object: what a fold embeds where."""

def chunk_internal_name(name: str) -> tuple[Literal["StepLog", "BranchLog"], str] | None:
    """The kind and internal name of a chunk from its file or object name; None for other
    names and for hashed keys (``~<hex>``: only the chunk's content says)."""

def pending_journals(run_dir: _Path, *, run_id: str = "") -> list[tuple[str, int]]:
    """The journals of a chunked-fs run holding records not folded yet: (name, size)."""

JOURNAL_DIR: Final[str]
"""``.journals``: the folder of a chunked-fs run that holds the writers' journals."""
STAMP_KEY: Final[str]
"""``_stamp``: the stamp of the last journal record folded into a document or step."""
RUN_LOG_OBJECT: Final[str]
"""``RunLog``: the run-level object of a chunked-minio run of format 2 (runnable's name)."""
LAYOUT_MARKER_TEXT_1: Final[bytes]
"""The layout marker of a chunked-fs run of format 1 (a ``StepLog`` file per step)."""
MINIO_LAYOUT_MARKER_TEXT: Final[bytes]
"""The layout marker of a chunked-minio run of format 2."""

RecordKind = Literal["run-set", "run-merge", "branch-put", "branch-merge", "step-put"]

class ChunkedRun:
    """A chunked-fs run folder as one store object sees it (docs/format.md, "chunked-fs"):
    records appended to this process's journal, reads of the documents with the journals'
    records on top, folds into runnable's documents. Thread-safe; a forked child starts its own
    journal. A missing run is ChunkNotFoundError; damage is CorruptChunkError naming the file
    (and, in a journal, the offset)."""

    def __init__(
        self, run_dir: _Path, *, fsync: bool = True, lock_timeout: float = 60.0, run_id: str = ""
    ) -> None: ...
    def append(self, records: Sequence[tuple[RecordKind, str, bytes]]) -> None:
        """Append (kind, target, JSON body) records as one write: durable (with fsync) and
        visible to every reader when it returns. Target: the internal name, "" for the run."""
    def fold_branch(self, name: str) -> None:
        """Fold an ended branch into its document (and the step holding it into its own)."""
    def fold_all(self) -> None:
        """Fold every record into the documents, then remove the journals."""
    def read(self, *, salvage: bool = False) -> tuple[bytes, list[tuple[str, str]]]:
        """The full run log, and (path, reason) of what a salvage left out."""
    def read_run(self, *, steps: bool = True) -> bytes:
        """The run's fields with its root steps (without branches), or with ``"steps": {}``."""
    def read_branch(self, name: str) -> bytes | None:
        """A branch with its direct steps, or None."""
    def read_step(self, name: str) -> bytes | None:
        """A step without its branches, or None."""
    def has_branch(self, name: str) -> bool: ...
    def journals(self) -> list[tuple[str, int]]:
        """The journals holding records not folded yet: (name, size)."""
    @property
    def run_dir(self) -> str: ...

class Hasher:
    """A streaming BLAKE3 or SHA-256 hash of bytes passing through Python."""

    def __init__(self, algorithm: Literal["blake3", "sha256"] = "blake3") -> None: ...
    @property
    def algorithm(self) -> str: ...
    def update(self, data: bytes) -> None: ...
    def hexdigest(self) -> str: ...

# --- content catalogs (rust/content.rs) ---------------------------------------------------------

CONTENT_OBJECT_MODE: Final[int]
MANIFEST_FORMAT: Final[int]

ManifestRow = tuple[str, str, int, int, str | None]

def hash_contents(
    paths: Sequence[_Path],
    algorithm: Literal["blake3", "sha256"] = "blake3",
    *,
    cache: _Path | None = None,
) -> list[tuple[str, str, int, int] | HashError]:
    """Per path (blake3, recorded digest, size, mode) from one read, or a HashError."""

def store_contents(
    objects: _Path,
    items: Sequence[tuple[_Path, str]],
    *,
    fsync: bool = True,
    run_id: str = "",
) -> list[bool | StorageError]:
    """Store missing contents: True stored now, False already there, or a StorageError."""

def materialize_contents(
    items: Sequence[tuple[_Path, _Path, int, str]],
    link: Literal["auto", "reflink", "hardlink", "copy"] = "auto",
    *,
    fsync: bool = True,
    check: bool = True,
    run_id: str = "",
) -> list[str | Exception]:
    """Put (object, target, mode, digest) into place: the way used, or the exception."""

def content_object_path(objects: _Path, digest: str) -> str:
    """``<objects>/<2 hex>/<62 hex>`` for a BLAKE3 digest; ValueError for anything else."""

def encode_manifest(run_id: str, files: Sequence[ManifestRow]) -> bytes:
    """A manifest's bytes from (path, blake3, size, mode, sha256 or None) entries."""

def decode_manifest(
    location: _Path, data: bytes, *, run_id: str = ""
) -> tuple[str, list[ManifestRow]]:
    """(run_id, entries) of a manifest; CorruptChunkError naming ``location`` if damaged."""

def document_find(
    path: _Path,
    document: bytes,
    kind: Literal["step", "branch"] | str,
    internal_name: str,
    *,
    run_id: str = "",
) -> bytes | None:
    """The raw JSON of a step or branch of a whole run log document; None when not stored.
    With ``run_id``, RunIdMismatchError when the document names another run."""

def document_place(
    path: _Path,
    document: bytes,
    kind: Literal["step", "branch"] | str,
    node: bytes,
    *,
    run_id: str = "",
) -> bytes | tuple[Literal["step", "branch"], str]:
    """The document with ``node`` stored at its place, or what it needs above it that is not
    stored: ``("step", name)`` for a branch, ``("branch", name)`` for a step (as runnable
    refuses it). NestingTooDeepError when the node would take the run log past MAX_NESTING."""

def check_nesting(
    kind: Literal["run", "step", "branch"] | str, name: str, body: bytes, *, run_id: str = ""
) -> None:
    """NestingTooDeepError when the JSON object ``body`` of the run's fields (``kind="run"``),
    of a step or of a branch named ``name`` (with the children it carries) would take the run
    log past MAX_NESTING; it names the step or branch and the place too deep."""

def check_run_document(path: _Path, document: bytes, run_id: str) -> None:
    """Check a whole run document before it is handed out: RunIdMismatchError when it names
    another run than ``run_id``; CorruptChunkError when it is not a JSON object or nests
    deeper than MAX_NESTING."""

# --- run summaries and fingerprints (rust/summary/) ----------------------------------------------

def summarize_run(data: bytes, run_id: str = "") -> dict[str, Any]:
    """The summary of a merged run log's JSON: the keyword arguments of ``RunSummary`` (all but
    ``layout`` and ``error``; ``start``/``end`` naive local datetimes) plus ``other_times``, time
    texts in forms Python's ``fromisoformat`` judges (the caller folds them into start and end).
    CorruptChunkError (message: the reason alone) when it is not JSON or not a run log; its
    ``run_fields`` attribute holds the run-level fields of a JSON object the models refuse, for
    their own words, else None."""

def summarize_files(
    paths: Sequence[_Path], run_ids: Sequence[str]
) -> list[dict[str, Any] | Exception]:
    """``summarize_run`` of file-system run documents read in parallel with the store's checks
    (no link followed, regular files within MAX_FILE_BYTES, naming the run asked for, nesting
    within MAX_NESTING): per document its summary, or the exception saying why there is none
    (ChunkNotFoundError when it is gone), in order."""

def fingerprint_documents(folder: _Path) -> dict[str, tuple[str, int]]:
    """``{run_id: (fingerprint, newest change time ns)}`` of every ``<run_id>.json`` of a
    file-system store's folder (the entries ``list_run_ids`` lists; a link is stamped as one,
    never followed); empty when the folder does not exist."""

def fingerprint_run_folders(folder: _Path) -> dict[str, tuple[str, int]]:
    """``{run_id: (fingerprint, newest change time ns)}`` of every run folder of a chunked-fs
    store's folder: its inode and the stamps of every document, the layout marker and each
    journal (not the snapshot, lock or temp files, which reads write); a run folder that is a
    link is stamped as one, never followed; empty when the folder does not exist."""

def fingerprint_document(folder: _Path, run_id: str) -> tuple[str, int] | None:
    """``fingerprint_documents``'s entry for one run; None when the store does not list it."""

def fingerprint_run_folder(folder: _Path, run_id: str) -> tuple[str, int] | None:
    """``fingerprint_run_folders``'s entry for one run; None when the store does not list it."""

def summarize_run_folders(
    folder: _Path, run_ids: Sequence[str], *, fsync: bool = True, lock_timeout: float = 60.0
) -> list[dict[str, Any] | Exception]:
    """``summarize_run`` of chunked-fs runs (the folders ``<folder>/<run_id>``) read in parallel
    as ``ChunkedRun.read`` reads them (an ended run's stored merge when still good, stored by a
    full read; a merge made here is not stored): per run its summary, or the exception its read
    or summary raised, in order."""

class StoredStamps:
    """The stamps an index file records, ``{run_id: (fingerprint, indexed_at)}``, read at
    ``state`` (the file's epoch and generation), compared with a store's by the core."""

    def __init__(self, state: tuple[str, str], rows: list[tuple[str, str, float]]) -> None:
        """``rows`` are the index file's at ``state`` (its epoch and generation): stamps of one
        state are taken to be the same rows in every process (a run found current against
        them, by one process, is current against them in the next: see the saved listings)."""
    @property
    def state(self) -> tuple[str, str]: ...
    def __len__(self) -> int: ...
    @staticmethod
    def load(path: _Path, state: tuple[str, str], lazy: bool = False) -> StoredStamps | None:
        """The stamps saved at ``path`` when they are those of ``state``; None otherwise. With
        ``lazy``, the rows are read when a comparison first needs them (one that then finds
        the file changed returns None, as for stamps no longer of their state)."""
    @property
    def rows_read(self) -> bool:
        """Whether the rows were read (stamps loaded lazily are read when first needed)."""
    def save(self, path: _Path) -> bool:
        """Save these stamps to ``path`` unless it holds their state already."""
    def apply(
        self,
        expected: tuple[str, str],
        state: tuple[str, str],
        put: list[tuple[str, str, float]],
        removed: list[str],
    ) -> bool:
        """Record a write made at ``expected`` that left the file at ``state``; False (nothing
        changed) when these stamps are not at ``expected``."""
    def diff(
        self, expected: tuple[str, str], stamps: dict[str, tuple[str, int]], racy_seconds: float
    ) -> tuple[list[tuple[str, str, int]], list[str]] | None:
        """``(stale, gone)``: the runs to summarize again ``(run_id, fingerprint, newest change
        ns)`` and the recorded run ids gone, both sorted; None when not at ``expected``."""

def load_folder_listings(folder: _Path, path: _Path) -> bool:
    """Take the listings of log folder ``folder`` another process saved in ``path`` (unless
    this process keeps its own): whether they were taken. An unreadable file is ignored."""

def save_folder_listings(folder: _Path, path: _Path) -> bool:
    """Save this process's listings of ``folder`` to ``path`` when enough changed since they
    were last saved or loaded: whether they were."""

def folder_listings_taken(folder: _Path) -> int:
    """How many listings (of run folders, and of the log folder) the last scan of ``folder``
    in this process took anew."""

def folder_changes(
    folder: _Path, stored: StoredStamps, expected: tuple[str, str], racy_seconds: float
) -> tuple[tuple[list[tuple[str, str, int]], list[str]], list[str], list[str]] | None:
    """``((stale, gone), both, unnamed)`` of a log folder's runs in both layouts (one listing;
    fingerprints headed ``file-system `` or ``chunked-fs ``, a run folder over a document of
    its name) against ``stored`` (see ``StoredStamps.diff``); ``both``: run ids in both layouts;
    ``unnamed``: names that are not UTF-8. None when ``stored`` is not at ``expected``."""

# --- the run index (rust/index/) ---------------------------------------------------------------

CASEFOLD_UNICODE_VERSION: str

def casefold(text: str) -> str:
    """``text.casefold()`` by the table the index's folded columns are made with."""

def index_rows(
    data: bytes, fingerprint: str, indexed_at: float
) -> (
    tuple[
        tuple[Any, ...],
        list[tuple[str, str, str, float | None, str | None, str | None]],
        list[tuple[str, str, str, float | None, str | None, str | None]],
        list[tuple[str, str, str, str]],
    ]
    | None
):
    """The index rows ``(run, params, metrics, steps)`` of the run log ``data``, as
    ``query.rows_of`` makes them; None when they are Python's to make or it is no run log."""

class IndexBuilder:
    """A run index built from nothing into a new file: set up by ``setup``, fed runs batch by
    batch (``add``: read, summarized and inserted with the GIL released), ended by ``finish``
    (the ``finish`` statements run and the file closed) or given up by ``abandon``."""

    def __init__(
        self,
        path: _Path,
        setup: list[tuple[str, list[str]]],
        inserts: tuple[str, ...],
        finish: list[tuple[str, list[str]]],
        folder: _Path,
        *,
        indexed_at: float,
        fsync: bool = True,
        lock_timeout: float = 60.0,
    ) -> None: ...
    def add(self, runs: list[tuple[str, str, str]]) -> tuple[list[str], list[str]]:
        """Read, summarize and queue ``(run_id, layout, fingerprint)`` runs (layout
        ``file-system`` or ``chunked-fs``): the run ids gone and those left to Python."""
    def finish(self) -> None:
        """Wait for every row, run the finishing statements and close the file."""
    def abandon(self) -> None:
        """Give the build up; its file is the caller's to remove."""
