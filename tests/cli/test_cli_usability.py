"""What a new user meets first: where runlog looks and what it says when there is nothing
there, statuses and configuration files it cannot use, runs it cannot read, the wording of
counts, ages and empty answers, help, and the command ``runlog demo`` suggests next."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from runlog_store.cli.app import app
from runlog_store.config import load_store
from runlog_store.models import FAIL, SUCCESS, DataCatalog, StepAttempt
from runlog_store.stores.base import BaseRunLogStore

from ..conftest import write_config

RUNLOG = Path(sys.executable).with_name("runlog")
STATUSES = ("SUCCESS", "FAIL", "PROCESSING", "CREATED", "TRIGGERED", "UNREADABLE")
COMMANDS = ["demo", "list", "show", "fold", "timeline", "diff", "export", "copy", "gc", "verify"]


def invoke(*args: str | Path, code: int = 0, columns: int = 200) -> Any:
    """The command in this process, with no configuration from the environment."""
    result = CliRunner().invoke(
        app,
        [str(a) for a in args],
        env={"COLUMNS": str(columns), "RUNNABLE_CONFIGURATION_FILE": None},
    )
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    return result


def one_error_line(result: Any) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return str(lines[0])


def ended_run(store: BaseRunLogStore, run_id: str, status: str = SUCCESS) -> None:
    store.create_run_log(run_id, status=status)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty folder to run in, as a user's project before any run."""
    folder = tmp_path / "project"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


# --- where runlog looks -----------------------------------------------------------------------


def test_a_store_folder_that_does_not_exist_is_an_error_naming_it(project: Path) -> None:
    """Not "0 runs in ...": the user is in the wrong folder, or named the wrong one."""
    missing = f"the folder .run_log_store in {project} does not exist"
    for args in (["list"], ["list", "--json"], ["gc", "--older-than", "1d"]):
        line = one_error_line(invoke(*args, code=2))
        assert line.startswith(f"error: no run log store: {missing} ("), line
        assert "-c FILE" in line, line
    line = one_error_line(invoke("show", "some-run", code=2))
    assert line.startswith(f"error: no run 'some-run': {missing} (")

    config = write_config(project / "config.yaml", "chunked-fs", project / "elsewhere")
    for args in (["list"], ["gc", "--older-than", "1d"], ["verify", "r1"], ["timeline", "r1"]):
        line = one_error_line(invoke(*args, "-c", config, code=2))
        assert f"{project / 'elsewhere'} does not exist" in line, line
        assert f"log_folder in {config}" in line, line
    assert not (project / "elsewhere").exists() and not (project / ".run_log_store").exists()
    (project / "elsewhere").write_text("")
    line = one_error_line(invoke("list", "-c", config, code=2))
    assert f"{project / 'elsewhere'} is not a folder" in line


def test_a_run_id_that_cannot_be_stored_is_said_first(project: Path) -> None:
    line = one_error_line(invoke("show", "../escape", code=2))
    assert "Invalid run id" in line


def test_a_run_that_is_not_there_is_named_with_the_store_looked_in(project: Path) -> None:
    logs = project / "logs"
    config = write_config(project / "config.yaml", "chunked-fs", logs)
    ended_run(load_store(config), "there")
    line = one_error_line(invoke("show", "nope", "-c", config, code=2))
    assert (
        line == f"error: no run 'nope' in the chunked-fs store at {logs} (looked for {logs}/nope)"
    )
    (project / ".run_log_store").mkdir()
    line = one_error_line(invoke("show", "nope", code=2))
    assert line == (
        "error: no run 'nope' in the run log store at .run_log_store (looked for "
        ".run_log_store/nope/ and .run_log_store/nope.json)"
    )
    other = write_config(project / "other.yaml", "file-system", project / "other-logs")
    (project / "other-logs").mkdir()
    line = one_error_line(
        invoke("diff", "there", "gone", "-c", config, "--config-b", other, code=2)
    )
    assert "no run 'gone' in the file-system store at " in line and "gone.json" in line


