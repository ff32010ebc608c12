"""Fingerprints of a store's runs (``_core.fingerprint_documents``, ``fingerprint_run_folders``
and their one-run forms): they list exactly the runs the store's own listing lists, whatever
else is in the folder (links, FIFOs, names that are not UTF-8), change with every write a reader
would see, and not with what a read writes (the stored merge of a chunked run)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from runlog_store import _core
from runlog_store.models import StepAttempt, StepLog
from runlog_store.stores.chunked_fs import ChunkedFileSystemRunLogStore
from runlog_store.stores.file_system import FileSystemRunLogStore

NOT_UTF8 = os.fsdecode(b"caf\xe9")


def _ctime_ns(path: Path) -> int:
    return os.lstat(path).st_ctime_ns


def test_documents_are_the_runs_the_file_system_store_lists(tmp_path: Path) -> None:
    assert _core.fingerprint_documents(str(tmp_path / "missing")) == {}
    store = FileSystemRunLogStore(log_folder=str(tmp_path), fsync=False)
    store.create_run_log("a", status="SUCCESS")
    store.create_run_log("b", status="PROCESSING")
    (tmp_path / "notes.txt").write_text("not a run")
    (tmp_path / ".hidden.json").write_text("{}")
    (tmp_path / "folder.json").mkdir()
    (tmp_path / "linked.json").symlink_to(tmp_path / "a.json")
    (tmp_path / "dangling.json").symlink_to(tmp_path / "nowhere")
    os.mkfifo(tmp_path / "fifo.json")
    (tmp_path / (NOT_UTF8 + ".json")).write_text("{}")
    found = _core.fingerprint_documents(str(tmp_path))
    assert sorted(found) == sorted(store.list_run_ids())
    assert NOT_UTF8 in found
    for run_id, (fingerprint, newest) in found.items():
        path = tmp_path / f"{run_id}.json"
        st = os.lstat(path)
        kind = {"linked": "link:", "dangling": "link:", "folder": "dir:", "fifo": "special:"}
        assert fingerprint == (
            f"{kind.get(run_id, '')}{st.st_ino}-{st.st_size}-{st.st_mtime_ns}-{st.st_ctime_ns}"
        )
        assert newest == st.st_ctime_ns
        assert _core.fingerprint_document(str(tmp_path), run_id) == (fingerprint, newest)
    assert _core.fingerprint_document(str(tmp_path), "missing") is None
    assert _core.fingerprint_document(str(tmp_path), ".hidden") is None

    before = found["b"]
    store.update_run_log_status("b", "SUCCESS")
    after = _core.fingerprint_documents(str(tmp_path))
    assert after["b"] != before and after["a"] == found["a"]
    store.delete_run("a")
    assert "a" not in _core.fingerprint_documents(str(tmp_path))


def test_run_folders_are_the_runs_the_chunked_store_lists(tmp_path: Path) -> None:
    assert _core.fingerprint_run_folders(str(tmp_path / "missing")) == {}
    store = ChunkedFileSystemRunLogStore(log_folder=str(tmp_path), fsync=False)
    store.create_run_log("a", status="SUCCESS")
    store.create_run_log("b", status="PROCESSING")
    (tmp_path / "file").write_text("{}")
    (tmp_path / "empty").mkdir()
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "RunLog.json").write_text("{}")
    (tmp_path / "linked").symlink_to(tmp_path / "a")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "RunLog.json").symlink_to(tmp_path / "a" / "RunLog.json")
    (tmp_path / NOT_UTF8).mkdir()
    (tmp_path / NOT_UTF8 / "RunLog.json").write_text("{}")
    found = _core.fingerprint_run_folders(str(tmp_path))
    assert sorted(found) == sorted(store.list_run_ids())
    assert {"linked", "loop", "odd", NOT_UTF8} <= set(found)
    assert found["linked"][0].startswith("link:") and found["loop"][0].startswith("link:")
    assert found["odd"][0] != found["a"][0]
    for run_id, stamp in found.items():
        assert _core.fingerprint_run_folder(str(tmp_path), run_id) == stamp
    for missing in ("missing", "file", "empty", "dangling", ".hidden"):
        assert _core.fingerprint_run_folder(str(tmp_path), missing) is None
    run_log = tmp_path / "a" / "RunLog.json"
    assert found["a"][1] >= _ctime_ns(run_log)


def test_a_chunked_run_changes_with_every_write_and_not_with_a_read(tmp_path: Path) -> None:
    store = ChunkedFileSystemRunLogStore(log_folder=str(tmp_path), fsync=False)
    store.create_run_log("r", status="PROCESSING")
    seen = [_core.fingerprint_run_folder(str(tmp_path), "r")]

    def look() -> tuple[str, int] | None:
        stamp = _core.fingerprint_run_folder(str(tmp_path), "r")
        assert stamp == _core.fingerprint_run_folders(str(tmp_path))["r"]
        return stamp

    step = StepLog(name="s", internal_name="s", status="PROCESSING")
    store.add_step_log(step, "r")  # into this process's journal
    seen.append(look())
    step.attempts.append(StepAttempt(start_time="2026-01-01 10:00:00", status="SUCCESS"))
    step.status = "SUCCESS"
    store.add_step_log(step, "r")  # the same journal, grown
    seen.append(look())
    store.update_run_log_status("r", "SUCCESS")  # folds the journal into the documents
    seen.append(look())
    assert len(set(seen)) == len(seen), seen
    # A read stores the merge of an ended run beside its documents: not a change of the run.
    store.get_run_log_by_id("r", full=True)
    store.get_run_log_json("r")
    assert look() == seen[-1]
    newest = max(_ctime_ns(p) for p in (tmp_path / "r").iterdir() if p.name != ".merged.json")
    stamp = look()
    assert stamp is not None and stamp[1] >= newest


def test_a_run_folder_written_again_under_its_name_is_another_run(tmp_path: Path) -> None:
    store = ChunkedFileSystemRunLogStore(log_folder=str(tmp_path), fsync=False)
    store.create_run_log("r", status="SUCCESS")
    before = _core.fingerprint_run_folder(str(tmp_path), "r")
    store.delete_run("r")
    assert _core.fingerprint_run_folder(str(tmp_path), "r") is None
    store.create_run_log("r", status="SUCCESS")
    assert _core.fingerprint_run_folder(str(tmp_path), "r") != before


def _both_layouts(folder: Path) -> None:
    """Runs of both layouts in one folder, with everything else a shared folder may hold."""
    documents = FileSystemRunLogStore(log_folder=str(folder), fsync=False)
    chunked = ChunkedFileSystemRunLogStore(log_folder=str(folder), fsync=False)
    documents.create_run_log("doc", status="SUCCESS")
    documents.create_run_log("twice", status="SUCCESS")
    chunked.create_run_log("twice", status="PROCESSING")
    chunked.create_run_log("run", status="SUCCESS")
    (folder / "dir.json").mkdir()
    (folder / "dir.json" / "RunLog.json").write_text("{}")
    (folder / "linked.json").symlink_to(folder / "doc.json")
    (folder / "linked").symlink_to(folder / "run")
    (folder / "dangling").symlink_to(folder / "nowhere")
    (folder / "empty").mkdir()
    os.mkfifo(folder / "fifo.json")
    (folder / (NOT_UTF8 + ".json")).write_text("{}")
    (folder / ".hidden").mkdir()
    (folder / ".hidden" / "RunLog.json").write_text("{}")


def test_folder_changes_stamp_both_layouts_as_the_one_layout_scans_do(tmp_path: Path) -> None:
    _both_layouts(tmp_path)
    documents = _core.fingerprint_documents(str(tmp_path))
    folders = _core.fingerprint_run_folders(str(tmp_path))
    expected = {run_id: ("file-system " + f, c) for run_id, (f, c) in documents.items()}
    expected.update({run_id: ("chunked-fs " + f, c) for run_id, (f, c) in folders.items()})
    del expected[NOT_UTF8]
    empty = _core.StoredStamps(("e", "0"), [])
    found = _core.folder_changes(str(tmp_path), empty, ("e", "0"), 0.05)
    assert found is not None
    (stale, gone), both, unnamed = found
    assert {run_id: (f, c) for run_id, f, c in stale} == expected
    assert [run_id for run_id, _, _ in stale] == sorted(expected)
    assert gone == [] and both == ["linked", "twice"] and unnamed == [NOT_UTF8]
    # Another state than the one asked for: no answer.
    assert _core.folder_changes(str(tmp_path), empty, ("e", "1"), 0.05) is None
    # Recorded long after their last change: none stale; a recorded run not there is gone.
    # (Stamps of one state of an index file are that state's rows in every process: each
    # content here has a state of its own, as an index's do.)
    rows = [(run_id, f, c / 1e9 + 60) for run_id, (f, c) in expected.items()]
    stored = _core.StoredStamps(("e", "2"), [*rows, ("elsewhere", "x", 0.0)])
    found = _core.folder_changes(str(tmp_path), stored, ("e", "2"), 0.05)
    assert found is not None and found[0] == ([], ["elsewhere"])
    # Recorded within the racy window of a change: read again.
    racy = [(r, f, at - 60 if r == "doc" else at) for r, f, at in rows]
    stored = _core.StoredStamps(("e", "3"), racy)
    found = _core.folder_changes(str(tmp_path), stored, ("e", "3"), 0.05)
    assert found is not None and [r for r, _, _ in found[0][0]] == ["doc"]
    # A write applied at the state it was made at moves the stamps on; at another, not.
    assert stored.apply(("e", "3"), ("e", "4"), [("doc", "file-system x", 1.0)], ["run"])
    assert not stored.apply(("e", "3"), ("e", "5"), [], ["doc"])
    assert stored.state == ("e", "4") and len(stored) == len(expected) - 1
    found = _core.folder_changes(str(tmp_path), stored, ("e", "4"), 0.05)
    assert found is not None
    assert [r for r, _, _ in found[0][0]] == ["doc", "run"] and found[0][1] == []
    # The same comparison of stamps given (an object store's): unchanged, never racy (0).
    kept = sorted(expected)
    kept.remove("run")
    changes = stored.diff(("e", "4"), {"doc": ("file-system x", 0), "new": ("y", 5)}, 0.05)
    assert changes == ([("new", "y", 5)], [r for r in kept if r != "doc"])


def _all_stamps(folder: Path) -> dict[str, tuple[str, int]]:
    """Every run's stamp as ``folder_changes`` gives it (against an empty index)."""
    found = _core.folder_changes(str(folder), _core.StoredStamps(("e", "0"), []), ("e", "0"), 0.05)
    assert found is not None
    return {run_id: (fingerprint, changed) for run_id, fingerprint, changed in found[0][0]}


