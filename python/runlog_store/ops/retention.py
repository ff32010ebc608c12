"""Which runs ``runlog gc`` deletes: a retention policy, and the runs it selects.

A policy says which runs may go, never which must: a run is deleted only when every rule lets
it. It is old enough (last written longer ago than ``older_than``), of a status that may go
(``statuses``; a run not ended, which may still be written, only with ``include_unfinished``),
matched by ``filter`` (the language of ``runlog list --filter``), and not among the newest
``keep_last`` runs of its tag. The policy comes from the ``retention:`` section of the
configuration file (``runlog_store.config.load_retention``), the command line's options
override it (``RetentionPolicy.overridden``).

The runs are read with ``store.iter_runs(filter)``: answered from the store's index for the
built-in stores, so a store of many runs is not read run by run. The age of each run that
could go is still read from the store itself (``run_modified``: its newest piece), and read
again right before it is deleted (``ops.transfer.delete_if_unchanged``).
"""

from __future__ import annotations

import math
import os
import stat
import sys
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
)

from runlog_store.exceptions import RunLogStoreError
from runlog_store.models import ENDED_STATUSES
from runlog_store.ops.runs import (
    UNREADABLE,
    RunSummary,
    parse_age,
    parse_status,
    run_id_problem,
    run_paths,
)
from runlog_store.search.query import all_of, quoted
from runlog_store.stores.base import BaseRunLogStore

# What a run old enough is kept for by the policy (ops.transfer.Action has them all).
Kept = Literal["kept: unreadable", "kept: unfinished", "kept: newest of its tag"]
KEPT_NEWEST: Kept = "kept: newest of its tag"


