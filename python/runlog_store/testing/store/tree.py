"""The run every read test of the store contract starts from (``build_tree``), the shape a
full read of it must have (``EXPECTED_TREE``), and the parameter and attempt objects the tests
write."""

from __future__ import annotations

from typing import Any

from runlog_store import (
    BaseRunLogStore,
    BranchLog,
    CodeIdentity,
    DataCatalog,
    JsonParameter,
    MetricParameter,
    ObjectParameter,
    RunLog,
    StepAttempt,
    StepLog,
)
from runlog_store.testing.store.suite import RUN


def json_param(value: Any) -> JsonParameter:
    return JsonParameter(kind="json", value=value)


def sample_attempt(status: str = "SUCCESS") -> StepAttempt:
    return StepAttempt(
        attempt_number=1,
        status=status,
        start_time="2026-01-01T00:00:00.000000",
        end_time="2026-01-01T00:00:01.500000",
        input_parameters={"items": json_param([0, 1, 2])},
        output_parameters={"x": json_param(1), "score": MetricParameter(kind="metric", value=0.75)},
        code_identities=[
            CodeIdentity(
                code_identifier="abc123", code_identifier_type="git", code_identifier_url="u"
            )
        ],
    )


def build_tree(store: BaseRunLogStore, run_id: str = RUN) -> None:
    """A run as runnable writes one: parameters of every kind, a task with an attempt and a
    catalog entry, a map of three branches with a parallel nested in one, and a parallel with a
    map nested in one branch. Branches and steps are added and closed one call at a time."""
    store.create_run_log(run_id, dag_hash="d4g", tag="nightly")
    store.set_run_config(run_id, {"executor": {"type": "local"}, "pipeline": {"name": "p"}})
    store.set_parameters(
        run_id,
        {
            "items": json_param([0, 1, 2]),
            "lr": MetricParameter(kind="metric", value=0.1),
            "model": ObjectParameter(kind="object", value="model.pkl"),
        },
    )
    store.update_run_log_status(run_id, "PROCESSING")
    first = store.create_step_log("first", "first")
    store.add_step_log(first, run_id)
    first.status = "SUCCESS"
    first.attempts.append(sample_attempt())
    first.add_data_catalogs([DataCatalog(name="data/x.csv", data_hash="h", stage="put")])
    store.add_step_log(first, run_id)

    mapped = store.create_step_log("map", "map")
    mapped.step_type = "map"
    store.add_step_log(mapped, run_id)
    for i in range(3):
        name = f"map.{i}"
        store.add_branch_log(
            store.create_branch_log(name, parameters={"item": json_param(i)}), run_id
        )
        for step_name in ("work", "success"):
            step = store.create_step_log(step_name, f"{name}.{step_name}")
            store.add_step_log(step, run_id)
            step.status = "SUCCESS"
            step.attempts.append(sample_attempt())
            store.add_step_log(step, run_id)
        branch = store.get_branch_log(name, run_id)
        assert isinstance(branch, BranchLog), f"get_branch_log({name!r}) is not a BranchLog"
        branch.status = "SUCCESS"
        store.add_branch_log(branch, run_id)
    inner = store.create_step_log("par", "map.0.par")
    inner.step_type = "parallel"
    store.add_step_log(inner, run_id)
    store.add_branch_log(store.create_branch_log("map.0.par.left"), run_id)
    store.add_step_log(store.create_step_log("leaf", "map.0.par.left.leaf"), run_id)
    mapped.status = "SUCCESS"
    store.add_step_log(mapped, run_id)  # an old copy without branches: they must stay

    par = store.create_step_log("par", "par")
    par.step_type = "parallel"
    store.add_step_log(par, run_id)
    for side in ("a", "b"):
        store.add_branch_log(store.create_branch_log(f"par.{side}"), run_id)
    nested = store.create_step_log("inner", "par.a.inner")
    nested.step_type = "map"
    store.add_step_log(nested, run_id)
    store.add_branch_log(store.create_branch_log("par.a.inner.0"), run_id)
    store.set_parameters(run_id, {"deep": json_param("yes")}, internal_branch_name="par.a.inner.0")
    store.add_step_log(store.create_step_log("leaf", "par.a.inner.0.leaf"), run_id)
    store.update_run_log_status(run_id, "SUCCESS")


def tree_shape(run: RunLog) -> dict[str, Any]:
    """Internal names and statuses at every depth, in stored order."""

    def step(node: StepLog) -> dict[str, Any]:
        return {
            "status": node.status,
            "branches": {name: branch(b) for name, b in node.branches.items()},
        }

    def branch(node: BranchLog) -> dict[str, Any]:
        return {"status": node.status, "steps": {name: step(s) for name, s in node.steps.items()}}

    return {name: step(s) for name, s in run.steps.items()}


EXPECTED_TREE: dict[str, Any] = {
    "first": {"status": "SUCCESS", "branches": {}},
    "map": {
        "status": "SUCCESS",
        "branches": {
            "map.0": {
                "status": "SUCCESS",
                "steps": {
                    "map.0.work": {"status": "SUCCESS", "branches": {}},
                    "map.0.success": {"status": "SUCCESS", "branches": {}},
                    "map.0.par": {
                        "status": "CREATED",
                        "branches": {
                            "map.0.par.left": {
                                "status": "CREATED",
                                "steps": {
                                    "map.0.par.left.leaf": {"status": "CREATED", "branches": {}}
                                },
                            }
                        },
                    },
                },
            },
            **{
                f"map.{i}": {
                    "status": "SUCCESS",
                    "steps": {
                        f"map.{i}.work": {"status": "SUCCESS", "branches": {}},
                        f"map.{i}.success": {"status": "SUCCESS", "branches": {}},
                    },
                }
                for i in (1, 2)
            },
        },
    },
    "par": {
        "status": "CREATED",
        "branches": {
            "par.a": {
                "status": "CREATED",
                "steps": {
                    "par.a.inner": {
                        "status": "CREATED",
                        "branches": {
                            "par.a.inner.0": {
                                "status": "CREATED",
                                "steps": {
                                    "par.a.inner.0.leaf": {"status": "CREATED", "branches": {}}
                                },
                            }
                        },
                    }
                },
            },
            "par.b": {"status": "CREATED", "steps": {}},
        },
    },
}


__all__ = ["EXPECTED_TREE", "build_tree", "json_param", "sample_attempt", "tree_shape"]
