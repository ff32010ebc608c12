//! The chunk merger: one run folder in, one full run log JSON document out (docs/format.md,
//! "The full run log").
//!
//! The folder is listed once and every chunk is read and parsed in parallel (rayon). Each step
//! and branch, whether it has a chunk of its own or sits embedded in another document (the root
//! steps of a runnable 0.50 `RunLog.json`, the steps of a 0.50 `BranchLog`), becomes a node keyed
//! by its internal name; nodes are attached to their parents by name, parents named but stored
//! nowhere are made up, and siblings are put in a deterministic order.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde_json::{Map, Value};

use crate::error::{CoreError, Result};
use crate::names::{chunk_kind_of, legacy_created_ns, ChunkKind};
use crate::writer::read_file;

pub const RUN_LOG_FILE: &str = "RunLog.json";
const CREATED_NS_KEY: &str = "_created_ns";

/// A merged run and, in salvage mode, the chunks left out with the reason.
#[derive(Debug)]
pub struct MergedRun {
    pub document: Vec<u8>,
    pub skipped: Vec<(PathBuf, String)>,
}

/// Read the run in `run_dir` and assemble its full run log.
///
/// Without `salvage`, the first corrupt chunk fails the read with [`CoreError::Corrupt`] naming
/// it; with `salvage`, corrupt chunks are left out and listed. A corrupt `RunLog.json` fails
/// both ways: without it there is no run.
pub fn merge_run(run_dir: &Path, salvage: bool) -> Result<MergedRun> {
    let run_log_path = run_dir.join(RUN_LOG_FILE);
    let mut chunk_names = list_chunks(run_dir, &run_log_path)?;
    chunk_names.sort();
    let run_log_bytes = read_file(&run_log_path)?.ok_or_else(|| CoreError::NotFound {
        path: run_log_path.clone(),
    })?;

    let parsed: Vec<Result<Option<Chunk>>> = chunk_names
        .par_iter()
        .map(|(name, kind)| read_chunk(run_dir, name, *kind))
        .collect();

    let mut skipped = Vec::new();
    let mut tree = Tree::default();
    let root = parse_object(&run_log_bytes, &run_log_path)?;
    let root_source = tree.add_source(run_log_path.clone());
    let mut root = strip_created_ns(root, &run_log_path)?.0;
    let root_steps = take_children(&mut root, "steps", &run_log_path)?;
    tree.add_embedded_children(root_steps, ChunkKind::Step, Priority::InRunLog, root_source)?;

    for chunk in parsed {
        match chunk {
            Ok(Some(chunk)) => {
                let source = tree.add_source(chunk.path.clone());
                if let Err(err) = tree.add_chunk(chunk, source) {
                    skip_or_fail(err, salvage, &mut skipped)?;
                }
            }
            Ok(None) => {}
            Err(err) => skip_or_fail(err, salvage, &mut skipped)?,
        }
    }
    let root_children = tree.attach_all(salvage, &mut skipped)?;
    let steps = tree.build_children(root_children);
    set_children(&mut root, "steps", steps);
    let document = serde_json::to_vec(&Value::Object(root))
        .map_err(|e| CoreError::corrupt(&run_log_path, format!("cannot serialise: {e}")))?;
    Ok(MergedRun { document, skipped })
}

fn skip_or_fail(err: CoreError, salvage: bool, skipped: &mut Vec<(PathBuf, String)>) -> Result<()> {
    match err {
        CoreError::Corrupt { path, reason } if salvage => {
            skipped.push((path, reason));
            Ok(())
        }
        other => Err(other),
    }
}

fn list_chunks(run_dir: &Path, run_log_path: &Path) -> Result<Vec<(String, ChunkKind)>> {
    let entries = match fs::read_dir(run_dir) {
        Ok(entries) => entries,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Err(CoreError::NotFound {
                path: run_log_path.to_path_buf(),
            })
        }
        Err(e) => return Err(CoreError::io("list", run_dir, e)),
    };
    let mut chunks = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| CoreError::io("list", run_dir, e))?;
        if let Some(name) = entry.file_name().to_str() {
            if let Some(kind) = chunk_kind_of(name) {
                chunks.push((name.to_string(), kind));
            }
        }
    }
    Ok(chunks)
}

/// One chunk file, parsed.
struct Chunk {
    path: PathBuf,
    kind: ChunkKind,
    name: String,
    created_ns: Option<i64>,
    fields: Map<String, Value>,
}

