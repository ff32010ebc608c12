"""The index rows the core makes for a build (``_core.index_rows``, rust/index/rows.rs) are the
rows Python makes of the same document (``query.rows_of`` of its summary's fields), value for
value and byte for byte of the summary's JSON, on generated documents: numbers of every size and
kind (NaN, infinities, integers past 64 bits), text of any script, a key twice, nested values,
steps at two depths and times of many forms."""

from __future__ import annotations

import json
import math
import unicodedata
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runlog_store import _core
from runlog_store.ops.runs import summary_fields
from runlog_store.search import query

FINGERPRINT = "file-system 1 2 3"
INDEXED_AT = 1765000000.25

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6)
    | st.sampled_from([math.nan, math.inf, -math.inf, 2**64, -(2**63), 1e16, 1e-5, 0.1, -0.0])
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)
names = st.sampled_from(["lr", "Model", "ß", "İx", "n a m e", "\u00e9", "x\u0000y", "😀"])
statuses = st.sampled_from(["SUCCESS", "FAIL", "PROCESSING", "Straße", "ǅ"])
moments = st.datetimes(min_value=datetime(1800, 1, 1), max_value=datetime(2200, 1, 1))


def _time_text(moment: datetime, form: int) -> str:
    if form == 0:
        return moment.isoformat(sep=" ")
    if form == 1:
        return moment.isoformat()
    if form == 2:  # aware: read as local time
        return moment.replace(tzinfo=timezone(timedelta(hours=2))).isoformat()
    return moment.strftime("%Y-%m-%d %H:%M:%S")


@st.composite
def steps(draw: Any, depth: int = 0) -> str:
    pairs = []
    for name in draw(st.lists(names, max_size=3)):
        attempts = [
            {
                "attempt_number": 1,
                "start_time": _time_text(draw(moments), draw(st.integers(0, 3))),
                "end_time": _time_text(draw(moments), draw(st.integers(0, 3))),
                "status": draw(statuses),
                "code_identities": [],
            }
            for _ in range(draw(st.integers(0, 2)))
        ]
        step: dict[str, Any] = {
            "name": name,
            "internal_name": name,
            "status": draw(statuses),
            "step_type": "task",
            "attempts": attempts,
        }
        text = json.dumps(step)
        if depth == 0 and draw(st.booleans()):
            branch = {"internal_name": f"{name}.b", "status": draw(statuses)}
            inner = draw(steps(depth=1))
            text = (
                text[:-1]
                + f', "branches": {{"b": {json.dumps(branch)[:-1]}, "steps": {inner}}}}}}}'
            )
        pairs.append(f"{json.dumps(name)}: {text}")
    return "{" + ", ".join(pairs) + "}"


@st.composite
def documents(draw: Any) -> bytes:
    """A run log's text; a parameter may be given twice (JSON allows it, Python keeps the first
    place and the last value)."""
    parameters = []
    for name in draw(st.lists(names, max_size=6)):
        kind = draw(st.sampled_from(["json", "json", "metric", "object"]))
        value = draw(st.text(max_size=5)) if kind == "object" else draw(values)
        parameters.append(f"{json.dumps(name)}: {json.dumps({'kind': kind, 'value': value})}")
    run = {
        "run_id": "run-1",
        "status": draw(statuses),
        "tag": draw(st.text(max_size=5)),
        "dag_hash": draw(st.none() | st.text(max_size=5)),
    }
    head = json.dumps(run)[:-1]
    return (
        f'{head}, "parameters": {{{", ".join(parameters)}}}, "steps": {draw(steps())}}}'
    ).encode()


def _python_rows(data: bytes) -> query.IndexRows:
    return query.rows_of(summary_fields(_core.summarize_run(data)), FINGERPRINT, INDEXED_AT)


def _same(core: Any, python: Any) -> bool:
    """Equal, a NaN equal to a NaN (the rows never hold one: checked here all the same)."""
    if isinstance(core, (tuple, list)) and isinstance(python, (tuple, list)):
        return len(core) == len(python) and all(map(_same, core, python))
    if isinstance(core, float) and isinstance(python, float) and math.isnan(core):
        return math.isnan(python)
    return type(core) is type(python) and core == python


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_the_core_makes_the_rows_python_makes(data: bytes) -> None:
    core = _core.index_rows(data, FINGERPRINT, INDEXED_AT)
    python = _python_rows(data)
    if core is None:
        # Only a time the core leaves to Python's reader (an aware time, here) sends a run's
        # rows to Python.
        assert _core.summarize_run(data)["other_times"], data
        return
    run, params, metrics, step_rows = core
    assert _same(run, python.run), (run, python.run)
    assert _same(params, python.params)
    assert _same(metrics, python.metrics)
    assert _same(step_rows, python.steps)


def test_rows_of_a_run_with_a_key_twice() -> None:
    data = (
        b'{"run_id": "r", "status": "SUCCESS", "parameters": {'
        b'"a": {"kind": "json", "value": 1}, "b": {"kind": "json", "value": NaN},'
        b'"a": {"kind": "json", "value": {"x": 1, "x": "\\u00c9"}}}}'
    )
    run, params, _, _ = _core.index_rows(data, FINGERPRINT, INDEXED_AT)
    assert [(p[1], p[2], p[3]) for p in params] == [("a", "object", None), ("b", "number", None)]
    summary = json.loads(run[9])["params"]
    assert list(summary) == ["a", "b"]
    assert summary["a"] == {"x": "É"}
    assert math.isnan(summary["b"])
    assert run == _python_rows(data).run


def test_far_times_are_left_to_python() -> None:
    data = (
        b'{"run_id": "r", "status": "S", "steps": {"a": {"name": "a", "internal_name": "a",'
        b' "status": "S", "step_type": "task", "attempts": [{"attempt_number": 1,'
        b' "start_time": "2600-01-01 00:00:00", "end_time": "2600-01-01 00:00:01",'
        b' "status": "S"}]}}}'
    )
    assert _core.index_rows(data, FINGERPRINT, INDEXED_AT) is None
    assert _python_rows(data).run[3] is not None


# --- case folding ---------------------------------------------------------------------------


def test_the_core_folds_every_character_as_python_does() -> None:
    """Every code point (the table is made from this Python's fold: run
    scripts/casefold-table.py when the pinned Python's Unicode version moves)."""
    assert unicodedata.unidata_version == _core.CASEFOLD_UNICODE_VERSION
    differ = [
        hex(code)
        for code in range(0x110000)
        if not 0xD800 <= code <= 0xDFFF and _core.casefold(chr(code)) != chr(code).casefold()
    ]
    assert differ == []


@pytest.mark.parametrize("text", ["Straße", "ΣΑΣ", "İstanbul", "ﬁle", "MiXeD 123", "", "日本"])
def test_fold_is_casefold(text: str) -> None:
    assert query.fold(text) == _core.casefold(text) == text.casefold()
