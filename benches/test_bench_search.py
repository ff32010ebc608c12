"""Searching runs: ``search_runs`` on 100,000 runs in a file-system and a chunked-fs store, beside
MLflow's own SQL store holding the same runs, in the same run.

The runs (benches/search_workload.py): a few hundred templates written through our writers and
runnable 0.50's own, cloned on disk with new ids, parameters, metrics, tags and times; cached
under ``.bench-scratch/search``. ``RUNLOG_BENCH_RUNS`` sets the count (100,000 by default;
``RUNLOG_BENCH_RUNS=5000`` is the two-minute smoke run). MLflow's store (benches/mlflow_runs.py)
is made by MLflow, its first 200 runs written through its client API and the rest loaded in bulk
into its tables (its API writes a few milliseconds a run).

The search, the same in both languages: SUCCESS runs with ``params.optimizer = 'adam'`` and
``metrics.accuracy > 0.9``, ordered by accuracy descending, the first page of 100. Every answer is
checked against the one the generator knows (``expected_page``). Groups (benches/report.py prints
the baseline's time over ours, or for ``scale`` groups ours over the baseline's):

  search         (a) the warm search (index up to date) of each store, (e) ``runlog list
                 --filter ... --order-by ... --limit 100 --json`` as a subprocess, beside MLflow's
                 ``MlflowClient.search_runs`` (the baseline): ours must answer faster
  scan           (d) the base-class scan (every run read, what a store without an index does and
                 ``runlog list`` did) against the warm search: >= 50x
  scale-build    (c) building the index from nothing (a progress callback attached) over reading
                 every run's top document once (``json.loads`` of ``<id>.json`` / ``RunLog.json``,
                 runs listed by ``os.scandir``): <= 1.5x the cost
  scale-changed  (b) the search after runnable's own store added 500 runs and changed the status
                 of 500 (setup, not timed), over the warm search: <= 1 s
  minio          a tenth of the runs (10,000) in the minio store on a real MinIO server: the warm
                 search (<= 1 s) against the scan

Until the run index is there a store answers by a scan; before ``search_runs`` is there at all
(or its summaries carry no parameters) the searches here read every run themselves
(``_scan_page``), so the harness runs either way; ``SEARCH_READY`` says which was measured.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from importlib.util import find_spec
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml

from runlog_store import create_store
from runlog_store.callbacks import RecordingCallback
from runlog_store.stores.base import BaseRunLogStore

from . import mlflow_runs
from . import search_workload as workload
from .minio_runnable import ensure_bucket, runnable_run

RUNS = workload.RUNS
# At 100,000 runs a scan or a build takes minutes: one round (every round is reported anyway).
SLOW_ROUNDS = 1 if RUNS > 20_000 else 3
FAST_ROUNDS = 5
CHANGED = 500
ADDED = 500
MINIO_RUNS = max(RUNS // 10, 100)
INDEX_FILE = ".runlog-index/runs.sqlite"


def _search_ready() -> bool:
    """Whether ``search_runs`` is there and its summaries carry root parameters (what the
    filter reads); before that the searches here read every run themselves (``_scan_page``)."""
    if find_spec("runlog_store.search") is None:
        return False
    from runlog_store.ops.runs import summarize

    run = {"run_id": "r", "status": "SUCCESS", "parameters": {"p": {"kind": "json", "value": 1}}}
    return summarize(run).params == {"p": 1}


SEARCH_READY = _search_ready()


def _scan_page(store: Any) -> list[str]:
    """The search as a reader of every run does it, for when ``search_runs`` is not there."""
    found = []
    for run_id in store.list_run_ids():
        run = json.loads(store.get_run_log_json(run_id))
        values = {k: v.get("value") for k, v in (run.get("parameters") or {}).items()}
        accuracy = values.get("accuracy")
        if (
            run.get("status") == "SUCCESS"
            and values.get("optimizer") == "adam"
            and isinstance(accuracy, float)
            and accuracy > 0.9
        ):
            found.append((-accuracy, run_id))
    return [run_id for _, run_id in sorted(found)[: workload.PAGE]]


def search_page(store: Any, callback: Any = None) -> list[str]:
    """Our first page of the workload's search."""
    if not SEARCH_READY:
        return _scan_page(store)
    extra = {"callback": callback} if callback is not None else {}
    page = store.search_runs(workload.FILTER, workload.ORDER_BY, max_results=workload.PAGE, **extra)
    return [run.run_id for run in page.runs]


@contextmanager
def scanning(store: Any) -> Iterator[None]:
    """The store searched as one without an index: the base class's scan."""
    with mock.patch.object(type(store), "_run_index", BaseRunLogStore._run_index):
        yield


