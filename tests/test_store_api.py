"""The map run tests/test_runnable_interop.py writes with our stores and has runnable read.

The store API itself is tested once, by the contract every store is bound to
(``runlog_store.testing.StoreContract``, run for every store type by tests/test_contract.py).
"""

from __future__ import annotations

from runlog_store import BaseRunLogStore, BranchLog, JsonParameter, StepAttempt


def _p(value: object) -> JsonParameter:
    return JsonParameter(kind="json", value=value)


def build_map_run(store: BaseRunLogStore, run_id: str = "run-1", branches: int = 3) -> None:
    """A run with a root task, a map step with branches (and a nested parallel), and params."""
    store.create_run_log(run_id, dag_hash="abc", tag="nightly")
    store.set_parameters(run_id, {"items": _p(list(range(branches)))})
    first = store.create_step_log("first", "first")
    first.status = "SUCCESS"
    first.attempts.append(
        StepAttempt(
            status="SUCCESS",
            start_time="2026-01-01 00:00:00.000000",
            end_time="2026-01-01 00:00:01.500000",
            output_parameters={"x": _p(1)},
        )
    )
    store.add_step_log(first, run_id)
    mapped = store.create_step_log("map", "map")
    mapped.step_type = "map"
    store.add_step_log(mapped, run_id)
    for i in range(branches):
        store.add_branch_log(store.create_branch_log(f"map.{i}"), run_id)
        store.set_parameters(run_id, {"item": _p(i)}, internal_branch_name=f"map.{i}")
        for name in ("work", "success"):
            step = store.create_step_log(name, f"map.{i}.{name}")
            store.add_step_log(step, run_id)
            step.status = "SUCCESS"
            store.add_step_log(step, run_id)
        done = store.get_branch_log(f"map.{i}", run_id)
        assert isinstance(done, BranchLog)
        done.status = "SUCCESS"
        store.add_branch_log(done, run_id)
    # a parallel step nested inside branch map.0
    par = store.create_step_log("par", "map.0.par")
    par.step_type = "parallel"
    store.add_step_log(par, run_id)
    store.add_branch_log(store.create_branch_log("map.0.par.left"), run_id)
    leaf = store.create_step_log("leaf", "map.0.par.left.leaf")
    store.add_step_log(leaf, run_id)
    mapped.status = "SUCCESS"
    store.add_step_log(mapped, run_id)
    store.update_run_log_status(run_id, "SUCCESS")
