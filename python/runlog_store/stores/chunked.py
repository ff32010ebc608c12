"""The chunked layout both chunked stores share (docs/format.md, "chunked-fs" and "Object
storage").

At rest a run is runnable 0.50's chunked layout: the run's fields and its root steps in one
document, each branch's fields, parameters and direct steps in a ``BranchLog`` document of its
own, so runnable's own chunked stores read what these stores write. What differs is how a run
gets there. Every API call is turned into the changes it makes (:class:`Change`: a step put
whole, a branch put whole, a merge of parameters, a set of the run's status...), and a backend
stores them its own way:

- ``chunked-fs`` appends them to a journal of its own process (one ``fdatasync`` per call, no
  new file), and folds them into the documents when a branch or the run ends;
- ``chunked-minio`` writes each step as an object of its own (object storage has no append)
  and the run's and branches' fields with conditional PUTs, and embeds the steps into their
  documents when a branch or the run ends.

Readers (Rust) read the documents with what is not folded yet on top. Subclasses supply the
storage primitives (the methods starting with ``_``, below).
"""

from __future__ import annotations

import contextlib
import errno
from abc import abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from runlog_store import _core
from runlog_store._paths import validate_internal_name, validate_run_id
from runlog_store.exceptions import (
    BranchLogNotFoundError,
    ChunkNotFoundError,
    CorruptChunkError,
    JobLogNotFoundError,
    RunLogNotFoundError,
    StepLogNotFoundError,
    StorageError,
)
from runlog_store.models import (
    ENDED_STATUSES,
    BranchLog,
    JobLog,
    JsonParameter,
    MetricParameter,
    ObjectParameter,
    Parameter,
    RunLog,
    StepLog,
    names_a_branch,
    parent_name,
)
from runlog_store.stores.base import (
    BaseRunLogStore,
    SalvagedRunLog,
    check_nesting,
    json_of,
    validate_run_log,
)

# The chunk format is the Rust core's (rust/chunk.rs): names, headers and markers come from it.
RUN_LOG_FILE = _core.RUN_LOG_FILE
LAYOUT_MARKER = _core.LAYOUT_MARKER
LAYOUT_MARKER_TEXT = _core.LAYOUT_MARKER_TEXT

ChangeKind = Literal["run-set", "run-merge", "branch-put", "branch-merge", "step-put"]
MAX_REMEMBERED = 20_000
_Model = TypeVar("_Model", bound=BaseModel)


def chunk_name(kind: Literal["StepLog", "BranchLog"], internal_name: str, run_id: str) -> str:
    validate_internal_name(internal_name, run_id=run_id)
    return _core.chunk_file_name(kind, internal_name)


@dataclass
class Change:
    """One change an API call makes to a run, as the Rust core stores it (docs/format.md, "The
    journal"): a ``*-put`` replaces every field of a step or branch (its children are changes of
    their own), a ``*-set`` the run fields it names, a ``*-merge`` merges each object it names
    (``parameters``, ``run_config``) key by key."""

    kind: ChangeKind
    target: str  # the internal name of the step or branch; "" for the run
    body: bytes  # a JSON object: the model's JSON, or the fields it sets or merges
    # The step or branch (object storage stores a branch's fields apart from its steps).
    model: StepLog | BranchLog | None = None
    keys: tuple[str, ...] = field(default=())  # the top-level keys of a set or merge
    # A step or branch carried by the one the call stores (the steps of a branch read back
    # and stored again with its new status, as runnable's executor ends a branch).
    carried: bool = False

    def as_record(self) -> tuple[ChangeKind, str, bytes]:
        return (self.kind, self.target, self.body)


class _Parameters(BaseModel):
    model_config = ConfigDict(ser_json_inf_nan="constants")

    parameters: dict[str, Any]


