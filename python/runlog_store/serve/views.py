"""What the pages of ``runlog serve`` show, read from the library alone: a page of a search
(``search_runs``), a run read whole (``get_run_log_by_id``), a comparison (``ops.diff``) and the
state of a run still being written, which the live page is sent as it changes.

These functions block (they read the store); the application calls them in a worker thread.
Strings are left as the run stored them: the templates escape them and make their control
characters visible (the ``shown`` filter).
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

from runlog_store.cli.render import format_seconds, printable
from runlog_store.exceptions import RunLogStoreError
from runlog_store.models import FAIL, SUCCESS, BranchLog, DataCatalog, RunLog, StepAttempt, StepLog
from runlog_store.ops.columns import MISSING, Column, ColumnError, parse_columns
from runlog_store.ops.columns import column_value as run_column_value
from runlog_store.ops.runs import RunSummary, describe_code_identities, parse_time
from runlog_store.search.query import FilterSyntaxError, with_shorthands
from runlog_store.stores.base import MAX_PAGE_SIZE, BaseRunLogStore

# A run has ended when it has one of these statuses; a live page stops following it then.
ENDED = (SUCCESS, FAIL)
# Statuses with a colour and a mark of their own (style.css); any other is drawn as "other".
KNOWN_STATUSES = ("SUCCESS", "FAIL", "PROCESSING", "CREATED", "TRIGGERED", "UNREADABLE")
# The runs of a page of the runs page, unless the form asks for another number.
PAGE_SIZE = 50
# Branches of one step drawn whole (failed ones first); the others are one line each, so that
# a map of a thousand branches is a page a browser draws at once.
DETAILED_BRANCHES = 20
# Catalog entries drawn per step and for the run: a step after a map may record one per branch.
CATALOG_ROWS = 50
# A run of more rows (steps and branches at every depth) than this has its timeline on a page
# of its own: a chart of thousands of rows doubles the time the run's page takes to draw.
TIMELINE_ROWS = 2000


def status_class(status: str) -> str:
    """The CSS class of a status: ``status-FAIL``, or ``status-other`` for one we do not know
    (a stored status is any string, and must not become any class)."""
    return f"status-{status if status in KNOWN_STATUSES else 'other'}"


def shown(value: object) -> str:
    """A stored string as a page shows it: control and bidi characters written out as
    ``runlog`` writes them on a terminal (escaping for HTML is the template's)."""
    return printable(str(value))


def utc(moment: datetime | str | None) -> datetime | None:
    """A stored time (naive local, as runnable writes it) as an aware UTC time."""
    parsed = parse_time(moment) if not isinstance(moment, datetime) else moment
    if parsed is None:
        return None
    return parsed.astimezone(timezone.utc)


def _value_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return ""
    return format_seconds(max((end - start).total_seconds(), 0.0))


# --- the runs page ----------------------------------------------------------------------------


@dataclass
class RunsForm:
    """The search form as typed: every field kept as text to be shown back."""

    filter: str = ""
    order_by: str = ""
    columns: str = ""
    max_results: str = ""
    status: str = ""
    tag: str = ""
    since: str = ""
    page_token: str = ""
    first: int = 1

    def page_size(self) -> int:
        text = self.max_results.strip()
        if not text:
            return PAGE_SIZE
        if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE_SIZE:
            raise FormError(f"Page size must be a whole number from 1 to {MAX_PAGE_SIZE:,}.")
        return int(text)

    def query(self, **changes: str | int) -> str:
        """The query string of this search, with ``changes``; empty fields left out."""
        fields = {
            "filter": self.filter,
            "order_by": self.order_by,
            "columns": self.columns,
            "max_results": self.max_results,
            "status": self.status,
            "tag": self.tag,
            "since": self.since,
            **{k: str(v) for k, v in changes.items()},
        }
        return urlencode({k: v for k, v in fields.items() if v})


class FormError(Exception):
    """What is wrong with the search form: a sentence, and for a filter or an ordering that
    cannot be read, the text with a caret under the column the parser stopped at."""

    def __init__(self, message: str, pointer: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.pointer = pointer


def _checked(text: str) -> None:
    """Raise the parser's error of a filter as typed, with its column pointed at."""
    from runlog_store.search.query import parse_filter

    try:
        parse_filter(text)
    except FilterSyntaxError as exc:
        raise FormError(str(exc), _pointer(exc)) from None


def _pointer(exc: FilterSyntaxError) -> str:
    # The text on one line, as the message quotes it, and a caret under the column (1-based).
    line = exc.text.replace("\n", " ").replace("\r", " ").replace("\t", " ")
    return f"{line}\n{' ' * max(exc.column - 1, 0)}^"


def _columns(text: str) -> list[Column]:
    """The attributes of the Columns field, each read as the filter language reads it (as
    ``runlog list --columns`` reads them)."""
    try:
        return parse_columns(text)
    except ColumnError as exc:
        raise FormError(f"Columns: {exc}") from None


def column_value(run: RunSummary, column: Column) -> str:
    """A run's value of an added column as text; "-" when it has none."""
    value = run_column_value(run, column)
    if value is MISSING:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return _value_text(value)


def _search_filter(form: RunsForm) -> str | None:
    """The filter and the shorthands (status, tag, since) as one filter, as ``runlog list``
    combines them."""
    from runlog_store.ops.runs import parse_age, parse_status

    try:
        status = parse_status(form.status.strip(), "status") if form.status.strip() else None
        age = parse_age(form.since.strip(), "since") if form.since.strip() else None
    except RunLogStoreError as exc:
        raise FormError(str(exc)) from None
    return with_shorthands(form.filter, status, form.tag or None, age)


@dataclass
class RunsPage:
    form: RunsForm
    runs: list[RunSummary] = field(default_factory=list)
    columns: list[Column] = field(default_factory=list)
    next_query: str | None = None
    layouts: bool = False
    error: FormError | None = None

    @property
    def last(self) -> int:
        return self.form.first + len(self.runs) - 1


def runs_page(store: BaseRunLogStore, form: RunsForm) -> RunsPage:
    """One page of the search the form describes; a form that cannot be read is a page with
    its error (and no runs). Matches are not counted: the index answers a page, not a count."""
    page = RunsPage(form)
    try:
        if form.filter.strip():
            _checked(form.filter)
        if form.order_by.strip():
            from runlog_store.search.query import parse_order_by

            try:
                parse_order_by(form.order_by)
            except FilterSyntaxError as exc:
                raise FormError(str(exc), _pointer(exc)) from None
        page.columns = _columns(form.columns) if form.columns.strip() else []
        size = form.page_size()
        search = _search_filter(form)
        try:
            found = store.search_runs(
                search,
                order_by=form.order_by.strip() or None,
                max_results=size,
                page_token=form.page_token or None,
            )
        except FilterSyntaxError as exc:
            raise FormError(str(exc)) from None
        except RunLogStoreError as exc:
            if form.page_token and "token" in str(exc):
                raise FormError(str(exc)) from None
            raise
    except FormError as exc:
        page.error = exc
        return page
    page.runs = found.runs
    from runlog_store.stores.project import ProjectRunLogStore

    if isinstance(store, ProjectRunLogStore):  # a project's folder: say each run's layout
        for run in page.runs:
            with contextlib.suppress(RunLogStoreError):  # deleted since it was listed
                run.layout = store.layout(run.run_id)
        page.layouts = any(run.layout for run in page.runs)
    if found.next_page_token is not None:
        page.next_query = form.query(
            page_token=found.next_page_token, first=form.first + len(found.runs)
        )
    return page


def counts_text(counts: dict[str, int]) -> str:
    """``3 SUCCESS, 1 FAIL``: statuses by count, most first."""
    return ", ".join(f"{n} {shown(status)}" for status, n in Counter(counts).most_common())


# --- a run ------------------------------------------------------------------------------------


@dataclass
class AttemptView:
    number: int
    status: str
    start: datetime | None
    end: datetime | None
    duration: str
    message: str


@dataclass
class Progress:
    done: int
    running: int
    failed: int
    total: int

    @property
    def text(self) -> str:
        noun = "branch" if self.total == 1 else "branches"
        return (
            f"{self.done} of {self.total} {noun} done, {self.running} running, {self.failed} failed"
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "done": self.done,
            "running": self.running,
            "failed": self.failed,
            "total": self.total,
        }


@dataclass
class BranchView:
    internal_name: str
    label: str
    status: str
    parameters: list[tuple[str, str]]
    steps: list[StepView] | None  # None: drawn as one line


@dataclass
class StepView:
    internal_name: str
    label: str
    status: str
    step_type: str
    duration: str
    attempts: list[AttemptView]
    inputs: list[tuple[str, str]]
    outputs: list[tuple[str, str]]
    metrics: list[tuple[str, str]]
    catalog: list[DataCatalog]
    catalog_hidden: int
    branch_counts: dict[str, int]
    progress: Progress | None
    branches: list[BranchView]

    @property
    def branch_count(self) -> int:
        return sum(self.branch_counts.values())

    @property
    def branches_text(self) -> str:
        return branches_text(self.branch_counts)


def branches_text(counts: dict[str, int]) -> str:
    """``16 branches: 12 SUCCESS, 4 PROCESSING``."""
    total = sum(counts.values())
    return f"{total} branch{'' if total == 1 else 'es'}: {counts_text(counts)}"


def _parameter_text(param: Any) -> str:
    """A parameter's value whole (JSON, a metric), or what a pickled object was stored as."""
    if param.kind == "object":
        return str(param.description)
    return _value_text(param.value)


def _parameters(params: dict[str, Any]) -> list[tuple[str, str]]:
    return [(name, _parameter_text(param)) for name, param in params.items()]


def _attempt(attempt: StepAttempt) -> AttemptView:
    start, end = utc(attempt.start_time), utc(attempt.end_time)
    return AttemptView(
        number=attempt.attempt_number,
        status=attempt.status,
        start=start,
        end=end,
        duration=_duration(start, end),
        message=attempt.message.strip(),
    )


def progress_of(step: StepLog) -> Progress | None:
    """A map step's branches: done (succeeded), failed, and the others, which are running."""
    if step.step_type != "map":
        return None
    counts = Counter(b.status for b in step.branches.values())
    total = len(step.branches)
    done, failed = counts[SUCCESS], counts[FAIL]
    return Progress(done=done, running=total - done - failed, failed=failed, total=total)


def _window(attempts: Iterable[AttemptView]) -> str:
    times = [a for a in attempts if a.start is not None]
    if not times:
        return ""
    start = min(a.start for a in times if a.start is not None)
    ends = [a.end for a in times]
    if any(e is None for e in ends):
        return ""
    return _duration(start, max(e for e in ends if e is not None))


def step_view(step: StepLog, parent: str = "") -> StepView:
    attempts = [_attempt(a) for a in step.attempts]
    last = step.attempts[-1] if step.attempts else None
    label = step.internal_name
    if parent and label.startswith(parent + "."):
        label = label[len(parent) + 1 :]
    branches = list(step.branches.values())
    # Failed branches first: they are what a reader is looking for.
    ordered = [b for b in branches if b.status == FAIL] + [b for b in branches if b.status != FAIL]
    views = [
        _branch_view(branch, step.internal_name, detailed=index < DETAILED_BRANCHES)
        for index, branch in enumerate(ordered)
    ]
    from runlog_store.cli.render import step_window

    # A step still running has no duration yet: its window so far ends at whichever of its
    # branches' attempts ended last, which says nothing of how long it has been running.
    window = step_window(step) if step.status in ENDED else None
    return StepView(
        internal_name=step.internal_name,
        label=label or step.name,
        status=step.status,
        step_type=step.step_type,
        duration=format_seconds((window[1] - window[0]).total_seconds()) if window else "",
        attempts=attempts,
        inputs=_parameters(last.input_parameters) if last else [],
        outputs=_parameters(last.output_parameters) if last else [],
        metrics=_parameters(last.user_defined_metrics) if last else [],
        catalog=step.data_catalog[:CATALOG_ROWS],
        catalog_hidden=max(len(step.data_catalog) - CATALOG_ROWS, 0),
        branch_counts=dict(Counter(b.status for b in branches)),
        progress=progress_of(step),
        branches=views,
    )


def _branch_view(branch: BranchLog, parent: str, *, detailed: bool) -> BranchView:
    label = branch.internal_name
    if label.startswith(parent + "."):
        label = label[len(parent) + 1 :]
    steps = (
        [step_view(s, branch.internal_name) for s in branch.steps.values()] if detailed else None
    )
    return BranchView(
        internal_name=branch.internal_name,
        label=label,
        status=branch.status,
        parameters=_parameters(branch.parameters),
        steps=steps,
    )


@dataclass
class Failure:
    step: str
    message: str
    end: datetime | None


def latest_failure(run_log: RunLog) -> Failure | None:
    """The failed attempt that ended last (started last, when none has an end), of any step
    at any depth, or of the job."""
    holders: list[tuple[str, list[StepAttempt]]] = [
        (s.internal_name, s.attempts) for s in run_log.iter_steps()
    ]
    if run_log.job is not None:
        holders.append(("job", run_log.job.attempts))
    best: tuple[datetime, Failure] | None = None
    for name, attempts in holders:
        for attempt in attempts:
            if attempt.status != FAIL:
                continue
            when = parse_time(attempt.end_time) or parse_time(attempt.start_time) or datetime.min
            if best is None or when >= best[0]:
                best = (when, Failure(name, attempt.message.strip(), utc(attempt.end_time)))
    return best[1] if best else None


@dataclass
class RunPage:
    run_log: RunLog
    start: datetime | None
    end: datetime | None
    duration: str
    code: list[str]
    steps: list[StepView]
    job: StepView | None
    parameters: list[tuple[str, str]]
    metrics: list[tuple[str, str]]
    catalog: list[tuple[str, DataCatalog]]
    catalog_hidden: int
    latest_failure: Failure | None
    timeline: str | None  # None: on its own page (TIMELINE_ROWS)
    rows: int

    @property
    def live(self) -> bool:
        return self.run_log.status not in ENDED


def run_page(run_log: RunLog) -> RunPage:
    from runlog_store.cli.render import run_window
    from runlog_store.cli.timeline import timeline_parts

    window = run_window(run_log)
    steps = list(run_log.iter_steps())
    rows = len(steps) + sum(len(s.branches) for s in steps)
    holders = [*run_log.iter_steps(), *([run_log.job] if run_log.job else [])]
    catalog = [(s.internal_name, entry) for s in run_log.iter_steps() for entry in s.data_catalog]
    params = run_log.parameters
    job = None
    if run_log.job is not None:
        job = StepView(
            internal_name="job",
            label="job",
            status=run_log.job.status,
            step_type="job",
            duration="",
            attempts=[_attempt(a) for a in run_log.job.attempts],
            inputs=[],
            outputs=[],
            metrics=[],
            catalog=run_log.job.data_catalog[:CATALOG_ROWS],
            catalog_hidden=max(len(run_log.job.data_catalog) - CATALOG_ROWS, 0),
            branch_counts={},
            progress=None,
            branches=[],
        )
    return RunPage(
        run_log=run_log,
        start=utc(window[0]) if window else None,
        end=utc(window[1]) if window and run_log.status in ENDED else None,
        duration=format_seconds((window[1] - window[0]).total_seconds()) if window else "",
        code=describe_code_identities(holders, sha_length=12),
        steps=[step_view(s) for s in run_log.steps.values()],
        job=job,
        parameters=_parameters({n: p for n, p in params.items() if p.kind != "metric"}),
        metrics=_parameters({n: p for n, p in params.items() if p.kind == "metric"}),
        catalog=catalog[:CATALOG_ROWS],
        catalog_hidden=max(len(catalog) - CATALOG_ROWS, 0),
        latest_failure=latest_failure(run_log),
        timeline=timeline_parts(run_log)[1] if rows <= TIMELINE_ROWS else None,
        rows=rows,
    )


def steps_of(run_log: RunLog) -> list[StepView]:
    return [step_view(s) for s in run_log.steps.values()]


def live_state(run_log: RunLog) -> dict[str, Any]:
    """What the live page updates in place: the run's status, every root step's and every map
    step's status and progress, the branches by status, the latest failure. Strings are as the
    page shows them (control and bidi characters written out), in its attributes too, which is
    how the page finds a step by its name."""
    steps = []
    for step in run_log.iter_steps():
        if step.internal_name in run_log.steps or step.step_type == "map":
            progress = progress_of(step)
            steps.append(
                {
                    "name": shown(step.internal_name),
                    "status": shown(step.status),
                    "progress": progress.as_dict() if progress else None,
                    "progress_text": progress.text if progress else None,
                    "branches_text": (
                        branches_text(dict(Counter(b.status for b in step.branches.values())))
                        if step.branches
                        else None
                    ),
                }
            )
    branches: Counter[str] = Counter()
    for step in run_log.iter_steps():
        branches.update(b.status for b in step.branches.values())
    failure = latest_failure(run_log)
    return {
        "status": shown(run_log.status),
        "ended": run_log.status in ENDED,
        "steps": steps,
        "branches_by_status": {shown(k): v for k, v in branches.items()},
        "latest_failure": (
            {"step": shown(failure.step), "message": printable(failure.message, lines=True)}
            if failure
            else None
        ),
    }


# --- comparing runs ---------------------------------------------------------------------------


@dataclass
class ComparePage:
    summaries: list[RunSummary]
    differences: list[tuple[str, list[str]]]  # attribute, a value per run
    steps: list[tuple[str, str, str, str]] | None  # section, key, a, b (two runs only)


def compare_page(store: BaseRunLogStore, run_ids: Sequence[str]) -> ComparePage:
    """The runs side by side: what differs across them in their summaries, and for two runs
    everything ``runlog diff`` finds between them."""
    from runlog_store.ops.diff import diff_runs, diff_summaries
    from runlog_store.ops.runs import read_summary

    summaries = [read_summary(store, run_id) for run_id in run_ids]
    rows = [
        (d.attribute, [_value_text(d.values[r]) if r in d.values else "-" for r in run_ids])
        for d in diff_summaries(summaries)
        if d.key not in ("status", "tag") or d.section != "run"
    ]
    two = None
    if len(run_ids) == 2:
        a, b = (json.loads(store.get_run_log_json(r)) for r in run_ids)
        # The run's own attributes are rows of the table already.
        two = [
            (d.section, d.key, _or_absent(d.a), _or_absent(d.b))
            for d in diff_runs(a, b)
            if d.section != "run"
        ]
    return ComparePage(summaries=summaries, differences=rows, steps=two)


def _or_absent(value: str | None) -> str:
    return "absent" if value is None else value