def _drop_index(folder: Path) -> None:
    for path in folder.glob(INDEX_FILE + "*"):
        path.unlink()


def _open(kind: str, folder: Path) -> Any:
    return create_store(kind, log_folder=str(folder), fsync=False)


@pytest.fixture(scope="module")
def folders() -> dict[str, Path]:
    found = {}
    for kind in workload.KINDS:
        started = time.perf_counter()
        found[kind] = workload.generate(kind, RUNS)
        print(f"\n{kind}: {RUNS:,} runs ready in {time.perf_counter() - started:.1f} s")
    return found


@pytest.fixture(scope="module")
def expected() -> list[str]:
    page = workload.expected_page(RUNS)
    assert len(page) == workload.PAGE
    return page


@pytest.fixture(scope="module")
def mlflow_store() -> tuple[Any, str]:
    from mlflow.tracking import MlflowClient

    uri, experiment = mlflow_runs.generate(RUNS)
    return MlflowClient(tracking_uri=uri), experiment


KIND_IDS = list(workload.KINDS)


# --- (c) building the index from nothing ----------------------------------------------------------


def _read_top_documents(kind: str, folder: Path) -> int:
    """Every run's top document read and parsed once: what building an index must at least do."""
    count = 0
    for entry in os.scandir(folder):
        if kind == "file-system":
            if not entry.name.endswith(".json"):
                continue
            path = entry.path
        else:
            if not entry.is_dir() or entry.name.startswith("."):
                continue
            path = os.path.join(entry.path, "RunLog.json")
        with open(path, "rb") as file:
            json.loads(file.read())
        count += 1
    return count


BUILD_WHATS = ["read every top document", "build the index"]
BUILD_ROUNDS = 3
# The rounds take turns, each pair in the other order than the one before (read then build, then
# build then read, ...): both meet the page cache and the disk in the states the other leaves.
# One baseline read then one build measured the machine's moment as much as the build (the same
# build measured 1.43x and 1.87x its baseline in runs an hour apart).
BUILD_INTERLEAVED = [
    (r, BUILD_WHATS[(r - 1 + i) % 2]) for r in range(1, BUILD_ROUNDS + 1) for i in range(2)
]


@pytest.mark.parametrize(
    ("round_", "what"), BUILD_INTERLEAVED, ids=[f"{w}-{r}" for r, w in BUILD_INTERLEAVED]
)
@pytest.mark.parametrize("kind", KIND_IDS)
def test_build_index(
    noted: Any,
    folders: dict[str, Path],
    expected: list[str],
    kind: str,
    round_: int,
    what: str,
) -> None:
    noted.group = f"scale-build: {kind}, {RUNS:,} runs: the index from nothing"
    noted.extra_info["implementation"] = what
    noted.extra_info["round"] = round_
    folder = folders[kind]
    if what.startswith("read"):
        noted.extra_info["role"] = "baseline"
        count = noted.pedantic(_read_top_documents, args=(kind, folder), rounds=1, iterations=1)
        assert count == RUNS
        return
    noted.extra_info["role"] = "ours"
    callbacks: list[RecordingCallback] = []

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        _drop_index(folder)
        callbacks.append(RecordingCallback())
        return (_open(kind, folder), callbacks[-1]), {}

    page = noted.pedantic(search_page, setup=setup, rounds=1, iterations=1)
    assert page == expected
    if SEARCH_READY:
        assert callbacks[-1].phases, "the build reported no progress"
        noted.extra_info["progress"] = [list(p) for p in callbacks[-1].phases]


# --- (a) and (e): the warm search, the CLI, and MLflow's ------------------------------------------


@pytest.mark.parametrize("what", ["mlflow MlflowClient.search_runs (SQLite)"])
def test_search_mlflow(
    benchmark: Any, mlflow_store: tuple[Any, str], expected: list[str], what: str
) -> None:
    benchmark.group = f"search: the first page of 100 of {RUNS:,} runs"
    benchmark.extra_info["role"] = "baseline"
    client, experiment = mlflow_store
    page = benchmark.pedantic(
        mlflow_runs.search, args=(client, experiment), rounds=FAST_ROUNDS, warmup_rounds=1
    )
    assert page == expected


