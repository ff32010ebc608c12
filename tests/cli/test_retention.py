"""Retention for ``runlog gc``: the ``retention:`` section of the configuration file (checked
key by key), what it keeps (the newest runs of each tag, runs of other statuses, runs its
filter does not match, runs not ended), the command line's options over it, the bytes a dry
run says it would free, and a gc killed half way (SIGKILL) that leaves every run it did not
finish deleting whole (file-system, chunked-fs, chunked-minio on a real MinIO server)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from runlog_store.cli.render import format_bytes
from runlog_store.config import load_catalog, load_retention, load_store
from runlog_store.exceptions import ConfigurationError
from runlog_store.models import FAIL, PROCESSING, SUCCESS
from runlog_store.ops.retention import RetentionPolicy
from runlog_store.stores.base import BaseRunLogStore
from runlog_store.stores.chunked_minio import ChunkedMinioRunLogStore

from .test_list_search import configured, invoke, sweep_run

RUNLOG = str(Path(sys.executable).with_name("runlog"))


def actions(config: Path, *args: str) -> dict[str, str]:
    """What ``runlog gc --dry-run`` would do with each run it lists."""
    decisions = json.loads(invoke("gc", "-c", config, "--dry-run", "--json", *args).stdout)
    return {d["run_id"]: d["action"] for d in decisions}


# --- the section --------------------------------------------------------------------------------


def test_the_section_is_read_as_written(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    retention = {
        "older_than": "30d",
        "keep_last": 10,
        "statuses": ["success", "FAIL"],
        "filter": "tag = 'sweep'",
        "include_unfinished": False,
    }
    config, _ = configured("chunked-fs", tmp_path, request, retention=retention)
    policy = load_retention(config)
    assert policy == RetentionPolicy(
        older_than="30d", keep_last=10, statuses=(SUCCESS, FAIL), filter="tag = 'sweep'"
    )
    assert load_retention(None) == RetentionPolicy()
    bare, _ = configured("chunked-fs", tmp_path / "bare", request)
    assert load_retention(bare) == RetentionPolicy()


@pytest.mark.parametrize(
    ("retention", "key", "said"),
    [
        ({"older_than": 30}, "retention.older_than", "an age with its unit"),
        ({"older_than": "a month"}, "retention.older_than", "is not an age"),
        ({"keep_last": -1}, "retention.keep_last", "greater than or equal to 0"),
        ({"keep_last": "ten"}, "retention.keep_last", "integer"),
        ({"statuses": ["DONE"]}, "retention.statuses", "'DONE' is not a run status"),
        ({"statuses": "SUCCESS, FAIL"}, "retention.statuses", "not a run status"),
        ({"filter": "tag = "}, "retention.filter", "filter error at column"),
        ({"include_unfinished": "yes please"}, "retention.include_unfinished", "boolean"),
        ({"keep": 3}, "retention.keep", "unknown key; the keys are older_than, keep_last"),
        ([1, 2], "retention", "must be a mapping"),
    ],
)
def test_what_it_cannot_use_is_named_by_its_key(
    tmp_path: Path, request: pytest.FixtureRequest, retention: Any, key: str, said: str
) -> None:
    config, _ = configured("file-system", tmp_path, request, retention=retention)
    with pytest.raises(ConfigurationError) as raised:
        load_retention(config)
    assert raised.value.key == key
    assert str(raised.value).startswith(f"{config}: {key}"), str(raised.value)
    assert said in str(raised.value), str(raised.value)
    result = invoke("gc", "-c", config, "--dry-run", code=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0] and str(config) in lines[0], lines


def test_gc_needs_an_age_from_the_section_or_the_command_line(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    config, store = configured("chunked-fs", tmp_path, request, retention={"keep_last": 1})
    sweep_run(store, "old")
    result = invoke("gc", "-c", config, code=2)
    assert "gc needs an age: --older-than AGE" in result.stderr
    assert f"retention: section of {config}" in " ".join(result.stderr.split())
    assert store.list_run_ids() == ["old"]


def written_ago(path: Path, ago: timedelta) -> None:
    """Set the times of a run's files (a chunked run's folder and all in it) back by ``ago``:
    a run's age is counted from its newest stored piece."""
    when = time.time() - ago.total_seconds()
    for found in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(found, (when, when), follow_symlinks=False)


