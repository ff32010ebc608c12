//! The chunk merger: one run folder in, one full run log JSON document out (docs/format.md,
//! "The full run log").
//!
//! The folder is listed once and every document is read and parsed in parallel (rayon). Each
//! step and branch, whether it has a document of its own (a `BranchLog`, a format-1 `StepLog`)
//! or sits embedded in another one (the root steps of `RunLog.json`, the steps of a
//! `BranchLog`), becomes a node keyed by its internal name; the journal records not yet folded
//! are applied on top, each to its node, in stamp order and only when newer than the node's
//! stamp; nodes are attached to their parents by name, steps that branches name but that are
//! stored nowhere are made up, and siblings are put in a deterministic order.
//!
//! Only the top level of each document is parsed, into (key, raw value) pairs borrowed from the
//! file buffers; values are copied to the output as they are. So the cost of a full read is the
//! reading, one validating scan of each file and one copy, with few allocations.
//!
//! The same tree gives the documents a fold writes ([`Tree::fold_documents`]): each branch's
//! `BranchLog` with its direct steps, and `RunLog.json` with the root steps.

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
    RUN_LOG_OBJECT, STAMP_KEY,
};
use crate::error::{CoreError, Result};
use crate::journal::{self, Key, Record, RecordKind, JOURNAL_DIR};
use crate::names::{
    chunk_file_name, chunk_kind_of, legacy_created_ns, object_chunk_kind, ChunkKind,
};

/// A merged run and, in salvage mode, the chunks left out with the reason.
#[derive(Debug)]
pub struct MergedRun {
    pub document: Vec<u8>,
    pub skipped: Vec<(PathBuf, String)>,
}

/// How a run's documents are named where they are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// A run folder: `RunLog.json`, `BranchLog-<key>.json` (runnable's chunked-fs names).
    Folder,
    /// A chunked-minio run of format 2: `RunLog`, `BranchLog-<key>` (runnable's chunked-minio
    /// names).
    Objects,
}

impl Naming {
    pub fn run_log(self) -> &'static str {
        match self {
            Naming::Folder => RUN_LOG_FILE,
            Naming::Objects => RUN_LOG_OBJECT,
        }
    }

    pub fn branch_document(self, internal_name: &str) -> Result<String> {
        let name = chunk_file_name(ChunkKind::Branch, internal_name)?;
        Ok(match self {
            Naming::Folder => name,
            Naming::Objects => name.strip_suffix(".json").unwrap_or(&name).to_string(),
        })
    }
}

/// Read the run in `run_dir` (its documents and its journals) and assemble its full run log.
///
/// Without `salvage`, the first corrupt chunk or journal record fails the read with
/// [`CoreError::Corrupt`] naming it; with `salvage`, corrupt ones are left out and listed. A
/// corrupt `RunLog.json` fails both ways: without it there is no run.
pub fn merge_run(run_dir: &Path, salvage: bool) -> Result<MergedRun> {
    let (records, journal_skips) = journal::read_all(run_dir, salvage)?;
    let folder = Contents::read_folder(run_dir)?;
    let refs: Vec<&Record> = records.iter().collect();
    let mut tree = folder.tree(&refs, salvage)?;
    let document = tree.document();
    let mut skipped = journal_skips;
    skipped.extend(tree.take_skipped());
    Ok(MergedRun { document, skipped })
}

/// [`merge_run`] of a run already in memory (fetched from object storage): the run-level
/// document's bytes and `(name, bytes)` of the other objects; names that are not chunks are
/// ignored. Errors name `location` joined with the name.
pub fn merge_documents(
    location: &Path,
    run_log: &[u8],
    objects: Vec<(String, Vec<u8>)>,
    salvage: bool,
) -> Result<MergedRun> {
    let contents = Contents::from_objects(location, run_log.to_vec(), objects);
    let mut tree = contents.tree(&[], salvage)?;
    let document = tree.document();
    Ok(MergedRun {
        document,
        skipped: tree.take_skipped(),
    })
}

/// A document's name, kind and bytes (`None`: gone since it was listed).
type Document = (String, ChunkKind, Result<Option<Vec<u8>>>);

/// Per document, the `(internal name, object name)` of the steps a fold embeds in it.
pub type FoldPlan = Vec<(String, Vec<(String, String)>)>;

/// The documents of a run, read (or fetched) but not yet parsed.
pub struct Contents {
    location: PathBuf,
    run_log: Vec<u8>,
    chunks: Vec<Document>,
}

