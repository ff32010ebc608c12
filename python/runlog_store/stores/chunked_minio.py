"""``chunked-minio``: runnable 0.50's chunked layout in object storage (docs/format.md, "Object
storage").

``<bucket>/<prefix>/<run_id>/`` holds, at rest, what runnable's own ``ChunkedMinioRunLogStore``
reads: ``RunLog`` (the run's fields and root steps) and ``BranchLog-<name>`` (a branch's
fields, parameters and direct steps). Object storage has no append, so while a run goes on each
step is an object of its own (``StepLog-<key>.json``, one PUT: replacing an object is atomic in
S3 and MinIO), and the run's and branches' fields are updated with conditional PUTs on their
ETag, retried on conflict, so writers on any number of machines lose no update.

When a branch ends, the process that ends it **folds** its steps into the branch's object, with
an index of the ETags of the step objects it embeds (``_chunks``), in the same conditional PUT
that stores the ending status; when the run ends, the root steps (and any step not yet folded)
go into ``RunLog`` and their branches' objects. A full read lists the run, fetches ``RunLog``
and the branch objects, then only the step objects whose listed ETag is not in an index: a map
of 200 branches x 5 steps is 201 GETs instead of 1,201. A step written after its fold has a new
ETag, so it is fetched and wins. A full read of an ended run also leaves the merged document
beside the run (``.merged.json``) with the ETag of every object it came from; the next full
read lists the run, and if every name and ETag is unchanged, that document is the answer.

A run is what has a run document (``RunLog``): a delete removes it first, in one DELETE, so
readers see the whole run or none, then the rest; a removal cut short is finished by the next
delete or gc, or by a run created again under the id (docs/format.md, "Deleting a run").

Runs of format 1 (``RunLog.json``, ``BranchLog-<key>.json``) are read and written to with their
own names.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import ConfigDict, PrivateAttr

from runlog_store import _core
from runlog_store._paths import validate_run_id
from runlog_store.exceptions import (
    ChunkNotFoundError,
    CorruptChunkError,
    InvalidRunIdError,
    PreconditionFailed,
    RunIdMismatchError,
    RunLogExistsError,
    RunLogNotFoundError,
)
from runlog_store.models import ENDED_STATUSES, BranchLog, RunLog
from runlog_store.objectstore import update_object
from runlog_store.stores.chunked import (
    LAYOUT_MARKER,
    RUN_LOG_FILE,
    Change,
    ChunkedRunLogStore,
    chunk_name,
)
from runlog_store.stores.minio import RunLogBucketSettings

if TYPE_CHECKING:
    from runlog_store.search.index import RunIndex

# The merged run as a full read of a run that has ended assembled it, with the ETag of every
# object it came from: a later full read checks those against one listing and is one GET.
SNAPSHOT = _core.SNAPSHOT_NAME
RUN_LOG_OBJECT = _core.RUN_LOG_OBJECT
MAX_UNSEALED = 20_000
# ``<prefix>/.deleting/<run_id>``: a run's removal under way, or cut short (a killed gc). Names
# starting with a dot are no run's: listings skip them.
DELETING = ".deleting"
# Objects of a removed run deleted in parallel between two looks at its run document.
REMOVAL_BATCH = 16

Naming = Literal["objects", "folder"]
# The layout markers of runs this store created: every step has an object of its own.
OWN_MARKERS = (_core.MINIO_LAYOUT_MARKER_TEXT, _core.LAYOUT_MARKER_TEXT_1)
FOLD_KEYS = ("steps", _core.CHUNK_INDEX_KEY)


class ChunkedMinioRunLogStore(ChunkedRunLogStore, RunLogBucketSettings):
    """Run logs under ``<bucket>/<prefix>/<run_id>/`` in runnable's chunked layout; safe for
    writers anywhere."""

    model_config = ConfigDict(extra="forbid")

    service_name: str = "chunked-minio"

    # How each run this store has seen names its documents: "objects" (format 2, runnable's
    # names) or "folder" (format 1, chunked-fs names).
    _namings: dict[str, Naming] = PrivateAttr(default_factory=dict)
    # Step objects this process wrote: (run_id, internal name) -> (object name, bytes, ETag),
    # so folding a branch it ran fetches nothing.
    _unsealed: dict[tuple[str, str], tuple[str, bytes, str]] = PrivateAttr(default_factory=dict)
    # Steps holding a branch, known folded into their document: (run_id, name) -> ETag.
    _folded_parents: dict[tuple[str, str], str] = PrivateAttr(default_factory=dict)
    # When each step and branch this store wrote was first stored (its objects' _created_ns),
    # so that rewriting one keeps its place among its siblings without reading it first:
    # (run_id, internal name) -> ns.
    _created: dict[tuple[str, str], int] = PrivateAttr(default_factory=dict)
    # Whether this store has finished the removals cut short (its first delete does).
    _swept_leftovers: bool = PrivateAttr(default=False)
    PER_PROCESS_STATE: ClassVar[tuple[str, ...]] = (
        *ChunkedRunLogStore.PER_PROCESS_STATE,
        "_namings",
        "_unsealed",
        "_folded_parents",
        "_created",
        "_swept_leftovers",
    )

    def location(self) -> str:
        return self.bucket_location()

    def _run_index(self) -> RunIndex:
        from runlog_store.search.index import RunIndex
        from runlog_store.search.sources import ChunkedMinioSource

        return RunIndex(ChunkedMinioSource(self))

    def _key(self, run_id: str, name: str = "") -> str:
        return self.storage().key(validate_run_id(run_id), name)

    def _folder(self, run_id: str) -> str:
        return self._key(run_id) + "/"

    # --- names -------------------------------------------------------------------------------

    def _naming(self, run_id: str) -> Naming:
        """How the run names its documents; ChunkNotFoundError when it does not exist."""
        naming = self._namings.get(run_id)
        if naming is not None:
            return naming
        bucket = self.storage()
        if bucket.exists(self._key(run_id, RUN_LOG_OBJECT), run_id=run_id):
            naming = "objects"
        elif bucket.exists(self._key(run_id, RUN_LOG_FILE), run_id=run_id):
            naming = "folder"
        else:
            raise ChunkNotFoundError(
                f"run {run_id!r} does not exist",
                path=self._location(run_id, RUN_LOG_OBJECT),
                run_id=run_id,
            )
        self._namings[run_id] = naming
        return naming

    def _run_doc(self, run_id: str) -> str:
        return RUN_LOG_OBJECT if self._naming(run_id) == "objects" else RUN_LOG_FILE

    def _branch_doc(self, run_id: str, name: str, naming: Naming | None = None) -> str:
        document = chunk_name("BranchLog", name, run_id)
        if (naming or self._naming(run_id)) == "objects":
            return document.removesuffix(".json")
        return document

    # --- storage primitives ---------------------------------------------------------------

    def _location(self, run_id: str, name: str = "") -> str:
        return self.storage().url(self._key(run_id, name))

    def _create(self, run_id: str, run_log: bytes) -> None:
        bucket = self.storage()
        key = self._key(run_id, RUN_LOG_OBJECT)
        older = self._key(run_id, RUN_LOG_FILE)
        # One listing says whether a format-1 run has the id, and what a removal cut short (or
        # a write into the run after its removal) left under it: no part of the new run, so
        # removed before it is created. Only run log objects: a catalog sharing the prefix
        # keeps its files there, which a copy writes before the run.
        listed = self._listed(run_id)
        if older in listed:
            raise RunLogExistsError(run_id, path=bucket.url(key))
        if key not in listed:
            folder = self._folder(run_id)
            left = [k for k in listed if _run_log_object(k[len(folder) :])]
            if left:
                self._remove_pieces(run_id, left)
        if not bucket.create(key, run_log, run_id=run_id):
            raise RunLogExistsError(run_id, path=bucket.url(key))
        bucket.put(self._key(run_id, LAYOUT_MARKER), _core.MINIO_LAYOUT_MARKER_TEXT, run_id=run_id)
        self._namings[run_id] = "objects"

    def _prepare(self, run_id: str, run_log: bytes) -> None:
        try:
            self._naming(run_id)
        except ChunkNotFoundError:
            try:
                self._create(run_id, run_log)
            except RunLogExistsError:
                self._namings.pop(run_id, None)

    def _patch(
        self,
        run_id: str,
        name: str,
        patch: bytes,
        merge_keys: tuple[str, ...] = (),
        create: bytes | None = None,
    ) -> bytes:
        """Apply a patch (``_core.apply_patch``) with a conditional PUT, retried on conflict."""
        location = self._location(run_id, name)

        def change(current: bytes | None) -> bytes:
            return _core.apply_patch(
                location, current, patch, merge_keys=list(merge_keys), create=create, run_id=run_id
            )

        return update_object(
            self.storage(),
            self._key(run_id, name),
            change,
            timeout=self.update_timeout,
            run_id=run_id,
        )

    def _write(self, run_id: str, changes: list[Change]) -> None:
        naming = self._naming(run_id)
        for change in changes:
            if change.kind in ("run-set", "run-merge"):
                merge = change.keys if change.kind == "run-merge" else ()
                self._patch(run_id, self._run_doc(run_id), change.body, merge)
            elif change.kind == "branch-merge":
                self._patch(
                    run_id,
                    self._branch_doc(run_id, change.target, naming),
                    change.body,
                    change.keys,
                )
            elif change.kind == "branch-put":
                self._put_branch(run_id, change, naming)
            else:
                self._put_step(run_id, change)

    def _put_step(self, run_id: str, change: Change) -> None:
        name = chunk_name("StepLog", change.target, run_id)
        key = self._key(run_id, name)
        bucket = self.storage()
        created_ns = self._created.get((run_id, change.target))
        etag = None
        if created_ns is None:
            # A step this store has not written: most likely a new one, so it is created with
            # the time now in one conditional PUT; if it exists (written by another process),
            # its own creation time is kept.
            created_ns = time.time_ns()
            data = _core.chunk_with_header(created_ns, change.body)
            try:
                etag = bucket.put(key, data, if_none_match=True, run_id=run_id)
            except PreconditionFailed:
                created_ns = self._stored_created_ns(run_id, name)
        if etag is None:
            data = _core.chunk_with_header(created_ns, change.body)
            etag = bucket.put(key, data, run_id=run_id)
        self._remember_created(run_id, change.target, created_ns)
        if len(self._unsealed) >= MAX_UNSEALED:
            self._unsealed.clear()  # only an optimisation: a fold fetches those objects
        self._unsealed[(run_id, change.target)] = (name, data, etag)

    def _remember_created(self, run_id: str, name: str, created_ns: int) -> None:
        if len(self._created) >= MAX_UNSEALED:
            self._created.clear()  # only an optimisation: the object says it again
        self._created[(run_id, name)] = created_ns

    def _stored_created_ns(self, run_id: str, name: str) -> int:
        """The creation time a rewritten step object must keep, or now for a new one."""
        found = self.storage().get(self._key(run_id, name), run_id=run_id)
        if found is not None:
            try:
                created_ns, _ = _core.split_chunk_header(found[0])
            except ValueError:
                created_ns = None
            if created_ns is not None:
                return created_ns
        return time.time_ns()

    def _put_branch(self, run_id: str, change: Change, naming: Naming) -> None:
        branch = change.model
        assert isinstance(branch, BranchLog)  # a branch put carries its branch
        document = self._branch_doc(run_id, change.target, naming)
        patch = branch.model_dump_json(exclude={"steps"}).encode()
        merge_keys: tuple[str, ...] = ()
        if branch.status in ENDED_STATUSES:
            # The fold, in the same conditional PUT as the ending status.
            steps, index = self._branch_steps(run_id, change.target, naming)
            patch = _core.seal_branch_patch(patch, steps, index)
            merge_keys = FOLD_KEYS if steps or index else ()
        created_ns = self._created.get((run_id, change.target)) or time.time_ns()
        created = _core.chunk_with_header(created_ns, change.body)
        stored = self._patch(run_id, document, patch, merge_keys, create=created)
        kept, _ = _core.split_chunk_header(stored)
        if kept is not None:
            self._remember_created(run_id, change.target, kept)

    def _branch_steps(
        self, run_id: str, branch: str, naming: Naming
    ) -> tuple[list[tuple[str, bytes]], list[tuple[str, str]]]:
        """Every step object of a branch (its direct steps, by the tree's rule), as stored, and
        the index of their ETags: what a fold embeds in the branch's object."""
        objects, etags = self._branch_objects(run_id, branch, naming, with_documents=False)
        plan = _core.fold_plan(
            self.storage().url(self._key(run_id)),
            RunLog(run_id=run_id).model_dump_json().encode(),
            objects,
            naming=naming,
            run_id=run_id,
        )
        wanted = dict(plan).get(self._branch_doc(run_id, branch, naming), [])
        data = dict(objects)
        steps = [(internal, data[name]) for internal, name in wanted]
        index = [(name, etags[name]) for _, name in wanted]
        for internal, _ in wanted:
            self._unsealed.pop((run_id, internal), None)
        return steps, index

    def _branch_objects(
        self, run_id: str, branch: str, naming: Naming, *, with_documents: bool
    ) -> tuple[list[tuple[str, bytes]], dict[str, str]]:
        """The objects a branch's steps can be in, for a merge of that branch alone: its own
        object (stored, or only its name), the step objects under its name (bytes this process
        wrote, or fetched; with ``with_documents`` only those its own object does not embed as
        they are now) and the branches nested under its name (their names: they decide which
        steps are the branch's own). Also the listed ETags."""
        bucket = self.storage()
        folder = self._folder(run_id)
        document = self._branch_doc(run_id, branch, naming)
        step_prefix = chunk_name("StepLog", branch, run_id).removesuffix(".json") + "."
        branch_prefix = document.removesuffix(".json") + "."
        with ThreadPoolExecutor(max_workers=2) as pool:
            steps_future = pool.submit(bucket.list_etags, folder + step_prefix, run_id=run_id)
            own_future = (
                pool.submit(bucket.get, folder + document, run_id=run_id)
                if with_documents
                else None
            )
            listed = {k[len(folder) :]: e for k, e in steps_future.result().items()}
            own = own_future.result() if own_future is not None else None
        nested: list[str] = []
        if any(_deeper(name, branch) for name in listed):
            # A step named below the branch by more than one component may belong to a branch
            # nested in it (a map value with a dot): those branches decide.
            nested = [
                k[len(folder) :] for k in bucket.list_etags(folder + branch_prefix, run_id=run_id)
            ]
        objects: list[tuple[str, bytes]] = []
        if own is not None and with_documents:
            objects.append((document, own[0]))
            covered = _core.sealed_step_chunks([own[0]], listed)
        else:
            objects.append((document, BranchLog(internal_name=branch).model_dump_json().encode()))
            covered = set()
        for name in nested:
            decoded = _core.chunk_internal_name(name)
            if decoded is not None:
                placeholder = BranchLog(internal_name=decoded[1]).model_dump_json().encode()
                objects.append((name, placeholder))
            else:
                objects += self._fetch(folder, [name], run_id).items()
        mine = {
            name: data
            for (run, _), (name, data, etag) in list(self._unsealed.items())
            if run == run_id and listed.get(name) == etag
        }
        wanted = [n for n in listed if n not in covered]
        missing = [n for n in wanted if n not in mine]
        fetched = self._fetch(folder, missing, run_id)
        for name in wanted:
            data = mine.get(name) or fetched.get(name)
            if data is not None:
                objects.append((name, data))
        return objects, listed

    def _ended(self, run_id: str, branch: str) -> None:
        naming = self._naming(run_id)
        if not branch:
            if self._fold_run(run_id, naming):
                # The run has ended: a full read now stores its merge (the snapshot), so the
                # first read of the ended run is one listing and one GET.
                self._read_full(run_id, salvage=False)
            return
        self._fold_parent(run_id, branch, naming)

    def _fold_parent(self, run_id: str, branch: str, naming: Naming) -> None:
        """Put the step holding an ended branch into its own document (runnable finds branches
        under the steps it reads there), if that copy is not the step's latest; and so on up,
        for a branch nested in another one."""
        while True:
            home = self._fold_parent_step(run_id, branch, naming)
            if home is None:
                return
            branch = home

    def _fold_parent_step(self, run_id: str, branch: str, naming: Naming) -> str | None:
        """Fold the step holding ``branch`` into its document; the branch holding that step
        (None at the root, or when there is no such step)."""
        bucket = self.storage()
        folder = self._folder(run_id)
        parent = etag = None
        head = branch
        while "." in head:
            head = head.rsplit(".", 1)[0]
            stat = bucket.stat(folder + chunk_name("StepLog", head, run_id), run_id=run_id)
            if stat is not None:
                parent, etag = head, stat.etag
                break
        if parent is None or etag is None:
            return None
        home, home_branch = self._run_doc(run_id), None
        head = parent
        while "." in head:
            head = head.rsplit(".", 1)[0]
            candidate = self._branch_doc(run_id, head, naming)
            if bucket.exists(folder + candidate, run_id=run_id):
                home, home_branch = candidate, head
                break
        if self._folded_parents.get((run_id, parent)) == etag:
            return home_branch
        found = bucket.get(folder + home, run_id=run_id)
        if found is None:
            return None
        step_name = chunk_name("StepLog", parent, run_id)
        if step_name not in _core.sealed_step_chunks([found[0]], {step_name: etag}):
            chunk = bucket.get(folder + step_name, run_id=run_id)
            if chunk is None:
                return None
            patch = _core.seal_branch_patch(b"{}", [(parent, chunk[0])], [(step_name, chunk[1])])
            self._patch(run_id, home, patch, FOLD_KEYS)
            etag = chunk[1]
        self._folded_parents[(run_id, parent)] = etag
        return home_branch

    def _fold_run(self, run_id: str, naming: Naming) -> bool:
        """Embed every step whose latest copy is its own object into its document; whether the
        run has ended."""
        bucket = self.storage()
        listed, documents = self._fetch_run(run_id, naming)
        run_doc = self._run_doc(run_id)
        run_log = documents.pop(run_doc, None)
        if run_log is None:
            return False
        plan = _core.fold_plan(
            bucket.url(self._key(run_id)),
            run_log,
            list(documents.items()),
            naming=naming,
            run_id=run_id,
        )

        def fold(item: tuple[str, list[tuple[str, str]]]) -> None:
            document, wanted = item
            steps = [(internal, documents[name]) for internal, name in wanted]
            index = [(name, listed[name]) for _, name in wanted]
            self._patch(run_id, document, _core.seal_branch_patch(b"{}", steps, index), FOLD_KEYS)

        with ThreadPoolExecutor(max_workers=min(16, max(1, len(plan)))) as pool:
            list(pool.map(fold, plan))
        for key in [k for k in self._unsealed if k[0] == run_id]:
            self._unsealed.pop(key, None)
        return _core.document_status(run_log) in ENDED_STATUSES

    def _fetch_run(self, run_id: str, naming: Naming) -> tuple[dict[str, str], dict[str, bytes]]:
        """One listing of the run (names and ETags), and its documents with the step objects
        no document embeds as they are now."""
        bucket = self.storage()
        folder = self._folder(run_id)
        listed = {
            key[len(folder) :]: etag
            for key, etag in bucket.list_etags(folder, run_id=run_id).items()
        }
        run_doc = self._run_doc(run_id)
        if run_doc not in listed:
            raise ChunkNotFoundError(
                f"run {run_id!r} has no {run_doc}",
                path=self._location(run_id, run_doc),
                run_id=run_id,
            )
        first = [run_doc] + [n for n in listed if n.startswith("BranchLog-")]
        documents = self._fetch(folder, first, run_id)
        if run_doc not in documents:
            raise ChunkNotFoundError(
                f"run {run_id!r} has no {run_doc}",
                path=self._location(run_id, run_doc),
                run_id=run_id,
            )
        covered = _core.sealed_step_chunks(list(documents.values()), listed)
        rest = [n for n in listed if n.startswith("StepLog-") and n not in covered]
        documents.update(self._fetch(folder, rest, run_id))
        return listed, documents

    def _read_full(self, run_id: str, salvage: bool) -> tuple[bytes, list[tuple[str, str]]]:
        naming = self._naming(run_id)
        bucket = self.storage()
        folder = self._folder(run_id)
        if not salvage:
            listed = {
                key[len(folder) :]: etag
                for key, etag in bucket.list_etags(folder, run_id=run_id).items()
            }
            chunks = {n: e for n, e in listed.items() if n != SNAPSHOT}
            if SNAPSHOT in listed:
                document = self._snapshot(folder, chunks, run_id)
                if document is not None:
                    return document, []
        listed, documents = self._fetch_run(run_id, naming)
        chunks = {n: e for n, e in listed.items() if n != SNAPSHOT}
        run_doc = self._run_doc(run_id)
        run_log = documents.pop(run_doc)
        merged, skipped = _core.merge_chunks(
            bucket.url(self._key(run_id)),
            run_log,
            list(documents.items()),
            salvage=salvage,
            run_id=run_id,
        )
        assert merged is not None
        if not skipped and _core.document_status(run_log) in ENDED_STATUSES:
            bucket.put(folder + SNAPSHOT, _core.encode_snapshot(chunks, merged), run_id=run_id)
        return merged, skipped

    def _snapshot(self, folder: str, chunks: dict[str, str], run_id: str) -> bytes | None:
        """The merged run saved by an earlier full read, if every object is still what it was
        then (the same names with the same ETags); else None."""
        try:
            found = self.storage().get(folder + SNAPSHOT, run_id=run_id)
        except CorruptChunkError:
            return None  # a cache past the size a store reads: merged again instead
        document = _core.decode_snapshot(found[0], chunks) if found is not None else None
        if document is not None:
            try:
                _core.check_run_document(self._location(run_id, SNAPSHOT), document, run_id)
            except (RunIdMismatchError, CorruptChunkError):
                # A run copied whole under another id, its snapshot too: the merge says so.
                return None
        return document

    def _fetch(self, folder: str, names: list[str], run_id: str) -> dict[str, bytes]:
        fetched = self.storage().get_many([folder + n for n in names], run_id=run_id)
        return {n: f[0] for n, f in zip(names, fetched, strict=True) if f is not None}

    def _read_run(self, run_id: str, steps: bool) -> bytes:
        bucket = self.storage()
        run_doc = self._run_doc(run_id)
        if steps:
            # The root steps not folded yet are objects among all the run's: the whole run says.
            _, documents = self._fetch_run(run_id, self._naming(run_id))
            run_log = documents.pop(run_doc)
            objects = list(documents.items())
        else:
            found = bucket.get(self._key(run_id, run_doc), run_id=run_id)
            if found is None:
                raise ChunkNotFoundError(
                    f"run {run_id!r} has no {run_doc}",
                    path=self._location(run_id, run_doc),
                    run_id=run_id,
                )
            run_log, objects = found[0], []
        merged, _ = _core.merge_chunks(
            bucket.url(self._key(run_id)), run_log, objects, view="run", run_id=run_id
        )
        assert merged is not None
        return merged

    def _read_branch(self, run_id: str, name: str) -> bytes | None:
        naming = self._naming(run_id)
        if not self._has_branch(run_id, name):
            if self._own_layout(run_id):
                return None
            return self._merged_view(run_id, "branch", name)
        objects, _ = self._branch_objects(run_id, name, naming, with_documents=True)
        merged, _ = _core.merge_chunks(
            self.storage().url(self._key(run_id)),
            RunLog(run_id=run_id).model_dump_json().encode(),
            objects,
            view="branch",
            name=name,
            run_id=run_id,
        )
        return merged

    def _read_step(self, run_id: str, name: str) -> bytes | None:
        document = chunk_name("StepLog", name, run_id)
        found = self.storage().get(self._key(run_id, document), run_id=run_id)
        if found is not None:
            try:
                _, body = _core.split_chunk_header(found[0])
            except ValueError as exc:
                location = self._location(run_id, document)
                raise CorruptChunkError(
                    f"{location} is not a step object: {exc}", path=location, run_id=run_id
                ) from exc
            return body
        self._naming(run_id)
        if self._own_layout(run_id):
            return None
        # A run written by runnable keeps its steps inside its documents.
        return self._merged_view(run_id, "step", name)

    def _merged_view(self, run_id: str, view: Literal["branch", "step"], name: str) -> bytes | None:
        _, documents = self._fetch_run(run_id, self._naming(run_id))
        run_log = documents.pop(self._run_doc(run_id))
        merged, _ = _core.merge_chunks(
            self.storage().url(self._key(run_id)),
            run_log,
            list(documents.items()),
            view=view,
            name=name,
            run_id=run_id,
        )
        return merged

    def _has_branch(self, run_id: str, name: str) -> bool:
        document = self._branch_doc(run_id, name)
        return self.storage().exists(self._key(run_id, document), run_id=run_id)

    def _run_exists(self, run_id: str) -> bool:
        try:
            self._naming(run_id)
        except ChunkNotFoundError:
            return False
        return True

    def _own_layout(self, run_id: str) -> bool:
        """Whether every step of the run has an object of its own (a run this store created);
        not a run written by runnable, nor a chunked-fs folder copied in (its steps are in its
        documents)."""
        found = self.storage().get(self._key(run_id, LAYOUT_MARKER), run_id=run_id)
        return found is not None and found[0] in OWN_MARKERS

    # --- listing and deleting ---------------------------------------------------------------

    def list_run_ids(self) -> list[str]:
        """Run ids, newest first, from one listing and a HEAD of each run's document."""
        bucket = self.storage()
        root = bucket.key() + "/" if bucket.prefix else ""
        run_ids = [
            obj.key[len(root) :].rstrip("/")
            for obj in bucket.list_objects(root, recursive=False)
            if obj.is_prefix
        ]
        run_ids = [r for r in run_ids if r and not r.startswith(".")]

        def modified(run_id: str) -> tuple[float, str] | None:
            for name in (RUN_LOG_OBJECT, RUN_LOG_FILE):
                stat = bucket.stat(bucket.key(run_id, name))
                if stat is not None and stat.modified is not None:
                    return stat.modified, run_id
            return None

        with ThreadPoolExecutor(max_workers=min(16, max(1, len(run_ids)))) as pool:
            found = [m for m in pool.map(modified, run_ids) if m is not None]
        return [run_id for _, run_id in sorted(found, reverse=True)]

    def run_modified(self, run_id: str) -> float | None:
        """The newest object's time (branches and steps are objects of their own). The snapshot
        is left out: a read writes it, and reading a run is not writing it."""
        objects = self.storage().list_objects(self._folder(run_id), run_id=run_id)
        times = [
            o.modified
            for o in objects
            if o.modified is not None and not o.key.endswith("/" + SNAPSHOT)
        ]
        return max(times, default=None)

    def delete_run(self, run_id: str) -> None:
        """Remove the run whole, as readers see it: its run document goes first, in one DELETE
        (from then on no listing shows the run, no read finds it, and runnable's store does not
        either), then its other objects. A marker ``.deleting/<run_id>`` beside the runs is
        written before and removed after, so that a removal cut short (a killed gc) is finished
        by the next one (``remove_leftovers``, run by the first delete of each store)."""
        validate_run_id(run_id)
        # Another process may have deleted it since this one looked: the bucket says.
        self._namings.pop(run_id, None)
        if not self._run_exists(run_id):
            raise RunLogNotFoundError(run_id, path=self._location(run_id, RUN_LOG_OBJECT))
        if not self._swept_leftovers:
            self.remove_leftovers()
        bucket = self.storage()
        marker = bucket.key(DELETING, run_id)
        bucket.put(marker, b"", run_id=run_id)
        # Format 1's document first: a run with both is read by RunLog, so that DELETE changes
        # nothing a reader sees; the run's own document is then the one that makes it vanish.
        for name in (RUN_LOG_FILE, RUN_LOG_OBJECT):
            bucket.delete(self._key(run_id, name), run_id=run_id)
        self._forget_run(run_id)
        self._remove_pieces(run_id)
        bucket.delete(marker, run_id=run_id)

    def remove_leftovers(self) -> list[str]:
        """Finish the removals cut short: for each ``.deleting/<run_id>`` marker whose run has
        no run document, remove what is left under the run's prefix, then the marker. A marker
        beside a run document is left alone (a removal under way, or one killed before it
        began: that run is whole, and a later delete decides again). The run ids finished."""
        bucket = self.storage()
        self._swept_leftovers = True
        root = bucket.key(DELETING) + "/"
        finished: list[str] = []
        for key in sorted(bucket.list_etags(root)):
            run_id = key[len(root) :]
            try:
                validate_run_id(run_id)
            except InvalidRunIdError:
                continue  # no marker of this store's: not touched
            if self._remove_pieces(run_id):
                bucket.delete(key, run_id=run_id)
                finished.append(run_id)
        return finished

    def _listed(self, run_id: str) -> list[str]:
        """The keys of every object under the run's prefix, from one listing."""
        return sorted(self.storage().list_etags(self._folder(run_id), run_id=run_id))

    def _remove_pieces(self, run_id: str, listed: list[str] | None = None) -> bool:
        """Delete every object under the prefix of a run that has no run document (a removal
        under way, or cut short), ``listed`` or listed now; False, deleting nothing more, once a
        run document is there: the id was created again, and what is there now is that run's."""
        bucket = self.storage()
        names = self._listed(run_id) if listed is None else listed
        head = self._key(run_id, RUN_LOG_OBJECT)
        if head in names or self._key(run_id, RUN_LOG_FILE) in names:
            return False
        with ThreadPoolExecutor(max_workers=REMOVAL_BATCH) as pool:
            for at in range(0, len(names), REMOVAL_BATCH):
                # Object storage has no conditional DELETE (MinIO ignores If-Match on one): a
                # run created again meanwhile is seen by its run document, which is written
                # before anything else of it, and stops the removal at the next batch.
                if bucket.exists(head, run_id=run_id):
                    return False
                batch = names[at : at + REMOVAL_BATCH]
                list(pool.map(lambda name: bucket.delete(name, run_id=run_id), batch))
        return True

    def _forget_run(self, run_id: str) -> None:
        """Forget what this store knew of a run it deleted (another may take its id)."""
        self._namings.pop(run_id, None)
        for state in (self._folded_parents, self._unsealed, self._created):
            for key in [k for k in state if k[0] == run_id]:
                state.pop(key, None)
        self._forget(run_id)


def _run_log_object(name: str) -> bool:
    """Whether a name under a run's prefix is one of the run log's own objects (not a catalog
    file of a minio catalog that shares the prefix)."""
    if "/" in name:
        return False
    return name.startswith(("StepLog-", "BranchLog-")) or name in (LAYOUT_MARKER, SNAPSHOT)


def _deeper(object_name: str, branch: str) -> bool:
    """Whether a step object of a branch is named by more than one component below it (or by a
    hashed key, which does not say)."""
    decoded = _core.chunk_internal_name(object_name)
    return decoded is None or "." in decoded[1][len(branch) + 1 :]


__all__ = ["ChunkedMinioRunLogStore"]
