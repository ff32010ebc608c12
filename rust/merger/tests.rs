//! Merges of whole runs, end to end: nesting and order, made-up steps, salvage, runs in memory,
//! sealed branches, and runnable's own runs from the fixtures.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::*;
use crate::error::CoreError;
use crate::names::{chunk_file_name, legacy_created_ns, ChunkKind};

fn write(dir: &Path, name: &str, json: &str) {
    fs::write(dir.join(name), json).unwrap();
}

fn merged(dir: &Path) -> Value {
    serde_json::from_slice(&merge_run(dir, false, None).unwrap().document).unwrap()
}

fn keys(v: &Value) -> Vec<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

const RUN: &str = r#"{"run_id":"r","dag_hash":"","tag":"","status":"CREATED","steps":{},"job":null,"parameters":{},"run_config":{}}"#;

fn step(name: &str, ns: i64) -> String {
    let short = name.rsplit('.').next().unwrap();
    format!(
        r#"{{"_created_ns":{ns},"name":"{short}","internal_name":"{name}","status":"SUCCESS","step_type":"task","message":"","mock":false,"attempts":[],"branches":{{}},"data_catalog":[]}}"#
    )
}

fn branch(name: &str, ns: i64) -> String {
    format!(
        r#"{{"_created_ns":{ns},"internal_name":"{name}","status":"SUCCESS","steps":{{}},"parameters":{{}}}}"#
    )
}

fn put_step(dir: &Path, name: &str, ns: i64) {
    write(
        dir,
        &chunk_file_name(ChunkKind::Step, name).unwrap(),
        &step(name, ns),
    );
}

fn put_branch(dir: &Path, name: &str, ns: i64) {
    write(
        dir,
        &chunk_file_name(ChunkKind::Branch, name).unwrap(),
        &branch(name, ns),
    );
}

#[test]
fn own_layout_nests_by_name_and_orders_by_creation() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "RunLog.json", RUN);
    put_step(d, "map", 10);
    put_step(d, "first", 5);
    for i in [10, 2, 1] {
        put_branch(d, &format!("map.{i}"), 100);
        put_step(d, &format!("map.{i}.b"), 200);
        put_step(d, &format!("map.{i}.a"), 300);
    }
    write(d, ".StepLog-zzz.json.tmp-1-2-3", "garbage");
    write(d, "notes.txt", "ignored");
    let run = merged(d);
    assert_eq!(keys(&run["steps"]), ["first", "map"]);
    assert_eq!(
        keys(&run["steps"]["map"]["branches"]),
        ["map.1", "map.2", "map.10"]
    );
    assert_eq!(
        keys(&run["steps"]["map"]["branches"]["map.2"]["steps"]),
        ["map.2.b", "map.2.a"]
    );
    assert!(run["steps"]["map"].get("_created_ns").is_none());
    assert_eq!(keys(&run)[4], "steps", "the stored key order is kept");
}

#[test]
fn missing_steps_of_branches_are_made_up() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "RunLog.json", RUN);
    put_branch(d, "par.b1", 1);
    put_branch(d, "par.b1.inner.x", 2);
    put_step(d, "par.b1.inner.x.leaf", 3);
    let run = merged(d);
    let par = &run["steps"]["par"];
    assert_eq!(par["status"], "CREATED");
    assert_eq!(par["name"], "par");
    let inner = &par["branches"]["par.b1"]["steps"]["par.b1.inner"];
    assert_eq!(inner["name"], "inner");
    let leaf = &inner["branches"]["par.b1.inner.x"]["steps"]["par.b1.inner.x.leaf"];
    assert_eq!(leaf["status"], "SUCCESS");
}

#[test]
fn steps_with_dots_and_no_branch_above_are_root_steps() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "RunLog.json", RUN);
    put_step(d, "dots.in.0.name", 1);
    put_step(d, "../escape", 2);
    put_step(d, "map", 3);
    put_branch(d, "map.1", 4);
    put_step(d, "map.1.my.step", 5);
    let run = merged(d);
    assert_eq!(keys(&run["steps"]), ["dots.in.0.name", "../escape", "map"]);
    assert_eq!(
        keys(&run["steps"]["map"]["branches"]["map.1"]["steps"]),
        ["map.1.my.step"]
    );
}

#[test]
fn dotted_branch_values_find_their_step() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "RunLog.json", RUN);
    put_step(d, "map", 1);
    put_branch(d, "map.1.5", 2);
    put_step(d, "map.1.5.w", 3);
    let run = merged(d);
    assert_eq!(keys(&run["steps"]["map"]["branches"]), ["map.1.5"]);
    assert_eq!(
        keys(&run["steps"]["map"]["branches"]["map.1.5"]["steps"]),
        ["map.1.5.w"]
    );
}