impl Contents {
    /// Every document of a run folder, read in parallel.
    pub fn read_folder(run_dir: &Path) -> Result<Contents> {
        let run_log_path = run_dir.join(RUN_LOG_FILE);
        let mut chunk_names = list_chunks(run_dir, &run_log_path)?;
        chunk_names.sort();
        let run_log = read_whole(&run_log_path)?.ok_or_else(|| CoreError::NotFound {
            path: run_log_path.clone(),
        })?;
        let read = |(name, _): &(String, ChunkKind)| read_whole(&run_dir.join(name));
        let contents: Vec<Result<Option<Vec<u8>>>> = if in_installed_pool() {
            chunk_names.par_iter().map(read).collect()
        } else {
            chunk_names.iter().map(read).collect()
        };
        let chunks = chunk_names
            .into_iter()
            .zip(contents)
            .map(|((name, kind), content)| (name, kind, content))
            .collect();
        Ok(Contents {
            location: run_dir.to_path_buf(),
            run_log,
            chunks,
        })
    }

    /// The objects of a run in memory; names that are not chunks are left out.
    pub fn from_objects(
        location: &Path,
        run_log: Vec<u8>,
        objects: Vec<(String, Vec<u8>)>,
    ) -> Contents {
        let mut chunks: Vec<_> = objects
            .into_iter()
            .filter_map(|(name, bytes)| {
                object_chunk_kind(&name).map(|kind| (name, kind, Ok(Some(bytes))))
            })
            .collect();
        chunks.sort_by(|a, b| a.0.cmp(&b.0));
        Contents {
            location: location.to_path_buf(),
            run_log,
            chunks,
        }
    }

    /// The tree of the run: its documents with `records` (journal records not yet folded)
    /// applied on top.
    pub fn tree<'a>(&'a self, records: &[&'a Record], salvage: bool) -> Result<Tree<'a>> {
        build_tree(self, records, salvage)
    }
}

/// Whether this thread is one of a thread pool's: the merge runs in parallel only inside a
/// pool its caller installed (the Python bindings install one per process around every call
/// that reads or merges a whole run). A call that runs outside one (an append that turns into
/// a fold, a partial read of an old-format run) merges on its own thread rather than on
/// rayon's global pool: a forked child inherits that pool without its threads, and waiting on
/// it would hang the child, holding the run's lock.
fn in_installed_pool() -> bool {
    rayon::current_thread_index().is_some()
}

fn build_tree<'a>(
    contents: &'a Contents,
    records: &[&'a Record],
    salvage: bool,
) -> Result<Tree<'a>> {
    let location = contents.location.as_path();
    let run_log_path = location.join(RUN_LOG_FILE);
    let total: usize = contents
        .chunks
        .iter()
        .map(|(_, _, c)| {
            c.as_ref()
                .ok()
                .and_then(|b| b.as_ref())
                .map_or(0, |b| b.len())
        })
        .sum();
    let parse =
        |(name, kind, content): &'a (String, ChunkKind, Result<Option<Vec<u8>>>)| match content {
            Ok(Some(bytes)) => parse_chunk(location, name, *kind, bytes).map(Some),
            Ok(None) => Ok(None),
            Err(err) => Err(copy_error(err)),
        };
    let parsed: Vec<Result<Option<Chunk<'a>>>> = if in_installed_pool() {
        contents.chunks.par_iter().map(parse).collect()
    } else {
        contents.chunks.iter().map(parse).collect()
    };

    let mut tree = Tree {
        nodes: Vec::new(),
        index: HashMap::new(),
        sources: Vec::new(),
        sequence: 0,
        root: Vec::new(),
        root_stamp: 0,
        root_dirty: false,
        roots: Vec::new(),
        salvage,
        skipped: Vec::new(),
        location: location.to_path_buf(),
        size_hint: contents.run_log.len() + total,
    };
    let mut root = parse_object(&contents.run_log, &run_log_path)?;
    remove(&mut root, CREATED_NS_KEY);
    remove(&mut root, CHUNK_INDEX_KEY);
    tree.root_stamp = take_stamp(&mut root, &run_log_path)?;
    let root_source = tree.add_source(run_log_path.clone());
    let root_steps = children_of(&root, "steps", &run_log_path)?;
    let embedded = collect_embedded(root_steps, ChunkKind::Step, &run_log_path)?;
    tree.insert_embedded(embedded, Priority::InRunLog, root_source)?;
    tree.root = root;
    for chunk in parsed {
        match chunk {
            Ok(Some(chunk)) => {
                let source = tree.add_source(chunk.path.clone());
                if let Err(err) = tree.add_chunk(chunk, source) {
                    tree.skip_or_fail(err)?;
                }
            }
            Ok(None) => {}
            Err(err) => tree.skip_or_fail(err)?,
        }
    }
    let mut ordered: Vec<&'a Record> = records.to_vec();
    ordered.sort_by(|a, b| a.order().cmp(&b.order()));
    let journal_dir = location.join(JOURNAL_DIR);
    for record in ordered {
        if let Err(err) = tree.apply(record, &journal_dir) {
            tree.skip_or_fail(err)?;
        }
    }
    tree.attach_all()?;
    let mut seen = std::collections::HashSet::new();
    tree.skipped
        .retain(|(path, reason)| seen.insert((path.clone(), reason.clone())));
    Ok(tree)
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

