//! Fingerprints of a store's runs: for each run a folder lists, a string that changes whenever
//! anything a reader of the run reads changes, and the newest change time seen, so an index can
//! tell which runs to summarize again without reading one.
//!
//! A file's stamp is `<inode>-<size>-<mtime ns>-<ctime ns>`: a replace (the stores write by
//! rename) makes a new inode, a write in place moves the times, and the change time cannot be
//! set back by anyone. A change within the same tick of the file clock as the moment an index
//! summarized the run can keep every stamp (git's "racily clean" entries): hence the newest
//! change time, which the index compares with the time it summarized the run.
//!
//! The scans stat relative to the open folder (`fstatat`, `openat`: one path walk per folder,
//! not per file), never follow a link below the configured folder, and run on the caller's
//! rayon pool.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RawDir, Stat};
use rustix::io::Errno;

use crate::chunk::{LAYOUT_MARKER, RUN_LOG_FILE};
use crate::error::{CoreError, Result};
use crate::journal::{is_journal_name, JOURNAL_DIR};
use crate::names::chunk_kind_of;

/// A run's fingerprint and the newest change time (ns since the epoch) it saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub run_id: OsString,
    pub fingerprint: String,
    pub newest_change_ns: i64,
}

fn change_ns(stat: &Stat) -> i64 {
    stat.st_ctime * 1_000_000_000 + stat.st_ctime_nsec as i64
}

/// `<inode>-<size>-<mtime ns>-<ctime ns>`, as the stamp of a file read below a folder says it
/// (`FileStamp::text`).
fn stamp(stat: &Stat) -> String {
    crate::untrusted::FileStamp::of_stat(stat).text()
}

/// A run folder's fingerprint from the inode of the folder and the name and stamp text of each
/// file stamped in it, sorted by name then text: `<inode>:<count>:<hash>`.
fn folder_fingerprint<'a>(
    ino: u64,
    sorted: impl ExactSizeIterator<Item = (&'a [u8], &'a str)>,
) -> String {
    let count = sorted.len();
    let mut hasher = blake3::Hasher::new();
    for (entry, text) in sorted {
        hasher.update(entry);
        hasher.update(b"\0");
        hasher.update(text.as_bytes());
        hasher.update(b"\n");
    }
    let hex = hasher.finalize().to_hex();
    format!("{ino}:{count}:{}", &hex[..32])
}

/// A run folder's fingerprint that counts one stamped file or two: the run's `RunLog.json`
/// alone, or with the layout marker (a chunk document or journals would make it another, but
/// their count alone does not say so: [`LoneRunLog::matches`] does).
pub struct LoneRunLog<'a> {
    fingerprint: &'a str,
    ino: u64,
    with_marker: bool,
}

impl<'a> LoneRunLog<'a> {
    /// `None` for a fingerprint of no run folder (a run's link, an unreadable one) or of a
    /// folder where more than two files were stamped.
    pub fn of(fingerprint: &'a str) -> Option<LoneRunLog<'a>> {
        let (ino, rest) = fingerprint.split_once(':')?;
        let with_marker = match rest.split_once(':')?.0 {
            "1" => false,
            "2" => true,
            _ => return None,
        };
        Some(LoneRunLog {
            fingerprint,
            ino: ino.parse().ok()?,
            with_marker,
        })
    }

    /// Whether a second file was stamped (the marker, if `matches` says so).
    pub fn with_marker(&self) -> bool {
        self.with_marker
    }

    /// Whether a scan that found the folder holding only `RunLog.json`, stamped `run_log`,
    /// and (when two files were stamped) the layout marker, stat'ed `marker`, makes this very
    /// fingerprint: then the folder held those files, as they are, when it was scanned.
    pub fn matches(&self, run_log: &crate::untrusted::FileStamp, marker: Option<&Stat>) -> bool {
        let mut stamped: Vec<(&[u8], String)> = vec![(RUN_LOG_FILE.as_bytes(), run_log.text())];
        match (self.with_marker, marker) {
            (false, _) => {}
            (true, Some(stat)) => {
                let text = stamp_text(stat, FileType::RegularFile);
                stamped.push((LAYOUT_MARKER.as_bytes(), text));
            }
            (true, None) => return false,
        }
        stamped.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let made = folder_fingerprint(self.ino, stamped.iter().map(|(e, t)| (*e, t.as_str())));
        made == self.fingerprint
    }
}

/// A file's stamp as a fingerprint holds it: marked with its kind when it is not `expected`.
fn stamp_text(stat: &Stat, expected: FileType) -> String {
    format!("{}{}", kind_prefix(stat, expected), stamp(stat))
}

/// A stamp marked with the kind of what is there when it is not what the store writes: a run
/// whose entry is a link (never followed) or a FIFO is listed, and read as unreadable.
fn kind_prefix(stat: &Stat, expected: FileType) -> &'static str {
    let kind = FileType::from_raw_mode(stat.st_mode);
    if kind == expected {
        return "";
    }
    match kind {
        FileType::Symlink => "link:",
        FileType::Directory => "dir:",
        FileType::RegularFile => "file:",
        _ => "special:",
    }
}

