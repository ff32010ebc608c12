"""The run index of the stores in a log folder (file-system, chunked-fs, a project's folder):
every answer equals a read of every run, whatever was done to the runs or to the index file.

Runs are written by these stores, by runnable 0.50's own, and by hand (copies, removals, a run
rewritten in place); the index file is damaged, truncated, locked by another process, deleted,
of another version, or cannot live in a read-only folder; processes search while others write.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydantic_core
import pytest
from extensions.run_log_store.chunked_fs import (
    ChunkedFileSystemRunLogStore as RunnableChunkedFs,
)
from extensions.run_log_store.file_system import FileSystemRunLogstore as RunnableFileSystem
from pydantic import PrivateAttr
from runnable.datastore import JsonParameter as RunnableJsonParameter
from runnable.datastore import StepAttempt as RunnableAttempt

from runlog_store import (
    BaseRunLogStore,
    JsonParameter,
    MetricParameter,
    RunLog,
    _core,
    create_store,
)
from runlog_store.callbacks import RecordingCallback
from runlog_store.exceptions import RunLogNotFoundError
from runlog_store.search import index as index_module
from runlog_store.search import query
from runlog_store.search.sources import (
    FORMER_INDEX_FILE,
    INDEX_FILE,
    INDEX_FOLDER,
    beside_index,
    folder_index_path,
)
from runlog_store.stores.project import ProjectRunLogStore
from runlog_store.testing.store.search import (
    FILTERS,
    ORDERS,
    comparable,
    scanned,
    write_runs,
)

FOLDER_TYPES = ["file-system", "chunked-fs", "runnable-project"]
# The index file, relative to the log folder.
INDEX = f"{INDEX_FOLDER}/{INDEX_FILE}"


def _store(kind: str, folder: Path | str) -> BaseRunLogStore:
    if kind == "runnable-project":
        return ProjectRunLogStore(log_folder=str(folder), fsync=False)
    return create_store(kind, log_folder=str(folder), fsync=False)


def assert_answers_equal_scan(
    store: BaseRunLogStore, filters: tuple[str | None, ...] = FILTERS
) -> None:
    for filter in filters:
        for order_by in ORDERS:
            page = store.search_runs(filter, order_by, max_results=10_000)
            assert comparable(page.runs) == comparable(scanned(store, filter, order_by)), (
                filter,
                order_by,
            )


def _ids(store: BaseRunLogStore, filter: str | None = None) -> list[str]:
    return [r.run_id for r in store.search_runs(filter, "run_id", max_results=10_000).runs]


def _indexed(callback: RecordingCallback) -> int:
    """How many runs a search read into the index."""
    return sum(
        done
        for (what, _, _), done in zip(callback.phases, callback.done, strict=True)
        if what == "indexing runs"
    )


def _counting_fills(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The keyword arguments of every build (``RunIndex._fill``) this process makes."""
    fills: list[dict[str, Any]] = []
    fill = index_module.RunIndex._fill
    monkeypatch.setattr(
        index_module.RunIndex, "_fill", lambda *a, **k: fills.append(k) or fill(*a, **k)
    )
    return fills


def _settle() -> None:
    """Wait out the racy window: runs written before this are not read again for it."""
    time.sleep(index_module.RACY_SECONDS * 2 + 0.02)


# --- runs by runnable's own stores ------------------------------------------------------------


def _runnable_runs(folder: Path) -> None:
    """Runs written by runnable 0.50's file-system and chunked-fs stores into one folder."""
    for store, prefix in (
        (RunnableFileSystem(log_folder=str(folder)), "theirs-fs"),
        (RunnableChunkedFs(log_folder=str(folder)), "theirs-chunked"),
    ):
        for i, status in enumerate(("SUCCESS", "FAIL", "PROCESSING")):
            run_id = f"{prefix}-{i}"
            store.create_run_log(run_id, dag_hash=f"h{i}", tag="nightly" if i else "adhoc")
            store.set_parameters(
                run_id,
                {
                    "lr": RunnableJsonParameter(kind="json", value=0.1 * (i + 1)),
                    "model": RunnableJsonParameter(kind="json", value="xgb" if i else "lgbm"),
                },
            )
            step = store.create_step_log("train", "train")
            step.status = "FAIL" if status == "FAIL" else "SUCCESS"
            step.attempts.append(
                RunnableAttempt(
                    status=step.status,
                    start_time=f"2026-01-0{i + 1} 10:00:00",
                    end_time=f"2026-01-0{i + 1} 10:00:{10 * i + 5:02d}",
                )
            )
            store.add_step_log(step, run_id)
            store.update_run_log_status(run_id, status)


@pytest.mark.parametrize("kind", FOLDER_TYPES)
def test_runs_written_by_runnable_are_searched(tmp_path: Path, kind: str) -> None:
    _runnable_runs(tmp_path)
    store = _store(kind, tmp_path)
    assert_answers_equal_scan(store)
    expected = {
        "file-system": ["theirs-fs-1"],
        "chunked-fs": ["theirs-chunked-1"],
        "runnable-project": ["theirs-chunked-1", "theirs-fs-1"],
    }[kind]
    assert _ids(store, "status = 'FAIL'") == expected
    assert (tmp_path / INDEX).is_file()
    # runnable goes on writing: the next search sees it
    theirs = RunnableFileSystem(log_folder=str(tmp_path))
    theirs.update_run_log_status("theirs-fs-2", "FAIL")
    assert_answers_equal_scan(store)
    assert ("theirs-fs-2" in _ids(store, "status = 'FAIL'")) == (kind != "chunked-fs")


def test_one_index_serves_every_store_of_the_folder(tmp_path: Path) -> None:
    """file-system, chunked-fs and the project's store share the folder's index file, each
    seeing its own runs; a run id in both layouts leaves the file-system store to a scan."""
    _runnable_runs(tmp_path)
    stores = {kind: _store(kind, tmp_path) for kind in FOLDER_TYPES}
    for _ in range(2):
        for store in stores.values():
            assert_answers_equal_scan(store, (None, "status = 'SUCCESS'"))
    assert _ids(stores["file-system"]) == ["theirs-fs-0", "theirs-fs-1", "theirs-fs-2"]
    shutil.copy(tmp_path / "theirs-fs-0.json", tmp_path / "theirs-chunked-0.json")
    for store in stores.values():
        assert_answers_equal_scan(store, (None, "status = 'SUCCESS'"))
    assert "theirs-chunked-0" in _ids(stores["file-system"])


def test_a_build_reads_every_kind_of_run_folder_as_a_scan_does(tmp_path: Path) -> None:
    """The first search builds the index from nothing, and reads a run folder that held only
    its RunLog.json (with or without the layout marker) when it was stamped as that one
    document, not as the store's read of the folder: runs of either store, with more
    documents or a journal, and what is wrong in a lone RunLog.json, answer as a scan does."""
    ours = _store("chunked-fs", tmp_path)
    write_runs(ours)  # RunLog.json and the layout marker; a running run keeps a journal
    _runnable_runs(tmp_path)  # RunLog.json and a StepLog document each
    RunnableChunkedFs(log_folder=str(tmp_path)).create_run_log("theirs-lone", tag="lone")
    assert sorted(os.listdir(tmp_path / "theirs-lone")) == ["RunLog.json"]
    # A copy that still names the run it was copied from; one run log too deep to read; one
    # that is no JSON: each a folder of one document, each unreadable to a scan.
    shutil.copytree(tmp_path / "search-1", tmp_path / "copy-1")
    (tmp_path / "deep").mkdir()
    deep = json.loads((tmp_path / "theirs-lone" / "RunLog.json").read_text())
    deep["run_id"], deep["tag"] = "deep", "x" * 8 + "[" * 200 + "]" * 200
    nested: Any = 1
    for _ in range(200):
        nested = [nested]
    deep["dag_hash"] = nested
    (tmp_path / "deep" / "RunLog.json").write_text(json.dumps(deep))
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "RunLog.json").write_bytes(b"\x00not json")
    callback = RecordingCallback()
    store = _store("chunked-fs", tmp_path)
    built = store.search_runs(None, "run_id", max_results=10_000, callback=callback)
    # Built by this search: every run of the folder read into the index (runnable's three
    # file-system runs beside them too: one index serves both layouts).
    assert _indexed(callback) == len(built.runs) + 3 > 10
    assert comparable(built.runs) == comparable(scanned(store, None, "run_id"))
    assert_answers_equal_scan(store)
    assert _ids(store, "status = 'UNREADABLE'") == ["copy-1", "deep", "garbage"]
    assert _ids(store, "tag = 'lone'") == ["theirs-lone"]


