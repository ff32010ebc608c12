"""A whole runnable pipeline, end to end, on runnable 0.50's stores and on runlog-store's.

The example pipeline (examples/pipeline.py) with 64 branches: prepare, a map of 64 branches x
load, fit, score, a parallel step, the fan-in; the local executor with ``enable_parallel:
true``. Each round is one ``python pipeline.py`` in a fresh folder, timed from start to exit:
runnable's own work (starting up, running each task, recording a git code identity per
attempt, printing summaries) is in every figure, on both sides.

Groups (benches/report.py prints runnable's time / ours):
  pipeline-chunked      runnable's chunked-fs vs runlog-chunked-fs (fsync on, its default, and
                        off, as runnable's stores never flush), three rounds of each taking
                        turns, each round's ratio reported
  pipeline-file-system  runnable's file-system, which tells runnable to run the branches one by
                        one (it rewrites the whole run per write, unlocked), vs
                        runlog-file-system, which is safe for the Pool (fsync off, as runnable)
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.runnable.harness import Project, succeeded

BRANCHES = 64
_rounds = itertools.count()
# Both sides use runlog-store's file-system catalog (without fsync): runnable's own copies a
# file into the compute folder in place, and a branch reading settings.json while another
# branch's get rewrites it fails (3 runs of 4 of this pipeline failed so here). The groups
# compare the run log stores. (store type, store config, catalog type, catalog config); paths
# are filled in per round.
CATALOG = ("runlog-file-system", {"fsync": False})
CHUNKED = {
    "runnable chunked-fs": ("chunked-fs", {}, *CATALOG),
    "runlog-chunked-fs (fsync on)": ("runlog-chunked-fs", {}, *CATALOG),
    "runlog-chunked-fs (fsync off)": ("runlog-chunked-fs", {"fsync": False}, *CATALOG),
}
FILE_SYSTEM = {
    "runnable file-system (sequential)": ("file-system", {}, *CATALOG),
    "runlog-file-system (parallel, fsync off)": ("runlog-file-system", {"fsync": False}, *CATALOG),
}


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="runlog-bench-pipeline-", dir=Path.cwd()))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _bench(benchmark: Any, scratch: Path, setting: tuple[Any, ...], rounds: int) -> None:
    store_type, store_config, catalog_type, catalog_config = setting

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        # Every round's files stay until the module ends: a round that deleted the rounds
        # before it made its own creations step over the inodes just freed (ext4 without a
        # journal, `recently_deleted`), a cost the next configuration's rounds did not pay. And
        # every round starts with nothing left to write back: a sync of a round with fsync on
        # would otherwise wait for what the rounds before it left in the page cache.
        project = Project(scratch / f"round-{next(_rounds)}")
        config = project.config(
            "bench.yaml",
            store_type,
            {"log_folder": str(project.log_folder), **store_config},
            catalog_type,
            {"catalog_location": str(project.catalog_folder), **catalog_config},
        )
        os.sync()
        return (project, config), {}

    def run(project: Project, config: Path) -> None:
        succeeded(project.run_sdk("pipeline", config, "bench", {"branches": BRANCHES}))

    benchmark.pedantic(run, setup=setup, rounds=rounds, iterations=1)


CHUNKED_ROUNDS = 3
CHUNKED_NAMES = list(CHUNKED)
# The configurations take turns, each round in another order (every one first once, last once):
# the machine's and the disk's state move from round to round, and the three rounds of one
# configuration run one after another met a moment of their own (runnable's always first).
CHUNKED_INTERLEAVED = [
    (r, CHUNKED_NAMES[(r - 1 + i) % len(CHUNKED_NAMES)])
    for r in range(1, CHUNKED_ROUNDS + 1)
    for i in range(len(CHUNKED_NAMES))
]


@pytest.mark.parametrize(
    ("round_", "name"), CHUNKED_INTERLEAVED, ids=[f"{n}-{r}" for r, n in CHUNKED_INTERLEAVED]
)
def test_pipeline_chunked(benchmark: Any, scratch: Path, round_: int, name: str) -> None:
    benchmark.group = f"pipeline-chunked: {BRANCHES} branches end to end"
    benchmark.extra_info["role"] = "baseline" if name.startswith("runnable") else "ours"
    benchmark.extra_info["implementation"] = name
    benchmark.extra_info["round"] = round_
    _bench(benchmark, scratch, CHUNKED[name], rounds=1)


@pytest.mark.parametrize("name", list(FILE_SYSTEM))
def test_pipeline_file_system(benchmark: Any, scratch: Path, name: str) -> None:
    benchmark.group = f"pipeline-file-system: {BRANCHES} branches end to end"
    benchmark.extra_info["role"] = "baseline" if name.startswith("runnable") else "ours"
    # runnable's sequential run takes over a minute: one round each per benchmark run.
    _bench(benchmark, scratch, FILE_SYSTEM[name], rounds=1)
