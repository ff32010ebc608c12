"""The postgres store on a private PostgreSQL cluster (tests/postgres_server.py; fsync and
synchronous_commit on, as in production), side by side with runnable 0.50's chunked-fs (which
never syncs) and our chunked-fs with fsync on, on this machine's disk.

Groups (benches/report.py prints the baseline's time / each other's):
  postgres-write      the map run of benches/workload.py (BRANCHES x 5 steps, 13 store calls a
                      branch) written in one process; the rounds of the three stores take turns
  postgres-processes  the same run written by one process, and by PROCESSES processes at once,
                      each writing its share of the run's branches (real processes, started and
                      connected before the clock starts): the ratio is the throughput of many
                      writers over one's, what the server's group commit gives
  postgres-read       a full read of the run, and a read without branches (runnable's frequent
                      one)

RUNLOG_BENCH_PG_BRANCHES (default 1000) makes the run smaller for a quick try;
RUNLOG_BENCH_PG_PROCESSES (default 8) sets the number of writer processes.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import time
import uuid
from collections.abc import Iterator
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path
from typing import Any

import pytest
import runnable.datastore as runnable_models
from extensions.run_log_store.chunked_fs import ChunkedFileSystemRunLogStore as RunnableChunkedFs
from tests.postgres_server import PostgresServer, private_server

import runlog_store as ours_models
from runlog_store import create_store

from .workload import end_map_run, start_map_run, write_branches, write_map_run

BRANCHES = int(os.environ.get("RUNLOG_BENCH_PG_BRANCHES", "1000"))
STEPS = 5
PROCESSES = int(os.environ.get("RUNLOG_BENCH_PG_PROCESSES", "8"))
ROUNDS = 3
START_TIMEOUT = 120.0  # for the writer processes to import and connect on a busy machine
_runs = itertools.count()


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    with private_server() as server:
        yield server


def _postgres_config(server: PostgresServer, schema: str) -> dict[str, Any]:
    return {
        "host": server.host,
        "port": server.port,
        "dbname": server.dbname,
        "user": server.user,
        "password": server.password,
        "schema_name": schema,
    }


@pytest.fixture(scope="module")
def postgres_config(postgres_server: PostgresServer) -> dict[str, Any]:
    """One schema for the module's runs: each round writes a new run into tables that grow, as
    a database in use does."""
    config = _postgres_config(postgres_server, f"b_{uuid.uuid4().hex[:12]}")
    create_store("postgres", **config).list_run_ids()  # the tables made before any clock runs
    return config


def _models(kind: str) -> Any:
    return runnable_models if kind.startswith("runnable") else ours_models


def _store(kind: str, config: dict[str, Any], scratch: Path) -> Any:
    folder = scratch / f"pg-bench-{next(_runs)}"
    if kind == "runnable chunked-fs":
        return RunnableChunkedFs(log_folder=str(folder))
    if kind == "runlog chunked-fs fsync":
        return create_store("chunked-fs", log_folder=str(folder), fsync=True)
    return create_store("postgres", **config)


def _role(kind: str, baseline: str) -> str:
    return "baseline" if kind == baseline else "ours"


def _interleaved(kinds: list[str]) -> list[tuple[int, str]]:
    """Rounds that take turns, each in another order (a Latin square: each kind runs first
    once), so that each meets the machine in the same states."""
    return [
        (r, kinds[(r - 1 + i) % len(kinds)])
        for r in range(1, ROUNDS + 1)
        for i in range(len(kinds))
    ]


# --- one process ---------------------------------------------------------------------------

WRITERS = ["runnable chunked-fs", "runlog chunked-fs fsync", "runlog postgres"]


@pytest.mark.parametrize(
    ("round_", "kind"),
    _interleaved(WRITERS),
    ids=[f"{k}-{r}" for r, k in _interleaved(WRITERS)],
)
def test_postgres_write(
    noted: Any, postgres_config: dict[str, Any], scratch: Path, round_: int, kind: str
) -> None:
    noted.group = f"postgres-write: map run {BRANCHES} branches x {STEPS} steps, one process"
    noted.extra_info.update(
        role=_role(kind, "runnable chunked-fs"), implementation=kind, round=round_
    )

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        store = _store(kind, postgres_config, scratch)
        if kind == "runlog postgres":
            store.list_run_ids()  # the pool's first connection made before the clock runs
        return (store, _models(kind), f"w{next(_runs)}", BRANCHES, STEPS), {}

    noted.pedantic(write_map_run, setup=setup, rounds=1, iterations=1)


# --- many processes ------------------------------------------------------------------------


def _writer(
    config: dict[str, Any],
    run_id: str,
    numbers: list[int],
    ready: Barrier,
    go: Event,
    results: Any,
) -> None:
    """A writer process: connected, it waits for the start, writes its branches, and reports
    (None, or what failed)."""
    try:
        store = create_store("postgres", **config)
        store.get_run_log_by_id(run_id)  # its pool connected, the tables checked
        ready.wait(START_TIMEOUT)
        go.wait(START_TIMEOUT)
        write_branches(store, ours_models, run_id, numbers, STEPS)
        results.put(None)
    except BaseException as exc:  # reported to the parent, which fails the benchmark
        results.put(f"{type(exc).__name__}: {exc}")
        raise


class _Writers:
    """``count`` writer processes on one run, each with every count-th branch, started and
    connected (waiting at a barrier) before ``run()`` starts them and waits for all."""

    def __init__(self, config: dict[str, Any], run_id: str, count: int) -> None:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter each, as a pod
        self.ready = context.Barrier(count + 1)
        self.go = context.Event()
        self.results = context.Queue()
        self.processes = [
            context.Process(
                target=_writer,
                args=(
                    config,
                    run_id,
                    list(range(n, BRANCHES, count)),
                    self.ready,
                    self.go,
                    self.results,
                ),
                daemon=True,
            )
            for n in range(count)
        ]
        for process in self.processes:
            process.start()
        self.ready.wait(START_TIMEOUT)

    def run(self) -> list[str]:
        """Start them; returns once every one has written its share: what failed."""
        self.go.set()
        outcomes = [self.results.get(timeout=600) for _ in self.processes]
        return [outcome for outcome in outcomes if outcome is not None]

    def close(self) -> None:
        for process in self.processes:
            process.join(30)
            if process.is_alive():
                process.kill()


SPLITS = ["1 process", f"{PROCESSES} processes"]


@pytest.mark.parametrize(
    ("round_", "split"),
    _interleaved(SPLITS),
    ids=[f"{s.replace(' ', '-')}-{r}" for r, s in _interleaved(SPLITS)],
)
def test_postgres_processes(
    noted: Any, postgres_config: dict[str, Any], round_: int, split: str
) -> None:
    noted.group = (
        f"postgres-processes: map run {BRANCHES} branches x {STEPS} steps, its branches "
        "split among processes (ratio: throughput over one process's)"
    )
    noted.extra_info.update(role=_role(split, SPLITS[0]), implementation=split, round=round_)
    count = int(split.split()[0])
    store = create_store("postgres", **postgres_config)
    run_id = f"p{next(_runs)}"
    mapped = start_map_run(store, run_id)
    started: list[_Writers] = []

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        started.append(_Writers(postgres_config, run_id, count))
        return (), {}

    try:
        failed = noted.pedantic(lambda: started[0].run(), setup=setup, rounds=1, iterations=1)
    finally:
        for writers in started:
            writers.close()
    assert failed == []
    end_map_run(store, run_id, mapped)
    run = store.get_run_log_by_id(run_id, full=True)
    branches = run.steps["map"].branches
    assert len(branches) == BRANCHES
    assert all(len(b.steps) == STEPS and b.status == "SUCCESS" for b in branches.values())


# --- reads ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def written(postgres_config: dict[str, Any], scratch: Path) -> dict[str, Any]:
    stores = {kind: _store(kind, postgres_config, scratch) for kind in WRITERS}
    for kind, store in stores.items():
        write_map_run(store, _models(kind), "read", BRANCHES, STEPS)
    time.sleep(1.0)  # the disk's writeback of the runs settled before the reads
    return stores


@pytest.mark.parametrize("kind", WRITERS)
@pytest.mark.parametrize("full", [True, False], ids=["full", "without branches"])
def test_postgres_read(noted: Any, written: dict[str, Any], kind: str, full: bool) -> None:
    what = "full run log" if full else "run log without branches"
    noted.group = f"postgres-read: {what} of {BRANCHES} branches x {STEPS} steps"
    # Against our chunked-fs: the goal is a full read in at most twice its time.
    noted.extra_info["role"] = _role(kind, "runlog chunked-fs fsync")
    store = written[kind]
    result = noted.pedantic(
        lambda: store.get_run_log_by_id(run_id="read", full=full),
        rounds=10,
        iterations=1,
        warmup_rounds=1,
    )
    assert result.run_id == "read"
    if full:
        assert len(result.steps["map"].branches) == BRANCHES
