//! A chunked-fs run as one store object sees it (docs/format.md, "chunked-fs"): appending to
//! this process's journal, reading the run (documents with the journals' records on top), and
//! folding records into runnable's documents.
//!
//! **Order.** Every record gets a stamp while the appender holds the run's `flock` (`.lock`):
//! the stamp is the wall clock in nanoseconds, or one more than the last stamp handed out if
//! the clock is not past it (the last stamp is kept in the lock file's first 8 bytes). So
//! stamps are unique in a run, and a write that starts after another returned has a later
//! stamp, whichever process makes it: for one key, the record with the later stamp wins, and
//! every reader applies records in stamp order. A fold takes the same lock, so no record can be
//! stamped before a fold and appended after it.
//!
//! **Durability.** The frame is written while the lock is held and synced (`fdatasync`) after
//! it is released, so other writers do not wait for this one's disk. A journal created by the
//! append is named durably (its folder is fsynced) before the append returns.
//!
//! **Reading.** A store object keeps, per run, the records it has read from each journal and
//! how far it read; each read lists `.journals/` and reads only what was appended since, then
//! the documents it needs. Records already folded into a document (a stamp no later than the
//! document's) are skipped, so a reader sees every acknowledged write exactly once, whether a
//! fold happened before, during or after its read.
//!
//! **Shared folders.** Every file of the run is opened below the folder that holds the run
//! (`untrusted`): no link is followed from there down (the run folder itself, `.journals`, a
//! document, the lock), and a FIFO or a device where a file is expected is an error naming it,
//! never waited for. The run-level document must name the run by its folder's name.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::chunk::{LAYOUT_MARKER, LAYOUT_MARKER_TEXT_1, RUN_LOG_FILE};
use crate::error::{CoreError, Result};
use crate::journal::{journal_path, list_journals, read_from, scan, JOURNAL_DIR};
use crate::lock::FileLock;
use crate::merger::{read_whole, run_place};
use crate::names::{chunk_file_name, ChunkKind};
use crate::spares::Spares;
use crate::untrusted::Folder;

mod appending;
mod folding;
mod index;
mod reading;
mod snapshot;

#[cfg(test)]
mod tests;

use appending::OwnJournal;
use index::Index;

/// The lock file of a run: `flock` target, and the last stamp handed out.
pub const LOCK_FILE: &str = ".lock";

/// How a store writes.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Sync every acknowledged write to the disk.
    pub fsync: bool,
    /// How long to wait for the run's lock.
    pub lock_timeout: Duration,
}

/// Which layout a run folder has (its `.layout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// No marker: written by runnable (documents only) or created by a put of a whole run.
    Documents,
    /// Format 1 of this package: a `StepLog-<key>.json` per step.
    Chunks,
    /// Format 2: runnable's documents at rest, journals meanwhile.
    Journals,
}

/// One run folder, for one store object.
pub struct Run {
    dir: PathBuf,
    /// The folder holding the run folder (a log folder), and the run folder's name in it: the
    /// run's id.
    root: PathBuf,
    name: String,
    options: RunOptions,
    state: Mutex<State>,
    /// Files made ahead for the folds (see `spares`).
    spares: Spares,
    /// The folder holding the run, as appends open it (opened again when it was replaced).
    appends_folder: Mutex<Option<Arc<Folder>>>,
}

#[derive(Default)]
struct State {
    /// The process the state belongs to: a forked child starts its own journal.
    pid: u32,
    /// The run folder's device and inode: a run deleted and created again is another run.
    identity: Option<(u64, u64)>,
    layout: Option<Layout>,
    /// This process's journal once it has appended.
    own: Option<OwnJournal>,
    /// Appends stopped preallocating: the file system cannot (`fallocate` unsupported).
    no_preallocation: bool,
    index: Index,
    /// Branches known to have a document.
    documented: HashSet<String>,
}

