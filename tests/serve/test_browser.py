"""``runlog serve`` in a real browser: the real ``runlog serve`` process (``--port 0``, its
printed URL) and Debian's Chromium driven by Playwright. Searching, paging, a run's page, the
comparison, a pipeline watched live while runnable runs it (the page never reloaded), hostile
strings, and axe-core's accessibility rules and a keyboard walk on every page. Screenshots of
every page are kept under ``artifacts/serve/`` (``RUNLOG_TEST_ARTIFACTS`` names another folder).

Every page is watched: a dialog (a run's data run as script), a console error (a blocked inline
script or style: the pages' Content-Security-Policy allows neither) or an uncaught exception
fails the test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from runlog_store.models import StepAttempt

from ..conftest import ROOT, write_config
from ..hostile.test_terminal import OTHER_ID, RUN_ID, write_hostile_run
from . import serve_runs
from .browser_support import (
    PageWatch,
    Served,
    browser_page,
    check_accessibility,
    chromium_binary,
    screenshot,
    start_serve,
    tab_through,
)

pytestmark = pytest.mark.slow

RUNS_PAGE_KEYS = {
    "the filter box": "#filter",
    "the search button": "#search-button",
    "the first run link": "#runs a.run-link",
    "the first run's checkbox": "#runs input[type=checkbox]",
    "the compare button": "#compare-button",
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    binary = chromium_binary()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=binary, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[tuple[Any, PageWatch]]:
    yield from browser_page(browser)


@pytest.fixture(scope="module")
def runs_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``runlog serve`` with no configuration in a project holding the 30 runs of serve_runs."""
    project = tmp_path_factory.mktemp("project")
    serve_runs.write_runs(project)
    served = start_serve(project, logs=project / "logs")
    yield served
    served.stop()


def row_ids(page: Any) -> list[str]:
    ids = page.locator("#runs tr[data-run-id]").evaluate_all(
        "rows => rows.map(row => row.dataset.runId)"
    )
    return [str(run_id) for run_id in ids]


def row_of(page: Any, run_id: str) -> Any:
    """The runs table's row of ``run_id`` (compared as a string: an id may hold quotes that
    a CSS selector could not)."""
    for row in page.locator("#runs tr[data-run-id]").all():
        if row.get_attribute("data-run-id") == run_id:
            return row
    raise AssertionError(f"no row for {run_id!r} among {row_ids(page)}")


def search(page: Any, **fields: str) -> None:
    """Type into the search form's fields (by id) and press Enter in the filter box."""
    for field_id, value in fields.items():
        page.fill(f"#{field_id}", value)
    with page.expect_navigation():
        page.press("#filter", "Enter")


# --- 1. the runs page -----------------------------------------------------------------