/// A whole file in few system calls (open, read, read, close): documents are small and never
/// written in place by us, so no size hint is needed. `None` when it does not exist.
pub(crate) fn read_whole(path: &Path) -> Result<Option<Vec<u8>>> {
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
#[derive(Debug, Clone)]
pub(crate) enum Json<'a> {
    Raw(&'a RawValue),
    Owned(String),
}

impl Json<'_> {
    pub(crate) fn text(&self) -> &str {
        match self {
            Json::Raw(raw) => raw.get(),
            Json::Owned(text) => text,
        }
    }
}

/// The top level of a JSON object in stored order. Documents have a dozen keys, so a vector
/// searched from the end (the last of duplicate keys wins, as in most parsers) beats a map.
pub(crate) type Fields<'a> = Vec<(Cow<'a, str>, Json<'a>)>;

pub(crate) fn get<'f, 'a>(fields: &'f Fields<'a>, key: &str) -> Option<&'f Json<'a>> {
    fields.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
}

pub(crate) fn remove<'a>(fields: &mut Fields<'a>, key: &str) -> Option<Json<'a>> {
    let index = fields.iter().rposition(|(k, _)| k == key)?;
    let (_, value) = fields.remove(index);
    fields.retain(|(k, _)| k != key);
    Some(value)
}

/// Replace the value of `key` in place (later duplicates of it go), or add it at the end.
fn set<'a>(fields: &mut Fields<'a>, key: Cow<'a, str>, value: Json<'a>) {
    match fields.iter().position(|(k, _)| *k == key) {
        Some(first) => {
            fields[first].1 = value;
            let mut at = first + 1;
            while at < fields.len() {
                if fields[at].0 == key {
                    fields.remove(at);
                } else {
                    at += 1;
                }
            }
        }
        None => fields.push((key, value)),
    }
}

/// The stamp of the last journal record folded into a document or node (0 when none), taken
/// off its fields. Anything but an integer is corrupt.
pub(crate) fn take_stamp(fields: &mut Fields<'_>, path: &Path) -> Result<i64> {
    match remove(fields, STAMP_KEY) {
        None => Ok(0),
        Some(value) => serde_json::from_str::<i64>(value.text())
            .map_err(|_| CoreError::corrupt(path, format!("{STAMP_KEY:?} is not an integer"))),
    }
}

/// One chunk file, parsed at the top level, with the nodes embedded in it (parsed in the
/// parallel pass too: in a folded run they are most of the bytes).
struct Chunk<'a> {
    path: PathBuf,
    kind: ChunkKind,
    name: Cow<'a, str>,
    created_ns: Option<i64>,
    stamp: i64,
    fields: Fields<'a>,
    embedded: Vec<NewNode<'a>>,
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
    let stamp = take_stamp(&mut fields, &path)?;
    remove(&mut fields, CHUNK_INDEX_KEY);
    let name = internal_name_of(&fields)
        .ok_or_else(|| CoreError::corrupt(&path, "it has no string \"internal_name\""))?;
    // The children are checked here, so a corrupt chunk adds nothing.
    let children = children_of(&fields, children_key(kind), &path)?;
    let embedded = collect_embedded(children, child_kind(kind), &path)?;
    Ok(Chunk {
        path,
        kind,
        name,
        created_ns,
        stamp,
        fields,
        embedded,
    })
}

/// Flatten embedded children (at any depth) into nodes, checking their shape first so a
/// corrupt document adds nothing. Nodes without a creation time are numbered in stored order
/// from 1 (the tree offsets the numbers by the documents before).
fn collect_embedded<'a>(
    children: Vec<(Cow<'a, str>, &'a RawValue)>,
    kind: ChunkKind,
    path: &Path,
) -> Result<Vec<NewNode<'a>>> {
    let mut out = Vec::new();
    let mut sequence = 0;
    let mut pending: Vec<(Cow<'a, str>, &'a RawValue, ChunkKind)> = children
        .into_iter()
        .map(|(k, v)| (k, v, kind))
        .rev()
        .collect();
    while let Some((key, value, kind)) = pending.pop() {
        let mut fields = parse_object_str(value.get())
            .map_err(|_| CoreError::corrupt(path, format!("{key:?} is not a JSON object")))?;
        // A chunk embedded whole (a sealed or folded branch) keeps its creation time, its
        // stamp and its place.
        let created_ns = remove(&mut fields, CREATED_NS_KEY)
            .and_then(|v| serde_json::from_str::<i64>(v.text()).ok());
        let stamp = take_stamp(&mut fields, path)?;
        remove(&mut fields, CHUNK_INDEX_KEY);
        let name = internal_name_of(&fields).unwrap_or(key);
        let grandchildren = children_of(&fields, children_key(kind), path)?;
        sequence += 1;
        let position = match created_ns {
            Some(created_ns) => Position {
                chunked: true,
                sequence: 0,
                created_ns,
            },
            None => Position {
                chunked: false,
                sequence,
                created_ns: 0,
            },
        };
        out.push(NewNode {
            name,
            kind,
            fields,
            position,
            stamp,
        });
        let child = child_kind(kind);
        pending.extend(grandchildren.into_iter().map(|(k, v)| (k, v, child)).rev());
    }
    Ok(out)
}

