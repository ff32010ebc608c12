"""``file-system``: one JSON file per run, the simplest store that survives the process."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import Field, PrivateAttr

from runlog_store import _core
from runlog_store._paths import ensure_folder, validate_run_id
from runlog_store.exceptions import (
    ChunkExistsError,
    RunLogExistsError,
    RunLogNotFoundError,
)
from runlog_store.models import RunLog
from runlog_store.stores.base import check_nesting, json_of
from runlog_store.stores.document import DocumentRunLogStore

if TYPE_CHECKING:
    from runlog_store.search.index import RunIndex


class FileSystemRunLogStore(DocumentRunLogStore):
    """``<log_folder>/<run_id>.json``, the whole run log in one file (docs/format.md).

    Every change is a read-modify-write of that file under an inter-process lock, written
    atomically, so concurrent writers lose nothing and a crash never tears the file. Each write
    costs a copy of the run's bytes (the Rust core changes them in place of pydantic): large or
    parallel runs belong in ``chunked-fs``.
    """

    service_name: str = "file-system"
    supports_parallel_writes: bool = True

    log_folder: str = Field(default=".run_log_store", min_length=1)
    fsync: bool = True
    lock_timeout: float = Field(default=60.0, gt=0)

    _cleaned: bool = PrivateAttr(default=False)

    def location(self) -> str:
        return self.log_folder

    def _path(self, run_id: str) -> str:
        return os.path.join(self.log_folder, validate_run_id(run_id) + ".json")

    def _lock_path(self, run_id: str) -> str:
        return os.path.join(self.log_folder, f".{run_id}.lock")

    def _write(self, run_id: str, data: bytes, *, exclusive: bool = False) -> None:
        if not self._cleaned:
            # Temp files of writers killed mid-write go at this process's first write.
            _core.clean_temp_files(self.log_folder)
            self._cleaned = True
        _core.write_atomic(
            self._path(run_id), data, fsync=self.fsync, exclusive=exclusive, run_id=run_id
        )

    # --- the document primitives ----------------------------------------------------------

    def _document_location(self, run_id: str) -> str:
        return self._path(run_id)

    def _read_document(self, run_id: str) -> bytes | None:
        return _core.read_file(self._path(run_id), run_id=run_id)

    def _update_document(self, run_id: str, change: Callable[[bytes], bytes]) -> None:
        path = self._path(run_id)
        if not os.path.isdir(self.log_folder):
            raise RunLogNotFoundError(run_id, path=path)
        with _core.FileLock(self._lock_path(run_id), self.lock_timeout, run_id):
            data = _core.read_file(path, run_id=run_id)
            if data is None:
                raise RunLogNotFoundError(run_id, path=path)
            self._write(run_id, change(data))

    def _create_run(self, run_log: RunLog) -> None:
        run_id = run_log.run_id
        document = json_of(run_log, run_id)
        check_nesting(run_id, "run", "", document)
        ensure_folder(self.log_folder, fsync=self.fsync, run_id=run_id)
        try:
            self._write(run_id, document, exclusive=True)
        except ChunkExistsError:
            raise RunLogExistsError(run_id, path=self._path(run_id)) from None

    def put_run_log(self, run_log: RunLog) -> None:
        run_id = validate_run_id(run_log.run_id)
        document = json_of(run_log, run_id)
        check_nesting(run_id, "run", "", document)
        ensure_folder(self.log_folder, fsync=self.fsync, run_id=run_id)
        with _core.FileLock(self._lock_path(run_id), self.lock_timeout, run_id):
            self._write(run_id, document)
        self._index_note(run_id)

    def _run_index(self) -> RunIndex:
        from runlog_store.search.index import RunIndex
        from runlog_store.search.sources import FolderSource

        return RunIndex(FolderSource(self, "file-system"))

    def list_run_ids(self) -> list[str]:
        try:
            entries = list(os.scandir(self.log_folder))
        except FileNotFoundError:
            return []
        runs: list[tuple[int, str]] = []
        for entry in entries:
            if entry.name.endswith(".json") and not entry.name.startswith("."):
                try:
                    # The entry itself, not what a link there points to (a loop, a FIFO): such
                    # a run is listed and found unreadable when it is read, as any damaged one.
                    stat = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                runs.append((stat.st_mtime_ns, entry.name[: -len(".json")]))
        return [run_id for _, run_id in sorted(runs, reverse=True)]

    def run_modified(self, run_id: str) -> float | None:
        try:
            return os.lstat(self._path(run_id)).st_mtime
        except FileNotFoundError:
            return None

    def delete_run(self, run_id: str) -> None:
        """Remove a run's file under its lock, so no writer is half-way through an update of
        it (a later update finds the run gone and says so)."""
        path = self._path(run_id)
        if not os.path.exists(path):
            raise RunLogNotFoundError(run_id, path=path)
        with _core.FileLock(self._lock_path(run_id), self.lock_timeout, run_id):
            try:
                os.remove(path)
            except FileNotFoundError:
                raise RunLogNotFoundError(run_id, path=path) from None
        with contextlib.suppress(FileNotFoundError):
            os.remove(self._lock_path(run_id))


__all__ = ["FileSystemRunLogStore"]
