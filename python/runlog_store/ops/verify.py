"""Checking a run's catalog copies against the ``data_hash`` entries of its run log.

Every byte of every copy is read again (the hash cache is not used: a verification must not
trust what it is checking). SHA-256 entries (bare hex, runnable's) and BLAKE3 entries
(``blake3:<hex>``) are each checked with their own algorithm.
"""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from runlog_store.callbacks import NO_PROGRESS, Callback, in_batches
from runlog_store.catalogs.base import BaseCatalog, data_prefix, file_size
from runlog_store.exceptions import HashError
from runlog_store.hashing import (
    RUNNABLE_FINGERPRINT_MIN_BYTES,
    HashAlgorithm,
    hash_files,
    parse_data_hash,
    runnable_fingerprint,
)
from runlog_store.models import DataCatalog, RunLog

Status = Literal["ok", "mismatch", "missing", "unreadable", "unknown-hash", "fingerprint-only"]
PROBLEMS: frozenset[Status] = frozenset({"mismatch", "missing", "unreadable", "unknown-hash"})


@dataclass
class Checked:
    """One catalog copy and what the run log says it must hash to."""

    path: str
    status: Status
    expected: list[str] = field(default_factory=list)
    actual: str = ""
    detail: str = ""
    steps: list[str] = field(default_factory=list)
    # The file's place in the run's catalog folder (``path`` may be a temporary download).
    relative: str = ""


@dataclass
class Verification:
    run_id: str
    files: list[Checked]

    @property
    def problems(self) -> list[Checked]:
        return [f for f in self.files if f.status in PROBLEMS]

    @property
    def ok(self) -> bool:
        return not self.problems


def catalog_entries(run_log: RunLog) -> list[tuple[str, DataCatalog]]:
    """(step internal name, entry) of every catalog entry of the run, steps and job."""
    found = [(step.internal_name, dc) for step in run_log.iter_steps() for dc in step.data_catalog]
    if run_log.job is not None:
        found.extend(("job", dc) for dc in run_log.job.data_catalog)
    return found


def copy_path(
    entry: DataCatalog, run_id: str, catalog_location: str, compute_data_folder: str
) -> Path:
    """Where runnable's file-system catalog keeps the copy an entry describes."""
    if entry.stage == "put":
        relative = Path(entry.catalog_relative_path)
        parts = relative.parts
        rest = Path(*parts[1:]) if parts[:1] == (run_id,) else relative
    else:
        rest = Path(entry.catalog_relative_path)
    return Path(catalog_location) / run_id / data_prefix(compute_data_folder) / rest


