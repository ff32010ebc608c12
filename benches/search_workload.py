"""The search workload: many runs in a file-system and a chunked-fs store, and the same runs in
MLflow's SQL store (benches/mlflow_runs.py), for benches/test_bench_search.py.

Writing 100,000 runs through real writers takes hours, so a few hundred TEMPLATES are written
through real writers, half through ours (``runlog_store``'s file-system and chunked-fs stores)
and half through runnable 0.50's own (its FileSystemRunLogstore and ChunkedFileSystemRunLogStore),
and every other run is a clone of one of them made on disk: the template's documents as its
writer left them, with a new run id, its root parameters and metrics drawn again, its times moved
and its tag drawn again. A run is a pure function of its number (``run_values``), so the two
stores and MLflow hold the same runs, and the answer a search must give is known without
reading them (``expected_page``).

A template has 10-20 root parameters of mixed types (numbers, strings, booleans, lists, objects,
null), 5 metrics (runnable's "metric" parameters), 2-5 steps with an attempt each, a map step of
2-4 branches in one run of five; 15% end FAIL (one step failed) and 10% are not ended (PROCESSING,
their parameters kept as the template's: an unended chunked-fs run of ours keeps them in its
journal, which clones copy as they are).

The generated folders are cached under ``.bench-scratch/search/v<VERSION>-<runs>`` (git ignores
it), so reruns do not generate again; change VERSION when what is generated changes. A folder is
used only once its ``complete`` marker is written, and a benchmark that changes runs marks it
``dirty`` until it has put them back: a dirty or incomplete folder is generated again.

``RUNLOG_BENCH_RUNS`` sets the count (100,000 by default; 5,000 for the two-minute smoke run).
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import json
import math
import os
import random
import shutil
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

VERSION = 2
RUNS = int(os.environ.get("RUNLOG_BENCH_RUNS", "100000"))
TEMPLATES = 200
CACHE_ROOT = Path(os.environ.get("RUNLOG_BENCH_CACHE", Path.cwd() / ".bench-scratch" / "search"))
# Where run times start (naive local, as runnable writes them); runs are spread over 90 days.
EPOCH = datetime(2026, 9, 1)
SPREAD_SECONDS = 90 * 86400
TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"

OPTIMIZERS = ("adam", "sgd", "rmsprop")
TAGS = ("", "nightly", "exp-a", "exp-b")
METRICS = ("accuracy", "loss", "f1", "precision", "recall")
STATUS_MLFLOW = {"SUCCESS": "FINISHED", "FAIL": "FAILED", "PROCESSING": "RUNNING"}

# The search measured, in our filter language and in MLflow's (the same runs match: MLflow's
# run statuses are FINISHED/FAILED/RUNNING where runnable's are SUCCESS/FAIL/PROCESSING).
FILTER = "status = 'SUCCESS' and params.optimizer = 'adam' and metrics.accuracy > 0.9"
ORDER_BY = "metrics.accuracy desc"
MLFLOW_FILTER = (
    "attributes.status = 'FINISHED' and params.optimizer = 'adam' and metrics.accuracy > 0.9"
)
MLFLOW_ORDER_BY = ["metrics.accuracy DESC"]
PAGE = 100


def run_id_of(i: int) -> str:
    """Run ids of 32 characters (MLflow's run_uuid column is that wide), sortable by number."""
    return f"run-{i:07d}-" + hashlib.blake2b(f"{VERSION}-{i}".encode()).hexdigest()[:20]


# --- templates ----------------------------------------------------------------------------------


@dataclass
class Template:
    """What one template run is made of (a pure function of its number)."""

    number: int
    ours: bool  # written through our stores (else runnable's)
    status: str  # SUCCESS, FAIL or PROCESSING (not ended)
    tag: str
    params: dict[str, Any]
    metrics: dict[str, float]
    steps: list[str]
    branches: int  # of the map step "sweep" (0: no map step)
    failed_step: str | None
    step_seconds: list[float] = field(default_factory=list)


def template(number: int) -> Template:
    rng = random.Random(f"template-{VERSION}-{number}")
    roll = rng.random()
    status = "SUCCESS" if roll < 0.75 else "FAIL" if roll < 0.9 else "PROCESSING"
    params: dict[str, Any] = {
        "optimizer": rng.choice(OPTIMIZERS),
        "lr": round(rng.uniform(1e-4, 0.1), 6),
        "epochs": rng.randint(1, 100),
        "batch_size": rng.choice((16, 32, 64, 128)),
        "shuffle": rng.random() < 0.5,
        "layers": [rng.randint(8, 512) for _ in range(rng.randint(1, 4))],
        "data": {"name": rng.choice(("mnist", "cifar", "imdb")), "split": 0.8},
        "seed": rng.randint(0, 2**31),
        "note": None,
        "model": rng.choice(("cnn", "mlp", "rnn", "transformer")),
    }
    for extra in range(rng.randint(0, 10)):
        kind = extra % 4
        value: Any = (
            rng.randint(-1000, 1000)
            if kind == 0
            else rng.uniform(-1, 1)
            if kind == 1
            else f"v{rng.randint(0, 50)}"
            if kind == 2
            else rng.random() < 0.5
        )
        params[f"extra_{extra}"] = value
    steps = ["prepare", "train", "evaluate", "report", "publish"][: rng.randint(2, 5)]
    branches = rng.randint(2, 4) if rng.random() < 0.2 else 0
    failed_step = rng.choice(steps) if status == "FAIL" else None
    return Template(
        number=number,
        ours=number % 2 == 0,
        status=status,
        tag=rng.choice(TAGS),
        params=params,
        metrics={name: rng.random() for name in METRICS},
        steps=steps,
        branches=branches,
        failed_step=failed_step,
        step_seconds=[rng.uniform(1, 600) for _ in steps],
    )


def _time(seconds: float) -> str:
    return (EPOCH + timedelta(seconds=seconds)).strftime(TIME_FORMAT)


def write_template(store: Any, models: Any, run_id: str, spec: Template) -> None:
    """One template run through a real writer's API (ours or runnable's: the same calls)."""
    json_param, metric = models.JsonParameter, models.MetricParameter
    store.create_run_log(run_id, dag_hash="d" * 40, tag=spec.tag, status="PROCESSING")
    parameters: dict[str, Any] = {
        k: json_param(kind="json", value=v) for k, v in spec.params.items()
    }
    parameters.update({k: metric(kind="metric", value=v) for k, v in spec.metrics.items()})
    store.set_parameters(run_id, parameters)
    clock = 0.0
    for name, seconds in zip(spec.steps, spec.step_seconds, strict=True):
        step = store.create_step_log(name, name)
        store.add_step_log(step, run_id)
        failed = name == spec.failed_step
        step.status = "FAIL" if failed else "SUCCESS"
        step.attempts.append(
            models.StepAttempt(
                status=step.status,
                start_time=_time(clock),
                end_time=_time(clock + seconds),
                message="boom" if failed else "",
            )
        )
        clock += seconds
        store.add_step_log(step, run_id)
        if failed:
            break
        if name == "train" and spec.branches:
            mapped = store.create_step_log("sweep", "sweep")
            mapped.step_type = "map"
            store.add_step_log(mapped, run_id)
            for b in range(spec.branches):
                branch_name = f"sweep.{b}"
                branch = store.create_branch_log(branch_name)
                branch.status = "PROCESSING"
                store.add_branch_log(branch, run_id)
                store.set_parameters(
                    run_id,
                    {"fold": json_param(kind="json", value=b)},
                    internal_branch_name=branch_name,
                )
                inner = store.create_step_log("fit", f"{branch_name}.fit")
                inner.status = "SUCCESS"
                inner.attempts.append(
                    models.StepAttempt(
                        status="SUCCESS", start_time=_time(clock), end_time=_time(clock + 5)
                    )
                )
                store.add_step_log(inner, run_id)
                branch = store.get_branch_log(branch_name, run_id)
                branch.status = "SUCCESS"
                store.add_branch_log(branch, run_id)
            clock += 5
            mapped.status = "SUCCESS"
            store.add_step_log(mapped, run_id)
    if spec.status != "PROCESSING":
        store.update_run_log_status(run_id, spec.status)


# --- the runs -----------------------------------------------------------------------------------


@dataclass
class RunValues:
    """What run ``number`` holds that a search sees."""

    run_id: str
    template: int
    status: str
    tag: str
    shift: float  # seconds after EPOCH its times start
    params: dict[str, Any]
    metrics: dict[str, float]
    duration: float


def _template_count(runs: int) -> int:
    return min(TEMPLATES, runs)


def run_values(number: int, templates: list[Template]) -> RunValues:
    """Run ``number``: the first runs are the templates themselves, every other one a clone of
    template ``number % len(templates)`` with its values drawn again (an unended template's
    parameters kept: see the module's documentation)."""
    spec = templates[number % len(templates)]
    rng = random.Random(f"run-{VERSION}-{number}")
    shift = rng.uniform(0, SPREAD_SECONDS)
    duration = sum(spec.step_seconds) + (5 if spec.branches else 0)
    if number < len(templates) or spec.status == "PROCESSING":
        params, metrics, tag = dict(spec.params), dict(spec.metrics), spec.tag
    else:
        params = dict(spec.params)
        params["optimizer"] = rng.choice(OPTIMIZERS)
        params["lr"] = round(rng.uniform(1e-4, 0.1), 6)
        params["epochs"] = rng.randint(1, 100)
        params["batch_size"] = rng.choice((16, 32, 64, 128))
        params["shuffle"] = rng.random() < 0.5
        params["seed"] = rng.randint(0, 2**31)
        params["model"] = rng.choice(("cnn", "mlp", "rnn", "transformer"))
        metrics = {name: rng.random() for name in METRICS}
        tag = rng.choice(TAGS)
    return RunValues(
        run_id=run_id_of(number),
        template=spec.number,
        status=spec.status,
        tag=tag,
        shift=shift if number >= len(templates) else 0.0,
        params=params,
        metrics=metrics,
        duration=duration,
    )


def all_templates(runs: int = RUNS) -> list[Template]:
    return [template(t) for t in range(_template_count(runs))]


def all_runs(runs: int = RUNS) -> Iterator[RunValues]:
    templates = all_templates(runs)
    for number in range(runs):
        yield run_values(number, templates)


def matches(run: RunValues) -> bool:
    """FILTER, for the runs as generated."""
    accuracy = run.metrics.get("accuracy")
    return (
        run.status == "SUCCESS"
        and run.params.get("optimizer") == "adam"
        and isinstance(accuracy, float)
        and not math.isnan(accuracy)
        and accuracy > 0.9
    )


def expected_page(
    runs: int = RUNS,
    changed: dict[str, str] | None = None,
    added: Iterable[RunValues] = (),
    first: int | None = None,
) -> list[str]:
    """The run ids the first page of FILTER ordered by ORDER_BY must hold: of the first
    ``first`` runs (all by default), with the statuses ``changed`` gives (run id -> status
    another writer set since) and the runs ``added`` since."""
    found = []
    for run in itertools.chain(itertools.islice(all_runs(runs), first), added):
        if changed and run.run_id in changed:
            run.status = changed[run.run_id]
        if matches(run):
            found.append((-run.metrics["accuracy"], run.run_id))
    return [run_id for _, run_id in sorted(found)[:PAGE]]


# --- generating the stores ----------------------------------------------------------------------

KINDS = ("file-system", "chunked-fs")


def _write_templates(kind: str, folder: Path, templates: list[Template]) -> None:
    import runnable.datastore as runnable_models
    from extensions.run_log_store.chunked_fs import ChunkedFileSystemRunLogStore
    from extensions.run_log_store.file_system import FileSystemRunLogstore

    import runlog_store as ours_models
    from runlog_store import create_store

    from .minio_runnable import runnable_run

    ours = create_store(kind, log_folder=str(folder), fsync=False)
    theirs = (
        FileSystemRunLogstore(log_folder=str(folder))
        if kind == "file-system"
        else ChunkedFileSystemRunLogStore(log_folder=str(folder))
    )
    for spec in templates:
        run_id = run_id_of(spec.number)
        with runnable_run(run_id):
            if spec.ours:
                write_template(ours, ours_models, run_id, spec)
            else:
                write_template(theirs, runnable_models, run_id, spec)


def _shift_times(node: Any, seconds: float) -> None:
    """Move every attempt's start and end time by ``seconds`` (in place)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("start_time", "end_time") and isinstance(value, str):
                moved = datetime.strptime(value, TIME_FORMAT) + timedelta(seconds=seconds)
                node[key] = moved.strftime(TIME_FORMAT)
            else:
                _shift_times(value, seconds)
    elif isinstance(node, list):
        for item in node:
            _shift_times(item, seconds)


def _dump(document: Any, ours: bool) -> bytes:
    # Each writer's own formatting: ours compact, runnable's indented.
    text = json.dumps(document, separators=(",", ":")) if ours else json.dumps(document, indent=4)
    return text.encode()


def _template_files(kind: str, folder: Path, spec: Template) -> dict[str, bytes]:
    """The files of a template run as its writer left them (relative to the run's own path;
    ours' lock files and stored merge left out: a reader makes them again)."""
    run_id = run_id_of(spec.number)
    if kind == "file-system":
        return {".json": (folder / f"{run_id}.json").read_bytes()}
    root = folder / run_id
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name not in (".lock", ".merged.json"):
            files[str(path.relative_to(root))] = path.read_bytes()
    return files


def _clone(
    kind: str, folder: Path, files: dict[str, bytes], spec: Template, run: RunValues
) -> None:
    if kind == "file-system":
        document = json.loads(files[".json"])
        _vary(document, spec, run)
        (folder / f"{run.run_id}.json").write_bytes(_dump(document, spec.ours))
        return
    root = folder / run.run_id
    root.mkdir()
    for name, data in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".json") and "/" not in name:
            document = json.loads(data)
            if name == "RunLog.json":
                _vary(document, spec, run)
            else:
                _shift_times(document, run.shift)
            data = _dump(document, spec.ours)
        target.write_bytes(data)


def _vary(document: dict[str, Any], spec: Template, run: RunValues) -> None:
    document["run_id"] = run.run_id
    document["tag"] = run.tag
    parameters = document.get("parameters") or {}
    for name, value in run.params.items():
        if name in parameters:
            parameters[name]["value"] = value
    for name, value in run.metrics.items():
        if name in parameters:
            parameters[name]["value"] = value
    _shift_times(document.get("steps"), run.shift)
    _shift_times(document.get("job"), run.shift)


def _clone_range(kind: str, folder: str, runs: int, start: int, stop: int) -> int:
    templates = all_templates(runs)
    where = Path(folder)
    files = {spec.number: _template_files(kind, where, spec) for spec in templates}
    for number in range(max(start, len(templates)), stop):
        run = run_values(number, templates)
        spec = templates[run.template]
        _clone(kind, where, files[spec.number], spec, run)
    return stop - start


def _store_merges(folder: str, runs: int, start: int, stop: int) -> None:
    """A full read of each ended clone of our chunked-fs templates, which stores its merge
    (``.merged.json``) as a run our writer ended has: the clones were copied without one."""
    from runlog_store import create_store

    store = create_store("chunked-fs", log_folder=folder, fsync=False)
    templates = all_templates(runs)
    for number in range(max(start, len(templates)), stop):
        spec = templates[number % len(templates)]
        if spec.ours and spec.status != "PROCESSING":
            store.get_run_log_json(run_id_of(number))


def folder_for(kind: str, runs: int = RUNS) -> Path:
    return CACHE_ROOT / f"v{VERSION}-{runs}" / kind


def _ready(folder: Path) -> bool:
    return complete_marker(folder).exists() and not dirty_marker(folder).exists()


def complete_marker(folder: Path) -> Path:
    return folder.parent / f"{folder.name}.complete"


def dirty_marker(folder: Path) -> Path:
    return folder.parent / f"{folder.name}.dirty"


def generate(kind: str, runs: int = RUNS, workers: int = 2) -> Path:
    """The store folder of ``kind`` holding ``runs`` runs, generated unless cached."""
    folder = folder_for(kind, runs)
    if _ready(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Two benchmark processes wanting the same folder: one generates it, the other waits and
    # uses it (both generating at once failed, and left a folder a marker called complete).
    with open(folder.parent / f"{folder.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _ready(folder):
            return folder
        return _generate(kind, folder, runs, workers)


def _generate(kind: str, folder: Path, runs: int, workers: int) -> Path:
    started = time.perf_counter()
    # The marker goes first: a generation killed or failed part way leaves no folder that
    # looks complete.
    complete_marker(folder).unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    dirty_marker(folder).unlink(missing_ok=True)
    folder.mkdir(parents=True)
    _write_templates(kind, folder, all_templates(runs))
    bounds = [(runs * w // workers, runs * (w + 1) // workers) for w in range(workers)]
    with ProcessPoolExecutor(workers) as pool:
        starts, stops = [a for a, _ in bounds], [b for _, b in bounds]
        folders, counts = [str(folder)] * workers, [runs] * workers
        list(pool.map(_clone_range, [kind] * workers, folders, counts, starts, stops))
        if kind == "chunked-fs":
            time.sleep(0.2)  # merges are stored only for documents settled on the file clock
            list(pool.map(_store_merges, folders, counts, starts, stops))
    complete_marker(folder).write_text(
        f"{runs} runs generated in {time.perf_counter() - started:.1f} s\n"
    )
    return folder


if __name__ == "__main__":
    import sys

    count = int(sys.argv[1]) if len(sys.argv) > 1 else RUNS
    for what in KINDS:
        t0 = time.perf_counter()
        print(what, generate(what, count), f"{time.perf_counter() - t0:.1f} s")
