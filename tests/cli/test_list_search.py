"""``runlog list`` as a search: --filter, --order-by, --columns, pages (--limit and
--page-token), the shorthands --status, --tag and --since combined with --filter, and the one
line a filter it cannot read is told with. On file-system, chunked-fs and chunked-minio stores
(answered from their index), through typer's test runner."""

from __future__ import annotations

import json
import shlex
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from runlog_store.cli.app import app
from runlog_store.config import load_store
from runlog_store.models import (
    FAIL,
    PROCESSING,
    SUCCESS,
    JsonParameter,
    MetricParameter,
    StepAttempt,
)
from runlog_store.stores.base import BaseRunLogStore

KINDS = ["file-system", "chunked-fs", "chunked-minio"]


def invoke(*args: str | Path, code: int = 0, columns: int = 250) -> Any:
    result = CliRunner().invoke(
        app,
        [str(a) for a in args],
        env={"COLUMNS": str(columns), "RUNNABLE_CONFIGURATION_FILE": None},
    )
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    return result


def listed(*args: str | Path) -> list[str]:
    """The run ids ``runlog list --json`` prints, in its order."""
    return [run["run_id"] for run in json.loads(invoke("list", "--json", *args).stdout)]


def configured(
    kind: str, folder: Path, request: pytest.FixtureRequest, **extra: Any
) -> tuple[Path, BaseRunLogStore]:
    """A configuration file of a store of ``kind`` (and a file-system catalog) in ``folder``,
    with ``extra`` top-level sections (``retention``), and its store."""
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "chunked-minio":
        store: dict[str, Any] = {
            "type": kind,
            "config": dict(request.getfixturevalue("minio_config")),
        }
    else:
        store = {"type": kind, "config": {"log_folder": str(folder / "logs"), "fsync": False}}
    catalog = {"type": "file-system", "config": {"catalog_location": str(folder / "catalog")}}
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump({"run-log-store": store, "catalog": catalog, **extra}))
    return config, load_store(config)


def sweep_run(
    store: BaseRunLogStore,
    run_id: str,
    *,
    tag: str = "sweep",
    status: str = SUCCESS,
    params: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    ago: timedelta = timedelta(0),
    branches: int = 0,
) -> None:
    """A run that started ``ago`` (its one attempt took a second), with root parameters and
    metrics, and ``branches`` branches of a map step."""
    start = datetime.now() - ago - timedelta(seconds=2)
    store.create_run_log(run_id, dag_hash="d" * 40, tag=tag, status=PROCESSING)
    if params:
        store.set_parameters(
            run_id, {k: JsonParameter(kind="json", value=v) for k, v in params.items()}
        )
    if metrics:
        store.set_parameters(
            run_id, {k: MetricParameter(kind="metric", value=v) for k, v in metrics.items()}
        )
    step = store.create_step_log("train", "train")
    step.step_type = "map" if branches else "task"
    step.attempts.append(
        StepAttempt(
            attempt_number=1,
            start_time=str(start),
            end_time=str(start + timedelta(seconds=1)),
            status=status,
        )
    )
    step.status = status
    store.add_step_log(step, run_id)
    for index in range(branches):
        branch = store.create_branch_log(f"train.{index}")
        branch.status = status
        store.add_branch_log(branch, run_id)
    if status != PROCESSING:
        store.update_run_log_status(run_id, status)


SWEEP: dict[str, tuple[int, str, str, dict[str, Any], dict[str, Any]]] = {
    # run id: (hours ago, status, tag, params, metrics)
    "r1": (4, SUCCESS, "sweep", {"lr": 0.1, "layers": 2}, {"accuracy": 0.7}),
    "r2": (3, SUCCESS, "sweep", {"lr": 0.2, "layers": 2}, {"accuracy": 0.9}),
    "r3": (2, FAIL, "sweep", {"lr": 0.3, "layers": 4}, {"accuracy": 0.8}),
    "r4": (1, SUCCESS, "other", {"lr": 0.4, "note": "first try"}, {}),
}


