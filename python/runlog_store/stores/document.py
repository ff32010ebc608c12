"""Stores that keep a run as one JSON document (``file-system``, ``minio``), written once.

Such a store supplies three primitives: where a run's document is (``_document_location``),
reading it (``_read_document``), and replacing it atomically against every other writer
(``_update_document``: a locked read-modify-write of a file, a conditional PUT of an object).
Everything else is here, as changes of the document's bytes made by the Rust core
(``rust/document.rs``, ``rust/patch.rs``): storing a step parses the objects on its path and
carries the rest of the run as raw JSON, so the cost of a write is a copy of the run's bytes,
not a validation and dump of every step of it in Python. Reads of one step, branch or
parameter set validate only that.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from runlog_store import _core
from runlog_store._paths import validate_run_id
from runlog_store.exceptions import (
    BranchLogNotFoundError,
    RunIdMismatchError,
    RunLogNotFoundError,
    StepLogNotFoundError,
)
from runlog_store.models import BranchLog, JobLog, Parameter, RunLog, StepLog
from runlog_store.stores.base import BaseRunLogStore, check_nesting, json_of, validate_run_log


class _RunFields(BaseModel):
    """The run-level fields a read needs, validated without the steps (left unread)."""

    model_config = ConfigDict(extra="ignore")

    run_id: str | None = None
    parameters: dict[str, Parameter] = Field(default_factory=dict)
    run_config: dict[str, Any] = Field(default_factory=dict)


class _Parameters(BaseModel):
    model_config = ConfigDict(ser_json_inf_nan="constants")

    parameters: dict[str, Parameter]


class _JobPatch(BaseModel):
    """A job and the run status it sets, as one patch of the run's document."""

    model_config = ConfigDict(ser_json_inf_nan="constants")

    job: JobLog
    status: str


