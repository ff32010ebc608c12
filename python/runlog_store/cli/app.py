"""The ``runlog`` command: see, compare, verify, move and prune runs in any store named by a
runnable configuration file (``-c``, else RUNNABLE_CONFIGURATION_FILE, else every run in
``.run_log_store``, in either of runnable's local layouts: file-system or chunked-fs).

Exit status: 0 when all is well, 1 when the answer is "no" (runs differ, a catalog fails
verification), 2 for errors, which are one line on stderr (``--verbose`` adds the traceback).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import shlex
import shutil
import sys
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple, NoReturn, TypeGuard

import typer
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from typer._coercion import RuntimeParam, TypeDescriptor, build_runtime_param
from typer.core import TyperArgument, TyperCommand, TyperGroup, _TyperParameter

from runlog_store import _core
from runlog_store._paths import validate_run_id
from runlog_store.cli.render import (
    STATUS_STYLE,
    counted,
    format_age,
    format_bytes,
    format_seconds,
    printable,
    run_tree,
)
from runlog_store.config import (
    CONFIG_ENV,
    load_catalog,
    load_store,
    read_config_file,
    resolve_config_file,
)
from runlog_store.exceptions import ConfigurationError, RunLogNotFoundError, RunLogStoreError

# The stores, the models and the operations are imported by the commands that use them, not
# here: every command, ``runlog --help`` included, imports this module first, and they bring
# pydantic's models and more (tests/cli/test_startup.py lists what must not come with it).
if TYPE_CHECKING:
    from runlog_store.catalogs.base import BaseCatalog
    from runlog_store.ops.columns import Column
    from runlog_store.ops.diff import Difference, RunsDifference
    from runlog_store.ops.retention import RetentionPolicy, Selection
    from runlog_store.ops.runs import RunSummary
    from runlog_store.ops.transfer import GcDecision
    from runlog_store.stores.base import BaseRunLogStore
    from runlog_store.stores.project import ProjectRunLogStore

# --- help as click writes it ------------------------------------------------------------------


class _TypelessArgument(TyperArgument):
    """An argument whose help row is its name alone (RUN_ID), with no ``<str>`` beside it."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


@dataclass(frozen=True)
class _PlainValue(RuntimeParam):
    """An option's text read as typer reads it, without pydantic when it is plain: typer reads
    every value through a pydantic TypeAdapter it builds for each parameter of the command run
    (pydantic imported, a schema built for each: tens of milliseconds for runlog list's eleven
    options, paid before the command starts). Text is kept, digits are a number in its range,
    a flag's true or false is kept, a path is a Path checked as typer checks it; anything else
    (a number out of range, not a number) goes to typer's own reading, which says what is wrong
    in its words."""

    def _coerce_value(self, value: Any, param: _TyperParameter, ctx: Any) -> Any:
        from typer._param_types import coerce_cli_path

        info = self.parameter_info
        if isinstance(value, bool) and self.annotation is bool:
            return value
        if isinstance(value, str):
            if self.annotation is str:
                return value
            if self.annotation is int and value.isascii() and value.isdigit():
                number = int(value)
                if (info.min is None or number >= info.min) and (
                    info.max is None or number <= info.max
                ):
                    return number
            if self.annotation is Path:
                return coerce_cli_path(Path(value), info, path_type=Path, param=param, ctx=ctx)
        typer_reading = build_runtime_param(param.type_descriptor)
        return typer_reading._coerce_value(value, param=param, ctx=ctx)


def _is_plain(param: Any) -> bool:
    """A parameter of one value of text, a whole number, a flag or a path, which typer reads
    with no rule of its own (a parser, a choice, a clamp, a file opened, a path type given)."""
    if not isinstance(param, _TyperParameter) or param.multiple or param.nargs != 1:
        return False
    described: TypeDescriptor = param.type_descriptor
    info = described.parameter_info
    return (
        described.annotation in (str, int, bool, Path)
        and described.file_annotation is None
        and described.choices is None
        and info.parser is None
        and not info.clamp
        and info.path_type is None
    )


def _click_style(params: list[Any]) -> list[Any]:
    """Name every value in help the way click does: RUN_ID, FILE, INTEGER, and nothing for a
    flag. typer labels each by its Python type instead (``<str>``, ``<int range>``), and flags,
    ``--help`` included, as ``<bool>``; the options below name their values themselves. A
    plain value is read without pydantic (``_PlainValue``)."""
    for param in params:
        if _is_plain(param) and param._runtime_param is None:
            described = param.type_descriptor
            param._runtime_param = _PlainValue(
                parameter_info=described.parameter_info, annotation=described.annotation
            )
        if param.param_type_name == "argument":
            if param.metavar is None:
                param.metavar = (param.name or "").upper()
            if isinstance(param, TyperArgument):
                param.__class__ = _TypelessArgument
        elif getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class _Command(TyperCommand):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A docstring's paragraphs are wrapped for the source; typer keeps those line breaks
        # past the first paragraph, so help would break lines mid-sentence: one line each.
        if self.help:
            paragraphs = inspect.cleandoc(self.help).split("\n\n")
            self.help = "\n\n".join(" ".join(p.split()) for p in paragraphs)

    def get_params(self, ctx: Any) -> list[Any]:
        return _click_style(super().get_params(ctx))

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        """``[OPTIONS] RUN_ID``: an argument by its name, in brackets only when optional."""
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name != "argument":
                continue
            name = param.metavar + ("..." if param.nargs != 1 else "")
            pieces.append(name if param.required else f"[{name}]")
        return pieces


