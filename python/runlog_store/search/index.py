"""The run index: a SQLite file of run summaries a search answers from (docs/format.md, "The run
index").

The index is never the truth. Before each search it is reconciled with what the store holds:
its source (``runlog_store.search.sources``) stamps every run cheaply, and the runs whose stamp
differs from the one recorded, or that are *racy*, are summarized again; the rows of runs gone
are deleted; all of it in one write transaction, in which the search is then answered. A search
that finds nothing changed reads in a read transaction and never takes the write lock.

Racy runs (git's racy-clean rule): a file changed within a clock tick of the moment its stamp
was taken can change again in the same tick without its stamp showing it. Each row records when
its stamp was taken (``indexed_at``, before the run was read); a run whose newest change is not
at least ``RACY_SECONDS`` older than that is read again at the next search.

Many processes may search and write at once: each row also says when its stamp was taken, and
a row is only replaced (or deleted) by what was stamped later, so a slow searcher never puts an
older summary over a newer one; the answer is computed inside the transaction that brought the
index up to date.

A missing index is built by the first search (never by a write: a store never searched pays
nothing). One of another schema version is rebuilt in place; a file that is not a database
(garbage, truncated) is removed and built again; an index locked by another process for longer
than ``BUSY_SECONDS``, or that cannot be written, is left alone and that search reads every run.
None of it is ever an error: each says so in the ``runlog_store.search`` logger, at warning
level.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pydantic

import runlog_store
from runlog_store import _core
from runlog_store.callbacks import NO_PROGRESS, Callback
from runlog_store.exceptions import LockTimeoutError, RunLogStoreError
from runlog_store.ops.runs import RunSummary
from runlog_store.search import query
from runlog_store.search.sources import (
    Changes,
    RunSource,
    Unindexable,
    beside_index,
    cached_index_path,
    check_names,
    make_index_folder,
    remove_former_index,
    user_index_folder,
)

log = logging.getLogger("runlog_store.search")

# What a file built by another version holds may mean something else: it is rebuilt. The
# summaries are the library's (a new version may summarize differently), the tables query.py's.
FORMAT = 4


# The stamps of every run, read by a process's first search, from an index of their own: in the
# table they sit after each run's summary, which SQLite would read through (a fourth of the
# time of 100,000 runs' stamps).
STAMPS_INDEX = (
    "CREATE INDEX IF NOT EXISTS main.runs_stamps ON runs(run_id, fingerprint, indexed_at)"
)


def _schema_version() -> str:
    hasher = _core.Hasher("blake3")
    hasher.update(query.INDEX_SCHEMA.encode())
    hasher.update(STAMPS_INDEX.encode())
    return f"{FORMAT}-{runlog_store.__version__}-{hasher.hexdigest()[:16]}"


SCHEMA_VERSION = _schema_version()
META_SCHEMA = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID"
# How long a search waits for another process's write transaction before it reads every run
# instead (a writer's hook waits far less: it must not slow the run it records).
BUSY_SECONDS = 5.0
NOTE_BUSY_SECONDS = 0.25
# How long a search waits for another process's build of the same index (``_build_turn``)
# before it builds one of its own: a build of 100,000 runs takes 5-10 s here, so a wait this
# long covers builds of about a million runs; past it, both build, as they did before the turn.
BUILD_TURN_SECONDS = 120.0
# Two clock ticks of the coarsest file system clock in use (a kernel tick of 10 ms) and then
# some: changes this close to the stamp are read again.
RACY_SECONDS = 0.05

# The most memory a connection's page cache takes. The file is never mapped into memory
# (SQLite's ``mmap_size`` stays 0): a mapped file that anyone cuts short (a truncation, a copy
# written over it in place) kills the process reading it with SIGBUS, which no code can catch,
# and a search or a writer's hook must survive any index. Reading through the page cache cost
# nothing measurable here (a warm search of 100,000 runs: 89-112 ms either way).
CACHE_KIB = 256 * 1024

# SQLite's primary result codes: SQLITE_CORRUPT, SQLITE_NOTADB; SQLITE_BUSY, SQLITE_LOCKED.
_CORRUPT_CODES = {11, 26}
_BUSY_CODES = {5, 6}
_TABLES = ("runs", "params", "metrics", "steps")

# The stamps each index file held when this process last read them all, by path, at a state
# of the file: its (epoch, generation). Every write transaction counts a generation up and a
# rebuilt file gets a new epoch, so an unchanged pair means unchanged rows: a quiet search of
# 100,000 runs skips reading them from SQLite again, and this process's own writes are applied
# to the copy (its state moved along) instead of reading them all back.
_STORED: dict[str, _core.StoredStamps] = {}
_STORED_LOCK = threading.Lock()
_STORED_PATHS = 8


class _Corrupt(Exception):
    """The file is not a usable index: rebuilt."""


class _Newer(Exception):
    """The file is the index of a newer version of the library: left to it (see
    ``_is_newer``)."""


def _version_key(version: str) -> tuple[int, tuple[int, ...]] | None:
    """(format, library version) of a schema version ``<format>-<library version>-<hash>``."""
    head, _, rest = version.partition("-")
    library = rest.rpartition("-")[0]
    numbers = []
    for part in library.split("."):
        digits = re.match(r"[0-9]+", part)
        if digits is None:
            break
        numbers.append(int(digits.group()))
    if not head.isdigit() or not numbers:
        return None
    return int(head), tuple(numbers)


def _is_newer(found: str) -> bool:
    """Whether an index file's version is that of a newer library than this one. Two versions
    sharing a folder must not rebuild each other's file at every search: the older one keeps
    an index of its own in the user's cache folder, the newer one rebuilds an older file."""
    theirs, ours = _version_key(found), _version_key(SCHEMA_VERSION)
    return theirs is not None and ours is not None and theirs > ours


