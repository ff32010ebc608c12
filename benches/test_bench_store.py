"""Run log store benchmarks: runnable 0.50's chunked-fs against ours, one map run, same calls.

Groups (each reported as runnable time / ours by benches/report.py):
  write   the whole map run (1000 branches x 5 steps, branch parameters)
  read    a full read of that run
  scale   writing 1000 steps into a run of 0 vs of 9000 steps (ours only: must stay flat)
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import runnable.datastore as runnable_models
from extensions.run_log_store.chunked_fs import ChunkedFileSystemRunLogStore as RunnableChunkedFs

import runlog_store as ours_models
from runlog_store import create_store

from .workload import BRANCHES, STEPS, write_map_run, write_steps

_counter = itertools.count()


@pytest.fixture(scope="module")
def scratch() -> Any:
    folder = Path(tempfile.mkdtemp(prefix="runlog-bench-", dir=Path.cwd()))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _store(kind: str, folder: Path) -> Any:
    if kind == "runnable-chunked-fs":
        return RunnableChunkedFs(log_folder=str(folder))
    return create_store("chunked-fs", log_folder=str(folder), fsync=kind.endswith("fsync-on"))


def _models(kind: str) -> Any:
    return runnable_models if kind.startswith("runnable") else ours_models


WRITERS = ["runnable-chunked-fs", "runlog-chunked-fs-fsync-on", "runlog-chunked-fs-fsync-off"]


@pytest.mark.parametrize("kind", WRITERS)
def test_write(benchmark: Any, scratch: Path, kind: str) -> None:
    benchmark.group = f"write: map run {BRANCHES} branches x {STEPS} steps"
    benchmark.extra_info["role"] = "baseline" if kind.startswith("runnable") else "ours"

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        folder = scratch / f"w{next(_counter)}"
        return (_store(kind, folder), _models(kind), "run"), {}

    benchmark.pedantic(write_map_run, setup=setup, rounds=3, iterations=1)


@pytest.fixture(scope="module")
def written_run(scratch: Path) -> Path:
    folder = scratch / "read"
    write_map_run(_store("runlog-chunked-fs-fsync-off", folder), ours_models, "ours")
    write_map_run(_store("runnable-chunked-fs", folder), runnable_models, "theirs")
    return folder


READERS = {
    "runnable get_run_log_by_id(full=True)": lambda f: RunnableChunkedFs(
        log_folder=str(f)
    ).get_run_log_by_id("theirs", full=True),
    "runlog get_run_log_by_id(full=True)": lambda f: _store(
        "runlog-chunked-fs-fsync-off", f
    ).get_run_log_by_id("ours", full=True),
    "runlog get_run_log_json": lambda f: _store("runlog-chunked-fs-fsync-off", f).get_run_log_json(
        "ours"
    ),
}


@pytest.mark.parametrize("reader", list(READERS))
def test_full_read(benchmark: Any, written_run: Path, reader: str) -> None:
    benchmark.group = f"read: full run log of {BRANCHES} branches x {STEPS} steps"
    benchmark.extra_info["role"] = "baseline" if reader.startswith("runnable") else "ours"
    result = benchmark.pedantic(
        READERS[reader], args=(written_run,), rounds=10, iterations=1, warmup_rounds=1
    )
    assert result is not None


@pytest.mark.parametrize("existing", [0, 9000])
def test_write_cost_does_not_grow_with_the_run(
    benchmark: Any, scratch: Path, existing: int
) -> None:
    benchmark.group = "scale: 1000 step writes into a run of N steps (ours, fsync off)"
    benchmark.extra_info["role"] = "baseline" if existing == 0 else "ours"

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        folder = scratch / f"s{next(_counter)}"
        store = _store("runlog-chunked-fs-fsync-off", folder)
        store.create_run_log("run")
        write_steps(store, ours_models, "run", 0, existing)
        return (store, ours_models, "run", existing, 1000), {}

    benchmark.pedantic(write_steps, setup=setup, rounds=5, iterations=1)
