"""Reading a run: in full, not in full, as JSON, and by runnable's own models."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runlog_store import BaseRunLogStore, JobLog, RunLog
from runlog_store.testing.store.suite import RUN, StoreSuite
from runlog_store.testing.store.tree import EXPECTED_TREE, build_tree, tree_shape

# The run-level fields a read that is not full must get right.
RUN_FIELDS = {"run_id", "dag_hash", "tag", "status", "parameters", "run_config", "job"}


def _without_descriptions(document: Any) -> Any:
    if isinstance(document, dict):
        return {k: _without_descriptions(v) for k, v in document.items() if k != "description"}
    if isinstance(document, list):
        return [_without_descriptions(v) for v in document]
    return document


class ReadTests(StoreSuite):
    """Every step and branch of a run, at every depth and in stored order, reads back."""

    def test_full_read_has_every_step_and_branch(self, store: BaseRunLogStore) -> None:
        build_tree(store)
        run = store.get_run_log_by_id(RUN, full=True)
        assert (run.status, run.tag, run.dag_hash) == ("SUCCESS", "nightly", "d4g")
        assert tree_shape(run) == EXPECTED_TREE
        # stored order, at every depth
        assert list(run.steps) == ["first", "map", "par"]
        assert list(run.steps["map"].branches) == ["map.0", "map.1", "map.2"]
        assert list(run.find_branch("map.0").steps) == ["map.0.work", "map.0.success", "map.0.par"]
        assert run.steps["map"].step_type == "map" and run.steps["par"].step_type == "parallel"
        first = run.steps["first"]
        assert first.attempts[0].output_parameters["score"].value == 0.75
        assert first.attempts[0].code_identities[0].code_identifier == "abc123"
        assert first.attempts[0].duration == "0:00:01.500000"
        assert [(d.name, d.stage) for d in first.data_catalog] == [("data/x.csv", "put")]
        assert {name: p.value for name, p in run.parameters.items()} == {
            "items": [0, 1, 2],
            "lr": 0.1,
            "model": "model.pkl",
        }
        assert run.find_branch("map.2").parameters["item"].value == 2
        assert run.find_branch("par.a.inner.0").parameters["deep"].value == "yes"
        assert run.find_step("par.a.inner.0.leaf").name == "leaf"

    def test_read_that_is_not_full_has_the_run_fields(self, store: BaseRunLogStore) -> None:
        build_tree(store)
        store.add_job_log(RUN, JobLog(status="SUCCESS"))
        full = store.get_run_log_by_id(RUN, full=True)
        short = store.get_run_log_by_id(RUN)
        assert short.model_dump(mode="json", include=RUN_FIELDS) == full.model_dump(
            mode="json", include=RUN_FIELDS
        )
        # A store may leave steps out of a read that is not full; those it gives are right.
        for name, step in short.steps.items():
            assert name in full.steps and step.status == full.steps[name].status

    def test_get_run_log_json_is_the_full_run_log(self, store: BaseRunLogStore) -> None:
        build_tree(store)
        data = store.get_run_log_json(RUN)
        assert isinstance(data, bytes)
        full = store.get_run_log_by_id(RUN, full=True)
        assert json.loads(data) == json.loads(full.model_dump_json())
        assert RunLog.model_validate_json(data).model_dump() == full.model_dump()
        assert list(json.loads(data)["steps"]["map"]["branches"]) == ["map.0", "map.1", "map.2"]
        salvaged = store.salvage_run_log(RUN)
        assert salvaged.skipped == [] and salvaged.run_log.model_dump() == full.model_dump()

    def test_runnable_reads_the_json(self, store: BaseRunLogStore) -> None:
        datastore = pytest.importorskip(
            "runnable.datastore", reason="runnable is not installed: its models cannot be asked"
        )
        build_tree(store)
        theirs = datastore.RunLog.model_validate_json(store.get_run_log_json(RUN))
        assert theirs.search_step_by_internal_name("par.a.inner.0.leaf")[0].name == "leaf"
        ours = store.get_run_log_by_id(RUN, full=True)
        # runnable derives an object parameter's description from its run context
        assert _without_descriptions(json.loads(theirs.model_dump_json())) == (
            _without_descriptions(json.loads(ours.model_dump_json()))
        )


__all__ = ["RUN_FIELDS", "ReadTests"]
