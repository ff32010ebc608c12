"""``minio``: one object per run, ``<bucket>/<prefix>/<run_id>.json`` (runnable's run log JSON).

Every change is an optimistic read-modify-write of that object (a conditional PUT on its ETag,
retried on conflict), so concurrent writers anywhere lose no update; the object is O(run) to
rewrite, so use ``chunked-minio`` for large or parallel runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ConfigDict

from runlog_store._paths import validate_run_id
from runlog_store.exceptions import RunLogExistsError, RunLogNotFoundError
from runlog_store.models import CREATED, RunLog
from runlog_store.store import BaseRunLogStore, new_run_log, validate_run_log
from runlog_store.stores._optimistic import RunLogBucketSettings, update_object

SUFFIX = ".json"


class MinioRunLogStore(BaseRunLogStore, RunLogBucketSettings):
    """A run log per object; safe for concurrent writers through conditional writes."""

    model_config = ConfigDict(extra="forbid")

    service_name: str = "minio"

    def get_summary(self) -> dict[str, Any]:
        return {"Type": self.service_name, "Location": self.location()}

    def _key(self, run_id: str) -> str:
        return self.storage().key(validate_run_id(run_id) + SUFFIX)

    def _location(self, run_id: str) -> str:
        return self.storage().url(self._key(run_id))

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
        if not self.storage().create(self._key(run_id), _dump(run_log), run_id=run_id):
            raise RunLogExistsError(run_id, path=self._location(run_id))
        return run_log

    def get_run_log_by_id(self, run_id: str, full: bool = False) -> RunLog:
        data = self.get_run_log_json(run_id)
        return validate_run_log(data, self._location(run_id), run_id)

    def get_run_log_json(self, run_id: str) -> bytes:
        found = self.storage().get(self._key(run_id), run_id=run_id)
        if found is None:
            raise RunLogNotFoundError(run_id, path=self._location(run_id))
        return found[0]

    def put_run_log(self, run_log: RunLog) -> None:
        run_id = validate_run_id(run_log.run_id)
        self.storage().put(self._key(run_id), _dump(run_log), run_id=run_id)

    def _update(self, run_id: str, change: Callable[[RunLog], None]) -> None:
        location = self._location(run_id)

        def changed(current: bytes | None) -> bytes:
            if current is None:
                raise RunLogNotFoundError(run_id, path=location)
            run_log = validate_run_log(current, location, run_id)
            change(run_log)
            return _dump(run_log)

        update_object(
            self.storage(), self._key(run_id), changed, timeout=self.update_timeout, run_id=run_id
        )

    def list_run_ids(self) -> list[str]:
        bucket = self.storage()
        root = bucket.key() + "/" if bucket.prefix else ""
        found = [
            (obj.last_modified.timestamp() if obj.last_modified else 0.0, obj.object_name)
            for obj in bucket.list_objects(root, recursive=False)
            if not obj.is_dir and obj.object_name.endswith(SUFFIX)
        ]
        names = [name[len(root) : -len(SUFFIX)] for _, name in sorted(found, reverse=True)]
        return [n for n in names if n and not n.startswith(".")]

    def run_modified(self, run_id: str) -> float | None:
        stat = self.storage().stat(self._key(run_id), run_id=run_id)
        if stat is None or stat.last_modified is None:
            return None
        return float(stat.last_modified.timestamp())

    def delete_run(self, run_id: str) -> None:
        bucket = self.storage()
        if not bucket.exists(self._key(run_id), run_id=run_id):
            raise RunLogNotFoundError(run_id, path=self._location(run_id))
        bucket.delete(self._key(run_id), run_id=run_id)


def _dump(run_log: RunLog) -> bytes:
    return run_log.model_dump_json(indent=4).encode()


__all__ = ["MinioRunLogStore"]