class _Group(TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        return _click_style(super().get_params(ctx))


app = typer.Typer(
    cls=_Group,
    help="See, compare, verify, move and prune the run logs of runnable pipelines, in any "
    "run log store.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
RunIdArgument = Annotated[
    str, typer.Argument(metavar="RUN_ID", help="The run's id, as runlog list shows it.")
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        metavar="FILE",
        help="runnable configuration file (else RUNNABLE_CONFIGURATION_FILE, else every run in "
        ".run_log_store, file-system or chunked-fs)",
    ),
]
VerboseOption = Annotated[
    bool, typer.Option("--verbose", "-v", help="Show the traceback of an error.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
StatusOption = Annotated[
    str | None,
    typer.Option(
        metavar="STATUS",
        help="Only runs of this status: SUCCESS, FAIL, PROCESSING, CREATED, TRIGGERED or "
        "UNREADABLE.",
    ),
]


# --- plumbing every command shares ------------------------------------------------------------


def _console(*, stderr: bool = False) -> Console:
    """Where a command prints for people. Emoji codes are off: a stored ``:warning:`` is
    printed as it is stored, as markup is (``_shown``)."""
    return Console(stderr=stderr, emoji=False)


def _shown(value: object) -> str:
    """A string from a run, a store, a folder or the command line, ready for a rich markup
    string: nothing in it a terminal acts on (``printable``), its brackets printed as they
    are, never read as markup (a stored ``[link=...]`` is not made a link)."""
    return escape(printable(str(value)))


def _fail(message: str, verbose: bool) -> NoReturn:
    err = _console(stderr=True)
    if verbose:
        err.print(printable(traceback.format_exc(), lines=True), highlight=False, markup=False)
    err.print(f"[bold red]error:[/] {_shown(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


class _Stores:
    """The stores a command opened, so that a run it did not find is named with the store it
    was looked for in."""

    def __init__(self) -> None:
        self.opened: list[BaseRunLogStore] = []

    def open(self, config: Path | None, run_id: str | None = None) -> BaseRunLogStore:
        """The store ``config`` names (``_open_store``), which must be there to read from."""
        store = _open_store(config)
        self.opened.append(store)
        _require_folder(store, config, run_id)
        return store

    def not_found(self, exc: RunLogNotFoundError) -> str:
        # The store whose location the path it looked at is in (diff reads two); a path in none
        # of them is another store's (a copy's target), and is named by the path alone.
        if exc.path:
            store = next((s for s in self.opened if exc.path.startswith(s.location())), None)
        else:
            store = self.opened[0] if len(self.opened) == 1 else None
        where = f" in {_describe(store)}" if store is not None else ""
        looked = f" (looked for {exc.path})" if exc.path else ""
        return f"no run {exc.run_id!r}{where}{looked}"


@contextlib.contextmanager
def _reporting_errors(verbose: bool) -> Iterator[_Stores]:
    """Turn any failure into one line on stderr and exit status 2."""
    stores = _Stores()
    try:
        yield stores
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        _console(stderr=True).print("[bold red]interrupted[/]")
        raise typer.Exit(code=130) from None
    except RunLogNotFoundError as exc:
        _fail(stores.not_found(exc), verbose)
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
    return f"[{STATUS_STYLE.get(status, 'dim')}]{_shown(status)}[/]"


def _print_json(document: object) -> None:
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")


def _config_file(config: Path | None) -> Path | None:
    """The configuration file to read (``-c``, else RUNNABLE_CONFIGURATION_FILE), or None. An
    empty one is an error: it names no store, and falling back to the default store would show
    runs from somewhere the user did not point at."""
    path = resolve_config_file(config)
    if path is not None and not read_config_file(path):
        named = f" (named by {CONFIG_ENV})" if config is None else ""
        raise ConfigurationError(
            f"configuration file {path}{named} is empty; it needs a run-log-store: section with "
            "the store's type, as in runnable's configuration",
            path=str(path),
        )
    return path


def _open_store(config: Path | None) -> BaseRunLogStore:
    """The store the configuration names; with none (no -c, no RUNNABLE_CONFIGURATION_FILE),
    every run of the project's ``.run_log_store``, in either of runnable's local layouts: its
    default ``file-system`` (``<id>.json``) and ``chunked-fs`` (``<id>/``), runlog's default."""
    path = _config_file(config)
    if path is None:
        from runlog_store.stores.project import ProjectRunLogStore

        return ProjectRunLogStore()
    return load_store(path)


def _load_store(config: Path) -> BaseRunLogStore:
    """The store of another configuration (``--to``, ``--config-b``), as it is."""
    return load_store(_config_file(config))


def _load_catalog(config: Path | None) -> BaseCatalog:
    return load_catalog(_config_file(config))


def _require_folder(store: BaseRunLogStore, config: Path | None, run_id: str | None) -> None:
    """A store on a folder that does not exist is an error naming the folder: read as an empty
    store it would say "0 runs" to someone who is in the wrong folder or named the wrong one."""
    folder = getattr(store, "log_folder", None)
    if not isinstance(folder, str) or os.path.isdir(folder):
        return
    if run_id is not None:
        validate_run_id(run_id)  # a run id that cannot be stored is the first thing to say
    subject = f"no run {run_id!r}" if run_id is not None else "no run log store"
    here = "" if os.path.isabs(folder) else f" in {os.getcwd()}"
    path = resolve_config_file(config)
    origin = (
        f"without -c FILE, runlog reads the {folder} of the folder it runs in"
        if path is None
        else f"log_folder in {path}"
    )
    if os.path.exists(folder):
        state = f"{folder}{here} is not a folder"
    else:
        state = f"the folder {folder}{here} does not exist"
    raise RunLogStoreError(f"{subject}: {state} ({origin})", path=folder)


def _describe(store: BaseRunLogStore) -> str:
    """A store as a sentence names it: "the chunked-fs store at .run_log_store"."""
    location = store.location()
    if _is_project(store):
        return f"the run log store at {location}"
    return f"the {store.service_name} store at {location}"


def _run_store(store: BaseRunLogStore, run_id: str) -> BaseRunLogStore:
    """The store holding one run: the layout's own store behind a project store."""
    if _is_project(store):
        return store.store(store.layout(run_id))
    return store


def _is_project(store: BaseRunLogStore) -> TypeGuard[ProjectRunLogStore]:
    """Whether the store is every run of a project's folder (the store without -c)."""
    from runlog_store.stores.project import ProjectRunLogStore

    return isinstance(store, ProjectRunLogStore)


def _runlog_as_typed() -> str:
    """The command that starts this runlog again, typed where the user is: ``runlog`` when
    that name finds this very program, else the path it was started by (relative as typed:
    the user is still in the folder they typed it in), else the interpreter running it."""
    started = sys.argv[0]
    name = os.path.basename(started)
    path = started if os.sep in started else shutil.which(started)
    if path and os.path.isfile(path) and not name.endswith(".py"):
        found = shutil.which(name)
        if found and os.path.realpath(found) == os.path.realpath(path):
            return name
        return shlex.quote(path)
    return f"{shlex.quote(sys.executable)} -m runlog_store.cli"


# --- commands ---------------------------------------------------------------------------------


@app.command(cls=_Command)
def demo(
    config: ConfigOption = None,
    branches: Annotated[
        int, typer.Option(min=1, metavar="INTEGER", help="Branches of the map step.")
    ] = 48,
    workers: Annotated[
        int, typer.Option(min=1, metavar="INTEGER", help="Worker processes writing branches.")
    ] = 4,
    run_id: Annotated[
        str | None, typer.Option(metavar="TEXT", help="Run id (default: demo-DATE-TIME-PID).")
    ] = None,
    max_branches: Annotated[
        int, typer.Option(min=0, metavar="INTEGER", help="Branches shown per step.")
    ] = 6,
    verbose: VerboseOption = False,
) -> None:
    """Write a parallel pipeline's run log from several worker processes, then show it."""
    from runlog_store.cli.demo import DemoSettings, run_demo

    console = _console()
    settings = DemoSettings(
        run_id=run_id or time.strftime("demo-%Y%m%d-%H%M%S-") + f"{os.getpid() % 10000:04d}",
        branches=branches,
        workers=workers,
        config_file=str(config) if config else None,
        fail_branch=3 if branches >= 3 else None,
    )
    with _reporting_errors(verbose):
        _config_file(config)
        started = time.perf_counter()
        store = run_demo(settings)
        written = time.perf_counter() - started
        started = time.perf_counter()
        run_log = store.get_run_log_by_id(settings.run_id, full=True)
        read = time.perf_counter() - started
    console.print(run_tree(run_log, max_branches=max_branches))
    steps = sum(1 for _ in run_log.iter_steps())
    console.print(
        f"\nWrote {counted(steps, 'step')} in {counted(branches, 'branch', 'branches')} from "
        f"{counted(workers, 'worker process', 'worker processes')} into "
        f"{_shown(_describe(store))} in {format_seconds(written)}; full read "
        f"{format_seconds(read)}."
    )
    # A command that works pasted as it is, from here: the program as it was started, and the
    # configuration the run went to.
    again = [_runlog_as_typed(), "show", shlex.quote(settings.run_id)]
    if config is not None:
        again += ["-c", shlex.quote(str(config))]
    console.print(f"See it again with: {_shown(' '.join(again))}", highlight=False, soft_wrap=True)


@app.command("list", cls=_Command)
def list_runs(
    config: ConfigOption = None,
    filter_text: Annotated[
        str | None,
        typer.Option(
            "--filter",
            metavar="FILTER",
            show_default=False,
            help="Only runs this filter matches: metrics.accuracy > 0.9 and status = 'SUCCESS' "
            "(the language is on the search page of the documentation).",
        ),
    ] = None,
    order_by: Annotated[
        str | None,
        typer.Option(
            "--order-by",
            metavar="ORDER",
            show_default=False,
            help="Sort by these attributes, each asc or desc: 'metrics.accuracy desc, "
            "start_time' (default: start_time desc).",
        ),
    ] = None,
    columns: Annotated[
        str | None,
        typer.Option(
            "--columns",
            metavar="ATTRIBUTES",
            show_default=False,
            help="Add these attributes as columns: params.lr,metrics.accuracy,commit.",
        ),
    ] = None,
    status: StatusOption = None,
    tag: Annotated[str | None, typer.Option(metavar="TAG", help="Only runs with this tag.")] = None,
    since: Annotated[
        str | None,
        typer.Option(metavar="AGE", help="Only runs started within this age (90m, 12h, 2d, 1w)."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=0, metavar="INTEGER", help="At most this many runs.")
    ] = None,
    page_token: Annotated[
        str | None,
        typer.Option(
            "--page-token",
            metavar="TOKEN",
            show_default=False,
            help="Go on where a listing with --limit stopped (it prints the command).",
        ),
    ] = None,
    json_output: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """List runs, newest first: status, tag, start, duration, steps and the failed step.

    --status, --tag and --since are shorthands for filters, combined with --filter: a run
    must match them all. With --limit, a listing with more runs past the last one shown ends
    with the command that lists the next ones (on stderr with --json).
    """
    from runlog_store.cli.progress import TerminalProgress
    from runlog_store.ops.runs import parse_age, parse_status, stored_run_ids
    from runlog_store.search.query import with_shorthands
    from runlog_store.stores.base import MAX_PAGE_SIZE

    with _reporting_errors(verbose) as stores:
        age = parse_age(since, "--since") if since else None
        wanted = parse_status(status) if status is not None else None
        if filter_text is not None:
            _check_filter(filter_text)
        if order_by is not None:
            _check_order(order_by)
        extra = _columns(columns) if columns is not None else []
        search = with_shorthands(filter_text, wanted, tag, age)
        store = stores.open(config)
        next_token: str | None = None
        if limit == 0:
            runs: list[RunSummary] = []
        elif page_token is None and (limit is None or limit > MAX_PAGE_SIZE):
            # More than a page: read page after page, with no token to go on from.
            runs = _every_run(store, search, order_by, limit)
        else:
            if limit is not None and limit > MAX_PAGE_SIZE:
                raise RunLogStoreError(
                    f"--limit is at most {MAX_PAGE_SIZE:,} with --page-token: a page is read whole"
                )
            page = store.search_runs(
                search,
                order_by=order_by,
                max_results=limit if limit is not None else _PAGE_SIZE,
                page_token=page_token,
                callback=TerminalProgress(),
            )
            runs, next_token = page.runs, page.next_page_token
        if _is_project(store):
            for run in runs:
                with contextlib.suppress(RunLogStoreError):  # deleted since it was listed
                    run.layout = store.layout(run.run_id)
        run_ids = stored_run_ids(store) if not runs else []
    again = None
    if next_token is not None:
        options: list[tuple[str, object]] = [
            ("-c", config),
            ("--filter", filter_text),
            ("--order-by", order_by),
            ("--columns", columns),
            ("--status", wanted),
            ("--tag", tag),
            ("--since", since),
            ("--limit", limit if limit is not None else _PAGE_SIZE),
            ("--page-token", next_token),
        ]
        words = [_runlog_as_typed(), "list"]
        words += [w for name, v in options if v is not None for w in (name, shlex.quote(str(v)))]
        again = " ".join([*words, *(["--json"] if json_output else [])])
    if json_output:
        _print_json([run.model_dump(mode="json") for run in runs])
        if again is not None:
            _console(stderr=True).print(
                f"More runs: {_shown(again)}", highlight=False, soft_wrap=True
            )
        return
    console = _console()
    where = _shown(store.location())
    if not runs:
        asked = {
            "--filter": filter_text,
            "--status": wanted,
            "--tag": tag,
            "--since": since,
            "--limit": limit,
        }
        filters = " ".join(f"{name} {value}" for name, value in asked.items() if value is not None)
        if page_token is not None:
            console.print(f"No more runs in {where} match {_shown(filters or 'the search')}.")
        elif not run_ids:
            console.print(f"No runs in {where}.")
        elif len(run_ids) == 1:
            console.print(f"The one run in {where} does not match {_shown(filters)}.")
        else:
            console.print(f"None of the {len(run_ids)} runs in {where} match {_shown(filters)}.")
        return
    title = f"{counted(len(runs), 'run')} in {where}"
    # An id wider than the terminal is printed whole (the terminal wraps it), never cropped.
    console.print(_runs_table(runs, title, console.width, extra), crop=False)
    if again is not None:
        console.print(f"More runs: {_shown(again)}", highlight=False, soft_wrap=True)


# Runs per page of a listing given --page-token without --limit.
_PAGE_SIZE = 100


def _every_run(
    store: BaseRunLogStore, search: str | None, order_by: str | None, limit: int | None
) -> list[RunSummary]:
    """The runs a search finds, page after page (at most ``limit``), the reading drawn as a
    progress bar on a terminal."""
    from runlog_store.cli.progress import TerminalProgress
    from runlog_store.stores.base import MAX_PAGE_SIZE

    runs: list[RunSummary] = []
    token: str | None = None
    progress = TerminalProgress()
    while limit is None or len(runs) < limit:
        page = store.search_runs(
            search,
            order_by=order_by,
            max_results=MAX_PAGE_SIZE,
            page_token=token,
            callback=progress,
        )
        runs += page.runs
        token = page.next_page_token
        if token is None:
            break
    return runs[:limit]


def _check_order(text: str) -> None:
    """An ordering as the user typed it, checked on its own (errors point at its columns)."""
    from runlog_store.search.query import parse_order_by

    parse_order_by(text)


def _columns(text: str) -> list[Column]:
    """The attributes --columns names, each read as the filter language reads it."""
    from runlog_store.ops.columns import ColumnError, parse_columns

    try:
        return parse_columns(text)
    except ColumnError as exc:
        raise RunLogStoreError(f"--columns {exc}") from None


def _attribute_cell(value: object, width: int = 40) -> str:
    """A value of a run as a cell: strings as they are, numbers and the rest as JSON writes
    them; missing values (MISSING) "-"."""
    from runlog_store.ops.columns import MISSING

    if value is MISSING:
        return "[dim]-[/]"
    if isinstance(value, datetime):
        text = _when(value)
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return _cell(text, width)


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


def _runs_table(
    runs: list[RunSummary], title: str, width: int, extra: list[Column] | None = None
) -> Table:
    from runlog_store.ops.columns import column_value

    columns = dict(_LIST_COLUMNS)
    if not any(run.layout for run in runs):
        del columns["layout"]
    extra = [a for a in extra or [] if a.header not in columns]
    rows = []
    for run in runs:
        duration = run.duration_seconds
        cells = {
            "status": _status(run.status),
            "layout": run.layout or "-",
            "tag": _shown(run.tag),
            "start": _when(run.start),
            "duration": format_seconds(duration) if duration is not None else "-",
            "steps": str(run.steps),
            "failed step": f"[red]{_shown(run.failed_step or run.error or '')}[/]",
        }
        for attribute in extra:
            cells[attribute.header] = _attribute_cell(column_value(run, attribute))
        rows.append((run.run_id, cells))
    # A column asked for is drawn whole (up to a bound): the built-in ones make room for it,
    # they go first when the terminal is too narrow, then those asked for, last first.
    for attribute in extra:
        shown = [cell_len(Text.from_markup(cells[attribute.header]).plain) for _, cells in rows]
        header = cell_len(printable(attribute.header))
        columns[attribute.header] = min(max([header, *shown]), 30)
    if extra:
        # Room for them is made by leaving built-in columns out, not by wrapping every cell.
        for name in _DROPPED:
            if _natural_width(columns, rows) <= width:
                break
            columns.pop(name, None)
    dropped = _DROPPED + tuple(a.header for a in reversed(extra))
    return _table_of_runs(title, width, columns, dropped, rows, right={"steps"})


def _table_of_runs(
    title: str,
    width: int,
    columns: dict[str, int],
    dropped: tuple[str, ...],
    rows: list[tuple[str, dict[str, str]]],
    right: set[str] | frozenset[str] = frozenset(),
) -> Table:
    """A table of runs whose run id column is never cut nor wrapped: it is what a user copies
    into the next command. ``columns`` are the others, in the order drawn, with the narrowest
    each can be drawn in; when the terminal is too narrow they go in the order of ``dropped``
    (the status is never dropped)."""
    id_width = max([cell_len(printable(run_id)) for run_id, _ in rows] + [len("run id")])
    shown = dict(columns)

    def least() -> int:
        # Each column costs its width, two of padding and one border; the table one more border.
        return 1 + (id_width + 3) + sum(w + 3 for w in shown.values())

    for name in dropped:
        if least() <= width:
            break
        shown.pop(name, None)
    # Wider than the terminal even so: drawn at its least width (the terminal wraps the lines),
    # which rich would otherwise reach by squeezing columns to nothing.
    table = Table(title=title, width=least() if least() > width else None)
    table.add_column("run id", no_wrap=True, min_width=id_width)
    for name, narrowest in shown.items():
        table.add_column(
            _shown(name),  # a parameter's or metric's name, as a run stored it
            justify="right" if name in right else "left",
            min_width=narrowest,
            no_wrap=name == "status",
        )
    for run_id, cells in rows:
        table.add_row(_shown(run_id), *(cells[name] for name in shown))
    return table


@app.command(cls=_Command)
def show(
    run_id: RunIdArgument,
    config: ConfigOption = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the merged full run log JSON.")
    ] = False,
    depth: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="INTEGER",
            show_default=False,
            help="Levels of branch nesting to draw (default: all).",
        ),
    ] = 99,
    max_branches: Annotated[
        int,
        typer.Option(min=0, metavar="INTEGER", help="Branches, and catalog files, drawn per step."),
    ] = 20,
    verbose: VerboseOption = False,
) -> None:
    """Show a run as a tree: steps, branches, attempts, errors, parameters, metrics, catalog."""
    with _reporting_errors(verbose) as stores:
        store = _run_store(stores.open(config, run_id), run_id)
        if json_output:
            sys.stdout.buffer.write(store.get_run_log_json(run_id) + b"\n")
            _note_unfolded(store, run_id, _console(stderr=True))
            return
        run_log = store.get_run_log_by_id(run_id, full=True)
    console = _console()
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
        f"[yellow]note:[/] {counted(len(journals), 'journal')} ({size:,} bytes) "
        f"hold{'' if many else 's'} writes not folded into the run's documents yet: runlog reads "
        "them, runnable's own chunked store does not. The run is still going, or was stopped "
        f"before its end; [bold]runlog fold {_shown(run_id)}[/] folds them.",
        highlight=False,
    )


@app.command(cls=_Command)
def fold(
    run_id: RunIdArgument,
    config: ConfigOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Fold a stopped run into runnable's own layout, as its end does.

    For a run stopped before its end (killed): afterwards runnable's chunked store reads all of
    it.
    """
    from runlog_store.stores.chunked import ChunkedRunLogStore

    with _reporting_errors(verbose) as stores:
        store = _run_store(stores.open(config, run_id), run_id)
        if not isinstance(store, ChunkedRunLogStore):
            _fail(
                f"nothing to fold: run {run_id!r} is in {_describe(store)}, which keeps a run "
                "in one document (runlog fold folds the runs of chunked-fs and chunked-minio "
                "stores)",
                verbose,
            )
        journals = store.unfolded_journals(run_id)
        store.fold(run_id)
    size = sum(bytes_ for _, bytes_ in journals)
    what = (
        f"{counted(len(journals), 'journal')} ({size:,} bytes) folded and removed"
        if journals
        else "every step is in its branch's and the run's document"
    )
    _console().print(
        f"Folded run {_shown(run_id)}: {what}; runnable's own chunked store reads all of it now."
    )


@app.command(cls=_Command)
def timeline(
    run_id: RunIdArgument,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", metavar="FILE", help="HTML file to write (default: RUN_ID.html)."
        ),
    ] = None,
    config: ConfigOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Draw every step attempt on a time axis, in one self-contained HTML page."""
    from runlog_store.cli.timeline import render_timeline

    target = output or Path(f"{run_id}.html")
    with _reporting_errors(verbose) as stores:
        run_log = stores.open(config, run_id).get_run_log_by_id(run_id, full=True)
        page = render_timeline(run_log).encode()
        _core.write_atomic(str(target), page, fsync=False, run_id=run_id)
    attempts = sum(len(step.attempts) for step in run_log.iter_steps())
    _console().print(
        f"Wrote the timeline of {counted(attempts, 'attempt')} of run {_shown(run_id)} to "
        f"{_shown(str(target))}",
        highlight=False,
    )


@app.command(cls=_Command)
def diff(
    run_ids: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="RUN_ID",
            show_default=False,
            help="The runs to compare: two for everything that differs, or more.",
        ),
    ] = None,
    config: ConfigOption = None,
    config_b: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Configuration of the second run's store, when it is another.",
        ),
    ] = None,
    filter_text: Annotated[
        str | None,
        typer.Option(
            "--filter",
            metavar="FILTER",
            show_default=False,
            help="Compare the runs this filter matches (with RUN_IDs: those of them it matches), "
            "as runlog list --filter takes it.",
        ),
    ] = None,
    order_by: Annotated[
        str | None,
        typer.Option(
            "--order-by",
            metavar="ORDER",
            show_default=False,
            help="The order of the runs compared, as runlog list --order-by takes it.",
        ),
    ] = None,
    rows: Annotated[
        int,
        typer.Option(
            min=1, metavar="INTEGER", help="Rows shown per section, or runs (--json shows all)."
        ),
    ] = 20,
    json_output: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Compare runs: two runs in parameters, metrics, code, data hashes, statuses and the DAG;
    more runs (or --filter) in status, tag, DAG hash, commit, parameters and metrics.

    Only what differs is shown: of several runs, one table of the keys whose values are not
    the same in all of them, a column per run (a row per run when there are more than four).
    Exit status 0 when they do not differ in any of these, 1 when they do.
    """
    run_ids = run_ids or []
    if filter_text is None and len(run_ids) == 2:
        _diff_two(run_ids[0], run_ids[1], config, config_b, rows, json_output, verbose)
        return
    with _reporting_errors(verbose) as stores:
        if config_b is not None:
            raise RunLogStoreError(
                "--config-b names the store of the second of two runs; runs compared with "
                "--filter, or more than two, are all of the store of -c"
            )
        if filter_text is None and not run_ids:
            raise RunLogStoreError("name the runs to compare (RUN_ID ...) or give --filter")
        if filter_text is not None:
            _check_filter(filter_text)
        if order_by is not None:
            _check_order(order_by)
        store = stores.open(config)
        summaries = _runs_to_compare(store, run_ids, filter_text, order_by)
        if len(summaries) < 2:
            if filter_text is None:
                matched = f"{counted(len(summaries), 'run')} named"
            elif run_ids:
                matched = f"the filter matches {counted(len(summaries), 'run')} of those named"
            else:
                matched = f"the filter matches {counted(len(summaries), 'run')}"
            named = f" ({_shown(summaries[0].run_id)})" if summaries else ""
            raise RunLogStoreError(f"diff compares two runs or more; {matched}{named}")
        from runlog_store.ops.diff import diff_summaries

        differences = diff_summaries(summaries)
    order = [s.run_id for s in summaries]
    if json_output:
        _print_json({"runs": order, "differences": [d.model_dump() for d in differences]})
    elif not differences:
        _console().print(
            f"[green]the {len(order)} runs do not differ[/] in status, tag, DAG hash, commit, "
            "parameters or metrics"
        )
    else:
        console = _console()
        console.print(_differences_of_runs(differences, order, rows, console.width), crop=False)
    if differences:
        raise typer.Exit(code=1)


def _diff_two(
    run_a: str,
    run_b: str,
    config: Path | None,
    config_b: Path | None,
    rows: int,
    json_output: bool,
    verbose: bool,
) -> None:
    """Two runs, in everything that can explain a different outcome (ops.diff.diff_runs)."""
    from runlog_store.ops.diff import diff_runs

    with _reporting_errors(verbose) as stores:
        store_a = stores.open(config, run_a)
        store_b = stores.open(config_b, run_b) if config_b else store_a
        a = json.loads(store_a.get_run_log_json(run_a))
        b = json.loads(store_b.get_run_log_json(run_b))
        differences = diff_runs(a, b)
    if json_output:
        _print_json([d.model_dump() for d in differences])
    elif not differences:
        _console().print(
            f"[green]runs {_shown(run_a)} and {_shown(run_b)} do not differ[/] in parameters, "
            "metrics, code, data, statuses or DAG"
        )
    else:
        _console().print(_differences_table(differences, run_a, run_b, rows))
    if differences:
        raise typer.Exit(code=1)


def _runs_to_compare(
    store: BaseRunLogStore, run_ids: list[str], filter_text: str | None, order_by: str | None
) -> list[RunSummary]:
    """The summaries of the runs named (each must be there; in the order named), of those of
    them the filter matches, or of every run it matches (in the search's order)."""
    from runlog_store.ops.runs import read_summary

    if not run_ids:
        return list(store.iter_runs(filter_text, order_by=order_by))
    named = [read_summary(store, run_id) for run_id in dict.fromkeys(run_ids)]
    if filter_text is None:
        return named
    matched = {s.run_id for s in store.iter_runs(filter_text)}
    return [s for s in named if s.run_id in matched]


# Up to this many runs, a comparison draws a column per run; past it, a row per run.
_RUNS_AS_COLUMNS = 4


def _differences_of_runs(
    differences: list[RunsDifference], order: list[str], rows: int, width: int
) -> Table:
    from runlog_store.ops.columns import MISSING

    title = f"{counted(len(differences), 'difference')} across {len(order)} runs"
    if len(order) <= _RUNS_AS_COLUMNS:
        table = Table(title=title)
        table.add_column("key", overflow="fold")
        for run_id in order:
            table.add_column(_shown(run_id), overflow="fold")
        shown: Counter[str] = Counter()
        hidden: Counter[str] = Counter()
        for found in differences:
            if shown[found.section] >= rows:
                hidden[found.section] += 1
                continue
            shown[found.section] += 1
            values = [_attribute_cell(found.values.get(r, MISSING)) for r in order]
            table.add_row(_shown(found.attribute), *values)
        for section, count in hidden.items():
            more = f"[dim]… {count} more {section}s (--json shows all)[/]"
            table.add_row(more, *([""] * len(order)))
        return table
    columns = {d.attribute: max(3, min(cell_len(printable(d.attribute)), 12)) for d in differences}
    table_rows = []
    for run_id in order[:rows]:
        cells = {d.attribute: _attribute_cell(d.values.get(run_id, MISSING)) for d in differences}
        table_rows.append((run_id, cells))
    table = _table_of_runs(title, width, columns, (), table_rows)
    if len(order) > rows:
        table.caption = f"… {counted(len(order) - rows, 'more run')} (--json shows all)"
    return table


def _cell(value: str | None, width: int = 72) -> str:
    if value is None:
        return "[dim]absent[/]"
    text = printable(value)  # cut as it is shown: an escape is several characters wide
    return escape(text if len(text) <= width else text[: width - 1] + "…")


def _differences_table(differences: list[Difference], run_a: str, run_b: str, rows: int) -> Table:
    table = Table(title=counted(len(differences), "difference"))
    for column in ("what", "key", run_a, run_b):
        table.add_column(_shown(column), overflow="fold")
    shown: Counter[str] = Counter()
    hidden: Counter[str] = Counter()
    for found in differences:
        if shown[found.section] >= rows:
            hidden[found.section] += 1
            continue
        shown[found.section] += 1
        table.add_row(found.section, _shown(found.key), _cell(found.a), _cell(found.b))
    for section, count in hidden.items():
        table.add_row(section, f"[dim]… {count} more (--json shows all)[/]", "", "")
    return table


@app.command(cls=_Command)
def export(
    run_id: RunIdArgument,
    output: Annotated[
        Path,
        typer.Option("--output", "-o", metavar="FILE", help="JSON file to write, or - for stdout."),
    ],
    config: ConfigOption = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the file if it exists.")] = False,
    verbose: VerboseOption = False,
) -> None:
    """Write the full run log (every step and branch, merged) to one JSON file."""
    from runlog_store.ops.transfer import export_run

    with _reporting_errors(verbose) as stores:
        store = stores.open(config, run_id)
        if str(output) == "-":
            sys.stdout.buffer.write(store.get_run_log_json(run_id) + b"\n")
            return
        size = export_run(store, run_id, output, overwrite=force)
    _console(stderr=True).print(
        f"Exported run {_shown(run_id)} ({size:,} bytes) to {_shown(str(output))}",
        highlight=False,
    )


@app.command(cls=_Command)
def copy(
    run_id: RunIdArgument,
    to: Annotated[
        Path,
        typer.Option("--to", metavar="FILE", help="Configuration file of the store to copy into."),
    ],
    config: ConfigOption = None,
    with_catalog: Annotated[
        bool,
        typer.Option(
            "--with-catalog",
            help="Copy the run's catalog files too (into the target's catalog).",
        ),
    ] = False,
    verbose: VerboseOption = False,
) -> None:
    """Copy a run into another store, checked by reading it back there."""
    from runlog_store.cli.progress import TerminalProgress
    from runlog_store.ops.transfer import copy_run

    with _reporting_errors(verbose) as stores:
        source = stores.open(config, run_id)
        target = _load_store(to)
        catalogs = (_load_catalog(config), _load_catalog(to)) if with_catalog else (None, None)
        report = copy_run(
            source,
            target,
            run_id,
            source_catalog=catalogs[0],
            target_catalog=catalogs[1],
            callback=TerminalProgress(),
        )
    console = _console()
    console.print(
        f"Copied run {_shown(run_id)} ({counted(report.steps, 'step')}, "
        f"{report.run_log_bytes:,} bytes of run log) from the {_shown(report.source)} to the "
        f"{_shown(report.target)}; it reads back identical."
    )
    if with_catalog:
        checked = len(report.verification.files) if report.verification else 0
        good = checked - len(report.inherited)
        console.print(
            f"Copied {counted(report.catalog_files, 'catalog file')} "
            f"({report.catalog_bytes:,} bytes); {good} of {checked} re-hashed against the run "
            "log's data hashes match."
        )
        for problem in report.inherited:
            console.print(
                f"[yellow]warning:[/] {_shown(problem)} fails in the source catalog too "
                "(copied as it is)"
            )


# The columns of ``runlog gc`` past the run id, as _LIST_COLUMNS; "catalog files" only with
# --with-catalog. "size" is what deleting the run frees: its run log and its catalog files
# (a content catalog's contents are counted by the sweep, in the last line).
_GC_COLUMNS: dict[str, int] = {
    "status": 8,
    "last written": 10,
    "age": 5,
    "size": 6,
    "catalog files": 7,
    "action": 12,
}
_GC_DROPPED = ("catalog files", "age", "last written")


@app.command(cls=_Command)
def gc(
    older_than: Annotated[
        str | None,
        typer.Option(
            metavar="AGE",
            show_default=False,
            help="Delete runs last written longer ago than this (30d, 12h, 1w); else the "
            "retention: section's older_than.",
        ),
    ] = None,
    config: ConfigOption = None,
    status: StatusOption = None,
    keep_last: Annotated[
        int | None,
        typer.Option(
            min=0,
            metavar="INTEGER",
            show_default=False,
            help="Keep the newest INTEGER runs of each tag, whatever else says they may go.",
        ),
    ] = None,
    filter_text: Annotated[
        str | None,
        typer.Option(
            "--filter",
            metavar="FILTER",
            show_default=False,
            help="Delete only runs this filter matches, as runlog list --filter takes it "
            "(with the retention: section's filter, both must match).",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Only show what would be deleted and the bytes it frees."),
    ] = False,
    with_catalog: Annotated[
        bool, typer.Option("--with-catalog", help="Delete the runs' catalog files too.")
    ] = False,
    include_unfinished: Annotated[
        bool,
        typer.Option(
            "--include-unfinished",
            help="Also delete runs that never ended (CREATED, PROCESSING) once they are old "
            "enough: runs of crashed pipelines.",
        ),
    ] = False,
    json_output: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Delete old runs, never one still being written.

    With no options, the retention: section of the configuration file says which runs go
    (older_than, keep_last, statuses, filter, include_unfinished); an option replaces its key,
    and --filter narrows its filter. A run goes only when every rule lets it go.

    A run whose folder or document, or with --with-catalog whose catalog folder, is a symbolic
    link is kept, with a note naming the link: gc never deletes through a link, which may point
    anywhere. An entry whose name is no run id is kept as UNREADABLE. A run that cannot be
    deleted is named with its path and the error, the others are still deleted, and the exit
    status is 2.
    """
    from runlog_store.cli.progress import TerminalProgress
    from runlog_store.config import load_retention
    from runlog_store.ops.retention import select_runs
    from runlog_store.ops.runs import describe_age, parse_age, parse_status, stored_run_ids
    from runlog_store.ops.transfer import gc_contents

    with _reporting_errors(verbose) as stores:
        if older_than is not None:
            parse_age(older_than)
        wanted = parse_status(status) if status is not None else None
        if filter_text is not None:
            _check_filter(filter_text)
        policy = _overridden(
            load_retention(_config_file(config)),
            older_than=older_than,
            keep_last=keep_last,
            status=wanted,
            filter=filter_text,
            include_unfinished=include_unfinished,
        )
        if policy.older_than is None:
            where = f" of {resolve_config_file(config)}" if resolve_config_file(config) else ""
            raise RunLogStoreError(
                "gc needs an age: --older-than AGE (30d, 12h, 1w), or older_than in the "
                f"retention: section{where}"
            )
        age_text = describe_age(policy.older_than, "older_than")
        store = stores.open(config)
        catalog = _load_catalog(config) if with_catalog else None
        run_ids = stored_run_ids(store)
        total = len(run_ids)
        selection = select_runs(store, policy)
        collected = _collect_runs(store, run_ids, selection, policy, catalog, dry_run)
        decisions = collected.decisions
        if not dry_run:  # removals an earlier gc was killed inside, even when no run goes now
            from runlog_store.ops.transfer import remove_leftovers

            remove_leftovers(store)
        # A content catalog keeps contents apart from runs: those no remaining run references
        # go now (kept from the JSON output, a list of runs, and said on stderr).
        sweep = None
        if catalog is not None:
            gone = {d.run_id for d in decisions if d.action == "would delete"}
            sweep = gc_contents(
                catalog, dry_run=dry_run, deleted_runs=gone, callback=TerminalProgress()
            )
    err = _console(stderr=True)
    for note in collected.notes:
        err.print(f"[yellow]note:[/] {_shown(note)}", highlight=False, soft_wrap=True)
    if sweep is not None:
        verb = "would remove" if dry_run else "removed"
        err.print(
            f"Contents: {verb} {sweep.removed} of {sweep.contents} ({sweep.removed_bytes:,} "
            f"bytes) that no remaining run references; {sweep.kept_bytes:,} bytes kept."
        )
        for refused in sweep.refused:
            err.print(
                f"[yellow]note:[/] left alone, not followed: {_shown(refused)}",
                highlight=False,
                soft_wrap=True,
            )
    if json_output:
        _print_json([d.model_dump(mode="json") for d in decisions])
    else:
        swept = sweep.removed_bytes if sweep is not None else 0
        _print_decisions(store, decisions, total, policy, age_text, with_catalog, dry_run, swept)
    for error in collected.errors:
        err.print(f"[bold red]error:[/] {_shown(error)}", highlight=False, soft_wrap=True)
    if collected.errors:
        raise typer.Exit(code=2)


def _check_filter(text: str) -> None:
    """A filter as the user typed it, checked on its own: an error points at a column of what
    they wrote, not of the filter it is combined into."""
    from runlog_store.search.query import parse_filter

    parse_filter(text)


def _overridden(policy: RetentionPolicy, **options: Any) -> RetentionPolicy:
    """The configuration's policy with the command line's options (checked already)."""
    from pydantic import ValidationError

    try:
        return policy.overridden(**options)
    except ValidationError as exc:  # what the options could not be checked for on their own
        error = exc.errors()[0]
        raise RunLogStoreError(str(error["msg"]).removeprefix("Value error, ")) from None


class _Collected(NamedTuple):
    decisions: list[GcDecision]
    notes: list[str]  # runs kept for what they are (a link), said on stderr
    errors: list[str]  # runs that could not be deleted, with their paths


def _collect_runs(
    store: BaseRunLogStore,
    run_ids: list[str],
    selection: Selection,
    policy: RetentionPolicy,
    catalog: BaseCatalog | None,
    dry_run: bool,
) -> _Collected:
    """The runs the policy selected, deleted one at a time: a run gc must not touch (its name is
    no run id, it is stored through a symbolic link) is kept before anything deletes it, and a
    run that fails to be deleted is one error naming its path while the runs after it are
    still collected."""
    from runlog_store.cli.progress import TerminalProgress
    from runlog_store.ops.runs import UNREADABLE, run_id_problem, symbolic_links
    from runlog_store.ops.transfer import GcDecision, count_freed, delete_if_unchanged

    collected = _Collected([], [], [])
    # Listed UNREADABLE by runlog list, kept as a run that cannot be read is; a filter or
    # statuses match no such run.
    if policy.filter is None and policy.statuses in (None, (UNREADABLE,)):
        for run_id in run_ids:
            if run_id_problem(run_id) is not None:
                collected.decisions.append(
                    GcDecision(
                        run_id=run_id,
                        status=UNREADABLE,
                        last_written=None,
                        age_seconds=None,
                        action="kept: unreadable",
                    )
                )
    progress = TerminalProgress()
    candidates = [c for c in selection.candidates if run_id_problem(c.summary.run_id) is None]
    with progress.phase("deleting runs" if not dry_run else "checking runs", len(candidates)):
        for candidate in candidates:
            progress.advance(1)
            run_id = candidate.summary.run_id
            links = symbolic_links(store, run_id, catalog)
            if links:
                collected.notes.append(
                    f"run {run_id!r} kept: {links[0]} is a symbolic link, and gc never deletes "
                    "through one"
                )
                continue
            decision = GcDecision(
                run_id=run_id,
                status=candidate.summary.status,
                last_written=candidate.last_written,
                age_seconds=candidate.age_seconds,
                action=candidate.action or ("would delete" if dry_run else "deleted"),
                modified=candidate.modified,
            )
            if candidate.action is not None:
                collected.decisions.append(decision)
                continue
            try:
                count_freed(store, decision, catalog)
                if not dry_run and not delete_if_unchanged(
                    store, run_id, candidate.modified, catalog
                ):
                    decision.action = "kept: written during gc"
            except (RunLogStoreError, OSError) as exc:
                collected.errors.append(_not_deleted(store, run_id, exc))
                continue
            collected.decisions.append(decision)
    return collected


def _not_deleted(store: BaseRunLogStore, run_id: str, exc: RunLogStoreError | OSError) -> str:
    """A run gc failed to delete, with the path it failed on: the error's own, else where the
    store keeps the run."""
    from runlog_store.ops.runs import run_paths

    path = exc.path if isinstance(exc, RunLogStoreError) else exc.filename
    if not path:
        path = next((p for p in run_paths(store, run_id) if os.path.lexists(p)), "")
    where = f" ({path})" if path else ""
    message = str(exc) if isinstance(exc, RunLogStoreError) else exc.strerror or str(exc)
    return f"run {run_id!r} was not deleted{where}: {message}"


def _print_decisions(
    store: BaseRunLogStore,
    decisions: list[GcDecision],
    total: int,
    policy: RetentionPolicy,
    age_text: str,
    with_catalog: bool,
    dry_run: bool,
    swept: int,
) -> None:
    console = _console()
    where = _shown(store.location())
    if not decisions:
        if not total:
            console.print(f"No runs in {where}; nothing to delete.")
            return
        statuses = policy.statuses or ()
        which = f"{statuses[0]} run" if len(statuses) == 1 else "run"
        if policy.filter is not None:
            which += " the filter matches"
        console.print(
            f"No {which} in {where} was last written more than {age_text} ago "
            f"({counted(total, 'run')} checked); nothing to delete."
        )
        return
    columns = dict(_GC_COLUMNS)
    if not with_catalog:
        del columns["catalog files"]
    rows = []
    for decision in decisions:
        going = decision.action in ("deleted", "would delete")
        style = "red" if going else "yellow"
        ago = decision.age_seconds
        size = (decision.run_bytes or 0) + decision.catalog_bytes
        cells = {
            "status": _status(decision.status),
            "last written": _when(decision.last_written),
            "age": format_age(ago) if ago is not None else "-",
            "size": format_bytes(size) if going and decision.run_bytes is not None else "-",
            "catalog files": str(decision.catalog_files),
            "action": f"[{style}]{decision.action}[/]",
        }
        rows.append((decision.run_id, cells))
    # The size is a column only where the table fits whole with it: the total is said under
    # the table, and the columns gc always drew are not squeezed for it.
    if _natural_width(columns, rows) > console.width:
        del columns["size"]
    title = f"Runs last written more than {age_text} ago"
    if policy.keep_last is not None:
        title += f", past the newest {policy.keep_last} of each tag"
    right = {"catalog files", "size"}
    table = _table_of_runs(title, console.width, columns, _GC_DROPPED, rows, right)
    console.print(table, crop=False)
    gone = [d for d in decisions if d.action in ("deleted", "would delete")]
    verb = "would delete" if dry_run else "deleted"
    freed = sum((d.run_bytes or 0) + d.catalog_bytes for d in gone) + swept
    what = "would free" if dry_run else "freed"
    console.print(f"{verb} {len(gone)} of {counted(total, 'run')}; {what} {freed:,} bytes")


def _natural_width(columns: dict[str, int], rows: list[tuple[str, dict[str, str]]]) -> int:
    """How wide a table of runs is drawn with no cell wrapped (markup left out)."""

    def width(cell: str) -> int:
        return cell_len(Text.from_markup(cell).plain)

    id_width = max([cell_len(printable(run_id)) for run_id, _ in rows] + [len("run id")])
    widths = [
        max([cell_len(printable(name))] + [width(cells[name]) for _, cells in rows])
        for name in columns
    ]
    return 1 + (id_width + 3) + sum(w + 3 for w in widths)


@app.command(cls=_Command)
def verify(
    run_id: RunIdArgument,
    config: ConfigOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Re-hash a run's catalog copies and compare them with the data hashes of its run log.

    Exit status 0 when every copy matches, 1 when any is changed, missing or unreadable.
    """
    from runlog_store.cli.progress import TerminalProgress
    from runlog_store.ops.verify import verify_catalog

    with _reporting_errors(verbose) as stores:
        store = stores.open(config, run_id)
        catalog = _load_catalog(config)
        run_log = store.get_run_log_by_id(run_id, full=True)
        report = verify_catalog(run_log, catalog, TerminalProgress())
        where = str(catalog.get_summary().get("Location"))
        local = catalog.local_run_folder(run_id)
    console = _console()
    if not report.files:
        console.print(
            f"Run {_shown(run_id)} recorded no catalog files: nothing to verify.", highlight=False
        )
        return
    table = Table(title=f"Catalog of run {_shown(run_id)} in {_shown(where)}")
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
        table.add_row(f"[{style}]{checked.status}[/]", _shown(shown), _shown(detail))
    console.print(table)
    files = len(report.files)
    problems = len(report.problems)
    if problems:
        console.print(f"[bold red]{problems} of {counted(files, 'file')} failed verification[/]")
        raise typer.Exit(code=1)
    if files == 1:
        console.print("[green]the one file matches its recorded hash[/]")
    else:
        console.print(f"[green]all {files} files match their recorded hashes[/]")


@app.command(cls=_Command)
def serve(
    config: ConfigOption = None,
    host: Annotated[
        str,
        typer.Option(
            metavar="HOST",
            help="Address to listen on. Any but the loopback (127.0.0.1, ::1, localhost) "
            "needs a token: one is made up and printed in the URL, unless --token or "
            "--no-token says otherwise.",
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(
            min=0, max=65535, metavar="INTEGER", help="Port to listen on (0: any free port)."
        ),
    ] = 8765,
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the page in a web browser.")
    ] = False,
    token: Annotated[
        str | None,
        typer.Option(
            metavar="TOKEN",
            show_default=False,
            help="Let in only who has this token (the URL printed carries it), on any address.",
        ),
    ] = None,
    no_token: Annotated[
        bool,
        typer.Option(
            "--no-token",
            help="Let anyone who can reach the address in, without a token.",
        ),
    ] = False,
    verbose: VerboseOption = False,
) -> None:
    """Show the runs in a web browser: search them, open one (followed live while it is
    written), compare them. Read-only: nothing on its pages changes the store.

    It prints the URL to open and serves until interrupted (Ctrl-C).
    """
    import secrets
    import socket

    with _reporting_errors(verbose) as stores:
        if token is not None and no_token:
            raise RunLogStoreError("--token and --no-token say opposite things: give one")
        if token is not None and not token.strip():
            raise RunLogStoreError("--token is empty: give a token, or --no-token")
        if token is None and not no_token and not _is_loopback(host):
            # Anyone who can reach the address could read every run: as Jupyter does, a token
            # made up here, in the URL printed.
            token = secrets.token_urlsafe(32)
        store = stores.open(config)
        import uvicorn

        from runlog_store.serve import create_app

        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, kind, protocol, _, address = found[0]
        sock = socket.socket(family, kind, protocol)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Bound and listening before the URL is printed: whoever reads it can connect at
        # once (the connection waits in the backlog until the server takes it).
        sock.bind(address)
        sock.listen(128)
        bound_port = sock.getsockname()[1]
        shown_host = f"[{host}]" if ":" in host else host
        url = f"http://{shown_host}:{bound_port}/"
        if token is not None:
            url += f"?token={token}"
        sys.stdout.write(f"runlog serve: {url} (store: {printable(_describe(store))})\n")
        sys.stdout.flush()
        if open_browser:
            import webbrowser

            webbrowser.open(url)
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(store, token=token, loopback_only=_is_loopback(host)),
                log_level="warning",
                lifespan="off",
                # A live page's stream never ends by itself: at Ctrl-C it is cut after this.
                timeout_graceful_shutdown=2,
            )
        )
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn stops on Ctrl-C, then raises it again
            pass
        finally:
            sock.close()


def _is_loopback(host: str) -> bool:
    """Whether only this machine can reach the address."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main() -> None:
    # pydantic looks for its plugins in the entry points of every installed distribution when
    # it builds its first model (~30 ms here, before every command's first store): the
    # command's models are its own, with nothing for another package's plugin to observe.
    # Said the way pydantic reads it, for this process only; a choice of the user's stands.
    disabled = os.environ.get(_NO_PLUGINS)
    if disabled is None:
        os.environ[_NO_PLUGINS] = "__all__"
    try:
        app()
    finally:
        if disabled is None:
            os.environ.pop(_NO_PLUGINS, None)


_NO_PLUGINS = "PYDANTIC_DISABLE_PLUGINS"


if __name__ == "__main__":
    main()
