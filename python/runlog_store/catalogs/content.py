"""Content catalogs (``content-fs``, ``content-minio``): every content stored once, named by the
BLAKE3 digest of its bytes, and a manifest per run (path -> digest, size, mode) that is all a
run owns (docs/format.md, "Content catalogs").

A put hashes its files through the hash cache (BLAKE3 names the content; the catalog's
``hash_algorithm`` is what the entries record, computed in the same read), stores only the
contents not stored yet, then merges the run's manifest. A get puts contents into the compute
folder by reflink, read-only hard link or copy (``link:``) and answers with the digests the
manifest recorded, so a link reads nothing. The entries are those of the per-run catalogs
(same ``data_hash``), so ``runlog verify`` and ``runlog diff`` work unchanged.

What both catalogs share is written here, over a few primitives each supplies (see
``ContentCatalog``). The gc of contents is mark and sweep under a reader-writer lock: a put
holds it shared from its first look at the stored contents until its manifest is written, a
sweep holds it exclusively while it reads every manifest and removes what none references, so
no content a put is about to reference is ever removed.

A get gives a file the executable bit's meaning of its recorded mode only (``file_mode``):
0o777 or 0o666 masked by the process's umask, as git checks files out, whatever a manifest
records; never setuid, setgid or sticky bits, never more writable than the umask allows.
"""

from __future__ import annotations

import contextlib
import os
import threading
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from runlog_store import _core
from runlog_store._paths import validate_run_id
from runlog_store.callbacks import NO_PROGRESS, Callback, in_batches
from runlog_store.catalogs.base import (
    EXECUTION_LOG_SUFFIX,
    BaseCatalog,
    StoredFile,
    data_prefix,
    digests_or_first_failure,
    folder_files,
    glob_regex,
    raise_first_failure,
)
from runlog_store.exceptions import CatalogError, CorruptChunkError, NoMatchingFilesError
from runlog_store.hashing import HashAlgorithm, hash_files

LinkMode = Literal["auto", "reflink", "hardlink", "copy"]

# How long a put waits for a gc of the same store to finish, and a gc for the puts in flight.
LOCK_WAIT_SECONDS = 300.0


@dataclass(frozen=True)
class ManifestEntry:
    """One file of a run: the BLAKE3 digest naming its content, its size and permission bits,
    and its SHA-256 digest when the catalog records SHA-256."""

    blake3: str
    size: int
    mode: int
    sha256: str | None = None

    def recorded(self, algorithm: HashAlgorithm) -> str | None:
        """The digest a ``DataCatalog`` entry of ``algorithm`` records, if known."""
        return self.blake3 if algorithm == "blake3" else self.sha256

    @classmethod
    def from_row(cls, row: tuple[str, str, int, int, str | None]) -> tuple[str, ManifestEntry]:
        path, blake3, size, mode, sha256 = row
        return path, cls(blake3, size, mode, sha256)

    def row(self, path: str) -> tuple[str, str, int, int, str | None]:
        return (path, self.blake3, self.size, self.mode, self.sha256)


Manifest = dict[str, ManifestEntry]


class StoredContent(StoredFile):
    """A file a get matched, with what the manifest says of it (``source`` is its digest)."""

    mode: int
    recorded: str | None


class ContentSweep(BaseModel):
    """What a gc of contents found and did (or, dry, would do)."""

    manifests: int = Field(description="run manifests read")
    contents: int = Field(description="contents stored before the sweep")
    referenced: int = Field(description="of those, named by a manifest")
    removed: int = Field(description="contents removed (or, dry, that would be)")
    removed_bytes: int
    kept_bytes: int
    dry_run: bool
    refused: list[str] = Field(
        default_factory=list,
        description="symbolic links found in place of the store's folders (objects/ and its "
        "<2 hex> folders): never followed nor removed, for a person to look at",
    )


def file_mode(recorded: int) -> int:
    """The mode a file a get writes is created with, before the umask: 0o777 when the recorded
    mode lets its owner execute it, else 0o666 (git's rule; the Rust core's, rust/content.rs)."""
    return 0o777 if recorded & 0o100 else 0o666


