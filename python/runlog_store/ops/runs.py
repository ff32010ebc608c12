"""Many runs at a glance: one-line summaries of runs, and ages written the way people say them.

Summaries are built from the merged JSON of each run (``get_run_log_json``) walked as plain
dicts, not from the pydantic models: a listing reads every run of a store, and validating
thousands of steps per run would cost more than reading them.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pydantic_core
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
)

from runlog_store import _core
from runlog_store._paths import validate_run_id
from runlog_store.callbacks import NO_PROGRESS, Callback
from runlog_store.exceptions import (
    ChunkNotFoundError,
    InvalidRunIdError,
    RunLogNotFoundError,
    RunLogStoreError,
    StorageError,
)
from runlog_store.models import CREATED, FAIL, PROCESSING, SUCCESS, TRIGGERED, RunLog
from runlog_store.stores.base import BaseRunLogStore
from runlog_store.stores.chunked_fs import ChunkedFileSystemRunLogStore
from runlog_store.stores.file_system import FileSystemRunLogStore
from runlog_store.stores.project import LAYOUTS, ProjectRunLogStore

if TYPE_CHECKING:
    from runlog_store.catalogs.base import BaseCatalog

_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_AGE_NAMES = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week"}
_AGE_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")

# A run that cannot be read is listed with this status instead of its own.
UNREADABLE = "UNREADABLE"
# Every status a listed run can have: runnable's, and ours for a run that cannot be read.
RUN_STATUSES = (SUCCESS, FAIL, PROCESSING, CREATED, TRIGGERED, UNREADABLE)


class RunSummary(BaseModel):
    """What ``runlog list`` shows of a run."""

    # NaN and the infinities among parameters and metrics written as such in the JSON (not as
    # null): an index answers with that JSON, which must read back as a read of the run.
    model_config = ConfigDict(ser_json_inf_nan="constants")

    run_id: str
    status: str
    tag: str
    start: datetime | None
    end: datetime | None
    duration_seconds: float | None
    steps: int
    branches: int
    failed_step: str | None
    # Why the run could not be read (its status is then UNREADABLE); None for readable runs.
    error: str | None = None
    # The layout the run is stored in, when the store holds runs of several (a project's
    # .run_log_store: runnable's file-system and chunked-fs); None otherwise.
    layout: str | None = None
    # The run's dag_hash as stored ("" kept as ""), and the first code identifier it recorded
    # (steps at every depth in run order, attempts in order, then the job): a git commit or an
    # image digest.
    dag_hash: str | None = None
    commit: str | None = None
    # Steps and branches at every depth, counted by status.
    steps_by_status: dict[str, int] = Field(default_factory=dict)
    branches_by_status: dict[str, int] = Field(default_factory=dict)
    # Root parameters: a JSON parameter's value, a pickled object's stored name; and the root
    # metrics (parameters of kind "metric") with their last value.
    params: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    # The status of every step at every depth by internal name: what ``step.<name>.status``
    # filters on. Left out of the JSON of a summary (a thousand-branch run has thousands)
    # unless the dump's context asks for them (WITH_STEP_STATUSES): a run index keeps them.
    step_statuses: dict[str, str] = Field(default_factory=dict, exclude=True)

    @model_serializer(mode="wrap")
    def _with_step_statuses(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> Any:
        data = handler(self)
        context = info.context
        if isinstance(context, dict) and context.get(WITH_STEP_STATUSES) and self.step_statuses:
            data["step_statuses"] = self.step_statuses
        return data


# The serialization context under which a RunSummary's JSON holds its step statuses:
# ``summary.model_dump_json(context={WITH_STEP_STATUSES: True})``.
WITH_STEP_STATUSES = "with_step_statuses"


def _age_parts(text: str, option: str) -> list[tuple[str, str]]:
    """The (number, unit) parts of an age as written; RunLogStoreError for anything else."""
    cleaned = text.strip().lower().replace(" ", "")
    position, parts = 0, []
    for match in _AGE_PART.finditer(cleaned):
        if match.start() != position:
            break
        parts.append((match.group(1), match.group(2)))
        position = match.end()
    if not cleaned or position != len(cleaned):
        raise RunLogStoreError(
            f"{option} {text!r} is not an age; write a number and a unit, such as 90s, 45m, "
            "12h, 2d, 1w or 1d12h"
        )
    return parts


def parse_age(text: str, option: str = "--older-than") -> timedelta:
    """``90s``, ``45m``, ``12h``, ``2d``, ``1w`` or a sum of them (``1d12h``)."""
    parts = _age_parts(text, option)
    return timedelta(seconds=sum(float(number) * _AGE_UNITS[unit] for number, unit in parts))


def describe_age(text: str, option: str = "--older-than") -> str:
    """An age as ``parse_age`` reads it, in words and in the units it was written in:
    ``1d12h`` is "1 day 12 hours", ``90m`` "90 minutes"."""
    words = []
    for number, unit in _age_parts(text, option):
        name = _AGE_NAMES[unit]
        words.append(f"{number} {name}" if float(number) == 1 else f"{number} {name}s")
    return " ".join(words)


def parse_status(text: str, option: str = "--status") -> str:
    """A run status as the stores write it (``fail`` is ``FAIL``); RunLogStoreError listing
    the valid ones for anything else."""
    wanted = text.strip().upper()
    if wanted not in RUN_STATUSES:
        raise RunLogStoreError(
            f"{option} {text!r} is not a run status; use one of "
            f"{', '.join(RUN_STATUSES[:-1])} or {RUN_STATUSES[-1]}"
        )
    return wanted


def parse_time(value: Any) -> datetime | None:
    """A run log time (``str(datetime.now())`` in runnable); None for anything else."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    # runnable writes local naive times; an aware one is compared as local time too.
    return parsed.astimezone().replace(tzinfo=None) if parsed.tzinfo else parsed


