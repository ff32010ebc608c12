"""``file-system``: the catalog of runnable, on a local or shared folder (docs/format.md).

A put copies each file to ``<catalog_location>/<run_id>/<compute_data_folder>/<relative path>``
(runnable's layout) atomically, hashing it in the same pass, and records
``catalog_relative_path`` as ``<run_id>/<relative path>`` as runnable does. A hash cache in the
catalog folder lets a later put of unchanged files skip both the read and the copy.

Only the catalog's own files are its files: a symbolic link anywhere below the catalog folder
(a run's folder, a folder in it, a file) is never read or written through. A get, a retry's
sync, an export or a copy that would pass through one is a CatalogError naming it, and so is a
put; listings (``run_files``) leave links out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from runlog_store import _core
from runlog_store._paths import remove_folder_atomically, validate_run_id
from runlog_store.callbacks import NO_PROGRESS, Callback, in_batches
from runlog_store.catalogs.base import (
    EXECUTION_LOG_SUFFIX,
    BaseCatalog,
    CatalogFolder,
    StoredFile,
    data_prefix,
    digests_or_first_failure,
    file_size,
    folder_files,
    glob_files,
    refuse_links,
    relative_inside,
)
from runlog_store.exceptions import CatalogError, NoMatchingFilesError


class FileSystemCatalog(CatalogFolder, BaseCatalog):
    service_name: str = "file-system"

    # --- layout -------------------------------------------------------------------------------

    def run_folder(self, run_id: str) -> Path:
        """Where a run's files are, as runnable places them (see the module docstring)."""
        return (
            Path(self.catalog_location)
            / validate_run_id(run_id)
            / data_prefix(self.compute_data_folder)
        )

    def _run_location(self, run_id: str) -> str:
        return str(self.run_folder(run_id))

    # --- primitives of put and get ------------------------------------------------------------

    def _store_files(
        self,
        run_id: str,
        sources: Sequence[Path],
        relatives: Sequence[Path],
        sizes: Sequence[int],
        callback: Callback,
    ) -> list[str]:
        target_root = self.run_folder(run_id)
        targets = [target_root / rel for rel in relatives]
        self._refuse_linked_folders(targets, run_id)
        pairs = [(str(src), str(target)) for src, target in zip(sources, targets, strict=True)]
        return self._copy("put", pairs, sizes, self._hash_cache(), run_id, callback)

    def _stored_matches(self, run_id: str, pattern: str) -> list[StoredFile]:
        run_root = self.run_folder(run_id)
        top = Path(self.catalog_location)
        refuse_links(top, run_root, run_id)
        if not run_root.is_dir():
            raise NoMatchingFilesError(
                f"run {run_id!r} has no catalog at {run_root}", path=str(run_root), run_id=run_id
            )
        matches = [
            path
            for path in glob_files(run_root, pattern, run_id)
            if not path.name.endswith(EXECUTION_LOG_SUFFIX)
        ]
        for path in matches:
            refuse_links(top, path, run_id)
        return [
            StoredFile(
                relative=relative_inside(path, run_root, pattern).as_posix(),
                size=file_size(path),
                source=str(path),
            )
            for path in matches
        ]

    def _fetch_files(
        self, run_id: str, files: Sequence[StoredFile], callback: Callback
    ) -> list[str]:
        compute_root = Path(self.compute_data_folder)
        pairs = [(found.source, str(compute_root / found.relative)) for found in files]
        sizes = [found.size for found in files]
        return self._copy("get", pairs, sizes, self._hash_cache(), run_id, callback)

    def sync_between_runs(self, previous_run_id: str, run_id: str) -> None:
        previous = Path(self.catalog_location) / validate_run_id(previous_run_id)
        target = Path(self.catalog_location) / validate_run_id(run_id)
        if not previous.is_dir():
            raise CatalogError(
                f"the catalog of the previous run {previous_run_id!r} is not at {previous}",
                path=str(previous),
                run_id=run_id,
            )
        refuse_links(Path(self.catalog_location), previous, run_id)
        files = {
            rel: size
            for rel, size in folder_files(previous, links="refuse", run_id=run_id).items()
            if not rel.endswith(EXECUTION_LOG_SUFFIX)
        }
        targets = [target / rel for rel in files]
        self._refuse_linked_folders(targets, run_id)
        pairs = [(str(previous / rel), str(t)) for rel, t in zip(files, targets, strict=True)]
        self._copy(
            f"sync {previous_run_id}", pairs, list(files.values()), self._hash_cache(), run_id
        )

    # --- a run's catalog as a whole -----------------------------------------------------------

    def local_run_folder(self, run_id: str) -> Path:
        return Path(self.catalog_location) / validate_run_id(run_id)

    def run_files(self, run_id: str) -> dict[str, int]:
        return folder_files(self.local_run_folder(run_id))

    def download_run(self, run_id: str, folder: Path, callback: Callback = NO_PROGRESS) -> int:
        root = self.local_run_folder(run_id)
        files = folder_files(root, links="refuse", run_id=run_id)
        pairs = [(str(root / rel), str(folder / rel)) for rel in files]
        # No hash cache: the copies land outside the catalog, where it keeps no entries.
        self._copy(
            f"export catalog of {run_id}", pairs, list(files.values()), None, run_id, callback
        )
        return sum(files.values())

    def upload_run(self, run_id: str, folder: Path, callback: Callback = NO_PROGRESS) -> int:
        """Every file under ``folder`` into the run's catalog; a link in ``folder`` (``folder``
        itself included) is a CatalogError naming it, before anything is copied."""
        root = self.local_run_folder(run_id)
        files = folder_files(folder, links="refuse", run_id=run_id)
        targets = [root / rel for rel in files]
        self._refuse_linked_folders(targets, run_id)
        pairs = [(str(folder / rel), str(t)) for rel, t in zip(files, targets, strict=True)]
        self._copy(
            f"import catalog of {run_id}",
            pairs,
            list(files.values()),
            self._hash_cache(),
            run_id,
            callback,
        )
        return sum(files.values())

    def delete_run(self, run_id: str) -> int:
        """The run's folder is first renamed to a hidden name in one atomic step, so a reader
        sees the whole catalog or none of it, never a half-deleted one."""
        root = self.local_run_folder(run_id)
        if root.is_symlink():
            # Not the run's folder but a link someone put in its place: the link goes, never
            # what it points to.
            root.unlink(missing_ok=True)
            return 0
        count = len(folder_files(root))
        if not root.exists():
            return 0
        try:
            remove_folder_atomically(str(root), run_id=run_id)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise CatalogError(
                f"cannot delete the catalog of run {run_id!r} at {root}: {exc.strerror}",
                path=str(root),
                run_id=run_id,
            ) from exc
        return count

    # --- copying ------------------------------------------------------------------------------

    def _refuse_linked_folders(self, targets: Iterable[Path], run_id: str) -> None:
        """A CatalogError naming a link that a write of ``targets`` would pass through (a
        link in a target's own place is replaced by the write, not followed)."""
        top = Path(self.catalog_location)
        for folder in sorted({target.parent for target in targets}):
            refuse_links(top, folder, run_id)

    def _copy(
        self,
        description: str,
        pairs: Sequence[tuple[str, str]],
        sizes: Sequence[int],
        cache: str | None,
        run_id: str,
        callback: Callback = NO_PROGRESS,
    ) -> list[str]:
        results = in_batches(
            description,
            pairs,
            sizes,
            lambda batch: _core.copy_files(
                list(batch), self.hash_algorithm, fsync=self.fsync, cache=cache, run_id=run_id
            ),
            callback,
        )
        return digests_or_first_failure([r if isinstance(r, Exception) else r[0] for r in results])


__all__ = ["FileSystemCatalog"]
