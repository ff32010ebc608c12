"""scripts/make-fixtures.py, run again here, still makes what tests/fixtures/runnable-0.50 holds.

The script runs real runnable 0.50 pipelines; this test runs it once into a temporary folder and
compares the shapes of what it made with the committed copies: the same files, and run logs with
the same keys, value types, step and branch names, statuses, parameters, metrics, catalog entry
names and data hashes. So a change in runnable (a step's status, a dropped or renamed field) or
in the script shows here, and the committed copies the other tests read stay what runnable
writes.

What is compared loosely, because it differs from one run to the next by nature:

- times (``start_time``, ``end_time``): only that each is a time, or empty in both;
- code identities: only their keys and value types, and ``code_identifier_type``; the commit id
  and the clean/dirty flag are those of the working folder of the moment;
- run ids in values (``run_id``, the ``<run id>/`` of ``catalog_relative_path``);
- the order of a step's catalog entries (a glob's matches come in directory order) and of the
  branches of the chunked full view (runnable attaches them in its file listing's order); steps
  keep their order, which is the order they ran in;
- in the run whose map branches run in parallel processes (chunked-map), which other branches'
  files a branch's ``put`` of ``data/out_*.txt`` found: it depends on timing, so only its own
  file is compared, and the others are checked to be the map's outputs;
- the execution logs (``*.execution.log``): their content holds times and their names a random
  three-character suffix, so only their names without it are compared;
- hidden files in a committed chunked run folder: runlog-store's own readers cache their merge
  there (``.merged.json``) when a test reads the committed copy; runnable writes none.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from ..conftest import ROOT, RUNNABLE_FIXTURES

SCRIPT = ROOT / "scripts" / "make-fixtures.py"
RUN_IDS = ("fs-map", "fs-fail", "fs-job", "chunked-map")
PARALLEL_RUNS = {"chunked-map"}
EXECUTION_LOG = re.compile(r"^(?P<stem>.*)[A-Z0-9]{3}\.execution\.log$")
MAP_WORK = re.compile(r"^map_state\.(?P<item>\d+)\.work$")
MAP_OUTPUT = re.compile(r"^data/out_(?P<item>\d+)\.txt$")
TIME_KEYS = {"start_time", "end_time"}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixtures as the script makes them today (one run of it for the whole module)."""
    dest = tmp_path_factory.mktemp("made") / "runnable-0.50"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(dest)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return dest


# --- normalising ---------------------------------------------------------------------------------


def _relative_files(folder: Path, *, committed: bool) -> set[str]:
    files = set()
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        relative = path.relative_to(folder)
        if committed and any(part.startswith(".") for part in relative.parts):
            continue
        match = EXECUTION_LOG.match(path.name)
        name = f"{match['stem']}.execution.log" if match else path.name
        files.add(relative.with_name(name).as_posix())
    return files


def _type_name(value: object) -> str:
    return f"<{type(value).__name__}>"


def _code_identity(identity: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value if key == "code_identifier_type" else _type_name(value)
        for key, value in identity.items()
    }


def _time(value: object) -> object:
    if isinstance(value, str) and value:
        try:
            datetime.fromisoformat(value)
        except ValueError:
            return value  # not a time: compared as it is, so the difference shows
        return "<time>"
    return value


def _catalog_entry(entry: dict[str, Any], run_id: str) -> dict[str, Any]:
    entry = dict(entry)
    path = entry.get("catalog_relative_path")
    if isinstance(path, str) and path.startswith(f"{run_id}/"):
        entry["catalog_relative_path"] = "<run id>/" + path[len(run_id) + 1 :]
    return entry


