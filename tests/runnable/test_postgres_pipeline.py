"""runnable 0.50 itself on ``runlog-postgres``: the store found under its runnable name; the
example pipeline (a map of 64 branches run by 8 worker processes of runnable's Pool at once, a
parallel step, the fan-in that fails the run unless it saw every branch) writing to a real
PostgreSQL server, read back with runlog-store and checked with ``runlog verify``; the same
pipeline carrying on through a restart and a crash of its server; and ``runnable retry`` of a
failed run."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import runnable.datastore as runnable_models
from pydantic import TypeAdapter
from runnable import context as runnable_context

from runlog_store import load_store
from runlog_store.stores.postgres import PostgresRunLogStore

from ..postgres_server import PostgresServer, private_server
from .harness import Project, succeeded, wait_for
from .test_pipelines import check_run, check_verify

BRANCHES = 64
# runnable's Pool() takes os.cpu_count() workers; the pipeline runs with this many instead,
# whatever the machine (sitecustomize below): eight processes writing the run at once.
POOL_WORKERS = 8
SITECUSTOMIZE = '''"""The test's size of runnable's Pool(), which takes os.cpu_count() workers."""
import os

_workers = int(os.environ.get("RUNLOG_TEST_POOL_WORKERS", "0"))
if _workers:
    os.cpu_count = lambda: _workers
'''


def _pool_env(project: Project) -> dict[str, str]:
    folder = project.folder / "pool-size"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "RUNLOG_TEST_POOL_WORKERS": str(POOL_WORKERS)}


def _server_config(server: PostgresServer, schema: str) -> dict[str, Any]:
    return {
        "host": server.host,
        "port": server.port,
        "dbname": server.dbname,
        "user": server.user,
        "password": server.password,
        "schema_name": schema,
        "connect_timeout": 2,
    }


def test_runnable_finds_and_accepts_runlog_postgres(postgres_config: dict[str, Any]) -> None:
    store = TypeAdapter(runnable_context.InstantiatedRunLogStore).validate_python(
        {"type": "runlog-postgres", "config": dict(postgres_config)}
    )
    assert isinstance(store, runnable_models.BaseRunLogStore)
    assert (store.service_name, store.supports_parallel_writes) == ("postgres", True)
    assert isinstance(store.runlog_store, PostgresRunLogStore)
    store.create_run_log("r1")
    assert store.get_run_log_by_id("r1").run_id == "r1"
    # The password is kept as a secret: never in a summary or a dump of the context.
    secret = postgres_config["password"]
    assert secret not in repr(store) + str(store.get_summary()) + str(store.model_dump())


def test_sdk_pipeline_on_runlog_postgres(project: Project, postgres_config: dict[str, Any]) -> None:
    config = project.config("postgres.yaml", "runlog-postgres", store_config=postgres_config)
    finished = project.run_sdk(
        "pipeline", config, "fanout-pg", {"branches": BRANCHES}, _pool_env(project)
    )
    succeeded(finished)
    # The map really ran in the Pool: runnable says so only when the store allows it.
    assert "Parallel execution was requested but" not in finished.output
    run = load_store(config).get_run_log_by_id("fanout-pg", full=True)
    check_run(run, BRANCHES)
    check_verify(project, str(config), "fanout-pg", BRANCHES)
    # Nothing of the run landed on the local disk.
    assert not project.log_folder.exists()


# --- the server restarted or crashed under the pipeline --------------------------------------


@pytest.fixture(scope="module")
def fault_server() -> Iterator[PostgresServer]:
    """A cluster of this module's own: restarting it disturbs no other test."""
    with private_server() as server:
        yield server


def _branches_done(store: Any, run_id: str) -> int:
    try:
        run = store.get_run_log_by_id(run_id, full=True)
    except Exception:  # not created yet
        return 0
    train = run.steps.get("train")
    branches = train.branches.values() if train is not None else []
    return sum(branch.status == "SUCCESS" for branch in branches)


@pytest.mark.parametrize("fault", ["restart", "crash"])
def test_a_pipeline_carries_on_through_a_restart_or_a_crash_of_its_server(
    project: Project, fault_server: PostgresServer, fault: str
) -> None:
    """The server goes while the 8 workers write the map's branches: a fast shutdown and a
    start (every session ended), or a SIGKILL and a start half a second later (crash
    recovery). Their calls retry until it is back; the run ends SUCCESS with every branch,
    step, attempt and parameter, nothing twice."""
    settings = _server_config(fault_server, f"t_{fault}")
    config = project.config("postgres.yaml", "runlog-postgres", store_config=settings)
    reader = load_store(config)
    run_id = f"fault-{fault}"
    running = project.start(
        [sys.executable, "pipeline.py"],
        config,
        run_id,
        {"branches": BRANCHES},
        _pool_env(project),
    )
    try:
        wait_for(lambda: _branches_done(reader, run_id) >= 8, 120, "8 branches to end")
        assert _branches_done(reader, run_id) < BRANCHES  # the map is still being written
        if fault == "restart":
            fault_server.stop()
        else:
            fault_server.kill()
            time.sleep(0.5)
        fault_server.start()
        finished = running.wait()
    finally:
        running.kill()
    succeeded(finished)
    run = reader.get_run_log_by_id(run_id, full=True)
    check_run(run, BRANCHES)
    assert _branches_done(reader, run_id) == BRANCHES


# --- runnable retry of a failed run ----------------------------------------------------------

RETRY_BRANCHES = 8
FAILING = {2, 5}  # the items tests/runnable/pipelines/steps.py's flaky step fails once


def test_a_failed_run_is_retried_on_runlog_postgres(
    project: Project, postgres_config: dict[str, Any]
) -> None:
    """As tests/runnable/test_retry.py on the file stores: the steps that succeeded are
    skipped, the failed ones run again, the run ends SUCCESS."""
    config = project.config("retry.yaml", "runlog-postgres", store_config=postgres_config)
    (project.folder / "fail-once").touch()
    failed = project.run_sdk("flaky", config, "flaky-pg", {"branches": RETRY_BRANCHES})
    assert failed.returncode != 0, failed.tail()
    store = load_store(config)
    assert store.get_run_log_by_id("flaky-pg").status == "FAIL"

    (project.folder / "fail-once").unlink()
    succeeded(project.retry(config, "flaky-pg"))
    run = store.get_run_log_by_id("flaky-pg", full=True)
    assert run.status == "SUCCESS"
    assert [a.status for a in run.steps["prepare"].attempts] == ["SUCCESS"]  # skipped
    for i in range(RETRY_BRANCHES):
        branch = run.steps["train"].branches[f"train.{i}"]
        assert branch.status == "SUCCESS"
        attempts = {
            name.rsplit(".", 1)[1]: [a.status for a in step.attempts]
            for name, step in branch.steps.items()
        }
        expected_middle = ["FAIL", "SUCCESS"] if i in FAILING else ["SUCCESS"]
        assert attempts["first"] == ["SUCCESS"], f"branch {i} ran first again"
        assert attempts["middle"] == expected_middle, i
        assert attempts["last"] == ["SUCCESS"], i
    assert [a.status for a in run.steps["report"].attempts] == ["SUCCESS"]
