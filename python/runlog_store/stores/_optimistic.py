"""Optimistic read-modify-write of one object: read it with its ETag, change it, write it back
only if it still has that ETag; when another writer got there first, read again and retry.

This is how writers on different machines update one object without a lock and without losing
each other's updates (docs/format.md, "Object storage").
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from pydantic import AliasChoices, Field

from runlog_store.exceptions import LockTimeoutError
from runlog_store.object_storage import Bucket, ObjectStorageSettings, PreconditionFailed


class RunLogBucketSettings(ObjectStorageSettings):
    """The settings both object run log stores add to the connection: runnable's default
    bucket and prefix, and how long an update retries against other writers."""

    bucket: str = Field(
        default="runnable/run-logs", validation_alias=AliasChoices("bucket", "bucket_name")
    )
    update_timeout: float = Field(default=60.0, gt=0)


def update_object(
    bucket: Bucket,
    key: str,
    change: Callable[[bytes | None], bytes],
    *,
    timeout: float,
    run_id: str = "",
) -> bytes:
    """Write ``change(current bytes or None)`` at ``key`` so that no concurrent update is lost;
    returns the bytes written. ``change`` may run several times and must not have effects."""
    deadline = time.monotonic() + timeout
    pause = 0.002
    conflicts = 0
    while True:
        current = bucket.get(key, run_id=run_id)
        new = change(current[0] if current is not None else None)
        try:
            if current is None:
                bucket.put(key, new, if_none_match=True, run_id=run_id)
            else:
                bucket.put(key, new, if_match=current[1], run_id=run_id)
            return new
        except PreconditionFailed:
            conflicts += 1
        if time.monotonic() >= deadline:
            raise LockTimeoutError(
                f"could not update {bucket.url(key)} within {timeout:g} s: other writers changed "
                f"it {conflicts} times in a row",
                path=bucket.url(key),
                run_id=run_id,
            )
        time.sleep(pause * (0.5 + random.random()))
        pause = min(pause * 2, 0.25)
