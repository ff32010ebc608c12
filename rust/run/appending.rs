//! Appending records to this process's journal of a run: stamps handed out under the run's
//! lock, one frame each, one sync, room made ahead of the journal with `fsync`; a write to an
//! ended run is folded at once.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use rustix::fs::FallocateFlags;
use rustix::io::Errno;

use super::{Run, State, LOCK_FILE};
use crate::chunk::{document_status, now_ns};
use crate::error::{CoreError, Result};
use crate::journal::{encode_frame, journal_path, new_journal_name, NewRecord};
use crate::merger::read_whole;
use crate::writer::fsync_folder;

impl Run {
    /// Append records to this process's journal, as one write: one lock, one frame each, one
    /// sync. Returns when they are durable (with `fsync`) and visible to every reader.
    ///
    /// A write to a run that has ended (its `RunLog.json` says so: its end was folded) is
    /// folded at once, so that what runnable reads stays whole: runnable's executor stores the
    /// last step once more after it has set the run's status. The check costs one read, made
    /// only when the append starts a journal: the fold that ended the run removed them all.
    pub fn append(&self, records: &[NewRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let started_journal = self.append_to_journal(records)?;
        if started_journal && self.has_ended().unwrap_or(false) {
            // The write is done (durable, visible to our readers) whatever happens here: a fold
            // that fails (the lock timed out) leaves the record in its journal, for the next
            // write or `runlog fold`, and `runlog show` says so.
            let _ = self.fold_all();
        }
        Ok(())
    }

    /// Whether the run's document says it has ended.
    fn has_ended(&self) -> Result<bool> {
        let run_log = read_whole(&self.run_log_path())?.ok_or_else(|| self.not_found())?;
        Ok(document_status(&run_log).is_some_and(|s| s == "SUCCESS" || s == "FAIL"))
    }

    /// The append itself; whether it started a journal.
    fn append_to_journal(&self, records: &[NewRecord]) -> Result<bool> {
        // No check of the folder's identity here (a system call per write): a run deleted
        // since fails to open its lock file, and one created again has no journal of this
        // name, so a new one is started in it.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let pid = std::process::id();
        if state.pid != pid {
            state.pid = pid;
            state.own = None;
        }
        let lock = self.lock()?;
        let (journal, new_folder) = self.open_journal(&mut state)?;
        let stamp = next_stamps(lock.file(), records.len() as i64, &self.dir)?;
        let mut frames = Vec::with_capacity(records.iter().map(|r| r.body.len() + 64).sum());
        for (i, record) in records.iter().enumerate() {
            encode_frame(&mut frames, stamp + i as i64, record);
        }
        let path = journal_path(&self.dir, &journal.own.name);
        let end = journal.own.size + frames.len() as u64;
        let mut own = journal.own.clone();
        if self.options.fsync && !state.no_preallocation && end > own.allocated {
            match self.preallocate(&journal.file, own.allocated, end) {
                Ok(allocated) => own.allocated = allocated,
                Err(e) if e == Errno::OPNOTSUPP || e == Errno::NOSYS => {
                    state.no_preallocation = true;
                }
                Err(e) => return Err(CoreError::io("allocate", &path, e.into())),
            }
        }
        if let Err(e) = journal.file.write_all_at(&frames, journal.own.size) {
            // Take the partial frame back, so the next append does not follow garbage; if even
            // that fails, this journal is abandoned (its torn tail is read as never written).
            state.own = journal
                .file
                .set_len(journal.own.size)
                .is_ok()
                .then(|| OwnJournal {
                    allocated: journal.own.size,
                    ..journal.own.clone()
                });
            return Err(CoreError::io("write", &path, e));
        }
        own.size = end;
        state.own = Some(own);
        drop(lock);
        if self.options.fsync {
            journal
                .file
                .sync_data()
                .map_err(|e| CoreError::io("fsync", &path, e))?;
            if journal.created {
                fsync_folder(&self.journal_dir())?;
            }
            if new_folder {
                fsync_folder(&self.dir)?;
            }
        }
        Ok(journal.created)
    }

    /// Make room for the journal to grow to `end` without changing its size at each append
    /// (with `fsync` only): an `fdatasync` of bytes written inside the file's size does not
    /// have to commit a new size and new blocks to the file system's own journal, which is
    /// most of what an append's sync costs otherwise (here, 80-100 us against 120-150).
    /// Readers see the room as zeros after the last frame: a torn tail, never read as records.
    /// Returns the new allocated end.
    fn preallocate(&self, file: &File, from: u64, end: u64) -> rustix::io::Result<u64> {
        let allocated = end.div_ceil(PREALLOCATION) * PREALLOCATION;
        rustix::fs::fallocate(file, FallocateFlags::empty(), from, allocated - from)?;
        Ok(allocated)
    }

    /// This process's journal, opened for writing (created, with `.journals/`, if needed);
    /// whether `.journals/` was created.
    fn open_journal(&self, state: &mut State) -> Result<(OpenJournal, bool)> {
        if let Some(own) = state.own.clone() {
            let path = journal_path(&self.dir, &own.name);
            match OpenOptions::new().write(true).open(&path) {
                Ok(file) => {
                    let journal = OpenJournal {
                        file,
                        created: false,
                        own,
                    };
                    return Ok((journal, false));
                }
                // Folded and removed: start a new one.
                Err(e) if e.kind() == io::ErrorKind::NotFound => state.own = None,
                Err(e) => return Err(CoreError::io("open", &path, e)),
            }
        }
        if !self.run_log_path().exists() {
            return Err(self.not_found());
        }
        let folder = self.journal_dir();
        let new_folder = match fs::create_dir(&folder) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(self.not_found()),
            Err(e) => return Err(CoreError::io("create folder", &folder, e)),
        };
        let name = new_journal_name();
        let path = journal_path(&self.dir, &name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
            .map_err(|e| CoreError::io("create", &path, e))?;
        let own = OwnJournal {
            name,
            size: 0,
            allocated: 0,
        };
        Ok((
            OpenJournal {
                file,
                created: true,
                own,
            },
            new_folder,
        ))
    }
}

/// How far a journal grows at a time with `fsync` (see `Run::preallocate`): an append of a
/// few hundred bytes meets a new allocation once in about a hundred.
pub(super) const PREALLOCATION: u64 = 64 * 1024;

/// This process's journal as it left it (this process is its only writer).
#[derive(Clone)]
pub(super) struct OwnJournal {
    name: String,
    /// The end of its last frame.
    size: u64,
    /// The end of the room made for it (0: none).
    allocated: u64,
}

struct OpenJournal {
    file: File,
    created: bool,
    own: OwnJournal,
}

/// `count` consecutive stamps, the first later than every stamp handed out in this run and no
/// earlier than now; the lock file keeps the last one. Called with the run's lock held.
fn next_stamps(lock: &File, count: i64, dir: &Path) -> Result<i64> {
    let lock_path = dir.join(LOCK_FILE);
    let mut last = [0u8; 8];
    let read = lock
        .read_at(&mut last, 0)
        .map_err(|e| CoreError::io("read", &lock_path, e))?;
    let last = if read == 8 {
        i64::from_le_bytes(last)
    } else {
        0
    };
    let first = now_ns().max(last.saturating_add(1));
    let new_last = first + count - 1;
    lock.write_all_at(&new_last.to_le_bytes(), 0)
        .map_err(|e| CoreError::io("write", &lock_path, e))?;
    Ok(first)
}
