"""``runlog verify``: re-hash a run's catalog copies against its run log, through the real
console script, on runnable 0.50's own runs and on runs made here."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runlog_store import create_catalog, create_store
from runlog_store.ops.verify import verify_run

from ..conftest import RUNNABLE_FIXTURES

RUNLOG = str(Path(sys.executable).with_name("runlog"))


def _verify(run_id: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RUNLOG, "verify", run_id, "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


def _config(tmp_path: Path, store: str, log_folder: Path, catalog: Path) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"run-log-store:\n  type: {store}\n  config:\n    log_folder: {log_folder}\n"
        f"catalog:\n  type: file-system\n  config:\n    catalog_location: {catalog}\n"
    )
    return config


@pytest.mark.parametrize(
    ("store", "folder", "run_id"),
    [("file-system", "file-system", "fs-map"), ("chunked-fs", "chunked-fs", "chunked-map")],
)
def test_runnable_runs_verify(tmp_path: Path, store: str, folder: str, run_id: str) -> None:
    config = _config(tmp_path, store, RUNNABLE_FIXTURES / folder, RUNNABLE_FIXTURES / "catalog")
    result = _verify(run_id, config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all 6 files match" in result.stdout


def test_flipped_byte_and_missing_file_fail(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    shutil.copytree(RUNNABLE_FIXTURES / "catalog", catalog)
    table = catalog / "fs-map" / "data" / "table.csv"
    data = bytearray(table.read_bytes())
    data[len(data) // 2] ^= 0x01
    table.write_bytes(bytes(data))
    config = _config(tmp_path, "file-system", RUNNABLE_FIXTURES / "file-system", catalog)
    result = _verify("fs-map", config)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "mismatch" in result.stdout and "fs-map/data/table.csv" in result.stdout
    assert "1 of 6 files failed" in result.stdout
    (catalog / "fs-map" / "data" / "notes.txt").unlink()
    result = _verify("fs-map", config)
    assert result.returncode == 1
    assert "missing" in result.stdout and "recorded by write" in result.stdout


def test_a_planted_link_is_not_followed(tmp_path: Path) -> None:
    """A catalog copy replaced by a link to a file with the recorded bytes elsewhere: verify must
    not vouch for bytes outside the catalog, whether the link is the file or a folder above it."""
    catalog = tmp_path / "catalog"
    shutil.copytree(RUNNABLE_FIXTURES / "catalog", catalog)
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(catalog / "fs-map" / "data", elsewhere)
    table = catalog / "fs-map" / "data" / "table.csv"
    table.unlink()
    table.symlink_to(elsewhere / "table.csv")
    config = _config(tmp_path, "file-system", RUNNABLE_FIXTURES / "file-system", catalog)
    result = _verify("fs-map", config)
    assert result.returncode == 1, result.stdout + result.stderr
    said = " ".join(result.stdout.split())
    assert "unreadable" in said and "is a symbolic link: not followed" in said
    assert "1 of 6 files failed" in said
    shutil.rmtree(catalog / "fs-map" / "data")
    (catalog / "fs-map" / "data").symlink_to(elsewhere)
    result = _verify("fs-map", config)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "is a symbolic link: not followed" in " ".join(result.stdout.split())


def test_missing_run_is_one_clear_line(tmp_path: Path) -> None:
    config = _config(
        tmp_path, "file-system", RUNNABLE_FIXTURES / "file-system", RUNNABLE_FIXTURES / "catalog"
    )
    result = _verify("no-such-run", config)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "no-such-run" in result.stderr


@pytest.mark.parametrize("algorithm", ["blake3", "sha256"])
def test_our_runs_verify_and_catch_corruption(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, algorithm: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    for i in range(20):
        (tmp_path / "out" / f"part-{i}.bin").write_bytes(bytes([i]) * (1000 + i))
    store = create_store("chunked-fs", log_folder=str(tmp_path / "logs"), fsync=False)
    catalog = create_catalog(
        "file-system", catalog_location=str(tmp_path / "cat"), hash_algorithm=algorithm
    )
    store.create_run_log("r1")
    step = store.create_step_log("write", "write")
    step.data_catalog = catalog.put("out/*.bin", run_id="r1")
    store.add_step_log(step, "r1")
    report = verify_run(store.get_run_log_by_id("r1", full=True), str(tmp_path / "cat"))
    assert report.ok and len(report.files) == 20
    victim = tmp_path / "cat" / "r1" / "out" / "part-7.bin"
    victim.write_bytes(victim.read_bytes()[:-1] + b"\xff")
    report = verify_run(store.get_run_log_by_id("r1", full=True), str(tmp_path / "cat"))
    assert [(f.status, Path(f.path).name) for f in report.problems] == [("mismatch", "part-7.bin")]
