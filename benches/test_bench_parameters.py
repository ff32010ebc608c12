"""Parameters written one call at a time: runnable 0.50's chunked-fs against ours.

One writer, chunked-fs, fsync off: N ``set_parameters`` calls, each of one new key with a
2,000-byte value, on the run (root parameters) or on one branch of a map step (branch
parameters, ``internal_branch_name``), the run not ended. Groups (each reported as runnable
time / ours by benches/report.py):

  read    a full read of that run (``get_run_log_by_id(full=True)``, and ``get_run_log_json``):
          every journal record applied on top of the documents, each read
  fold    the run's end (``update_run_log_status`` to SUCCESS), which folds the N records into
          the run's documents

Both must stay linear in N. Runnable's store rewrites its run document (or the branch's) at
each call, so writing N parameters one by one costs it N^2 bytes: its run is written with one
call holding the N parameters, which leaves the same documents its N calls would, and its
reads and its status update are measured on those.

The scratch folders are made under the current directory, which must be on the disk measured
(not a tmpfs); see benches/test_bench_store.py.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import runnable.datastore as runnable_models
from extensions.run_log_store.chunked_fs import ChunkedFileSystemRunLogStore as RunnableChunkedFs

import runlog_store as ours_models
from runlog_store import create_store

SIZES = [1_000, 4_000, 10_000]
VALUE_BYTES = 2_000
BRANCH = "map.0"
READ_ROUNDS = 5
FOLD_ROUNDS = 3

_counter = itertools.count()


def _ours(folder: Path) -> Any:
    return create_store("chunked-fs", log_folder=str(folder), fsync=False)


def _value(i: int) -> str:
    prefix = f"{i}:"
    return prefix + "v" * (VALUE_BYTES - len(prefix))


def _start(store: Any, models: Any, run_id: str, branch: bool) -> str:
    """Create the run (and, for branch parameters, the map step and its branch); the name of
    the branch the parameters go to ("" for the run's own)."""
    store.create_run_log(run_id, dag_hash="d" * 40)
    if not branch:
        return ""
    mapped = store.create_step_log("map", "map")
    mapped.step_type = "map"
    store.add_step_log(mapped, run_id)
    log = store.create_branch_log(BRANCH)
    log.status = "PROCESSING"
    store.add_branch_log(log, run_id)
    return BRANCH


def write_ours(folder: Path, run_id: str, n: int, branch: bool) -> None:
    """N calls, each of one new key."""
    store = _ours(folder)
    name = _start(store, ours_models, run_id, branch)
    param = ours_models.JsonParameter
    for i in range(n):
        store.set_parameters(
            run_id, {f"p{i}": param(kind="json", value=_value(i))}, internal_branch_name=name
        )


def write_theirs(folder: Path, run_id: str, n: int, branch: bool) -> None:
    """The same N parameters in one call (see the module's documentation)."""
    store = RunnableChunkedFs(log_folder=str(folder))
    name = _start(store, runnable_models, run_id, branch)
    param = runnable_models.JsonParameter
    store.set_parameters(
        run_id,
        {f"p{i}": param(kind="json", value=_value(i)) for i in range(n)},
        internal_branch_name=name,
    )


def _parameters_of(run_log: Any, branch: bool) -> dict[str, Any]:
    if branch:
        return dict(run_log.steps["map"].branches[BRANCH].parameters)
    return dict(run_log.parameters)


CASES = [(n, branch) for branch in (False, True) for n in SIZES]
CASE_IDS = [f"{'branch' if branch else 'root'}-{n}" for n, branch in CASES]


def _what(n: int, branch: bool) -> str:
    return f"{n} {'branch' if branch else 'root'} parameters of {VALUE_BYTES} bytes"


@pytest.fixture(scope="module")
def written(scratch: Path) -> dict[tuple[int, bool], Path]:
    """Per case, a folder holding run "ours" (our writer, N calls, not ended) and run "theirs"
    (runnable's)."""
    folders = {}
    for n, branch in CASES:
        folder = scratch / f"read-{'branch' if branch else 'root'}-{n}"
        write_ours(folder, "ours", n, branch)
        write_theirs(folder, "theirs", n, branch)
        folders[(n, branch)] = folder
    return folders


READERS = ["runnable get_run_log_by_id(full=True)", "runlog get_run_log_by_id(full=True)"]


@pytest.mark.parametrize("reader", [*READERS, "runlog get_run_log_json"])
@pytest.mark.parametrize(("n", "branch"), CASES, ids=CASE_IDS)
def test_read(
    noted: Any, written: dict[tuple[int, bool], Path], n: int, branch: bool, reader: str
) -> None:
    noted.group = f"read: {_what(n, branch)}, run not ended"
    noted.extra_info["role"] = "baseline" if reader.startswith("runnable") else "ours"
    folder = written[(n, branch)]
    if reader.startswith("runnable"):

        def read() -> Any:
            return RunnableChunkedFs(log_folder=str(folder)).get_run_log_by_id("theirs", full=True)
    elif reader.endswith("json"):

        def read() -> Any:
            return _ours(folder).get_run_log_json("ours")
    else:

        def read() -> Any:
            return _ours(folder).get_run_log_by_id("ours", full=True)

    result = noted.pedantic(read, rounds=READ_ROUNDS, iterations=1, warmup_rounds=1)
    if isinstance(result, bytes):
        assert len(result) > n * VALUE_BYTES
        return
    parameters = _parameters_of(result, branch)
    assert len(parameters) == n
    assert parameters[f"p{n - 1}"].value == _value(n - 1)


@pytest.mark.parametrize("kind", ["runnable", "runlog"])
@pytest.mark.parametrize(("n", "branch"), CASES, ids=CASE_IDS)
def test_fold_at_the_end(noted: Any, scratch: Path, n: int, branch: bool, kind: str) -> None:
    noted.group = f"fold: the run's end with {_what(n, branch)} written"
    noted.extra_info["role"] = "baseline" if kind == "runnable" else "ours"
    folders: list[Path] = []

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        folder = scratch / f"fold-{next(_counter)}"
        folders.append(folder)
        if kind == "runnable":
            write_theirs(folder, "run", n, branch)
            return (RunnableChunkedFs(log_folder=str(folder)),), {}
        write_ours(folder, "run", n, branch)
        return (_ours(folder),), {}

    def end(store: Any) -> None:
        store.update_run_log_status("run", "SUCCESS")

    noted.pedantic(end, setup=setup, rounds=FOLD_ROUNDS, iterations=1)
    store = RunnableChunkedFs(log_folder=str(folders[-1])) if kind == "runnable" else None
    run_log = (store or _ours(folders[-1])).get_run_log_by_id("run", full=True)
    assert run_log.status == "SUCCESS"
    assert len(_parameters_of(run_log, branch)) == n
    if kind == "runlog":
        assert not _ours(folders[-1]).unfolded_journals("run")
