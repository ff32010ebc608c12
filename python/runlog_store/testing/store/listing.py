"""Many runs: listing, filters and deletes, for stores that offer them."""

from __future__ import annotations

import pytest

from runlog_store import BaseRunLogStore
from runlog_store.exceptions import RunLogNotFoundError
from runlog_store.testing.store.suite import RUN, StoreSuite
from runlog_store.testing.store.tree import build_tree


class ListingTests(StoreSuite):
    """``list_run_ids``, ``get_run_logs`` filters and ``delete_run``, where the store offers
    them (see ``lists_runs`` and ``deletes_runs``)."""

    def test_listing_and_filters(self, store: BaseRunLogStore) -> None:
        if not self._lists(store):
            pytest.skip(f"{type(store).__name__} cannot list its runs (lists_runs is false)")
        assert store.list_run_ids() == [] and store.get_run_logs() == []
        store.create_run_log("a", tag="x")
        store.create_run_log("b", tag="y")
        store.create_run_log("c", tag="x")
        store.update_run_log_status("c", "SUCCESS")
        assert sorted(store.list_run_ids()) == ["a", "b", "c"]
        assert sorted(r.run_id for r in store.get_run_logs()) == ["a", "b", "c"]
        assert sorted(r.run_id for r in store.get_run_logs(tag="x")) == ["a", "c"]
        assert [r.run_id for r in store.get_run_logs(tag="x", status="SUCCESS")] == ["c"]
        assert [r.run_id for r in store.get_run_logs(status="CREATED", tag="y")] == ["b"]
        assert len(store.get_run_logs(limit=2)) == 2
        assert store.get_run_logs(limit=0) == []
        assert [r.run_id for r in store.get_run_logs(run_ids=["b", "a"])] == ["b", "a"]
        with pytest.raises(ValueError, match="-1"):
            store.get_run_logs(limit=-1)

    def test_delete_run(self, store: BaseRunLogStore) -> None:
        if not self._deletes(store):
            pytest.skip(f"{type(store).__name__} cannot delete runs (deletes_runs is false)")
        build_tree(store)
        store.create_run_log("other", tag="o")
        store.delete_run(RUN)
        with pytest.raises(RunLogNotFoundError):
            store.get_run_log_by_id(RUN, full=True)
        with pytest.raises(RunLogNotFoundError):
            store.get_run_log_json(RUN)
        with pytest.raises(RunLogNotFoundError):
            store.delete_run(RUN)
        assert store.get_run_log_by_id("other").tag == "o"
        if self._lists(store):
            assert store.list_run_ids() == ["other"]
        # the id is free again, and nothing of the deleted run comes back with it
        store.create_run_log(RUN)
        assert store.get_run_log_by_id(RUN, full=True).steps == {}


__all__ = ["ListingTests"]
