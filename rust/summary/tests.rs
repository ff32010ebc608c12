use super::*;

fn summary(text: &str) -> RunSummary {
    summarize(text.as_bytes()).unwrap()
}

#[test]
fn a_nested_failure_names_the_deepest_failed_step_and_counts_every_depth() {
    let run = summary(
        r#"{"run_id": "r", "status": "FAIL", "tag": null, "dag_hash": "",
        "steps": {"outer": {"internal_name": "outer", "status": "FAIL",
            "attempts": [{"start_time": "2026-01-01 10:00:00", "end_time": "2026-01-01 10:00:05",
                          "code_identities": [{"code_identifier": ""}, {"code_identifier": "abc"}]}],
            "branches": {"outer.1": {"status": "FAIL", "steps": {"outer.1.inner":
                {"internal_name": "outer.1.inner", "status": "FAIL",
                 "attempts": [{"start_time": "not a time"}]}}},
                         "outer.2": {"status": "SUCCESS", "steps": {}}}},
            "last": {"internal_name": "last", "status": "SUCCESS"}},
        "job": {"status": "FAIL", "attempts": [{"end_time": "2026-01-01 09:00:00"}]}}"#,
    );
    assert_eq!(run.run_id, "r");
    assert_eq!(run.tag, "");
    assert_eq!(run.dag_hash.as_deref(), Some(""));
    assert_eq!(run.failed_step.as_deref(), Some("outer.1.inner"));
    assert_eq!((run.steps, run.branches), (3, 2));
    assert_eq!(run.commit.as_deref(), Some("abc"));
    assert_eq!(run.duration_seconds(), Some(3605.0));
    assert!(run.other_times.is_empty());
    assert_eq!(
        run.steps_by_status,
        [("FAIL".to_string(), 2), ("SUCCESS".to_string(), 1)]
    );
    assert_eq!(
        run.branches_by_status,
        [("FAIL".to_string(), 1), ("SUCCESS".to_string(), 1)]
    );
    let names: Vec<&str> = run.step_statuses.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["outer", "outer.1.inner", "last"]);
}

#[test]
fn the_job_fails_when_no_step_did() {
    let run = summary(r#"{"run_id": "r", "job": {"status": "FAIL"}}"#);
    assert_eq!(run.failed_step.as_deref(), Some("job"));
    assert_eq!(run.status, "");
    assert_eq!(run.dag_hash, None);
}

#[test]
fn a_key_twice_counts_by_its_last_value_at_its_first_place() {
    let run = summary(
        r#"{"run_id": "x", "run_id": "r", "steps": {
            "a": {"internal_name": "a", "status": "FAIL"},
            "b": {"internal_name": "b", "status": "FAIL"},
            "a": {"internal_name": "a2", "status": "FAIL"}}}"#,
    );
    assert_eq!(run.run_id, "r");
    assert_eq!(run.steps, 2);
    assert_eq!(run.failed_step.as_deref(), Some("a2"));
}

#[test]
fn parameters_and_metrics_keep_their_values_non_finite_included() {
    let run = summary(
        r#"{"run_id": "r", "parameters": {
            "p": {"kind": "json", "value": {"x": [1, NaN]}},
            "o": {"kind": "object", "value": "stored.pkl", "description": null},
            "m": {"kind": "metric", "value": -Infinity}}}"#,
    );
    assert_eq!(run.params.len(), 2);
    assert_eq!(run.params[1], ("o".into(), Value::Str("stored.pkl".into())));
    let Value::Object(fields) = &run.params[0].1 else {
        panic!()
    };
    let Value::Array(items) = &fields[0].1 else {
        panic!()
    };
    assert!(matches!(items[1], Value::Float(f) if f.is_nan()));
    assert_eq!(
        run.metrics,
        [("m".to_string(), Value::Float(f64::NEG_INFINITY))]
    );
}

