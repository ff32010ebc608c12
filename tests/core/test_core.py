"""The Rust core through its Python binding: typed errors with path and run id, real locks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runlog_store import _core
from runlog_store.exceptions import (
    ChunkExistsError,
    ChunkNotFoundError,
    CorruptChunkError,
    LockTimeoutError,
    StorageError,
)

HOLD_LOCK = """
import sys, time
from runlog_store import _core
with _core.FileLock(sys.argv[1], 5.0):
    print("locked", flush=True)
    time.sleep(60)
"""


def _hold_lock_in_child(lock: Path) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(lock)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "locked"
    return child


def test_lock_held_by_another_process_times_out_naming_file_and_run(tmp_path: Path) -> None:
    lock = tmp_path / ".lock"
    child = _hold_lock_in_child(lock)
    try:
        started = time.monotonic()
        with pytest.raises(LockTimeoutError) as caught, _core.FileLock(lock, 0.2, "run-7"):
            pass
        assert time.monotonic() - started < 5
        assert caught.value.path == str(lock)
        assert caught.value.run_id == "run-7"
        assert str(lock) in str(caught.value) and "run-7" in str(caught.value)
    finally:
        child.kill()
        child.wait()


def test_lock_of_a_sigkilled_holder_is_released(tmp_path: Path) -> None:
    lock = tmp_path / ".lock"
    child = _hold_lock_in_child(lock)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    with _core.FileLock(lock, 2.0) as held:
        assert held.path == str(lock)


def test_patch_waits_for_the_lock_and_merges(tmp_path: Path) -> None:
    target, lock = tmp_path / "RunLog.json", tmp_path / ".lock"
    target.write_bytes(b'{"status":"CREATED","parameters":{"a":1}}')
    child = _hold_lock_in_child(lock)
    with pytest.raises(LockTimeoutError):
        _core.patch_json(target, b'{"parameters":{"b":2}}', lock_path=lock, lock_timeout=0.1)
    child.kill()
    child.wait()
    written = _core.patch_json(
        target, b'{"parameters":{"b":2}}', lock_path=lock, merge_keys=("parameters",)
    )
    assert json.loads(written) == {"status": "CREATED", "parameters": {"a": 1, "b": 2}}
    assert target.read_bytes() == written


def test_storage_errors_carry_errno_path_and_run_id(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder" / "RunLog.json"
    with pytest.raises(StorageError) as caught:
        _core.write_atomic(missing, b"{}", run_id="r1")
    assert caught.value.errno == 2
    assert caught.value.path == str(missing)
    assert caught.value.run_id == "r1"
    assert isinstance(caught.value, OSError)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(StorageError) as caught:
        _core.read_file(a_file / "child", run_id="r2")
    assert caught.value.path == str(a_file / "child")


def test_exclusive_create_and_plain_reads(tmp_path: Path) -> None:
    target = tmp_path / "RunLog.json"
    _core.write_atomic(target, b"one", exclusive=True)
    with pytest.raises(ChunkExistsError) as caught:
        _core.write_atomic(target, b"two", exclusive=True, run_id="r")
    assert caught.value.path == str(target)
    assert _core.read_file(target) == b"one"
    assert _core.read_file(tmp_path / "nothing") is None
    assert sorted(os.listdir(tmp_path)) == ["RunLog.json"]


def test_merge_errors_are_typed(tmp_path: Path) -> None:
    with pytest.raises(ChunkNotFoundError):
        _core.merge_run(tmp_path / "absent", run_id="r")
    (tmp_path / "RunLog.json").write_text('{"run_id": "r", "steps": {}}')
    (tmp_path / "StepLog-x.json").write_text("{not json")
    with pytest.raises(CorruptChunkError) as caught:
        _core.merge_run(tmp_path, run_id="r")
    assert caught.value.path == str(tmp_path / "StepLog-x.json")
    document, skipped = _core.merge_run(tmp_path, salvage=True)
    assert json.loads(document) == {"run_id": "r", "steps": {}}
    assert [path for path, _ in skipped] == [str(tmp_path / "StepLog-x.json")]


def test_bad_arguments_are_value_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="StepLog"):
        _core.chunk_file_name("Run", "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lock_timeout"):
        _core.patch_json(tmp_path / "a", b"{}", lock_path=tmp_path / "l", lock_timeout=-1)
    with pytest.raises(ValueError, match="patch"):
        _core.patch_json(tmp_path / "a", b"[]", lock_path=tmp_path / "l")


def test_old_temp_files_are_cleaned(tmp_path: Path) -> None:
    stale = tmp_path / ".StepLog-a.json.tmp-1-2-3"
    stale.write_text("half a chunk")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    fresh = tmp_path / ".StepLog-b.json.tmp-1-2-4"
    fresh.write_text("a write in flight")
    assert _core.clean_temp_files(tmp_path) == 1
    assert not stale.exists() and fresh.exists()
