//! A run written, read and folded end to end: appends read back and folded into runnable's
//! layout, the stored merge of an ended run, room made ahead of a journal, partial reads,
//! stamps across writers, a missing run.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use super::appending::PREALLOCATION;
use super::snapshot::document_stats;
use super::*;
use crate::chunk::{decode_snapshot, LAYOUT_MARKER, RUN_LOG_FILE, SNAPSHOT_NAME};
use crate::error::CoreError;
use crate::journal::{journal_path, list_journals, NewRecord, RecordKind};

pub(super) fn options() -> RunOptions {
    RunOptions {
        fsync: false,
        lock_timeout: Duration::from_secs(5),
    }
}

fn new_run(dir: &Path) -> PathBuf {
    let run = dir.join("r");
    fs::create_dir(&run).unwrap();
    fs::write(
        run.join(RUN_LOG_FILE),
        br#"{"run_id":"r","dag_hash":"","tag":"","status":"CREATED","steps":{},"job":null,"parameters":{},"run_config":{}}"#,
    )
    .unwrap();
    fs::write(run.join(LAYOUT_MARKER), crate::chunk::LAYOUT_MARKER_TEXT).unwrap();
    run
}

fn rec(kind: RecordKind, target: &str, body: Value) -> NewRecord {
    NewRecord::new(kind, target, body.to_string().into_bytes()).unwrap()
}

pub(super) fn step(name: &str, status: &str) -> NewRecord {
    let short = name.rsplit('.').next().unwrap();
    rec(
        RecordKind::StepPut,
        name,
        json!({"name": short, "internal_name": name, "status": status, "step_type": "task",
               "message": "", "mock": false, "attempts": [], "branches": {}, "data_catalog": []}),
    )
}

pub(super) fn branch(name: &str, status: &str) -> NewRecord {
    rec(
        RecordKind::BranchPut,
        name,
        json!({"internal_name": name, "status": status, "steps": {}, "parameters": {}}),
    )
}

pub(super) fn full(run: &Run) -> Value {
    serde_json::from_slice(&run.read(false).unwrap().document).unwrap()
}

