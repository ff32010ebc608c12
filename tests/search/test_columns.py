"""Columns of runs (``runlog list --columns``, the runs page's Columns field) and the filter the
shorthands make: one library for the command line and the runs page."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from runlog_store.ops.columns import (
    MISSING,
    Column,
    ColumnError,
    column_value,
    parse_columns,
    split_columns,
)
from runlog_store.ops.runs import RunSummary
from runlog_store.search.query import all_of, matches, parse_filter, quoted, with_shorthands


def _run(**fields: object) -> RunSummary:
    base: dict[str, object] = {
        "run_id": "r1",
        "status": "FAIL",
        "tag": "nightly",
        "start": datetime(2026, 1, 1, 12, 0, 0),
        "end": None,
        "duration_seconds": None,
        "steps": 2,
        "branches": 0,
        "failed_step": "train",
    }
    return RunSummary.model_validate({**base, **fields})


def test_columns_split_at_commas_outside_quoted_names() -> None:
    text = 'params.lr, metrics.`a,b` ,step."x,y".status,, status'
    assert split_columns(text) == ["params.lr", "metrics.`a,b`", 'step."x,y".status', "status"]


def test_each_column_is_read_as_the_filter_language_reads_an_attribute() -> None:
    columns = parse_columns('params.lr,metrics.`a,b`,step."x,y".status,start_time')
    assert columns == [
        Column("params.lr", "params", "lr"),
        Column("metrics.`a,b`", "metrics", "a,b"),
        Column('step."x,y".status', "step", "x,y"),
        Column("start_time", "start_time", ""),
    ]


@pytest.mark.parametrize("bad", ["lr", "params.", "status = 'FAIL'", "metrics.a desc"])
def test_a_column_that_is_no_attribute_is_named_by_the_error(bad: str) -> None:
    with pytest.raises(ColumnError) as caught:
        parse_columns(f"params.ok, {bad}")
    assert caught.value.header == bad
    assert str(caught.value).startswith(f"{bad!r} is not an attribute of runs; they are ")
    assert "params.<name>" in str(caught.value)


def test_a_run_without_the_value_is_told_from_a_run_holding_null() -> None:
    run = _run(params={"lr": 0.1, "nothing": None}, step_statuses={"x,y": "SUCCESS"})
    lr, nothing, absent, step, start, end = parse_columns(
        'params.lr, params.nothing, params.absent, step."x,y".status, start_time, end_time'
    )
    assert column_value(run, lr) == 0.1
    assert column_value(run, nothing) is None
    assert column_value(run, absent) is MISSING
    assert column_value(run, step) == "SUCCESS"
    assert column_value(run, start) == datetime(2026, 1, 1, 12, 0, 0)
    assert column_value(run, end) is MISSING


def test_the_shorthands_and_the_filter_must_all_match() -> None:
    assert with_shorthands(None) is None
    assert with_shorthands("  ") is None
    assert with_shorthands("params.lr > 0.1") == "params.lr > 0.1"
    assert with_shorthands(None, tag="it's") == "tag = 'it''s'"
    combined = with_shorthands("params.lr > 0.1", "FAIL", "nightly", timedelta(days=2))
    assert combined == (
        "(params.lr > 0.1) and (status = 'FAIL') and (tag = 'nightly') and "
        "(start_time >= -172800s or start_time is null)"
    )
    now = datetime(2026, 1, 2, 12, 0, 0)
    expr = parse_filter(combined, now=now)
    assert matches(expr, _run(params={"lr": 0.5}))
    assert matches(expr, _run(params={"lr": 0.5}, start=None))  # not started yet: the newest
    assert not matches(expr, _run(params={"lr": 0.5}, start=datetime(2025, 12, 1)))
    assert not matches(expr, _run(params={"lr": 0.5}, tag="other"))
    assert not matches(expr, _run(params={"lr": 0.01}))


def test_filters_combine_with_their_own_precedence_kept() -> None:
    assert all_of("status = 'FAIL' or tag = 'a'", None, "", "tag = 'b'") == (
        "(status = 'FAIL' or tag = 'a') and (tag = 'b')"
    )
    assert quoted("it's") == "'it''s'"
    expr = parse_filter(f"tag = {quoted(chr(39) * 3)}")
    assert matches(expr, _run(tag="'''"))