pub(crate) fn parse_object<'a>(bytes: &'a [u8], path: &Path) -> Result<Fields<'a>> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| CoreError::corrupt(path, format!("it is not UTF-8 ({e})")))?;
    parse_object_str(text).map_err(|reason| CoreError::corrupt(path, reason))
}

pub(crate) fn parse_object_str(text: &str) -> std::result::Result<Fields<'_>, String> {
    Ok(parse_top_level(text)?
        .into_iter()
        .map(|(key, value)| (key, Json::Raw(value)))
        .collect())
}

pub(crate) fn internal_name_of<'a>(fields: &Fields<'a>) -> Option<Cow<'a, str>> {
    let Json::Raw(raw) = get(fields, "internal_name")? else {
        return None;
    };
    let raw: &'a RawValue = raw;
    match serde_json::from_str::<Text<'a>>(raw.get()) {
        Ok(Text(name)) if !name.is_empty() => Some(name),
        _ => None,
    }
}

pub(crate) fn children_key(kind: ChunkKind) -> &'static str {
    match kind {
        ChunkKind::Step => "branches",
        ChunkKind::Branch => "steps",
    }
}

pub(crate) fn child_kind(kind: ChunkKind) -> ChunkKind {
    match kind {
        ChunkKind::Step => ChunkKind::Branch,
        ChunkKind::Branch => ChunkKind::Step,
    }
}

/// The embedded children of a document: (key, raw value) in stored order.
pub(crate) fn children_of<'a>(
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

// --- journal records ---------------------------------------------------------------------------

/// The fields a branch has before anything is recorded of it (a merge record on a branch no
/// record or document put).
pub(crate) fn made_up_branch<'a>(name: &str) -> Fields<'a> {
    vec![
        (
            Cow::Borrowed("internal_name"),
            Json::Owned(serde_json::Value::from(name).to_string()),
        ),
        (
            Cow::Borrowed("status"),
            Json::Owned("\"CREATED\"".to_string()),
        ),
        (Cow::Borrowed("steps"), Json::Owned("{}".to_string())),
        (Cow::Borrowed("parameters"), Json::Owned("{}".to_string())),
    ]
}

/// Apply one journal record to the fields of what it is about. A put replaces every field (the
/// node's children are nodes of their own, so they are kept); a set replaces the fields the
/// body names; a merge merges each object the body names into the stored one, key by key.
/// Hidden keys in a body are ignored, and a run record never replaces the root steps.
pub(crate) fn apply_record<'a>(
    fields: &mut Fields<'a>,
    record: &'a Record,
    journal_dir: &Path,
) -> Result<()> {
    let path = journal_dir.join(&*record.journal);
    let body = std::str::from_utf8(&record.body)
        .map_err(|_| record_error(&path, record, "its body is not UTF-8".to_string()))?;
    let new = parse_object_str(body).map_err(|reason| record_error(&path, record, reason))?;
    let hidden = |key: &str| key == CREATED_NS_KEY || key == STAMP_KEY || key == CHUNK_INDEX_KEY;
    match record.kind {
        RecordKind::StepPut | RecordKind::BranchPut => {
            *fields = new.into_iter().filter(|(k, _)| !hidden(k)).collect();
        }
        RecordKind::RunSet => {
            for (key, value) in new {
                if !hidden(&key) && key != "steps" {
                    set(fields, key, value);
                }
            }
        }
        RecordKind::RunMerge | RecordKind::BranchMerge => {
            for (key, value) in new {
                if hidden(&key) || key == "steps" {
                    continue;
                }
                let merged = merge_objects(get(fields, &key), &value)
                    .map_err(|reason| record_error(&path, record, format!("{key:?} {reason}")))?;
                set(fields, key, Json::Owned(merged));
            }
        }
    }
    Ok(())
}

fn record_error(path: &Path, record: &Record, reason: String) -> CoreError {
    CoreError::corrupt(
        path,
        format!(
            "the journal record at offset {} ({:?}) is not valid: {reason}",
            record.offset, record.target
        ),
    )
}