def test_stores_are_named_as_a_person_knows_them(project: Path) -> None:
    """The runs of a project's .run_log_store are "the run log store at .run_log_store", a
    configured store by its type; a run of a store that keeps one document has nothing to fold."""
    (project / ".run_log_store").mkdir()
    ended_run(load_store(None), "here")
    other = write_config(project / "other.yaml", "file-system", project / "other-logs")
    copied = " ".join(invoke("copy", "here", "--to", other).stdout.split())
    assert copied.startswith("Copied run here (0 steps, "), copied
    assert (
        f"from the run log store at .run_log_store to the file-system store at "
        f"{project / 'other-logs'};" in copied
    )
    line = one_error_line(invoke("fold", "here", "-c", other, code=2))
    assert line == (
        f"error: nothing to fold: run 'here' is in the file-system store at "
        f"{project / 'other-logs'}, which keeps a run in one document (runlog fold folds the "
        "runs of chunked-fs and chunked-minio stores)"
    )


def test_an_unknown_status_lists_the_valid_ones(project: Path) -> None:
    config = write_config(project / "config.yaml", "file-system", project / "logs")
    store = load_store(config)
    ended_run(store, "good")
    ended_run(store, "bad", FAIL)
    for args in (["list"], ["gc", "--older-than", "0s", "--dry-run"]):
        line = one_error_line(invoke(*args, "--status", "FAILED", "-c", config, code=2))
        assert "--status 'FAILED' is not a run status" in line, line
        assert all(status in line for status in STATUSES), line
    # A status is the stores' word whatever its case.
    listed = json.loads(invoke("list", "--status", "fail", "-c", config, "--json").stdout)
    assert [run["run_id"] for run in listed] == ["bad"]


