"""Run summaries from the core (``_core.summarize_run`` and ``summarize_files``) against a
reference written in Python from the definition (the summary ``runlog list`` has always shown,
plus the fields a search filters on): every generated run log, with keys given twice, fields of
the wrong type, NaN and infinities, gives the same summary both ways; documents that are no run
log are UNREADABLE for the same reason; and the parallel read of file-system documents gives
what ``read_summary`` gives run by run."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runlog_store import _core
from runlog_store.exceptions import CorruptChunkError
from runlog_store.ops.runs import (
    UNREADABLE,
    RunSummary,
    _not_a_run,
    parse_time,
    read_document_summaries,
    read_summary,
    summarize,
)
from runlog_store.stores.file_system import FileSystemRunLogStore

EXAMPLES = int(os.environ.get("RUNLOG_HYPOTHESIS_EXAMPLES", "300"))
CONFIG = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# --- the reference: the summary as defined, over the dicts of json.loads ------------------------


def _walk(steps: Any) -> Iterator[dict[str, Any]]:
    if not isinstance(steps, dict):
        return
    for step in steps.values():
        if not isinstance(step, dict):
            continue
        yield step
        branches = step.get("branches")
        if isinstance(branches, dict):
            for branch in branches.values():
                if isinstance(branch, dict):
                    yield from _walk(branch.get("steps"))


def _branches(steps: Any) -> Iterator[dict[str, Any]]:
    for step in _walk(steps):
        branches = step.get("branches")
        if isinstance(branches, dict):
            yield from (b for b in branches.values() if isinstance(b, dict))


def _attempts(holder: dict[str, Any]) -> list[dict[str, Any]]:
    attempts = holder.get("attempts")
    return [a for a in attempts if isinstance(a, dict)] if isinstance(attempts, list) else []


def _first_identifier(identities: Any) -> str | None:
    if not isinstance(identities, list):
        return None
    for item in identities:
        if isinstance(item, dict) and item.get("code_identifier"):
            return str(item["code_identifier"])
    return None


def reference(run: dict[str, Any]) -> dict[str, Any]:
    """The summary fields of a run log, as the definition states them."""
    steps = list(_walk(run.get("steps")))
    holders = list(steps)
    if isinstance(run.get("job"), dict):
        holders.append(run["job"])
    times = [
        t
        for holder in holders
        for attempt in _attempts(holder)
        for key in ("start_time", "end_time")
        if (t := parse_time(attempt.get(key))) is not None
    ]
    start, end = (min(times), max(times)) if times else (None, None)
    failed = [s for s in steps if s.get("status") == "FAIL"]
    failed_step = None
    if failed:
        names = [str(s.get("internal_name") or s.get("name") or "") for s in failed]
        leaves = [n for n in names if not any(o.startswith(n + ".") for o in names)]
        failed_step = leaves[0] if leaves else names[0]
    elif isinstance(run.get("job"), dict) and run["job"].get("status") == "FAIL":
        failed_step = "job"
    commit = None
    for holder in holders:
        sources = [holder.get("code_identities")]
        sources += [a.get("code_identities") for a in _attempts(holder)]
        commit = next((c for c in map(_first_identifier, sources) if c is not None), None)
        if commit is not None:
            break
    steps_by_status: dict[str, int] = {}
    step_statuses: dict[str, str] = {}
    for step in steps:
        status = step.get("status")
        if isinstance(status, str):
            steps_by_status[status] = steps_by_status.get(status, 0) + 1
            step_statuses[str(step.get("internal_name") or step.get("name") or "")] = status
    branches_by_status: dict[str, int] = {}
    for branch in _branches(run.get("steps")):
        status = branch.get("status")
        if isinstance(status, str):
            branches_by_status[status] = branches_by_status.get(status, 0) + 1
    parameters = run.get("parameters") or {}
    return {
        "run_id": run["run_id"],
        "status": str(run.get("status", "")),
        "tag": str(run.get("tag") or ""),
        "start": start,
        "end": end,
        "duration_seconds": (end - start).total_seconds() if start and end else None,
        "steps": len(steps),
        "branches": sum(len(s.get("branches") or {}) for s in steps),
        "failed_step": failed_step,
        "dag_hash": run.get("dag_hash"),
        "commit": commit,
        "steps_by_status": steps_by_status,
        "branches_by_status": branches_by_status,
        "params": {
            name: p["value"]
            for name, p in parameters.items()
            if p.get("kind") in ("json", "object")
        },
        "metrics": {
            name: p["value"] for name, p in parameters.items() if p.get("kind") == "metric"
        },
        "step_statuses": step_statuses,
    }


def _comparable(value: Any) -> Any:
    """NaN equal to NaN, for comparing summaries."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, Mapping):
        return {k: _comparable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


def core_fields(summary: RunSummary) -> dict[str, Any]:
    fields = {name: getattr(summary, name) for name in RunSummary.model_fields}
    for absent in ("error", "layout"):
        fields.pop(absent)
    return fields


def assert_same(data: bytes) -> None:
    run = json.loads(data)
    expected = reference(run)
    got = core_fields(summarize(data))
    assert _comparable(got) == _comparable(expected)
    # Dict order too: a listing shows statuses and parameters in the order they came.
    for name in ("steps_by_status", "branches_by_status", "params", "metrics", "step_statuses"):
        assert list(got[name]) == list(expected[name]), name


# --- generated run logs -------------------------------------------------------------------------

names = st.sampled_from(["a", "b", "map", "map.1", "map.1.x", "m.10", "", "é"])
status_names = st.sampled_from(["SUCCESS", "FAIL", "FAIL", "PROCESSING", "CREATED"])
statuses = st.one_of(status_names, status_names, st.none(), st.integers(0, 2))
times = st.one_of(
    st.sampled_from(
        [
            "2026-01-01 10:00:00",
            "2026-01-01 10:00:00.5",
            "2026-01-01T09:59:59.123456",
            "2026-01-01 10:00",
            "2026-01-02",
            "2026-01-01 11:00:00+01:00",
            "2026-01-01 08:00:00Z",
            "2026-01-01 10:00:00,25",  # Python reads it; the core leaves it to Python
            "2026W011",
            "2026-02-30",
            "not a time",
            "",
        ]
    ),
    st.none(),
    st.integers(),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)
identity = st.fixed_dictionaries(
    {"code_identifier": st.one_of(st.sampled_from(["", "abc", "def"]), scalars)}
)
identities = st.one_of(
    st.lists(identity, max_size=3),
    st.lists(st.one_of(identity, scalars), max_size=3),
    scalars,
)
attempt = st.fixed_dictionaries(
    {"start_time": times},
    optional={"end_time": times, "code_identities": identities},
)
attempts = st.one_of(
    st.lists(attempt, max_size=3),
    st.lists(attempt, max_size=3),
    st.lists(st.one_of(attempt, scalars), max_size=3),
    scalars,
)


def steps_of(depth: int) -> st.SearchStrategy[Any]:
    branch = (
        st.fixed_dictionaries(
            {}, optional={"status": statuses, "steps": st.deferred(lambda: steps_of(depth - 1))}
        )
        if depth > 0
        else st.just({})
    )
    step = st.fixed_dictionaries(
        {"status": statuses, "attempts": attempts},
        optional={
            "internal_name": st.one_of(names, names, scalars),
            "name": names,
            "code_identities": identities,
            "branches": st.one_of(
                st.dictionaries(names, st.one_of(branch, scalars), max_size=3),
                st.lists(scalars, max_size=2),
                st.text(max_size=3),
                st.none(),
            ),
        },
    )
    # Mostly steps: a wrong type now and then, as a damaged log has.
    mapping = st.dictionaries(names, step, max_size=4)
    odd = st.dictionaries(names, st.one_of(step, scalars), max_size=3)
    return st.one_of(mapping, mapping, mapping, odd, scalars)


parameter = st.one_of(
    st.fixed_dictionaries({"kind": st.sampled_from(["json", "metric"]), "value": json_values}),
    st.fixed_dictionaries(
        {"kind": st.just("object"), "value": st.text(max_size=5)},
        optional={"description": st.one_of(st.none(), st.text(max_size=5))},
    ),
)
runs = st.fixed_dictionaries(
    {"run_id": st.text(max_size=5), "steps": steps_of(2)},
    optional={
        "status": st.sampled_from(["SUCCESS", "FAIL", "PROCESSING"]),
        "tag": st.one_of(st.none(), st.text(max_size=3)),
        "dag_hash": st.one_of(st.none(), st.sampled_from(["", "d" * 40])),
        "job": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "status": statuses,
                    "attempts": attempts,
                    "code_identities": identities,
                },
            ),
            st.none(),
        ),
        "parameters": st.dictionaries(st.text(max_size=3), parameter, max_size=4),
        "run_config": st.dictionaries(st.text(max_size=3), json_values, max_size=2),
        "extra": json_values,
    },
)


