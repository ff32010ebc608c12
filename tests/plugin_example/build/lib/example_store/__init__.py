"""A third-party run log store, registered through the entry point group of runlog-store."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from runlog_store import BaseRunLogStore, RunLog
from runlog_store.exceptions import RunLogExistsError, RunLogNotFoundError

_DATABASE: dict[str, str] = {}


class ExampleDatabaseStore(BaseRunLogStore):
    service_name: str = "example-db"

    connection_string: str = Field(..., description="where the database is")
    table_name: str = "runs"

    def get_summary(self) -> dict[str, Any]:
        return {"Type": self.service_name, "Table": self.table_name}

    def create_run_log(
        self,
        run_id: str,
        dag_hash: str = "",
        use_cached: bool = False,
        tag: str = "",
        original_run_id: str = "",
        status: str = "CREATED",
    ) -> RunLog:
        if run_id in _DATABASE:
            raise RunLogExistsError(run_id)
        run_log = RunLog(run_id=run_id, dag_hash=dag_hash, tag=tag, status=status)
        self.put_run_log(run_log)
        return run_log

    def get_run_log_by_id(self, run_id: str, full: bool = False) -> RunLog:
        try:
            return RunLog.model_validate_json(_DATABASE[run_id])
        except KeyError:
            raise RunLogNotFoundError(run_id) from None

    def put_run_log(self, run_log: RunLog) -> None:
        _DATABASE[run_log.run_id] = run_log.model_dump_json()

    def list_run_ids(self) -> list[str]:
        return list(_DATABASE)


class NotAStore:
    pass