def _listed_again(folder: Path) -> dict[str, tuple[str, int]]:
    """The same from fresh listings of every run folder (``fingerprint_run_folders``)."""
    return {
        r: ("chunked-fs " + f, c)
        for r, (f, c) in _core.fingerprint_run_folders(str(folder)).items()
    }


def test_run_folders_kept_listed_between_scans_still_show_every_change(tmp_path: Path) -> None:
    """A scan keeps each settled run folder's listing and the next one stamps its files
    without listing it again while its stat is unchanged: the stamps stay those of a fresh
    listing through writes in place (runnable's), files added, journals grown and added."""
    store = ChunkedFileSystemRunLogStore(log_folder=str(tmp_path), fsync=False)
    for run_id in ("a", "b", "c"):
        store.create_run_log(run_id, status="PROCESSING")
    store.add_step_log(StepLog(name="s", internal_name="s", status="PROCESSING"), "c")
    time.sleep(0.2)  # settled: older than the racy window of the next scan
    seen = [_all_stamps(tmp_path)]
    assert seen[-1] == _listed_again(tmp_path)

    def changed(run_id: str) -> None:
        now = _all_stamps(tmp_path)
        assert now == _listed_again(tmp_path)
        assert {r for r in now if now[r] != seen[-1][r]} == {run_id}
        seen.append(now)

    assert _all_stamps(tmp_path) == seen[-1]  # from the kept listings
    # runnable's write of the run document in place: the folder itself is unchanged
    document = tmp_path / "a" / "RunLog.json"
    document.write_text(document.read_text().replace("PROCESSING", "FAIL"))
    changed("a")
    (tmp_path / "b" / "StepLog-x-1.json").write_text("{}")
    changed("b")
    step = StepLog(name="s", internal_name="s", status="PROCESSING")
    step.attempts.append(StepAttempt(start_time="2026-01-01 10:00:00", status="SUCCESS"))
    store.add_step_log(step, "c")  # the same journal, grown in place
    changed("c")
    time.sleep(0.2)
    _all_stamps(tmp_path)  # kept listed again, settled
    document.write_text(document.read_text() + " ")
    changed("a")


