"""``buffered``: run logs in memory, for tests and quick experiments."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from pydantic import PrivateAttr

from runlog_store._paths import validate_run_id
from runlog_store.exceptions import RunLogExistsError, RunLogNotFoundError
from runlog_store.models import RunLog
from runlog_store.stores.base import BaseRunLogStore, check_nesting, json_of


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

    def location(self) -> str:
        return "Not persisted"

    def _create_run(self, run_log: RunLog) -> None:
        with self._lock:
            if run_log.run_id in self._runs:
                raise RunLogExistsError(run_log.run_id)
            self._runs[run_log.run_id] = run_log.model_copy(deep=True)

    def get_run_log_by_id(self, run_id: str, full: bool = False) -> RunLog:
        with self._lock:
            try:
                return self._runs[run_id].model_copy(deep=True)
            except KeyError:
                raise RunLogNotFoundError(run_id) from None

    def put_run_log(self, run_log: RunLog) -> None:
        validate_run_id(run_log.run_id)
        check_nesting(run_log.run_id, "run", "", json_of(run_log, run_log.run_id))
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
