"""The ``runlog`` command: see, compare, verify, move and prune runs in any store named by a
runnable configuration file (``-c``, else RUNNABLE_CONFIGURATION_FILE, else every run in
``.run_log_store``, in either of runnable's local layouts: file-system or chunked-fs).

Exit status: 0 when all is well, 1 when the answer is "no" (runs differ, a catalog fails
verification), 2 for errors, which are one line on stderr (``--verbose`` adds the traceback).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from runlog_store import _core
from runlog_store.cli.progress import TerminalProgress
from runlog_store.cli.render import STATUS_STYLE, format_seconds, run_tree
from runlog_store.config import load_catalog, load_store, resolve_config_file
from runlog_store.exceptions import RunLogStoreError
from runlog_store.ops.diff import Difference
from runlog_store.ops.runs import RunSummary
from runlog_store.stores.base import BaseRunLogStore
from runlog_store.stores.project import ProjectRunLogStore

app = typer.Typer(
    help="See, compare, verify, move and prune the run logs of runnable pipelines, in any "
    "run log store.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="runnable configuration file (else RUNNABLE_CONFIGURATION_FILE, else every run in "
        ".run_log_store, file-system or chunked-fs)",
    ),
]
VerboseOption = Annotated[
    bool, typer.Option("--verbose", "-v", help="Show the traceback of an error.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


# --- plumbing every command shares ------------------------------------------------------------


def _fail(message: str, verbose: bool) -> NoReturn:
    err = Console(stderr=True)
    if verbose:
        err.print(traceback.format_exc(), highlight=False, markup=False)
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


@contextlib.contextmanager
def _reporting_errors(verbose: bool) -> Iterator[None]:
    """Turn any failure into one line on stderr and exit status 2."""
    try:
        yield
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        Console(stderr=True).print("[bold red]interrupted[/]")
        raise typer.Exit(code=130) from None
    except RunLogStoreError as exc:
        _fail(str(exc), verbose)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        _fail(f"{exc.strerror or exc}{where}", verbose)
    except Exception as exc:  # a defect: still one line, the traceback with --verbose
        hint = "" if verbose else " (run again with --verbose for the traceback)"
        _fail(f"unexpected {type(exc).__name__}: {exc}{hint}", verbose)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _status(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'dim')}]{escape(status)}[/]"


def _print_json(document: object) -> None:
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")


def _open_store(config: Path | None) -> BaseRunLogStore:
    """The store the configuration names; with none (no -c, no RUNNABLE_CONFIGURATION_FILE),
    every run of the project's ``.run_log_store``, in either of runnable's local layouts: its
    default ``file-system`` (``<id>.json``) and ``chunked-fs`` (``<id>/``), runlog's default."""
    if resolve_config_file(config) is None:
        return ProjectRunLogStore()
    return load_store(config)


def _run_store(store: BaseRunLogStore, run_id: str) -> BaseRunLogStore:
    """The store holding one run: the layout's own store behind a project store."""
    if isinstance(store, ProjectRunLogStore):
        return store.store(store.layout(run_id))
    return store


# --- commands ---------------------------------------------------------------------------------


@app.command()
def demo(
    config: ConfigOption = None,
    branches: Annotated[int, typer.Option(min=1, help="Branches of the map step.")] = 48,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes writing branches.")] = 4,
    run_id: Annotated[str | None, typer.Option(help="Run id (default: demo-<time>).")] = None,
    max_branches: Annotated[int, typer.Option(min=0, help="Branches shown per step.")] = 6,
    verbose: VerboseOption = False,
) -> None:
    """Write a parallel pipeline's run log from several worker processes, then show it."""
    from runlog_store.cli.demo import DemoSettings, run_demo

    console = Console()
    settings = DemoSettings(
        run_id=run_id or time.strftime("demo-%Y%m%d-%H%M%S-") + f"{os.getpid() % 10000:04d}",
        branches=branches,
        workers=workers,
        config_file=str(config) if config else None,
        fail_branch=3 if branches >= 3 else None,
    )
    with _reporting_errors(verbose):
        started = time.perf_counter()
        store = run_demo(settings)
        written = time.perf_counter() - started
        started = time.perf_counter()
        run_log = store.get_run_log_by_id(settings.run_id, full=True)
        read = time.perf_counter() - started
    console.print(run_tree(run_log, max_branches=max_branches))
    steps = sum(1 for _ in run_log.iter_steps())
    console.print(
        f"\nWrote {steps} steps in {branches} branches from {workers} worker processes "
        f"into {store.service_name} at {store.get_summary().get('Location')} in "
        f"{format_seconds(written)}; full read {format_seconds(read)}."
    )
    console.print(f"See it again with: runlog show {settings.run_id}")


