"""``chunked-fs``: one folder per run, one file per step and per branch (docs/format.md).

Writing a step is one atomic file write at a name computed from the step's internal name: no
listing, no lock, no rewrite of anything else, so its cost does not grow with the run and
thousands of branches written by many processes never wait on each other. Run-level and
branch-level fields (status, parameters, run config, job) are read-modify-writes of one small
document under the run's inter-process lock, so no update is lost. A full read lists the folder
once and merges every chunk in Rust.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

import pydantic_core
from pydantic import BaseModel, Field, ValidationError

from runlog_store import _core
from runlog_store._paths import ensure_folder, validate_internal_name, validate_run_id
from runlog_store.exceptions import (
    BranchLogNotFoundError,
    ChunkExistsError,
    ChunkNotFoundError,
    CorruptChunkError,
    RunLogExistsError,
    RunLogNotFoundError,
    StepLogNotFoundError,
    StorageError,
)
from runlog_store.models import (
    CREATED,
    BranchLog,
    JobLog,
    JsonParameter,
    MetricParameter,
    ObjectParameter,
    Parameter,
    RunLog,
    StepLog,
)
from runlog_store.store import BaseRunLogStore, SalvagedRunLog, validate_run_log

RUN_LOG_FILE = "RunLog.json"
LOCK_FILE = ".lock"
# Written when runlog-store creates a run: its steps and branches all live in chunks at their
# computed names, so a missing chunk means a missing step (no need to search older layouts).
LAYOUT_MARKER = ".layout"
LAYOUT_MARKER_TEXT = b"runlog-store chunked-fs 1\n"

_NS_PREFIX = b'{"_created_ns":'
ChunkKind = Literal["StepLog", "BranchLog"]
_ChunkModel = TypeVar("_ChunkModel", StepLog, BranchLog)


def with_created_ns(created_ns: int, document: bytes) -> bytes:
    """Put ``_created_ns`` first in a JSON object (the chunk header of docs/format.md)."""
    return b'{"_created_ns":%d,%s' % (created_ns, document[1:])


def split_created_ns(chunk: bytes) -> tuple[int | None, bytes]:
    """Take the ``_created_ns`` header off a chunk; chunks of older layouts have none."""
    if not chunk.startswith(_NS_PREFIX):
        return None, chunk
    end = chunk.find(b",", len(_NS_PREFIX))
    if end < 0:
        raise ValueError("chunk header has no end")
    return int(chunk[len(_NS_PREFIX) : end]), b"{" + chunk[end + 1 :]


class _Parameters(BaseModel):
    parameters: dict[str, Parameter]


class ChunkedFileSystemRunLogStore(BaseRunLogStore):
    """Run logs in chunks under ``<log_folder>/<run_id>/``; safe for parallel writers."""

    service_name: str = "chunked-fs"
    supports_parallel_writes: bool = True

    log_folder: str = Field(default=".run_log_store", min_length=1)
    fsync: bool = True
    lock_timeout: float = Field(default=60.0, gt=0)

    def get_summary(self) -> dict[str, Any]:
        return {"Type": self.service_name, "Location": self.log_folder}

    # --- paths ---------------------------------------------------------------------------------

    def run_folder(self, run_id: str) -> str:
        return os.path.join(self.log_folder, validate_run_id(run_id))

    def _run_log_path(self, run_id: str) -> str:
        return os.path.join(self.run_folder(run_id), RUN_LOG_FILE)

    def _lock_path(self, run_id: str) -> str:
        return os.path.join(self.run_folder(run_id), LOCK_FILE)

    def _chunk_path(self, run_id: str, kind: ChunkKind, internal_name: str) -> str:
        validate_internal_name(internal_name, run_id=run_id)
        return os.path.join(self.run_folder(run_id), _core.chunk_file_name(kind, internal_name))

    def _raise_if_run_missing(self, run_id: str, exc: Exception) -> None:
        """Turn a failure on a chunk of a run that does not exist into RunLogNotFoundError."""
        path = self._run_log_path(run_id)
        if not os.path.exists(path):
            raise RunLogNotFoundError(run_id, path=path) from exc

    def _is_own_layout(self, run_id: str) -> bool:
        return os.path.exists(os.path.join(self.run_folder(run_id), LAYOUT_MARKER))

    # --- low-level chunk I/O -------------------------------------------------------------------

    def _write_chunk(self, run_id: str, path: str, data: bytes) -> None:
        try:
            _core.write_atomic(path, data, fsync=self.fsync, run_id=run_id)
        except StorageError as exc:
            if exc.errno == errno.ENOENT:
                self._raise_if_run_missing(run_id, exc)
            raise

    def _patch(
        self,
        run_id: str,
        path: str,
        patch: bytes,
        *,
        merge_keys: tuple[str, ...] = (),
        create: bytes | None = None,
    ) -> bytes:
        try:
            return _core.patch_json(
                path,
                patch,
                lock_path=self._lock_path(run_id),
                merge_keys=merge_keys,
                create=create,
                fsync=self.fsync,
                lock_timeout=self.lock_timeout,
                run_id=run_id,
            )
        except (StorageError, ChunkNotFoundError) as exc:
            if isinstance(exc, ChunkNotFoundError) or exc.errno == errno.ENOENT:
                self._raise_if_run_missing(run_id, exc)
            raise

    def _patch_run_log(self, run_id: str, patch: bytes, merge_keys: tuple[str, ...] = ()) -> None:
        path = self._run_log_path(run_id)
        try:
            self._patch(run_id, path, patch, merge_keys=merge_keys)
        except ChunkNotFoundError:
            raise RunLogNotFoundError(run_id, path=path) from None

    def _read_model(self, model: type[_ChunkModel], path: str, run_id: str) -> _ChunkModel | None:
        data = _core.read_file(path, run_id=run_id)
        if data is None:
            return None
        try:
            created_ns, body = split_created_ns(data)
            obj = model.model_validate_json(body)
        except (ValueError, ValidationError) as exc:
            raise CorruptChunkError(
                f"{path} is not a valid {model.__name__} chunk: {exc}", path=path, run_id=run_id
            ) from exc
        obj._created_ns = created_ns
        return obj

    def _read_run_meta(self, run_id: str) -> RunLog:
        path = self._run_log_path(run_id)
        data = _core.read_file(path, run_id=run_id)
        if data is None:
            raise RunLogNotFoundError(run_id, path=path)
        return validate_run_log(data, path, run_id)

    # --- runs ----------------------------------------------------------------------------------

    def create_run_log(
        self,
        run_id: str,
        dag_hash: str = "",
        use_cached: bool = False,
        tag: str = "",
        original_run_id: str = "",
        status: str = CREATED,
    ) -> RunLog:
        folder = self.run_folder(run_id)
        ensure_folder(folder)
        _core.clean_temp_files(folder)
        run_log = RunLog(run_id=run_id, dag_hash=dag_hash, tag=tag, status=status)
        # Retry lineage is kept when given; runnable 0.50 no longer records it.
        if use_cached:
            run_log.use_cached = True  # type: ignore[attr-defined]  # an extra field
        if original_run_id:
            run_log.original_run_id = original_run_id  # type: ignore[attr-defined]
        try:
            _core.write_atomic(
                os.path.join(folder, RUN_LOG_FILE),
                run_log.model_dump_json().encode(),
                fsync=self.fsync,
                exclusive=True,
                run_id=run_id,
            )
        except ChunkExistsError:
            raise RunLogExistsError(run_id, path=self._run_log_path(run_id)) from None
        _core.write_atomic(
            os.path.join(folder, LAYOUT_MARKER), LAYOUT_MARKER_TEXT, fsync=self.fsync, run_id=run_id
        )
        return run_log

    def get_run_log_by_id(self, run_id: str, full: bool = False) -> RunLog:
        """The run log; ``full`` merges every chunk (Rust), otherwise only ``RunLog.json``."""
        if not full:
            return self._read_run_meta(run_id)
        data = self.get_run_log_json(run_id)
        return validate_run_log(data, self.run_folder(run_id), run_id)

    def get_run_log_json(self, run_id: str) -> bytes:
        folder = self.run_folder(run_id)
        try:
            data, _ = _core.merge_run(folder, run_id=run_id)
        except ChunkNotFoundError:
            raise RunLogNotFoundError(run_id, path=os.path.join(folder, RUN_LOG_FILE)) from None
        return data

    def salvage_run_log(self, run_id: str) -> SalvagedRunLog:
        """Read a damaged run without its corrupt chunks, and say which were left out."""
        folder = self.run_folder(run_id)
        try:
            data, skipped = _core.merge_run(folder, salvage=True, run_id=run_id)
        except ChunkNotFoundError:
            raise RunLogNotFoundError(run_id, path=os.path.join(folder, RUN_LOG_FILE)) from None
        return SalvagedRunLog(run_log=validate_run_log(data, folder, run_id), skipped=skipped)

    def put_run_log(self, run_log: RunLog) -> None:
        """Store the run-level fields, and every step and branch the run log carries."""
        run_log = _own(RunLog, run_log)
        run_id = run_log.run_id
        ensure_folder(self.run_folder(run_id))
        metadata = run_log.model_dump_json(exclude={"steps"}).encode()
        created = run_log.model_copy(update={"steps": {}}).model_dump_json().encode()
        self._patch(run_id, self._run_log_path(run_id), metadata, create=created)
        for step in run_log.steps.values():
            self._store_step(step, run_id)

    def update_run_log_status(self, run_id: str, status: str) -> None:
        self._patch_run_log(run_id, pydantic_core.to_json({"status": status}))

    def get_run_config(self, run_id: str) -> dict[str, Any]:
        return self._read_run_meta(run_id).run_config

    def set_run_config(self, run_id: str, run_config: dict[str, Any]) -> None:
        patch = pydantic_core.to_json({"run_config": run_config}, fallback=str)
        self._patch_run_log(run_id, patch, ("run_config",))

    def list_run_ids(self) -> list[str]:
        try:
            entries = list(os.scandir(self.log_folder))
        except FileNotFoundError:
            return []
        runs: list[tuple[int, str]] = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                mtime = os.stat(os.path.join(entry.path, RUN_LOG_FILE)).st_mtime_ns
            except (FileNotFoundError, NotADirectoryError):
                continue
            runs.append((mtime, entry.name))
        return [run_id for _, run_id in sorted(runs, reverse=True)]

    def delete_run(self, run_id: str) -> None:
        """Remove a run's folder with every chunk in it."""
        folder = self.run_folder(run_id)
        if not os.path.exists(os.path.join(folder, RUN_LOG_FILE)):
            raise RunLogNotFoundError(run_id, path=folder)
        shutil.rmtree(folder)

    # --- parameters ----------------------------------------------------------------------------

    def get_parameters(self, run_id: str, internal_branch_name: str = "") -> dict[str, Parameter]:
        if not internal_branch_name:
            return self._read_run_meta(run_id).parameters
        branch = self.get_branch_log(internal_branch_name, run_id)
        return branch.parameters

    def set_parameters(
        self,
        run_id: str,
        parameters: Mapping[str, Parameter],
        internal_branch_name: str = "",
    ) -> None:
        """Add or overwrite parameters, atomically with respect to every other writer."""
        patch = _Parameters(parameters=_own_parameters(parameters)).model_dump_json().encode()
        if not internal_branch_name:
            self._patch_run_log(run_id, patch, ("parameters",))
            return
        path = self._chunk_path(run_id, "BranchLog", internal_branch_name)
        try:
            self._patch(run_id, path, patch, merge_keys=("parameters",))
        except ChunkNotFoundError:
            raise BranchLogNotFoundError(run_id, internal_branch_name, path=path) from None

    # --- steps ---------------------------------------------------------------------------------

    def get_step_log(self, internal_name: str, run_id: str) -> StepLog:
        path = self._chunk_path(run_id, "StepLog", internal_name)
        step = self._read_model(StepLog, path, run_id)
        if step is not None:
            return step
        self._raise_if_run_missing(run_id, FileNotFoundError(path))
        if self._is_own_layout(run_id):
            raise StepLogNotFoundError(run_id, internal_name, path=path)
        # A run of an older layout keeps steps inside other files: search the merged run.
        return self.get_run_log_by_id(run_id, full=True).find_step(internal_name)

    def add_step_log(self, step_log: StepLog, run_id: str) -> None:
        self._store_step(_own(StepLog, step_log), run_id, original=step_log)

    def _store_step(self, step: StepLog, run_id: str, original: object = None) -> None:
        path = self._chunk_path(run_id, "StepLog", step.internal_name)
        if step.branches:
            for branch in step.branches.values():
                self.add_branch_log(branch, run_id)
            body = step.model_copy(update={"branches": {}}).model_dump_json().encode()
        else:
            body = step.model_dump_json().encode()
        created_ns = step._created_ns
        if created_ns is None:
            created_ns = self._stored_created_ns(path, run_id)
        self._write_chunk(run_id, path, with_created_ns(created_ns, body))
        step._created_ns = created_ns
        if isinstance(original, StepLog) and original is not step:
            original._created_ns = created_ns

    def _stored_created_ns(self, path: str, run_id: str) -> int:
        """The creation time a rewritten chunk must keep, or now for a new one."""
        existing = _core.read_file(path, run_id=run_id)
        if existing is not None:
            try:
                created_ns, _ = split_created_ns(existing)
            except ValueError:
                created_ns = None
            if created_ns is not None:
                return created_ns
        return time.time_ns()

    # --- branches ------------------------------------------------------------------------------

    def get_branch_log(self, internal_branch_name: str, run_id: str) -> BranchLog | RunLog:
        """The branch's own fields (status, parameters); its steps come with a full read."""
        if not internal_branch_name:
            return self._read_run_meta(run_id)
        path = self._chunk_path(run_id, "BranchLog", internal_branch_name)
        branch = self._read_model(BranchLog, path, run_id)
        if branch is not None:
            return branch
        self._raise_if_run_missing(run_id, FileNotFoundError(path))
        if self._is_own_layout(run_id):
            raise BranchLogNotFoundError(run_id, internal_branch_name, path=path)
        return self.get_run_log_by_id(run_id, full=True).find_branch(internal_branch_name)

    def add_branch_log(self, branch_log: BranchLog | RunLog, run_id: str) -> None:
        """Store a branch's status and parameters, and any steps it carries."""
        if isinstance(branch_log, RunLog) or type(branch_log).__name__ == "RunLog":
            self.put_run_log(branch_log)  # type: ignore[arg-type]
            return
        branch = _own(BranchLog, branch_log)
        path = self._chunk_path(run_id, "BranchLog", branch.internal_name)
        patch = branch.model_dump_json(exclude={"steps"}).encode()
        created_ns = branch._created_ns if branch._created_ns is not None else time.time_ns()
        created = with_created_ns(
            created_ns, branch.model_copy(update={"steps": {}}).model_dump_json().encode()
        )
        stored = self._patch(run_id, path, patch, create=created)
        branch._created_ns, _ = split_created_ns(stored)
        if isinstance(branch_log, BranchLog):
            branch_log._created_ns = branch._created_ns
        for step in branch.steps.values():
            self._store_step(step, run_id)

    # --- jobs ----------------------------------------------------------------------------------

    def add_job_log(self, run_id: str, job_log: JobLog) -> None:
        job = _own(JobLog, job_log)
        patch = b'{"job":%s,"status":%s}' % (
            job.model_dump_json().encode(),
            pydantic_core.to_json(job.status),
        )
        self._patch_run_log(run_id, patch)


def _own(model: Any, obj: Any) -> Any:
    """Accept runnable's own model objects (or dicts) where ours are expected."""
    if isinstance(obj, model):
        return obj
    if isinstance(obj, BaseModel):
        return model.model_validate(obj.model_dump(mode="json"))
    return model.model_validate(obj)


_PARAMETER_TYPES = (JsonParameter, MetricParameter, ObjectParameter)


def _own_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name: value
        if isinstance(value, _PARAMETER_TYPES) or not isinstance(value, BaseModel)
        else value.model_dump(mode="json")
        for name, value in parameters.items()
    }
