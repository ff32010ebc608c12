"""The chunk byte format, owned by the Rust core (``rust/chunk.rs``), against the Python code that
wrote it before it moved there.

The ``_reference_*`` functions below are that Python code as it was (``stores/_chunked.py`` and
``stores/chunked_minio.py`` at commit 7ad0dfb), kept verbatim as the definition of what is
already stored: runs written before the move must read the same after it, and what the core
writes must be what the Python code wrote. Hypothesis drives both with the same inputs.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import blake3
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from runlog_store import _core, create_store
from runlog_store.models import BranchLog, StepLog

from ..conftest import RUNNABLE_FIXTURES, SEED_FIXTURES

# --- the Python code that wrote the format before the core owned it (verbatim) -------------

_NS_PREFIX = b'{"_created_ns":'
_CHUNK_INDEX = "_chunks"
_ENDED_STATUSES = ("SUCCESS", "FAIL")


def _reference_with_created_ns(created_ns: int, document: bytes) -> bytes:
    return b'{"_created_ns":%d,%s' % (created_ns, document[1:])


def _reference_split_created_ns(chunk: bytes) -> tuple[int | None, bytes]:
    if not chunk.startswith(_NS_PREFIX):
        return None, chunk
    end = chunk.find(b",", len(_NS_PREFIX))
    if end < 0:
        raise ValueError("chunk header has no end")
    return int(chunk[len(_NS_PREFIX) : end]), b"{" + chunk[end + 1 :]


def _reference_branch_patch(patch: bytes, mine: list[tuple[str, tuple[str, bytes, str]]]) -> bytes:
    """``_branch_patch`` after it picked this process's steps: (internal, (name, data, etag))."""
    if not mine:
        return patch
    steps = b",".join(
        json.dumps(internal).encode() + b":" + data for internal, (_, data, _) in mine
    )
    index = json.dumps({name: etag for _, (name, _, etag) in mine}).encode()
    return (
        patch[:-1] + b',"steps":{' + steps + b'},"' + _CHUNK_INDEX.encode() + b'":' + index + b"}"
    )


def _reference_sealed_chunks(branch_chunks: Iterable[bytes], listed: dict[str, str]) -> set[str]:
    covered: set[str] = set()
    for data in branch_chunks:
        if _CHUNK_INDEX.encode() not in data:
            continue
        try:
            index = json.loads(data).get(_CHUNK_INDEX)
        except (ValueError, AttributeError):
            continue
        if isinstance(index, dict):
            covered.update(n for n, etag in index.items() if listed.get(n) == etag)
    return covered


def _reference_encode_snapshot(chunks: dict[str, str], merged: bytes) -> bytes:
    header = json.dumps(chunks, sort_keys=True).encode()
    return header + b"\n" + merged


def _reference_status(run_log: bytes) -> Any:
    try:
        return json.loads(run_log).get("status")
    except (ValueError, AttributeError):
        return None


# --- strategies -----------------------------------------------------------------------------

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
_objects = st.dictionaries(
    st.text().filter(lambda k: k not in ("_created_ns", "steps", "_chunks")),
    _json_values,
    max_size=6,
)
_created_ns = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_etags = st.dictionaries(st.text(), st.text(), max_size=8)


