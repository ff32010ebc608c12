"""The postgres store's merge kept at a run's end: a full read of the ended run is that merge
while the run's rows are those it was made from, and the merge of the rows as they are as soon
as any changed, through the store or behind its back."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from runlog_store import create_store
from runlog_store.models import JsonParameter
from runlog_store.stores.postgres import PostgresRunLogStore


def _store(config: dict[str, Any]) -> PostgresRunLogStore:
    store = create_store("postgres", **config)
    assert isinstance(store, PostgresRunLogStore)
    return store


def _sql(config: dict[str, Any], statement: str, *params: Any) -> Any:
    keys = ("host", "port", "dbname", "user", "password")
    with psycopg.connect(autocommit=True, **{key: config[key] for key in keys}) as conn:
        cur = conn.execute(statement.replace("{schema}", config["schema_name"]), params)
        return cur.fetchone() if cur.description else None


def _ended_run(store: PostgresRunLogStore, run_id: str) -> None:
    store.create_run_log(run_id)
    mapped = store.create_step_log("map", "map")
    store.add_step_log(mapped, run_id)
    for b in range(3):
        branch = store.create_branch_log(f"map.{b}")
        store.add_branch_log(branch, run_id)
        step = store.create_step_log("s", f"map.{b}.s")
        step.status = "SUCCESS"
        store.add_step_log(step, run_id)
    store.update_run_log_status(run_id, "SUCCESS")


def _merged_from_rows(store: PostgresRunLogStore, config: dict[str, Any], run_id: str) -> bytes:
    """The full read as a merge of the rows (the kept merge out of the way)."""
    _sql(config, "UPDATE {schema}.runs SET merged = NULL WHERE run_id = %s", run_id)
    return store.get_run_log_json(run_id)


def test_an_ended_run_is_read_from_its_kept_merge(postgres_config: dict[str, Any]) -> None:
    store = _store(postgres_config)
    _ended_run(store, "r")
    kept = _sql(postgres_config, "SELECT merged FROM {schema}.runs WHERE run_id = %s", "r")[0]
    assert kept is not None
    assert store.get_run_log_json("r") == bytes(kept)
    # Read from it: a kept merge that differs from the rows' (made so here, to tell them
    # apart) is what the read returns while the rows are unchanged.
    marked = bytes(kept).replace(b'"status":"SUCCESS"', b'"status":"SUCCESS" ', 1)
    _sql(postgres_config, "UPDATE {schema}.runs SET merged = %s WHERE run_id = %s", marked, "r")
    assert store.get_run_log_json("r") == marked
    assert _merged_from_rows(store, postgres_config, "r") == bytes(kept)


@pytest.mark.parametrize(
    "change",
    ["a step written again", "a new step", "a branch's parameters", "the run's status"],
)
def test_a_change_after_the_end_is_read(postgres_config: dict[str, Any], change: str) -> None:
    store = _store(postgres_config)
    _ended_run(store, "r")
    if change == "a step written again":
        step = store.get_step_log("map.1.s", "r")
        step.status = "FAIL"
        store.add_step_log(step, "r")
    elif change == "a new step":
        store.add_step_log(store.create_step_log("t", "map.2.t"), "r")
    elif change == "a branch's parameters":
        param = JsonParameter(kind="json", value=7)
        store.set_parameters("r", {"x": param}, internal_branch_name="map.0")
    else:
        # Without ending it again (no new merge kept): a status the run's row alone holds.
        _sql(
            postgres_config,
            "UPDATE {schema}.runs SET document = convert_to(replace("
            "convert_from(document, 'UTF8'), 'SUCCESS', 'FAIL'), 'UTF8') WHERE run_id = %s",
            "r",
        )
    read = store.get_run_log_by_id("r", full=True)
    branches = read.steps["map"].branches
    if change == "a step written again":
        assert branches["map.1"].steps["map.1.s"].status == "FAIL"
    elif change == "a new step":
        assert "map.2.t" in branches["map.2"].steps
    elif change == "a branch's parameters":
        assert branches["map.0"].parameters["x"].value == 7
    else:
        assert read.status == "FAIL"
    assert store.get_run_log_json("r") == _merged_from_rows(store, postgres_config, "r")


def test_a_row_changed_behind_the_stores_back_is_read(postgres_config: dict[str, Any]) -> None:
    store = _store(postgres_config)
    _ended_run(store, "r")
    _sql(
        postgres_config,
        "UPDATE {schema}.nodes SET body = convert_to(replace(convert_from(body, 'UTF8'), "
        "'SUCCESS', 'FAIL'), 'UTF8') "
        "WHERE run_id = %s AND internal_name = 'map.2.s'",
        "r",
    )
    read = store.get_run_log_by_id("r", full=True)
    assert read.steps["map"].branches["map.2"].steps["map.2.s"].status == "FAIL"


def test_a_run_created_again_has_no_merge_of_the_deleted_one(
    postgres_config: dict[str, Any],
) -> None:
    store = _store(postgres_config)
    _ended_run(store, "r")
    store.delete_run("r")
    store.create_run_log("r")
    read = store.get_run_log_by_id("r", full=True)
    assert read.steps == {}
    assert read.status != "SUCCESS"
