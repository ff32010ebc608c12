"""Eight writer processes x 500 mixed writes into one run, with two reader processes doing full
reads the whole time, on every persistent store: zero lost updates, zero failed reads.

``RUNLOG_TORTURE_WRITES`` sets the writes per writer (default 500).
"""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest

from runlog_store import JsonParameter

from ..conftest import PERSISTENT_TYPES, make_store, store_config

WRITERS = 8
READERS = 2
WRITES = int(os.environ.get("RUNLOG_TORTURE_WRITES", "500"))
WRITES_PER_BRANCH = 6


def _p(value: int) -> JsonParameter:
    return JsonParameter(kind="json", value=value)


def _writer(type_name: str, folder: str, config: dict[str, Any], worker: int, start: Any) -> None:
    store = make_store(type_name, Path(folder), **config)
    start.wait()
    for i in range(WRITES // WRITES_PER_BRANCH):
        name = f"map.w{worker}-{i}"
        branch = store.create_branch_log(name)
        store.add_branch_log(branch, "run")
        store.set_parameters("run", {"item": _p(i)}, internal_branch_name=name)
        step = store.create_step_log("work", f"{name}.work")
        step.status = "SUCCESS"
        store.add_step_log(step, "run")
        store.set_parameters("run", {f"w{worker}-{i}": _p(i)})
        store.update_run_log_status("run", "PROCESSING")
        # As runnable's executor does at fan-in: read the branch back, then close it.
        branch = store.get_branch_log(name, "run")
        branch.status = "SUCCESS"
        store.add_branch_log(branch, "run")


def _reader(type_name: str, folder: str, config: dict[str, Any], done: Any, results: Any) -> None:
    store = make_store(type_name, Path(folder), **config)
    reads = failures = 0
    while not done.is_set():
        try:
            json.loads(store.get_run_log_json("run"))
            reads += 1
        except Exception as exc:  # counted and reported by the test
            failures += 1
            results.put(f"{type(exc).__name__}: {exc}")
    results.put((reads, failures))


@pytest.mark.parametrize("type_name", PERSISTENT_TYPES)
def test_writers_and_readers_at_once(
    type_name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    config = store_config(request, type_name)
    folder = tmp_path / "logs"
    store = make_store(type_name, folder, **config)
    store.create_run_log("run")
    store.add_step_log(store.create_step_log("map", "map"), "run")
    context = multiprocessing.get_context("spawn")
    start, done, results = context.Barrier(WRITERS), context.Event(), context.Queue()
    writers = [
        context.Process(target=_writer, args=(type_name, str(folder), config, w, start))
        for w in range(WRITERS)
    ]
    readers = [
        context.Process(target=_reader, args=(type_name, str(folder), config, done, results))
        for _ in range(READERS)
    ]
    for proc in readers + writers:
        proc.start()
    for proc in writers:
        proc.join(900)
    done.set()
    reports = [results.get(timeout=120) for _ in range(READERS)]
    for proc in readers:
        proc.join(60)
    assert [p.exitcode for p in writers] == [0] * WRITERS
    assert all(isinstance(r, tuple) for r in reports), reports
    assert sum(r[1] for r in reports) == 0 and sum(r[0] for r in reports) > 0

    run = store.get_run_log_by_id("run", full=True)
    per_writer = WRITES // WRITES_PER_BRANCH
    expected = {f"map.w{w}-{i}" for w in range(WRITERS) for i in range(per_writer)}
    branches = run.steps["map"].branches
    assert set(branches) == expected
    lost = [
        name
        for name, branch in branches.items()
        if branch.status != "SUCCESS"
        or "item" not in branch.parameters
        or branch.steps[f"{name}.work"].status != "SUCCESS"
    ]
    assert lost == []
    assert set(run.parameters) == {f"w{w}-{i}" for w in range(WRITERS) for i in range(per_writer)}
    print(
        f"\n{type_name}: {WRITERS} x {per_writer * WRITES_PER_BRANCH} writes, "
        f"{sum(r[0] for r in reports)} concurrent full reads, 0 lost, 0 failed"
    )