# --- what it keeps ------------------------------------------------------------------------------


def _tagged_runs(store: BaseRunLogStore) -> None:
    """Four runs tagged a, three tagged b, two untagged; the lower the number, the newer."""
    for tag, count in (("a", 4), ("b", 3), ("", 2)):
        for number in range(1, count + 1):
            sweep_run(store, f"{tag or 'untagged'}{number}", tag=tag, ago=timedelta(hours=number))


@pytest.mark.parametrize("kind", ["file-system", "chunked-fs"])
def test_keep_last_keeps_the_newest_runs_of_each_tag(
    tmp_path: Path, request: pytest.FixtureRequest, kind: str
) -> None:
    retention = {"older_than": "0s", "keep_last": 2}
    config, store = configured(kind, tmp_path, request, retention=retention)
    _tagged_runs(store)
    kept = {"a1", "a2", "b1", "b2", "untagged1", "untagged2"}
    dry = actions(config)
    assert dry == {
        **dict.fromkeys(kept, "kept: newest of its tag"),
        **dict.fromkeys(("a3", "a4", "b3"), "would delete"),
    }
    table = invoke("gc", "-c", config).stdout  # no options: the section says it all
    assert "past the newest 2 of each tag" in table and "deleted 3 of 9 runs" in table
    assert set(store.list_run_ids()) == kept
    # An option replaces its key: the newest one of each tag only.
    invoke("gc", "-c", config, "--keep-last", "1")
    assert set(store.list_run_ids()) == {"a1", "b1", "untagged1"}