@app.command("list")
def list_runs(
    config: ConfigOption = None,
    status: Annotated[
        str | None, typer.Option(help="Only runs of this status (SUCCESS, FAIL, ...).")
    ] = None,
    tag: Annotated[str | None, typer.Option(help="Only runs with this tag.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Only runs started within this age (90m, 12h, 2d, 1w).")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=0, help="At most this many runs.")] = None,
    json_output: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """List runs, newest first: status, tag, start, duration, steps and the failed step."""
    from runlog_store.ops.runs import parse_age, summarize_runs

    with _reporting_errors(verbose):
        started_after = datetime.now() - parse_age(since, "--since") if since else None
        store = _open_store(config)
        runs = summarize_runs(
            store,
            status=status,
            tag=tag,
            since=started_after,
            limit=limit,
            callback=TerminalProgress(),
        )
        if isinstance(store, ProjectRunLogStore):
            for run in runs:
                with contextlib.suppress(RunLogStoreError):  # deleted since it was listed
                    run.layout = store.layout(run.run_id)
    if json_output:
        _print_json([run.model_dump(mode="json") for run in runs])
        return
    console = Console()
    title = f"{len(runs)} runs in {escape(str(store.get_summary().get('Location')))}"
    # An id wider than the terminal is printed whole (the terminal wraps it), never cropped.
    console.print(_runs_table(runs, title, console.width), crop=False)


# The columns of ``runlog list`` past the run id, in the order drawn, with the narrowest each
# can be drawn in; when the terminal is too narrow, columns go in the order of _DROPPED. The
# run id is what a user copies into the next command: it is never cut, nor is its status.
_LIST_COLUMNS: dict[str, int] = {
    "status": 8,
    "layout": 11,
    "tag": 3,
    "start": 10,
    "duration": 8,
    "steps": 5,
    "failed step": 11,
}
_DROPPED = ("tag", "duration", "steps", "layout", "failed step", "start")


def _runs_table(runs: list[RunSummary], title: str, width: int) -> Table:
    id_width = max([len(run.run_id) for run in runs] + [len("run id")])
    shown = dict(_LIST_COLUMNS)
    if not any(run.layout for run in runs):
        del shown["layout"]
    # Each column costs its width, two of padding and one border; the table one more border.
    for name in _DROPPED:
        if 1 + (id_width + 3) + sum(w + 3 for w in shown.values()) <= width:
            break
        shown.pop(name, None)
    table = Table(title=title)
    table.add_column("run id", no_wrap=True, min_width=id_width)
    for name, least in shown.items():
        table.add_column(
            name,
            justify="right" if name == "steps" else "left",
            min_width=least,
            no_wrap=name == "status",
        )
    for run in runs:
        duration = run.duration_seconds
        cells = {
            "status": _status(run.status),
            "layout": run.layout or "-",
            "tag": escape(run.tag),
            "start": _when(run.start),
            "duration": format_seconds(duration) if duration is not None else "-",
            "steps": str(run.steps),
            "failed step": f"[red]{escape(run.failed_step or run.error or '')}[/]",
        }
        table.add_row(escape(run.run_id), *(cells[name] for name in shown))
    return table


