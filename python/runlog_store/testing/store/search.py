"""Searching runs: ``search_runs`` and ``iter_runs`` answer what a read of every run answers."""

from __future__ import annotations

from typing import Any

import pytest

from runlog_store import BaseRunLogStore, JsonParameter, MetricParameter, StepAttempt
from runlog_store.exceptions import RunLogStoreError
from runlog_store.ops.runs import RunSummary
from runlog_store.search import query
from runlog_store.testing.store.suite import StoreSuite

# Filters and orderings every store answers as its scan does.
FILTERS = (
    None,
    "status = 'SUCCESS'",
    "status != 'SUCCESS' and tag = 'nightly'",
    "tag in ('nightly', 'adhoc') or status = 'fail'",
    "params.lr > 0.05 and params.model = 'xgb'",
    "metrics.accuracy >= 0.9 or metrics.accuracy is null",
    "params.model ilike 'X%'",
    "step.train.status = 'FAIL'",
    "not (duration > 10) and start_time > '2026-01-01'",
    "failed_step is not null",
    "run_id like 'search-_'",
    "metrics.accuracy > 0.5",
    "step.train.status >= 'A' and params.model != 'none'",
)
ORDERS = (
    None,
    "run_id asc",
    "metrics.accuracy desc",
    "params.lr asc, run_id desc",
    "duration",
    "step.train.status desc, params.model",
)


def scanned(store: BaseRunLogStore, filter: str | None, order_by: str | None) -> list[RunSummary]:
    """The answer of a read of every run: what a search must equal."""
    return store._scan(query.parse_filter(filter), query.parse_order_by(order_by))


def comparable(runs: list[RunSummary]) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """Summaries as compared: their fields, and the step statuses their JSON leaves out."""
    return [(run.model_dump(), run.step_statuses) for run in runs]


def _run(
    store: BaseRunLogStore,
    run_id: str,
    *,
    tag: str,
    status: str,
    params: dict[str, Any],
    accuracy: float | None,
    train: str | None,
    seconds: int,
) -> None:
    store.create_run_log(run_id, dag_hash="d" + run_id[-1], tag=tag)
    store.set_parameters(
        run_id, {name: JsonParameter(kind="json", value=v) for name, v in params.items()}
    )
    if accuracy is not None:
        store.set_parameters(run_id, {"accuracy": MetricParameter(kind="metric", value=accuracy)})
    if train is not None:
        step = store.create_step_log("train", "train")
        step.status = train
        step.attempts.append(
            StepAttempt(
                status=train,
                start_time="2026-01-02 10:00:00",
                end_time=f"2026-01-02 10:00:{seconds:02d}",
            )
        )
        store.add_step_log(step, run_id)
    store.update_run_log_status(run_id, status)


# run id: tag, status, params, metric accuracy, status of step "train", its seconds
RUNS: dict[str, tuple[str, str, dict[str, Any], float | None, str | None, int]] = {
    "search-1": ("nightly", "SUCCESS", {"lr": 0.1, "model": "xgb"}, 0.93, "SUCCESS", 5),
    "search-2": ("nightly", "FAIL", {"lr": 0.01, "model": "XGB"}, 0.5, "FAIL", 30),
    "search-3": ("adhoc", "PROCESSING", {"lr": 1, "model": "lgbm"}, None, None, 0),
    "search-4": ("", "SUCCESS", {"lr": "high", "model": ["xgb"]}, 0.99, "SUCCESS", 9),
    "search-5": ("nightly", "CREATED", {"lr": True}, 0.9, None, 0),
    "search-long": ("adhoc", "SUCCESS", {}, 0.95, "SUCCESS", 59),
}


def write_runs(store: BaseRunLogStore) -> None:
    """The runs of RUNS, which the filters of FILTERS tell apart."""
    for run_id, (tag, status, params, accuracy, train, seconds) in RUNS.items():
        _run(
            store,
            run_id,
            tag=tag,
            status=status,
            params=params,
            accuracy=accuracy,
            train=train,
            seconds=seconds,
        )


