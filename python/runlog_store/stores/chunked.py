"""The chunked layout (docs/format.md, "chunked-fs"), whatever holds the chunks.

A run is a folder (or object prefix) of documents: ``RunLog.json`` with the run-level fields,
one ``StepLog-<key>.json`` per step and one ``BranchLog-<key>.json`` per branch. Writing a step
is one write of a document at a name computed from the step's internal name: no listing, no
lock, no rewrite of anything else, so its cost does not grow with the run and thousands of
branches written by many processes never wait on each other. Run-level and branch-level fields
(status, parameters, run config, job) are read-modify-writes of one small document that the
backend makes atomic against every other writer (a lock for files, a conditional PUT for
objects). A full read fetches every chunk and merges them in Rust.

Subclasses supply the storage primitives (the ``_doc_*`` and ``_run_*`` methods).
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

import pydantic_core
from pydantic import BaseModel, ValidationError

from runlog_store import _core
from runlog_store._paths import validate_internal_name, validate_run_id
from runlog_store.exceptions import (
    BranchLogNotFoundError,
    ChunkNotFoundError,
    CorruptChunkError,
    RunLogNotFoundError,
    StepLogNotFoundError,
)
from runlog_store.models import (
    BranchLog,
    JobLog,
    JsonParameter,
    MetricParameter,
    ObjectParameter,
    Parameter,
    RunLog,
    StepLog,
)
from runlog_store.stores.base import BaseRunLogStore, SalvagedRunLog, validate_run_log

# The chunk format is the Rust core's (rust/chunk.rs): names, headers and markers come from it.
RUN_LOG_FILE = _core.RUN_LOG_FILE
# Written when runlog-store creates a run: its steps and branches all live in chunks at their
# computed names, so a missing chunk means a missing step (no need to search older layouts).
LAYOUT_MARKER = _core.LAYOUT_MARKER
LAYOUT_MARKER_TEXT = _core.LAYOUT_MARKER_TEXT

ChunkKind = Literal["StepLog", "BranchLog"]
_ChunkModel = TypeVar("_ChunkModel", StepLog, BranchLog)


def chunk_name(kind: ChunkKind, internal_name: str, run_id: str) -> str:
    validate_internal_name(internal_name, run_id=run_id)
    return _core.chunk_file_name(kind, internal_name)


class _Parameters(BaseModel):
    parameters: dict[str, Parameter]


class _JobPatch(BaseModel):
    """A job and the run status it sets, as one patch of RunLog.json."""

    job: JobLog
    status: str


class ChunkedRunLogStore(BaseRunLogStore):
    """Run logs in chunks, one run per folder or prefix; safe for parallel writers."""

    supports_parallel_writes: bool = True

    # --- storage primitives ---------------------------------------------------------------

    @abstractmethod
    def _doc_location(self, run_id: str, name: str) -> str:
        """Where a document is, for messages (a path or a URL)."""

    @abstractmethod
    def _doc_read(self, run_id: str, name: str) -> bytes | None:
        """A document's bytes, or None when it does not exist."""

    @abstractmethod
    def _doc_write(self, run_id: str, name: str, data: bytes, internal_name: str = "") -> None:
        """Replace a document atomically (readers see the old or the new bytes, whole);
        ``internal_name`` is the step's, for a step chunk."""

    @abstractmethod
    def _doc_patch(
        self,
        run_id: str,
        name: str,
        patch: bytes,
        merge_keys: tuple[str, ...] = (),
        create: bytes | None = None,
    ) -> bytes:
        """Apply a patch (see ``_core.apply_patch``) atomically against every other writer;
        ChunkNotFoundError when the document is missing and there is no ``create``."""

    @abstractmethod
    def _run_create(self, run_id: str, run_log: bytes) -> None:
        """Create ``RunLog.json`` only if the run does not exist (RunLogExistsError), and the
        layout marker."""

    @abstractmethod
    def _run_prepare(self, run_id: str) -> None:
        """Make a run's folder writable (put_run_log of a run never created here)."""

    @abstractmethod
    def _run_merge(self, run_id: str, salvage: bool) -> tuple[bytes, list[tuple[str, str]]]:
        """Every chunk merged (Rust); ChunkNotFoundError when the run has no RunLog.json."""

    @abstractmethod
    def _run_exists(self, run_id: str) -> bool: ...

    @abstractmethod
    def _run_is_own_layout(self, run_id: str) -> bool: ...

    # --- helpers ----------------------------------------------------------------------------

    def _raise_if_run_missing(self, run_id: str, exc: Exception | None = None) -> None:
        """Turn a failure on a chunk of a run that does not exist into RunLogNotFoundError."""
        if not self._run_exists(run_id):
            location = self._doc_location(run_id, RUN_LOG_FILE)
            raise RunLogNotFoundError(run_id, path=location) from exc

    def _patch_run_log(self, run_id: str, patch: bytes, merge_keys: tuple[str, ...] = ()) -> None:
        try:
            self._doc_patch(run_id, RUN_LOG_FILE, patch, merge_keys)
        except ChunkNotFoundError:
            location = self._doc_location(run_id, RUN_LOG_FILE)
            raise RunLogNotFoundError(run_id, path=location) from None

    def _read_model(self, model: type[_ChunkModel], name: str, run_id: str) -> _ChunkModel | None:
        data = self._doc_read(run_id, name)
        if data is None:
            return None
        location = self._doc_location(run_id, name)
        try:
            created_ns, body = _core.split_chunk_header(data)
            obj = model.model_validate_json(body)
        except (ValueError, ValidationError) as exc:
            raise CorruptChunkError(
                f"{location} is not a valid {model.__name__} chunk: {exc}",
                path=location,
                run_id=run_id,
            ) from exc
        obj._created_ns = created_ns
        return obj

    def _read_run_meta(self, run_id: str) -> RunLog:
        validate_run_id(run_id)
        data = self._doc_read(run_id, RUN_LOG_FILE)
        location = self._doc_location(run_id, RUN_LOG_FILE)
        if data is None:
            raise RunLogNotFoundError(run_id, path=location)
        return validate_run_log(data, location, run_id)

    # --- runs -------------------------------------------------------------------------------

    def _create_run(self, run_log: RunLog) -> None:
        self._run_create(run_log.run_id, run_log.model_dump_json().encode())

    def get_run_log_by_id(self, run_id: str, full: bool = False) -> RunLog:
        """The run log; ``full`` merges every chunk (Rust), otherwise only ``RunLog.json``."""
        if not full:
            return self._read_run_meta(run_id)
        data = self.get_run_log_json(run_id)
        return validate_run_log(data, self._doc_location(run_id, ""), run_id)

    def get_run_log_json(self, run_id: str) -> bytes:
        validate_run_id(run_id)
        try:
            data, _ = self._run_merge(run_id, False)
        except ChunkNotFoundError:
            location = self._doc_location(run_id, RUN_LOG_FILE)
            raise RunLogNotFoundError(run_id, path=location) from None
        return data

    def salvage_run_log(self, run_id: str) -> SalvagedRunLog:
        """Read a damaged run without its corrupt chunks, and say which were left out."""
        validate_run_id(run_id)
        location = self._doc_location(run_id, "")
        try:
            data, skipped = self._run_merge(run_id, True)
        except ChunkNotFoundError:
            raise RunLogNotFoundError(
                run_id, path=self._doc_location(run_id, RUN_LOG_FILE)
            ) from None
        return SalvagedRunLog(run_log=validate_run_log(data, location, run_id), skipped=skipped)

    def put_run_log(self, run_log: RunLog) -> None:
        """Store the run-level fields, and every step and branch the run log carries."""
        run_log = _own(RunLog, run_log)
        run_id = validate_run_id(run_log.run_id)
        self._run_prepare(run_id)
        metadata = run_log.model_dump_json(exclude={"steps"}).encode()
        created = run_log.model_copy(update={"steps": {}}).model_dump_json().encode()
        self._doc_patch(run_id, RUN_LOG_FILE, metadata, create=created)
        for step in run_log.steps.values():
            self._store_step(step, run_id)

    def update_run_log_status(self, run_id: str, status: str) -> None:
        self._patch_run_log(run_id, pydantic_core.to_json({"status": status}))

    def get_run_config(self, run_id: str) -> dict[str, Any]:
        return self._read_run_meta(run_id).run_config

    def set_run_config(self, run_id: str, run_config: dict[str, Any]) -> None:
        patch = pydantic_core.to_json({"run_config": run_config}, fallback=str)
        self._patch_run_log(run_id, patch, ("run_config",))

    # --- parameters -------------------------------------------------------------------------

    def get_parameters(self, run_id: str, internal_branch_name: str = "") -> dict[str, Parameter]:
        if not internal_branch_name:
            return self._read_run_meta(run_id).parameters
        return self.get_branch_log(internal_branch_name, run_id).parameters

    def set_parameters(
        self,
        run_id: str,
        parameters: Mapping[str, Parameter],
        internal_branch_name: str = "",
    ) -> None:
        """Add or overwrite parameters, atomically with respect to every other writer."""
        validate_run_id(run_id)
        patch = _Parameters(parameters=_own_parameters(parameters)).model_dump_json().encode()
        if not internal_branch_name:
            self._patch_run_log(run_id, patch, ("parameters",))
            return
        name = chunk_name("BranchLog", internal_branch_name, run_id)
        try:
            self._doc_patch(run_id, name, patch, ("parameters",))
        except ChunkNotFoundError:
            self._raise_if_run_missing(run_id)
            location = self._doc_location(run_id, name)
            raise BranchLogNotFoundError(run_id, internal_branch_name, path=location) from None

    # --- steps ------------------------------------------------------------------------------

    def get_step_log(self, internal_name: str, run_id: str) -> StepLog:
        validate_run_id(run_id)
        name = chunk_name("StepLog", internal_name, run_id)
        step = self._read_model(StepLog, name, run_id)
        if step is not None:
            return step
        self._raise_if_run_missing(run_id)
        if self._run_is_own_layout(run_id):
            location = self._doc_location(run_id, name)
            raise StepLogNotFoundError(run_id, internal_name, path=location)
        # A run of an older layout keeps steps inside other files: search the merged run.
        return self.get_run_log_by_id(run_id, full=True).find_step(internal_name)

    def add_step_log(self, step_log: StepLog, run_id: str) -> None:
        validate_run_id(run_id)
        self._store_step(_own(StepLog, step_log), run_id, original=step_log)

    def _store_step(self, step: StepLog, run_id: str, original: object = None) -> None:
        name = chunk_name("StepLog", step.internal_name, run_id)
        if step.branches:
            for branch in step.branches.values():
                self.add_branch_log(branch, run_id)
            body = step.model_copy(update={"branches": {}}).model_dump_json().encode()
        else:
            body = step.model_dump_json().encode()
        created_ns = step._created_ns
        if created_ns is None:
            created_ns = self._stored_created_ns(name, run_id)
        self._write_chunk(
            run_id, name, _core.chunk_with_header(created_ns, body), step.internal_name
        )
        step._created_ns = created_ns
        if isinstance(original, StepLog) and original is not step:
            original._created_ns = created_ns

    def _write_chunk(self, run_id: str, name: str, data: bytes, internal_name: str = "") -> None:
        try:
            self._doc_write(run_id, name, data, internal_name)
        except ChunkNotFoundError as exc:
            self._raise_if_run_missing(run_id, exc)
            raise

    def _stored_created_ns(self, name: str, run_id: str) -> int:
        """The creation time a rewritten chunk must keep, or now for a new one."""
        existing = self._doc_read(run_id, name)
        if existing is not None:
            try:
                created_ns, _ = _core.split_chunk_header(existing)
            except ValueError:
                created_ns = None
            if created_ns is not None:
                return created_ns
        return time.time_ns()

    # --- branches ---------------------------------------------------------------------------

    def get_branch_log(self, internal_branch_name: str, run_id: str) -> BranchLog | RunLog:
        """The branch's own fields (status, parameters); its steps come with a full read."""
        if not internal_branch_name:
            return self._read_run_meta(run_id)
        validate_run_id(run_id)
        name = chunk_name("BranchLog", internal_branch_name, run_id)
        branch = self._read_model(BranchLog, name, run_id)
        if branch is not None:
            return branch
        self._raise_if_run_missing(run_id)
        if self._run_is_own_layout(run_id):
            location = self._doc_location(run_id, name)
            raise BranchLogNotFoundError(run_id, internal_branch_name, path=location)
        return self.get_run_log_by_id(run_id, full=True).find_branch(internal_branch_name)

    def add_branch_log(self, branch_log: BranchLog | RunLog, run_id: str) -> None:
        """Store a branch's status and parameters, and any steps it carries."""
        if isinstance(branch_log, RunLog) or type(branch_log).__name__ == "RunLog":
            self.put_run_log(branch_log)  # type: ignore[arg-type]
            return
        validate_run_id(run_id)
        branch = _own(BranchLog, branch_log)
        name = chunk_name("BranchLog", branch.internal_name, run_id)
        patch = self._branch_patch(
            run_id, branch, branch.model_dump_json(exclude={"steps"}).encode()
        )
        created_ns = branch._created_ns if branch._created_ns is not None else time.time_ns()
        created = _core.chunk_with_header(
            created_ns, branch.model_copy(update={"steps": {}}).model_dump_json().encode()
        )
        try:
            stored = self._doc_patch(run_id, name, patch, create=created)
        except ChunkNotFoundError as exc:
            self._raise_if_run_missing(run_id, exc)
            raise
        branch._created_ns, _ = _core.split_chunk_header(stored)
        if isinstance(branch_log, BranchLog):
            branch_log._created_ns = branch._created_ns
        for step in branch.steps.values():
            self._store_step(step, run_id)

    def _branch_patch(self, run_id: str, branch: BranchLog, patch: bytes) -> bytes:
        """The patch that stores a branch's fields; a backend may add to it."""
        return patch

    # --- jobs -------------------------------------------------------------------------------

    def add_job_log(self, run_id: str, job_log: JobLog) -> None:
        job = _own(JobLog, job_log)
        patch = _JobPatch(job=job, status=job.status).model_dump_json().encode()
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