def verify_run(
    run_log: RunLog,
    catalog_location: str,
    compute_data_folder: str | None = None,
    hash_paths: Callable[[list[str], HashAlgorithm], list[str | HashError]] | None = None,
    callback: Callback = NO_PROGRESS,
) -> Verification:
    """Re-hash the catalog copies of a run and compare them with its run log; the bytes hashed
    are reported to ``callback``."""
    if compute_data_folder is None:
        compute_data_folder = _recorded_compute_folder(run_log) or "."
    expected: dict[Path, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for step, entry in catalog_entries(run_log):
        path = copy_path(entry, run_log.run_id, catalog_location, compute_data_folder)
        expected[path][entry.data_hash].add(step)
    hasher = hash_paths or (lambda paths, algorithm: _hash_paths(paths, algorithm, callback))
    checked: list[Checked] = []
    by_algorithm: dict[HashAlgorithm, list[Path]] = defaultdict(list)
    for path, hashes in sorted(expected.items()):
        parsed = {parse_data_hash(h) for h in hashes}
        steps = sorted({s for group in hashes.values() for s in group})
        if None in parsed:
            bad = next(h for h in hashes if parse_data_hash(h) is None)
            checked.append(
                Checked(
                    str(path),
                    "unknown-hash",
                    sorted(hashes),
                    detail=f"cannot read {bad!r}",
                    steps=steps,
                )
            )
            continue
        link = _symbolic_link_on_the_way(path, Path(catalog_location))
        if link is not None:
            # A planted link would have the check vouch for bytes outside the catalog.
            detail = f"{link} is a symbolic link: not followed"
            checked.append(
                Checked(str(path), "unreadable", sorted(hashes), detail=detail, steps=steps)
            )
            continue
        if not path.is_file():
            checked.append(Checked(str(path), "missing", sorted(hashes), steps=steps))
            continue
        for algorithm in {p[0] for p in parsed if p is not None}:
            by_algorithm[algorithm].append(path)
    digests: dict[tuple[HashAlgorithm, Path], str | HashError] = {}
    for algorithm, paths in by_algorithm.items():
        results = hasher([str(p) for p in paths], algorithm)
        digests.update({(algorithm, p): r for p, r in zip(paths, results, strict=True)})
    settled = {c.path for c in checked}
    for path, hashes in sorted(expected.items()):
        if str(path) in settled:
            continue
        checked.append(_judge(path, hashes, digests))
    checked.sort(key=lambda c: c.path)
    run_root = Path(catalog_location) / run_log.run_id
    for one in checked:
        one.relative = Path(os.path.relpath(one.path, run_root)).as_posix()
    return Verification(run_log.run_id, checked)


def verify_catalog(
    run_log: RunLog, catalog: BaseCatalog, callback: Callback = NO_PROGRESS
) -> Verification:
    """``verify_run`` on any catalog: a local one is read in place, a remote one is downloaded
    to a temporary folder first (every byte has to be read either way)."""
    local = catalog.local_run_folder(run_log.run_id)
    folder = _recorded_compute_folder(run_log) or catalog.compute_data_folder
    if local is not None:
        return verify_run(run_log, str(local.parent), folder, callback=callback)
    with tempfile.TemporaryDirectory(prefix="runlog-verify-") as scratch:
        catalog.download_run(run_log.run_id, Path(scratch) / run_log.run_id, callback)
        found = verify_run(run_log, scratch, folder, callback=callback)
    # The downloaded copies are gone: name the files by their place in the catalog.
    for checked in found.files:
        checked.path = os.path.relpath(checked.path, scratch)
    return found


def _symbolic_link_on_the_way(path: Path, catalog_location: Path) -> Path | None:
    """The first symbolic link among ``path`` and its folders below the catalog's, if any."""
    try:
        below = path.relative_to(catalog_location).parts
    except ValueError:
        below = path.parts
        catalog_location = Path(path.anchor)
    here = catalog_location
    for part in below:
        here = here / part
        if here.is_symlink():
            return here
    return None


def _recorded_compute_folder(run_log: RunLog) -> str | None:
    recorded = run_log.run_config.get("catalog") if isinstance(run_log.run_config, dict) else None
    folder = recorded.get("compute_data_folder") if isinstance(recorded, dict) else None
    return folder if isinstance(folder, str) and folder else None


def _judge(
    path: Path,
    hashes: dict[str, set[str]],
    digests: dict[tuple[HashAlgorithm, Path], str | HashError],
) -> Checked:
    steps = sorted({s for group in hashes.values() for s in group})
    actual_by_hash: dict[str, str] = {}
    for recorded in hashes:
        parsed = parse_data_hash(recorded)
        assert parsed is not None
        algorithm, hex_digest = parsed
        result = digests[(algorithm, path)]
        if isinstance(result, HashError):
            return Checked(
                str(path), "unreadable", sorted(hashes), detail=result.message, steps=steps
            )
        actual_by_hash[recorded] = result
        if result == hex_digest:
            detail = (
                ""
                if len(hashes) == 1
                else f"overwritten within the run: {len(hashes)} hashes recorded"
            )
            return Checked(str(path), "ok", sorted(hashes), result, detail, steps)
    size = path.stat().st_size
    bare = [h for h in hashes if ":" not in h]
    if size >= RUNNABLE_FINGERPRINT_MIN_BYTES and bare and runnable_fingerprint(path) in bare:
        return Checked(
            str(path),
            "fingerprint-only",
            sorted(hashes),
            detail="runnable recorded a fingerprint (size, first and last MiB), not a content "
            "hash, for this file of 1 GiB or more: its content cannot be checked",
            steps=steps,
        )
    actual = ", ".join(sorted(set(actual_by_hash.values())))
    return Checked(str(path), "mismatch", sorted(hashes), actual, steps=steps)


def _hash_paths(
    paths: list[str], algorithm: HashAlgorithm, callback: Callback
) -> list[str | HashError]:
    sizes = [file_size(p) for p in paths]
    return in_batches(
        f"verify ({algorithm})",
        paths,
        sizes,
        lambda batch: hash_files(batch, algorithm, return_exceptions=True),
        callback,
    )