@pytest.mark.parametrize("kind", KIND_IDS, ids=[f"runlog {k} search_runs" for k in KIND_IDS])
def test_search_warm(noted: Any, folders: dict[str, Path], expected: list[str], kind: str) -> None:
    noted.group = f"search: the first page of 100 of {RUNS:,} runs"
    noted.extra_info["role"] = "ours"
    noted.extra_info["target_seconds"] = 0.2
    store = _open(kind, folders[kind])
    search_page(store)  # brings the index up to date
    rounds = FAST_ROUNDS if SEARCH_READY else 1
    page = noted.pedantic(search_page, args=(store,), rounds=rounds, iterations=1)
    assert page == expected


def _config(scratch: Path, kind: str, folder: Path) -> Path:
    path = scratch / f"{kind}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "run-log-store": {"type": kind, "config": {"log_folder": str(folder)}},
                "catalog": {
                    "type": "file-system",
                    "config": {"catalog_location": str(scratch / "catalog")},
                },
            }
        )
    )
    return path


@pytest.mark.parametrize("kind", KIND_IDS, ids=[f"runlog list on {k}" for k in KIND_IDS])
def test_search_cli(
    noted: Any, scratch: Path, folders: dict[str, Path], expected: list[str], kind: str
) -> None:
    noted.group = f"search: the first page of 100 of {RUNS:,} runs"
    noted.extra_info["role"] = "ours"
    command = [
        str(Path(sys.executable).parent / "runlog"),
        "list",
        "-c",
        str(_config(scratch, kind, folders[kind])),
        "--filter",
        workload.FILTER,
        "--order-by",
        workload.ORDER_BY,
        "--limit",
        str(workload.PAGE),
        "--json",
    ]
    noted.extra_info["command"] = " ".join(command)

    def run() -> list[str]:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr or done.stdout
        return [run["run_id"] for run in json.loads(done.stdout)]

    run()  # the index up to date, as for the warm search
    page = noted.pedantic(run, rounds=FAST_ROUNDS if SEARCH_READY else 1, iterations=1)
    assert page == expected


# --- (d) the scan against the warm search ---------------------------------------------------------


@pytest.mark.parametrize("what", ["scan", "warm search"])
@pytest.mark.parametrize("kind", KIND_IDS)
def test_scan_against_index(
    noted: Any, folders: dict[str, Path], expected: list[str], kind: str, what: str
) -> None:
    noted.group = f"scan: {kind}, {RUNS:,} runs: reading every run against the index"
    store = _open(kind, folders[kind])
    if what == "scan":
        noted.extra_info["role"] = "baseline"
        with scanning(store):
            page = noted.pedantic(search_page, args=(store,), rounds=SLOW_ROUNDS, iterations=1)
    else:
        noted.extra_info["role"] = "ours"
        noted.extra_info["target"] = ">= 50x faster than the scan"
        search_page(store)
        page = noted.pedantic(search_page, args=(store,), rounds=FAST_ROUNDS, iterations=1)
    assert page == expected


# --- (b) after runnable's own store changed 1,000 runs --------------------------------------------


def _runnable_store(kind: str, folder: Path) -> Any:
    from extensions.run_log_store.chunked_fs import ChunkedFileSystemRunLogStore
    from extensions.run_log_store.file_system import FileSystemRunLogstore

    if kind == "file-system":
        return FileSystemRunLogstore(log_folder=str(folder))
    return ChunkedFileSystemRunLogStore(log_folder=str(folder))


def _added_run(number: int, round_: int) -> workload.RunValues:
    """A run runnable's store adds: a template's shape, adam, accuracy high enough that many
    of them reach the first page."""
    templates = workload.all_templates(RUNS)
    spec = templates[number % len(templates)]
    metrics = dict(spec.metrics, accuracy=0.9 + (number * 7919 % ADDED) / ADDED / 10)
    return workload.RunValues(
        run_id=f"added-{round_}-{number:04d}",
        template=spec.number,
        status=spec.status,
        tag=spec.tag,
        shift=0.0,
        params=dict(spec.params, optimizer="adam"),
        metrics=metrics,
        duration=0.0,
    )


def _write_added(theirs: Any, run: workload.RunValues) -> None:
    import runnable.datastore as runnable_models

    templates = workload.all_templates(RUNS)
    spec = templates[run.template]
    shaped = workload.Template(
        **{**spec.__dict__, "params": run.params, "metrics": run.metrics, "number": spec.number}
    )
    with runnable_run(run.run_id):
        workload.write_template(theirs, runnable_models, run.run_id, shaped)


def _flip(theirs: Any, run_id: str, status: str) -> None:
    with runnable_run(run_id):
        theirs.update_run_log_status(run_id, status)


