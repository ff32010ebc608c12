"""``BaseRunLogStore``: the store API of runnable 0.50, written once over a few primitives.

A store implements two methods, ``get_run_log_by_id`` and ``put_run_log``, and inherits the
rest; it says where it keeps runs with ``location()`` and creates runs atomically by overriding
``_create_run``. Every change to a run goes through :meth:`BaseRunLogStore._update`, a
read-modify-write of the whole run: a store that can lock (file-system), that has conditional
writes (minio) or that stores runs in pieces (chunked) overrides it (or ``_updating``) or the
methods themselves, and every inherited method becomes safe at once. Listing, deleting and
fast reads (``list_run_ids``, ``run_modified``, ``delete_run``, ``get_run_log_json``) are
optional. ``runlog_store.testing.StoreContract`` checks all of it against any store.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pydantic_core
from pydantic import BaseModel, ConfigDict, ValidationError

from runlog_store import _core
from runlog_store._paths import validate_run_id
from runlog_store.callbacks import NO_PROGRESS, Callback
from runlog_store.exceptions import (
    BranchLogNotFoundError,
    CorruptChunkError,
    JobLogNotFoundError,
    NestingTooDeepError,
    RunIdMismatchError,
    RunLogExistsError,
    RunLogNotFoundError,
)
from runlog_store.models import (
    CREATED,
    BranchLog,
    CodeIdentity,
    DataCatalog,
    JobLog,
    Parameter,
    RunLog,
    StepLog,
)

if TYPE_CHECKING:
    from runlog_store.ops.runs import RunSummary
    from runlog_store.search.index import RunIndex
    from runlog_store.search.paging import RunPage

# The most runs one page of a search may ask for: a caller wanting every run pages through them
# (``iter_runs``), and a page this big is already tens of megabytes of summaries.
MAX_PAGE_SIZE = 50_000

_log = logging.getLogger("runlog_store.search")


def new_run_log(
    run_id: str,
    dag_hash: str = "",
    use_cached: bool = False,
    tag: str = "",
    original_run_id: str = "",
    status: str = CREATED,
) -> RunLog:
    """The run log every store's ``create_run_log`` starts from (the run id checked first).

    Retry lineage (``use_cached``, ``original_run_id``) is kept when given, as the older
    layout recorded it; runnable 0.50 no longer does, so it is left out otherwise.
    """
    run_log = RunLog(run_id=validate_run_id(run_id), dag_hash=dag_hash, tag=tag, status=status)
    if use_cached:
        run_log.use_cached = True  # type: ignore[attr-defined]  # an extra field
    if original_run_id:
        run_log.original_run_id = original_run_id  # type: ignore[attr-defined]
    return run_log


def validate_run_log(data: bytes, path: str, run_id: str) -> RunLog:
    """Build a RunLog from stored JSON; a document that is not one is a CorruptChunkError, and
    one that names another run than ``run_id`` a RunIdMismatchError (a file copied or written
    under another run's name is never handed out as the run asked for).

    Validation allocates tens of thousands of objects for a large run and none of them form
    cycles, so the cyclic garbage collector, which would otherwise run many times over them, is
    paused meanwhile: that halves the time of a full read of a thousand-branch run.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        run_log = RunLog.model_validate_json(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "document"
        raise CorruptChunkError(
            f"{path} does not hold a valid run log ({where}: {err['msg']})",
            path=path,
            run_id=run_id,
        ) from exc
    finally:
        if collecting:
            gc.enable()
    if run_log.run_id != run_id:
        raise RunIdMismatchError(path=path, run_id=run_id, found=run_log.run_id)
    return run_log


def json_of(value: BaseModel | dict[str, Any], run_id: str, **dump: Any) -> bytes:
    """The JSON a store writes of a model (``dump``: its ``model_dump_json`` arguments) or of a
    dict of plain values, NaN and infinities as runnable writes them. A value nested deeper
    than pydantic serialises (far past what a run log may hold) is NestingTooDeepError."""
    try:
        if isinstance(value, BaseModel):
            return value.model_dump_json(**dump).encode()
        return pydantic_core.to_json(value, fallback=str)
    except pydantic_core.PydanticSerializationError as exc:
        if "depth" not in str(exc):
            raise
        raise NestingTooDeepError(
            f"a value written to run {run_id!r} nests too deep: deeper than it can be "
            f"written, past the {_core.MAX_NESTING} levels a run log may nest",
            run_id=run_id,
        ) from None


def check_nesting(run_id: str, kind: str, name: str, body: bytes) -> None:
    """Refuse a write that would take the run log past the nesting every reader reads back
    (``_core.MAX_NESTING``): NestingTooDeepError naming the run, the step or branch
    (``kind``: "run", "step", "branch"; ``name``: its internal name) and the place too deep."""
    _core.check_nesting(kind, name, body, run_id=run_id)


def _check_page_size(name: str, size: object) -> None:
    """ValueError unless ``size`` is a page size a search accepts (1 to MAX_PAGE_SIZE)."""
    if isinstance(size, bool) or not isinstance(size, int):
        raise ValueError(f"{name} must be a whole number, not {size!r}")
    if not 0 < size <= MAX_PAGE_SIZE:
        raise ValueError(
            f"{name} must be between 1 and {MAX_PAGE_SIZE:,}, not {size:,}; "
            "page through more runs with page_token (or iter_runs)"
        )


class SalvagedRunLog(BaseModel):
    """What ``salvage_run_log`` could read, and the chunks it had to leave out (path, reason)."""

    run_log: RunLog
    skipped: list[tuple[str, str]]


class BaseRunLogStore(ABC, BaseModel):
    """The interface every run log store offers, named and shaped as runnable's.

    Configuration keys are the pydantic fields of the subclass; unknown keys are refused.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    service_name: str = ""
    service_type: str = "run_log_store"
    supports_parallel_writes: bool = False

    # --- what a store must implement ------------------------------------------------------

    @abstractmethod
    def get_run_log_by_id(self, run_id: str, full: bool = False) -> RunLog:
        """The run log; with ``full`` every step and branch at every depth."""

    @abstractmethod
    def put_run_log(self, run_log: RunLog) -> None:
        """Store the run log as given (creating the run if needed)."""

    # --- what a store may implement to do better than the default ---------------------------

    def location(self) -> str:
        """Where the store keeps its runs, for summaries (never secrets)."""
        return type(self).__name__

    def _create_run(self, run_log: RunLog) -> None:
        """Store a new run; RunLogExistsError if its id is taken.

        The default checks, then puts: two processes creating the same run id at once could
        both succeed. Stores shared between processes override it with an exclusive create.
        """
        try:
            self.get_run_log_by_id(run_log.run_id)
        except RunLogNotFoundError:
            self.put_run_log(run_log)
            return
        raise RunLogExistsError(run_log.run_id)

    # --- the API, written once ----------------------------------------------------------------

    def get_summary(self) -> dict[str, Any]:
        """A short description of where the logs are, for run summaries (never secrets)."""
        return {"Type": self.service_name, "Location": self.location()}

    def create_run_log(
        self,
        run_id: str,
        dag_hash: str = "",
        use_cached: bool = False,
        tag: str = "",
        original_run_id: str = "",
        status: str = CREATED,
    ) -> RunLog:
        """Create and store a new run log; RunLogExistsError if the run id is taken."""
        run_log = new_run_log(run_id, dag_hash, use_cached, tag, original_run_id, status)
        self._create_run(run_log)
        self._index_note(run_log.run_id)
        return run_log

    # --- the read-modify-write every change goes through ----------------------------------

    @contextlib.contextmanager
    def _updating(self, run_id: str) -> Iterator[RunLog]:
        """Yield the full run log; what the caller changes in it is stored on exit.

        The default is not atomic across processes; stores that can be shared override it.
        """
        run_log = self.get_run_log_by_id(run_id, full=True)
        yield run_log
        self.put_run_log(run_log)

    def _update(self, run_id: str, change: Callable[[RunLog], None]) -> None:
        """Apply ``change`` to the full run log and store it, atomically where the store can.

        ``change`` may run more than once (a store with optimistic writes retries it on a fresh
        copy when another writer got there first), so it must only depend on its argument.
        """
        with self._updating(run_id) as run_log:
            change(run_log)
            # Judged on the whole run, as stored: what is acknowledged must read back.
            check_nesting(run_id, "run", "", json_of(run_log, run_id))

    # --- run level --------------------------------------------------------------------------

    def update_run_log_status(self, run_id: str, status: str) -> None:
        def change(run_log: RunLog) -> None:
            run_log.status = status

        self._update(run_id, change)
        self._index_note(run_id)

    def get_parameters(self, run_id: str, internal_branch_name: str = "") -> dict[str, Parameter]:
        """Root parameters of the run, or those of one branch's scope."""
        if not internal_branch_name:
            return self.get_run_log_by_id(run_id).parameters
        run_log = self.get_run_log_by_id(run_id, full=True)
        return run_log.find_branch(internal_branch_name).parameters

    def set_parameters(
        self,
        run_id: str,
        parameters: dict[str, Parameter],
        internal_branch_name: str = "",
    ) -> None:
        """Add or overwrite parameters (``dict.update``) at the root or in one branch."""

        def change(run_log: RunLog) -> None:
            if internal_branch_name:
                run_log.find_branch(internal_branch_name).parameters.update(parameters)
            else:
                run_log.parameters.update(parameters)

        self._update(run_id, change)

    def get_run_config(self, run_id: str) -> dict[str, Any]:
        return self.get_run_log_by_id(run_id).run_config

    def set_run_config(self, run_id: str, run_config: dict[str, Any]) -> None:
        """Merge ``run_config`` into the stored one (``dict.update``)."""

        def change(run_log: RunLog) -> None:
            run_log.run_config.update(run_config)

        self._update(run_id, change)

    # --- steps --------------------------------------------------------------------------------

    def create_step_log(self, name: str, internal_name: str) -> StepLog:
        """A new, not yet stored step log in state CREATED."""
        return StepLog(name=name, internal_name=internal_name, status=CREATED)

    def get_step_log(self, internal_name: str, run_id: str) -> StepLog:
        run_log = self.get_run_log_by_id(run_id, full=True)
        return run_log.find_step(internal_name)

    def add_step_log(self, step_log: StepLog, run_id: str) -> None:
        """Store a step (replacing a stored step of the same internal name)."""
        self._update(run_id, lambda run_log: run_log.place_step(step_log))

    # --- branches -----------------------------------------------------------------------------

    def create_branch_log(
        self, internal_branch_name: str, parameters: dict[str, Parameter] | None = None
    ) -> BranchLog:
        """A new, not yet stored branch log in state CREATED."""
        branch = BranchLog(internal_name=internal_branch_name, status=CREATED)
        if parameters:
            branch.parameters.update(parameters)
        return branch

    def get_branch_log(self, internal_branch_name: str, run_id: str) -> BranchLog | RunLog:
        """The branch, or the run log itself for ``""`` (runnable's convention)."""
        if not internal_branch_name:
            return self.get_run_log_by_id(run_id)
        return self.get_run_log_by_id(run_id, full=True).find_branch(internal_branch_name)

    def add_branch_log(self, branch_log: BranchLog | RunLog, run_id: str) -> None:
        """Store a branch (a RunLog is stored as the run, runnable's convention)."""
        if isinstance(branch_log, RunLog):
            self.put_run_log(branch_log)
            return
        if "." not in branch_log.internal_name:
            raise BranchLogNotFoundError(run_id, branch_log.internal_name)
        self._add_branch(branch_log, run_id)

    def _add_branch(self, branch_log: BranchLog, run_id: str) -> None:
        """Store a branch whose name is a branch's: the whole run read, changed and put back,
        unless the store can place it in the stored run itself."""
        self._update(run_id, lambda run_log: run_log.place_branch(branch_log))

    # --- factories runnable's executors call ---------------------------------------------------

    def create_code_identity(self) -> CodeIdentity:
        return CodeIdentity()

    def create_data_catalog(self, name: str) -> DataCatalog:
        return DataCatalog(name=name)

    # --- jobs -----------------------------------------------------------------------------------

    def create_job_log(self) -> JobLog:
        return JobLog(status=CREATED)

    def get_job_log(self, run_id: str) -> JobLog:
        run_log = self.get_run_log_by_id(run_id)
        if run_log.job is None:
            raise JobLogNotFoundError(run_id)
        return run_log.job

    def add_job_log(self, run_id: str, job_log: JobLog) -> None:
        """Store the job and make its status the run's status (as runnable does)."""

        def change(run_log: RunLog) -> None:
            run_log.job = job_log
            run_log.status = job_log.status

        self._update(run_id, change)
        self._index_note(run_id)

    # --- reading many runs, and fast reads ---------------------------------------------------

    def list_run_ids(self) -> list[str]:
        """Ids of the stored runs, newest first where the store can tell."""
        raise NotImplementedError(f"{type(self).__name__} cannot list its runs")

    def run_modified(self, run_id: str) -> float | None:
        """When any part of the run was last written (seconds since the epoch), or None where
        the store cannot tell: pruning keeps a run that is still being written by this."""
        return None

    def delete_run(self, run_id: str) -> None:
        """Remove a run with everything stored for it."""
        raise NotImplementedError(f"{type(self).__name__} cannot delete runs")

    def get_run_logs(
        self,
        run_ids: list[str] | None = None,
        tag: str | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[RunLog]:
        """Run logs (not full) of the given or all runs that match ``tag`` and ``status``."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must not be negative, not {limit}")
        found: list[RunLog] = []
        for run_id in run_ids if run_ids is not None else self.list_run_ids():
            if limit is not None and len(found) >= limit:
                break
            try:
                run_log = self._listed_run_log(run_id)
            except RunLogNotFoundError:
                if run_ids is not None:
                    raise
                continue  # deleted while we listed
            if tag is not None and run_log.tag != tag:
                continue
            if status is not None and run_log.status != status:
                continue
            found.append(run_log)
        return found

    def _listed_run_log(self, run_id: str) -> RunLog:
        """What ``get_run_logs`` gives of one run: its run log, not full (a store that can read
        the run-level fields alone does so)."""
        return self.get_run_log_by_id(run_id)

    def get_run_log_json(self, run_id: str) -> bytes:
        """The full run log as JSON bytes (stores with a Rust merger skip pydantic entirely)."""
        return self.get_run_log_by_id(run_id, full=True).model_dump_json().encode()

    def salvage_run_log(self, run_id: str) -> SalvagedRunLog:
        """Read as much of a damaged run as possible, listing what had to be left out."""
        return SalvagedRunLog(run_log=self.get_run_log_by_id(run_id, full=True), skipped=[])

    # --- searching runs ------------------------------------------------------------------------

    def search_runs(
        self,
        filter: str | None = None,
        order_by: str | Sequence[str] | None = None,
        max_results: int = 100,
        page_token: str | None = None,
        callback: Callback = NO_PROGRESS,
    ) -> RunPage:
        """One page of the summaries of the runs that match ``filter``, in ``order_by`` order
        (docs/search.md: the language; default newest start first), and the token of the next
        page (None on the last one).

        A store with a run index (every built-in store: ``_run_index``) answers from it after
        bringing it up to date with what is stored; any other store reads every run (a scan).
        Both give the same answer: the index is never the truth, only a faster way to it.
        """
        from runlog_store.search import paging, query

        _check_page_size("max_results", max_results)
        expr = query.parse_filter(filter)
        order = query.parse_order_by(order_by)
        offset = 0
        if page_token is not None:
            offset = paging.decode_page_token(page_token, filter or "", order)
        found: list[RunSummary] | None = None
        index = self._run_index()
        if index is not None:
            # max_results + 1: whether there is a next page, without counting every match.
            found = index.search(expr, order, offset, max_results + 1, callback)
        if found is None:
            found = self._scan(expr, order, callback)[offset : offset + max_results + 1]
        token = None
        if len(found) > max_results:
            found = found[:max_results]
            token = paging.encode_page_token(offset + max_results, filter or "", order)
        return paging.RunPage(runs=found, next_page_token=token)

    def iter_runs(
        self,
        filter: str | None = None,
        order_by: str | Sequence[str] | None = None,
        page_size: int = 1000,
    ) -> Iterator[RunSummary]:
        """Every run that matches ``filter`` in ``order_by`` order, read a page at a time from
        the store's index (brought up to date once, for the first page); a store without an
        index reads its runs once."""
        _check_page_size("page_size", page_size)
        from runlog_store.search import query

        expr, order = query.parse_filter(filter), query.parse_order_by(order_by)
        index = self._run_index()
        offset = 0
        while index is not None:
            # The index is brought up to date for the first page; the next ones are read from
            # it as it is then, not each from every run's stamp again.
            found = index.search(expr, order, offset, page_size + 1, reconcile=offset == 0)
            if found is None:
                break  # the index cannot answer: the rest from a read of every run
            yield from found[:page_size]
            if len(found) <= page_size:
                return
            offset += page_size
        yield from self._scan(expr, order)[offset:]

    def _scan(self, expr: Any, order: Any, callback: Callback = NO_PROGRESS) -> list[RunSummary]:
        """Every matching run in order, from a read of every run: the answer of a search on a
        store without an index, and the one an index must equal."""
        from runlog_store.ops.runs import read_summary, stored_run_ids
        from runlog_store.search import query

        run_ids = stored_run_ids(self)
        found = []
        with callback.phase("reading runs", len(run_ids), "items"):
            for run_id in run_ids:
                try:
                    summary = read_summary(self, run_id)
                except RunLogNotFoundError:
                    continue  # deleted while we listed
                finally:
                    callback.advance(1)
                if query.matches(expr, summary):
                    found.append(summary)
        return query.sort_runs(found, order)

    def _run_index(self) -> RunIndex | None:
        """The index searches of this store use, or None for a scan (the default: a store of
        another package is searched by reading its runs)."""
        return None

    def _index_note(self, run_id: str) -> None:
        """Tell the store's run index that a run was created, changed status or ended, so the
        next search finds it summarized already. Only an index that exists is updated (a store
        never searched pays nothing), and nothing here may fail the write that called it: the
        next search reconciles the index with what is stored anyway."""
        try:
            index = self._run_index()
            if index is not None:
                index.note(run_id)
        except Exception as exc:  # the write it follows has succeeded
            _log.warning("run index of %s not updated for run %r: %s", self.location(), run_id, exc)