def test_runs_page_filters_orders_shows_columns_and_pages(
    runs_served: Served, page: tuple[Any, PageWatch]
) -> None:
    view, watch = page
    view.goto(runs_served.url)
    shown = row_ids(view)
    assert shown and set(shown) <= set(serve_runs.ALL_IDS), shown
    assert view.locator("#result-count").inner_text().strip()
    screenshot(view, "runs")
    check_accessibility(view, "runs")
    tab_through(view, RUNS_PAGE_KEYS)

    # A filter typed and entered: only the matching runs, in the order asked for.
    search(view, filter="params.model = 'xgb' and status = 'SUCCESS'", order="params.epochs desc")
    expected = sorted(
        (r for r in serve_runs.OUR_RUNS if r.model == "xgb" and r.status == "SUCCESS"),
        key=lambda r: -r.epochs,
    )
    assert row_ids(view) == [r.run_id for r in expected]
    assert view.input_value("#filter") == "params.model = 'xgb' and status = 'SUCCESS'"
    for row in view.locator("#runs tr[data-run-id]").all():
        assert row.get_attribute("data-status") == "SUCCESS"
        assert "SUCCESS" in row.locator("td.status").inner_text()
    screenshot(view, "runs-filtered")

    # Extra columns: a parameter and a metric, each run's value in its row.
    search(view, filter="tag = 'adhoc'", order="run_id", columns="params.lr,metrics.accuracy")
    adhoc = [r for r in serve_runs.OUR_RUNS if r.tag == "adhoc"]
    assert row_ids(view) == [r.run_id for r in adhoc]
    header = view.locator("#runs thead").inner_text()
    assert "lr" in header and "accuracy" in header, header
    for run in adhoc:
        cells = view.locator(f'#runs tr[data-run-id="{run.run_id}"] td').all_inner_texts()
        assert str(run.lr) in cells and str(run.accuracy) in cells, (run, cells)

    # A bad filter: the parser's message and a caret under the column, what was typed kept.
    bad = "status = 'SUCCESS' and params.lr >> 1"
    with view.expect_response(lambda r: "filter=" in r.url) as answer:
        view.fill("#filter", bad)
        view.press("#filter", "Enter")
    assert answer.value.status == 400
    error = view.locator("#filter-error")
    error.wait_for()
    assert error.get_attribute("role") == "alert"
    # The caret line: inside the alert, or the <pre> right after it (a <p> cannot hold one).
    caret_line = view.locator("#filter-error pre, #filter-error + pre").first.inner_text()
    assert "^" in caret_line, caret_line
    assert view.input_value("#filter") == bad
    screenshot(view, "runs-bad-filter")
    check_accessibility(view, "runs (bad filter)")

    # Pages of 7: Next page until there is none visits every run once.
    search(view, filter="", order="run_id", columns="", **{"page-size": "7"})
    seen: list[str] = []
    for _ in range(10):
        ids = row_ids(view)
        assert 0 < len(ids) <= 7 or (ids == [] and seen), ids
        seen.extend(ids)
        next_link = view.locator("#next-page")
        if next_link.count() == 0:
            break
        assert next_link.get_attribute("rel") == "next"
        with view.expect_navigation():
            next_link.click()
    assert seen == serve_runs.ALL_IDS
    watch.check()


# --- 2. a run's page --------------------------------------------------------------------


def _open_run(view: Any, served: Served, run_id: str) -> None:
    """Open a run the way a person does: find it, click its link."""
    wanted = quote(f"run_id = '{run_id}'")
    view.goto(f"{served.url}?filter={wanted}")
    with view.expect_navigation():
        row_of(view, run_id).locator("a.run-link").click()
    assert view.url.endswith(f"/runs/{quote(run_id, safe='')}"), view.url


def test_run_page_shows_tree_parameters_metrics_catalog_timeline(
    runs_served: Served, page: tuple[Any, PageWatch]
) -> None:
    view, watch = page
    run = serve_runs.run_of(12)  # a map step of 3 branches, SUCCESS
    _open_run(view, runs_served, run.run_id)
    assert run.run_id in view.locator("h1").inner_text()
    assert view.locator("#run-status").inner_text().strip() == "SUCCESS"
    assert view.locator("body").get_attribute("data-live") == "false"
    summary = view.locator("#summary").inner_text()
    assert run.tag in summary and "dag0" in summary, summary
    for name in ("prepare", "fan", "train"):
        assert view.locator(f'#steps details.step[data-step="{name}"]').count() == 1, name
    fan = view.locator('#steps details.step[data-step="fan"]')
    assert fan.get_attribute("data-status") == "SUCCESS"
    progress = view.locator('.progress[data-step="fan"]')
    assert progress.get_attribute("data-total") == "3"
    assert progress.get_attribute("data-done") == "3"
    parameters = view.locator("#parameters").inner_text()
    assert "lr" in parameters and str(run.lr) in parameters and run.model in parameters
    metrics = view.locator("#metrics").inner_text()
    assert "accuracy" in metrics and str(run.accuracy) in metrics, metrics
    catalog = view.locator("#catalog").inner_text()
    assert "data/settings.json" in catalog and "blake3:1212" in catalog, catalog
    assert view.locator("#timeline svg").count() >= 1
    assert view.locator("#latest-failure").inner_text().strip() == ""
    screenshot(view, "run")
    check_accessibility(view, "run")
    tab_through(
        view,
        {
            "the first step's summary": "#steps details.step > summary",
            "the map step's summary": '#steps details.step[data-step="fan"] > summary',
        },
    )
    watch.check()


