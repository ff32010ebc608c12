"""The index answers a search exactly as a scan does.

For random run summaries (parameters and metrics of every JSON type, NaN and infinities, ints
beyond 2**53 and beyond the float range, text in several cases and scripts, NUL characters,
missing values, step statuses, times) and random filters and orderings, the SQL of
``compile_search`` over an in-memory SQLite loaded with ``rows_of`` gives the same runs in the
same order as ``matches`` and ``sort_runs`` over the summaries. This is what lets a search
trust the index.
"""

from __future__ import annotations

import json
import math
import sqlite3
from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from runlog_store.ops.runs import RunSummary
from runlog_store.search.query import (
    INDEX_SCHEMA,
    INSERT_METRIC,
    INSERT_PARAM,
    INSERT_RUN,
    INSERT_STEP,
    compile_search,
    compile_where,
    matches,
    parse_filter,
    parse_order_by,
    rows_of,
    sort_runs,
    summary_json,
    with_key,
)

NOW = datetime(2026, 12, 4, 12, 0, 0)

# Small pools, so that runs share values (ties, equal texts in other cases) and filters hit.
TEXTS = ["", "xgb", "XGB", "Xgb", "ß", "SS", "ss", "ǅ", "a_b", "a%b", "a*b", "a?b", "[a]", "é", "É"]
TEXTS += ["a\x00b", "a", "b", "a\nb", "😀", "ﬃ", "FFI"]
NAMES = ["lr", "model", "x", "a.b", "with space"]
STEP_NAMES = ["a", "a.b", "train"]
STATUSES = ["SUCCESS", "FAIL", "PROCESSING", "fail", "Success", "UNREADABLE"]
TIMES = [datetime(2026, 12, 1), datetime(2026, 12, 1, 10, 0), datetime(2026, 11, 20, 23, 59, 59)]
TIMES += [NOW - timedelta(days=7), datetime(2025, 1, 1, 0, 0, 0, 1)]
NUMBERS: list[Any] = [0, -0.0, 1, 0.1, 0.5, -1, 2**53, 2**53 + 1, 2**60, 10**400, -(10**400)]
NUMBERS += [math.nan, math.inf, -math.inf, 1e308, 5e-324]

# Mostly values of the pools, sometimes anything.
text = st.one_of(st.sampled_from(TEXTS), st.sampled_from(TEXTS), st.text(max_size=4))
number = st.one_of(
    st.sampled_from(NUMBERS),
    st.sampled_from(NUMBERS),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
)
json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), number, text),
    lambda inner: st.one_of(st.lists(inner, max_size=2), st.dictionaries(text, inner, max_size=2)),
    max_leaves=3,
)
moment = st.one_of(
    st.none(),
    st.sampled_from(TIMES),
    st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 1, 1)),
)


@st.composite
def summaries(draw: st.DrawFn) -> list[RunSummary]:
    run_ids = draw(
        st.lists(
            st.one_of(st.sampled_from(TEXTS[1:]), st.text(min_size=1, max_size=3)),
            min_size=2,
            max_size=8,
            unique=True,
        )
    )
    runs = []
    for run_id in run_ids:
        start = draw(moment)
        runs.append(
            RunSummary(
                run_id=run_id,
                status=draw(st.sampled_from(STATUSES)),
                tag=draw(text),
                start=start,
                end=draw(moment),
                duration_seconds=draw(
                    st.one_of(
                        st.none(), st.sampled_from([0.0, 90.0, 3600.0, math.nan]), st.floats(0, 1e6)
                    )
                ),
                steps=0,
                branches=0,
                failed_step=draw(st.one_of(st.none(), st.sampled_from(STEP_NAMES), text)),
                dag_hash=draw(st.one_of(st.none(), text)),
                commit=draw(st.one_of(st.none(), text)),
                params=draw(st.dictionaries(st.sampled_from(NAMES), json_value, max_size=4)),
                metrics=draw(st.dictionaries(st.sampled_from(NAMES), number, max_size=3)),
                step_statuses=draw(
                    st.dictionaries(
                        st.sampled_from(STEP_NAMES), st.sampled_from(STATUSES), max_size=3
                    )
                ),
            )
        )
    return runs


def quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def name_of(name: str) -> str:
    return f"`{name}`" if " " in name else name


OPS = ["=", "!=", "<", "<=", ">", ">="]
PATTERNS = ["%", "x%", "%B", "_", "__", "a_b", "a%b", "%*%", "?", "[a]", "ss", "SS", "%ß%", "", "a"]
PATTERNS += ["A\x00", "%\x00%", "😀", "ﬃ", "_%_"]


def literal_of(value: Any) -> str | None:
    """A value of a run as a filter writes it; None for one it cannot write (NaN, lists)."""
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and not math.isnan(value):
        return repr(value) if math.isfinite(value) else ("1e400" if value > 0 else "-1e400")
    if isinstance(value, datetime):
        return quote(value.isoformat())
    return None


def seen_in(runs: list[RunSummary]) -> dict[str, list[str]]:
    """The values of the runs as literals, by kind: what makes drawn conditions hit."""
    seen: dict[str, list[str]] = {"text": [], "time": [], "duration": [], "value": []}
    for run in runs:
        texts = [run.run_id, run.status, run.tag, run.dag_hash, run.commit, run.failed_step]
        texts += list(run.step_statuses.values())
        seen["text"] += [quote(t) for t in texts if t is not None]
        seen["time"] += [quote(t.isoformat()) for t in (run.start, run.end) if t is not None]
        if run.duration_seconds is not None and not math.isnan(run.duration_seconds):
            seen["duration"].append(repr(run.duration_seconds))
        for value in [*run.params.values(), *run.metrics.values()]:
            literal = literal_of(value)
            if literal is not None:
                seen["value"].append(literal)
    return seen


def literal_for(kind: str, draw: st.DrawFn, seen: dict[str, list[str]]) -> str:
    from_runs: bool = bool(seen[kind]) and draw(st.booleans())
    if from_runs:
        return draw(st.sampled_from(seen[kind]))
    if kind == "text":
        return quote(draw(text))
    if kind == "time":
        return draw(
            st.one_of(
                st.sampled_from(TIMES).map(lambda t: quote(t.isoformat())),
                st.sampled_from(
                    ["'2026-12-01'", "'2026-12-01T10:00'", "-7d", "-1w2d", "+1h", "-12h"]
                ),
            )
        )
    if kind == "duration":
        return draw(st.sampled_from(["0", "90", "90s", "1h", "3600", "1e3", "1.5m"]))
    # A parameter or a metric: any kind of value.
    literal: str = draw(
        st.one_of(
            st.sampled_from(
                ["0", "-0", "0.1", "1", "-1", "9007199254740993", "1152921504606846976"]
            ),
            st.sampled_from(["1e400", "-1e400", "1e308", "5e-324", ".5"]),
            st.integers(-(2**70), 2**70).map(str),
            st.floats(allow_nan=False, allow_infinity=False).map(repr),
            text.map(quote),
            st.sampled_from(["true", "false"]),
        )
    )
    return literal


@st.composite
def attributes(draw: st.DrawFn) -> tuple[str, str]:
    """An attribute as written and the kind of values it holds."""
    return draw(
        st.one_of(
            st.sampled_from(["run_id", "tag", "dag_hash", "commit", "failed_step", "status"]).map(
                lambda a: (a, "text")
            ),
            st.sampled_from(
                [("start_time", "time"), ("end_time", "time"), ("duration", "duration")]
            ),
            st.sampled_from(NAMES).map(lambda n: (f"params.{name_of(n)}", "value")),
            st.sampled_from(NAMES).map(lambda n: (f"metrics.{name_of(n)}", "value")),
            st.sampled_from(STEP_NAMES).map(lambda n: (f"step.{n}.status", "text")),
        )
    )


