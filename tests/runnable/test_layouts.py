"""chunked-fs reads every published layout and writes the one in docs/format.md."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from runlog_store import create_store
from runlog_store.exceptions import CorruptChunkError, StepLogNotFoundError
from runlog_store.stores.chunked_fs import ChunkedFileSystemRunLogStore

from ..conftest import RUNNABLE_FIXTURES, SEED_FIXTURES


def _chunked(folder: Path) -> ChunkedFileSystemRunLogStore:
    store = create_store("chunked-fs", log_folder=str(folder), fsync=False)
    assert isinstance(store, ChunkedFileSystemRunLogStore)
    return store


def _copy_run(source: Path, dest_folder: Path) -> None:
    shutil.copytree(source, dest_folder / source.name)
    for root, dirs, files in os.walk(dest_folder):  # fixtures are read-only
        for name in dirs + files:
            os.chmod(os.path.join(root, name), 0o755 if name in dirs else 0o644)
        os.chmod(root, 0o755)


def test_runnable_050_chunked_run_reads_as_runnable_assembles_it() -> None:
    store = _chunked(RUNNABLE_FIXTURES / "chunked-fs")
    expected = json.loads((RUNNABLE_FIXTURES / "expected-full" / "chunked-map.json").read_text())
    assert json.loads(store.get_run_log_json("chunked-map")) == expected
    full = store.get_run_log_by_id("chunked-map", full=True)
    assert json.loads(full.model_dump_json()) == expected
    assert list(full.steps) == list(expected["steps"])
    assert list(full.steps["map_state"].branches) == [f"map_state.{i}" for i in (1, 2, 3, 4)]


def test_runnable_050_chunked_run_step_and_branch_lookups() -> None:
    store = _chunked(RUNNABLE_FIXTURES / "chunked-fs")
    assert store.get_step_log("map_state.3.work", "chunked-map").status == "SUCCESS"
    assert store.get_step_log("gen", "chunked-map").step_type == "task"
    branch = store.get_branch_log("parallel step.branch2", "chunked-map")
    assert branch.status == "SUCCESS"
    assert store.get_parameters("chunked-map", "map_state.2")["processed"].value == 20
    with pytest.raises(StepLogNotFoundError):
        store.get_step_log("map_state.3.nope", "chunked-map")


def test_seed_layout_chunked_run_keeps_old_fields_and_order() -> None:
    store = _chunked(SEED_FIXTURES / "chunked-fs")
    run = store.get_run_log_by_id("pleasant-lamarr-0549", full=True)
    assert list(run.steps) == ["simple", "success"]
    step = run.steps["simple"]
    assert (
        step.model_extra is not None and step.model_extra["code_identities"][0]["code_identifier"]
    )
    assert step.attempts[0].model_extra == {"duration": "0:00:00.005841", "parameters": {}}
    assert run.model_extra == {"use_cached": False, "original_run_id": ""}
    dumped = json.loads(run.model_dump_json())
    assert dumped["steps"]["simple"]["attempts"][0]["duration"] == "0:00:00.005841"
    assert dumped["use_cached"] is False
    assert store.get_step_log("success", "pleasant-lamarr-0549").status == "SUCCESS"


def test_file_system_fixtures_read_on_file_system_store() -> None:
    for folder in (RUNNABLE_FIXTURES / "file-system", SEED_FIXTURES / "file-system"):
        store = create_store("file-system", log_folder=str(folder))
        for path in folder.glob("*.json"):
            run = store.get_run_log_by_id(path.stem, full=True)
            assert run.run_id == path.stem
            assert json.loads(store.get_run_log_json(path.stem)) == json.loads(path.read_text())


def test_resuming_a_runnable_050_run_keeps_everything(tmp_path: Path) -> None:
    """A run written by runnable 0.50 can be written to further (a retry) and read as one."""
    _copy_run(RUNNABLE_FIXTURES / "chunked-fs" / "chunked-map", tmp_path)
    store = _chunked(tmp_path)
    before = store.get_run_log_by_id("chunked-map", full=True)
    store.update_run_log_status("chunked-map", "PROCESSING")
    store.set_parameters("chunked-map", {"extra": before.parameters["score"]})
    step = store.get_step_log("map_state.4.work", "chunked-map")
    step.message = "retried"
    store.add_step_log(step, "chunked-map")
    retry = store.create_step_log("retry", "retry")
    store.add_step_log(retry, "chunked-map")
    after = store.get_run_log_by_id("chunked-map", full=True)
    assert after.status == "PROCESSING"
    assert list(after.steps) == [*before.steps, "retry"]
    assert after.find_step("map_state.4.work").message == "retried"
    assert after.find_step("map_state.1.work") == before.find_step("map_state.1.work")
    assert set(after.parameters) == {*before.parameters, "extra"}


def test_documents_are_runnables_and_stay_inside_the_run(tmp_path: Path) -> None:
    """While the run goes on, one journal per writer and no file per step; at its end, runnable's
    documents: RunLog.json with the root steps, a BranchLog per branch with its steps. Names
    runnable cannot store (a separator, very long) keep the package's encoding."""
    store = _chunked(tmp_path)
    store.create_run_log("r")
    names = ("plain", "with space", "dots.0", "ünïcode", "../escape", "a/b\\c\x00d")
    for name in names:
        store.add_step_log(store.create_step_log(name, name), "r")
    store.add_branch_log(store.create_branch_log("plain.b1"), "r")
    store.add_step_log(store.create_step_log("x" * 300, "plain.b1." + "x" * 300), "r")
    store.add_branch_log(store.create_branch_log("plain." + "y" * 300), "r")
    run_folder = tmp_path / "r"
    assert sorted(os.listdir(run_folder)) == [".journals", ".layout", ".lock", "RunLog.json"]
    assert len(os.listdir(run_folder / ".journals")) == 1
    assert (run_folder / ".layout").read_bytes() == b"runlog-store chunked-fs 2\n"
    store.update_run_log_status("r", "SUCCESS")
    files = sorted(os.listdir(run_folder))
    hashed = [name for name in files if name.startswith("BranchLog-~")]
    assert len(hashed) == 1 and len(hashed[0]) < 60, files
    documents = ["BranchLog-plain.b1.json", *hashed, "RunLog.json"]
    # With the run's stored merge (a cache for our readers; runnable's ignores it), and no
    # journals' folder: every journal folded, the folder went with them.
    assert files == sorted([".layout", ".lock", ".merged.json", *documents])
    assert os.listdir(tmp_path) == ["r"]  # nothing escaped the run's folder
    stored = json.loads((run_folder / "RunLog.json").read_text())
    assert list(stored["steps"]) == list(names)
    branch = json.loads((run_folder / "BranchLog-plain.b1.json").read_text())
    assert list(branch["steps"]) == ["plain.b1." + "x" * 300]
    run = store.get_run_log_by_id("r", full=True)
    assert set(run.steps) == set(names)
    assert run.find_step("plain.b1." + "x" * 300).name == "x" * 300
    assert "_stamp" not in store.get_run_log_json("r").decode()


