"""runnable 0.50's own chunked stores read the runs our chunked stores write.

``ChunkedFileSystemRunLogStore`` on our run folders and ``ChunkedMinioRunLogStore`` on our
bucket (the real MinIO server of the tests): every ended branch while the run goes on, and the
whole run, with the same full view as ours, once it has ended. Also runnable's own behavioural
tests of its chunked store (``tests/extensions/run_log_store/test_chunked_simplified.py`` of
its repository), held against ours: a read that is not full carries the root steps, a branch
comes with its steps, and no file is written per step.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from extensions.run_log_store.chunked_fs import ChunkedFileSystemRunLogStore as RunnableChunkedFs
from extensions.run_log_store.chunked_minio import ChunkedMinioRunLogStore as RunnableChunkedMinio
from extensions.run_log_store.chunked_minio import get_minio_client
from runnable import context as runnable_context

from runlog_store import (
    BaseRunLogStore,
    JsonParameter,
    MetricParameter,
    StepAttempt,
    _core,
    create_store,
)
from runlog_store.models import BranchLog, RunLog, StepLog

TIME = ("2026-01-01 00:00:00.000000", "2026-01-01 00:00:01.000000")


# --- runnable's readers -----------------------------------------------------------------------


@dataclass(frozen=True)
class _RunContext:
    """What runnable's chunked-minio store reads of its run context: the current run's id (it
    finds its folder through it, whatever run id its methods are given)."""

    run_id: str


@contextmanager
def _runnable_run(run_id: str) -> Iterator[None]:
    previous = runnable_context.get_run_context()
    runnable_context.set_run_context(_RunContext(run_id))  # type: ignore[arg-type]
    try:
        yield
    finally:
        runnable_context.set_run_context(previous)


class Runnable:
    """runnable's own chunked store of either kind, called as runnable calls it."""

    def __init__(self, store: Any, minio_config: dict[str, str] | None = None) -> None:
        self.store = store
        self.minio_config = minio_config

    @contextmanager
    def _reading(self, run_id: str) -> Iterator[None]:
        if self.minio_config is None:
            yield
            return
        # cloudpathlib serves an object from its local cache when the object's Last-Modified
        # (whole seconds) is not later than the cached copy's: a write within the same second
        # would be missed. A fresh cache per read is what a new runnable process has.
        config = self.minio_config
        get_minio_client(
            config["endpoint_url"], config["aws_access_key_id"], config["aws_secret_access_key"]
        ).clear_cache()
        with _runnable_run(run_id):
            yield

    def full(self, run_id: str) -> dict[str, Any]:
        with self._reading(run_id):
            run = self.store.get_run_log_by_id(run_id, full=True)
        result: dict[str, Any] = json.loads(run.model_dump_json())
        return result

    def branch(self, name: str, run_id: str) -> dict[str, Any]:
        with self._reading(run_id):
            branch = self.store.get_branch_log(name, run_id)
        result: dict[str, Any] = json.loads(branch.model_dump_json())
        return result

    def step(self, name: str, run_id: str) -> dict[str, Any]:
        with self._reading(run_id):
            step = self.store.get_step_log(name, run_id)
        result: dict[str, Any] = json.loads(step.model_dump_json())
        return result