# --- runs changed by hand ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", FOLDER_TYPES)
def test_runs_copied_removed_and_changed_by_hand(tmp_path: Path, kind: str) -> None:
    store = _store(kind, tmp_path)
    write_runs(store)
    assert_answers_equal_scan(store)
    chunked = kind != "file-system"
    # cp -r of a run under a new id, its run id rewritten (and one copied as it is: unreadable)
    if chunked:
        subprocess.run(["cp", "-r", tmp_path / "search-1", tmp_path / "copy-1"], check=True)
        subprocess.run(["cp", "-r", tmp_path / "search-2", tmp_path / "copy-2"], check=True)
        document = tmp_path / "copy-1" / "RunLog.json"
    else:
        subprocess.run(["cp", tmp_path / "search-1.json", tmp_path / "copy-1.json"], check=True)
        subprocess.run(["cp", tmp_path / "search-2.json", tmp_path / "copy-2.json"], check=True)
        document = tmp_path / "copy-1.json"
    data = json.loads(document.read_text())
    data["run_id"] = "copy-1"
    document.write_text(json.dumps(data))
    assert_answers_equal_scan(store)
    assert "copy-1" in _ids(store, "status = 'SUCCESS'")
    assert _ids(store, "status = 'UNREADABLE'") == ["copy-2"]
    # rm -r of runs
    if chunked:
        subprocess.run(["rm", "-r", tmp_path / "search-2", tmp_path / "copy-2"], check=True)
    else:
        subprocess.run(["rm", tmp_path / "search-2.json", tmp_path / "copy-2.json"], check=True)
    assert_answers_equal_scan(store)
    assert "search-2" not in _ids(store)
    # a run document rewritten in place, the same size, its modification time put back
    _settle()
    target = tmp_path / ("search-3/RunLog.json" if chunked else "search-3.json")
    before = target.stat()
    text = target.read_bytes()
    changed = text.replace(b'"tag":"adhoc"', b'"tag":"adhok"')
    assert changed != text and len(changed) == len(text)
    with open(target, "r+b") as handle:
        handle.write(changed)
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert target.stat().st_ino == before.st_ino and target.stat().st_size == before.st_size
    assert_answers_equal_scan(store)
    assert _ids(store, "tag = 'adhok'") == ["search-3"]
    # a run that is no run log, and a name that is no run id
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "RunLog.json").write_bytes(b"\x00not json")
    (tmp_path / "garbage.json").write_bytes(b"{not json")
    assert_answers_equal_scan(store)
    assert "garbage" in _ids(store, "status = 'UNREADABLE'")


def test_a_run_summarized_again_rewrites_only_the_rows_that_changed(tmp_path: Path) -> None:
    """A run read again into the index keeps its rows of parameters, metrics and steps where
    they are as stored (a status flipped rewrites its run row alone), and each table that
    changed is rewritten whole: a value changed, a name added or gone."""
    from runlog_store.ops.runs import summarize

    store = _store("file-system", tmp_path)
    write_runs(store)
    store.search_runs()
    summaries = {r: summarize(store.get_run_log_json(r)) for r in store.list_run_ids()}
    run_id, summary = next((r, s) for r, s in summaries.items() if s.params and s.metrics)
    conn = sqlite3.connect(tmp_path / INDEX, isolation_level=None)
    tables = ("params", "metrics", "steps")

    def stored() -> dict[str, list[tuple[Any, ...]]]:
        """The run's rows of each table, as ``rows_of`` makes them (the run id, then the
        columns after the run's key), and its key, under ``"key"``."""
        found = {
            t: conn.execute(
                f"SELECT r.run_id, {', '.join(f'v.{c}' for c in columns(t))} "
                f"FROM {t} AS v JOIN runs AS r USING (run_key) WHERE r.run_id = ?",
                (run_id,),
            ).fetchall()
            for t in tables
        }
        found["key"] = conn.execute(
            "SELECT run_key FROM runs WHERE run_id = ?", (run_id,)
        ).fetchall()
        # No row of a parameter, metric or step belongs to no run.
        for t in tables:
            orphans = f"SELECT count(*) FROM {t} WHERE run_key NOT IN (SELECT run_key FROM runs)"
            assert conn.execute(orphans).fetchone() == (0,), t
        return found

    def columns(table: str) -> tuple[str, ...]:
        return query.STEP_COLUMNS if table == "steps" else query.VALUE_COLUMNS

    def write(changed: Any) -> int:
        """Rows deleted, inserted and replaced by a write of the run summarized as ``changed``."""
        rows = index_module._rows(run_id, changed, "changed", time.time())
        before = conn.total_changes
        conn.execute("BEGIN IMMEDIATE")
        index_module._write(conn, [rows], [], time.time())
        conn.execute("COMMIT")
        return conn.total_changes - before

    as_indexed = stored()
    # The run's row replaced, the generation moved on; no other row.
    flipped = "FAIL" if summary.status == "SUCCESS" else "SUCCESS"
    assert write(summary.model_copy(update={"status": flipped})) <= 3
    assert stored() == as_indexed
    status = conn.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    assert status == (flipped,)
    name = next(iter(summary.params))
    for params in (
        {**summary.params, name: "another value"},
        {**summary.params, "added": 1.5},
        {k: v for k, v in summary.params.items() if k != name},
    ):
        changed = summary.model_copy(update={"params": params})
        assert write(changed) > 3
        now = stored()
        assert sorted(now["params"]) == sorted(index_module._rows(run_id, changed, "", 0).params)
        assert now["metrics"] == as_indexed["metrics"] and now["steps"] == as_indexed["steps"]
        assert now["key"] == as_indexed["key"]  # the run keeps its key, which its rows hold
    conn.close()
    # The run's stamp is not its fingerprint: read again, as a scan reads it.
    assert_answers_equal_scan(store)


def test_one_write_that_removes_adds_and_reindexes_runs_leaves_each_run_its_own_rows(
    tmp_path: Path,
) -> None:
    """The rows of a run's parameters, metrics and steps name it by its key. One write that
    removes the run of the highest key (which a run added next may take), adds a run and
    indexes another again (which keeps its key and its rows as they were) leaves every run
    with exactly its own rows, and no row of a run that is not there."""
    from runlog_store.ops.runs import summarize

    store = _store("file-system", tmp_path)
    write_runs(store)
    store.search_runs()
    summaries = {r: summarize(store.get_run_log_json(r)) for r in store.list_run_ids()}
    conn = sqlite3.connect(tmp_path / INDEX, isolation_level=None)
    keys = dict(conn.execute("SELECT run_id, run_key FROM runs"))
    last = max(keys, key=lambda r: keys[r])
    # The first run indexed: read into a new row, it would take another key.
    kept = min((r for r, s in summaries.items() if s.params and s.metrics), key=lambda r: keys[r])
    added = summaries[last].model_copy(
        update={"run_id": "search-added", "params": {"only": "mine"}, "metrics": {"m": 1.0}}
    )
    flipped = summaries[kept].model_copy(update={"status": "FAIL"})
    now = time.time()
    rows = [
        index_module._rows(r, s, "f", now) for r, s in (("search-added", added), (kept, flipped))
    ]
    conn.execute("BEGIN IMMEDIATE")
    index_module._write(conn, rows, [last], now)
    conn.execute("COMMIT")

    after = dict(conn.execute("SELECT run_id, run_key FROM runs"))
    assert last not in after and after[kept] == keys[kept]
    assert after["search-added"] == keys[last]  # the key of a run gone is taken again
    expected = {r: s for r, s in summaries.items() if r != last}
    expected.update({"search-added": added, kept: flipped})
    assert set(after) == set(expected)
    for table in ("params", "metrics", "steps"):
        columns = query.STEP_COLUMNS if table == "steps" else query.VALUE_COLUMNS
        found = sorted(
            conn.execute(
                f"SELECT r.run_id, {', '.join(f'v.{c}' for c in columns)} "
                f"FROM {table} AS v LEFT JOIN runs AS r USING (run_key)"
            ).fetchall(),
            key=repr,
        )
        made = [getattr(index_module._rows(r, s, "", 0), table) for r, s in expected.items()]
        assert found == sorted((row for rows in made for row in rows), key=repr), table
    conn.close()


