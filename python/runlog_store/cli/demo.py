"""A simulated parallel pipeline that writes a realistic run log from several processes.

The shape is the one high-volume users have: a task that produces items, a map step that fans
out one branch per item (each branch a few task steps with parameters and metrics), a parallel
step with named branches, and a final task. Branches are written by a pool of worker processes
at once, through the same store configuration, exactly as a parallel executor would; every
worker also records a root-level metric, so the run's shared ``RunLog.json`` sees concurrent
read-modify-writes too.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import time
from dataclasses import dataclass
from datetime import datetime

from runlog_store.config import load_store
from runlog_store.models import (
    FAIL,
    PROCESSING,
    SUCCESS,
    CodeIdentity,
    JsonParameter,
    MetricParameter,
    StepAttempt,
    StepLog,
)
from runlog_store.stores.base import BaseRunLogStore

BRANCH_STEPS = ("load", "fit", "score")


@dataclass(frozen=True)
class DemoSettings:
    run_id: str
    branches: int
    workers: int
    config_file: str | None
    fail_branch: int | None  # one branch whose "fit" fails once and is retried


def _now() -> str:
    return str(datetime.now())


def _code_identity() -> CodeIdentity:
    return CodeIdentity(
        code_identifier="0" * 40,
        code_identifier_type="git",
        code_identifier_dependable=True,
        code_identifier_message="demo run",
    )


def _run_task(
    store: BaseRunLogStore,
    run_id: str,
    step: StepLog,
    seconds: float,
    inputs: dict[str, JsonParameter],
    outputs: dict[str, JsonParameter],
    metrics: dict[str, MetricParameter] | None = None,
    fail_first: bool = False,
) -> None:
    """Record a task step the way runnable's executor does: PROCESSING, attempts, final."""
    step.status = PROCESSING
    store.add_step_log(step, run_id)
    attempt_number = 1
    if fail_first:
        start = _now()
        time.sleep(seconds / 2)
        step.attempts.append(
            StepAttempt(
                attempt_number=attempt_number,
                start_time=start,
                end_time=_now(),
                status=FAIL,
                message="ConnectionResetError: feature store closed the connection",
                input_parameters=dict(inputs),
                code_identities=[_code_identity()],
            )
        )
        store.add_step_log(step, run_id)
        attempt_number += 1
    start = _now()
    time.sleep(seconds)
    step.attempts.append(
        StepAttempt(
            attempt_number=attempt_number,
            start_time=start,
            end_time=_now(),
            status=SUCCESS,
            input_parameters=dict(inputs),
            output_parameters=dict(outputs),
            user_defined_metrics=dict(metrics or {}),
            code_identities=[_code_identity()],
        )
    )
    step.status = SUCCESS
    store.add_step_log(step, run_id)


def _run_branch(settings: DemoSettings, item: int) -> int:
    """One map branch, run inside a worker process."""
    store = load_store(settings.config_file)
    run_id = settings.run_id
    branch_name = f"train.{item}"
    rng = random.Random(item)

    branch = store.create_branch_log(branch_name)
    branch.status = PROCESSING
    store.add_branch_log(branch, run_id)
    learning_rate = JsonParameter(kind="json", value=round(0.001 * (1 + item % 5), 4))
    store.set_parameters(
        run_id,
        {"item": JsonParameter(kind="json", value=item), "learning_rate": learning_rate},
        internal_branch_name=branch_name,
    )
    accuracy = round(0.80 + rng.random() * 0.19, 4)
    for step_name in BRANCH_STEPS:
        step = store.create_step_log(step_name, f"{branch_name}.{step_name}")
        outputs: dict[str, JsonParameter] = {}
        metrics: dict[str, MetricParameter] = {}
        if step_name == "fit":
            outputs["model"] = JsonParameter(kind="json", value=f"model-{item}.pkl")
        if step_name == "score":
            metrics["accuracy"] = MetricParameter(kind="metric", value=accuracy)
        _run_task(
            store,
            run_id,
            step,
            seconds=rng.uniform(0.002, 0.02) * (4 if step_name == "fit" else 1),
            inputs={"item": JsonParameter(kind="json", value=item), "learning_rate": learning_rate},
            outputs=outputs,
            metrics=metrics,
            fail_first=(step_name == "fit" and item == settings.fail_branch),
        )
    branch.status = SUCCESS
    store.add_branch_log(branch, run_id)
    # Every branch reports to the run's root parameters at the same time as the others.
    store.set_parameters(
        run_id, {f"accuracy_{item}": MetricParameter(kind="metric", value=accuracy)}
    )
    return os.getpid()


def _run_branch_star(args: tuple[DemoSettings, int]) -> int:
    return _run_branch(*args)


def run_demo(settings: DemoSettings) -> BaseRunLogStore:
    """Write the whole demo run; returns the store it was written to."""
    store = load_store(settings.config_file)
    run_id = settings.run_id
    store.create_run_log(run_id, dag_hash="d" * 40, tag="demo", status=PROCESSING)
    store.set_run_config(
        run_id,
        {
            "pipeline": "demo",
            "run_log_store": {"service_name": store.service_name, **store.get_summary()},
            "dag": {"start_at": "prepare", "nodes": ["prepare", "train", "evaluate", "report"]},
        },
    )
    items = list(range(1, settings.branches + 1))

    prepare = store.create_step_log("prepare", "prepare")
    _run_task(store, run_id, prepare, 0.01, {}, {"items": JsonParameter(kind="json", value=items)})
    store.set_parameters(run_id, {"items": JsonParameter(kind="json", value=items)})

    train = store.create_step_log("train", "train")
    train.step_type = "map"
    train.status = PROCESSING
    store.add_step_log(train, run_id)
    # Fresh interpreters, not forks: a forked child would inherit the parent's rayon pool and
    # locks in whatever state they were, and each worker opens the store as a real job would.
    context = multiprocessing.get_context("spawn")
    with context.Pool(settings.workers) as pool:
        pids = set(pool.map(_run_branch_star, [(settings, item) for item in items], chunksize=1))
    train.status = SUCCESS
    store.add_step_log(train, run_id)

    evaluate = store.create_step_log("evaluate", "evaluate")
    evaluate.step_type = "parallel"
    evaluate.status = PROCESSING
    store.add_step_log(evaluate, run_id)
    for name in ("accuracy", "latency"):
        branch_name = f"evaluate.{name}"
        branch = store.create_branch_log(branch_name)
        store.add_branch_log(branch, run_id)
        step = store.create_step_log("check", f"{branch_name}.check")
        _run_task(store, run_id, step, 0.005, {}, {})
        branch.status = SUCCESS
        store.add_branch_log(branch, run_id)
    evaluate.status = SUCCESS
    store.add_step_log(evaluate, run_id)

    report = store.create_step_log("report", "report")
    best = max(
        (p.value for n, p in store.get_parameters(run_id).items() if n.startswith("accuracy_")),
        key=lambda v: float(v),  # type: ignore[arg-type]
    )
    _run_task(
        store,
        run_id,
        report,
        0.005,
        {},
        {},
        {"best_accuracy": MetricParameter(kind="metric", value=best)},
    )
    success = store.create_step_log("success", "success")
    success.step_type = "success"
    _run_task(store, run_id, success, 0.0, {}, {})
    store.update_run_log_status(run_id, SUCCESS)
    store.set_parameters(run_id, {"workers_used": JsonParameter(kind="json", value=len(pids))})
    return store
