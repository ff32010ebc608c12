"""The search language: what a filter and an ordering read as, what they match, how runs are
ordered, what an error says, and page tokens."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import pytest

from runlog_store.exceptions import RunLogStoreError
from runlog_store.ops.runs import RunSummary
from runlog_store.search.paging import RunPage, decode_page_token, encode_page_token
from runlog_store.search.query import (
    DEFAULT_ORDER,
    And,
    Attr,
    Compare,
    FilterSyntaxError,
    In,
    IsNull,
    Like,
    Literal_,
    Not,
    Or,
    OrderKey,
    matches,
    parse_filter,
    parse_order_by,
    sort_runs,
    time_value,
)

NOW = datetime(2026, 12, 4, 12, 0, 0)


def summary(run_id: str, **fields: Any) -> RunSummary:
    empty: dict[str, Any] = {"status": "SUCCESS", "tag": "", "start": None, "end": None}
    empty |= {"duration_seconds": None, "steps": 0, "branches": 0, "failed_step": None}
    return RunSummary(run_id=run_id, **(empty | fields))


def hits(filter_text: str, runs: list[RunSummary]) -> list[str]:
    expr = parse_filter(filter_text, NOW)
    return [run.run_id for run in runs if matches(expr, run)]


def error_of(text: str) -> FilterSyntaxError:
    with pytest.raises(FilterSyntaxError) as caught:
        parse_filter(text, NOW)
    return caught.value


# --- reading -------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [None, "", "   ", "\n\t"])
def test_no_filter_is_every_run(text: str | None) -> None:
    assert parse_filter(text) is None
    assert matches(None, summary("r"))


def test_a_filter_reads_as_its_tree() -> None:
    expr = parse_filter("params.lr > 0.1 AND (status = 'fail' or not tag like 'a%')", NOW)
    assert expr == And(
        (
            Compare(Attr("params", "lr"), ">", Literal_("number", 0.1)),
            Or(
                (
                    Compare(Attr("status"), "=", Literal_("string", "FAIL")),
                    Not(Like(Attr("tag"), "a%")),
                )
            ),
        )
    )
    # The tree reads back as a filter that reads as the same tree.
    assert parse_filter(str(expr), NOW) == expr


def test_and_binds_tighter_than_or() -> None:
    expr = parse_filter("tag = 'a' or tag = 'b' and tag = 'c'", NOW)
    assert isinstance(expr, Or)
    assert isinstance(expr.items[1], And)


@pytest.mark.parametrize(
    ("text", "attr"),
    [
        ("params.lr", Attr("params", "lr")),
        ("params.a.b-c", Attr("params", "a.b-c")),
        ("params.`learning rate`", Attr("params", "learning rate")),
        ("params.`a``b`", Attr("params", "a`b")),
        ('metrics."x ""y"""', Attr("metrics", 'x "y"')),
        ("PARAMS.lr", Attr("params", "lr")),
        ("step.train.status", Attr("step", "train")),
        ("step.map.branch.status.inner.status", Attr("step", "map.branch.status.inner")),
        ("step.`my step`.status", Attr("step", "my step")),
        ("START_TIME", Attr("start_time")),
        ("commit", Attr("commit")),
    ],
)
def test_attribute_names(text: str, attr: Attr) -> None:
    expr = parse_filter(f"{text} is null", NOW)
    assert expr == IsNull(attr)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", 1.0),
        ("-2.5", -2.5),
        ("+3", 3.0),
        ("1e3", 1000.0),
        (".5", 0.5),
        ("9007199254740993", float(2**53 + 1)),
        ("1e400", math.inf),
        ("'it''s'", "it's"),
        ("''", ""),
        ("true", True),
        ("FALSE", False),
    ],
)
def test_values(text: str, value: Any) -> None:
    expr = parse_filter(f"params.x = {text}", NOW)
    assert isinstance(expr, Compare)
    assert expr.value.value == value
    assert type(expr.value.value) is type(value)