/// [`open_dir`], a missing folder being `None`: a folder not made yet holds no runs.
fn open_dir_if_present(path: &Path) -> Result<Option<OwnedFd>> {
    match open_dir(path) {
        Ok(fd) => Ok(Some(fd)),
        Err(CoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The entries of a listed folder a store may take for runs: every name not hidden (the
/// index, locks, temp files and removals cut short are hidden).
fn visible_names(fd: BorrowedFd<'_>, path: &Path) -> Result<Vec<(OsString, FileType, u64)>> {
    Ok(names_in(fd, path)?
        .into_iter()
        .filter(|(name, _, _)| !name.as_bytes().starts_with(b"."))
        .collect())
}

fn open_dir(path: &Path) -> Result<OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        if e == Errno::NOENT {
            CoreError::NotFound {
                path: path.to_path_buf(),
            }
        } else {
            CoreError::io("open", path, e.into())
        }
    })
}

/// Call `each(name, type, inode)` for every name in an open folder (`.` and `..` left out),
/// reading it with `getdents` into a buffer of `buffer` bytes. The folder's own descriptor is
/// read (no second open): it is only ever listed once.
fn each_entry(
    fd: BorrowedFd<'_>,
    buffer: usize,
    mut each: impl FnMut(&[u8], FileType, u64),
) -> std::result::Result<(), Errno> {
    let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); buffer];
    let mut dir = RawDir::new(fd, &mut buf);
    while let Some(entry) = dir.next() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            each(name, entry.file_type(), entry.ino());
        }
    }
    Ok(())
}

/// The names in an open folder with the type and inode the listing gave.
fn names_in(fd: BorrowedFd<'_>, path: &Path) -> Result<Vec<(OsString, FileType, u64)>> {
    let mut names = Vec::new();
    each_entry(fd, 256 << 10, |name, kind, ino| {
        names.push((OsStr::from_bytes(name).to_os_string(), kind, ino));
    })
    .map_err(|e| CoreError::io("list", path, e.into()))?;
    Ok(names)
}

fn lstat_at(fd: BorrowedFd<'_>, name: &OsStr) -> std::result::Result<Stat, Errno> {
    rustix::fs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW)
}

/// Every `<run_id>.json` of a file-system store's folder (what `FileSystemRunLogStore.
/// list_run_ids` lists: names ending in `.json` not starting with a dot, whatever they are)
/// with the stamp of the entry itself. A missing folder has no runs.
pub fn fingerprint_documents(folder: &Path) -> Result<Vec<Fingerprint>> {
    let Some(fd) = open_dir_if_present(folder)? else {
        return Ok(Vec::new());
    };
    let names: Vec<OsString> = names_in(fd.as_fd(), folder)?
        .into_iter()
        .map(|(name, _, _)| name)
        .filter(|name| {
            let bytes = name.as_bytes();
            bytes.ends_with(b".json") && !bytes.starts_with(b".")
        })
        .collect();
    let fd = fd.as_fd();
    Ok(names
        .par_iter()
        .with_min_len(256)
        .filter_map(|name| {
            // Gone since the listing: not listed (as the store's own listing skips it).
            let stat = lstat_at(fd, name).ok()?;
            let run_id = &name.as_bytes()[..name.len() - ".json".len()];
            Some(Fingerprint {
                run_id: OsStr::from_bytes(run_id).to_os_string(),
                fingerprint: stamp_text(&stat, FileType::RegularFile),
                newest_change_ns: change_ns(&stat),
            })
        })
        .collect())
}

/// The fingerprint [`fingerprint_documents`] gives run `run_id`, alone; `None` when the store
/// does not list it.
pub fn fingerprint_document(folder: &Path, run_id: &OsStr) -> Result<Option<Fingerprint>> {
    let Some(fd) = open_dir_if_present(folder)? else {
        return Ok(None);
    };
    let mut name = run_id.to_os_string();
    name.push(".json");
    if name.as_bytes().starts_with(b".") || name.as_bytes().contains(&b'/') {
        return Ok(None);
    }
    Ok(lstat_at(fd.as_fd(), &name).ok().map(|stat| Fingerprint {
        run_id: run_id.to_os_string(),
        fingerprint: stamp_text(&stat, FileType::RegularFile),
        newest_change_ns: change_ns(&stat),
    }))
}

/// The fingerprint [`fingerprint_run_folders`] gives run `run_id`, alone; `None` when the
/// store does not list it.
pub fn fingerprint_run_folder(folder: &Path, run_id: &OsStr) -> Result<Option<Fingerprint>> {
    let Some(fd) = open_dir_if_present(folder)? else {
        return Ok(None);
    };
    let bytes = run_id.as_bytes();
    if bytes.is_empty() || bytes.starts_with(b".") || bytes.contains(&b'/') {
        return Ok(None);
    }
    Ok(run_folder_fingerprint(
        fd.as_fd(),
        run_id,
        FileType::Unknown,
        None,
    ))
}

