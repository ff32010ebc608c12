"""``minio``: one object per run, ``<bucket>/<prefix>/<run_id>.json`` (runnable's run log JSON).

Every change is an optimistic read-modify-write of that object (a conditional PUT on its ETag,
retried on conflict), so concurrent writers anywhere lose no update; the object is O(run) to
rewrite, so use ``chunked-minio`` for large or parallel runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import AliasChoices, ConfigDict, Field

from runlog_store._paths import validate_run_id
from runlog_store.exceptions import RunLogExistsError, RunLogNotFoundError
from runlog_store.models import RunLog
from runlog_store.objectstore import ObjectStorageSettings, update_object
from runlog_store.stores.base import check_nesting, json_of
from runlog_store.stores.document import DocumentRunLogStore

if TYPE_CHECKING:
    from runlog_store.search.index import RunIndex

SUFFIX = ".json"


class RunLogBucketSettings(ObjectStorageSettings):
    """The settings both object run log stores add to the connection: runnable's default
    bucket and prefix, and how long an update retries against other writers."""

    bucket: str = Field(
        default="runnable/run-logs", validation_alias=AliasChoices("bucket", "bucket_name")
    )
    update_timeout: float = Field(default=60.0, gt=0)


class MinioRunLogStore(DocumentRunLogStore, RunLogBucketSettings):
    """A run log per object; safe for concurrent writers through conditional writes."""

    model_config = ConfigDict(extra="forbid")

    service_name: str = "minio"
    # Every change is a conditional PUT retried on conflict: safe for writers anywhere.
    supports_parallel_writes: bool = True

    def location(self) -> str:
        return self.bucket_location()

    def _key(self, run_id: str) -> str:
        return self.storage().key(validate_run_id(run_id) + SUFFIX)

    # --- the document primitives ----------------------------------------------------------

    def _document_location(self, run_id: str) -> str:
        return self.storage().url(self._key(run_id))

    def _read_document(self, run_id: str) -> bytes | None:
        found = self.storage().get(self._key(run_id), run_id=run_id)
        return found[0] if found is not None else None

    def _update_document(self, run_id: str, change: Callable[[bytes], bytes]) -> None:
        location = self._document_location(run_id)

        def changed(current: bytes | None) -> bytes:
            if current is None:
                raise RunLogNotFoundError(run_id, path=location)
            return change(current)

        update_object(
            self.storage(), self._key(run_id), changed, timeout=self.update_timeout, run_id=run_id
        )

    def _create_run(self, run_log: RunLog) -> None:
        run_id = run_log.run_id
        if not self.storage().create(self._key(run_id), _dump(run_log), run_id=run_id):
            raise RunLogExistsError(run_id, path=self._document_location(run_id))

    def put_run_log(self, run_log: RunLog) -> None:
        run_id = validate_run_id(run_log.run_id)
        self.storage().put(self._key(run_id), _dump(run_log), run_id=run_id)
        self._index_note(run_id)

    def _run_index(self) -> RunIndex:
        from runlog_store.search.index import RunIndex
        from runlog_store.search.sources import MinioSource

        return RunIndex(MinioSource(self))

    def list_run_ids(self) -> list[str]:
        bucket = self.storage()
        root = bucket.key() + "/" if bucket.prefix else ""
        found = [
            (obj.modified or 0.0, obj.key)
            for obj in bucket.list_objects(root, recursive=False)
            if not obj.is_prefix and obj.key.endswith(SUFFIX)
        ]
        names = [name[len(root) : -len(SUFFIX)] for _, name in sorted(found, reverse=True)]
        return [n for n in names if n and not n.startswith(".")]

    def run_modified(self, run_id: str) -> float | None:
        stat = self.storage().stat(self._key(run_id), run_id=run_id)
        return stat.modified if stat is not None else None

    def delete_run(self, run_id: str) -> None:
        bucket = self.storage()
        if not bucket.exists(self._key(run_id), run_id=run_id):
            raise RunLogNotFoundError(run_id, path=self._document_location(run_id))
        bucket.delete(self._key(run_id), run_id=run_id)


def _dump(run_log: RunLog) -> bytes:
    document = json_of(run_log, run_log.run_id)
    check_nesting(run_log.run_id, "run", "", document)
    return document


__all__ = ["MinioRunLogStore"]
