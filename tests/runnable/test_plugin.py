"""The integration as runnable 0.50 meets it: found by stevedore under our names, accepted by
runnable's context, runnable's models and exceptions at the boundary, pickled into Pool
workers, reconfigured by container executors; and one YAML file for runnable and ``runlog``."""

from __future__ import annotations

import multiprocessing
import pickle
from pathlib import Path
from typing import Any

import pytest
import runnable.datastore as runnable_models
import yaml
from pydantic import TypeAdapter
from runnable import context as runnable_context
from runnable import exceptions as runnable_errors
from runnable.catalog import BaseCatalog as RunnableBaseCatalog

from runlog_store import create_store, exceptions, load_catalog, load_store
from runlog_store.integrations import runnable as integration

from .harness import BIN, Project, succeeded

LOCAL_STORES = {
    "runlog-buffered": ("buffered", False),
    "runlog-file-system": ("file-system", True),
    "runlog-chunked-fs": ("chunked-fs", True),
}
OBJECT_STORES = {
    "runlog-minio": ("minio", True),
    "runlog-chunked-minio": ("chunked-minio", True),
}


def _service(namespace: str, type_name: str, config: dict[str, Any]) -> Any:
    """What runnable does with a YAML section: stevedore by name, then its context's check."""
    annotated = (
        runnable_context.InstantiatedRunLogStore
        if namespace == "run_log_store"
        else runnable_context.InstantiatedCatalog
    )
    return TypeAdapter(annotated).validate_python({"type": type_name, "config": config})


def _local_config(type_name: str, folder: Path) -> dict[str, Any]:
    return {} if type_name == "runlog-buffered" else {"log_folder": str(folder), "fsync": False}


@pytest.mark.parametrize("type_name", list(LOCAL_STORES))
def test_runnable_finds_and_accepts_our_local_stores(type_name: str, tmp_path: Path) -> None:
    store = _service("run_log_store", type_name, _local_config(type_name, tmp_path))
    service_name, parallel = LOCAL_STORES[type_name]
    assert isinstance(store, runnable_models.BaseRunLogStore)
    assert store.service_name == service_name
    assert store.supports_parallel_writes is parallel
    assert store.get_summary()["Type"] == service_name


@pytest.mark.parametrize("type_name", list(OBJECT_STORES))
def test_runnable_finds_and_accepts_our_object_stores(
    type_name: str, minio_config: dict[str, str]
) -> None:
    store = _service("run_log_store", type_name, dict(minio_config))
    assert isinstance(store, runnable_models.BaseRunLogStore)
    assert (store.service_name, store.supports_parallel_writes) == OBJECT_STORES[type_name]
    store.create_run_log("r1")
    assert store.get_run_log_by_id("r1").run_id == "r1"
    # The secret is kept as a secret: never in a summary or a dump of the context.
    secret = minio_config["aws_secret_access_key"]
    assert secret not in repr(store) + str(store.get_summary()) + str(store.model_dump())


def test_runnable_finds_our_catalogs(tmp_path: Path, minio_config: dict[str, str]) -> None:
    local = _service("catalog", "runlog-file-system", {"catalog_location": str(tmp_path)})
    remote = _service("catalog", "runlog-minio", dict(minio_config))
    for catalog, name in ((local, "file-system"), (remote, "minio")):
        assert isinstance(catalog, RunnableBaseCatalog)
        assert catalog.service_name == name
    assert local.compute_data_folder == "."
    assert local.catalog_location == str(tmp_path)


def test_runnables_own_stores_keep_their_names(tmp_path: Path) -> None:
    store = _service("run_log_store", "chunked-fs", {"log_folder": str(tmp_path)})
    assert type(store).__module__ == "extensions.run_log_store.chunked_fs"
    catalog = _service("catalog", "file-system", {})
    assert type(catalog).__module__ == "extensions.catalog.file_system"


def test_a_bad_config_is_refused_naming_the_key(
    tmp_path: Path, minio_config: dict[str, str]
) -> None:
    with pytest.raises(Exception, match="Could not find the service") as caught:
        _service("run_log_store", "runlog-chunked-fs", {"log_foldr": str(tmp_path)})
    reason = str(caught.value.__cause__)
    assert "'runlog-chunked-fs' config: unknown key 'log_foldr'" in reason
    assert "log_folder" in reason  # the keys allowed
    # Our part of the error never shows the configuration: it may hold credentials (runnable's
    # own wrapper message does print it).
    with pytest.raises(Exception, match="Could not find the service") as caught:
        _service("catalog", "runlog-minio", {**minio_config, "retries": "many"})
    reason = str(caught.value.__cause__)
    assert "retries" in reason
    assert minio_config["aws_secret_access_key"] not in reason


