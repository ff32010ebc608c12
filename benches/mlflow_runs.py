"""The search workload's runs (benches/search_workload.py) in MLflow's own SQL tracking store
(SQLite), for the side-by-side search benchmark.

MLflow's store is made by MLflow itself (``SqlAlchemyStore`` runs its migrations) and the first
API_RUNS runs go through its client API (``create_run``, ``log_batch``, ``set_terminated``). At
that rate (a few milliseconds a run) 100,000 runs take many minutes, so the rest are loaded in
bulk: rows of the same shape as the ones its API wrote (every column copied from an API-made
run, only the run's own values changed) inserted into its ``runs``, ``params``, ``tags``,
``metrics`` and ``latest_metrics`` tables in one transaction, then ``ANALYZE``. What MLflow then
searches is what its API would have left, with its own indexes.

Each run holds the same values as in our stores: its root parameters as MLflow parameters (a
string: JSON for lists and objects, ``str`` otherwise), its five metrics, each with a history of
METRIC_STEPS values whose last is the run's value (MLflow searches the latest), the run's tag as
tag ``tag``, its status as MLflow names it, its start and end in epoch milliseconds.

The database is cached beside the generated stores (``.bench-scratch/search/v<VERSION>-<runs>``).
"""

from __future__ import annotations

import itertools
import json
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

from . import search_workload as workload

API_RUNS = 200
METRIC_STEPS = 3
EXPERIMENT = "runlog-search"


def folder_for(runs: int = workload.RUNS) -> Path:
    return workload.CACHE_ROOT / f"v{workload.VERSION}-{runs}" / "mlflow"


def tracking_uri(runs: int = workload.RUNS) -> str:
    return f"sqlite:///{folder_for(runs) / 'mlflow.db'}"


def _param_text(value: Any) -> str:
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _millis(run: workload.RunValues, seconds: float) -> int:
    """Epoch milliseconds of a naive local time ``seconds`` after the run's start."""
    started = workload.EPOCH.timestamp() + run.shift + seconds
    return int(started * 1000)


def _history(run: workload.RunValues, name: str) -> list[tuple[float, int, int]]:
    """(value, timestamp, step) of a metric: it climbs to the run's value at the last step."""
    final = run.metrics[name]
    end = _millis(run, run.duration)
    return [
        (final * (step + 1) / METRIC_STEPS, end - (METRIC_STEPS - 1 - step) * 1000, step)
        for step in range(METRIC_STEPS)
    ]


def _through_api(client: Any, experiment_id: str, run: workload.RunValues) -> str:
    from mlflow.entities import Metric, Param, RunTag

    created = client.create_run(
        experiment_id,
        start_time=_millis(run, 0),
        tags={"tag": run.tag} if run.tag else None,
        run_name=run.run_id,
    )
    run_uuid = str(created.info.run_id)
    client.log_batch(
        run_uuid,
        metrics=[
            Metric(name, value, stamp, step)
            for name in run.metrics
            for value, stamp, step in _history(run, name)
        ],
        params=[Param(name, _param_text(value)) for name, value in run.params.items()],
        tags=[RunTag("runlog.run_id", run.run_id)],
    )
    if run.status != "PROCESSING":
        client.set_terminated(
            run_uuid, workload.STATUS_MLFLOW[run.status], end_time=_millis(run, run.duration)
        )
    return run_uuid


def _columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in db.execute(f"PRAGMA table_info({table})")]


