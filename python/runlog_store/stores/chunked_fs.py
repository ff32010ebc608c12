"""``chunked-fs``: one folder per run, one file per step and per branch (docs/format.md).

The chunked layout itself is in ``_chunked.py``; this module is its storage on a file system:
every document written by the Rust core's atomic writer, read-modify-writes under the run's
``flock``, full reads listed and merged in Rust.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator

from pydantic import Field, PrivateAttr

from runlog_store import _core
from runlog_store._paths import ensure_folder, remove_folder_atomically, validate_run_id
from runlog_store.exceptions import (
    ChunkExistsError,
    ChunkNotFoundError,
    RunLogExistsError,
    RunLogNotFoundError,
    StorageError,
)
from runlog_store.stores.chunked import (
    LAYOUT_MARKER,
    LAYOUT_MARKER_TEXT,
    RUN_LOG_FILE,
    ChunkedRunLogStore,
)

LOCK_FILE = ".lock"


class ChunkedFileSystemRunLogStore(ChunkedRunLogStore):
    """Run logs in chunks under ``<log_folder>/<run_id>/``; safe for parallel writers."""

    service_name: str = "chunked-fs"

    log_folder: str = Field(default=".run_log_store", min_length=1)
    fsync: bool = True
    lock_timeout: float = Field(default=60.0, gt=0)

    # Runs whose leftover temp files this process has cleaned (at its first write to each).
    _cleaned: set[str] = PrivateAttr(default_factory=set)

    def location(self) -> str:
        return self.log_folder

    def run_folder(self, run_id: str) -> str:
        return os.path.join(self.log_folder, validate_run_id(run_id))

    # --- storage primitives ---------------------------------------------------------------

    def _doc_location(self, run_id: str, name: str) -> str:
        return os.path.join(self.run_folder(run_id), name) if name else self.run_folder(run_id)

    def _doc_read(self, run_id: str, name: str) -> bytes | None:
        return _core.read_file(self._doc_location(run_id, name), run_id=run_id)

    def _clean_once(self, run_id: str) -> None:
        """Remove temp files of writers that died mid-write, once per run and process: one
        listing, not one per write."""
        if run_id not in self._cleaned:
            _core.clean_temp_files(self.run_folder(run_id))
            self._cleaned.add(run_id)

    def _doc_write(self, run_id: str, name: str, data: bytes, internal_name: str = "") -> None:
        self._clean_once(run_id)
        path = self._doc_location(run_id, name)
        with _run_folder_must_exist(run_id, path):
            _core.write_atomic(path, data, fsync=self.fsync, run_id=run_id)

    def _doc_patch(
        self,
        run_id: str,
        name: str,
        patch: bytes,
        merge_keys: tuple[str, ...] = (),
        create: bytes | None = None,
    ) -> bytes:
        self._clean_once(run_id)
        path = self._doc_location(run_id, name)
        with _run_folder_must_exist(run_id, path):
            return _core.patch_json(
                path,
                patch,
                lock_path=self._doc_location(run_id, LOCK_FILE),
                merge_keys=merge_keys,
                create=create,
                fsync=self.fsync,
                lock_timeout=self.lock_timeout,
                run_id=run_id,
            )

    def _run_create(self, run_id: str, run_log: bytes) -> None:
        folder = self.run_folder(run_id)
        ensure_folder(folder, fsync=self.fsync, run_id=run_id)
        self._clean_once(run_id)
        try:
            _core.write_atomic(
                os.path.join(folder, RUN_LOG_FILE),
                run_log,
                fsync=self.fsync,
                exclusive=True,
                run_id=run_id,
            )
        except ChunkExistsError:
            raise RunLogExistsError(run_id, path=os.path.join(folder, RUN_LOG_FILE)) from None
        _core.write_atomic(
            os.path.join(folder, LAYOUT_MARKER), LAYOUT_MARKER_TEXT, fsync=self.fsync, run_id=run_id
        )

    def _run_prepare(self, run_id: str) -> None:
        ensure_folder(self.run_folder(run_id), fsync=self.fsync, run_id=run_id)

    def _run_merge(self, run_id: str, salvage: bool) -> tuple[bytes, list[tuple[str, str]]]:
        return _core.merge_run(self.run_folder(run_id), salvage=salvage, run_id=run_id)

    def _run_exists(self, run_id: str) -> bool:
        return os.path.exists(self._doc_location(run_id, RUN_LOG_FILE))

    def _run_is_own_layout(self, run_id: str) -> bool:
        return os.path.exists(self._doc_location(run_id, LAYOUT_MARKER))

    # --- listing and deleting ---------------------------------------------------------------

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

    def run_modified(self, run_id: str) -> float | None:
        """The newest chunk's time: branches are written to their own files, so the run's
        ``RunLog.json`` alone can be old while the run is busy."""
        try:
            entries = list(os.scandir(self.run_folder(run_id)))
        except (FileNotFoundError, NotADirectoryError):
            return None
        times = []
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):
                times.append(entry.stat().st_mtime)
        return max(times, default=None)

    def delete_run(self, run_id: str) -> None:
        """Remove a run's folder with every chunk in it.

        The folder is first renamed to a hidden name, one atomic step: readers and writers see
        the whole run or no run (a writer then fails with "not found"), never half of one.
        """
        folder = self.run_folder(run_id)
        if not os.path.exists(os.path.join(folder, RUN_LOG_FILE)):
            raise RunLogNotFoundError(run_id, path=folder)
        try:
            remove_folder_atomically(folder, run_id=run_id)
        except FileNotFoundError:
            raise RunLogNotFoundError(run_id, path=folder) from None


__all__ = ["ChunkedFileSystemRunLogStore"]


@contextlib.contextmanager
def _run_folder_must_exist(run_id: str, path: str) -> Iterator[None]:
    """A write into a run folder that is not there (never created, or deleted meanwhile) is a
    ChunkNotFoundError, which the chunked layout turns into the typed not-found of the API."""
    try:
        yield
    except StorageError as exc:
        if exc.errno == errno.ENOENT:
            raise ChunkNotFoundError(
                f"the folder of run {run_id!r} does not exist", path=path, run_id=run_id
            ) from exc
        raise