pub(super) fn keys(v: &Value) -> Vec<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn appended_records_read_back_and_fold_into_runnables_layout() {
    let dir = tempfile::tempdir().unwrap();
    let path = new_run(dir.path());
    let run = Run::new(&path, options());
    run.append(&[step("map", "PROCESSING")]).unwrap();
    for i in 0..3 {
        let b = format!("map.{i}");
        run.append(&[branch(&b, "PROCESSING")]).unwrap();
        run.append(&[rec(
            RecordKind::BranchMerge,
            &b,
            json!({"parameters": {"item": {"kind": "json", "value": i}}}),
        )])
        .unwrap();
        run.append(&[step(&format!("{b}.s"), "CREATED")]).unwrap();
        run.append(&[step(&format!("{b}.s"), "SUCCESS")]).unwrap();
    }
    let before = full(&run);
    assert_eq!(
        keys(&before["steps"]["map"]["branches"]),
        ["map.0", "map.1", "map.2"]
    );
    assert_eq!(
        before["steps"]["map"]["branches"]["map.1"]["steps"]["map.1.s"]["status"],
        "SUCCESS"
    );
    assert_eq!(
        before["steps"]["map"]["branches"]["map.1"]["parameters"]["item"]["value"],
        1
    );
    // The first branch ends: its document, and the map step in RunLog.json.
    // As runnable's executor does: read the branch back, put it with its new status.
    let mut ended: Value =
        serde_json::from_slice(&run.read_branch("map.0").unwrap().unwrap()).unwrap();
    ended["status"] = json!("SUCCESS");
    ended["steps"] = json!({});
    run.append(&[rec(RecordKind::BranchPut, "map.0", ended)])
        .unwrap();
    run.fold_branch("map.0").unwrap();
    let doc: Value =
        serde_json::from_slice(&fs::read(path.join("BranchLog-map.0.json")).unwrap()).unwrap();
    assert_eq!(doc["status"], "SUCCESS");
    assert_eq!(doc["parameters"]["item"]["value"], 0);
    assert_eq!(doc["steps"]["map.0.s"]["status"], "SUCCESS");
    let run_log: Value =
        serde_json::from_slice(&fs::read(path.join(RUN_LOG_FILE)).unwrap()).unwrap();
    assert_eq!(run_log["steps"]["map"]["status"], "PROCESSING");
    assert!(!path.join("BranchLog-map.1.json").exists());
    let mut after = full(&run);
    assert_eq!(
        after["steps"]["map"]["branches"]["map.0"]["status"],
        "SUCCESS"
    );
    after["steps"]["map"]["branches"]["map.0"]["status"] = json!("PROCESSING");
    assert_eq!(after, before, "the fold changed nothing a reader sees");
    // A fresh reader (another process) sees the same.
    let other = Run::new(&path, options());
    assert_eq!(full(&other), full(&run));
    // The run ends: everything folded, the journals gone.
    run.append(&[rec(RecordKind::RunSet, "", json!({"status": "SUCCESS"}))])
        .unwrap();
    let ended = full(&run);
    run.fold_all().unwrap();
    assert!(run.journals().unwrap().is_empty());
    assert_eq!(full(&Run::new(&path, options())), ended);
    assert_eq!(full(&run), ended);
    for i in 1..3 {
        let doc: Value = serde_json::from_slice(
            &fs::read(path.join(format!("BranchLog-map.{i}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(doc["steps"][format!("map.{i}.s")]["status"], "SUCCESS");
    }
    // Folding again changes nothing.
    let bytes: Vec<Vec<u8>> = ["RunLog.json", "BranchLog-map.1.json"]
        .iter()
        .map(|n| fs::read(path.join(n)).unwrap())
        .collect();
    run.fold_all().unwrap();
    let again: Vec<Vec<u8>> = ["RunLog.json", "BranchLog-map.1.json"]
        .iter()
        .map(|n| fs::read(path.join(n)).unwrap())
        .collect();
    assert_eq!(bytes, again);
}

/// A run with one step whose end has been recorded, not folded yet.
fn ended_run(dir: &Path) -> (PathBuf, Run) {
    let path = new_run(dir);
    let run = Run::new(&path, options());
    run.append(&[step("a", "SUCCESS")]).unwrap();
    run.append(&[rec(RecordKind::RunSet, "", json!({"status": "SUCCESS"}))])
        .unwrap();
    (path, run)
}

#[test]
fn the_end_of_a_run_stores_its_merge_and_a_later_write_is_folded_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (path, run) = ended_run(dir.path());
    run.fold_all().unwrap();
    let snapshot = fs::read(path.join(SNAPSHOT_NAME)).unwrap();
    let merged = decode_snapshot(&snapshot, &document_stats(&path).unwrap())
        .expect("a snapshot of the documents as they are");
    let merged: Value = serde_json::from_slice(merged).unwrap();
    assert_eq!(merged, full(&Run::new(&path, options())));
    assert_eq!(merged["status"], "SUCCESS");

    // runnable stores the last step once more after the run's end: another process's
    // write, folded at once, and seen by every reader (the snapshot no longer matches).
    let mut again = step("a", "SUCCESS");
    again.body = br#"{"name":"a","internal_name":"a","status":"SUCCESS","message":"m1"}"#.to_vec();
    Run::new(&path, options()).append(&[again]).unwrap();
    assert!(run.journals().unwrap().is_empty(), "folded at once");
    let run_log: Value =
        serde_json::from_slice(&fs::read(path.join(RUN_LOG_FILE)).unwrap()).unwrap();
    assert_eq!(run_log["steps"]["a"]["message"], "m1");
    assert_eq!(
        full(&Run::new(&path, options()))["steps"]["a"]["message"],
        "m1"
    );

    // Changed in place right after (as runnable's store writes), to the same size: the
    // stored merge must not hide it. (Kernels with fine-grained change times, 6.13 on,
    // give this change a later time anyway; on older ones the wait in `store_snapshot`
    // is what makes it so.)
    let document = fs::read(path.join(RUN_LOG_FILE)).unwrap();
    let at = document.windows(4).position(|w| w == b"\"m1\"").unwrap();
    let file = OpenOptions::new()
        .write(true)
        .open(path.join(RUN_LOG_FILE))
        .unwrap();
    file.write_all_at(b"\"m2\"", at as u64).unwrap();
    assert_eq!(
        full(&Run::new(&path, options()))["steps"]["a"]["message"],
        "m2"
    );
}

#[test]
fn a_read_for_a_summary_never_stores_the_merge_it_made() {
    let dir = tempfile::tempdir().unwrap();
    let (path, run) = ended_run(dir.path());
    run.fold_all().unwrap();
    let expected = full(&Run::new(&path, options()));
    fs::remove_file(path.join(SNAPSHOT_NAME)).unwrap();
    // Past the age at which a full read stores the merge of an ended run.
    std::thread::sleep(std::time::Duration::from_millis(150));
    let summarized = Run::new(&path, options()).read_for_summary().unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&summarized.document).unwrap(),
        expected
    );
    assert!(!path.join(SNAPSHOT_NAME).exists(), "a summary stored it");
    assert_eq!(full(&Run::new(&path, options())), expected);
    assert!(path.join(SNAPSHOT_NAME).exists(), "a full read stores it");
    let again = Run::new(&path, options()).read_for_summary().unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&again.document).unwrap(),
        expected
    );
}