def test_failed_run_page_shows_the_error_and_traceback(
    runs_served: Served, page: tuple[Any, PageWatch]
) -> None:
    view, watch = page
    run = serve_runs.run_of(5)
    assert run.status == "FAIL"
    _open_run(view, runs_served, run.run_id)
    assert view.locator("#run-status").inner_text().strip() == "FAIL"
    assert "status-FAIL" in (view.locator("#run-status").get_attribute("class") or "")
    latest = view.locator("#latest-failure").inner_text()
    assert "train" in latest and "diverged at epoch 7" in latest, latest
    train = view.locator('#steps details.step[data-step="train"]')
    assert train.get_attribute("data-status") == "FAIL"
    if train.get_attribute("open") is None:
        train.locator("summary").first.click()
    traceback = train.locator("pre").all_inner_texts()
    assert any(
        "Traceback (most recent call last):" in text and "ValueError: diverged" in text
        for text in traceback
    ), traceback
    assert train.locator("pre").first.is_visible()
    screenshot(view, "run-failed")
    check_accessibility(view, "failed run")
    watch.check()


def test_large_run_page_draws_its_timeline_after_loading(
    tmp_path: Path, page: tuple[Any, PageWatch]
) -> None:
    """A run of more steps and branches than a page draws its timeline within (700 branches x
    2 steps: 2,101 rows) loads without the chart, then the chart is fetched and drawn in place
    on the same page."""
    from runlog_store import create_store
    from runlog_store.serve.views import TIMELINE_ROWS

    view, watch = page
    branches = 700
    assert branches * 3 + 1 > TIMELINE_ROWS
    folder = tmp_path / ".run_log_store"
    folder.mkdir()
    store = create_store("chunked-fs", log_folder=str(folder), fsync=False)
    run_id = "large-run"
    store.create_run_log(run_id, dag_hash="large")
    fan = store.create_step_log("fan", "fan")
    fan.step_type = "map"
    store.add_step_log(fan, run_id)
    for item in range(branches):
        branch = store.create_branch_log(f"fan.{item}", {})
        branch.status = "SUCCESS"
        store.add_branch_log(branch, run_id)
        for number, name in enumerate(("load", "fit")):
            step = store.create_step_log(name, f"fan.{item}.{name}")
            step.status = "SUCCESS"
            seconds = item // 10 + number
            step.attempts = [
                StepAttempt(
                    status="SUCCESS",
                    start_time=f"2026-11-01 10:{seconds // 60:02d}:{seconds % 60:02d}.000000",
                    end_time=f"2026-11-01 10:{seconds // 60:02d}:{seconds % 60:02d}.500000",
                )
            ]
            store.add_step_log(step, run_id)
    fan.status = "SUCCESS"
    store.add_step_log(fan, run_id)
    store.update_run_log_status(run_id, "SUCCESS")
    served = start_serve(tmp_path, logs=tmp_path / "logs")
    try:
        view.goto(f"{served.url}runs/{run_id}")
        chart = view.locator("#timeline .timeline-chart svg")
        chart.first.wait_for(timeout=60_000)
        assert view.locator("#timeline-later").count() == 0, "the note stayed beside the chart"
        assert "fan" in view.locator("#timeline").inner_text()
        screenshot(view, "run-large")
        check_accessibility(view, "large run")
        watch.check()
    finally:
        served.stop()


# --- 3. comparing two runs ----------------------------------------------------------------


def test_two_runs_ticked_and_compared(runs_served: Served, page: tuple[Any, PageWatch]) -> None:
    view, watch = page
    first, second = serve_runs.run_of(2), serve_runs.run_of(3)
    view.goto(f"{runs_served.url}?order_by=run_id&max_results=50")
    view.check(f'#runs input[type=checkbox][value="{first.run_id}"]')
    view.check(f'#runs input[type=checkbox][value="{second.run_id}"]')
    with view.expect_navigation():
        view.click("#compare-button")
    assert "/compare?" in view.url
    table = view.locator("#compare")
    header = table.locator("thead").inner_text() if table.locator("thead").count() else ""
    header = header or table.locator("tr").first.inner_text()
    assert first.run_id in header and second.run_id in header, header
    assert table.locator(f'a[href$="/runs/{first.run_id}"]').count() >= 1
    lr_row = table.locator("tr", has_text="lr").first.inner_text()
    assert str(first.lr) in lr_row and str(second.lr) in lr_row, lr_row
    epochs_row = table.locator("tr", has_text="epochs").first.inner_text()
    assert str(first.epochs) in epochs_row and str(second.epochs) in epochs_row
    screenshot(view, "compare")
    check_accessibility(view, "compare")
    tab_through(view, {"the first run's link": f'#compare a[href$="/runs/{first.run_id}"]'})
    watch.check()