def _code(exc: sqlite3.Error) -> int:
    return int(getattr(exc, "sqlite_errorcode", -1)) & 0xFF


# Errors of our own statements on a file whose version is ours: its schema was damaged in a
# way SQLite accepts (a table or column dropped by hand, say): rebuilt.
_SCHEMA_DAMAGE = ("no such table", "no such column", "no such index", "has no column named")


def _is_corrupt(exc: sqlite3.Error) -> bool:
    if _code(exc) in _CORRUPT_CODES:
        return True
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and any(d in text for d in _SCHEMA_DAMAGE):
        return True
    return "not a database" in text or "malformed" in text


def _is_busy(exc: sqlite3.Error) -> bool:
    return _code(exc) in _BUSY_CODES or "locked" in str(exc) or "busy" in str(exc)


def _statements(script: str) -> list[str]:
    """The statements of a DDL script, to run inside a transaction one at a time
    (``executescript`` would commit the transaction first)."""
    found, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            found.append(current.strip())
            current = ""
    if current.strip():
        found.append(current.strip())
    return [s for s in found if s.strip(" ;\n")]


class RunIndex:
    """The index of one store location (see the module docstring)."""

    def __init__(self, source: RunSource) -> None:
        self.source = source

    # --- connections ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connect(
        self, path: str, busy: float, searching: bool = False
    ) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(path, timeout=busy, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy * 1000)}")
            # A cache: a commit lost to a power cut is read again by the next search, and WAL
            # keeps the file whole without a sync at every commit.
            conn.execute("PRAGMA synchronous = NORMAL")
            # Room for the pages a write changes across the tables and their indexes (the
            # default 2 MB spills them to the file mid-transaction); taken only as used.
            conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            # Each b-tree page is checked as it is read (its cells within the page): a page
            # damaged past its header is then an error, and the index is built again, rather
            # than a search answered from what the damage left. No cost measured (a warm
            # search of 100,000 runs, medians of two runs: 89 and 93 ms with it, 91 and 98
            # without).
            conn.execute("PRAGMA cell_size_check = ON")
            if searching:
                # A search's commit does not copy the WAL into the file (a checkpoint: as
                # long again as the write, and a sync); its connection is closed after it
                # has answered (``_close``).
                conn.execute("PRAGMA wal_autocheckpoint = 0")
            yield conn
        finally:
            if searching:
                _close(conn, path)
            else:
                conn.close()

    def _prepare(
        self,
        conn: sqlite3.Connection,
        path: str,
        callback: Callback,
        built: str | None = None,
    ) -> None:
        """Make the file an index of this version: when it is not one (new and empty, or of an
        older version), it is filled from a build in a file of its own, ``built`` when the
        caller has one (``_copy_build``)."""
        found = self._version(conn)
        if found == SCHEMA_VERSION:
            return
        if found is not None and _is_newer(found):
            raise _Newer(found)
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        if built is not None:  # made under the caller's build turn
            self._copy_build(conn, path, built)
            return
        with _build_turn(path, callback):
            if self._version(conn) == SCHEMA_VERSION:
                return  # another process's build was copied in while this one waited
            _sweep_builds(path)
            temp = f"{path}.build-{uuid.uuid4().hex}"
            try:
                with _collector_paused():
                    _, epoch, put = self._fill(temp, None, [], callback, secondary=False)
                if self._copy_build(conn, path, temp):
                    _keep_stored(path, _core.StoredStamps((epoch, "1"), put))
            finally:
                _remove_build(temp)

    def _copy_build(self, conn: sqlite3.Connection, path: str, built: str) -> bool:
        """Replace what the file holds by the rows of the build ``built``, in one write
        transaction: the file was of an older version, or new and could not take the build's
        file as its own (no hard links); False when another process made it an index of this
        version meanwhile (left as it is).

        The rows are copied by SQLite from the attached build, and the secondary indexes made
        once they are in: the first search after an upgrade, at 100,000 runs, took 7.8 s
        (file-system) and 10 s (chunked-fs), where the same runs summarized again into the
        emptied file took 25 s and 30 s. Readers see the old rows until the commit, then the
        new ones; the WAL holds the whole file until it is copied back (``_close``)."""
        conn.execute("ATTACH DATABASE ? AS build", (built,))
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                found = self._version(conn)
                if found == SCHEMA_VERSION:
                    conn.execute("ROLLBACK")
                    return False
                if found is not None and _is_newer(found):
                    raise _Newer(found)
                if found is not None:
                    log.warning(
                        "run index %s has version %s, not %s: built again",
                        path,
                        found,
                        SCHEMA_VERSION,
                    )
                for kind, name in conn.execute(
                    "SELECT type, name FROM main.sqlite_master WHERE type IN ('table', 'view') "
                    "AND name NOT LIKE 'sqlite_%'"
                ).fetchall():
                    quoted = name.replace('"', '""')  # whatever the file named it
                    conn.execute(f'DROP {kind.upper()} IF EXISTS main."{quoted}"')
                for table in ("meta", *_TABLES):
                    conn.execute(_MAIN_TABLES[table])
                    conn.execute(f"INSERT INTO main.{table} SELECT * FROM build.{table}")
                for statement in _SECONDARY:
                    conn.execute(statement)
                conn.execute("COMMIT")
                return True
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        finally:
            # Never over the error that ended the transaction: the connection is closed then.
            with contextlib.suppress(sqlite3.Error):
                conn.execute("DETACH DATABASE build")

    @staticmethod
    def _version(conn: sqlite3.Connection) -> str | None:
        try:
            # main's: a build attached beside it has a meta table too (``_copy_build``).
            row = conn.execute("SELECT value FROM main.meta WHERE key = 'version'").fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return None
            raise
        return None if row is None else str(row[0])

    @staticmethod
    def _discard(path: str) -> None:
        """Remove a file that is no index, with its WAL and shared memory (they belong to it)."""
        for suffix in ("-wal", "-shm", ""):
            with contextlib.suppress(OSError):
                os.remove(path + suffix)

    # --- searching -------------------------------------------------------------------------------

    def search(
        self,
        expr: Any,
        order: Any,
        offset: int,
        limit: int,
        callback: Callback = NO_PROGRESS,
        reconcile: bool = True,
    ) -> list[RunSummary] | None:
        """The page ``offset``, ``limit`` of the matching runs in order, from the index brought
        up to date (or as it is, without ``reconcile``: the next pages of one iteration);
        None when the index cannot answer (locked too long, not writable, a run name it
        cannot hold): the caller reads every run."""
        path = self.source.index_path()
        if path is None:
            return None
        for _attempt in range(3):
            try:
                return self._search(path, expr, order, offset, limit, callback, reconcile)
            except _Newer as exc:
                if os.path.dirname(path) == user_index_folder():
                    return None  # a newer library's even there: read every run
                log.info(
                    "run index %s is a newer library's (version %s): this one keeps its own "
                    "in the user's cache folder",
                    path,
                    exc,
                )
                path = cached_index_path(f"beside|{path}|{SCHEMA_VERSION}")
                continue
            except (sqlite3.Error, _Corrupt, UnicodeDecodeError) as exc:
                # A damaged schema can make SQLite's own message bytes that are not UTF-8.
                if isinstance(exc, UnicodeDecodeError):
                    exc = _Corrupt(repr(exc.object[:200]))
                if isinstance(exc, sqlite3.Error) and _is_busy(exc):
                    log.warning(
                        "run index %s stayed locked by another process for over %s s: this "
                        "search read every run instead",
                        path,
                        BUSY_SECONDS,
                    )
                    return None
                if isinstance(exc, _Corrupt) or _is_corrupt(exc):
                    log.warning("run index %s is damaged (%s): built again", path, exc)
                    self._discard(path)
                    continue
                log.warning(
                    "run index %s cannot be used (%s): this search read every run", path, exc
                )
                return None
            except Unindexable as exc:
                log.info("run index %s not used: %s", path, exc)
                return None
            except OSError as exc:  # its folder cannot be made, say
                log.warning(
                    "run index %s cannot be used (%s): this search read every run", path, exc
                )
                return None
        return None

    def _search(
        self,
        path: str,
        expr: Any,
        order: Any,
        offset: int,
        limit: int,
        callback: Callback,
        reconcile: bool,
    ) -> list[RunSummary]:
        if not os.path.exists(path):
            make_index_folder(path)  # the index is made in it below
        sql, params = query.compile_search(expr, order)
        params = [*params, limit, offset]
        if reconcile and not os.path.exists(path):
            with _build_turn(path, callback):
                if not os.path.exists(path):  # else another process built it meanwhile
                    remove_former_index(path)
                    built = self._build(path, sql, params, callback)
                    if built is not None:
                        return _summaries(built)
        with self._connect(path, BUSY_SECONDS, searching=True) as conn:
            if not reconcile and self._version(conn) != SCHEMA_VERSION:
                # Deleted or built again since the first page: not the index it paged.
                raise Unindexable("the index was built again while its pages were read")
            self._prepare(conn, path, callback)
            restriction = self.source.restriction()
            if restriction is not None:
                # The search's SQL names the table ``runs``: a temporary view of that name,
                # found before the table, shows it this store's runs alone.
                head = restriction.replace("'", "''")
                conn.execute(
                    "CREATE TEMP VIEW runs AS SELECT * FROM main.runs "
                    f"WHERE substr(fingerprint, 1, {len(restriction)}) = '{head}'"
                )
            if not reconcile:
                return _summaries(conn.execute(sql, params).fetchall())
            stamped_at = time.time()
            conn.execute("BEGIN")
            try:
                state = _state(conn)
                stored = _stored(conn, path, state)
                # The answer of the index as it is, read while the runs are stamped (both
                # leave the GIL: the stamps on the core's threads, the query on this one): it
                # is the answer when nothing changed, the common case.
                with ThreadPoolExecutor(max_workers=1) as pool:
                    stamping = pool.submit(self._changes, stored, state)
                    found = conn.execute(sql, params).fetchall() if len(stored) else None
                    changes = stamping.result()
                if changes is None:  # another thread of this process moved the copy on
                    stored = _stored(conn, path, state, cached=False)
                    changes = self._changes(stored, state)
                    assert changes is not None  # a copy of its own, at its state
                stale, gone = changes
                if not stale and not gone:
                    if found is None:
                        found = conn.execute(sql, params).fetchall()
                    conn.execute("COMMIT")
                    return _summaries(found)
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            fingerprints = {run_id: fingerprint for run_id, fingerprint, _ in stale}
            # The listings saved for the next process on a thread of their own (the core
            # leaves the GIL) while the runs are summarized and written: 60-150 ms of a
            # search after a pipeline's thousand runs, no longer added to it.
            with ThreadPoolExecutor(max_workers=1) as saver:
                saving = saver.submit(self.source.save_for_next_process)
                with callback.phase("indexing runs", len(stale), "items"):
                    summaries = self.source.summaries(list(fingerprints), callback.advance)
                rows = []
                gone = list(gone)
                for run_id, summary in summaries.items():
                    if summary is None:
                        gone.append(run_id)
                    else:
                        rows.append(_rows(run_id, summary, fingerprints[run_id], stamped_at))
                conn.execute("BEGIN IMMEDIATE")
                try:
                    before = _state(conn)
                    put, removed = _write(conn, rows, gone, stamped_at)
                    after = _state(conn)
                    found = conn.execute(sql, params).fetchall()
                    conn.execute("COMMIT")
                finally:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                _applied(path, before, after, put, removed)
                _save_stamps(path, after)
                saving.result()
            return _summaries(found)

    def _changes(self, stored: _core.StoredStamps, state: tuple[str, str]) -> Changes | None:
        """The source's changes against ``stored`` (see ``RunSource.changes``); when there
        are none, the listings are saved for the next process at once, beside the query."""
        changes = self.source.changes(stored, state, RACY_SECONDS)
        if changes is not None and not changes[0] and not changes[1]:
            self.source.save_for_next_process()
        return changes

    # --- building from nothing ------------------------------------------------------------------

    def _build(
        self, path: str, sql: str, params: list[Any], callback: Callback
    ) -> list[tuple[Any, ...]] | None:
        """Build the missing index ``path`` whole in a file of its own, then link it into
        place, and answer the search from it; None when it cannot be linked (a file system
        without hard links): it is then copied into a file made in place (``_copy_build``),
        which the caller searches.

        The file is written without a journal and without syncs (a build killed half way
        leaves a temporary file, never a half index: the next build removes it once it is
        old), the secondary indexes made once the rows are in, and only then switched to WAL
        and linked under its name, which fails if another process linked its own meanwhile
        (kept: both were built from stamps taken after the search began). A file is never
        renamed over an index: a WAL left beside it would be replayed into the new one."""
        _sweep_builds(path)
        temp = f"{path}.build-{uuid.uuid4().hex}"
        try:
            with _collector_paused():
                found, epoch, put = self._fill(temp, sql, params, callback)
            try:
                os.link(temp, path)
            except FileExistsError:
                log.info("run index %s was built by another process meanwhile", path)
                return found
            except OSError as exc:
                log.info("run index %s cannot be linked into place (%s): copied in", path, exc)
                with self._connect(path, BUSY_SECONDS, searching=True) as conn:
                    self._prepare(conn, path, callback, built=temp)
                return None  # the caller searches the file now filled
            _keep_stored(path, _core.StoredStamps((epoch, "1"), put))
            return found
        finally:
            _remove_build(temp)

    def _fill(
        self,
        temp: str,
        sql: str | None,
        params: list[Any],
        callback: Callback,
        secondary: bool = True,
    ) -> tuple[list[tuple[Any, ...]], str, list[tuple[str, str, float]]]:
        """Stamp every run, summarize and insert them into the new file ``temp``, and answer
        the search ``sql`` (when given): the answer, the file's epoch and the stamps put. The
        secondary indexes are left out with ``secondary`` false (a build copied into another
        file, which makes its own).

        The runs of a log folder are read, summarized and inserted by the core
        (``_core.IndexBuilder``: reading on this process's threads while a thread of its own
        inserts), which also makes the tables and, once the rows are in, their secondary
        indexes. The runs it hands back (unreadable ones, and the rare summary only Python
        makes rows of), and every run of a store that is no log folder, are summarized and
        inserted here, in the file the core has closed."""
        epoch = uuid.uuid4().hex
        stamped_at = time.time()
        empty = _core.StoredStamps((epoch, "0"), [])
        changes = self.source.changes(empty, (epoch, "0"), RACY_SECONDS)
        assert changes is not None  # a copy of its own
        self.source.save_for_next_process()
        fingerprints = {run_id: fingerprint for run_id, fingerprint, _ in changes[0]}
        reads = self.source.core_reads()
        by_core, by_python = _split(list(fingerprints), reads is not None)
        folder, fsync, lock_timeout = reads or ("", True, 60.0)
        put: list[tuple[str, str, float]] = []
        secondary_statements = _BUILD_SECONDARY if secondary else []
        with callback.phase("indexing runs", len(fingerprints), "items"):
            builder = _core.IndexBuilder(
                temp,
                _build_setup(epoch),
                _BUILD_INSERTS,
                [(statement, []) for statement in (*secondary_statements, "COMMIT")],
                folder,
                indexed_at=stamped_at,
                fsync=fsync,
                lock_timeout=lock_timeout,
            )
            try:
                for at in range(0, len(by_core), BUILD_BATCH):
                    batch = by_core[at : at + BUILD_BATCH]
                    gone, left = builder.add(
                        [(r, fingerprints[r].partition(" ")[0], fingerprints[r]) for r in batch]
                    )
                    # Left to Python, read below; gone, not put.
                    skipped = set(gone).union(left)
                    put.extend((r, fingerprints[r], stamped_at) for r in batch if r not in skipped)
                    by_python.extend(left)
                    callback.advance(len(batch) - len(left))
                builder.finish()
            except BaseException:
                # The core's SQLite closes the file before this process's opens it: two copies
                # of SQLite must never have one file open at once (rust/index/build.rs).
                builder.abandon()
                raise
            conn = sqlite3.connect(temp, isolation_level=None, check_same_thread=False)
            try:
                for pragma in BUILD_PRAGMAS:
                    conn.execute(pragma)
                conn.execute("BEGIN")
                for at in range(0, len(by_python), BUILD_BATCH):
                    batch = by_python[at : at + BUILD_BATCH]
                    summaries = self.source.summaries(batch, callback.advance)
                    rows = [
                        _rows(run_id, summary, fingerprints[run_id], stamped_at)
                        for run_id, summary in summaries.items()
                        if summary is not None
                    ]
                    _insert(conn, rows)
                    put.extend((_run_id(r), fingerprints[_run_id(r)], stamped_at) for r in rows)
                conn.execute("COMMIT")
                found = [] if sql is None else self._answer(conn, sql, params)
                conn.execute("PRAGMA locking_mode = NORMAL")
                conn.execute("PRAGMA journal_mode = WAL")
            finally:
                conn.close()
        return found, epoch, put

    def _answer(self, conn: sqlite3.Connection, sql: str, params: list[Any]) -> list[Any]:
        """The search's answer from a connection to a built file."""
        restriction = self.source.restriction()
        if restriction is not None:
            head = restriction.replace("'", "''")
            conn.execute(
                "CREATE TEMP VIEW runs AS SELECT * FROM main.runs "
                f"WHERE substr(fingerprint, 1, {len(restriction)}) = '{head}'"
            )
        return conn.execute(sql, params).fetchall()

    # --- writers' hooks --------------------------------------------------------------------------

    def note(self, run_id: str) -> None:
        """Summarize one run into the index, if there is an index (a write never creates it).
        Errors are the caller's to swallow; a lock held long is given up on quickly."""
        path = self.source.index_path()
        if path is None or not os.path.exists(path):
            return
        stamped_at = time.time()
        stamp = self.source.stamp(run_id)
        summary = None
        if stamp is not None:
            summary = self.source.summaries([run_id], NO_PROGRESS.advance).get(run_id)
        rows = (
            []
            if stamp is None or summary is None
            else [_rows(run_id, summary, stamp[0], stamped_at)]
        )
        check_names([run_id])
        try:
            with self._connect(path, NOTE_BUSY_SECONDS) as conn:
                if self._version(conn) != SCHEMA_VERSION:
                    return  # the next search rebuilds it
                conn.execute("BEGIN IMMEDIATE")
                try:
                    before = _state(conn)
                    put, removed = _write(conn, rows, [] if rows else [run_id], stamped_at)
                    after = _state(conn)
                    conn.execute("COMMIT")
                finally:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                _applied(path, before, after, put, removed)
        except sqlite3.Error as exc:
            if not _is_busy(exc):
                raise
            # A search is bringing the index up to date: it reads this run itself if it must.
            log.debug("run index %s busy: run %r left to the next search", path, run_id)