def generate(runs: int = workload.RUNS) -> tuple[str, str]:
    """(tracking URI, experiment id) of an MLflow store holding the workload's runs (cached).
    MLflow's own run ids of the runs are kept in tag ``runlog.run_id`` and in the run's name."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.tracking import MlflowClient

    folder = folder_for(runs)
    marker = folder.parent / "mlflow.complete"
    uri = tracking_uri(runs)
    if marker.exists():
        return uri, marker.read_text().split()[0]
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    SqlAlchemyStore(uri, str(folder / "artifacts"))
    client = MlflowClient(tracking_uri=uri)
    experiment_id = str(client.create_experiment(EXPERIMENT, str(folder / "artifacts")))
    everything = workload.all_runs(runs)
    api_started = time.perf_counter()
    model: str | None = None
    for run in itertools.islice(everything, API_RUNS):
        model = _through_api(client, experiment_id, run)
    api_seconds = time.perf_counter() - api_started
    assert model is not None
    db = sqlite3.connect(folder / "mlflow.db")
    run_columns = _columns(db, "runs")
    row = db.execute("SELECT * FROM runs WHERE run_uuid = ?", (model,)).fetchone()
    shape = dict(zip(run_columns, row, strict=True))
    metric_columns = _columns(db, "metrics")
    latest_columns = _columns(db, "latest_metrics")
    artifacts = str(shape["artifact_uri"]).rsplit("/", 2)[0]

    def run_row(run: workload.RunValues, uuid: str) -> tuple[Any, ...]:
        row = dict(shape)
        row.update(
            run_uuid=uuid,
            name=run.run_id,
            status=workload.STATUS_MLFLOW[run.status],
            start_time=_millis(run, 0),
            end_time=None if run.status == "PROCESSING" else _millis(run, run.duration),
            artifact_uri=f"{artifacts}/{uuid}/artifacts",
        )
        return tuple(row[c] for c in run_columns)

    def metric_row(columns: list[str], values: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(values[c] for c in columns)

    runs_rows, params_rows, tags_rows, metric_rows, latest_rows = [], [], [], [], []
    for number, run in enumerate(everything, start=API_RUNS):
        uuid = f"{number:032x}"
        runs_rows.append(run_row(run, uuid))
        params_rows.extend((k, _param_text(v), uuid) for k, v in run.params.items())
        tags_rows.append(("mlflow.runName", run.run_id, uuid))
        tags_rows.append(("runlog.run_id", run.run_id, uuid))
        if run.tag:
            tags_rows.append(("tag", run.tag, uuid))
        for name in run.metrics:
            history = _history(run, name)
            for value, stamp, step in history:
                metric_rows.append(
                    metric_row(
                        metric_columns,
                        {
                            "key": name,
                            "value": value,
                            "timestamp": stamp,
                            "run_uuid": uuid,
                            "step": step,
                            "is_nan": 0,
                        },
                    )
                )
            value, stamp, step = history[-1]
            latest_rows.append(
                metric_row(
                    latest_columns,
                    {
                        "key": name,
                        "value": value,
                        "timestamp": stamp,
                        "step": step,
                        "is_nan": 0,
                        "run_uuid": uuid,
                    },
                )
            )
    with db:
        db.executemany(f"INSERT INTO runs VALUES ({','.join('?' * len(run_columns))})", runs_rows)
        db.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)", params_rows)
        db.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)", tags_rows)
        db.executemany(
            f"INSERT INTO metrics VALUES ({','.join('?' * len(metric_columns))})", metric_rows
        )
        db.executemany(
            f"INSERT INTO latest_metrics VALUES ({','.join('?' * len(latest_columns))})",
            latest_rows,
        )
    db.execute("ANALYZE")
    db.close()
    marker.write_text(
        f"{experiment_id}\n{API_RUNS} runs through MLflow's API in {api_seconds:.1f} s, "
        f"{runs} in all in {time.perf_counter() - started:.1f} s\n"
    )
    return uri, experiment_id


def search(client: Any, experiment_id: str) -> list[str]:
    """The first page of the workload's search through MLflow's own ``search_runs``: our run
    ids of the runs found (MLflow's run name), in its order."""
    found = client.search_runs(
        [experiment_id],
        filter_string=workload.MLFLOW_FILTER,
        order_by=workload.MLFLOW_ORDER_BY,
        max_results=workload.PAGE,
    )
    return [run.info.run_name for run in found]


if __name__ == "__main__":
    import sys

    from mlflow.tracking import MlflowClient

    count = int(sys.argv[1]) if len(sys.argv) > 1 else workload.RUNS
    t0 = time.perf_counter()
    uri, experiment = generate(count)
    print(uri, experiment, f"{time.perf_counter() - t0:.1f} s")
    print((folder_for(count).parent / "mlflow.complete").read_text())
    mlflow_client = MlflowClient(tracking_uri=uri)
    for _ in range(3):
        t0 = time.perf_counter()
        page = search(mlflow_client, experiment)
        print(f"search {time.perf_counter() - t0:.3f} s", len(page))
    assert page == workload.expected_page(count), (page[:3], workload.expected_page(count)[:3])
