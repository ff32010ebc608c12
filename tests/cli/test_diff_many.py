"""``runlog diff`` of more than two runs: named, or matched by --filter. One table of the
parameters, metrics and run attributes whose values are not the same in all of them; exit 1
when some differ, 0 when none do, 2 when fewer than two runs are to be compared."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from runlog_store.config import load_store
from runlog_store.models import FAIL, SUCCESS

from .test_list_search import KINDS, configured, invoke, sweep_run


@pytest.fixture(params=KINDS)
def sweep(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """Runs of one sweep: the same layers and tag, other learning rates and accuracies; r3
    failed; r4 has no accuracy; twin-a and twin-b (tag "twins") are the same run twice."""
    config, store = configured(request.param, tmp_path / "place", request)
    runs = {
        "r1": (0.1, {"accuracy": 0.7}, SUCCESS),
        "r2": (0.2, {"accuracy": 0.9}, SUCCESS),
        "r3": (0.3, {"accuracy": 0.8}, FAIL),
        "r4": (0.4, {}, SUCCESS),
    }
    for hours, (run_id, (lr, metrics, status)) in enumerate(reversed(runs.items()), start=1):
        sweep_run(
            store,
            run_id,
            status=status,
            params={"lr": lr, "layers": 2},
            metrics=metrics,
            ago=timedelta(hours=hours),
        )
    for run_id in ("twin-a", "twin-b"):
        sweep_run(store, run_id, tag="twins", params={"lr": 0.5}, metrics={"accuracy": 0.5})
    return config


def _differences(result_stdout: str) -> tuple[list[str], dict[str, dict[str, object]]]:
    found = json.loads(result_stdout)
    return found["runs"], {d["section"] + ":" + d["key"]: d["values"] for d in found["differences"]}


def test_a_filter_compares_every_run_it_matches_on_what_differs(sweep: Path) -> None:
    result = invoke("diff", "-c", sweep, "--filter", "tag = 'sweep'", "--json", code=1)
    runs, found = _differences(result.stdout)
    assert runs == ["r4", "r3", "r2", "r1"]  # newest start first, as runlog list
    assert found == {
        "run:status": {"r1": SUCCESS, "r2": SUCCESS, "r3": FAIL, "r4": SUCCESS},
        "parameter:lr": {"r1": 0.1, "r2": 0.2, "r3": 0.3, "r4": 0.4},
        # A run without it is left out of the values: it differs from those with it.
        "metric:accuracy": {"r1": 0.7, "r2": 0.9, "r3": 0.8},
    }
    # The same tag, DAG hash and layers everywhere: not differences.
    ordered = invoke(
        "diff",
        "-c",
        sweep,
        "--filter",
        "tag = 'sweep'",
        "--order-by",
        "params.lr",
        "--json",
        code=1,
    )
    assert _differences(ordered.stdout)[0] == ["r1", "r2", "r3", "r4"]


def test_few_runs_are_a_column_each_many_runs_a_row_each(sweep: Path) -> None:
    few = invoke("diff", "r1", "r2", "r4", "-c", sweep, code=1).stdout
    header = next(line for line in few.splitlines() if "key" in line and "r1" in line)
    assert header.index("r1") < header.index("r2") < header.index("r4")
    lr = next(line for line in few.splitlines() if "params.lr" in line)
    assert "0.1" in lr and "0.2" in lr and "0.4" in lr
    accuracy = next(line for line in few.splitlines() if "metrics.accuracy" in line)
    assert accuracy.split("│")[-2].strip() == "-"  # r4 has none
    assert "layers" not in few and "tag" not in few.split("across")[1]

    many = invoke("diff", "-c", sweep, "--filter", "params.lr > 0", code=1).stdout
    header = next(line for line in many.splitlines() if "run id" in line)
    assert "params.lr" in header and "metrics.accuracy" in header and "tag" in header
    for run_id in ("r1", "r2", "r3", "r4", "twin-a", "twin-b"):
        assert any(line.startswith(f"│ {run_id} ") for line in many.splitlines()), run_id
    bounded = invoke("diff", "-c", sweep, "--filter", "params.lr > 0", "--rows", "5", code=1)
    assert "1 more run (--json shows all)" in bounded.stdout


def test_runs_that_do_not_differ_exit_0(sweep: Path) -> None:
    same = invoke("diff", "-c", sweep, "--filter", "tag = 'twins'")
    assert "the 2 runs do not differ" in same.stdout
    assert (
        json.loads(invoke("diff", "-c", sweep, "--filter", "tag = 'twins'", "--json").stdout)[
            "differences"
        ]
        == []
    )


def test_named_runs_in_the_order_named_and_narrowed_by_the_filter(sweep: Path) -> None:
    runs, found = _differences(
        invoke("diff", "r3", "r1", "r2", "-c", sweep, "--json", code=1).stdout
    )
    assert runs == ["r3", "r1", "r2"] and set(found) == {
        "run:status",
        "parameter:lr",
        "metric:accuracy",
    }
    narrowed = invoke(
        "diff", "r3", "r1", "r2", "-c", sweep, "--filter", "status = 'SUCCESS'", "--json", code=1
    )
    runs, found = _differences(narrowed.stdout)
    assert runs == ["r1", "r2"] and set(found) == {"parameter:lr", "metric:accuracy"}


def test_two_runs_named_are_compared_in_everything_as_before(sweep: Path) -> None:
    pairs = json.loads(invoke("diff", "r1", "r3", "-c", sweep, "--json", code=1).stdout)
    found = {(d["section"], d["key"]): (d["a"], d["b"]) for d in pairs}
    assert found[("parameter", "lr")] == ("0.1", "0.3")
    assert found[("step", "train")] == (SUCCESS, FAIL)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--filter", "tag = 'nothing'"], "diff compares two runs or more; the filter matches 0"),
        (["--filter", "params.lr = 0.2"], "the filter matches 1 run (r2)"),
        (["r1", "r2", "--filter", "params.lr > 0.15"], "matches 1 run of those named (r2)"),
        (["r1"], "diff compares two runs or more; 1 run named (r1)"),
        (["r1", "r2", "nope"], "no run 'nope'"),
        (["--filter", "tag ="], "filter error at column"),
        (["r1", "--filter", "tag = 'sweep'", "--config-b", "x.yaml"], "--config-b"),
        ([], "name the runs to compare"),
    ],
)
def test_what_cannot_be_compared_is_one_line(sweep: Path, args: list[str], said: str) -> None:
    result = invoke("diff", *args, "-c", sweep, code=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and said in lines[0], lines


def test_stored_text_is_shown_not_obeyed(sweep: Path) -> None:
    store = load_store(sweep)
    sweep_run(store, "hostile", tag="bad", params={"na\x1b[2Jme": 1, "v": "\x1b]52;c;AAAA\x07"})
    sweep_run(store, "plain", tag="bad", params={"v": "plain"})
    drawn = invoke("diff", "-c", sweep, "--filter", "tag = 'bad'", code=1).stdout
    assert "\x1b" not in drawn and "\x07" not in drawn
    assert "params.na\\x1b[2Jme" in drawn and "\\x1b]52;c;AAAA\\x07" in drawn
    # A row per run: the names are column headers, drawn as stored, never read as markup.
    for index in range(4):
        sweep_run(store, f"more-{index}", tag="bad", params={"[red]m[/red]\u202e": index})
    many = invoke("diff", "-c", sweep, "--filter", "tag = 'bad'", code=1).stdout
    assert "\x1b" not in many and "\u202e" not in many
    assert "params.[red]m[/red]\\u202e" in many and "params.na\\x1b[2Jme" in many