impl Run {
    pub fn new(dir: &Path, options: RunOptions) -> Run {
        let (root, name) = run_place(dir);
        Run {
            dir: dir.to_path_buf(),
            root: root.to_path_buf(),
            name: name.to_string_lossy().into_owned(),
            options,
            state: Mutex::new(State::default()),
            spares: Spares::new(dir),
            appends_folder: Mutex::new(None),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn run_log_path(&self) -> PathBuf {
        self.dir.join(RUN_LOG_FILE)
    }

    fn not_found(&self) -> CoreError {
        CoreError::NotFound {
            path: self.run_log_path(),
        }
    }

    fn journal_dir(&self) -> PathBuf {
        self.dir.join(JOURNAL_DIR)
    }

    fn branch_path(&self, name: &str) -> Result<PathBuf> {
        Ok(self.dir.join(chunk_file_name(ChunkKind::Branch, name)?))
    }

    /// The path of a file of the run below the folder that holds it.
    fn below(&self, file: &str) -> PathBuf {
        Path::new(&self.name).join(file)
    }

    /// The folder that holds the run, kept open between appends (an open less per write);
    /// `fresh`: opened again.
    fn root_folder(&self, fresh: bool) -> Result<Arc<Folder>> {
        let mut slot = self
            .appends_folder
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let (false, Some(folder)) = (fresh, slot.as_ref()) {
            return Ok(Arc::clone(folder));
        }
        let folder = Arc::new(self.folder()?);
        *slot = Some(Arc::clone(&folder));
        Ok(folder)
    }

    /// The folder that holds the run, opened for the files below it.
    fn folder(&self) -> Result<Folder> {
        Folder::open(&self.root).map_err(|e| match e {
            CoreError::NotFound { .. } => self.not_found(),
            other => other,
        })
    }

    /// A document of the run (`RunLog.json`, a `BranchLog`), read as a store reads one;
    /// `None` when it does not exist.
    fn read_document(&self, folder: &Folder, file: &str) -> Result<Option<Vec<u8>>> {
        read_whole(folder, &self.below(file))
    }

    /// Whether the run has this document (opened, not read: a FIFO or a link in its place is an
    /// error naming it, as for a read).
    fn has_document(&self, folder: &Folder, file: &str) -> Result<bool> {
        folder
            .open_file(&self.below(file), crate::untrusted::How::Read)
            .map(|found| found.is_some())
            .map_err(CoreError::as_document)
    }

    /// The run-level document, which must exist and name this run.
    fn read_run_log(&self, folder: &Folder) -> Result<Vec<u8>> {
        let bytes = self
            .read_document(folder, RUN_LOG_FILE)?
            .ok_or_else(|| self.not_found())?;
        let fields = crate::merger::parsing::parse_object(&bytes, &self.run_log_path())?;
        crate::merger::check_run_id(&fields, &self.run_log_path(), &self.name)?;
        Ok(bytes)
    }

    /// The state, checked against the process and the run folder: a forked child starts its
    /// own journal, and a run folder replaced since (deleted, created again) is read afresh.
    fn state(&self) -> Result<MutexGuard<'_, State>> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let pid = std::process::id();
        if state.pid != pid {
            state.pid = pid;
            state.own = None;
        }
        let identity = match fs::symlink_metadata(&self.dir) {
            Ok(meta) if meta.is_dir() => (meta.dev(), meta.ino()),
            // Someone else's folder, linked in as this run's: never read through.
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(CoreError::corrupt(
                    &self.dir,
                    "it is a symbolic link, which the store never follows",
                ))
            }
            Ok(_) => return Err(self.not_found()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(self.not_found()),
            Err(e) => return Err(CoreError::io("open", &self.dir, e)),
        };
        match state.identity {
            Some(known) if known != identity => {
                // Another folder under this name: what was read of the old one is void.
                *state = State {
                    pid,
                    identity: Some(identity),
                    ..State::default()
                };
            }
            Some(_) => {}
            None => state.identity = Some(identity),
        }
        Ok(state)
    }

    fn layout(&self, state: &mut State, folder: &Folder) -> Result<Layout> {
        if let Some(layout) = state.layout {
            return Ok(layout);
        }
        let layout = match self.read_document(folder, LAYOUT_MARKER)? {
            None => Layout::Documents,
            Some(text) if text == LAYOUT_MARKER_TEXT_1 => Layout::Chunks,
            Some(_) => Layout::Journals,
        };
        state.layout = Some(layout);
        Ok(layout)
    }

    /// Read what the journals gained since the last look.
    fn catch_up(&self, state: &mut State, folder: &Folder) -> Result<()> {
        let names = list_journals(&self.dir)?;
        let listed: HashSet<&str> = names.iter().map(String::as_str).collect();
        let gone: HashSet<String> = state
            .index
            .cursors
            .keys()
            .filter(|n| !listed.contains(n.as_str()))
            .cloned()
            .collect();
        if !gone.is_empty() {
            for name in &gone {
                state.index.cursors.remove(name);
            }
            state.index.forget_journals(&gone);
        }
        for name in names {
            let cursor = *state.index.cursors.get(&name).unwrap_or(&0);
            let path = journal_path(&self.dir, &name);
            let below = self.below(JOURNAL_DIR).join(&name);
            let Some(bytes) = read_from(folder, &below, cursor)? else {
                continue;
            };
            if bytes.is_empty() {
                state.index.cursors.insert(name, cursor);
                continue;
            }
            let shared: Arc<str> = Arc::from(name.as_str());
            let scanned = scan(&bytes, cursor, &path, &shared, false)?;
            for record in scanned.records {
                state.index.add(record);
            }
            state.index.cursors.insert(name, scanned.end);
        }
        Ok(())
    }

    fn lock(&self, folder: &Folder) -> Result<FileLock> {
        FileLock::acquire_in(folder, &self.below(LOCK_FILE), self.options.lock_timeout).map_err(
            |e| {
                if e.errno() == Some(2) {
                    self.not_found()
                } else {
                    e
                }
            },
        )
    }
}