def walk_steps(steps: Any) -> Iterator[dict[str, Any]]:
    """Every step at every depth, in run order, parents before their branches' steps."""
    if not isinstance(steps, dict):
        return
    for step in steps.values():
        if not isinstance(step, dict):
            continue
        yield step
        branches = step.get("branches")
        if isinstance(branches, dict):
            for branch in branches.values():
                if isinstance(branch, dict):
                    yield from walk_steps(branch.get("steps"))


def attempts_of(holder: dict[str, Any]) -> list[dict[str, Any]]:
    attempts = holder.get("attempts")
    return [a for a in attempts if isinstance(a, dict)] if isinstance(attempts, list) else []


def _field(holder: Any, name: str) -> Any:
    return holder.get(name) if isinstance(holder, Mapping) else getattr(holder, name, None)


def describe_code_identities(holders: Iterable[Any], sha_length: int | None = None) -> list[str]:
    """The code identities steps and jobs recorded, as ``git <sha> clean|dirty``: per attempt
    in runnable 0.50, per step in older layouts; ``holders`` may be dicts or models."""
    found: set[str] = set()
    for holder in holders:
        sources = [_field(holder, "code_identities")]
        sources += [_field(a, "code_identities") for a in _field(holder, "attempts") or []]
        for identity in (i for source in sources if isinstance(source, list) for i in source):
            item = identity.model_dump() if isinstance(identity, BaseModel) else identity
            if not isinstance(item, Mapping) or not item.get("code_identifier"):
                continue
            kind = item.get("code_identifier_type") or "code"
            text = f"{kind} {str(item['code_identifier'])[:sha_length]}"
            if kind == "git":
                # runnable marks a commit with uncommitted changes as not dependable.
                text += " clean" if item.get("code_identifier_dependable") else " dirty"
            found.add(text)
    return sorted(found)


