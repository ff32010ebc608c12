"""runlog-store's stores and catalogs in runnable 0.50's own plugin groups.

runnable builds its services with stevedore (``DriverManager(namespace="run_log_store",
name=<type>, invoke_on_load=True, invoke_kwds=<config>)``, and namespace ``catalog``) and checks
the result is an instance of ``runnable.datastore.BaseRunLogStore`` (``runnable.catalog.
BaseCatalog``). The classes here are such subclasses, registered under names of our own so
runnable's own stores keep theirs (a name with two targets breaks stevedore for everyone)::

    run_log_store: runlog-buffered, runlog-file-system, runlog-chunked-fs, runlog-minio,
                   runlog-chunked-minio
    catalog:       runlog-file-system, runlog-minio, runlog-content-fs, runlog-content-minio

A runnable user changes one word of the YAML (``type: chunked-fs`` -> ``type:
runlog-chunked-fs``); the config keys are those of the runlog-store type behind the name, and
``runlog --config`` reads the same file.

What runnable 0.50 needs from them, read in its source (context.py, datastore.py, catalog.py,
extensions/pipeline_executor, extensions/nodes, tasks.py) and checked with a tracing store:

- runnable's own model classes in and out (it checks parameters with ``isinstance`` and
  mutates what it gets), and runnable's exceptions: ``RunLogNotFoundError`` from the probe
  ``get_run_log_by_id(run_id, full=False)`` before a run exists, ``StepLogNotFoundError`` from
  ``get_step_log`` (a step that has not run yet), ``BranchLogNotFoundError`` from
  ``get_branch_log`` (a map or parallel fanning out). The exceptions raised here are both
  runnable's and runlog-store's, with runlog-store's message (it says where it looked).
- Method and argument names as runnable's: it calls them positionally and by keyword.
- ``supports_parallel_writes``: the local executor with ``enable_parallel: true`` runs map and
  parallel branches in a ``multiprocessing.Pool`` only when the store says so. It is true for
  every store that is safe across processes (file-system included: every write is a locked
  read-modify-write), false for ``runlog-buffered``, whose memory a worker cannot share.
- The store and the catalog are pickled into the Pool's workers with the whole run context,
  not rebuilt from the YAML. Only the configuration travels: the runlog-store object behind it
  (locks, MinIO clients, caches) is built at first use in each process and left out of the
  pickle.
- ``service_name`` is runnable's (``file-system``, ``chunked-fs``), and ``log_folder`` /
  ``catalog_location`` stay assignable: runnable's local-container, k8s and argo executors
  match those literal names to mount the folders into containers, then point the service at
  the mount. Assigning a setting rebuilds the runlog-store object behind it. Like runnable's
  own stores, a store takes ``service_name`` as a constructor argument (runnable's tests build
  theirs so): it names the service in summaries and configures nothing behind it.
- Float NaN and infinities cross the boundary as floats both ways (runnable's models would
  dump them as ``null``; conversions from them go through Python objects, not their JSON).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, PrivateAttr, TypeAdapter, model_validator
from runnable import (  # type: ignore[import-untyped]  # runnable ships no type hints
    context as runnable_context,
)
from runnable import datastore as runnable_models
from runnable import exceptions as runnable_errors
from runnable.catalog import BaseCatalog as RunnableBaseCatalog  # type: ignore[import-untyped]

import runlog_store
from runlog_store import exceptions as errors
from runlog_store import models

# Settings that say what a service is, not how it is configured: runnable's base classes
# declare them, and runlog-store refuses them in a config.
_FIXED_SETTINGS = frozenset({"service_name", "service_type", "supports_parallel_writes"})
# Of those, what a runnable store takes as a constructor argument all the same, as runnable's
# own do: names, kept on the service, never passed to the store behind it.
_NAMING_SETTINGS = frozenset({"service_name", "service_type"})

_Model = TypeVar("_Model", bound=BaseModel)

# NaN and infinities as the bare JSON tokens runnable's json.dump writes, not as null: pydantic
# takes this setting from the outermost type it dumps.
_NON_FINITE = ConfigDict(ser_json_inf_nan="constants")
_RUNNABLE_PARAMETERS: TypeAdapter[dict[str, Any]] = TypeAdapter(
    dict[str, runnable_models.Parameter], config=_NON_FINITE
)
_OUR_PARAMETERS: TypeAdapter[dict[str, models.Parameter]] = TypeAdapter(
    dict[str, models.Parameter], config=_NON_FINITE
)


# --- errors: runnable's types with runlog-store's messages ------------------------------------


class RunLogNotFoundError(runnable_errors.RunLogNotFoundError, errors.RunLogNotFoundError):  # type: ignore[misc]
    """runnable's ``RunLogNotFoundError`` and runlog-store's, saying where the store looked."""

    def __init__(self, error: errors.RunLogNotFoundError) -> None:
        errors.RunLogNotFoundError.__init__(self, error.run_id, path=error.path)


class RunLogExistsError(runnable_errors.RunLogExistsError, errors.RunLogExistsError):  # type: ignore[misc]
    def __init__(self, error: errors.RunLogExistsError) -> None:
        errors.RunLogExistsError.__init__(self, error.run_id, path=error.path)


class StepLogNotFoundError(runnable_errors.StepLogNotFoundError, errors.StepLogNotFoundError):  # type: ignore[misc]
    def __init__(self, error: errors.StepLogNotFoundError) -> None:
        errors.StepLogNotFoundError.__init__(self, error.run_id, error.step_name, path=error.path)


class BranchLogNotFoundError(
    runnable_errors.BranchLogNotFoundError,  # type: ignore[misc]
    errors.BranchLogNotFoundError,
):
    def __init__(self, error: errors.BranchLogNotFoundError) -> None:
        errors.BranchLogNotFoundError.__init__(
            self, error.run_id, error.branch_name, path=error.path
        )


class JobLogNotFoundError(runnable_errors.JobLogNotFoundError, errors.JobLogNotFoundError):  # type: ignore[misc]
    def __init__(self, error: errors.JobLogNotFoundError) -> None:
        errors.JobLogNotFoundError.__init__(self, error.run_id, path=error.path)


@contextlib.contextmanager
def _as_runnable_errors() -> Iterator[None]:
    """Raise runlog-store's "not found" and "exists" errors as runnable's own types."""
    try:
        yield
    except (
        RunLogNotFoundError,
        RunLogExistsError,
        StepLogNotFoundError,
        BranchLogNotFoundError,
        JobLogNotFoundError,
    ):
        raise
    except errors.RunLogNotFoundError as exc:
        raise RunLogNotFoundError(exc) from exc
    except errors.RunLogExistsError as exc:
        raise RunLogExistsError(exc) from exc
    except errors.StepLogNotFoundError as exc:
        raise StepLogNotFoundError(exc) from exc
    except errors.BranchLogNotFoundError as exc:
        raise BranchLogNotFoundError(exc) from exc
    except errors.JobLogNotFoundError as exc:
        raise JobLogNotFoundError(exc) from exc


# --- models across the boundary --------------------------------------------------------------


def _convert(model: type[_Model], obj: BaseModel) -> _Model:
    """``obj`` as an instance of ``model`` (runnable's or ours): ours through their JSON (which
    keeps NaN and infinities), runnable's through Python objects (their JSON would turn those
    into null)."""
    if isinstance(obj, model):
        return obj
    if isinstance(obj, models.RunLog | models.StepLog | models.BranchLog | models.JobLog):
        return model.model_validate_json(obj.model_dump_json())
    return model.model_validate(obj.model_dump())


def _runnable_parameters(parameters: Mapping[str, models.Parameter]) -> dict[str, Any]:
    return _RUNNABLE_PARAMETERS.validate_json(_OUR_PARAMETERS.dump_json(dict(parameters)))


def _our_parameters(parameters: Mapping[str, Any]) -> dict[str, models.Parameter]:
    return _OUR_PARAMETERS.validate_json(_RUNNABLE_PARAMETERS.dump_json(dict(parameters)))


def _settings(service: BaseModel) -> dict[str, Any]:
    """A validated runlog-store service's configuration, by field name (aliases resolved)."""
    return {
        name: getattr(service, name)
        for name in type(service).model_fields
        if name not in _FIXED_SETTINGS
    }


