"""runnable 0.50 itself on ``runlog-postgres``: the store found under its runnable name, and the
example pipeline (a map run in runnable's multiprocessing Pool, a parallel step, the fan-in that
fails the run unless it saw every branch) writing to a real PostgreSQL server, read back with
runlog-store and checked with ``runlog verify``."""

from __future__ import annotations

from typing import Any

import runnable.datastore as runnable_models
from pydantic import TypeAdapter
from runnable import context as runnable_context

from runlog_store import load_store
from runlog_store.stores.postgres import PostgresRunLogStore

from .harness import Project, succeeded
from .test_pipelines import check_run, check_verify

# Fewer branches than the file stores' run: the same code paths, a third of the time.
BRANCHES = 16


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
    finished = project.run_sdk("pipeline", config, "fanout-pg", {"branches": BRANCHES})
    succeeded(finished)
    # The map really ran in the Pool: runnable says so only when the store allows it.
    assert "Parallel execution was requested but" not in finished.output
    run = load_store(config).get_run_log_by_id("fanout-pg", full=True)
    check_run(run, BRANCHES)
    check_verify(project, str(config), "fanout-pg", BRANCHES)
    # Nothing of the run landed on the local disk.
    assert not project.log_folder.exists()