/// `update` merged into `current` key by key (`dict.update`); a missing or null current value
/// is an empty object.
fn merge_objects(
    current: Option<&Json<'_>>,
    update: &Json<'_>,
) -> std::result::Result<String, String> {
    let update =
        parse_object_str(update.text()).map_err(|_| "must be a JSON object".to_string())?;
    let mut merged: Fields<'_> = match current {
        Some(value) if value.text().trim() != "null" => parse_object_str(value.text())
            .map_err(|_| "is stored as something else than a JSON object".to_string())?,
        _ => Vec::new(),
    };
    for (key, value) in update {
        set(&mut merged, key, value);
    }
    let mut out = Vec::with_capacity(64);
    out.push(b'{');
    for (i, (key, value)) in merged.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_key(&mut out, key);
        out.extend_from_slice(value.text().as_bytes());
    }
    out.push(b'}');
    Ok(String::from_utf8(out).expect("JSON text is UTF-8"))
}

// --- the tree --------------------------------------------------------------------------------

/// Which copy of a node's fields wins when a node is stored more than once with one stamp.
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
    /// The stamp of the last journal record in these fields (0: none).
    stamp: i64,
    /// Where the winning copy of the fields was read (a document or a journal).
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
    stamp: i64,
}

/// A run's steps and branches, attached.
pub struct Tree<'a> {
    nodes: Vec<Node<'a>>,
    index: HashMap<Cow<'a, str>, usize>,
    sources: Vec<PathBuf>,
    sequence: u64,
    root: Fields<'a>,
    root_stamp: i64,
    root_dirty: bool,
    roots: Vec<usize>,
    salvage: bool,
    skipped: Vec<(PathBuf, String)>,
    location: PathBuf,
    size_hint: usize,
}

impl<'a> Tree<'a> {
    fn add_source(&mut self, path: PathBuf) -> usize {
        self.sources.push(path);
        self.sources.len() - 1
    }

    fn skip_or_fail(&mut self, err: CoreError) -> Result<()> {
        match err {
            CoreError::Corrupt { path, reason } if self.salvage => {
                self.skipped.push((path, reason));
                Ok(())
            }
            other => Err(other),
        }
    }

    /// What a salvage read left out: (path, reason).
    pub fn take_skipped(&mut self) -> Vec<(PathBuf, String)> {
        std::mem::take(&mut self.skipped)
    }

    fn add_chunk(&mut self, chunk: Chunk<'a>, source: usize) -> Result<()> {
        let own = NewNode {
            name: chunk.name,
            kind: chunk.kind,
            fields: chunk.fields,
            position: Position {
                chunked: true,
                sequence: 0,
                created_ns: chunk.created_ns.unwrap_or(i64::MAX),
            },
            stamp: chunk.stamp,
        };
        self.insert(own, Priority::OwnChunk, source)?;
        self.insert_embedded(chunk.embedded, Priority::InChunk, source)
    }

    /// Insert nodes embedded in one document, their stored order after every document's
    /// before.
    fn insert_embedded(
        &mut self,
        embedded: Vec<NewNode<'a>>,
        priority: Priority,
        source: usize,
    ) -> Result<()> {
        let base = self.sequence;
        for mut node in embedded {
            if !node.position.chunked {
                node.position.sequence += base;
                self.sequence = self.sequence.max(node.position.sequence);
            }
            self.insert(node, priority, source)?;
        }
        Ok(())
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
                stamp: new.stamp,
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
        // A copy with a later journal stamp is newer whatever holds it; between copies with
        // one stamp (documents of older layouts have none), the document kind decides.
        let newer = match new.stamp.cmp(&node.stamp) {
            Ordering::Greater => true,
            Ordering::Less => false,
            Ordering::Equal => {
                priority > node.priority
                    || (priority == node.priority
                        && (priority != Priority::OwnChunk
                            || new.position.created_ns >= node.position.created_ns))
            }
        };
        if newer {
            node.fields = new.fields;
            node.priority = priority;
            node.source = source;
            node.stamp = new.stamp;
        }
        node.position = node.position.min(new.position);
        Ok(())
    }