def summary_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields of a RunSummary from those the core computed (``_core.summarize_run``), in
    place. Times in a form the core leaves to Python (``other_times``: rare, see
    rust/summary/time.rs) are read by ``parse_time`` and taken into the start and end here."""
    other_times = fields.pop("other_times")
    if other_times:
        times = [t for t in map(parse_time, other_times) if t is not None]
        if times:
            times += [t for t in (fields["start"], fields["end"]) if t is not None]
            start, end = min(times), max(times)
            fields.update(start=start, end=end, duration_seconds=(end - start).total_seconds())
    return fields


def _summary_of(fields: dict[str, Any]) -> RunSummary:
    # The core built every field with its declared type: no validation to repeat.
    return RunSummary.model_construct(**summary_fields(fields))


def summarize(run: bytes | Mapping[str, Any]) -> RunSummary:
    """The summary of one merged run log: its JSON (as a store's ``get_run_log_json`` gives
    it), or a dict of it. CorruptChunkError when it is not JSON or not a run log."""
    data = run if isinstance(run, bytes) else pydantic_core.to_json(run)
    return _summary_of(_core.summarize_run(data))


def _not_a_run(run: Any) -> str | None:
    """Why a parsed document is not a run log (``{}``, a list, a run without an id), judged on
    its run-level fields as the models read them; None when it is one. Its steps are left to
    ``summarize``, which reads what it can of them: validating them all would cost a listing
    more than reading them."""
    if not isinstance(run, dict):
        return f"not a run log (a JSON {type(run).__name__}, not an object)"
    try:
        RunLog.model_validate({**run, "steps": {}, "job": None})
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "document"
        return f"not a valid run log ({where}: {error['msg']})"
    return None


# --- what a log folder holds: names that are no run id, symbolic links --------------------------


def run_id_problem(name: str) -> str | None:
    """Why a name a store listed cannot be a run id (an escape byte, more than 200 bytes, bytes
    that are not UTF-8: anyone who can write in a shared log folder can make such an entry);
    None for a run id."""
    try:
        validate_run_id(name)
    except InvalidRunIdError as exc:
        return exc.reason
    return None


def stored_run_ids(store: BaseRunLogStore) -> list[str]:
    """What ``store.list_run_ids()`` lists, names that are no run id included: they are listed
    UNREADABLE (``read_summary``), so that one bad entry neither hides the other runs nor is
    hidden itself. A project's store orders its runs by when each was written, which it cannot
    ask of a name that is no run id: its two layouts are listed here, those names last."""
    if not isinstance(store, ProjectRunLogStore):
        return store.list_run_ids()
    names = dict.fromkeys(name for layout in LAYOUTS for name in store.store(layout).list_run_ids())
    written: dict[str, float] = {}
    unnamed: list[str] = []
    for name in names:
        if run_id_problem(name) is not None:
            unnamed.append(name)
            continue
        modified = store.run_modified(name)
        if modified is not None:  # else deleted since it was listed
            written[name] = modified
    return sorted(written, key=lambda name: written[name], reverse=True) + unnamed


def run_paths(store: BaseRunLogStore, run_id: str) -> list[str]:
    """Where a store on a file system keeps a run: ``<log_folder>/<run_id>.json`` (file-system),
    ``<log_folder>/<run_id>/`` and its ``RunLog.json`` (chunked-fs), those of both layouts for a
    project's store (docs/format.md); none for other stores."""
    paths: list[str] = []
    if isinstance(store, ChunkedFileSystemRunLogStore | ProjectRunLogStore):
        folder = os.path.join(store.log_folder, run_id)
        paths += [folder, os.path.join(folder, _core.RUN_LOG_FILE)]
    if isinstance(store, FileSystemRunLogStore | ProjectRunLogStore):
        paths.append(os.path.join(store.log_folder, f"{run_id}.json"))
    return paths


def symbolic_links(
    store: BaseRunLogStore, run_id: str, catalog: BaseCatalog | None = None
) -> list[str]:
    """The paths of a run (its folder or document, and its catalog folder when ``catalog`` is
    given) that are symbolic links. The stores never make one: a link in a log folder was put
    there by someone else, and deleting the run would delete, or try to delete, what it points
    to, which may be anything anywhere. ``runlog gc`` keeps such runs."""
    paths = run_paths(store, run_id)
    if catalog is not None:
        local = catalog.local_run_folder(run_id)
        if local is not None:
            paths.append(str(local))
    return [path for path in paths if os.path.islink(path)]


# --- summaries ----------------------------------------------------------------------------------


def _unreadable(run_id: str, reason: str) -> RunSummary:
    return RunSummary(
        run_id=run_id,
        status=UNREADABLE,
        tag="",
        start=None,
        end=None,
        duration_seconds=None,
        steps=0,
        branches=0,
        failed_step=None,
        error=reason if run_id in reason else f"run {run_id!r}: {reason}",
    )


def _unreadable_reason(exc: RunLogStoreError) -> str:
    """Why a run could not be read, from the error its read or its summary raised: the core's
    summary names a document the models refuse by its run-level fields (``run_fields``), which
    the models word here, as they would read them."""
    fields = getattr(exc, "run_fields", None)
    if isinstance(fields, dict):
        problem = _not_a_run(fields)
        if problem is not None:
            return problem
    return str(exc)


def read_summary(store: BaseRunLogStore, run_id: str) -> RunSummary:
    """The summary of a stored run; a run that cannot be read (a damaged chunk, a document that
    is not a run log, an entry whose name is no run id, say) gets one too, saying why, so one
    bad run does not hide the others."""
    problem = run_id_problem(run_id)
    if problem is not None:
        return _unreadable(run_id, f"not a valid run id: {problem}")
    try:
        return _summary_of(_core.summarize_run(store.get_run_log_json(run_id), run_id))
    except RunLogNotFoundError:
        raise
    except RunLogStoreError as exc:
        reason = _unreadable_reason(exc)
    except ValueError as exc:
        reason = str(exc)
    return _unreadable(run_id, reason)


