//! The chunk merger: a run's documents (a run folder, or a run held in memory) and the journal
//! records not yet folded in, merged into one full run log (docs/format.md, "The full run log"),
//! and the documents a fold writes.
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

use std::path::{Path, PathBuf};

use crate::chunk::{RUN_LOG_FILE, RUN_LOG_OBJECT};
use crate::error::Result;
use crate::journal::{self, Record};
use crate::names::{chunk_file_name, ChunkKind};

mod contents;
mod folding;
pub(crate) mod parsing;
pub(crate) mod records;
mod tree;
pub(crate) mod writing;

#[cfg(test)]
mod tests;

pub use contents::Contents;
pub(crate) use contents::{in_installed_pool, read_whole, run_place};
pub(crate) use records::check_run_record;
pub(crate) use tree::check_run_id;
pub use tree::{natural_cmp, Tree};

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
/// [`CoreError::Corrupt`](crate::error::CoreError::Corrupt) naming it; with `salvage`, corrupt
/// ones are left out and listed. A corrupt `RunLog.json` fails both ways: without it there is
/// no run. With `run_id`, `RunLog.json` must name that run.
pub fn merge_run(run_dir: &Path, salvage: bool, run_id: Option<&str>) -> Result<MergedRun> {
    let (records, journal_skips) = journal::read_all(run_dir, salvage)?;
    let folder = Contents::read_folder(run_dir, run_id)?;
    let refs: Vec<&Record> = records.iter().collect();
    let mut tree = folder.tree(&refs, salvage)?;
    let document = tree.document();
    crate::nesting::check_read(run_dir, &document)?;
    let mut skipped = journal_skips;
    skipped.extend(tree.take_skipped());
    Ok(MergedRun { document, skipped })
}

/// [`merge_run`] of a run already in memory (fetched from object storage, or a run folder's
/// documents read already): the run-level document's bytes and `(name, bytes)` of the other
/// objects; names that are not chunks are ignored. Errors name `location` joined with the
/// name. With `run_id`, the run-level document must name that run.
pub fn merge_documents(
    location: &Path,
    run_log: Vec<u8>,
    objects: Vec<(String, Vec<u8>)>,
    salvage: bool,
    run_id: Option<&str>,
) -> Result<MergedRun> {
    let contents = Contents::from_objects(location, run_log, objects, run_id);
    let mut tree = contents.tree(&[], salvage)?;
    let document = tree.document();
    crate::nesting::check_read(location, &document)?;
    Ok(MergedRun {
        document,
        skipped: tree.take_skipped(),
    })
}

/// Per document, the `(internal name, object name)` of the steps a fold embeds in it.
pub type FoldPlan = Vec<(String, Vec<(String, String)>)>;
