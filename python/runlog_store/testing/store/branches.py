"""Branches: read back at any depth, stored again, and the branch "" that is the run itself."""

from __future__ import annotations

import pytest

from runlog_store import BaseRunLogStore, BranchLog, RunLog
from runlog_store.exceptions import BranchLogNotFoundError
from runlog_store.testing.store.suite import RUN, StoreSuite
from runlog_store.testing.store.tree import build_tree


class BranchTests(StoreSuite):
    """A branch is found by its internal name at any depth, and storing it again keeps its
    steps."""

    def test_branch_named_empty_is_the_run_itself(self, store: BaseRunLogStore) -> None:
        """runnable's convention: branch "" is the run itself, and adding a RunLog as a branch
        stores the run."""
        store.create_run_log(RUN, tag="t")
        run = store.get_branch_log("", RUN)
        assert isinstance(run, RunLog) and (run.run_id, run.tag) == (RUN, "t")
        run.status = "SUCCESS"
        store.add_branch_log(run, RUN)
        assert store.get_run_log_by_id(RUN).status == "SUCCESS"

    def test_branches_read_back_and_missing_ones_are_typed(self, store: BaseRunLogStore) -> None:
        build_tree(store)
        branch = store.get_branch_log("map.2", RUN)
        assert isinstance(branch, BranchLog)
        assert (branch.internal_name, branch.status) == ("map.2", "SUCCESS")
        assert branch.parameters["item"].value == 2
        nested = store.get_branch_log("par.a.inner.0", RUN)
        assert isinstance(nested, BranchLog) and nested.parameters["deep"].value == "yes"
        for missing in ("map.99", "par.c", "nostep.0", "par.a.inner.7"):
            with pytest.raises(BranchLogNotFoundError) as raised:
                store.get_branch_log(missing, RUN)
            assert raised.value.branch_name == missing and raised.value.run_id == RUN

    def test_storing_a_branch_again_keeps_its_steps(self, store: BaseRunLogStore) -> None:
        build_tree(store)
        again = store.create_branch_log("map.1")  # from scratch, without its steps
        again.status = "FAIL"
        store.add_branch_log(again, RUN)
        run = store.get_run_log_by_id(RUN, full=True)
        assert run.find_branch("map.1").status == "FAIL"
        assert list(run.find_branch("map.1").steps) == ["map.1.work", "map.1.success"]


__all__ = ["BranchTests"]
