"""Starting the command line: ``runlog list`` beside the search it runs, ``runlog --help`` beside
the interpreter starting.

The runs are the search benchmark's (benches/search_workload.py), 10,000 by default
(``RUNLOG_BENCH_CLI_RUNS``), and as many again as ``RUNLOG_BENCH_RUNS`` says when it is set
(``RUNLOG_BENCH_RUNS=100000``: the size the search's goal is set at), cached under
``.bench-scratch/search``; the search is its search (SUCCESS runs with ``params.optimizer =
'adam'`` and ``metrics.accuracy > 0.9``, by accuracy descending, the first page of 100), every
answer checked against the one the generator knows. Groups (benches/report.py prints ours over
the baseline: 1.0 is no cost at all):

  scale-cli-list   ``runlog list --filter ... --order-by ... --limit 100``, as a process, printing
                   JSON (``--json``) or the table (to a pipe, 80 columns), over the same search
                   in a process that has everything imported and the index up to date
                   (``search_runs``, warm): what starting the command costs beside the search,
                   the goal being close to 1 and, at 100,000 runs, 0.2 s in all. The reference
                   is the search alone in a fresh process (the interpreter, the store's imports,
                   a first search): ours over it is what the command adds to them.
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
# The search benchmark's count, measured too when set (its default of 100,000 would make this
# quick benchmark a long one).
COUNTS = sorted({RUNS, int(os.environ.get("RUNLOG_BENCH_RUNS", RUNS))})
GOAL_SECONDS = 0.2
ROUNDS = 7
RUNLOG = str(Path(sys.executable).parent / "runlog")


@pytest.fixture(scope="module")
def environment(scratch: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.pop("RUNNABLE_CONFIGURATION_FILE", None)
    env["PYTHONPYCACHEPREFIX"] = str(scratch / "bytecode")
    return env


def _process(command: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr or done.stdout
    return done.stdout


# The search alone in a fresh process: what the command runs, without the command.
FRESH_SEARCH = """
import json, sys
from runlog_store import create_store
store = create_store(sys.argv[1], log_folder=sys.argv[2])
page = store.search_runs(sys.argv[3], sys.argv[4], max_results=int(sys.argv[5]))
print(json.dumps([run.run_id for run in page.runs]))
"""
WHATS = [
    "search_runs in process",
    "search_runs in a fresh process",
    "runlog list",
    "runlog list, table",
]
# The rounds take turns, each round in another order (every one of them runs first once in
# four rounds), so that a moment of the machine's other load falls on all of them alike.
INTERLEAVED = [
    (r, WHATS[(r - 1 + i) % len(WHATS)]) for r in range(1, ROUNDS + 1) for i in range(len(WHATS))
]
# The store each (kind, runs) is searched with in this process, its index up to date.
_warm: dict[tuple[str, int], Any] = {}


def _warm_store(kind: str, runs: int, folder: Path) -> Any:
    store = _warm.get((kind, runs))
    if store is None:
        store = _warm[kind, runs] = create_store(kind, log_folder=str(folder))
        _search(store)  # the index up to date, the parser built, everything imported
    return store


def _search(store: Any) -> list[str]:
    page = store.search_runs(workload.FILTER, workload.ORDER_BY, max_results=workload.PAGE)
    return [run.run_id for run in page.runs]


def _command(what: str, kind: str, runs: int, folder: Path, scratch: Path) -> list[str]:
    if what == "search_runs in a fresh process":
        command = [sys.executable, "-c", FRESH_SEARCH, kind, str(folder)]
        return [*command, workload.FILTER, workload.ORDER_BY, str(workload.PAGE)]
    config = scratch / f"{kind}-{runs}.yaml"
    config.write_text(
        yaml.safe_dump({"run-log-store": {"type": kind, "config": {"log_folder": str(folder)}}})
    )
    command = [RUNLOG, "list", "-c", str(config), "--filter", workload.FILTER]
    command += ["--order-by", workload.ORDER_BY, "--limit", str(workload.PAGE)]
    return command + (["--json"] if what == "runlog list" else [])


def _listed(what: str, out: str) -> list[str]:
    """The run ids a command printed, in order."""
    if what == "runlog list, table":
        # The run id column is never cut nor wrapped: each row's first cell is a whole id.
        return [line.split()[1] for line in out.splitlines() if line.startswith("│ run-")]
    return [run if isinstance(run, str) else run["run_id"] for run in json.loads(out)]


@pytest.mark.parametrize(("round_", "what"), INTERLEAVED, ids=[f"{w}-{r}" for r, w in INTERLEAVED])
@pytest.mark.parametrize("kind", list(workload.KINDS))
@pytest.mark.parametrize("runs", COUNTS)
def test_list_against_search(
    noted: Any,
    scratch: Path,
    environment: dict[str, str],
    runs: int,
    kind: str,
    round_: int,
    what: str,
) -> None:
    goal = f"; goal {GOAL_SECONDS} s" if runs >= 100_000 else ""
    noted.group = f"scale-cli-list: {kind}, {runs:,} runs: runlog list over the search{goal}"
    noted.extra_info["implementation"] = what
    noted.extra_info["round"] = round_
    folder = workload.generate(kind, runs)
    expected = workload.expected_page(runs)
    if what == "search_runs in process":
        noted.extra_info["role"] = "baseline"
        store = _warm_store(kind, runs, folder)
        page = noted.pedantic(_search, args=(store,), rounds=1, iterations=1)
        assert page == expected
        return
    if what == "search_runs in a fresh process":
        noted.extra_info["role"] = "reference"
    else:
        noted.extra_info["role"] = "ours"
        noted.extra_info["target"] = "close to 1x" + (goal and f", {GOAL_SECONDS} s in all")
    command = _command(what, kind, runs, folder, scratch)
    noted.extra_info["command"] = " ".join(command)
    if round_ == 1:
        _process(command, environment)  # the index up to date, the bytecode written
    out = noted.pedantic(_process, args=(command, environment), rounds=1, iterations=1)
    assert _listed(what, out) == expected


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