class RetentionPolicy(BaseModel):
    """The rules of ``runlog gc``: the keys of the ``retention:`` section.

    ``older_than`` is an age as ``--older-than`` takes it (``30d``, ``12h``, ``1w2d``): a run
    whose newest stored piece was written longer ago may go. ``keep_last`` keeps the newest
    runs (by start time) of each tag, untagged runs being a tag of their own, whatever the
    other rules say. ``statuses``, when given, are the only statuses of runs that may go; a
    status of runs not ended (CREATED, PROCESSING, TRIGGERED) also needs
    ``include_unfinished``, since such a run may be one still being written. ``filter`` is a
    search filter (``tag = 'sweep' and metrics.accuracy < 0.5``): only runs it matches may go.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    older_than: str | None = None
    keep_last: StrictInt | None = Field(default=None, ge=0)
    statuses: tuple[str, ...] | None = None
    filter: StrictStr | None = None
    include_unfinished: StrictBool = False

    @field_validator("older_than", mode="before")
    @classmethod
    def _an_age(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError(f"an age with its unit, such as 30d, 12h or 1w, not {value!r}")
        try:
            parse_age(value, "older_than")
        except RunLogStoreError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("statuses", mode="before")
    @classmethod
    def _known_statuses(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not value:
            raise ValueError("a list of run statuses, such as [SUCCESS, FAIL]")
        found = []
        for item in value:
            if not isinstance(item, str):
                raise ValueError(f"{item!r} is not a run status")
            try:
                status = parse_status(item, "status")
            except RunLogStoreError as exc:
                raise ValueError(str(exc)) from None
            found.append(status)
        return tuple(dict.fromkeys(found))

    @field_validator("filter")
    @classmethod
    def _a_filter(cls, value: str | None) -> str | None:
        if value is not None and value.strip():
            from runlog_store.search.query import parse_filter

            try:
                parse_filter(value)
            except RunLogStoreError as exc:
                raise ValueError(str(exc)) from None
        return value if value and value.strip() else None

    def overridden(
        self,
        *,
        older_than: str | None = None,
        keep_last: int | None = None,
        status: str | None = None,
        filter: str | None = None,
        include_unfinished: bool = False,
    ) -> RetentionPolicy:
        """This policy with the command line's options: an age, a count or a status given
        there replaces the section's; a filter given there narrows the section's (both must
        match); ``--include-unfinished`` turns it on."""
        changes: dict[str, Any] = {}
        if older_than is not None:
            changes["older_than"] = older_than
        if keep_last is not None:
            changes["keep_last"] = keep_last
        if status is not None:
            changes["statuses"] = [status]
        if filter is not None and filter.strip():
            changes["filter"] = all_of(self.filter, filter)
        if include_unfinished:
            changes["include_unfinished"] = True
        return RetentionPolicy.model_validate({**self.model_dump(), **changes})


class Candidate(BaseModel):
    """A run the policy looked at past its filter and status: old enough to go, and what the
    policy says of it (``action`` None: it may be deleted)."""

    summary: RunSummary
    last_written: datetime | None
    age_seconds: float | None
    modified: float
    action: Kept | None = None


class Selection(BaseModel):
    """The runs old enough to go, in the order read (newest started first), each with what the
    policy says of it; runs too young, or that the filter or statuses leave out, are not here.
    """

    candidates: list[Candidate] = Field(default_factory=list)
    # Every summary the search returned, by run id (runs too young included).
    matched: set[str] = Field(default_factory=set)


def search_filter(policy: RetentionPolicy) -> str | None:
    """What the store is searched with: the policy's filter, and its statuses when it names
    some (runs of other statuses are then not even read)."""
    statuses = None
    if policy.statuses is not None:
        statuses = f"status in ({', '.join(quoted(s) for s in policy.statuses)})"
    return all_of(policy.filter, statuses)


def newest_of_each_tag(
    store: BaseRunLogStore, summaries: Iterable[RunSummary], keep_last: int
) -> set[str]:
    """The ids of the ``keep_last`` newest runs of each tag: by start time, else (a run with no
    attempt, a job's) by when it was last written. A run that cannot be read has no tag it
    could be counted under: it is not counted."""
    dated: list[tuple[float, str, str]] = []
    for summary in summaries:
        if summary.status == UNREADABLE:
            continue
        if summary.start is not None:
            stamp = summary.start.timestamp()
        else:
            modified = store.run_modified(summary.run_id)
            stamp = modified if modified is not None else -math.inf
        dated.append((stamp, summary.run_id, summary.tag))
    # Newest first; runs of the same time by id, as a search orders them.
    dated.sort(key=lambda found: (-found[0], found[1]))
    seen: Counter[str] = Counter()
    kept: set[str] = set()
    for _, run_id, tag in dated:
        if seen[tag] < keep_last:
            kept.add(run_id)
        seen[tag] += 1
    return kept


def select_runs(
    store: BaseRunLogStore,
    policy: RetentionPolicy,
    *,
    now: datetime | None = None,
) -> Selection:
    """The runs of ``store`` the policy lets go, and those it keeps though they are old
    enough (see the module docstring). Nothing is deleted here."""
    if policy.older_than is None:
        raise RunLogStoreError("a retention policy needs an age (older_than) to select runs")
    age = parse_age(policy.older_than, "older_than")
    now = now or datetime.now()
    protected: set[str] = set()
    if policy.keep_last is not None:
        protected = newest_of_each_tag(store, store.iter_runs(None), policy.keep_last)
    selection = Selection()
    for summary in store.iter_runs(search_filter(policy), order_by="start_time desc"):
        selection.matched.add(summary.run_id)
        if run_id_problem(summary.run_id) is not None:
            # Listed, as runlog list lists it, but no store can be asked about it by name.
            selection.candidates.append(
                Candidate(
                    summary=summary,
                    last_written=None,
                    age_seconds=None,
                    modified=0.0,
                    action="kept: unreadable",
                )
            )
            continue
        modified = store.run_modified(summary.run_id)
        if modified is None and summary.status != UNREADABLE:
            continue  # deleted since it was listed
        times = [t for t in (summary.start, summary.end) if t is not None]
        if modified is not None:
            times.append(datetime.fromtimestamp(modified))
        last = max(times, default=None)
        if last is not None and now - last < age:
            continue
        candidate = Candidate(
            summary=summary,
            last_written=last,
            age_seconds=(now - last).total_seconds() if last is not None else None,
            modified=modified or 0.0,
        )
        if summary.status == UNREADABLE:
            # Its status and times are unknown: it may be a run still being written.
            candidate.action = "kept: unreadable"
        elif summary.status not in ENDED_STATUSES and not policy.include_unfinished:
            candidate.action = "kept: unfinished"
        elif summary.run_id in protected:
            candidate.action = KEPT_NEWEST
        selection.candidates.append(candidate)
    return selection


def run_bytes(store: BaseRunLogStore, run_id: str) -> int | None:
    """The bytes a run takes in its store: the sizes of its files (a folder's, walked without
    following links), objects or rows; None for a store this cannot ask."""
    paths = run_paths(store, run_id)
    if paths:
        # A chunked run's document is in its folder: counted with the folder, not again.
        tops = [path for path in paths if os.path.dirname(path) not in paths]
        return sum(_tree_bytes(path) for path in tops)
    from runlog_store.stores.chunked_minio import ChunkedMinioRunLogStore
    from runlog_store.stores.minio import MinioRunLogStore

    # A postgres store's module is loaded when there is one: not imported (nor psycopg with it)
    # to find that a store of another type is not one.
    postgres = sys.modules.get("runlog_store.stores.postgres")
    if postgres is not None and isinstance(store, postgres.PostgresRunLogStore):
        rows: int | None = store.run_bytes(run_id)
        return rows
    if isinstance(store, ChunkedMinioRunLogStore):
        objects = store.storage().list_objects(store._folder(run_id), run_id=run_id)
        return sum(o.size for o in objects)
    if isinstance(store, MinioRunLogStore):
        found = store.storage().stat(store._key(run_id), run_id=run_id)
        return found.size if found is not None else 0
    return None


def _tree_bytes(path: str) -> int:
    try:
        info = os.lstat(path)
    except OSError:
        return 0
    if not stat.S_ISDIR(info.st_mode):
        return info.st_size
    total = 0
    for folder, _, files in os.walk(path, followlinks=False):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                continue
    return total


__all__ = [
    "KEPT_NEWEST",
    "Candidate",
    "Kept",
    "RetentionPolicy",
    "Selection",
    "newest_of_each_tag",
    "quoted",
    "run_bytes",
    "search_filter",
    "select_runs",
]
