"""The store behaviours runnable 0.50 expects of a run log store, checked on each of ours built
the way runnable builds a service: by name from its ``run_log_store`` plugin group (stevedore),
through its own context's check, with runnable's models and exceptions at the boundary."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import runnable.datastore as runnable_models
from pydantic import TypeAdapter
from runnable import context as runnable_context
from runnable import exceptions as runnable_errors

from runlog_store.integrations import runnable as integration

LOCAL = ["runlog-buffered", "runlog-file-system", "runlog-chunked-fs"]
OBJECT = ["runlog-minio", "runlog-chunked-minio"]
# Stores that keep each branch in a document of its own, as runnable's chunked stores do.
CHUNKED = {"runlog-chunked-fs", "runlog-chunked-minio"}
RUN = "test_run"

Store = Any  # a runnable run log store (runnable ships no type hints)


def build(type_name: str, config: dict[str, Any]) -> Store:
    """What runnable does with the ``run-log-store`` section of its configuration."""
    return TypeAdapter(runnable_context.InstantiatedRunLogStore).validate_python(
        {"type": type_name, "config": config}
    )


@pytest.fixture(params=LOCAL + OBJECT)
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Store]:
    """Builds the store of the parameter's type (each call a new one on the same storage)."""
    type_name: str = request.param
    if type_name in OBJECT:
        base: dict[str, Any] = dict(request.getfixturevalue("minio_config"))
    elif type_name == "runlog-buffered":
        base = {}
    else:
        base = {"log_folder": str(tmp_path / "logs"), "fsync": False}
    shared: dict[str, Store] = {}

    def factory(**config: Any) -> Store:
        if type_name == "runlog-buffered" and not config:
            # A buffered store keeps runs in its own memory: the same object every time.
            return shared.setdefault("store", build(type_name, base))
        return build(type_name, {**base, **config})

    return factory


def _step(name: str, internal_name: str, status: str = "CREATED") -> Any:
    return runnable_models.StepLog(name=name, internal_name=internal_name, status=status)


def _branch(internal_name: str) -> Any:
    return runnable_models.BranchLog(internal_name=internal_name)


def _nested_run(store: Store) -> None:
    """level1 / level1.branch1 / level1.branch1.level2 / level1.branch1.level2.branch2."""
    store.create_run_log(run_id=RUN)
    store.add_step_log(_step("level1", "level1"), RUN)
    store.add_branch_log(_branch("level1.branch1"), RUN)
    store.add_step_log(_step("level2", "level1.branch1.level2"), RUN)
    store.add_branch_log(_branch("level1.branch1.level2.branch2"), RUN)


def test_run_logs_are_created_found_and_refused_twice(make: Callable[..., Store]) -> None:
    store = make()
    created = store.create_run_log(run_id=RUN, dag_hash="abc", tag="t", status="PROCESSING")
    assert isinstance(created, runnable_models.RunLog)
    found = make().get_run_log_by_id(run_id=RUN)
    assert isinstance(found, runnable_models.RunLog)
    assert (found.run_id, found.dag_hash, found.tag, found.status) == (
        RUN,
        "abc",
        "t",
        "PROCESSING",
    )
    with pytest.raises(runnable_errors.RunLogExistsError):
        store.create_run_log(run_id=RUN)
    store.update_run_log_status(run_id=RUN, status="SUCCESS")
    assert make().get_run_log_by_id(RUN, full=True).status == "SUCCESS"


def test_a_missing_run_is_runnables_error_with_its_id(make: Callable[..., Store]) -> None:
    store = make()
    calls = {
        "get_run_log_by_id": lambda: store.get_run_log_by_id(run_id="nonexistent_run"),
        "add_step_log": lambda: store.add_step_log(_step("step1", "step1"), "nonexistent_run"),
        "add_branch_log": lambda: store.add_branch_log(_branch("step1.branch1"), "nonexistent_run"),
        "get_branch_log": lambda: store.get_branch_log("branch1", "nonexistent_run"),
        "get_parameters": lambda: store.get_parameters(run_id="nonexistent_run"),
        "set_parameters": lambda: store.set_parameters(run_id="nonexistent_run", parameters={}),
    }
    for name, call in calls.items():
        with pytest.raises(runnable_errors.RunLogNotFoundError) as raised:
            call()
        assert raised.value.run_id == "nonexistent_run", name