    /// Apply one journal record to the node it is about (made when missing), if it is newer
    /// than what the node holds.
    fn apply(&mut self, record: &'a Record, journal_dir: &Path) -> Result<()> {
        let (name, kind) = match record.key() {
            Key::Run => {
                if record.stamp > self.root_stamp {
                    apply_record(&mut self.root, record, journal_dir)?;
                    self.root_stamp = record.stamp;
                    self.root_dirty = true;
                }
                return Ok(());
            }
            Key::Branch(_) => (record.target.as_str(), ChunkKind::Branch),
            Key::Step(_) => (record.target.as_str(), ChunkKind::Step),
        };
        let source_path = journal_dir.join(&*record.journal);
        let at = match self.index.get(name) {
            Some(&at) => at,
            None => {
                let fields = match record.kind {
                    RecordKind::BranchMerge => made_up_branch(name),
                    _ => Vec::new(),
                };
                let source = self.add_source(source_path.clone());
                self.index.insert(Cow::Borrowed(name), self.nodes.len());
                self.nodes.push(Node {
                    name: Cow::Borrowed(name),
                    kind,
                    fields,
                    priority: Priority::OwnChunk,
                    position: Position {
                        chunked: true,
                        sequence: 0,
                        created_ns: record.stamp,
                    },
                    stamp: 0,
                    source,
                    children: Vec::new(),
                    state: State::Loose,
                });
                self.nodes.len() - 1
            }
        };
        if self.nodes[at].kind != kind {
            return Err(CoreError::corrupt(
                &source_path,
                format!(
                    "the journal record at offset {} makes {name:?} a {} where {} holds a {}",
                    record.offset,
                    kind_word(kind),
                    self.sources[self.nodes[at].source].display(),
                    kind_word(self.nodes[at].kind)
                ),
            ));
        }
        if record.stamp <= self.nodes[at].stamp {
            return Ok(()); // folded already (or an older write)
        }
        let mut fields = std::mem::take(&mut self.nodes[at].fields);
        let applied = apply_record(&mut fields, record, journal_dir);
        let node = &mut self.nodes[at];
        node.fields = fields;
        applied?;
        if get(&node.fields, "internal_name").is_none() {
            node.fields.insert(
                0,
                (
                    Cow::Borrowed("internal_name"),
                    Json::Owned(serde_json::Value::from(name).to_string()),
                ),
            );
        }
        node.stamp = record.stamp;
        let source = self.add_source(source_path);
        let node = &mut self.nodes[at];
        node.source = source;
        if node.position.chunked {
            node.position.created_ns = node.position.created_ns.min(record.stamp);
        }
        Ok(())
    }