/// Every run folder of a chunked-fs store's folder (what `ChunkedFileSystemRunLogStore.
/// list_run_ids` lists: entries not starting with a dot that hold a `RunLog.json`) with a
/// fingerprint of every file a reader of the run reads: `RunLog.json`, the `BranchLog-*` and
/// `StepLog-*` documents, the layout marker and each journal in `.journals/`, by name and
/// stamp, hashed. Left out: the snapshot of the merge (`.merged.json`, a cache a read writes),
/// the lock and temp files, and the folder's own times, which those change: a read would
/// otherwise look like a change of the run. The folder's inode is in (a run deleted and
/// written again under its name is another folder).
///
/// A run folder that is a link is never followed below: it is listed when the store lists it
/// (`<name>/RunLog.json` is there through the link, or cannot be looked at), with the link's
/// own stamp marked as a link; the store reads such a run as unreadable.
pub fn fingerprint_run_folders(folder: &Path) -> Result<Vec<Fingerprint>> {
    let Some(fd) = open_dir_if_present(folder)? else {
        return Ok(Vec::new());
    };
    let names = visible_names(fd.as_fd(), folder)?;
    let fd = fd.as_fd();
    Ok(names
        .par_iter()
        .with_min_len(64)
        .filter_map(|(name, kind, ino)| run_folder_fingerprint(fd, name, *kind, Some(*ino)))
        .collect())
}

/// `ino`: the folder's inode as its parent's listing gave it (else it is looked up).
fn run_folder_fingerprint(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    kind: FileType,
    ino: Option<u64>,
) -> Option<Fingerprint> {
    let fingerprint = |text: String, newest: i64| {
        Some(Fingerprint {
            run_id: name.to_os_string(),
            fingerprint: text,
            newest_change_ns: newest,
        })
    };
    // The common case, a folder (the listing's type, or unknown on some file systems): opened
    // without following a link, so a link put there since the listing is not followed either.
    if matches!(kind, FileType::Directory | FileType::Unknown) {
        match rustix::fs::openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(run) => return folder_contents(&run, name, ino),
            // A link or anything but a folder: judged below, as the store's listing does.
            Err(Errno::NOTDIR | Errno::LOOP) => {}
            Err(Errno::NOENT) => return None,
            Err(_) => {
                // A folder that cannot be opened (no permission): listed when the store's
                // look at its RunLog.json fails other than by its absence.
            }
        }
    }
    // What the store's listing does: `lstat(<name>/RunLog.json)`, which goes through a link
    // at <name> (but not at RunLog.json). Missing or not a folder: not a run.
    let mut inside = name.as_bytes().to_vec();
    inside.push(b'/');
    inside.extend_from_slice(RUN_LOG_FILE.as_bytes());
    if let Err(Errno::NOENT | Errno::NOTDIR) = rustix::fs::statat(
        parent,
        OsStr::from_bytes(&inside),
        AtFlags::SYMLINK_NOFOLLOW,
    ) {
        return None;
    }
    let Ok(own) = lstat_at(parent, name) else {
        return None;
    };
    let prefix = match kind_prefix(&own, FileType::Directory) {
        "" => "unreadable:",
        other => other,
    };
    fingerprint(format!("{prefix}{}", stamp(&own)), change_ns(&own))
}

/// The fingerprint of an open run folder; `None` when it holds no `RunLog.json`.
fn folder_contents(run: &OwnedFd, name: &OsStr, ino: Option<u64>) -> Option<Fingerprint> {
    folder_contents_listed(run, name, ino, None)
}

/// [`folder_contents`], telling `listing` (when given) the names it stamped, the listing of
/// `.journals` with that folder's stat taken before it was listed, and the stats the
/// fingerprint was made of (`Listing::last`, in the order `listed_stats` takes them: a later
/// scan with the same stats, in this process or one that loads the saved listings, takes the
/// fingerprint as it is).
fn folder_contents_listed(
    run: &OwnedFd,
    name: &OsStr,
    ino: Option<u64>,
    mut listing: Option<&mut Listing>,
) -> Option<Fingerprint> {
    let ino = match ino {
        Some(ino) => ino,
        None => rustix::fs::fstat(run).ok()?.st_ino,
    };
    let mut read: Vec<Vec<u8>> = Vec::with_capacity(4);
    each_entry(run.as_fd(), 4 << 10, |entry, _, _| {
        let wanted = match std::str::from_utf8(entry) {
            Ok(text) => {
                text == RUN_LOG_FILE
                    || text == LAYOUT_MARKER
                    || text == JOURNAL_DIR
                    || chunk_kind_of(text).is_some()
            }
            Err(_) => false,
        };
        if wanted {
            read.push(entry.to_vec());
        }
    })
    .ok()?;
    if !read.iter().any(|entry| entry == RUN_LOG_FILE.as_bytes()) {
        return None;
    }
    let mut newest = i64::MIN;
    let mut stamps: Vec<(Vec<u8>, String, FileStat)> = Vec::with_capacity(read.len());
    for entry in read {
        let Ok(stat) = lstat_at(run.as_fd(), OsStr::from_bytes(&entry)) else {
            continue; // gone since the listing
        };
        newest = newest.max(change_ns(&stat));
        let is_journals = entry == JOURNAL_DIR.as_bytes();
        let expected = if is_journals {
            FileType::Directory
        } else {
            FileType::RegularFile
        };
        let text = stamp_text(&stat, expected);
        if let Some(listing) = listing.as_deref_mut() {
            listing.names.push(entry.clone());
            if entry == LAYOUT_MARKER.as_bytes() {
                listing.marker = Some((text.clone(), change_ns(&stat)));
            }
        }
        stamps.push((entry, text, FileStat::of(&stat)));
        if is_journals && FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
            let names = journal_stamps(run.as_fd(), &mut stamps, &mut newest);
            if let (Some(listing), Some(names)) = (listing.as_deref_mut(), names) {
                listing.journals = Some((stat_key(&stat), names));
            }
        }
    }
    stamps.sort_unstable_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let found = Fingerprint {
        run_id: name.to_os_string(),
        fingerprint: folder_fingerprint(
            ino,
            stamps
                .iter()
                .map(|(entry, text, _)| (entry.as_slice(), text.as_str())),
        ),
        newest_change_ns: newest,
    };
    if let Some(listing) = listing {
        // `.journals/<j>` sorts right after `.journals`, as `listed_stats` takes them; the
        // layout marker is stamped from its listing, not stat'ed again. Only when every name
        // listed was stamped (none gone between the listing and its stat).
        let stats: Vec<FileStat> = stamps
            .iter()
            .filter(|(entry, _, _)| entry != LAYOUT_MARKER.as_bytes() || listing.marker.is_none())
            .map(|(_, _, stat)| *stat)
            .collect();
        let journals = listing
            .journals
            .as_ref()
            .map_or(0, |(_, names)| names.len());
        let marker = usize::from(listing.marker.is_some());
        if stats.len() == listing.names.len() - marker + journals {
            listing.last = Some((stats, Arc::new(found.clone())));
        }
    }
    Some(found)
}