def _fresh_documents(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        r: ("file-system " + f, c) for r, (f, c) in _core.fingerprint_documents(str(folder)).items()
    }


def test_a_log_folder_kept_listed_between_scans_still_shows_every_change(tmp_path: Path) -> None:
    """A scan keeps the listing of a settled log folder and what it made of each name; the next
    one reuses the listing while the folder's stat is unchanged and a document's stamp while
    its stat is: documents rewritten in place (runnable's writes), runs added and removed, a
    document turned into a run folder all show as a fresh scan shows them."""
    for run_id in ("a", "b"):
        (tmp_path / f"{run_id}.json").write_text(f'{{"run_id": "{run_id}"}}')
    time.sleep(0.2)  # settled: older than the racy window of the next scan
    first = _all_stamps(tmp_path)
    assert first == _fresh_documents(tmp_path)
    assert _all_stamps(tmp_path) == first  # from the kept listing and stamps

    def now() -> dict[str, tuple[str, int]]:
        found = _all_stamps(tmp_path)
        assert found == {**_fresh_documents(tmp_path), **_listed_again(tmp_path)}
        return found

    (tmp_path / "a.json").write_text('{"run_id": "a", "status": "FAIL"}')  # in place
    assert {r for r, s in now().items() if s != first[r]} == {"a"}
    time.sleep(0.2)
    now()
    (tmp_path / "c.json").write_text("{}")
    assert set(now()) == {"a", "b", "c"}
    time.sleep(0.2)
    now()
    (tmp_path / "b.json").unlink()
    assert set(now()) == {"a", "c"}
    time.sleep(0.2)
    now()
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "RunLog.json").write_text("{}")
    assert set(now()) == {"a", "c", "d"}