    /// The parent of a node: the longest dot-prefix of its name stored with the parent's kind
    /// (so dots inside step names and map values do not mislead it). A step with no stored
    /// branch above it is a root step; a branch with no stored step above it gets one made up
    /// from its name less the last component. `Ok(None)` is the run itself.
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
            stamp: 0,
            source,
            children: Vec::new(),
            state: State::Loose,
        });
        at
    }

    /// Attach every node under its parent, and put every node's children in order.
    fn attach_all(&mut self) -> Result<()> {
        let mut order: Vec<usize> = (0..self.nodes.len()).collect();
        order.sort_by(|&a, &b| self.nodes[a].name.cmp(&self.nodes[b].name));
        let mut roots = Vec::new();
        for at in order {
            self.attach(at, &mut roots)?;
        }
        self.sort_children(&mut roots);
        for at in 0..self.nodes.len() {
            let mut children = std::mem::take(&mut self.nodes[at].children);
            self.sort_children(&mut children);
            self.nodes[at].children = children;
        }
        self.roots = roots;
        Ok(())
    }

    fn sort_children(&self, children: &mut [usize]) {
        children.sort_by(|&a, &b| {
            let (a, b) = (&self.nodes[a], &self.nodes[b]);
            a.position
                .cmp(&b.position)
                .then_with(|| natural_cmp(&a.name, &b.name))
        });
    }

    /// Attach one node (and its parents first); false when it is left out.
    fn attach(&mut self, at: usize, roots: &mut Vec<usize>) -> Result<bool> {
        match self.nodes[at].state {
            State::Attached => return Ok(true),
            State::LeftOut => return Ok(false),
            State::Loose => {}
        }
        let parent = match self.find_parent(at) {
            Ok(parent) => parent,
            Err(Placement::MakeUp(name)) => {
                let (kind, source) = (self.nodes[at].kind, self.nodes[at].source);
                Some(self.make_up(name, child_kind(kind), source))
            }
            Err(Placement::Invalid(reason)) => return self.leave_out(at, reason),
        };
        let Some(parent) = parent else {
            self.nodes[at].state = State::Attached;
            roots.push(at);
            return Ok(true);
        };
        if !self.attach(parent, roots)? {
            let reason = format!("its parent {:?} was left out", self.nodes[parent].name);
            return self.leave_out(at, reason);
        }
        let position = self.nodes[at].position;
        self.nodes[at].state = State::Attached;
        let parent_node = &mut self.nodes[parent];
        parent_node.children.push(at);
        if parent_node.priority == Priority::MadeUp {
            parent_node.position = parent_node.position.min(position);
        }
        Ok(true)
    }

    fn leave_out(&mut self, at: usize, reason: String) -> Result<bool> {
        let node = &mut self.nodes[at];
        node.state = State::LeftOut;
        let path = self.sources[node.source].clone();
        self.skip_or_fail(CoreError::corrupt(&path, reason))?;
        Ok(false)
    }

    // --- writing -------------------------------------------------------------------------

    /// The full run log: every step and branch at every depth, hidden keys left out.
    pub fn document(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size_hint);
        self.write_fields(&mut out, &self.root, "steps", &self.roots, Depth::All);
        out
    }

    /// The run's fields and its root steps, each without its branches (a read that is not
    /// full, as runnable's chunked store gives it).
    pub fn shallow(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.root.len() * 64);
        self.write_fields(&mut out, &self.root, "steps", &self.roots, Depth::Children);
        out
    }

    /// One branch with its direct steps (each without its branches), as runnable's
    /// `get_branch_log` gives it; `None` when the run has no such branch.
    pub fn branch(&self, name: &str) -> Option<Vec<u8>> {
        let &at = self.index.get(name)?;
        let node = &self.nodes[at];
        if node.kind != ChunkKind::Branch || node.state != State::Attached {
            return None;
        }
        let mut out = Vec::new();
        self.write_fields(
            &mut out,
            &node.fields,
            "steps",
            &node.children,
            Depth::Children,
        );
        Some(out)
    }

    /// One step without its branches; `None` when the run has no such step (or only made it
    /// up).
    pub fn step(&self, name: &str) -> Option<Vec<u8>> {
        let &at = self.index.get(name)?;
        let node = &self.nodes[at];
        if node.kind != ChunkKind::Step
            || node.state != State::Attached
            || node.priority == Priority::MadeUp
        {
            return None;
        }
        let mut out = Vec::new();
        self.write_fields(&mut out, &node.fields, "branches", &[], Depth::Own);
        Some(out)
    }

    /// Whether the tree holds a branch of this name (stored, attached).
    pub fn has_branch(&self, name: &str) -> bool {
        self.index.get(name).is_some_and(|&at| {
            self.nodes[at].kind == ChunkKind::Branch && self.nodes[at].state == State::Attached
        })
    }

    fn write_fields(
        &self,
        out: &mut Vec<u8>,
        fields: &Fields<'_>,
        key: &str,
        children: &[usize],
        depth: Depth,
    ) {
        out.push(b'{');
        let mut written = false;
        for (index, (name, value)) in fields.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            write_key(out, name);
            if name == key && !written {
                written = true;
                self.write_children(out, children, depth);
            } else {
                out.extend_from_slice(value.text().as_bytes());
            }
        }
        if !written {
            if !fields.is_empty() {
                out.push(b',');
            }
            write_key(out, key);
            self.write_children(out, children, depth);
        }
        out.push(b'}');
    }

    fn write_children(&self, out: &mut Vec<u8>, children: &[usize], depth: Depth) {
        out.push(b'{');
        if depth != Depth::Own {
            for (index, &child) in children.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                let node = &self.nodes[child];
                write_key(out, &node.name);
                let key = children_key(node.kind);
                match depth {
                    Depth::All => self.write_fields(out, &node.fields, key, &node.children, depth),
                    _ => self.write_fields(out, &node.fields, key, &[], Depth::Own),
                }
            }
        }
        out.push(b'}');
    }

    // --- folding ---------------------------------------------------------------------------

    /// The documents a fold must write so that they hold everything this tree holds, in
    /// runnable's layout: `RunLog.json` with the root steps, each branch's document with its
    /// direct steps (every step with `"branches": {}`: branches are documents of their own).
    /// A document is written when it is missing or when something it must hold came from a
    /// journal record or from another document. Each written document and step keeps its
    /// creation time (`_created_ns`) and the stamp of the last record folded into it
    /// (`_stamp`).
    pub fn fold_documents(&self, naming: Naming) -> Result<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::new();
        let run_log = naming.run_log();
        let home = self.location.join(run_log);
        if self.root_dirty || self.roots.iter().any(|&at| self.misplaced(at, &home)) {
            let mut doc = Vec::new();
            self.write_document(&mut doc, &self.root, None, self.root_stamp, &self.roots);
            out.push((run_log.to_string(), doc));
        }
        for node in &self.nodes {
            if node.kind != ChunkKind::Branch || node.state != State::Attached {
                continue;
            }
            let name = naming.branch_document(&node.name)?;
            let home = self.location.join(&name);
            let stale = self.sources[node.source] != home
                || node.children.iter().any(|&at| self.misplaced(at, &home));
            if stale {
                let mut doc = Vec::new();
                let created = created_of(node);
                self.write_document(&mut doc, &node.fields, created, node.stamp, &node.children);
                out.push((name, doc));
            }
        }
        Ok(out)
    }

    /// For object storage, where steps are objects of their own until a fold embeds them: per
    /// document (named by `naming`), the `(internal name, object name)` of each step it holds
    /// whose newest copy is its own object.
    pub fn object_fold_plan(&self, naming: Naming) -> Result<FoldPlan> {
        let own_object = |at: usize| -> Option<(String, String)> {
            let node = &self.nodes[at];
            let file = self.sources[node.source].file_name()?.to_str()?;
            (node.kind == ChunkKind::Step
                && node.priority == Priority::OwnChunk
                && file.starts_with("StepLog-"))
            .then(|| (node.name.to_string(), file.to_string()))
        };
        let mut plan = Vec::new();
        let roots: Vec<_> = self.roots.iter().filter_map(|&at| own_object(at)).collect();
        if !roots.is_empty() {
            plan.push((naming.run_log().to_string(), roots));
        }
        for node in &self.nodes {
            if node.kind != ChunkKind::Branch || node.state != State::Attached {
                continue;
            }
            let steps: Vec<_> = node
                .children
                .iter()
                .filter_map(|&at| own_object(at))
                .collect();
            if !steps.is_empty() {
                plan.push((naming.branch_document(&node.name)?, steps));
            }
        }
        Ok(plan)
    }

    fn misplaced(&self, at: usize, home: &Path) -> bool {
        let node = &self.nodes[at];
        node.priority == Priority::MadeUp || self.sources[node.source] != home
    }

    /// A stored document: hidden keys first, the fields, and the direct children (steps) with
    /// their own hidden keys and no children of theirs.
    fn write_document(
        &self,
        out: &mut Vec<u8>,
        fields: &Fields<'_>,
        created_ns: Option<i64>,
        stamp: i64,
        children: &[usize],
    ) {
        out.push(b'{');
        let hidden = write_hidden(out, created_ns, stamp);
        let mut written = false;
        for (index, (name, value)) in fields.iter().enumerate() {
            if index > 0 || hidden {
                out.push(b',');
            }
            write_key(out, name);
            if name == "steps" && !written {
                written = true;
                self.write_stored_children(out, children);
            } else {
                out.extend_from_slice(value.text().as_bytes());
            }
        }
        if !written {
            if !fields.is_empty() || hidden {
                out.push(b',');
            }
            write_key(out, "steps");
            self.write_stored_children(out, children);
        }
        out.push(b'}');
    }

    fn write_stored_children(&self, out: &mut Vec<u8>, children: &[usize]) {
        out.push(b'{');
        for (index, &child) in children.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            let node = &self.nodes[child];
            write_key(out, &node.name);
            out.push(b'{');
            let hidden = write_hidden(out, created_of(node), node.stamp);
            let mut written = false;
            for (i, (name, value)) in node.fields.iter().enumerate() {
                if i > 0 || hidden {
                    out.push(b',');
                }
                write_key(out, name);
                if name == "branches" && !written {
                    written = true;
                    out.extend_from_slice(b"{}");
                } else {
                    out.extend_from_slice(value.text().as_bytes());
                }
            }
            if !written {
                if !node.fields.is_empty() || hidden {
                    out.push(b',');
                }
                write_key(out, "branches");
                out.extend_from_slice(b"{}");
            }
            out.push(b'}');
        }
        out.push(b'}');
    }
}

