"""Searching a million runs in the postgres store: the first page of an indexed filter, against
the goal of 50 ms, beside the file-system stores' run index (SQLite) holding the same runs.

The runs are made in bulk, not written through the store (a million store writes would take
hours): ``make_summary`` draws each run's summary (status, tag, times, parameters, metrics, step
statuses), and ``postgres_search.copy_runs`` COPYs it into the tables with the rows a write
makes of it (``search_rows``), its document a minimal run log. The same summaries go into the
run index's SQLite tables (``query.rows_of``, as the index of a file-system store holds them),
queried with ``query.compile_search``: the file-system index search side by side, without the
stamping of a million run files it does first to find what changed (making a million run
folders on disk is the hour this benchmark does not spend; benches/test_bench_search.py measures
that store at 100,000 runs). Both answers are checked equal.

The tables are vacuumed after the load, as autovacuum does a table in use.
``RUNLOG_BENCH_PG_RUNS`` sets the count (1,000,000 by default; ``RUNLOG_BENCH_PG_RUNS=20000`` is
the smoke run). On a private cluster (tests/postgres_server.py), fsync on.

Groups (benches/report.py prints the baseline's time over ours): ``pg-search: <filter>``, the
first page of 100 in the default order (newest start first), ours the postgres store's
``search_runs``, the baseline the run index's SQL on SQLite.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from tests.postgres_server import PostgresServer, private_server

from runlog_store import create_store
from runlog_store.ops.runs import RunSummary
from runlog_store.search import query
from runlog_store.stores import postgres_search
from runlog_store.stores.postgres import PostgresRunLogStore

RUNS = int(os.environ.get("RUNLOG_BENCH_PG_RUNS", "1000000"))
BATCH = 50_000
ROUNDS = 20
PAGE = 100
# The later page measured (a fifth of the runs fail: the smoke run has fewer pages).
LATER = 50 if RUNS >= 100_000 else 5
STATUSES = ["SUCCESS"] * 7 + ["FAIL"] * 2 + ["PROCESSING"]
TAGS = [f"tag-{n}" for n in range(100)]
MODELS = [f"model-{n}" for n in range(50)]
RATES = [0.001, 0.003, 0.01, 0.03, 0.1, 0.3]
FIRST = datetime(2026, 1, 1)

# Indexed filters, from common to rare: a status (20% of the runs), a tag (1%), a parameter's
# text (2%), a metric over a bound (0.1%), a status and a parameter's number together.
FILTERS = [
    "status = 'FAIL'",
    "tag = 'tag-42'",
    "params.model = 'model-7'",
    "metrics.accuracy > 0.999",
    "status = 'FAIL' and params.lr >= 0.1",
]


def make_summary(number: int, rng: random.Random) -> dict[str, Any]:
    """The summary of run ``number`` (the fields of ``RunSummary``, times as ISO text)."""
    start = FIRST + timedelta(seconds=number * 30 + rng.randrange(30))
    duration = rng.randrange(1, 7200)
    status = rng.choice(STATUSES)
    return {
        "run_id": f"run-{number:07d}",
        "status": status,
        "tag": rng.choice(TAGS),
        "start": start.isoformat(),
        "end": (start + timedelta(seconds=duration)).isoformat(),
        "duration_seconds": float(duration),
        "steps": 2,
        "branches": 0,
        "failed_step": "train" if status == "FAIL" else None,
        "error": None,
        "layout": None,
        "dag_hash": "d" * 40,
        "commit": f"{number % 1000:040x}",
        "steps_by_status": {status: 1, "SUCCESS": 1} if status != "SUCCESS" else {"SUCCESS": 2},
        "branches_by_status": {},
        "params": {
            "lr": rng.choice(RATES),
            "model": rng.choice(MODELS),
            "seed": number % 997,
        },
        "metrics": {"accuracy": rng.random(), "loss": rng.random() * 3},
        "step_statuses": {"prepare": "SUCCESS", "train": status},
    }


def _document(summary: dict[str, Any]) -> bytes:
    return (
        f'{{"run_id":"{summary["run_id"]}","dag_hash":"{summary["dag_hash"]}",'
        f'"tag":"{summary["tag"]}","status":"{summary["status"]}","steps":{{}},'
        '"parameters":{},"run_config":{}}'
    ).encode()


def _summaries() -> Iterator[dict[str, Any]]:
    rng = random.Random(20261205)
    for number in range(RUNS):
        yield make_summary(number, rng)


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    with private_server() as server:
        yield server


@pytest.fixture(scope="module")
def loaded(postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The postgres store and the SQLite run index, both holding the ``RUNS`` runs."""
    server = postgres_server
    store = create_store(
        "postgres",
        host=server.host,
        port=server.port,
        dbname=server.dbname,
        user=server.user,
        password=server.password,
        schema_name=f"s_{uuid.uuid4().hex[:12]}",
    )
    assert isinstance(store, PostgresRunLogStore)
    index_path = tmp_path_factory.mktemp("pg-search") / "index.sqlite"
    index = sqlite3.connect(index_path)
    index.executescript(query.INDEX_SCHEMA)
    started = time.perf_counter()
    pg_seconds = sqlite_seconds = 0.0
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal pg_seconds, sqlite_seconds
        at = time.perf_counter()
        with store.connection() as conn:
            postgres_search.copy_runs(store, conn, ((_document(s), s) for s in batch))
        pg_seconds += time.perf_counter() - at
        at = time.perf_counter()
        with index:
            for summary in batch:
                rows = query.rows_of(summary, "fingerprint", 0.0)
                index.execute(query.INSERT_RUN, rows.run)
                index.executemany(query.INSERT_PARAM, rows.params)
                index.executemany(query.INSERT_METRIC, rows.metrics)
                index.executemany(query.INSERT_STEP, rows.steps)
        sqlite_seconds += time.perf_counter() - at
        batch.clear()

    for summary in _summaries():
        batch.append(summary)
        if len(batch) == BATCH:
            flush()
    if batch:
        flush()
    # What autovacuum does to a table in use: statistics for the planner, and the pages
    # marked all-visible, which lets a search read a value's runs from its index alone.
    with store.connection() as conn:
        for table in ("runs", "run_params", "run_metrics", "run_steps"):
            conn.execute(store._sql(f"VACUUM (ANALYZE) {{schema}}.{table}"))
    index.execute("ANALYZE")
    print(
        f"\n{RUNS:,} runs loaded in {time.perf_counter() - started:.0f} s "
        f"(postgres COPY {pg_seconds:.0f} s, SQLite index {sqlite_seconds:.0f} s)"
    )
    yield store, index
    index.close()


