"""Moving runs out of and between stores, and pruning old ones, without losing anything.

Every move is checked by reading the result back: an export is compared byte for byte, a copy
is compared as a run log (the target may lay it out differently, in chunks or one document)
and its catalog files are re-hashed against the run log's data hashes. A copy that does not
read back identical is removed from the target again, since nothing of it was there before.

A copy is of the run asked for, and only into a target that does not have it: a source
document that names another run is refused before anything is written (it would otherwise
land on that run in the target), and the run is created in the target exclusively, so a run
that appears there meanwhile is never overwritten, nor removed by the clean-up of a copy that
failed.

Pruning never deletes a run that is still being written: only ended runs (SUCCESS or FAIL) are
taken unless asked, a run's age is counted from the newest of its stored pieces, not only from
its recorded times, and that time is checked again right before the run is deleted.
"""

from __future__ import annotations

import contextlib
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from runlog_store import _core
from runlog_store.callbacks import NO_PROGRESS, Callback
from runlog_store.catalogs.base import BaseCatalog
from runlog_store.catalogs.content import ContentCatalog, ContentSweep
from runlog_store.exceptions import (
    CatalogError,
    ChunkExistsError,
    RunLogExistsError,
    RunLogNotFoundError,
    RunLogStoreError,
)
from runlog_store.models import ENDED_STATUSES, RunLog
from runlog_store.ops.runs import UNREADABLE, RunSummary, read_summary, walk_steps
from runlog_store.ops.verify import Verification, verify_catalog
from runlog_store.stores.base import BaseRunLogStore, validate_run_log
from runlog_store.stores.project import ProjectRunLogStore


def _where(store: BaseRunLogStore) -> str:
    location = store.get_summary().get("Location")
    if isinstance(store, ProjectRunLogStore):  # runs of both of runnable's local layouts
        return f"run log store at {location}"
    return f"{store.service_name} store at {location}" if location else f"{store.service_name}"


