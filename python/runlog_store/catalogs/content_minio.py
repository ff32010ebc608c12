"""``content-minio``: the content catalog in a MinIO or S3 bucket (docs/format.md, "Content
catalogs")::

    <bucket>/<prefix>/objects/<2 hex>/<62 hex>   every content once, named by its BLAKE3
    <bucket>/<prefix>/manifests/<run_id>.json    what a run owns: path -> digest, size, mode
    <bucket>/<prefix>/locks/<put|gc>-<id>        leases: puts and a sweep exclude each other
    <bucket>/<prefix>/incoming/<id>              a large content on its way in (then copied)

A put checks each content with a HEAD and uploads only the missing ones, on threads; the bytes
uploaded are checked against the content's name before the object gets it (a small content is
read into memory, hashed and sent in one PUT; a large one is streamed to ``incoming/``, hashed
as it goes, and copied into place on the server only when it matches), so a file changed while
it is put never leaves wrong bytes under a name. The manifest is then merged with a conditional
PUT (``If-Match``), so concurrent puts into one run on any number of machines lose nothing.

The store's lock is a set of lease objects under ``locks/``, as restic's repository locks: a
put writes ``locks/put-<id>`` and lists the leases; if a sweep's lease is there it withdraws
and waits, else it goes on. A sweep writes ``locks/gc-<id>`` and waits until no put lease is
left. With a listing that shows every write completed before it (S3 and MinIO are strongly
consistent), one of any two that overlap sees the other. Leases are rewritten every
``LEASE_SECONDS / 4`` while held and are stale after ``LEASE_SECONDS`` (server time), so a
killed put holds a sweep up for at most that long; a put whose lease could not be renewed in
time records nothing.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, field_validator

from runlog_store import _core
from runlog_store._paths import validate_run_id
from runlog_store.callbacks import Callback
from runlog_store.catalogs.base import (
    batches_in_threads,
    run_in_threads,
    temp_beside,
    usable_hash_cache,
)
from runlog_store.catalogs.content import (
    LOCK_WAIT_SECONDS,
    ContentCatalog,
    LinkMode,
    Manifest,
    decode_manifest,
    file_mode,
    manifest_rows,
    process_umask,
)
from runlog_store.exceptions import CatalogError, LockTimeoutError
from runlog_store.objectstore import Bucket, ObjectStorageSettings, StoredObject, update_object

# A lease older than this (by the server's clock) belongs to a dead process.
LEASE_SECONDS = 600.0
# Contents up to this size are read into memory, hashed and sent in one PUT.
SMALL_CONTENT_BYTES = 64 << 20
# A large upload left in incoming/ by a killed put is removed by a sweep once this old.
INCOMING_SECONDS = 24 * 3600.0
MANIFEST_UPDATE_SECONDS = 60.0
HASH_CACHE_NAME = "hash-cache"


def user_hash_cache() -> str | None:
    """This user's hash cache (``$XDG_CACHE_HOME/runlog-store/hash-cache``): file identities are
    per machine, so one cache serves every bucket; None when it cannot be made, or when a link
    is in its place (``usable_hash_cache``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = os.path.join(base, "runlog-store")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return None
    return usable_hash_cache(os.path.join(folder, HASH_CACHE_NAME))


class ContentMinioCatalog(ContentCatalog, ObjectStorageSettings):
    """A content catalog in a bucket (default ``runnable``, as runnable's catalog)."""

    model_config = ConfigDict(extra="forbid")

    service_name: str = "content-minio"

    @field_validator("link")
    @classmethod
    def _downloads_are_copies(cls, value: LinkMode) -> LinkMode:
        if value not in ("auto", "copy"):
            raise ValueError(
                f"link: {value} needs the contents on this machine's filesystem; a get from a "
                "bucket downloads a copy (use auto or copy)"
            )
        return value

    def location(self) -> str:
        bucket = self.storage()
        return bucket.url(bucket.key())

    # --- layout -------------------------------------------------------------------------------

    def object_key(self, digest: str) -> str:
        path = _core.content_object_path("objects", digest)
        return self.storage().key(Path(path).as_posix())

    def manifest_key(self, run_id: str) -> str:
        return self.storage().key("manifests", f"{validate_run_id(run_id)}.json")

    def _run_location(self, run_id: str) -> str:
        return self.storage().url(self.manifest_key(run_id))

    def _hash_cache(self) -> str | None:
        return user_hash_cache()

    # --- manifests ------------------------------------------------------------------------------

    def _read_manifest(self, run_id: str) -> Manifest | None:
        key = self.manifest_key(run_id)
        found = self.storage().get(key, run_id=run_id)
        if found is None:
            return None
        return decode_manifest(self.storage().url(key), found[0], run_id)

    def _merge_manifest(self, run_id: str, entries: Manifest) -> None:
        bucket = self.storage()
        key = self.manifest_key(run_id)
        patch = _core.encode_manifest(run_id, manifest_rows(entries))
        empty = _core.encode_manifest(run_id, [])
        where = bucket.url(key)
        update_object(
            bucket,
            key,
            lambda current: _core.apply_patch(
                where, current, patch, merge_keys=["files"], create=empty, run_id=run_id
            ),
            timeout=MANIFEST_UPDATE_SECONDS,
            run_id=run_id,
        )

    def _remove_manifest(self, run_id: str) -> int:
        bucket = self.storage()
        key = self.manifest_key(run_id)
        try:
            manifest = self._read_manifest(run_id)
            count = 0 if manifest is None else len(manifest)
        except CatalogError:
            count = 1  # a damaged manifest is removed all the same
        if count == 0 and not bucket.exists(key, run_id=run_id):
            return 0
        bucket.delete(key, run_id=run_id)
        return count

    def _manifest_run_ids(self) -> list[str]:
        prefix = self.storage().key("manifests") + "/"
        return sorted(
            obj.key[len(prefix) : -len(".json")]
            for obj in self.storage().list_objects(prefix)
            if not obj.is_prefix and obj.key.endswith(".json")
        )

    # --- contents -------------------------------------------------------------------------------

    def _ensure_contents(
        self, run_id: str, items: Sequence[tuple[Path, str, int]], callback: Callback
    ) -> None:
        bucket = self.storage()

        def ensure(item: tuple[Path, str, int]) -> None:
            source, digest, size = item
            key = self.object_key(digest)
            found = bucket.stat(key, run_id=run_id)
            if found is not None and found.size == size:
                return
            if size <= SMALL_CONTENT_BYTES:
                data = source.read_bytes()
                _check_digest(_digest_of(data), digest, source, run_id)
                bucket.put(key, data, run_id=run_id)
                return
            incoming = bucket.key("incoming", uuid.uuid4().hex)
            try:
                sent = bucket.upload_file(incoming, str(source), algorithm="blake3", run_id=run_id)
                _check_digest(sent, digest, source, run_id)
                bucket.copy(incoming, key, run_id=run_id)
            finally:
                with contextlib.suppress(Exception):
                    bucket.delete(incoming, run_id=run_id)

        batches_in_threads("store", items, [size for *_, size in items], ensure, callback)

    def _place_contents(
        self,
        run_id: str,
        items: Sequence[tuple[str, Path, int, int]],
        check: bool,
        callback: Callback,
    ) -> None:
        bucket = self.storage()
        umask = process_umask()

        def place(item: tuple[str, Path, int, int]) -> None:
            digest, target, mode, _ = item
            _core.ensure_dir(str(target.parent), run_id=run_id)
            # The download writes a temp file of its own beside this one: a short name leaves
            # it room, whatever the length of the target's.
            temp = temp_beside(target, short=True)
            try:
                got = bucket.download_file(
                    self.object_key(digest), temp, algorithm="blake3", run_id=run_id
                )
                if check and got != digest:
                    raise CatalogError(
                        f"the stored content {bucket.url(self.object_key(digest))} holds bytes "
                        f"whose BLAKE3 is {got}, not its name: the content store is damaged "
                        "(runlog verify shows the runs it affects)",
                        path=bucket.url(self.object_key(digest)),
                        run_id=run_id,
                    )
                # As content-fs's copies: the executable bit's meaning only, under the umask.
                os.chmod(temp, file_mode(mode) & ~umask)
                os.replace(temp, target)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    temp.unlink()

        batches_in_threads("get", items, [size for *_, size in items], place, callback)

    def _stored_contents(self) -> dict[str, int]:
        prefix = self.storage().key("objects") + "/"
        found: dict[str, int] = {}
        for obj in self.storage().list_objects(prefix):
            name = obj.key[len(prefix) :].replace("/", "")
            if not obj.is_prefix and len(name) == 64:
                found[name] = obj.size
        return found

    def _remove_contents(self, digests: Sequence[str]) -> None:
        bucket = self.storage()
        run_in_threads([partial(bucket.delete, self.object_key(d)) for d in digests])

    def _clean_leftovers(self) -> None:
        bucket = self.storage()
        prefix = bucket.key("incoming") + "/"
        now = time.time()
        old = [
            obj.key
            for obj in bucket.list_objects(prefix)
            if obj.modified is not None and now - obj.modified > INCOMING_SECONDS
        ]
        run_in_threads([partial(bucket.delete, key) for key in old])

    # --- the store's lock -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _sharing(self, run_id: str) -> Iterator[Callable[[], None]]:
        with Lease(self.storage(), "put", run_id) as lease:
            yield lease.check

    @contextlib.contextmanager
    def _excluding(self) -> Iterator[None]:
        with Lease(self.storage(), "gc", ""):
            yield


def _digest_of(data: bytes) -> str:
    hasher = _core.Hasher("blake3")
    hasher.update(data)
    return hasher.hexdigest()


def _check_digest(found: str, expected: str, source: Path, run_id: str) -> None:
    if found != expected:
        raise CatalogError(
            f"{source} changed since it was hashed (BLAKE3 {expected}, now {found}); put it "
            "again once it is complete",
            path=str(source),
            run_id=run_id,
        )


class Lease:
    """One lease object under ``locks/`` (see the module docstring), held while in use."""

    def __init__(self, bucket: Bucket, kind: Literal["put", "gc"], run_id: str) -> None:
        self.bucket = bucket
        self.kind = kind
        self.run_id = run_id
        self.key = ""
        self.renewed = 0.0
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _prefix(self) -> str:
        return self.bucket.key("locks") + "/"

    def _take(self) -> None:
        self.key = self._prefix() + f"{self.kind}-{uuid.uuid4().hex}"
        self.bucket.put(self.key, b"", run_id=self.run_id)
        self.renewed = time.monotonic()

    def _drop(self) -> None:
        with contextlib.suppress(Exception):
            self.bucket.delete(self.key, run_id=self.run_id)

    def _others(self) -> list[StoredObject]:
        """The live leases of others: a lease older than LEASE_SECONDS by the server's clock
        (measured against this lease, just written) is a dead process's."""
        listed = self.bucket.list_objects(self._prefix(), run_id=self.run_id)
        mine = next((obj for obj in listed if obj.key == self.key), None)
        now = mine.modified if mine is not None and mine.modified is not None else time.time()
        return [
            obj
            for obj in listed
            if obj.key != self.key
            and not obj.is_prefix
            and (obj.modified is None or now - obj.modified < LEASE_SECONDS)
        ]

    def __enter__(self) -> Lease:
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        pause = 0.05
        while True:
            self._take()
            names = [obj.key[len(self._prefix()) :] for obj in self._others()]
            sweeps = [n for n in names if n.startswith("gc-")]
            puts = [n for n in names if n.startswith("put-")]
            if self.kind == "put" and not sweeps:
                break
            if self.kind == "gc" and not sweeps:
                # Ours is there: new puts withdraw. Wait for those in flight.
                while puts and time.monotonic() < deadline:
                    time.sleep(pause)
                    pause = min(pause * 2, 1.0)
                    self._renew()
                    puts = [
                        n
                        for obj in self._others()
                        if (n := obj.key[len(self._prefix()) :]).startswith("put-")
                    ]
                if not puts:
                    break
            self._drop()
            if time.monotonic() >= deadline:
                waiting_for = "a gc of the content store" if self.kind == "put" else "puts"
                raise LockTimeoutError(
                    f"{self.bucket.url(self._prefix())}: {waiting_for} held the store for "
                    f"{LOCK_WAIT_SECONDS:g} s",
                    path=self.bucket.url(self._prefix()),
                    run_id=self.run_id,
                )
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
        self._stop.clear()
        self._renewer = threading.Thread(target=self._keep_renewed, daemon=True)
        self._renewer.start()
        return self

    def _renew(self) -> None:
        self.bucket.put(self.key, b"", run_id=self.run_id)
        self.renewed = time.monotonic()

    def _keep_renewed(self) -> None:
        while not self._stop.wait(LEASE_SECONDS / 4):
            with contextlib.suppress(Exception):
                self._renew()

    def check(self) -> None:
        """Fail unless the lease was renewed recently enough that no sweep can have taken it
        for a dead process's."""
        if time.monotonic() - self.renewed > LEASE_SECONDS / 2:
            raise CatalogError(
                f"the lease {self.bucket.url(self.key)} could not be renewed for "
                f"{time.monotonic() - self.renewed:.0f} s: a gc may have run meanwhile, so "
                "nothing was recorded; put again",
                path=self.bucket.url(self.key),
                run_id=self.run_id,
            )

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        self._drop()


__all__ = ["ContentMinioCatalog", "Lease"]
