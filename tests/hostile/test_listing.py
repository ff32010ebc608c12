"""Hostile entries in a log folder: a name that is no run id, a symbolic link. ``runlog list``
and ``runlog gc`` read every other run as usual; the entry is noted (an UNREADABLE row for a
name that is no run id, a note naming a symbolic link), never followed, never deleted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runlog_store.cli.app import app
from runlog_store.config import load_store
from runlog_store.models import SUCCESS
from runlog_store.stores.base import BaseRunLogStore

from ..conftest import write_config

RUNLOG = str(Path(sys.executable).with_name("runlog"))
ESCAPED = "bad\x1b[2Jname"
TOO_LONG = "x" * 210
NOT_UTF8 = b"bad\xffname"


def runlog(*args: str, cwd: Path, code: int = 0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RUNNABLE_CONFIGURATION_FILE"}
    result = subprocess.run(
        [RUNLOG, *args],
        cwd=cwd,
        capture_output=True,
        env={**env, "COLUMNS": "400"},
        timeout=300,
        text=True,
        errors="strict",
    )
    assert result.returncode == code, (args, result.returncode, result.stdout, result.stderr)
    return result


def _store(project: Path, layout: str) -> tuple[BaseRunLogStore, list[str]]:
    """The store of ``layout`` in ``project`` ("project" is runlog's default: no -c) and the
    options that name it."""
    if layout == "project":
        return _project_store(project), []
    config = write_config(project / "config.yaml", layout, project / "logs")
    return load_store(config), ["-c", str(config)]


def _project_store(project: Path) -> BaseRunLogStore:
    from runlog_store.stores.project import ProjectRunLogStore

    return ProjectRunLogStore(log_folder=str(project / ".run_log_store"), fsync=False)


def _bad_names(folder: Path, layout: str) -> list[bytes]:
    """Entries whose names are no run id, each holding a run document: an escape byte, 210
    bytes, bytes that are not UTF-8."""
    made = []
    for name in (ESCAPED.encode(), TOO_LONG.encode(), NOT_UTF8):
        if layout == "file-system":
            path = os.path.join(bytes(folder), name + b".json")
            with open(path, "w") as document:
                document.write(json.dumps({"run_id": "x", "status": SUCCESS}))
        else:
            os.mkdir(os.path.join(bytes(folder), name))
            with open(os.path.join(bytes(folder), name, b"RunLog.json"), "w") as document:
                document.write(json.dumps({"run_id": "x", "status": SUCCESS}))
        made.append(name)
    return made


LAYOUTS = ["project", "chunked-fs", "file-system"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_name_that_is_no_run_id_is_listed_unreadable(tmp_path: Path, layout: str) -> None:
    store, options = _store(tmp_path, layout)
    for run_id in ("fine", "other"):
        store.create_run_log(run_id, status=SUCCESS)
    folder = tmp_path / (".run_log_store" if layout == "project" else "logs")
    _bad_names(folder, layout)

    listed = runlog("list", *options, cwd=tmp_path).stdout
    assert "fine" in listed and "other" in listed
    assert "bad\\x1b[2Jname" in listed and TOO_LONG in listed and "bad\\xffname" in listed
    assert listed.count("UNREADABLE") == 3, listed
    assert "\x1b" not in listed
    runs = json.loads(runlog("list", "--json", *options, cwd=tmp_path).stdout)
    by_id = {run["run_id"]: run for run in runs}
    assert by_id["fine"]["status"] == SUCCESS and by_id["other"]["status"] == SUCCESS
    assert by_id[ESCAPED]["status"] == "UNREADABLE"
    assert "not a valid run id" in by_id[ESCAPED]["error"]
    assert "at most 200 bytes" in by_id[TOO_LONG]["error"]
    assert len(runs) == 5

    kept = runlog("gc", "--older-than", "0s", *options, cwd=tmp_path)
    assert "deleted 2 of 5 runs" in kept.stdout, kept.stdout
    assert kept.stdout.count("kept: unreadable") == 3
    left = sorted(os.listdir(bytes(folder)))
    assert len([name for name in left if not name.startswith(b".")]) == 3, left


def _outside_run(tmp_path: Path, layout: str) -> tuple[Path, BaseRunLogStore]:
    """A run in a folder of its own, out of the log folder: what a link points to."""
    elsewhere = tmp_path / "elsewhere"
    store = load_store(
        write_config(
            tmp_path / "elsewhere.yaml",
            "file-system" if layout == "file-system" else "chunked-fs",
            elsewhere,
        )
    )
    store.create_run_log("victim", status=SUCCESS)
    return elsewhere, store


@pytest.mark.parametrize("layout", LAYOUTS)
def test_gc_keeps_a_symlinked_run_and_collects_the_others(tmp_path: Path, layout: str) -> None:
    store, options = _store(tmp_path, layout)
    for run_id in ("fine", "other"):
        store.create_run_log(run_id, status=SUCCESS)
    folder = tmp_path / (".run_log_store" if layout == "project" else "logs")
    elsewhere, victim_store = _outside_run(tmp_path, layout)
    if layout == "file-system":
        link = folder / "linked.json"
        link.symlink_to(elsewhere / "victim.json")
    else:
        link = folder / "linked"
        link.symlink_to(elsewhere / "victim", target_is_directory=True)
    before = {p: p.read_bytes() for p in elsewhere.rglob("*") if p.is_file()}

    result = runlog("gc", "--older-than", "0s", *options, cwd=tmp_path)
    assert "deleted 2 of 3 runs" in result.stdout, result.stdout
    named = str(link) if options else str(link.relative_to(tmp_path))  # as the store names it
    assert "symbolic link" in result.stderr and named in result.stderr, result.stderr
    assert link.is_symlink(), "the link was moved or removed"
    assert {p: p.read_bytes() for p in elsewhere.rglob("*") if p.is_file()} == before
    assert victim_store.get_run_log_by_id("victim").status == SUCCESS
    assert not any(name.startswith(".deleting-") for name in os.listdir(folder))
    decisions = json.loads(
        runlog("gc", "--older-than", "0s", "--json", *options, cwd=tmp_path).stdout
    )
    assert decisions == []
    assert link.is_symlink()


def test_gc_keeps_a_run_whose_catalog_folder_is_a_symlink(tmp_path: Path) -> None:
    store, options = _store(tmp_path, "chunked-fs")
    for run_id in ("fine", "linked-catalog"):
        store.create_run_log(run_id, status=SUCCESS)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data.csv").write_text("keep me")
    (tmp_path / "catalog").mkdir()
    (tmp_path / "catalog" / "linked-catalog").symlink_to(precious, target_is_directory=True)

    result = runlog("gc", "--older-than", "0s", "--with-catalog", *options, cwd=tmp_path)
    assert "deleted 1 of 2 runs" in result.stdout, result.stdout
    assert str(tmp_path / "catalog" / "linked-catalog") in result.stderr, result.stderr
    assert (precious / "data.csv").read_text() == "keep me"
    assert store.get_run_log_by_id("linked-catalog").status == SUCCESS


def test_a_run_gc_cannot_delete_is_named_and_the_others_are_collected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder swapped for a link after gc looked at it (or any other failure to delete) is
    one run not deleted, said with its path; the runs after it are still collected."""
    from runlog_store.stores.chunked_fs import ChunkedFileSystemRunLogStore

    store, options = _store(tmp_path, "chunked-fs")
    for run_id in ("first", "stuck", "last"):
        store.create_run_log(run_id, status=SUCCESS)
    delete_run = ChunkedFileSystemRunLogStore.delete_run

    def failing(self: ChunkedFileSystemRunLogStore, run_id: str) -> None:
        if run_id == "stuck":
            raise OSError("Cannot call rmtree on a symbolic link")
        delete_run(self, run_id)

    monkeypatch.setattr(ChunkedFileSystemRunLogStore, "delete_run", failing)
    result = CliRunner().invoke(
        app,
        ["gc", "--older-than", "0s", *options],
        env={"COLUMNS": "400", "RUNNABLE_CONFIGURATION_FILE": None},
    )
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "deleted 2 of 3 runs" in result.stdout, result.stdout
    error = " ".join(result.stderr.split())
    assert "run 'stuck' was not deleted" in error, result.stderr
    assert str(tmp_path / "logs" / "stuck") in error
    assert "Cannot call rmtree on a symbolic link" in error
    assert store.list_run_ids() == ["stuck"]