/// The stamps of the journals in a run's `.journals/` (opened without following a link);
/// the journals' names when it could be listed.
fn journal_stamps(
    run: BorrowedFd<'_>,
    stamps: &mut Vec<(Vec<u8>, String, FileStat)>,
    newest: &mut i64,
) -> Option<Vec<Vec<u8>>> {
    let Ok(journals) = rustix::fs::openat(
        run,
        JOURNAL_DIR,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return None;
    };
    let mut names: Vec<Vec<u8>> = Vec::new();
    let listed = each_entry(journals.as_fd(), 4 << 10, |entry, _, _| {
        if std::str::from_utf8(entry).is_ok_and(is_journal_name) {
            names.push(entry.to_vec());
        }
    });
    if listed.is_err() {
        return None;
    }
    for entry in &names {
        let Ok(stat) = lstat_at(journals.as_fd(), OsStr::from_bytes(entry)) else {
            continue;
        };
        *newest = (*newest).max(change_ns(&stat));
        let mut key = format!("{JOURNAL_DIR}/").into_bytes();
        key.extend_from_slice(entry);
        let text = stamp_text(&stat, FileType::RegularFile);
        stamps.push((key, text, FileStat::of(&stat)));
    }
    Some(names)
}

/// A folder's stat as a key that changes with every name made, removed or renamed in it:
/// (inode, modified ns, changed ns).
pub(super) type StatKey = (u64, i64, i64);

fn stat_key(stat: &Stat) -> StatKey {
    (
        stat.st_ino,
        stat.st_mtime * 1_000_000_000 + stat.st_mtime_nsec as i64,
        change_ns(stat),
    )
}

/// What of a file's stat its stamp is made of (`stamp` and `kind_prefix`): two equal ones give
/// the same stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileStat {
    pub(super) ino: u64,
    pub(super) size: i64,
    pub(super) modified: i64,
    pub(super) changed: i64,
    pub(super) mode: u32,
}

impl FileStat {
    fn of(stat: &Stat) -> Self {
        FileStat {
            ino: stat.st_ino,
            size: stat.st_size,
            modified: stat.st_mtime * 1_000_000_000 + stat.st_mtime_nsec as i64,
            changed: change_ns(stat),
            mode: stat.st_mode & TYPE_BITS,
        }
    }

    fn kind(&self) -> FileType {
        FileType::from_raw_mode(self.mode)
    }

    /// `stamp`, with the kind prefix, written into `text`.
    fn write_stamp(&self, text: &mut String, expected: FileType) {
        use std::fmt::Write;
        let prefix = if self.kind() == expected {
            ""
        } else {
            match self.kind() {
                FileType::Symlink => "link:",
                FileType::Directory => "dir:",
                FileType::RegularFile => "file:",
                _ => "special:",
            }
        };
        let _ = write!(
            text,
            "{prefix}{}-{}-{}-{}",
            self.ino, self.size, self.modified, self.changed
        );
    }
}

/// The file type bits of `st_mode` (`S_IFMT`).
const TYPE_BITS: u32 = 0o170000;

/// The names a run folder's fingerprint stamped, and those of its `.journals`, each with the
/// stat its folder had before it was listed.
#[derive(Debug, Default, Clone)]
pub(super) struct Listing {
    pub(super) folder: Option<StatKey>,
    pub(super) names: Vec<Vec<u8>>,
    pub(super) journals: Option<(StatKey, Vec<Vec<u8>>)>,
    /// The layout marker's stamp and change time: the marker is only ever made whole by a
    /// rename (by this package's writers; runnable's know nothing of it), which changes its
    /// folder, so it is not stamped again while its folder is unchanged.
    pub(super) marker: Option<(String, i64)>,
    /// The stats of the files stamped at the last scan (in the order `listed_stats` takes
    /// them) and the fingerprint they made: the same stats make the same fingerprint, which
    /// is not hashed again (most runs of a warm search).
    pub(super) last: Option<(Vec<FileStat>, Arc<Fingerprint>)>,
}

/// The names a log folder's listing gave (visible ones), with the type and inode of each.
pub(super) type Names = Vec<(OsString, FileType, u64)>;
/// A log folder's names kept for the next scan, with the folder's stat before it was listed.
pub(super) type KeptNames = (StatKey, Arc<Names>);

