"""``chunked-minio``: the chunked layout in object storage (docs/format.md, "Object storage").

``<bucket>/<prefix>/<run_id>/`` holds the same names and JSON as a chunked-fs run folder, so a
run moves between the two by copying files to objects. A step chunk is one PUT (replacing an
object is atomic in S3 and MinIO); ``RunLog.json`` and branch chunks are updated with
conditional PUTs on their ETag and retried on conflict, so writers on any number of machines
lose no update. A full read lists the run once, fetches every chunk in parallel and merges them
in the Rust core.

Requests, not bytes, are what a full read costs here, so a branch is **sealed** when it ends: the
process that closes it (status SUCCESS or FAIL) writes the step chunks it wrote for that branch
into the branch's own chunk too, with an index of their ETags (``_chunks``). A full read first
fetches ``RunLog.json`` and the branch chunks, then only the step chunks whose listed ETag is not
in an index: a map of 200 branches x 5 steps is 201 GETs instead of 1,201. A step chunk changed
after its branch was sealed has a new ETag, so it is fetched and wins (docs/format.md).

A full read of a run that has ended also leaves the merged document beside the chunks
(``.merged.json``) with the ETag of every object it came from; the next full read lists the run,
and if every name and ETag is unchanged, that document is the answer (one GET).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from pydantic import ConfigDict, PrivateAttr

from runlog_store import _core
from runlog_store._paths import validate_run_id
from runlog_store.exceptions import ChunkNotFoundError, RunLogExistsError, RunLogNotFoundError
from runlog_store.models import ENDED_STATUSES, BranchLog
from runlog_store.objectstore import update_object
from runlog_store.stores.chunked import (
    LAYOUT_MARKER,
    LAYOUT_MARKER_TEXT,
    RUN_LOG_FILE,
    ChunkedRunLogStore,
)
from runlog_store.stores.minio import RunLogBucketSettings

# The merged run as a full read of a run that has ended assembled it, with the ETag of every
# object it came from: a later full read checks those against one listing and is one GET.
SNAPSHOT = _core.SNAPSHOT_NAME
MAX_UNSEALED = 20_000


class ChunkedMinioRunLogStore(ChunkedRunLogStore, RunLogBucketSettings):
    """Run logs in chunks under ``<bucket>/<prefix>/<run_id>/``; safe for writers anywhere."""

    model_config = ConfigDict(extra="forbid")

    service_name: str = "chunked-minio"

    # Runs this process has seen exist: a chunk write checks its run once, not every time.
    _known_runs: set[str] = PrivateAttr(default_factory=set)
    # Step chunks this process wrote and no branch has sealed yet:
    # (run_id, internal name) -> (chunk name, bytes, ETag).
    _unsealed: dict[tuple[str, str], tuple[str, bytes, str]] = PrivateAttr(default_factory=dict)

    def location(self) -> str:
        return self.bucket_location()

    def _key(self, run_id: str, name: str = "") -> str:
        return self.storage().key(validate_run_id(run_id), name)

    # --- storage primitives ---------------------------------------------------------------

    def _doc_location(self, run_id: str, name: str) -> str:
        return self.storage().url(self._key(run_id, name))

    def _doc_read(self, run_id: str, name: str) -> bytes | None:
        found = self.storage().get(self._key(run_id, name), run_id=run_id)
        return found[0] if found is not None else None

    def _doc_write(self, run_id: str, name: str, data: bytes, internal_name: str = "") -> None:
        if run_id not in self._known_runs and not self._run_exists(run_id):
            raise ChunkNotFoundError(
                f"run {run_id!r} has no {RUN_LOG_FILE}",
                path=self._doc_location(run_id, RUN_LOG_FILE),
                run_id=run_id,
            )
        etag = self.storage().put(self._key(run_id, name), data, run_id=run_id)
        if internal_name:
            if len(self._unsealed) >= MAX_UNSEALED:
                self._unsealed.clear()  # only an optimisation: reads fetch those chunks
            self._unsealed[(run_id, internal_name)] = (name, data, etag)

    def _branch_patch(self, run_id: str, branch: BranchLog, patch: bytes) -> bytes:
        """Seal an ending branch: embed the step chunks this process wrote for it."""
        if branch.status not in ENDED_STATUSES:
            return patch
        prefix = branch.internal_name + "."
        # list() copies in one step: other threads may be adding steps meanwhile.
        mine = sorted(
            (internal, chunk)
            for (run, internal), chunk in list(self._unsealed.items())
            if run == run_id and internal.startswith(prefix)
        )
        if not mine:
            return patch
        for internal, _ in mine:
            self._unsealed.pop((run_id, internal), None)
        return _core.seal_branch_patch(
            patch,
            [(internal, data) for internal, (_, data, _) in mine],
            [(name, etag) for _, (name, _, etag) in mine],
        )

    def _doc_patch(
        self,
        run_id: str,
        name: str,
        patch: bytes,
        merge_keys: tuple[str, ...] = (),
        create: bytes | None = None,
    ) -> bytes:
        location = self._doc_location(run_id, name)
        if name != RUN_LOG_FILE and run_id not in self._known_runs:
            self._raise_if_run_missing(run_id)

        def change(current: bytes | None) -> bytes:
            return _core.apply_patch(
                location, current, patch, merge_keys=merge_keys, create=create, run_id=run_id
            )

        written = update_object(
            self.storage(),
            self._key(run_id, name),
            change,
            timeout=self.update_timeout,
            run_id=run_id,
        )
        if name == RUN_LOG_FILE:
            self._known_runs.add(run_id)
        return written

    def _run_create(self, run_id: str, run_log: bytes) -> None:
        bucket = self.storage()
        key = self._key(run_id, RUN_LOG_FILE)
        if not bucket.create(key, run_log, run_id=run_id):
            raise RunLogExistsError(run_id, path=bucket.url(key))
        bucket.put(self._key(run_id, LAYOUT_MARKER), LAYOUT_MARKER_TEXT, run_id=run_id)
        self._known_runs.add(run_id)

    def _run_prepare(self, run_id: str) -> None:
        return None

    def _run_merge(self, run_id: str, salvage: bool) -> tuple[bytes, list[tuple[str, str]]]:
        bucket = self.storage()
        folder = self._key(run_id) + "/"
        listed = {
            key[len(folder) :]: etag
            for key, etag in bucket.list_etags(folder, run_id=run_id).items()
        }
        missing = ChunkNotFoundError(
            f"run {run_id!r} has no {RUN_LOG_FILE}",
            path=self._doc_location(run_id, RUN_LOG_FILE),
            run_id=run_id,
        )
        if RUN_LOG_FILE not in listed:
            raise missing
        chunks = {n: e for n, e in listed.items() if n != SNAPSHOT}
        if not salvage and SNAPSHOT in listed:
            document = self._snapshot(folder, chunks, run_id)
            if document is not None:
                return document, []
        first = [RUN_LOG_FILE] + [n for n in chunks if n.startswith("BranchLog-")]
        documents = self._fetch(folder, first, run_id)
        run_log = documents.pop(RUN_LOG_FILE, None)
        if run_log is None:
            raise missing
        covered = _core.sealed_step_chunks(list(documents.values()), listed)
        rest = [n for n in chunks if n.startswith("StepLog-") and n not in covered]
        documents.update(self._fetch(folder, rest, run_id))
        self._known_runs.add(run_id)
        merged, skipped = _core.merge_chunks(
            bucket.url(self._key(run_id)),
            run_log,
            list(documents.items()),
            salvage=salvage,
            run_id=run_id,
        )
        if not skipped and _core.document_status(run_log) in ENDED_STATUSES:
            bucket.put(folder + SNAPSHOT, _core.encode_snapshot(chunks, merged), run_id=run_id)
        return merged, skipped

    def _snapshot(self, folder: str, chunks: dict[str, str], run_id: str) -> bytes | None:
        """The merged run saved by an earlier full read, if every object is still what it was
        then (the same names with the same ETags); else None."""
        found = self.storage().get(folder + SNAPSHOT, run_id=run_id)
        return _core.decode_snapshot(found[0], chunks) if found is not None else None

    def _fetch(self, folder: str, names: list[str], run_id: str) -> dict[str, bytes]:
        fetched = self.storage().get_many([folder + n for n in names], run_id=run_id)
        return {n: f[0] for n, f in zip(names, fetched, strict=True) if f is not None}

    def _run_exists(self, run_id: str) -> bool:
        exists = self.storage().exists(self._key(run_id, RUN_LOG_FILE), run_id=run_id)
        if exists:
            self._known_runs.add(run_id)
        return exists

    def _run_is_own_layout(self, run_id: str) -> bool:
        return self.storage().exists(self._key(run_id, LAYOUT_MARKER), run_id=run_id)

    # --- listing and deleting ---------------------------------------------------------------

    def list_run_ids(self) -> list[str]:
        """Run ids, newest first, from one listing and one HEAD of each run's RunLog.json."""
        bucket = self.storage()
        root = bucket.key() + "/" if bucket.prefix else ""
        run_ids = [
            obj.key[len(root) :].rstrip("/")
            for obj in bucket.list_objects(root, recursive=False)
            if obj.is_prefix
        ]
        run_ids = [r for r in run_ids if r and not r.startswith(".")]

        def modified(run_id: str) -> tuple[float, str] | None:
            stat = bucket.stat(bucket.key(run_id, RUN_LOG_FILE))
            if stat is None or stat.modified is None:
                return None
            return stat.modified, run_id

        with ThreadPoolExecutor(max_workers=min(16, max(1, len(run_ids)))) as pool:
            found = [m for m in pool.map(modified, run_ids) if m is not None]
        return [run_id for _, run_id in sorted(found, reverse=True)]

    def run_modified(self, run_id: str) -> float | None:
        """The newest object's time (branches are objects of their own, see chunked-fs). The
        snapshot is left out: a read writes it, and reading a run is not writing it."""
        objects = self.storage().list_objects(self._key(run_id) + "/", run_id=run_id)
        times = [
            o.modified
            for o in objects
            if o.modified is not None and not o.key.endswith("/" + SNAPSHOT)
        ]
        return max(times, default=None)

    def delete_run(self, run_id: str) -> None:
        """Remove every object of the run, ``RunLog.json`` last: until then the run is still
        found (a reader sees its remaining pieces), and a gc stopped half-way can be re-run."""
        if not self._run_exists(run_id):
            raise RunLogNotFoundError(run_id, path=self._doc_location(run_id, RUN_LOG_FILE))
        bucket = self.storage()
        head = self._key(run_id, RUN_LOG_FILE)
        names = [o.key for o in bucket.list_objects(self._key(run_id) + "/", run_id=run_id)]
        for name in [n for n in names if n != head] + [head]:
            bucket.delete(name, run_id=run_id)
        self._known_runs.discard(run_id)


__all__ = ["ChunkedMinioRunLogStore"]