def test_racy_runs_are_read_again_and_a_quiet_search_reads_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store("file-system", tmp_path)
    write_runs(store)
    first = RecordingCallback()
    store.search_runs(callback=first)
    assert _indexed(first) == 6
    # Runs changed within the racy window of the search that read them are read again by the
    # next one (a window of an hour here: every run is in it).
    monkeypatch.setattr(index_module, "RACY_SECONDS", 3600.0)
    again = RecordingCallback()
    store.search_runs(callback=again)
    assert _indexed(again) == 6
    monkeypatch.undo()
    _settle()
    store.search_runs()  # reads what was still racy once more, now long after it changed
    quiet = RecordingCallback()
    store.search_runs(callback=quiet)
    assert _indexed(quiet) == 0
    store.update_run_log_status("search-1", "FAIL")
    _settle()
    assert "search-1" in _ids(store, "status = 'FAIL'")
    one = RecordingCallback()
    store.search_runs(callback=one)
    assert _indexed(one) == 0, "the writer's hook and the search above indexed it already"


# --- the index file itself --------------------------------------------------------------------


@pytest.fixture
def searched(tmp_path: Path) -> BaseRunLogStore:
    store = _store("chunked-fs", tmp_path)
    write_runs(store)
    assert_answers_equal_scan(store, (None,))
    _settle()
    store.search_runs()  # the runs were racy at the first: read again, now settled
    return store