def test_times_and_ages() -> None:
    def literal(text: str) -> float:
        expr = parse_filter(text, NOW)
        assert isinstance(expr, Compare)
        assert isinstance(expr.value.value, float)
        return expr.value.value

    assert literal("start_time > '2026-12-01'") == time_value(datetime(2026, 12, 1))
    assert literal("end_time <= '2026-12-01T10:00'") == time_value(datetime(2026, 12, 1, 10))
    assert literal("start_time > '2026-12-01 10:00:05.5'") == time_value(
        datetime(2026, 12, 1, 10, 0, 5, 500000)
    )
    assert literal("start_time > -7d") == time_value(NOW - timedelta(days=7))
    assert literal("start_time > -1w2d") == time_value(NOW - timedelta(days=9))
    assert literal("start_time > -12H") == time_value(NOW - timedelta(hours=12))
    assert literal("start_time < +1h") == time_value(NOW + timedelta(hours=1))
    assert literal("duration > 90s") == 90.0
    assert literal("duration > 1h30m") == 5400.0
    assert literal("duration > 12.5") == 12.5


def test_status_values_are_upper_cased() -> None:
    assert parse_filter("status = 'fail'", NOW) == Compare(
        Attr("status"), "=", Literal_("string", "FAIL")
    )
    assert parse_filter("step.a.status in ('fail', 'Success')", NOW) == In(
        Attr("step", "a"), (Literal_("string", "FAIL"), Literal_("string", "SUCCESS"))
    )
    assert parse_filter("status like 'f%'", NOW) == Like(Attr("status"), "F%")
    # Other text is compared as written.
    assert parse_filter("tag = 'fail'", NOW) == Compare(
        Attr("tag"), "=", Literal_("string", "fail")
    )


def test_keywords_are_case_insensitive_and_spacing_free() -> None:
    assert parse_filter("params.x NOT IN (1,2) And tag IS NOT NULL", NOW) == And(
        (
            In(Attr("params", "x"), (Literal_("number", 1.0), Literal_("number", 2.0)), True),
            IsNull(Attr("tag"), True),
        )
    )
    assert parse_filter("params.x>=1", NOW) == Compare(
        Attr("params", "x"), ">=", Literal_("number", 1.0)
    )
    assert parse_filter("tag NOT ILIKE 'ABC%'", NOW) == Like(Attr("tag"), "abc%", True, True)


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "status = 'FAIL' and >",
            "filter error at column 21: expected a condition after 'and', found '>' "
            "(in: status = 'FAIL' and >)",
        ),
        (
            "statuss = 'FAIL'",
            "filter error at column 1: unknown attribute 'statuss'; use one of run_id, status, "
            "tag, start_time, end_time, duration, dag_hash, commit, failed_step, params.<name>, "
            "metrics.<name>, step.<name>.status (in: statuss = 'FAIL')",
        ),
        (
            "tag = 'abc",
            "filter error at column 7: unterminated string: no closing ' for this one "
            "(in: tag = 'abc)",
        ),
        (
            "start_time > '2026-13-01'",
            "filter error at column 14: '2026-13-01' is not a time; write '2026-12-01' or "
            "'2026-12-01T10:00', or an age such as -7d (in: start_time > '2026-13-01')",
        ),
        (
            "duration like '1%'",
            "filter error at column 10: like matches text, and duration is a number "
            "(in: duration like '1%')",
        ),
        (
            "params.x like 5",
            "filter error at column 15: expected a 'pattern' in single quotes after 'like', "
            "found '5' (in: params.x like 5)",
        ),
        (
            "params.flag < true",
            "filter error at column 13: true and false compare with = and != only, not < "
            "(in: params.flag < true)",
        ),
        (
            "params.x in ()",
            "filter error at column 13: an empty list: 'in' needs at least one value "
            "(in: params.x in ())",
        ),
        (
            "status = 'FAIL' extra",
            "filter error at column 17: unexpected 'extra' after 'FAIL'; join conditions "
            "with 'and' or 'or' (in: status = 'FAIL' extra)",
        ),
    ],
)
def test_error_messages(text: str, message: str) -> None:
    error = error_of(text)
    assert str(error) == message
    assert error.text == text
    assert isinstance(error, RunLogStoreError)
    assert error.reason in message
    assert str(error.column) in message


