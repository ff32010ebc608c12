"""Object storage benchmarks against one real MinIO server, side by side with runnable 0.50's
chunked-minio (cloudpathlib + boto3) in the same run.

Groups (benches/report.py prints runnable's time / ours):
  minio-write  a map run of 200 branches x 5 steps (benches/workload.py), through both stores
  minio-read   a full read of that run
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

import runlog_store as ours_models
from runlog_store import create_store

from . import minio_runnable
from .workload import write_map_run

BRANCHES = 200
STEPS = 5
_runs = itertools.count()


def _ours(config: dict[str, str]) -> Any:
    return create_store("chunked-minio", **config)


@pytest.mark.parametrize("kind", ["runnable chunked-minio", "runlog chunked-minio"])
def test_minio_write(benchmark: Any, minio_config: dict[str, str], kind: str) -> None:
    benchmark.group = f"minio-write: map run {BRANCHES} branches x {STEPS} steps"
    benchmark.extra_info["role"] = "baseline" if kind.startswith("runnable") else "ours"

    if kind.startswith("runnable"):
        store = minio_runnable.make_store(minio_config)

        def write() -> int:
            return minio_runnable.write_run(store, f"w{next(_runs)}", BRANCHES, STEPS)
    else:
        store = _ours(minio_config)

        def write() -> int:
            return write_map_run(store, ours_models, f"w{next(_runs)}", BRANCHES, STEPS)

    # runnable's store takes minutes per round here, so one round each (ratios, not absolutes).
    benchmark.pedantic(write, rounds=1, iterations=1)


@pytest.fixture(scope="module")
def written(minio_server: Any) -> dict[str, Any]:
    config = {
        "endpoint_url": minio_server.endpoint,
        "aws_access_key_id": minio_server.access_key,
        "aws_secret_access_key": minio_server.secret_key,
        "bucket": "bench-read",
    }
    theirs = minio_runnable.make_store(config)
    minio_runnable.write_run(theirs, "theirs", BRANCHES, STEPS)
    ours = _ours(config)
    write_map_run(ours, ours_models, "ours", BRANCHES, STEPS)
    return {"theirs": theirs, "ours": ours}


def _forget_snapshot(stores: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Before a "no stored merge" round: the merge the end of the run stored is removed."""
    bucket = stores["ours"].storage()
    key = bucket.key("ours", ".merged.json")
    if bucket.exists(key):
        bucket.delete(key)
    return (stores,), {}


READERS = {
    "runnable get_run_log_by_id(full=True)": (
        "baseline",
        lambda s: minio_runnable.read_run(s["theirs"], "theirs"),
        False,
    ),
    # The ended run as our writer left it (its end stored the merge): one listing, one GET.
    "runlog get_run_log_by_id(full=True)": (
        "ours",
        lambda s: s["ours"].get_run_log_by_id("ours", full=True),
        False,
    ),
    "runlog get_run_log_json": (
        "ours",
        lambda s: s["ours"].get_run_log_json("ours"),
        False,
    ),
    # Without it (a run runnable's store ended, read the first time): every object fetched.
    "runlog get_run_log_by_id(full=True), no stored merge": (
        "ours",
        lambda s: s["ours"].get_run_log_by_id("ours", full=True),
        True,
    ),
    "runlog get_run_log_json, no stored merge": (
        "ours",
        lambda s: s["ours"].get_run_log_json("ours"),
        True,
    ),
}


@pytest.mark.parametrize("reader", list(READERS))
def test_minio_full_read(benchmark: Any, written: dict[str, Any], reader: str) -> None:
    benchmark.group = f"minio-read: full run log of {BRANCHES} branches x {STEPS} steps"
    role, read, cold = READERS[reader]
    benchmark.extra_info["role"] = role
    if cold:
        result = benchmark.pedantic(read, setup=lambda: _forget_snapshot(written), rounds=5)
    else:
        result = benchmark.pedantic(read, args=(written,), rounds=5, iterations=1, warmup_rounds=1)
    assert result is not None
    if not isinstance(result, bytes):
        assert len(result.steps["map"].branches) == BRANCHES
