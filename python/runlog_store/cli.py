"""The ``runlog`` command: look at runs in any store named by a runnable configuration file."""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from runlog_store.catalogs.file_system import FileSystemCatalog
from runlog_store.config import load_catalog, load_store
from runlog_store.exceptions import RunLogStoreError
from runlog_store.render import format_seconds, run_tree
from runlog_store.verify import verify_run

app = typer.Typer(
    help="See and manage run logs of runnable pipelines, in any run log store.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="runnable configuration file (else RUNNABLE_CONFIGURATION_FILE, else chunked-fs "
        "in .run_log_store)",
        exists=False,
    ),
]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks.")]


def _fail(exc: BaseException, verbose: bool) -> typer.Exit:
    err = Console(stderr=True)
    if verbose:
        err.print(traceback.format_exc(), highlight=False, markup=False)
    err.print(f"[bold red]error:[/] {exc}", highlight=False)
    return typer.Exit(code=2)


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
    from runlog_store.demo import DemoSettings, run_demo

    console = Console()
    settings = DemoSettings(
        run_id=run_id or time.strftime("demo-%Y%m%d-%H%M%S-") + f"{os.getpid() % 10000:04d}",
        branches=branches,
        workers=workers,
        config_file=str(config) if config else None,
        fail_branch=3 if branches >= 3 else None,
    )
    try:
        started = time.perf_counter()
        store = run_demo(settings)
        written = time.perf_counter() - started
        started = time.perf_counter()
        run_log = store.get_run_log_by_id(settings.run_id, full=True)
        read = time.perf_counter() - started
    except RunLogStoreError as exc:
        raise _fail(exc, verbose) from exc
    console.print(run_tree(run_log, max_branches=max_branches))
    steps = sum(1 for _ in run_log.iter_steps())
    console.print(
        f"\nWrote {steps} steps in {branches} branches from {workers} worker processes "
        f"into {store.service_name} at {store.get_summary().get('Location')} in "
        f"{format_seconds(written)}; full read {format_seconds(read)}."
    )
    console.print(f"See it again with: runlog show {settings.run_id}")


@app.command()
def show(
    run_id: str,
    config: ConfigOption = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the full run log JSON.")
    ] = False,
    depth: Annotated[int, typer.Option(min=1, help="Levels of nesting to draw.")] = 99,
    max_branches: Annotated[int, typer.Option(min=0, help="Branches shown per step.")] = 20,
    verbose: VerboseOption = False,
) -> None:
    """Show a run as a tree of steps and branches, with statuses, timings and errors."""
    try:
        store = load_store(config)
        if json_output:
            sys.stdout.buffer.write(store.get_run_log_json(run_id) + b"\n")
            return
        run_log = store.get_run_log_by_id(run_id, full=True)
    except RunLogStoreError as exc:
        raise _fail(exc, verbose) from exc
    Console().print(run_tree(run_log, depth=depth, max_branches=max_branches))


@app.command()
def verify(
    run_id: str,
    config: ConfigOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Re-hash a run's catalog copies and compare them with the data hashes of its run log.

    Exit status 0 when every copy matches, 1 when any is changed, missing or unreadable.
    """
    try:
        store = load_store(config)
        catalog = load_catalog(config)
        if not isinstance(catalog, FileSystemCatalog):
            raise RunLogStoreError(
                f"verify reads file-system catalogs; the configured catalog is "
                f"{catalog.service_name!r}"
            )
        run_log = store.get_run_log_by_id(run_id, full=True)
        report = verify_run(run_log, catalog.catalog_location)
    except RunLogStoreError as exc:
        raise _fail(exc, verbose) from exc
    console = Console()
    table = Table(title=f"Catalog of run {run_id} in {catalog.catalog_location}")
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
        where = os.path.relpath(checked.path, catalog.catalog_location)
        table.add_row(f"[{style}]{checked.status}[/]", where, detail)
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
