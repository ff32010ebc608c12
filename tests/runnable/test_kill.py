"""A Pool worker SIGKILLed in the middle of a branch, on runlog-store and on runnable's own
chunked-fs under the same kill.

The pipeline maps 8 branches of first, middle, last; the worker running branch 5's middle
step SIGKILLs itself. runnable's ``multiprocessing.Pool`` replaces the dead worker and runs
the other branches, but never gets the lost branch's result: the run hangs in ``starmap``
until the test kills it. The run log must then be readable and show exactly what the store
acknowledged: 7 branches done, branch 5 with its first step done and its middle step started
(PROCESSING, no attempt); and ``runnable retry`` must finish the run, skipping what was done.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from extensions.run_log_store.chunked_fs import ChunkedFileSystemRunLogStore as RunnableChunkedFs

from runlog_store import load_store

from .harness import Project, shape, succeeded, wait_for

BRANCHES = 8
KILLED = 5
# The store types: ours, and runnable's own for comparison (read with runnable's class).
STORES = ["runlog-chunked-fs", "runlog-file-system", "chunked-fs"]


def _reader(project: Project, config: Path, store_type: str) -> Any:
    if store_type == "chunked-fs":
        return RunnableChunkedFs(log_folder=str(project.log_folder))
    return load_store(config)


def _full(reader: Any, run_id: str) -> Any:
    return reader.get_run_log_by_id(run_id, full=True)


def _others_done(reader: Any, run_id: str) -> bool:
    """The 7 branches that were not killed have ended (read while the run is written: a
    reader of runnable's store may meet a file being rewritten)."""
    try:
        run = _full(reader, run_id)
    except Exception:
        return False
    branches = run.steps["train"].branches if "train" in run.steps else {}
    done = [
        name
        for name, branch in branches.items()
        if branch.status == "SUCCESS" and name != f"train.{KILLED}"
    ]
    return len(done) == BRANCHES - 1


@pytest.mark.parametrize("store_type", STORES)
def test_a_worker_killed_in_a_branch_leaves_a_readable_resumable_run(
    project: Project, store_type: str
) -> None:
    catalog = "file-system" if store_type == "chunked-fs" else "runlog-file-system"
    config = project.config("kill.yaml", store_type, catalog_type=catalog)
    reader = _reader(project, config, store_type)
    (project.folder / "kill-armed").touch()

    running = project.start(
        [sys.executable, "killed.py"],
        config,
        "killed-run",
        {"branches": BRANCHES},
    )
    started = time.monotonic()
    wait_for(lambda: _others_done(reader, "killed-run"), 120, "the other branches to end")
    time.sleep(1.0)
    # runnable's Pool lost the killed branch's result: the pipeline is still waiting for it.
    assert running.process.poll() is None, running.output()[-3000:]
    running.kill()
    killed_after = time.monotonic() - started

    run = _full(reader, "killed-run")
    statuses = shape(run)
    assert run.status == "PROCESSING"
    assert statuses["prepare"] == ("SUCCESS", 1)
    assert statuses["train"] == ("PROCESSING", 0)
    for i in range(BRANCHES):
        if i == KILLED:
            continue
        for step in ("first", "middle", "last", "success"):
            assert statuses[f"train.{i}.{step}"] == ("SUCCESS", 1)
        assert statuses[f"train.{i}"] == ("SUCCESS", -1)
    # The killed branch: its first step acknowledged, its middle step started, nothing after.
    killed = {name: value for name, value in statuses.items() if name.startswith("train.5")}
    assert killed == {
        "train.5": ("PROCESSING", -1),
        "train.5.first": ("SUCCESS", 1),
        "train.5.middle": ("PROCESSING", 0),
    }
    assert "report" not in run.steps

    if store_type != "chunked-fs":
        shown = project.runlog("show", "killed-run", "--config", str(config))
        assert shown.returncode == 0, shown.stderr
        assert "PROCESSING" in shown.stdout

    (project.folder / "kill-armed").unlink()
    resumed = project.retry(config, "killed-run")
    succeeded(resumed)
    run = _full(reader, "killed-run")
    statuses = shape(run)
    assert run.status == "SUCCESS"
    assert {name for name, (status, _) in statuses.items() if status != "SUCCESS"} == set()
    # Nothing that was acknowledged ran again; the killed step ran once, to success.
    for i in range(BRANCHES):
        for step in ("first", "middle", "last"):
            assert statuses[f"train.{i}.{step}"] == ("SUCCESS", 1), (i, step)
    assert run.parameters["total"].value == sum((i + 100) * 2 + 1 for i in range(BRANCHES))
    print(
        "\nkill figures "
        + json.dumps(
            {
                "store": store_type,
                "readable_after_kill": True,
                "branches_done_at_kill": BRANCHES - 1,
                "killed_branch": killed,
                "seconds_to_kill": round(killed_after, 1),
                "retry": run.status,
                "retry_seconds": round(resumed.seconds, 1),
            }
        )
    )


# --- kills at random moments, in the middle of writes -------------------------------------------

RANDOM_KILLS = 8
WIDE = 48


def _pool_workers(pid: int) -> list[int]:
    """The pipeline's multiprocessing Pool workers: its forked children (same command line;
    the git processes runnable starts for code identities have another)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return []
    workers = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == pid and (entry / "cmdline").read_bytes() == command:
                workers.append(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
    return workers


def _torn_documents(folder: Path) -> list[str]:
    """Files of a run folder that are not whole JSON documents (temp files of writes in
    flight, which readers skip, are not counted)."""
    torn = []
    for path in sorted(folder.glob("*.json")):
        try:
            json.loads(path.read_bytes())
        except ValueError:
            torn.append(path.name)
    return torn


@pytest.mark.parametrize("store_type", ["runlog-chunked-fs", "chunked-fs"])
def test_workers_killed_at_random_moments_tear_no_document(
    project: Project, store_type: str
) -> None:
    """Pool workers SIGKILLed at random moments while 48 branches write: runlog-store's
    writes are atomic, so every document stays whole and the run stays readable. runnable's
    chunked-fs truncates a file before rewriting it; its figures are printed beside ours."""
    catalog = "file-system" if store_type == "chunked-fs" else "runlog-file-system"
    config = project.config("random-kill.yaml", store_type, catalog_type=catalog)
    reader = _reader(project, config, store_type)
    running = project.start(
        [sys.executable, "killed.py"], config, "random-kill", {"branches": WIDE}
    )
    run_folder = project.log_folder / "random-kill"
    wait_for(lambda: any(run_folder.glob("BranchLog-*")), 60, "the map to start")
    rng = random.Random()
    kills = 0
    while kills < RANDOM_KILLS and running.process.poll() is None:
        time.sleep(rng.uniform(0.05, 0.4))
        workers = _pool_workers(running.process.pid)
        if workers:
            try:
                os.kill(rng.choice(workers), signal.SIGKILL)
                kills += 1
            except ProcessLookupError:
                continue
    time.sleep(1.0)
    running.kill()

    torn = _torn_documents(run_folder)
    try:
        run = _full(reader, "random-kill")
        readable = True
        branches = run.steps["train"].branches if "train" in run.steps else {}
        ended = sum(1 for b in branches.values() if b.status == "SUCCESS")
    except Exception as exc:
        readable = False
        ended = -1
        error = f"{type(exc).__name__}: {exc}"[:200]
    print(
        "\nrandom kill figures "
        + json.dumps(
            {
                "store": store_type,
                "kills": kills,
                "documents": len(list(run_folder.glob("*.json"))),
                "torn_documents": torn,
                "readable": readable,
                "branches_ended": ended,
                **({} if readable else {"error": error}),
            }
        )
    )
    assert kills > 0
    if store_type.startswith("runlog-"):
        assert torn == []
        assert readable
        shown = project.runlog("show", "random-kill", "--config", str(config))
        assert shown.returncode == 0, shown.stderr
