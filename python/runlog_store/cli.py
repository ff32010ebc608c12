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

from runlog_store.config import load_store
from runlog_store.exceptions import RunLogStoreError
from runlog_store.render import format_seconds, run_tree

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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