#[test]
fn documents_that_are_no_run_log_say_why() {
    let reason = |text: &str| summarize(text.as_bytes()).unwrap_err().reason();
    assert_eq!(reason("[1]"), "not a run log (a JSON list, not an object)");
    assert_eq!(reason("\"x\""), "not a run log (a JSON str, not an object)");
    assert!(reason("{").starts_with("not valid JSON ("));
    assert!(reason("{\"run_id\": nan}").starts_with("not valid JSON ("));
    assert!(reason("{}").starts_with("not a valid run log (run_id"));
    for bad in [
        r#"{"run_id": 1}"#,
        r#"{"run_id": "r", "tag": 1}"#,
        r#"{"run_id": "r", "status": null}"#,
        r#"{"run_id": "r", "run_config": []}"#,
        r#"{"run_id": "r", "parameters": {"p": {"value": 1}}}"#,
        r#"{"run_id": "r", "parameters": {"p": {"kind": "json"}}}"#,
        r#"{"run_id": "r", "parameters": {"p": {"kind": "object", "value": 1}}}"#,
        r#"{"run_id": "r", "parameters": {"p": 1}}"#,
    ] {
        assert!(reason(bad).starts_with("not a valid run log ("), "{bad}");
    }
}

#[test]
fn the_deepest_failed_step_is_found_among_many() {
    let names: Vec<String> = ["m", "m.1", "m.1.a", "m.10", "m.10.b", "n"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(deepest(&names).as_deref(), Some("m.1.a"));
    assert_eq!(deepest(&[]), None);
}

#[test]
fn python_renders_floats_as_repr_does() {
    use document::python_float_repr as r;
    assert_eq!(r(1.0), "1.0");
    assert_eq!(r(1e16), "1e+16");
    assert_eq!(r(1.5e-7), "1.5e-07");
    assert_eq!(r(0.0001), "0.0001");
    assert_eq!(r(123456789.125), "123456789.125");
    assert_eq!(r(f64::NAN), "nan");
    assert_eq!(r(-2.5e-3), "-0.0025");
    assert_eq!(r(-1e15), "-1000000000000000.0");
    assert_eq!(r(9999999999999998.0), "9999999999999998.0");
    assert_eq!(r(0.1), "0.1");
    assert_eq!(r(-123.0), "-123.0");
    assert_eq!(r(12.5), "12.5");
    assert_eq!(r(1e-4), "0.0001");
    assert_eq!(r(9.99e-5), "9.99e-05");
    assert_eq!(r(f64::MAX), "1.7976931348623157e+308");
    assert_eq!(r(5e-324), "5e-324");
    assert_eq!(r(-0.0), "-0.0");
    assert_eq!(r(f64::NEG_INFINITY), "-inf");
}

#[test]
fn stored_documents_are_checked_as_the_store_checks_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.json");
    std::fs::write(&path, br#"{"run_id": "other"}"#).unwrap();
    assert!(matches!(
        summarize_document_file(&path, "r"),
        Err(DocumentError::Core(CoreError::RunIdMismatch { .. }))
    ));
    std::fs::write(&path, b"{").unwrap();
    assert!(matches!(
        summarize_document_file(&path, "r"),
        Err(DocumentError::Core(CoreError::Corrupt { .. }))
    ));
    std::fs::write(&path, b"[]").unwrap();
    assert!(matches!(
        summarize_document_file(&path, "r"),
        Err(DocumentError::Core(CoreError::Corrupt { .. }))
    ));
    std::fs::write(&path, br#"{"run_id": "r", "tag": 5}"#).unwrap();
    assert!(matches!(
        summarize_document_file(&path, "r"),
        Err(DocumentError::Unreadable(Unreadable::NotARun(_)))
    ));
    std::os::unix::fs::symlink(&path, dir.path().join("l.json")).unwrap();
    assert!(matches!(
        summarize_document_file(&dir.path().join("l.json"), "l"),
        Err(DocumentError::Core(CoreError::Corrupt { .. }))
    ));
    assert!(matches!(
        summarize_document_file(&dir.path().join("gone.json"), "gone"),
        Err(DocumentError::Core(CoreError::NotFound { .. }))
    ));
    std::fs::write(&path, br#"{"run_id": "r", "status": "SUCCESS"}"#).unwrap();
    assert_eq!(
        summarize_document_file(&path, "r").unwrap().status,
        "SUCCESS"
    );
}

#[test]
fn fingerprints_change_with_what_a_reader_reads_and_only_that() {
    use fingerprint::{fingerprint_documents, fingerprint_run_folders};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    assert!(fingerprint_documents(&root.join("missing"))
        .unwrap()
        .is_empty());
    std::fs::write(root.join("a.json"), b"{}").unwrap();
    std::fs::write(root.join(".a.lock"), b"").unwrap();
    std::fs::write(root.join("notes.txt"), b"").unwrap();
    std::os::unix::fs::symlink(root.join("a.json"), root.join("l.json")).unwrap();
    let mut found = fingerprint_documents(root).unwrap();
    found.sort_by(|a, b| a.run_id.cmp(&b.run_id));
    let ids: Vec<_> = found.iter().map(|f| f.run_id.to_str().unwrap()).collect();
    assert_eq!(ids, ["a", "l"]);
    assert!(found[1].fingerprint.starts_with("link:"));
    assert!(!found[0].fingerprint.contains(':'));

    let runs = root.join("chunked");
    let run = runs.join("r");
    std::fs::create_dir_all(run.join(".journals")).unwrap();
    std::fs::create_dir_all(runs.join("empty")).unwrap();
    std::fs::write(run.join("RunLog.json"), b"{}").unwrap();
    std::fs::write(runs.join("file"), b"{}").unwrap();
    std::os::unix::fs::symlink(&run, runs.join("linked")).unwrap();
    let look = || {
        let mut found = fingerprint_run_folders(&runs).unwrap();
        found.sort_by(|a, b| a.run_id.cmp(&b.run_id));
        found
    };
    let first = look();
    let ids: Vec<_> = first.iter().map(|f| f.run_id.to_str().unwrap()).collect();
    assert_eq!(ids, ["linked", "r"]);
    assert!(first[0].fingerprint.starts_with("link:"));
    // A cache, a lock and a temp file change nothing.
    std::fs::write(run.join(".merged.json"), b"x").unwrap();
    std::fs::write(run.join(".lock"), b"").unwrap();
    assert_eq!(look(), first);
    // A branch document, a journal, a journal growing: each changes the fingerprint.
    let mut seen = vec![first[1].fingerprint.clone()];
    std::fs::write(run.join("BranchLog-m.1.json"), b"{}").unwrap();
    seen.push(look()[1].fingerprint.clone());
    std::fs::write(run.join(".journals").join("a.journal"), b"x").unwrap();
    seen.push(look()[1].fingerprint.clone());
    std::fs::write(run.join(".journals").join("a.journal"), b"xy").unwrap();
    let last = look()[1].clone();
    seen.push(last.fingerprint.clone());
    let distinct: std::collections::HashSet<_> = seen.iter().collect();
    assert_eq!(distinct.len(), seen.len(), "{seen:?}");
    let journal = std::fs::metadata(run.join(".journals").join("a.journal")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        last.newest_change_ns,
        journal.ctime() * 1_000_000_000 + journal.ctime_nsec()
    );
}

#[test]
fn one_run_has_the_fingerprint_the_scan_gives_it() {
    use fingerprint::*;
    use std::ffi::OsStr;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("a.json"), b"{}").unwrap();
    std::fs::create_dir_all(root.join("r").join(".journals")).unwrap();
    std::fs::write(root.join("r").join("RunLog.json"), b"{}").unwrap();
    std::fs::write(root.join("r").join(".journals").join("x.journal"), b"1").unwrap();
    std::os::unix::fs::symlink(root.join("r"), root.join("l")).unwrap();
    for found in fingerprint_documents(root).unwrap() {
        assert_eq!(
            fingerprint_document(root, &found.run_id).unwrap(),
            Some(found)
        );
    }
    let all = fingerprint_run_folders(root).unwrap();
    assert_eq!(all.len(), 2);
    for found in all {
        assert_eq!(
            fingerprint_run_folder(root, &found.run_id).unwrap(),
            Some(found)
        );
    }
    for missing in ["nope", ".journals", "", "r/.journals", "a.json"] {
        assert_eq!(
            fingerprint_run_folder(root, OsStr::new(missing)).unwrap(),
            None,
            "{missing}"
        );
    }
    assert_eq!(fingerprint_document(root, OsStr::new("r")).unwrap(), None);
}

#[test]
fn a_lone_run_log_matches_its_fingerprint_and_nothing_else_does() {
    use crate::untrusted::{FileStamp, Folder};
    use fingerprint::{fingerprint_run_folder, LoneRunLog};
    use std::ffi::OsStr;
    use std::path::Path;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let run = root.join("r");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("RunLog.json"), b"{}").unwrap();
    let folder = Folder::open(root).unwrap();
    // What the build's read of the one document sees: its open's stamp, the marker's stat.
    let seen = || {
        let (_, stamp) = folder
            .read_stamped(Path::new("r/RunLog.json"))
            .unwrap()
            .unwrap();
        (stamp, folder.stat_below(Path::new("r/.layout")))
    };
    let scanned = || {
        fingerprint_run_folder(root, OsStr::new("r"))
            .unwrap()
            .unwrap()
            .fingerprint
    };
    let matches = |fingerprint: &str| {
        let lone = LoneRunLog::of(fingerprint)?;
        let (stamp, marker) = seen();
        Some(lone.matches(&stamp, marker.as_ref()))
    };

    // RunLog.json alone, then with the layout marker: the scan's own fingerprint.
    let alone = scanned();
    assert_eq!(matches(&alone), Some(true));
    std::fs::write(run.join(".layout"), b"runlog-store chunked-fs 2\n").unwrap();
    let with_marker = scanned();
    assert_eq!(matches(&with_marker), Some(true));
    // Another stamp of either file (a rewrite in place, the marker replaced) is not it.
    let (stamp, marker) = seen();
    let moved = FileStamp {
        mtime_ns: stamp.mtime_ns + 1,
        ..stamp
    };
    assert!(!LoneRunLog::of(&with_marker)
        .unwrap()
        .matches(&moved, marker.as_ref()));
    assert!(!LoneRunLog::of(&with_marker).unwrap().matches(&stamp, None));
    std::fs::remove_file(run.join(".layout")).unwrap();
    std::fs::write(run.join(".layout"), b"runlog-store chunked-fs 2\n").unwrap();
    assert_eq!(matches(&with_marker), Some(false));
    // Two documents that are not the marker: counted two, and no match.
    std::fs::remove_file(run.join(".layout")).unwrap();
    std::fs::write(run.join("StepLog-a.json"), b"{}").unwrap();
    let with_step = scanned();
    assert!(with_step.contains(":2:"), "{with_step}");
    assert_eq!(matches(&with_step), Some(false));
    // More documents, journals, or what is no run folder's fingerprint: not a lone run log.
    std::fs::write(run.join("StepLog-b.json"), b"{}").unwrap();
    assert_eq!(matches(&scanned()), None);
    for other in [
        "",
        "link:1-2-3-4",
        "unreadable:1-2-3-4",
        "x:1:ab",
        "12:3:ab",
    ] {
        assert!(LoneRunLog::of(other).is_none(), "{other}");
    }
}

/// The repr above, against the way it was written before (Rust's own shortest plain form,
/// `{}`, and its exponent form, `{:e}`) on 900,000 floats of every magnitude.
#[test]
fn python_float_repr_places_the_point_as_display_does() {
    fn by_display(value: f64) -> String {
        let exp_form = format!("{value:e}");
        let (mantissa, exponent) = exp_form.split_once('e').unwrap();
        let exponent: i32 = exponent.parse().unwrap();
        if !(-4..16).contains(&exponent) {
            let sign = if exponent < 0 { '-' } else { '+' };
            return format!("{mantissa}e{sign}{:02}", exponent.abs());
        }
        let plain = format!("{value}");
        if plain.contains('.') {
            plain
        } else {
            format!("{plain}.0")
        }
    }
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..300_000 {
        // xorshift: every bit pattern alike, so every exponent; and short decimals too.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let value = f64::from_bits(state);
        let short = (state % 2_000_000) as f64 / 10f64.powi((state % 23) as i32 - 3);
        for value in [value, short, -short] {
            if value.is_finite() && value != 0.0 {
                assert_eq!(
                    document::python_float_repr(value),
                    by_display(value),
                    "{value:e}"
                );
            }
        }
    }
}
