"""A writer is SIGKILLed at random moments, over and over; after every kill the run must load
in full, every write the writer had been told succeeded must be there, and the temp files of
killed writes must neither be read as chunks nor pile up.

``RUNLOG_TORTURE_KILLS`` sets the kills per store (default 200, the CI size; raise it for a
soak run, e.g. ``RUNLOG_TORTURE_KILLS=5000 .venv/bin/pytest tests/torture``).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from runlog_store import BranchLog, JsonParameter

from ..conftest import make_store, store_config

KILLS = int(os.environ.get("RUNLOG_TORTURE_KILLS", "200"))
KILLS_PER_RUN = 20
CRASH_TYPES = ["file-system", "chunked-fs", "chunked-minio", "postgres"]
TEMP_FILE_TYPES = ["file-system", "chunked-fs"]  # those that write a temp file, then rename it
# How long a writer runs before its kill, in seconds: a random moment of this window. A
# postgres writer first connects to the server (its pool, and the check of the tables' schema
# version) before its first write, tens of milliseconds on a loaded machine: its window is
# longer, so that kills still land among its writes and not all during its connection.
KILL_WINDOW = {"postgres": (0.005, 0.15)}
DEFAULT_KILL_WINDOW = (0.002, 0.06)


def _writer(
    type_name: str, folder: str, config: dict[str, Any], run_id: str, start: int, ack: int
) -> None:
    """Write branches, steps, root parameters and statuses until killed; after each call
    returns, say so on the ``ack`` pipe (what returned is what must survive)."""
    store = make_store(type_name, Path(folder), **config)

    def said(kind: str, i: int) -> None:
        os.write(ack, f"{kind} {i}\n".encode())

    i = start
    while True:
        branch = store.create_branch_log(f"map.{i}")
        store.add_branch_log(branch, run_id)
        said("B", i)
        step = store.create_step_log("s", f"map.{i}.s")
        step.status = "SUCCESS"
        store.add_step_log(step, run_id)
        said("S", i)
        store.set_parameters(run_id, {f"p{i}": JsonParameter(kind="json", value=i)})
        said("P", i)
        branch.status = "SUCCESS"
        store.add_branch_log(branch, run_id)
        said("C", i)
        store.update_run_log_status(run_id, f"AT-{i}")
        said("R", i)
        i += 1


def _acknowledged(read_end: int) -> list[tuple[str, int]]:
    data = b""
    while chunk := os.read(read_end, 65536):
        data += chunk
    lines = data.decode().splitlines()
    return [(kind, int(i)) for kind, i in (line.split() for line in lines)]


def _temp_files(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(".*.tmp-*")] if folder.exists() else []


@pytest.mark.parametrize("type_name", CRASH_TYPES)
def test_sigkill_at_random_moments_loses_nothing_acknowledged(
    type_name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    config = store_config(request, type_name)
    folder = tmp_path / "logs"
    store = make_store(type_name, folder, **config)
    # fork: the writer starts in milliseconds, so 200 kills stay CI-sized. The child only
    # writes (no thread pools), so forking a process with threads is safe here.
    context = multiprocessing.get_context("fork")
    rng = random.Random(os.environ.get("RUNLOG_TORTURE_SEED", "1"))
    kills = 0
    acknowledged_total = 0
    next_index = 0
    run_id = ""
    max_temps = 0
    while kills < KILLS:
        if kills % KILLS_PER_RUN == 0:
            run_id = f"crash-{kills // KILLS_PER_RUN}"
            store.create_run_log(run_id)
            store.add_step_log(store.create_step_log("map", "map"), run_id)
            next_index = 0
            expected: dict[str, set[int]] = {k: set() for k in "BSPCR"}
        read_end, write_end = os.pipe()
        child = context.Process(
            target=_writer, args=(type_name, str(folder), config, run_id, next_index, write_end)
        )
        child.start()
        os.close(write_end)
        time.sleep(rng.uniform(*KILL_WINDOW.get(type_name, DEFAULT_KILL_WINDOW)))
        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
        child.join()
        assert child.exitcode == -signal.SIGKILL
        kills += 1
        acks = _acknowledged(read_end)
        os.close(read_end)
        acknowledged_total += len(acks)
        for kind, i in acks:
            expected[kind].add(i)
        if acks:
            next_index = max(i for _, i in acks) + 1
        next_index += 1  # the index the writer was on when killed is not reused

        document = json.loads(store.get_run_log_json(run_id))  # loads in full, every chunk
        branches = document["steps"]["map"]["branches"]
        assert expected["B"] <= {int(name.split(".")[1]) for name in branches}
        for i in expected["S"]:
            assert branches[f"map.{i}"]["steps"][f"map.{i}.s"]["status"] == "SUCCESS"
        for i in expected["C"]:
            assert branches[f"map.{i}"]["status"] == "SUCCESS"
        assert {f"p{i}" for i in expected["P"]} <= set(document["parameters"])
        if expected["R"]:
            assert int(document["status"].split("-")[1]) >= max(expected["R"])
        if type_name in TEMP_FILE_TYPES:
            # A killed write leaves at most one temp file, gone at the next write to its run.
            temps = _temp_files(folder / run_id if type_name == "chunked-fs" else folder)
            max_temps = max(max_temps, len(temps))
            assert len(temps) <= 1, temps
    assert kills == KILLS
    assert acknowledged_total > KILLS, "the writers got work done between kills"
    print(f"\n{type_name}: {kills} SIGKILLs, {acknowledged_total} acknowledged writes all present")
    if type_name in TEMP_FILE_TYPES:
        # Leftovers of earlier runs go as soon as anyone writes to those runs again.
        later = make_store(type_name, folder, **config)
        for n in range(KILLS // KILLS_PER_RUN):
            later.update_run_log_status(f"crash-{n}", "SUCCESS")
        assert _temp_files(folder) == []
    full = store.get_run_log_by_id(run_id, full=True)
    assert all(isinstance(b, BranchLog) for b in full.steps["map"].branches.values())


FOLD_KILLS = max(20, KILLS // 5)


def _end_run(folder: str, run_id: str, ack: int) -> None:
    """Say the store is open, end the run (which folds every journal into the documents), then
    say so."""
    store = make_store("chunked-fs", Path(folder))
    os.write(ack, b"ready\n")
    store.update_run_log_status(run_id, "SUCCESS")
    os.write(ack, b"ended\n")


def test_sigkill_during_the_fold_of_an_ended_run_loses_nothing(tmp_path: Path) -> None:
    """The end of a run folds every record into runnable's documents, one document after the
    other, then removes the journals. The process doing it is killed at random moments of that
    fold: the run must read exactly as before (with the end, if it was acknowledged), and the
    next fold must leave what runnable reads equal to what we read."""
    from extensions.run_log_store.chunked_fs import (
        ChunkedFileSystemRunLogStore as RunnableChunkedFs,
    )

    folder = tmp_path / "logs"
    store = make_store("chunked-fs", folder)
    context = multiprocessing.get_context("fork")
    rng = random.Random(os.environ.get("RUNLOG_TORTURE_SEED", "1"))
    landed = {"before": 0, "during": 0, "after": 0}

    def prepare(run_id: str) -> Any:
        store.create_run_log(run_id)
        store.add_step_log(store.create_step_log("map", "map"), run_id)
        for i in range(60):
            store.add_branch_log(store.create_branch_log(f"map.{i}"), run_id)
            step = store.create_step_log("s", f"map.{i}.s")
            step.status = "SUCCESS"
            store.add_step_log(step, run_id)
            store.set_parameters(run_id, {f"p{i}": JsonParameter(kind="json", value=i)})
        return json.loads(store.get_run_log_json(run_id))

    # How long ending a run takes here, from the child saying its store is open to its
    # acknowledgement (the shortest of three). Each kill lands at a random moment of that span
    # (and a little after), counted from the child's "ready": the process's start and imports,
    # which vary far more than the fold lasts on a loaded machine, are not part of the window.
    spans = []
    for c in range(3):
        prepare(f"calibration-{c}")
        read_end, write_end = os.pipe()
        child = context.Process(target=_end_run, args=(str(folder), f"calibration-{c}", write_end))
        child.start()
        os.close(write_end)
        assert _read_line(read_end) == "ready"
        started = time.monotonic()
        assert _acknowledged_lines(read_end) == ["ended"]
        spans.append(time.monotonic() - started)
        child.join()
        os.close(read_end)
    span = min(spans)
    for n in range(FOLD_KILLS):
        run_id = f"fold-{n}"
        expected = prepare(run_id)
        read_end, write_end = os.pipe()
        child = context.Process(target=_end_run, args=(str(folder), run_id, write_end))
        child.start()
        os.close(write_end)
        assert _read_line(read_end) == "ready"
        time.sleep(rng.uniform(0.0, span * 1.2))
        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
        child.join()
        acknowledged = _acknowledged_lines(read_end)
        os.close(read_end)
        # The fold removes the journals, and then their folder.
        journal_folder = folder / run_id / ".journals"
        journals = list(journal_folder.iterdir()) if journal_folder.is_dir() else []
        documents = list((folder / run_id).glob("BranchLog-*.json"))
        if acknowledged:
            landed["after"] += 1
        elif journals and documents:
            landed["during"] += 1
        else:
            landed["before"] += 1
        reader = make_store("chunked-fs", folder)
        document = json.loads(reader.get_run_log_json(run_id))
        assert document["status"] in ("CREATED", "SUCCESS")
        if acknowledged:
            assert document["status"] == "SUCCESS"
        assert {**document, "status": "CREATED"} == expected, f"kill {n}"
        reader.fold(run_id)  # runlog fold
        theirs = RunnableChunkedFs(log_folder=str(folder)).get_run_log_by_id(run_id, full=True)
        assert json.loads(theirs.model_dump_json()) == document, f"kill {n}"
        assert _temp_files(folder / run_id) == []  # the fold cleaned what the kill left
    print(f"\nchunked-fs: {FOLD_KILLS} SIGKILLs of a run's final fold: {landed}, nothing lost")
    assert landed["during"] > 0, "no kill landed inside a fold"


def _read_line(read_end: int) -> str:
    """One line from the pipe, read byte by byte so nothing after it is taken."""
    line = b""
    while (byte := os.read(read_end, 1)) not in (b"", b"\n"):
        line += byte
    return line.decode()


def _acknowledged_lines(read_end: int) -> list[str]:
    data = b""
    while chunk := os.read(read_end, 65536):
        data += chunk
    return data.decode().splitlines()
