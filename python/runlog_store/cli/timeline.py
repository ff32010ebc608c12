"""A run drawn on a time axis, as one self-contained HTML page.

The tree of :mod:`runlog_store.cli.render` says what ran and how it ended; it cannot show what ran
*at the same time* or which branch held the others up. This page draws every step attempt as a
bar against the run's clock, one row per step, grouped by branch, so parallelism, stragglers and
retries are visible at a glance.

The page must open anywhere a run log can be copied to (a CI artefact, a mail attachment, an
air-gapped machine), so it loads nothing: the CSS is inline and the chart is static SVG
generated here, with no script. Everything taken from the run log is escaped, because step
names, error messages and run ids are user-controlled text.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from runlog_store.cli.render import format_seconds, printable
from runlog_store.models import FAIL, SUCCESS, BranchLog, RunLog, StepAttempt, StepLog
from runlog_store.ops.runs import parse_time


def escape(text: str) -> str:
    """A stored string as page text: control and bidi characters shown as the terminal output
    shows them (a right-to-left override would reorder what the reader sees), then HTML-escaped."""
    return html.escape(printable(text, lines=True))


# Geometry, in CSS pixels. Rows are small and fixed so thousands of branches stay a scroll, not
# a wall; labels are monospace so their width is known here and they never run into the bars.
ROW_H = 14
BAR_H = 10
LABEL_FONT = 11
CHAR_W = LABEL_FONT * 0.602  # advance of DejaVu Sans Mono (and most monospace faces)
INDENT = 12
LABEL_MIN, LABEL_MAX = 160, 420
NOTE_FONT = 9
NOTE_CHAR_W = NOTE_FONT * 0.602
GAP = 14  # between the label column and the chart: room for a failure mark left of a bar
PAGE_W = 1320  # fits a 1400px window next to a scrollbar
CHART_MIN = 560
RIGHT = 96  # after the chart: the duration text of a bar ending at the run's end
AXIS_H = 26
MIN_BAR = 2.0  # a 10µs step must still be visible and hoverable
MESSAGE_MAX = 1200  # tooltips keep the start of a long traceback, not all of it

# Exact fills the screenshot test looks for; keep them distinct from every other colour used.
OK_FILL = "#1f9d55"
FAIL_FILL = "#d62728"
RUN_FILL = "#f2c200"
RUN_STRIPE = "#b58900"

Kind = Literal["job", "group", "branch", "step"]
_Window = tuple[datetime, datetime]


@dataclass
class _Attempt:
    """An attempt with its times parsed once; ``end`` None means still running."""

    owner: str
    attempt: StepAttempt
    start: datetime
    end: datetime | None

    @property
    def css(self) -> str:
        if self.attempt.status == FAIL:
            return "fail"
        if self.attempt.status == SUCCESS and self.end is not None:
            return "ok"
        return "running"


@dataclass
class _Untimed:
    owner: str
    attempt: StepAttempt
    problem: str


@dataclass
class _Row:
    kind: Kind
    depth: int
    label: str
    name: str
    status: str
    step_type: str = ""
    attempts: list[_Attempt] = field(default_factory=list)
    window: _Window | None = None
    n_attempts: int = 0
    # Something in it has no end yet: its span reaches the run's last time, like the bar.
    running: bool = False


@dataclass
class _Collected:
    """Everything the drawing needs, gathered in one walk of the run."""

    rows: list[_Row] = field(default_factory=list)
    untimed: list[_Untimed] = field(default_factory=list)
    steps: int = 0
    branches: int = 0
    attempts: int = 0
    failed: int = 0


def _merge(*windows: _Window | None) -> _Window | None:
    known = [w for w in windows if w is not None]
    if not known:
        return None
    return min(w[0] for w in known), max(w[1] for w in known)


def _relative(name: str, parent: str) -> str:
    """The part of a dot path below its parent: the map value of a branch, a step's own name."""
    prefix = f"{parent}."
    return name[len(prefix) :] if parent and name.startswith(prefix) else name


