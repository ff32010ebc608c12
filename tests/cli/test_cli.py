"""The ``runlog`` console script, run for real."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from ..conftest import RUNNABLE_FIXTURES

RUNLOG = str(Path(sys.executable).with_name("runlog"))


def _runlog(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert shutil.which(RUNLOG), f"the console script is not installed at {RUNLOG}"
    return subprocess.run([RUNLOG, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_demo_writes_from_workers_and_shows_the_tree(tmp_path: Path) -> None:
    result = _runlog(
        "demo", "--branches", "12", "--workers", "3", "--run-id", "demo-1", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "Run demo-1" in result.stdout and "SUCCESS" in result.stdout
    assert "train.3" in result.stdout and "attempt 1 failed" in result.stdout
    assert "from 3 worker processes" in result.stdout
    run_folder = tmp_path / ".run_log_store" / "demo-1"
    assert (run_folder / "RunLog.json").is_file()
    assert len(list(run_folder.glob("BranchLog-train.*.json"))) == 12

    shown = _runlog("show", "demo-1", "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    run = json.loads(shown.stdout)
    branches = run["steps"]["train"]["branches"]
    assert len(branches) == 12 and all(b["status"] == "SUCCESS" for b in branches.values())
    assert {f"accuracy_{i}" for i in range(1, 13)} <= set(run["parameters"])
    assert run["parameters"]["workers_used"]["value"] >= 1


def test_show_reads_runnable_fixtures_through_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "run-log-store:\n  type: chunked-fs\n  config:\n"
        f"    log_folder: {RUNNABLE_FIXTURES / 'chunked-fs'}\n"
    )
    result = _runlog("show", "chunked-map", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "map_state.4" in result.stdout and "parallel step.branch1" in result.stdout


def test_errors_are_one_clear_line(tmp_path: Path) -> None:
    result = _runlog("show", "no-such-run", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: ")
    assert "no-such-run" in result.stderr and "Traceback" not in result.stderr
    bad = _runlog("show", "../escape", cwd=tmp_path)
    assert bad.returncode == 2 and "Invalid run id" in bad.stderr
