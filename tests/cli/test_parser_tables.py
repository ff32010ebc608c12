"""The search language's parser, loaded from the tables written with the package
(runlog_store/search/_parser_tables.py) rather than built in every ``runlog`` process: the
tables must be those of the grammar as it is, and parse every filter and ordering, and fail on
every mistake, as the parser built from the grammar does.

Lark numbers the states of its tables differently from one process to the next, so the tables
are compared by what they parse, not by their text.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest
from lark import Lark
from lark.exceptions import UnexpectedInput

import runlog_store.search
from runlog_store.exceptions import RunLogStoreError
from runlog_store.search import _parser_tables, query

FILTERS = [
    "status = 'FAIL'",
    "status = 'SUCCESS' and params.optimizer = 'adam' and metrics.accuracy > 0.9",
    "not (tag = 'nightly' or tag != 'x') AND metrics.loss <= -1.5e-3",
    "params.`odd name` in ('a', 'b''c', 3, true, FALSE) or params.\"x\"\"y\" not in ()",
    "step.train.status = 'FAIL' and step.`a.b`.status is not null",
    "start_time >= -2d12h or start_time is null",
    "run_id like 'run-%' and commit not ilike '%ABC%' and duration > .5",
    "dag_hash is null and not not failed_step = 'x'",
    "metrics.a < 1 and metrics.b >= +2 and metrics.c != 3.",
]
ORDERS = [
    "start_time",
    "metrics.accuracy desc, start_time",
    "params.lr ASC, step.x.status desc, run_id",
]
MISTAKES = [
    ("start", "status ="),
    ("start", "status = 'FAIL"),
    ("start", "and status = 'x'"),
    ("start", "params.lr > 1 or"),
    ("start", "(status = 'x'"),
    ("start", "status == 'x'"),
    ("start", "tag in ('a' 'b')"),
    ("start", "metrics.a > 1 metrics.b > 2"),
    ("start", "status = 'x' ; drop"),
    ("start", ""),
    ("order", "metrics.a desc desc"),
    ("order", "metrics.a,"),
    ("order", "status = 'x'"),
]


def _loaded(tables: Any) -> Lark:
    loaded: Lark = Lark._load_from_dict(tables.DATA, tables.MEMO)  # type: ignore[no-untyped-call]
    return loaded


def _outcome(parser: Lark, start: str, text: str) -> object:
    """The tree a text parses to, or where and why it does not parse."""
    try:
        return parser.parse(text, start=start)
    except UnexpectedInput as exc:
        expected = getattr(exc, "expected", None) or getattr(exc, "allowed", None) or ()
        token = getattr(exc, "token", None)
        return (type(exc).__name__, exc.pos_in_stream, sorted(expected), repr(token))


def _same_language(parser: Lark, built: Lark) -> None:
    cases = [("start", text) for text in FILTERS] + [("order", text) for text in ORDERS] + MISTAKES
    for start, text in cases:
        assert _outcome(parser, start, text) == _outcome(built, start, text), (start, text)


def test_tables_are_those_of_the_grammar() -> None:
    """Fails after a change of the grammar, of the parser's options or of lark until the
    tables are written again: ``python -m runlog_store.search.query``."""
    import lark

    assert _parser_tables.GRAMMAR == query._GRAMMAR
    assert _parser_tables.OPTIONS == query._PARSER_OPTIONS
    assert lark.__version__ == _parser_tables.LARK_VERSION
    assert query._tables_are_current(_parser_tables)


def test_written_tables_parse_as_the_grammar_does() -> None:
    built = query._build_parser()
    _same_language(_loaded(_parser_tables), built)
    assert query._parser.__wrapped__() is not built  # a parser of its own, from the tables
    _same_language(query._parser(), built)


def test_tables_written_now_parse_as_the_grammar_does() -> None:
    """What ``python -m runlog_store.search.query`` would write is a module of the same
    language, whose tables are current."""
    namespace: dict[str, Any] = {}
    exec(compile(query.parser_tables_source(), "_parser_tables.py", "exec"), namespace)
    written = types.SimpleNamespace(**namespace)
    assert query._tables_are_current(written)
    _same_language(_loaded(written), query._build_parser())


@pytest.mark.parametrize("stale", ["GRAMMAR", "OPTIONS", "LARK_VERSION"])
def test_stale_tables_are_not_used(monkeypatch: pytest.MonkeyPatch, stale: str) -> None:
    """Tables of another grammar (say, one changed and not yet written) are left alone and the
    parser is built from the grammar: the language is always the grammar's."""
    changed = {
        "GRAMMAR": _parser_tables.GRAMMAR.replace('OR: "or"i', 'OR: "orr"i'),
        "OPTIONS": {**_parser_tables.OPTIONS, "maybe_placeholders": False},
        "LARK_VERSION": "0.0.1",
    }
    tables = types.SimpleNamespace(**{**vars(_parser_tables), stale: changed[stale]})
    assert not query._tables_are_current(tables)
    monkeypatch.setitem(sys.modules, "runlog_store.search._parser_tables", tables)
    monkeypatch.setattr(runlog_store.search, "_parser_tables", tables)
    parser = query._parser.__wrapped__()
    assert getattr(parser, "source_grammar", None) == query._GRAMMAR  # built, not loaded
    _same_language(parser, query._build_parser())


def test_filters_read_through_the_loaded_parser() -> None:
    """The language's errors are still said in its own words (the tokens lark names are
    described), with the tables loaded."""
    query._parser.cache_clear()
    assert str(query.parse_filter("status = 'FAIL'")) == "status = 'FAIL'"
    with pytest.raises(RunLogStoreError, match="status"):
        query.parse_filter("status ==")
