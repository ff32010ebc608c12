"""Starting the command line: ``runlog list`` beside the search it runs, ``runlog --help`` beside
the interpreter starting.

The runs are the search benchmark's (benches/search_workload.py), 10,000 by default
(``RUNLOG_BENCH_CLI_RUNS``), cached under ``.bench-scratch/search``; the search is its search
(SUCCESS runs with ``params.optimizer = 'adam'`` and ``metrics.accuracy > 0.9``, by accuracy
descending, the first page of 100), every answer checked against the one the generator knows.
Groups (benches/report.py prints ours over the baseline: 1.0 is no cost at all):

  scale-cli-list   ``runlog list --filter ... --order-by ... --limit 100 --json`` as a process,
                   over the same search in a process that has everything imported and the index
                   up to date (``search_runs``, warm): what starting the command costs beside
                   the search, the goal being close to 1 (a fixed ~0.12 s at most)
  scale-cli-start  ``runlog --help`` over ``python -c pass``, the interpreter alone: the fixed
                   cost of any command (goal: at most ~0.12 s more than the interpreter)

Each process finds the package's modules compiled, as an installed package's are: bytecode goes
to a folder of the scratch folder (``PYTHONPYCACHEPREFIX``), written by the first, untimed run,
even when the environment says not to write it (``PYTHONDONTWRITEBYTECODE``), which would make
every start compile the package again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from runlog_store import create_store

from . import search_workload as workload

RUNS = int(os.environ.get("RUNLOG_BENCH_CLI_RUNS", "10000"))
ROUNDS = 7
RUNLOG = str(Path(sys.executable).parent / "runlog")


@pytest.fixture(scope="module")
def environment(scratch: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.pop("RUNNABLE_CONFIGURATION_FILE", None)
    env["PYTHONPYCACHEPREFIX"] = str(scratch / "bytecode")
    return env


@pytest.fixture(scope="module")
def expected() -> list[str]:
    return workload.expected_page(RUNS)


def _process(command: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr or done.stdout
    return done.stdout


@pytest.mark.parametrize("what", ["search_runs in process", "runlog list"])
@pytest.mark.parametrize("kind", list(workload.KINDS))
def test_list_against_search(
    noted: Any,
    scratch: Path,
    environment: dict[str, str],
    expected: list[str],
    kind: str,
    what: str,
) -> None:
    noted.group = f"scale-cli-list: {kind}, {RUNS:,} runs: runlog list over the search it runs"
    folder = workload.generate(kind, RUNS)
    if what == "search_runs in process":
        noted.extra_info["role"] = "baseline"
        store = create_store(kind, log_folder=str(folder))

        def search() -> list[str]:
            page = store.search_runs(workload.FILTER, workload.ORDER_BY, max_results=workload.PAGE)
            return [run.run_id for run in page.runs]

        search()  # the index up to date, the parser built, everything imported
        page = noted.pedantic(search, rounds=ROUNDS, iterations=1)
    else:
        noted.extra_info["role"] = "ours"
        noted.extra_info["target"] = "close to 1x: a fixed cost of ~0.12 s at most"
        config = scratch / f"{kind}.yaml"
        config.write_text(
            yaml.safe_dump({"run-log-store": {"type": kind, "config": {"log_folder": str(folder)}}})
        )
        command = [
            RUNLOG,
            "list",
            "-c",
            str(config),
            "--filter",
            workload.FILTER,
            "--order-by",
            workload.ORDER_BY,
            "--limit",
            str(workload.PAGE),
            "--json",
        ]
        noted.extra_info["command"] = " ".join(command)

        def listing() -> list[str]:
            return [run["run_id"] for run in json.loads(_process(command, environment))]

        listing()  # the index up to date, the bytecode written
        page = noted.pedantic(listing, rounds=ROUNDS, iterations=1)
    assert page == expected


@pytest.mark.parametrize("what", ["python -c pass", "runlog --help"])
def test_help_against_interpreter(noted: Any, environment: dict[str, str], what: str) -> None:
    noted.group = "scale-cli-start: runlog --help over the interpreter starting"
    if what == "python -c pass":
        noted.extra_info["role"] = "baseline"
        command = [sys.executable, "-c", "pass"]
    else:
        noted.extra_info["role"] = "ours"
        noted.extra_info["target"] = "at most ~0.12 s more than the interpreter"
        command = [RUNLOG, "--help"]
    _process(command, environment)  # the bytecode written
    out = noted.pedantic(_process, args=(command, environment), rounds=ROUNDS, iterations=1)
    if what == "runlog --help":
        assert "list" in out