class _BranchParameters(BaseModel):
    """A branch's document read for its parameters: its name is checked as ``BranchLog``
    checks it, its steps are not built (runnable's executor asks a branch's parameters before
    every task, and building the branch's steps was most of that call's time)."""

    # What an error calls the document: a BranchLog, as for ``get_branch_log``.
    DOCUMENT_KIND: ClassVar[str] = "BranchLog"

    internal_name: str
    parameters: dict[str, Parameter] = Field(default_factory=dict)


class _JobPatch(BaseModel):
    """A job and the run status it sets, as one change of the run's fields."""

    model_config = ConfigDict(ser_json_inf_nan="constants")

    job: JobLog
    status: str


class ChunkedRunLogStore(BaseRunLogStore):
    """Run logs in runnable's chunked layout, one run per folder or prefix; safe for parallel
    writers."""

    supports_parallel_writes: bool = True

    # Run ids already checked by this store object: a write is a few microseconds, and the
    # check of its run id would be a good part of them.
    _checked_run_ids: set[str] = PrivateAttr(default_factory=set)
    # The JSON this store last wrote of each step: (run_id, internal name) -> bytes.
    _written: dict[tuple[str, str], bytes] = PrivateAttr(default_factory=dict)
    # Branches known to be stored (written by this store, or seen): a step written into one
    # needs no look at the run first. A run's branches are never removed but with the run.
    _known_branches: set[tuple[str, str]] = PrivateAttr(default_factory=set)

    # What each process keeps for itself: left out when a store is pickled into another
    # process (runnable pickles its services into its Pool workers), which builds its own.
    PER_PROCESS_STATE: ClassVar[tuple[str, ...]] = (
        "_checked_run_ids",
        "_written",
        "_known_branches",
    )

    def __getstate__(self) -> dict[Any, Any]:
        state = super().__getstate__()
        private = dict(state.get("__pydantic_private__") or {})
        for name in self.PER_PROCESS_STATE:
            if name in private:
                private[name] = type(private[name])()
        return {**state, "__pydantic_private__": private}

    def _check(self, run_id: str) -> str:
        # Private attributes read through __pydantic_private__ directly: pydantic's
        # __getattr__ takes microseconds, and these are read on every call.
        checked: set[str] = self.__pydantic_private__["_checked_run_ids"]  # type: ignore[index]
        if isinstance(run_id, str) and run_id in checked:
            return run_id
        validate_run_id(run_id)
        if len(checked) > 10_000:
            checked.clear()
        checked.add(run_id)
        return run_id

    # --- storage primitives ---------------------------------------------------------------

    @abstractmethod
    def _location(self, run_id: str, name: str = "") -> str:
        """Where a run (or one of its documents) is, for messages: a path or a URL."""

    @abstractmethod
    def _create(self, run_id: str, run_log: bytes) -> None:
        """Create the run with these fields, only if it does not exist (RunLogExistsError)."""

    @abstractmethod
    def _prepare(self, run_id: str, run_log: bytes) -> None:
        """Make the run exist (a put of a whole run never created here), with these fields if
        it is new."""

    @abstractmethod
    def _write(self, run_id: str, changes: list[Change]) -> None:
        """Store the changes, atomically with respect to every other writer; ChunkNotFoundError
        when the run does not exist."""

    @abstractmethod
    def _ended(self, run_id: str, branch: str) -> None:
        """A branch (or the run, for ``""``) has ended: fold what it holds into its document."""

    @abstractmethod
    def _read_full(self, run_id: str, salvage: bool) -> tuple[bytes, list[tuple[str, str]]]:
        """The full run log (Rust); ChunkNotFoundError when the run does not exist."""

    @abstractmethod
    def _read_run(self, run_id: str, steps: bool) -> bytes:
        """The run's fields, with its root steps (each without branches) when ``steps``."""

    @abstractmethod
    def _read_branch(self, run_id: str, name: str) -> bytes | None:
        """A branch with its direct steps, or None."""

    @abstractmethod
    def _read_step(self, run_id: str, name: str) -> bytes | None:
        """A step without its branches, or None."""

    @abstractmethod
    def _has_branch(self, run_id: str, name: str) -> bool: ...

    @abstractmethod
    def _run_exists(self, run_id: str) -> bool: ...

    # --- helpers ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _run_must_exist(self, run_id: str) -> Iterator[None]:
        """A missing run (its folder or run document gone) is RunLogNotFoundError."""
        try:
            yield
        except ChunkNotFoundError as exc:
            raise RunLogNotFoundError(run_id, path=self._location(run_id, "")) from exc
        except StorageError as exc:
            if exc.errno != errno.ENOENT:
                raise
            # A write into a run folder deleted meanwhile.
            raise RunLogNotFoundError(run_id, path=self._location(run_id, "")) from exc

    def _validated(self, model: type[_Model], data: bytes, run_id: str, name: str) -> _Model:
        try:
            return model.model_validate_json(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "document"
            location = self._location(run_id, name)
            kind = getattr(model, "DOCUMENT_KIND", model.__name__)
            raise CorruptChunkError(
                f"{location} does not hold a valid {kind} ({where}: {err['msg']})",
                path=location,
                run_id=run_id,
            ) from exc

    def _run_fields(self, run_id: str) -> RunLog:
        self._check(run_id)
        with self._run_must_exist(run_id):
            data = self._read_run(run_id, False)
        return self._validated(RunLog, data, run_id, "")

    def _store(self, run_id: str, changes: list[Change]) -> None:
        private = self.__pydantic_private__  # not self._written: see _check
        written: dict[tuple[str, str], bytes] = private["_written"]  # type: ignore[index]
        # A carried step exactly as this store last wrote it is not written again: a branch
        # read back with its steps and stored with its new status (runnable's executor ends a
        # branch so) would otherwise write every step of the branch a second time, and could
        # put back a copy older than one another process wrote since.
        changes = [
            c
            for c in changes
            if not (
                c.carried and c.kind == "step-put" and written.get((run_id, c.target)) == c.body
            )
        ]
        self._check_nesting(run_id, changes)
        try:
            self._write(run_id, changes)
        except (ChunkNotFoundError, StorageError):
            with self._run_must_exist(run_id):
                raise
        if len(written) > MAX_REMEMBERED:
            written.clear()  # only an optimisation
        branches: set[tuple[str, str]] = private["_known_branches"]  # type: ignore[index]
        if len(branches) > MAX_REMEMBERED:
            branches.clear()  # only an optimisation
        for change in changes:
            if change.kind == "step-put":
                written[(run_id, change.target)] = change.body
            elif change.kind == "branch-put":
                branches.add((run_id, change.target))

    def _check_nesting(self, run_id: str, changes: list[Change]) -> None:
        """Refuse changes that would take the run log past its nesting limit, before any is
        stored (a store whose core checks each record as it stores it does not need this)."""
        for change in changes:
            kind = change.kind.partition("-")[0]
            check_nesting(run_id, kind, change.target, change.body)

    def _forget(self, run_id: str) -> None:
        """Forget what this store knew of a run it deleted (another may take its id)."""
        known: set[tuple[str, str]] = self.__pydantic_private__["_known_branches"]  # type: ignore[index]
        known.difference_update({key for key in known if key[0] == run_id})

    def _missing_branch_of_step(self, run_id: str, name: str) -> str | None:
        """The branch a step goes in when that branch is not stored, else None (the rule of
        ``RunLog.place_step``): its name continues a stored step but none of its branches, or
        continues nothing stored while its name less the last part names a branch."""
        parent = parent_name(name)
        branches: set[tuple[str, str]] = self.__pydantic_private__["_known_branches"]  # type: ignore[index]
        if not parent or (run_id, parent) in branches:
            return None
        with self._run_must_exist(run_id):
            below_a_step = False
            for prefix in _dot_prefixes(name):
                if self._has_branch(run_id, prefix):
                    branches.add((run_id, prefix))
                    return None
                if self._read_step(run_id, prefix) is not None:
                    below_a_step = True
                    break
            if not below_a_step and not names_a_branch(parent):
                return None  # a root step with a dot in its name
            if self._read_step(run_id, name) is not None:
                return None  # stored already: it stays where it is
        return parent

    def _end(self, run_id: str, branch: str = "") -> None:
        with self._run_must_exist(run_id):
            self._ended(run_id, branch)
        if not branch:
            # The run's end: its documents are final, the index reads them now.
            self._index_note(run_id)

    # --- runs -------------------------------------------------------------------------------

    def _create_run(self, run_log: RunLog) -> None:
        data = json_of(run_log, run_log.run_id)
        check_nesting(run_log.run_id, "run", "", data)
        self._create(run_log.run_id, data)

    def get_run_log_by_id(self, run_id: str, full: bool = False) -> RunLog:
        """The run log; ``full`` merges everything (Rust), otherwise the run's fields and its
        root steps without their branches (as runnable's chunked store reads them)."""
        if full:
            data = self.get_run_log_json(run_id)
            return validate_run_log(data, self._location(run_id, ""), run_id)
        self._check(run_id)
        with self._run_must_exist(run_id):
            data = self._read_run(run_id, True)
        return validate_run_log(data, self._location(run_id, ""), run_id)

    def _listed_run_log(self, run_id: str) -> RunLog:
        """The run-level fields (``steps`` empty): one document per run, whatever it holds."""
        return self._run_fields(run_id)

    def get_run_log_json(self, run_id: str) -> bytes:
        self._check(run_id)
        with self._run_must_exist(run_id):
            data, _ = self._read_full(run_id, False)
        return data

    def salvage_run_log(self, run_id: str) -> SalvagedRunLog:
        """Read a damaged run without its corrupt documents and records, and say which were left
        out."""
        self._check(run_id)
        with self._run_must_exist(run_id):
            data, skipped = self._read_full(run_id, True)
        run_log = validate_run_log(data, self._location(run_id, ""), run_id)
        return SalvagedRunLog(run_log=run_log, skipped=skipped)

    def put_run_log(self, run_log: RunLog) -> None:
        """Store the run-level fields, and every step and branch the run log carries."""
        run_log = _own(RunLog, run_log)
        run_id = self._check(run_log.run_id)
        fields = json_of(run_log, run_id, exclude={"steps"})
        created = json_of(run_log.model_copy(update={"steps": {}}), run_id)
        changes = [Change("run-set", "", fields, keys=_keys(run_log, exclude="steps"))]
        ended_branches: list[str] = []
        for step in run_log.steps.values():
            changes += _step_changes(step, run_id, ended_branches)
        self._prepare(run_id, created)
        self._store(run_id, changes)
        if run_log.status in ENDED_STATUSES:
            self._end(run_id)  # which tells the index
            return
        for branch in ended_branches:
            self._end(run_id, branch)
        self._index_note(run_id)

    def update_run_log_status(self, run_id: str, status: str) -> None:
        self._check(run_id)
        body = json_of({"status": status}, run_id)
        self._store(run_id, [Change("run-set", "", body, keys=("status",))])
        if status in ENDED_STATUSES:
            self._end(run_id)  # which tells the index
        else:
            self._index_note(run_id)

    def get_run_config(self, run_id: str) -> dict[str, Any]:
        return self._run_fields(run_id).run_config

    def set_run_config(self, run_id: str, run_config: dict[str, Any]) -> None:
        self._check(run_id)
        body = json_of({"run_config": run_config}, run_id)
        self._store(run_id, [Change("run-merge", "", body, keys=("run_config",))])

    # --- parameters -------------------------------------------------------------------------

    def get_parameters(self, run_id: str, internal_branch_name: str = "") -> dict[str, Any]:
        if not internal_branch_name:
            return self._run_fields(run_id).parameters
        return self._branch_document(internal_branch_name, run_id, _BranchParameters).parameters

    def set_parameters(
        self,
        run_id: str,
        parameters: Mapping[str, Any],
        internal_branch_name: str = "",
    ) -> None:
        """Add or overwrite parameters, atomically with respect to every other writer."""
        self._check(run_id)
        body = json_of(_Parameters(parameters=_own_parameters(parameters)), run_id)
        if not internal_branch_name:
            self._store(run_id, [Change("run-merge", "", body, keys=("parameters",))])
            return
        name = validate_internal_name(internal_branch_name, run_id=run_id)
        branches: set[tuple[str, str]] = self.__pydantic_private__["_known_branches"]  # type: ignore[index]
        exists = (run_id, name) in branches
        if not exists:
            with self._run_must_exist(run_id):
                exists = self._has_branch(run_id, name)
            if exists:
                branches.add((run_id, name))
        if not exists:
            location = self._location(run_id, chunk_name("BranchLog", name, run_id))
            raise BranchLogNotFoundError(run_id, name, path=location)
        self._store(run_id, [Change("branch-merge", name, body, keys=("parameters",))])

    # --- steps ------------------------------------------------------------------------------

    def get_step_log(self, internal_name: str, run_id: str) -> StepLog:
        self._check(run_id)
        name = validate_internal_name(internal_name, run_id=run_id)
        with self._run_must_exist(run_id):
            data = self._read_step(run_id, name)
            if data is None and not self._run_exists(run_id):
                raise ChunkNotFoundError(f"run {run_id!r} does not exist", run_id=run_id)
        if data is None:
            raise StepLogNotFoundError(run_id, name, path=self._location(run_id, ""))
        return self._validated(StepLog, data, run_id, chunk_name("StepLog", name, run_id))

    def add_step_log(self, step_log: StepLog, run_id: str) -> None:
        """Store a step; one whose branch is not stored is refused with BranchLogNotFoundError
        (as runnable refuses it)."""
        self._check(run_id)
        ended: list[str] = []
        changes = _step_changes(step_log, run_id, ended)
        missing = self._missing_branch_of_step(run_id, changes[0].target)
        if missing is not None:
            location = self._location(run_id, chunk_name("BranchLog", missing, run_id))
            raise BranchLogNotFoundError(run_id, missing, path=location)
        self._store(run_id, changes)
        for branch in ended:
            self._end(run_id, branch)

    # --- branches ---------------------------------------------------------------------------

    def get_branch_log(self, internal_branch_name: str, run_id: str) -> BranchLog | RunLog:
        """The branch with its direct steps (as runnable's chunked store gives it), or the run
        log itself for ``""``."""
        if not internal_branch_name:
            return self.get_run_log_by_id(run_id)
        return self._branch_document(internal_branch_name, run_id, BranchLog)

    def _branch_document(
        self, internal_branch_name: str, run_id: str, model: type[_Model]
    ) -> _Model:
        """Branch ``internal_branch_name`` as it reads now (its document and the records not
        folded into it yet), validated as ``model``."""
        self._check(run_id)
        name = validate_internal_name(internal_branch_name, run_id=run_id)
        with self._run_must_exist(run_id):
            data = self._read_branch(run_id, name)
            if data is None and not self._run_exists(run_id):
                raise ChunkNotFoundError(f"run {run_id!r} does not exist", run_id=run_id)
        document = chunk_name("BranchLog", name, run_id)
        if data is None:
            raise BranchLogNotFoundError(run_id, name, path=self._location(run_id, document))
        return self._validated(model, data, run_id, document)

    def add_branch_log(self, branch_log: BranchLog | RunLog, run_id: str) -> None:
        """Store a branch's fields, and any steps it carries; a branch that ends is folded."""
        if isinstance(branch_log, RunLog) or type(branch_log).__name__ == "RunLog":
            self.put_run_log(branch_log)  # type: ignore[arg-type]
            return
        self._check(run_id)
        ended: list[str] = []
        changes = _branch_changes(branch_log, run_id, ended)
        name = changes[0].target
        if "." not in name:
            # A branch's name is <step>.<branch>: one without a dot would make the run corrupt.
            raise BranchLogNotFoundError(run_id, name, path=self._location(run_id, ""))
        # A branch whose step is not stored is kept, as runnable's chunked stores keep it: a
        # reader makes the step up, so the branch is not lost (a write of the step lost to a
        # power cut without fsync, say).
        self._store(run_id, changes)
        for branch in ended:
            self._end(run_id, branch)

    # --- jobs -------------------------------------------------------------------------------

    def get_job_log(self, run_id: str) -> JobLog:
        run_log = self._run_fields(run_id)
        if run_log.job is None:
            raise JobLogNotFoundError(run_id, path=self._location(run_id, ""))
        return run_log.job

    def add_job_log(self, run_id: str, job_log: JobLog) -> None:
        self._check(run_id)
        job = _own(JobLog, job_log)
        body = json_of(_JobPatch(job=job, status=job.status), run_id)
        self._store(run_id, [Change("run-set", "", body, keys=("job", "status"))])
        if job.status in ENDED_STATUSES:
            self._end(run_id)  # which tells the index
        else:
            self._index_note(run_id)

    # --- folding ------------------------------------------------------------------------------

    def unfolded_journals(self, run_id: str) -> list[tuple[str, int]]:
        """Journals of the run holding writes not folded into its documents yet (name, size in
        bytes); a store without journals has none."""
        self._check(run_id)
        if not self._run_exists(run_id):
            raise RunLogNotFoundError(run_id, path=self._location(run_id, ""))
        return []

    def fold(self, run_id: str) -> None:
        """Fold everything the run holds into runnable's documents, as the end of the run does:
        for a run abandoned before its end (killed), so runnable's reader sees all of it."""
        self._check(run_id)
        self._end(run_id)


# --- models into changes ------------------------------------------------------------------------


def _dot_prefixes(name: str) -> list[str]:
    """``a.b.c`` -> ``["a.b", "a"]``: the names a node's parent may have, longest first (an
    empty one names nothing)."""
    parts = name.split(".")
    prefixes = (".".join(parts[:k]) for k in range(len(parts) - 1, 0, -1))
    return [prefix for prefix in prefixes if prefix]


def _keys(model: BaseModel, exclude: str) -> tuple[str, ...]:
    names = [*type(model).model_fields, *(model.model_extra or {})]
    return tuple(name for name in names if name != exclude)


def _step_changes(
    step_log: Any, run_id: str, ended: list[str], carried: bool = False
) -> list[Change]:
    """A step put whole (without its branches), and each branch it carries."""
    step = _own(StepLog, step_log)
    name = validate_internal_name(step.internal_name, run_id=run_id)
    if step.branches:
        body = json_of(step.model_copy(update={"branches": {}}), run_id)
    else:
        body = json_of(step, run_id)
    changes = [Change("step-put", name, body, model=step, carried=carried)]
    for branch in step.branches.values():
        changes += _branch_changes(branch, run_id, ended, carried=True)
    return changes


def _branch_changes(
    branch_log: Any, run_id: str, ended: list[str], carried: bool = False
) -> list[Change]:
    """A branch put whole (without its steps), and each step it carries."""
    branch = _own(BranchLog, branch_log)
    name = validate_internal_name(branch.internal_name, run_id=run_id)
    if branch.steps:
        body = json_of(branch.model_copy(update={"steps": {}}), run_id)
    else:
        body = json_of(branch, run_id)
    changes = [Change("branch-put", name, body, model=branch, carried=carried)]
    for step in branch.steps.values():
        changes += _step_changes(step, run_id, ended, carried=True)
    if branch.status in ENDED_STATUSES:
        ended.append(name)
    return changes


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


__all__ = ["Change", "ChunkedRunLogStore", "chunk_name"]