def test_runnables_models_and_exceptions_at_the_boundary(tmp_path: Path) -> None:
    store = _service("run_log_store", "runlog-chunked-fs", _local_config("", tmp_path))
    # The probe runnable makes before creating a run: its own exception type, our message.
    with pytest.raises(runnable_errors.RunLogNotFoundError) as missing:
        store.get_run_log_by_id(run_id="r", full=False)
    assert isinstance(missing.value, exceptions.RunLogNotFoundError)
    assert str(tmp_path) in str(missing.value)

    run = store.create_run_log(run_id="r", dag_hash="h", tag="t", status="PROCESSING")
    assert isinstance(run, runnable_models.RunLog)
    with pytest.raises(runnable_errors.RunLogExistsError):
        store.create_run_log("r")
    store.set_parameters(
        run_id="r",
        parameters={
            "j": runnable_models.JsonParameter(kind="json", value=[1, 2]),
            "m": runnable_models.MetricParameter(kind="metric", value=0.5),
            "o": runnable_models.ObjectParameter(kind="object", value="model"),
        },
    )
    parameters = store.get_parameters(run_id="r")
    assert isinstance(parameters["j"], runnable_models.JsonParameter)
    assert isinstance(parameters["m"], runnable_models.MetricParameter)
    assert isinstance(parameters["o"], runnable_models.ObjectParameter)
    assert parameters["j"].value == [1, 2]

    with pytest.raises(runnable_errors.StepLogNotFoundError):
        store.get_step_log("map", "r")
    step = store.create_step_log("map", "map")
    step.step_type = "map"
    store.add_step_log(step, "r")
    with pytest.raises(runnable_errors.BranchLogNotFoundError):
        store.get_branch_log("map.1", "r")
    branch = store.create_branch_log("map.1")
    branch.status = "SUCCESS"
    store.add_branch_log(branch, "r")
    work = store.create_step_log("work", "map.1.work")
    work.attempts.append(runnable_models.StepAttempt(status="SUCCESS"))
    work.status = "SUCCESS"
    store.add_step_log(work, "r")
    store.set_parameters("r", {"x": runnable_models.JsonParameter(kind="json", value=1)}, "map.1")
    assert isinstance(store.get_step_log("map.1.work", "r"), runnable_models.StepLog)
    assert isinstance(store.get_branch_log("map.1", "r"), runnable_models.BranchLog)
    assert isinstance(store.get_branch_log("", "r"), runnable_models.RunLog)
    assert store.get_parameters("r", internal_branch_name="map.1")["x"].value == 1

    full = store.get_run_log_by_id("r", full=True)
    assert isinstance(full, runnable_models.RunLog)
    found, _ = full.search_step_by_internal_name("map.1.work")
    assert found.status == "SUCCESS"

    # The run log itself is stored as the run (runnable's success node does this).
    top = store.get_branch_log("", "r")
    top.status = "SUCCESS"
    store.add_branch_log(top, "r")
    assert store.get_run_log_by_id("r").status == "SUCCESS"
    with pytest.raises(runnable_errors.JobLogNotFoundError):
        store.get_job_log("r")


def test_every_store_method_runnable_has_is_ours() -> None:
    """No call falls through to runnable's own read-modify-write of the whole run (not safe
    across processes); only its factories of empty models are inherited."""
    factories = {"create_step_log", "create_branch_log", "create_code_identity"}
    factories |= {"create_data_catalog", "create_job_log"}
    theirs = {
        name
        for name, value in vars(runnable_models.BaseRunLogStore).items()
        if callable(value) and not name.startswith("_")
    }
    assert theirs - factories <= set(vars(integration.RunlogRunLogStore))
    catalog = {"get", "put", "sync_between_runs", "get_summary"}
    assert catalog <= set(vars(integration.RunlogCatalog))


def _write_in_child(store: Any, run_id: str) -> None:
    store.create_run_log(run_id)
    store.update_run_log_status(run_id, "SUCCESS")