@app.command()
def show(
    run_id: str,
    config: ConfigOption = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the merged full run log JSON.")
    ] = False,
    depth: Annotated[int, typer.Option(min=1, help="Levels of branch nesting to draw.")] = 99,
    max_branches: Annotated[int, typer.Option(min=0, help="Branches shown per step.")] = 20,
    verbose: VerboseOption = False,
) -> None:
    """Show a run as a tree: steps, branches, attempts, errors, parameters, metrics, catalog."""
    with _reporting_errors(verbose):
        store = _run_store(_open_store(config), run_id)
        if json_output:
            sys.stdout.buffer.write(store.get_run_log_json(run_id) + b"\n")
            _note_unfolded(store, run_id, Console(stderr=True))
            return
        run_log = store.get_run_log_by_id(run_id, full=True)
    console = Console()
    console.print(run_tree(run_log, depth=depth, max_branches=max_branches))
    with _reporting_errors(verbose):
        _note_unfolded(store, run_id, console)


def _note_unfolded(store: object, run_id: str, console: Console) -> None:
    """Say when a chunked-fs run has journals not folded into its documents: runnable's own
    reader does not see what they hold."""
    from runlog_store.stores.chunked import ChunkedRunLogStore

    if not isinstance(store, ChunkedRunLogStore):
        return
    journals = store.unfolded_journals(run_id)
    if not journals:
        return
    size = sum(bytes_ for _, bytes_ in journals)
    many = len(journals) != 1
    console.print(
        f"[yellow]note:[/] {len(journals)} journal{'s' if many else ''} ({size:,} bytes) "
        f"hold{'' if many else 's'} writes not folded into the run's documents yet: runlog reads "
        "them, runnable's own chunked store does not. The run is still going, or was stopped "
        f"before its end; [bold]runlog fold {escape(run_id)}[/] folds them.",
        highlight=False,
    )


@app.command()
def fold(
    run_id: str,
    config: ConfigOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Fold a run into runnable's own layout, as its end does: for a run stopped before its end
    (killed), so runnable's chunked store reads all of it."""
    from runlog_store.stores.chunked import ChunkedRunLogStore

    with _reporting_errors(verbose):
        store = _run_store(_open_store(config), run_id)
        if not isinstance(store, ChunkedRunLogStore):
            _fail(
                f"runlog fold folds the runs of chunked stores (chunked-fs, chunked-minio); "
                f"this configuration's store is {store.service_name}, which has nothing to fold",
                verbose,
            )
        journals = store.unfolded_journals(run_id)
        store.fold(run_id)
    size = sum(bytes_ for _, bytes_ in journals)
    what = (
        f"{len(journals)} journal{'s' if len(journals) != 1 else ''} ({size:,} bytes) folded "
        "and removed"
        if journals
        else "every step is in its branch's and the run's document"
    )
    Console().print(
        f"Folded run {escape(run_id)}: {what}; runnable's own chunked store reads all of it now."
    )


@app.command()
def timeline(
    run_id: str,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="HTML file to write (default <run id>.html)."),
    ] = None,
    config: ConfigOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Draw every step attempt on a time axis, in one self-contained HTML page."""
    from runlog_store.cli.timeline import render_timeline

    target = output or Path(f"{run_id}.html")
    with _reporting_errors(verbose):
        run_log = _open_store(config).get_run_log_by_id(run_id, full=True)
        page = render_timeline(run_log).encode()
        _core.write_atomic(str(target), page, fsync=False, run_id=run_id)
    attempts = sum(len(step.attempts) for step in run_log.iter_steps())
    Console().print(f"Wrote the timeline of {attempts} attempts of run {run_id} to {target}")


@app.command()
def diff(
    run_a: str,
    run_b: str,
    config: ConfigOption = None,
    config_b: Annotated[
        Path | None,
        typer.Option(help="Configuration of RUN_B's store, when it is another store."),
    ] = None,
    rows: Annotated[
        int, typer.Option(min=1, help="Rows shown per section (--json shows all).")
    ] = 20,
    json_output: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Compare two runs: parameters, metrics, code, data hashes, statuses and the DAG.

    Exit status 0 when they do not differ in any of these, 1 when they do.
    """
    from runlog_store.ops.diff import diff_runs

    with _reporting_errors(verbose):
        store_a = _open_store(config)
        store_b = load_store(config_b) if config_b else store_a
        a = json.loads(store_a.get_run_log_json(run_a))
        b = json.loads(store_b.get_run_log_json(run_b))
        differences = diff_runs(a, b)
    if json_output:
        _print_json([d.model_dump() for d in differences])
    elif not differences:
        Console().print(
            f"[green]runs {escape(run_a)} and {escape(run_b)} do not differ[/] in parameters, "
            "metrics, code, data, statuses or DAG"
        )
    else:
        Console().print(_differences_table(differences, run_a, run_b, rows))
    if differences:
        raise typer.Exit(code=1)