@st.composite
def predicates(draw: st.DrawFn, seen: dict[str, list[str]]) -> str:
    attr, kind = draw(attributes())
    form = draw(st.sampled_from(["compare", "in", "null", "like"]))
    if form == "null":
        return f"{attr} is {draw(st.sampled_from(['', 'not ']))}null"
    if form == "like" and kind in ("text", "value"):
        word = draw(st.sampled_from(["like", "ilike", "not like", "NOT ILIKE"]))
        return f"{attr} {word} {quote(draw(st.sampled_from(PATTERNS)))}"
    if form == "in":
        values = [literal_for(kind, draw, seen) for _ in range(draw(st.integers(1, 3)))]
        return f"{attr} {draw(st.sampled_from(['in', 'not in']))} ({', '.join(values)})"
    value = literal_for(kind, draw, seen)
    op = draw(st.sampled_from(["=", "!="] if value in ("true", "false") else OPS))
    return f"{attr} {op} {value}"


def filters(seen: dict[str, list[str]]) -> st.SearchStrategy[str]:
    return st.recursive(
        predicates(seen),
        lambda inner: st.one_of(
            st.tuples(inner, inner).map(lambda p: f"{p[0]} and {p[1]}"),
            st.tuples(inner, inner).map(lambda p: f"({p[0]}) OR ({p[1]})"),
            inner.map(lambda p: f"not ({p})"),
        ),
        max_leaves=4,
    )


@st.composite
def orders(draw: st.DrawFn) -> str | None:
    keys = draw(st.lists(attributes().map(lambda a: a[0]), max_size=3))
    if not keys:
        return None
    return ", ".join(
        f"{key}{draw(st.sampled_from(['', ' asc', ' desc', ' DESC']))}" for key in keys
    )


Search = tuple[str | None, str | None]
Case = tuple[list[RunSummary], list[Search]]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """Runs, and searches of them (filter and order as written)."""
    runs = draw(summaries())
    searches = draw(
        st.lists(
            st.tuples(st.one_of(st.none(), *[filters(seen_in(runs))] * 3), orders()), max_size=6
        )
    )
    return runs, searches


def summary(run_id: str, **fields: Any) -> RunSummary:
    """A run summary with nothing but what is given."""
    empty: dict[str, Any] = {"status": "SUCCESS", "tag": "", "start": None, "end": None}
    empty |= {"duration_seconds": None, "steps": 0, "branches": 0, "failed_step": None}
    return RunSummary(run_id=run_id, **(empty | fields))


def load(runs: list[RunSummary]) -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.executescript(INDEX_SCHEMA)
    for run in runs:
        rows = rows_of(run, "fingerprint", 1.0)
        db.execute(INSERT_RUN, rows.run)
        key = db.execute("SELECT run_key FROM runs WHERE run_id = ?", rows.run[:1]).fetchone()[0]
        db.executemany(INSERT_PARAM, with_key(rows.params, key))
        db.executemany(INSERT_METRIC, with_key(rows.metrics, key))
        db.executemany(INSERT_STEP, with_key(rows.steps, key))
    return db


def searched(
    db: sqlite3.Connection,
    filter_text: str | None,
    order_text: str | None,
    limit: int = -1,
    offset: int = 0,
) -> list[str]:
    sql, params = compile_search(
        parse_filter(filter_text, NOW), parse_order_by(order_text), "runs.run_id"
    )
    return [run_id for (run_id,) in db.execute(sql, [*params, limit, offset])]


def scanned(runs: list[RunSummary], filter_text: str | None, order_text: str | None) -> list[str]:
    expr = parse_filter(filter_text, NOW)
    found = sort_runs([run for run in runs if matches(expr, run)], parse_order_by(order_text))
    return [run.run_id for run in found]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=cases())
