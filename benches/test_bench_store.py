"""Run log store benchmarks: runnable 0.50's chunked-fs against ours, one map run, same calls.

Groups (each reported as runnable time / ours by benches/report.py):
  write   the whole map run (1000 branches x 5 steps, branch parameters: 13,004 store calls)
  read    a full read of that run, ended, as the writer left it (the fold that ended it stored
          the merge beside it, checked unchanged at each read), and with that merge removed
          before each round (every document read and merged: a run runnable's store ended)
  scale   writing 1000 steps into a run of 0 vs of 9000 steps (ours only: must stay flat)

The scratch folders are made under the current directory, which must be on the disk measured
(not a tmpfs); nothing is deleted until the module ends, since deleting thousands of files makes
this disk (mounted with ``discard``) slow for a while. Every benchmark carries a probe of the
disk taken when the module starts (``extra_info["disk_probe"]``), printed by report.py.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import runnable.datastore as runnable_models
from extensions.run_log_store.chunked_fs import ChunkedFileSystemRunLogStore as RunnableChunkedFs

import runlog_store as ours_models
from runlog_store import _core, create_store

from .workload import BRANCHES, STEPS, write_map_run, write_steps

_counter = itertools.count()


def _store(kind: str, folder: Path) -> Any:
    if kind == "runnable-chunked-fs":
        return RunnableChunkedFs(log_folder=str(folder))
    return create_store("chunked-fs", log_folder=str(folder), fsync=kind.endswith("fsync-on"))


def _models(kind: str) -> Any:
    return runnable_models if kind.startswith("runnable") else ours_models


WRITERS = ["runnable-chunked-fs", "runlog-chunked-fs-fsync-on", "runlog-chunked-fs-fsync-off"]
WRITE_ROUNDS = 3
# The rounds take turns, each round in another order (a Latin square: every implementation
# runs once first, once second, once third), so that each meets the disk in the same states:
# writes leave it slower for a while, and rounds of one after rounds of another would measure
# the disk, not the store.
INTERLEAVED = [
    (r, WRITERS[(r - 1 + i) % len(WRITERS)])
    for r in range(1, WRITE_ROUNDS + 1)
    for i in range(len(WRITERS))
]


@pytest.mark.parametrize(("round_", "kind"), INTERLEAVED, ids=[f"{k}-{r}" for r, k in INTERLEAVED])
def test_write(noted: Any, scratch: Path, round_: int, kind: str) -> None:
    noted.group = f"write: map run {BRANCHES} branches x {STEPS} steps"
    noted.extra_info["role"] = "baseline" if kind.startswith("runnable") else "ours"
    noted.extra_info["implementation"] = kind
    noted.extra_info["round"] = round_

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        folder = scratch / f"w{next(_counter)}"
        return (_store(kind, folder), _models(kind), "run"), {}

    noted.pedantic(write_map_run, setup=setup, rounds=1, iterations=1)


@pytest.fixture(scope="module")
def written_run(scratch: Path) -> Path:
    folder = scratch / "read"
    write_map_run(_store("runlog-chunked-fs-fsync-off", folder), ours_models, "ours")
    write_map_run(_store("runnable-chunked-fs", folder), runnable_models, "theirs")
    # The fold that ended the run stored its merge beside it.
    assert (folder / "ours" / _core.SNAPSHOT_NAME).exists()
    return folder


def _ours(folder: Path) -> Any:
    return _store("runlog-chunked-fs-fsync-off", folder)


READERS = {
    "runnable get_run_log_by_id(full=True)": (
        lambda f: RunnableChunkedFs(log_folder=str(f)).get_run_log_by_id("theirs", full=True),
        False,
    ),
    # The ended run as our writer left it, read by a new store object each round.
    "runlog get_run_log_by_id(full=True)": (
        lambda f: _ours(f).get_run_log_by_id("ours", full=True),
        False,
    ),
    "runlog get_run_log_json": (lambda f: _ours(f).get_run_log_json("ours"), False),
    # Without the merge stored beside it (as a run runnable's store ended reads the first time):
    # every document read and merged, each round.
    "runlog get_run_log_by_id(full=True), no stored merge": (
        lambda f: _ours(f).get_run_log_by_id("ours", full=True),
        True,
    ),
    "runlog get_run_log_json, no stored merge": (lambda f: _ours(f).get_run_log_json("ours"), True),
}


def _without_snapshot(folder: Path) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Before a "no stored merge" round."""
    (folder / "ours" / _core.SNAPSHOT_NAME).unlink(missing_ok=True)
    return (folder,), {}


@pytest.mark.parametrize("reader", list(READERS))
def test_full_read(noted: Any, written_run: Path, reader: str) -> None:
    noted.group = f"read: full run log of {BRANCHES} branches x {STEPS} steps"
    noted.extra_info["role"] = "baseline" if reader.startswith("runnable") else "ours"
    read, without_snapshot = READERS[reader]
    if without_snapshot:
        result = noted.pedantic(
            read, setup=lambda: _without_snapshot(written_run), rounds=10, iterations=1
        )
    else:
        result = noted.pedantic(read, args=(written_run,), rounds=10, iterations=1, warmup_rounds=1)
    assert result is not None
    if not isinstance(result, bytes):
        assert len(result.steps["map"].branches) == BRANCHES


@pytest.mark.parametrize("existing", [0, 9000])
def test_write_cost_does_not_grow_with_the_run(noted: Any, scratch: Path, existing: int) -> None:
    noted.group = "scale: 1000 step writes into a run of N steps (ours, fsync off)"
    noted.extra_info["role"] = "baseline" if existing == 0 else "ours"

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        folder = scratch / f"s{next(_counter)}"
        store = _store("runlog-chunked-fs-fsync-off", folder)
        store.create_run_log("run")
        # 9000 steps written before either way (into this run, or into another), so both
        # measure 1000 writes on a disk with the same backlog.
        target = "run" if existing else "other"
        if not existing:
            store.create_run_log("other")
        write_steps(store, ours_models, target, 0, 9000)
        return (store, ours_models, "run", 9000 if existing else 0, 1000), {}

    noted.pedantic(write_steps, setup=setup, rounds=7, iterations=1)