def _attempts(
    owner: str, attempts: list[StepAttempt], out: _Collected
) -> tuple[list[_Attempt], _Window | None]:
    """Attempts that can be drawn, and their window; the others go to the untimed table.

    An attempt without an end is drawn open-ended only while it can still be running: a
    finished (SUCCESS or FAIL) attempt that lost its end time would otherwise look slow.
    """
    drawn: list[_Attempt] = []
    for attempt in attempts:
        out.attempts += 1
        out.failed += attempt.status == FAIL
        # parse_time makes an aware time (a hand-edited or foreign log) naive local like the
        # rest, so mixed logs compare instead of raising.
        start, end = parse_time(attempt.start_time), parse_time(attempt.end_time)
        problem = None
        if start is None:
            problem = "no start time" if not attempt.start_time else "unreadable start time"
        elif attempt.end_time and end is None:
            problem = "unreadable end time"
        elif end is None and attempt.status in (SUCCESS, FAIL):
            problem = f"{attempt.status} but no end time"
        elif end is not None and end < start:
            problem = "ends before it starts"
        if problem is not None or start is None:
            out.untimed.append(_Untimed(owner, attempt, problem or "no start time"))
            continue
        drawn.append(_Attempt(owner, attempt, start, end))
    window = _merge(*((a.start, a.end or a.start) for a in drawn))
    return drawn, window


def _ordered(parts: list[tuple[_Window | None, list[_Row]]]) -> list[_Row]:
    """Siblings in the order they ran; stores do not keep branches in run order, and a
    sibling without times keeps its place among the others without times, after them."""
    parts.sort(key=lambda part: (part[0] is None, part[0][0] if part[0] else datetime.min))
    return [row for _, rows in parts for row in rows]


def _step(
    step: StepLog, parent: str, depth: int, out: _Collected
) -> tuple[_Window | None, list[_Row]]:
    out.steps += 1
    drawn, window = _attempts(step.internal_name, step.attempts, out)
    row = _Row(
        kind="group" if step.branches else "step",
        depth=depth,
        label=_relative(step.internal_name, parent) or step.name,
        name=step.internal_name,
        status=step.status,
        step_type=step.step_type,
        attempts=drawn,
        n_attempts=len(step.attempts),
    )
    parts = [_branch(b, step.internal_name, depth + 1, out) for b in step.branches.values()]
    out.branches += len(parts)
    row.window = _merge(window, *(w for w, _ in parts))
    row.running = any(a.end is None for a in drawn) or any(rows[0].running for _, rows in parts)
    return row.window, [row, *_ordered(parts)]


def _branch(
    branch: BranchLog, parent: str, depth: int, out: _Collected
) -> tuple[_Window | None, list[_Row]]:
    parts = [_step(s, branch.internal_name, depth + 1, out) for s in branch.steps.values()]
    row = _Row(
        kind="branch",
        depth=depth,
        label=_relative(branch.internal_name, parent),
        name=branch.internal_name,
        status=branch.status,
        window=_merge(*(w for w, _ in parts)),
        running=any(rows[0].running for _, rows in parts),
    )
    return row.window, [row, *_ordered(parts)]


def _collect(run_log: RunLog) -> _Collected:
    out = _Collected()
    if run_log.job is not None:
        drawn, window = _attempts("job", run_log.job.attempts, out)
        out.rows.append(
            _Row(
                kind="job",
                depth=0,
                label="job",
                name="job",
                status=run_log.job.status,
                attempts=drawn,
                window=window,
                n_attempts=len(run_log.job.attempts),
            )
        )
    # Root steps are stored in the order the run created them; keep it.
    for step in run_log.steps.values():
        out.rows.extend(_step(step, "", 0, out)[1])
    return out


# --- drawing ---------------------------------------------------------------------------------