#[test]
fn corrupt_chunk_is_named_and_salvage_reads_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "RunLog.json", RUN);
    put_step(d, "good", 1);
    write(d, "StepLog-bad.json", r#"{"internal_name": "bad", "#);
    write(d, "StepLog-noname.json", r#"{"name": "x"}"#);
    write(d, "BranchLog-list.json", "[1, 2]");
    let err = merge_run(d, false, None).unwrap_err();
    assert!(matches!(err, CoreError::Corrupt { .. }));
    assert!(err.to_string().contains("BranchLog-list.json"), "{err}");
    let out = merge_run(d, true, None).unwrap();
    let run: Value = serde_json::from_slice(&out.document).unwrap();
    assert_eq!(keys(&run["steps"]), ["good"]);
    let mut skipped: Vec<String> = out
        .skipped
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    skipped.sort();
    assert_eq!(
        skipped,
        [
            "BranchLog-list.json",
            "StepLog-bad.json",
            "StepLog-noname.json"
        ]
    );
}

#[test]
fn missing_run_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        merge_run(&dir.path().join("nope"), false, None),
        Err(CoreError::NotFound { .. })
    ));
    assert!(matches!(
        merge_run(dir.path(), false, None),
        Err(CoreError::NotFound { .. })
    ));
}

#[test]
fn a_branch_without_a_step_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "RunLog.json", RUN);
    put_branch(d, "lonely", 1);
    assert!(matches!(
        merge_run(d, false, None),
        Err(CoreError::Corrupt { .. })
    ));
    assert!(merge_run(d, true, None).unwrap().skipped.len() == 1);
}

#[test]
fn in_memory_documents_merge_like_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "RunLog.json", RUN);
    put_step(d, "map", 1);
    put_branch(d, "map.1", 2);
    put_step(d, "map.1.w", 3);
    let objects: Vec<(String, Vec<u8>)> = fs::read_dir(d)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                fs::read(e.path()).unwrap(),
            )
        })
        .filter(|(name, _)| name != "RunLog.json")
        .chain([(".layout".to_string(), b"x".to_vec())])
        .collect();
    let merge = |objects| {
        merge_documents(
            Path::new("s3://b/p/r"),
            RUN.as_bytes().to_vec(),
            objects,
            false,
            None,
        )
    };
    let from_memory = merge(objects).unwrap();
    assert_eq!(
        from_memory.document,
        merge_run(d, false, None).unwrap().document
    );
    let bad = vec![("StepLog-x.json".to_string(), b"{".to_vec())];
    let err = merge(bad).unwrap_err();
    assert!(
        err.to_string().contains("s3://b/p/r/StepLog-x.json"),
        "{err}"
    );
}

#[test]
fn sealed_branches_embed_whole_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "RunLog.json", RUN);
    put_step(d, "map", 1);
    put_branch(d, "map.1", 2);
    put_step(d, "map.1.a", 3);
    put_step(d, "map.1.b", 4);
    let separate = merged(d);
    // The same run with map.1's steps inside its chunk (and their own chunks gone).
    let embedded = format!(
        r#"{{"_created_ns":2,"internal_name":"map.1","status":"SUCCESS","steps":{{"map.1.b":{},"map.1.a":{}}},"parameters":{{}},"_chunks":{{"StepLog-map.1.a.json":"e1"}}}}"#,
        step("map.1.b", 4),
        step("map.1.a", 3)
    );
    fs::remove_file(d.join("StepLog-map.1.a.json")).unwrap();
    fs::remove_file(d.join("StepLog-map.1.b.json")).unwrap();
    write(d, "BranchLog-map.1.json", &embedded);
    let sealed = merged(d);
    assert_eq!(sealed, separate);
    assert_eq!(
        keys(&sealed["steps"]["map"]["branches"]["map.1"]["steps"]),
        ["map.1.a", "map.1.b"]
    );
    assert!(sealed["steps"]["map"]["branches"]["map.1"]
        .get("_chunks")
        .is_none());
}

fn fixtures() -> PathBuf {
    // Read at run time, not compiled in: the shared build cache serves clones at other
    // paths, and a path baked into a cached test binary would point at another clone.
    let root = std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR");
    Path::new(&root).join("tests/fixtures")
}

#[test]
fn runnable_050_chunked_run_gives_runnables_full_view() {
    let base = fixtures().join("runnable-0.50");
    let got = merged(&base.join("chunked-fs/chunked-map"));
    let expected: Value =
        serde_json::from_slice(&fs::read(base.join("expected-full/chunked-map.json")).unwrap())
            .unwrap();
    assert_eq!(got, expected);
    // Root steps keep RunLog.json's order; map branches come in natural order.
    assert_eq!(keys(&got["steps"]), keys(&expected["steps"]));
    assert_eq!(
        keys(&got["steps"]["map_state"]["branches"]),
        ["map_state.1", "map_state.2", "map_state.3", "map_state.4"]
    );
}

#[test]
fn seed_layout_steps_come_in_creation_order() {
    let run_dir = fixtures().join("seed-layout/chunked-fs/pleasant-lamarr-0549");
    let got = merged(&run_dir);
    let mut chunks: Vec<(i64, String)> = fs::read_dir(&run_dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            let ns = legacy_created_ns(&name)?;
            let value: Value =
                serde_json::from_slice(&fs::read(run_dir.join(&name)).unwrap()).unwrap();
            Some((ns, value["internal_name"].as_str().unwrap().to_string()))
        })
        .collect();
    chunks.sort();
    let names: Vec<String> = chunks.into_iter().map(|(_, n)| n).collect();
    assert!(!names.is_empty());
    assert_eq!(keys(&got["steps"]), names);
}
