"""The journal of chunked-fs (docs/format.md, "The journal" and "The fold"): one journal per
writer process and no file per write, the later write winning whichever process makes it, folds
that change nothing when repeated and leave a run that reads the same whatever moment they stop
at, torn tails never read, damage named with its offset, and the command line's fold.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from runlog_store import BaseRunLogStore, JsonParameter, create_store
from runlog_store.exceptions import CorruptChunkError

from ..conftest import ROOT

RUNLOG = Path(sys.executable).with_name("runlog")


def _store(folder: Path) -> Any:
    return create_store("chunked-fs", log_folder=str(folder), fsync=False)


def _journals(run: Path) -> list[Path]:
    folder = run / ".journals"
    return sorted(folder.iterdir()) if folder.exists() else []


def _full(store: BaseRunLogStore, run_id: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(store.get_run_log_json(run_id))
    return result


def _map_run(store: BaseRunLogStore, run_id: str, branches: int, end_branches: bool) -> None:
    store.create_run_log(run_id)
    mapped = store.create_step_log("map", "map")
    mapped.step_type = "map"
    store.add_step_log(mapped, run_id)
    for i in range(branches):
        name = f"map.{i}"
        store.add_branch_log(store.create_branch_log(name), run_id)
        store.set_parameters(run_id, {"i": JsonParameter(kind="json", value=i)}, name)
        for s in range(2):
            step = store.create_step_log(f"s{s}", f"{name}.s{s}")
            step.status = "SUCCESS"
            store.add_step_log(step, run_id)
        if end_branches:
            branch = store.get_branch_log(name, run_id)
            branch.status = "SUCCESS"
            store.add_branch_log(branch, run_id)
        store.set_parameters(run_id, {f"p{i}": JsonParameter(kind="json", value=i)})


# --- one journal per writer -----------------------------------------------------------------


def _write_step_in_child(folder: str, name: str, status: str) -> None:
    store = _store(Path(folder))
    step = store.create_step_log(name, name)
    step.status = status
    store.add_step_log(step, "r")


def test_one_journal_per_writer_and_no_file_per_write(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.create_run_log("r")
    run = tmp_path / "r"
    before = sorted(os.listdir(run))
    for i in range(200):
        store.add_step_log(store.create_step_log(f"s{i}", f"s{i}"), "r")
    assert sorted(os.listdir(run)) == sorted({*before, ".journals", ".lock"})
    assert len(_journals(run)) == 1
    # Another process (here a forked child, with the same store object) has its own journal.
    fork = multiprocessing.get_context("fork")
    child = fork.Process(target=lambda: store.add_step_log(store.create_step_log("c", "c"), "r"))
    child.start()
    child.join()
    assert child.exitcode == 0
    assert len(_journals(run)) == 2
    spawned = multiprocessing.get_context("spawn").Process(
        target=_write_step_in_child, args=(str(tmp_path), "d", "SUCCESS")
    )
    spawned.start()
    spawned.join()
    assert spawned.exitcode == 0
    assert len(_journals(run)) == 3
    assert set(_full(store, "r")["steps"]) == {*(f"s{i}" for i in range(200)), "c", "d"}
    store.update_run_log_status("r", "SUCCESS")
    assert _journals(run) == []


def test_the_later_write_wins_whichever_process_makes_it(tmp_path: Path) -> None:
    """For one key the later write wins, by the stamps every writer takes under the run's lock:
    three processes write one step in turn; root parameters from each are merged."""
    store = _store(tmp_path)
    store.create_run_log("r")
    spawn = multiprocessing.get_context("spawn")
    for status in ("ONE", "TWO", "THREE"):
        writer = spawn.Process(target=_write_step_in_child, args=(str(tmp_path), "x", status))
        writer.start()
        writer.join()
        assert writer.exitcode == 0
        for reader in (store, _store(tmp_path)):
            assert reader.get_step_log("x", "r").status == status
            assert _full(reader, "r")["steps"]["x"]["status"] == status
    step = store.create_step_log("x", "x")
    step.status = "FOUR"
    store.add_step_log(step, "r")
    assert _store(tmp_path).get_step_log("x", "r").status == "FOUR"
    assert len(_journals(tmp_path / "r")) == 4


# --- folds ------------------------------------------------------------------------------------


def test_folding_twice_changes_nothing(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _map_run(store, "r", 5, end_branches=True)
    store.update_run_log_status("r", "SUCCESS")
    run = tmp_path / "r"
    documents = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    whole = _full(store, "r")
    store.fold("r")
    _store(tmp_path).fold("r")
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == documents
    assert _full(_store(tmp_path), "r") == whole


def test_a_fold_stopped_at_any_point_reads_the_same_and_folds_again(tmp_path: Path) -> None:
    """A fold writes the documents one by one (each atomically), then removes the journals. Stop
    it after any number of documents: the run reads the same, and the next fold ends where an
    unbroken one does."""
    store = _store(tmp_path / "writer")
    _map_run(store, "r", 4, end_branches=False)  # nothing folded yet
    before = tmp_path / "before"
    shutil.copytree(tmp_path / "writer" / "r", before)
    whole = _full(store, "r")
    store.update_run_log_status("r", "SUCCESS")
    whole["status"] = "SUCCESS"
    after = tmp_path / "writer" / "r"
    folded = {p.name: p.read_bytes() for p in after.iterdir() if p.is_file()}
    assert _journals(after) == []
    # The documents (the run's stored merge, `.merged.json`, is a cache beside them).
    written = sorted(n for n in folded if n.endswith(".json") and not n.startswith("."))
    assert written == [*(f"BranchLog-map.{i}.json" for i in range(4)), "RunLog.json"]
    for stop in range(len(written) + 1):
        # A crash after `stop` documents: the journals are still there (the record of the
        # run's end too: it was appended before the fold began).
        logs = tmp_path / f"stop-{stop}"
        shutil.copytree(before, logs / "r")
        for name in written[:stop]:
            (logs / "r" / name).write_bytes(folded[name])
        ending = _store(logs)
        ending.update_run_log_status("r", "SUCCESS")  # appended, then folded: a full fold
        assert _full(_store(logs), "r") == whole, stop
        assert _same_documents(logs / "r", after), stop
        assert _journals(logs / "r") == []


def _same_documents(a: Path, b: Path) -> bool:
    """The same documents (as JSON) in two run folders."""
    names = {p.name for p in a.iterdir() if p.suffix == ".json" and not p.name.startswith(".")}
    if names != {p.name for p in b.iterdir() if p.suffix == ".json" and not p.name.startswith(".")}:
        return False
    return all(_without_stamps(a / n) == _without_stamps(b / n) for n in names)


def _without_stamps(path: Path) -> Any:
    """A document without the stamps of the records folded in (a second end of the run is a
    later record than the first)."""
    data = json.loads(path.read_bytes())

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "_stamp"}
        return value

    return strip(data)


def test_readers_during_folds_never_miss_nor_regress(tmp_path: Path) -> None:
    """A writer ends branch after branch (each a fold) while another process reads the full run
    again and again: what a read shows is never less than the read before it showed."""
    store = _store(tmp_path)
    store.create_run_log("r")
    store.add_step_log(store.create_step_log("map", "map"), "r")
    fork = multiprocessing.get_context("fork")
    done = fork.Event()
    results = fork.Queue()
    count = fork.Value("i", 0)
    reader = fork.Process(target=_read_until_done, args=(str(tmp_path), done, results, count))
    reader.start()
    try:
        i = 0
        while i < 60 or (count.value < 20 and i < 3000):  # folds under reads, many of both
            i += 1
            name = f"map.{i}"
            store.add_branch_log(store.create_branch_log(name), "r")
            step = store.create_step_log("s", f"{name}.s")
            step.status = "SUCCESS"
            store.add_step_log(step, "r")
            branch = store.get_branch_log(name, "r")
            branch.status = "SUCCESS"
            store.add_branch_log(branch, "r")
        store.update_run_log_status("r", "SUCCESS")
    finally:
        done.set()
    reads, problems = results.get(timeout=60)
    reader.join(timeout=60)
    assert problems == []
    assert reads >= 20


def _read_until_done(folder: str, done: Any, results: Any, count: Any) -> None:
    store = _store(Path(folder))
    seen: dict[str, str] = {}
    problems: list[str] = []
    reads = 0
    while True:
        finished = done.is_set()
        document = json.loads(store.get_run_log_json("r"))
        reads += 1
        count.value = reads
        branches = document["steps"]["map"]["branches"]
        for name, was in seen.items():
            now = branches.get(name, {}).get("status")
            if now is None or (was == "SUCCESS" and now != "SUCCESS"):
                problems.append(f"read {reads}: {name} was {was}, now {now}")
        for name, branch in branches.items():
            if branch["status"] == "SUCCESS" and f"{name}.s" not in branch["steps"]:
                problems.append(f"read {reads}: {name} ended without its step")
            seen[name] = branch["status"]
        if finished:
            break
    results.put((reads, problems[:5]))


# --- damaged journals ------------------------------------------------------------------------


def _journal_run(tmp_path: Path) -> tuple[Any, Path]:
    store = _store(tmp_path)
    store.create_run_log("r")
    for i in range(5):
        step = store.create_step_log(f"s{i}", f"s{i}")
        step.message = f"written {i}"
        store.add_step_log(step, "r")
    (journal,) = _journals(tmp_path / "r")
    return store, journal


def _frame_offsets(journal: Path) -> list[int]:
    """Where each frame starts (the format's magic, checked by the reads below)."""
    data = journal.read_bytes()
    offsets, at = [], data.find(b"\xffRJ\x01")
    while at >= 0:
        offsets.append(at)
        at = data.find(b"\xffRJ\x01", at + 1)
    return offsets


def test_a_torn_tail_is_never_read(tmp_path: Path) -> None:
    _, journal = _journal_run(tmp_path)
    data = journal.read_bytes()
    last = _frame_offsets(journal)[-1]
    for cut in (last + 1, last + 10, len(data) - 1):
        journal.write_bytes(data[:cut])
        run = _full(_store(tmp_path), "r")
        assert list(run["steps"]) == ["s0", "s1", "s2", "s3"], cut
    journal.write_bytes(data[:last] + b"\0" * (len(data) - last))  # a cut kept the size only
    assert list(_full(_store(tmp_path), "r")["steps"]) == ["s0", "s1", "s2", "s3"]
    # A new writer appends to a journal of its own: the torn one stays a torn tail.
    writer = _store(tmp_path)
    writer.add_step_log(writer.create_step_log("after", "after"), "r")
    assert list(_full(_store(tmp_path), "r")["steps"]) == ["s0", "s1", "s2", "s3", "after"]


def test_damage_in_the_middle_is_named_with_its_offset_and_salvage_reads_past_it(
    tmp_path: Path,
) -> None:
    _, journal = _journal_run(tmp_path)
    offsets = _frame_offsets(journal)
    data = bytearray(journal.read_bytes())
    data[offsets[2] + 40] ^= 0x20  # a flipped bit in the third record
    journal.write_bytes(bytes(data))
    with pytest.raises(CorruptChunkError) as raised:
        _store(tmp_path).get_run_log_by_id("r", full=True)
    assert raised.value.path == str(journal) and raised.value.run_id == "r"
    assert f"offset {offsets[2]}" in str(raised.value)
    salvaged = _store(tmp_path).salvage_run_log("r")
    assert list(salvaged.run_log.steps) == ["s0", "s1", "s3", "s4"]
    assert [Path(p) for p, _ in salvaged.skipped] == [journal]
    assert f"offset {offsets[2]}" in salvaged.skipped[0][1]


def test_duplicated_records_read_as_one(tmp_path: Path) -> None:
    store, journal = _journal_run(tmp_path)
    whole = _full(store, "r")
    offsets = _frame_offsets(journal)
    data = journal.read_bytes()
    journal.write_bytes(data[: offsets[3]] + data[offsets[1] : offsets[3]] + data[offsets[3] :])
    assert _full(_store(tmp_path), "r") == whole


# --- the command line -------------------------------------------------------------------------


def _runlog(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RUNLOG), *args, "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
        cwd=ROOT,
    )


