"""The models read every fixture, keep old fields, and write what runnable 0.50 accepts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import runnable.datastore as runnable_models

from runlog_store import JsonParameter, MetricParameter, ObjectParameter, RunLog, StepLog
from runlog_store.exceptions import BranchLogNotFoundError, StepLogNotFoundError

from ..conftest import RUNNABLE_FIXTURES, SEED_FIXTURES

FULL_LOGS = [
    *sorted((RUNNABLE_FIXTURES / "file-system").glob("*.json")),
    RUNNABLE_FIXTURES / "expected-full" / "chunked-map.json",
]


@pytest.mark.parametrize("path", FULL_LOGS, ids=lambda p: p.name)
def test_runnable_050_logs_round_trip_exactly(path: Path) -> None:
    raw = json.loads(path.read_text())
    ours = json.loads(RunLog.model_validate(raw).model_dump_json())
    assert ours == raw
    runnable_models.RunLog.model_validate(ours)


def test_seed_layout_log_keeps_every_old_field() -> None:
    path = SEED_FIXTURES / "file-system" / "blocking-shaw-0538.json"
    raw = json.loads(path.read_text())
    ours = json.loads(RunLog.model_validate(raw).model_dump_json())

    def contains(big: object, small: object) -> bool:
        if isinstance(small, dict):
            return isinstance(big, dict) and all(
                k in big and contains(big[k], v) for k, v in small.items()
            )
        if isinstance(small, list):
            return (
                isinstance(big, list) and len(big) == len(small) and all(map(contains, big, small))
            )
        return big == small

    assert contains(ours, raw)
    runnable_models.RunLog.model_validate(ours)


def test_runnable_reads_our_parameters_and_descriptions() -> None:
    run = RunLog(run_id="r")
    run.parameters = {
        "short": JsonParameter(kind="json", value="abc"),
        "long": JsonParameter(kind="json", value="abcdefghijklmnop"),
        "metric": MetricParameter(kind="metric", value=0.25),
        "obj": ObjectParameter(kind="object", value="model"),
    }
    dumped = json.loads(run.model_dump_json())
    assert dumped["parameters"]["long"]["description"] == "abcdefghij..."
    theirs = runnable_models.RunLog.model_validate(dumped)
    assert theirs.parameters["metric"].value == 0.25
    again = RunLog.model_validate_json(run.model_dump_json())
    assert again.parameters["obj"].description == "Pickled object stored in catalog as: model"


def test_stored_object_description_survives() -> None:
    param = ObjectParameter.model_validate(
        {"kind": "object", "value": "x", "description": "Object stored in memory as: x"}
    )
    assert json.loads(param.model_dump_json())["description"] == "Object stored in memory as: x"


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError):
        RunLog.model_validate({"run_id": "r", "parameters": {"a": {"kind": "pickle", "value": 1}}})


def test_tree_helpers_and_typed_not_found() -> None:
    run = RunLog.model_validate(
        json.loads((RUNNABLE_FIXTURES / "expected-full" / "chunked-map.json").read_text())
    )
    step, branch = run.search_step_by_internal_name("map_state.2.work")
    assert step.name == "work" and branch is not None and branch.internal_name == "map_state.2"
    assert run.search_step_by_internal_name("gen") == (run.steps["gen"], None)
    found, parent = run.search_branch_by_internal_name("parallel step.branch1")
    assert found.internal_name == "parallel step.branch1"  # type: ignore[union-attr]
    assert parent is run.steps["parallel step"]
    assert run.search_branch_by_internal_name("") == (run, None)
    with pytest.raises(StepLogNotFoundError) as err:
        run.find_step("map_state.9.work")
    assert err.value.run_id == "chunked-map" and err.value.step_name == "map_state.9.work"
    with pytest.raises(BranchLogNotFoundError):
        run.find_branch("map_state.9")
    with pytest.raises(BranchLogNotFoundError):
        run.find_branch("gen")
    names = [s.internal_name for s in run.iter_steps()]
    assert names[0] == "gen" and "map_state.4.success" in names and len(names) == len(set(names))
    assert {dc.name for dc in run.get_data_catalogs_by_stage("put")} >= {
        "data/table.csv",
        "data/out_1.txt",
    }
    with pytest.raises(ValueError):
        run.get_data_catalogs_by_stage("bogus")


def test_step_summary_like_runnable() -> None:
    run = RunLog.model_validate(
        json.loads((RUNNABLE_FIXTURES / "file-system" / "fs-map.json").read_text())
    )
    step = next(iter(run.steps.values()))
    ours = step.get_summary()
    theirs = runnable_models.StepLog.model_validate(step.model_dump(mode="json")).get_summary()
    assert ours == theirs
    assert isinstance(StepLog(name="a", internal_name="a").get_summary(), dict)