class _Scale:
    """Seconds since the run's start to x pixels in the chart SVG."""

    def __init__(self, t0: datetime, t1: datetime, x0: float, width: float) -> None:
        self.t0, self.x0, self.width = t0, x0, width
        # An instantaneous run still needs a non-zero span to divide by.
        self.total = max((t1 - t0).total_seconds(), 1e-3)

    def seconds(self, moment: datetime) -> float:
        return (moment - self.t0).total_seconds()

    def x(self, moment: datetime) -> float:
        return self.x0 + self.seconds(moment) / self.total * self.width


def _tick_step(total: float) -> float:
    """A round tick interval giving about eight ticks: 1-2-5 steps below ten seconds, clock
    steps (15s, 30s, 1m, 5m, 1h, ...) above."""
    raw = total / 8
    if raw >= 10:
        for step in (10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200):
            if step >= raw:
                return float(step)
        return 86400.0 * math.ceil(raw / 86400)
    base = 10.0 ** math.floor(math.log10(raw))
    return next(m * base for m in (1, 2, 5, 10) if m * base >= raw * (1 - 1e-9))


def _tick_label(seconds: float, step: float) -> str:
    if step >= 60:
        minutes = round(seconds / 60)
        hours, rest = divmod(minutes, 60)
        return f"{hours}h{rest:02d}" if hours else f"{minutes}m"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return f"{seconds:.{decimals}f}s"


def _duration(seconds: float) -> str:
    """Like the tree's durations, but a sub-millisecond stub or success step (they are most
    of a run's rows) reads as microseconds instead of a misleading ``0ms``."""
    return f"{seconds * 1e6:.0f}µs" if seconds < 1e-3 else format_seconds(seconds)


def _attempt_title(item: _Attempt, run_end: datetime) -> str:
    a = item.attempt
    lines = [f"{item.owner} · attempt {a.attempt_number} · {a.status}", f"start {item.start}"]
    if item.end is not None:
        lines.append(f"end {item.end}")
        lines.append(f"duration {_duration((item.end - item.start).total_seconds())}")
    else:
        running = _duration((run_end - item.start).total_seconds())
        lines.append(f"no end time: running for at least {running}")
    if a.status == FAIL and a.message.strip():
        message = a.message.strip()
        if len(message) > MESSAGE_MAX:
            message = message[:MESSAGE_MAX] + " …"
        lines.append(f"error: {message}")
    return escape("\n".join(lines))


def _fit(text: str, room: float) -> tuple[str, bool]:
    """The label cut to the width the column has for it (monospace, so counting is exact)."""
    chars = max(int(room / CHAR_W), 2)
    return (text, False) if len(text) <= chars else (text[: chars - 1] + "…", True)


def _note(text: str, bar_start: float, bar_end: float, y: int, limits: tuple[float, float]) -> str:
    """A row's duration: after its bars; before them when a bar ends at the run's end and the
    text would be cut off by the chart's edge; inside the bar when it spans the whole run."""
    left, right = limits
    need = len(text) * NOTE_CHAR_W
    if bar_end + 4 + need <= right - 2:
        return f'<text class="d" x="{bar_end + 4:.1f}" y="{y + 10}">{text}</text>'
    if bar_start - 4 - need >= left:
        return (
            f'<text class="d" x="{bar_start - 4:.1f}" y="{y + 10}" text-anchor="end">{text}</text>'
        )
    x = bar_end - 4
    return (
        f'<rect class="nb" x="{x - need - 2:.1f}" y="{y + 2}" width="{need + 4:.1f}" height="10"/>'
        f'<text class="d in" x="{x:.1f}" y="{y + 10}" text-anchor="end">{text}</text>'
    )