# --- 4. a pipeline watched live ----------------------------------------------------------


BRANCHES = 16
BRANCH_SECONDS = "1.5"


def test_live_page_follows_a_running_pipeline_without_reloading(
    tmp_path: Path, page: tuple[Any, PageWatch]
) -> None:
    """runnable runs the example pipeline (a map of 16 branches in worker processes, each
    slowed by EXAMPLE_BRANCH_SECONDS) while the run's page is open: the finished-branch count
    climbs in place and the page ends SUCCESS and settled, never reloaded."""
    view, watch = page
    examples = Path(shutil.copytree(ROOT / "examples", tmp_path / "examples"))
    (examples / ".run_log_store").mkdir()
    run_id = f"live-{os.getpid()}"
    served = start_serve(examples, logs=tmp_path / "logs")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RUNNABLE_")},
        "RUNNABLE_RUN_ID": run_id,
        "RUNNABLE_PRM_branches": str(BRANCHES),
        "RUNNABLE_TELEMETRY": "0",
        "EXAMPLE_BRANCH_SECONDS": BRANCH_SECONDS,
    }
    output = (tmp_path / "pipeline.log").open("wb")
    pipeline = subprocess.Popen(
        [sys.executable, "pipeline.py"], cwd=examples, env=env, stdout=output, stderr=output
    )
    try:
        run_folder = examples / ".run_log_store" / run_id
        deadline = time.monotonic() + 120
        while not (run_folder / "RunLog.json").exists():
            assert pipeline.poll() is None, (tmp_path / "pipeline.log").read_text()
            assert time.monotonic() < deadline, "the run's folder never appeared"
            time.sleep(0.05)
        view.goto(f"{served.url}runs/{run_id}")
        assert view.locator("body").get_attribute("data-live") == "true"
        view.evaluate("() => { window.__notReloaded = true; }")
        progress = view.locator('.progress[data-step="train"]')
        done_values: list[int] = []
        mid_run_shot = False
        deadline = time.monotonic() + 240
        while view.locator("body").get_attribute("data-settled") != "true":
            if time.monotonic() > deadline:
                pipeline_log = (tmp_path / "pipeline.log").read_text(errors="replace")
                pytest.fail(
                    f"never settled; done went {done_values}; the page says "
                    f"{view.locator('#run-status').inner_text()!r}, "
                    f"{view.locator('#live-note').inner_text()!r}; the pipeline "
                    f"{'runs' if pipeline.poll() is None else f'exited {pipeline.returncode}'}"
                    f", its output ends: {pipeline_log[-2000:]}\nthe server's output: "
                    f"{served.output()[-3000:]}"
                )
            if progress.count():
                done = int(progress.get_attribute("data-done") or 0)
                if not done_values or done != done_values[-1]:
                    done_values.append(done)
                    if 0 < done < BRANCHES and not mid_run_shot:
                        screenshot(view, "live-mid-run")
                        check_accessibility(view, "live (mid-run)")
                        mid_run_shot = True
            view.wait_for_timeout(100)
        assert pipeline.wait(120) == 0, (tmp_path / "pipeline.log").read_text()[-3000:]
        assert view.evaluate("() => window.__notReloaded === true"), "the page was reloaded"
        assert view.locator("#run-status").inner_text().strip() == "SUCCESS"
        # Settled as a whole: the summary, the run's parameters and the timeline show the run
        # as it ended, not as it was when the page was opened.
        end = view.locator("#summary dt:text-is('end') + dd").inner_text().strip()
        assert end.endswith("UTC"), f"the summary's end is {end!r} after the run ended"
        assert "items" in view.locator("#parameters").inner_text()
        assert view.locator("#timeline svg").count() >= 1, "no timeline drawn after the end"
        final = int(progress.get_attribute("data-done") or 0) if progress.count() else None
        assert final == BRANCHES, (final, done_values)
        climbing = [v for v in done_values if v > 0]
        assert climbing == sorted(climbing), done_values
        assert len(set(done_values)) >= 3, f"data-done took only {done_values}"
        screenshot(view, "live-ended")
        check_accessibility(view, "live (ended)")
        tab_through(
            view, {"the map step's summary": '#steps details.step[data-step="train"] > summary'}
        )
        watch.check()
    finally:
        if pipeline.poll() is None:
            pipeline.kill()
            pipeline.wait()
        output.close()
        served.stop()


