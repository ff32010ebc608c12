"""Creating runs (``create_run_log``, ``put_run_log``), the objects a store makes for its
caller, and its summary."""

from __future__ import annotations

import json

import pytest

from runlog_store import BaseRunLogStore, RunLog, StepAttempt, StepLog
from runlog_store.exceptions import RunLogExistsError
from runlog_store.testing._checks import check_summary
from runlog_store.testing.store.suite import RUN, StoreSuite
from runlog_store.testing.store.tree import EXPECTED_TREE, build_tree, json_param, tree_shape

# Unusual but valid: every store must keep them apart and give them back as they are.
UNUSUAL_RUN_IDS = ("with space", "ünïcode-rün ✓", "dots.in.id", "x..y", "a" * 200)


class CreateTests(StoreSuite):
    """Runs are created once, read back as written, and stored whole by ``put_run_log``."""

    def test_create_and_read_back(self, store: BaseRunLogStore) -> None:
        created = store.create_run_log(RUN, dag_hash="d4g", tag="nightly")
        assert isinstance(created, RunLog)
        assert (created.run_id, created.dag_hash, created.tag) == (RUN, "d4g", "nightly")
        assert created.status == "CREATED"
        for full in (False, True):
            got = store.get_run_log_by_id(RUN, full=full)
            assert (got.run_id, got.dag_hash, got.tag, got.status) == (
                RUN,
                "d4g",
                "nightly",
                "CREATED",
            )
            assert (got.steps, got.parameters, got.run_config, got.job) == ({}, {}, {}, None)
        store.create_run_log("started", status="PROCESSING")
        assert store.get_run_log_by_id("started").status == "PROCESSING"

    def test_a_second_create_is_refused_and_changes_nothing(self, store: BaseRunLogStore) -> None:
        store.create_run_log(RUN, tag="first")
        store.set_parameters(RUN, {"a": json_param(1)})
        with pytest.raises(RunLogExistsError) as raised:
            store.create_run_log(RUN, tag="second")
        assert raised.value.run_id == RUN
        kept = store.get_run_log_by_id(RUN, full=True)
        assert kept.tag == "first" and set(kept.parameters) == {"a"}

    def test_unusual_run_ids_round_trip(self, store: BaseRunLogStore) -> None:
        for i, run_id in enumerate(UNUSUAL_RUN_IDS):
            store.create_run_log(run_id, tag=str(i))
            store.add_step_log(store.create_step_log("s", "s"), run_id)
        for i, run_id in enumerate(UNUSUAL_RUN_IDS):
            run = store.get_run_log_by_id(run_id, full=True)
            assert (run.run_id, run.tag, list(run.steps)) == (run_id, str(i), ["s"])
        if self._lists(store):
            assert sorted(store.list_run_ids()) == sorted(UNUSUAL_RUN_IDS)

    def test_put_run_log_stores_a_whole_tree(self, store: BaseRunLogStore) -> None:
        build_tree(store)
        full = store.get_run_log_by_id(RUN, full=True)
        copy = full.model_copy(update={"run_id": "copy"}, deep=True)
        store.put_run_log(copy)
        got = store.get_run_log_by_id("copy", full=True)
        assert got.model_dump(mode="json", exclude={"run_id"}) == full.model_dump(
            mode="json", exclude={"run_id"}
        )
        assert tree_shape(got) == EXPECTED_TREE
        # and put over a stored run stores its run-level fields as given
        changed = store.get_run_log_by_id("copy", full=True)
        changed.status, changed.tag = "FAIL", "retagged"
        store.put_run_log(changed)
        again = store.get_run_log_by_id("copy", full=True)
        assert (again.status, again.tag) == ("FAIL", "retagged")
        assert tree_shape(again) == tree_shape(changed)

    def test_unknown_fields_survive(self, store: BaseRunLogStore) -> None:
        """Fields of older layouts and of newer runnables are kept as they are."""
        run = RunLog(run_id=RUN, status="CREATED", future_field={"x": [1, 2]})
        run.steps["old"] = StepLog(name="old", internal_name="old", legacy="kept")
        store.put_run_log(run)
        step = StepLog(name="new", internal_name="new", shiny=True)
        step.attempts.append(StepAttempt(duration="0:00:01"))
        store.add_step_log(step, RUN)
        store.set_parameters(RUN, {"a": json_param(1)})
        document = json.loads(store.get_run_log_json(RUN))
        assert document["future_field"] == {"x": [1, 2]}
        assert document["steps"]["old"]["legacy"] == "kept"
        assert document["steps"]["new"]["shiny"] is True
        assert document["steps"]["new"]["attempts"][0]["duration"] == "0:00:01"

    def test_factories(self, store: BaseRunLogStore) -> None:
        assert store.create_code_identity().code_identifier == ""
        assert store.create_data_catalog("data/x.csv").name == "data/x.csv"
        step = store.create_step_log("s", "a.b.s")
        assert (step.name, step.internal_name, step.status) == ("s", "a.b.s", "CREATED")
        branch = store.create_branch_log("a.b", parameters={"p": json_param(1)})
        assert (branch.internal_name, branch.status, list(branch.parameters)) == (
            "a.b",
            "CREATED",
            ["p"],
        )

    def test_summary_is_plain_and_shows_no_secret(self, store: BaseRunLogStore) -> None:
        check_summary(store)


__all__ = ["UNUSUAL_RUN_IDS", "CreateTests"]
