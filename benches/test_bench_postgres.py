"""The postgres store on a private PostgreSQL cluster (tests/postgres_server.py; fsync and
synchronous_commit on, as in production), side by side with runnable 0.50's chunked-fs and
our chunked-fs on this machine's disk, fsync on for both of ours.

Groups (benches/report.py prints runnable's time / each other's):
  postgres-write  a map run of 200 branches x 5 steps (benches/workload.py), one process
  postgres-read   a full read of that run, and a read without branches (runnable's frequent one)
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import runnable.datastore as runnable_models
from extensions.run_log_store.chunked_fs import ChunkedFileSystemRunLogStore as RunnableChunkedFs
from tests.postgres_server import PostgresServer, private_server

import runlog_store as ours_models
from runlog_store import create_store

from .workload import write_map_run

BRANCHES = 200
STEPS = 5
_runs = itertools.count()


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    with private_server() as server:
        yield server


def _postgres(server: PostgresServer) -> Any:
    return create_store(
        "postgres",
        host=server.host,
        port=server.port,
        dbname=server.dbname,
        user=server.user,
        password=server.password,
        schema_name=f"b_{uuid.uuid4().hex[:12]}",
    )


def _models(kind: str) -> Any:
    return runnable_models if kind.startswith("runnable") else ours_models


KINDS = ["runnable chunked-fs", "runlog chunked-fs", "runlog postgres"]


def _store(kind: str, server: PostgresServer, scratch: Path) -> Any:
    folder = scratch / f"pg-bench-{next(_runs)}"
    if kind == "runnable chunked-fs":
        return RunnableChunkedFs(log_folder=str(folder))
    if kind == "runlog chunked-fs":
        return create_store("chunked-fs", log_folder=str(folder), fsync=True)
    return _postgres(server)


@pytest.mark.parametrize("kind", KINDS)
def test_postgres_write(
    benchmark: Any, postgres_server: PostgresServer, scratch: Path, kind: str
) -> None:
    benchmark.group = f"postgres-write: map run {BRANCHES} branches x {STEPS} steps"
    benchmark.extra_info["role"] = "baseline" if kind.startswith("runnable") else "ours"
    store = _store(kind, postgres_server, scratch)
    models = _models(kind)

    def write() -> int:
        return write_map_run(store, models, f"w{next(_runs)}", BRANCHES, STEPS)

    benchmark.pedantic(write, rounds=3, iterations=1)


@pytest.fixture(scope="module")
def written(postgres_server: PostgresServer, scratch: Path) -> dict[str, Any]:
    stores = {kind: _store(kind, postgres_server, scratch) for kind in KINDS}
    for kind, store in stores.items():
        write_map_run(store, _models(kind), "read", BRANCHES, STEPS)
    return stores


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("full", [True, False], ids=["full", "without branches"])
def test_postgres_read(benchmark: Any, written: dict[str, Any], kind: str, full: bool) -> None:
    what = "full run log" if full else "run log without branches"
    benchmark.group = f"postgres-read: {what} of {BRANCHES} branches x {STEPS} steps"
    benchmark.extra_info["role"] = "baseline" if kind.startswith("runnable") else "ours"
    store = written[kind]
    result = benchmark.pedantic(
        lambda: store.get_run_log_by_id(run_id="read", full=full),
        rounds=10,
        iterations=1,
        warmup_rounds=1,
    )
    assert result.run_id == "read"
    if full:
        assert len(result.steps["map"].branches) == BRANCHES
