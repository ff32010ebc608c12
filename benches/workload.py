"""The benchmark workload, driven identically through runnable 0.50's stores and ours.

A map run of BRANCHES branches x STEPS steps, as runnable's executor writes it: the map step,
then per branch: the branch log (PROCESSING), its parameters, each step created and added,
then added again with a successful attempt and output parameters; the branch closed with
SUCCESS. Both APIs are the same, so one function drives both; only the model classes differ.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

BRANCHES = 1000
STEPS = 5
TIME = ("2026-01-01 00:00:00.000000", "2026-01-01 00:00:01.000000")


def write_map_run(
    store: Any, models: Any, run_id: str, branches: int = BRANCHES, steps: int = STEPS
) -> int:
    """Write the run; returns the number of store writes made."""
    mapped = start_map_run(store, run_id)
    writes = 2 + write_branches(store, models, run_id, range(branches), steps)
    end_map_run(store, run_id, mapped)
    return writes + 2


def start_map_run(store: Any, run_id: str) -> Any:
    """The run created and its map step stored (two writes); returns the step."""
    store.create_run_log(run_id, dag_hash="d" * 40)
    mapped = store.create_step_log("map", "map")
    mapped.step_type = "map"
    store.add_step_log(mapped, run_id)
    return mapped


def end_map_run(store: Any, run_id: str, mapped: Any) -> None:
    """The map step and the run ended (two writes)."""
    mapped.status = "SUCCESS"
    store.add_step_log(mapped, run_id)
    store.update_run_log_status(run_id, "SUCCESS")


def write_branches(store: Any, models: Any, run_id: str, numbers: Iterable[int], steps: int) -> int:
    """The branches ``numbers`` of the map run's step (stored before), as the executor writes
    each; returns the number of store writes made. A process writing its share of one run's
    branches calls it with its share."""
    param = models.JsonParameter
    writes = 0
    for b in numbers:
        name = f"map.{b}"
        branch = store.create_branch_log(name)
        branch.status = "PROCESSING"
        store.add_branch_log(branch, run_id)
        store.set_parameters(
            run_id, {"item": param(kind="json", value=b)}, internal_branch_name=name
        )
        writes += 2
        for s in range(steps):
            step = store.create_step_log(f"s{s}", f"{name}.s{s}")
            store.add_step_log(step, run_id)
            step.status = "SUCCESS"
            step.attempts.append(
                models.StepAttempt(
                    status="SUCCESS",
                    start_time=TIME[0],
                    end_time=TIME[1],
                    input_parameters={"item": param(kind="json", value=b)},
                    output_parameters={"out": param(kind="json", value=b * s)},
                )
            )
            store.add_step_log(step, run_id)
            writes += 2
        branch = store.get_branch_log(name, run_id)
        branch.status = "SUCCESS"
        store.add_branch_log(branch, run_id)
        writes += 1
    return writes


def write_steps(store: Any, models: Any, run_id: str, first: int, count: int) -> None:
    """``count`` root-level branch steps into an existing run (for the per-write scaling check)."""
    for i in range(first, first + count):
        step = store.create_step_log("s", f"map.{i // 10}.s{i % 10}")
        step.status = "SUCCESS"
        step.attempts.append(
            models.StepAttempt(status="SUCCESS", start_time=TIME[0], end_time=TIME[1])
        )
        store.add_step_log(step, run_id)