# --- 5. hostile strings -------------------------------------------------------------------

SCRIPT = "<script>alert(1)</script>"
QUOTES = '"\' onmouseover="alert(2)" x=\''
XSS_ID = "xss<img src=x onerror=alert(3)>\"'"


def test_hostile_strings_are_shown_as_text_never_run(
    tmp_path: Path, page: tuple[Any, PageWatch]
) -> None:
    """The runs of tests/hostile/test_terminal.py (terminal escapes, C1 controls, bidi
    overrides, rich markup in ids, tags, names, values, messages, catalog entries) and one
    whose id and values hold markup and quotes: no script runs, every string is shown."""
    from runlog_store.config import load_store
    from runlog_store.models import JsonParameter

    config = write_config(tmp_path / "config.yaml", "chunked-fs", tmp_path / "logs")
    write_hostile_run(config, RUN_ID)
    write_hostile_run(config, OTHER_ID, value="b")
    store = load_store(config)
    store.create_run_log(XSS_ID, tag=SCRIPT)
    store.set_parameters(
        XSS_ID,
        {
            SCRIPT: JsonParameter(kind="json", value=SCRIPT),
            "quotes": JsonParameter(kind="json", value=QUOTES),
        },
    )
    store.update_run_log_status(XSS_ID, "SUCCESS")
    served = start_serve(tmp_path, "-c", "config.yaml", logs=tmp_path / "serve-logs")
    view, watch = page
    try:
        view.goto(served.url)
        listed = view.locator("#runs").inner_text()
        assert "hostile\\u009b2J\\u202e[red]" in listed, listed
        assert XSS_ID in listed and SCRIPT in listed
        assert view.locator("#runs img").count() == 0
        screenshot(view, "hostile-runs")
        check_accessibility(view, "runs (hostile)")

        with view.expect_navigation():
            row_of(view, XSS_ID).locator("a.run-link").click()
        assert XSS_ID in view.locator("h1").inner_text()
        assert SCRIPT in view.locator("#summary").inner_text()  # the tag
        parameters = view.locator("#parameters").inner_text()
        # Names in full; long values may be cut, their start shown as text.
        assert SCRIPT in parameters and "quotes" in parameters, parameters
        assert SCRIPT[:10] in parameters.split(SCRIPT, 1)[1] and QUOTES[:8] in parameters

        view.goto(f"{served.url}runs/{quote(RUN_ID, safe='')}")
        text = view.locator("body").inner_text()
        for shown in (
            "hostile\\u009b2J\\u202e[red]",
            "train\\x1b[2J",
            "boom\\x1b]52;c;aGFja2Vk\\x1b\\",
            "\\u202eevil\\u202c",
            "data/\\x1b[2Jfile.csv",
            "[bold red]x[/]",
        ):
            assert shown in text, shown
        raw = view.evaluate("() => document.body.textContent")
        for char in ("\u202e", "\u2067", "\u009b", "\x1b", "\x7f"):
            assert char not in raw, f"U+{ord(char):04X} reached the page raw"
        screenshot(view, "hostile-run")
        check_accessibility(view, "run (hostile)")

        view.goto(f"{served.url}compare?run={quote(RUN_ID, safe='')}&run={quote(XSS_ID, safe='')}")
        assert view.locator("#compare").count() == 1
        compared = view.locator("#compare").inner_text()
        assert SCRIPT in compared
        for script in view.locator("script").all():
            source = script.get_attribute("src") or ""
            assert source.startswith("/static/"), f"a script not from the app: {source!r}"
        watch.check()
    finally:
        served.stop()