@example(
    case=(
        [
            summary("nan", params={"x": math.nan}),
            summary("big", params={"x": 2**53 + 1}),
            summary("text", params={"x": "ß"}),
            summary("bool", params={"x": True}),
            summary("nul", params={"x": "a\x00b"}),
        ],
        [
            ("not params.x > 0", "params.x desc"),
            ("params.x = 9007199254740992", "params.x"),
            ("params.x ilike 'SS'", None),
            ("params.x != 1", "params.x desc"),
            ("params.x is null", None),
            ("params.x like 'a'", None),
            ("params.x like 'a\x00'", None),
        ],
    )
)
@example(
    # Ordered by a value the filter's required joins hold to one kind (read in the order of
    # the index of values): numbers, text, booleans and step statuses, both directions.
    case=(
        [
            summary("a", params={"x": 0.5, "y": "b"}, metrics={"m": 0.5}),
            summary("b", params={"x": 0.5, "y": "a"}, metrics={"m": math.nan}),
            summary("c", params={"x": "0.5", "y": True}, metrics={"m": 2}),
            summary("d", params={"x": -1, "y": False}, metrics={"m": "2"}),
            summary("e", params={"x": math.inf}, step_statuses={"train": "FAIL"}),
            summary("f", step_statuses={"train": "SUCCESS"}),
        ],
        [
            ("params.x > 0", "params.x desc"),
            ("params.x > -2 and params.x != 0.5", "params.x"),
            ("params.y >= 'a'", "params.y desc"),
            ("params.y = true or params.y = false", "params.y"),
            ("params.y != true", "params.y desc"),
            ("metrics.m >= 0 and params.x < 1", "metrics.m desc, params.x"),
            ("step.train.status != 'X'", "step.train.status"),
            ("step.train.status >= 'A'", "step.train.status desc, run_id desc"),
        ],
    )
)
def test_the_index_answers_as_a_scan(case: Case) -> None:
    runs, searches = case
    db = load(runs)
    for filter_text, order_text in searches:
        expected = scanned(runs, filter_text, order_text)
        assert searched(db, filter_text, order_text) == expected, (filter_text, order_text)
        # A page of them, as a search with a page token asks.
        assert searched(db, filter_text, order_text, 2, 1) == expected[1:3]


def test_every_value_kind_sorts_the_same_in_both() -> None:
    """One run per kind of value, ordered both ways: numbers, then text, then booleans, and
    missing, NaN, null, lists and objects last; ties by run id."""
    values: dict[str, Any] = {
        "n1": -1,
        "n2": 2.5,
        "n3": 10**400,
        "s1": "A",
        "s2": "a",
        "s3": "é",
        "b1": False,
        "b2": True,
        "nan": math.nan,
        "null": None,
        "list": [1],
        "object": {"a": 1},
    }
    runs = [
        RunSummary(
            run_id=run_id,
            status="SUCCESS",
            tag="",
            start=None,
            end=None,
            duration_seconds=None,
            steps=0,
            branches=0,
            failed_step=None,
            params={"v": value},
        )
        for run_id, value in values.items()
    ] + [
        RunSummary(
            run_id="missing",
            status="SUCCESS",
            tag="",
            start=None,
            end=None,
            duration_seconds=None,
            steps=0,
            branches=0,
            failed_step=None,
        ),
        RunSummary(
            run_id="n0",
            status="SUCCESS",
            tag="",
            start=None,
            end=None,
            duration_seconds=None,
            steps=0,
            branches=0,
            failed_step=None,
            params={"v": 2.5},
        ),
    ]
    db = load(runs)
    ascending = [
        "n1",
        "n0",
        "n2",
        "n3",
        "s1",
        "s2",
        "s3",
        "b1",
        "b2",
        "list",
        "missing",
        "nan",
        "null",
        "object",
    ]
    descending = [
        "b2",
        "b1",
        "s3",
        "s2",
        "s1",
        "n3",
        "n0",
        "n2",
        "n1",
        "list",
        "missing",
        "nan",
        "null",
        "object",
    ]
    assert scanned(runs, None, "params.v") == ascending == searched(db, None, "params.v")
    assert scanned(runs, None, "params.v desc") == descending == searched(db, None, "params.v desc")


def test_where_alone_answers_as_the_search() -> None:
    runs = [
        RunSummary(
            run_id=f"r{i}",
            status="FAIL" if i % 2 else "SUCCESS",
            tag="",
            start=None,
            end=None,
            duration_seconds=float(i),
            steps=0,
            branches=0,
            failed_step=None,
            params={"lr": i / 10},
        )
        for i in range(6)
    ]
    db = load(runs)
    where, params = compile_where(parse_filter("params.lr > 0.1 and status = 'fail'"))
    found = sorted(
        run_id for (run_id,) in db.execute(f"SELECT run_id FROM runs WHERE {where}", params)
    )
    assert found == ["r3", "r5"]
    assert compile_where(None) == ("1", [])


