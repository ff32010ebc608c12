"""Parameters of every kind at root and branch scope, and the run config."""

from __future__ import annotations

import pytest

from runlog_store import BaseRunLogStore, MetricParameter, ObjectParameter
from runlog_store.exceptions import BranchLogNotFoundError
from runlog_store.testing.store.suite import RUN, StoreSuite
from runlog_store.testing.store.tree import json_param


class ParameterTests(StoreSuite):
    """Parameters merge by name in their scope; the run config merges by top-level key."""

    def test_run_config_is_merged(self, store: BaseRunLogStore) -> None:
        store.create_run_log(RUN)
        store.set_run_config(RUN, {"executor": {"type": "local"}, "dag": {"a": 1}})
        store.set_run_config(RUN, {"dag": {"b": 2}, "tags": ["x"]})
        expected = {"executor": {"type": "local"}, "dag": {"b": 2}, "tags": ["x"]}
        assert store.get_run_config(RUN) == expected
        assert store.get_run_log_by_id(RUN, full=True).run_config == expected

    def test_parameters_of_every_kind_at_root_and_branch_scope(
        self, store: BaseRunLogStore
    ) -> None:
        store.create_run_log(RUN)
        store.set_parameters(
            RUN, {"a": json_param(1), "m": MetricParameter(kind="metric", value=0.5)}
        )
        store.set_parameters(RUN, {"b": ObjectParameter(kind="object", value="model")})
        store.set_parameters(RUN, {"a": json_param({"nested": [1, "two", None]})})
        params = store.get_parameters(RUN)
        assert {k: (v.kind, v.value) for k, v in params.items()} == {
            "a": ("json", {"nested": [1, "two", None]}),
            "m": ("metric", 0.5),
            "b": ("object", "model"),
        }
        assert params["b"].description == "Pickled object stored in catalog as: model"
        assert store.get_run_log_by_id(RUN, full=True).parameters == params

        store.add_step_log(store.create_step_log("map", "map"), RUN)
        store.add_branch_log(store.create_branch_log("map.x", parameters={"x": json_param(1)}), RUN)
        store.set_parameters(RUN, {"y": MetricParameter(kind="metric", value=2)}, "map.x")
        store.set_parameters(RUN, {"x": json_param(3)}, internal_branch_name="map.x")
        scoped = store.get_parameters(RUN, internal_branch_name="map.x")
        assert {k: (v.kind, v.value) for k, v in scoped.items()} == {
            "x": ("json", 3),
            "y": ("metric", 2),
        }
        assert set(store.get_parameters(RUN)) == {"a", "m", "b"}, "branch scope leaked to root"
        with pytest.raises(BranchLogNotFoundError):
            store.set_parameters(RUN, {"z": json_param(0)}, internal_branch_name="map.nope")
        with pytest.raises(BranchLogNotFoundError):
            store.get_parameters(RUN, internal_branch_name="map.nope")


__all__ = ["ParameterTests"]
