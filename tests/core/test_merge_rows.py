"""``_core.merge_rows``: a run held as database rows (the postgres store's) merges exactly as the
same run held as objects does (``merge_chunks``, the object stores'), in every view, and a
damaged row is what a damaged object is: an error, or left out by a salvage."""

from __future__ import annotations

import json
from typing import Literal

import pytest

from runlog_store import _core
from runlog_store.exceptions import CorruptChunkError

RUN = (
    b'{"run_id":"r","dag_hash":"","tag":"","status":"SUCCESS","steps":{},"parameters":{},'
    b'"run_config":{}}'
)


def _step(name: str) -> bytes:
    short = name.rsplit(".", 1)[-1]
    return json.dumps(
        {
            "name": short,
            "internal_name": name,
            "status": "SUCCESS",
            "step_type": "task",
            "message": "",
            "mock": False,
            "code_identities": [],
            "attempts": [],
            "branches": {},
            "data_catalog": [],
        },
        separators=(",", ":"),
    ).encode()


def _branch(name: str) -> bytes:
    return json.dumps(
        {"internal_name": name, "status": "SUCCESS", "steps": {}, "parameters": {}},
        separators=(",", ":"),
    ).encode()


def _rows() -> list[tuple[str, str, int, bytes]]:
    """A map run: the map step, three branches (stored in an order their creation times
    undo), two steps each, and a root step with a dot in its name."""
    rows: list[tuple[str, str, int, bytes]] = [("step", "map", 1, _step("map"))]
    for b, created in ((2, 30), (0, 10), (1, 20)):
        rows.append(("branch", f"map.{b}", created, _branch(f"map.{b}")))
        rows += [
            ("step", f"map.{b}.s{s}", created + 1 + s, _step(f"map.{b}.s{s}")) for s in range(2)
        ]
    rows.append(("step", "a.b", 100, _step("a.b")))
    return rows


def _objects(rows: list[tuple[str, str, int, bytes]]) -> list[tuple[str, bytes]]:
    kinds: dict[str, Literal["StepLog", "BranchLog"]] = {"step": "StepLog", "branch": "BranchLog"}
    return [
        (_core.chunk_file_name(kinds[kind], name), _core.chunk_with_header(created, body))
        for kind, name, created, body in rows
    ]


@pytest.mark.parametrize(
    ("view", "name"),
    [("full", ""), ("run", ""), ("branch", "map.1"), ("branch", "map.9"), ("step", "map.0.s1")],
)
def test_rows_merge_as_the_same_objects_do(view: str, name: str) -> None:
    rows = _rows()
    expected = _core.merge_chunks("runs/r", RUN, _objects(rows), run_id="r", view=view, name=name)  # type: ignore[arg-type]
    got = _core.merge_rows("runs/r", RUN, rows, run_id="r", view=view, name=name)  # type: ignore[arg-type]
    assert got == expected
    if view == "full":
        merged = json.loads(got[0] or b"")
        assert list(merged["steps"]["map"]["branches"]) == ["map.0", "map.1", "map.2"]


def test_a_damaged_row_is_an_error_or_left_out_by_a_salvage() -> None:
    rows = [*_rows(), ("step", "map.0.s9", 50, b"[1, 2")]
    with pytest.raises(CorruptChunkError, match=r"map\.0\.s9"):
        _core.merge_rows("runs/r", RUN, rows, run_id="r")
    merged, skipped = _core.merge_rows("runs/r", RUN, rows, run_id="r", salvage=True)
    assert [path for path, _ in skipped] == ["runs/r/StepLog-map.0.s9.json"]
    assert merged == _core.merge_rows("runs/r", RUN, _rows(), run_id="r")[0]


def test_a_row_of_another_kind_is_refused() -> None:
    with pytest.raises(ValueError, match='unknown kind of row "job"'):
        _core.merge_rows("runs/r", RUN, [("job", "x", 1, b"{}")], run_id="r")