def _wellformed_names(run: Any) -> bool:
    """Lists and objects as step names are left out: no model reads them, and Python's str()
    of one is its repr, which the core does not write."""
    return all(
        not isinstance(s.get("internal_name") or s.get("name"), list | dict)
        for s in _walk(run.get("steps"))
    )


@CONFIG
@given(runs)
def test_every_generated_run_log_is_summarized_as_defined(run: dict[str, Any]) -> None:
    if not _wellformed_names(run):
        return
    assert_same(json.dumps(run).encode())


def test_fixtures_of_runnable_are_summarized_as_defined() -> None:
    fixtures = Path(__file__).parents[1] / "fixtures" / "runnable-0.50" / "file-system"
    documents = sorted(fixtures.glob("*.json"))
    assert documents
    for document in documents:
        assert_same(document.read_bytes())


def test_keys_given_twice_count_by_their_last_value_at_their_first_place() -> None:
    data = b"""{"run_id": "x", "run_id": "r", "status": "FAIL", "steps": {
        "a": {"internal_name": "a", "status": "FAIL"},
        "b": {"internal_name": "b", "status": "SUCCESS", "status": "FAIL"},
        "a": {"internal_name": "a2", "status": "SUCCESS", "branches": {"x": {}, "x": {}}}},
        "parameters": {"p": {"kind": "json", "value": 1}, "q": {"kind": "json", "value": 2},
                       "p": {"kind": "metric", "value": 3}}}"""
    assert_same(data)
    summary = summarize(data)
    assert summary.run_id == "r" and summary.failed_step == "b" and summary.branches == 1
    assert summary.params == {"q": 2} and summary.metrics == {"p": 3}