def read_document_summaries(
    paths: Sequence[str], run_ids: Sequence[str]
) -> list[RunSummary | None]:
    """The summaries of file-system run documents (``paths[i]`` holds run ``run_ids[i]``), read
    and summarized by the core in parallel with the checks the store makes when it reads one
    (``FileSystemRunLogStore.get_run_log_json``); None for a run gone since it was listed, an
    UNREADABLE summary for one that cannot be read, as ``read_summary`` gives them."""
    return [
        RunSummary.model_construct(**found) if isinstance(found, dict) else found
        for found in read_document_fields(paths, run_ids)
    ]


def _fields_or_unreadable(
    run_ids: Sequence[str], results: list[Any], gone: Callable[[Any], bool]
) -> list[dict[str, Any] | RunSummary | None]:
    found: list[dict[str, Any] | RunSummary | None] = []
    for run_id, result in zip(run_ids, results, strict=True):
        if isinstance(result, dict):
            found.append(summary_fields(result))
        elif gone(result):
            found.append(None)
        elif isinstance(result, RunLogStoreError):
            found.append(_unreadable(run_id, _unreadable_reason(result)))
        else:
            found.append(_unreadable(run_id, str(result)))
    return found


def read_document_fields(
    paths: Sequence[str], run_ids: Sequence[str]
) -> list[dict[str, Any] | RunSummary | None]:
    """``read_document_summaries`` with each readable run's summary as the dict of its fields
    (no model built: an index build of 100,000 runs makes rows of them straight away)."""
    results = _core.summarize_files(list(paths), list(run_ids))
    return _fields_or_unreadable(
        run_ids, results, lambda result: isinstance(result, ChunkNotFoundError)
    )


def _run_folder_gone(result: Any) -> bool:
    """A run folder or run document missing, as the chunked store's read says it
    (``RunLogNotFoundError``): the run is gone."""
    if isinstance(result, ChunkNotFoundError):
        return True
    return isinstance(result, StorageError) and result.errno == errno.ENOENT


def read_run_folder_fields(
    folder: str, run_ids: Sequence[str], *, fsync: bool = True, lock_timeout: float = 60.0
) -> list[dict[str, Any] | RunSummary | None]:
    """The summaries of chunked-fs runs (the folders ``<folder>/<run_ids[i]>``), each read as
    the chunked-fs store reads it (``get_run_log_json``), by the core in parallel: the dict of
    a readable run's fields, None for a run gone, an UNREADABLE summary for one that cannot be
    read, as ``read_summary`` gives them."""
    results = _core.summarize_run_folders(
        folder, list(run_ids), fsync=fsync, lock_timeout=lock_timeout
    )
    return _fields_or_unreadable(run_ids, results, _run_folder_gone)


def summarize_runs(
    store: BaseRunLogStore,
    *,
    status: str | None = None,
    tag: str | None = None,
    since: datetime | None = None,
    limit: int | None = None,
    run_ids: list[str] | None = None,
    callback: Callback = NO_PROGRESS,
) -> list[RunSummary]:
    """Summaries of the store's runs that match, newest first (by start; runs not started yet
    count as newest). A run deleted while listed is left out. Each run read is reported to
    ``callback`` (unit: items)."""
    found: list[RunSummary] = []
    run_ids = store.list_run_ids() if run_ids is None else run_ids
    with callback.phase("reading runs", len(run_ids), "items"):
        for run_id in run_ids:
            try:
                summary = read_summary(store, run_id)
            except RunLogNotFoundError:
                continue
            finally:
                callback.advance(1)
            if status is not None and summary.status != status:
                continue
            if tag is not None and summary.tag != tag:
                continue
            if since is not None and summary.start is not None and summary.start < since:
                continue
            found.append(summary)
    found.sort(key=lambda s: s.start or datetime.max, reverse=True)
    return found[:limit] if limit is not None else found


__all__ = [
    "RUN_STATUSES",
    "UNREADABLE",
    "RunSummary",
    "describe_age",
    "describe_code_identities",
    "parse_age",
    "parse_status",
    "parse_time",
    "read_document_fields",
    "read_document_summaries",
    "read_run_folder_fields",
    "read_summary",
    "run_id_problem",
    "run_paths",
    "stored_run_ids",
    "summarize",
    "summarize_runs",
    "symbolic_links",
]