def _in_schema(data: bytes, damage: bytes) -> bytes:
    """``damage`` written over the middle of the first table definition of an SQLite file."""
    at = data.index(b"CREATE TABLE") + 20
    return data[:at] + damage + data[at + len(damage) :]


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: os.urandom(len(data)), id="garbage"),
        pytest.param(lambda data: data[: len(data) // 2], id="truncated"),
        pytest.param(lambda data: data[:100], id="header-only"),
        # bytes that are not UTF-8 in the table definitions: SQLite's error quotes them
        pytest.param(
            lambda data: _in_schema(data, b"\xe2\xdc" * 16) if data[:6] == b"SQLite" else data,
            id="schema",
        ),
        pytest.param(lambda data: b"", id="empty"),
    ],
)
def test_a_damaged_index_is_built_again(
    searched: BaseRunLogStore, tmp_path: Path, damage: Any, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / INDEX
    path.write_bytes(damage(path.read_bytes()))
    searched.update_run_log_status("search-3", "FAIL")
    with caplog.at_level(logging.WARNING, "runlog_store.search"):
        assert_answers_equal_scan(searched)
    if damage(b"x" * 4096) not in (b"", b"x" * 100):
        assert "is damaged" in caplog.text and "built again" in caplog.text
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT count(*) FROM runs").fetchone() == (6,)


def test_an_index_whose_summary_does_not_read_back_is_built_again(
    searched: BaseRunLogStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A stored summary damaged where SQLite cannot see it (inside its text): the search that
    reads it builds the index again and answers as a scan does."""
    with sqlite3.connect(tmp_path / INDEX) as db:
        db.execute("UPDATE runs SET summary = substr(summary, 1, 40)")
    with caplog.at_level(logging.WARNING, "runlog_store.search"):
        assert_answers_equal_scan(searched)
    assert "a stored summary does not read back" in caplog.text and "built again" in caplog.text


# Searches, one after another, in a process of their own, until the file `stop` appears; the
# count of searches printed at the end.
_SEARCH_UNTIL_STOPPED = """
import sys
from pathlib import Path
from runlog_store import create_store
store = create_store("chunked-fs", log_folder=sys.argv[1])
stop, count = Path(sys.argv[2]), 0
while not stop.exists():
    store.search_runs("status = 'SUCCESS' or params.p is not null", "start_time desc")
    count += 1
print(count)
"""


def test_an_index_cut_short_while_another_process_searches_it(
    searched: BaseRunLogStore, tmp_path: Path
) -> None:
    """The index file truncated again and again under a process that keeps searching it: no
    search fails and the process lives (an index read through a memory map would kill it with
    SIGBUS at the first page it reads past the new end)."""
    stop = tmp_path / "stop"
    searcher = subprocess.Popen(
        [sys.executable, "-c", _SEARCH_UNTIL_STOPPED, str(tmp_path), str(stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    cuts = 0
    try:
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline and searcher.poll() is None:
            try:
                size = (tmp_path / INDEX).stat().st_size
                os.truncate(tmp_path / INDEX, [0, 50, 4096, size // 2][cuts % 4])
                cuts += 1
            except FileNotFoundError:
                pass  # between a build's file and its link into place
            time.sleep(0.003)
    finally:
        stop.touch()
        out, err = searcher.communicate(timeout=60)
    assert searcher.returncode == 0, (
        f"the searching process ended with {searcher.returncode}:\n{err}"
    )
    assert cuts > 100 and int(out) > 10, f"{cuts} cuts, {out.strip()} searches: nothing was tried"
    assert_answers_equal_scan(searched)


# One search in a process of its own, which exits as soon as it has printed the answer. Its WAL
# is copied into the file after the answer however small it is, and that copy is slowed down
# as one of hundreds of MB is (a build's, or a thousand changed runs').
_SEARCH_AND_EXIT = """
import sys, time
from runlog_store import create_store
from runlog_store.search import index
index.BACKGROUND_WAL_BYTES = 0
checkpoint = index._checkpoint
def slow_checkpoint(conn):
    time.sleep(0.5)
    checkpoint(conn)
index._checkpoint = slow_checkpoint
store = create_store(sys.argv[1], log_folder=sys.argv[2])
print(len(store.search_runs(max_results=1000).runs))
"""


@pytest.mark.parametrize("kind", ["file-system", "chunked-fs"])
def test_a_process_that_exits_after_its_search_leaves_no_wal_behind(
    tmp_path: Path, kind: str
) -> None:
    """A process whose search wrote to the index and that exits right after the answer still
    copies the WAL into the file, and closes it: SQLite removes the WAL with the last
    connection. A WAL left behind would be read back whole by the next process to open the
    file, and a copy that an exit cuts short begins again from the start: a folder searched
    only by the command line kept a 550 MB WAL, read at every search."""
    store = _store(kind, tmp_path)
    write_runs(store)
    runs = len(_ids(store))
    wal = tmp_path / INDEX_FOLDER / (INDEX_FILE + "-wal")
    assert (tmp_path / INDEX).exists() and not wal.exists()
    # Runs the index does not hold yet (copied by hand), which the process's search writes.
    for n in range(3):
        if kind == "file-system":
            shutil.copyfile(tmp_path / "search-1.json", tmp_path / f"copy-{n}.json")
        else:
            shutil.copytree(tmp_path / "search-1", tmp_path / f"copy-{n}")
    _settle()
    done = subprocess.run(
        [sys.executable, "-c", _SEARCH_AND_EXIT, kind, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == runs + 3
    assert not wal.exists(), "the process exited before its WAL was copied into the index"
    with sqlite3.connect(tmp_path / INDEX) as db:
        assert db.execute("SELECT count(*) FROM runs").fetchone() == (runs + 3,)


def _search_while_another_process(
    store: BaseRunLogStore, monkeypatch: pytest.MonkeyPatch, other: Callable[[], None]
) -> None:
    """Search ``store`` (a run created just before) while ``other``, what another process
    does meanwhile, runs once right after this process's build: the answer has that run."""
    fill = index_module.RunIndex._fill
    done: list[bool] = []

    def fill_then_other(self: Any, *args: Any, **kwargs: Any) -> Any:
        found = fill(self, *args, **kwargs)
        if not done:  # once: `other` may build in this process too
            done.append(True)
            other()
        return found

    store.create_run_log("during")
    with monkeypatch.context() as patched:
        patched.setattr(index_module.RunIndex, "_fill", fill_then_other)
        answer = store.search_runs(None, "run_id", max_results=10_000)
    assert done and "during" in [r.run_id for r in answer.runs]


def _schema(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as db:
        return sorted(
            db.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")
        )


def _epoch(path: Path) -> str:
    with sqlite3.connect(path) as db:
        return str(db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()[0])


def test_an_index_of_another_version_is_built_again(
    searched: BaseRunLogStore,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The file of an older version is filled from a build, copied in by one write
    transaction: every table and index of this version, no row of the old one, no build file
    left behind."""
    path = tmp_path / INDEX
    schema = _schema(path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = 'an older one' WHERE key = 'version'")
        db.execute("UPDATE runs SET status = 'FAIL'")  # would answer wrong if it were kept
        db.execute('CREATE TABLE "gone"";x" (x)')  # and a table of its own, oddly named
    fills = _counting_fills(monkeypatch)
    progress = RecordingCallback()
    with caplog.at_level(logging.WARNING, "runlog_store.search"):
        page = searched.search_runs(callback=progress, max_results=1000)
    assert comparable(page.runs) == comparable(scanned(searched, None, None))
    assert fills == [{"secondary": False}] and _indexed(progress) == len(page.runs)
    assert_answers_equal_scan(searched)
    assert "has version an older one" in caplog.text
    with sqlite3.connect(path) as db:
        version = db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert version == (index_module.SCHEMA_VERSION,)
    assert _schema(path) == schema
    assert [p.name for p in path.parent.glob(INDEX_FILE + ".build-*")] == []


def test_a_folder_without_hard_links_copies_its_build_into_the_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where a build cannot be linked into place, the same build is copied into the file
    made in place (one build, not two), and the search answers from it."""
    store = _store("chunked-fs", tmp_path)
    write_runs(store)

    def no_links(source: Any, target: Any) -> None:
        raise PermissionError(1, "Operation not permitted", str(source))

    monkeypatch.setattr(index_module.os, "link", no_links)
    fills = _counting_fills(monkeypatch)
    assert_answers_equal_scan(store)
    assert len(fills) == 1
    path = tmp_path / INDEX
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT count(*) FROM runs").fetchone() == (len(_ids(store)),)
    assert [p.name for p in path.parent.glob(INDEX_FILE + ".build-*")] == []
    monkeypatch.undo()
    assert _schema(path) == _schema_of_a_new_build(tmp_path / "other")


def test_an_older_index_brought_up_to_date_by_another_process_meanwhile_is_kept(
    searched: BaseRunLogStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes find an older file and both build (the other one without the build lock
    this one holds, its wait run out): the second to finish its build finds the file of this
    version under the write lock, keeps it and searches it."""
    path = tmp_path / INDEX
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = 'an older one' WHERE key = 'version'")
    theirs: list[str] = []

    def other_copies_its_build_in() -> None:
        command = [sys.executable, "-c", _SEARCH_ONCE_NOT_WAITING, "chunked-fs", str(tmp_path)]
        subprocess.run(command, check=True, timeout=120)
        theirs.append(_epoch(path))

    _search_while_another_process(searched, monkeypatch, other_copies_its_build_in)
    assert len(theirs) == 1 and _epoch(path) == theirs[0], "the other process's rows were kept"
    assert_answers_equal_scan(searched)
    assert [p.name for p in path.parent.glob(INDEX_FILE + ".build-*")] == []


# A search that does not wait for another process's build (``_build_turn``).
_SEARCH_ONCE_NOT_WAITING = """
import sys
from runlog_store import create_store
from runlog_store.search import index
index.BUILD_TURN_SECONDS = 0.0
create_store(sys.argv[1], log_folder=sys.argv[2]).search_runs()
"""


# A search that finds an index of an older version, killed (SIGKILL) inside the transaction
# that copies its build in: after the rows, before the secondary indexes are all made.
_KILLED_WHILE_COPYING = """
import os, signal, sys
from runlog_store import create_store
from runlog_store.search import index
secondary = index._SECONDARY
def killed_half_way():
    yield secondary[0]
    os.kill(os.getpid(), signal.SIGKILL)
index._SECONDARY = killed_half_way()
create_store("chunked-fs", log_folder=sys.argv[1]).search_runs()
"""


def test_a_search_killed_while_it_copies_a_build_in_leaves_the_older_index(
    searched: BaseRunLogStore, tmp_path: Path
) -> None:
    """The copy is one transaction: a process killed in it leaves the file as it was (the
    older version, every row), and the next search copies a build of its own in."""
    path = tmp_path / INDEX
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = 'an older one' WHERE key = 'version'")
        runs = db.execute("SELECT count(*) FROM runs").fetchone()
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_WHILE_COPYING, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone() == (
            "an older one",
        )
        assert db.execute("SELECT count(*) FROM runs").fetchone() == runs
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    builds = {
        p.name.removesuffix("-wal").removesuffix("-shm") for p in path.parent.glob("*.build-*")
    }
    assert len(builds) == 1, f"the killed process's build, with its WAL: {builds}"
    assert_answers_equal_scan(searched)
    with sqlite3.connect(path) as db:
        version = db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert version == (index_module.SCHEMA_VERSION,)
    assert _schema(path) == _schema_of_a_new_build(tmp_path / "new")


def _schema_of_a_new_build(folder: Path) -> list[tuple[str, str]]:
    store = _store("chunked-fs", folder)
    write_runs(store)
    store.search_runs()
    return _schema(folder / INDEX)


_SEARCH_ONCE = """
import sys
from runlog_store import create_store
create_store(sys.argv[1], log_folder=sys.argv[2]).search_runs()
"""


_BUILD_SLOWLY = """
import pathlib, sys, time
from runlog_store import create_store
from runlog_store.search import index
fill = index.RunIndex._fill
def slow_fill(self, *args, **kwargs):
    pathlib.Path(sys.argv[3]).touch()  # the build has begun, under its build lock
    time.sleep(float(sys.argv[4]))
    return fill(self, *args, **kwargs)
index.RunIndex._fill = slow_fill
store = create_store(sys.argv[1], log_folder=sys.argv[2])
print(len(store.search_runs(max_results=1000).runs))
"""


def _index_to_build(store: BaseRunLogStore, folder: Path, index_was: str) -> None:
    """Runs in ``folder`` whose index is missing, or of an older version."""
    write_runs(store)
    store.search_runs()
    path = folder / INDEX
    assert path.exists()
    if index_was == "missing":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    else:
        with sqlite3.connect(path) as db:
            db.execute("UPDATE meta SET value = 'an older one' WHERE key = 'version'")
    _settle()


def _another_process_building(kind: str, folder: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process searching ``folder``, whose build of the index takes ``seconds`` more
    than it would: returned once that build has begun."""
    began = folder.parent / f"{folder.name}-build-began"
    child = subprocess.Popen(
        [sys.executable, "-c", _BUILD_SLOWLY, kind, str(folder), str(began), str(seconds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not began.exists():
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "the other process's build never began"
        time.sleep(0.01)
    return child


@pytest.mark.parametrize("kind", ["file-system", "chunked-fs"])
@pytest.mark.parametrize("index_was", ["missing", "of an older version"])
def test_a_search_waits_for_another_process_building_the_index_and_builds_none(
    tmp_path: Path, kind: str, index_was: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes that find the index to build build it once: the second waits for the
    first's build lock, then finds the index made and only brings it up to date. Without the
    lock each read every run for a build of its own (seen failing so)."""
    folder = tmp_path / "runs"
    store = _store(kind, folder)
    _index_to_build(store, folder, index_was)
    child = _another_process_building(kind, folder, 1.5)
    fills = _counting_fills(monkeypatch)
    progress = RecordingCallback()
    page = store.search_runs(callback=progress, max_results=1000)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert fills == [], "this process built the index too"
    assert progress.phases[0] == ("waiting for another process's build of the index", 0, "items")
    assert int(out) == len(page.runs) > 0
    assert comparable(page.runs) == comparable(scanned(store, None, None))
    assert_answers_equal_scan(store)


def test_a_wait_for_another_process_build_is_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A build that holds its lock past ``BUILD_TURN_SECONDS`` is not waited for longer: the
    search builds its own, as before the lock, and both answers are right."""
    folder = tmp_path / "runs"
    store = _store("file-system", folder)
    _index_to_build(store, folder, "missing")
    child = _another_process_building("file-system", folder, 6.0)
    fills = _counting_fills(monkeypatch)
    monkeypatch.setattr(index_module, "BUILD_TURN_SECONDS", 0.3)
    began = time.monotonic()
    with caplog.at_level(logging.WARNING, "runlog_store.search"):
        page = store.search_runs(max_results=1000)
    assert time.monotonic() - began < 5.0, "waited for the other build"
    assert len(fills) == 1 and "built without its build lock" in caplog.text
    assert comparable(page.runs) == comparable(scanned(store, None, None))
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert int(out) == len(page.runs)
    assert_answers_equal_scan(store)


def test_a_link_in_place_of_the_build_lock_is_not_followed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A symbolic link at the build lock's name (the index folder may be shared) is neither
    followed nor an error: the index is built without the lock, nothing made where it points."""
    store = _store("file-system", tmp_path)
    _index_to_build(store, tmp_path, "missing")
    lock = Path(beside_index(str(tmp_path / INDEX), ".build.lock"))
    lock.unlink(missing_ok=True)
    target = tmp_path / "elsewhere"
    lock.symlink_to(target)
    with caplog.at_level(logging.WARNING, "runlog_store.search"):
        assert_answers_equal_scan(store)
    assert "built without its build lock" in caplog.text
    assert not target.exists() and lock.is_symlink()


@pytest.mark.parametrize(
    "damage",
    [
        "DROP TABLE steps",
        "DROP TABLE metrics",
        "ALTER TABLE runs DROP COLUMN failed_step_folded",
        "ALTER TABLE params RENAME TO params_old",
    ],
)
def test_a_schema_damaged_as_sqlite_allows_is_built_again(
    searched: BaseRunLogStore, tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A file of this version whose tables someone changed: our statements fail as SQLite
    says of a missing table or column, which is damage (built again), not a reason to read
    every run at every search."""
    path = tmp_path / INDEX
    with sqlite3.connect(path) as db:
        db.execute(damage)
    searched.update_run_log_status("search-3", "FAIL")
    with caplog.at_level(logging.WARNING, "runlog_store.search"):
        assert_answers_equal_scan(searched)
    with sqlite3.connect(path) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        assert {"runs", "params", "metrics", "steps", "runs_start_time"} <= tables
        assert db.execute("SELECT count(*) FROM runs").fetchone() == (6,)
    assert "is damaged" in caplog.text and "built again" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, "runlog_store.search"):
        assert_answers_equal_scan(searched)
    assert "damaged" not in caplog.text and "read every run" not in caplog.text


def test_an_index_of_a_newer_library_is_left_to_it(
    searched: BaseRunLogStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two versions of the library searching one folder do not rebuild each other's file at
    every search: the older one keeps an index of its own in the user's cache folder."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    path = tmp_path / INDEX
    newer = "999-999.0.0-0123456789abcdef"
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'version'", (newer,))
        db.execute("UPDATE runs SET status = 'FAIL'")  # a newer library's answers: not ours
    for _ in range(2):
        searched.update_run_log_status("search-3", "FAIL")
        assert_answers_equal_scan(searched)
        with sqlite3.connect(path) as db:
            version = db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
        assert version == (newer,), "the newer library's file is left as it was"
    own = list((cache / "runlog-store" / "index").glob("*.sqlite"))
    assert len(own) == 1
    with sqlite3.connect(own[0]) as db:
        version = db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
    assert version == (index_module.SCHEMA_VERSION,)
    quiet = RecordingCallback()
    _settle()
    searched.search_runs()
    searched.search_runs(callback=quiet)
    assert _indexed(quiet) == 0, "its own index is kept up to date, not built again"


def test_an_index_deleted_between_searches(searched: BaseRunLogStore, tmp_path: Path) -> None:
    for name in (INDEX_FILE, INDEX_FILE + "-wal", INDEX_FILE + "-shm"):
        (tmp_path / INDEX_FOLDER / name).unlink(missing_ok=True)
    searched.create_run_log("after")
    assert not (tmp_path / INDEX).exists(), "a write never creates the index"
    assert_answers_equal_scan(searched)
    assert (tmp_path / INDEX).exists()
    assert "after" in _ids(searched)


def test_a_build_is_linked_into_place_whole(
    searched: BaseRunLogStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build from nothing fills a file of its own and links it under the index's name: no
    temporary file is left; one a build killed half way left is removed once it is old, one
    being written (recent) is not; an index another process linked meanwhile is kept, and the
    search answers from the build it made."""
    for name in (INDEX_FILE, INDEX_FILE + "-wal", INDEX_FILE + "-shm"):
        (tmp_path / INDEX_FOLDER / name).unlink(missing_ok=True)
    killed = tmp_path / f"{INDEX}.build-killed"
    killed.write_bytes(b"half an index")
    old = time.time() - index_module.STALE_BUILD_SECONDS - 60
    os.utime(killed, (old, old))
    writing = tmp_path / f"{INDEX}.build-writing"
    writing.write_bytes(b"a build under way")
    progress = RecordingCallback()
    expected = scanned(searched, None, "run_id")
    assert comparable(searched.search_runs(None, "run_id", callback=progress).runs) == (
        comparable(expected)
    )
    assert _indexed(progress) == len(expected)
    assert sorted(p.name for p in (tmp_path / INDEX_FOLDER).glob(INDEX_FILE + "*")) == sorted(
        [INDEX_FILE, writing.name]
    )
    with sqlite3.connect(tmp_path / INDEX) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        ours = db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()[0]
    writing.unlink()

    # Another process links its index while this one builds: theirs stays, ours answers. (It
    # builds without waiting for this one's build lock, as when its wait runs out.)
    (tmp_path / INDEX).unlink()
    monkeypatch.setattr(index_module, "BUILD_TURN_SECONDS", 0.0)
    theirs: list[str] = []

    def other_builds() -> None:
        _store("chunked-fs", tmp_path).search_runs()  # builds and links its own, the name free
        theirs.append(_epoch(tmp_path / INDEX))

    _search_while_another_process(searched, monkeypatch, other_builds)
    assert len(theirs) == 1 and theirs[0] != ours
    assert _epoch(tmp_path / INDEX) == theirs[0]
    assert [p.name for p in (tmp_path / INDEX_FOLDER).glob(INDEX_FILE + ".build-*")] == []
    assert_answers_equal_scan(searched)


def _hold_lock(path: str, mode: str, ready: Any, release: Any) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"BEGIN {mode}")
    db.execute("DELETE FROM steps")  # a write under way: the lock is held until it ends
    ready.set()
    release.wait(60)
    db.execute("ROLLBACK")
    db.close()


@pytest.fixture
def locked(searched: BaseRunLogStore, tmp_path: Path) -> Iterator[None]:
    """Another process holding the index in a write transaction (BEGIN EXCLUSIVE)."""
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(
        target=_hold_lock, args=(str(tmp_path / INDEX), "EXCLUSIVE", ready, release)
    )
    holder.start()
    try:
        assert ready.wait(60)
        yield
    finally:
        release.set()
        holder.join(60)


def test_a_search_that_finds_nothing_changed_takes_no_lock(
    searched: BaseRunLogStore, locked: None, caplog: pytest.LogCaptureFixture
) -> None:
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, "runlog_store.search"):
        quiet = RecordingCallback()
        answer = searched.search_runs("status = 'SUCCESS'", "run_id", callback=quiet)
    assert time.monotonic() - started < 1.0
    assert [r.run_id for r in answer.runs] == ["search-1", "search-4", "search-long"]
    assert _indexed(quiet) == 0 and "locked" not in caplog.text


def test_an_index_locked_too_long_is_answered_by_a_scan(
    searched: BaseRunLogStore,
    locked: None,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(index_module, "BUSY_SECONDS", 0.3)
    searched.update_run_log_status("search-3", "FAIL")  # the hook gives up on the lock quietly
    searched.create_run_log("new-run", tag="nightly")
    with caplog.at_level(logging.WARNING, "runlog_store.search"):
        assert_answers_equal_scan(searched, (None, "status = 'FAIL'"))
    assert "locked by another process" in caplog.text
    assert "not updated" not in caplog.text, "a writer's hook gives up on a lock quietly"
    assert "search-3" in _ids(searched, "status = 'FAIL'")


@pytest.fixture
def read_only_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs made read-only after the runs are written (as root, as the torture tests)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    point = tmp_path / "disk"
    point.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(point)], check=True)
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must be able to mount a tmpfs: {exc}")
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


@pytest.mark.parametrize("kind", ["file-system", "chunked-fs"])
def test_a_read_only_folder_is_indexed_in_the_users_cache(
    read_only_disk: Path, tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    folder = read_only_disk / "logs"
    writer = _store(kind, folder)
    write_runs(writer)
    writer.fold("search-1") if kind == "chunked-fs" else None  # type: ignore[attr-defined]
    del writer
    subprocess.run(["mount", "-o", "remount,ro", str(read_only_disk)], check=True)
    store = _store(kind, folder)
    assert_answers_equal_scan(store)
    assert not (folder / INDEX).exists()
    path = folder_index_path(str(folder))
    assert path is not None and path.startswith(str(cache / "runlog-store" / "index"))
    assert os.path.isfile(path)
    quiet = RecordingCallback()
    _settle()
    store.search_runs()
    store.search_runs(callback=quiet)
    assert _indexed(quiet) == 0


def _folder_key(folder: Path) -> tuple[int, int, int]:
    found = os.stat(folder)
    return found.st_ino, found.st_mtime_ns, found.st_ctime_ns


@pytest.mark.parametrize("kind", FOLDER_TYPES)
def test_searches_leave_the_log_folder_as_it_was(tmp_path: Path, kind: str) -> None:
    """The index's files (the database, its WAL and shared memory, made and removed as it is
    opened and closed) live in a folder of their own: once it is there, searches, writes that
    update the index and the searches that read them leave the log folder's own stat as it
    was, which is what lets a search keep its listing of the log folder."""
    store = _store(kind, tmp_path)
    write_runs(store)
    store.search_runs()
    assert (tmp_path / INDEX).is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".runlog")] == [INDEX_FOLDER]
    # A write (its hook updates the index): a file-system store's write replaces the run's
    # document, which changes the log folder; what follows changes runs in place.
    store.update_run_log_status("search-1", "FAIL")
    before = _folder_key(tmp_path)
    _settle()
    assert "search-1" in _ids(store, "status = 'FAIL'")
    runs_folder = tmp_path / "search-2" if (tmp_path / "search-2").is_dir() else None
    document = runs_folder / "RunLog.json" if runs_folder else tmp_path / "search-2.json"
    document.write_bytes(document.read_bytes().replace(b'"run_id"', b' "run_id"', 1))
    other = _store(kind, tmp_path)  # another store object: a connection of its own
    assert "search-1" in _ids(other, "status = 'FAIL'")  # search-2 read again, written
    assert _folder_key(tmp_path) == before
    assert_answers_equal_scan(store, (None,))


def test_the_index_an_earlier_version_kept_in_the_log_folder_is_removed(tmp_path: Path) -> None:
    store = _store("chunked-fs", tmp_path)
    write_runs(store)
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / (FORMER_INDEX_FILE + suffix)).write_bytes(b"an earlier version's index")
    assert_answers_equal_scan(store, (None,))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".runlog-index")] == [
        INDEX_FOLDER
    ]


@pytest.mark.parametrize("planted", ["link", "file", "shared folder"])
def test_an_index_folder_that_is_not_this_users_own_is_never_written_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, planted: str
) -> None:
    """Something else where the index's folder goes (a link to a folder elsewhere, a file, a
    folder anyone may write): the index goes to the user's cache folder, nothing is written
    through it, and the answers are the same."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    folder = tmp_path / "logs"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    store = _store("chunked-fs", folder)
    write_runs(store)
    if planted == "link":
        (folder / INDEX_FOLDER).symlink_to(elsewhere, target_is_directory=True)
    elif planted == "file":
        (folder / INDEX_FOLDER).write_bytes(b"not a folder")
    else:
        (folder / INDEX_FOLDER).mkdir()
        os.chmod(folder / INDEX_FOLDER, 0o777)
    assert_answers_equal_scan(store)
    path = folder_index_path(str(folder))
    assert path is not None and path.startswith(str(cache / "runlog-store" / "index"))
    assert os.path.isfile(path)
    assert list(elsewhere.iterdir()) == []
    if planted == "shared folder":
        assert list((folder / INDEX_FOLDER).iterdir()) == []


# The search another process makes: its answers against a scan, how many listings it took
# anew (``_core.folder_listings_taken``) and whether it read the index's stamps.
_FRESH_SEARCH = """
import json, os, sys
from runlog_store import _core, create_store
from runlog_store.search import index
from runlog_store.stores.project import ProjectRunLogStore
from runlog_store.testing.store.search import FILTERS, ORDERS, comparable, scanned
kind, folder = sys.argv[1], sys.argv[2]
store = (ProjectRunLogStore(log_folder=folder, fsync=False) if kind == "runnable-project"
         else create_store(kind, log_folder=folder, fsync=False))
store.search_runs()
# Counted under the name given and under the absolute path, whichever the search used.
listed = sum(_core.folder_listings_taken(f) for f in {folder, os.path.abspath(folder)})
stamps_read = any(stored.rows_read for stored in index._STORED.values())
for filter in FILTERS:
    for order_by in ORDERS:
        page = store.search_runs(filter, order_by, max_results=10_000)
        assert comparable(page.runs) == comparable(scanned(store, filter, order_by)), (
            filter, order_by)
print(json.dumps({"listed": listed, "stamps_read": stamps_read}))
"""


def _fresh_search_of(kind: str, folder: Path, cwd: Path | None = None) -> dict[str, Any]:
    """Search ``folder`` (relative to ``cwd``) in a process of its own: every answer equals a
    scan; how many listings its first search took anew (``listed``) and whether it read the
    index's stamps (``stamps_read``)."""
    done = subprocess.run(
        [sys.executable, "-c", _FRESH_SEARCH, kind, str(folder)],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
    )
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def _fresh_search(kind: str, folder: Path) -> int:
    """How many listings the first search of a process of its own took anew."""
    return int(_fresh_search_of(kind, folder)["listed"])


LISTINGS = f"{INDEX_FOLDER}/runs.listings"


def _store_merges(store: Any) -> None:
    """Read every run in full, as the scans the searches are compared with do: a full read
    stores the merge of an ended chunked-fs run whose documents have settled (a search does
    not), which changes the run's folder. Once stored, the scans change nothing."""
    _settle()  # documents changed just now: no merge of them is stored
    for run_id in store.list_run_ids():
        store.get_run_log_by_id(run_id, full=True)
    _settle()  # listings of folders changed just now are not kept (nor saved)


@pytest.mark.parametrize("kind", FOLDER_TYPES)
def test_a_new_process_takes_the_listings_another_saved(tmp_path: Path, kind: str) -> None:
    """A search saves its listings of the log folder and of every run folder beside the index;
    the first search of another process takes them and lists nothing again while the folders
    are as they say, and lists again what changed since, with the same answers as a scan."""
    store = _store(kind, tmp_path)
    write_runs(store)
    _runnable_runs(tmp_path)
    _store_merges(store)
    store.search_runs()
    assert (tmp_path / LISTINGS).is_file()
    (tmp_path / LISTINGS).unlink()
    _settle()
    store.search_runs()  # their listings taken again, and saved (the file is gone)
    assert (tmp_path / LISTINGS).is_file()
    assert _fresh_search(kind, tmp_path) == 0, "nothing changed: nothing listed again"
    saved = (tmp_path / LISTINGS).stat().st_mtime_ns
    # Changes inside run folders: a document rewritten in place, a new one in another folder.
    run_log = tmp_path / "theirs-chunked-1" / "RunLog.json"
    run_log.write_bytes(run_log.read_bytes().replace(b'"FAIL"', b'"SUCCESS"'))
    branch = tmp_path / "theirs-chunked-0" / "BranchLog-x.json"
    shutil.copy(tmp_path / "theirs-chunked-0" / "RunLog.json", branch)
    _settle()
    assert _fresh_search(kind, tmp_path) == 1, "the run folder with a new name, no other"
    # Runs added and removed: the log folder is listed again, and the listings saved again.
    shutil.rmtree(tmp_path / "theirs-chunked-2")
    writer = _store("chunked-fs", tmp_path)
    writer.create_run_log("added-later", tag="nightly")
    writer.update_run_log_status("added-later", "SUCCESS")
    _settle()
    assert 2 <= _fresh_search(kind, tmp_path) <= 4, "the log folder and what changed in it"
    assert (tmp_path / LISTINGS).stat().st_mtime_ns != saved
    assert _fresh_search(kind, tmp_path) <= 1, "the saved listings are the log folder's now"


@pytest.mark.parametrize("kind", FOLDER_TYPES)
def test_a_folder_named_relatively_or_absolutely_shares_its_saved_listings(
    tmp_path: Path, kind: str
) -> None:
    """One process names the log folder by its absolute path (a pipeline's configuration),
    the next relative to where it runs (``runlog`` in the project): the same folder, whose
    listings the first saved and the next takes, listing nothing again."""
    logs = tmp_path / "logs"
    store = _store(kind, logs)
    write_runs(store)
    _runnable_runs(logs)
    _store_merges(store)
    store.search_runs()
    _settle()
    store.search_runs()
    assert _fresh_search_of(kind, Path("logs"), cwd=tmp_path)["listed"] == 0
    assert _fresh_search_of(kind, logs)["listed"] == 0
    assert _fresh_search_of(kind, Path("logs"), cwd=tmp_path)["listed"] == 0


@pytest.mark.parametrize("kind", FOLDER_TYPES)
def test_a_new_process_finds_runs_current_without_reading_the_stamps(
    tmp_path: Path, kind: str
) -> None:
    """The listings are saved with each run's stats, fingerprint and mark (found current
    against the index's stamps of one state of the file): the first search of another
    process, nothing having changed, reads none of the index's stamps. A run changed since
    (in place, as runnable's stores and an editor write) is found by its stats, its mark of
    no use: the stamps are read, the answers are a scan's, and the marks of the index's new
    state are saved for the next process."""
    store = _store(kind, tmp_path)
    write_runs(store)
    _runnable_runs(tmp_path)
    _store_merges(store)
    store.search_runs()
    _settle()  # the index's folder made by the first search: the log folder is listed again
    store.search_runs()
    first = _fresh_search_of(kind, tmp_path)
    assert first == {"listed": 0, "stamps_read": False}, "every run found current by its mark"
    saved = (tmp_path / LISTINGS).stat().st_mtime_ns
    assert _fresh_search_of(kind, tmp_path)["stamps_read"] is False
    assert (tmp_path / LISTINGS).stat().st_mtime_ns == saved, "nothing changed: not saved"
    # Rewritten in place, the same size: only its stats say so.
    run_log = tmp_path / "theirs-chunked-1" / "RunLog.json"
    run_log.write_bytes(run_log.read_bytes().replace(b'"FAIL"', b'"PASS"'))
    _settle()
    changed = _fresh_search_of(kind, tmp_path)
    assert changed["stamps_read"] is True and changed["listed"] == 0
    assert (tmp_path / LISTINGS).stat().st_mtime_ns != saved, "the marks of the new state"
    assert _fresh_search_of(kind, tmp_path)["stamps_read"] is False
    # The index written by someone else (a run ended by a writer): every mark is of another
    # state, and the stamps are read again, once.
    writer = _store("chunked-fs", tmp_path)
    writer.create_run_log("written-later", tag="nightly")
    _settle()
    assert _fresh_search_of(kind, tmp_path)["stamps_read"] is True
    assert _fresh_search_of(kind, tmp_path)["stamps_read"] is False


def test_a_long_lived_process_saves_its_marks_now_and_then(tmp_path: Path) -> None:
    """A process beside a running pipeline (``runlog serve``) sees the index moved on by the
    writers before each of its searches: it saves its marks of the index's new state from a
    search that found nothing changed, at most every 30 seconds, not the whole file at every
    search."""
    store = _store("chunked-fs", tmp_path)
    write_runs(store)
    _settle()
    store.search_runs()  # built, and the listings saved
    _settle()
    store.search_runs()  # the log folder, changed by the index's folder, listed again
    _settle()
    store.search_runs()  # nothing changed: saved with the marks of this state
    listings = tmp_path / LISTINGS
    saved = {listings.stat().st_mtime_ns}
    for status in ("FAIL", "SUCCESS", "FAIL", "SUCCESS"):
        store.update_run_log_status("search-1", status)  # noted: the index moves on
        _settle()
        assert_answers_equal_scan(store, (None,))  # searches: the first may read it again
        saved.add(listings.stat().st_mtime_ns)
    assert len(saved) == 1, "the marks of a new state not saved again within 30 seconds"
    # Another process saves the marks of the state it finds, and the next one reads no stamp.
    assert _fresh_search_of("chunked-fs", tmp_path)["stamps_read"] is True
    assert listings.stat().st_mtime_ns not in saved
    assert _fresh_search_of("chunked-fs", tmp_path)["stamps_read"] is False


@pytest.mark.parametrize(
    "damage", ["garbage", "cut short", "another folder's", "a link", "a folder"]
)
def test_saved_listings_that_cannot_be_used_are_ignored(tmp_path: Path, damage: str) -> None:
    folder = tmp_path / "logs"
    store = _store("chunked-fs", folder)
    write_runs(store)
    _settle()
    store.search_runs()
    saved = folder / LISTINGS
    whole = saved.read_bytes()
    saved.unlink()
    if damage == "garbage":
        saved.write_bytes(b"runlog-listings\n" + os.urandom(4096))
    elif damage == "cut short":
        saved.write_bytes(whole[: len(whole) // 2])
    elif damage == "another folder's":
        other = tmp_path / "other"
        shutil.copytree(folder, other)
        (other / LISTINGS).unlink(missing_ok=True)
        _settle()
        _store("chunked-fs", other).search_runs()
        saved.write_bytes((other / LISTINGS).read_bytes())
    elif damage == "a link":
        (tmp_path / "elsewhere").write_bytes(whole)
        saved.symlink_to(tmp_path / "elsewhere")
    else:
        saved.mkdir()
    listed = _fresh_search("chunked-fs", folder)
    assert listed >= 5, "every run folder listed again"
    if damage == "a link":
        assert (tmp_path / "elsewhere").read_bytes() == whole, "never written through a link"


def test_saved_stamps_are_taken_at_their_state_only(tmp_path: Path) -> None:
    """A search saves every row's stamp beside the index with the file's state; another
    process takes them only at that very state, and reads the rows from SQLite otherwise."""
    store = _store("chunked-fs", tmp_path)
    write_runs(store)
    store.search_runs()
    index = str(tmp_path / INDEX)
    saved = beside_index(index, ".stamps")
    assert os.path.isfile(saved)

    def fresh_stored() -> Any:
        index_module._STORED.clear()  # as in a new process
        with sqlite3.connect(index) as db:
            state = index_module._state(db)
            return state, index_module._stored(db, index, state)

    state, stored = fresh_stored()
    with sqlite3.connect(index) as db:
        assert len(stored) == db.execute("SELECT count(*) FROM runs").fetchone()[0]
    assert _core.StoredStamps.load(saved, state) is not None
    before = Path(saved).read_bytes()
    store.create_run_log("after", tag="nightly")  # its row written: the next state
    new_state, stored = fresh_stored()
    assert new_state != state and stored.state == new_state
    assert _core.StoredStamps.load(saved, state) is None, "saved again at the new state"
    assert _core.StoredStamps.load(saved, new_state) is not None
    with sqlite3.connect(index) as db:
        assert len(stored) == db.execute("SELECT count(*) FROM runs").fetchone()[0]
    # The old state's stamps put back: not taken at the new state; damaged ones neither.
    for content in (before, before[: len(before) // 2], b"garbage"):
        Path(saved).write_bytes(content)
        assert _core.StoredStamps.load(saved, new_state) is None
        _, stored = fresh_stored()
        changes = stored.diff(new_state, {}, 0.0)
        assert changes is not None and "after" in changes[1], "the rows of the new state"
    _fresh_search("chunked-fs", tmp_path)  # answers as a scan does


def test_writers_keep_an_existing_index_current_and_never_make_one(tmp_path: Path) -> None:
    store = _store("chunked-fs", tmp_path)
    write_runs(store)
    store.update_run_log_status("search-1", "FAIL")
    assert not (tmp_path / INDEX).exists()
    store.search_runs()
    store.update_run_log_status("search-2", "SUCCESS")
    store.create_run_log("hooked", tag="t")
    with sqlite3.connect(tmp_path / INDEX) as db:
        rows = dict(db.execute("SELECT run_id, status FROM runs"))
    assert rows["search-2"] == "SUCCESS" and rows["hooked"] == "CREATED"
    # a damaged index makes no write fail
    (tmp_path / INDEX).write_bytes(b"garbage" * 100)
    store.update_run_log_status("search-3", "SUCCESS")
    store.create_run_log("still-written")
    assert_answers_equal_scan(store, (None,))


# --- processes at once ------------------------------------------------------------------------


def _writer(folder: str, kind: str, name: str, runs: int) -> None:
    store = create_store(kind, log_folder=folder, fsync=False)
    for i in range(runs):
        run_id = f"{name}-{i}"
        store.create_run_log(run_id, tag=name)
        store.set_parameters(run_id, {"i": JsonParameter(kind="json", value=i)})
        store.update_run_log_status(run_id, "PROCESSING")
        store.update_run_log_status(run_id, "SUCCESS")


def _searcher(folder: str, kind: str, stop: Any, errors: Any) -> None:
    """Search while others write: each answer lies between a scan before it and one after it
    (runs only begin and end here, so a run that ended before the search began is in the
    answer, and every run in it has ended by the time it returns)."""
    store = create_store(kind, log_folder=folder, fsync=False)
    searches = 0
    try:
        while not stop.is_set() or searches < 3:
            before = {r.run_id for r in scanned(store, "status = 'SUCCESS'", None)}
            found = [r.run_id for r in store.search_runs("status = 'SUCCESS'", None, 10_000).runs]
            after = {r.run_id for r in scanned(store, "status = 'SUCCESS'", None)}
            assert len(found) == len(set(found)), found
            assert before <= set(found) <= after, (before - set(found), set(found) - after)
            searches += 1
    except BaseException as exc:  # reported to the test, which fails
        errors.put(repr(exc))


@pytest.mark.parametrize("kind", ["file-system", "chunked-fs"])
def test_processes_search_while_others_write(tmp_path: Path, kind: str) -> None:
    context = multiprocessing.get_context("spawn")
    errors = context.Queue()
    folder = str(tmp_path)
    _writer(folder, kind, "early", 5)
    writers = [context.Process(target=_writer, args=(folder, kind, f"w{n}", 40)) for n in range(2)]
    stop = context.Event()
    searchers = [
        context.Process(target=_searcher, args=(folder, kind, stop, errors)) for _ in range(2)
    ]
    for process in writers + searchers:
        process.start()
    for process in writers:
        process.join(120)
        assert process.exitcode == 0
    stop.set()
    for process in searchers:
        process.join(120)
        assert process.exitcode == 0
    assert errors.empty(), errors.get()
    store = _store(kind, tmp_path)
    assert_answers_equal_scan(store, (None, "status = 'SUCCESS'", "tag = 'w1'"))
    assert len(_ids(store, "status = 'SUCCESS'")) == 85


# --- a store of another package ---------------------------------------------------------------


class ThreeMethodStore(BaseRunLogStore):
    """A third-party store with only the three methods a store must have to be searched."""

    service_name: str = "three-methods"
    _runs: dict[str, str] = PrivateAttr(default_factory=dict)
    _listings: int = PrivateAttr(default=0)

    def get_run_log_by_id(self, run_id: str, full: bool = False) -> RunLog:
        if run_id not in self._runs:
            raise RunLogNotFoundError(run_id)
        return RunLog.model_validate_json(self._runs[run_id])

    def put_run_log(self, run_log: RunLog) -> None:
        self._runs[run_log.run_id] = run_log.model_dump_json()

    def list_run_ids(self) -> list[str]:
        self._listings += 1
        return list(self._runs)


def test_a_store_of_another_package_is_searched_by_reading_its_runs() -> None:
    store = ThreeMethodStore()
    assert store._run_index() is None
    write_runs(store)
    assert _ids(store, "status = 'SUCCESS'") == ["search-1", "search-4", "search-long"]
    assert _ids(store, "params.model ilike 'x%' and metrics.accuracy > 0.9") == ["search-1"]
    assert _ids(store, "step.train.status = 'FAIL'") == ["search-2"]
    assert [r.run_id for r in store.search_runs(None, "duration desc").runs] == [
        "search-long",
        "search-2",
        "search-4",
        "search-1",
        "search-3",
        "search-5",
    ]
    listings = store._listings
    assert [r.run_id for r in store.iter_runs("tag = 'nightly'", "run_id", page_size=1)] == [
        "search-1",
        "search-2",
        "search-5",
    ]
    assert store._listings == listings + 1, "its runs are read once, not once a page"
    with pytest.raises(ValueError, match="page_size must be between 1 and 50,000"):
        list(store.iter_runs(page_size=0))


def test_iter_runs_brings_the_index_up_to_date_once(tmp_path: Path) -> None:
    store = _store("file-system", tmp_path)
    write_runs(store)
    for i in range(30):
        store.create_run_log(f"more-{i:02d}", tag="nightly")
    expected = comparable(scanned(store, "tag = 'nightly'", "run_id"))
    stamped = 0
    source_type = type(store._run_index().source)  # type: ignore[union-attr]
    changes = source_type.changes

    def counting(self: Any, *args: Any) -> Any:
        nonlocal stamped
        stamped += 1
        return changes(self, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(source_type, "changes", counting)
        found = list(store.iter_runs("tag = 'nightly'", "run_id", page_size=4))
    assert comparable(found) == expected and len(found) == 33
    assert stamped == 1
    # the index rebuilt between two pages: the rest comes from a read of every run
    pages = store.iter_runs(None, "run_id", page_size=5)
    first = [next(pages) for _ in range(5)]
    (tmp_path / INDEX).unlink()
    rest = list(pages)
    assert comparable(first + rest) == comparable(scanned(store, None, "run_id"))


@pytest.mark.parametrize("kind", FOLDER_TYPES)
def test_a_search_never_makes_the_log_folder(tmp_path: Path, kind: str) -> None:
    store = _store(kind, tmp_path / "not-yet")
    assert store.search_runs().runs == [] and list(store.iter_runs()) == []
    assert not (tmp_path / "not-yet").exists()
    store.create_run_log("first")
    assert _ids(store) == ["first"]
    shutil.rmtree(tmp_path / "not-yet")
    assert store.search_runs().runs == []
    assert not (tmp_path / "not-yet").exists()


def _json(runs: list[Any]) -> list[bytes]:
    """Summaries as JSON with NaN and infinities written as such (NaN equals no NaN)."""
    return [
        pydantic_core.to_json(
            {**r.model_dump(), "step_statuses": r.step_statuses}, inf_nan_mode="constants"
        )
        for r in runs
    ]


@pytest.mark.parametrize("kind", ["file-system", "chunked-fs"])
def test_values_that_json_cannot_write_plainly(tmp_path: Path, kind: str) -> None:
    """NaN and infinite metrics and parameters, integers past 2**53, text in any script."""
    store = _store(kind, tmp_path)
    values = {
        "nan": {"m": MetricParameter(kind="metric", value=math.nan)},
        "inf": {
            "m": MetricParameter(kind="metric", value=-math.inf),
            "p": JsonParameter(kind="json", value=[1.0, math.inf]),
        },
        "big": {"p": JsonParameter(kind="json", value=2**70 + 1)},
        "text": {"p": JsonParameter(kind="json", value="Straße ΣΑΣ 日本")},
    }
    for run_id, parameters in values.items():
        store.create_run_log(run_id, tag="Ünïcode")
        store.set_parameters(run_id, parameters)
    for filter in (
        None,
        "metrics.m is null",
        "metrics.m < 0",
        "params.p > 1",
        "params.p ilike 's%'",
    ):
        for order_by in ("metrics.m desc", "params.p", "run_id"):
            answer = store.search_runs(filter, order_by).runs
            assert _json(answer) == _json(scanned(store, filter, order_by)), (filter, order_by)
    found = {r.run_id: r for r in store.search_runs().runs}
    assert math.isnan(found["nan"].metrics["m"]) and found["inf"].params["p"] == [1.0, math.inf]
    assert found["big"].params["p"] == 2**70 + 1