def test_non_finite_metrics_and_big_integers_keep_their_values() -> None:
    data = (
        b'{"run_id": "r", "parameters": {"m": {"kind": "metric", "value": NaN},'
        b' "i": {"kind": "metric", "value": -Infinity},'
        b' "big": {"kind": "json", "value": [123456789012345678901234567890, 1.5e300]}},'
        b' "steps": {"s": {"status": "SUCCESS", "attempts": [{"start_time": "2026-01-01"}],'
        b' "x": Infinity}}}'
    )
    summary = summarize(data)
    assert math.isnan(summary.metrics["m"]) and summary.metrics["i"] == -math.inf
    assert summary.params == {"big": [123456789012345678901234567890, 1.5e300]}
    assert summary.start == summary.end == datetime(2026, 1, 1)
    assert_same(data)


def test_aware_times_are_local_wall_times_and_rare_forms_are_read_by_python() -> None:
    aware = datetime.fromisoformat("2026-06-01 10:00:00+00:00").astimezone().replace(tzinfo=None)
    data = json.dumps(
        {
            "run_id": "r",
            "job": {
                "attempts": [
                    {"start_time": "2026-06-01T10:00:00Z", "end_time": "2026W011"},
                    {"end_time": "2026-06-02 10:00:00,5"},
                ]
            },
        }
    ).encode()
    summary = summarize(data)
    assert summary.start == datetime(2025, 12, 29)  # the ISO week date, read by Python
    assert summary.end == max(aware, datetime(2026, 6, 2, 10, 0, 0, 500000))
    assert summary.duration_seconds == (summary.end - summary.start).total_seconds()
    assert _core.summarize_run(data)["other_times"] == ["2026W011", "2026-06-02 10:00:00,5"]


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "not valid JSON ("),
        (b'{"run_id": "r"', "not valid JSON ("),
        (b'{"run_id": nan}', "not valid JSON ("),
        (b"[1, 2]", "not a run log (a JSON list, not an object)"),
        (b"null", "not a run log (a JSON NoneType, not an object)"),
        (b"1.5", "not a run log (a JSON float, not an object)"),
        (b"{}", "not a valid run log (run_id: Field required)"),
        (b'{"run_id": 1}', "not a valid run log (run_id: Input should be a valid string)"),
        (b'{"run_id": "r", "tag": []}', "not a valid run log (tag: "),
        (b'{"run_id": "r", "status": null}', "not a valid run log (status: "),
        (b'{"run_id": "r", "run_config": 1}', "not a valid run log (run_config: "),
        (b'{"run_id": "r", "parameters": []}', "not a valid run log (parameters: "),
        (b'{"run_id": "r", "parameters": {"p": 1}}', "not a valid run log (parameters.p"),
        (b'{"run_id": "r", "parameters": {"p": {"value": 1}}}', "not a valid run log (param"),
        (b'{"run_id": "r", "parameters": {"p": {"kind": "x"}}}', "not a valid run log (param"),
        (b'{"run_id": "r", "parameters": {"p": {"kind": "json"}}}', "not a valid run log (param"),
        (
            b'{"run_id": "r", "parameters": {"p": {"kind": "object", "value": 1}}}',
            "not a valid run log (parameters.p",
        ),
        (
            b'{"run_id": "r", "parameters": {"p": {"kind": "object", "value": "v",'
            b' "description": 2}}}',
            "not a valid run log (parameters.p",
        ),
    ],
)
def test_documents_that_are_no_run_log_say_why(data: bytes, says: str) -> None:
    with pytest.raises(CorruptChunkError) as raised:
        _core.summarize_run(data, "r")
    assert str(raised.value).startswith(says.split(" (")[0])
    fields = raised.value.run_fields  # type: ignore[attr-defined]
    if says.startswith("not a valid run log"):
        # The models refuse the run-level fields the core hands back, in their own words.
        assert isinstance(fields, dict)
        problem = _not_a_run(fields)
        assert problem is not None and problem.startswith(says), problem
    else:
        assert fields is None


