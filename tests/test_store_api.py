"""The store API, identical on every store type (runnable 0.50's BaseRunLogStore)."""

from __future__ import annotations

import json

import pytest

from runlog_store import (
    BaseRunLogStore,
    BranchLog,
    JobLog,
    JsonParameter,
    MetricParameter,
    ObjectParameter,
    RunLog,
    StepAttempt,
)
from runlog_store.exceptions import (
    BranchLogNotFoundError,
    JobLogNotFoundError,
    RunLogExistsError,
    RunLogNotFoundError,
    StepLogNotFoundError,
)


def _p(value: object) -> JsonParameter:
    return JsonParameter(kind="json", value=value)  # type: ignore[arg-type]


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
        branch = store.create_branch_log(f"map.{i}")
        store.add_branch_log(branch, run_id)
        store.set_parameters(run_id, {"item": _p(i)}, internal_branch_name=f"map.{i}")
        for name in ("work", "success"):
            step = store.create_step_log(name, f"map.{i}.{name}")
            store.add_step_log(step, run_id)
            step.status = "SUCCESS"
            store.add_step_log(step, run_id)
        branch = store.get_branch_log(f"map.{i}", run_id)
        assert isinstance(branch, BranchLog)
        branch.status = "SUCCESS"
        store.add_branch_log(branch, run_id)
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


def test_create_and_read_back(store: BaseRunLogStore) -> None:
    created = store.create_run_log("r1", dag_hash="h", tag="t")
    assert created.status == "CREATED"
    got = store.get_run_log_by_id("r1")
    assert (got.run_id, got.dag_hash, got.tag, got.status) == ("r1", "h", "t", "CREATED")


def test_create_twice_is_refused(store: BaseRunLogStore) -> None:
    store.create_run_log("r1")
    with pytest.raises(RunLogExistsError) as err:
        store.create_run_log("r1")
    assert err.value.run_id == "r1"


def test_missing_run_is_a_typed_error(store: BaseRunLogStore) -> None:
    with pytest.raises(RunLogNotFoundError, match="nope"):
        store.get_run_log_by_id("nope")
    with pytest.raises(RunLogNotFoundError):
        store.get_run_log_by_id("nope", full=True)
    with pytest.raises(RunLogNotFoundError):
        store.update_run_log_status("nope", "FAIL")
    with pytest.raises(RunLogNotFoundError):
        store.set_parameters("nope", {"a": _p(1)})


def test_full_run_log_tree(store: BaseRunLogStore) -> None:
    build_map_run(store)
    run = store.get_run_log_by_id("run-1", full=True)
    assert run.status == "SUCCESS"
    assert list(run.steps) == ["first", "map"]
    mapped = run.steps["map"]
    assert mapped.status == "SUCCESS"
    assert list(mapped.branches) == ["map.0", "map.1", "map.2"]
    assert list(mapped.branches["map.0"].steps) == ["map.0.work", "map.0.success", "map.0.par"]
    assert mapped.branches["map.1"].parameters["item"].value == 1
    assert mapped.branches["map.2"].status == "SUCCESS"
    assert run.find_step("map.0.par.left.leaf").status == "CREATED"
    assert run.find_branch("map.0.par.left").internal_name == "map.0.par.left"
    assert run.parameters["items"].value == [0, 1, 2]
    assert run.steps["first"].attempts[0].duration == "0:00:01.500000"


def test_get_run_log_json_is_the_full_run_log(store: BaseRunLogStore) -> None:
    build_map_run(store)
    from_json = RunLog.model_validate_json(store.get_run_log_json("run-1"))
    assert from_json == store.get_run_log_by_id("run-1", full=True)


def test_step_log_read_and_missing(store: BaseRunLogStore) -> None:
    build_map_run(store)
    assert store.get_step_log("map.1.work", "run-1").status == "SUCCESS"
    assert store.get_step_log("first", "run-1").attempts[0].output_parameters["x"].value == 1
    with pytest.raises(StepLogNotFoundError) as err:
        store.get_step_log("map.1.nothing", "run-1")
    assert err.value.step_name == "map.1.nothing"


def test_rewriting_a_step_keeps_its_place(store: BaseRunLogStore) -> None:
    build_map_run(store)
    fresh = store.get_step_log("first", "run-1")
    fresh.message = "rewritten"
    store.add_step_log(fresh, "run-1")
    # also a step object built from scratch for an existing step
    rebuilt = store.create_step_log("map", "map")
    rebuilt.status = "FAIL"
    store.add_step_log(rebuilt, "run-1")
    run = store.get_run_log_by_id("run-1", full=True)
    assert list(run.steps) == ["first", "map"]
    assert run.steps["first"].message == "rewritten"
    assert run.steps["map"].status == "FAIL"
    assert len(run.steps["map"].branches) == 3  # branches live on


def test_branch_log_read_and_missing(store: BaseRunLogStore) -> None:
    build_map_run(store)
    branch = store.get_branch_log("map.2", "run-1")
    assert isinstance(branch, BranchLog)
    assert branch.status == "SUCCESS"
    assert store.get_branch_log("", "run-1").run_id == "run-1"  # type: ignore[union-attr]
    with pytest.raises(BranchLogNotFoundError):
        store.get_branch_log("map.99", "run-1")