def _svg_rows(
    rows: list[_Row], scale: _Scale, run_end: datetime, label_w: float, width: float
) -> Iterable[str]:
    for index, row in enumerate(rows):
        y = index * ROW_H
        indent = 6 + row.depth * INDENT
        text = row.label
        if row.kind == "group":
            text = f"{row.label} [{row.step_type}]"
        elif row.kind == "branch":
            text = f"▸ {row.label}"
        shown, cut = _fit(text, label_w - indent - 6)
        css = f"l {row.kind}" + (" bad" if row.status == FAIL else "")
        full = f"<title>{escape(row.name)}</title>" if cut else ""
        yield f'<text class="{css}" x="{indent}" y="{y + 11}">{full}{escape(shown)}</text>'

        if row.kind in ("group", "branch") and row.window is not None and not row.attempts:
            start, end = row.window[0], run_end if row.running else row.window[1]
            x1, x2 = scale.x(start), scale.x(end)
            seconds = (end - start).total_seconds()
            still = " (still running)" if row.running else ""
            tip = escape(
                f"{row.name} · {row.kind if row.kind == 'branch' else row.step_type} · "
                f"{row.status}\nstart {start}\n{'last time' if row.running else 'end'} {end}\n"
                f"duration {_duration(seconds)}{still}"
            )
            span = "span" if row.kind == "group" else "bspan"
            if row.status == FAIL:
                span += " bad"
            height = 4 if row.kind == "group" else 2
            yield (
                f'<rect class="{span}" x="{x1:.1f}" y="{y + (ROW_H - height) / 2:.0f}" '
                f'width="{max(x2 - x1, MIN_BAR):.1f}" height="{height}"><title>{tip}</title></rect>'
            )
            note = "running" if row.running else _duration(seconds)
            yield _note(note, x1, max(x2, x1 + MIN_BAR), y, (scale.x0, width))
            continue

        last = 0.0
        for item in row.attempts:
            x1 = scale.x(item.start)
            x2 = scale.x(item.end if item.end is not None else run_end)
            bar_w = max(x2 - x1, MIN_BAR)
            last = max(last, x1 + bar_w)
            yield (
                f'<rect class="attempt {item.css}" x="{x1:.1f}" y="{y + (ROW_H - BAR_H) // 2}" '
                f'width="{bar_w:.1f}" height="{BAR_H}">'
                f"<title>{_attempt_title(item, run_end)}</title></rect>"
            )
            if item.css == "fail":
                if bar_w >= 12:
                    yield f'<text class="xm in" x="{x1 + 2:.1f}" y="{y + 11}">✘</text>'
                else:
                    yield f'<text class="xm" x="{x1 - 1:.1f}" y="{y + 11}">✘</text>'
        if row.attempts:
            first = min(a.start for a in row.attempts)
            ends = [a.end for a in row.attempts]
            if any(e is None for e in ends):
                note = "running"
            else:
                done = max(e for e in ends if e is not None)
                note = _duration((done - first).total_seconds())
            if row.n_attempts > 1:
                note += f" · {row.n_attempts} attempts"
            yield _note(note, scale.x(first), last, y, (scale.x0, width))
        elif row.kind in ("step", "job"):
            yield (
                f'<text class="d" x="{scale.x0 + 2:.1f}" y="{y + 10}">no timed attempts '
                f"({escape(row.status)})</text>"
            )