@pytest.mark.parametrize("text", ["", "\n", "# nothing yet\n"])
def test_an_empty_config_file_is_an_error(
    project: Path, text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It names no store: reading the default store instead shows runs nobody asked about."""
    (project / ".run_log_store").mkdir()
    ended_run(load_store(None), "default-run")
    empty = project / "empty.yaml"
    empty.write_text(text)
    cases: list[list[str | Path]] = [
        ["list", "-c", empty],
        ["show", "default-run", "-c", empty],
        ["verify", "default-run", "-c", empty],
        ["copy", "default-run", "--to", empty],
        ["diff", "default-run", "default-run", "--config-b", empty],
        ["demo", "--branches", "1", "--workers", "1", "--run-id", "not-made", "-c", empty],
    ]
    for args in cases:
        line = one_error_line(invoke(*args, code=2))
        assert f"configuration file {empty} is empty" in line, (args, line)
    assert load_store(None).list_run_ids() == ["default-run"]
    # Named by the environment, it is named so.
    monkeypatch.setenv("RUNNABLE_CONFIGURATION_FILE", str(empty))
    result = CliRunner().invoke(app, ["list"], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "(named by RUNNABLE_CONFIGURATION_FILE) is empty" in one_error_line(result)


# --- runs it cannot read -------------------------------------------------------------------------


def test_a_run_document_that_is_not_a_run_is_listed_unreadable(project: Path) -> None:
    """``{}`` (and a list) read as JSON but are no run: UNREADABLE as a truncated one is, not
    a blank row; gc keeps them."""
    logs = project / ".run_log_store"
    logs.mkdir()
    ended_run(load_store(None), "fine")
    (logs / "empty-chunked").mkdir()
    (logs / "empty-chunked" / "RunLog.json").write_text("{}")
    (logs / "empty-file.json").write_text("{}")
    (logs / "a-list.json").write_text("[]")
    (logs / "truncated.json").write_text('{"run_id": "trunc')
    listed = {r["run_id"]: r for r in json.loads(invoke("list", "--json").stdout)}
    assert set(listed) == {"fine", "empty-chunked", "empty-file", "a-list", "truncated"}
    for run_id in ("empty-chunked", "empty-file", "a-list", "truncated"):
        assert listed[run_id]["status"] == "UNREADABLE", listed[run_id]
        assert run_id in listed[run_id]["error"]
    assert "run_id" in listed["empty-file"]["error"] and "list" in listed["a-list"]["error"]
    assert listed["fine"]["status"] == SUCCESS
    table = invoke("list").stdout
    assert table.count("UNREADABLE") == 4
    for run_id in ("empty-chunked", "empty-file", "a-list"):
        row = next(line for line in table.splitlines() if f"│ {run_id} " in line)
        assert "UNREADABLE" in row, row
    decisions = json.loads(invoke("gc", "--older-than", "0s", "--json").stdout)
    kept = {d["run_id"] for d in decisions if d["action"] == "kept: unreadable"}
    assert kept == {"empty-chunked", "empty-file", "a-list", "truncated"}


# --- wording ---------------------------------------------------------------------------------


def test_counts_and_ages_read_as_a_person_writes_them(project: Path) -> None:
    config = write_config(project / "config.yaml", "chunked-fs", project / "logs")
    (project / "logs").mkdir()
    assert invoke("list", "-c", config).stdout.strip() == f"No runs in {project / 'logs'}."
    gc_empty = invoke("gc", "--older-than", "1d", "-c", config).stdout
    assert gc_empty.strip() == f"No runs in {project / 'logs'}; nothing to delete."

    store = load_store(config)
    ended_run(store, "only")
    listed = invoke("list", "-c", config).stdout
    assert "1 run in" in listed and "1 runs" not in listed
    filtered = invoke("list", "-c", config, "--status", "FAIL").stdout
    assert filtered.strip() == f"The one run in {project / 'logs'} does not match --status FAIL."
    young = " ".join(invoke("gc", "--older-than", "1d12h", "-c", config).stdout.split())
    assert young == (
        f"No run in {project / 'logs'} was last written more than 1 day 12 hours ago "
        "(1 run checked); nothing to delete."
    )
    ended_run(store, "other", FAIL)
    young = " ".join(
        invoke("gc", "--older-than", "90m", "--status", "fail", "-c", config).stdout.split()
    )
    assert "No FAIL run in" in young and "90 minutes ago (2 runs checked)" in young
    old = invoke("gc", "--older-than", "0s", "--dry-run", "-c", config).stdout
    assert "Runs last written more than 0 seconds ago" in old
    assert "would delete 2 of 2 runs" in old
    assert "catalog files" not in old  # only with --with-catalog


def test_verify_of_a_run_with_no_catalog_says_there_is_nothing_to_verify(project: Path) -> None:
    config = write_config(project / "config.yaml", "file-system", project / "logs")
    ended_run(load_store(config), "no-files")
    result = invoke("verify", "no-files", "-c", config)
    assert result.stdout.strip() == "Run no-files recorded no catalog files: nothing to verify."


def test_one_of_anything_is_singular(project: Path) -> None:
    config = write_config(project / "config.yaml", "file-system", project / "logs")
    store = load_store(config)
    store.create_run_log("single")
    now = datetime.now() - timedelta(seconds=5)
    step = store.create_step_log("task", "task")
    step.status = SUCCESS
    step.attempts.append(
        StepAttempt(start_time=str(now), end_time=str(now + timedelta(seconds=1)), status=SUCCESS)
    )
    store.add_step_log(step, "single")
    fanned = store.create_step_log("fan", "fan")
    fanned.step_type, fanned.status = "map", SUCCESS
    store.add_step_log(fanned, "single")
    store.add_branch_log(store.create_branch_log("fan.1"), "single")
    store.update_run_log_status("single", SUCCESS)

    shown = invoke("show", "single", "-c", config, "--depth", "1").stdout
    assert "2 steps, 1 branch" in shown.splitlines()[0]
    assert re.search(r"└── 1 branch$", shown, re.MULTILINE), shown
    page = project / "single.html"
    assert (
        "the timeline of 1 attempt of run single"
        in invoke("timeline", "single", "-c", config, "-o", page).stdout
    )
    store.create_run_log("tagged-a", tag="a", status=SUCCESS)
    store.create_run_log("tagged-b", tag="b", status=SUCCESS)
    differ = invoke("diff", "tagged-a", "tagged-b", "-c", config, code=1).stdout
    assert differ.splitlines()[0].strip() == "1 difference"


# --- gc and show at any width, and bounded -----------------------------------------------------


@pytest.mark.parametrize("columns", [120, 80, 60, 40])
def test_gc_never_cuts_a_run_id_whatever_the_terminal_width(project: Path, columns: int) -> None:
    """As in ``runlog list``: the run id is what a user copies into the next command."""
    config = write_config(project / "config.yaml", "chunked-fs", project / "logs")
    store = load_store(config)
    run_ids = ["demo-20261128-114936-5207", "a-much-longer-run-id-of-a-weekly-training-42"]
    for run_id in run_ids:
        ended_run(store, run_id)
    result = invoke(
        "gc", "--older-than", "0s", "--dry-run", "--with-catalog", "-c", config, columns=columns
    )
    lines = result.stdout.splitlines()
    for run_id in run_ids:
        assert any(run_id in line for line in lines), (run_id, result.stdout)
    if columns >= len(run_ids[1]) + 30:
        assert all(len(line) <= columns for line in lines), result.stdout
    assert result.stdout.count("SUCCESS") == 2
    assert ("catalog files" in result.stdout) == (columns >= 120)


def test_show_bounds_the_catalog_lines_as_the_branches(project: Path) -> None:
    """A step after a map catalogs a file per branch: --max-branches bounds those lines too."""
    config = write_config(project / "config.yaml", "file-system", project / "logs")
    store = load_store(config)
    store.create_run_log("shards")
    gather = store.create_step_log("gather", "gather")
    gather.status = SUCCESS
    for index in range(30):
        gather.data_catalog.append(
            DataCatalog(
                name=f"data/shards/shard-{index:04d}.json",
                data_hash="blake3:" + f"{index:064x}",
                stage="put" if index < 25 else "get",
            )
        )
    store.add_step_log(gather, "shards")
    store.update_run_log_status("shards", SUCCESS)

    bounded = invoke("show", "shards", "-c", config, "--max-branches", "3").stdout
    assert bounded.count("catalog put: data/shards/") == 3
    assert "… 27 more catalog files (22 put, 5 get)" in bounded
    whole = invoke("show", "shards", "-c", config).stdout  # 20 by default
    assert whole.count("catalog ") == 20 + 1 and "10 more catalog files" in whole
    everything = invoke("show", "shards", "-c", config, "--max-branches", "30").stdout
    assert everything.count("data/shards/") == 30 and "more catalog" not in everything
    # One line more than the bound is drawn, not summed up in a line of its own.
    one_over = invoke("show", "shards", "-c", config, "--max-branches", "29").stdout
    assert one_over.count("data/shards/") == 30 and "more catalog" not in one_over


# --- help ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [None, *COMMANDS])
def test_help_names_values_as_click_does_and_flags_take_none(name: str | None) -> None:
    args = ["--help"] if name is None else [name, "--help"]
    text = invoke(*args, columns=120).stdout
    assert not re.search(r"<[a-z][a-z ]*>", text), text  # <bool>, <str>, <int range>, <path>
    assert not re.search(r"\[default: (False|no-\S+)\]", text), text
    assert not re.search(r"\{[a-z_]+\}", text), text  # {run_id}
    assert "--no-" not in text, text  # a flag is one option, not a pair
    help_row = next(line for line in text.splitlines() if "--help" in line)
    assert re.search(r"--help\s+Show this message", help_row), help_row
    if name in ("show", "fold", "timeline", "export", "copy", "verify"):
        assert re.search(rf"Usage: \S+ {name} \[OPTIONS\] RUN_ID\s*$", text, re.MULTILINE)
    if name == "list":
        assert re.search(r"--status\s+STATUS", text) and re.search(r"--limit\s+INTEGER", text)
        assert re.search(r"--json\s+Print JSON", text)
    if name == "gc":
        assert re.search(r"--older-than\s+AGE", text)
        assert re.search(r"--dry-run\s+Only show", text)


# --- the command runlog demo suggests next ----------------------------------------------------


def _clean_env(path: str) -> dict[str, str]:
    env = {**os.environ, "PATH": path, "COLUMNS": "80"}
    env.pop("RUNNABLE_CONFIGURATION_FILE", None)
    env.pop("VIRTUAL_ENV", None)
    return env


def _suggested(stdout: str) -> str:
    lines = [line for line in stdout.splitlines() if line.startswith("See it again with: ")]
    assert len(lines) == 1, stdout
    return lines[0].removeprefix("See it again with: ")


def _demo_then_its_hint(
    command: list[str], cwd: Path, env: dict[str, str], run_id: str
) -> tuple[str, subprocess.CompletedProcess[str]]:
    done = subprocess.run(
        [*command, "demo", "--branches", "2", "--workers", "1", "--run-id", run_id],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    hint = _suggested(done.stdout)
    again = subprocess.run(
        ["bash", "-c", hint], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    return hint, again


def test_the_command_demo_suggests_works_as_typed(tmp_path: Path) -> None:
    """Started by a path (the venv not on PATH, as after scripts/install.sh): that path."""
    assert shutil.which(RUNLOG), f"the console script is not installed at {RUNLOG}"
    work = tmp_path / "work"
    work.mkdir()
    env = _clean_env("/usr/bin:/bin")
    typed = os.path.relpath(RUNLOG, work)
    hint, again = _demo_then_its_hint([typed], work, env, "hint-1")
    assert hint == f"{typed} show hint-1"
    assert again.returncode == 0, (hint, again.stderr)
    assert again.stdout.startswith("Run hint-1")


def test_the_command_demo_suggests_is_the_name_when_path_finds_it(tmp_path: Path) -> None:
    env = _clean_env(f"{RUNLOG.parent}:/usr/bin:/bin")
    hint, again = _demo_then_its_hint(["runlog"], tmp_path, env, "hint-2")
    assert hint == "runlog show hint-2"
    assert again.returncode == 0 and again.stdout.startswith("Run hint-2"), again.stderr


def test_the_command_demo_suggests_names_the_store_it_wrote_to(tmp_path: Path) -> None:
    config = write_config(tmp_path / "my config.yaml", "file-system", "my logs")
    env = _clean_env("/usr/bin:/bin")
    demo = ["demo", "--branches", "2", "--workers", "1", "--run-id", "hint-3"]
    done = subprocess.run(
        [str(RUNLOG), *demo, "-c", config.name],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    hint = _suggested(done.stdout)
    assert hint == f"{RUNLOG} show hint-3 -c 'my config.yaml'"
    again = subprocess.run(
        ["bash", "-c", hint], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0 and again.stdout.startswith("Run hint-3"), again.stderr
    assert (tmp_path / "my logs" / "hint-3.json").is_file()


def test_the_command_demo_suggests_through_the_interpreter(tmp_path: Path) -> None:
    """``python -m runlog_store.cli``: the interpreter, by its full path."""
    env = _clean_env("/usr/bin:/bin")
    hint, again = _demo_then_its_hint(
        [sys.executable, "-m", "runlog_store.cli"], tmp_path, env, "h4"
    )
    assert hint == f"{sys.executable} -m runlog_store.cli show h4"
    assert again.returncode == 0 and again.stdout.startswith("Run h4"), again.stderr
