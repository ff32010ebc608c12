"""``minio``: the catalog in object storage, ``<bucket>/<prefix>/<run_id>/<relative path>``.

Files stream to and from the server while the Rust core hashes the same bytes, so a put reads
each file once and the recorded hash is of exactly what was sent. A download lands in a temp
file beside its target and is renamed into place, so a reader of the compute folder never sees
half a file. A transfer that fails is retried whole, within the configured retry budget.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from pydantic import ConfigDict

from runlog_store._paths import validate_run_id
from runlog_store.callbacks import NO_PROGRESS, Callback
from runlog_store.catalogs.base import (
    EXECUTION_LOG_SUFFIX,
    BaseCatalog,
    StoredFile,
    batches_in_threads,
    data_prefix,
    folder_files,
    glob_regex,
    run_in_threads,
    temp_beside,
    writer_temp_fits,
)
from runlog_store.exceptions import CatalogError
from runlog_store.objectstore import ObjectStorageSettings


class MinioCatalog(BaseCatalog, ObjectStorageSettings):
    """A catalog in a MinIO or S3 bucket (default bucket ``runnable``, as runnable's)."""

    model_config = ConfigDict(extra="forbid")

    service_name: str = "minio"

    def location(self) -> str:
        bucket = self.storage()
        return bucket.url(bucket.key())

    def run_prefix(self, run_id: str) -> str:
        """Where a run's files are (runnable's place: the run, then the compute folder)."""
        prefix = data_prefix(self.compute_data_folder)
        parts = [validate_run_id(run_id)] + ([prefix.as_posix()] if prefix.parts else [])
        return self.storage().key(*parts) + "/"

    def _run_location(self, run_id: str) -> str:
        return self.storage().url(self.run_prefix(run_id))

    # --- primitives of put and get ------------------------------------------------------------

    def _store_files(
        self,
        run_id: str,
        sources: Sequence[Path],
        relatives: Sequence[Path],
        sizes: Sequence[int],
        callback: Callback,
    ) -> list[str]:
        prefix = self.run_prefix(run_id)
        jobs = [
            (str(src), prefix + rel.as_posix()) for src, rel in zip(sources, relatives, strict=True)
        ]
        return batches_in_threads("put", jobs, sizes, self._uploader(run_id), callback)

    def _stored_matches(self, run_id: str, pattern: str) -> list[StoredFile]:
        prefix = self.run_prefix(run_id)
        matcher = glob_regex(pattern)
        return [
            StoredFile(relative=obj.key[len(prefix) :], size=obj.size, source=obj.key)
            for obj in self.storage().list_objects(prefix, run_id=run_id)
            if not obj.is_prefix
            and not obj.key.endswith(EXECUTION_LOG_SUFFIX)
            and matcher.fullmatch(obj.key[len(prefix) :])
        ]

    def _fetch_files(
        self, run_id: str, files: Sequence[StoredFile], callback: Callback
    ) -> list[str]:
        compute_root = Path(self.compute_data_folder)
        jobs = [(found.source, compute_root / found.relative) for found in files]
        sizes = [found.size for found in files]
        return batches_in_threads("get", jobs, sizes, self._downloader(run_id), callback)

    def sync_between_runs(self, previous_run_id: str, run_id: str) -> None:
        bucket = self.storage()
        source = bucket.key(validate_run_id(previous_run_id)) + "/"
        target = bucket.key(validate_run_id(run_id)) + "/"
        names = [
            obj.key
            for obj in bucket.list_objects(source, run_id=run_id)
            if not obj.is_prefix and not obj.key.endswith(EXECUTION_LOG_SUFFIX)
        ]
        if not names:
            raise CatalogError(
                f"the catalog of the previous run {previous_run_id!r} is not at "
                f"{bucket.url(source)}",
                path=bucket.url(source),
                run_id=run_id,
            )
        run_in_threads(
            [
                partial(bucket.copy, name, target + name[len(source) :], run_id=run_id)
                for name in names
            ]
        )

    # --- a run's catalog as a whole -----------------------------------------------------------

    def _run_root(self, run_id: str) -> str:
        return self.storage().key(validate_run_id(run_id)) + "/"

    def run_files(self, run_id: str) -> dict[str, int]:
        root = self._run_root(run_id)
        return {
            obj.key[len(root) :]: obj.size
            for obj in self.storage().list_objects(root, run_id=run_id)
            if not obj.is_prefix
        }

    def download_run(self, run_id: str, folder: Path, callback: Callback = NO_PROGRESS) -> int:
        root = self._run_root(run_id)
        files = self.run_files(run_id)
        batches_in_threads(
            f"download catalog of {run_id}",
            [(root + rel, folder / rel) for rel in files],
            list(files.values()),
            self._downloader(run_id),
            callback,
        )
        return sum(files.values())

    def upload_run(self, run_id: str, folder: Path, callback: Callback = NO_PROGRESS) -> int:
        root = self._run_root(run_id)
        files = folder_files(folder, links="refuse", run_id=run_id)
        batches_in_threads(
            f"upload catalog of {run_id}",
            [(str(folder / rel), root + rel) for rel in files],
            list(files.values()),
            self._uploader(run_id),
            callback,
        )
        return sum(files.values())

    def delete_run(self, run_id: str) -> int:
        return self.storage().delete_prefix(self._run_root(run_id), run_id=run_id)

    # --- transfers ----------------------------------------------------------------------------

    def _uploader(self, run_id: str) -> Callable[[tuple[str, str]], str]:
        bucket = self.storage()
        return lambda job: bucket.upload_file(
            job[1], job[0], algorithm=self.hash_algorithm, run_id=run_id
        )

    def _downloader(self, run_id: str) -> Callable[[tuple[str, Path]], str]:
        bucket = self.storage()

        def download(job: tuple[str, Path]) -> str:
            key, target = job
            if writer_temp_fits(target):
                return bucket.download_file(
                    key, target, algorithm=self.hash_algorithm, run_id=run_id
                )
            # A name too long for the download's own temp name beside it: downloaded under a
            # short temp name first, then renamed into place.
            temp = temp_beside(target, short=True)
            try:
                digest = bucket.download_file(
                    key, temp, algorithm=self.hash_algorithm, run_id=run_id
                )
                os.replace(temp, target)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    temp.unlink()
            return digest

        return download


__all__ = ["MinioCatalog"]