def test_steps_are_placed_at_every_depth(make: Callable[..., Store]) -> None:
    store = make()
    _nested_run(store)
    store.add_step_log(_step("root", "root"), RUN)
    store.add_step_log(_step("nested", "level1.branch1.level2.branch2.nested"), RUN)
    reader = make()
    nested = reader.get_step_log("level1.branch1.level2.branch2.nested", RUN)
    assert isinstance(nested, runnable_models.StepLog)
    assert (nested.name, nested.internal_name) == ("nested", "level1.branch1.level2.branch2.nested")
    run = reader.get_run_log_by_id(RUN, full=True)
    assert list(run.steps) == ["level1", "root"]
    level2 = run.steps["level1"].branches["level1.branch1"].steps["level1.branch1.level2"]
    deepest = level2.branches["level1.branch1.level2.branch2"]
    assert list(deepest.steps) == ["level1.branch1.level2.branch2.nested"]
    found, parent = run.search_step_by_internal_name("level1.branch1.level2.branch2.nested")
    assert found.name == "nested" and parent.internal_name == "level1.branch1.level2.branch2"


def test_a_step_stored_again_replaces_the_first(make: Callable[..., Store]) -> None:
    store = make()
    store.create_run_log(run_id=RUN)
    store.add_step_log(_step("step1", "step1", status="CREATED"), RUN)
    store.add_step_log(_step("step1", "step1", status="COMPLETED"), RUN)
    assert make().get_step_log("step1", RUN).status == "COMPLETED"
    assert make().get_run_log_by_id(RUN, full=True).steps["step1"].status == "COMPLETED"


def test_a_step_whose_branch_does_not_exist_is_refused(make: Callable[..., Store]) -> None:
    store = make()
    _nested_run(store)
    for internal_name, branch in (
        ("nonexistent.branch.step1", "nonexistent.branch"),
        ("level1.branch9.step", "level1.branch9"),
        ("level1.branch1.level2.other.leaf", "level1.branch1.level2.other"),
    ):
        with pytest.raises(runnable_errors.BranchLogNotFoundError) as raised:
            store.add_step_log(_step("step1", internal_name), RUN)
        assert (raised.value.run_id, raised.value.branch_name) == (RUN, branch)
    run = make().get_run_log_by_id(RUN, full=True)
    assert list(run.steps) == ["level1"], "nothing was stored"


def test_branches_are_found_placed_and_missing_ones_typed(make: Callable[..., Store]) -> None:
    store = make()
    _nested_run(store)
    reader = make()
    as_run = reader.get_branch_log("", RUN)
    assert isinstance(as_run, runnable_models.RunLog) and as_run.run_id == RUN
    nested = reader.get_branch_log("level1.branch1.level2.branch2", RUN)
    assert isinstance(nested, runnable_models.BranchLog)
    assert nested.internal_name == "level1.branch1.level2.branch2"
    store.add_branch_log(_branch("level1.branch2"), RUN)
    store.add_branch_log(_branch("level1.branch3"), RUN)
    run = make().get_run_log_by_id(RUN, full=True)
    assert list(run.steps["level1"].branches) == [
        "level1.branch1",
        "level1.branch2",
        "level1.branch3",
    ]
    with pytest.raises(runnable_errors.BranchLogNotFoundError) as missing:
        reader.get_branch_log("nonexistent.branch", RUN)
    assert (missing.value.run_id, missing.value.branch_name) == (RUN, "nonexistent.branch")
    if store.type_name in CHUNKED:
        # As runnable's own chunked stores: the branch is kept, and read under the step its
        # name names, made up (a step lost to a power cut without fsync loses no branch).
        store.add_branch_log(_branch("nonexistent.branch1"), RUN)
        kept = make().get_run_log_by_id(RUN, full=True)
        assert list(kept.steps["nonexistent"].branches) == ["nonexistent.branch1"]
        return
    with pytest.raises(runnable_errors.StepLogNotFoundError) as no_step:
        store.add_branch_log(_branch("nonexistent.branch1"), RUN)
    assert (no_step.value.run_id, no_step.value.step_name) == (RUN, "nonexistent")