def canonical_run(data: bytes, where: str, run_id: str) -> dict[str, Any]:
    """A run log as the models read it: layouts and key order no longer matter."""
    return validate_run_log(data, where, run_id).model_dump(mode="json")


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """The JSON path of the first place two documents differ, or None when they are equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if key not in a or key not in b:
                return f"{path}.{key}".lstrip(".")
            found = first_difference(a[key], b[key], f"{path}.{key}")
            if found is not None:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for index, (left, right) in enumerate(zip(a, b, strict=True)):
            found = first_difference(left, right, f"{path}[{index}]")
            if found is not None:
                return found
        return None
    return None if a == b else (path.lstrip(".") or "document")


# --- export -------------------------------------------------------------------------------------


def export_run(store: BaseRunLogStore, run_id: str, output: Path, *, overwrite: bool) -> int:
    """Write the merged run log to ``output`` atomically; the number of bytes written."""
    data = store.get_run_log_json(run_id)
    validate_run_log(data, _where(store), run_id)
    try:
        _core.write_atomic(str(output), data, fsync=True, exclusive=not overwrite, run_id=run_id)
    except ChunkExistsError:
        raise RunLogStoreError(
            f"{output} already exists; pass --force to replace it", path=str(output), run_id=run_id
        ) from None
    if _core.read_file(str(output), run_id=run_id) != data:
        raise RunLogStoreError(
            f"{output} does not read back as written", path=str(output), run_id=run_id
        )
    return len(data)


# --- copy ---------------------------------------------------------------------------------------


class CopyReport(BaseModel):
    run_id: str
    source: str
    target: str
    steps: int
    run_log_bytes: int
    catalog_files: int = 0
    catalog_bytes: int = 0
    verification: Verification | None = None
    # Catalog files that fail verification in the source already (copied as they are).
    inherited: list[str] = []


def copy_run(
    source: BaseRunLogStore,
    target: BaseRunLogStore,
    run_id: str,
    *,
    source_catalog: BaseCatalog | None = None,
    target_catalog: BaseCatalog | None = None,
    callback: Callback = NO_PROGRESS,
) -> CopyReport:
    """Copy a run (and, given both catalogs, its catalog files) into another store; catalog
    transfers and re-hashing are reported to ``callback``.

    The catalog goes first and the run log last, so a run that shows up in the target has its
    files there already. Anything already in the target stops the copy before a byte is
    written; anything this copy wrote is removed again when a later step fails. The source's
    document must name ``run_id`` (RunIdMismatchError otherwise), and the run is created in the
    target exclusively: one there already, or created meanwhile, is never replaced.
    """
    data = source.get_run_log_json(run_id)
    run_log = validate_run_log(data, _where(source), run_id)
    # Taken before the target sees the model, which a custom store might change in place.
    expected = run_log.model_dump(mode="json")
    catalogs = (
        (source_catalog, target_catalog)
        if source_catalog is not None and target_catalog is not None
        else None
    )
    try:
        target.get_run_log_by_id(run_id)
    except RunLogNotFoundError:
        pass
    else:
        raise RunLogStoreError(
            f"run {run_id!r} already exists in the {_where(target)}; nothing was copied",
            run_id=run_id,
        )
    if catalogs is not None and catalogs[1].run_files(run_id):
        raise CatalogError(
            f"the target catalog ({catalogs[1].get_summary().get('Location')}) already "
            f"holds files of run {run_id!r}; nothing was copied",
            run_id=run_id,
        )
    report = CopyReport(
        run_id=run_id,
        source=_where(source),
        target=_where(target),
        steps=_count_steps(expected),
        run_log_bytes=len(data),
    )
    wrote_catalog = wrote_run = False
    try:
        if catalogs is not None:
            wrote_catalog = True
            _copy_catalog(*catalogs, run_id, report, callback)
        # Created first, exclusively (a run created in the target since the check above is
        # refused, not replaced); then the whole run, into the run this copy created.
        try:
            target.create_run_log(run_id)
        except RunLogExistsError:
            raise RunLogStoreError(
                f"run {run_id!r} already exists in the {_where(target)}; nothing was copied",
                run_id=run_id,
            ) from None
        wrote_run = True
        target.put_run_log(run_log)
        copied = canonical_run(target.get_run_log_json(run_id), _where(target), run_id)
        differs = first_difference(expected, copied)
        if differs is not None:
            raise RunLogStoreError(
                f"the copy of run {run_id!r} in the {_where(target)} does not read back as the "
                f"original (first difference at {differs}); the copy was removed",
                run_id=run_id,
            )
        if catalogs is not None:
            _verify_copy(run_log, *catalogs, report, callback)
    except BaseException:
        # The first failure is the one to report; one in the clean-up must not replace it.
        with contextlib.suppress(Exception):
            _undo(target, target_catalog, run_id, wrote_run, wrote_catalog)
        raise
    return report


def _copy_catalog(
    source: BaseCatalog, target: BaseCatalog, run_id: str, report: CopyReport, callback: Callback
) -> None:
    files = source.run_files(run_id)
    report.catalog_files = len(files)
    report.catalog_bytes = sum(files.values())
    if not files:
        return
    local = source.local_run_folder(run_id)
    if local is not None:
        target.upload_run(run_id, local, callback)
    else:
        with tempfile.TemporaryDirectory(prefix="runlog-copy-") as scratch:
            source.download_run(run_id, Path(scratch), callback)
            target.upload_run(run_id, Path(scratch), callback)
    copied = target.run_files(run_id)
    if copied != files:
        missing = sorted(set(files) - set(copied)) or sorted(
            name for name in files if copied.get(name) != files[name]
        )
        raise CatalogError(
            f"the catalog copy of run {run_id!r} is incomplete ({len(copied)} of {len(files)} "
            f"files, first missing or of another size: {missing[:1]}); the copy was removed",
            run_id=run_id,
        )


def _verify_copy(
    run_log: RunLog,
    source: BaseCatalog,
    target: BaseCatalog,
    report: CopyReport,
    callback: Callback,
) -> None:
    """Re-hash the copies against the run log. A file that fails in the target fails the copy
    unless it fails in the source too: a copy is faithful to its source, damaged or not, and
    such files are reported (``report.inherited``) rather than hidden."""
    report.verification = verify_catalog(run_log, target, callback)
    problems = report.verification.problems
    if not problems:
        return
    in_source = {c.relative: c.status for c in verify_catalog(run_log, source, callback).problems}
    new = [c for c in problems if in_source.get(c.relative) != c.status]
    if new:
        raise CatalogError(
            f"the catalog copy of run {run_log.run_id!r} fails verification ({new[0].status}: "
            f"{new[0].relative}) where the source does not; the copy was removed",
            path=new[0].path,
            run_id=run_log.run_id,
        )
    report.inherited = [f"{c.status}: {c.relative}" for c in problems]


def _undo(
    target: BaseRunLogStore,
    target_catalog: BaseCatalog | None,
    run_id: str,
    wrote_run: bool,
    wrote_catalog: bool,
) -> None:
    """Remove what a failed copy wrote (it was not there before the copy)."""
    if wrote_run:
        with contextlib.suppress(RunLogNotFoundError, NotImplementedError):
            target.delete_run(run_id)
    if wrote_catalog and target_catalog is not None:
        target_catalog.delete_run(run_id)


def _count_steps(run: dict[str, Any]) -> int:
    return sum(1 for _ in walk_steps(run.get("steps")))


# --- gc -----------------------------------------------------------------------------------------

Action = Literal[
    "deleted",
    "would delete",
    "kept: unfinished",
    "kept: unreadable",
    "kept: written during gc",
    "kept: newest of its tag",
]


class GcDecision(BaseModel):
    run_id: str
    status: str
    last_written: datetime | None
    age_seconds: float | None
    action: Action
    catalog_files: int = 0
    # What deleting the run frees (would free, in a dry run): its run log's bytes (None where
    # the store cannot tell) and, with the catalog, its catalog files' bytes. A content
    # catalog's files are contents other runs may share: what they free is the sweep's count.
    run_bytes: int | None = None
    catalog_bytes: int = 0
    # When the store last saw the run written, as read before deciding: a later time at the
    # moment of the delete means a writer came back.
    modified: float = Field(default=0.0, exclude=True)


def _last_written(store: BaseRunLogStore, summary: RunSummary) -> tuple[datetime | None, float]:
    modified = store.run_modified(summary.run_id)
    times = [t for t in (summary.start, summary.end) if t is not None]
    if modified is not None:
        times.append(datetime.fromtimestamp(modified))
    return max(times, default=None), modified or 0.0


def gc_runs(
    store: BaseRunLogStore,
    older_than: timedelta,
    *,
    status: str | None = None,
    include_unfinished: bool = False,
    catalog: BaseCatalog | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
    run_ids: list[str] | None = None,
    callback: Callback = NO_PROGRESS,
) -> list[GcDecision]:
    """Delete runs last written longer than ``older_than`` ago; the decision on every run that
    was old enough (runs too young or of another status are not listed). Each run checked is
    reported to ``callback`` (unit: items)."""
    now = now or datetime.now()
    run_ids = store.list_run_ids() if run_ids is None else run_ids
    decisions: list[GcDecision] = []
    with callback.phase("checking runs", len(run_ids), "items"):
        for run_id in run_ids:
            callback.advance(1)
            decision = _gc_decision(store, run_id, older_than, now, status, dry_run)
            if decision is None:
                continue
            decisions.append(decision)
            if decision.status == UNREADABLE:
                # Its status and times are unknown: it may be a run still being written.
                decision.action = "kept: unreadable"
                continue
            if decision.status not in ENDED_STATUSES and not include_unfinished:
                decision.action = "kept: unfinished"
                continue
            count_freed(store, decision, catalog)
            if dry_run:
                continue
            if not delete_if_unchanged(store, run_id, decision.modified, catalog):
                decision.action = "kept: written during gc"
    if not dry_run:
        remove_leftovers(store)
    return decisions


def remove_leftovers(store: BaseRunLogStore) -> list[str]:
    """Finish the run removals an earlier gc, killed half way, left unfinished: the ids of the
    runs whose leftovers went. Only chunked-minio has any (objects of a run whose run document
    went first: no run a reader sees, docs/format.md); the other stores remove a run in one
    step, or leave a hidden folder."""
    from runlog_store.stores.chunked_minio import ChunkedMinioRunLogStore

    if isinstance(store, ChunkedMinioRunLogStore):
        return store.remove_leftovers()
    return []


def count_freed(store: BaseRunLogStore, decision: GcDecision, catalog: BaseCatalog | None) -> None:
    """Fill in what deleting the run of ``decision`` frees."""
    from runlog_store.ops.retention import run_bytes

    decision.run_bytes = run_bytes(store, decision.run_id)
    if catalog is not None:
        files = catalog.run_files(decision.run_id)
        decision.catalog_files = len(files)
        if not isinstance(catalog, ContentCatalog):
            decision.catalog_bytes = sum(files.values())


def delete_if_unchanged(
    store: BaseRunLogStore, run_id: str, modified: float, catalog: BaseCatalog | None = None
) -> bool:
    """Delete a run (its catalog first) unless it was written since ``modified`` was read
    (``store.run_modified``): a writer that came back keeps it. Whether it was deleted.

    Each store deletes a run whole or not at all as readers see it (docs/format.md), and the
    catalog goes first: a gc killed between the two leaves a run log the next gc deletes,
    never catalog files no run lists."""
    if (store.run_modified(run_id) or 0.0) != modified:
        return False
    if catalog is not None:
        catalog.delete_run(run_id)
    with contextlib.suppress(RunLogNotFoundError):  # deleted by another gc meanwhile
        store.delete_run(run_id)
    return True


def gc_contents(
    catalog: BaseCatalog,
    *,
    dry_run: bool = False,
    deleted_runs: set[str] | None = None,
    callback: Callback = NO_PROGRESS,
) -> ContentSweep | None:
    """Remove the contents no remaining run references, once ``gc_runs`` removed runs' manifests
    (content catalogs only: a per-run catalog's files went with their runs; None for those).
    A dry run counts the runs ``deleted_runs`` as gone, as gc would have left it."""
    if not isinstance(catalog, ContentCatalog):
        return None
    return catalog.sweep_contents(
        dry_run=dry_run, ignoring=deleted_runs or set(), callback=callback
    )


def _gc_decision(
    store: BaseRunLogStore,
    run_id: str,
    older_than: timedelta,
    now: datetime,
    status: str | None,
    dry_run: bool,
) -> GcDecision | None:
    """What gc would do with a run that is old enough and of the status asked; else None."""
    try:
        summary = read_summary(store, run_id)
    except RunLogNotFoundError:
        return None
    if status is not None and summary.status != status:
        return None
    last, modified = _last_written(store, summary)
    if last is not None and now - last < older_than:
        return None
    return GcDecision(
        run_id=run_id,
        status=summary.status,
        last_written=last,
        age_seconds=(now - last).total_seconds() if last else None,
        action="would delete" if dry_run else "deleted",
        modified=modified,
    )


__all__ = [
    "CopyReport",
    "GcDecision",
    "canonical_run",
    "copy_run",
    "count_freed",
    "delete_if_unchanged",
    "export_run",
    "first_difference",
    "gc_contents",
    "gc_runs",
    "remove_leftovers",
]