def _axis(scale: _Scale, label_w: float, width: float) -> str:
    step = _tick_step(scale.total)
    parts = [
        f'<svg class="axis" width="{width:.0f}" height="{AXIS_H}" '
        f'viewBox="0 0 {width:.0f} {AXIS_H}">',
        f'<text class="cap" x="{label_w - 6:.0f}" y="16" text-anchor="end">'
        f"time since run start</text>",
        f'<line class="base" x1="{scale.x0:.1f}" y1="{AXIS_H - 1}" '
        f'x2="{scale.x0 + scale.width:.1f}" y2="{AXIS_H - 1}"/>',
    ]
    count = int(scale.total / step + 1e-9)
    for k in range(count + 1):
        seconds = k * step
        x = scale.x0 + seconds / scale.total * scale.width
        anchor = "start" if k == 0 else "middle"
        parts.append(
            f'<line class="tk" x1="{x:.1f}" y1="{AXIS_H - 6}" x2="{x:.1f}" y2="{AXIS_H - 1}"/>'
            f'<text class="tl" x="{x:.1f}" y="{AXIS_H - 10}" text-anchor="{anchor}">'
            f"{_tick_label(seconds, step)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _chart(rows: list[_Row], scale: _Scale, run_end: datetime, label_w: float, width: float) -> str:
    height = len(rows) * ROW_H + 4
    step = _tick_step(scale.total)
    grid = [
        f'<line class="grid" x1="{scale.x0 + k * step / scale.total * scale.width:.1f}" y1="0" '
        f'x2="{scale.x0 + k * step / scale.total * scale.width:.1f}" y2="{height}"/>'
        for k in range(int(scale.total / step + 1e-9) + 1)
    ]
    return "".join(
        [
            f'<svg class="chart" width="{width:.0f}" height="{height}" '
            f'viewBox="0 0 {width:.0f} {height}">',
            "<defs>"
            f'<pattern id="zebra" width="8" height="{2 * ROW_H}" patternUnits="userSpaceOnUse">'
            f'<rect width="8" height="{ROW_H}" fill="#f3f5f8"/></pattern>'
            '<pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
            'patternTransform="rotate(45)">'
            f'<rect width="6" height="6" fill="{RUN_FILL}"/>'
            f'<rect width="2" height="6" fill="{RUN_STRIPE}"/></pattern>'
            "</defs>",
            f'<rect x="0" y="0" width="{width:.0f}" height="{len(rows) * ROW_H}" '
            'fill="url(#zebra)"/>',
            f'<line class="sep" x1="{label_w:.0f}" y1="0" x2="{label_w:.0f}" y2="{height}"/>',
            *grid,
            *_svg_rows(rows, scale, run_end, label_w, width),
            "</svg>",
        ]
    )


def _untimed_table(untimed: list[_Untimed]) -> str:
    if not untimed:
        return ""
    rows = "".join(
        f"<tr><td>{escape(u.owner)}</td><td>{u.attempt.attempt_number}</td>"
        f'<td class="st {escape(u.attempt.status)}">{escape(u.attempt.status)}</td>'
        f"<td>{escape(u.attempt.start_time) or '—'}</td>"
        f"<td>{escape(u.attempt.end_time) or '—'}</td><td>{escape(u.problem)}</td></tr>"
        for u in untimed
    )
    return (
        f'<section class="untimed"><h2>No times recorded ({len(untimed)} attempts)</h2>'
        "<p>These attempts cannot be placed on the time axis and are not drawn above.</p>"
        "<table><thead><tr><th>step</th><th>attempt</th><th>status</th><th>start</th>"
        f"<th>end</th><th>why</th></tr></thead><tbody>{rows}</tbody></table></section>"
    )


# The standalone page's own rules; the chart's (_CHART_CSS) are also served by ``runlog serve``.
_PAGE_CSS = """
body { font: 13px/1.4 "DejaVu Sans", system-ui, sans-serif; color: #1b1f24; margin: 16px 20px;
  background: #fff; }
h1 { font-size: 18px; margin: 0 0 6px; }
h1 code { font: inherit; font-family: "DejaVu Sans Mono", monospace; }
h2 { font-size: 14px; margin: 18px 0 4px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px;
  vertical-align: 2px; color: #fff; background: #6a737d; }
.badge.SUCCESS { background: #157a41; } .badge.FAIL { background: #b31d28; }
.badge.PROCESSING { background: #9a7400; }
.facts { display: flex; flex-wrap: wrap; gap: 4px 22px; margin: 0 0 8px; color: #444d56; }
.facts b { color: #1b1f24; font-weight: 600; } .facts .bad { color: #b31d28; }
"""

_CHART_CSS = f"""\
.legend {{ display: flex; flex-wrap: wrap; gap: 4px 18px; align-items: center;
  margin: 0 0 6px; font-size: 12px; color: #444d56; }}
.sw {{ display: inline-block; width: 18px; height: 8px; vertical-align: 0;
  margin-right: 5px; border: 1px solid rgba(0,0,0,.25); }}
.sw.ok {{ background: {OK_FILL}; }} .sw.fail {{ background: {FAIL_FILL}; }}
.sw.running {{ background: repeating-linear-gradient(45deg, {RUN_STRIPE} 0 2px,
  {RUN_FILL} 2px 6px); }}
.sw.span {{ height: 3px; background: #57606a; border: 0; vertical-align: 2px; }}
.sw.bspan {{ height: 2px; background: #8fa8c8; border: 0; vertical-align: 2px; }}
.axis-wrap {{ position: sticky; top: 0; background: #fff; z-index: 1;
  border-bottom: 1px solid #d0d7de; }}
svg {{ display: block; }}
svg text {{ font-family: "DejaVu Sans Mono", monospace; font-size: {LABEL_FONT}px;
  fill: #1b1f24; }}
.axis .tl {{ font-size: 10px; fill: #444d56; }} .axis .cap {{ font-size: 10px; fill: #6a737d; }}
.axis .tk, .axis .base {{ stroke: #8c959f; }}
.chart .grid {{ stroke: #e1e4e8; }} .chart .sep {{ stroke: #d0d7de; }}
.chart .l.group {{ font-weight: bold; }} .chart .l.branch {{ fill: #0b5cad; }}
.chart .l.bad {{ fill: #b31d28; }}
.chart .d {{ font-size: {NOTE_FONT}px; fill: #6a737d; }}
.chart .d.in {{ fill: #1b1f24; }} .chart .nb {{ fill: #fff; opacity: .85; }}
.attempt.ok {{ fill: {OK_FILL}; }} .attempt.fail {{ fill: {FAIL_FILL}; }}
.attempt.running {{ fill: url(#hatch); }}
.attempt:hover {{ stroke: #000; stroke-width: 1; }}
.span {{ fill: #57606a; }} .bspan {{ fill: #8fa8c8; }} .span.bad, .bspan.bad {{ fill: #f09a9b; }}
.xm {{ fill: {FAIL_FILL}; font-size: 10px; font-weight: bold; text-anchor: end;
  font-family: "DejaVu Sans", sans-serif; }}
.xm.in {{ fill: #fff; text-anchor: start; }}
.empty {{ padding: 24px; background: #f6f8fa; border: 1px dashed #d0d7de; color: #444d56; }}
"""


def _table_css(scope: str) -> str:
    """The rules of the table of untimed attempts, under ``scope`` (a selector and a space)."""
    return (
        f"{scope}table {{ border-collapse: collapse; font-size: 12px; }}\n"
        f"{scope}th, {scope}td {{ border: 1px solid #d0d7de; padding: 2px 8px; "
        "text-align: left; }\n"
        f'{scope}td {{ font-family: "DejaVu Sans Mono", monospace; }} '
        f"{scope}th {{ background: #f6f8fa; }}\n"
        f"{scope}td.st.FAIL {{ color: #b31d28; }}\n"
    )


_CSS = _PAGE_CSS + _CHART_CSS + _table_css("")

_LEGEND = (
    '<div class="legend">'
    '<span><span class="sw ok"></span>attempt succeeded</span>'
    '<span><span class="sw fail"></span>attempt failed ✘</span>'
    '<span><span class="sw running"></span>running / no end time (drawn to the last time '
    "recorded)</span>"
    '<span><span class="sw span"></span>map / parallel step: its branches\' window</span>'
    '<span><span class="sw bspan"></span>branch window</span>'
    "<span>hover a bar for times and errors</span>"
    "</div>"
)


def _header(run_log: RunLog, data: _Collected, window: _Window | None) -> str:
    status = escape(run_log.status)
    facts = [f"tag <b>{escape(run_log.tag)}</b>" if run_log.tag else "no tag"]
    if window is not None:
        wall = _duration((window[1] - window[0]).total_seconds())
        facts.append(f"started <b>{window[0]}</b>")
        facts.append(f"wall time <b>{wall}</b>")
    facts.append(f"<b>{data.steps}</b> steps")
    facts.append(f"<b>{data.branches}</b> branches")
    facts.append(f"<b>{data.attempts}</b> attempts")
    bad = ' class="bad"' if data.failed else ""
    facts.append(f"<span{bad}><b>{data.failed}</b> failed attempts</span>")
    if run_log.job is not None:
        facts.append("job run")
    return (
        f"<header><h1>Run <code>{escape(run_log.run_id)}</code> "
        f'<span class="badge {status}">{status}</span></h1>'
        f'<div class="facts">{"".join(f"<span>{f}</span>" for f in facts)}</div></header>'
    )


def render_timeline(run_log: RunLog) -> str:
    """The run as a standalone HTML page: every attempt a bar on the run's time axis.

    Rows follow the run: a map or parallel step is a header row spanning its branches, each
    branch a labelled group of its steps, siblings ordered by when they started. Attempts whose
    times cannot be read are listed under the chart rather than guessed at.
    """
    data = _collect(run_log)
    window = _window(data)
    page_title = escape(f"Timeline of run {run_log.run_id}")
    head = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{page_title}</title><style>{_CSS}</style></head><body>"
        + _header(run_log, data, window)
    )
    return f"{head}{_drawing(data, window)}</body></html>\n"