def _parallel_map_puts(internal_name: str, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A map branch's own output of a run whose branches run at once; the others it found are
    checked to be the map's outputs, then left out."""
    work = MAP_WORK.match(internal_name)
    if work is None:
        return entries
    outputs = {e["name"]: MAP_OUTPUT.match(e["name"]) for e in entries if e["stage"] == "put"}
    assert all(outputs.values()), (internal_name, sorted(outputs))
    own = f"data/out_{work['item']}.txt"
    assert own in outputs, (internal_name, sorted(outputs))
    return [e for e in entries if e["stage"] != "put" or e["name"] == own]


def shape(value: Any, run_id: str, key: str = "", internal_name: str = "") -> Any:
    """``value`` with what legitimately differs between two runs of the same pipeline replaced
    by a placeholder (see the module's docstring)."""
    if isinstance(value, dict):
        name = value.get("internal_name", internal_name)
        return {
            k: shape(v, run_id, k, name if isinstance(name, str) else internal_name)
            for k, v in value.items()
        }
    if isinstance(value, list):
        if key == "code_identities":
            return [_code_identity(item) for item in value]
        if key == "data_catalog":
            entries = [_catalog_entry(item, run_id) for item in value]
            if run_id in PARALLEL_RUNS:
                entries = _parallel_map_puts(internal_name, entries)
            return sorted(entries, key=lambda e: (e["name"], e["stage"]))
        return [shape(item, run_id, key, internal_name) for item in value]
    if key in TIME_KEYS:
        return _time(value)
    if key == "run_id" and value == run_id:
        return "<run id>"
    return value


def step_orders(value: Any, where: str = "") -> Iterator[tuple[str, list[str]]]:
    """Every ``steps`` mapping's keys in order (the order the steps ran in), by where it is."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "steps" and isinstance(item, dict):
                yield where, list(item)
            yield from step_orders(item, f"{where}/{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from step_orders(item, f"{where}/{index}")


def differences(ours: Any, theirs: Any, where: str = "") -> Iterator[str]:
    """Where two JSON values differ, one line each (for a readable failure)."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        for key in sorted(ours.keys() | theirs.keys()):
            if key not in theirs:
                yield f"{where}/{key}: only in what the script made"
            elif key not in ours:
                yield f"{where}/{key}: only in the committed copy"
            else:
                yield from differences(ours[key], theirs[key], f"{where}/{key}")
    elif isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        for index, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            yield from differences(a, b, f"{where}/{index}")
    elif ours != theirs or type(ours) is not type(theirs):
        yield f"{where or '/'}: made {ours!r}, committed {theirs!r}"


def assert_same_shape(made: Any, committed: Any, run_id: str) -> None:
    ours, theirs = shape(made, run_id), shape(committed, run_id)
    found = list(differences(ours, theirs))
    assert not found, "\n".join(found[:40])
    assert dict(step_orders(made)) == dict(step_orders(committed))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run_id_of(relative: str) -> str:
    """The run a fixture file belongs to (its folder's or its own name)."""
    parts = Path(relative).parts
    return Path(parts[1]).stem if parts[0] != "chunked-fs" else parts[1]


JSON_FILES = sorted(
    p.relative_to(RUNNABLE_FIXTURES).as_posix()
    for p in RUNNABLE_FIXTURES.rglob("*.json")
    if "catalog" not in p.relative_to(RUNNABLE_FIXTURES).parts[:1] and not p.name.startswith(".")
)


# --- the comparison ------------------------------------------------------------------------------


def test_the_committed_fixtures_are_the_runs_the_tests_expect() -> None:
    assert {_run_id_of(name) for name in JSON_FILES} == set(RUN_IDS)
    assert "chunked-fs/chunked-map/RunLog.json" in JSON_FILES
    assert "expected-full/chunked-map.json" in JSON_FILES


def test_the_script_makes_the_same_files(made: Path) -> None:
    ours = _relative_files(made, committed=False)
    theirs = _relative_files(RUNNABLE_FIXTURES, committed=True)
    assert sorted(ours - theirs) == [] and sorted(theirs - ours) == []


@pytest.mark.parametrize("relative", JSON_FILES)
def test_run_logs_have_the_same_shape(made: Path, relative: str) -> None:
    committed = json.loads((RUNNABLE_FIXTURES / relative).read_text())
    ours = json.loads((made / relative).read_text())
    assert_same_shape(ours, committed, _run_id_of(relative))


def test_catalog_data_files_are_the_same_bytes_and_hashes(made: Path) -> None:
    data = sorted(p.relative_to(made) for p in (made / "catalog").rglob("data/*"))
    assert len(data) == 12  # six files for each of the two map runs
    for relative in data:
        assert _sha256(made / relative) == _sha256(RUNNABLE_FIXTURES / relative), relative
    # Every data hash recorded in the runs made is the hash of the copy in the catalog.
    for run_id, log in (
        ("fs-map", made / "file-system" / "fs-map.json"),
        ("chunked-map", made / "expected-full" / "chunked-map.json"),
    ):
        run = json.loads(log.read_text())
        entries = [e for e in _catalog_entries(run) if e["stage"] == "put"]
        assert len({e["name"] for e in entries}) == 6, run_id
        for entry in entries:
            copied = made / "catalog" / entry["catalog_relative_path"]
            assert entry["data_hash"] == _sha256(copied), (run_id, entry)


def _catalog_entries(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "data_catalog":
                yield from item
            else:
                yield from _catalog_entries(item)
    elif isinstance(value, list):
        for item in value:
            yield from _catalog_entries(item)


# --- the comparison can fail ---------------------------------------------------------------------


def _fixture(relative: str) -> Any:
    return json.loads((RUNNABLE_FIXTURES / relative).read_text())


def test_times_code_identities_and_listing_order_are_ignored() -> None:
    committed = _fixture("file-system/fs-map.json")
    changed = copy.deepcopy(committed)
    gen = changed["steps"]["gen"]
    gen["attempts"][0]["start_time"] = "2030-01-02 03:04:05.000001"
    gen["attempts"][0]["code_identities"][0]["code_identifier"] = "f" * 40
    gen["attempts"][0]["code_identities"][0]["code_identifier_dependable"] = True
    write = changed["steps"]["write"]
    write["data_catalog"].reverse()
    assert_same_shape(changed, committed, "fs-map")


@pytest.mark.parametrize(
    "change",
    [
        "status",
        "dropped field",
        "parameter value",
        "metric value",
        "data hash",
        "attempt time type",
        "step order",
    ],
)
def test_a_real_difference_fails(change: str) -> None:
    committed = _fixture("file-system/fs-map.json")
    changed = copy.deepcopy(committed)
    steps = changed["steps"]
    if change == "status":
        steps["score"]["status"] = "FAIL"
    elif change == "dropped field":
        del steps["gen"]["attempts"][0]["retry_indicator"]
    elif change == "parameter value":
        steps["map_state"]["branches"]["map_state.2"]["parameters"]["processed"]["value"] = 21
    elif change == "metric value":
        steps["score"]["attempts"][0]["user_defined_metrics"]["score"]["value"] = 0.7
    elif change == "data hash":
        steps["write"]["data_catalog"][0]["data_hash"] = "0" * 64
    elif change == "attempt time type":
        steps["gen"]["attempts"][0]["end_time"] = None
    elif change == "step order":
        changed["steps"] = dict(reversed(list(steps.items())))
    with pytest.raises(AssertionError):
        assert_same_shape(changed, committed, "fs-map")


def test_a_parallel_branch_must_still_put_its_own_output() -> None:
    committed = _fixture("expected-full/chunked-map.json")
    changed = copy.deepcopy(committed)
    branch = changed["steps"]["map_state"]["branches"]["map_state.3"]
    work = branch["steps"]["map_state.3.work"]
    work["data_catalog"] = [e for e in work["data_catalog"] if e["name"] != "data/out_3.txt"]
    with pytest.raises(AssertionError):
        assert_same_shape(changed, committed, "chunked-map")