fn read_chunk(run_dir: &Path, file_name: &str, kind: ChunkKind) -> Result<Option<Chunk>> {
    let path = run_dir.join(file_name);
    // Chunks are replaced by rename, never deleted, so a vanished file is a run being deleted.
    let Some(bytes) = read_file(&path)? else {
        return Ok(None);
    };
    let fields = parse_object(&bytes, &path)?;
    let (fields, created_ns) = strip_created_ns(fields, &path)?;
    let name = internal_name_of(&fields, None)
        .ok_or_else(|| CoreError::corrupt(&path, "it has no string \"internal_name\""))?;
    Ok(Some(Chunk {
        created_ns: created_ns.or_else(|| legacy_created_ns(file_name)),
        path,
        kind,
        name,
        fields,
    }))
}

fn parse_object(bytes: &[u8], path: &Path) -> Result<Map<String, Value>> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(CoreError::corrupt(path, "it is not a JSON object")),
        Err(e) => Err(CoreError::corrupt(
            path,
            format!("it is not valid JSON ({e})"),
        )),
    }
}

fn strip_created_ns(
    mut fields: Map<String, Value>,
    path: &Path,
) -> Result<(Map<String, Value>, Option<i64>)> {
    match fields.shift_remove(CREATED_NS_KEY) {
        None => Ok((fields, None)),
        Some(Value::Number(n)) if n.as_i64().is_some() => Ok((fields, n.as_i64())),
        Some(_) => Err(CoreError::corrupt(
            path,
            "\"_created_ns\" is not an integer",
        )),
    }
}

fn internal_name_of(fields: &Map<String, Value>, fallback: Option<&str>) -> Option<String> {
    match fields.get("internal_name") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => fallback.map(str::to_string),
    }
}

fn children_key(kind: ChunkKind) -> &'static str {
    match kind {
        ChunkKind::Step => "branches",
        ChunkKind::Branch => "steps",
    }
}

fn child_kind(kind: ChunkKind) -> ChunkKind {
    match kind {
        ChunkKind::Step => ChunkKind::Branch,
        ChunkKind::Branch => ChunkKind::Step,
    }
}

/// Take the children object out of `fields`, leaving its key in place (so the output keeps the
/// stored key order) with a `null` to be filled in.
fn take_children(
    fields: &mut Map<String, Value>,
    key: &str,
    path: &Path,
) -> Result<Map<String, Value>> {
    match fields.get_mut(key) {
        None => Ok(Map::new()),
        Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(children)) => Ok(std::mem::take(children)),
        Some(_) => Err(CoreError::corrupt(
            path,
            format!("{key:?} is not a JSON object"),
        )),
    }
}

fn set_children(fields: &mut Map<String, Value>, key: &str, children: Map<String, Value>) {
    match fields.get_mut(key) {
        Some(slot) => *slot = Value::Object(children),
        None => {
            fields.insert(key.to_string(), Value::Object(children));
        }
    }
}

/// Which copy of a node's fields wins when a node is stored more than once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Priority {
    MadeUp,
    InRunLog,
    InChunk,
    OwnChunk,
}

/// Sibling order: embedded nodes in stored order, then chunk nodes by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Position {
    chunked: bool,
    sequence: u64,
    created_ns: i64,
}

struct Node {
    kind: ChunkKind,
    fields: Option<Map<String, Value>>,
    priority: Priority,
    position: Position,
    source: usize,
    children: Vec<String>,
}

#[derive(Default)]
struct Tree {
    nodes: HashMap<String, Node>,
    sources: Vec<PathBuf>,
    sequence: u64,
    /// true: attached; false: left out (salvage).
    attached: HashMap<String, bool>,
}

impl Tree {
    fn add_source(&mut self, path: PathBuf) -> usize {
        self.sources.push(path);
        self.sources.len() - 1
    }

    fn add_chunk(&mut self, mut chunk: Chunk, source: usize) -> Result<()> {
        let key = children_key(chunk.kind);
        let children = take_children(&mut chunk.fields, key, &chunk.path)?;
        let embedded = self.collect_embedded(children, child_kind(chunk.kind), &chunk.path)?;
        let position = Position {
            chunked: true,
            sequence: 0,
            created_ns: chunk.created_ns.unwrap_or(i64::MAX),
        };
        self.insert(
            chunk.name,
            chunk.kind,
            chunk.fields,
            Priority::OwnChunk,
            position,
            source,
        )?;
        for (name, kind, fields, position) in embedded {
            self.insert(name, kind, fields, Priority::InChunk, position, source)?;
        }
        Ok(())
    }

    fn add_embedded_children(
        &mut self,
        children: Map<String, Value>,
        kind: ChunkKind,
        priority: Priority,
        source: usize,
    ) -> Result<()> {
        let path = self.sources[source].clone();
        for (name, kind, fields, position) in self.collect_embedded(children, kind, &path)? {
            self.insert(name, kind, fields, priority, position, source)?;
        }
        Ok(())
    }

