"""Every ``runlog`` command on file-system, chunked-fs and chunked-minio stores, on the runs of
runnable 0.50 (copied in by ``runlog copy --with-catalog``) and on runs the tests write.

Most calls go through typer's test runner (in-process, fast); each command also runs once
through the installed console script, so the entry point, exit statuses and stderr are those a
user gets.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from runlog_store.cli.app import app
from runlog_store.config import load_catalog, load_store
from runlog_store.models import (
    FAIL,
    PROCESSING,
    SUCCESS,
    CodeIdentity,
    DataCatalog,
    JsonParameter,
    MetricParameter,
    RunLog,
    StepAttempt,
)
from runlog_store.stores.base import BaseRunLogStore

from ..conftest import RUNNABLE_FIXTURES
from ..terminal import run_with_terminal_stderr

RUNLOG = str(Path(sys.executable).with_name("runlog"))
KINDS = ["file-system", "chunked-fs", "chunked-minio"]
FIXTURE_RUNS = {"fs-map": "fs", "fs-fail": "fs", "fs-job": "fs", "chunked-map": "chunked"}


def _write_config(path: Path, store: dict[str, Any], catalog: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump({"run-log-store": store, "catalog": catalog}))
    return path


@dataclass
class Place:
    """A configured store and catalog the commands work on, with what the test put in it."""

    kind: str
    config: Path
    root: Path

    def store(self) -> BaseRunLogStore:
        return load_store(self.config)


def _fixture_configs(root: Path) -> dict[str, Path]:
    catalog = {
        "type": "file-system",
        "config": {"catalog_location": str(RUNNABLE_FIXTURES / "catalog")},
    }
    return {
        "fs": _write_config(
            root / "fixture-fs.yaml",
            {
                "type": "file-system",
                "config": {"log_folder": str(RUNNABLE_FIXTURES / "file-system")},
            },
            catalog,
        ),
        "chunked": _write_config(
            root / "fixture-chunked.yaml",
            {"type": "chunked-fs", "config": {"log_folder": str(RUNNABLE_FIXTURES / "chunked-fs")}},
            catalog,
        ),
    }


def _place(kind: str, root: Path, request: pytest.FixtureRequest, name: str = "place") -> Place:
    folder = root / name
    folder.mkdir()
    if kind == "chunked-minio":
        minio = dict(request.getfixturevalue("minio_config"))
        store = {"type": kind, "config": minio}
        catalog = {"type": "minio", "config": {**minio, "bucket": minio["bucket"] + "-cat"}}
    else:
        store = {"type": kind, "config": {"log_folder": str(folder / "logs"), "fsync": False}}
        catalog = {"type": "file-system", "config": {"catalog_location": str(folder / "catalog")}}
    return Place(kind, _write_config(folder / "config.yaml", store, catalog), folder)


def invoke(*args: str | Path, code: int = 0) -> Any:
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "220"})
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    return result


def runlog(*args: str | Path, cwd: Path, code: int = 0) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it."""
    assert shutil.which(RUNLOG), f"the console script is not installed at {RUNLOG}"
    env = {**os.environ, "COLUMNS": "220"}
    env.pop("RUNNABLE_CONFIGURATION_FILE", None)
    done = subprocess.run(
        [RUNLOG, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    return done


def _canonical(data: bytes | str) -> dict[str, Any]:
    return RunLog.model_validate_json(data).model_dump(mode="json")


def _expected(run_id: str) -> dict[str, Any]:
    if run_id == "chunked-map":
        return _canonical((RUNNABLE_FIXTURES / "expected-full" / "chunked-map.json").read_bytes())
    return _canonical((RUNNABLE_FIXTURES / "file-system" / f"{run_id}.json").read_bytes())


def _made_run(
    store: BaseRunLogStore,
    run_id: str,
    *,
    status: str = SUCCESS,
    tag: str = "made",
    sha: str = "a" * 40,
    dirty: bool = False,
    learning_rate: float = 0.1,
    accuracy: float = 0.9,
    data_hash: str = "blake3:" + "1" * 64,
    branches: int = 3,
    failing_branch: int | None = None,
    ago: timedelta = timedelta(0),
) -> None:
    """A map run with retries, parameters, metrics, code identity and catalog entries."""
    start = datetime.now() - ago - timedelta(seconds=3)  # every attempt ended already
    store.create_run_log(run_id, dag_hash="d" * 40, tag=tag, status=PROCESSING)
    store.set_run_config(
        run_id, {"dag": {"start_at": "prepare", "nodes": {"prepare": {"command": "prep"}}}}
    )
    store.set_parameters(run_id, {"learning_rate": JsonParameter(kind="json", value=learning_rate)})
    identity = CodeIdentity(
        code_identifier=sha, code_identifier_type="git", code_identifier_dependable=not dirty
    )

    def attempt(number: int, offset: float, ok: bool, message: str = "") -> StepAttempt:
        made = StepAttempt(
            attempt_number=number,
            start_time=str(start + timedelta(seconds=offset)),
            end_time=str(start + timedelta(seconds=offset + 0.5)),
            status=SUCCESS if ok else FAIL,
            message=message,
            input_parameters={"learning_rate": JsonParameter(kind="json", value=learning_rate)},
        )
        made.code_identities.append(identity)
        return made

    prepare = store.create_step_log("prepare", "prepare")
    prepare.attempts.append(attempt(1, 0, True))
    prepare.status = SUCCESS
    prepare.data_catalog.append(
        DataCatalog(name="data/input.csv", data_hash=data_hash, stage="put")
    )
    store.add_step_log(prepare, run_id)
    train = store.create_step_log("train", "train")
    train.step_type = "map"
    train.status = PROCESSING
    store.add_step_log(train, run_id)
    for index in range(branches):
        name = f"train.{index}"
        branch = store.create_branch_log(name)
        fit = store.create_step_log("fit", f"{name}.fit")
        ok = index != failing_branch
        if index == 1:
            fit.attempts.append(attempt(1, 1, False, "CUDA out of memory <retrying>"))
            fit.attempts.append(attempt(2, 2, True))
        else:
            fit.attempts.append(attempt(1, 1, ok, "" if ok else "ValueError: loss is NaN"))
        fit.attempts[-1].user_defined_metrics["accuracy"] = MetricParameter(
            kind="metric", value=accuracy
        )
        fit.status = SUCCESS if ok else FAIL
        branch.status = fit.status
        store.add_branch_log(branch, run_id)
        store.add_step_log(fit, run_id)
    train.status = status
    store.add_step_log(train, run_id)
    store.set_parameters(run_id, {"accuracy": MetricParameter(kind="metric", value=accuracy)})
    store.update_run_log_status(run_id, status)


@pytest.fixture(params=KINDS)
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    """A store of each kind holding the runnable 0.50 fixture runs (copied in with their
    catalog by the command under test) and two runs written here."""
    target = _place(request.param, tmp_path, request)
    sources = _fixture_configs(tmp_path)
    for run_id, source in FIXTURE_RUNS.items():
        invoke("copy", run_id, "-c", sources[source], "--to", target.config, "--with-catalog")
    store = target.store()
    _made_run(store, "made-ok")
    _made_run(store, "made-fail", status=FAIL, failing_branch=2, tag="nightly")
    return target


# --- copy and export ----------------------------------------------------------------------------


def test_copy_brings_the_fixture_runs_over_unchanged_with_their_catalog(place: Place) -> None:
    store = place.store()
    for run_id in FIXTURE_RUNS:
        assert _canonical(store.get_run_log_json(run_id)) == _expected(run_id), run_id
    catalog = load_catalog(place.config)
    assert sorted(catalog.run_files("fs-map")) == sorted(
        p.relative_to(RUNNABLE_FIXTURES / "catalog" / "fs-map").as_posix()
        for p in (RUNNABLE_FIXTURES / "catalog" / "fs-map").rglob("*")
        if p.is_file()
    )
    result = invoke("verify", "fs-map", "-c", place.config)
    assert "all 6 files match" in result.stdout
    assert "chunked-map" in invoke("verify", "chunked-map", "-c", place.config).stdout


def test_copy_refuses_a_run_the_target_has_and_changes_nothing(
    place: Place, tmp_path: Path
) -> None:
    store = place.store()
    before = store.get_run_log_json("made-ok")
    source = _fixture_configs(tmp_path)
    result = invoke("copy", "fs-map", "-c", source["fs"], "--to", place.config, code=2)
    assert "already exists" in result.stderr and "nothing was copied" in result.stderr
    assert store.get_run_log_json("made-ok") == before
    assert _canonical(store.get_run_log_json("fs-map")) == _expected("fs-map")


def test_copy_round_trip_between_kinds_loses_nothing(
    place: Place, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """chunked-fs -> chunked-minio -> chunked-fs, file-system -> chunked-fs, with catalogs."""
    other_kind = "chunked-fs" if place.kind == "chunked-minio" else "chunked-minio"
    middle = _place(other_kind, tmp_path, request, "middle")
    back = _place("chunked-fs", tmp_path, request, "back")
    for run_id in ("chunked-map", "fs-map", "made-fail"):
        invoke("copy", run_id, "-c", place.config, "--to", middle.config, "--with-catalog")
        invoke("copy", run_id, "-c", middle.config, "--to", back.config, "--with-catalog")
        original = _canonical(place.store().get_run_log_json(run_id))
        assert _canonical(middle.store().get_run_log_json(run_id)) == original
        assert _canonical(back.store().get_run_log_json(run_id)) == original
        files = load_catalog(place.config).run_files(run_id)
        assert load_catalog(back.config).run_files(run_id) == files
    invoke("verify", "fs-map", "-c", back.config)


def test_a_copy_that_fails_half_way_leaves_nothing_in_the_target(
    place: Place, tmp_path: Path
) -> None:
    """The target catalog cannot be written (its location is a file): the copy fails with an
    error naming it, and neither the run log nor any catalog file is left in the target."""
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    target = _write_config(
        tmp_path / "blocked.yaml",
        {"type": "chunked-fs", "config": {"log_folder": str(tmp_path / "target-logs")}},
        {"type": "file-system", "config": {"catalog_location": str(blocked)}},
    )
    result = invoke("copy", "fs-map", "-c", place.config, "--to", target, "--with-catalog", code=2)
    assert "not-a-folder" in result.stderr
    assert load_store(target).list_run_ids() == []
    assert blocked.read_text() == ""


def test_a_copy_is_faithful_to_a_damaged_source_and_says_so(
    place: Place, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    catalog = load_catalog(place.config)
    if place.kind == "chunked-minio":
        bucket = catalog.storage()  # type: ignore[attr-defined]
        bucket.put(bucket.key("fs-map", "data", "table.csv"), b"tampered\n")
    else:
        local = catalog.local_run_folder("fs-map")
        assert local is not None
        (local / "data" / "table.csv").write_text("tampered\n")
    target = _place("chunked-fs", tmp_path, request, "target")
    result = invoke("copy", "fs-map", "-c", place.config, "--to", target.config, "--with-catalog")
    assert "warning: mismatch: data/table.csv fails in the source catalog too" in result.stdout
    assert (target.root / "catalog" / "fs-map" / "data" / "table.csv").read_text() == "tampered\n"
    # The run log still says what the file held: verify reports it in the copy too.
    assert "mismatch" in invoke("verify", "fs-map", "-c", target.config, code=1).stdout


def test_export_writes_the_merged_run_and_never_overwrites_silently(
    place: Place, tmp_path: Path
) -> None:
    output = tmp_path / "chunked-map.json"
    invoke("export", "chunked-map", "-c", place.config, "-o", output)
    assert _canonical(output.read_bytes()) == _expected("chunked-map")
    output.write_text("keep me")
    result = invoke("export", "chunked-map", "-c", place.config, "-o", output, code=2)
    assert "already exists" in result.stderr and "--force" in result.stderr
    assert output.read_text() == "keep me"
    invoke("export", "chunked-map", "-c", place.config, "-o", output, "--force")
    assert _canonical(output.read_bytes()) == _expected("chunked-map")
    to_stdout = invoke("export", "fs-fail", "-c", place.config, "-o", "-")
    assert _canonical(to_stdout.stdout) == _expected("fs-fail")


# --- list, show, timeline -------------------------------------------------------------------


def test_list_shows_every_run_newest_first_and_filters(place: Place) -> None:
    runs = json.loads(invoke("list", "-c", place.config, "--json").stdout)
    by_id = {run["run_id"]: run for run in runs}
    assert set(by_id) == {*FIXTURE_RUNS, "made-ok", "made-fail"}
    starts = [run["start"] for run in runs]
    assert starts == sorted(starts, reverse=True)
    assert by_id["fs-fail"]["status"] == FAIL and by_id["fs-fail"]["failed_step"] == "boom"
    assert by_id["made-fail"]["failed_step"] == "train.2.fit"
    assert by_id["chunked-map"]["steps"] == 21 and by_id["chunked-map"]["branches"] == 6
    assert by_id["made-ok"]["duration_seconds"] == pytest.approx(2.5)

    failed = json.loads(invoke("list", "-c", place.config, "--status", FAIL, "--json").stdout)
    assert {run["run_id"] for run in failed} == {"fs-fail", "made-fail"}
    tagged = json.loads(invoke("list", "-c", place.config, "--tag", "nightly", "--json").stdout)
    assert [run["run_id"] for run in tagged] == ["made-fail"]
    limited = json.loads(invoke("list", "-c", place.config, "--limit", "2", "--json").stdout)
    assert [run["run_id"] for run in limited] == [run["run_id"] for run in runs[:2]]

    table = invoke("list", "-c", place.config).stdout
    assert "6 runs" in table and "train.2.fit" in table and "boom" in table
    assert table.index("made-") < table.index("fs-map")

    # The runs made here started seconds ago, this one two hours ago; the fixture runs when
    # they were made.
    _made_run(place.store(), "made-earlier", ago=timedelta(hours=2))
    hour_ago = (datetime.now() - timedelta(hours=1)).isoformat()
    recent = json.loads(invoke("list", "-c", place.config, "--since", "1h", "--json").stdout)
    made_recently = {run_id for run_id in FIXTURE_RUNS if by_id[run_id]["start"] >= hour_ago}
    assert {run["run_id"] for run in recent} == {"made-ok", "made-fail", *made_recently}


def test_show_draws_the_tree_with_errors_parameters_metrics_and_catalog(place: Place) -> None:
    shown = invoke("show", "made-fail", "-c", place.config).stdout
    for expected in (
        "Run made-fail",
        "FAIL",
        "train.2",
        "ValueError: loss is NaN",
        "attempt 1 failed: CUDA out of memory <retrying>",
        "2 attempts",
        "in: learning_rate=0.1",
        "metrics: accuracy=0.9",
        "catalog put: data/input.csv",
        "code: git aaaaaaaaaaaa clean",
    ):
        assert expected in shown, expected
    # Failed branches come first.
    assert shown.index("train.2") < shown.index("train.0")
    shallow = invoke("show", "made-fail", "-c", place.config, "--depth", "1").stdout
    assert "3 branches" in shallow and "fit" not in shallow
    fixture = invoke("show", "chunked-map", "-c", place.config).stdout
    assert "map_state.4" in fixture and "parallel step.branch1" in fixture
    assert "catalog put: data/table.csv" in fixture
    as_json = invoke("show", "chunked-map", "-c", place.config, "--json").stdout
    assert _canonical(as_json) == _expected("chunked-map")


def test_nested_branches_are_drawn_to_the_depth_asked(place: Place, tmp_path: Path) -> None:
    """A map step inside a parallel branch: three levels of nesting."""
    store = place.store()
    store.create_run_log("nested", status=PROCESSING)
    now = datetime.now() - timedelta(seconds=5)
    outer = store.create_step_log("outer", "outer")
    outer.step_type, outer.status = "parallel", SUCCESS
    store.add_step_log(outer, "nested")
    store.add_branch_log(store.create_branch_log("outer.a"), "nested")
    inner = store.create_step_log("inner", "outer.a.inner")
    inner.step_type, inner.status = "map", SUCCESS
    store.add_step_log(inner, "nested")
    for item in ("1", "2"):
        store.add_branch_log(store.create_branch_log(f"outer.a.inner.{item}"), "nested")
        task = store.create_step_log("task", f"outer.a.inner.{item}.task")
        task.status = SUCCESS
        task.attempts.append(
            StepAttempt(
                start_time=str(now), end_time=str(now + timedelta(seconds=1)), status=SUCCESS
            )
        )
        store.add_step_log(task, "nested")
    store.update_run_log_status("nested", SUCCESS)

    deep = invoke("show", "nested", "-c", place.config).stdout
    assert "outer.a.inner.1" in deep and "outer.a.inner.2" in deep
    assert deep.count("SUCCESS task  task") == 2
    middle = invoke("show", "nested", "-c", place.config, "--depth", "2").stdout
    assert "outer.a" in middle and "2 branches" in middle and "outer.a.inner.1" not in middle
    top = invoke("show", "nested", "-c", place.config, "--depth", "1").stdout
    assert "1 branch" in top and "1 branches" not in top and "inner" not in top
    runs = json.loads(invoke("list", "-c", place.config, "--json").stdout)
    nested = next(r for r in runs if r["run_id"] == "nested")
    assert nested["steps"] == 4 and nested["branches"] == 3
    page = tmp_path / "nested.html"
    invoke("timeline", "nested", "-c", place.config, "-o", page)
    html = page.read_text()
    assert html.count('class="attempt') == 2 and "inner [map]" in html


def test_timeline_writes_a_self_contained_page(place: Place, tmp_path: Path) -> None:
    page = tmp_path / "made.html"
    result = invoke("timeline", "made-fail", "-c", place.config, "-o", page)
    assert str(page) in result.stdout
    html = page.read_text()
    assert html.count('class="attempt') == 1 + 4  # prepare, then 3 fits with one retry
    assert "http://" not in html and "https://" not in html.replace("http://www.w3.org", "")
    assert "&lt;retrying&gt;" in html and "<retrying>" not in html


# --- diff ----------------------------------------------------------------------------------------


def test_diff_names_what_differs_and_exits_1(place: Place) -> None:
    store = place.store()
    _made_run(
        store,
        "made-other",
        sha="b" * 40,
        dirty=True,
        learning_rate=0.2,
        accuracy=0.7,
        data_hash="blake3:" + "2" * 64,
        failing_branch=0,
        status=FAIL,
    )
    result = invoke("diff", "made-ok", "made-other", "-c", place.config, "--json", code=1)
    found = {(d["section"], d["key"]): (d["a"], d["b"]) for d in json.loads(result.stdout)}
    assert found[("run", "status")] == (SUCCESS, FAIL)
    assert found[("parameter", "learning_rate")] == ("0.1", "0.2")
    assert found[("metric", "accuracy")] == ("0.9", "0.7")
    assert found[("metric", "train.0.fit: accuracy")] == ("0.9", "0.7")
    assert found[("code", "code identity")] == (f"git {'a' * 40} clean", f"git {'b' * 40} dirty")
    assert found[("data", "prepare: put data/input.csv")] == (
        "blake3:" + "1" * 64,
        "blake3:" + "2" * 64,
    )
    assert found[("step", "train.0.fit")] == (SUCCESS, FAIL)
    table = invoke("diff", "made-ok", "made-other", "-c", place.config, code=1).stdout
    assert "learning_rate" in table and "dirty" in table and "train.0.fit" in table

    same = invoke("diff", "made-ok", "made-ok", "-c", place.config)
    assert "do not differ" in same.stdout


def test_diff_of_runnable_runs_across_stores(place: Place, tmp_path: Path) -> None:
    sources = _fixture_configs(tmp_path)
    # The same run in runnable's own store and in ours: nothing differs.
    invoke("diff", "fs-map", "fs-map", "-c", sources["fs"], "--config-b", place.config)
    result = invoke("diff", "fs-map", "fs-fail", "-c", place.config, "--json", code=1)
    found = {(d["section"], d["key"]): (d["a"], d["b"]) for d in json.loads(result.stdout)}
    assert found[("step", "boom")] == (None, FAIL)
    assert found[("dag", "start_at")] == ('"gen"', '"hello"')
    # A node one DAG lacks is one difference, not one per field.
    assert ("dag", "nodes.gen") in found and ("dag", "nodes.gen.command") not in found


# --- gc ------------------------------------------------------------------------------------------


def test_gc_deletes_old_ended_runs_and_keeps_unfinished_ones(place: Place) -> None:
    store = place.store()
    store.create_run_log("still-running", status=PROCESSING)
    catalog = load_catalog(place.config)
    assert catalog.run_files("fs-map")
    time.sleep(1.2)

    dry = json.loads(
        invoke("gc", "--older-than", "1s", "-c", place.config, "--dry-run", "--json").stdout
    )
    actions = {d["run_id"]: d["action"] for d in dry}
    assert actions["still-running"] == "kept: unfinished"
    assert actions["fs-fail"] == "would delete" and actions["made-ok"] == "would delete"
    assert len(store.list_run_ids()) == 7

    only_failed = invoke(
        "gc", "--older-than", "1s", "--status", FAIL, "-c", place.config, "--with-catalog"
    ).stdout
    assert "deleted 2 of 7 runs" in only_failed
    assert set(store.list_run_ids()) == {*FIXTURE_RUNS, "made-ok", "still-running"} - {"fs-fail"}

    invoke("gc", "--older-than", "1s", "-c", place.config, "--with-catalog")
    assert store.list_run_ids() == ["still-running"]
    assert catalog.run_files("fs-map") == {} and catalog.run_files("chunked-map") == {}

    invoke("gc", "--older-than", "1s", "-c", place.config, "--include-unfinished")
    assert store.list_run_ids() == []


def test_gc_never_deletes_a_run_that_is_being_written(place: Place) -> None:
    """A writer process keeps adding branches to a run that has not ended; gc, told to take
    unfinished runs older than a second, runs again and again meanwhile."""
    store = place.store()
    store.create_run_log("busy", status=PROCESSING)
    time.sleep(1.2)  # RunLog.json itself is now old: only the branches are new
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(place.config), "busy", "60"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "writing"
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            invoke("gc", "--older-than", "2s", "--include-unfinished", "-c", place.config)
        assert writer.wait(timeout=120) == 0
    finally:
        writer.kill()
    run = store.get_run_log_by_id("busy", full=True)
    assert len(run.steps["work"].branches) == 60


_WRITER = """
import sys, time
from runlog_store.config import load_store
store = load_store(sys.argv[1])
run_id, count = sys.argv[2], int(sys.argv[3])
work = store.create_step_log("work", "work")
work.step_type = "map"
store.add_step_log(work, run_id)
print("writing", flush=True)
for index in range(count):
    store.add_branch_log(store.create_branch_log(f"work.{index}"), run_id)
    time.sleep(0.1)
"""


def _damage(place: Place, run_id: str) -> None:
    """Garbage where one of the run's pieces was."""
    if place.kind == "file-system":
        (place.root / "logs" / f"{run_id}.json").write_text("{not json")
    elif place.kind == "chunked-fs":
        chunk = next((place.root / "logs" / run_id).glob("BranchLog-*.json"))
        chunk.write_text("{not json")
    else:
        bucket = place.store().storage()  # type: ignore[attr-defined]
        name = next(
            o.key for o in bucket.list_objects(bucket.key(run_id) + "/") if "BranchLog-" in o.key
        )
        bucket.put(name, b"{not json")


def test_a_damaged_run_is_listed_as_unreadable_and_gc_keeps_it(place: Place) -> None:
    _damage(place, "made-ok")
    runs = {r["run_id"]: r for r in json.loads(invoke("list", "-c", place.config, "--json").stdout)}
    assert runs["made-ok"]["status"] == "UNREADABLE" and "made-ok" in runs["made-ok"]["error"]
    assert runs["made-fail"]["status"] == FAIL  # the others are still listed
    assert "UNREADABLE" in invoke("list", "-c", place.config).stdout
    time.sleep(1.2)
    decisions = json.loads(invoke("gc", "--older-than", "1s", "-c", place.config, "--json").stdout)
    assert {d["run_id"]: d["action"] for d in decisions}["made-ok"] == "kept: unreadable"
    assert place.store().list_run_ids() == ["made-ok"]


# --- errors, and the real console script ------------------------------------------------------


def test_errors_are_one_line_and_verbose_adds_the_traceback(place: Place, tmp_path: Path) -> None:
    for args in (
        ["show", "nope"],
        ["timeline", "nope", "-o", str(tmp_path / "x.html")],
        ["diff", "made-ok", "nope"],
        ["export", "nope", "-o", str(tmp_path / "x.json")],
        ["copy", "nope", "--to", str(place.config)],
        ["verify", "nope"],
    ):
        result = invoke(*args, "-c", place.config, code=2)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "'nope'" in lines[0], args
    bad_age = invoke("list", "-c", place.config, "--since", "yesterday", code=2)
    assert "--since 'yesterday' is not an age" in bad_age.stderr
    missing = invoke("list", "-c", tmp_path / "missing.yaml", code=2)
    assert "missing.yaml does not exist" in missing.stderr
    # The store is named as the configuration gives it, and where the run was looked for.
    location = place.store().location()
    line = invoke("show", "nope", "-c", place.config, code=2).stderr.strip()
    assert line.startswith(f"error: no run 'nope' in the {place.kind} store at {location} ("), line
    assert f"(looked for {location}/nope" in line, line
    verbose = invoke("show", "nope", "-c", place.config, "--verbose", code=2)
    assert "Traceback" in verbose.stderr and "RunLogNotFoundError" in verbose.stderr
    assert not (tmp_path / "x.html").exists() and not (tmp_path / "x.json").exists()


def test_every_command_through_the_console_script(tmp_path: Path) -> None:
    """The README's walk through, on the embedded default store (chunked-fs in
    .run_log_store, file-system catalog in .catalog) of a fresh folder."""
    work = tmp_path / "project"
    work.mkdir()
    demo = runlog("demo", "--branches", "6", "--workers", "2", "--run-id", "demo-a", cwd=work)
    assert "Run demo-a" in demo.stdout
    runlog("demo", "--branches", "5", "--workers", "2", "--run-id", "demo-b", cwd=work)
    listed = runlog("list", cwd=work).stdout
    assert "demo-a" in listed and "demo-b" in listed
    assert "train.3" in runlog("show", "demo-a", "--depth", "2", cwd=work).stdout
    runlog("timeline", "demo-a", "-o", "demo-a.html", cwd=work)
    assert (work / "demo-a.html").read_text().count('class="attempt') >= 6 * 3
    differ = runlog("diff", "demo-a", "demo-b", cwd=work, code=1).stdout
    assert "items" in differ and "[1, 2, 3, 4, 5, 6]" in differ and "train.6.fit" in differ
    assert "do not differ" in runlog("diff", "demo-a", "demo-a", cwd=work).stdout
    runlog("export", "demo-a", "-o", "demo-a.json", cwd=work)
    assert json.loads((work / "demo-a.json").read_text())["run_id"] == "demo-a"
    other = _write_config(
        work / "other.yaml",
        {"type": "file-system", "config": {"log_folder": "elsewhere"}},
        {"type": "file-system", "config": {"catalog_location": "elsewhere-catalog"}},
    )
    runlog("copy", "demo-a", "--to", other, cwd=work)
    assert (work / "elsewhere" / "demo-a.json").is_file()
    checked = runlog("verify", "demo-a", "-c", other, cwd=work).stdout
    assert checked.strip() == "Run demo-a recorded no catalog files: nothing to verify."
    gone = runlog("gc", "--older-than", "0s", cwd=work).stdout
    assert "deleted 2 of 2 runs" in gone
    assert not (work / ".run_log_store" / "demo-a").exists()
    failed = runlog("show", "demo-a", cwd=work, code=2)
    assert failed.stderr.startswith("error: ") and "Traceback" not in failed.stderr


def test_reading_many_runs_draws_a_progress_bar_on_a_terminal_only(tmp_path: Path) -> None:
    """stderr on a pseudo-terminal gets the bar (the first list builds the run index: every
    run is summarized once); piped output (as in every other test) never does, so --json stays
    clean."""
    config = _write_config(
        tmp_path / "config.yaml",
        {"type": "chunked-fs", "config": {"log_folder": str(tmp_path / "logs"), "fsync": False}},
        {"type": "do-nothing"},
    )
    many = load_store(config)
    for index in range(40):
        many.create_run_log(f"run-{index:02d}", status=SUCCESS)
    status, out, drawn = run_with_terminal_stderr([RUNLOG, "list", "-c", str(config), "--json"])
    assert status == 0
    assert len(json.loads(out)) == 40
    assert b"indexing runs" in drawn and b"/40" in drawn
    (tmp_path / "logs" / ".runlog-index" / "runs.sqlite").unlink()
    piped = runlog("list", "-c", config, "--json", cwd=tmp_path)
    assert "indexing runs" not in piped.stderr and len(json.loads(piped.stdout)) == 40


@pytest.mark.parametrize("columns", [120, 80, 60, 40])
def test_list_never_cuts_a_run_id_whatever_the_terminal_width(tmp_path: Path, columns: int) -> None:
    """The run id is what a user copies into the next command: other columns wrap or go."""
    config = _write_config(
        tmp_path / "config.yaml",
        {"type": "chunked-fs", "config": {"log_folder": str(tmp_path / "logs"), "fsync": False}},
        {"type": "do-nothing"},
    )
    store = load_store(config)
    run_ids = ["demo-20261128-114936-5207", "a-much-longer-run-id-of-a-weekly-training-42"]
    for run_id in run_ids:
        store.create_run_log(run_id, tag="nightly", status=SUCCESS)
    result = CliRunner().invoke(app, ["list", "-c", str(config)], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.stdout
    lines = result.stdout.splitlines()
    for run_id in run_ids:
        assert any(run_id in line for line in lines), (run_id, result.stdout)
    if columns >= len(run_ids[1]) + 15:
        assert all(len(line) <= columns for line in lines)
    else:  # wider than the terminal even alone: printed whole with its status, nothing else
        assert "start" not in result.stdout
    assert "SUCCESS" in result.stdout
    assert ("nightly" in result.stdout) == (columns >= 120)


def test_without_a_config_every_run_of_a_runnable_project_is_found(tmp_path: Path) -> None:
    """runnable's default store is file-system (<id>.json) and runlog's chunked-fs (<id>/),
    both in .run_log_store: with no configuration runlog lists, shows and folds runs of both,
    and says which layout each run has."""
    logs = tmp_path / ".run_log_store"
    logs.mkdir()
    shutil.copy(RUNNABLE_FIXTURES / "file-system" / "fs-map.json", logs / "fs-map.json")
    shutil.copytree(RUNNABLE_FIXTURES / "chunked-fs" / "chunked-map", logs / "chunked-map")
    listed = json.loads(runlog("list", "--json", cwd=tmp_path).stdout)
    assert {run["run_id"]: run["layout"] for run in listed} == {
        "fs-map": "file-system",
        "chunked-map": "chunked-fs",
    }
    table = runlog("list", cwd=tmp_path).stdout
    assert "layout" in table and "file-system" in table and "chunked-fs" in table
    expected = json.loads((RUNNABLE_FIXTURES / "file-system" / "fs-map.json").read_text())
    assert json.loads(runlog("show", "fs-map", "--json", cwd=tmp_path).stdout) == expected
    assert "chunked-map" in runlog("show", "chunked-map", cwd=tmp_path).stdout
    missing = runlog("show", "nowhere", cwd=tmp_path, code=2).stderr
    assert "nowhere/" in missing and "nowhere.json" in missing
