"""The runs of a runnable project, whichever of runnable's local layouts each one has.

runnable's default store is ``file-system`` (``<log_folder>/<run_id>.json``), runlog-store's is
``chunked-fs`` (``<log_folder>/<run_id>/``), and both use ``.run_log_store``: a project that
switched keeps runs of both kinds in one folder. :class:`ProjectRunLogStore` reads and writes
each run where it is (a new run is created chunked), lists them all newest first and says
which layout each one has (:meth:`ProjectRunLogStore.layout`). It is what ``runlog`` uses in a
folder with no configuration.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, PrivateAttr

import runlog_store
from runlog_store import (
    BaseRunLogStore,
    BranchLog,
    JobLog,
    Parameter,
    RunLog,
    SalvagedRunLog,
    StepLog,
    _core,
)
from runlog_store._paths import validate_run_id
from runlog_store.exceptions import RunLogExistsError, RunLogNotFoundError

if TYPE_CHECKING:
    from runlog_store.search.index import RunIndex

Layout = Literal["chunked-fs", "file-system"]
# A run id present in both layouts (a copy made by hand, say) is read from the chunked one:
# it is the layout runlog-store writes.
LAYOUTS: tuple[Layout, ...] = ("chunked-fs", "file-system")


class ProjectRunLogStore(BaseRunLogStore):
    """Runs in ``log_folder`` in runnable's ``file-system`` layout and in ``chunked-fs``."""

    service_name: str = "runnable-project"
    supports_parallel_writes: bool = True

    log_folder: str = Field(default=".run_log_store", min_length=1)
    fsync: bool = True
    lock_timeout: float = Field(default=60.0, gt=0)

    _stores: dict[Layout, BaseRunLogStore] = PrivateAttr(default_factory=dict)

    def store(self, layout: Layout) -> BaseRunLogStore:
        """The store of one layout on this folder."""
        if layout not in self._stores:
            self._stores[layout] = runlog_store.create_store(
                layout, log_folder=self.log_folder, fsync=self.fsync, lock_timeout=self.lock_timeout
            )
        return self._stores[layout]

    def layout(self, run_id: str) -> Layout:
        """The layout run ``run_id`` is stored in; RunLogNotFoundError naming both places."""
        folder = os.path.join(self.log_folder, validate_run_id(run_id))
        if os.path.isfile(os.path.join(folder, _core.RUN_LOG_FILE)):
            return "chunked-fs"
        if os.path.isfile(folder + ".json"):
            return "file-system"
        raise RunLogNotFoundError(run_id, path=f"{folder}{os.sep} and {folder}.json")

    def _holding(self, run_id: str) -> BaseRunLogStore:
        return self.store(self.layout(run_id))

    def _holding_or_new(self, run_id: str) -> BaseRunLogStore:
        try:
            return self._holding(run_id)
        except RunLogNotFoundError:
            return self.store("chunked-fs")

    # --- reading many runs -------------------------------------------------------------------

    def list_run_ids(self) -> list[str]:
        """Every run of both layouts, most recently written first."""
        newest: dict[str, float] = {}
        for layout in LAYOUTS:
            store = self.store(layout)
            for run_id in store.list_run_ids():
                if run_id in newest:
                    continue
                modified = store.run_modified(run_id)
                if modified is not None:
                    newest[run_id] = modified
        return sorted(newest, key=lambda run_id: newest[run_id], reverse=True)

    def layouts(self) -> dict[str, Layout]:
        """Every run id with its layout, most recently written first."""
        return {run_id: self.layout(run_id) for run_id in self.list_run_ids()}

    def run_modified(self, run_id: str) -> float | None:
        try:
            return self._holding(run_id).run_modified(run_id)
        except RunLogNotFoundError:
            return None

    def delete_run(self, run_id: str) -> None:
        self._holding(run_id).delete_run(run_id)

    # --- one run, where it is ------------------------------------------------------------------

    def location(self) -> str:
        return self.log_folder

    def _run_index(self) -> RunIndex:
        from runlog_store.search.index import RunIndex
        from runlog_store.search.sources import FolderSource

        return RunIndex(FolderSource(self, None))

    def _create_run(self, run_log: RunLog) -> None:
        """A new run, in the chunked layout, unless the id is taken in either layout."""
        try:
            self.layout(run_log.run_id)
        except RunLogNotFoundError:
            self.store("chunked-fs")._create_run(run_log)  # exclusive: a race is refused
            return
        raise RunLogExistsError(run_log.run_id)

    def get_run_log_by_id(self, run_id: str, full: bool = False) -> RunLog:
        return self._holding(run_id).get_run_log_by_id(run_id, full)

    def get_run_log_json(self, run_id: str) -> bytes:
        return self._holding(run_id).get_run_log_json(run_id)

    def salvage_run_log(self, run_id: str) -> SalvagedRunLog:
        return self._holding(run_id).salvage_run_log(run_id)

    def put_run_log(self, run_log: RunLog) -> None:
        self._holding_or_new(run_log.run_id).put_run_log(run_log)

    def update_run_log_status(self, run_id: str, status: str) -> None:
        self._holding(run_id).update_run_log_status(run_id, status)

    def get_parameters(self, run_id: str, internal_branch_name: str = "") -> dict[str, Parameter]:
        return self._holding(run_id).get_parameters(run_id, internal_branch_name)

    def set_parameters(
        self, run_id: str, parameters: dict[str, Parameter], internal_branch_name: str = ""
    ) -> None:
        self._holding(run_id).set_parameters(run_id, parameters, internal_branch_name)

    def get_run_config(self, run_id: str) -> dict[str, Any]:
        return self._holding(run_id).get_run_config(run_id)

    def set_run_config(self, run_id: str, run_config: dict[str, Any]) -> None:
        self._holding(run_id).set_run_config(run_id, run_config)

    def get_step_log(self, internal_name: str, run_id: str) -> StepLog:
        return self._holding(run_id).get_step_log(internal_name, run_id)

    def add_step_log(self, step_log: StepLog, run_id: str) -> None:
        self._holding(run_id).add_step_log(step_log, run_id)

    def get_branch_log(self, internal_branch_name: str, run_id: str) -> BranchLog | RunLog:
        return self._holding(run_id).get_branch_log(internal_branch_name, run_id)

    def add_branch_log(self, branch_log: BranchLog | RunLog, run_id: str) -> None:
        self._holding(run_id).add_branch_log(branch_log, run_id)

    def get_job_log(self, run_id: str) -> JobLog:
        return self._holding(run_id).get_job_log(run_id)

    def add_job_log(self, run_id: str, job_log: JobLog) -> None:
        self._holding(run_id).add_job_log(run_id, job_log)


__all__ = ["LAYOUTS", "Layout", "ProjectRunLogStore"]
