//! The chunk merger: one run folder in, one full run log JSON document out (docs/format.md,
//! "The full run log").
//!
//! The folder is listed once and every chunk is read and parsed in parallel (rayon). Each step
//! and branch, whether it has a chunk of its own or sits embedded in another document (the root
//! steps of a runnable 0.50 `RunLog.json`, the steps of a 0.50 `BranchLog`), becomes a node keyed
//! by its internal name; nodes are attached to their parents by name, steps that branches name
//! but that are stored nowhere are made up, and siblings are put in a deterministic order.
//!
//! Only the top level of each document is parsed, into (key, raw value) pairs borrowed from the
//! file buffers; values are copied to the output as they are. So the cost of a full read is the
//! reading, one validating scan of each file and one copy, with few allocations.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde_json::value::RawValue;

use crate::chunk::{
    parse_top_level, RawObject, Text, CHUNK_INDEX_KEY, CREATED_NS_KEY, RUN_LOG_FILE,
};
use crate::error::{CoreError, Result};
use crate::names::{chunk_kind_of, legacy_created_ns, ChunkKind};

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
    let run_log_bytes = read_whole(&run_log_path)?.ok_or_else(|| CoreError::NotFound {
        path: run_log_path.clone(),
    })?;
    let contents: Vec<Result<Option<Vec<u8>>>> = chunk_names
        .par_iter()
        .map(|(name, _)| read_whole(&run_dir.join(name)))
        .collect();
    let chunks = chunk_names
        .iter()
        .zip(&contents)
        .map(|((name, kind), content)| {
            let content = match content {
                Ok(bytes) => Ok(bytes.as_deref()),
                Err(err) => Err(copy_error(err)),
            };
            (name.as_str(), *kind, content)
        })
        .collect();
    merge_contents(run_dir, &run_log_bytes, chunks, salvage)
}

/// [`merge_run`] of a run already in memory (fetched from object storage): `RunLog.json`'s
/// bytes and `(file name, bytes)` of the other objects; names that are not chunks are ignored.
/// Errors name `location` joined with the file name.
pub fn merge_documents(
    location: &Path,
    run_log: &[u8],
    objects: &[(String, Vec<u8>)],
    salvage: bool,
) -> Result<MergedRun> {
    let mut chunks: Vec<_> = objects
        .iter()
        .filter_map(|(name, bytes)| {
            chunk_kind_of(name).map(|kind| (name.as_str(), kind, Ok(Some(bytes.as_slice()))))
        })
        .collect();
    chunks.sort_by(|a, b| a.0.cmp(b.0));
    merge_contents(location, run_log, chunks, salvage)
}

type ChunkContent<'a> = (&'a str, ChunkKind, Result<Option<&'a [u8]>>);

fn merge_contents(
    location: &Path,
    run_log_bytes: &[u8],
    chunks: Vec<ChunkContent<'_>>,
    salvage: bool,
) -> Result<MergedRun> {
    let run_log_path = location.join(RUN_LOG_FILE);
    let total: usize = chunks
        .iter()
        .map(|(_, _, c)| {
            c.as_ref()
                .ok()
                .and_then(|b| b.as_ref())
                .map_or(0, |b| b.len())
        })
        .sum();
    let parsed: Vec<Result<Option<Chunk<'_>>>> = chunks
        .into_par_iter()
        .map(|(name, kind, content)| match content {
            Ok(Some(bytes)) => parse_chunk(location, name, kind, bytes).map(Some),
            Ok(None) => Ok(None),
            Err(err) => Err(err),
        })
        .collect();

    let mut merge = Merge {
        tree: Tree::default(),
        salvage,
        skipped: Vec::new(),
    };
    let mut root = parse_object(run_log_bytes, &run_log_path)?;
    remove(&mut root, CREATED_NS_KEY);
    let root_source = merge.tree.add_source(run_log_path.clone());
    let root_steps = children_of(&root, "steps", &run_log_path)?;
    let embedded = merge
        .tree
        .collect_embedded(root_steps, ChunkKind::Step, &run_log_path)?;
    for node in embedded {
        merge.tree.insert(node, Priority::InRunLog, root_source)?;
    }
    for chunk in parsed {
        match chunk {
            Ok(Some(chunk)) => {
                let source = merge.tree.add_source(chunk.path.clone());
                if let Err(err) = merge.tree.add_chunk(chunk, source) {
                    merge.skip_or_fail(err)?;
                }
            }
            Ok(None) => {}
            Err(err) => merge.skip_or_fail(err)?,
        }
    }
    let roots = merge.attach_all()?;
    let mut document = Vec::with_capacity(run_log_bytes.len() + total);
    merge
        .tree
        .write_object(&mut document, &root, "steps", roots);
    let mut skipped = merge.skipped;
    let mut seen = std::collections::HashSet::new();
    skipped.retain(|(path, _)| seen.insert(path.clone()));
    Ok(MergedRun { document, skipped })
}