def test_runs_found_current_are_compared_again_against_other_stamps(tmp_path: Path) -> None:
    """A scan marks the fingerprints it found current against an index's stamps and the next
    scan of unchanged files trusts the mark, but only against those same stamps under the same
    racy rule: stamps changed by a write (``apply``), stamps read again, or another racy rule
    compare every run again."""
    for run_id in ("a", "b"):
        (tmp_path / f"{run_id}.json").write_text("{}")
    time.sleep(0.2)
    now = time.time()
    rows = [(r, f, now) for r, (f, _) in _all_stamps(tmp_path).items()]
    stored = _core.StoredStamps(("e", "0"), rows)
    for _ in range(2):  # found current, then trusted
        assert _core.folder_changes(str(tmp_path), stored, ("e", "0"), 0.05) == (([], []), [], [])
    assert stored.apply(("e", "0"), ("e", "1"), [("a", "file-system other", now)], [])
    found = _core.folder_changes(str(tmp_path), stored, ("e", "1"), 0.05)
    assert found is not None and [r for r, _, _ in found[0][0]] == ["a"]
    other = _core.StoredStamps(("e", "0"), [*rows[:1], (rows[1][0], "file-system other", now)])
    found = _core.folder_changes(str(tmp_path), other, ("e", "0"), 0.05)
    assert found is not None and [r for r, _, _ in found[0][0]] == [rows[1][0]]
    racy = _core.folder_changes(str(tmp_path), stored, ("e", "1"), 3600.0)
    assert racy is not None and [r for r, _, _ in racy[0][0]] == ["a", "b"]
    assert stored.apply(("e", "1"), ("e", "2"), [("a", rows[0][1], now)], [])
    assert _core.folder_changes(str(tmp_path), stored, ("e", "2"), 0.05) == (([], []), [], [])