class DocumentRunLogStore(BaseRunLogStore):
    """A run log store that keeps each run as one JSON document (see the module docstring)."""

    # --- what a document store supplies ----------------------------------------------------

    @abstractmethod
    def _document_location(self, run_id: str) -> str:
        """Where a run's document is, for messages (a path or a URL)."""

    @abstractmethod
    def _read_document(self, run_id: str) -> bytes | None:
        """The run's document, or None when the run does not exist."""

    @abstractmethod
    def _update_document(self, run_id: str, change: Callable[[bytes], bytes]) -> None:
        """Replace the run's document with ``change(document)``, atomically against every
        other writer (``change`` may run more than once); RunLogNotFoundError when the run
        does not exist."""

    # --- reads --------------------------------------------------------------------------------

    def _stored(self, run_id: str) -> bytes:
        """The run's document as stored (not checked yet); RunLogNotFoundError when missing."""
        data = self._read_document(validate_run_id(run_id))
        if data is None:
            raise RunLogNotFoundError(run_id, path=self._document_location(run_id))
        return data

    def get_run_log_json(self, run_id: str) -> bytes:
        """The run's document, which must name the run (RunIdMismatchError otherwise)."""
        data = self._stored(run_id)
        _core.check_run_document(self._document_location(run_id), data, run_id)
        return data

    def get_run_log_by_id(self, run_id: str, full: bool = False) -> RunLog:
        # validate_run_log checks the run id on the model it builds anyway.
        data = self._stored(run_id)
        return validate_run_log(data, self._document_location(run_id), run_id)

    def _run_fields(self, run_id: str) -> _RunFields:
        fields = _RunFields.model_validate_json(self._stored(run_id))
        if fields.run_id is not None and fields.run_id != run_id:
            location = self._document_location(run_id)
            raise RunIdMismatchError(path=location, run_id=run_id, found=fields.run_id)
        return fields

    def get_parameters(self, run_id: str, internal_branch_name: str = "") -> dict[str, Parameter]:
        if not internal_branch_name:
            return self._run_fields(run_id).parameters
        return self.get_branch_log(internal_branch_name, run_id).parameters

    def get_run_config(self, run_id: str) -> dict[str, Any]:
        return self._run_fields(run_id).run_config

    def get_step_log(self, internal_name: str, run_id: str) -> StepLog:
        found = self._find(run_id, "step", internal_name)
        if found is None:
            location = self._document_location(run_id)
            raise StepLogNotFoundError(run_id, internal_name, path=location)
        return StepLog.model_validate_json(found)

    def get_branch_log(self, internal_branch_name: str, run_id: str) -> BranchLog | RunLog:
        if not internal_branch_name:
            return self.get_run_log_by_id(run_id)
        found = self._find(run_id, "branch", internal_branch_name)
        if found is None:
            location = self._document_location(run_id)
            raise BranchLogNotFoundError(run_id, internal_branch_name, path=location)
        return BranchLog.model_validate_json(found)

    def _find(self, run_id: str, kind: str, internal_name: str) -> bytes | None:
        data = self._stored(run_id)  # document_find checks that it names the run
        location = self._document_location(run_id)
        return _core.document_find(location, data, kind, internal_name, run_id=run_id)

    # --- writes: changes of the document's bytes ----------------------------------------------

    def _update(self, run_id: str, change: Callable[[RunLog], None]) -> None:
        """A change of the whole run as a model, for the methods not written as byte changes."""
        location = self._document_location(run_id)

        def changed(data: bytes) -> bytes:
            run_log = validate_run_log(data, location, run_id)
            change(run_log)
            document = json_of(run_log, run_id)
            check_nesting(run_id, "run", "", document)
            return document

        self._update_document(validate_run_id(run_id), changed)

    def _patch(self, run_id: str, patch: bytes, merge_keys: tuple[str, ...] = ()) -> None:
        """Merge ``patch`` into the run's top level (``merge_keys`` key by key)."""
        check_nesting(validate_run_id(run_id), "run", "", patch)
        location = self._document_location(run_id)
        self._update_document(
            validate_run_id(run_id),
            lambda data: _core.apply_patch(
                location, data, patch, merge_keys=merge_keys, run_id=run_id
            ),
        )

    def update_run_log_status(self, run_id: str, status: str) -> None:
        self._patch(run_id, json_of({"status": status}, run_id))
        self._index_note(run_id)

    def set_run_config(self, run_id: str, run_config: dict[str, Any]) -> None:
        self._patch(run_id, json_of({"run_config": run_config}, run_id), ("run_config",))

    def add_job_log(self, run_id: str, job_log: JobLog) -> None:
        """Store the job and make its status the run's status (as runnable does)."""
        self._patch(run_id, json_of(_JobPatch(job=job_log, status=job_log.status), run_id))
        self._index_note(run_id)

    def set_parameters(
        self,
        run_id: str,
        parameters: Mapping[str, Parameter],
        internal_branch_name: str = "",
    ) -> None:
        """Add or overwrite parameters, at the root or in one branch, atomically."""
        patch = json_of(_Parameters(parameters=dict(parameters)), run_id)
        if not internal_branch_name:
            self._patch(run_id, patch, ("parameters",))
            return
        location = self._document_location(run_id)

        def changed(data: bytes) -> bytes:
            found = _core.document_find(
                location, data, "branch", internal_branch_name, run_id=run_id
            )
            if found is None:
                raise BranchLogNotFoundError(run_id, internal_branch_name, path=location)
            branch = _core.apply_patch(
                location, found, patch, merge_keys=("parameters",), run_id=run_id
            )
            return self._placed(data, "branch", branch, internal_branch_name, run_id)

        self._update_document(validate_run_id(run_id), changed)

    def add_step_log(self, step_log: StepLog, run_id: str) -> None:
        """Store a step (replacing a stored step of the same internal name, its branches kept)."""
        node = json_of(step_log, run_id)
        self._place(run_id, "step", node, step_log.internal_name)

    def _add_branch(self, branch_log: BranchLog, run_id: str) -> None:
        node = json_of(branch_log, run_id)
        self._place(run_id, "branch", node, branch_log.internal_name)

    def _place(self, run_id: str, kind: str, node: bytes, internal_name: str) -> None:
        self._update_document(
            validate_run_id(run_id),
            lambda data: self._placed(data, kind, node, internal_name, run_id),
        )

    def _placed(
        self, data: bytes, kind: str, node: bytes, internal_name: str, run_id: str
    ) -> bytes:
        location = self._document_location(run_id)
        placed = _core.document_place(location, data, kind, node, run_id=run_id)
        if isinstance(placed, bytes):
            return placed
        missing, name = placed
        if missing == "step":  # a branch with no stored step above it
            raise StepLogNotFoundError(run_id, name, path=location)
        raise BranchLogNotFoundError(run_id, name, path=location)  # a step with no branch


__all__ = ["DocumentRunLogStore"]