/// What this process keeps of a log folder it fingerprinted: the listing of the folder itself
/// with the folder's stat before it was listed (reused while that stat is unchanged: one
/// `getdents` of 100,000 names and more saved at every scan), and what the scan made of each
/// name listed (`listed`, `memos`: at the same positions).
#[derive(Default)]
pub(super) struct FolderListings {
    pub(super) names: Option<KeptNames>,
    pub(super) listed: Arc<Names>,
    pub(super) memos: Vec<Memo>,
    /// How many listings (of run folders, and of the log folder itself) were taken anew, or
    /// run folders stamped again from their listing, since these were last saved to or loaded
    /// from a file (`saved_listings`).
    pub(super) unsaved: AtomicU64,
    /// How many the scan that made these took anew.
    pub(super) taken: u64,
    /// Whether the log folder itself was listed anew since these were last saved or loaded.
    pub(super) names_unsaved: AtomicBool,
    /// The key of the stamps the memos' verdicts were saved against (loaded from or saved to a
    /// file), and the key of the stamps the last comparison judged them against (0: none):
    /// verdicts found anew against other stamps are worth saving for the next process.
    pub(super) saved_key: AtomicU64,
    pub(super) judged_key: AtomicU64,
    /// Whether that comparison found every run current (nothing to read again, nothing gone).
    pub(super) quiet: AtomicBool,
}

/// Mark that the runs of log folder `folder` were just compared with stamps of key `key` (see
/// `Verdict`), and whether every run was found current: their verdicts are worth saving if
/// `key` is shared between processes.
pub fn judged_against(folder: &Path, key: u64, quiet: bool) {
    let listings = listings_of(folder);
    listings.judged_key.store(key, Ordering::Relaxed);
    listings.quiet.store(quiet, Ordering::Relaxed);
}

/// What a scan made of one name of a log folder: the stat and fingerprint of its document (the
/// same stat makes the same fingerprint: not formatted again), the fingerprint of its run
/// folder and the listing of the run folder to keep.
#[derive(Debug, Default)]
pub(super) struct Memo {
    pub(super) document: Option<(FileStat, Arc<Fingerprint>)>,
    pub(super) run_folder: Option<Arc<Fingerprint>>,
    pub(super) listing: Option<Arc<Listing>>,
    /// Kept while the name's fingerprint is the same one.
    pub(super) verdict: Verdict,
}

impl Memo {
    /// A name with a run folder's names alone (as a listing saved before marks were).
    #[cfg(test)]
    pub(super) fn with_listing(listing: Option<Arc<Listing>>) -> Memo {
        Memo {
            listing,
            ..Memo::default()
        }
    }
}

/// What this process kept of the log folders it fingerprinted last, by log folder: a run folder
/// whose stat is unchanged holds the same names, and is stamped without listing it again (the
/// listing is most of the cost of a run's fingerprint: an open, two reads of the folder and a
/// close, against one stat of each file). Only a listing taken well after the folder's last
/// change is kept (see `fingerprint_folder`).
static LISTINGS: Mutex<Vec<(PathBuf, Arc<FolderListings>)>> = Mutex::new(Vec::new());
const LISTED_FOLDERS: usize = 8;

pub(super) fn listings_of(folder: &Path) -> Arc<FolderListings> {
    let kept = LISTINGS.lock().unwrap_or_else(|p| p.into_inner());
    kept.iter()
        .find(|(path, _)| path == folder)
        .map(|(_, listings)| Arc::clone(listings))
        .unwrap_or_default()
}

pub(super) fn keep_listings(folder: &Path, listings: FolderListings) {
    let mut kept = LISTINGS.lock().unwrap_or_else(|p| p.into_inner());
    kept.retain(|(path, _)| path != folder);
    if kept.len() >= LISTED_FOLDERS {
        kept.remove(0);
    }
    kept.push((folder.to_path_buf(), Arc::new(listings)));
}

/// The visible names of an open log folder: those of the last listing while the folder's stat
/// is unchanged, else listed again; with what to keep for the next scan (a listing taken when
/// the folder last changed before `trusted_before`, as for run folders).
fn folder_names(
    fd: BorrowedFd<'_>,
    folder: &Path,
    known: &FolderListings,
    trusted_before: i64,
) -> Result<(Arc<Names>, Option<KeptNames>)> {
    let own = rustix::fs::fstat(fd).map_err(|e| CoreError::io("stat", folder, e.into()))?;
    let key = stat_key(&own);
    if let Some((known_key, names)) = &known.names {
        if *known_key == key {
            return Ok((Arc::clone(names), Some((key, Arc::clone(names)))));
        }
    }
    let names = Arc::new(visible_names(fd, folder)?);
    let keep = (key.2 < trusted_before).then(|| (key, Arc::clone(&names)));
    Ok((names, keep))
}