def test_runs_never_started_are_newest_by_their_last_write(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A run with no attempt (created and ended at once, as a job's can be) has no start: the
    newest of its tag is the one written last, whatever its id."""
    config, store = configured(
        "chunked-fs", tmp_path, request, retention={"older_than": "0s", "keep_last": 1}
    )
    for run_id, hours in (("job-b", 3), ("job-c", 1), ("job-a", 2)):
        store.create_run_log(run_id, tag="nightly", status=SUCCESS)
        written_ago(tmp_path / "logs" / run_id, timedelta(hours=hours))
    assert actions(config) == {
        "job-c": "kept: newest of its tag",
        "job-a": "would delete",
        "job-b": "would delete",
    }


def test_statuses_and_filter_choose_what_may_go_and_options_narrow_them(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    retention = {"older_than": "1h", "statuses": ["FAIL"], "filter": "metrics.accuracy < 0.5"}
    config, store = configured("chunked-fs", tmp_path, request, retention=retention)
    runs = {
        # run id: (status, accuracy, learning rate, hours ago)
        "bad-old": (FAIL, 0.1, 0.1, 3),
        "bad-old-2": (FAIL, 0.2, 0.3, 3),
        "bad-young": (FAIL, 0.1, 0.1, 0),
        "good-old": (FAIL, 0.9, 0.1, 3),
        "fine-old": (SUCCESS, 0.1, 0.1, 3),
    }
    for run_id, (status, accuracy, lr, hours) in runs.items():
        sweep_run(
            store,
            run_id,
            status=status,
            params={"lr": lr},
            metrics={"accuracy": accuracy},
            ago=timedelta(hours=hours),
        )
        written_ago(tmp_path / "logs" / run_id, timedelta(hours=hours))
    # Runs the filter or the statuses leave out are not even listed; nor are runs too young.
    assert actions(config) == {"bad-old": "would delete", "bad-old-2": "would delete"}
    # --filter narrows the section's filter (both must match).
    assert actions(config, "--filter", "params.lr > 0.2") == {"bad-old-2": "would delete"}
    # --status and --older-than replace the section's.
    assert actions(config, "--status", "SUCCESS") == {"fine-old": "would delete"}
    assert actions(config, "--older-than", "0s") == {
        "bad-old": "would delete",
        "bad-old-2": "would delete",
        "bad-young": "would delete",
    }
    nothing = invoke("gc", "-c", config, "--filter", "params.lr > 1").stdout
    assert "No FAIL run the filter matches in" in " ".join(nothing.split())
    invoke("gc", "-c", config)
    assert set(store.list_run_ids()) == {"bad-young", "good-old", "fine-old"}


def test_runs_not_ended_go_only_when_the_section_or_the_option_says(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    retention = {"older_than": "1s", "statuses": ["PROCESSING"]}
    config, store = configured("file-system", tmp_path, request, retention=retention)
    sweep_run(store, "crashed", status=PROCESSING)
    sweep_run(store, "ended")
    time.sleep(1.2)
    assert actions(config) == {"crashed": "kept: unfinished"}
    assert actions(config, "--include-unfinished") == {"crashed": "would delete"}
    # The section says so: the same store, its configuration rewritten.
    configured(
        "file-system", tmp_path, request, retention={**retention, "include_unfinished": True}
    )
    invoke("gc", "-c", config)
    assert store.list_run_ids() == ["ended"]


# --- what it frees ------------------------------------------------------------------------------


def _stored_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.mark.parametrize("kind", ["file-system", "chunked-fs"])
def test_a_dry_run_says_the_bytes_it_would_free(
    tmp_path: Path, request: pytest.FixtureRequest, kind: str
) -> None:
    config, store = configured(kind, tmp_path, request)
    for run_id, branches in (("small", 0), ("big", 30)):
        sweep_run(store, run_id, branches=branches)
    catalog = load_catalog(config)
    for run_id, size in (("small", 1000), ("big", 250_000)):
        folder = catalog.local_run_folder(run_id)
        assert folder is not None
        (folder / "data").mkdir(parents=True)
        (folder / "data" / "model.bin").write_bytes(b"x" * size)
    args = ("gc", "-c", config, "--older-than", "0s", "--with-catalog")
    invoke(*args, "--dry-run")  # a read may leave a snapshot beside a chunked run: made now
    logs = tmp_path / "logs"
    on_disk = {
        run_id: _stored_bytes(logs / (f"{run_id}.json" if kind == "file-system" else run_id))
        for run_id in ("small", "big")
    }
    assert on_disk["big"] > on_disk["small"] > 0
    decisions = json.loads(invoke(*args, "--dry-run", "--json").stdout)
    by_id = {d["run_id"]: d for d in decisions}
    for run_id, size in (("small", 1000), ("big", 250_000)):
        assert by_id[run_id]["run_bytes"] == on_disk[run_id]
        assert by_id[run_id]["catalog_bytes"] == size and by_id[run_id]["catalog_files"] == 1
    table = invoke(*args, "--dry-run").stdout
    total = sum(on_disk.values()) + 251_000
    assert f"would delete 2 of 2 runs; would free {total:,} bytes" in table
    big = next(line for line in table.splitlines() if line.startswith("│ big "))
    assert format_bytes(on_disk["big"] + 250_000) in big, big
    assert set(store.list_run_ids()) == {"small", "big"}  # a dry run deletes nothing
    done = invoke(*args).stdout
    assert f"deleted 2 of 2 runs; freed {total:,} bytes" in done
    assert store.list_run_ids() == [] and not any((tmp_path / "catalog").iterdir())


# --- a gc killed half way -----------------------------------------------------------------------

_BRANCHES = 60


def _many_runs(store: BaseRunLogStore, count: int) -> None:
    for index in range(count):
        sweep_run(store, f"run-{index:03d}", branches=_BRANCHES, ago=timedelta(minutes=index))


def _every_listed_run_reads_whole(config: Path) -> set[str]:
    """The runs listed after the kill (by the library and by runlog list): each reads whole,
    with every branch it was written with."""
    store = load_store(config)
    run_ids = set(store.list_run_ids())
    for run_id in run_ids:
        run = store.get_run_log_by_id(run_id, full=True)
        assert run.status == SUCCESS, run_id
        assert len(run.steps["train"].branches) == _BRANCHES, run_id
    listed = json.loads(invoke("list", "-c", config, "--json").stdout)
    assert {run["run_id"] for run in listed} == run_ids
    assert all(run["status"] == SUCCESS and run["branches"] == _BRANCHES for run in listed)
    return run_ids


def _cut_short(store: BaseRunLogStore) -> set[str]:
    """chunked-minio: the runs whose removal was cut short, as the bucket holds them (a
    ``.deleting/<run_id>`` marker, objects under the run's prefix, no run document)."""
    assert isinstance(store, ChunkedMinioRunLogStore)
    bucket = store.storage()
    cut = set()
    for marker in bucket.list_etags(".deleting/"):
        run_id = marker.removeprefix(".deleting/")
        left = bucket.list_etags(f"{run_id}/")
        if left and f"{run_id}/RunLog" not in left:
            cut.add(run_id)
    return cut


def _removal_began(store: BaseRunLogStore, kind: str, before: set[str], markers: set[str]) -> bool:
    """Whether the gc has begun removing a run: one is no longer listed (chunked-minio: a new
    ``.deleting/`` marker, which comes first, and one listing finds it at once)."""
    if kind != "chunked-minio":
        return len(store.list_run_ids()) < len(before)
    assert isinstance(store, ChunkedMinioRunLogStore)
    return bool(set(store.storage().list_etags(".deleting/")) - markers)


@pytest.mark.parametrize("kind", ["file-system", "chunked-fs", "chunked-minio"])
def test_a_gc_killed_half_way_leaves_every_run_whole_or_gone(
    tmp_path: Path, request: pytest.FixtureRequest, kind: str
) -> None:
    """SIGKILL lands while gc deletes runs, at a later moment each round: what is listed
    afterwards reads whole, and the next gc deletes the rest. A chunked-fs run's removal
    begins by renaming its folder to a hidden ``.deleting-*`` name: a kill inside a removal
    leaves that folder, which no listing shows, never a run with some of its branches. A
    chunked-minio run's removal begins with its run document: a kill inside it leaves objects
    beside no run document, which no listing shows and the next gc removes."""
    config, store = configured(kind, tmp_path, request)
    # A round deletes a run or two before its kill: fewer runs to write on the real server.
    _many_runs(store, 20 if kind == "chunked-minio" else 40)
    logs = tmp_path / "logs"
    killed_between = 0
    inside_a_removal = False
    delays = [0.0, 0.0, 0.0, 0.005, 0.02, 0.1]
    rounds = 0
    while delays:
        delay = delays.pop(0)
        rounds += 1
        before = set(store.list_run_ids())
        if len(before) < 5:
            break  # some runs are left for the last gc
        markers = (
            set(store.storage().list_etags(".deleting/"))
            if isinstance(store, ChunkedMinioRunLogStore)
            else set()
        )
        gc = subprocess.Popen(
            [RUNLOG, "gc", "-c", str(config), "--older-than", "0s", "--with-catalog"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            # Kill once the removal of a run has begun (plus the round's delay): deleting is
            # under way, and with no delay the kill lands while that run's files are removed.
            deadline = time.monotonic() + 60
            while not _removal_began(store, kind, before, markers) and time.monotonic() < deadline:
                if gc.poll() is not None:
                    break
                time.sleep(0.001)
            time.sleep(delay)
            gc.send_signal(signal.SIGKILL)
        finally:
            gc.wait(timeout=60)
        left = _every_listed_run_reads_whole(config)
        assert left <= before
        if 0 < len(left) < len(before):
            killed_between += 1
        if kind == "chunked-fs":
            inside_a_removal |= any(name.startswith(".deleting-") for name in os.listdir(logs))
        elif kind == "chunked-minio":
            inside_a_removal |= bool(_cut_short(store))
            if not inside_a_removal and not delays and rounds < 30:
                delays.append(0.0)  # the removal of a run is a few batches of requests
    assert killed_between, "no kill landed while gc was deleting runs"
    if kind != "file-system":
        assert inside_a_removal, "no kill landed inside a run's removal"
    # The next gc deletes what is left, and the chunked-minio removals cut short.
    invoke("gc", "-c", config, "--older-than", "0s", "--with-catalog")
    assert store.list_run_ids() == []
    if isinstance(store, ChunkedMinioRunLogStore):
        assert store.storage().list_etags("") == {}
