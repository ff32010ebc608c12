"""A run's lock file and a catalog's hash cache that someone else replaced: a symlink is
refused without touching what it points to, and a stamp kept in the lock that cannot be right
never makes a write vanish."""

from __future__ import annotations

import contextlib
import os
import struct
import time
from pathlib import Path

import pytest

from runlog_store import JsonParameter, create_catalog, create_store, hash_files
from runlog_store.exceptions import RunLogStoreError, StorageError

I64_MAX = 2**63 - 1


def _run(tmp_path: Path, run_id: str = "r") -> tuple[object, Path]:
    store = create_store("chunked-fs", log_folder=str(tmp_path / "logs"), fsync=False)
    store.create_run_log(run_id)
    return store, tmp_path / "logs" / run_id


def test_a_lock_that_is_a_symlink_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious content")
    store, run = _run(tmp_path)
    lock = run / ".lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(victim)
    with pytest.raises(StorageError) as raised:
        store.add_step_log(store.create_step_log("s", "s"), "r")  # type: ignore[attr-defined]
    assert raised.value.path == str(lock), raised.value.path
    assert "symbolic link" in str(raised.value)
    assert victim.read_bytes() == b"precious content"


def test_a_lock_linked_to_a_missing_path_creates_nothing(tmp_path: Path) -> None:
    store, run = _run(tmp_path)
    lock = run / ".lock"
    lock.unlink(missing_ok=True)
    missing = tmp_path / "elsewhere" / "created-by-us"
    missing.parent.mkdir()
    lock.symlink_to(missing)
    with pytest.raises(StorageError):
        store.set_parameters(  # type: ignore[attr-defined]
            "r", {"x": JsonParameter(kind="json", value=1)}
        )
    assert not missing.exists()
    assert list(missing.parent.iterdir()) == []


@pytest.mark.parametrize("stored", [I64_MAX, I64_MAX - 1, -5, time.time_ns() + 10**18])
def test_an_impossible_stamp_in_the_lock_never_makes_a_write_vanish(
    tmp_path: Path, stored: int
) -> None:
    store, run = _run(tmp_path)
    (run / ".lock").write_bytes(struct.pack("<q", stored))
    first = store.create_step_log("first", "first")  # type: ignore[attr-defined]
    store.add_step_log(first, "r")  # type: ignore[attr-defined]
    first.status = "SUCCESS"
    store.add_step_log(first, "r")  # type: ignore[attr-defined]
    store.set_parameters("r", {"x": JsonParameter(kind="json", value=1)})  # type: ignore[attr-defined]
    store.update_run_log_status("r", "SUCCESS")  # type: ignore[attr-defined]  # folds
    store.add_step_log(store.create_step_log("late", "late"), "r")  # type: ignore[attr-defined]
    for reader in (
        store,
        create_store("chunked-fs", log_folder=str(tmp_path / "logs"), fsync=False),
    ):
        run_log = reader.get_run_log_by_id("r", full=True)  # type: ignore[attr-defined]
        assert run_log.status == "SUCCESS"
        assert run_log.steps["first"].status == "SUCCESS"
        assert "late" in run_log.steps
        assert run_log.parameters["x"].value == 1


def test_a_hash_cache_that_is_a_symlink_is_refused_and_never_written_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    settled = time.time() - 3600  # old enough for the cache to record it
    (data / "a.csv").write_text("1,2\n")
    os.utime(data / "a.csv", (settled, settled))
    catalog_folder = tmp_path / "catalog"
    catalog_folder.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious content\n")
    cache = catalog_folder / ".runlog-hash-cache"
    # The core's cache: a link in its place is an error naming it.
    cache.symlink_to(victim)
    with pytest.raises(StorageError) as raised:
        hash_files([data / "a.csv"], cache=cache)
    assert raised.value.path == str(cache)
    assert "symbolic link" in str(raised.value)
    # A catalog's put: whether it refuses the cache or does without it, nothing goes through it.
    catalog = create_catalog(
        "file-system", catalog_location=str(catalog_folder), compute_data_folder="data"
    )
    with contextlib.suppress(RunLogStoreError):
        catalog.put("*.csv", run_id="r")
    assert victim.read_bytes() == b"precious content\n"
    cache.unlink()
    cache.symlink_to(tmp_path / "not-there")
    with pytest.raises(StorageError):
        hash_files([data / "a.csv"], cache=cache)
    with contextlib.suppress(RunLogStoreError):
        catalog.put("*.csv", run_id="r2")
    assert not (tmp_path / "not-there").exists()
