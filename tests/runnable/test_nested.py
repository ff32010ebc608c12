"""A map inside a branch of a parallel step.

With ``enable_parallel: true`` runnable runs the parallel step's branches in a
``multiprocessing.Pool``; the map inside one of them then asks for a Pool of its own, and a
Pool worker is a daemonic process, which may not have children: ``AssertionError: daemonic
processes are not allowed to have children``. runnable catches it at the branch: the branch
stays PROCESSING (its map step too, with its branches created but never run), the other branch
succeeds, the parallel step fails and so does the run, whatever the store. Our stores must
record that run exactly as runnable's own chunked-fs does. Without ``enable_parallel`` the same
pipeline runs everything one after another and succeeds.
"""

from __future__ import annotations

import pytest
from extensions.run_log_store.chunked_fs import ChunkedFileSystemRunLogStore as RunnableChunkedFs

from runlog_store import load_store

from .harness import Project, shape, succeeded

BRANCHES = 4


def test_runnable_records_the_nested_pool_failure_so(project: Project) -> None:
    """The reference: runnable's own chunked-fs, and what runnable says."""
    config = project.config("nested-runnable.yaml", "chunked-fs", catalog_type="file-system")
    finished = project.run_sdk("nested", config, "nested", {"branches": BRANCHES})
    assert finished.returncode != 0
    assert "daemonic processes are not allowed to have children" in finished.output
    run = RunnableChunkedFs(log_folder=str(project.log_folder)).get_run_log_by_id(
        "nested", full=True
    )
    assert run.status == "FAIL"
    assert shape(run) == EXPECTED_PARALLEL


EXPECTED_PARALLEL = {
    "prepare": ("SUCCESS", 1),
    "outer": ("FAIL", 0),
    "outer.mapped": ("PROCESSING", -1),
    "outer.mapped.inner": ("PROCESSING", 0),
    **{f"outer.mapped.inner.{i}": ("PROCESSING", -1) for i in range(BRANCHES)},
    "outer.plain": ("SUCCESS", -1),
    "outer.plain.plain": ("SUCCESS", 1),
    "outer.plain.success": ("SUCCESS", 1),
    "fail": ("SUCCESS", 1),
}


@pytest.mark.parametrize("store_type", ["runlog-chunked-fs", "runlog-file-system"])
def test_our_stores_record_it_as_runnable_does(project: Project, store_type: str) -> None:
    ours = project.config("nested.yaml", store_type)
    finished = project.run_sdk("nested", ours, "nested", {"branches": BRANCHES})
    assert finished.returncode != 0
    assert "daemonic processes are not allowed to have children" in finished.output
    run = load_store(ours).get_run_log_by_id("nested", full=True)
    assert run.status == "FAIL"
    assert shape(run) == EXPECTED_PARALLEL

    shown = project.runlog("show", "nested", "--config", str(ours))
    assert shown.returncode == 0, shown.stderr


@pytest.mark.parametrize("store_type", ["runlog-chunked-fs", "runlog-file-system"])
def test_without_enable_parallel_the_nested_map_runs(project: Project, store_type: str) -> None:
    config = project.config("sequential.yaml", store_type, parallel=False)
    succeeded(project.run_sdk("nested", config, "nested-seq", {"branches": BRANCHES}))
    run = load_store(config).get_run_log_by_id("nested-seq", full=True)
    assert run.status == "SUCCESS"
    statuses = shape(run)
    assert {name for name, (status, _) in statuses.items() if status != "SUCCESS"} == set()
    for i in range(BRANCHES):
        assert statuses[f"outer.mapped.inner.{i}.work"] == ("SUCCESS", 1)
    assert run.parameters["a"].value == [i + 100 for i in range(BRANCHES)]
    assert run.parameters["n"].value == BRANCHES
