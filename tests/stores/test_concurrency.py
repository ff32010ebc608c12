"""Eight real processes write steps, branches and root parameters into one run at once."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from runlog_store import BranchLog, JsonParameter

from ..conftest import PERSISTENT_TYPES, STORE_TYPES, make_store, store_config

PROCESSES = 8


def _p(value: int) -> JsonParameter:
    return JsonParameter(kind="json", value=value)


def _writer(
    type_name: str,
    folder: str,
    worker: int,
    branches: int,
    barrier: object,
    config: dict[str, Any],
) -> None:
    store = make_store(type_name, Path(folder), **config)
    barrier.wait()  # type: ignore[attr-defined]  # start together for the most overlap
    for i in range(branches):
        name = f"map.w{worker}-{i}"
        store.add_branch_log(store.create_branch_log(name), "run")
        store.set_parameters(
            "run", {"item": _p(i), "worker": _p(worker)}, internal_branch_name=name
        )
        step = store.create_step_log("work", f"{name}.work")
        store.add_step_log(step, "run")
        step.status = "SUCCESS"
        store.add_step_log(step, "run")
        store.set_parameters("run", {f"w{worker}-{i}": _p(i)})
        store.update_run_log_status("run", "PROCESSING")
        branch = store.get_branch_log(name, "run")
        assert isinstance(branch, BranchLog)
        branch.status = "SUCCESS"
        store.add_branch_log(branch, "run")


@pytest.mark.parametrize("type_name", PERSISTENT_TYPES)
def test_eight_processes_lose_nothing(
    type_name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    branches = 40 if type_name.startswith("chunked") else 15
    folder = tmp_path / "logs"
    config = store_config(request, type_name)
    store = make_store(type_name, folder, **config)
    store.create_run_log("run")
    store.set_parameters("run", {"seed": _p(0)})
    mapped = store.create_step_log("map", "map")
    mapped.step_type = "map"
    store.add_step_log(mapped, "run")

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    workers = [
        context.Process(target=_writer, args=(type_name, str(folder), w, branches, barrier, config))
        for w in range(PROCESSES)
    ]
    for proc in workers:
        proc.start()
    for proc in workers:
        proc.join(timeout=300)
    assert [p.exitcode for p in workers] == [0] * PROCESSES

    run = store.get_run_log_by_id("run", full=True)
    expected_branches = {f"map.w{w}-{i}" for w in range(PROCESSES) for i in range(branches)}
    got = run.steps["map"].branches
    assert set(got) == expected_branches
    lost = [
        name
        for name, branch in got.items()
        if branch.status != "SUCCESS"
        or set(branch.parameters) != {"item", "worker"}
        or branch.steps[f"{name}.work"].status != "SUCCESS"
    ]
    assert lost == []
    expected_params = {"seed"} | {f"w{w}-{i}" for w in range(PROCESSES) for i in range(branches)}
    assert set(run.parameters) == expected_params
    assert run.status == "PROCESSING"


@pytest.mark.parametrize("type_name", STORE_TYPES)
def test_threads_share_one_store_object(
    type_name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Eight threads of one process write through one store object (branches are closed, so
    chunked-minio seals them while other threads add steps)."""
    import threading

    store = make_store(type_name, tmp_path / type_name, **store_config(request, type_name))
    store.create_run_log("run")
    store.add_step_log(store.create_step_log("map", "map"), "run")
    failures: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(25):
                name = f"map.t{t}-{i}"
                branch = store.create_branch_log(name)
                store.add_branch_log(branch, "run")
                store.add_step_log(store.create_step_log("s", f"{name}.s"), "run")
                store.set_parameters("run", {name: _p(i)})
                branch.status = "SUCCESS"
                store.add_branch_log(branch, "run")
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert failures == []
    run = store.get_run_log_by_id("run", full=True)
    assert len(run.steps["map"].branches) == 200
    assert len(run.parameters) == 200
    assert all(len(b.steps) == 1 for b in run.steps["map"].branches.values())
    assert all(b.status == "SUCCESS" for b in run.steps["map"].branches.values())