def test_the_stored_summary_reads_back_whole() -> None:
    """The summary column is the summary's JSON with the step statuses its own JSON leaves
    out, so that a search from the index returns what a scan does."""
    run = RunSummary(
        run_id="r",
        status="FAIL",
        tag="t",
        start=datetime(2026, 12, 1, 10, 0, 0, 5),
        end=None,
        duration_seconds=None,
        steps=2,
        branches=0,
        failed_step="a.b",
        params={"x": [1, {"y": "é"}]},
        metrics={"m": 0.5},
        step_statuses={"a": "FAIL", "a.b": "FAIL"},
    )
    assert RunSummary.model_validate_json(summary_json(run)) == run
    bare = run.model_copy(update={"step_statuses": {}})
    assert RunSummary.model_validate_json(summary_json(bare)) == bare


def test_rows_of_reads_a_mapping_as_the_model() -> None:
    """The Rust summaries come as dicts: their rows are those of the model (times as
    datetimes or as ISO text)."""
    run = RunSummary(
        run_id="r",
        status="FAIL",
        tag="",
        start=datetime(2026, 12, 1, 10, 0),
        end=datetime(2026, 12, 1, 11, 0),
        duration_seconds=3600.0,
        steps=1,
        branches=0,
        failed_step="a",
        dag_hash="",
        commit="abc",
        params={"lr": 0.1, "model": "XGB", "big": 2**64, "flag": True, "none": None},
        metrics={"acc": math.nan},
        step_statuses={"a": "FAIL"},
    )
    from_model = rows_of(run, "fp", 2.0)
    fields = dict(run.__dict__)
    for mapping in (
        fields,
        {**fields, "start": "2026-12-01T10:00:00", "end": "2026-12-01 11:00:00"},
    ):
        from_mapping = rows_of(mapping, "fp", 2.0)
        assert from_mapping.run[:9] == from_model.run[:9]
        assert from_mapping.run[10:] == from_model.run[10:]
        assert (from_mapping.params, from_mapping.metrics, from_mapping.steps) == (
            from_model.params,
            from_model.metrics,
            from_model.steps,
        )
    assert json.loads(rows_of(fields, "fp", 2.0).run[9])["run_id"] == "r"
    assert (
        from_model.run[3] == (datetime(2026, 12, 1, 10, 0) - datetime(1970, 1, 1)).total_seconds()
    )
    assert sorted(from_model.params) == [
        ("r", "big", "number", float(2**64), None, None),
        ("r", "flag", "bool", 1.0, None, None),
        ("r", "lr", "number", 0.1, None, None),
        ("r", "model", "string", None, "XGB", "xgb"),
        ("r", "none", "null", None, None, None),
    ]
    assert from_model.metrics == [("r", "acc", "number", None, None, None)]
    assert from_model.steps == [("r", "a", "FAIL", "fail")]


def test_a_page_by_a_value_the_filter_bounds_is_read_in_the_order_of_its_index() -> None:
    """The first page of the runs over a threshold by that value: SQLite walks the index of
    values from the top and stops at the page's end (sorting only runs of equal values by run
    id), instead of sorting every match (9,000 of 100,000 runs: 50 ms against 2)."""
    db = load([])
    for filter_text, order_text in (
        ("status = 'SUCCESS' and metrics.accuracy > 0.9", "metrics.accuracy desc"),
        ("params.lr >= 0.1", "params.lr"),
        ("params.model = 'xgb' and params.lr < 1", "params.lr desc"),
    ):
        sql, params = compile_search(parse_filter(filter_text, NOW), parse_order_by(order_text))
        plan = [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", [*params, 100, 0])]
        # The page's own sort is of its last term alone; the outer one orders the 100 found.
        assert "USE TEMP B-TREE FOR RIGHT PART OF ORDER BY" in plan, (filter_text, plan)
        assert plan.count("USE TEMP B-TREE FOR ORDER BY") == 1, (filter_text, plan)