/// A full read that merged an ended run stores the merge against the stamps its own reads took
/// (the stats a later reader finds, so it is used), and only of documents settled before the
/// read began; a document changed in place afterwards, to the same size, is read, not hidden.
#[test]
fn a_full_read_stores_its_merge_against_what_it_read_once_the_documents_settled() {
    let dir = tempfile::tempdir().unwrap();
    let (path, run) = ended_run(dir.path());
    run.fold_all().unwrap();
    let expected = full(&Run::new(&path, options()));
    fs::remove_file(path.join(SNAPSHOT_NAME)).unwrap();
    // Just written: not stored (unless this machine stalled past the settling time).
    let rewritten = fs::read(path.join(RUN_LOG_FILE)).unwrap();
    fs::write(path.join(RUN_LOG_FILE), &rewritten).unwrap();
    let started = std::time::Instant::now();
    assert_eq!(full(&Run::new(&path, options())), expected);
    if started.elapsed() < std::time::Duration::from_millis(50) {
        assert!(
            !path.join(SNAPSHOT_NAME).exists(),
            "stored the merge of fresh documents"
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(150));
    assert_eq!(full(&Run::new(&path, options())), expected);
    let snapshot = fs::read(path.join(SNAPSHOT_NAME)).expect("stored once settled");
    let stored = decode_snapshot(&snapshot, &document_stats(&path).unwrap())
        .expect("recorded against the documents' stats as they are");
    assert_eq!(serde_json::from_slice::<Value>(stored).unwrap(), expected);

    let document = fs::read(path.join(RUN_LOG_FILE)).unwrap();
    let at = document
        .windows(9)
        .position(|w| w == b"\"SUCCESS\"")
        .unwrap();
    OpenOptions::new()
        .write(true)
        .open(path.join(RUN_LOG_FILE))
        .unwrap()
        .write_all_at(b"\"FAILED!\"", at as u64)
        .unwrap();
    assert_eq!(full(&Run::new(&path, options()))["status"], "FAILED!");
}

#[test]
fn the_end_of_a_run_removes_its_journals_folder_and_a_later_write_makes_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let (path, run) = ended_run(dir.path());
    assert!(path.join(JOURNAL_DIR).is_dir());
    run.fold_all().unwrap();
    assert!(
        !path.join(JOURNAL_DIR).exists(),
        "an ended run keeps no journals' folder"
    );
    // Another process writes to the ended run: its journal (and the folder) made again, the
    // record folded at once, and the folder gone again.
    let mut again = step("a", "SUCCESS");
    again.body = br#"{"name":"a","internal_name":"a","status":"SUCCESS","message":"m1"}"#.to_vec();
    Run::new(&path, options()).append(&[again]).unwrap();
    assert_eq!(
        full(&Run::new(&path, options()))["steps"]["a"]["message"],
        "m1"
    );
    assert!(!path.join(JOURNAL_DIR).exists());
    // A file not ours in the folder: the folder stays, the file with it.
    fs::create_dir(path.join(JOURNAL_DIR)).unwrap();
    fs::write(path.join(JOURNAL_DIR).join("notes.txt"), b"kept").unwrap();
    Run::new(&path, options())
        .append(&[step("b", "SUCCESS")])
        .unwrap();
    assert_eq!(
        fs::read(path.join(JOURNAL_DIR).join("notes.txt")).unwrap(),
        b"kept"
    );
    assert_eq!(
        full(&Run::new(&path, options()))["steps"]["b"]["status"],
        "SUCCESS"
    );
}