def test_pickled_into_a_pool_worker_without_what_it_opened(
    tmp_path: Path, minio_config: dict[str, str]
) -> None:
    """As runnable's Pool does: the store goes to the worker as a pickle."""
    local = _service("run_log_store", "runlog-chunked-fs", _local_config("", tmp_path))
    remote = _service("run_log_store", "runlog-chunked-minio", dict(minio_config))
    for store in (local, remote):
        store.create_run_log("parent")  # opens what the store needs in this process
        assert store.runlog_store is not None
        state = pickle.loads(pickle.dumps(store))
        assert state._backend is None
        assert state.model_dump() == store.model_dump()
        with multiprocessing.get_context("fork").Pool(1) as pool:
            pool.apply(_write_in_child, (store, "child"))
        assert store.get_run_log_by_id("child").status == "SUCCESS"


def _step_in_a_branch(store: Any, run_id: str, branch: str) -> None:
    """A branch task as runnable's Pool runs one (the store arrives pickled with the task)."""
    store.add_step_log(store.create_step_log("step", f"{branch}.step"), run_id)


def test_a_pool_workers_error_reaches_the_pipeline(tmp_path: Path) -> None:
    """An error in a Pool worker goes back to the pipeline's process as a pickle: the same
    error, both runnable's type and ours, with where the store looked; never a Pool waiting
    for ever on a result it cannot read."""
    store = _service("run_log_store", "runlog-chunked-fs", _local_config("", tmp_path))
    store.create_run_log("mapped")
    with multiprocessing.get_context("fork").Pool(1) as pool:
        pending = pool.apply_async(_step_in_a_branch, (store, "mapped", "map.0"))
        with pytest.raises(runnable_errors.BranchLogNotFoundError) as raised:
            pending.get(timeout=60)
    assert isinstance(raised.value, exceptions.BranchLogNotFoundError)
    assert raised.value.run_id == "mapped" and raised.value.branch_name == "map.0"
    assert "map.0" in str(raised.value) and str(tmp_path) in raised.value.path


def test_container_executors_repoint_the_folders(tmp_path: Path) -> None:
    """runnable's local-container, k8s and argo executors match service_name and assign
    log_folder and catalog_location to the mounted paths."""
    store = _service("run_log_store", "runlog-chunked-fs", _local_config("", tmp_path / "a"))
    catalog = _service("catalog", "runlog-file-system", {"catalog_location": str(tmp_path / "c")})
    store.create_run_log("before")
    assert store.service_name == "chunked-fs" and catalog.service_name == "file-system"
    store.log_folder = str(tmp_path / "b")
    catalog.catalog_location = str(tmp_path / "d")
    store.create_run_log("after")
    assert (tmp_path / "a" / "before" / "RunLog.json").is_file()
    assert (tmp_path / "b" / "after" / "RunLog.json").is_file()
    assert catalog.runlog_catalog.get_summary()["Location"] == str(tmp_path / "d")


def test_one_yaml_for_runnable_and_runlog(project: Project) -> None:
    """A runnable configuration with our names is read by load_store, load_catalog and the
    runlog command, and a pipeline on runlog-buffered runs its branches one by one."""
    config = project.config("one.yaml", "runlog-chunked-fs")
    assert load_store(config).service_name == "chunked-fs"
    assert load_catalog(config).service_name == "file-system"
    assert create_store("runlog-file-system", log_folder=str(project.log_folder)).service_name
    document = yaml.safe_load(config.read_text())
    assert document["run-log-store"]["type"] == "runlog-chunked-fs"

    succeeded(project.run_sdk("flaky", config, "one", {"branches": 4}))
    listed = project.runlog("list", "--config", str(config))
    assert listed.returncode == 0, listed.stderr
    assert "one" in listed.stdout and "SUCCESS" in listed.stdout
    shown = project.runlog("show", "one", "--config", str(config))
    assert shown.returncode == 0 and "train.3" in shown.stdout, shown.stderr

    buffered = project.config("buffered.yaml", "runlog-buffered", store_config={})
    finished = project.run_sdk("flaky", buffered, "in-memory", {"branches": 4})
    succeeded(finished)
    assert "does not support parallel writes" in finished.output
    assert (BIN / "runlog").exists()
