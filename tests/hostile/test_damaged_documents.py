"""A branch document damaged by hand: every read of the branch, its parameters included (read
without building the branch's steps), is a CorruptChunkError naming the document and what in
it is wrong, never a value that was not written."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runlog_store import JsonParameter, create_store
from runlog_store.exceptions import CorruptChunkError


def _run_with_a_branch(tmp_path: Path) -> tuple[Any, Path]:
    store = create_store("chunked-fs", log_folder=str(tmp_path / "logs"), fsync=False)
    store.create_run_log("r")
    store.add_step_log(store.create_step_log("map", "map"), "r")
    branch = store.create_branch_log("map.a")
    store.add_branch_log(branch, "r")
    store.set_parameters("r", {"x": JsonParameter(kind="json", value=1)}, "map.a")
    step = store.create_step_log("s", "map.a.s")
    step.status = "SUCCESS"
    store.add_step_log(step, "r")
    ended = store.get_branch_log("map.a", "r")  # as runnable's executor ends a branch
    ended.status = "SUCCESS"
    store.add_branch_log(ended, "r")  # the branch ends: folded into its document
    document = tmp_path / "logs" / "r" / "BranchLog-map.a.json"
    assert json.loads(document.read_text())["parameters"]["x"]["value"] == 1
    return store, document


DAMAGE: dict[str, tuple[Callable[[dict[str, Any]], object], str]] = {
    "a parameter of no known kind": (
        lambda doc: doc["parameters"]["x"].update(kind="bogus"),
        "parameters.x",
    ),
    "no internal_name": (lambda doc: doc.pop("internal_name"), "internal_name"),
    "parameters not an object": (lambda doc: doc.update(parameters=[1, 2]), "parameters"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_branch_document_names_itself_for_its_parameters_too(
    tmp_path: Path, damage: str
) -> None:
    _, document = _run_with_a_branch(tmp_path)
    change, where = DAMAGE[damage]
    doc = json.loads(document.read_text())
    change(doc)
    document.write_text(json.dumps(doc))
    reader = create_store("chunked-fs", log_folder=str(tmp_path / "logs"), fsync=False)
    for read in (
        lambda: reader.get_parameters("r", "map.a"),
        lambda: reader.get_branch_log("map.a", "r"),
    ):
        with pytest.raises(CorruptChunkError) as raised:
            read()
        assert raised.value.path == str(document)
        assert raised.value.run_id == "r"
        assert f"does not hold a valid BranchLog ({where}" in str(raised.value), raised.value


def test_branch_parameters_read_alone_equal_the_branch_s_own(tmp_path: Path) -> None:
    store, _ = _run_with_a_branch(tmp_path)
    store.set_parameters("r", {"y": JsonParameter(kind="json", value=[1, "two"])}, "map.a")
    reader = create_store("chunked-fs", log_folder=str(tmp_path / "logs"), fsync=False)
    alone = reader.get_parameters("r", "map.a")
    assert alone == reader.get_branch_log("map.a", "r").parameters
    assert {k: v.value for k, v in alone.items()} == {"x": 1, "y": [1, "two"]}