def _sqlite_page(index: sqlite3.Connection, filter_text: str) -> list[RunSummary]:
    """The first page as a file-system store's run index answers it once it is up to date."""
    expr = query.parse_filter(filter_text)
    sql, params = query.compile_search(expr, query.parse_order_by(None))
    rows = index.execute(sql, [*params, PAGE + 1, 0]).fetchall()
    return [RunSummary.model_validate_json(row[0]) for row in rows[:PAGE]]


@pytest.mark.parametrize("implementation", ["runlog postgres", "run index (SQLite)"])
@pytest.mark.parametrize("filter_text", FILTERS)
def test_pg_search_first_page(
    noted: Any, loaded: Any, filter_text: str, implementation: str
) -> None:
    store, index = loaded
    noted.group = f"pg-search: {filter_text}, first page of {PAGE}, {RUNS:,} runs"
    noted.extra_info["role"] = "ours" if implementation == "runlog postgres" else "baseline"
    noted.extra_info["goal"] = "<= 50 ms"
    expected = [run.run_id for run in _sqlite_page(index, filter_text)]
    assert len(expected) == min(PAGE, len(expected)) and expected
    assert [run.run_id for run in store.search_runs(filter_text, max_results=PAGE).runs] == expected

    if implementation == "runlog postgres":
        page = noted.pedantic(
            lambda: store.search_runs(filter_text, max_results=PAGE), rounds=ROUNDS, iterations=1
        )
        assert [run.run_id for run in page.runs] == expected
    else:
        runs = noted.pedantic(lambda: _sqlite_page(index, filter_text), rounds=ROUNDS, iterations=1)
        assert [run.run_id for run in runs] == expected


@pytest.mark.parametrize("page_number", [1, LATER])
def test_pg_search_later_page(noted: Any, loaded: Any, page_number: int) -> None:
    """A page far into a search (the 50th), by its token (keyset: it starts at the run it
    follows, through the index), beside the first page of the same search."""
    store, _ = loaded
    filter_text = "status = 'FAIL'"
    noted.group = (
        f"pg-search: page {LATER} by its token beside the first, {filter_text}, {RUNS:,} runs"
    )
    noted.extra_info["role"] = "baseline" if page_number == 1 else "ours"
    token = None
    for _ in range(page_number - 1):
        token = store.search_runs(filter_text, max_results=PAGE, page_token=token).next_page_token
        assert token is not None
    page = noted.pedantic(
        lambda: store.search_runs(filter_text, max_results=PAGE, page_token=token),
        rounds=ROUNDS,
        iterations=1,
    )
    assert len(page.runs) == PAGE
