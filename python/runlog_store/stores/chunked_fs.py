"""``chunked-fs``: one folder per run, runnable 0.50's chunked layout at rest, a journal per
writer process meanwhile (docs/format.md, "chunked-fs").

What runnable's own ``ChunkedFileSystemRunLogStore`` reads is what this store leaves: the run's
fields and root steps in ``RunLog.json``, each branch with its parameters and direct steps in
``BranchLog-<name>.json``. While a run goes on, each writer process appends the changes it makes
to its own journal in the run's hidden ``.journals/`` folder (one write, and with ``fsync`` one
``fdatasync``, per call: no file is created per step); the process that ends a branch folds the
branch's records into its document, and the one that ends the run folds the rest and removes the
journals. Readers (Rust) read the documents with the records not folded yet on top, so they see
every acknowledged write at every moment. All of it is the Rust core's (``_core.ChunkedRun``);
this module only maps the store's primitives onto it.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field, PrivateAttr

from runlog_store import _core
from runlog_store._paths import ensure_folder, remove_folder_atomically, validate_run_id
from runlog_store.exceptions import (
    ChunkExistsError,
    CorruptChunkError,
    RunLogExistsError,
    RunLogNotFoundError,
)
from runlog_store.stores.chunked import (
    LAYOUT_MARKER,
    LAYOUT_MARKER_TEXT,
    RUN_LOG_FILE,
    Change,
    ChunkedRunLogStore,
)

if TYPE_CHECKING:
    from runlog_store.search.index import RunIndex

LOCK_FILE = ".lock"
JOURNAL_DIR = _core.JOURNAL_DIR
# Runs a store object keeps open (their journal state): a process reading thousands of runs
# (a listing, a gc) does not keep them all.
MAX_OPEN_RUNS = 256


class ChunkedFileSystemRunLogStore(ChunkedRunLogStore):
    """Run logs under ``<log_folder>/<run_id>/`` in runnable's chunked layout; safe for parallel
    writers."""

    service_name: str = "chunked-fs"

    log_folder: str = Field(default=".run_log_store", min_length=1)
    fsync: bool = True
    lock_timeout: float = Field(default=60.0, gt=0)

    # The runs this store object has touched, each with its journal state (Rust).
    _runs: dict[str, _core.ChunkedRun] = PrivateAttr(default_factory=dict)
    # Runs whose leftover temp files this store has cleaned (at its first write to each).
    _cleaned: set[str] = PrivateAttr(default_factory=set)
    PER_PROCESS_STATE: ClassVar[tuple[str, ...]] = (
        *ChunkedRunLogStore.PER_PROCESS_STATE,
        "_runs",
        "_cleaned",
    )

    def location(self) -> str:
        return self.log_folder

    def _run_index(self) -> RunIndex:
        from runlog_store.search.index import RunIndex
        from runlog_store.search.sources import FolderSource

        return RunIndex(FolderSource(self, "chunked-fs"))

    def run_folder(self, run_id: str) -> str:
        return os.path.join(self.log_folder, validate_run_id(run_id))

    def _run(self, run_id: str) -> _core.ChunkedRun:
        run = self._runs.get(run_id)
        if run is None:
            if len(self._runs) >= MAX_OPEN_RUNS:
                self._runs.pop(next(iter(self._runs)))
            run = _core.ChunkedRun(
                self.run_folder(run_id),
                fsync=self.fsync,
                lock_timeout=self.lock_timeout,
                run_id=run_id,
            )
            self._runs[run_id] = run
        return run

    def _clean_once(self, run_id: str) -> None:
        """Remove temp files of writers that died mid-write (a fold's), once per run and store
        object: one listing, not one per write. Never in a folder linked in under the run's
        name: those files are someone else's (the run's reads and writes refuse the link)."""
        if run_id not in self._cleaned:
            folder = self.run_folder(run_id)
            if not os.path.islink(folder):
                _core.clean_temp_files(folder)
            self._cleaned.add(run_id)

    # --- storage primitives ---------------------------------------------------------------

    def _location(self, run_id: str, name: str = "") -> str:
        folder = self.run_folder(run_id)
        return os.path.join(folder, name) if name else folder

    def _create(self, run_id: str, run_log: bytes) -> None:
        folder = self.run_folder(run_id)
        if os.path.islink(folder):
            # Someone else's folder linked in under this run's name: never written through.
            raise CorruptChunkError(
                f"{folder} is a symbolic link, which the store never follows",
                path=folder,
                run_id=run_id,
            )
        ensure_folder(folder, fsync=self.fsync, run_id=run_id)
        self._clean_once(run_id)
        path = os.path.join(folder, RUN_LOG_FILE)
        try:
            _core.write_atomic(path, run_log, fsync=self.fsync, exclusive=True, run_id=run_id)
        except ChunkExistsError:
            raise RunLogExistsError(run_id, path=path) from None
        _core.write_atomic(
            os.path.join(folder, LAYOUT_MARKER), LAYOUT_MARKER_TEXT, fsync=self.fsync, run_id=run_id
        )

    def _prepare(self, run_id: str, run_log: bytes) -> None:
        with contextlib.suppress(RunLogExistsError):
            self._create(run_id, run_log)

    def _check_nesting(self, run_id: str, changes: list[Change]) -> None:
        """Nothing to do here: the core checks every record as it appends it."""

    def _write(self, run_id: str, changes: list[Change]) -> None:
        private = self.__pydantic_private__  # not self._runs: see ChunkedRunLogStore._check
        run = private["_runs"].get(run_id)  # type: ignore[index]
        if run is None or run_id not in private["_cleaned"]:  # type: ignore[index]
            self._clean_once_if_there(run_id)
            run = self._run(run_id)
        run.append([change.as_record() for change in changes])

    def _clean_once_if_there(self, run_id: str) -> None:
        if run_id in self._cleaned:
            return
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            if os.path.isdir(self.run_folder(run_id)):
                self._clean_once(run_id)

    def _ended(self, run_id: str, branch: str) -> None:
        run = self._run(run_id)
        if branch:
            run.fold_branch(branch)
        else:
            run.fold_all()

    def _read_full(self, run_id: str, salvage: bool) -> tuple[bytes, list[tuple[str, str]]]:
        return self._run(run_id).read(salvage=salvage)

    def _read_run(self, run_id: str, steps: bool) -> bytes:
        return self._run(run_id).read_run(steps=steps)

    def _read_branch(self, run_id: str, name: str) -> bytes | None:
        return self._run(run_id).read_branch(name)

    def _read_step(self, run_id: str, name: str) -> bytes | None:
        return self._run(run_id).read_step(name)

    def _has_branch(self, run_id: str, name: str) -> bool:
        return self._run(run_id).has_branch(name)

    def _run_exists(self, run_id: str) -> bool:
        return os.path.exists(self._location(run_id, RUN_LOG_FILE))

    # --- journals -----------------------------------------------------------------------------

    def unfolded_journals(self, run_id: str) -> list[tuple[str, int]]:
        """The journals of a run holding records not folded into its documents yet (name, size in
        bytes): while a run goes on, or when it was killed before its end. runnable's own reader
        does not see those records; ``fold`` (``runlog fold``) puts them in."""
        if not self._run_exists(run_id):
            raise RunLogNotFoundError(run_id, path=self._location(run_id, RUN_LOG_FILE))
        return _core.pending_journals(self.run_folder(run_id), run_id=run_id)

    def fold(self, run_id: str) -> None:
        self._clean_once_if_there(run_id)
        super().fold(run_id)

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
                mtime = os.lstat(os.path.join(entry.path, RUN_LOG_FILE)).st_mtime_ns
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError:
                # A run folder that is a link loop (or worse): listed by its own time, and found
                # unreadable when it is read, as any damaged run.
                mtime = entry.stat(follow_symlinks=False).st_mtime_ns
            runs.append((mtime, entry.name))
        return [run_id for _, run_id in sorted(runs, reverse=True)]

    def run_modified(self, run_id: str) -> float | None:
        """The newest document's or journal's time: a running run's writes go to its journals and
        branch documents, so ``RunLog.json`` alone can be old while the run is busy."""
        folder = self.run_folder(run_id)
        times = []
        for where in (folder, os.path.join(folder, JOURNAL_DIR)):
            try:
                entries = list(os.scandir(where))
            except OSError:  # gone, not a folder, a link loop: nothing this can tell
                if where == folder:
                    return None
                continue
            for entry in entries:
                with contextlib.suppress(FileNotFoundError):
                    # The snapshot is written by reads: reading a run is not writing it.
                    if entry.name not in (JOURNAL_DIR, _core.SNAPSHOT_NAME):
                        times.append(entry.stat(follow_symlinks=False).st_mtime)
        return max(times, default=None)

    def delete_run(self, run_id: str) -> None:
        """Remove a run's folder with everything in it.

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
        self._runs.pop(run_id, None)
        self._forget(run_id)


__all__ = ["ChunkedFileSystemRunLogStore"]