# A WAL this large is copied into the file by another thread once the search has answered.
BACKGROUND_WAL_BYTES = 4 << 20


def _close(conn: sqlite3.Connection, path: str) -> None:
    """Close a search's connection. Closing the last connection to a file, or a checkpoint,
    copies the pages of its WAL into it and syncs it: the 1,000 runs a search after many
    changes wrote, 0.3-0.8 s. With more than ``BACKGROUND_WAL_BYTES`` in the WAL that is done
    by a thread of its own, after the answer, which the process waits for before it exits (the
    thread is not a daemon). A WAL left behind would cost every later process: the first
    connection to a file reads its WAL back whole (SQLite rebuilds the WAL's index from it), and
    a copy cut short by the exit is begun again from the start, so a folder searched only by
    short processes (the command line) kept a build's 550 MB WAL and read it, 0.2 s, at every
    search."""
    try:
        wal = os.stat(path + "-wal").st_size
    except OSError:
        wal = 0
    if wal < BACKGROUND_WAL_BYTES:
        conn.close()
        return
    threading.Thread(
        target=_checkpoint, args=(conn,), name="runlog-index-checkpoint", daemon=False
    ).start()


def _checkpoint(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    except sqlite3.Error as exc:  # busy or gone: the next connection does it
        log.debug("run index checkpoint left to the next connection: %s", exc)
    finally:
        conn.close()


def _state(conn: sqlite3.Connection) -> tuple[str, str]:
    """The file's (epoch, generation), in the caller's transaction (empty when not there)."""
    found = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('epoch', 'generation')"))
    return str(found.get("epoch", "")), str(found.get("generation", ""))


def _stored(
    conn: sqlite3.Connection, path: str, state: tuple[str, str], cached: bool = True
) -> _core.StoredStamps:
    """Every run's recorded stamp, in the caller's read transaction at ``state``: from this
    process's copy when it is at that state (nothing written since it was read)."""
    with _STORED_LOCK:
        copy = _STORED.get(path)
    if cached and copy is not None and copy.state == state:
        return copy
    # Saved by another process at this very state of the file (``_core.StoredStamps.load``),
    # else read from SQLite and saved for the next process. Read lazily: a search whose runs
    # the saved listings mark current against this state never needs them (a copy read again
    # because a lazy one could not be, ``cached=False``, is read now).
    saved = beside_index(path, ".stamps")
    loaded = _core.StoredStamps.load(saved, state, lazy=cached) if all(state) else None
    if loaded is not None:
        stored = loaded
    else:
        rows = conn.execute("SELECT run_id, fingerprint, indexed_at FROM main.runs").fetchall()
        stored = _core.StoredStamps(state, rows)
        if all(state):
            _save_for_next_process(stored, path)
    if all(state):
        _remember(path, stored)
    return stored


def _remember(path: str, stored: _core.StoredStamps) -> None:
    """``stored`` as this process's copy of the stamps of index ``path``; the oldest copy
    is dropped past ``_STORED_PATHS`` indexes."""
    with _STORED_LOCK:
        if path not in _STORED and len(_STORED) >= _STORED_PATHS:
            _STORED.pop(next(iter(_STORED)))
        _STORED[path] = stored


def _applied(
    path: str,
    before: tuple[str, str],
    after: tuple[str, str],
    put: list[tuple[str, str, float]],
    removed: list[str],
) -> None:
    """A committed write (from ``before`` to ``after``) applied to this process's copy of the
    stamps, if the copy was at ``before`` (else it is read again when next needed)."""
    with _STORED_LOCK:
        copy = _STORED.get(path)
    if copy is not None and all(before) and all(after):
        copy.apply(before, after, put, removed)


def _save_stamps(path: str, state: tuple[str, str]) -> None:
    """Save this process's copy of the stamps, at ``state`` after a search wrote the index, for
    the next process: without it, that process reads every row from SQLite (its saved listings
    may mark every run current, needing none of them). Not after a writer's note: a write of
    every row's stamp at every status a run takes."""
    with _STORED_LOCK:
        copy = _STORED.get(path)
    if copy is not None and copy.state == state and all(state):
        _save_for_next_process(copy, path)


def _save_for_next_process(stored: _core.StoredStamps, path: str) -> None:
    """Save ``stored`` beside index ``path`` for the next process (see ``_stored``), unless the
    file holds their state already."""
    try:
        stored.save(beside_index(path, ".stamps"))
    except OSError as exc:  # a cache: the next process reads them from SQLite
        log.debug("stamps of %s not saved: %s", path, exc)


def _write(
    conn: sqlite3.Connection,
    rows: Sequence[query.IndexRows],
    gone: Sequence[str],
    stamped_at: float,
) -> tuple[list[tuple[str, str, float]], list[str]]:
    """Put the rows of runs summarized from stamps taken at ``stamped_at`` and delete runs
    found gone then, except where a row stamped later is there already (another process read
    the run after this one did). Returns the stamps put, ``(run_id, fingerprint, indexed_at)``,
    and the run ids whose rows were deleted."""
    touched = list(dict.fromkeys([*gone, *(_run_id(r) for r in rows)]))
    recorded = _recorded(conn, touched)
    newer = {run_id for run_id, (indexed_at, _) in recorded.items() if indexed_at > stamped_at}
    # Rows in run id order: the tables' B-trees grow at their ends instead of splitting pages.
    replaced = sorted((r for r in rows if _run_id(r) not in newer), key=_run_id)
    removed = [(run_id,) for run_id in touched if run_id in recorded and run_id not in newer]
    kept = {run_id for (run_id,) in removed}.difference(gone)
    # A run summarized again mostly changed its status or times, not its parameters, metrics
    # or steps: those of its rows that are as stored stay (a delete and an insert in each
    # table's B-tree and its indexes, per row, for nothing: two thirds of the write of a
    # thousand runs whose status runnable's store flipped).
    unchanged = _unchanged(conn, [r for r in replaced if _run_id(r) in kept])
    for table in _TABLES[1:]:
        conn.executemany(
            f"DELETE FROM main.{table} WHERE run_key = ?",
            [(recorded[r][1],) for (r,) in removed if (r, table) not in unchanged],
        )
    # A run indexed again keeps its row, updated in place below, and with it its key, which
    # its rows left unchanged hold.
    conn.executemany(
        "DELETE FROM main.runs WHERE run_id = ?", [key for key in removed if key[0] not in kept]
    )
    # Many rows into empty tables (a build): the secondary indexes are made after the rows,
    # one sort each, not grown a row at a time.
    bulk = len(replaced) >= BULK_ROWS and not recorded and _empty(conn)
    if bulk:
        for name in _SECONDARY_NAMES:
            conn.execute(f'DROP INDEX IF EXISTS main."{name}"')
    _insert(conn, replaced, unchanged)
    if bulk:
        for statement in _SECONDARY:
            conn.execute(statement)
    conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'generation'")
    fingerprint_at = query.RUN_COLUMNS.index("fingerprint")
    put = [(_run_id(r), str(r.run[fingerprint_at]), stamped_at) for r in replaced]
    return put, [run_id for (run_id,) in removed]


def _unchanged(conn: sqlite3.Connection, rows: Sequence[query.IndexRows]) -> set[tuple[str, str]]:
    """``(run_id, table)`` for each table of ``params``, ``metrics`` and ``steps`` that holds
    exactly these rows of the run already (read back as stored: a number is a REAL, equal to
    the int it was written from)."""
    if not rows:
        return set()
    by_run = {_run_id(r): r for r in rows}
    run_ids = list(by_run)
    same: set[tuple[str, str]] = set()
    for table in _TABLES[1:]:
        stored: dict[str, set[tuple[Any, ...]]] = {run_id: set() for run_id in run_ids}
        columns = query.STEP_COLUMNS if table == "steps" else query.VALUE_COLUMNS
        select = (
            f"SELECT r.run_id, {', '.join(f't.{c}' for c in columns)} "
            f"FROM main.{table} AS t JOIN main.runs AS r USING (run_key)"
        )
        for row in _rows_of_runs(conn, select, run_ids):
            stored[row[0]].add(tuple(row))
        for run_id, run_rows in by_run.items():
            new = getattr(run_rows, table)
            if len(new) == len(stored[run_id]) and stored[run_id] == set(map(tuple, new)):
                same.add((run_id, table))
    return same


def _empty(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM main.runs LIMIT 1").fetchone() is None


def _rows(
    run_id: str, summary: RunSummary | dict[str, Any], fingerprint: str, stamped_at: float
) -> query.IndexRows:
    """The rows of a run (its summary, or the dict of its fields), keyed by the name it is
    listed under: a document that names another run (a copy) must not take that run's
    place."""
    rows = query.rows_of(summary, fingerprint, stamped_at)
    if rows.run[0] == run_id:
        return rows
    return query.IndexRows(
        (run_id, *rows.run[1:]),
        [(run_id, *row[1:]) for row in rows.params],
        [(run_id, *row[1:]) for row in rows.metrics],
        [(run_id, *row[1:]) for row in rows.steps],
    )


def _recorded(conn: sqlite3.Connection, run_ids: Sequence[str]) -> dict[str, tuple[float, int]]:
    """The ``indexed_at`` and key of those of these runs that have a row."""
    select = "SELECT run_id, indexed_at, run_key FROM main.runs"
    return {run_id: (at, key) for run_id, at, key in _rows_of_runs(conn, select, run_ids)}


def _rows_of_runs(
    conn: sqlite3.Connection, select: str, run_ids: Sequence[str]
) -> Iterator[tuple[Any, ...]]:
    """The rows ``select`` finds for these runs (``WHERE run_id IN``, 500 ids a statement:
    SQLite bounds a statement's parameters)."""
    for start in range(0, len(run_ids), 500):
        batch = run_ids[start : start + 500]
        marks = ", ".join("?" * len(batch))
        yield from conn.execute(f"{select} WHERE run_id IN ({marks})", batch)


def _run_id(rows: query.IndexRows) -> str:
    return str(rows.run[0])


# The inserts of the rows of a run's parameters, metrics and steps, by the field of
# ``query.IndexRows`` that holds them.
_INSERTS = (
    ("params", query.INSERT_PARAM),
    ("metrics", query.INSERT_METRIC),
    ("steps", query.INSERT_STEP),
)
# A build's inserts (``_core.IndexBuilder``): each run's row as a new one, then the rows of its
# parameters, metrics and steps with the key SQLite gave it, which the core binds first.
_BUILD_INSERTS = (query.INSERT_NEW_RUN, *(statement for _, statement in _INSERTS))


# The secondary indexes of the tables (every CREATE INDEX of the schema, made in ``main``), and
# how many rows into empty tables make them after the rows rather than before.
_SECONDARY = [
    statement.replace("CREATE INDEX IF NOT EXISTS ", "CREATE INDEX IF NOT EXISTS main.", 1)
    for statement in (
        "\n".join(line for line in s.splitlines() if not line.startswith("--"))
        for s in _statements(query.INDEX_SCHEMA)
    )
    if statement.startswith("CREATE INDEX")
]
_SECONDARY.append(STAMPS_INDEX)
_SECONDARY_NAMES = [statement.split()[5].split(".", 1)[1] for statement in _SECONDARY]
BULK_ROWS = 1000


# A build's file: no journal, no syncs, no other process in it until it is linked into place,
# and the sorts of its indexes on a second thread.
BUILD_PRAGMAS = (
    # Before the first table: pages of 8 KiB took a build's inserts and index sorts an eighth
    # and a third less time than 4 KiB ones (and 16 or 64 KiB no less).
    "PRAGMA page_size = 8192",
    "PRAGMA journal_mode = OFF",
    "PRAGMA synchronous = OFF",
    "PRAGMA locking_mode = EXCLUSIVE",
    f"PRAGMA cache_size = -{CACHE_KIB}",
    "PRAGMA threads = 2",
)


def _build_setup(epoch: str) -> list[tuple[str, list[str]]]:
    """The statements that make a build's file, with their parameters: its pragmas, the
    tables without their secondary indexes, and the meta rows, in a transaction the build's
    end commits."""
    statements = (*BUILD_PRAGMAS, "BEGIN", META_SCHEMA, *_TABLE_STATEMENTS)
    made: list[tuple[str, list[str]]] = [(statement, []) for statement in statements]
    meta = [("version", SCHEMA_VERSION), ("epoch", epoch), ("generation", "1")]
    return made + [("INSERT INTO meta VALUES (?, ?)", [key, value]) for key, value in meta]


# The secondary indexes made at a build's end. A small cache makes each index's sort spill
# sorted runs to the file, which SQLite sorts on its worker threads (``threads``) while it reads
# on: a fourth less time than sorting every entry at once in a cache that holds them all.
_BUILD_SECONDARY = ["PRAGMA cache_size = -2048", *_SECONDARY]
# Runs summarized at once in a build (the progress moves by a batch).
BUILD_BATCH = 2048
# A build's temporary file untouched for this long was left by a build killed half way.
STALE_BUILD_SECONDS = 3600.0
# The tables of the schema without their secondary indexes (made after a build's rows).
_TABLE_STATEMENTS = [
    statement
    for statement in (
        "\n".join(line for line in s.splitlines() if not line.startswith("--"))
        for s in _statements(query.INDEX_SCHEMA)
    )
    if not statement.startswith("CREATE INDEX")
]

# Each table's statement naming the ``main`` schema, as ``_copy_build`` makes them beside a build.
_MAIN_TABLES = {
    statement.split()[5]: statement.replace(
        "CREATE TABLE IF NOT EXISTS ", "CREATE TABLE IF NOT EXISTS main.", 1
    )
    for statement in (META_SCHEMA, *_TABLE_STATEMENTS)
}


def _split(run_ids: list[str], core_reads: bool) -> tuple[list[str], list[str]]:
    """The runs the core reads for a build (when it reads the store's runs at all: those whose
    names are valid run ids) and those read in Python, each in run id order."""
    from runlog_store.ops.runs import run_id_problem

    run_ids.sort()
    if not core_reads:
        return [], run_ids
    by_core: list[str] = []
    by_python: list[str] = []
    for run_id in run_ids:
        (by_core if run_id_problem(run_id) is None else by_python).append(run_id)
    return by_core, by_python


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic collector paused for a build: millions of rows are made and dropped,
    none in a cycle, and its passes over them were a tenth of a build's time."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _keep_stored(path: str, stored: _core.StoredStamps) -> None:
    """``stored``, the stamps of a file just built, as this process's copy of index ``path``
    and saved for the next process."""
    _remember(path, stored)
    _save_for_next_process(stored, path)


@contextlib.contextmanager
def _build_turn(path: str, callback: Callback) -> Iterator[None]:
    """Hold the build lock of index ``path`` (``<name>.build.lock`` beside it, an exclusive
    ``flock``) while the block builds the index: a search that finds another process building
    it waits for that build (at most ``BUILD_TURN_SECONDS``), then finds the index made and
    searches it, instead of reading every run a second time for a build of its own. The
    caller checks again under the lock whether the index still needs a build.

    A lock that cannot be had (the wait ran out, a symbolic link in its place, which is never
    followed, a folder where it cannot be made) is logged and the block runs without it: two
    builds then race as they would without the lock, which each build survives (``_build``,
    ``_copy_build``). A killed holder's lock is released by the kernel."""
    name = beside_index(path, ".build.lock")
    held = contextlib.ExitStack()
    try:
        try:
            held.enter_context(_core.FileLock(name, 0.0))
        except LockTimeoutError:  # held: another process is building the index
            with callback.phase("waiting for another process's build of the index", 0, "items"):
                held.enter_context(_core.FileLock(name, BUILD_TURN_SECONDS))
    except (RunLogStoreError, OSError) as exc:
        log.warning("run index %s built without its build lock: %s", path, exc)
    with held:
        yield


def _remove_build(temp: str) -> None:
    """Remove a build's file, with the WAL and shared memory a reading of it may have left."""
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            os.remove(temp + suffix)


def _sweep_builds(path: str) -> None:
    """Remove the temporary files of builds of ``path`` killed half way (untouched for
    ``STALE_BUILD_SECONDS``)."""
    folder, name = os.path.split(path)
    try:
        entries = list(os.scandir(folder or "."))
    except OSError:
        return
    now = time.time()
    for entry in entries:
        if not entry.name.startswith(name + ".build-"):
            continue
        with contextlib.suppress(OSError):
            if now - entry.stat(follow_symlinks=False).st_mtime > STALE_BUILD_SECONDS:
                os.remove(entry.path)


def _insert(
    conn: sqlite3.Connection,
    rows: Sequence[query.IndexRows],
    unchanged: Collection[tuple[str, str]] = (),
) -> None:
    """Insert the rows of these runs, but those of a table ``unchanged`` says are stored (the
    fields of ``query.IndexRows`` but ``run`` are named after their tables): each run's own
    row first, then the others with the key it has."""
    conn.executemany(query.INSERT_RUN, [r.run for r in rows])
    select = "SELECT run_id, run_key FROM main.runs"
    keys = dict(_rows_of_runs(conn, select, [_run_id(r) for r in rows]))
    for field, statement in _INSERTS:
        conn.executemany(
            statement,
            [
                v
                for r in rows
                if (_run_id(r), field) not in unchanged
                for v in query.with_key(getattr(r, field), keys[_run_id(r)])
            ],
        )


def _summaries(found: list[tuple[Any, ...]]) -> list[RunSummary]:
    try:
        return [RunSummary.model_validate_json(row[0]) for row in found]
    except pydantic.ValidationError as exc:
        # Only this library writes the summaries: one that does not read back is damage.
        raise _Corrupt(f"a stored summary does not read back: {exc.errors()[0]['msg']}") from exc


__all__ = ["BUSY_SECONDS", "RACY_SECONDS", "SCHEMA_VERSION", "RunIndex"]