def test_a_run_log_added_as_a_branch_is_the_run(make: Callable[..., Store]) -> None:
    store = make()
    store.create_run_log(run_id=RUN)
    run = store.get_run_log_by_id(RUN)
    run.tag = "stored as the run"
    store.add_branch_log(run, RUN)
    assert make().get_run_log_by_id(RUN).tag == "stored as the run"


def test_a_missing_step_is_runnables_error_with_its_name(make: Callable[..., Store]) -> None:
    store = make()
    _nested_run(store)
    for name in ("step1", "level1.branch1.nothing", "step1.nonexistent.step2"):
        with pytest.raises(runnable_errors.StepLogNotFoundError) as raised:
            store.get_step_log(name, RUN)
        assert (raised.value.run_id, raised.value.step_name) == (RUN, name)


def _json(value: Any) -> Any:
    return runnable_models.JsonParameter(kind="json", value=value)


def test_parameters_at_root_and_branch_scope(make: Callable[..., Store]) -> None:
    store = make()
    _nested_run(store)
    store.set_parameters(run_id=RUN, parameters={"root_param": _json("root_value")})
    store.set_parameters(
        run_id=RUN,
        parameters={"branch_param": _json("branch_value")},
        internal_branch_name="level1.branch1",
    )
    store.set_parameters(run_id=RUN, parameters={"root_param": _json("again"), "n": _json(2)})
    reader = make()
    root = reader.get_parameters(run_id=RUN)
    assert {k: p.get_value() for k, p in root.items()} == {"root_param": "again", "n": 2}
    assert all(isinstance(p, runnable_models.JsonParameter) for p in root.values())
    branch = reader.get_parameters(run_id=RUN, internal_branch_name="level1.branch1")
    assert {k: p.get_value() for k, p in branch.items()} == {"branch_param": "branch_value"}
    found = reader.get_branch_log("level1.branch1", RUN)
    assert found.parameters["branch_param"].get_value() == "branch_value"
    with pytest.raises(runnable_errors.BranchLogNotFoundError) as missing:
        store.set_parameters(RUN, {"x": _json(1)}, internal_branch_name="level1.nope")
    assert missing.value.branch_name == "level1.nope"


def test_a_branch_made_with_parameters_keeps_them(make: Callable[..., Store]) -> None:
    store = make()
    _nested_run(store)
    branch = store.create_branch_log(
        internal_branch_name="level1.branch2",
        parameters={"param1": _json("value1"), "param2": _json("value2")},
    )
    assert branch.internal_name == "level1.branch2"
    store.add_branch_log(branch, RUN)
    stored = make().get_parameters(RUN, internal_branch_name="level1.branch2")
    assert {k: p.get_value() for k, p in stored.items()} == {
        "param1": "value1",
        "param2": "value2",
    }


def test_run_config_is_merged(make: Callable[..., Store]) -> None:
    store = make()
    store.create_run_log(run_id=RUN)
    store.set_run_config(run_id=RUN, run_config={"executor": {"type": "local"}, "a": 1})
    store.set_run_config(run_id=RUN, run_config={"a": 2, "b": [1, 2]})
    assert make().get_run_config(run_id=RUN) == {
        "executor": {"type": "local"},
        "a": 2,
        "b": [1, 2],
    }


def test_service_name_is_accepted_as_runnable_accepts_it(make: Callable[..., Store]) -> None:
    store = make(service_name="test_store")
    assert store.service_name == "test_store"
    assert store.get_summary()["Type"] == "test_store"
    store.create_run_log(run_id=RUN)
    store.add_step_log(_step("step1", "step1"), RUN)
    assert store.get_step_log("step1", RUN).name == "step1"


def test_our_classes_take_service_name_as_runnables_do() -> None:
    store = integration.BufferedRunLogStore(service_name="test_store")
    assert store.service_name == "test_store"
    store.create_run_log(run_id=RUN)
    with pytest.raises(runnable_errors.BranchLogNotFoundError) as raised:
        store.add_step_log(_step("step1", "nonexistent.branch.step1"), RUN)
    assert (raised.value.run_id, raised.value.branch_name) == (RUN, "nonexistent.branch")
