//! The stored merge of an ended run (`.merged.json`): stored only against the stats of the
//! documents it was built from, once the file clock has passed their last change, so a reader
//! can trust it while every document still has those stats.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Run;
use crate::chunk::{document_status, snapshot_header, RUN_LOG_FILE, SNAPSHOT_NAME};
use crate::error::{CoreError, Result};
use crate::merger::in_installed_pool;
use crate::names::chunk_kind_of;
use crate::untrusted::FileStamp;

use rayon::prelude::*;

impl Run {
    /// Store the merge of an ended run as its snapshot: by the fold that ended it, so that the
    /// first read reads one file instead of merging every document, or by a full read that
    /// merged it. A cache: a failure to store it (a read-only folder) changes nothing.
    ///
    /// A reader trusts a snapshot whose documents all have the stats it records, so those
    /// must be the stats of what the merge was built from: `expected` holds the stats of the
    /// documents the fold read (taken before it read them) and of those it wrote (taken from
    /// the files it wrote, once named), and the snapshot is stored only if the documents have
    /// exactly these stats at the look. Anything changed since, by any writer, differs.
    ///
    /// A document changed in place (by runnable's own store, say) within the same tick of the
    /// file clock as the look, and to the same size, would keep its stats; so the look counts
    /// only once the clock has moved past every document's last change: the snapshot's temp
    /// file is the probe (its change time is the clock's now), and the look comes after the
    /// probe. Any change after the look then gets a later change time than the one recorded.
    /// Documents a fold has just written need at most one tick (1-10 ms, by the kernel's
    /// timer frequency) before they qualify.
    pub(super) fn store_snapshot(&self, merged: &[u8], expected: &Stats) {
        if !document_status(merged).is_some_and(|s| s == "SUCCESS" || s == "FAIL") {
            return; // readers only use the snapshot of an ended run
        }
        if crate::nesting::check_read(&self.dir, merged).is_err() {
            // Readers hand a snapshot out unchecked: only a run log every reader reads back
            // is stored as one (a fold may have folded in a record someone else wrote).
            return;
        }
        self.store_checked_snapshot(merged, &blake3::hash(merged), expected);
    }

    /// [`Run::store_snapshot`] of a merge its caller has checked already (an ended run, within
    /// [`crate::nesting::MAX_NESTING`]) and hashed: a full read of an ended run knows both (it
    /// checks what it hands out, and hashes it meanwhile on the other core), and parsing and
    /// scanning megabytes again would cost a first read a fifth of its time.
    pub(super) fn store_checked_snapshot(
        &self,
        merged: &[u8],
        hash: &blake3::Hash,
        expected: &Stats,
    ) {
        let path = self.dir.join(SNAPSHOT_NAME);
        let Ok(temp) = crate::writer::temp_path_beside(&path) else {
            return;
        };
        let stored = (|| -> io::Result<bool> {
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&temp)?;
            let deadline = std::time::Instant::now() + SNAPSHOT_PROBE_LIMIT;
            loop {
                let probe = file.metadata()?;
                let probe_ns = probe.ctime() * 1_000_000_000 + probe.ctime_nsec();
                let stats = document_stats(&self.dir).map_err(io::Error::other)?;
                if &stats != expected {
                    return Ok(false); // changed since the fold read or wrote it
                }
                if stats
                    .values()
                    .all(|s| change_time(s).is_some_and(|c| c < probe_ns))
                {
                    write_snapshot_file(&file, &stats, hash, merged)?;
                    drop(file);
                    fs::rename(&temp, &path)?;
                    return Ok(true);
                }
                if std::time::Instant::now() > deadline {
                    return Ok(false);
                }
                std::thread::sleep(Duration::from_millis(1));
                file.write_all_at(b" ", 0)?; // moves the probe's change time to now
            }
        })();
        if !matches!(stored, Ok(true)) {
            let _ = fs::remove_file(&temp);
        }
    }
}

/// A snapshot stored against stats that need no second look: the stamps of the documents as
/// the merge's own reads saw them, every one settled long before those reads began
/// ([`settled_long_before`]). A document changed after its stamp was taken has another stamp
/// now (a later change time: the file clock cannot still be in the tick of a change made
/// [`SNAPSHOT_SETTLED_NS`] before), so a reader never takes this snapshot for that state.
///
/// In two halves, so that a full read writes the file while it checks the merge on the other
/// core: [`Run::write_settled_snapshot`] hashes the merge and writes it to a temp file beside
/// the run's documents, and [`Run::name_snapshot`] names it once the check passed (a reader
/// skips temp files), or removes it.
impl Run {
    pub(super) fn write_settled_snapshot(&self, merged: &[u8], stats: &Stats) -> Option<PathBuf> {
        let path = self.dir.join(SNAPSHOT_NAME);
        let temp = crate::writer::temp_path_beside(&path).ok()?;
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&temp)
            .and_then(|file| write_snapshot_file(&file, stats, &blake3::hash(merged), merged));
        if written.is_err() {
            let _ = fs::remove_file(&temp);
            return None;
        }
        Some(temp)
    }

    /// Name the temp file [`Run::write_settled_snapshot`] wrote as the run's snapshot when the
    /// merge in it passed its check (`keep`), else remove it; a cache, so a failure is ignored.
    pub(super) fn name_snapshot(&self, temp: &Path, keep: bool) {
        if !keep || fs::rename(temp, self.dir.join(SNAPSHOT_NAME)).is_err() {
            let _ = fs::remove_file(temp);
        }
    }
}