#[test]
fn no_snapshot_is_stored_of_documents_changed_since_the_fold() {
    let dir = tempfile::tempdir().unwrap();
    let (path, run) = ended_run(dir.path());
    let mut state = run.state().unwrap();
    let lock = run.lock(&run.folder().unwrap()).unwrap();
    run.catch_up(&mut state, &run.folder().unwrap()).unwrap();
    let (merged, expected) = run.fold_all_locked(&mut state).unwrap().unwrap();
    drop((lock, state));
    // Another writer replaces RunLog.json between the fold and the snapshot's look.
    let document = fs::read(path.join(RUN_LOG_FILE)).unwrap();
    fs::write(path.join("other"), &document).unwrap();
    fs::rename(path.join("other"), path.join(RUN_LOG_FILE)).unwrap();
    run.store_snapshot(&merged, &expected);
    assert!(!path.join(SNAPSHOT_NAME).exists());
    // Unchanged since: stored.
    run.store_snapshot(&merged, &document_stats(&path).unwrap());
    assert!(path.join(SNAPSHOT_NAME).exists());
}

#[test]
fn with_fsync_a_journal_grows_into_room_made_ahead_which_reads_as_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = new_run(dir.path());
    let synced = RunOptions {
        fsync: true,
        ..options()
    };
    let run = Run::new(&path, synced);
    let reader = Run::new(&path, options());
    let mut names = Vec::new();
    // About 300 KiB of records: the room is made again several times.
    for i in 0..400 {
        let name = format!("step-{i:03}-{}", "x".repeat(600));
        run.append(&[step(&name, "SUCCESS")]).unwrap();
        names.push(name);
        if i % 97 == 0 {
            // A reader in between reads on from where it stopped, never past the frames.
            assert_eq!(keys(&full(&reader)["steps"]), names);
        }
    }
    let journals = run.journals().unwrap();
    assert_eq!(journals.len(), 1);
    let file = fs::metadata(journal_path(&path, &journals[0].0))
        .unwrap()
        .len();
    assert_eq!(file % PREALLOCATION, 0, "room made ahead");
    assert!(
        journals[0].1 < file && journals[0].1 > 300_000,
        "the records' bytes"
    );
    assert_eq!(keys(&full(&Run::new(&path, options()))["steps"]), names);
    assert_eq!(keys(&full(&reader)["steps"]), names);
    // The room is part of nothing the fold writes, and goes with the journal.
    run.append(&[rec(RecordKind::RunSet, "", json!({"status": "SUCCESS"}))])
        .unwrap();
    run.fold_all().unwrap();
    assert!(run.journals().unwrap().is_empty());
    assert_eq!(keys(&full(&Run::new(&path, options()))["steps"]), names);
}

#[test]
fn partial_reads_see_documents_and_journals() {
    let dir = tempfile::tempdir().unwrap();
    let path = new_run(dir.path());
    let run = Run::new(&path, options());
    run.append(&[
        step("map", "PROCESSING"),
        branch("map.1", "PROCESSING"),
        step("map.1.a", "SUCCESS"),
    ])
    .unwrap();
    run.append(&[rec(
        RecordKind::RunMerge,
        "",
        json!({"parameters": {"p": {"kind": "json", "value": 1}}}),
    )])
    .unwrap();
    let branch_json: Value =
        serde_json::from_slice(&run.read_branch("map.1").unwrap().unwrap()).unwrap();
    assert_eq!(keys(&branch_json["steps"]), ["map.1.a"]);
    assert!(run.read_branch("map.2").unwrap().is_none());
    let step_json: Value =
        serde_json::from_slice(&run.read_step("map.1.a").unwrap().unwrap()).unwrap();
    assert_eq!(step_json["status"], "SUCCESS");
    assert!(run.read_step("map.1.b").unwrap().is_none());
    let short: Value = serde_json::from_slice(&run.read_run(true).unwrap()).unwrap();
    assert_eq!(keys(&short["steps"]), ["map"]);
    assert_eq!(short["parameters"]["p"]["value"], 1);
    let fields: Value = serde_json::from_slice(&run.read_run(false).unwrap()).unwrap();
    assert_eq!(fields["steps"], json!({}));
    run.append(&[branch("map.1", "SUCCESS")]).unwrap();
    run.fold_branch("map.1").unwrap();
    let other = Run::new(&path, options());
    let step_json: Value =
        serde_json::from_slice(&other.read_step("map.1.a").unwrap().unwrap()).unwrap();
    assert_eq!(step_json["status"], "SUCCESS");
    assert!(other.has_branch("map.1").unwrap() && !other.has_branch("map.9").unwrap());
}

