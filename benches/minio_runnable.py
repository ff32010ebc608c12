"""runnable 0.50's own chunked-minio run log store, usable outside a runnable run.

The baseline for the object-storage benchmarks (and a writer of runnable-made runs for interop
checks) must be runnable's code as it ships, not a copy. Its one obstacle: every method of
``ChunkedMinioRunLogStore`` finds its folder through ``self._context.run_id``, i.e. the run
context runnable's executor installs for a run (``runnable.context.set_run_context``, a
contextvar), and ignores the ``run_id`` argument it is given. Outside a run there is none and
the store raises "No run context available".

The least intrusive fix is to do what runnable does, not to patch the store: install a run
context for the run being written (``runnable_run``). Only ``run_id`` is read from it by the run
log store (the rest of runnable's context is used for object parameters and catalogs, which the
workload does not touch). No subclass, no monkeypatching: the code measured is runnable's.

Two more things runnable leaves to its deployment: the bucket must exist (``S3Path.mkdir`` is a
no-op, and writes to a missing bucket fail with NoSuchBucket), so ``make_store`` creates it;
and the store's ``bucket`` may carry a prefix (runnable's default is "runnable/run-logs"), so
only the part before the first "/" is the bucket.

Run directly to check it against a fresh server: ``python -m benches.minio_runnable [branches]``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import runnable.datastore as runnable_models
from extensions.run_log_store.chunked_minio import ChunkedMinioRunLogStore
from minio import Minio
from runnable import context as runnable_context
from tests.minio_server import MinioServer, minio_binary

from .workload import STEPS, write_map_run


@dataclass(frozen=True)
class RunContextStub:
    """The part of runnable's run context its run log stores read: the current run's id."""

    run_id: str


@contextmanager
def runnable_run(run_id: str) -> Iterator[None]:
    """Make ``run_id`` the current runnable run in this thread, as runnable's executor does.

    A contextvar: it holds for this thread (and asyncio task) only, and the previous context is
    restored on exit. The store writes to and reads from this run's folder whatever ``run_id``
    its methods are passed, so write and read inside the matching block.
    """
    previous = runnable_context.get_run_context()
    runnable_context.set_run_context(RunContextStub(run_id))  # type: ignore[arg-type,unused-ignore]
    try:
        yield
    finally:
        runnable_context.set_run_context(previous)


def make_store(config: Mapping[str, str]) -> ChunkedMinioRunLogStore:
    """runnable's ChunkedMinioRunLogStore for these config keys (endpoint_url,
    aws_access_key_id, aws_secret_access_key, bucket), with its bucket created if missing."""
    store = ChunkedMinioRunLogStore(**config)
    ensure_bucket(config)
    return store


def ensure_bucket(config: Mapping[str, str]) -> None:
    """Create the bucket of a store config (the part of ``bucket`` before any "/")."""
    endpoint = config["endpoint_url"]
    secure = endpoint.startswith("https://")
    client = Minio(
        endpoint.split("://", 1)[-1].rstrip("/"),
        access_key=config["aws_access_key_id"],
        secret_key=config["aws_secret_access_key"],
        secure=secure,
    )
    bucket = config["bucket"].split("/", 1)[0]
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)


def write_run(store: ChunkedMinioRunLogStore, run_id: str, branches: int, steps: int) -> int:
    """The benchmark workload (benches/workload.py) through runnable's store and models."""
    with runnable_run(run_id):
        return write_map_run(store, runnable_models, run_id, branches, steps)


def read_run(store: ChunkedMinioRunLogStore, run_id: str) -> runnable_models.RunLog:
    """A full read (every branch chunk merged), as runnable does at the end of a run."""
    with runnable_run(run_id):
        return store.get_run_log_by_id(run_id, full=True)


def _check(branches: int) -> None:
    """Write and fully read one map run against a fresh MinIO server; print what it took."""
    with (
        tempfile.TemporaryDirectory(prefix="runlog-minio-") as tmp,
        MinioServer(minio_binary(), tmp) as server,
    ):
        config = {
            "endpoint_url": server.endpoint,
            "aws_access_key_id": server.access_key,
            "aws_secret_access_key": server.secret_key,
            "bucket": "runnable-bench",
        }
        store = make_store(config)
        started = time.perf_counter()
        writes = write_run(store, "run-1", branches, STEPS)
        wrote = time.perf_counter() - started
        started = time.perf_counter()
        run_log = read_run(store, "run-1")
        read = time.perf_counter() - started
        branch_logs = run_log.steps["map"].branches
        steps = sum(len(b.steps) for b in branch_logs.values())
        assert run_log.status == "SUCCESS", run_log.status
        assert len(branch_logs) == branches, sorted(branch_logs)
        assert steps == branches * STEPS, steps
        print(
            f"runnable chunked-minio at {server.endpoint}: {writes} writes "
            f"({branches} branches x {STEPS} steps) in {wrote:.2f}s, "
            f"full read in {read:.2f}s: {len(branch_logs)} branches, {steps} steps"
        )


if __name__ == "__main__":
    _check(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
