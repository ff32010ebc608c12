//! The documents a fold writes from the tree, in runnable's layout (`RunLog.json` with the
//! root steps, each branch's document with its direct steps), and what a fold of a run in
//! object storage must embed.

use std::path::Path;

use super::parsing::Fields;
use super::tree::{Node, Priority, State, Tree};
use super::writing::{write_hidden, write_key};
use super::{FoldPlan, Naming};
use crate::error::Result;
use crate::names::ChunkKind;

impl Tree<'_> {
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
