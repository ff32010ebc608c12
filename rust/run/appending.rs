//! Appending records to this process's journal of a run: stamps handed out under the run's
//! lock, one frame each, one sync, room made ahead of the journal with `fsync`; a write to an
//! ended run is folded at once.
//!
//! **Stamps that cannot be right.** The lock file keeps the last stamp handed out, and anyone
//! who can write in the run folder can change it. A stamp further ahead of the clock than
//! [`MAX_STAMP_AHEAD_NS`] (or below zero) is not trusted: the next stamp is then derived from
//! the clock and the stamps the journals hold, so it orders after every record in them, and
//! when even that would be implausible the write is refused. Either way an acknowledged write
//! is in the next read: no stamp handed out makes a write look older than what is stored.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use rustix::fs::FallocateFlags;
use rustix::io::Errno;

use super::{Run, State, LOCK_FILE};
use crate::chunk::{document_status, now_ns};
use crate::error::{CoreError, Result};
use crate::journal::{
    encode_frame, journal_path, list_journals, new_journal_name, read_from, scan, NewRecord,
    FRAME_HEADER, JOURNAL_DIR, MAX_STAMP_AHEAD_NS,
};
use crate::untrusted::{Folder, How, MAX_FILE_BYTES};
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
        let run_log = self.read_run_log(&self.folder()?)?;
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
        let mut folder = self.root_folder(false)?;
        let lock = match self.lock(&folder) {
            // The log folder was replaced since it was opened: open it again.
            Err(CoreError::NotFound { .. }) => {
                folder = self.root_folder(true)?;
                self.lock(&folder)?
            }
            other => other?,
        };
        let needed: u64 = records
            .iter()
            .map(|r| (FRAME_HEADER + 13 + r.target.len() + r.body.len()) as u64)
            .sum();
        let (journal, new_folder) = self.open_journal(&mut state, &folder, needed)?;
        let stamp = self.next_stamps(lock.file(), records.len() as i64, &folder)?;
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

    /// This process's journal, opened for writing (created, with `.journals/`, if needed), with
    /// room for `needed` more bytes within the size every reader reads; whether `.journals/`
    /// was created.
    fn open_journal(
        &self,
        state: &mut State,
        folder: &Folder,
        needed: u64,
    ) -> Result<(OpenJournal, bool)> {
        if needed > MAX_JOURNAL_BYTES {
            return Err(CoreError::InvalidArgument(format!(
                "a write of {needed} bytes of records is larger than the {MAX_JOURNAL_BYTES} a \
                 journal holds"
            )));
        }
        if let Some(own) = state.own.clone() {
            if own.size + needed > MAX_JOURNAL_BYTES {
                // Full: a new journal, so that every journal stays within what readers read.
                state.own = None;
            }
        }
        if let Some(own) = state.own.clone() {
            // Kept open since it was created (by this process, which alone writes it), so no
            // one can have put something else under its name; a fold removes it under the lock
            // this append holds, so a link count of zero means folded: start a new one.
            let path = journal_path(&self.dir, &own.name);
            let links = rustix::fs::fstat(&*own.file)
                .map_err(|e| CoreError::io("stat", &path, e.into()))?
                .st_nlink;
            if links > 0 {
                let journal = OpenJournal {
                    file: Arc::clone(&own.file),
                    created: false,
                    own,
                };
                return Ok((journal, false));
            }
            state.own = None;
        }
        if !self.run_log_path().exists() {
            return Err(self.not_found());
        }
        // The lock, opened below the log folder with no link followed, vouches that the run
        // folder is a folder of its own.
        let journals = self.journal_dir();
        let new_folder = match fs::create_dir(&journals) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(self.not_found()),
            Err(e) => return Err(CoreError::io("create folder", &journals, e)),
        };
        let name = new_journal_name();
        let file = Arc::new(
            folder
                .open_file(&self.below(JOURNAL_DIR).join(&name), How::CreateNew)?
                .expect("a journal is created"),
        );
        let own = OwnJournal {
            name,
            file: Arc::clone(&file),
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
    /// Open since this process created it.
    file: Arc<File>,
    /// The end of its last frame.
    size: u64,
    /// The end of the room made for it (0: none).
    allocated: u64,
}

struct OpenJournal {
    file: Arc<File>,
    created: bool,
    own: OwnJournal,
}

/// The largest a journal grows: the size every reader reads, less the room made ahead of the
/// frames (`PREALLOCATION`). A writer starts a new journal before it would pass this.
const MAX_JOURNAL_BYTES: u64 = MAX_FILE_BYTES - PREALLOCATION;

impl Run {
    /// `count` consecutive stamps, the first later than every stamp handed out in this run and
    /// no earlier than now; the lock file keeps the last one. Called with the run's lock held.
    ///
    /// A kept stamp that cannot be right (ahead of the clock by more than
    /// [`MAX_STAMP_AHEAD_NS`], or below zero: written by someone else) is not used: the stamps
    /// are derived from the clock and the latest stamp in the run's journals instead, which a
    /// reader applies records after. Stamps that would themselves be implausible are refused
    /// with [`CoreError::Corrupt`] naming the lock file: such a write could not be read back.
    fn next_stamps(&self, lock: &File, count: i64, folder: &Folder) -> Result<i64> {
        let lock_path = self.dir.join(LOCK_FILE);
        let mut kept = [0u8; 8];
        let read = lock
            .read_at(&mut kept, 0)
            .map_err(|e| CoreError::io("read", &lock_path, e))?;
        let kept = if read == 8 {
            i64::from_le_bytes(kept)
        } else {
            0
        };
        let now = now_ns();
        let latest = now.saturating_add(MAX_STAMP_AHEAD_NS);
        let last = if (0..=latest).contains(&kept) {
            kept
        } else {
            self.latest_journal_stamp(folder)?
        };
        let first = now.max(last.saturating_add(1));
        let new_last = first.saturating_add(count - 1);
        if new_last > latest {
            return Err(CoreError::corrupt(
                &lock_path,
                format!(
                    "the run's stamps are ahead of the clock ({new_last} ns): a write stamped \
                     so could not be read back, so it is refused"
                ),
            ));
        }
        lock.write_all_at(&new_last.to_le_bytes(), 0)
            .map_err(|e| CoreError::io("write", &lock_path, e))?;
        Ok(first)
    }

    /// The latest stamp of any record in the run's journals (0 when there are none): what a
    /// new stamp must be later than when the lock's copy cannot be trusted. Damaged stretches
    /// are passed over (a stamp past the plausible is damage to a reader too).
    fn latest_journal_stamp(&self, folder: &Folder) -> Result<i64> {
        let mut latest = 0;
        for name in list_journals(&self.dir)? {
            let below = self.below(JOURNAL_DIR).join(&name);
            let Some(bytes) = read_from(folder, &below, 0)? else {
                continue;
            };
            let path = journal_path(&self.dir, &name);
            let shared: Arc<str> = Arc::from(name.as_str());
            let scanned = scan(&bytes, 0, &path, &shared, true)?;
            if let Some(stamp) = scanned.records.iter().map(|r| r.stamp).max() {
                latest = latest.max(stamp);
            }
        }
        Ok(latest)
    }
}