    /// Flatten embedded children (at any depth) into nodes, checking their shape first so a
    /// corrupt chunk adds nothing.
    #[allow(clippy::type_complexity)]
    fn collect_embedded(
        &mut self,
        children: Map<String, Value>,
        kind: ChunkKind,
        path: &Path,
    ) -> Result<Vec<(String, ChunkKind, Map<String, Value>, Position)>> {
        let mut out = Vec::new();
        let mut pending: Vec<(String, Value, ChunkKind)> = children
            .into_iter()
            .map(|(k, v)| (k, v, kind))
            .rev()
            .collect();
        while let Some((key, value, kind)) = pending.pop() {
            let Value::Object(mut fields) = value else {
                return Err(CoreError::corrupt(
                    path,
                    format!("{key:?} is not a JSON object"),
                ));
            };
            let name = internal_name_of(&fields, Some(&key)).unwrap_or(key);
            fields.shift_remove(CREATED_NS_KEY);
            let grandchildren = take_children(&mut fields, children_key(kind), path)?;
            self.sequence += 1;
            let position = Position {
                chunked: false,
                sequence: self.sequence,
                created_ns: 0,
            };
            out.push((name, kind, fields, position));
            let child = child_kind(kind);
            pending.extend(grandchildren.into_iter().map(|(k, v)| (k, v, child)).rev());
        }
        Ok(out)
    }

    fn insert(
        &mut self,
        name: String,
        kind: ChunkKind,
        fields: Map<String, Value>,
        priority: Priority,
        position: Position,
        source: usize,
    ) -> Result<()> {
        match self.nodes.get_mut(&name) {
            None => {
                self.nodes.insert(
                    name,
                    Node {
                        kind,
                        fields: Some(fields),
                        priority,
                        position,
                        source,
                        children: Vec::new(),
                    },
                );
            }
            Some(node) => {
                if node.kind != kind {
                    return Err(CoreError::corrupt(
                        &self.sources[source],
                        format!(
                            "{name:?} is stored both as a step and as a branch (also in {})",
                            self.sources[node.source].display()
                        ),
                    ));
                }
                let newer = priority > node.priority
                    || (priority == node.priority
                        && (priority != Priority::OwnChunk
                            || position.created_ns >= node.position.created_ns));
                if newer {
                    node.fields = Some(fields);
                    node.priority = priority;
                    node.source = source;
                }
                node.position = node.position.min(position);
            }
        }
        Ok(())
    }

    /// Attach every node under its parent; returns the root steps.
    fn attach_all(
        &mut self,
        salvage: bool,
        skipped: &mut Vec<(PathBuf, String)>,
    ) -> Result<Vec<String>> {
        let mut names: Vec<String> = self.nodes.keys().cloned().collect();
        names.sort();
        let mut roots = Vec::new();
        for name in names {
            if let Err(err) = self.attach(&name, &mut roots) {
                skip_or_fail(err, salvage, skipped)?;
            }
        }
        Ok(roots)
    }

    fn attach(&mut self, name: &str, roots: &mut Vec<String>) -> Result<bool> {
        if let Some(&done) = self.attached.get(name) {
            return Ok(done);
        }
        let (kind, source) = {
            let node = &self.nodes[name];
            (node.kind, node.source)
        };
        let parent = match self.find_parent(name, kind) {
            Ok(parent) => parent,
            Err(reason) => {
                self.attached.insert(name.to_string(), false);
                self.nodes.remove(name);
                return Err(CoreError::corrupt(&self.sources[source], reason));
            }
        };
        match parent {
            None => roots.push(name.to_string()),
            Some(parent) => {
                if !self.nodes.contains_key(&parent) {
                    self.make_up(&parent, child_kind(kind), source);
                }
                let attached = match self.attach(&parent, roots) {
                    Ok(attached) => attached,
                    Err(err) => {
                        self.attached.insert(name.to_string(), false);
                        self.nodes.remove(name);
                        return Err(err);
                    }
                };
                if !attached {
                    self.attached.insert(name.to_string(), false);
                    self.nodes.remove(name);
                    return Ok(false);
                }
                let position = self.nodes[name].position;
                let parent_node = self.nodes.get_mut(&parent).expect("parent exists");
                parent_node.children.push(name.to_string());
                if parent_node.priority == Priority::MadeUp {
                    parent_node.position = parent_node.position.min(position);
                }
            }
        }
        self.attached.insert(name.to_string(), true);
        Ok(true)
    }

