"""A full disk and a read-only one, for real: a small tmpfs mounted by the test (as root).

Writes must fail with a clear error that says the disk is full (or read-only) and names the
file, and everything stored before must still be there and readable.
"""

from __future__ import annotations

import errno
import gc
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from runlog_store import StepAttempt, create_catalog, create_store
from runlog_store.exceptions import StorageError

DISK_BYTES = 512 * 1024


def _mount(point: Path, options: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], check=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    point = tmp_path / "disk"
    point.mkdir()
    try:
        _mount(point, f"size={DISK_BYTES}")
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must be able to mount a tmpfs: {exc}")
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


@pytest.mark.parametrize("type_name", ["file-system", "chunked-fs"])
def test_full_disk_fails_clearly_and_keeps_what_was_stored(
    small_disk: Path, type_name: str
) -> None:
    store = create_store(type_name, log_folder=str(small_disk / "logs"), fsync=True)
    store.create_run_log("r")
    stored: list[str] = []
    with pytest.raises(StorageError) as full:
        for i in range(10_000):
            step = store.create_step_log(f"s{i}", f"s{i}")
            step.attempts.append(StepAttempt(status="SUCCESS", message="x" * 4000))
            store.add_step_log(step, "r")
            stored.append(f"s{i}")
    assert full.value.errno == errno.ENOSPC
    assert "disk full" in str(full.value)
    assert full.value.path.startswith(str(small_disk)) and full.value.run_id == "r"
    assert len(stored) > 5
    run = store.get_run_log_by_id("r", full=True)
    assert set(stored) <= set(run.steps)
    assert all(run.steps[name].attempts[0].message == "x" * 4000 for name in stored)
    assert [p.name for p in small_disk.rglob(".*.tmp-*")] == [], "a failed write leaves no temp"
    assert store.get_run_log_by_id("r").run_id == "r"


def test_full_disk_catalog_put_keeps_earlier_copies(small_disk: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "small.bin").write_bytes(b"s" * 1000)
    (data / "big.bin").write_bytes(os.urandom(DISK_BYTES * 2))
    catalog = create_catalog(
        "file-system",
        catalog_location=str(small_disk / "catalog"),
        compute_data_folder=str(data),
        fsync=True,
    )
    catalog.put("small.bin", run_id="r")
    with pytest.raises(StorageError) as full:
        catalog.put("big.bin", run_id="r")
    assert full.value.errno == errno.ENOSPC and "disk full" in str(full.value)
    assert "big.bin" in full.value.path
    assert (small_disk / "catalog" / "r" / "small.bin").read_bytes() == b"s" * 1000
    assert not (small_disk / "catalog" / "r" / "big.bin").exists()
    assert [p.name for p in small_disk.rglob(".*.tmp-*")] == []


@pytest.mark.parametrize("type_name", ["file-system", "chunked-fs"])
def test_read_only_folder_is_named(small_disk: Path, type_name: str) -> None:
    writer = create_store(type_name, log_folder=str(small_disk / "logs"), fsync=False)
    writer.create_run_log("r")
    writer.add_step_log(writer.create_step_log("a", "a"), "r")
    # A chunked-fs writer keeps its journal open between appends, and the kernel refuses to
    # make a file system read-only while a file on it is open for writing: this writer goes.
    del writer
    gc.collect()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    store = create_store(type_name, log_folder=str(small_disk / "logs"), fsync=False)
    with pytest.raises(StorageError) as refused:
        store.add_step_log(store.create_step_log("b", "b"), "r")
    assert refused.value.errno == errno.EROFS
    assert str(small_disk) in str(refused.value) and "Read-only" in str(refused.value)
    assert list(store.get_run_log_by_id("r", full=True).steps) == ["a"]