def timeline_parts(run_log: RunLog) -> tuple[str, str]:
    """The chart of :func:`render_timeline` for a page of its own: its CSS (served as a file by
    ``runlog serve``, whose pages allow no inline style) and the HTML of the legend, the axis,
    the chart and the table of untimed attempts, without the standalone page's header."""
    data = _collect(run_log)
    return timeline_css(), _drawing(data, _window(data))


def timeline_css() -> str:
    """The CSS the chart of :func:`timeline_parts` needs, its tables' rules kept to the chart
    (``.untimed``) so that they do not restyle the tables of the page around it."""
    return _CHART_CSS + _table_css(".untimed ")


def _window(data: _Collected) -> _Window | None:
    drawn = [a for row in data.rows for a in row.attempts]
    return _merge(*((a.start, a.end or a.start) for a in drawn))


def _drawing(data: _Collected, window: _Window | None) -> str:
    """The legend, axis and chart of the run's attempts, or why there is nothing to draw; then
    the attempts without times."""
    if window is None:
        if data.attempts == 0:
            body = '<p class="empty">This run has no step attempts: there is nothing to draw.</p>'
        else:
            body = (
                f'<p class="empty">None of the {data.attempts} attempts of this run has a '
                "usable start time: there is nothing to place on a time axis.</p>"
            )
        return body + _untimed_table(data.untimed)

    longest = max(
        row.depth * INDENT
        + (len(row.label) + (len(row.step_type) + 3 if row.kind == "group" else 2)) * CHAR_W
        for row in data.rows
    )
    label_w = min(max(longest + 14, LABEL_MIN), LABEL_MAX)
    chart_w = max(PAGE_W - label_w - GAP - RIGHT, CHART_MIN)
    width = label_w + GAP + chart_w + RIGHT
    scale = _Scale(window[0], window[1], label_w + GAP, chart_w)
    return "".join(
        [
            _LEGEND,
            f'<div class="axis-wrap">{_axis(scale, label_w, width)}</div>',
            _chart(data.rows, scale, window[1], label_w, width),
            _untimed_table(data.untimed),
        ]
    )


__all__ = ["render_timeline", "timeline_css", "timeline_parts"]