def _cell(value: str | None, width: int = 72) -> str:
    if value is None:
        return "[dim]absent[/]"
    return escape(value if len(value) <= width else value[: width - 1] + "…")


def _differences_table(differences: list[Difference], run_a: str, run_b: str, rows: int) -> Table:
    table = Table(title=f"{len(differences)} differences")
    for column in ("what", "key", run_a, run_b):
        table.add_column(escape(column), overflow="fold")
    shown: Counter[str] = Counter()
    hidden: Counter[str] = Counter()
    for found in differences:
        if shown[found.section] >= rows:
            hidden[found.section] += 1
            continue
        shown[found.section] += 1
        table.add_row(found.section, escape(found.key), _cell(found.a), _cell(found.b))
    for section, count in hidden.items():
        table.add_row(section, f"[dim]… {count} more (--json shows all)[/]", "", "")
    return table


@app.command()
def export(
    run_id: str,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="JSON file to write, or - for stdout.")
    ],
    config: ConfigOption = None,
    force: Annotated[bool, typer.Option(help="Replace the file if it exists.")] = False,
    verbose: VerboseOption = False,
) -> None:
    """Write the full run log (every step and branch, merged) to one JSON file."""
    from runlog_store.ops.transfer import export_run

    with _reporting_errors(verbose):
        store = _open_store(config)
        if str(output) == "-":
            sys.stdout.buffer.write(store.get_run_log_json(run_id) + b"\n")
            return
        size = export_run(store, run_id, output, overwrite=force)
    Console(stderr=True).print(f"Exported run {run_id} ({size:,} bytes) to {output}")


@app.command()
def copy(
    run_id: str,
    to: Annotated[Path, typer.Option("--to", help="Configuration file of the store to copy into.")],
    config: ConfigOption = None,
    with_catalog: Annotated[
        bool, typer.Option(help="Copy the run's catalog files too (into the target's catalog).")
    ] = False,
    verbose: VerboseOption = False,
) -> None:
    """Copy a run into another store, checked by reading it back there."""
    from runlog_store.ops.transfer import copy_run

    with _reporting_errors(verbose):
        source = _open_store(config)
        target = load_store(to)
        catalogs = (load_catalog(config), load_catalog(to)) if with_catalog else (None, None)
        report = copy_run(
            source,
            target,
            run_id,
            source_catalog=catalogs[0],
            target_catalog=catalogs[1],
            callback=TerminalProgress(),
        )
    console = Console()
    console.print(
        f"Copied run {escape(run_id)} ({report.steps} steps, {report.run_log_bytes:,} bytes of "
        f"run log) from the {escape(report.source)} to the {escape(report.target)}; it reads "
        "back identical."
    )
    if with_catalog:
        checked = len(report.verification.files) if report.verification else 0
        good = checked - len(report.inherited)
        console.print(
            f"Copied {report.catalog_files} catalog files ({report.catalog_bytes:,} bytes); "
            f"{good} of {checked} re-hashed against the run log's data hashes match."
        )
        for problem in report.inherited:
            console.print(
                f"[yellow]warning:[/] {escape(problem)} fails in the source catalog too "
                "(copied as it is)"
            )