def _ended_runs(expected: list[str]) -> list[workload.RunValues]:
    """The runs whose status runnable's store changes: half of the first page, then ended runs
    spread over the store."""
    runs = {run.run_id: run for run in workload.all_runs(RUNS)}
    chosen = [runs[run_id] for run_id in expected[: workload.PAGE // 2]]
    ended = [r for r in runs.values() if r.status != "PROCESSING" and r.run_id not in expected]
    step = max(len(ended) // (CHANGED - len(chosen)), 1)
    chosen.extend(ended[::step][: CHANGED - len(chosen)])
    return chosen


@pytest.mark.parametrize("what", ["warm search", "after 1,000 runs changed"])
@pytest.mark.parametrize("kind", KIND_IDS)
def test_search_after_changes(
    noted: Any, folders: dict[str, Path], expected: list[str], kind: str, what: str
) -> None:
    noted.group = (
        f"scale-changed: {kind}, {RUNS:,} runs: the search after runnable's store added "
        f"{ADDED} runs and changed {CHANGED}"
    )
    folder = folders[kind]
    store = _open(kind, folder)
    search_page(store)
    if what == "warm search":
        noted.extra_info["role"] = "baseline"
        page = noted.pedantic(search_page, args=(store,), rounds=FAST_ROUNDS, iterations=1)
        assert page == expected
        return
    noted.extra_info["role"] = "ours"
    noted.extra_info["target_seconds"] = 1.0
    theirs = _runnable_store(kind, folder)
    flipped = _ended_runs(expected)
    original = {run.run_id: run.status for run in flipped}
    state: dict[str, str] = {}
    added: list[workload.RunValues] = []
    answers: list[tuple[list[str], dict[str, str], list[workload.RunValues]]] = []
    rounds = itertools.count()
    workload.dirty_marker(folder).write_text("runs changed by the search benchmark\n")

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        round_ = next(rounds)
        for run in flipped:
            now = state.get(run.run_id, run.status)
            state[run.run_id] = "FAIL" if now == "SUCCESS" else "SUCCESS"
            _flip(theirs, run.run_id, state[run.run_id])
        for number in range(ADDED):
            run = _added_run(number, round_)
            _write_added(theirs, run)
            added.append(run)
        return (store,), {}

    def search(store: Any) -> list[str]:
        page = search_page(store)
        answers.append((page, dict(state), list(added)))
        return page

    try:
        noted.pedantic(search, setup=setup, rounds=3, iterations=1)
    finally:
        for run in added:
            path = folder / (f"{run.run_id}.json" if kind == "file-system" else run.run_id)
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        for run_id, status in state.items():
            if status != original[run_id]:
                _flip(theirs, run_id, original[run_id])
        workload.dirty_marker(folder).unlink()
    for page, statuses, runs in answers:
        assert page == workload.expected_page(RUNS, statuses, runs)
    assert search_page(store) == expected


# --- MinIO ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minio_store(minio_server: Any, folders: dict[str, Path]) -> Any:
    """MINIO_RUNS of the runs, as the file-system store holds them, in a minio store."""
    from minio import Minio

    config = {
        "endpoint_url": minio_server.endpoint,
        "aws_access_key_id": minio_server.access_key,
        "aws_secret_access_key": minio_server.secret_key,
        "bucket": "search-bench/run-logs",
    }
    ensure_bucket(config)
    client = Minio(
        minio_server.endpoint.split("://", 1)[-1],
        access_key=minio_server.access_key,
        secret_key=minio_server.secret_key,
        secure=False,
    )
    source = folders["file-system"]

    def put(run: workload.RunValues) -> None:
        path = source / f"{run.run_id}.json"
        client.fput_object("search-bench", f"run-logs/{run.run_id}.json", str(path))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, itertools.islice(workload.all_runs(RUNS), MINIO_RUNS)))
    return create_store("minio", **config)


@pytest.mark.parametrize("what", ["scan", "warm search"])
def test_search_minio(benchmark: Any, minio_store: Any, what: str) -> None:
    benchmark.group = f"minio: the first page of 100 of {MINIO_RUNS:,} runs in the minio store"
    wanted = workload.expected_page(RUNS, first=MINIO_RUNS)
    if what == "scan":
        benchmark.extra_info["role"] = "baseline"
        with scanning(minio_store):
            page = benchmark.pedantic(
                search_page, args=(minio_store,), rounds=SLOW_ROUNDS, iterations=1
            )
    else:
        benchmark.extra_info["role"] = "ours"
        benchmark.extra_info["target_seconds"] = 1.0
        search_page(minio_store)
        rounds = FAST_ROUNDS if SEARCH_READY else 1
        page = benchmark.pedantic(search_page, args=(minio_store,), rounds=rounds, iterations=1)
    assert page == wanted
