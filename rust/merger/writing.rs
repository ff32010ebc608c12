//! The tree written out as JSON: the full run log, the run with its root steps, one branch or
//! one step (the views runnable's stores give), raw values copied byte for byte; and the
//! writers of a key and of the hidden keys, which the folds share.

use super::parsing::{children_key, Fields};
use super::tree::{Priority, State, Tree};
use crate::chunk::{CREATED_NS_KEY, STAMP_KEY};
use crate::names::ChunkKind;

impl Tree<'_> {
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

pub(crate) use crate::json::write_key;

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