class SearchTests(StoreSuite):
    """``search_runs`` and ``iter_runs``: for a store that lists its runs, every answer equals
    a read of every run (``BaseRunLogStore._scan``), however the store answers it (an index
    kept beside the runs, a scan), before and after runs change; pages and their tokens."""

    def _searchable(self, store: BaseRunLogStore) -> bool:
        if self._lists(store):
            return True
        with pytest.raises(NotImplementedError):
            store.search_runs()  # a store that cannot list its runs cannot search them
        return False

    def _check_every_answer(self, store: BaseRunLogStore) -> None:
        for filter in FILTERS:
            for order_by in ORDERS:
                page = store.search_runs(filter, order_by, max_results=1000)
                expected = scanned(store, filter, order_by)
                assert comparable(page.runs) == comparable(expected), (filter, order_by)
                assert page.next_page_token is None

    def test_search_equals_scan(self, store: BaseRunLogStore) -> None:
        if not self._searchable(store):
            return
        assert store.search_runs().runs == []
        write_runs(store)
        self._check_every_answer(store)
        found = store.search_runs("status = 'success'", "run_id asc").runs
        assert [r.run_id for r in found] == ["search-1", "search-4", "search-long"]
        assert [r.run_id for r in store.search_runs("tag = ''").runs] == ["search-4"]
        # Runs that change, begin and end after the first search are seen by the next one.
        store.update_run_log_status("search-3", "FAIL")
        store.set_parameters("search-5", {"model": JsonParameter(kind="json", value="xgb")})
        store.create_run_log("search-6", tag="nightly")
        self._check_every_answer(store)
        assert "search-6" in [r.run_id for r in store.search_runs("tag = 'nightly'").runs]
        assert [r.run_id for r in store.search_runs("status = 'FAIL'", "run_id").runs] == [
            "search-2",
            "search-3",
        ]
        if self._deletes(store):
            store.delete_run("search-1")
            self._check_every_answer(store)
            assert "search-1" not in [r.run_id for r in store.search_runs().runs]

    def test_pages(self, store: BaseRunLogStore) -> None:
        if not self._searchable(store):
            return
        write_runs(store)
        whole = store.search_runs(None, "run_id desc", max_results=1000).runs
        assert len(whole) == 6
        paged: list[RunSummary] = []
        token = None
        while True:
            page = store.search_runs(None, "run_id desc", max_results=4, page_token=token)
            paged += page.runs
            token = page.next_page_token
            if token is None:
                break
        assert comparable(paged) == comparable(whole)
        pages = [store.search_runs(None, "run_id desc", max_results=3)]
        pages.append(
            store.search_runs(
                None, "run_id desc", max_results=3, page_token=pages[0].next_page_token
            )
        )
        assert [len(p.runs) for p in pages] == [3, 3] and pages[1].next_page_token is None
        assert comparable(list(store.iter_runs(order_by="run_id desc", page_size=2))) == (
            comparable(whole)
        )
        assert [r.run_id for r in store.iter_runs("status = 'SUCCESS'", "run_id")] == [
            "search-1",
            "search-4",
            "search-long",
        ]
        with pytest.raises(RunLogStoreError, match="does not belong to this search"):
            store.search_runs("status = 'FAIL'", "run_id desc", page_token=pages[0].next_page_token)
        with pytest.raises(RunLogStoreError, match="does not belong to this search"):
            store.search_runs(page_token="not a token")
        for wrong in (0, -1, 50_001):
            with pytest.raises(ValueError, match="max_results must be between 1 and 50,000"):
                store.search_runs(max_results=wrong)
        assert len(store.search_runs(max_results=50_000).runs) == 6

    def test_filter_errors(self, store: BaseRunLogStore) -> None:
        with pytest.raises(query.FilterSyntaxError, match="column"):
            store.search_runs("status = ")
        with pytest.raises(query.FilterSyntaxError):
            store.search_runs(None, "nothing_such desc")


__all__ = ["FILTERS", "ORDERS", "RUNS", "SearchTests", "comparable", "scanned", "write_runs"]