@CONFIG
@given(
    st.dictionaries(
        st.sampled_from(["run_id", "tag", "status", "dag_hash", "run_config", "parameters", "x"]),
        st.one_of(json_values, st.dictionaries(st.text(max_size=2), parameter, max_size=2)),
    )
)
def test_the_core_refuses_exactly_the_run_fields_the_models_refuse(run: dict[str, Any]) -> None:
    data = json.dumps(run).encode()
    try:
        _core.summarize_run(data)
    except CorruptChunkError:
        refused = True
    else:
        refused = False
    assert refused == (_not_a_run(json.loads(data)) is not None)


def _folder_of_documents(tmp_path: Path) -> tuple[FileSystemRunLogStore, list[str]]:
    store = FileSystemRunLogStore(log_folder=str(tmp_path), fsync=False)
    store.create_run_log("good", status="SUCCESS", tag="t")
    documents = {
        "garbage": b"{",
        "listed": b"[1]",
        "empty-object": b"{}",
        "other": b'{"run_id": "not-other"}',
        "bad-tag": b'{"run_id": "bad-tag", "tag": 5}',
        "deep": b'{"run_id": "deep", "x": ' + b"[" * 200 + b"]" * 200 + b"}",
    }
    for run_id, data in documents.items():
        (tmp_path / f"{run_id}.json").write_bytes(data)
    (tmp_path / "linked.json").symlink_to(tmp_path / "good.json")
    os.mkfifo(tmp_path / "fifo.json")
    return store, ["good", *documents, "linked", "fifo", "gone"]


def test_documents_read_in_parallel_are_summarized_as_read_summary_does(tmp_path: Path) -> None:
    store, run_ids = _folder_of_documents(tmp_path)
    paths = [str(tmp_path / f"{run_id}.json") for run_id in run_ids]
    found = read_document_summaries(paths, run_ids)
    for run_id, summary in zip(run_ids, found, strict=True):
        if run_id == "gone":
            assert summary is None
            continue
        assert summary is not None
        one = read_summary(store, run_id)
        assert summary.model_dump() == one.model_dump(), run_id
        assert (summary.status == UNREADABLE) == (run_id != "good"), summary
        if run_id != "good":
            assert summary.error and run_id in summary.error
    bad_tag = found[run_ids.index("bad-tag")]
    assert bad_tag is not None and "Input should be a valid string" in str(bad_tag.error)


def test_summarize_files_hands_back_each_failure_in_its_place(tmp_path: Path) -> None:
    _, run_ids = _folder_of_documents(tmp_path)
    results = _core.summarize_files([str(tmp_path / f"{r}.json") for r in run_ids], run_ids)
    kinds = {run_id: type(result).__name__ for run_id, result in zip(run_ids, results, strict=True)}
    assert kinds == {
        "good": "dict",
        "garbage": "CorruptChunkError",
        "listed": "CorruptChunkError",
        "empty-object": "CorruptChunkError",
        "other": "RunIdMismatchError",
        "bad-tag": "CorruptChunkError",
        "deep": "CorruptChunkError",
        "linked": "CorruptChunkError",
        "fifo": "CorruptChunkError",
        "gone": "ChunkNotFoundError",
    }
    with pytest.raises(ValueError, match="2 paths for 1 run ids"):
        _core.summarize_files(["a", "b"], ["a"])


def test_a_summary_of_a_dict_is_the_summary_of_its_json() -> None:
    run = {"run_id": "r", "status": "SUCCESS", "parameters": {"m": {"kind": "metric", "value": 1}}}
    assert summarize(run) == summarize(json.dumps(run).encode())
    assert "step_statuses" not in summarize(run).model_dump_json()