def _compact(obj: object, ascii_only: bool = False) -> bytes:
    """JSON as the stores write documents (pydantic: compact, UTF-8)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=ascii_only).encode()


_documents = st.builds(_compact, _objects, st.booleans())

# --- the names ------------------------------------------------------------------------------


def test_names_are_those_already_stored() -> None:
    assert _core.RUN_LOG_FILE == "RunLog.json"
    assert _core.LAYOUT_MARKER == ".layout"
    assert _core.LAYOUT_MARKER_TEXT_1 == b"runlog-store chunked-fs 1\n"
    assert _core.LAYOUT_MARKER_TEXT == b"runlog-store chunked-fs 2\n"  # runs created now
    assert _core.CREATED_NS_KEY == "_created_ns"
    assert _core.CHUNK_INDEX_KEY == "_chunks"
    assert _core.SNAPSHOT_NAME == ".merged.json"
    assert _core.TEMP_MARKER == ".tmp-"


# --- the chunk header -----------------------------------------------------------------------


@given(_created_ns, _documents)
@example(1706852981689005000, b'{"internal_name":"a","branches":{}}')
def test_header_is_written_as_before(created_ns: int, document: bytes) -> None:
    chunk = _core.chunk_with_header(created_ns, document)
    if document == b"{}":
        # The old code wrote b'{"_created_ns":5,}' here: not JSON. Now it is.
        assert chunk == b'{"_created_ns":%d}' % created_ns
    else:
        assert chunk == _reference_with_created_ns(created_ns, document)
    parsed = json.loads(chunk)
    assert next(iter(parsed)) == "_created_ns" and parsed["_created_ns"] == created_ns
    assert _core.split_chunk_header(chunk) == (created_ns, document)


@given(_created_ns, _documents)
def test_headers_written_before_are_read_the_same(created_ns: int, document: bytes) -> None:
    assume(document != b"{}")
    stored = _reference_with_created_ns(created_ns, document)
    assert _core.split_chunk_header(stored) == _reference_split_created_ns(stored)


@given(_documents)
def test_chunks_without_a_header_are_returned_whole(document: bytes) -> None:
    assume(not document.startswith(_NS_PREFIX))
    assert _core.split_chunk_header(document) == (None, document)
    assert _reference_split_created_ns(document) == (None, document)


@given(st.binary(max_size=40))
def test_any_header_is_cut_as_before_or_refused(rest: bytes) -> None:
    """Whatever follows the header's start, the core cuts it as the old code did, or refuses
    it with ValueError; it never reads a different time or body."""
    chunk = _NS_PREFIX + rest
    try:
        expected: tuple[int | None, bytes] | None = _reference_split_created_ns(chunk)
    except ValueError:
        expected = None
    try:
        got: tuple[int | None, bytes] | None = _core.split_chunk_header(chunk)
    except ValueError:
        got = None
    if got is not None and expected is not None:
        assert got == expected
    elif got is not None:
        # Only the core reads a header that closes the object: b'{"_created_ns":5}'.
        end = rest.find(b"}")
        assert end >= 0 and b"," not in rest[:end], rest
    elif expected is not None:
        # Only Python's laxer int() reads these: "1_0", "\v5", numbers beyond 64 bits.
        number = chunk[len(_NS_PREFIX) : chunk.find(b",", len(_NS_PREFIX))]
        assert b"_" in number or b"\v" in number or abs(expected[0] or 0) >= 2**63


def test_bad_documents_get_no_header() -> None:
    for bad, says in [
        (b"", "it is empty"),
        (b"[1]", "it is not a JSON object"),
        (b'"text"', "it is not a JSON object"),
        (b'{"a":', "it is not valid JSON"),
        (b'{"_created_ns":1}', 'already has a "_created_ns" key'),
        (b'{"a":1,"_created_ns":1}', 'already has a "_created_ns" key'),
    ]:
        with pytest.raises(ValueError, match=r"^the chunk document ") as caught:
            _core.chunk_with_header(1, bad)
        assert says in str(caught.value)


def test_header_only_chunk_is_an_empty_object() -> None:
    assert _core.split_chunk_header(b'{"_created_ns":7}') == (7, b"{}")
    with pytest.raises(ValueError, match="has no end"):
        _core.split_chunk_header(b'{"_created_ns":7')


# --- sealed branches ------------------------------------------------------------------------

_step_chunks = st.builds(
    lambda ns, doc: _reference_with_created_ns(ns, doc),
    st.integers(min_value=0, max_value=2**62),
    _documents.filter(lambda d: d != b"{}"),
)
_sealed_steps = st.dictionaries(
    st.text(min_size=1), st.tuples(st.text(min_size=1), _step_chunks, st.text()), max_size=5
)


@given(_documents.filter(lambda d: d != b"{}"), _sealed_steps)
def test_sealed_branch_patch_is_built_as_before(
    patch: bytes, by_internal: dict[str, tuple[str, bytes, str]]
) -> None:
    mine = sorted(by_internal.items())
    names = [name for _, (name, _, _) in mine]
    assume(len(set(names)) == len(names))
    steps = [(internal, data) for internal, (_, data, _) in mine]
    index = [(name, etag) for _, (name, _, etag) in mine]
    sealed = _core.seal_branch_patch(patch, steps, index)
    assert sealed == _reference_branch_patch(patch, mine)
    parsed = json.loads(sealed)
    assert parsed.get("steps", {}) == {i: json.loads(d) for i, d in steps}


def test_sealing_an_empty_patch_and_refusals() -> None:
    step = [("b.1.a", b'{"_created_ns":1,"internal_name":"b.1.a"}')]
    sealed = _core.seal_branch_patch(b"{}", step, [("StepLog-b.1.a.json", "e1")])
    assert json.loads(sealed) == {
        "steps": {"b.1.a": {"_created_ns": 1, "internal_name": "b.1.a"}},
        "_chunks": {"StepLog-b.1.a.json": "e1"},
    }
    assert _core.seal_branch_patch(b'{"status":"FAIL"}', [], []) == b'{"status":"FAIL"}'
    for patch, steps, index, says in [
        (b"[]", step, [], "the branch patch is not a JSON object"),
        (b'{"steps":{}}', step, [], 'already has a "steps" key'),
        (b"{}", [("a", b"{")], [], 'the chunk of step "a" is not a JSON object'),
        (b"{}", step + step, [], 'step "b.1.a" is given twice'),
        (b"{}", step, [("n", "1"), ("n", "2")], 'chunk "n" is in the index twice'),
    ]:
        with pytest.raises(ValueError) as caught:
            _core.seal_branch_patch(patch, steps, index)
        assert says in str(caught.value)


_branch_chunks = st.one_of(
    st.builds(
        _compact,
        st.fixed_dictionaries(
            {"internal_name": st.text()},
            optional={
                "_chunks": st.dictionaries(
                    st.sampled_from(["S-a", "S-b", "S-c", "S-d"]),
                    st.sampled_from(["e1", "e2", "e3"]) | st.integers(0, 3) | st.none(),
                )
                | _json_values
            },
        ),
    ),
    st.builds(lambda b: b'{"_chunks":' + b, st.binary(max_size=20)),
    st.builds(_compact, st.lists(st.just("_chunks"))),
)


@given(
    st.lists(_branch_chunks, max_size=6),
    st.dictionaries(st.sampled_from(["S-a", "S-b", "S-c", "S-e"]), st.sampled_from(["e1", "e2"])),
)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_sealed_step_chunks_are_found_as_before(
    branch_chunks: list[bytes], listed: dict[str, str]
) -> None:
    # The old code also counted a null ETag as matching a chunk that is not listed at all
    # (None == listed.get(name)): harmless, as only listed chunks are ever fetched, and gone.
    expected = _reference_sealed_chunks(branch_chunks, listed) & listed.keys()
    assert _core.sealed_step_chunks(branch_chunks, listed) == expected
    # Any iterable of bytes will do (the stores pass dict values).
    as_dict = {str(i): c for i, c in enumerate(branch_chunks)}
    assert _core.sealed_step_chunks(as_dict.values(), listed) == expected


def test_a_sealed_branch_merges_with_its_steps_and_no_index() -> None:
    """The seal, the header and the merger together, as chunked-minio uses them."""
    step = StepLog(name="a", internal_name="map.1.a", status="SUCCESS")
    step_chunk = _core.chunk_with_header(2, step.model_dump_json().encode())
    branch = BranchLog(internal_name="map.1", status="SUCCESS")
    created = _core.chunk_with_header(1, branch.model_dump_json().encode())
    patch = _core.seal_branch_patch(
        branch.model_dump_json(exclude={"steps"}).encode(),
        [("map.1.a", step_chunk)],
        [("StepLog-map.1.a.json", "etag-a")],
    )
    stored = _core.apply_patch("runs/r/BranchLog-map.1.json", None, patch, create=created)
    assert _core.split_chunk_header(stored)[0] == 1
    assert _core.sealed_step_chunks([stored], {"StepLog-map.1.a.json": "etag-a"}) == {
        "StepLog-map.1.a.json"
    }
    run_log = b'{"run_id":"r","status":"SUCCESS","steps":{}}'
    merged, skipped = _core.merge_chunks("runs/r", run_log, [("BranchLog-map.1.json", stored)])
    assert skipped == []
    document = json.loads(merged)
    made_up_step = document["steps"]["map"]
    assert made_up_step["branches"]["map.1"]["steps"]["map.1.a"]["status"] == "SUCCESS"
    assert b"_chunks" not in merged and b"_created_ns" not in merged


# --- snapshots ------------------------------------------------------------------------------


# The run's stored merge is a cache: its format changed (a length and a BLAKE3 hash of the
# merged document joined the map of documents, so a snapshot cut short by a crash, or damaged,
# is not used); one written before is simply not used, and the next read rebuilds it.


def _snapshot_as_specified(chunks: dict[str, str], merged: bytes) -> bytes:
    """docs/format.md: a first line with the JSON object of the hash, the documents and the
    length, then the merged document."""
    header = {
        "blake3": blake3.blake3(merged).hexdigest(),
        "documents": chunks,
        "length": len(merged),
    }
    return json.dumps(header, sort_keys=True).encode() + b"\n" + merged


@given(_etags, st.binary(max_size=64))
def test_snapshots_are_written_as_specified(etags: dict[str, str], merged: bytes) -> None:
    snapshot = _core.encode_snapshot(etags, merged)
    assert snapshot == _snapshot_as_specified(etags, merged)
    assert _core.decode_snapshot(snapshot, etags) == merged


@given(_etags, _etags, st.binary(max_size=32))
def test_a_snapshot_is_used_only_with_the_documents_it_was_built_from(
    stored: dict[str, str], listed: dict[str, str], merged: bytes
) -> None:
    snapshot = _core.encode_snapshot(stored, merged)
    assert _core.decode_snapshot(snapshot, listed) == (merged if listed == stored else None)
    # One written by an earlier version, without length and hash: not used.
    assert _core.decode_snapshot(_reference_encode_snapshot(stored, merged), stored) is None


@given(_etags, st.binary(min_size=1, max_size=64), st.data())
def test_a_snapshot_cut_short_or_changed_is_not_used(
    etags: dict[str, str], merged: bytes, data: st.DataObject
) -> None:
    snapshot = _core.encode_snapshot(etags, merged)
    cut = data.draw(st.integers(0, len(snapshot) - 1))
    assert _core.decode_snapshot(snapshot[:cut], etags) is None
    at = data.draw(st.integers(len(snapshot) - len(merged), len(snapshot) - 1))
    changed = bytearray(snapshot)
    changed[at] ^= data.draw(st.integers(1, 255))
    assert _core.decode_snapshot(bytes(changed), etags) is None


@given(st.binary(max_size=48), st.dictionaries(st.text(), st.text(), min_size=1, max_size=3))
@example(b"[]\n{}", {"a": "1"})
@example(b'{"a": 1}\n{}', {"a": "1"})
@example(b'{"a": "1", "a": "2"}\n{}', {"a": "2"})
def test_damaged_snapshots_are_not_used(data: bytes, etags: dict[str, str]) -> None:
    assert _core.decode_snapshot(data, etags) is None


# --- run documents --------------------------------------------------------------------------


@given(
    st.one_of(
        st.builds(
            _compact,
            st.fixed_dictionaries({}, optional={"status": _json_values, "run_id": st.text()}),
        ),
        _documents,
        st.binary(max_size=24),
        st.builds(_compact, _json_values),
    )
)
@example(b'{"status":"SUCCESS","steps":{}}')
@example(b'{"status":"A","status":"FAIL"}')
def test_status_is_read_as_before(document: bytes) -> None:
    expected = _reference_status(document)
    status = _core.document_status(document)
    assert status == (expected if isinstance(expected, str) else None)
    assert (status in _ENDED_STATUSES) == (expected in _ENDED_STATUSES)


# --- temp files -----------------------------------------------------------------------------


def test_temp_paths_sit_beside_their_target_and_are_cleaned(tmp_path: Path) -> None:
    target = tmp_path / "data" / "model.pkl"
    temps = {_core.temp_path(target) for _ in range(1000)}
    assert len(temps) == 1000
    temp = Path(next(iter(temps)))
    assert temp.parent == target.parent
    assert temp.name.startswith(".model.pkl" + _core.TEMP_MARKER + f"{os.getpid()}-")
    assert _core.is_temp_name(temp.name)
    assert _core.temp_path(str(target)).startswith(str(target.parent) + "/.model.pkl.tmp-")
    # A download into a temp path that died is cleaned like a dead write.
    _core.ensure_dir(target.parent)
    temp.write_bytes(b"half a download")
    old = time.time() - 3600
    os.utime(temp, (old, old))
    assert _core.clean_temp_files(target.parent) == 1
    assert not temp.exists()


@pytest.mark.parametrize(
    ("name", "is_temp"),
    [
        (".RunLog.json.tmp-12-1795866332720315554-0", True),
        (".model.pkl.tmp-4242-140099", True),  # the minio catalog's own pattern, before
        ("RunLog.json", False),
        (".layout", False),
        (".merged.json", False),
        ("notes.tmp-1", False),
    ],
)
def test_temp_names(name: str, is_temp: bool) -> None:
    assert _core.is_temp_name(name) is is_temp


# --- runs already stored --------------------------------------------------------------------


def _chunk_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*.json") if p.name.startswith(("StepLog-", "BranchLog-", "RunLog"))
    )


def test_fixture_chunks_are_cut_as_before() -> None:
    files = _chunk_files(RUNNABLE_FIXTURES) + _chunk_files(SEED_FIXTURES)
    assert len(files) >= 10
    for path in files:
        data = path.read_bytes()
        assert _core.split_chunk_header(data) == _reference_split_created_ns(data), path


def test_chunks_a_store_writes_are_cut_as_before(tmp_path: Path) -> None:
    store = create_store("chunked-fs", log_folder=str(tmp_path), fsync=False)
    store.create_run_log("run-1")
    branch = BranchLog(internal_name="map.1", status="PROCESSING")
    store.add_branch_log(branch, "run-1")
    for name in ("map.1.a", "map.1.é", "plain"):
        store.add_step_log(StepLog(name=name, internal_name=name), "run-1")
    store.update_run_log_status("run-1", "SUCCESS")  # folds the journal into the documents
    files = _chunk_files(tmp_path / "run-1")
    assert [p.name for p in files] == ["BranchLog-map.1.json", "RunLog.json"]
    for path in files:
        data = path.read_bytes()
        created_ns, body = _core.split_chunk_header(data)
        assert (created_ns, body) == _reference_split_created_ns(data), path
        if path.name != "RunLog.json":
            assert created_ns is not None
            assert _core.chunk_with_header(created_ns, body) == data
