"""``file-system``: the catalog of runnable, on a local or shared folder (docs/format.md).

A put copies each file to ``<catalog_location>/<run_id>/<compute_data_folder>/<relative path>``
(runnable's layout) atomically, hashing it in the same pass, and records
``catalog_relative_path`` as ``<run_id>/<relative path>`` as runnable does. A hash cache in the
catalog folder lets a later put of unchanged files skip both the read and the copy.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import Field

from runlog_store import _core
from runlog_store._paths import ensure_folder, validate_run_id
from runlog_store.catalog import (
    BaseCatalog,
    data_prefix,
    file_size,
    folder_files,
    glob_files,
    in_batches,
    relative_inside,
)
from runlog_store.exceptions import CatalogError, NoMatchingFilesError, StorageError
from runlog_store.hashing import format_data_hash
from runlog_store.models import DataCatalog

HASH_CACHE_FILE = ".runlog-hash-cache"
EXECUTION_LOG_SUFFIX = ".execution.log"


class FileSystemCatalog(BaseCatalog):
    service_name: str = "file-system"
    catalog_location: str = Field(default=".catalog", min_length=1)
    fsync: bool = True

    def get_summary(self) -> dict[str, Any]:
        return {
            "Type": self.service_name,
            "Location": self.catalog_location,
            "compute_data_folder": self.compute_data_folder,
            "hash_algorithm": self.hash_algorithm,
        }

    # --- layout -------------------------------------------------------------------------------

    def run_folder(self, run_id: str) -> Path:
        """Where a run's files are, as runnable places them (see the module docstring)."""
        return (
            Path(self.catalog_location)
            / validate_run_id(run_id)
            / data_prefix(self.compute_data_folder)
        )

    def cache_path(self) -> str:
        ensure_folder(self.catalog_location)
        return os.path.join(self.catalog_location, HASH_CACHE_FILE)

    # --- the API ------------------------------------------------------------------------------

    def put(
        self,
        name: str,
        allow_file_not_found_exc: bool = False,
        store_copy: bool = True,
        *,
        run_id: str | None = None,
    ) -> list[DataCatalog]:
        run_id = self._run_id(run_id)
        matches, relatives, sizes = self._put_sources(name, allow_file_not_found_exc, run_id)
        if not matches:
            return []
        target_root = self.run_folder(run_id)
        cache = self.cache_path()
        if store_copy:
            pairs = [
                (str(src), str(target_root / rel))
                for src, rel in zip(matches, relatives, strict=True)
            ]
            digests = self._copy(f"put {name}", pairs, sizes, cache, run_id)
        else:
            digests = _digests(
                in_batches(
                    f"hash {name}",
                    [str(p) for p in matches],
                    sizes,
                    lambda batch: _core.hash_files(list(batch), self.hash_algorithm, cache=cache),
                )
            )
        return [
            DataCatalog(
                name=str(rel),
                data_hash=format_data_hash(self.hash_algorithm, digest),
                catalog_relative_path=f"{run_id}{os.sep}{rel}",
                catalog_handler_location=self.catalog_location,
                stage="put",
            )
            for rel, digest in zip(relatives, digests, strict=True)
        ]

    def get(self, name: str, *, run_id: str | None = None) -> list[DataCatalog]:
        run_id = self._run_id(run_id)
        run_root = self.run_folder(run_id)
        if not run_root.is_dir():
            raise NoMatchingFilesError(
                f"run {run_id!r} has no catalog at {run_root}", path=str(run_root), run_id=run_id
            )
        matches = [
            path
            for path in glob_files(run_root, name, run_id)
            if not path.name.endswith(EXECUTION_LOG_SUFFIX)
        ]
        if not matches:
            raise NoMatchingFilesError(
                f"no file matches {name!r} in the catalog of run {run_id!r} ({run_root})",
                path=str(run_root),
                run_id=run_id,
            )
        relatives = [relative_inside(path, run_root, name) for path in matches]
        compute_root = Path(self.compute_data_folder)
        pairs = [
            (str(src), str(compute_root / rel)) for src, rel in zip(matches, relatives, strict=True)
        ]
        sizes = [file_size(path) for path in matches]
        digests = self._copy(f"get {name}", pairs, sizes, self.cache_path(), run_id)
        return [
            DataCatalog(
                name=str(rel),
                data_hash=format_data_hash(self.hash_algorithm, digest),
                catalog_relative_path=str(rel),
                catalog_handler_location=self.catalog_location,
                stage="get",
            )
            for rel, digest in zip(relatives, digests, strict=True)
        ]

    def sync_between_runs(self, previous_run_id: str, run_id: str) -> None:
        previous = Path(self.catalog_location) / validate_run_id(previous_run_id)
        target = Path(self.catalog_location) / validate_run_id(run_id)
        if not previous.is_dir():
            raise CatalogError(
                f"the catalog of the previous run {previous_run_id!r} is not at {previous}",
                path=str(previous),
                run_id=run_id,
            )
        files = sorted(
            path
            for path in previous.rglob("*")
            if path.is_file() and not path.name.endswith(EXECUTION_LOG_SUFFIX)
        )
        pairs = [(str(path), str(target / path.relative_to(previous))) for path in files]
        sizes = [file_size(path) for path in files]
        self._copy(f"sync {previous_run_id}", pairs, sizes, self.cache_path(), run_id)

    # --- a run's catalog as a whole -----------------------------------------------------------

    def local_run_folder(self, run_id: str) -> Path:
        return Path(self.catalog_location) / validate_run_id(run_id)

    def run_files(self, run_id: str) -> dict[str, int]:
        return folder_files(self.local_run_folder(run_id))

    def download_run(self, run_id: str, folder: Path) -> int:
        root = self.local_run_folder(run_id)
        files = self.run_files(run_id)
        pairs = [(str(root / rel), str(folder / rel)) for rel in files]
        # No hash cache: the copies land outside the catalog, where it keeps no entries.
        self._copy(f"export catalog of {run_id}", pairs, list(files.values()), None, run_id)
        return sum(files.values())

    def upload_run(self, run_id: str, folder: Path) -> int:
        root = self.local_run_folder(run_id)
        files = folder_files(folder)
        pairs = [(str(folder / rel), str(root / rel)) for rel in files]
        self._copy(
            f"import catalog of {run_id}", pairs, list(files.values()), self.cache_path(), run_id
        )
        return sum(files.values())

    def delete_run(self, run_id: str) -> int:
        """The run's folder is first renamed to a hidden name in one atomic step, so a reader
        sees the whole catalog or none of it, never a half-deleted one."""
        root = self.local_run_folder(run_id)
        count = len(folder_files(root))
        if not root.exists():
            return 0
        doomed = root.with_name(f".deleting-{root.name}-{os.getpid()}")
        try:
            os.rename(root, doomed)
        except OSError as exc:
            raise CatalogError(
                f"cannot delete the catalog of run {run_id!r} at {root}: {exc.strerror}",
                path=str(root),
                run_id=run_id,
            ) from exc
        shutil.rmtree(doomed)
        return count

    # --- copying ------------------------------------------------------------------------------

    def _copy(
        self,
        description: str,
        pairs: Sequence[tuple[str, str]],
        sizes: Sequence[int],
        cache: str | None,
        run_id: str,
    ) -> list[str]:
        results = in_batches(
            description,
            pairs,
            sizes,
            lambda batch: _core.copy_files(
                list(batch), self.hash_algorithm, fsync=self.fsync, cache=cache, run_id=run_id
            ),
        )
        return _digests([r if isinstance(r, Exception) else r[0] for r in results])


def _digests(results: Sequence[str | Exception]) -> list[str]:
    """The digests, or the first failure (after every file was tried), saying how many failed."""
    failures = [r for r in results if isinstance(r, Exception)]
    if failures:
        first = failures[0]
        if len(failures) > 1 and isinstance(first, StorageError):
            first.message = f"{first.message} (and {len(failures) - 1} more files failed)"
            first.args = (first.message,)
        raise first
    return [r for r in results if isinstance(r, str)]


__all__ = ["FileSystemCatalog"]