@pytest.mark.parametrize(
    ("text", "column", "reason"),
    [
        ("params.x = null", 12, "null is tested with 'is null' or 'is not null'"),
        ('tag = "x"', 7, "text is written in single quotes ('text')"),
        ("(tag = 'a'", 11, "missing ')'"),
        ("tag", 4, "expected an operator (=, !=, <, <=, >, >=, in, is null, like or ilike)"),
        ("tag = 5", 7, "tag is text: write the value in single quotes ('5')"),
        ("start_time > 7d", 14, "an age before now is written with a minus sign"),
        ("start_time > 5", 14, "start_time is a time"),
        ("duration > -5m", 12, "a duration is written without a sign (5m)"),
        ("duration > 'x'", 12, "duration is a number of seconds"),
        ("params.x > -7d", 12, "an age compares with start_time, end_time (-7d) or duration"),
        ("start_time like '2026%'", 12, "like matches text, and start_time is a time"),
        ("params.`x = 1", 8, "unterminated name: no closing ` for this one"),
        ("params. = 1", 8, "expected a name after 'params.'"),
        ("step.a = 'FAIL'", 5, "a step's status is written step.<name>.status"),
        ("and tag = 'a'", 1, "expected a condition, found 'and'"),
        ("not", 4, "expected a condition after 'not', found the end"),
        ("params.x > ", 12, "expected a value"),
        ("params.x = 1 ; drop", 14, "unexpected ';'"),
        ("params", 1, "unknown attribute 'params' (write params.<name>)"),
        ("start = 1", 1, "unknown attribute 'start' (write start_time)"),
        ("metric.x = 1", 1, "unknown attribute 'metric' (write metrics.<name>)"),
        ("statuss", 1, "unknown attribute 'statuss'"),
    ],
)
def test_error_columns_and_reasons(text: str, column: int, reason: str) -> None:
    error = error_of(text)
    assert (error.column, error.reason[: len(reason)]) == (column, reason), str(error)


def test_an_error_message_is_one_line() -> None:
    error = error_of("tag = 'a'\n  and\n  >")
    assert "\n" not in str(error)
    assert str(error).endswith("(in: tag = 'a' and >)")
    # The column counts characters from the start of the whole filter.
    assert error.column == len("tag = 'a'\n  and\n  >")


# --- matching ------------------------------------------------------------------------------------

RUNS = [
    summary("a", status="FAIL", tag="nightly", params={"lr": 0.5, "model": "xgb"}),
    summary("b", params={"lr": 0.05, "model": "XGB", "flag": True}),
    summary("c", params={"lr": "0.5", "flag": False, "n": None, "layers": [1, 2]}),
    summary("d", params={"lr": math.nan, "big": 2**53 + 1, "obj": {"a": 1}}),
    summary("e", metrics={"accuracy": 0.9}, step_statuses={"train": "FAIL"}),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("params.lr > 0.1", ["a"]),
        ("not params.lr > 0.1", ["b", "c", "d", "e"]),
        ("params.lr = '0.5'", ["c"]),
        ("params.lr != 0.5", ["b"]),
        ("params.lr < 1", ["a", "b"]),
        ("params.model = 'xgb'", ["a"]),
        ("params.model ilike 'xgb'", ["a", "b"]),
        ("params.model like 'X%'", ["b"]),
        ("params.model not like 'X%'", ["a", "c", "d", "e"]),
        ("params.flag = true", ["b"]),
        ("params.flag != true", ["c"]),
        ("params.flag = 1", []),
        ("params.n is null", ["a", "b", "c", "d", "e"]),
        ("params.layers is not null", ["c"]),
        ("params.layers = 1", []),
        ("params.obj is not null", ["d"]),
        ("params.lr is null", ["e"]),
        ("params.big = 9007199254740992", ["d"]),
        ("params.lr in (0.05, '0.5')", ["b", "c"]),
        ("params.lr not in (0.05, '0.5')", ["a", "d", "e"]),
        ("status = 'FAIL' or metrics.accuracy >= 0.9", ["a", "e"]),
        ("step.train.status = 'fail'", ["e"]),
        ("step.train.status is null", ["a", "b", "c", "d"]),
        ("tag = ''", ["b", "c", "d", "e"]),
        ("tag is null", []),
        ("failed_step is null", ["a", "b", "c", "d", "e"]),
    ],
)
def test_what_a_filter_matches(text: str, expected: list[str]) -> None:
    assert hits(text, RUNS) == expected