/// Errors are reported from the sequential pass, so the parallel pass hands back a copy.
fn copy_error(err: &CoreError) -> CoreError {
    match err {
        CoreError::Io { op, path, source } => CoreError::Io {
            op,
            path: path.clone(),
            source: match source.raw_os_error() {
                Some(code) => io::Error::from_raw_os_error(code),
                None => io::Error::new(source.kind(), source.to_string()),
            },
        },
        CoreError::Corrupt { path, reason } => CoreError::corrupt(path, reason.clone()),
        CoreError::NotFound { path } => CoreError::NotFound { path: path.clone() },
        CoreError::Exists { path } => CoreError::Exists { path: path.clone() },
        CoreError::LockTimeout { path, timeout_secs } => CoreError::LockTimeout {
            path: path.clone(),
            timeout_secs: *timeout_secs,
        },
        CoreError::NotAFile { path, reason } => CoreError::NotAFile {
            path: path.clone(),
            reason: reason.clone(),
        },
        CoreError::InvalidArgument(message) => CoreError::InvalidArgument(message.clone()),
    }
}

/// A whole file in few system calls (open, read, read, close): chunks are small and never
/// written in place, so no size hint is needed. `None` when it does not exist.
fn read_whole(path: &Path) -> Result<Option<Vec<u8>>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CoreError::io("open", path, e)),
    };
    let mut bytes = Vec::with_capacity(8192);
    file.read_to_end(&mut bytes)
        .map_err(|e| CoreError::io("read", path, e))?;
    Ok(Some(bytes))
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

// --- parsing ---------------------------------------------------------------------------------

/// A field value: raw JSON from a file, or made up by the merger.
#[derive(Debug)]
enum Json<'a> {
    Raw(&'a RawValue),
    Owned(String),
}

impl Json<'_> {
    fn text(&self) -> &str {
        match self {
            Json::Raw(raw) => raw.get(),
            Json::Owned(text) => text,
        }
    }
}

/// The top level of a JSON object in stored order. Documents have a dozen keys, so a vector
/// searched from the end (the last of duplicate keys wins, as in most parsers) beats a map.
type Fields<'a> = Vec<(Cow<'a, str>, Json<'a>)>;

fn get<'f, 'a>(fields: &'f Fields<'a>, key: &str) -> Option<&'f Json<'a>> {
    fields.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn remove<'a>(fields: &mut Fields<'a>, key: &str) -> Option<Json<'a>> {
    let index = fields.iter().rposition(|(k, _)| k == key)?;
    let (_, value) = fields.remove(index);
    fields.retain(|(k, _)| k != key);
    Some(value)
}

/// One chunk file, parsed at the top level.
struct Chunk<'a> {
    path: PathBuf,
    kind: ChunkKind,
    name: Cow<'a, str>,
    created_ns: Option<i64>,
    fields: Fields<'a>,
}

