"""FIFOs, devices, symlinks and huge sparse files where a store expects its documents and
journals: a read gives a typed error naming the path (or, salvaging, leaves the file out as it
does a corrupt chunk), never a hang, and never reads more than the documented cap."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runlog_store import _core, create_store
from runlog_store.exceptions import CorruptChunkError, RunLogStoreError

from .tampering import ROOT, read_in_child, run_child

FULL_READ = "store.get_run_log_by_id('r', full=True)"
READS = [
    FULL_READ,
    "store.get_run_log_json('r')",
    "store.get_run_log_by_id('r')",
    "store.get_run_logs()",
    "store.get_step_log('map.a.x', 'r')",
]


def _chunked_run(tmp_path: Path, folder: str = "logs") -> Path:
    store = create_store("chunked-fs", log_folder=str(tmp_path / folder), fsync=False)
    store.create_run_log("r")
    store.add_step_log(store.create_step_log("map", "map"), "r")
    store.add_branch_log(store.create_branch_log("map.a"), "r")
    store.add_step_log(store.create_step_log("x", "map.a.x"), "r")
    return tmp_path / folder / "r"


def _assert_typed(result: dict[str, object], path: Path) -> None:
    assert result["outcome"] == "error", result
    assert result["type"] == "CorruptChunkError", result
    assert result["path"] == str(path), result
    assert result["run_id"] == "r", result


@pytest.mark.parametrize("read", READS)
def test_a_fifo_named_as_a_branch_document_is_a_corrupt_chunk(tmp_path: Path, read: str) -> None:
    run = _chunked_run(tmp_path)
    fifo = run / "BranchLog-map.b.json"
    os.mkfifo(fifo)
    result = read_in_child("chunked-fs", tmp_path / "logs", read)
    if read in (FULL_READ, "store.get_run_log_json('r')"):
        _assert_typed(result, fifo)
    else:  # reads that do not need that document may succeed; none may hang
        assert result["outcome"] in ("read", "error"), result


def test_a_salvage_leaves_a_fifo_out_and_says_so(tmp_path: Path) -> None:
    run = _chunked_run(tmp_path)
    fifo = run / "BranchLog-map.b.json"
    os.mkfifo(fifo)
    journal = run / ".journals" / "9-9-ff.journal"
    os.mkfifo(journal)
    result = read_in_child(
        "chunked-fs",
        tmp_path / "logs",
        "salvaged = store.salvage_run_log('r')\n"
        "    print(json.dumps({'outcome': 'salvaged', 'skipped': salvaged.skipped,"
        " 'steps': sorted(s.internal_name for s in salvaged.run_log.iter_steps())}))\n"
        "    sys.exit(0)",
    )
    assert result["outcome"] == "salvaged", result
    skipped = dict(result["skipped"])
    assert set(skipped) == {str(fifo), str(journal)}, skipped
    assert result["steps"] == ["map", "map.a.x"], result


@pytest.mark.parametrize("read", READS)
def test_a_fifo_in_the_journals_is_a_corrupt_journal(tmp_path: Path, read: str) -> None:
    run = _chunked_run(tmp_path)
    fifo = run / ".journals" / "1-2-ab.journal"
    os.mkfifo(fifo)
    _assert_typed(read_in_child("chunked-fs", tmp_path / "logs", read), fifo)


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/urandom"])
def test_a_journal_linked_to_a_device_is_refused_within_bounded_memory(
    tmp_path: Path, target: str
) -> None:
    run = _chunked_run(tmp_path)
    link = run / ".journals" / "1-2-ab.journal"
    link.symlink_to(target)
    result = read_in_child("chunked-fs", tmp_path / "logs", FULL_READ, memory_mb=1200)
    _assert_typed(result, link)
    assert "symbolic link" in str(result["message"])


def test_a_document_linked_elsewhere_is_not_followed(tmp_path: Path) -> None:
    run = _chunked_run(tmp_path)
    outside = tmp_path / "outside.json"
    outside.write_text('{"internal_name": "map.b", "status": "SUCCESS", "steps": {}}')
    link = run / "BranchLog-map.b.json"
    link.symlink_to(outside)
    _assert_typed(read_in_child("chunked-fs", tmp_path / "logs", FULL_READ), link)


def test_a_sparse_journal_past_the_cap_is_refused_without_reading_it(tmp_path: Path) -> None:
    run = _chunked_run(tmp_path)
    huge = run / ".journals" / "1-2-ab.journal"
    with open(huge, "wb") as handle:
        handle.truncate(_core.MAX_FILE_BYTES + 1)
    result = read_in_child("chunked-fs", tmp_path / "logs", FULL_READ, memory_mb=600)
    _assert_typed(result, huge)
    assert str(_core.MAX_FILE_BYTES) in str(result["message"]), result


@pytest.mark.parametrize("make", ["fifo", "symlink", "sparse"])
def test_a_file_system_run_that_is_not_a_regular_file(tmp_path: Path, make: str) -> None:
    logs = tmp_path / "logs"
    store = create_store("file-system", log_folder=str(logs), fsync=False)
    store.create_run_log("ok")
    path = logs / "r.json"
    if make == "fifo":
        os.mkfifo(path)
    elif make == "symlink":
        (tmp_path / "elsewhere.json").write_text('{"run_id": "r"}')
        path.symlink_to(tmp_path / "elsewhere.json")
    else:
        with open(path, "wb") as handle:
            handle.truncate(_core.MAX_FILE_BYTES + 1)
    for read in (FULL_READ, "store.get_run_log_json('r')", "store.get_run_logs()"):
        result = read_in_child("file-system", logs, read, memory_mb=600)
        _assert_typed(result, path)
    written = read_in_child(
        "file-system", logs, "store.update_run_log_status('r', 'FAIL')", memory_mb=600
    )
    _assert_typed(written, path)


def test_runlog_list_does_not_hang_on_a_fifo(tmp_path: Path) -> None:
    run = _chunked_run(tmp_path, ".run_log_store")
    os.mkfifo(run / ".journals" / "1-2-ab.journal")
    os.mkfifo(tmp_path / ".run_log_store" / "other.json")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "runlog_store.cli", "list", "--json"],
        cwd=tmp_path,
        env={**env, "RUNNABLE_CONFIGURATION_FILE": ""},
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    assert '"r"' in done.stdout and "UNREADABLE" in done.stdout, done.stdout


def test_a_run_folder_linked_from_elsewhere_is_never_read_or_written_through(
    tmp_path: Path,
) -> None:
    elsewhere = create_store("chunked-fs", log_folder=str(tmp_path / "elsewhere"), fsync=False)
    elsewhere.create_run_log("r", tag="theirs")
    elsewhere.update_run_log_status("r", "SUCCESS")
    theirs = tmp_path / "elsewhere" / "r"
    (theirs / ".RunLog.json.tmp-4194305-1-1").write_bytes(b"their file")
    before = {p.name: p.read_bytes() for p in theirs.iterdir() if p.is_file()}
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "r").symlink_to(theirs)
    store = create_store("chunked-fs", log_folder=str(logs), fsync=False)
    with pytest.raises(CorruptChunkError) as raised:
        store.get_run_log_by_id("r", full=True)
    assert raised.value.path == str(logs / "r")
    with pytest.raises(RunLogStoreError):
        store.add_step_log(store.create_step_log("s", "s"), "r")
    with pytest.raises(RunLogStoreError):
        store.update_run_log_status("r", "FAIL")
    with pytest.raises(RunLogStoreError):
        store.create_run_log("r")
    assert {p.name: p.read_bytes() for p in theirs.iterdir() if p.is_file()} == before
    assert not (theirs / ".journals").exists() or not any((theirs / ".journals").iterdir())
    store.delete_run("r")
    assert not (logs / "r").exists() and os.listdir(logs) == []
    assert {p.name: p.read_bytes() for p in theirs.iterdir() if p.is_file()} == before


def test_removing_a_run_folder_that_is_a_fifo_does_not_wait_on_it(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    os.mkfifo(catalog / "run-x")
    code = f"""
import json
from runlog_store import create_catalog
catalog = create_catalog("file-system", catalog_location={str(catalog)!r})
catalog.delete_run("run-x")
print(json.dumps({{"outcome": "removed"}}))
"""
    assert run_child(code)["outcome"] == "removed"
    assert os.listdir(catalog) == []
