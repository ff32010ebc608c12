"""A runnable project's log folder holding runs of both local layouts: runnable's default
``file-system`` (``<run_id>.json``) and ``chunked-fs`` (``<run_id>/``), written by runnable's
own stores and by ours. ProjectRunLogStore lists and reads them all and names each layout."""

from __future__ import annotations

import time

import pytest

from runlog_store.exceptions import RunLogExistsError, RunLogNotFoundError
from runlog_store.stores.project import ProjectRunLogStore

from .harness import Project, succeeded

RUNS = {
    "by-runnable-fs": ("file-system", "file-system"),
    "by-runnable-chunked": ("chunked-fs", "file-system"),
    "by-runlog-fs": ("runlog-file-system", "runlog-file-system"),
    "by-runlog-chunked": ("runlog-chunked-fs", "runlog-file-system"),
}
LAYOUT = {
    "by-runnable-fs": "file-system",
    "by-runnable-chunked": "chunked-fs",
    "by-runlog-fs": "file-system",
    "by-runlog-chunked": "chunked-fs",
}


def test_every_run_of_both_layouts_in_one_folder(project: Project) -> None:
    for run_id, (store_type, catalog_type) in RUNS.items():
        config = project.config(f"{run_id}.yaml", store_type, catalog_type=catalog_type)
        succeeded(project.run_sdk("flaky", config, run_id, {"branches": 3}))
        time.sleep(0.05)  # distinct write times, to check the order

    store = ProjectRunLogStore(log_folder=str(project.log_folder))
    assert store.list_run_ids() == list(reversed(RUNS))
    assert store.layouts() == {run_id: LAYOUT[run_id] for run_id in reversed(RUNS)}
    for run_id in RUNS:
        run = store.get_run_log_by_id(run_id, full=True)
        assert run.status == "SUCCESS"
        assert run.steps["train"].branches["train.2"].steps["train.2.last"].status == "SUCCESS"
        assert store.get_step_log("train.1.middle", run_id).status == "SUCCESS"
        assert store.get_parameters(run_id)["total"].value == sum(
            (i + 100) * 2 + 1 for i in range(3)
        )
    assert [r.run_id for r in store.get_run_logs(status="SUCCESS")] == list(reversed(RUNS))

    with pytest.raises(RunLogNotFoundError, match=r"nope/ and .*nope\.json"):
        store.layout("nope")
    with pytest.raises(RunLogExistsError):
        store.create_run_log("by-runnable-fs")
    store.create_run_log("new")
    assert store.layout("new") == "chunked-fs"
    store.delete_run("by-runnable-fs")
    assert "by-runnable-fs" not in store.list_run_ids()