fn parse_chunk<'a>(
    run_dir: &Path,
    file_name: &str,
    kind: ChunkKind,
    bytes: &'a [u8],
) -> Result<Chunk<'a>> {
    let path = run_dir.join(file_name);
    let mut fields = parse_object(bytes, &path)?;
    let created_ns = match remove(&mut fields, CREATED_NS_KEY) {
        None => legacy_created_ns(file_name),
        Some(value) => Some(serde_json::from_str::<i64>(value.text()).map_err(|_| {
            CoreError::corrupt(&path, format!("{CREATED_NS_KEY:?} is not an integer"))
        })?),
    };
    remove(&mut fields, CHUNK_INDEX_KEY);
    let name = internal_name_of(&fields)
        .ok_or_else(|| CoreError::corrupt(&path, "it has no string \"internal_name\""))?;
    // The children must be an object; checked here so a corrupt chunk adds nothing.
    children_of(&fields, children_key(kind), &path)?;
    Ok(Chunk {
        path,
        kind,
        name,
        created_ns,
        fields,
    })
}

fn parse_object<'a>(bytes: &'a [u8], path: &Path) -> Result<Fields<'a>> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| CoreError::corrupt(path, format!("it is not UTF-8 ({e})")))?;
    parse_object_str(text).map_err(|reason| CoreError::corrupt(path, reason))
}

fn parse_object_str(text: &str) -> std::result::Result<Fields<'_>, String> {
    Ok(parse_top_level(text)?
        .into_iter()
        .map(|(key, value)| (key, Json::Raw(value)))
        .collect())
}

fn internal_name_of<'a>(fields: &Fields<'a>) -> Option<Cow<'a, str>> {
    let Json::Raw(raw) = get(fields, "internal_name")? else {
        return None;
    };
    let raw: &'a RawValue = raw;
    match serde_json::from_str::<Text<'a>>(raw.get()) {
        Ok(Text(name)) if !name.is_empty() => Some(name),
        _ => None,
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

/// The embedded children of a document: (key, raw value) in stored order.
fn children_of<'a>(
    fields: &Fields<'a>,
    key: &str,
    path: &Path,
) -> Result<Vec<(Cow<'a, str>, &'a RawValue)>> {
    let Some(Json::Raw(raw)) = get(fields, key) else {
        return Ok(Vec::new());
    };
    let raw: &'a RawValue = raw;
    let text = raw.get();
    if text == "{}" || text == "null" {
        return Ok(Vec::new());
    }
    serde_json::from_str::<RawObject<'a>>(text)
        .map(|object| object.0)
        .map_err(|_| CoreError::corrupt(path, format!("{key:?} is not a JSON object")))
}

// --- the tree --------------------------------------------------------------------------------

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Loose,
    Attached,
    LeftOut,
}

struct Node<'a> {
    name: Cow<'a, str>,
    kind: ChunkKind,
    fields: Fields<'a>,
    priority: Priority,
    position: Position,
    source: usize,
    children: Vec<usize>,
    state: State,
}

/// A node before it is in the tree.
struct NewNode<'a> {
    name: Cow<'a, str>,
    kind: ChunkKind,
    fields: Fields<'a>,
    position: Position,
}

#[derive(Default)]
struct Tree<'a> {
    nodes: Vec<Node<'a>>,
    index: HashMap<Cow<'a, str>, usize>,
    sources: Vec<PathBuf>,
    sequence: u64,
}

impl<'a> Tree<'a> {
    fn add_source(&mut self, path: PathBuf) -> usize {
        self.sources.push(path);
        self.sources.len() - 1
    }

