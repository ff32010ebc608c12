//! The tree of a run: every step and branch as a node keyed by its internal name, the newest
//! copy of each kept, journal records applied on top, nodes attached to their parents by name
//! (made up where missing) and siblings put in order.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::contents::{in_installed_pool, Contents};
use super::parsing::{
    child_kind, collect_embedded, embedded_children_of, get, parse_chunk, parse_object, remove,
    take_stamp, Chunk, Fields, Json,
};
use super::records::{apply_record, check_run_record, made_up_branch};
use crate::chunk::{CHUNK_INDEX_KEY, CREATED_NS_KEY, RUN_LOG_FILE};
use crate::error::{CoreError, Result};
use crate::journal::{Key, Record, RecordKind, JOURNAL_DIR};
use crate::names::ChunkKind;

/// The fewest documents a tree build parses on one thread before another may take some.
const PARSES_PER_TASK: usize = 4;

pub(super) fn build_tree<'a>(
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
    // On every core in a pool, a few documents per piece (parsing a small one takes about
    // as long as handing it to another thread).
    let parsed: Vec<Result<Option<Chunk<'a>>>> = if in_installed_pool() {
        contents
            .chunks
            .par_iter()
            .with_min_len(PARSES_PER_TASK)
            .map(parse)
            .collect()
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
        asked: contents.run_id.clone(),
    };
    let mut root = parse_object(&contents.run_log, &run_log_path)?;
    if let Some(asked) = &contents.run_id {
        check_run_id(&root, &run_log_path, asked)?;
    }
    remove(&mut root, CREATED_NS_KEY);
    remove(&mut root, CHUNK_INDEX_KEY);
    tree.root_stamp = take_stamp(&mut root, &run_log_path)?;
    let root_source = tree.add_source(run_log_path.clone());
    let root_steps = embedded_children_of(&root, "steps", &run_log_path)?;
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

/// The run-level fields must name the run asked for: a document copied or written under
/// another run's name is [`CoreError::RunIdMismatch`], never handed out as this run. (One with
/// no run id is no run log: the model that reads it refuses it.)
pub(crate) fn check_run_id(fields: &Fields<'_>, path: &Path, asked: &str) -> Result<()> {
    let found = match get(fields, "run_id") {
        Some(value) => serde_json::from_str::<String>(value.text())
            .map_err(|_| CoreError::corrupt(path, "its \"run_id\" is not a string"))?,
        // Not a run log at all: what reads it says so (a model needs the run id).
        None => return Ok(()),
    };
    if found != asked {
        return Err(CoreError::RunIdMismatch {
            path: path.to_path_buf(),
            asked: asked.to_string(),
            found,
        });
    }
    Ok(())
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
        CoreError::RunIdMismatch { path, asked, found } => CoreError::RunIdMismatch {
            path: path.clone(),
            asked: asked.clone(),
            found: found.clone(),
        },
        CoreError::TooDeep { what, at, limit } => CoreError::TooDeep {
            what: what.clone(),
            at: at.clone(),
            limit: *limit,
        },
        CoreError::InvalidArgument(message) => CoreError::InvalidArgument(message.clone()),
    }
}

/// Which copy of a node's fields wins when a node is stored more than once with one stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Priority {
    MadeUp,
    InRunLog,
    InChunk,
    OwnChunk,
}

/// Sibling order: embedded nodes in stored order, then chunk nodes by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Position {
    pub(super) chunked: bool,
    pub(super) sequence: u64,
    pub(super) created_ns: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Loose,
    Attached,
    LeftOut,
}

pub(super) struct Node<'a> {
    pub(super) name: Cow<'a, str>,
    pub(super) kind: ChunkKind,
    pub(super) fields: Fields<'a>,
    pub(super) priority: Priority,
    pub(super) position: Position,
    /// The stamp of the last journal record in these fields (0: none).
    pub(super) stamp: i64,
    /// Where the winning copy of the fields was read (a document or a journal).
    pub(super) source: usize,
    pub(super) children: Vec<usize>,
    pub(super) state: State,
}

/// A node before it is in the tree.
pub(super) struct NewNode<'a> {
    pub(super) name: Cow<'a, str>,
    pub(super) kind: ChunkKind,
    pub(super) fields: Fields<'a>,
    pub(super) position: Position,
    pub(super) stamp: i64,
}

/// A run's steps and branches, attached.
pub struct Tree<'a> {
    pub(super) nodes: Vec<Node<'a>>,
    pub(super) index: HashMap<Cow<'a, str>, usize>,
    pub(super) sources: Vec<PathBuf>,
    pub(super) sequence: u64,
    pub(super) root: Fields<'a>,
    pub(super) root_stamp: i64,
    pub(super) root_dirty: bool,
    pub(super) roots: Vec<usize>,
    pub(super) salvage: bool,
    pub(super) skipped: Vec<(PathBuf, String)>,
    pub(super) location: PathBuf,
    pub(super) size_hint: usize,
    /// The run id the run's fields must keep (journal records included), when checked.
    pub(super) asked: Option<String>,
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
            // A journal record that would rename the run.
            err @ CoreError::RunIdMismatch { .. } if self.salvage => {
                let reason = err.to_string();
                self.skipped.push((err.path().to_path_buf(), reason));
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
                    if let Some(asked) = &self.asked {
                        check_run_record(record, asked, journal_dir)?;
                    }
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
}

fn kind_word(kind: ChunkKind) -> &'static str {
    match kind {
        ChunkKind::Step => "step",
        ChunkKind::Branch => "branch",
    }
}

/// Why a node has no parent yet.
enum Placement {
    /// Its step is stored nowhere: make it up under this name.
    MakeUp(String),
    /// It cannot be placed (the reason).
    Invalid(String),
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

    #[test]
    fn natural_order() {
        let mut v = vec!["map.10", "map.2", "map.1", "map.02", "b", "a10b", "a9b"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            v,
            ["a9b", "a10b", "b", "map.1", "map.2", "map.02", "map.10"]
        );
    }
}
