"""Deleting a chunked-minio run against a real MinIO server: the run document goes first, so at
every moment of a removal a reader (ours, the run index, runnable 0.50's own store) finds the
whole run or no run; a removal cut short leaves objects no reader sees, which the next gc (or a
run created again under the id) removes; a writer that still had the run open brings no half
run back. The SIGKILL of a real gc is tests/cli/test_retention.py's."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from extensions.run_log_store.chunked_minio import ChunkedMinioRunLogStore as RunnableChunkedMinio
from runnable import exceptions as runnable_exceptions

from runlog_store import create_store
from runlog_store.exceptions import RunLogNotFoundError
from runlog_store.models import FAIL, SUCCESS
from runlog_store.ops.transfer import gc_runs
from runlog_store.stores.chunked_minio import ChunkedMinioRunLogStore

from ..cli.test_list_search import sweep_run
from ..runnable.test_reads_ours import Runnable

BRANCHES = 6


class Killed(BaseException):
    """Stands for the SIGKILL of the process deleting: nothing after it runs."""


def _store(minio_config: dict[str, str]) -> ChunkedMinioRunLogStore:
    store = create_store("chunked-minio", **minio_config)
    assert isinstance(store, ChunkedMinioRunLogStore)
    return store


def _keys(store: ChunkedMinioRunLogStore, prefix: str = "") -> list[str]:
    return sorted(store.storage().list_etags(prefix))


def _kill_after(store: ChunkedMinioRunLogStore, deletes: int) -> list[str]:
    """Make ``store`` stop dead at its DELETE number ``deletes + 1``; the keys it deleted."""
    bucket = store.storage()
    original = bucket.delete
    done: list[str] = []

    def delete(key: str, **kwargs: Any) -> None:
        if len(done) >= deletes:
            raise Killed
        done.append(key)
        original(key, **kwargs)

    bucket.delete = delete  # type: ignore[method-assign]
    return done


def _reads_whole_or_gone(minio_config: dict[str, str], run_id: str) -> bool:
    """What fresh readers see of the run: True if whole (listed, searched, every branch, by us
    and by runnable), False if gone (for all of them alike); anything between fails."""
    reader = _store(minio_config)
    listed = run_id in reader.list_run_ids()
    searched = run_id in {s.run_id for s in reader.search_runs().runs}
    runnable = Runnable(RunnableChunkedMinio(**minio_config), minio_config)
    if not listed:
        assert not searched, "the index still finds a run no listing shows"
        with pytest.raises(RunLogNotFoundError):
            reader.get_run_log_by_id(run_id, full=True)
        with pytest.raises(runnable_exceptions.RunLogNotFoundError):
            runnable.full(run_id)
        return False
    assert searched
    run = reader.get_run_log_by_id(run_id, full=True)
    assert run.status == SUCCESS and len(run.steps["train"].branches) == BRANCHES
    theirs = runnable.full(run_id)
    assert theirs["status"] == SUCCESS and len(theirs["steps"]["train"]["branches"]) == BRANCHES
    return True


def test_at_every_moment_of_a_delete_the_run_is_whole_or_gone(
    minio_config: dict[str, str],
) -> None:
    store = _store(minio_config)
    sweep_run(store, "doomed", branches=BRANCHES)
    sweep_run(store, "kept", branches=BRANCHES)
    store.get_run_log_json("doomed")  # its snapshot too
    objects = _keys(store, "doomed/")
    seen: list[tuple[str, bool]] = []
    bucket = store.storage()
    original = bucket.delete
    one_at_a_time = threading.Lock()  # the rest goes in parallel batches; runnable's reader
    # sets a process-wide run context

    def delete(key: str, **kwargs: Any) -> None:
        with one_at_a_time:
            seen.append((key, _reads_whole_or_gone(minio_config, "doomed")))
            original(key, **kwargs)

    bucket.delete = delete  # type: ignore[method-assign]
    store.delete_run("doomed")
    # Whole until its run document's DELETE (format 1's comes first: a no-op here), gone from
    # then on while the rest goes, and the marker of the removal goes last.
    deleted = [key for key, _ in seen]
    assert deleted[:2] == ["doomed/RunLog.json", "doomed/RunLog"]
    assert [whole for _, whole in seen[:2]] == [True, True]
    assert not any(whole for _, whole in seen[2:])
    assert deleted[-1] == ".deleting/doomed"
    assert sorted(deleted[2:-1]) == [k for k in objects if k != "doomed/RunLog"]
    assert len(objects) > BRANCHES + 3  # branch objects, step objects, layout, snapshot
    assert _keys(store) == _keys(store, "kept/")
    assert not _reads_whole_or_gone(minio_config, "doomed")
    assert _reads_whole_or_gone(minio_config, "kept")


def test_a_removal_cut_short_is_finished_by_the_next_gc(minio_config: dict[str, str]) -> None:
    """Killed after its run document and a few objects: no reader sees the run, and the next
    gc removes the rest, even one that has no run to delete."""
    first = _store(minio_config)
    sweep_run(first, "cut", branches=BRANCHES)
    sweep_run(first, "young", branches=1)
    done = _kill_after(first, 5)
    with pytest.raises(Killed):
        first.delete_run("cut")
    assert done[:2] == ["cut/RunLog.json", "cut/RunLog"]
    left = _keys(first, "cut/")
    assert left and "cut/RunLog" not in left
    assert _keys(first, ".deleting/") == [".deleting/cut"]
    assert not _reads_whole_or_gone(minio_config, "cut")
    # Only "young" is listed, and it is too young for this gc: it deletes nothing.
    second = _store(minio_config)
    decisions = gc_runs(second, timedelta(days=1))
    assert decisions == []
    assert _keys(second) == _keys(second, "young/")


def test_a_removal_killed_before_its_run_document_went_leaves_the_run_whole(
    minio_config: dict[str, str],
) -> None:
    first = _store(minio_config)
    sweep_run(first, "spared", branches=BRANCHES)
    _kill_after(first, 1)  # format 1's document (none here), then dead
    with pytest.raises(Killed):
        first.delete_run("spared")
    assert _keys(first, ".deleting/") == [".deleting/spared"]
    second = _store(minio_config)
    # The marker beside a run document is left alone: the run is whole, and stays so.
    assert second.remove_leftovers() == []
    assert _reads_whole_or_gone(minio_config, "spared")
    second.delete_run("spared")
    assert _keys(second) == []


@pytest.mark.parametrize("prefix", ["", "/run-logs"])
def test_the_first_delete_of_a_store_finishes_removals_cut_short(
    minio_config: dict[str, str], prefix: str
) -> None:
    minio_config = {**minio_config, "bucket": minio_config["bucket"] + prefix}
    first = _store(minio_config)
    sweep_run(first, "cut", branches=BRANCHES)
    sweep_run(first, "next", branches=1)
    _kill_after(first, 4)
    with pytest.raises(Killed):
        first.delete_run("cut")
    marker = f"{prefix.strip('/')}/.deleting/cut".lstrip("/")
    assert marker in _keys(first)
    second = _store(minio_config)
    second.delete_run("next")
    assert _keys(second) == []


def test_an_id_created_again_starts_empty(minio_config: dict[str, str]) -> None:
    """What a removal cut short left under an id is no part of a run created again under it."""
    first = _store(minio_config)
    sweep_run(first, "again", branches=BRANCHES)
    _kill_after(first, 4)
    with pytest.raises(Killed):
        first.delete_run("again")
    # A minio catalog sharing the prefix (a copy puts the catalog before the run): kept.
    first.storage().put("again/data/model.bin", b"weights")
    second = _store(minio_config)
    second.create_run_log("again", tag="new", status=FAIL)
    assert _keys(second, "again/") == ["again/.layout", "again/RunLog", "again/data/model.bin"]
    run = second.get_run_log_by_id("again", full=True)
    assert run.tag == "new" and run.steps == {}
    # Its marker stays beside a run document, untouched, until the run is deleted.
    assert second.remove_leftovers() == []
    second.delete_run("again")
    assert _keys(second) == []


def test_a_writer_that_had_the_run_open_brings_no_half_run_back(
    minio_config: dict[str, str],
) -> None:
    """A step or branch put after the removal by a process that knew the run lands beside no
    run document: no reader sees it; the run's own fields cannot be written at all; a run
    created again under the id does not get it."""
    writer = _store(minio_config)
    sweep_run(writer, "gone", branches=2)
    _store(minio_config).delete_run("gone")
    step = writer.create_step_log("late", "late")
    writer.add_step_log(step, "gone")  # the writer still knows the run: one PUT
    branch = writer.create_branch_log("train.9")
    writer.add_branch_log(branch, "gone")
    assert _keys(writer, "gone/")  # what it wrote
    with pytest.raises(RunLogNotFoundError):
        writer.update_run_log_status("gone", SUCCESS)
    with pytest.raises(RunLogNotFoundError):
        writer.set_parameters("gone", {})
    assert not _reads_whole_or_gone(minio_config, "gone")
    assert "gone" not in writer.list_run_ids()
    again = _store(minio_config)
    again.create_run_log("gone")
    assert again.get_run_log_by_id("gone", full=True).steps == {}
