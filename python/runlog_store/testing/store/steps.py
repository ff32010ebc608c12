"""Steps: read back at any depth, stored again, handed in whole, with dots in their names."""

from __future__ import annotations

import pytest

from runlog_store import BaseRunLogStore, BranchLog
from runlog_store.exceptions import StepLogNotFoundError
from runlog_store.testing.store.suite import RUN, StoreSuite
from runlog_store.testing.store.tree import build_tree


class StepTests(StoreSuite):
    """A step is found by its internal name at any depth, and storing it again keeps its
    place and its branches."""

    def test_steps_read_back_and_missing_ones_are_typed(self, store: BaseRunLogStore) -> None:
        build_tree(store)
        first = store.get_step_log("first", RUN)
        assert first.status == "SUCCESS" and first.attempts[0].output_parameters["x"].value == 1
        assert store.get_step_log("map.1.work", RUN).status == "SUCCESS"
        assert store.get_step_log("par.a.inner.0.leaf", RUN).name == "leaf"
        for missing in ("nothing", "map.1.nothing", "par.a.inner.0.nope"):
            with pytest.raises(StepLogNotFoundError) as raised:
                store.get_step_log(missing, RUN)
            assert raised.value.step_name == missing and raised.value.run_id == RUN

    def test_rewriting_a_step_keeps_its_place_and_its_branches(
        self, store: BaseRunLogStore
    ) -> None:
        build_tree(store)
        fresh = store.get_step_log("first", RUN)
        fresh.message = "rewritten"
        store.add_step_log(fresh, RUN)
        rebuilt = store.create_step_log("map", "map")  # from scratch, without its branches
        rebuilt.status = "FAIL"
        store.add_step_log(rebuilt, RUN)
        run = store.get_run_log_by_id(RUN, full=True)
        assert list(run.steps) == ["first", "map", "par"]
        assert run.steps["first"].message == "rewritten"
        assert run.steps["map"].status == "FAIL"
        assert list(run.steps["map"].branches) == ["map.0", "map.1", "map.2"]
        assert list(run.find_branch("map.0").steps) == ["map.0.work", "map.0.success", "map.0.par"]

    def test_a_step_handed_in_with_its_branches_is_stored_whole(
        self, store: BaseRunLogStore
    ) -> None:
        store.create_run_log(RUN)
        step = store.create_step_log("par", "par")
        step.step_type = "parallel"
        branch = BranchLog(internal_name="par.a", status="SUCCESS")
        branch.steps["par.a.inner"] = store.create_step_log("inner", "par.a.inner")
        step.branches["par.a"] = branch
        store.add_step_log(step, RUN)
        run = store.get_run_log_by_id(RUN, full=True)
        assert run.find_step("par.a.inner").name == "inner"
        assert run.find_branch("par.a").status == "SUCCESS"

    def test_dots_in_step_names_and_map_values(self, store: BaseRunLogStore) -> None:
        store.create_run_log(RUN)
        store.add_step_log(store.create_step_log("v1.2", "v1.2"), RUN)
        store.add_step_log(store.create_step_log("map", "map"), RUN)
        store.add_branch_log(store.create_branch_log("map.0.5"), RUN)
        store.add_step_log(store.create_step_log("fit.model", "map.0.5.fit.model"), RUN)
        run = store.get_run_log_by_id(RUN, full=True)
        assert list(run.steps) == ["v1.2", "map"]
        assert list(run.steps["map"].branches) == ["map.0.5"]
        assert list(run.find_branch("map.0.5").steps) == ["map.0.5.fit.model"]
        assert run.find_step("map.0.5.fit.model").name == "fit.model"
        assert store.get_step_log("map.0.5.fit.model", RUN).name == "fit.model"
        assert store.get_step_log("v1.2", RUN).name == "v1.2"


__all__ = ["StepTests"]