#[test]
fn later_stamps_win_across_writers() {
    let dir = tempfile::tempdir().unwrap();
    let path = new_run(dir.path());
    let (a, b) = (Run::new(&path, options()), Run::new(&path, options()));
    a.append(&[step("s", "FIRST")]).unwrap();
    b.append(&[step("s", "SECOND")]).unwrap();
    a.append(&[rec(RecordKind::RunSet, "", json!({"status": "A"}))])
        .unwrap();
    b.append(&[rec(RecordKind::RunSet, "", json!({"status": "B"}))])
        .unwrap();
    for run in [&a, &b, &Run::new(&path, options())] {
        let doc = full(run);
        assert_eq!(doc["steps"]["s"]["status"], "SECOND");
        assert_eq!(doc["status"], "B");
    }
    assert_eq!(list_journals(&path).unwrap().len(), 2);
}

#[test]
fn a_missing_run_is_not_found_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let run = Run::new(&dir.path().join("nope"), options());
    let err = run.append(&[step("s", "X")]).unwrap_err();
    assert!(matches!(err, CoreError::NotFound { .. }), "{err:?}");
    assert!(!dir.path().join("nope").exists());
    assert!(matches!(run.read(false), Err(CoreError::NotFound { .. })));
}

#[test]
fn a_stamp_in_the_lock_that_cannot_be_right_never_hides_a_write() {
    for kept in [
        i64::MAX,
        i64::MAX - 1,
        -1,
        crate::chunk::now_ns() + 10 * 86_400_000_000_000,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = new_run(dir.path());
        fs::write(run_dir.join(LOCK_FILE), kept.to_le_bytes()).unwrap();
        let run = Run::new(&run_dir, options());
        run.append(&[step("a", "CREATED")]).unwrap();
        run.append(&[step("a", "SUCCESS"), step("b", "SUCCESS")])
            .unwrap();
        run.fold_all().unwrap();
        run.append(&[step("a", "FAIL")]).unwrap();
        let fresh = Run::new(&run_dir, options());
        let steps = &full(&fresh)["steps"];
        assert_eq!(steps["a"]["status"], "FAIL", "kept {kept}");
        assert_eq!(steps["b"]["status"], "SUCCESS", "kept {kept}");
        let last = i64::from_le_bytes(
            fs::read(run_dir.join(LOCK_FILE)).unwrap()[..8]
                .try_into()
                .unwrap(),
        );
        assert!(
            last <= crate::journal::latest_plausible_stamp(),
            "kept {kept}: {last}"
        );
    }
}

