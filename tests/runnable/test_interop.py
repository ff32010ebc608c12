"""Side by side with runnable 0.50 itself: it reads what we write, we read what it writes."""

from __future__ import annotations

import json
from pathlib import Path

import runnable.datastore as runnable_models
from extensions.run_log_store.chunked_fs import ChunkedFileSystemRunLogStore as RunnableChunkedFs
from extensions.run_log_store.file_system import FileSystemRunLogstore as RunnableFileSystem
from runnable.datastore import JsonParameter as RunnableJsonParameter
from runnable.datastore import StepAttempt as RunnableAttempt

from runlog_store import BaseRunLogStore, BranchLog, JsonParameter, StepAttempt, create_store

from ..conftest import make_store


def _p(value: object) -> JsonParameter:
    return JsonParameter(kind="json", value=value)


def build_map_run(store: BaseRunLogStore, run_id: str = "run-1", branches: int = 3) -> None:
    """A run with a root task, a map step with branches (and a nested parallel), and params."""
    store.create_run_log(run_id, dag_hash="abc", tag="nightly")
    store.set_parameters(run_id, {"items": _p(list(range(branches)))})
    first = store.create_step_log("first", "first")
    first.status = "SUCCESS"
    first.attempts.append(
        StepAttempt(
            status="SUCCESS",
            start_time="2026-01-01 00:00:00.000000",
            end_time="2026-01-01 00:00:01.500000",
            output_parameters={"x": _p(1)},
        )
    )
    store.add_step_log(first, run_id)
    mapped = store.create_step_log("map", "map")
    mapped.step_type = "map"
    store.add_step_log(mapped, run_id)
    for i in range(branches):
        store.add_branch_log(store.create_branch_log(f"map.{i}"), run_id)
        store.set_parameters(run_id, {"item": _p(i)}, internal_branch_name=f"map.{i}")
        for name in ("work", "success"):
            step = store.create_step_log(name, f"map.{i}.{name}")
            store.add_step_log(step, run_id)
            step.status = "SUCCESS"
            store.add_step_log(step, run_id)
        done = store.get_branch_log(f"map.{i}", run_id)
        assert isinstance(done, BranchLog)
        done.status = "SUCCESS"
        store.add_branch_log(done, run_id)
    # a parallel step nested inside branch map.0
    par = store.create_step_log("par", "map.0.par")
    par.step_type = "parallel"
    store.add_step_log(par, run_id)
    store.add_branch_log(store.create_branch_log("map.0.par.left"), run_id)
    leaf = store.create_step_log("leaf", "map.0.par.left.leaf")
    store.add_step_log(leaf, run_id)
    mapped.status = "SUCCESS"
    store.add_step_log(mapped, run_id)
    store.update_run_log_status(run_id, "SUCCESS")


def test_runnable_models_accept_every_full_log_we_write(store: BaseRunLogStore) -> None:
    build_map_run(store)
    theirs = runnable_models.RunLog.model_validate_json(store.get_run_log_json("run-1"))
    assert theirs.search_step_by_internal_name("map.0.par.left.leaf")[0].name == "leaf"
    assert json.loads(theirs.model_dump_json()) == json.loads(
        store.get_run_log_by_id("run-1", full=True).model_dump_json()
    )


def test_runnable_file_system_store_reads_our_files(tmp_path: Path) -> None:
    ours = make_store("file-system", tmp_path)
    build_map_run(ours)
    theirs = RunnableFileSystem(log_folder=str(tmp_path)).get_run_log_by_id("run-1", full=True)
    assert theirs.model_dump(mode="json") == ours.get_run_log_by_id("run-1", full=True).model_dump(
        mode="json"
    )


def _runnable_chunked_run(folder: Path) -> RunnableChunkedFs:
    """A map run written by runnable 0.50's own chunked-fs store."""
    theirs = RunnableChunkedFs(log_folder=str(folder))
    theirs.create_run_log("theirs", dag_hash="x")
    theirs.set_parameters("theirs", {"items": RunnableJsonParameter(kind="json", value=[1, 2])})
    step = theirs.create_step_log("map", "map")
    step.step_type = "map"
    theirs.add_step_log(step, "theirs")
    for i in (1, 2):
        theirs.add_branch_log(theirs.create_branch_log(f"map.{i}"), "theirs")
        theirs.set_parameters(
            "theirs", {"i": RunnableJsonParameter(kind="json", value=i)}, f"map.{i}"
        )
        work = theirs.create_step_log("work", f"map.{i}.work")
        work.attempts.append(
            RunnableAttempt(
                status="SUCCESS", start_time="2026-01-01 00:00:00", end_time="2026-01-01 00:00:02"
            )
        )
        work.status = "SUCCESS"
        theirs.add_step_log(work, "theirs")
    theirs.update_run_log_status("theirs", "SUCCESS")
    return theirs


def test_we_read_runs_written_by_runnable_chunked_fs(tmp_path: Path) -> None:
    theirs = _runnable_chunked_run(tmp_path)
    expected = json.loads(theirs.get_run_log_by_id("theirs", full=True).model_dump_json())
    ours = create_store("chunked-fs", log_folder=str(tmp_path), fsync=False)
    assert json.loads(ours.get_run_log_json("theirs")) == expected
    assert ours.get_step_log("map.2.work", "theirs").attempts[0].duration == "0:00:02"
    assert ours.get_parameters("theirs", "map.1")["i"].value == 1


def test_runnable_model_objects_are_accepted(tmp_path: Path) -> None:
    """Executors built on runnable's models can hand their objects to our stores."""
    ours = create_store("chunked-fs", log_folder=str(tmp_path), fsync=False)
    ours.create_run_log("r")
    step = runnable_models.StepLog(name="s", internal_name="s", status="SUCCESS")
    ours.add_step_log(step, "r")  # type: ignore[arg-type]
    ours.add_branch_log(runnable_models.BranchLog(internal_name="s.b", status="SUCCESS"), "r")  # type: ignore[arg-type]
    ours.set_parameters("r", {"p": RunnableJsonParameter(kind="json", value=3)})  # type: ignore[dict-item]
    run = ours.get_run_log_by_id("r", full=True)
    assert run.steps["s"].branches["s.b"].status == "SUCCESS"
    assert run.parameters["p"].value == 3
