"""``minio``: the catalog in object storage, ``<bucket>/<prefix>/<run_id>/<relative path>``.

Files stream to and from the server while the Rust core hashes the same bytes, so a put reads
each file once and the recorded hash is of exactly what was sent. A download lands in a temp
file beside its target and is renamed into place, so a reader of the compute folder never sees
half a file. A transfer that fails is retried whole, within the configured retry budget.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

from minio.commonconfig import CopySource
from pydantic import AliasChoices, ConfigDict, Field

from runlog_store import _core
from runlog_store._paths import validate_run_id
from runlog_store.catalog import BaseCatalog, data_prefix, folder_files, in_batches
from runlog_store.catalogs.file_system import EXECUTION_LOG_SUFFIX
from runlog_store.exceptions import CatalogError, NoMatchingFilesError
from runlog_store.hashing import HashAlgorithm, format_data_hash, hash_files
from runlog_store.models import DataCatalog
from runlog_store.object_storage import Bucket, ObjectStorageSettings

TRANSFER_THREADS = 8


class _HashingReader:
    """A file object that hashes what is read from it (the upload's single pass)."""

    def __init__(self, handle: BinaryIO, algorithm: HashAlgorithm) -> None:
        self._handle = handle
        self.hasher = _core.Hasher(algorithm)

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        if data:
            self.hasher.update(data)
        return data


class MinioCatalog(BaseCatalog, ObjectStorageSettings):
    """A catalog in a MinIO or S3 bucket."""

    model_config = ConfigDict(extra="forbid")

    service_name: str = "minio"
    bucket: str = Field(default="runnable", validation_alias=AliasChoices("bucket", "bucket_name"))

    def get_summary(self) -> dict[str, Any]:
        return {
            "Type": self.service_name,
            "Location": self.location(),
            "compute_data_folder": self.compute_data_folder,
            "hash_algorithm": self.hash_algorithm,
        }

    def run_prefix(self, run_id: str) -> str:
        """Where a run's files are (runnable's place: the run, then the compute folder)."""
        prefix = data_prefix(self.compute_data_folder)
        parts = [validate_run_id(run_id)] + ([prefix.as_posix()] if prefix.parts else [])
        return self.storage().key(*parts) + "/"

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
        bucket = self.storage()
        prefix = self.run_prefix(run_id)
        if store_copy:
            jobs = [
                (str(p), prefix + rel.as_posix()) for p, rel in zip(matches, relatives, strict=True)
            ]
            digests = in_batches(
                f"put {name}",
                jobs,
                sizes,
                lambda batch: _parallel(
                    [lambda j=j: self._upload(bucket, j[0], j[1], run_id) for j in batch]
                ),
            )
        else:
            digests = hash_files(matches, self.hash_algorithm)
        return [
            DataCatalog(
                name=str(rel),
                data_hash=format_data_hash(self.hash_algorithm, digest),
                catalog_relative_path=f"{run_id}/{rel.as_posix()}",
                catalog_handler_location=bucket.url(bucket.key()),
                stage="put",
            )
            for rel, digest in zip(relatives, digests, strict=True)
        ]

    def get(self, name: str, *, run_id: str | None = None) -> list[DataCatalog]:
        run_id = self._run_id(run_id)
        bucket = self.storage()
        prefix = self.run_prefix(run_id)
        objects = [
            obj
            for obj in bucket.list_objects(prefix, run_id=run_id)
            if not obj.is_dir and not obj.object_name.endswith(EXECUTION_LOG_SUFFIX)
        ]
        relatives = [Path(obj.object_name[len(prefix) :]) for obj in objects]
        matcher = glob_regex(name)
        chosen = [
            (o, r)
            for o, r in zip(objects, relatives, strict=True)
            if matcher.fullmatch(r.as_posix())
        ]
        if not chosen:
            raise NoMatchingFilesError(
                f"no file matches {name!r} in the catalog of run {run_id!r} ({bucket.url(prefix)})",
                path=bucket.url(prefix),
                run_id=run_id,
            )
        compute_root = Path(self.compute_data_folder)
        jobs = [(obj.object_name, compute_root / rel) for obj, rel in chosen]
        sizes = [obj.size or 0 for obj, _ in chosen]
        digests = in_batches(
            f"get {name}",
            jobs,
            sizes,
            lambda batch: _parallel(
                [lambda j=j: self._download(bucket, j[0], j[1], run_id) for j in batch]
            ),
        )
        return [
            DataCatalog(
                name=rel.as_posix(),
                data_hash=format_data_hash(self.hash_algorithm, digest),
                catalog_relative_path=rel.as_posix(),
                catalog_handler_location=bucket.url(bucket.key()),
                stage="get",
            )
            for (_, rel), digest in zip(chosen, digests, strict=True)
        ]

    def sync_between_runs(self, previous_run_id: str, run_id: str) -> None:
        bucket = self.storage()
        source = bucket.key(validate_run_id(previous_run_id)) + "/"
        target = bucket.key(validate_run_id(run_id)) + "/"
        objects = [
            obj
            for obj in bucket.list_objects(source, run_id=run_id)
            if not obj.is_dir and not obj.object_name.endswith(EXECUTION_LOG_SUFFIX)
        ]
        if not objects:
            raise CatalogError(
                f"the catalog of the previous run {previous_run_id!r} is not at "
                f"{bucket.url(source)}",
                path=bucket.url(source),
                run_id=run_id,
            )

        def copy(name: str) -> None:
            destination = target + name[len(source) :]
            bucket.call(
                "copy",
                destination,
                lambda: bucket.client.copy_object(
                    bucket.name, destination, CopySource(bucket.name, name)
                ),
                run_id=run_id,
            )

        _parallel([lambda n=obj.object_name: copy(n) for obj in objects])

    # --- a run's catalog as a whole -----------------------------------------------------------

    def _run_root(self, run_id: str) -> str:
        return self.storage().key(validate_run_id(run_id)) + "/"

    def run_files(self, run_id: str) -> dict[str, int]:
        root = self._run_root(run_id)
        return {
            obj.object_name[len(root) :]: obj.size or 0
            for obj in self.storage().list_objects(root, run_id=run_id)
            if not obj.is_dir
        }

    def download_run(self, run_id: str, folder: Path) -> int:
        bucket = self.storage()
        root = self._run_root(run_id)
        files = self.run_files(run_id)
        self._transfer_all(
            f"download catalog of {run_id}",
            [(root + rel, folder / rel) for rel in files],
            list(files.values()),
            lambda job: self._download(bucket, job[0], job[1], run_id),
        )
        return sum(files.values())

    def upload_run(self, run_id: str, folder: Path) -> int:
        bucket = self.storage()
        root = self._run_root(run_id)
        files = folder_files(folder)
        self._transfer_all(
            f"upload catalog of {run_id}",
            [(str(folder / rel), root + rel) for rel in files],
            list(files.values()),
            lambda job: self._upload(bucket, job[0], job[1], run_id),
        )
        return sum(files.values())

    @staticmethod
    def _transfer_all(
        description: str,
        jobs: list[Any],
        sizes: list[int],
        transfer: Callable[[Any], str],
    ) -> list[str]:
        """Transfers on threads, in batches, with a progress bar on a terminal."""
        return in_batches(
            description,
            jobs,
            sizes,
            lambda batch: _parallel([lambda j=j: transfer(j) for j in batch]),
        )

    def delete_run(self, run_id: str) -> int:
        return self.storage().delete_prefix(self._run_root(run_id), run_id=run_id)

    # --- transfers ----------------------------------------------------------------------------

    def _upload(self, bucket: Bucket, path: str, key: str, run_id: str) -> str:
        def send() -> str:
            with open(path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                reader = _HashingReader(handle, self.hash_algorithm)
                bucket.client.put_object(
                    bucket.name,
                    key,
                    reader,  # type: ignore[arg-type]  # has read(): all put_object uses
                    size,
                    part_size=64 << 20,
                )
                return reader.hasher.hexdigest()

        return bucket.call("upload", key, send, run_id=run_id)

    def _download(self, bucket: Bucket, key: str, target: Path, run_id: str) -> str:
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{id(target)}")

        def fetch() -> str:
            hasher = _core.Hasher(self.hash_algorithm)
            response = bucket.client.get_object(bucket.name, key)
            try:
                with open(temp, "wb") as out:
                    for chunk in response.stream(1 << 20):
                        hasher.update(chunk)
                        out.write(chunk)
            finally:
                response.close()
                response.release_conn()
            return hasher.hexdigest()

        try:
            digest = bucket.call("download", key, fetch, run_id=run_id)
            os.replace(temp, target)
        finally:
            if temp.exists():
                temp.unlink()
        return digest


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A glob as ``Path.glob`` reads it, for object names: ``*`` and ``?`` stay within one
    path part, ``**/`` spans any number of parts (none included)."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:[^/]+/)*")
            i += 3
        elif pattern.startswith("**", i) and i + 2 == len(pattern):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(pattern[i]))
                i += 1
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def _parallel(tasks: list[Any]) -> list[Any]:
    """Run transfer tasks on threads (they wait on the network), keeping their order; the
    first failure is raised after every task has finished."""
    if not tasks:
        return []
    with ThreadPoolExecutor(max_workers=min(TRANSFER_THREADS, len(tasks))) as pool:
        futures = [pool.submit(task) for task in tasks]
        results = []
        failure: BaseException | None = None
        for future in futures:
            try:
                results.append(future.result())
            except BaseException as exc:  # re-raised below, after the rest
                failure = failure or exc
                results.append(None)
    if failure is not None:
        raise failure
    return results


__all__ = ["MinioCatalog"]
