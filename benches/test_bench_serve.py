"""``runlog serve``: its pages fetched over HTTP from a real ``runlog serve`` process, each beside
what the page is made from (in this process, warm), and the live page's cost to the writer.

Groups (benches/report.py prints ours over the baseline: ``scale`` groups):

  scale-serve-runs  (a) the runs page, ``GET /?filter=...&order_by=...&max_results=100`` (the
                    search benchmark's search: SUCCESS runs with ``params.optimizer = 'adam'``
                    and ``metrics.accuracy > 0.9`` by accuracy descending), warm, over
                    ``search_runs`` of the same page in process; runs of
                    benches/search_workload.py in a file-system and a chunked-fs store, 5,000 by
                    default, ``RUNLOG_BENCH_RUNS=100000`` for the goal's size. Goal: <= 0.5 s
                    at 100,000 runs. The ids on the page are checked against the generator's.
  scale-serve-run   (b) a run's page, ``GET /runs/ID``, of the benchmark's map run of 1,000
                    branches x 5 steps (benches/workload.py), over reading the run
                    (``get_run_log_by_id(full=True)``) in process. Goal: <= 1 s.
  scale-serve-live  (c) the writer's cost: a map run of 4,000 branches x 5 steps written by
                    a chunked-fs store (fsync off) with a live page connected (a client reading
                    ``/runs/ID/events`` in another process) over written with none. Goal: 1.0
                    (the server only reads, about every 0.5 s).

Rounds take turns (with, without, ...) so that the machine's other load falls on both alike.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import yaml
from tests.serve.browser_support import Served, start_serve

from runlog_store import create_store, models

from . import search_workload
from .workload import end_map_run, start_map_run, write_branches, write_map_run

RUNS = int(os.environ.get("RUNLOG_BENCH_RUNS", "5000"))
ROUNDS = 5
LIVE_BRANCHES = 4000
LIVE_ROUNDS = 5
ROW_ID = re.compile(rb'<tr[^>]*\bdata-run-id="([^"]+)"')


def _config(folder: Path, kind: str, log_folder: Path) -> Path:
    config = folder / f"{kind}.yaml"
    store = {"type": kind, "config": {"log_folder": str(log_folder)}}
    config.write_text(yaml.safe_dump({"run-log-store": store}))
    return config


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=900) as answer:
        assert answer.status == 200, (url, answer.status)
        return bytes(answer.read())


@pytest.fixture(scope="module")
def servers(scratch: Path) -> Iterator[dict[str, Served]]:
    """``runlog serve`` per store kind; the runs generated (cached) first."""
    started: dict[str, Served] = {}
    try:
        for kind in search_workload.KINDS:
            folder = search_workload.generate(kind, RUNS)
            config = _config(scratch, kind, folder)
            started[kind] = start_serve(scratch, "-c", str(config), logs=scratch / f"serve-{kind}")
        yield started
    finally:
        for served in started.values():
            served.stop()


# --- (a) the runs page ----------------------------------------------------------------------

RUNS_WHATS = ["search_runs in process", "runs page"]
RUNS_ROUNDS = [(r, w) for r in range(1, ROUNDS + 1) for w in RUNS_WHATS[:: 1 if r % 2 else -1]]
_warm: dict[str, Any] = {}


def _search(store: Any) -> list[str]:
    page = store.search_runs(
        search_workload.FILTER, search_workload.ORDER_BY, max_results=search_workload.PAGE
    )
    return [run.run_id for run in page.runs]


def _page_ids(url: str) -> list[str]:
    return [m.decode() for m in ROW_ID.findall(_get(url))]


@pytest.mark.parametrize(("round_", "what"), RUNS_ROUNDS, ids=[f"{w}-{r}" for r, w in RUNS_ROUNDS])
@pytest.mark.parametrize("kind", list(search_workload.KINDS))
def test_runs_page(
    noted: Any, servers: dict[str, Served], kind: str, round_: int, what: str
) -> None:
    goal = "; goal 0.5 s" if RUNS >= 100_000 else ""
    noted.group = f"scale-serve-runs: {kind}, {RUNS:,} runs: runs page over the search{goal}"
    noted.extra_info["implementation"] = what
    noted.extra_info["round"] = round_
    expected = search_workload.expected_page(RUNS)
    if what == "search_runs in process":
        noted.extra_info["role"] = "baseline"
        store = _warm.get(kind)
        if store is None:
            folder = search_workload.folder_for(kind, RUNS)
            store = _warm[kind] = create_store(kind, log_folder=str(folder))
            _search(store)
        assert noted.pedantic(_search, args=(store,), rounds=1, iterations=1) == expected
        return
    noted.extra_info["role"] = "ours"
    noted.extra_info["target"] = "0.5 s at 100,000 runs"
    query = {
        "filter": search_workload.FILTER,
        "order_by": search_workload.ORDER_BY,
        "max_results": search_workload.PAGE,
    }
    url = f"{servers[kind].url}?{urlencode(query)}"
    noted.extra_info["command"] = f"GET {url}"
    if round_ == 1:
        _page_ids(url)  # warm: the index up to date, the templates compiled
    assert noted.pedantic(_page_ids, args=(url,), rounds=1, iterations=1) == expected


# --- (b) a run's page of 1,000 branches x 5 steps -------------------------------------------


@pytest.fixture(scope="module")
def big_run(scratch: Path) -> Iterator[tuple[Any, Served]]:
    folder = scratch / "big-run"
    store = create_store("chunked-fs", log_folder=str(folder), fsync=False)
    write_map_run(store, models, "big")
    config = _config(scratch, "chunked-fs", folder)
    served = start_serve(scratch, "-c", str(config), logs=scratch / "serve-big")
    yield store, served
    served.stop()


def _run_page(url: str) -> int:
    body = _get(url)
    assert b'data-step="map"' in body
    return len(body)


@pytest.mark.parametrize("what", ["get_run_log_by_id in process", "run page"])
def test_run_page(noted: Any, big_run: tuple[Any, Served], what: str) -> None:
    store, served = big_run
    noted.group = "scale-serve-run: a run of 1,000 branches x 5 steps: its page over its read"
    if what == "get_run_log_by_id in process":
        noted.extra_info["role"] = "baseline"
        store.get_run_log_by_id("big", full=True)
        run = noted.pedantic(
            store.get_run_log_by_id, args=("big",), kwargs={"full": True}, rounds=ROUNDS
        )
        assert len(run.steps["map"].branches) == 1000
        return
    noted.extra_info["role"] = "ours"
    noted.extra_info["target"] = "<= 1 s"
    url = f"{served.url}runs/big"
    noted.extra_info["command"] = f"GET {url}"
    _run_page(url)
    size = noted.pedantic(_run_page, args=(url,), rounds=ROUNDS, iterations=1)
    noted.extra_info["page_bytes"] = size


# --- (c) the live page's cost to the writer ---------------------------------------------------

# A live page's connection: reads the event stream until the server closes it (the run ended),
# then prints how many state events it got.
SSE_CLIENT = """
import sys, urllib.request
events = 0
with urllib.request.urlopen(sys.argv[1], timeout=600) as stream:
    print("connected", flush=True)
    for line in stream:
        if line.startswith(b"event: state"):
            events += 1