_UMASK_LOCK = threading.Lock()


def process_umask() -> int:
    """This process's umask, read without changing it where Linux says it (``/proc``); else by
    setting and restoring it at once, under a lock (the only other way there is)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split(":", 1)[1].strip(), 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def manifest_rows(entries: Manifest) -> list[tuple[str, str, int, int, str | None]]:
    return [entry.row(path) for path, entry in sorted(entries.items())]


def decode_manifest(location: str, data: bytes, run_id: str) -> Manifest:
    """A manifest's entries; a damaged manifest is a CatalogError naming it."""
    try:
        _, rows = _core.decode_manifest(location, data, run_id=run_id)
    except CorruptChunkError as exc:
        raise CatalogError(
            f"the manifest of run {run_id!r} is damaged: {exc.message}",
            path=location,
            run_id=run_id,
        ) from None
    return dict(ManifestEntry.from_row(row) for row in rows)


class ContentCatalog(BaseCatalog):
    """Base of the content catalogs: put, get and the run-level operations written once.

    A content catalog supplies:

    - ``_read_manifest(run_id)`` (None when the run has none), ``_merge_manifest(run_id,
      entries)`` (a read-modify-write no concurrent writer's entries are lost to),
      ``_remove_manifest(run_id)`` (its entry count, 0 when none), ``_manifest_run_ids()``;
    - ``_ensure_contents(run_id, items, callback)``: store the contents of ``(source, digest,
      size)`` not stored yet;
    - ``_place_contents(run_id, items, check, callback)``: put ``(digest, target, mode,
      size)`` into place, a copy checked against its name when ``check``;
    - ``_sharing(run_id)`` and ``_excluding()``: the store's lock, shared by puts (yielding a
      check that raises if the lock may have lapsed), exclusive for a sweep;
    - ``_stored_contents()`` (digest -> size) and ``_remove_contents(digests)``.
    """

    link: LinkMode = "auto"

    # --- what a content catalog supplies ------------------------------------------------------

    @abstractmethod
    def _read_manifest(self, run_id: str) -> Manifest | None: ...

    @abstractmethod
    def _merge_manifest(self, run_id: str, entries: Manifest) -> None: ...

    @abstractmethod
    def _remove_manifest(self, run_id: str) -> int: ...

    @abstractmethod
    def _manifest_run_ids(self) -> list[str]: ...

    @abstractmethod
    def _ensure_contents(
        self, run_id: str, items: Sequence[tuple[Path, str, int]], callback: Callback
    ) -> None: ...

    @abstractmethod
    def _place_contents(
        self,
        run_id: str,
        items: Sequence[tuple[str, Path, int, int]],
        check: bool,
        callback: Callback,
    ) -> None: ...

    @abstractmethod
    def _sharing(self, run_id: str) -> contextlib.AbstractContextManager[Callable[[], None]]:
        """The store's lock, shared; what it yields raises if it may have lapsed (a lease)."""

    @abstractmethod
    def _excluding(self) -> contextlib.AbstractContextManager[None]: ...

    @abstractmethod
    def _stored_contents(self) -> dict[str, int]: ...

    @abstractmethod
    def _remove_contents(self, digests: Sequence[str]) -> None: ...

    def _clean_leftovers(self) -> None:
        """Remove what killed stores left behind (temp files, half uploads); run by a sweep."""

    def _refused_entries(self) -> list[str]:
        """What a sweep found where the store keeps its contents and would not follow (links
        in place of its folders), for the sweep's report; none by default."""
        return []

    # --- summary --------------------------------------------------------------------------------

    def get_summary(self) -> dict[str, Any]:
        return {**super().get_summary(), "link": self.link}

    # --- put ------------------------------------------------------------------------------------

    def _store_files(
        self,
        run_id: str,
        sources: Sequence[Path],
        relatives: Sequence[Path],
        sizes: Sequence[int],
        callback: Callback,
    ) -> list[str]:
        prefix = data_prefix(self.compute_data_folder)
        paths = [(prefix / rel).as_posix() for rel in relatives]
        return self._put_contents(run_id, sources, paths, sizes, callback)

    def _put_contents(
        self,
        run_id: str,
        sources: Sequence[Path],
        paths: Sequence[str],
        sizes: Sequence[int],
        callback: Callback,
    ) -> list[str]:
        """Hash ``sources``, store their missing contents and record them in the run's
        manifest at ``paths`` (relative to the run's folder); the recorded digests."""
        cache = self._hash_cache()
        results = in_batches(
            "hash",
            [str(path) for path in sources],
            sizes,
            lambda batch: _core.hash_contents(list(batch), self.hash_algorithm, cache=cache),
            callback,
        )
        raise_first_failure(results)
        hashed = [r for r in results if isinstance(r, tuple)]
        entries: Manifest = {}
        unique: dict[str, tuple[Path, str, int]] = {}
        for path, source, (blake3, recorded, size, mode) in zip(
            paths, sources, hashed, strict=True
        ):
            sha256 = recorded if self.hash_algorithm == "sha256" else None
            entries[path] = ManifestEntry(blake3, size, mode, sha256)
            unique.setdefault(blake3, (source, blake3, size))
        with self._sharing(run_id) as still_held:
            self._ensure_contents(run_id, list(unique.values()), callback)
            still_held()
            self._merge_manifest(run_id, entries)
        return [recorded for _, recorded, _, _ in hashed]

    # --- get ------------------------------------------------------------------------------------

    def _stored_matches(self, run_id: str, pattern: str) -> list[StoredFile]:
        manifest = self._read_manifest(run_id)
        if manifest is None:
            where = self._run_location(run_id)
            raise NoMatchingFilesError(
                f"run {run_id!r} has no catalog at {where}", path=where, run_id=run_id
            )
        prefix = data_prefix(self.compute_data_folder).as_posix()
        lead = "" if prefix == "." else prefix + "/"
        matcher = glob_regex(pattern)
        found: list[StoredFile] = []
        for path, entry in sorted(manifest.items()):
            if not path.startswith(lead) or path.endswith(EXECUTION_LOG_SUFFIX):
                continue
            relative = path[len(lead) :]
            if matcher.fullmatch(relative):
                found.append(
                    StoredContent(
                        relative=relative,
                        size=entry.size,
                        source=entry.blake3,
                        mode=entry.mode,
                        recorded=entry.recorded(self.hash_algorithm),
                    )
                )
        return found

    def _fetch_files(
        self, run_id: str, files: Sequence[StoredFile], callback: Callback
    ) -> list[str]:
        compute_root = Path(self.compute_data_folder)
        contents = [self._as_content(found) for found in files]
        targets = [compute_root / found.relative for found in contents]
        self._place_contents(
            run_id,
            [
                (found.source, target, found.mode, found.size)
                for found, target in zip(contents, targets, strict=True)
            ],
            True,
            callback,
        )
        digests = [found.recorded for found in contents]
        unknown = [i for i, digest in enumerate(digests) if digest is None]
        if unknown:
            # Recorded under another algorithm (the catalog's was changed since): read them.
            hashed = hash_files(
                [targets[i] for i in unknown], self.hash_algorithm, return_exceptions=True
            )
            for i, digest in zip(unknown, digests_or_first_failure(hashed), strict=True):
                digests[i] = digest
        return [digest for digest in digests if digest is not None]

    @staticmethod
    def _as_content(found: StoredFile) -> StoredContent:
        if isinstance(found, StoredContent):
            return found
        raise CatalogError(f"{found.relative}: not a file of a content catalog")

    def sync_between_runs(self, previous_run_id: str, run_id: str) -> None:
        validate_run_id(previous_run_id)
        validate_run_id(run_id)
        with self._sharing(run_id) as still_held:
            manifest = self._read_manifest(previous_run_id)
            if manifest is None:
                where = self._run_location(previous_run_id)
                raise CatalogError(
                    f"the catalog of the previous run {previous_run_id!r} is not at {where}",
                    path=where,
                    run_id=run_id,
                )
            kept = {p: e for p, e in manifest.items() if not p.endswith(EXECUTION_LOG_SUFFIX)}
            still_held()
            self._merge_manifest(run_id, kept)

    # --- a run's catalog as a whole -----------------------------------------------------------

    def run_manifest(self, run_id: str) -> Manifest:
        """A run's manifest (empty when the run has none)."""
        return self._read_manifest(validate_run_id(run_id)) or {}

    def run_files(self, run_id: str) -> dict[str, int]:
        return {path: entry.size for path, entry in sorted(self.run_manifest(run_id).items())}

    def download_run(self, run_id: str, folder: Path, callback: Callback = NO_PROGRESS) -> int:
        """Every file of the run under ``folder``, put into place as the link mode says; the
        bytes are the stored ones as they are (checked by whoever reads them: verify)."""
        manifest = self.run_manifest(run_id)
        self._place_contents(
            run_id,
            [(e.blake3, folder / path, e.mode, e.size) for path, e in sorted(manifest.items())],
            False,
            callback,
        )
        return sum(entry.size for entry in manifest.values())

    def upload_run(self, run_id: str, folder: Path, callback: Callback = NO_PROGRESS) -> int:
        validate_run_id(run_id)
        files = folder_files(folder, links="refuse", run_id=run_id)
        if files:
            self._put_contents(
                run_id, [folder / rel for rel in files], list(files), list(files.values()), callback
            )
        return sum(files.values())

    def delete_run(self, run_id: str) -> int:
        """Remove the run's manifest (one step: a reader sees all of the run or none); its
        contents stay until a sweep finds no other run referencing them."""
        return self._remove_manifest(validate_run_id(run_id))

    # --- the gc of contents -------------------------------------------------------------------

    def referenced_contents(self, ignoring: set[str] | None = None) -> tuple[int, set[str]]:
        """(manifests read, every digest they name), the runs in ``ignoring`` left out."""
        referenced: set[str] = set()
        run_ids = [r for r in self._manifest_run_ids() if r not in (ignoring or set())]
        for run_id in run_ids:
            manifest = self._read_manifest(run_id)
            if manifest is not None:
                referenced.update(entry.blake3 for entry in manifest.values())
        return len(run_ids), referenced

    def sweep_contents(
        self,
        *,
        dry_run: bool = False,
        ignoring: set[str] | None = None,
        callback: Callback = NO_PROGRESS,
    ) -> ContentSweep:
        """Remove every stored content no manifest references (mark and sweep, under the
        store's lock held exclusively: puts wait, and none is half-way). A dry run removes
        nothing and may count the runs in ``ignoring`` as gone (those gc would delete)."""
        if ignoring and not dry_run:
            raise ValueError("only a dry run can count runs as gone: delete_run() them first")
        with self._excluding(), callback.phase("sweeping contents", 1, "items"):
            manifests, referenced = self.referenced_contents(ignoring)
            stored = self._stored_contents()
            garbage = sorted(d for d in stored if d not in referenced)
            if not dry_run:
                if garbage:
                    self._remove_contents(garbage)
                self._clean_leftovers()
            refused = self._refused_entries()
            callback.advance(1)
        removed_bytes = sum(stored[d] for d in garbage)
        return ContentSweep(
            manifests=manifests,
            contents=len(stored),
            referenced=len(stored) - len(garbage),
            removed=len(garbage),
            removed_bytes=removed_bytes,
            kept_bytes=sum(stored.values()) - removed_bytes,
            dry_run=dry_run,
            refused=refused,
        )


__all__ = [
    "ContentCatalog",
    "ContentSweep",
    "LinkMode",
    "Manifest",
    "ManifestEntry",
    "StoredContent",
    "decode_manifest",
    "file_mode",
    "manifest_rows",
    "process_umask",
]
