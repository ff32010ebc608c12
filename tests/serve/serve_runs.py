"""The runs the browser tests of ``runlog serve`` look at, written by the real stores: 24 by
runlog-store's chunked-fs and file-system stores and 6 by runnable 0.50's own, all in one
project's ``.run_log_store`` (both of runnable's local layouts, what ``runlog serve`` opens with
no configuration). Every value is a function of the run's number, so a test knows what a filter
must find."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from extensions.run_log_store.chunked_fs import (
    ChunkedFileSystemRunLogStore as RunnableChunkedFs,
)
from extensions.run_log_store.file_system import FileSystemRunLogstore as RunnableFileSystem
from runnable.datastore import JsonParameter as RunnableJsonParameter
from runnable.datastore import StepAttempt as RunnableAttempt

from runlog_store import create_store
from runlog_store.models import DataCatalog, JsonParameter, MetricParameter, StepAttempt

OURS = 24
TAGS = ("nightly", "adhoc", "exp-a")
MODELS = ("xgb", "lgbm", "mlp")
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/work/pipeline/functions.py", line 42, in fit\n'
    "    raise ValueError(f'diverged at epoch {epoch}')\n"
    "ValueError: diverged at epoch 7\n"
)


@dataclass(frozen=True)
class Run:
    """What one of our runs holds."""

    run_id: str
    status: str
    tag: str
    lr: float
    model: str
    epochs: int
    accuracy: float
    mapped: bool


def run_of(number: int) -> Run:
    if number in (7, 19):
        status = "PROCESSING"
    elif number % 5 == 0:
        status = "FAIL"
    else:
        status = "SUCCESS"
    return Run(
        run_id=f"run-{number:02d}",
        status=status,
        tag=TAGS[number % 3],
        lr=(number + 1) / 100,
        model=MODELS[number % 3],
        epochs=10 + number,
        accuracy=round(0.7 + number / 100, 2),
        mapped=number % 4 == 0,
    )


OUR_RUNS = [run_of(number) for number in range(OURS)]
THEIR_IDS = [f"theirs-{kind}-{i}" for kind in ("fs", "chunked") for i in range(3)]
ALL_IDS = sorted([run.run_id for run in OUR_RUNS] + THEIR_IDS)


def _time(number: int, seconds: int) -> str:
    return f"2026-11-{number + 1:02d} 10:{seconds // 60:02d}:{seconds % 60:02d}.000000"


def write_runs(project: Path) -> Path:
    """The 30 runs in ``project/.run_log_store``; returns that folder."""
    folder = project / ".run_log_store"
    folder.mkdir(parents=True, exist_ok=True)
    for run in OUR_RUNS:
        number = int(run.run_id[-2:])
        kind = "chunked-fs" if number % 2 == 0 else "file-system"
        store = create_store(kind, log_folder=str(folder), fsync=False)
        store.create_run_log(run.run_id, dag_hash=f"dag{number % 2}", tag=run.tag)
        store.set_parameters(
            run.run_id,
            {
                "lr": JsonParameter(kind="json", value=run.lr),
                "model": JsonParameter(kind="json", value=run.model),
                "epochs": JsonParameter(kind="json", value=run.epochs),
                "accuracy": MetricParameter(kind="metric", value=run.accuracy),
            },
        )
        prepare = store.create_step_log("prepare", "prepare")
        prepare.status = "SUCCESS"
        prepare.attempts = [
            StepAttempt(status="SUCCESS", start_time=_time(number, 0), end_time=_time(number, 2))
        ]
        prepare.data_catalog = [
            DataCatalog(
                name="data/settings.json",
                data_hash="blake3:" + f"{number:02d}" * 32,
                catalog_relative_path=f"{run.run_id}/data/settings.json",
                stage="put",
            )
        ]
        store.add_step_log(prepare, run.run_id)
        if run.mapped:
            fan = store.create_step_log("fan", "fan")
            fan.step_type, fan.status = "map", "SUCCESS"
            store.add_step_log(fan, run.run_id)
            for item in range(3):
                branch = store.create_branch_log(
                    f"fan.{item}", {"item": JsonParameter(kind="json", value=item)}
                )
                branch.status = "SUCCESS"
                store.add_branch_log(branch, run.run_id)
                work = store.create_step_log("work", f"fan.{item}.work")
                work.status = "SUCCESS"
                work.attempts = [
                    StepAttempt(
                        status="SUCCESS",
                        start_time=_time(number, 2 + item),
                        end_time=_time(number, 4 + item),
                    )
                ]
                store.add_step_log(work, run.run_id)
        if run.status != "PROCESSING":
            train = store.create_step_log("train", "train")
            train.status = run.status
            message = "" if run.status == "SUCCESS" else TRACEBACK
            train.attempts = [
                StepAttempt(
                    status=run.status,
                    start_time=_time(number, 10),
                    end_time=_time(number, 10 + run.epochs),
                    message=message,
                    user_defined_metrics={
                        "loss": MetricParameter(kind="metric", value=round(1 - run.accuracy, 2))
                    },
                )
            ]
            store.add_step_log(train, run.run_id)
        store.update_run_log_status(run.run_id, run.status)
    _their_runs(folder)
    return folder


def _their_runs(folder: Path) -> None:
    """Runs written by runnable 0.50's own file-system and chunked-fs stores."""
    for store, prefix in (
        (RunnableFileSystem(log_folder=str(folder)), "theirs-fs"),
        (RunnableChunkedFs(log_folder=str(folder)), "theirs-chunked"),
    ):
        for i, status in enumerate(("SUCCESS", "FAIL", "SUCCESS")):
            run_id = f"{prefix}-{i}"
            store.create_run_log(run_id, dag_hash=f"h{i}", tag="theirs")
            store.set_parameters(
                run_id,
                {
                    "lr": RunnableJsonParameter(kind="json", value=0.5),
                    "model": RunnableJsonParameter(kind="json", value="theirs"),
                },
            )
            step = store.create_step_log("train", "train")
            step.status = status
            step.attempts.append(
                RunnableAttempt(
                    status=status,
                    start_time=f"2026-10-0{i + 1} 10:00:00",
                    end_time=f"2026-10-0{i + 1} 10:00:{10 * i + 5:02d}",
                    message="" if status == "SUCCESS" else "RuntimeError: theirs failed",
                )
            )
            store.add_step_log(step, run_id)
            store.update_run_log_status(run_id, status)
