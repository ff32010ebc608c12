"""Parameters written one call at a time through chunked-fs's journal, many of them: a full read
of the run not ended holds what ``dict.update`` in the same order would, and the fold at the
run's end leaves documents that hold the same parameters in the same order.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from runlog_store import JsonParameter, create_store

BRANCH = "map.0"


def _store(folder: Path) -> Any:
    return create_store("chunked-fs", log_folder=str(folder), fsync=False)


def _parameters(document: bytes, branch: str) -> dict[str, Any]:
    run_log = json.loads(document)
    if branch:
        return dict(run_log["steps"]["map"]["branches"][branch]["parameters"])
    return dict(run_log["parameters"])


@pytest.mark.parametrize("branch", ["", BRANCH], ids=["root", "branch"])
def test_many_parameters_read_and_fold_as_dict_update(tmp_path: Path, branch: str) -> None:
    store = _store(tmp_path)
    store.create_run_log("run")
    if branch:
        mapped = store.create_step_log("map", "map")
        mapped.step_type = "map"
        store.add_step_log(mapped, "run")
        log = store.create_branch_log(branch)
        log.status = "PROCESSING"
        store.add_branch_log(log, "run")
    rng = random.Random(20261204)
    expected: dict[str, Any] = {}
    for i in range(3_000):
        # Mostly new keys; some set again (they keep their first place), some calls of several.
        names = [f"p{i}"] if rng.random() < 0.8 else rng.sample(sorted(expected) or ["p0"], 2)
        update = {name: [i, "x" * rng.randrange(50)] for name in names}
        store.set_parameters(
            "run",
            {name: JsonParameter(kind="json", value=value) for name, value in update.items()},
            internal_branch_name=branch,
        )
        expected.update(update)

    before = store.get_run_log_json("run")
    read = _parameters(before, branch)
    assert list(read) == list(expected)
    assert {name: stored["value"] for name, stored in read.items()} == expected
    full = store.get_run_log_by_id("run", full=True)
    parameters = full.steps["map"].branches[branch].parameters if branch else full.parameters
    assert list(parameters) == list(expected)
    last = next(reversed(expected))
    assert parameters[last].value == expected[last]

    store.update_run_log_status("run", "SUCCESS")
    assert not store.unfolded_journals("run")
    after = _store(tmp_path).get_run_log_json("run")
    assert _parameters(after, branch) == read
    assert list(_parameters(after, branch)) == list(expected)