def _without_backend(state: dict[Any, Any]) -> dict[Any, Any]:
    """A pickled service's state without the runlog-store object behind it: a Pool worker
    builds its own from the configuration at first use (nothing opened in one process, a lock,
    a client or a cache, is used in another)."""
    private = state.get("__pydantic_private__") or {}
    return {**state, "__pydantic_private__": {**private, "_backend": None}}


def _current_run_id() -> str:
    current = runnable_context.get_run_context()
    run_id = getattr(current, "run_id", None)
    if not isinstance(run_id, str) or not run_id:
        raise errors.CatalogError("the runlog-store catalog was called outside a runnable run")
    return run_id


# --- run log stores ---------------------------------------------------------------------------


class RunlogRunLogStore(runnable_models.BaseRunLogStore):  # type: ignore[misc]
    """A runnable run log store backed by the runlog-store store of type ``type_name``.

    Its configuration is validated by that type (same keys, same errors) and kept as this
    model's extra fields, readable and assignable by name (``store.log_folder``).
    """

    # A refused configuration is reported by runlog-store, naming the key; pydantic must not
    # add the input to the message (it may hold credentials).
    model_config = ConfigDict(extra="allow", hide_input_in_errors=True)

    # The YAML type name, in runnable's plugin group; runlog-store's registry reads it as an
    # alias of its own type (``runlog-chunked-fs`` is ``chunked-fs``), so errors name it.
    type_name: ClassVar[str] = ""

    _backend: runlog_store.BaseRunLogStore | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _validated_by_runlog_store(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        names = {key: data[key] for key in _NAMING_SETTINGS if key in data}
        config = {key: value for key, value in data.items() if key not in _NAMING_SETTINGS}
        return {**_settings(runlog_store.create_store(cls.type_name, **config)), **names}

    @property
    def runlog_store(self) -> runlog_store.BaseRunLogStore:
        """The runlog-store store behind this one (built at first use in each process)."""
        if self._backend is None:
            config = dict(self.__pydantic_extra__ or {})
            self._backend = runlog_store.create_store(self.type_name, **config)
        return self._backend

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if not name.startswith("_"):
            self._backend = None  # rebuilt from the new settings at the next call

    def __getstate__(self) -> dict[Any, Any]:
        return _without_backend(super().__getstate__())

    def get_summary(self) -> dict[str, Any]:
        return {**self.runlog_store.get_summary(), "Type": self.service_name}

    def create_run_log(
        self,
        run_id: str,
        dag_hash: str = "",
        use_cached: bool = False,
        tag: str = "",
        original_run_id: str = "",
        status: str = models.CREATED,
    ) -> Any:
        with _as_runnable_errors():
            created = self.runlog_store.create_run_log(
                run_id, dag_hash, use_cached, tag, original_run_id, status
            )
        return _convert(runnable_models.RunLog, created)

    def get_run_log_by_id(self, run_id: str, full: bool = False) -> Any:
        with _as_runnable_errors():
            if full:
                return runnable_models.RunLog.model_validate_json(
                    self.runlog_store.get_run_log_json(run_id)
                )
            return _convert(runnable_models.RunLog, self.runlog_store.get_run_log_by_id(run_id))

    def put_run_log(self, run_log: Any) -> None:
        with _as_runnable_errors():
            self.runlog_store.put_run_log(_convert(models.RunLog, run_log))

    def update_run_log_status(self, run_id: str, status: str) -> None:
        with _as_runnable_errors():
            self.runlog_store.update_run_log_status(run_id, status)

    def get_parameters(self, run_id: str, internal_branch_name: str = "") -> dict[str, Any]:
        with _as_runnable_errors():
            found = self.runlog_store.get_parameters(run_id, internal_branch_name)
        return _runnable_parameters(found)

    def set_parameters(
        self, run_id: str, parameters: Mapping[str, Any], internal_branch_name: str = ""
    ) -> None:
        with _as_runnable_errors():
            self.runlog_store.set_parameters(
                run_id, _our_parameters(parameters), internal_branch_name
            )

    def get_run_config(self, run_id: str) -> dict[str, Any]:
        with _as_runnable_errors():
            return self.runlog_store.get_run_config(run_id)

    def set_run_config(self, run_id: str, run_config: dict[str, Any]) -> None:
        with _as_runnable_errors():
            self.runlog_store.set_run_config(run_id, run_config)

    def get_step_log(self, internal_name: str, run_id: str) -> Any:
        with _as_runnable_errors():
            found = self.runlog_store.get_step_log(internal_name, run_id)
        return _convert(runnable_models.StepLog, found)

    def add_step_log(self, step_log: Any, run_id: str) -> None:
        with _as_runnable_errors():
            self.runlog_store.add_step_log(_convert(models.StepLog, step_log), run_id)

    def get_branch_log(self, internal_branch_name: str, run_id: str) -> Any:
        """The branch, or the run log itself for ``""`` (runnable's convention)."""
        with _as_runnable_errors():
            found = self.runlog_store.get_branch_log(internal_branch_name, run_id)
        if isinstance(found, models.RunLog):
            return _convert(runnable_models.RunLog, found)
        return _convert(runnable_models.BranchLog, found)

    def add_branch_log(self, branch_log: Any, run_id: str) -> None:
        """Store a branch; a run log is stored as the run (runnable's convention)."""
        ours: models.BranchLog | models.RunLog = (
            _convert(models.RunLog, branch_log)
            if isinstance(branch_log, runnable_models.RunLog | models.RunLog)
            else _convert(models.BranchLog, branch_log)
        )
        with _as_runnable_errors():
            self.runlog_store.add_branch_log(ours, run_id)

    def get_job_log(self, run_id: str) -> Any:
        with _as_runnable_errors():
            return _convert(runnable_models.JobLog, self.runlog_store.get_job_log(run_id))

    def add_job_log(self, run_id: str, job_log: Any) -> None:
        with _as_runnable_errors():
            self.runlog_store.add_job_log(run_id, _convert(models.JobLog, job_log))


class BufferedRunLogStore(RunlogRunLogStore):
    """``runlog-buffered``: in memory. A Pool worker cannot write into its parent's memory, so
    it tells runnable to run branches one after another."""

    type_name: ClassVar[str] = "runlog-buffered"
    service_name: str = "buffered"
    supports_parallel_writes: bool = False


class FileSystemRunLogStore(RunlogRunLogStore):
    """``runlog-file-system``: ``<log_folder>/<run_id>.json``, every write a locked atomic
    read-modify-write, so branches may run in parallel."""

    type_name: ClassVar[str] = "runlog-file-system"
    service_name: str = "file-system"
    supports_parallel_writes: bool = True


class ChunkedFileSystemRunLogStore(RunlogRunLogStore):
    """``runlog-chunked-fs``: ``<log_folder>/<run_id>/``, one chunk per step and branch."""

    type_name: ClassVar[str] = "runlog-chunked-fs"
    service_name: str = "chunked-fs"
    supports_parallel_writes: bool = True


class MinioRunLogStore(RunlogRunLogStore):
    """``runlog-minio``: one object per run, every write a conditional read-modify-write."""

    type_name: ClassVar[str] = "runlog-minio"
    service_name: str = "minio"
    supports_parallel_writes: bool = True


class ChunkedMinioRunLogStore(RunlogRunLogStore):
    """``runlog-chunked-minio``: the chunked layout as objects, for runs spread over machines."""

    type_name: ClassVar[str] = "runlog-chunked-minio"
    service_name: str = "chunked-minio"
    supports_parallel_writes: bool = True


class PostgresRunLogStore(RunlogRunLogStore):
    """``runlog-postgres``: runs as rows of a PostgreSQL database, for writers anywhere."""

    type_name: ClassVar[str] = "runlog-postgres"
    service_name: str = "postgres"
    supports_parallel_writes: bool = True


# --- catalogs ---------------------------------------------------------------------------------


class RunlogCatalog(RunnableBaseCatalog):  # type: ignore[misc]
    """A runnable catalog backed by the runlog-store catalog of type ``type_name``.

    Files are copied and hashed by the Rust core, in parallel; ``hash_algorithm: sha256``
    records runnable's digests for files under 1 GiB (see the README, "Use it from runnable").
    The run id is the runnable run's.
    """

    model_config = ConfigDict(extra="allow", hide_input_in_errors=True)

    type_name: ClassVar[str] = ""

    _backend: runlog_store.BaseCatalog | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _validated_by_runlog_store(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return _settings(runlog_store.create_catalog(cls.type_name, **data))

    @property
    def runlog_catalog(self) -> runlog_store.BaseCatalog:
        """The runlog-store catalog behind this one (built at first use in each process)."""
        if self._backend is None:
            config = {"compute_data_folder": self.compute_data_folder}
            config.update(self.__pydantic_extra__ or {})
            self._backend = runlog_store.create_catalog(self.type_name, **config)
        return self._backend

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if not name.startswith("_"):
            self._backend = None

    def __getstate__(self) -> dict[Any, Any]:
        return _without_backend(super().__getstate__())

    def get_summary(self) -> dict[str, Any]:
        return self.runlog_catalog.get_summary()

    def get(self, name: str) -> list[Any]:
        entries = self.runlog_catalog.get(name, run_id=_current_run_id())
        return [_convert(runnable_models.DataCatalog, entry) for entry in entries]

    def put(
        self, name: str, allow_file_not_found_exc: bool = False, store_copy: bool = True
    ) -> list[Any]:
        entries = self.runlog_catalog.put(
            name, allow_file_not_found_exc, store_copy, run_id=_current_run_id()
        )
        return [_convert(runnable_models.DataCatalog, entry) for entry in entries]

    def sync_between_runs(self, previous_run_id: str, run_id: str) -> None:
        self.runlog_catalog.sync_between_runs(previous_run_id, run_id)


class FileSystemCatalog(RunlogCatalog):
    """``runlog-file-system``: copies under ``<catalog_location>/<run_id>/``, runnable's layout."""

    type_name: ClassVar[str] = "runlog-file-system"
    service_name: str = "file-system"


class MinioCatalog(RunlogCatalog):
    """``runlog-minio``: ``<bucket>/<prefix>/<run_id>/...``, hashed as the bytes stream."""

    type_name: ClassVar[str] = "runlog-minio"
    service_name: str = "minio"


class ContentFileSystemCatalog(RunlogCatalog):
    """``runlog-content-fs``: every content once under ``<catalog_location>/objects/``, a
    manifest per run; a get links contents into place (``link:``)."""

    type_name: ClassVar[str] = "runlog-content-fs"
    service_name: str = "content-fs"


class ContentMinioCatalog(RunlogCatalog):
    """``runlog-content-minio``: every content once under ``<bucket>/<prefix>/objects/``, a
    manifest per run; only missing contents are uploaded."""

    type_name: ClassVar[str] = "runlog-content-minio"
    service_name: str = "content-minio"


__all__ = [
    "BranchLogNotFoundError",
    "BufferedRunLogStore",
    "ChunkedFileSystemRunLogStore",
    "ChunkedMinioRunLogStore",
    "ContentFileSystemCatalog",
    "ContentMinioCatalog",
    "FileSystemCatalog",
    "FileSystemRunLogStore",
    "JobLogNotFoundError",
    "MinioCatalog",
    "MinioRunLogStore",
    "PostgresRunLogStore",
    "RunLogExistsError",
    "RunLogNotFoundError",
    "RunlogCatalog",
    "RunlogRunLogStore",
    "StepLogNotFoundError",
]
