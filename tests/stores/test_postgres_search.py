"""The postgres store's search answers as a read of every run does.

- For random run summaries and random filters and orderings (the strategies of
  tests/search/test_query_sql.py: every JSON type, NaN and infinities, text in several cases
  and scripts, NUL characters, missing values, step statuses, times), the SQL of
  ``postgres_search`` over the rows a write makes of them gives the runs ``query.matches`` and
  ``query.sort_runs`` give, in the same order, page after page by keyset.
- For runs written through the store (parameters, metrics, steps, statuses), ``search_runs``
  page by page and ``iter_runs`` give what ``_scan`` (a read of every run) gives.
- Runs written before the search columns existed (a schema of migration 1) are summarized by
  the first search; page tokens of another search are refused.
On the private cluster of tests/postgres_server.py.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings

from runlog_store import create_store
from runlog_store._paths import validate_run_id
from runlog_store.exceptions import InvalidRunIdError, RunLogStoreError
from runlog_store.models import JsonParameter, MetricParameter, RunLog, StepAttempt
from runlog_store.ops.runs import RunSummary
from runlog_store.search import query
from runlog_store.stores import postgres_migrations, postgres_search
from runlog_store.stores.postgres import PostgresRunLogStore

from ..search.test_query_sql import NOW, Case, cases, scanned, summary


@pytest.fixture
def store(postgres_config: dict[str, Any]) -> Iterator[PostgresRunLogStore]:
    made = create_store("postgres", **postgres_config)
    assert isinstance(made, PostgresRunLogStore)
    yield made


def _valid(runs: list[RunSummary]) -> list[RunSummary]:
    """The runs with a run id a store takes (PostgreSQL text holds no NUL either)."""
    valid = []
    for number, run in enumerate(runs):
        try:
            validate_run_id(run.run_id)
        except InvalidRunIdError:
            run = run.model_copy(update={"run_id": f"id{number}"})
        valid.append(run)
    return valid


def _load(store: PostgresRunLogStore, runs: list[RunSummary]) -> None:
    with store.connection() as conn:
        conn.execute(store._sql("TRUNCATE {schema}.runs CASCADE"))
        documents = [(json.dumps({"run_id": run.run_id}).encode(), run) for run in runs]
        postgres_search.copy_runs(store, conn, documents)


def _paged(
    store: PostgresRunLogStore, filter_text: str | None, order_text: str | None, size: int
) -> list[str]:
    """Every run id of a search, read ``size`` at a time by keyset."""
    expr = query.parse_filter(filter_text, NOW)
    order = query.parse_order_by(order_text)
    found: list[str] = []
    after = None
    while True:
        page = postgres_search.search_page(store, expr, order, after, size)
        found += [summary.run_id for summary, _ in page]
        if len(page) < size:
            return found
        after = page[-1][1]


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(case=cases())
@example(
    case=(
        [
            summary("nul", tag="a\x00b", params={"x": "a\x00b"}, step_statuses={"s": "A\x00"}),
            summary("one", tag="a\x01", params={"x": "a\x01"}),
            summary("a", tag="a", params={"x": "a"}, step_statuses={"s": "A"}),
            summary("ab", tag="ab", params={"x": "ab"}, step_statuses={"s": "A\x01"}),
        ],
        [
            ("tag like 'a'", "tag"),
            ("tag like 'a%'", "tag desc"),
            ("tag like 'a_'", None),
            ("tag < 'a\x01'", "tag"),
            ("tag ilike 'A'", "params.x desc"),
            ("params.x like 'a'", "params.x"),
            ("params.x like 'a\x00%'", None),
            ("params.x = 'a\x00b'", None),
            ("params.x > 'a\x00'", "params.x"),
            ("params.x ilike 'A_'", "step.s.status"),
            ("step.s.status like 'A'", "step.s.status desc"),
            ("step.s.status = 'A\x00'", None),
            ("not step.s.status ilike 'a_'", None),
        ],
    )
)
def test_the_sql_answers_as_a_scan(store: PostgresRunLogStore, case: Case) -> None:
    runs, searches = case
    runs = _valid(runs)
    _load(store, runs)
    for filter_text, order_text in searches:
        expected = scanned(runs, filter_text, order_text)
        # Each way a statement may take: from the runs of a parameter's condition with few
        # rows (the limit above every count), or reading runs in order (below), or both.
        for limit in (10_000, 0, 1):
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(postgres_search, "NARROW_LIMIT", limit)
                found = _paged(store, filter_text, order_text, 100)
                assert found == expected, (filter_text, order_text, limit)
                # Pages of two, each starting after the last run of the one before.
                found = _paged(store, filter_text, order_text, 2)
                assert found == expected, (filter_text, order_text, limit)


def test_a_summary_reads_back_whole(store: PostgresRunLogStore) -> None:
    run = RunSummary(
        run_id="r",
        status="FAIL",
        tag="t\x00x",
        start=datetime(2026, 12, 1, 10, 0, 0, 5),
        end=None,
        duration_seconds=None,
        steps=2,
        branches=0,
        failed_step="a.b",
        params={"x": [1, {"y": "é"}], "n\x00ul": "a\x00\x01b", "nan": float("nan")},
        metrics={"m": 0.5, "inf": float("inf")},
        step_statuses={"a": "FAIL", "a.b": "FAIL"},
    )
    _load(store, [run])
    page = postgres_search.search_page(store, None, query.DEFAULT_ORDER, None, 10)
    assert [summary.model_dump_json() for summary, _ in page] == [run.model_dump_json()]
    assert page[0][0].step_statuses == run.step_statuses
    for text in ("params.`n\x00ul` = 'a\x00\x01b'", "tag like 't'", "params.nan is not null"):
        expr = query.parse_filter(text, NOW)
        assert len(postgres_search.search_page(store, expr, query.DEFAULT_ORDER, None, 10)) == 1


def test_texts_and_names_longer_than_an_index_entry(store: PostgresRunLogStore) -> None:
    """A B-tree entry holds 2,704 bytes at most: the indexes hold a prefix of a text and the
    md5 of a name, so a run with longer ones is stored, and found by its whole value."""
    long_name, long_text = "n" * 5000, "v" * 9000
    run_id = store.create_run_log(run_id="long", tag="t" * 6000, status="RUNNING").run_id
    store.set_parameters(
        run_id,
        {
            long_name: JsonParameter(kind="json", value=long_text),
            "short": JsonParameter(kind="json", value=long_text + "w"),
        },
    )
    step = store.create_step_log("s" * 3000, "s" * 3000)
    step.status = "X" * 4000
    store.add_step_log(step, run_id)
    store.update_run_log_status(run_id, "SUCCESS")
    store.create_run_log(run_id="other", tag="t" * 5999 + "u", status="SUCCESS")
    for text, found in (
        (f"params.{long_name} = '{long_text}'", ["long"]),
        (f"params.{long_name} = '{long_text}x'", []),
        (f"params.short > '{long_text}'", ["long"]),
        (f"params.short < '{long_text}w'", []),
        (f"tag = '{'t' * 6000}'", ["long"]),
        (f"tag > '{'t' * 6000}'", ["other"]),
        (f"step.{'s' * 3000}.status = '{'x' * 4000}'", ["long"]),
        (f"step.{'s' * 3000}.status in ('{'x' * 3999}', '{'x' * 4000}')", ["long"]),
    ):
        for limit in (10_000, 0):
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(postgres_search, "NARROW_LIMIT", limit)
                assert _ids(store.search_runs(text).runs) == found, (text[:40], limit)


# --- runs written through the store ------------------------------------------------------------

FILTERS = [
    None,
    "status = 'SUCCESS'",
    "status != 'fail' and params.lr > 0.1",
    "params.model = 'xgb' or metrics.accuracy >= 0.5",
    "params.model in ('xgb', 'rf') and not tag like 'night%'",
    "tag ilike 'NIGHT%'",
    "metrics.accuracy is null",
    "params.lr is not null and params.lr <= 0.3",
    "step.train.status = 'FAIL'",
    "step.train.status like 'S%'",
    "start_time > -1d and duration < 1h",
    "failed_step = 'train'",
    "run_id like 'run-1%'",
    "params.flag = true",
    "params.model = ''';DROP TABLE runs; --'",
]
ORDERS = [
    None,
    "metrics.accuracy desc",
    "params.lr, run_id desc",
    "params.model desc, start_time",
    "status, tag desc",
    "step.train.status desc",
    "end_time",
]


def _write_runs(store: PostgresRunLogStore, count: int, seed: int) -> None:
    rng = random.Random(seed)
    for number in range(count):
        run_id = f"run-{number}"
        run_log = store.create_run_log(
            run_id=run_id,
            tag=rng.choice(["", "nightly", "NIGHTLY-2", "adhoc"]),
            status="RUNNING",
        )
        assert run_log.run_id == run_id
        parameters: dict[str, Any] = {}
        if rng.random() < 0.8:
            parameters["lr"] = JsonParameter(kind="json", value=rng.choice([0.05, 0.1, 0.2, 0.3]))
        if rng.random() < 0.8:
            model = rng.choice(["xgb", "rf", "XGB", 3, None, "';DROP TABLE runs; --"])
            parameters["model"] = JsonParameter(kind="json", value=model)
        if rng.random() < 0.3:
            parameters["flag"] = JsonParameter(kind="json", value=rng.random() < 0.5)
        if rng.random() < 0.7:
            parameters["accuracy"] = MetricParameter(kind="metric", value=rng.random())
        if parameters:
            store.set_parameters(run_id, parameters)
        status = rng.choice(["SUCCESS", "FAIL"])
        for name in ("prepare", "train"):
            step = store.create_step_log(name, name)
            step.status = status if name == "train" else "SUCCESS"
            start = datetime.now() - timedelta(minutes=rng.randrange(0, 3000))
            end = start + timedelta(seconds=rng.randrange(1, 7200))
            step.attempts.append(
                StepAttempt(start_time=str(start), end_time=str(end), status=step.status)
            )
            store.add_step_log(step, run_id)
        # The run's end: its status set, which summarizes it.
        store.update_run_log_status(run_id, status)


def _all_pages(
    store: PostgresRunLogStore, filter_text: str | None, order_by: str | None, size: int
) -> list[RunSummary]:
    found: list[RunSummary] = []
    token = None
    while True:
        page = store.search_runs(filter_text, order_by, max_results=size, page_token=token)
        found += page.runs
        token = page.next_page_token
        if token is None:
            return found


def _ids(runs: list[RunSummary]) -> list[str]:
    return [run.run_id for run in runs]


def test_search_runs_answers_as_a_read_of_every_run(store: PostgresRunLogStore) -> None:
    _write_runs(store, 40, seed=7)
    rng = random.Random(11)
    for filter_text in FILTERS:
        for order_by in rng.sample(ORDERS, 3):
            expected = store._scan(query.parse_filter(filter_text), query.parse_order_by(order_by))
            assert _all_pages(store, filter_text, order_by, 7) == expected, (filter_text, order_by)
            assert _ids(list(store.iter_runs(filter_text, order_by, page_size=3))) == _ids(expected)
    assert store.search_runs("status = 'SUCCESS' or status = 'FAIL'").runs
    # A run changed after its summary: its status set again summarizes it again.
    store.update_run_log_status("run-0", "PROCESSING")
    assert _ids(store.search_runs("status = 'PROCESSING'").runs) == ["run-0"]
    store.delete_run("run-1")
    assert "run-1" not in _ids(_all_pages(store, None, None, 50))


def test_a_page_token_of_another_search_is_refused(store: PostgresRunLogStore) -> None:
    _write_runs(store, 5, seed=3)
    token = store.search_runs("status != 'x'", max_results=2).next_page_token
    assert token is not None
    assert len(store.search_runs("status != 'x'", max_results=2, page_token=token).runs) == 2
    for filter_text, order_by in (("status = 'x'", None), ("status != 'x'", "tag")):
        with pytest.raises(RunLogStoreError, match="does not belong to this search"):
            store.search_runs(filter_text, order_by, max_results=2, page_token=token)
    for bad in ("garbage", "", "eyJvZmZzZXQiOjJ9"):  # the last: an offset token
        with pytest.raises(RunLogStoreError, match="does not belong to this search"):
            store.search_runs("status != 'x'", max_results=2, page_token=bad)


def test_runs_written_before_the_search_columns_are_summarized_by_a_search(
    postgres_config: dict[str, Any],
) -> None:
    """A database of migration 1 with runs in it: the store brings it to migration 2, and
    the first search summarizes the runs (their merge is the Rust core's: not the migration's
    SQL) and answers as a read of every run."""
    old = create_store("postgres", **postgres_config)
    assert isinstance(old, PostgresRunLogStore)
    latest = postgres_migrations.MIGRATIONS
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(postgres_migrations, "MIGRATIONS", latest[:1])
        patch.setattr(postgres_migrations, "LATEST", 1)
        with old.connection() as conn:
            version = conn.execute(
                old._sql("SELECT max(version) FROM {schema}.schema_version")
            ).fetchone()
        assert version == (1,)
        # Rows as migration 1's release wrote them: no summary.
        with old.connection() as conn:
            conn.execute(
                old._sql(
                    "INSERT INTO {schema}.runs (run_id, document) VALUES "
                    "('old-1', %s), ('old-2', %s)"
                ),
                [
                    RunLog(run_id="old-1", status="SUCCESS", tag="t").model_dump_json().encode(),
                    RunLog(run_id="old-2", status="FAIL", tag="").model_dump_json().encode(),
                ],
            )
    new = create_store("postgres", **postgres_config)
    assert isinstance(new, PostgresRunLogStore)
    expected = new._scan(None, query.DEFAULT_ORDER)
    assert _ids(expected) == ["old-1", "old-2"]
    assert new.search_runs().runs == expected
    assert _ids(new.search_runs("status = 'FAIL'").runs) == ["old-2"]
    with new.connection() as conn:
        pending = conn.execute(
            new._sql("SELECT count(*) FROM {schema}.runs WHERE summary IS NULL")
        ).fetchone()
    assert pending == (0,)