    fn add_chunk(&mut self, chunk: Chunk<'a>, source: usize) -> Result<()> {
        let children = children_of(&chunk.fields, children_key(chunk.kind), &chunk.path)?;
        let embedded = self.collect_embedded(children, child_kind(chunk.kind), &chunk.path)?;
        let own = NewNode {
            name: chunk.name,
            kind: chunk.kind,
            fields: chunk.fields,
            position: Position {
                chunked: true,
                sequence: 0,
                created_ns: chunk.created_ns.unwrap_or(i64::MAX),
            },
        };
        self.insert(own, Priority::OwnChunk, source)?;
        for node in embedded {
            self.insert(node, Priority::InChunk, source)?;
        }
        Ok(())
    }

    /// Flatten embedded children (at any depth) into nodes, checking their shape first so a
    /// corrupt document adds nothing.
    fn collect_embedded(
        &mut self,
        children: Vec<(Cow<'a, str>, &'a RawValue)>,
        kind: ChunkKind,
        path: &Path,
    ) -> Result<Vec<NewNode<'a>>> {
        let mut out = Vec::new();
        let mut pending: Vec<(Cow<'a, str>, &'a RawValue, ChunkKind)> = children
            .into_iter()
            .map(|(k, v)| (k, v, kind))
            .rev()
            .collect();
        while let Some((key, value, kind)) = pending.pop() {
            let mut fields = parse_object_str(value.get())
                .map_err(|_| CoreError::corrupt(path, format!("{key:?} is not a JSON object")))?;
            // A chunk embedded whole (a sealed branch) keeps its creation time and its place.
            let created_ns = remove(&mut fields, CREATED_NS_KEY)
                .and_then(|v| serde_json::from_str::<i64>(v.text()).ok());
            remove(&mut fields, CHUNK_INDEX_KEY);
            let name = internal_name_of(&fields).unwrap_or(key);
            let grandchildren = children_of(&fields, children_key(kind), path)?;
            self.sequence += 1;
            let position = match created_ns {
                Some(created_ns) => Position {
                    chunked: true,
                    sequence: 0,
                    created_ns,
                },
                None => Position {
                    chunked: false,
                    sequence: self.sequence,
                    created_ns: 0,
                },
            };
            out.push(NewNode {
                name,
                kind,
                fields,
                position,
            });
            let child = child_kind(kind);
            pending.extend(grandchildren.into_iter().map(|(k, v)| (k, v, child)).rev());
        }
        Ok(out)
    }

    fn insert(&mut self, new: NewNode<'a>, priority: Priority, source: usize) -> Result<()> {
        let Some(&at) = self.index.get(new.name.as_ref()) else {
            self.index.insert(new.name.clone(), self.nodes.len());
            self.nodes.push(Node {
                name: new.name,
                kind: new.kind,
                fields: new.fields,
                priority,
                position: new.position,
                source,
                children: Vec::new(),
                state: State::Loose,
            });
            return Ok(());
        };
        let node = &mut self.nodes[at];
        if node.kind != new.kind {
            return Err(CoreError::corrupt(
                &self.sources[source],
                format!(
                    "{:?} is stored both as a step and as a branch (also in {})",
                    new.name,
                    self.sources[node.source].display()
                ),
            ));
        }
        let newer = priority > node.priority
            || (priority == node.priority
                && (priority != Priority::OwnChunk
                    || new.position.created_ns >= node.position.created_ns));
        if newer {
            node.fields = new.fields;
            node.priority = priority;
            node.source = source;
        }
        node.position = node.position.min(new.position);
        Ok(())
    }

    /// The parent of a node: the longest dot-prefix of its name stored with the parent's kind
    /// (so dots inside step names and map values do not mislead it). A step with no stored
    /// branch above it is a root step; a branch with no stored step above it gets one made up
    /// from its name less the last component. `Ok(None)` is the run itself; `Err(Some(name))`
    /// a step to make up; `Err(None)` with the reason, a node that cannot be placed.
    fn find_parent(&self, at: usize) -> std::result::Result<Option<usize>, Placement> {
        let node = &self.nodes[at];
        let (name, kind) = (node.name.as_ref(), node.kind);
        let want = child_kind(kind);
        let mut prefix = name;
        while let Some((head, _)) = prefix.rsplit_once('.') {
            if let Some(&parent) = self.index.get(head) {
                let parent_node = &self.nodes[parent];
                // Made-up steps are guesses: only stored nodes decide where a dot splits.
                if parent_node.kind == want && parent_node.priority != Priority::MadeUp {
                    return Ok(Some(parent));
                }
            }
            prefix = head;
        }
        match (kind, name.rsplit_once('.')) {
            (ChunkKind::Step, _) => Ok(None),
            (ChunkKind::Branch, None) => Err(Placement::Invalid(format!(
                "branch {name:?} names no step: a branch's internal name is <step>.<branch>"
            ))),
            (ChunkKind::Branch, Some((head, _))) => match self.index.get(head) {
                Some(&parent) if self.nodes[parent].kind == ChunkKind::Step => Ok(Some(parent)),
                Some(_) => Err(Placement::Invalid(format!(
                    "the parent of branch {name:?}, {head:?}, is a branch where a step is needed"
                ))),
                None => Err(Placement::MakeUp(head.to_string())),
            },
        }
    }

    fn make_up(&mut self, name: String, kind: ChunkKind, source: usize) -> usize {
        let text = |value: &str| Json::Owned(serde_json::Value::from(value).to_string());
        let literal = |value: &str| Json::Owned(value.to_string());
        let mut fields: Fields<'a> = Vec::new();
        let mut add = |key: &'static str, value: Json<'a>| fields.push((Cow::Borrowed(key), value));
        match kind {
            ChunkKind::Step => {
                let short = name
                    .rsplit_once('.')
                    .map_or(name.as_str(), |(_, last)| last);
                add("name", text(short));
                add("internal_name", text(&name));
                add("status", text("CREATED"));
                add("step_type", text("task"));
                add("message", text(""));
                add("mock", literal("false"));
                add("attempts", literal("[]"));
                add("branches", literal("{}"));
                add("data_catalog", literal("[]"));
            }
            ChunkKind::Branch => {
                add("internal_name", text(&name));
                add("status", text("CREATED"));
                add("steps", literal("{}"));
                add("parameters", literal("{}"));
            }
        }
        let at = self.nodes.len();
        let name: Cow<'a, str> = Cow::Owned(name);
        self.index.insert(name.clone(), at);
        self.nodes.push(Node {
            name,
            kind,
            fields,
            priority: Priority::MadeUp,
            position: Position {
                chunked: true,
                sequence: 0,
                created_ns: i64::MAX,
            },
            source,
            children: Vec::new(),
            state: State::Loose,
        });
        at
    }

    /// Write `fields` as a JSON object with `children` under `key`, at the key's stored place
    /// (appended when the document had none).
    fn write_object(
        &mut self,
        out: &mut Vec<u8>,
        fields: &Fields<'_>,
        key: &str,
        children: Vec<usize>,
    ) {
        out.push(b'{');
        let mut children = Some(children);
        for (index, (name, value)) in fields.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            write_key(out, name);
            if name == key {
                let children = children.take().unwrap_or_default();
                self.write_children(out, children);
            } else {
                out.extend_from_slice(value.text().as_bytes());
            }
        }
        if let Some(children) = children {
            if !fields.is_empty() {
                out.push(b',');
            }
            write_key(out, key);
            self.write_children(out, children);
        }
        out.push(b'}');
    }

    fn write_children(&mut self, out: &mut Vec<u8>, mut children: Vec<usize>) {
        children.sort_by(|&a, &b| {
            let (a, b) = (&self.nodes[a], &self.nodes[b]);
            a.position
                .cmp(&b.position)
                .then_with(|| natural_cmp(&a.name, &b.name))
        });
        out.push(b'{');
        for (index, &child) in children.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            let node = &mut self.nodes[child];
            write_key(out, &node.name);
            let fields = std::mem::take(&mut node.fields);
            let grandchildren = std::mem::take(&mut node.children);
            let key = children_key(node.kind);
            self.write_object(out, &fields, key, grandchildren);
        }
        out.push(b'}');
    }
}

