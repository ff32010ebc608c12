//! A run's documents read from a run folder (listed once, read in parallel) or taken from
//! memory (object storage), not parsed yet; the tree is built from them.
//!
//! The documents of a run folder are read as every file the store did not create is
//! (`untrusted`), below the folder that holds the run: a link, a FIFO or a device named as a
//! document, or one past the size cap, is a corrupt document naming it.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::tree::{build_tree, Tree};
use crate::chunk::RUN_LOG_FILE;
use crate::error::{CoreError, Result};
use crate::journal::Record;
use crate::names::{chunk_kind_of, object_chunk_kind, ChunkKind};
use crate::untrusted::{FileStamp, Folder};

/// The fewest documents a read hands to another thread at once (see `Contents::read_folder`).
const READS_PER_TASK: usize = 4;

/// A document's name, kind and bytes (`None`: gone since it was listed).
pub(super) type Document = (String, ChunkKind, Result<Option<Vec<u8>>>);

/// A document's bytes and its stamp as the open's `fstat` saw it.
type Stamped = (Vec<u8>, FileStamp);

/// The documents of a run, read (or fetched) but not yet parsed.
pub struct Contents {
    pub(super) location: PathBuf,
    pub(crate) run_log: Vec<u8>,
    pub(super) chunks: Vec<Document>,
    /// The run id the run-level document must name (`None`: not checked).
    pub(super) run_id: Option<String>,
    /// Each document read from a folder (the run-level one included) by its name, with its
    /// stamp as the open's `fstat` saw it before its bytes were read; empty for objects.
    pub(crate) stamps: Vec<(String, FileStamp)>,
}

impl Contents {
    /// Every document of a run folder, read in parallel. With `run_id`, the run-level document
    /// must name that run (a copy of another run's folder is refused:
    /// [`CoreError::RunIdMismatch`]).
    pub fn read_folder(run_dir: &Path, run_id: Option<&str>) -> Result<Contents> {
        let (root, _) = run_place(run_dir);
        Contents::read_folder_in(&Folder::open(root)?, run_dir, run_id)
    }

    /// [`Contents::read_folder`] with the folder that holds the run folder open already.
    pub fn read_folder_in(
        folder: &Folder,
        run_dir: &Path,
        run_id: Option<&str>,
    ) -> Result<Contents> {
        let run_log_path = run_dir.join(RUN_LOG_FILE);
        let mut chunk_names = list_chunks(run_dir, &run_log_path)?;
        chunk_names.sort();
        let (_, name) = run_place(run_dir);
        let run = Path::new(name);
        // The run folder opened once (never through a link), each document by its name in
        // it; when it cannot be, each by `<run>/<name>` below its parent, whose open says why.
        let inside = folder.folder_inside(name);
        let read_document = |document: &str| {
            match &inside {
                Some(inside) => inside.read_stamped(Path::new(document)),
                None => folder.read_stamped(&run.join(document)),
            }
            .map_err(CoreError::as_document)
        };
        let (run_log, run_log_stamp) =
            read_document(RUN_LOG_FILE)?.ok_or_else(|| CoreError::NotFound {
                path: run_log_path.clone(),
            })?;
        let read = |(name, _): &(String, ChunkKind)| read_document(name);
        // On every core in a pool, in pieces of at least READS_PER_TASK documents: a small
        // document is read in about 10 us, and handing a piece to another thread costs 5-20 us,
        // so a run of a few documents is read on this thread.
        let contents: Vec<Result<Option<Stamped>>> = if in_installed_pool() {
            chunk_names
                .par_iter()
                .with_min_len(READS_PER_TASK)
                .map(read)
                .collect()
        } else {
            chunk_names.iter().map(read).collect()
        };
        let mut stamps = Vec::with_capacity(contents.len() + 1);
        stamps.push((RUN_LOG_FILE.to_string(), run_log_stamp));
        let chunks = chunk_names
            .into_iter()
            .zip(contents)
            .map(|((name, kind), content)| {
                let content = content.map(|read| {
                    read.map(|(bytes, stamp)| {
                        stamps.push((name.clone(), stamp));
                        bytes
                    })
                });
                (name, kind, content)
            })
            .collect();
        Ok(Contents {
            location: run_dir.to_path_buf(),
            run_log,
            chunks,
            run_id: run_id.map(str::to_string),
            stamps,
        })
    }

    /// The objects of a run in memory; names that are not chunks are left out. With `run_id`,
    /// the run-level document must name that run.
    pub fn from_objects(
        location: &Path,
        run_log: Vec<u8>,
        objects: Vec<(String, Vec<u8>)>,
        run_id: Option<&str>,
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
            run_id: run_id.map(str::to_string),
            stamps: Vec::new(),
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
pub(crate) fn in_installed_pool() -> bool {
    rayon::current_thread_index().is_some()
}

/// The folder that holds a run folder and the run folder's name in it: documents are opened
/// below the former, so no link is followed from the run folder down.
pub(crate) fn run_place(run_dir: &Path) -> (&Path, &OsStr) {
    match (run_dir.parent(), run_dir.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            (parent, name)
        }
        _ => (run_dir, OsStr::new(".")),
    }
}

/// A whole document below `folder`, as a store reads one (see the module's documentation);
/// `None` when it does not exist.
pub(crate) fn read_whole(folder: &Folder, below: &Path) -> Result<Option<Vec<u8>>> {
    folder.read(below).map_err(CoreError::as_document)
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