/// The stats of the files of run folder `name` its last listing names, each stat'ed through the
/// folder's name (`<name>/<entry>`), in the order [`listed_fingerprint`] hashes them (the
/// layout marker left out: see `Listing::marker`); None when the folder or its `.journals`
/// changed since (listed again by the caller). A link put at `<name>` between the stat of the
/// folder and those of its files can make a fingerprint of files elsewhere: a hash of stats,
/// never a read, that matches no fingerprint of this folder, and the next scan sees the link.
///
/// `path` and `stats` are the caller's buffers (kept by each thread across runs: a warm scan of
/// 100,000 runs allocates nothing for a run unchanged); `stats` is filled.
fn listed_stats(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    listing: &Listing,
    path: &mut Vec<u8>,
    stats: &mut Vec<FileStat>,
) -> Option<()> {
    path.clear();
    path.extend_from_slice(name.as_bytes());
    path.push(b'/');
    let base = path.len();
    stats.clear();
    for entry in &listing.names {
        if entry == LAYOUT_MARKER.as_bytes() && listing.marker.is_some() {
            continue;
        }
        path.truncate(base);
        path.extend_from_slice(entry);
        let Ok(stat) = lstat_at(parent, OsStr::from_bytes(path)) else {
            return None; // gone: its folder changed
        };
        let stat = FileStat::of(&stat);
        stats.push(stat);
        if entry == JOURNAL_DIR.as_bytes() && stat.kind() == FileType::Directory {
            let (key, names) = listing.journals.as_ref()?;
            if *key != (stat.ino, stat.modified, stat.changed) {
                return None;
            }
            for journal in names {
                path.truncate(base + entry.len());
                path.push(b'/');
                path.extend_from_slice(journal);
                let Ok(stat) = lstat_at(parent, OsStr::from_bytes(path)) else {
                    return None;
                };
                stats.push(FileStat::of(&stat));
            }
        }
    }
    Some(())
}

