"""The README's main command: scripts/example.sh runs the example pipeline with runnable and
shows the run with ``runlog show`` (in a copy of examples/, so the tree stays clean)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .harness import ROOT


def test_the_example_script_runs_the_pipeline_and_shows_it(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "example.sh", tmp_path / "scripts" / "example.sh")
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    shown = subprocess.run(
        ["bash", str(tmp_path / "scripts" / "example.sh"), "4"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert shown.returncode == 0, shown.stdout[-3000:] + shown.stderr[-3000:]
    run_id = next(
        word for word in shown.stdout.split() if word.startswith("example-") and word[-1].isdigit()
    )
    assert f"Run {run_id}  ✔ SUCCESS" in shown.stdout
    assert "train.0" in shown.stdout and "evaluate.shards" in shown.stdout
    assert (tmp_path / "examples" / ".run_log_store" / run_id / "RunLog.json").is_file()
    # Shown again with no configuration: the example writes where runlog looks by default.
    again = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "runlog"), "show", run_id, "--depth", "1"],
        cwd=tmp_path / "examples",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert again.returncode == 0 and "SUCCESS" in again.stdout, again.stderr