@pytest.fixture(params=KINDS)
def sweep(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """The configuration of a store of each kind holding the four runs of SWEEP."""
    config, store = configured(request.param, tmp_path / "place", request)
    for run_id, (hours, status, tag, params, metrics) in SWEEP.items():
        sweep_run(
            store,
            run_id,
            tag=tag,
            status=status,
            params=params,
            metrics=metrics,
            ago=timedelta(hours=hours),
        )
    return config


def test_filter_and_order_by_answer_as_the_language_says(sweep: Path) -> None:
    assert listed("-c", sweep) == ["r4", "r3", "r2", "r1"]  # newest start first
    assert listed("-c", sweep, "--filter", "metrics.accuracy > 0.75") == ["r3", "r2"]
    assert listed("-c", sweep, "--filter", "params.layers = 2 or params.note is not null") == [
        "r4",
        "r2",
        "r1",
    ]
    # A run without the metric is last whichever the direction.
    by_accuracy = listed("-c", sweep, "--order-by", "metrics.accuracy desc")
    assert by_accuracy == ["r2", "r3", "r1", "r4"]
    assert listed("-c", sweep, "--order-by", "metrics.accuracy") == ["r1", "r3", "r2", "r4"]
    assert listed("-c", sweep, "--order-by", "params.layers desc, params.lr") == [
        "r3",
        "r1",
        "r2",
        "r4",
    ]


def test_status_tag_and_since_are_combined_with_the_filter(sweep: Path) -> None:
    assert listed("-c", sweep, "--status", "fail", "--filter", "params.lr >= 0.2") == ["r3"]
    assert listed("-c", sweep, "--status", "FAIL", "--filter", "params.lr < 0.2") == []
    assert listed("-c", sweep, "--tag", "sweep", "--filter", "metrics.accuracy < 0.85") == [
        "r3",
        "r1",
    ]
    assert listed("-c", sweep, "--since", "150m", "--filter", "tag = 'sweep'") == ["r3"]
    assert listed("-c", sweep, "--since", "150m") == ["r4", "r3"]
    # A tag with a quote in it is a tag like any other.
    sweep_run(load_store(sweep), "quoted", tag="it's")
    assert listed("-c", sweep, "--tag", "it's") == ["quoted"]
    none = invoke("list", "-c", sweep, "--status", "FAIL", "--filter", "params.lr < 0.2").stdout
    assert "None of the 5 runs" in none and "--filter params.lr < 0.2 --status FAIL" in none


def _row(table: str, run_id: str) -> list[str]:
    """The cells of a run's row (or of the header, "run id") in a drawn table."""
    lines = [line.replace("┃", "│") for line in table.splitlines()]
    line = next(line for line in lines if line.startswith(f"│ {run_id} "))
    return [cell.strip() for cell in line.strip("│").split("│")]


def test_columns_add_any_attribute_and_missing_values_are_a_dash(sweep: Path) -> None:
    table = invoke(
        "list", "-c", sweep, "--columns", "params.lr, metrics.accuracy,commit,step.train.status"
    ).stdout
    header = _row(table, "run id")
    assert header[-4:] == ["params.lr", "metrics.accuracy", "commit", "step.train.status"]
    assert _row(table, "r2")[-4:] == ["0.2", "0.9", "-", SUCCESS]
    assert _row(table, "r4")[-4:] == ["0.4", "-", "-", SUCCESS]
    assert _row(table, "r3")[-4:] == ["0.3", "0.8", "-", FAIL]
    # A string is shown as it is; a name with a comma is written in backticks.
    store = load_store(sweep)
    sweep_run(store, "odd", params={"a,b": [1, 2], "name": "x\x1b[2Jy"})
    odd = invoke(
        "list", "-c", sweep, "--columns", "params.`a,b`,params.name", "--filter", "tag = 'sweep'"
    )
    assert "\x1b" not in odd.stdout
    row = _row(odd.stdout, "odd")
    assert row[-2:] == ["[1, 2]", "x\\x1b[2Jy"], row


def test_pages_walk_every_run_once_with_the_command_they_print(sweep: Path) -> None:
    store = load_store(sweep)
    for index in range(5):
        sweep_run(store, f"more-{index}", tag="more", ago=timedelta(minutes=index))
    everything = listed("-c", sweep)
    assert len(everything) == 9
    seen: list[str] = []
    args: list[str] = ["list", "-c", str(sweep), "--limit", "4", "--json"]
    pages = 0
    while True:
        result = invoke(*args)
        seen += [run["run_id"] for run in json.loads(result.stdout)]
        pages += 1
        more = [line for line in result.stderr.splitlines() if line.startswith("More runs: ")]
        if not more:
            break
        words = shlex.split(more[0].removeprefix("More runs: "))
        args = words[words.index("list") :]
        assert "--page-token" in args and "--json" in args
    assert pages == 3 and seen == everything
    # In a table the command is printed under it.
    table = invoke("list", "-c", sweep, "--limit", "2", "--filter", "tag = 'sweep'").stdout
    assert "2 runs in" in table and "More runs: " in table
    command = shlex.split(table[table.index("More runs: ") :].removeprefix("More runs: "))
    following = invoke(*command[command.index("list") :]).stdout
    assert "r1" in following and "r2" not in following and "More runs" not in following
    # The last page prints no command; a token of another search is refused in one line.
    token = command[command.index("--page-token") + 1]
    other = invoke("list", "-c", sweep, "--limit", "2", "--page-token", token, code=2)
    lines = other.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not belong to this search" in lines[0], lines


@pytest.mark.parametrize(
    ("option", "text", "said"),
    [
        ("--filter", "status = 'FAIL' and >", "filter error at column "),
        ("--filter", "metrics.accuracy >", "filter error at column "),
        ("--filter", "start_time > 'yesterday'", "filter error at column "),
        ("--order-by", "metrics.accuracy sideways", "column"),
        ("--columns", "params.lr,", None),
        ("--columns", "colour", "--columns 'colour'"),
    ],
)
def test_what_it_cannot_read_is_one_line_pointing_at_it(
    sweep: Path, option: str, text: str, said: str | None
) -> None:
    if said is None:  # a trailing comma adds no column: nothing wrong
        invoke("list", "-c", sweep, option, text)
        return
    result = invoke("list", "-c", sweep, option, text, code=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert said in lines[0], lines[0]
    assert not result.stdout


def test_json_stays_a_list_of_runs_with_their_parameters_and_metrics(sweep: Path) -> None:
    runs = json.loads(invoke("list", "-c", sweep, "--json", "--filter", "run_id = 'r2'").stdout)
    assert isinstance(runs, list) and len(runs) == 1
    assert runs[0]["params"] == {"lr": 0.2, "layers": 2}
    assert runs[0]["metrics"] == {"accuracy": 0.9}
    assert "step_statuses" not in runs[0]
