"""The timeline page: its structure for real runnable runs, its escaping of hostile run logs,
its behaviour on broken or empty logs and on large runs, and (in a real headless Chromium)
that it actually draws: the screenshot must show success and failure bars.

The structural checks read the HTML; only a browser can show that the SVG renders, the
inline CSS applies and the colours reach the screen, so the page is screenshotted too.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from runlog_store.cli.timeline import FAIL_FILL, OK_FILL, RUN_FILL, format_seconds, render_timeline
from runlog_store.models import FAIL, PROCESSING, SUCCESS, BranchLog, RunLog, StepAttempt, StepLog

from ..conftest import ROOT, RUNNABLE_FIXTURES

CHROMIUM_SCRIPT = ROOT / "scripts" / "chromium.sh"
CHROMIUM_TIMEOUT = 60
HOSTILE = "<script>alert(1)</script>"

FIXTURES = {
    "chunked-map": RUNNABLE_FIXTURES / "expected-full" / "chunked-map.json",
    "fs-fail": RUNNABLE_FIXTURES / "file-system" / "fs-fail.json",
    "fs-job": RUNNABLE_FIXTURES / "file-system" / "fs-job.json",
}


def load(name: str) -> RunLog:
    return RunLog.model_validate_json(FIXTURES[name].read_text())


def all_attempts(run_log: RunLog) -> list[StepAttempt]:
    attempts = [a for step in run_log.iter_steps() for a in step.attempts]
    if run_log.job is not None:
        attempts.extend(run_log.job.attempts)
    return attempts


def attempt_rects(page: str, kind: str = "") -> int:
    return page.count(f'class="attempt {kind}')


def chart_svg(page: str) -> ET.Element:
    """The chart SVG parsed as XML: it must be well formed for every run log."""
    match = re.search(r'<svg class="chart".*?</svg>', page, re.S)
    assert match, "no chart svg in the page"
    return ET.fromstring(match.group(0))


def stamp(base: datetime, seconds: float) -> str:
    return str(base + timedelta(seconds=seconds))


# --- a run built for the browser test: a map whose branches overlap, a failure and a retry ---

BASE = datetime(2025, 6, 1, 12, 0, 0, 123456)


def attempt(start: float, end: float | None, status: str = SUCCESS, number: int = 1) -> StepAttempt:
    return StepAttempt(
        attempt_number=number,
        start_time=stamp(BASE, start),
        end_time="" if end is None else stamp(BASE, end),
        status=status,
        message="ValueError: the model diverged\n" if status == FAIL else "",
    )


def task(internal_name: str, *attempts: StepAttempt, step_type: str = "task") -> StepLog:
    status = attempts[-1].status if attempts else "CREATED"
    return StepLog(
        name=internal_name.rsplit(".", 1)[-1],
        internal_name=internal_name,
        status=status,
        step_type=step_type,
        attempts=list(attempts),
    )


def built_run(branches: int = 5) -> RunLog:
    """A pipeline 'load -> map(train) -> report' where branch 2 fails once and is retried."""
    run = RunLog(run_id="built-run", tag="nightly", status=PROCESSING)
    run.steps["load"] = task("load", attempt(0.0, 2.0))
    map_step = task("map", step_type="map")
    map_step.status = SUCCESS
    for index in range(branches):
        name = f"map.{index}"
        start = 2.1 + 0.3 * index
        steps = {}
        steps[f"{name}.prepare"] = task(f"{name}.prepare", attempt(start, start + 0.8))
        if index == 2:
            train = task(
                f"{name}.train",
                attempt(start + 0.9, start + 4.5, FAIL, 1),
                attempt(start + 4.6, start + 7.0, SUCCESS, 2),
            )
        else:
            train = task(f"{name}.train", attempt(start + 0.9, start + 3.5 + 0.4 * index))
        steps[train.internal_name] = train
        steps[f"{name}.success"] = task(
            f"{name}.success", attempt(start + 7.1, start + 7.1), step_type="success"
        )
        map_step.branches[name] = BranchLog(internal_name=name, status=SUCCESS, steps=steps)
    run.steps["map"] = map_step
    run.steps["report"] = task("report", attempt(10.2, None, PROCESSING))
    run.steps["notify"] = task("notify", attempt(10.0, 11.5))
    return run


def big_run(branches: int, steps_per_branch: int = 3) -> RunLog:
    run = RunLog(run_id="big", status=SUCCESS)
    map_step = task("fan", step_type="map")
    for b in range(branches):
        name = f"fan.{b}"
        steps = {}
        for s in range(steps_per_branch):
            start = b * 0.01 + s
            status = FAIL if b % 97 == 0 and s == 1 else SUCCESS
            step = task(f"{name}.step{s}", attempt(start, start + 0.9, status))
            steps[step.internal_name] = step
        map_step.branches[name] = BranchLog(internal_name=name, status=SUCCESS, steps=steps)
    run.steps["fan"] = map_step
    return run


# --- structure ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_fixture_pages_draw_every_attempt(name: str) -> None:
    run_log = load(name)
    page = render_timeline(run_log)
    attempts = all_attempts(run_log)
    assert attempts
    assert attempt_rects(page) == len(attempts)
    failed = sum(a.status == FAIL for a in attempts)
    assert attempt_rects(page, "fail") == failed
    assert attempt_rects(page, "ok") == len(attempts) - failed
    assert page.startswith("<!DOCTYPE html>")
    assert "no times recorded" not in page.lower()
    svg = chart_svg(page)
    assert len(svg.findall(".//rect[@class='attempt ok']")) == len(attempts) - failed
    # Every bar carries its tooltip.
    for rect in svg.iter("rect"):
        if (rect.get("class") or "").startswith("attempt"):
            assert rect.find("title") is not None


def test_failed_fixture_marks_the_failure() -> None:
    run_log = load("fs-fail")
    page = render_timeline(run_log)
    assert attempt_rects(page, "fail") == 1
    assert "✘" in page
    failed = chart_svg(page).find(".//rect[@class='attempt fail']/title")
    assert failed is not None and failed.text is not None
    assert "boom" in failed.text and "attempt 1" in failed.text
    assert "Call to the function funcs.boom did not succeed." in failed.text
    assert '<span class="badge FAIL">FAIL</span>' in page
    assert "<b>1</b> failed attempts" in page


def test_job_run_is_one_row() -> None:
    page = render_timeline(load("fs-job"))
    assert attempt_rects(page) == 1
    assert ">job<" in page
    assert "<b>0</b> steps" in page


def test_header_counts_and_groups() -> None:
    run_log = load("chunked-map")
    page = render_timeline(run_log)
    assert "<code>chunked-map</code>" in page
    assert "<b>21</b> steps" in page
    assert "<b>6</b> branches" in page
    assert "<b>19</b> attempts" in page
    # The wall time spans the first attempt's start to the last attempt's end.
    attempts = all_attempts(run_log)
    first = min(datetime.fromisoformat(a.start_time) for a in attempts)
    last = max(datetime.fromisoformat(a.end_time) for a in attempts)
    assert f"wall time <b>{format_seconds((last - first).total_seconds())}</b>" in page

    # Branches in the order they started (not their stored order), each a group label.
    def started(branch: BranchLog) -> datetime:
        return min(
            datetime.fromisoformat(a.start_time) for s in branch.steps.values() for a in s.attempts
        )

    in_order = [
        name.rsplit(".", 1)[-1]
        for step in run_log.steps.values()
        for name, _ in sorted(step.branches.items(), key=lambda item: started(item[1]))
    ]
    assert sorted(in_order) == ["1", "2", "3", "4", "branch1", "branch2"]
    branch_labels = re.findall(r'<text class="l branch"[^>]*>▸ ([^<]*)</text>', page)
    assert branch_labels == in_order
    assert re.search(r'class="l group"[^>]*>map_state \[map\]<', page)
    assert page.count('class="span"') == 2
    # Leaf steps of branches are indented below their branch label.
    work_x = re.findall(r'<text class="l step" x="(\d+)"[^>]*>work<', page)
    assert work_x and all(int(x) > 6 for x in work_x)
    # Durations follow their bars when there is room (here there always is).
    notes = re.findall(r'<text class="d[^"]*"[^>]*>', page)
    assert len(notes) == 27 and not any("anchor" in note for note in notes)


def test_page_is_self_contained() -> None:
    for name in FIXTURES:
        page = render_timeline(load(name))
        assert "http:" not in page and "https:" not in page and "//" not in page
        assert "<script" not in page and "<link" not in page and "<img" not in page
        assert "@import" not in page and "src=" not in page
        assert set(re.findall(r"url\([^)]*\)", page)) <= {"url(#hatch)", "url(#zebra)"}


def test_hostile_names_and_messages_are_escaped() -> None:
    run_log = load("fs-fail").model_copy(deep=True)
    run_log.run_id = f"{HOSTILE}&\"run'"
    run_log.tag = HOSTILE
    step = next(iter(run_log.steps.values()))
    step.name = HOSTILE
    step.internal_name = f"{HOSTILE} & 'quotes' \"too\""
    step.attempts[0].status = FAIL
    step.attempts[0].message = f"Traceback: {HOSTILE} </title></rect></svg><b>"
    step.status = "<i>WEIRD</i>"
    page = render_timeline(run_log)
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<i>" not in page
    assert attempt_rects(page) == len(all_attempts(run_log))
    assert attempt_rects(page, "fail") == 2
    svg = chart_svg(page)  # still well-formed: nothing broke out of an element
    titles = [t.text or "" for t in svg.iter("title")]
    assert any(f"Traceback: {HOSTILE} </title></rect></svg><b>" in t for t in titles)
    assert any(t.startswith(f"{HOSTILE} & 'quotes' \"too\"") for t in titles)


def test_control_and_bidi_characters_are_shown_not_acted_on() -> None:
    """A right-to-left override would make the page say something else than the run holds; an
    escape byte is no character a reader can see. The page shows them as the terminal does."""
    run_log = load("fs-fail").model_copy(deep=True)
    run_log.tag = "tag\u202eevil"
    step = next(iter(run_log.steps.values()))
    step.name = step.internal_name = "step\x1b[2J\u2066x"
    failed = next(s for s in run_log.steps.values() if s.status == FAIL)
    failed.attempts[-1].message = "line one\nline\u009btwo"
    page = render_timeline(run_log)
    for raw in ("\u202e", "\u2066", "\x1b", "\u009b"):
        assert raw not in page, repr(raw)
    assert "tag\\u202eevil" in page
    assert "step\\x1b[2J\\u2066x" in page
    titles = [t.text or "" for t in chart_svg(page).iter("title")]
    assert any("line one\nline\\u009btwo" in t for t in titles)


def test_untimed_attempts_are_listed_not_drawn() -> None:
    run = RunLog(run_id="broken", status=FAIL)
    run.steps["good"] = task("good", attempt(0, 1))
    run.steps["no-start"] = task(
        "no-start", StepAttempt(status=FAIL, start_time="", end_time=stamp(BASE, 1))
    )
    run.steps["garbled"] = task(
        "garbled", StepAttempt(status=SUCCESS, start_time="yesterday-ish", end_time="soon")
    )
    run.steps["lost-end"] = task(
        "lost-end", StepAttempt(status=SUCCESS, start_time=stamp(BASE, 0.5), end_time="")
    )
    run.steps["backwards"] = task(
        "backwards",
        StepAttempt(status=SUCCESS, start_time=stamp(BASE, 2), end_time=stamp(BASE, 1)),
    )
    run.steps["tz"] = task(
        "tz",
        StepAttempt(
            status=SUCCESS,
            start_time="2025-06-01T10:00:00.5+00:00",
            end_time="2025-06-01T10:00:01+00:00",
        ),
    )
    page = render_timeline(run)
    assert attempt_rects(page) == 2  # "good" and the one with an offset
    table = page[page.index('<section class="untimed">') :]
    assert "No times recorded (4 attempts)" in table
    for name, why in [
        ("no-start", "no start time"),
        ("garbled", "unreadable start time"),
        ("lost-end", "SUCCESS but no end time"),
        ("backwards", "ends before it starts"),
    ]:
        assert re.search(rf"<td>{re.escape(name)}</td>.*?<td>{re.escape(why)}</td>", table)


def test_running_attempt_reaches_the_last_recorded_time() -> None:
    page = render_timeline(built_run())
    rects = chart_svg(page).findall(".//rect[@class='attempt running']")
    assert len(rects) == 1
    ends = [
        float(r.get("x", "0")) + float(r.get("width", "0"))
        for r in chart_svg(page).iter("rect")
        if (r.get("class") or "").startswith("attempt")
    ]
    running_end = float(rects[0].get("x", "0")) + float(rects[0].get("width", "0"))
    assert running_end == pytest.approx(max(ends), abs=0.2)
    title = rects[0].find("title")
    assert title is not None and "no end time" in (title.text or "")


def test_spans_of_running_branches_reach_the_last_recorded_time() -> None:
    run = RunLog(run_id="live", status=PROCESSING)
    fan = task("fan", step_type="map")
    for index, end in enumerate([5.0, None]):
        name = f"fan.{index}"
        step = task(f"{name}.work", attempt(1.0, end, SUCCESS if end else PROCESSING))
        fan.branches[name] = BranchLog(
            internal_name=name, status=PROCESSING, steps={step.internal_name: step}
        )
    run.steps["fan"] = fan
    run.steps["side"] = task("side", attempt(0.0, 9.0))
    svg = chart_svg(render_timeline(run))
    right = {}
    for rect in svg.iter("rect"):
        title = rect.find("title")
        if title is not None and title.text:
            owner = title.text.split(" ·")[0]
            right[owner] = float(rect.get("x", "0")) + float(rect.get("width", "0"))
    assert right["fan"] == pytest.approx(right["side"], abs=0.2)
    assert right["fan.1"] == pytest.approx(right["side"], abs=0.2)
    assert right["fan.0"] < right["side"] - 100
    notes = [t.text for t in svg.iter("text") if t.get("class") == "d"]
    assert notes.count("running") == 3  # the map, its running branch and that branch's step


def test_run_without_attempts_says_so() -> None:
    assert "has no step attempts" in render_timeline(RunLog(run_id="empty", status="CREATED"))
    run = RunLog(run_id="created", status="CREATED")
    run.steps["first"] = task("first")
    page = render_timeline(run)
    assert "has no step attempts" in page and "<svg" not in page
    run.steps["first"].attempts.append(StepAttempt(start_time="", end_time=""))
    page = render_timeline(run)
    assert "None of the 1 attempts" in page and "No times recorded (1 attempts)" in page


def test_axis_ticks_switch_to_minutes_for_long_runs() -> None:
    run = RunLog(run_id="long", status=SUCCESS)
    run.steps["slow"] = task("slow", attempt(0, 100, FAIL), attempt(100, 3 * 3600, SUCCESS, 2))
    run.steps["quick"] = task("quick", attempt(10, 12))
    page = render_timeline(run)
    labels = re.findall(r'<text class="tl"[^>]*>([^<]*)</text>', page)
    assert labels[:3] == ["0m", "30m", "1h00"]
    # The slow step spans the whole axis and its note is too long for the margin after it: it
    # is written inside the bar, not cut off by the chart's edge or pushed over the labels.
    assert re.search(r'<text class="d in"[^>]*>180m00.0s · 2 attempts</text>', page)
    short = render_timeline(built_run())
    labels = re.findall(r'<text class="tl"[^>]*>([^<]*)</text>', short)
    assert labels[:3] == ["0s", "2s", "4s"]


def test_two_thousand_branches_render_fast_and_small() -> None:
    run = big_run(2000)
    started = time.perf_counter()
    page = render_timeline(run)
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0, f"rendering took {elapsed:.2f}s"
    assert len(page.encode()) < 4_000_000, f"{len(page.encode())} bytes"
    assert attempt_rects(page) == 6000
    assert attempt_rects(page, "fail") == 21
    rows = 1 + 2000 + 6000
    assert f'height="{rows * 14 + 4}"' in page


# --- in a real browser ---------------------------------------------------------------------


def chromium_binary() -> str:
    """Chromium from scripts/chromium.sh: skipped on a developer machine without one, a
    failure in CI (CI=true), where every integration test must run."""
    in_ci = os.environ.get("CI") == "true"
    try:
        found = subprocess.run(
            ["bash", str(CHROMIUM_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        problem = f"scripts/chromium.sh did not run: {exc}"
    else:
        binary = found.stdout.strip().splitlines()[-1] if found.stdout.strip() else ""
        if found.returncode == 0 and binary and os.access(binary, os.X_OK):
            return binary
        problem = f"scripts/chromium.sh exited {found.returncode}: {found.stderr.strip()}"
    if in_ci:
        pytest.fail(f"Chromium is required in CI: {problem}")
    pytest.skip(f"no headless Chromium for the screenshot test: {problem}")


def run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--window-size=1400,900",
        *args,
    ]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        pytest.fail(f"chromium timed out after {CHROMIUM_TIMEOUT}s: {command}\n{stderr}")
    if done.returncode != 0:
        pytest.fail(f"chromium exited {done.returncode}: {command}\n{done.stderr}")
    return done


def colour_count(image: Image.Image, hex_colour: str, tolerance: int = 6) -> int:
    """Pixels within ``tolerance`` (per channel) of a colour: bars are solid fills, so their
    pixels are exact but for colour management rounding."""
    target = tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    colours = image.convert("RGB").getcolors(maxcolors=1 << 24) or []
    return sum(
        count
        for count, rgb in colours
        if isinstance(rgb, tuple)
        and all(abs(c - t) <= tolerance for c, t in zip(rgb, target, strict=True))
    )


def screenshot(binary: str, page: str, folder: Path) -> tuple[Image.Image, str]:
    """The page rendered by Chromium: its screenshot and its DOM after parsing."""
    folder.mkdir(parents=True, exist_ok=True)
    html_file = folder / "timeline.html"
    html_file.write_text(page, encoding="utf-8")
    shot = folder / "shot.png"
    url = html_file.resolve().as_uri()
    done = run_chromium(binary, folder / "profile", f"--screenshot={shot}", url)
    assert shot.is_file() and shot.stat().st_size > 0, f"no screenshot written\n{done.stderr}"
    dom = run_chromium(binary, folder / "profile", "--dump-dom", url).stdout
    image = Image.open(shot)
    image.load()
    return image, dom


@pytest.fixture(scope="module")
def chromium() -> str:
    return chromium_binary()


def test_browser_draws_success_failure_and_running_bars(chromium: str, tmp_path: Path) -> None:
    run = built_run()
    page = render_timeline(run)
    image, dom = screenshot(chromium, page, tmp_path / "built")
    assert image.size == (1400, 900)
    assert '<svg class="chart"' in dom
    assert attempt_rects(dom) == len(all_attempts(run)) == 19
    assert attempt_rects(dom, "fail") == 1
    ok, fail, running = (colour_count(image, c) for c in (OK_FILL, FAIL_FILL, RUN_FILL))
    # The legend's swatches are about 150 pixels each; the bars are thousands.
    assert ok > 5000, f"{ok} success-colour pixels"
    assert fail > 1000, f"{fail} failure-colour pixels"
    assert running > 300, f"{running} running-colour pixels"


def test_browser_draws_the_runnable_fixture(chromium: str, tmp_path: Path) -> None:
    run_log = load("chunked-map")
    image, dom = screenshot(chromium, render_timeline(run_log), tmp_path / "fixture")
    assert '<svg class="chart"' in dom and '<svg class="axis"' in dom
    assert attempt_rects(dom) == len(all_attempts(run_log))
    ok, fail = colour_count(image, OK_FILL), colour_count(image, FAIL_FILL)
    assert ok > 500, f"{ok} success-colour pixels"
    # Nothing failed: only the legend's swatch has the failure colour.
    assert 0 < fail < 400, f"{fail} failure-colour pixels"