#[test]
fn documents_and_records_naming_another_run_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = new_run(dir.path());
    let run = Run::new(&run_dir, options());
    run.append(&[rec(
        RecordKind::RunSet,
        "",
        json!({"run_id": "other", "tag": "x"}),
    )])
    .unwrap();
    let err = run.read(false).unwrap_err();
    assert!(matches!(err, CoreError::RunIdMismatch { .. }), "{err:?}");
    assert!(err.path().starts_with(run_dir.join(".journals")), "{err}");
    assert!(run.read_run(false).is_err());
    let salvaged = run.read(true).unwrap();
    assert_eq!(salvaged.skipped.len(), 1);
    let doc: Value = serde_json::from_slice(&salvaged.document).unwrap();
    assert_eq!(doc["run_id"], "r");
    // A run folder holding another run's document.
    let copy = dir.path().join("copy");
    fs::create_dir(&copy).unwrap();
    fs::copy(run_dir.join(RUN_LOG_FILE), copy.join(RUN_LOG_FILE)).unwrap();
    let err = Run::new(&copy, options()).read(false).unwrap_err();
    match err {
        CoreError::RunIdMismatch { asked, found, .. } => {
            assert_eq!((asked, found), ("copy".into(), "r".into()))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_fifo_among_the_documents_is_a_corrupt_one_and_never_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = new_run(dir.path());
    let run = Run::new(&run_dir, options());
    run.append(&[step("map", "SUCCESS"), branch("map.0", "SUCCESS")])
        .unwrap();
    for fifo in [
        run_dir.join("BranchLog-map.1.json"),
        run_dir.join(".journals").join("1-1-aa.journal"),
    ] {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let err = Run::new(&run_dir, options()).read(false).unwrap_err();
        assert!(matches!(err, CoreError::Corrupt { .. }), "{err:?}");
        assert_eq!(err.path(), fifo.as_path());
        let salvaged = Run::new(&run_dir, options()).read(true).unwrap();
        assert!(salvaged.skipped.iter().any(|(path, _)| path == &fifo));
        fs::remove_file(&fifo).unwrap();
    }
}

#[test]
fn a_run_log_too_deep_is_refused_on_reading_and_never_stored_as_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = new_run(dir.path());
    // A record someone else wrote into a journal (a writer refuses one this deep).
    let deep = format!("{}1{}", "[".repeat(300), "]".repeat(300));
    let body = format!(r#"{{"parameters": {{"p": {{"kind": "json", "value": {deep}}}}}}}"#);
    let mut frame = Vec::new();
    let record = NewRecord {
        kind: RecordKind::RunMerge,
        target: String::new(),
        body: body.into_bytes(),
    };
    crate::journal::encode_frame(&mut frame, crate::chunk::now_ns(), &record);
    fs::create_dir(run_dir.join(".journals")).unwrap();
    fs::write(run_dir.join(".journals").join("1-1-aa.journal"), frame).unwrap();
    let run = Run::new(&run_dir, options());
    run.append(&[rec(RecordKind::RunSet, "", json!({"status": "SUCCESS"}))])
        .unwrap(); // ends the run: folded at once
    assert!(!run_dir.join(SNAPSHOT_NAME).exists());
    let err = Run::new(&run_dir, options()).read(false).unwrap_err();
    assert!(matches!(err, CoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("nests 303 levels deep"), "{err}");
}

#[test]
fn a_stored_merge_is_read_only_in_the_folder_of_its_run() {
    let dir = tempfile::tempdir().unwrap();
    let (path, run) = ended_run(dir.path());
    run.fold_all().unwrap();
    let snapshot = fs::read(path.join(SNAPSHOT_NAME)).unwrap();
    assert!(decode_snapshot(&snapshot, &document_stats(&path).unwrap()).is_some());
    let expected = full(&Run::new(&path, options()));
    // Renamed: every document keeps its stats, so the stored merge still matches them, but it
    // names the run by its old name, as RunLog.json does: refused as RunLog.json is.
    let moved = dir.path().join("moved");
    fs::rename(&path, &moved).unwrap();
    match Run::new(&moved, options()).read(false).unwrap_err() {
        CoreError::RunIdMismatch { asked, found, .. } => {
            assert_eq!((asked, found), ("moved".into(), "r".into()))
        }
        other => panic!("{other:?}"),
    }
    // Back under its name: read from the stored merge again, the same run.
    fs::rename(&moved, &path).unwrap();
    assert_eq!(full(&Run::new(&path, options())), expected);
}

#[test]
fn a_merge_names_its_run_only_in_its_first_field_exactly() {
    use super::reading::names_run;
    assert!(names_run(br#"{"run_id":"r","status":"SUCCESS"}"#, "r"));
    assert!(names_run(br#"{"run_id":"r"}"#, "r"));
    assert!(!names_run(br#"{"run_id":"r2","status":"SUCCESS"}"#, "r"));
    assert!(!names_run(br#"{"run_id":"r","status":"SUCCESS"}"#, "r2"));
    assert!(!names_run(br#"{"status":"SUCCESS","run_id":"r"}"#, "r"));
    assert!(!names_run(br#"{"run_id": "r"}"#, "r"));
    assert!(!names_run(br#"{"run_id":"\u0072"}"#, "r"));
    assert!(!names_run(b"", "r"));
}