thread_local! {
    /// [`listed_stats`]'s buffers, one pair per scanning thread.
    static LISTED_BUFFERS: std::cell::RefCell<(Vec<u8>, Vec<FileStat>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// The fingerprint of a run folder from its last listing and the stats [`listed_stats`]
/// took, as [`folder_contents`] makes it.
fn listed_fingerprint(
    name: &OsStr,
    ino: u64,
    listing: &Listing,
    stats: &[FileStat],
) -> Fingerprint {
    // The names and the journals' are sorted (see `cached_run_folder`), and `.journals/<j>`
    // sorts right after `.journals` among the names stamped: hashed in the order of
    // `folder_contents`'s sort, without building and sorting the list.
    let mut newest = i64::MIN;
    let mut count = 0usize;
    let mut text = String::with_capacity(96);
    let mut hasher = blake3::Hasher::new();
    let mut put = |hasher: &mut blake3::Hasher, key: &[&[u8]], text: &str| {
        for part in key {
            hasher.update(part);
        }
        hasher.update(b"\0");
        hasher.update(text.as_bytes());
        hasher.update(b"\n");
        count += 1;
    };
    let mut stats = stats.iter();
    for entry in &listing.names {
        if entry == LAYOUT_MARKER.as_bytes() {
            if let Some((marker, changed)) = &listing.marker {
                newest = newest.max(*changed);
                put(&mut hasher, &[entry], marker);
                continue;
            }
        }
        let Some(stat) = stats.next() else { break };
        newest = newest.max(stat.changed);
        let is_journals = entry == JOURNAL_DIR.as_bytes();
        let expected = if is_journals {
            FileType::Directory
        } else {
            FileType::RegularFile
        };
        text.clear();
        stat.write_stamp(&mut text, expected);
        put(&mut hasher, &[entry], &text);
        if is_journals && stat.kind() == FileType::Directory {
            for journal in listing.journals.iter().flat_map(|(_, names)| names) {
                let Some(stat) = stats.next() else { break };
                newest = newest.max(stat.changed);
                text.clear();
                stat.write_stamp(&mut text, FileType::RegularFile);
                put(&mut hasher, &[JOURNAL_DIR.as_bytes(), b"/", journal], &text);
            }
        }
    }
    let hex = hasher.finalize().to_hex();
    Fingerprint {
        run_id: name.to_os_string(),
        fingerprint: format!("{ino}:{count}:{}", &hex[..32]),
        newest_change_ns: newest,
    }
}

/// The fingerprint of run folder `name` from its last listing, with the listing to keep (the
/// same one when its files' stats are those of the last scan: the fingerprint is that scan's);
/// None when the folder changed since (listed again by the caller).
fn listed_contents(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    ino: u64,
    listing: &Arc<Listing>,
) -> Option<(Arc<Fingerprint>, Arc<Listing>)> {
    let stats = LISTED_BUFFERS.with(|buffers| {
        let (path, stats) = &mut *buffers.borrow_mut();
        listed_stats(parent, name, listing, path, stats)?;
        match &listing.last {
            Some((last, found)) if last[..] == stats[..] && found.run_id.as_os_str() == name => {
                Some(Err(Arc::clone(found)))
            }
            _ => Some(Ok(stats.clone())),
        }
    })?;
    let stats = match stats {
        Ok(stats) => stats,
        Err(found) => return Some((found, Arc::clone(listing))),
    };
    let found = Arc::new(listed_fingerprint(name, ino, listing, &stats));
    let mut kept = Listing::clone(listing);
    kept.last = Some((stats, Arc::clone(&found)));
    Some((found, Arc::new(kept)))
}

/// A run folder's fingerprint (as [`run_folder_fingerprint`] makes it) from its last listing
/// when the folder is unchanged, else listed again; with the listing to keep, if any: one
/// taken when the folder (and its `.journals`) last changed before `trusted_before` (ns), so
/// that a change in the same tick of the file clock as the listing cannot hide behind an
/// unchanged stat (git's racy-clean rule).
fn cached_run_folder(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    kind: FileType,
    ino: u64,
    known: Option<&Arc<Listing>>,
    trusted_before: i64,
) -> (Option<Arc<Fingerprint>>, Option<Arc<Listing>>) {
    if kind != FileType::Directory {
        return (
            run_folder_fingerprint(parent, name, kind, Some(ino)).map(Arc::new),
            None,
        );
    }
    let own = match lstat_at(parent, name) {
        Ok(own) => own,
        Err(Errno::NOENT) => return (None, None),
        Err(_) => {
            return (
                run_folder_fingerprint(parent, name, kind, Some(ino)).map(Arc::new),
                None,
            )
        }
    };
    if FileType::from_raw_mode(own.st_mode) != FileType::Directory {
        return (
            run_folder_fingerprint(parent, name, FileType::Unknown, None).map(Arc::new),
            None,
        );
    }
    let key = stat_key(&own);
    if let Some(known) = known.filter(|known| known.folder == Some(key)) {
        if let Some((found, kept)) = listed_contents(parent, name, ino, known) {
            return (Some(found), Some(kept));
        }
    }
    let run = match rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(run) => run,
        Err(_) => {
            return (
                run_folder_fingerprint(parent, name, kind, Some(ino)).map(Arc::new),
                None,
            )
        }
    };
    let mut listing = Listing {
        folder: Some(key),
        ..Listing::default()
    };
    let found = folder_contents_listed(&run, name, Some(ino), Some(&mut listing)).map(Arc::new);
    let settled = key.2 < trusted_before
        && listing
            .journals
            .as_ref()
            .map_or(true, |(journals, _)| journals.2 < trusted_before);
    let has_journals = listing.names.iter().any(|n| n == JOURNAL_DIR.as_bytes());
    let keep = found.is_some() && settled && (!has_journals || listing.journals.is_some());
    if !keep {
        return (found, None);
    }
    listing.names.sort_unstable();
    if let Some((_, journals)) = listing.journals.as_mut() {
        journals.sort_unstable();
    }
    // The fingerprint kept with its stats is the one handed out: a later scan that finds the
    // same stats hands out the very same one, and keeps the mark it was given.
    let found = match &listing.last {
        Some((_, last)) => Some(Arc::clone(last)),
        None => found,
    };
    (found, Some(Arc::new(listing)))
}

/// The runs of a log folder in both layouts, from one listing: what [`fingerprint_documents`]
/// and [`fingerprint_run_folders`] give, without listing the folder twice or looking into a
/// plain file for a `RunLog.json` (a file is no run folder: the store's look at
/// `<name>/RunLog.json` fails with "not a folder", which is what a file's listed type says).
#[derive(Debug, Default)]
pub struct FolderFingerprints {
    pub documents: Vec<Stamped>,
    pub folders: Vec<Stamped>,
}

/// A run's fingerprint, with a mark a comparison with an index's stamps may leave on it (see
/// [`Verdict`]).
#[derive(Debug, Clone)]
pub struct Stamped {
    pub fingerprint: Arc<Fingerprint>,
    pub verdict: Verdict,
}

/// What a comparison of a fingerprint with an index's stamps found, kept with the fingerprint
/// while a scan finds it unchanged (the same stats): `0`, nothing; else the key of the stamps
/// (their content and the racy rule applied) against which it was found current. A quiet
/// search of 100,000 runs then looks up no recorded stamp. `None` where a name gave two
/// fingerprints (a document that is a run folder too): compared every time.
#[derive(Debug, Clone, Default)]
pub struct Verdict(Option<Arc<AtomicU64>>);

/// The top bit of a verdict's key: set on keys that name the stamps of one state of an index
/// file in every process (see `StoredStamps`), which a verdict saved to a file may carry.
pub const SHARED_KEY: u64 = 1 << 63;

/// `key` when it is shared between processes (`SHARED_KEY`), else 0: what may be saved.
pub(super) fn shared_only(key: u64) -> u64 {
    if key & SHARED_KEY != 0 {
        key
    } else {
        0
    }
}

impl Verdict {
    fn new() -> Self {
        Verdict(Some(Arc::new(AtomicU64::new(0))))
    }

    /// A verdict read back from a file: found current against stamps of key `key` (0: none),
    /// or, with None, one compared every time.
    pub(super) fn saved(key: Option<u64>) -> Self {
        Verdict(key.map(|key| Arc::new(AtomicU64::new(key))))
    }

    /// What `saved` takes back: the key of a shared kind it was found current against, if any.
    pub(super) fn to_save(&self) -> Option<u64> {
        self.0
            .as_ref()
            .map(|mark| shared_only(mark.load(Ordering::Relaxed)))
    }

    /// Whether the fingerprint was found current against stamps of key `key` (never 0).
    pub fn current_for(&self, key: u64) -> bool {
        self.0
            .as_ref()
            .is_some_and(|mark| mark.load(Ordering::Relaxed) == key)
    }

    /// Record that the fingerprint is current against stamps of key `key`.
    pub fn set_current_for(&self, key: u64) {
        if let Some(mark) = &self.0 {
            mark.store(key, Ordering::Relaxed);
        }
    }
}

/// `racy_ns`: how long before the scan a run folder must have last changed for its listing to
/// be kept for the next scan of this folder in this process.
pub fn fingerprint_folder(folder: &Path, racy_ns: i64) -> Result<FolderFingerprints> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let trusted_before = now - racy_ns;
    let known = listings_of(folder);
    let Some(fd) = open_dir_if_present(folder)? else {
        return Ok(FolderFingerprints::default());
    };
    let (names, kept_names) = folder_names(fd.as_fd(), folder, &known, trusted_before)?;
    // What the last scan made of each name: by position when the listing is the same one,
    // else by name (a scan after runs were added or removed).
    let same = Arc::ptr_eq(&names, &known.listed);
    let by_name: HashMap<&OsStr, usize> = if same {
        HashMap::new()
    } else {
        known
            .listed
            .iter()
            .enumerate()
            .map(|(at, (name, _, _))| (name.as_os_str(), at))
            .collect()
    };
    let fd = fd.as_fd();
    // Listings taken anew, kept for the next scan: what a saved copy of them would miss.
    let relisted = AtomicU64::new(u64::from(!same && kept_names.is_some()));
    // Run folders whose files were stamped again from their listing: a saved copy would
    // stamp them again too.
    let restamped = AtomicU64::new(0);
    let found: Vec<Memo> = names
        .par_iter()
        .enumerate()
        .with_min_len(128)
        .map(|(at, (name, kind, ino))| {
            let last = if same {
                known.memos.get(at)
            } else {
                by_name.get(name.as_os_str()).map(|&at| &known.memos[at])
            };
            let bytes = name.as_bytes();
            let document = if bytes.ends_with(b".json") {
                lstat_at(fd, name).ok().map(|stat| {
                    let stat = FileStat::of(&stat);
                    match last.and_then(|last| last.document.as_ref()) {
                        Some((was, found)) if *was == stat => (stat, Arc::clone(found)),
                        _ => {
                            let mut text = String::with_capacity(64);
                            stat.write_stamp(&mut text, FileType::RegularFile);
                            let run_id = &bytes[..bytes.len() - ".json".len()];
                            let found = Fingerprint {
                                run_id: OsStr::from_bytes(run_id).to_os_string(),
                                fingerprint: text,
                                newest_change_ns: stat.changed,
                            };
                            (stat, Arc::new(found))
                        }
                    }
                })
            } else {
                None
            };
            let (run_folder, listing) = match kind {
                FileType::Directory | FileType::Unknown | FileType::Symlink => {
                    let known = last.and_then(|last| last.listing.as_ref());
                    let (found, listing) =
                        cached_run_folder(fd, name, *kind, *ino, known, trusted_before);
                    let listed_anew = match (&listing, known) {
                        (Some(now), Some(was)) => {
                            now.folder != was.folder
                                || now.journals.as_ref().map(|j| j.0)
                                    != was.journals.as_ref().map(|j| j.0)
                        }
                        (Some(_), None) => true,
                        (None, _) => false,
                    };
                    if listed_anew {
                        relisted.fetch_add(1, Ordering::Relaxed);
                    } else if matches!((&listing, known), (Some(now), Some(was)) if !Arc::ptr_eq(now, was))
                    {
                        // The same listing, its files stamped again (their stats changed).
                        restamped.fetch_add(1, Ordering::Relaxed);
                    }
                    (found, listing)
                }
                _ => (None, None),
            };
            let same =
                |now: Option<&Arc<Fingerprint>>, was: Option<&Arc<Fingerprint>>| match (now, was) {
                    (Some(now), Some(was)) => Arc::ptr_eq(now, was),
                    (None, None) => true,
                    _ => false,
                };
            let verdict = match (&document, &run_folder) {
                (Some(_), Some(_)) | (None, None) => Verdict::default(),
                _ => match last {
                    Some(last)
                        if same(
                            document.as_ref().map(|(_, found)| found),
                            last.document.as_ref().map(|(_, found)| found),
                        ) && same(run_folder.as_ref(), last.run_folder.as_ref())
                            && last.verdict.0.is_some() =>
                    {
                        last.verdict.clone()
                    }
                    _ => Verdict::new(),
                },
            };
            Memo {
                document,
                run_folder,
                listing,
                verdict,
            }
        })
        .collect();
    drop(by_name);
    let mut out = FolderFingerprints::default();
    for memo in &found {
        out.documents
            .extend(memo.document.as_ref().map(|(_, found)| Stamped {
                fingerprint: Arc::clone(found),
                verdict: memo.verdict.clone(),
            }));
        out.folders
            .extend(memo.run_folder.as_ref().map(|found| Stamped {
                fingerprint: Arc::clone(found),
                verdict: memo.verdict.clone(),
            }));
    }
    let taken = relisted.into_inner();
    let unsaved = known
        .unsaved
        .load(Ordering::Relaxed)
        .saturating_add(taken)
        .saturating_add(restamped.into_inner());
    let names_unsaved =
        known.names_unsaved.load(Ordering::Relaxed) || (!same && kept_names.is_some());
    let saved_key = known.saved_key.load(Ordering::Relaxed);
    drop(known);
    keep_listings(
        folder,
        FolderListings {
            names: kept_names,
            listed: names,
            memos: found,
            unsaved: AtomicU64::new(unsaved),
            taken,
            names_unsaved: AtomicBool::new(names_unsaved),
            saved_key: AtomicU64::new(saved_key),
            judged_key: AtomicU64::new(0),
            quiet: AtomicBool::new(false),
        },
    );
    Ok(out)
}