def test_runlog_fold_and_show(tmp_path: Path) -> None:
    """``runlog show`` says a run has journals not folded yet; ``runlog fold`` folds them, after
    which runnable's own chunked store reads the run whole."""
    from extensions.run_log_store.chunked_fs import (
        ChunkedFileSystemRunLogStore as RunnableChunkedFs,
    )

    logs = tmp_path / "logs"
    config = tmp_path / "config.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            run-log-store:
              type: chunked-fs
              config:
                log_folder: {logs}
            """
        )
    )
    store = _store(logs)
    _map_run(store, "killed", 3, end_branches=False)
    shown = _runlog(config, "show", "killed")
    assert shown.returncode == 0, shown.stderr
    said = " ".join(shown.stdout.split())  # as one line, however the terminal wraps it
    assert "1 journal (" in said and "runlog fold killed folds them" in said
    as_json = _runlog(config, "show", "killed", "--json")
    assert json.loads(as_json.stdout) == _full(store, "killed")
    assert "runlog fold killed" in " ".join(as_json.stderr.split())
    theirs = RunnableChunkedFs(log_folder=str(logs)).get_run_log_by_id("killed", full=True)
    assert theirs.steps == {}  # nothing folded: runnable sees no step at all
    folded = _runlog(config, "fold", "killed")
    assert folded.returncode == 0, folded.stderr
    said = " ".join(folded.stdout.split())
    assert "1 journal" in said and "folded and removed" in said
    assert _journals(logs / "killed") == []
    theirs = RunnableChunkedFs(log_folder=str(logs)).get_run_log_by_id("killed", full=True)
    assert json.loads(theirs.model_dump_json()) == _full(store, "killed")
    shown = _runlog(config, "show", "killed")
    assert "journal" not in shown.stdout
    missing = _runlog(config, "fold", "nope")
    assert missing.returncode == 2 and "nope" in missing.stderr
    other = tmp_path / "fs.yaml"
    other.write_text(f"run-log-store:\n  type: file-system\n  config:\n    log_folder: {logs}\n")
    refused = _runlog(other, "fold", "killed")
    said = " ".join(refused.stderr.split())
    assert refused.returncode == 2 and "folds the runs of chunked-fs and chunked-minio" in said


# --- the snapshot of an ended run --------------------------------------------------------------


def test_the_merge_stored_of_an_ended_run_is_used_only_while_nothing_changed(
    tmp_path: Path,
) -> None:
    """The fold that ends a run, and a full read of an ended run whose documents have settled,
    store its merge; later full reads use it while no document changed and no journal holds a
    record, whoever changed it: our writer (a journal), runnable's store (rewriting a document
    in place), a file edited."""
    import time

    from extensions.run_log_store.chunked_fs import (
        ChunkedFileSystemRunLogStore as RunnableChunkedFs,
    )
    from runnable.datastore import JsonParameter as RunnableJsonParameter

    store = _store(tmp_path)
    _map_run(store, "r", 3, end_branches=True)
    store.update_run_log_status("r", "SUCCESS")
    snapshot = tmp_path / "r" / ".merged.json"
    assert snapshot.exists(), "the fold that ended the run stored its merge"
    first = _full(_store(tmp_path), "r")
    snapshot.unlink()
    assert _full(_store(tmp_path), "r") == first, "the stored merge is the documents' merge"
    assert not snapshot.exists(), "a read does not vouch for documents just written"
    time.sleep(0.15)
    assert _full(store, "r") == first
    assert snapshot.exists()
    assert _full(_store(tmp_path), "r") == first
    # Our writer: a record in a journal.
    store.set_parameters("r", {"late": JsonParameter(kind="json", value=1)})
    assert _full(_store(tmp_path), "r")["parameters"]["late"]["value"] == 1
    store.update_run_log_status("r", "SUCCESS")  # folded again
    time.sleep(0.15)
    second = _full(store, "r")
    assert _full(store, "r") == second and snapshot.exists()
    # runnable's own store, rewriting RunLog.json in place.
    RunnableChunkedFs(log_folder=str(tmp_path)).set_parameters(
        "r", {"theirs": RunnableJsonParameter(kind="json", value=2)}
    )
    assert _full(_store(tmp_path), "r")["parameters"]["theirs"]["value"] == 2
    time.sleep(0.15)
    third = _full(store, "r")
    assert _full(store, "r") == third
    # A document edited in place, keeping its size.
    branch = tmp_path / "r" / "BranchLog-map.1.json"
    text = branch.read_text()
    branch.write_text(text.replace('"SUCCESS"', '"FAILED!"', 1))
    assert _full(_store(tmp_path), "r")["steps"]["map"]["branches"]["map.1"]["status"] == "FAILED!"
    assert "_stamp" not in snapshot.read_text().split("\n", 1)[1]