print(events, flush=True)
"""
LIVE_WHATS = ["no page", "a live page"]
LIVE_ROUND_LIST = [
    (r, w) for r in range(1, LIVE_ROUNDS + 1) for w in LIVE_WHATS[:: 1 if r % 2 else -1]
]


@pytest.fixture(scope="module")
def live_server(scratch: Path) -> Iterator[tuple[Path, Served]]:
    folder = scratch / "live"
    folder.mkdir()
    config = _config(scratch, "chunked-fs", folder)
    served = start_serve(scratch, "-c", str(config), logs=scratch / "serve-live")
    yield folder, served
    served.stop()


def _write(store: Any, run_id: str, mapped: Any) -> None:
    write_branches(store, models, run_id, range(LIVE_BRANCHES), 5)
    end_map_run(store, run_id, mapped)


@pytest.mark.parametrize(
    ("round_", "what"), LIVE_ROUND_LIST, ids=[f"{w}-{r}" for r, w in LIVE_ROUND_LIST]
)
def test_live_page_cost_to_the_writer(
    noted: Any, live_server: tuple[Path, Served], round_: int, what: str
) -> None:
    folder, served = live_server
    noted.group = (
        f"scale-serve-live: writing {LIVE_BRANCHES:,} branches x 5 steps (chunked-fs) with a "
        "live page connected over with none"
    )
    noted.extra_info["implementation"] = what
    noted.extra_info["round"] = round_
    noted.extra_info["role"] = "baseline" if what == "no page" else "ours"
    # fsync off: with it, the disk's waits (shared with other work) swamp what a reader costs.
    store = create_store("chunked-fs", log_folder=str(folder), fsync=False)
    run_id = f"live-{round_}-{what.replace(' ', '-')}"
    mapped = start_map_run(store, run_id)
    client = None
    if what == "a live page":
        client = subprocess.Popen(
            [sys.executable, "-c", SSE_CLIENT, f"{served.url}runs/{run_id}/events"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert client.stdout is not None
        assert client.stdout.readline().strip() == "connected"
        time.sleep(0.5)  # its first state sent, the server's reads going
    try:
        noted.pedantic(_write, args=(store, run_id, mapped), rounds=1, iterations=1)
    finally:
        if client is not None:
            out, _ = client.communicate(timeout=60)
            events = int(out.split()[-1])
            noted.extra_info["state_events"] = events
            assert events >= 2, f"the live page got {events} state events"