def test_nan_compares_false_to_everything_and_is_not_null() -> None:
    run = [summary("n", params={"x": math.nan})]
    for op in ("=", "!=", "<", "<=", ">", ">="):
        assert hits(f"params.x {op} 1", run) == []
        assert hits(f"not params.x {op} 1", run) == ["n"]
    assert hits("params.x is not null", run) == ["n"]


def test_like_patterns() -> None:
    run = [summary("r", tag="a_b%c*d?[e]\nf")]
    assert hits("tag like 'a_b%'", run) == ["r"]
    assert hits("tag like 'a\\_b%'", run) == []
    assert hits("tag like '%*d?[e]_f'", run) == ["r"]
    assert hits("tag like 'A%'", run) == []
    assert hits("tag ilike 'A%'", run) == ["r"]
    assert hits("tag like '_'", run) == []
    assert hits("tag like ''", [summary("empty")]) == ["empty"]
    # ilike folds more than ASCII: ß is ss, ﬃ is ffi.
    assert hits("params.x ilike 'STRASSE'", [summary("s", params={"x": "Straße"})]) == ["s"]
    assert hits("params.x ilike '_ffi'", [summary("s", params={"x": "aﬃ"})]) == ["s"]


def test_times_compare_as_instants() -> None:
    runs = [
        summary("old", start=datetime(2026, 11, 1), end=datetime(2026, 11, 1, 0, 1)),
        summary("new", start=NOW - timedelta(days=1), duration_seconds=120.0),
        summary("unstarted"),
    ]
    assert hits("start_time > -7d", runs) == ["new"]
    assert hits("start_time < '2026-11-02'", runs) == ["old"]
    assert hits("start_time is null", runs) == ["unstarted"]
    assert hits("end_time >= '2026-11-01T00:01'", runs) == ["old"]
    assert hits("duration > 90s", runs) == ["new"]
    assert hits("duration <= 2m", runs) == ["new"]


def test_the_examples_of_the_documentation() -> None:
    runs = [
        summary("week-fail-high", status="FAIL", start=NOW - timedelta(days=2), params={"lr": 0.2}),
        summary("week-fail-low", status="FAIL", start=NOW - timedelta(days=2), params={"lr": 0.01}),
        summary("old-fail-high", status="FAIL", start=NOW - timedelta(days=9), params={"lr": 0.2}),
        summary("week-ok-high", start=NOW - timedelta(days=1), params={"lr": 0.2}),
    ]
    assert hits("start_time > -7d and params.lr > 0.1 and status = 'FAIL'", runs) == [
        "week-fail-high"
    ]
    scored = [
        summary("a", params={"model": "xgb"}, metrics={"accuracy": 0.8}),
        summary("b", params={"model": "xgb"}, metrics={"accuracy": 0.95}),
        summary("c", params={"model": "rf"}, metrics={"accuracy": 0.99}),
        summary("d", params={"model": "xgb"}),
    ]
    expr = parse_filter("params.model = 'xgb'", NOW)
    best = sort_runs(
        [run for run in scored if matches(expr, run)], parse_order_by("metrics.accuracy desc")
    )
    assert [run.run_id for run in best] == ["b", "a", "d"]


# --- ordering ------------------------------------------------------------------------------------


def test_order_by_reads_keys() -> None:
    assert parse_order_by(None) == DEFAULT_ORDER
    assert parse_order_by("  ") == DEFAULT_ORDER
    assert parse_order_by([]) == DEFAULT_ORDER
    assert (OrderKey(Attr("start_time"), descending=True),) == DEFAULT_ORDER
    assert parse_order_by("metrics.accuracy DESC, run_id") == (
        OrderKey(Attr("metrics", "accuracy"), True),
        OrderKey(Attr("run_id"), False),
    )
    assert parse_order_by(["metrics.accuracy desc", "tag asc, status"]) == (
        OrderKey(Attr("metrics", "accuracy"), True),
        OrderKey(Attr("tag"), False),
        OrderKey(Attr("status"), False),
    )


