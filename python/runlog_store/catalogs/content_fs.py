"""``content-fs``: the content catalog on a local or shared folder (docs/format.md, "Content
catalogs")::

    <catalog_location>/objects/<2 hex>/<62 hex>   every content once, read-only, named by BLAKE3
    <catalog_location>/manifests/<run_id>.json    what a run owns: path -> digest, size, mode
    <catalog_location>/manifests/.<run_id>.lock   flock(2) target of the manifest's writers
    <catalog_location>/.runlog-content.gate       the store's lock: puts shared, a sweep
    <catalog_location>/.runlog-content.lock         exclusive (two files, so a sweep is not
                                                    starved by overlapping puts)
    <catalog_location>/.runlog-hash-cache         the hash cache

Contents are written by the Rust core (temp file in the object's folder, checked against its
name, fsynced, renamed, folder fsynced) before the manifest naming them is merged (under the
manifest's lock, written atomically and fsynced), so neither a crash nor a power cut leaves a
manifest naming a content that is not there.

``objects/`` and its ``<2 hex>`` folders are never followed when they are symbolic links: a
put or a get through one is a CatalogError naming it (the Rust core opens each level without
following links), and a sweep walks the store through folder descriptors opened the same way,
so it neither lists nor removes anything a link points to; it reports such links instead
(``ContentSweep.refused``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from runlog_store import _core
from runlog_store._paths import ensure_folder, validate_run_id
from runlog_store.callbacks import Callback, in_batches
from runlog_store.catalogs.base import CatalogFolder, raise_first_failure
from runlog_store.catalogs.content import (
    LOCK_WAIT_SECONDS,
    ContentCatalog,
    Manifest,
    decode_manifest,
    manifest_rows,
)
from runlog_store.exceptions import (
    CatalogError,
    CorruptChunkError,
    LockTimeoutError,
    StorageError,
)

OBJECTS = "objects"
MANIFESTS = "manifests"
GATE_FILE = ".runlog-content.gate"
LOCK_FILE = ".runlog-content.lock"
MANIFEST_SUFFIX = ".json"
# A temp file of a store killed mid-write is removed by a sweep once this old (or its writer
# is gone).
LEFTOVER_SECONDS = 60.0
# A folder of the store, opened without following a link in its place.
_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# What opening a link with O_NOFOLLOW (and O_DIRECTORY) fails with.
_LINKED = (errno.ELOOP, errno.ENOTDIR)


class ContentFileSystemCatalog(CatalogFolder, ContentCatalog):
    service_name: str = "content-fs"

    # --- layout -------------------------------------------------------------------------------

    def objects_folder(self) -> Path:
        return Path(self.catalog_location) / OBJECTS

    def manifests_folder(self) -> Path:
        return Path(self.catalog_location) / MANIFESTS

    def manifest_path(self, run_id: str) -> Path:
        return self.manifests_folder() / f"{validate_run_id(run_id)}{MANIFEST_SUFFIX}"

    def object_path(self, digest: str) -> Path:
        """Where the content named ``digest`` (BLAKE3 hex) is stored."""
        return Path(_core.content_object_path(self.objects_folder(), digest))

    def _manifest_lock(self, run_id: str) -> Path:
        return self.manifests_folder() / f".{run_id}.lock"

    def _run_location(self, run_id: str) -> str:
        return str(self.manifest_path(run_id))

    # --- manifests ------------------------------------------------------------------------------

    def _read_manifest(self, run_id: str) -> Manifest | None:
        path = self.manifest_path(run_id)
        data = _core.read_file(str(path), run_id=run_id)
        return None if data is None else decode_manifest(str(path), data, run_id)

    def _merge_manifest(self, run_id: str, entries: Manifest) -> None:
        ensure_folder(str(self.manifests_folder()), fsync=self.fsync, run_id=run_id)
        _core.patch_json(
            str(self.manifest_path(run_id)),
            _core.encode_manifest(run_id, manifest_rows(entries)),
            lock_path=str(self._manifest_lock(run_id)),
            merge_keys=["files"],
            create=_core.encode_manifest(run_id, []),
            fsync=self.fsync,
            lock_timeout=LOCK_WAIT_SECONDS,
            run_id=run_id,
        )

    def _remove_manifest(self, run_id: str) -> int:
        path = self.manifest_path(run_id)
        if not path.exists():
            return 0
        with _core.FileLock(str(self._manifest_lock(run_id)), LOCK_WAIT_SECONDS, run_id):
            try:
                count = len(self._read_manifest(run_id) or {})
            except CatalogError:
                count = 1  # a damaged manifest is removed all the same
            try:
                path.unlink()
            except FileNotFoundError:
                return 0
            if self.fsync:
                # A deletion a power cut undid would bring back a manifest naming contents a
                # sweep has removed since.
                _fsync_folder(self.manifests_folder())
        return count

    def _manifest_run_ids(self) -> list[str]:
        folder = self.manifests_folder()
        try:
            if os.path.islink(folder):
                raise NotADirectoryError(errno.ENOTDIR, "a symbolic link", str(folder))
            names = os.listdir(folder)
        except FileNotFoundError:
            return []
        except OSError as exc:
            # Without the manifests no one can tell which contents runs still need: a sweep
            # must not go on, and a listing must not pretend there are none.
            raise CatalogError(
                f"cannot list the manifests of the content store, {folder}: "
                f"{exc.strerror or exc} (it must be the folder this catalog made)",
                path=str(folder),
            ) from exc
        return sorted(
            name[: -len(MANIFEST_SUFFIX)]
            for name in names
            if name.endswith(MANIFEST_SUFFIX) and not name.startswith(".")
        )

    # --- contents -------------------------------------------------------------------------------

    def _ensure_contents(
        self, run_id: str, items: Sequence[tuple[Path, str, int]], callback: Callback
    ) -> None:
        objects = self.objects_folder()
        ensure_folder(str(objects), fsync=self.fsync, run_id=run_id)
        results = in_batches(
            "store",
            items,
            [size for _, _, size in items],
            lambda batch: _core.store_contents(
                objects,
                [(source, digest) for source, digest, _ in batch],
                fsync=self.fsync,
                run_id=run_id,
            ),
            callback,
        )
        raise_first_failure([_as_catalog_error(r, run_id) for r in results])

    def _place_contents(
        self,
        run_id: str,
        items: Sequence[tuple[str, Path, int, int]],
        check: bool,
        callback: Callback,
    ) -> None:
        def place(batch: Sequence[tuple[str, Path, int, int]]) -> list[object]:
            found = _core.materialize_contents(
                [(self.object_path(d), target, mode, d) for d, target, mode, _ in batch],
                self.link,
                fsync=self.fsync,
                check=check,
                run_id=run_id,
            )
            return [_as_catalog_error(r, run_id) for r in found]

        results = in_batches("get", items, [size for *_, size in items], place, callback)
        raise_first_failure(results)

    # The sweep walks the store by descriptors: each folder is opened without following a
    # link in its place, and what is in it is listed, stat'ed and removed relative to that
    # descriptor, so a link swapped in for a folder meanwhile is never walked into either.

    def _content_folders(self) -> Iterator[tuple[str, int]]:
        """The ``<2 hex>`` folders of the store as (name, open descriptor, closed once the
        next is asked for), links left out (``_refused_entries`` names them); none when the
        objects folder is missing or a link."""
        root = _open_folder(None, str(self.objects_folder()))
        if root is None:
            return
        try:
            for entry in sorted(os.scandir(root), key=lambda e: e.name):
                if not entry.is_dir(follow_symlinks=False):
                    continue
                fd = _open_folder(root, entry.name)
                if fd is None:
                    continue
                try:
                    yield entry.name, fd
                finally:
                    os.close(fd)
        finally:
            os.close(root)

    def _stored_contents(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for prefix, fd in self._content_folders():
            for entry in os.scandir(fd):
                name = entry.name
                if len(name) == 62 and not name.startswith("."):
                    found[prefix + name] = entry.stat(follow_symlinks=False).st_size
        return found

    def _remove_contents(self, digests: Sequence[str]) -> None:
        by_folder: dict[str, list[str]] = {}
        for digest in digests:
            by_folder.setdefault(digest[:2], []).append(digest[2:])
        for prefix, fd in self._content_folders():
            for name in by_folder.get(prefix, []):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=fd)

    def _clean_leftovers(self) -> None:
        for _, fd in self._content_folders():
            # The folder by its descriptor's name in /proc: the one opened, wherever a link
            # put in its place since would lead.
            _core.clean_temp_files(f"/proc/self/fd/{fd}", LEFTOVER_SECONDS)

    def _refused_entries(self) -> list[str]:
        objects = self.objects_folder()
        if objects.is_symlink():
            return [str(objects)]
        try:
            entries = sorted(os.scandir(objects), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [str(objects / e.name) for e in entries if e.is_symlink()]

    # --- the store's lock -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _sharing(self, run_id: str) -> Iterator[Callable[[], None]]:
        with self._store_lock(exclusive=False, run_id=run_id):
            yield _held  # flock is held until released: nothing to renew

    def _excluding(self) -> contextlib.AbstractContextManager[None]:
        return self._store_lock(exclusive=True, run_id="")

    @contextlib.contextmanager
    def _store_lock(self, *, exclusive: bool, run_id: str) -> Iterator[None]:
        """Puts take the gate shared for a moment, then the lock shared for the whole put; a
        sweep takes the gate exclusively (new puts wait at it), then the lock exclusively (the
        puts in flight finish first). Both are flock(2): a killed holder releases them."""
        ensure_folder(self.catalog_location, fsync=self.fsync, run_id=run_id)
        root = self.catalog_location
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        gate = _flock(os.path.join(root, GATE_FILE), exclusive, deadline, run_id)
        try:
            lock = _flock(os.path.join(root, LOCK_FILE), exclusive, deadline, run_id)
        finally:
            if not exclusive:
                os.close(gate)
        try:
            yield
        finally:
            os.close(lock)
            if exclusive:
                os.close(gate)


def _flock(path: str, exclusive: bool, deadline: float, run_id: str) -> int:
    """An open descriptor holding ``flock`` on ``path`` (closing it releases the lock)."""
    # The lock file is in a shared folder: a link planted in its place is not followed (nothing
    # is created or locked at its target), nor is a FIFO waited on.
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        raise StorageError(
            f"cannot open the content store's lock {path}: {exc.strerror} (it must be a file "
            "this catalog made, not a link)",
            path=path,
            run_id=run_id,
            errno=exc.errno,
        ) from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StorageError(
            f"the content store's lock {path} is not a regular file", path=path, run_id=run_id
        )
    operation = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
    pause = 0.001
    while True:
        try:
            fcntl.flock(fd, operation)
            return fd
        except BlockingIOError:
            pass
        except OSError as exc:
            os.close(fd)
            raise StorageError(
                f"cannot lock {path}: {exc.strerror}", path=path, run_id=run_id, errno=exc.errno
            ) from exc
        if time.monotonic() >= deadline:
            os.close(fd)
            waiting_for = "puts into the content store" if exclusive else "a gc of the store"
            raise LockTimeoutError(
                f"could not lock {path} within {LOCK_WAIT_SECONDS:g} s: {waiting_for} held it",
                path=path,
                run_id=run_id,
            )
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _open_folder(parent: int | None, name: str) -> int | None:
    """A descriptor of the folder ``name`` (below the descriptor ``parent``), opened without
    following a link in its place; None when it is missing, a link or not a folder."""
    try:
        return os.open(name, _FOLDER_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in _LINKED:
            return None
        raise


def _held() -> None:
    """The check a put makes before writing its manifest: an flock cannot lapse."""


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _as_catalog_error(result: object, run_id: str) -> object:
    """A damaged content is a catalog's problem, not a run log chunk's: CatalogError."""
    if isinstance(result, CorruptChunkError):
        return CatalogError(result.message, path=result.path, run_id=run_id)
    return result


__all__ = ["ContentFileSystemCatalog"]