def test_parameters_root_and_branch_scopes(store: BaseRunLogStore) -> None:
    store.create_run_log("r")
    store.set_parameters("r", {"a": _p(1), "m": MetricParameter(kind="metric", value=0.5)})
    store.set_parameters("r", {"b": ObjectParameter(kind="object", value="model")})
    store.set_parameters("r", {"a": _p(2)})
    params = store.get_parameters("r")
    assert {k: v.value for k, v in params.items()} == {"a": 2, "m": 0.5, "b": "model"}
    assert params["b"].description == "Pickled object stored in catalog as: model"
    step = store.create_step_log("s", "s")
    store.add_step_log(step, "r")
    store.add_branch_log(store.create_branch_log("s.b", parameters={"x": _p(1)}), "r")
    store.set_parameters("r", {"y": _p(2)}, internal_branch_name="s.b")
    assert set(store.get_parameters("r", internal_branch_name="s.b")) == {"x", "y"}
    assert set(store.get_parameters("r")) == {"a", "m", "b"}
    with pytest.raises(BranchLogNotFoundError):
        store.set_parameters("r", {"y": _p(2)}, internal_branch_name="s.nope")


def test_run_config_is_merged(store: BaseRunLogStore) -> None:
    store.create_run_log("r")
    store.set_run_config("r", {"executor": {"type": "local"}, "dag": {"a": 1}})
    store.set_run_config("r", {"dag": {"b": 2}})
    assert store.get_run_config("r") == {"executor": {"type": "local"}, "dag": {"b": 2}}


def test_job_log(store: BaseRunLogStore) -> None:
    store.create_run_log("job-run")
    with pytest.raises(JobLogNotFoundError):
        store.get_job_log("job-run")
    job = store.create_job_log()
    assert job.status == "CREATED"
    job.status = "SUCCESS"
    job.attempts.append(StepAttempt(status="SUCCESS"))
    store.add_job_log("job-run", job)
    assert store.get_job_log("job-run").status == "SUCCESS"
    assert store.get_run_log_by_id("job-run").status == "SUCCESS"
    assert isinstance(store.get_run_log_by_id("job-run", full=True).job, JobLog)


def test_put_run_log_of_a_whole_tree(store: BaseRunLogStore, tmp_path: object) -> None:
    build_map_run(store)
    full = store.get_run_log_by_id("run-1", full=True)
    copy = full.model_copy(update={"run_id": "run-2"}, deep=True)
    store.put_run_log(copy)
    assert store.get_run_log_by_id("run-2", full=True).model_dump(exclude={"run_id"}) == (
        full.model_dump(exclude={"run_id"})
    )


def test_get_run_logs_filters(store: BaseRunLogStore) -> None:
    store.create_run_log("a", tag="x")
    store.create_run_log("b", tag="y")
    store.create_run_log("c", tag="x")
    store.update_run_log_status("c", "SUCCESS")
    assert {r.run_id for r in store.get_run_logs()} == {"a", "b", "c"}
    assert {r.run_id for r in store.get_run_logs(tag="x")} == {"a", "c"}
    assert [r.run_id for r in store.get_run_logs(tag="x", status="SUCCESS")] == ["c"]
    assert len(store.get_run_logs(limit=2)) == 2
    assert [r.run_id for r in store.get_run_logs(run_ids=["b"])] == ["b"]
    with pytest.raises(RunLogNotFoundError):
        store.get_run_logs(run_ids=["zzz"])


def test_factories_and_summary(store: BaseRunLogStore) -> None:
    assert store.create_code_identity().code_identifier == ""
    assert store.create_data_catalog("data/x.csv").name == "data/x.csv"
    summary = store.get_summary()
    assert summary["Type"] == store.service_name
    json.dumps(summary)


def test_step_with_branches_is_stored_whole(store: BaseRunLogStore) -> None:
    """A step handed in with its branches (built by hand) loses nothing."""
    store.create_run_log("r")
    step = store.create_step_log("par", "par")
    step.step_type = "parallel"
    branch = BranchLog(internal_name="par.a", status="SUCCESS")
    inner = store.create_step_log("inner", "par.a.inner")
    branch.steps["par.a.inner"] = inner
    step.branches["par.a"] = branch
    store.add_step_log(step, "r")
    run = store.get_run_log_by_id("r", full=True)
    assert run.find_step("par.a.inner").name == "inner"
    assert run.find_branch("par.a").status == "SUCCESS"


def test_restoring_a_step_keeps_its_branches(store: BaseRunLogStore) -> None:
    """A map step stored again from an old copy (to set its status) keeps every branch."""
    store.create_run_log("r")
    mapped = store.create_step_log("map", "map")
    store.add_step_log(mapped, "r")
    for i in range(3):
        store.add_branch_log(store.create_branch_log(f"map.{i}"), "r")
        store.add_step_log(store.create_step_log("w", f"map.{i}.w"), "r")
    mapped.status = "SUCCESS"
    store.add_step_log(mapped, "r")
    branch = store.create_branch_log("map.0")
    branch.status = "SUCCESS"
    store.add_branch_log(branch, "r")
    run = store.get_run_log_by_id("r", full=True)
    assert run.steps["map"].status == "SUCCESS"
    assert list(run.steps["map"].branches) == ["map.0", "map.1", "map.2"]
    assert run.find_branch("map.0").status == "SUCCESS"
    assert list(run.find_branch("map.0").steps) == ["map.0.w"]


def test_dots_in_step_names_and_map_values(store: BaseRunLogStore) -> None:
    store.create_run_log("r")
    store.add_step_log(store.create_step_log("v1.2", "v1.2"), "r")
    store.add_step_log(store.create_step_log("map", "map"), "r")
    store.add_branch_log(store.create_branch_log("map.0.5"), "r")
    store.add_step_log(store.create_step_log("fit.model", "map.0.5.fit.model"), "r")
    run = store.get_run_log_by_id("r", full=True)
    assert list(run.steps) == ["v1.2", "map"]
    assert list(run.steps["map"].branches) == ["map.0.5"]
    assert run.find_step("map.0.5.fit.model").name == "fit.model"
    assert store.get_step_log("map.0.5.fit.model", "r").name == "fit.model"
    assert store.get_step_log("v1.2", "r").name == "v1.2"