/// Why a node has no parent yet.
enum Placement {
    /// Its step is stored nowhere: make it up under this name.
    MakeUp(String),
    /// It cannot be placed (the reason).
    Invalid(String),
}

fn write_key(out: &mut Vec<u8>, key: &str) {
    // Writing a string into a Vec cannot fail.
    serde_json::to_writer(&mut *out, key).expect("a string serialises");
    out.push(b':');
}

/// The tree being attached, with what salvage leaves out.
struct Merge<'a> {
    tree: Tree<'a>,
    salvage: bool,
    skipped: Vec<(PathBuf, String)>,
}

impl Merge<'_> {
    fn skip_or_fail(&mut self, err: CoreError) -> Result<()> {
        match err {
            CoreError::Corrupt { path, reason } if self.salvage => {
                self.skipped.push((path, reason));
                Ok(())
            }
            other => Err(other),
        }
    }

    /// Attach every node under its parent; returns the root steps.
    fn attach_all(&mut self) -> Result<Vec<usize>> {
        let mut order: Vec<usize> = (0..self.tree.nodes.len()).collect();
        order.sort_by(|&a, &b| self.tree.nodes[a].name.cmp(&self.tree.nodes[b].name));
        let mut roots = Vec::new();
        for at in order {
            self.attach(at, &mut roots)?;
        }
        Ok(roots)
    }

    /// Attach one node (and its parents first); false when it is left out.
    fn attach(&mut self, at: usize, roots: &mut Vec<usize>) -> Result<bool> {
        match self.tree.nodes[at].state {
            State::Attached => return Ok(true),
            State::LeftOut => return Ok(false),
            State::Loose => {}
        }
        let parent = match self.tree.find_parent(at) {
            Ok(parent) => parent,
            Err(Placement::MakeUp(name)) => {
                let (kind, source) = (self.tree.nodes[at].kind, self.tree.nodes[at].source);
                Some(self.tree.make_up(name, child_kind(kind), source))
            }
            Err(Placement::Invalid(reason)) => return self.leave_out(at, reason),
        };
        let Some(parent) = parent else {
            self.tree.nodes[at].state = State::Attached;
            roots.push(at);
            return Ok(true);
        };
        if !self.attach(parent, roots)? {
            let reason = format!("its parent {:?} was left out", self.tree.nodes[parent].name);
            return self.leave_out(at, reason);
        }
        let position = self.tree.nodes[at].position;
        self.tree.nodes[at].state = State::Attached;
        let parent_node = &mut self.tree.nodes[parent];
        parent_node.children.push(at);
        if parent_node.priority == Priority::MadeUp {
            parent_node.position = parent_node.position.min(position);
        }
        Ok(true)
    }

    fn leave_out(&mut self, at: usize, reason: String) -> Result<bool> {
        let node = &mut self.tree.nodes[at];
        node.state = State::LeftOut;
        let path = self.tree.sources[node.source].clone();
        self.skip_or_fail(CoreError::corrupt(&path, reason))?;
        Ok(false)
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
    use serde_json::Value;

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
        let from_memory =
            merge_documents(Path::new("s3://b/p/r"), RUN.as_bytes(), &objects, false).unwrap();
        assert_eq!(from_memory.document, merge_run(d, false).unwrap().document);
        let bad = vec![("StepLog-x.json".to_string(), b"{".to_vec())];
        let err =
            merge_documents(Path::new("s3://b/p/r"), RUN.as_bytes(), &bad, false).unwrap_err();
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
        // Read at run time, not compiled in: the shared build cache serves clones at other
        // paths, and a path baked into a cached test binary would point at another clone.
        let root = std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR");
        Path::new(&root).join("../shared/fixtures")
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
