"""``buffered``: run logs in memory, for tests and quick experiments."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from pydantic import PrivateAttr

from runlog_store._paths import validate_run_id
from runlog_store.exceptions import RunLogExistsError, RunLogNotFoundError
from runlog_store.models import CREATED, RunLog
from runlog_store.store import BaseRunLogStore, new_run_log


class BufferedRunLogStore(BaseRunLogStore):
    """Keeps every run in memory, safe across threads, gone when the process ends.

    Unlike runnable's buffered store it keeps several runs apart by run id, and hands out
    copies, so a caller that changes a returned run log does not change the store behind the
    lock's back.
    """

    service_name: str = "buffered"
    supports_parallel_writes: bool = True

    _runs: dict[str, RunLog] = PrivateAttr(default_factory=dict)
    _lock: threading.RLock = PrivateAttr(default_factory=threading.RLock)

    def get_summary(self) -> dict[str, Any]:
        return {"Type": self.service_name, "Location": "Not persisted"}

    def create_run_log(
        self,
        run_id: str,
        dag_hash: str = "",
        use_cached: bool = False,
        tag: str = "",
        original_run_id: str = "",
        status: str = CREATED,
    ) -> RunLog:
        run_log = new_run_log(run_id, dag_hash, use_cached, tag, original_run_id, status)
        with self._lock:
            if run_id in self._runs:
                raise RunLogExistsError(run_id)
            self._runs[run_id] = run_log.model_copy(deep=True)
        return run_log

    def get_run_log_by_id(self, run_id: str, full: bool = False) -> RunLog:
        with self._lock:
            try:
                return self._runs[run_id].model_copy(deep=True)
            except KeyError:
                raise RunLogNotFoundError(run_id) from None

    def put_run_log(self, run_log: RunLog) -> None:
        validate_run_id(run_log.run_id)
        with self._lock:
            self._runs[run_log.run_id] = run_log.model_copy(deep=True)

    @contextlib.contextmanager
    def _updating(self, run_id: str) -> Iterator[RunLog]:
        with self._lock:
            try:
                run_log = self._runs[run_id]
            except KeyError:
                raise RunLogNotFoundError(run_id) from None
            working = run_log.model_copy(deep=True)
            yield working
            self._runs[run_id] = working

    def list_run_ids(self) -> list[str]:
        with self._lock:
            return list(reversed(self._runs))

    def delete_run(self, run_id: str) -> None:
        with self._lock:
            if self._runs.pop(run_id, None) is None:
                raise RunLogNotFoundError(run_id)