    /// The parent of a node: the longest dot-prefix of its name stored with the parent's kind
    /// (so dots inside step names and map values do not mislead it). A step with no stored
    /// branch above it is a root step; a branch with no stored step above it gets one made up
    /// from its name less the last component. `None` is the run itself.
    fn find_parent(
        &self,
        name: &str,
        kind: ChunkKind,
    ) -> std::result::Result<Option<String>, String> {
        let want = child_kind(kind);
        let mut prefix = name;
        while let Some((head, _)) = prefix.rsplit_once('.') {
            if let Some(node) = self.nodes.get(head) {
                // Made-up steps are guesses: only stored nodes decide where a dot splits.
                if node.kind == want && node.priority != Priority::MadeUp {
                    return Ok(Some(head.to_string()));
                }
            }
            prefix = head;
        }
        match (kind, name.rsplit_once('.')) {
            (ChunkKind::Step, _) => Ok(None),
            (ChunkKind::Branch, None) => Err(format!(
                "branch {name:?} names no step: a branch's internal name is <step>.<branch>"
            )),
            (ChunkKind::Branch, Some((head, _))) => match self.nodes.get(head) {
                Some(node) if node.kind == ChunkKind::Branch => Err(format!(
                    "the parent of branch {name:?}, {head:?}, is a branch where a step is needed"
                )),
                _ => Ok(Some(head.to_string())),
            },
        }
    }

    fn make_up(&mut self, name: &str, kind: ChunkKind, source: usize) {
        let mut fields = Map::new();
        match kind {
            ChunkKind::Step => {
                let short = name.rsplit_once('.').map_or(name, |(_, last)| last);
                fields.insert("name".into(), Value::from(short));
                fields.insert("internal_name".into(), Value::from(name));
                fields.insert("status".into(), Value::from("CREATED"));
                fields.insert("step_type".into(), Value::from("task"));
                fields.insert("message".into(), Value::from(""));
                fields.insert("mock".into(), Value::Bool(false));
                fields.insert("attempts".into(), Value::Array(Vec::new()));
                fields.insert("branches".into(), Value::Null);
                fields.insert("data_catalog".into(), Value::Array(Vec::new()));
            }
            ChunkKind::Branch => {
                fields.insert("internal_name".into(), Value::from(name));
                fields.insert("status".into(), Value::from("CREATED"));
                fields.insert("steps".into(), Value::Null);
                fields.insert("parameters".into(), Value::Object(Map::new()));
            }
        }
        self.nodes.insert(
            name.to_string(),
            Node {
                kind,
                fields: Some(fields),
                priority: Priority::MadeUp,
                position: Position {
                    chunked: true,
                    sequence: 0,
                    created_ns: i64::MAX,
                },
                source,
                children: Vec::new(),
            },
        );
    }

    fn build_children(&mut self, mut names: Vec<String>) -> Map<String, Value> {
        names.sort_by(|a, b| {
            let (pa, pb) = (self.nodes[a].position, self.nodes[b].position);
            pa.cmp(&pb).then_with(|| natural_cmp(a, b))
        });
        let mut out = Map::with_capacity(names.len());
        for name in names {
            let value = self.build(&name);
            out.insert(name, value);
        }
        out
    }

    fn build(&mut self, name: &str) -> Value {
        let node = self.nodes.get_mut(name).expect("attached nodes exist");
        let kind = node.kind;
        let mut fields = node.fields.take().unwrap_or_default();
        let children = std::mem::take(&mut node.children);
        let built = self.build_children(children);
        set_children(&mut fields, children_key(kind), built);
        Value::Object(fields)
    }
}

/// Names in natural order: runs of digits compare as numbers, so `map.2` < `map.10`.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (na, nb) = (trim_zeros(&a[..da]), trim_zeros(&b[..db]));
                let ord = na
                    .len()
                    .cmp(&nb.len())
                    .then_with(|| na.cmp(nb))
                    .then(da.cmp(&db));
                if ord != Ordering::Equal {
                    return ord;
                }
                a = &a[da..];
                b = &b[db..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let zeros = digits.iter().take_while(|&&c| c == b'0').count();
    &digits[zeros..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::chunk_file_name;

    fn write(dir: &Path, name: &str, json: &str) {
        fs::write(dir.join(name), json).unwrap();
    }

    fn merged(dir: &Path) -> Value {
        serde_json::from_slice(&merge_run(dir, false).unwrap().document).unwrap()
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
        let err = merge_run(d, false).unwrap_err();
        assert!(matches!(err, CoreError::Corrupt { .. }));
        assert!(err.to_string().contains("BranchLog-list.json"), "{err}");
        let out = merge_run(d, true).unwrap();
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
            merge_run(&dir.path().join("nope"), false),
            Err(CoreError::NotFound { .. })
        ));
        assert!(matches!(
            merge_run(dir.path(), false),
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
            merge_run(d, false),
            Err(CoreError::Corrupt { .. })
        ));
        assert!(merge_run(d, true).unwrap().skipped.len() == 1);
    }

    #[test]
    fn natural_order() {
        let mut v = vec!["map.10", "map.2", "map.1", "map.02", "b", "a10b", "a9b"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            v,
            ["a9b", "a10b", "b", "map.1", "map.2", "map.02", "map.10"]
        );
    }

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures")
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
}