def test_write_path_lists_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Step, branch and parameter writes and the reads of one step are appends and reads of
    known paths (the Rust core lists only the run's small .journals folder): no listing of the
    run, no merge of it, no file per write."""
    store = _chunked(tmp_path)
    store.create_run_log("r")
    store.add_step_log(store.create_step_log("map", "map"), "r")

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("the write path must not list folders or merge the run")

    from runlog_store import _core

    monkeypatch.setattr(os, "listdir", forbidden)
    monkeypatch.setattr(os, "scandir", forbidden)
    monkeypatch.setattr(_core, "merge_run", forbidden)
    for i in range(20):
        branch = store.create_branch_log(f"map.{i}")
        store.add_branch_log(branch, "r")
        store.set_parameters("r", {"p": _param(i)}, f"map.{i}")
        step = store.create_step_log("w", f"map.{i}.w")
        store.add_step_log(step, "r")
        step.status = "SUCCESS"
        store.add_step_log(step, "r")
        assert store.get_step_log(f"map.{i}.w", "r").status == "SUCCESS"
        store.set_parameters("r", {f"root{i}": _param(i)})
    monkeypatch.undo()
    assert len(store.get_run_log_by_id("r", full=True).steps["map"].branches) == 20
    # Nothing but the journal grew: no file per write.
    assert sorted(os.listdir(tmp_path / "r")) == [".journals", ".layout", ".lock", "RunLog.json"]


def _param(value: int):  # type: ignore[no-untyped-def]
    from runlog_store import JsonParameter

    return JsonParameter(kind="json", value=value)


def test_corrupt_document_is_named_and_salvage_reads_the_rest(tmp_path: Path) -> None:
    store = _chunked(tmp_path)
    store.create_run_log("r")
    store.add_step_log(store.create_step_log("map", "map"), "r")
    for i in range(3):
        store.add_branch_log(store.create_branch_log(f"map.{i}"), "r")
        store.add_step_log(store.create_step_log("w", f"map.{i}.w"), "r")
    store.update_run_log_status("r", "SUCCESS")
    bad = tmp_path / "r" / "BranchLog-map.1.json"
    bad.write_bytes(b'{"_created_ns":1,"internal_name":"map.1","steps":{"map.1.w":{"na')
    with pytest.raises(CorruptChunkError) as err:
        store.get_run_log_by_id("r", full=True)
    assert err.value.path == str(bad) and err.value.run_id == "r"
    assert "BranchLog-map.1.json" in str(err.value)
    with pytest.raises(CorruptChunkError) as err2:
        store.get_step_log("map.1.w", "r")
    assert err2.value.path == str(bad)
    # A step of another branch is read from its own document: the damage does not touch it.
    assert store.get_step_log("map.2.w", "r").name == "w"
    salvaged = store.salvage_run_log("r")
    assert list(salvaged.run_log.steps["map"].branches) == ["map.0", "map.2"]
    assert [Path(p).name for p, _ in salvaged.skipped] == ["BranchLog-map.1.json"]


def test_temp_files_are_ignored_by_readers(tmp_path: Path) -> None:
    store = _chunked(tmp_path)
    store.create_run_log("r")
    store.add_step_log(store.create_step_log("a", "a"), "r")
    (tmp_path / "r" / ".StepLog-b.json.tmp-1-2-3").write_bytes(b'{"half a')
    (tmp_path / "r" / "notes.txt").write_text("not a chunk")
    assert list(store.get_run_log_by_id("r", full=True).steps) == ["a"]