/// A snapshot's header, then the merge from the caller's buffer (no copy of it), into its temp
/// file.
fn write_snapshot_file(
    file: &fs::File,
    stats: &Stats,
    hash: &blake3::Hash,
    merged: &[u8],
) -> io::Result<()> {
    let header = snapshot_header(stats, hash, merged.len(), 0);
    file.write_all_at(&header, 0)?;
    file.write_all_at(merged, header.len() as u64)
}

/// How long every document of a run must have been unchanged before a merge of it is stored
/// as its snapshot. Where file times are coarse (older kernels: one clock tick, a few ms), a
/// document changed in place within the tick of the look that recorded its time could keep
/// that time; one whose time is older than this by the look's own clock cannot.
const SNAPSHOT_SETTLED_NS: i64 = 100_000_000;

/// Each document's stats by its name (see [`document_stats`]).
pub(super) type Stats = HashMap<String, String>;

/// What identifies a document's state: `<inode>-<size>-<mtime ns>-<ctime ns>`.
pub(super) fn stat_stamp(meta: &fs::Metadata) -> String {
    FileStamp::of_metadata(meta).text()
}

/// Each document of a run folder (`RunLog.json`, `BranchLog-*.json`, `StepLog-*.json`) with
/// what changes when it changes: `<inode>-<size>-<mtime ns>-<ctime ns>` (a replace makes a new
/// inode; a rewrite in place moves the times).
pub(super) fn document_stats(dir: &Path) -> Result<Stats> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(CoreError::NotFound {
                path: dir.join(RUN_LOG_FILE),
            })
        }
        Err(e) => return Err(CoreError::io("list", dir, e)),
    };
    let mut documents = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| CoreError::io("list", dir, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if name != RUN_LOG_FILE && chunk_kind_of(&name).is_none() {
            continue;
        }
        documents.push(entry);
    }
    // A thousand-branch run has a thousand documents: their stats are taken on every core
    // when the caller runs in a pool (a full read does; see `in_installed_pool`), in pieces of
    // at least STATS_PER_TASK. A stat costs 1-2 us and handing a piece to another thread
    // (its wake-up) 5-20 us: a run of a few documents, most runs, is stated on this thread.
    let stat = |entry: &fs::DirEntry| match entry.metadata() {
        Ok(meta) => Ok(Some((
            entry.file_name().to_string_lossy().into_owned(),
            stat_stamp(&meta),
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CoreError::io("stat", &entry.path(), e)),
    };
    let stamped: Vec<Result<Option<(String, String)>>> = if in_installed_pool() {
        documents
            .par_iter()
            .with_min_len(STATS_PER_TASK)
            .map(stat)
            .collect()
    } else {
        documents.iter().map(stat).collect()
    };
    let mut stats = HashMap::with_capacity(stamped.len());
    for stamp in stamped {
        if let Some((name, stamp)) = stamp? {
            stats.insert(name, stamp);
        }
    }
    Ok(stats)
}

/// The fewest document stats [`document_stats`] hands to another thread at once (see there).
const STATS_PER_TASK: usize = 64;

/// Whether every document's last change is older than [`SNAPSHOT_SETTLED_NS`] before
/// `look_ns` (by the wall clock, which the file clock lags, never leads).
pub(super) fn settled_long_before(stamps: &[(String, FileStamp)], look_ns: i64) -> bool {
    let limit = look_ns - SNAPSHOT_SETTLED_NS;
    stamps.iter().all(|(_, stamp)| stamp.ctime_ns < limit)
}

/// The stats of the documents a read stamped ([`crate::merger::Contents`]'s `stamps`), as
/// [`document_stats`] gives them.
pub(super) fn stats_of(stamps: &[(String, FileStamp)]) -> Stats {
    stamps
        .iter()
        .map(|(name, stamp)| (name.clone(), stamp.text()))
        .collect()
}

/// The change time (ns) in a document's stats (see [`document_stats`]).
fn change_time(stamp: &str) -> Option<i64> {
    stamp.rsplit('-').next()?.parse().ok()
}

/// How long the fold that ends a run waits for the file clock to pass its documents' last
/// change before it stores the snapshot (see `store_snapshot`): a few ticks of the slowest
/// timer frequency (100 Hz).
const SNAPSHOT_PROBE_LIMIT: Duration = Duration::from_millis(50);