@pytest.mark.parametrize(
    ("text", "column", "reason"),
    [
        ("start_time desc desc", 17, "unexpected 'desc' after 'desc'; separate keys with ','"),
        ("start_time,", 12, "expected an attribute to order by after ','"),
        ("accuracy desc", 1, "unknown attribute 'accuracy'"),
        ("start_time up", 12, "unexpected 'up'"),
    ],
)
def test_order_by_errors(text: str, column: int, reason: str) -> None:
    with pytest.raises(FilterSyntaxError) as caught:
        parse_order_by(text)
    assert caught.value.column == column
    assert caught.value.reason.startswith(reason)
    assert str(caught.value).startswith(f"order_by error at column {column}: ")


def test_runs_order_by_start_time_newest_first_by_default() -> None:
    runs = [
        summary("b", start=datetime(2026, 12, 1)),
        summary("unstarted"),
        summary("a", start=datetime(2026, 12, 1)),
        summary("c", start=datetime(2026, 12, 3)),
    ]
    assert [run.run_id for run in sort_runs(runs)] == ["c", "a", "b", "unstarted"]


def test_ordering_kinds_missing_last_ties_by_run_id() -> None:
    values: dict[str, Any] = {"z": "b", "y": 2, "x": True, "w": "a", "v": 1.5, "u": False}
    values |= {"t": math.nan, "s": None, "r": [1], "q": 2.0}
    runs = [summary(run_id, params={"v": value}) for run_id, value in values.items()]
    runs.append(summary("p"))
    ascending = [run.run_id for run in sort_runs(runs, parse_order_by("params.v"))]
    assert ascending == ["v", "q", "y", "w", "z", "u", "x", "p", "r", "s", "t"]
    descending = [run.run_id for run in sort_runs(runs, parse_order_by("params.v desc"))]
    assert descending == ["x", "u", "z", "w", "q", "y", "v", "p", "r", "s", "t"]


def test_ordering_by_several_keys() -> None:
    runs = [
        summary("a", status="FAIL", metrics={"m": 1}),
        summary("b", status="SUCCESS", metrics={"m": 3}),
        summary("c", status="FAIL", metrics={"m": 2}),
        summary("d", status="SUCCESS"),
    ]
    order = parse_order_by("status, metrics.m desc")
    assert [run.run_id for run in sort_runs(runs, order)] == ["c", "a", "b", "d"]


# --- page tokens ---------------------------------------------------------------------------------


def test_a_page_token_belongs_to_its_search() -> None:
    token = encode_page_token(200, "status = 'FAIL'", None)
    assert decode_page_token(token, "status = 'FAIL'", None) == 200
    # The same search written otherwise: the filter's outer blanks, the default order.
    assert decode_page_token(token, " status = 'FAIL' ", "start_time desc") == 200
    assert decode_page_token(token, "status = 'FAIL'", [OrderKey(Attr("start_time"), True)]) == 200
    assert encode_page_token(0, None, None) == encode_page_token(0, "", ["start_time DESC"])


@pytest.mark.parametrize(
    ("token", "filter_text", "order"),
    [
        (encode_page_token(10, "status = 'FAIL'", None), "status = 'SUCCESS'", None),
        (encode_page_token(10, "status = 'FAIL'", None), "status = 'FAIL'", "run_id"),
        ("not a token", None, None),
        ("", None, None),
        ("eyJvZmZzZXQiOiAtMX0", None, None),  # {"offset": -1}
        ("WzFd", None, None),  # [1]
    ],
)
def test_other_tokens_are_refused(token: str, filter_text: str | None, order: str | None) -> None:
    with pytest.raises(RunLogStoreError, match="does not belong to this search"):
        decode_page_token(token, filter_text, order)


def test_run_page() -> None:
    page = RunPage(runs=[summary("a")], next_page_token=None)
    assert RunPage.model_validate_json(page.model_dump_json()).runs[0].run_id == "a"