@app.command()
def gc(
    older_than: Annotated[
        str, typer.Option(help="Delete runs last written longer ago than this (30d, 12h, 1w).")
    ],
    config: ConfigOption = None,
    status: Annotated[str | None, typer.Option(help="Only runs of this status.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Only show what would be deleted.")] = False,
    with_catalog: Annotated[bool, typer.Option(help="Delete the runs' catalog files too.")] = False,
    include_unfinished: Annotated[
        bool,
        typer.Option(
            help="Also delete runs that never ended (CREATED, PROCESSING) once they are old "
            "enough: runs of crashed pipelines."
        ),
    ] = False,
    json_output: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Delete old runs, never one still being written."""
    from runlog_store.ops.runs import parse_age
    from runlog_store.ops.transfer import gc_contents, gc_runs

    with _reporting_errors(verbose):
        age = parse_age(older_than)
        store = _open_store(config)
        catalog = load_catalog(config) if with_catalog else None
        run_ids = store.list_run_ids()
        total = len(run_ids)
        decisions = gc_runs(
            store,
            age,
            status=status,
            include_unfinished=include_unfinished,
            catalog=catalog,
            dry_run=dry_run,
            run_ids=run_ids,
            callback=TerminalProgress(),
        )
        # A content catalog keeps contents apart from runs: those no remaining run references
        # go now (kept from the JSON output, a list of runs, and said on stderr).
        sweep = None
        if catalog is not None:
            gone = {d.run_id for d in decisions if d.action == "would delete"}
            sweep = gc_contents(
                catalog, dry_run=dry_run, deleted_runs=gone, callback=TerminalProgress()
            )
    if sweep is not None:
        verb = "would remove" if dry_run else "removed"
        Console(stderr=True).print(
            f"Contents: {verb} {sweep.removed} of {sweep.contents} ({sweep.removed_bytes:,} "
            f"bytes) that no remaining run references; {sweep.kept_bytes:,} bytes kept."
        )
    if json_output:
        _print_json([d.model_dump(mode="json") for d in decisions])
        return
    console = Console()
    if not decisions:
        console.print(f"No run of {total} was last written more than {older_than} ago.")
        return
    table = Table(title=f"Runs last written more than {older_than} ago")
    for column in ("run id", "status", "last written", "age", "catalog files", "action"):
        table.add_column(column)
    for decision in decisions:
        style = "red" if decision.action in ("deleted", "would delete") else "yellow"
        age_text = format_seconds(decision.age_seconds) if decision.age_seconds else "-"
        table.add_row(
            escape(decision.run_id),
            _status(decision.status),
            _when(decision.last_written),
            age_text,
            str(decision.catalog_files) if with_catalog else "-",
            f"[{style}]{decision.action}[/]",
        )
    console.print(table)
    deleted = sum(d.action in ("deleted", "would delete") for d in decisions)
    verb = "would delete" if dry_run else "deleted"
    console.print(f"{verb} {deleted} of {total} runs")


@app.command()
def verify(
    run_id: str,
    config: ConfigOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Re-hash a run's catalog copies and compare them with the data hashes of its run log.

    Exit status 0 when every copy matches, 1 when any is changed, missing or unreadable.
    """
    from runlog_store.ops.verify import verify_catalog

    with _reporting_errors(verbose):
        store = _open_store(config)
        catalog = load_catalog(config)
        run_log = store.get_run_log_by_id(run_id, full=True)
        report = verify_catalog(run_log, catalog, TerminalProgress())
        where = str(catalog.get_summary().get("Location"))
        local = catalog.local_run_folder(run_id)
    console = Console()
    table = Table(title=f"Catalog of run {escape(run_id)} in {escape(where)}")
    for column in ("status", "file", "detail"):
        table.add_column(column)
    styles = {"ok": "green", "fingerprint-only": "yellow"}
    for checked in report.files:
        style = styles.get(checked.status, "bold red")
        detail = checked.detail
        if checked.status == "mismatch":
            detail = f"expected {', '.join(checked.expected)}; found {checked.actual}"
        elif checked.status == "missing":
            detail = f"recorded by {', '.join(checked.steps)}"
        shown = os.path.relpath(checked.path, local.parent) if local else checked.path
        table.add_row(f"[{style}]{checked.status}[/]", escape(shown), escape(detail))
    console.print(table)
    problems = len(report.problems)
    if problems:
        console.print(f"[bold red]{problems} of {len(report.files)} files failed verification[/]")
        raise typer.Exit(code=1)
    console.print(f"[green]all {len(report.files)} files match their recorded hashes[/]")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