fn created_of(node: &Node<'_>) -> Option<i64> {
    (node.position.chunked && node.position.created_ns != i64::MAX)
        .then_some(node.position.created_ns)
}

/// `"_created_ns":<n>,"_stamp":<n>` (each only when known); whether anything was written.
pub(crate) fn write_hidden(out: &mut Vec<u8>, created_ns: Option<i64>, stamp: i64) -> bool {
    let mut any = false;
    if let Some(created) = created_ns {
        write_key(out, CREATED_NS_KEY);
        out.extend_from_slice(created.to_string().as_bytes());
        any = true;
    }
    if stamp > 0 {
        if any {
            out.push(b',');
        }
        write_key(out, STAMP_KEY);
        out.extend_from_slice(stamp.to_string().as_bytes());
        any = true;
    }
    any
}

fn kind_word(kind: ChunkKind) -> &'static str {
    match kind {
        ChunkKind::Step => "step",
        ChunkKind::Branch => "branch",
    }
}

/// How deep a write goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Depth {
    /// Every descendant.
    All,
    /// The direct children, each without children of its own.
    Children,
    /// No children (an empty object under the children key).
    Own,
}

/// Why a node has no parent yet.
enum Placement {
    /// Its step is stored nowhere: make it up under this name.
    MakeUp(String),
    /// It cannot be placed (the reason).
    Invalid(String),
}

pub(crate) fn write_key(out: &mut Vec<u8>, key: &str) {
    // Writing a string into a Vec cannot fail.
    serde_json::to_writer(&mut *out, key).expect("a string serialises");
    out.push(b':');
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
            merge_documents(Path::new("s3://b/p/r"), RUN.as_bytes(), objects, false).unwrap();
        assert_eq!(from_memory.document, merge_run(d, false).unwrap().document);
        let bad = vec![("StepLog-x.json".to_string(), b"{".to_vec())];
        let err = merge_documents(Path::new("s3://b/p/r"), RUN.as_bytes(), bad, false).unwrap_err();
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
}