def _ours(store: BaseRunLogStore, run_id: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(store.get_run_log_json(run_id))
    return result


@pytest.fixture(params=["chunked-fs", "chunked-minio"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[BaseRunLogStore, Runnable, str]:
    """(our store, runnable's store of the same kind on the same storage, the kind)."""
    if request.param == "chunked-fs":
        folder = str(tmp_path / "logs")
        ours = create_store("chunked-fs", log_folder=folder, fsync=False)
        return ours, Runnable(RunnableChunkedFs(log_folder=folder)), request.param
    config: dict[str, str] = dict(request.getfixturevalue("minio_config"))
    ours = create_store("chunked-minio", **config)
    return ours, Runnable(RunnableChunkedMinio(**config), config), request.param


# --- a run as runnable's executor writes it -----------------------------------------------------


def _attempt(value: int) -> StepAttempt:
    return StepAttempt(
        status="SUCCESS",
        start_time=TIME[0],
        end_time=TIME[1],
        input_parameters={"item": JsonParameter(kind="json", value=value)},
        output_parameters={"out": JsonParameter(kind="json", value=value * 2)},
    )


def _run_step(store: BaseRunLogStore, run_id: str, name: str, internal: str, i: int) -> None:
    step = store.create_step_log(name, internal)
    store.add_step_log(step, run_id)
    step.status = "SUCCESS"
    step.attempts.append(_attempt(i))
    store.add_step_log(step, run_id)


def _run_branch(
    store: BaseRunLogStore,
    run_id: str,
    branch_name: str,
    i: int,
    steps: int,
    after_each: Callable[[str], None] | None = None,
) -> None:
    branch = store.create_branch_log(branch_name)
    branch.status = "PROCESSING"
    store.add_branch_log(branch, run_id)
    store.set_parameters(
        run_id, {"item": JsonParameter(kind="json", value=i)}, internal_branch_name=branch_name
    )
    for s in range(steps):
        _run_step(store, run_id, f"s{s}", f"{branch_name}.s{s}", i * 10 + s)
    ended = store.get_branch_log(branch_name, run_id)
    ended.status = "SUCCESS" if i % 7 else "FAIL"
    store.add_branch_log(ended, run_id)
    if after_each is not None:
        after_each(branch_name)


def write_run(
    store: BaseRunLogStore,
    run_id: str,
    *,
    branches: int = 40,
    steps: int = 3,
    after_each: Callable[[str], None] | None = None,
    end: bool = True,
) -> None:
    """A map of ``branches`` x ``steps`` with branch parameters, then a parallel step whose
    first branch holds a map of its own (a nested branch), root steps before and after, root
    parameters and a metric."""
    store.create_run_log(run_id, dag_hash="d" * 40, tag="nightly")
    store.set_parameters(run_id, {"seed": JsonParameter(kind="json", value=7)})
    _run_step(store, run_id, "first", "first", 0)
    mapped = store.create_step_log("map", "map")
    mapped.step_type = "map"
    store.add_step_log(mapped, run_id)
    for i in range(branches):
        _run_branch(store, run_id, f"map.{i}", i, steps, after_each)
    mapped.status = "SUCCESS"
    store.add_step_log(mapped, run_id)
    par = store.create_step_log("par", "par")
    par.step_type = "parallel"
    store.add_step_log(par, run_id)
    for side in ("left", "right"):
        branch_name = f"par.{side}"
        store.add_branch_log(store.create_branch_log(branch_name), run_id)
        inner = store.create_step_log("inner", f"{branch_name}.inner")
        inner.step_type = "map"
        store.add_step_log(inner, run_id)
        for j in range(2):
            _run_branch(store, run_id, f"{branch_name}.inner.{j}", 100 + j, 2, after_each)
        inner.status = "SUCCESS"
        store.add_step_log(inner, run_id)
        done = store.get_branch_log(branch_name, run_id)
        done.status = "SUCCESS"
        store.add_branch_log(done, run_id)
        if after_each is not None:
            after_each(branch_name)
    par.status = "SUCCESS"
    store.add_step_log(par, run_id)
    _run_step(store, run_id, "last", "last", 1)
    store.set_parameters(run_id, {"score": MetricParameter(kind="metric", value=0.5)})
    if end:
        store.update_run_log_status(run_id, "SUCCESS")


# --- the tests ---------------------------------------------------------------------------------


def test_runnable_reads_every_ended_branch_while_the_run_goes_on_and_the_whole_run_after(
    stores: tuple[BaseRunLogStore, Runnable, str],
) -> None:
    ours, theirs, _ = stores
    checked: list[str] = []

    def check(branch_name: str) -> None:
        full = _ours(ours, "r")
        ours_branch = json.loads(ours.get_branch_log(branch_name, "r").model_dump_json())
        assert theirs.branch(branch_name, "r") == ours_branch
        for step_name in ours_branch["steps"]:
            assert theirs.step(step_name, "r") == ours_branch["steps"][step_name]
        # runnable's full read of the run going on holds the branch, as ours does.
        seen = theirs.full("r")
        holder, _, _ = branch_name.rpartition(".")
        if "." in holder:  # a nested branch: under its step in its parent branch
            parent = holder.rsplit(".", 1)[0]
            theirs_branch = _branch_in(seen, parent, holder)["branches"][branch_name]
            ours_whole = _branch_in(full, parent, holder)["branches"][branch_name]
        else:
            theirs_branch = seen["steps"][holder]["branches"][branch_name]
            ours_whole = full["steps"][holder]["branches"][branch_name]
        assert theirs_branch == ours_whole, branch_name
        checked.append(branch_name)

    write_run(ours, "r", after_each=check)
    assert len(checked) == 40 + 4 + 2
    assert theirs.full("r") == _ours(ours, "r")
    run = ours.get_run_log_by_id("r", full=True)
    assert len(run.steps["map"].branches) == 40
    assert run.find_branch("map.7").status == "FAIL"
    assert run.find_branch("par.left.inner.1").parameters["item"].value == 101


def _branch_in(document: dict[str, Any], branch: str, step: str) -> dict[str, Any]:
    """The step ``step`` inside branch ``branch`` of a full run log document."""
    head = branch.split(".")[0]
    node: dict[str, Any] = document["steps"][head]["branches"][branch]["steps"][step]
    return node


def test_a_run_killed_before_its_end_is_folded_for_runnable(
    stores: tuple[BaseRunLogStore, Runnable, str], tmp_path: Path
) -> None:
    """A run that never ended (its writer killed) reads whole for us; runnable sees its ended
    branches only, until ``fold`` (``runlog fold``) puts the rest in."""
    ours, theirs, kind = stores
    write_run(ours, "stopped", branches=6, end=False)
    open_branch = ours.create_branch_log("map.99")
    ours.add_branch_log(open_branch, "stopped")
    _run_step(ours, "stopped", "s0", "map.99.s0", 990)
    whole = _ours(ours, "stopped")
    assert "map.99" in whole["steps"]["map"]["branches"]
    seen = theirs.full("stopped")
    # The open branch's step is not folded: runnable does not see it (nor, in a folder, the
    # branch; an object store keeps each branch's fields in its object from the start).
    assert "map.99.s0" not in seen["steps"]["map"]["branches"].get("map.99", {}).get("steps", {})
    assert ("map.99" in seen["steps"]["map"]["branches"]) == (kind == "chunked-minio")
    assert seen["steps"]["map"]["branches"]["map.5"] == whole["steps"]["map"]["branches"]["map.5"]
    if kind == "chunked-fs":
        assert ours.unfolded_journals("stopped")  # type: ignore[attr-defined]
    ours.fold("stopped")  # type: ignore[attr-defined]
    assert theirs.full("stopped") == whole == _ours(ours, "stopped")
    if kind == "chunked-fs":
        assert ours.unfolded_journals("stopped") == []  # type: ignore[attr-defined]


def test_a_run_of_format_1_continued_by_a_new_writer_reads_the_same_for_both(
    tmp_path: Path,
) -> None:
    """A run as format 1 wrote it (a StepLog file per step), continued by this version: ours
    reads it whole all along, and once it has ended runnable reads the same."""
    folder = tmp_path / "logs"
    _format_1_run(folder / "old")
    ours = create_store("chunked-fs", log_folder=str(folder), fsync=False)
    before = _ours(ours, "old")
    assert list(before["steps"]["map"]["branches"]) == ["map.0", "map.1", "map.2"]
    assert ours.get_step_log("map.1.work", "old").status == "SUCCESS"
    assert list(ours.get_branch_log("map.2", "old").steps) == ["map.2.work"]  # type: ignore[union-attr]
    _run_branch(ours, "old", "map.3", 3, 2)
    ours.update_run_log_status("old", "SUCCESS")
    after = _ours(ours, "old")
    assert list(after["steps"]["map"]["branches"]) == ["map.0", "map.1", "map.2", "map.3"]
    for i in range(3):
        assert (
            after["steps"]["map"]["branches"][f"map.{i}"]
            == (before["steps"]["map"]["branches"][f"map.{i}"])
        )
    assert Runnable(RunnableChunkedFs(log_folder=str(folder))).full("old") == after
    assert (folder / "old" / ".layout").read_bytes() == _core.LAYOUT_MARKER_TEXT_1


def _format_1_run(run: Path) -> None:
    """A run folder as format 1 of this package laid it out (docs/format.md, "Format 1"):
    ``RunLog.json`` with ``"steps": {}``, one ``StepLog-<key>.json`` per step and one
    ``BranchLog-<key>.json`` per branch, each with its ``_created_ns`` header first, and the
    format's ``.layout``."""
    run.mkdir(parents=True)
    run_log = RunLog(run_id=run.name, status="PROCESSING", tag="format-1")
    (run / _core.RUN_LOG_FILE).write_bytes(run_log.model_dump_json().encode())
    (run / _core.LAYOUT_MARKER).write_bytes(_core.LAYOUT_MARKER_TEXT_1)
    created = 1_700_000_000_000_000_000

    def put(kind: str, model: Any) -> None:
        nonlocal created
        created += 1000
        name = _core.chunk_file_name(kind, model.internal_name)  # type: ignore[arg-type]
        (run / name).write_bytes(_core.chunk_with_header(created, model.model_dump_json().encode()))

    put("StepLog", StepLog(name="map", internal_name="map", step_type="map", status="PROCESSING"))
    for i in range(3):
        put(
            "BranchLog",
            BranchLog(
                internal_name=f"map.{i}",
                status="SUCCESS",
                parameters={"item": JsonParameter(kind="json", value=i)},
            ),
        )
        work = StepLog(name="work", internal_name=f"map.{i}.work", status="SUCCESS")
        work.attempts.append(_attempt(i))
        put("StepLog", work)


# --- runnable's own behavioural tests of its chunked store, held against ours ---------------


@pytest.fixture(params=["chunked-fs", "chunked-minio"])
def chunked_store(request: pytest.FixtureRequest, tmp_path: Path) -> BaseRunLogStore:
    if request.param == "chunked-fs":
        return create_store("chunked-fs", log_folder=str(tmp_path), fsync=False)
    return create_store("chunked-minio", **request.getfixturevalue("minio_config"))


def test_add_step_log_stores_within_runlog(chunked_store: BaseRunLogStore, tmp_path: Path) -> None:
    """A root step is in the run log a read that is not full returns, and no StepLog file is
    written for it."""
    chunked_store.create_run_log(run_id="test_run")
    step = chunked_store.create_step_log(name="step1", internal_name="step1")
    chunked_store.add_step_log(step, "test_run")
    retrieved = chunked_store.get_run_log_by_id("test_run", full=False)
    assert "step1" in retrieved.steps
    if chunked_store.service_name == "chunked-fs":
        files = os.listdir(tmp_path / "test_run")
        assert [f for f in files if f.startswith("StepLog-")] == []


def test_add_step_log_stores_within_branch(chunked_store: BaseRunLogStore) -> None:
    """A step of a branch comes with the branch."""
    chunked_store.create_run_log(run_id="test_run")
    parent = chunked_store.create_step_log(name="parent", internal_name="parent")
    chunked_store.add_step_log(parent, "test_run")
    branch = chunked_store.create_branch_log(internal_branch_name="parent.branch1")
    chunked_store.add_branch_log(branch, "test_run")
    nested = chunked_store.create_step_log(name="nested", internal_name="parent.branch1.nested")
    chunked_store.add_step_log(nested, "test_run")
    retrieved = chunked_store.get_branch_log("parent.branch1", "test_run")
    assert "parent.branch1.nested" in retrieved.steps


def test_the_runnable_fixture_copied_and_continued_reads_the_same_for_both(
    tmp_path: Path,
) -> None:
    """runnable 0.50's own chunked run, continued by us (a retry of one step) and ended: both
    stores read the same run."""
    from ..conftest import RUNNABLE_FIXTURES

    source = RUNNABLE_FIXTURES / "chunked-fs" / "chunked-map"
    shutil.copytree(source, tmp_path / "chunked-map")
    for root, dirs, files in os.walk(tmp_path):  # fixtures are read-only
        for name in dirs + files:
            os.chmod(os.path.join(root, name), 0o755 if name in dirs else 0o644)
    ours = create_store("chunked-fs", log_folder=str(tmp_path), fsync=False)
    step = ours.get_step_log("map_state.2.work", "chunked-map")
    step.message = "retried"
    ours.add_step_log(step, "chunked-map")
    ours.update_run_log_status("chunked-map", "SUCCESS")
    theirs = Runnable(RunnableChunkedFs(log_folder=str(tmp_path))).full("chunked-map")
    assert theirs == _ours(ours, "chunked-map")
    assert (
        theirs["steps"]["map_state"]["branches"]["map_state.2"]["steps"]["map_state.2.work"][
            "message"
        ]
        == "retried"
    )
