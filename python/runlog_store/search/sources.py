"""What a store holds now, for its run index: a stamp of every run, cheap to take, that changes
whenever the run does, and the summaries of the runs whose stamp changed.

A stamp is ``(fingerprint, changed_ns)``: the fingerprint is compared with the one the index
recorded when it summarized the run; ``changed_ns`` is the newest change time the fingerprint
saw (nanoseconds since the epoch), for the racy rule of the index (a run changed within a clock
tick of the moment it was summarized may have changed again without its fingerprint showing it:
see ``runlog_store.search.index``). Object stores fingerprint by ETags, which change with the
content itself, and say 0: never racy.

- ``file-system``: the stat (inode, size, modified and changed times) of ``<run_id>.json``;
- ``chunked-fs``: the stat of the run folder and of every document and journal in it;
- ``minio``: the ETag of ``<run_id>.json``, from one listing of the prefix;
- ``chunked-minio``: a hash of the names and ETags of the run's objects (its ``.merged.json``
  left out: a read writes it), from one recursive listing of the prefix;
- a project's folder: each run from the layout it is read from (chunked-fs first).
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from runlog_store import _core
from runlog_store.exceptions import RunLogNotFoundError

if TYPE_CHECKING:
    from runlog_store.ops.runs import RunSummary
    from runlog_store.stores.base import BaseRunLogStore
    from runlog_store.stores.chunked_minio import ChunkedMinioRunLogStore
    from runlog_store.stores.minio import MinioRunLogStore

log = logging.getLogger("runlog_store.search")

Stamp = tuple[str, int]
# The runs to summarize again, ``(run_id, fingerprint, newest change ns)``, and the run ids an
# index records that are gone (``RunSource.changes``).
Changes = tuple[list[tuple[str, str, int]], list[str]]

# Where a store's index lives in its log folder: a folder of its own (hidden: no store lists it
# as a run). Opening and closing SQLite's database makes and removes its `-wal` and `-shm`
# files; in the log folder itself that would change the folder at every search, and a search
# trusts its last listing of the log folder (100,000 names and more) only while the folder is
# unchanged.
INDEX_FOLDER = ".runlog-index"
INDEX_FILE = "runs.sqlite"
# Where earlier versions kept it, in the log folder itself: removed when the index is built.
FORMER_INDEX_FILE = ".runlog-index.sqlite"
# Runs read at once when summaries come from the store's own reads (GETs, merges of chunks).
READERS = 8


def user_index_folder() -> str:
    """Where indexes that cannot live beside the runs go: ``$XDG_CACHE_HOME/runlog-store/index``
    (``~/.cache/runlog-store/index`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "runlog-store", "index")


def cached_index_path(key: str) -> str:
    """The index file of a store known by ``key`` in the user's cache folder."""
    hasher = _core.Hasher("blake3")
    hasher.update(key.encode("utf-8", "surrogateescape"))
    return os.path.join(user_index_folder(), hasher.hexdigest()[:32] + ".sqlite")


def folder_index_path(folder: str) -> str | None:
    """The index of a store in ``folder``: beside the runs when the folder can be written, else
    in the user's cache folder (a read-only share is still searched fast); None while the
    folder does not exist (nothing to index, and no folder is made for it)."""
    if not os.path.isdir(folder):
        return None
    if not os.access(folder, os.W_OK | os.X_OK):
        return cached_index_path("folder|" + os.path.realpath(folder))
    inner = os.path.join(folder, INDEX_FOLDER)
    try:
        found = os.lstat(inner)
    except FileNotFoundError:
        return os.path.join(inner, INDEX_FILE)  # made by the first search (make_index_folder)
    except OSError:
        return cached_index_path("folder|" + os.path.realpath(folder))
    # Anything but a folder of this user's that no one else may write (a link put there, say)
    # is never written through: the index goes to the user's cache folder.
    if (
        not stat.S_ISDIR(found.st_mode)
        or found.st_uid != os.geteuid()
        or found.st_mode & 0o022
        or not os.access(inner, os.W_OK | os.X_OK)
    ):
        return cached_index_path("folder|" + os.path.realpath(folder))
    return os.path.join(inner, INDEX_FILE)


def make_index_folder(path: str) -> None:
    """Make the folder of index file ``path`` if it is missing: a store's own (see
    ``INDEX_FOLDER``) or the user's cache folder. Never through a link: a folder of the store's
    that is not there is made by this user, without write access for others."""
    folder = os.path.dirname(path)
    if os.path.basename(folder) != INDEX_FOLDER:
        os.makedirs(folder, exist_ok=True)
        return
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder, 0o755)  # the umask may take more away, never add
    # Made by another process meanwhile, or something else put there since the index's path
    # was chosen: used only if it is a folder of this user's that no one else may write.
    found = os.lstat(folder)
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.geteuid() or found.st_mode & 0o022:
        raise OSError(f"{folder} is not a folder of this user's that only they may write")


def beside_index(path: str, suffix: str) -> str:
    """A cache saved beside index file ``path`` for other processes: ``<name><suffix>`` for
    ``<name>.sqlite`` (``.listings``: ``_core.save_folder_listings``; ``.stamps``:
    ``_core.StoredStamps.save``)."""
    return os.path.splitext(path)[0] + suffix


def remove_former_index(path: str) -> None:
    """Remove the index an earlier version kept in the log folder itself, with its WAL and
    shared memory, once the index at ``path`` (in ``INDEX_FOLDER``) is built."""
    folder = os.path.dirname(path)
    if os.path.basename(folder) != INDEX_FOLDER:
        return
    former = os.path.join(os.path.dirname(folder), FORMER_INDEX_FILE)
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            os.remove(former + suffix)


class RunSource(ABC):
    """One store's runs as its index sees them (see the module docstring)."""

    def __init__(self, store: BaseRunLogStore) -> None:
        self.store = store

    @abstractmethod
    def index_path(self) -> str | None:
        """Where the index file is (None: no index for now, searches read every run)."""

    @abstractmethod
    def stamps(self) -> dict[str, Stamp]:
        """Every run the store lists (names that are no run id too), with its stamp."""

    @abstractmethod
    def stamp(self, run_id: str) -> Stamp | None:
        """One run's stamp, as ``stamps`` gives it; None when the run is not there."""

    def changes(
        self, stored: _core.StoredStamps, expected: tuple[str, str], racy_seconds: float
    ) -> Changes | None:
        """What differs between the stamps an index records (``stored``, read at state
        ``expected`` of its file) and this store's: the runs to summarize again (new, changed,
        or racy: see ``runlog_store.search.index``), in run id order, and the recorded runs
        gone; None when ``stored`` is no longer at ``expected``. Compared by the core: a quiet
        search of 100,000 runs makes no object per run."""
        stamps = self.stamps()
        check_names(stamps)
        return stored.diff(expected, stamps, racy_seconds)

    def save_for_next_process(self) -> None:
        """Save what this process keeps of the store's listings, for the first search of the
        next process; a source that keeps none saves nothing."""
        return None

    def restriction(self) -> str | None:
        """The head of the fingerprints of the runs this store sees, when the index holds more
        (another store's runs in the same folder); None: every row is this store's."""
        return None

    def summaries(
        self, run_ids: list[str], advance: Callable[[int], None]
    ) -> dict[str, RunSummary | dict[str, Any] | None]:
        """The summaries of these runs (None for a run gone meanwhile), as a search of the
        store without an index reads them (``read_summary``); each one read is reported to
        ``advance``."""
        return _read_summaries(self.store, self.reader, run_ids, advance)

    def core_reads(self) -> tuple[str, bool, float] | None:
        """Where the core reads this store's runs for an index build: the log folder, with the
        store's ``fsync`` and ``lock_timeout`` (each run is opened with them, as the store
        opens it); None when they are read here (``summaries``)."""
        return None

    def reader(self) -> BaseRunLogStore:
        """A store object for one reading thread: a store keeps per-run state (open runs, how
        each names its documents) that is not shared between threads."""
        store = self.store
        return type(store).model_validate(store.model_dump(round_trip=True))


def _read_summaries(
    store: BaseRunLogStore,
    reader: Callable[[], BaseRunLogStore],
    run_ids: list[str],
    advance: Callable[[int], None],
) -> dict[str, RunSummary | dict[str, Any] | None]:
    """``read_summary`` of each run (None for a run gone): one run by ``store`` itself (a
    writer's hook), more ``READERS`` at a time, each thread with a store object of its own
    (``reader``)."""
    from runlog_store.ops.runs import read_summary

    local = threading.local()

    def one(run_id: str) -> tuple[str, RunSummary | None]:
        reading = getattr(local, "store", None)
        if reading is None:
            reading = local.store = store if len(run_ids) == 1 else reader()
        try:
            return run_id, read_summary(reading, run_id)
        except RunLogNotFoundError:
            return run_id, None

    found: dict[str, RunSummary | dict[str, Any] | None] = {}
    if len(run_ids) == 1:  # in this thread: the store's open runs are this thread's
        found.update([one(run_ids[0])])
        advance(1)
        return found
    with ThreadPoolExecutor(max_workers=max(1, min(READERS, len(run_ids)))) as pool:
        # Progress is told from this thread: a callback need not be thread-safe.
        for run_id, summary in pool.map(one, run_ids):
            found[run_id] = summary
            advance(1)
    return found


# --- file systems ---------------------------------------------------------------------------


def document_stamps(folder: str) -> dict[str, Stamp]:
    """Every ``<run_id>.json`` ``FileSystemRunLogStore`` lists, with its stamp: the stat of the
    document (inode, size, modified and changed times; a link stamped as one)."""
    return _core.fingerprint_documents(folder)


def document_stamp(folder: str, run_id: str) -> Stamp | None:
    return _core.fingerprint_document(folder, run_id)


def run_folder_stamps(folder: str) -> dict[str, Stamp]:
    """Every run folder ``ChunkedFileSystemRunLogStore`` lists, with its stamp: the folder's
    inode and the stat of every document, the layout marker and each journal (not the
    snapshot, lock or temp files, which reads write)."""
    return _core.fingerprint_run_folders(folder)


def run_folder_stamp(folder: str, run_id: str) -> Stamp | None:
    return _core.fingerprint_run_folder(folder, run_id)


# Documents summarized by the core at once: progress moves between batches, each read in
# parallel.
DOCUMENT_BATCH = 512


def _named(
    store: BaseRunLogStore,
    run_ids: list[str],
    found: dict[str, RunSummary | dict[str, Any] | None],
    advance: Callable[[int], None],
) -> list[str]:
    """The run ids that can be read by name; the others are summarized here, unreadable by
    their name alone, as a scan says."""
    from runlog_store.ops.runs import read_summary, run_id_problem

    named = []
    for run_id in run_ids:
        if run_id_problem(run_id) is None:
            named.append(run_id)
        else:
            found[run_id] = read_summary(store, run_id)
            advance(1)
    return named


def _document_summaries(
    store: BaseRunLogStore, folder: str, run_ids: list[str], advance: Callable[[int], None]
) -> dict[str, RunSummary | dict[str, Any] | None]:
    """File-system run documents read and summarized by the core in parallel, with the checks
    the store's own read makes (``read_document_fields``)."""
    from runlog_store.ops.runs import read_document_fields

    found: dict[str, RunSummary | dict[str, Any] | None] = {}
    named = _named(store, run_ids, found, advance)
    for start in range(0, len(named), DOCUMENT_BATCH):
        batch = named[start : start + DOCUMENT_BATCH]
        paths = [os.path.join(folder, run_id + ".json") for run_id in batch]
        found.update(zip(batch, read_document_fields(paths, batch), strict=True))
        advance(len(batch))
    return found


def _run_folder_summaries(
    store: BaseRunLogStore, folder: str, run_ids: list[str], advance: Callable[[int], None]
) -> dict[str, RunSummary | dict[str, Any] | None]:
    """Chunked-fs runs read as the chunked-fs store reads them and summarized, by the core in
    parallel (``read_run_folder_fields``)."""
    from runlog_store.ops.runs import read_run_folder_fields

    found: dict[str, RunSummary | dict[str, Any] | None] = {}
    named = _named(store, run_ids, found, advance)
    fsync = bool(getattr(store, "fsync", True))
    lock_timeout = float(getattr(store, "lock_timeout", 60.0))
    for start in range(0, len(named), DOCUMENT_BATCH):
        batch = named[start : start + DOCUMENT_BATCH]
        fields = read_run_folder_fields(folder, batch, fsync=fsync, lock_timeout=lock_timeout)
        found.update(zip(batch, fields, strict=True))
        advance(len(batch))
    return found


class Unindexable(Exception):
    """What the store holds cannot be indexed faithfully (a run name SQLite cannot hold, one
    run id in both layouts of a folder searched as one of them): searched by a scan."""


def check_names(run_ids: Iterable[str]) -> None:
    for run_id in run_ids:
        try:
            run_id.encode("utf-8")
        except UnicodeEncodeError:
            raise Unindexable(f"the name {run_id!r} is not UTF-8") from None


class FolderSource(RunSource):
    """A log folder. Whichever store searches it (file-system, chunked-fs, a project's), the
    index holds the runs of both layouts, each stamped in the layout a project reads it from
    (chunked-fs first), its layout's name heading its fingerprint: one index file serves them
    all, and a writer of either layout keeps it current for every reader. A store of one layout
    sees that layout's rows alone (``layout``)."""

    def __init__(self, store: BaseRunLogStore, layout: str | None) -> None:
        super().__init__(store)
        self.layout = layout
        # The layout of each run as the last stamps saw it: where summaries read it.
        self.layouts: dict[str, str] = {}

    @property
    def folder(self) -> str:
        """The log folder's absolute path, taken where the store would reach it now (a relative
        one from the working folder): a folder named relatively by one process and absolutely
        by the next keeps one index, one copy of its stamps and one set of saved listings,
        which are found by the folder's name."""
        folder: str = self.store.log_folder  # type: ignore[attr-defined]
        return os.path.abspath(folder)

    def index_path(self) -> str | None:
        return folder_index_path(self.folder)

    def stamps(self) -> dict[str, Stamp]:
        documents = document_stamps(self.folder)
        folders = run_folder_stamps(self.folder)
        if self.layout == "file-system" and not documents.keys().isdisjoint(folders):
            both = sorted(set(documents) & set(folders))[0]
            raise Unindexable(f"run {both!r} is stored in both layouts")
        found = {
            run_id: ("file-system " + f, changed) for run_id, (f, changed) in documents.items()
        }
        for run_id, (fingerprint, changed) in folders.items():
            found[run_id] = ("chunked-fs " + fingerprint, changed)
        self.layouts = {run_id: stamp[0].partition(" ")[0] for run_id, stamp in found.items()}
        return found

    def changes(
        self, stored: _core.StoredStamps, expected: tuple[str, str], racy_seconds: float
    ) -> Changes | None:
        """``stamps`` compared with ``stored`` by the core, from one listing of the folder.
        The listings of the folder and its run folders another process saved are taken
        first (``listings_path``; ``save_for_next_process`` saves this process's)."""
        listings = self.listings_path()
        if listings is not None:
            _core.load_folder_listings(self.folder, listings)
        found = _core.folder_changes(self.folder, stored, expected, racy_seconds)
        if found is None:
            return None
        (stale, gone), both, unnamed = found
        if unnamed:
            raise Unindexable(f"the name {unnamed[0]!r} is not UTF-8")
        if self.layout == "file-system" and both:
            raise Unindexable(f"run {both[0]!r} is stored in both layouts")
        self.layouts = {run_id: fingerprint.partition(" ")[0] for run_id, fingerprint, _ in stale}
        return stale, gone

    def core_reads(self) -> tuple[str, bool, float] | None:
        store = self.store
        return (
            self.folder,
            bool(getattr(store, "fsync", True)),
            float(getattr(store, "lock_timeout", 60.0)),
        )

    def save_for_next_process(self) -> None:
        """Save this process's listings of the folder and its run folders beside the index,
        when enough changed since they were last saved or taken (the core decides)."""
        listings = self.listings_path()
        if listings is None:
            return
        try:
            _core.save_folder_listings(self.folder, listings)
        except OSError as exc:  # a cache: the next process lists the folders itself
            log.debug("listings of %s not saved to %s: %s", self.folder, listings, exc)

    def listings_path(self) -> str | None:
        """Where the listings of this folder are saved for the next process, beside the index
        file; None while the index's folder is not there."""
        path = self.index_path()
        if path is None or not os.path.isdir(os.path.dirname(path)):
            return None
        return beside_index(path, ".listings")

    def restriction(self) -> str | None:
        """The head of the fingerprints of the runs this store sees (None: all of them)."""
        return None if self.layout is None else self.layout + " "

    def stamp(self, run_id: str) -> Stamp | None:
        chunked = run_folder_stamp(self.folder, run_id)
        if chunked is not None:
            return "chunked-fs " + chunked[0], chunked[1]
        document = document_stamp(self.folder, run_id)
        if document is not None:
            return "file-system " + document[0], document[1]
        return None

    def layout_store(self, layout: str) -> BaseRunLogStore:
        from runlog_store.registry import create_store

        store = self.store
        if getattr(store, "service_name", None) == layout:
            return type(store).model_validate(store.model_dump(round_trip=True))
        return create_store(
            layout,
            log_folder=self.folder,
            fsync=getattr(store, "fsync", True),
            lock_timeout=getattr(store, "lock_timeout", 60.0),
        )

    def summaries(
        self, run_ids: list[str], advance: Callable[[int], None]
    ) -> dict[str, RunSummary | dict[str, Any] | None]:
        """Each run read in the layout it is stamped in (``stamp``); chunked runs by their
        store, ``READERS`` at a time; documents in bulk by the core."""
        chunked: list[str] = []
        documents: list[str] = []
        for run_id in run_ids:
            layout = self.layouts.get(run_id)
            if layout is None:
                stamp = self.stamp(run_id)
                layout = stamp[0].partition(" ")[0] if stamp is not None else "file-system"
            (chunked if layout == "chunked-fs" else documents).append(run_id)
        found = _run_folder_summaries(self.store, self.folder, chunked, advance)
        found.update(_document_summaries(self.store, self.folder, documents, advance))
        return found


# --- object storage -------------------------------------------------------------------------


def _etag_hash(objects: Iterable[tuple[str, str]]) -> str:
    hasher = _core.Hasher("blake3")
    for name, etag in sorted(objects):
        hasher.update(f"{name}\0{etag}\n".encode("utf-8", "surrogateescape"))
    return hasher.hexdigest()[:32]


class MinioSource(RunSource):
    """``<prefix>/<run_id>.json`` objects by ETag, from one listing (1,000 names a request)."""

    store: MinioRunLogStore

    def index_path(self) -> str | None:
        return cached_index_path("minio|" + self.store.bucket_location())

    def _root(self) -> str:
        bucket = self.store.storage()
        return bucket.key() + "/" if bucket.prefix else ""

    def stamps(self) -> dict[str, Stamp]:
        root = self._root()
        found: dict[str, Stamp] = {}
        for key, etag in self.store.storage().list_etags(root).items():
            name = key[len(root) :]
            if "/" in name or not name.endswith(".json"):
                continue
            run_id = name[: -len(".json")]
            if run_id and not run_id.startswith("."):
                found[run_id] = (etag, 0)
        return found

    def stamp(self, run_id: str) -> Stamp | None:
        bucket = self.store.storage()
        st = bucket.stat(bucket.key(run_id + ".json"), run_id=run_id)
        return (st.etag, 0) if st is not None else None


class ChunkedMinioSource(RunSource):
    """``<prefix>/<run_id>/`` folders by a hash of their objects' names and ETags, from one
    recursive listing of the prefix."""

    store: ChunkedMinioRunLogStore

    def index_path(self) -> str | None:
        return cached_index_path("chunked-minio|" + self.store.bucket_location())

    def _root(self) -> str:
        bucket = self.store.storage()
        return bucket.key() + "/" if bucket.prefix else ""

    @staticmethod
    def _stamp(objects: dict[str, str]) -> Stamp | None:
        if _core.RUN_LOG_OBJECT not in objects and _core.RUN_LOG_FILE not in objects:
            return None  # no run document: not a run (list_run_ids says so too)
        kept = [(n, e) for n, e in objects.items() if n != _core.SNAPSHOT_NAME]
        return _etag_hash(kept), 0

    def stamps(self) -> dict[str, Stamp]:
        root = self._root()
        runs: dict[str, dict[str, str]] = {}
        for key, etag in self.store.storage().list_etags(root).items():
            run_id, slash, name = key[len(root) :].partition("/")
            if slash and run_id and not run_id.startswith("."):
                runs.setdefault(run_id, {})[name] = etag
        found: dict[str, Stamp] = {}
        for run_id, objects in runs.items():
            stamp = self._stamp(objects)
            if stamp is not None:
                found[run_id] = stamp
        return found

    def stamp(self, run_id: str) -> Stamp | None:
        bucket = self.store.storage()
        folder = bucket.key(run_id) + "/"
        listed = bucket.list_etags(folder, run_id=run_id)
        return self._stamp({key[len(folder) :]: etag for key, etag in listed.items()})


__all__ = [
    "FORMER_INDEX_FILE",
    "INDEX_FILE",
    "INDEX_FOLDER",
    "ChunkedMinioSource",
    "FolderSource",
    "MinioSource",
    "RunSource",
    "Stamp",
    "Unindexable",
    "beside_index",
    "cached_index_path",
    "folder_index_path",
    "make_index_folder",
    "remove_former_index",
    "user_index_folder",
]
