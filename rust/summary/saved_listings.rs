//! The listings a scan of a log folder keeps (`fingerprint`), saved to a file beside the run
//! index and loaded by the next process, so that its first search costs what a later search of
//! the same process does: it does not list every run folder again (100,000 run folders: an
//! `openat`, two `getdents` and a `close` each, 0.4 s of kernel time here, against one read of a
//! file of about 10 MB), make every run's fingerprint again, nor read the index's stamps to look
//! each run up.
//!
//! What is saved is what a scan trusts only while it is still true: the names of the log
//! folder under the folder's stat, and the names of each run folder (and of its `.journals`)
//! under that folder's stat; the stats of each run's files with the fingerprint they made (the
//! same stats make the same fingerprint); and the mark of each run found current against the
//! index's stamps of one state of the index file (`Verdict`, whose key names that state and the
//! racy rule: valid in any process while the file is at that state, as the stamps are). A scan
//! checks each stat before it uses what was saved under it, exactly as it checks what it kept
//! itself; a stale entry is listed and stamped again, and a mark of another state is ignored.
//!
//! The file is a cache in the index's own folder (or the user's cache folder), written and
//! read as `saved_file` writes and reads: whole under a temporary name and renamed, opened
//! without following a link, every length checked against what is left. One that cannot be
//! read, of another format, or made for another folder is ignored. Like the index itself,
//! a file altered by someone who may write the index's folder can make a search miss a change
//! (docs/format.md, "The run index").
//!
//! Format (little-endian): the magic `runlog-listings\n`, a format number (u32), the log
//! folder's path; the log folder's stat key when its names are trusted (a flag byte, then three
//! 64-bit numbers); the key of the stamps the marks were found against; the count of names,
//! then each name, its file type (raw mode bits) and inode, then whether a run-folder listing
//! follows and that listing (with the stats and fingerprint of its files' last scan, if any),
//! the document's stat and fingerprint if any, whether the run folder's fingerprint is its
//! listing's, and the mark. Byte strings are a u64 length and the bytes; a stat is five
//! 64-bit numbers (inode, size, modified and changed ns, type bits).

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use rustix::fs::FileType;

use super::fingerprint::{
    keep_listings, listings_of, shared_only, FileStat, Fingerprint, FolderListings, Listing, Memo,
    Names, StatKey, Verdict,
};
use super::saved_file::{put_bytes, put_head, put_u64, read_file, write_whole, Reader};
use crate::error::Result;

const MAGIC: &[u8] = b"runlog-listings\n";
const FORMAT: u32 = 2;
/// A listing saved once in this process is saved again only when this many (or a hundredth
/// of the runs, if more) were taken anew since: a search that relists a few runs does not
/// rewrite a file of every run's.
const RESAVE_AFTER: u64 = 64;
/// Names a block of the file holds: blocks are decoded in parallel (a file of 100,000 run
/// folders is about 30 MB and a million small allocations: 100-150 ms on one core).
const BLOCK: usize = 4096;

/// The log folders whose listings this process loaded from a file or saved to one.
static SAVED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn mark_saved(folder: &Path) {
    let mut saved = SAVED.lock().unwrap_or_else(|p| p.into_inner());
    if !saved.iter().any(|f| f == folder) {
        saved.push(folder.to_path_buf());
    }
}

fn was_saved(folder: &Path) -> bool {
    let saved = SAVED.lock().unwrap_or_else(|p| p.into_inner());
    saved.iter().any(|f| f == folder)
}

/// When this process last saved the listings of a log folder for their marks (see
/// `save_listings`).
static MARKS_SAVED: Mutex<Vec<(PathBuf, Instant)>> = Mutex::new(Vec::new());
/// How long a process waits before it saves a folder's marks again.
const MARKS_EVERY: Duration = Duration::from_secs(30);

fn marks_saved_lately(folder: &Path) -> bool {
    let saved = MARKS_SAVED.lock().unwrap_or_else(|p| p.into_inner());
    saved
        .iter()
        .any(|(f, at)| f == folder && at.elapsed() < MARKS_EVERY)
}

fn mark_marks_saved(folder: &Path) {
    let mut saved = MARKS_SAVED.lock().unwrap_or_else(|p| p.into_inner());
    saved.retain(|(f, _)| f != folder);
    saved.push((folder.to_path_buf(), Instant::now()));
}

/// Load the listings saved in `path` for log folder `folder` and keep them as this process's,
/// unless it keeps some of its own already. Whether they were taken.
pub fn load_listings(folder: &Path, path: &Path) -> bool {
    if !listings_of(folder).listed.is_empty() {
        return false;
    }
    let Some(bytes) = read_file(path) else {
        return false;
    };
    let Some(listings) = decode(&bytes, folder) else {
        return false;
    };
    keep_listings(folder, listings);
    mark_saved(folder);
    true
}

/// Save this process's listings of `folder` to `path` when they are worth it: something was
/// listed or stamped anew since they were last saved or loaded here, and that never happened
/// before, or enough were (see `RESAVE_AFTER`), or the log folder itself was; or the runs were
/// all found current against another state of the index than the saved marks are of (see
/// below); or the file is gone. Whether they were saved.
pub fn save_listings(folder: &Path, path: &Path) -> Result<bool> {
    let listings = listings_of(folder);
    let unsaved = listings.unsaved.load(Ordering::Relaxed);
    let runs = listings.listed.len() as u64;
    let enough = RESAVE_AFTER.max(runs / 100).min(runs.max(1));
    // The log folder listed anew (runs made or removed since): every new process would match
    // each name of the saved listing by name (a map of 100,000 names) instead of in place.
    let names = listings.names_unsaved.load(Ordering::Relaxed) && listings.names.is_some();
    // Runs found current against stamps of another state than the saved marks say (the index
    // was written since): without these marks, the next process would read every stamp again.
    // Only from a search that found every run current (one that found changes writes the
    // index, and its marks are of the state before that write), and at most every
    // `MARKS_EVERY` in a process: a long-lived one (`runlog serve`) beside a running pipeline,
    // whose writers move the index on at every status a run takes, would write the file
    // (18-31 MB for 100,000 runs) at every search.
    let judged = listings.judged_key.load(Ordering::Relaxed);
    let marks = shared_only(judged) != 0
        && listings.quiet.load(Ordering::Relaxed)
        && judged != listings.saved_key.load(Ordering::Relaxed)
        && !marks_saved_lately(folder);
    let listed_enough = unsaved != 0 && !(was_saved(folder) && unsaved < enough && !names);
    if !listed_enough && !marks && (unsaved == 0 || path.exists()) {
        return Ok(false);
    }
    let bytes = encode(folder, &listings);
    write_whole(path, &bytes)?;
    // What was listed since the copy was taken counts from now on.
    listings.unsaved.fetch_sub(unsaved, Ordering::Relaxed);
    listings.names_unsaved.store(false, Ordering::Relaxed);
    listings
        .saved_key
        .store(saved_key_of(&listings), Ordering::Relaxed);
    mark_saved(folder);
    if marks {
        mark_marks_saved(folder);
    }
    Ok(true)
}

/// How many listings (of run folders, and of the log folder) the last scan of `folder` in this
/// process took anew: none after a scan that found every folder as the listings it had say.
pub fn listings_taken(folder: &Path) -> u64 {
    listings_of(folder).taken
}

// --- the encoding -------------------------------------------------------------------------------

fn put_key(out: &mut Vec<u8>, key: &StatKey) {
    put_u64(out, key.0);
    put_u64(out, key.1 as u64);
    put_u64(out, key.2 as u64);
}

fn put_optional_key(out: &mut Vec<u8>, key: Option<&StatKey>) {
    match key {
        Some(key) => {
            out.push(1);
            put_key(out, key);
        }
        None => out.push(0),
    }
}

fn put_stat(out: &mut Vec<u8>, stat: &FileStat) {
    put_u64(out, stat.ino);
    put_u64(out, stat.size as u64);
    put_u64(out, stat.modified as u64);
    put_u64(out, stat.changed as u64);
    put_u64(out, u64::from(stat.mode));
}

fn put_fingerprint(out: &mut Vec<u8>, found: &Fingerprint) {
    put_bytes(out, found.fingerprint.as_bytes());
    put_u64(out, found.newest_change_ns as u64);
}

/// The key the marks of `listings` are saved with: the one of their last comparison when it is
/// shared between processes (0 when it is this process's own), or the one they were loaded
/// with when they were not compared since.
fn saved_key_of(listings: &FolderListings) -> u64 {
    match listings.judged_key.load(Ordering::Relaxed) {
        0 => listings.saved_key.load(Ordering::Relaxed),
        judged => shared_only(judged),
    }
}

fn put_names(out: &mut Vec<u8>, names: &[Vec<u8>]) {
    put_u64(out, names.len() as u64);
    for name in names {
        put_bytes(out, name);
    }
}

fn encode(folder: &Path, listings: &FolderListings) -> Vec<u8> {
    // About 180 bytes a file-system run and 310 a chunked-fs run: room for the larger (pages
    // never written are never faulted in), not a copy of 30 MB half way.
    let mut out = Vec::with_capacity(64 + listings.listed.len() * 320);
    put_head(&mut out, MAGIC, FORMAT);
    put_bytes(&mut out, folder.as_os_str().as_bytes());
    // The names are trusted under the key only when they are the very listing the memos are of.
    let trusted = listings
        .names
        .as_ref()
        .filter(|(_, names)| Arc::ptr_eq(names, &listings.listed))
        .map(|(key, _)| key);
    put_optional_key(&mut out, trusted);
    put_u64(&mut out, saved_key_of(listings));
    // In the order of the names (which the reader checks: no name twice), not the listing's.
    let mut order: Vec<usize> = (0..listings.listed.len()).collect();
    order.sort_unstable_by(|&a, &b| listings.listed[a].0.cmp(&listings.listed[b].0));
    put_u64(&mut out, listings.listed.len() as u64);
    // In blocks, each a count and a length: the reader decodes them on every core.
    for ats in order.chunks(BLOCK) {
        put_u64(&mut out, ats.len() as u64);
        // The block's byte string, its length written once its records are (no copy).
        let length_at = out.len();
        put_u64(&mut out, 0);
        for &at in ats {
            put_record(&mut out, listings, at);
        }
        let length = (out.len() - length_at - 8) as u64;
        out[length_at..length_at + 8].copy_from_slice(&length.to_le_bytes());
    }
    out
}

/// The record of name `at` of `listings`: the name, its type and inode, its run folder's
/// listing if kept, and what the scan made of it.
fn put_record(out: &mut Vec<u8>, listings: &FolderListings, at: usize) {
    let (name, kind, ino) = &listings.listed[at];
    put_bytes(out, name.as_bytes());
    put_u64(out, u64::from(kind.as_raw_mode()));
    put_u64(out, *ino);
    let memo = listings.memos.get(at);
    match memo.and_then(|memo| memo.listing.as_ref()) {
        Some(listing) => {
            out.push(1);
            put_optional_key(out, listing.folder.as_ref());
            put_names(out, &listing.names);
            match &listing.journals {
                Some((key, names)) => {
                    out.push(1);
                    put_key(out, key);
                    put_names(out, names);
                }
                None => out.push(0),
            }
            match &listing.marker {
                Some((text, changed)) => {
                    out.push(1);
                    put_bytes(out, text.as_bytes());
                    put_u64(out, *changed as u64);
                }
                None => out.push(0),
            }
            match &listing.last {
                Some((stats, found)) => {
                    out.push(1);
                    put_u64(out, stats.len() as u64);
                    for stat in stats {
                        put_stat(out, stat);
                    }
                    put_fingerprint(out, found);
                }
                None => out.push(0),
            }
        }
        None => out.push(0),
    }
    put_memo(out, memo);
}

/// What a scan made of a name beside its listing: the document's stat and fingerprint, whether
/// the run folder's fingerprint is the one its listing's last scan made, and the mark.
fn put_memo(out: &mut Vec<u8>, memo: Option<&Memo>) {
    let Some(memo) = memo else {
        out.extend_from_slice(&[0, 0, 0]);
        return;
    };
    match &memo.document {
        Some((stat, found)) => {
            out.push(1);
            put_stat(out, stat);
            put_fingerprint(out, found);
        }
        None => out.push(0),
    }
    let last = memo.listing.as_ref().and_then(|l| l.last.as_ref());
    let listed = match (&memo.run_folder, last) {
        (Some(found), Some((_, last))) => Arc::ptr_eq(found, last),
        _ => false,
    };
    // A run folder's fingerprint of another kind (a link, a file) is not saved: made again, it
    // is a new one, and the mark is not carried over to it.
    let verdict = if memo.run_folder.is_some() && !listed {
        Some(0)
    } else {
        memo.verdict.to_save()
    };
    out.push(u8::from(listed));
    match verdict {
        Some(key) => {
            out.push(1);
            put_u64(out, key);
        }
        None => out.push(0),
    }
}

fn read_key(reader: &mut Reader<'_>) -> Option<StatKey> {
    Some((reader.u64()?, reader.u64()? as i64, reader.u64()? as i64))
}

fn read_optional_key(reader: &mut Reader<'_>) -> Option<Option<StatKey>> {
    Some(if reader.flag()? {
        Some(read_key(reader)?)
    } else {
        None
    })
}

fn read_stat(reader: &mut Reader<'_>) -> Option<FileStat> {
    Some(FileStat {
        ino: reader.u64()?,
        size: reader.u64()? as i64,
        modified: reader.u64()? as i64,
        changed: reader.u64()? as i64,
        mode: u32::try_from(reader.u64()?).ok()?,
    })
}

fn read_fingerprint(reader: &mut Reader<'_>, run_id: &[u8]) -> Option<Arc<Fingerprint>> {
    let fingerprint = reader.text()?.to_owned();
    Some(Arc::new(Fingerprint {
        run_id: OsString::from_vec(run_id.to_vec()),
        fingerprint,
        newest_change_ns: reader.u64()? as i64,
    }))
}

fn read_names(reader: &mut Reader<'_>) -> Option<Vec<Vec<u8>>> {
    let count = reader.count(8)?;
    let mut names = Vec::with_capacity(count);
    for _ in 0..count {
        names.push(reader.bytes()?.to_vec());
    }
    Some(names)
}

/// Whether names are in increasing order (`is_sorted` is newer than this crate's Rust).
fn sorted(names: &[Vec<u8>]) -> bool {
    names.windows(2).all(|pair| pair[0] <= pair[1])
}

/// The names and memos of one block, with its first and last names.
struct Block<'a> {
    names: Names,
    memos: Vec<Memo>,
    first: &'a [u8],
    last: &'a [u8],
}

fn decode_block(count: usize, bytes: &[u8]) -> Option<Block<'_>> {
    let mut reader = Reader::of(bytes);
    let mut names: Names = Vec::with_capacity(count);
    let mut memos = Vec::with_capacity(count);
    let mut previous: Option<&[u8]> = None;
    let mut first: Option<&[u8]> = None;
    for _ in 0..count {
        let (entry, memo) = read_record(&mut reader, &mut previous)?;
        first = first.or(previous);
        names.push(entry);
        memos.push(memo);
    }
    if !reader.is_done() {
        return None;
    }
    Some(Block {
        names,
        memos,
        first: first?,
        last: previous?,
    })
}

/// One name's record (see `put_record`), after `previous` (which it becomes).
fn read_record<'a>(
    reader: &mut Reader<'a>,
    previous: &mut Option<&'a [u8]>,
) -> Option<((OsString, FileType, u64), Memo)> {
    let name = reader.bytes()?;
    // Each name once: they are saved in increasing order.
    if name.is_empty() || name.contains(&b'/') || previous.is_some_and(|p| p >= name) {
        return None;
    }
    *previous = Some(name);
    let mode = u32::try_from(reader.u64()?).ok()?;
    let ino = reader.u64()?;
    let listing = if reader.flag()? {
        let folder_key = read_optional_key(reader)?;
        let names = read_names(reader)?;
        let journals = if reader.flag()? {
            Some((read_key(reader)?, read_names(reader)?))
        } else {
            None
        };
        let marker = if reader.flag()? {
            let text = String::from_utf8(reader.bytes()?.to_vec()).ok()?;
            Some((text, reader.u64()? as i64))
        } else {
            None
        };
        let last = if reader.flag()? {
            let count = reader.count(40)?;
            let mut stats = Vec::with_capacity(count);
            for _ in 0..count {
                stats.push(read_stat(reader)?);
            }
            Some((stats, read_fingerprint(reader, name)?))
        } else {
            None
        };
        // A listing is only ever kept sorted and with a key (fingerprint::cached_run_folder).
        if folder_key.is_none()
            || !sorted(&names)
            || names.iter().any(|n| n.is_empty() || n.contains(&b'/'))
            || journals.as_ref().is_some_and(|(_, j)| {
                !sorted(j) || j.iter().any(|n| n.is_empty() || n.contains(&b'/'))
            })
        {
            return None;
        }
        Some(Arc::new(Listing {
            folder: folder_key,
            names,
            journals,
            marker,
            last,
        }))
    } else {
        None
    };
    let document = if reader.flag()? {
        // Only a `<run_id>.json` is stamped as a document.
        let run_id = name.strip_suffix(b".json").filter(|r| !r.is_empty())?;
        let stat = read_stat(reader)?;
        Some((stat, read_fingerprint(reader, run_id)?))
    } else {
        None
    };
    let run_folder = if reader.flag()? {
        Some(Arc::clone(&listing.as_ref()?.last.as_ref()?.1))
    } else {
        None
    };
    let verdict = Verdict::saved(if reader.flag()? {
        Some(reader.u64()?)
    } else {
        None
    });
    let entry = (
        OsString::from_vec(name.to_vec()),
        FileType::from_raw_mode(mode),
        ino,
    );
    Some((
        entry,
        Memo {
            document,
            run_folder,
            listing,
            verdict,
        },
    ))
}

fn decode(bytes: &[u8], folder: &Path) -> Option<FolderListings> {
    let mut reader = Reader::after_head(bytes, MAGIC, FORMAT)?;
    if reader.bytes()? != folder.as_os_str().as_bytes() {
        return None; // made for another folder (copied along with it, say)
    }
    let trusted = read_optional_key(&mut reader)?;
    let saved_key = reader.u64()?;
    let count = reader.count(8)?;
    let mut blocks: Vec<(usize, &[u8])> = Vec::with_capacity(count / BLOCK + 1);
    let mut counted = 0usize;
    while counted < count {
        let block_count = usize::try_from(reader.u64()?).ok()?;
        if block_count == 0 || block_count > BLOCK || block_count > count - counted {
            return None;
        }
        blocks.push((block_count, reader.bytes()?));
        counted += block_count;
    }
    if !reader.is_done() {
        return None;
    }
    // Each block on its own core, then the names checked in order across blocks.
    let decoded: Option<Vec<Block<'_>>> = blocks
        .par_iter()
        .map(|&(block_count, bytes)| decode_block(block_count, bytes))
        .collect();
    let decoded = decoded?;
    // Room for what the blocks held, not for what the file claims (a count is only checked
    // against the bytes left: a forged one could ask for hundreds of MB).
    let held = decoded.iter().map(|block| block.names.len()).sum();
    let mut listed: Names = Vec::with_capacity(held);
    let mut memos = Vec::with_capacity(held);
    let mut previous: Option<&[u8]> = None;
    for block in decoded {
        if previous.is_some_and(|p| p >= block.first) {
            return None;
        }
        previous = Some(block.last);
        listed.extend(block.names);
        memos.extend(block.memos);
    }
    let listed = Arc::new(listed);
    Some(FolderListings {
        names: trusted.map(|key| (key, Arc::clone(&listed))),
        listed,
        memos,
        unsaved: AtomicU64::new(0),
        taken: 0,
        names_unsaved: AtomicBool::new(false),
        saved_key: AtomicU64::new(saved_key),
        judged_key: AtomicU64::new(0),
        quiet: AtomicBool::new(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::fingerprint::SHARED_KEY;

    fn sample() -> FolderListings {
        let listed: Names = vec![
            (OsString::from("run-a"), FileType::Directory, 11),
            (OsString::from("run-b.json"), FileType::RegularFile, 12),
        ];
        let listed = Arc::new(listed);
        let listing = Listing {
            folder: Some((11, 5, 6)),
            names: vec![
                b".journals".to_vec(),
                b".layout".to_vec(),
                b"RunLog.json".to_vec(),
            ],
            journals: Some(((13, 7, 8), vec![b"a.journal".to_vec()])),
            marker: Some(("14-26-9-9".to_string(), 9)),
            last: None,
        };
        FolderListings {
            names: Some(((1, 2, 3), Arc::clone(&listed))),
            listed,
            memos: vec![Memo::with_listing(Some(Arc::new(listing))), Memo::default()],
            unsaved: AtomicU64::new(2),
            taken: 2,
            names_unsaved: AtomicBool::new(true),
            saved_key: AtomicU64::new(0),
            judged_key: AtomicU64::new(0),
            quiet: AtomicBool::new(false),
        }
    }

    #[test]
    fn what_is_saved_is_read_back() {
        let folder = Path::new("/logs");
        let bytes = encode(folder, &sample());
        let back = decode(&bytes, folder).expect("read back");
        assert_eq!(back.names.as_ref().map(|(k, _)| *k), Some((1, 2, 3)));
        assert!(Arc::ptr_eq(&back.names.as_ref().unwrap().1, &back.listed));
        assert_eq!(&*back.listed, &*sample().listed); // sorted already
        let listing = back.memos[0].listing.as_ref().expect("a listing");
        assert_eq!(listing.folder, Some((11, 5, 6)));
        assert_eq!(listing.names.len(), 3);
        assert_eq!(
            listing.journals.as_ref().unwrap().1,
            vec![b"a.journal".to_vec()]
        );
        assert_eq!(listing.marker, Some(("14-26-9-9".to_string(), 9)));
        assert!(back.memos[1].listing.is_none());
        assert_eq!(encode(folder, &back), bytes);
    }

    #[test]
    fn every_kind_of_name_keeps_its_type() {
        for kind in [
            FileType::RegularFile,
            FileType::Directory,
            FileType::Symlink,
            FileType::Fifo,
            FileType::Socket,
            FileType::CharacterDevice,
            FileType::BlockDevice,
            FileType::Unknown,
        ] {
            assert_eq!(
                FileType::from_raw_mode(kind.as_raw_mode()),
                kind,
                "{kind:?}"
            );
        }
    }

    #[test]
    fn names_are_saved_in_order_and_each_once() {
        let folder = Path::new("/logs");
        let mut listings = sample();
        let listed: Names = vec![
            (OsString::from("run-b.json"), FileType::RegularFile, 12),
            (OsString::from("run-a"), FileType::Directory, 11),
        ];
        listings.listed = Arc::new(listed);
        listings.memos.reverse();
        let back = decode(&encode(folder, &listings), folder).expect("read back");
        assert_eq!(back.listed[0].0, OsString::from("run-a"));
        assert!(back.memos[0].listing.is_some() && back.memos[1].listing.is_none());
        let twice: Names = vec![
            (OsString::from("run-a"), FileType::Directory, 11),
            (OsString::from("run-a"), FileType::Directory, 11),
        ];
        listings.listed = Arc::new(twice);
        assert!(decode(&encode(folder, &listings), folder).is_none());
    }

    #[test]
    fn a_file_of_another_folder_or_damaged_is_not_read() {
        let folder = Path::new("/logs");
        let bytes = encode(folder, &sample());
        assert!(decode(&bytes, Path::new("/other")).is_none());
        // Cut anywhere, or with anything after it: refused, never a panic.
        for end in 0..bytes.len() {
            assert!(decode(&bytes[..end], folder).is_none(), "cut at {end}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer, folder).is_none());
        // Every byte changed in turn: read or refused, never a panic or a huge allocation.
        for at in 0..bytes.len() {
            let mut changed = bytes.clone();
            changed[at] ^= 0xff;
            let _ = decode(&changed, folder);
        }
    }

    #[test]
    fn an_unsorted_or_unsafe_run_folder_listing_is_refused() {
        let folder = Path::new("/logs");
        let mut listings = sample();
        let mut listing = (**listings.memos[0].listing.as_ref().unwrap()).clone();
        listing.names = vec![b"b".to_vec(), b"a".to_vec()];
        listings.memos[0].listing = Some(Arc::new(listing.clone()));
        assert!(decode(&encode(folder, &listings), folder).is_none());
        listing.names = vec![b"../x".to_vec()];
        listings.memos[0].listing = Some(Arc::new(listing));
        assert!(decode(&encode(folder, &listings), folder).is_none());
    }

    fn stat(ino: u64) -> FileStat {
        FileStat {
            ino,
            size: 10,
            modified: 20,
            changed: 30,
            mode: 0o100000,
        }
    }

    fn fingerprint(run_id: &str, text: &str) -> Arc<Fingerprint> {
        Arc::new(Fingerprint {
            run_id: OsString::from(run_id),
            fingerprint: text.to_string(),
            newest_change_ns: 30,
        })
    }

    /// A run folder stamped from its listing and a document, both found current against
    /// stamps of a shared key (the last scan's), and a name whose mark is process-local.
    fn marked(judged: u64) -> FolderListings {
        let mut listings = sample();
        let mut listing = (**listings.memos[0].listing.as_ref().unwrap()).clone();
        let found = fingerprint("run-a", "11:3:abc");
        listing.last = Some((vec![stat(1), stat(2), stat(3)], Arc::clone(&found)));
        listings.memos[0] = Memo {
            document: None,
            run_folder: Some(found),
            listing: Some(Arc::new(listing)),
            verdict: Verdict::saved(Some(SHARED_KEY | 5)),
        };
        listings.memos[1] = Memo {
            document: Some((stat(12), fingerprint("run-b", "12-10-20-30"))),
            run_folder: None,
            listing: None,
            verdict: Verdict::saved(Some(7)), // this process's own: never saved
        };
        listings.judged_key.store(judged, Ordering::Relaxed);
        listings
    }

    #[test]
    fn stats_fingerprints_and_shared_marks_are_read_back() {
        let folder = Path::new("/logs");
        let bytes = encode(folder, &marked(SHARED_KEY | 5));
        let back = decode(&bytes, folder).expect("read back");
        assert_eq!(back.saved_key.load(Ordering::Relaxed), SHARED_KEY | 5);
        let run = &back.memos[0];
        let (stats, last) = run
            .listing
            .as_ref()
            .unwrap()
            .last
            .as_ref()
            .expect("stats kept");
        assert_eq!(stats, &vec![stat(1), stat(2), stat(3)]);
        assert_eq!(last.fingerprint, "11:3:abc");
        assert_eq!(last.run_id, OsString::from("run-a"));
        assert!(
            Arc::ptr_eq(run.run_folder.as_ref().unwrap(), last),
            "one fingerprint"
        );
        assert_eq!(run.verdict.to_save(), Some(SHARED_KEY | 5));
        let document = &back.memos[1];
        let (stat_back, found) = document.document.as_ref().expect("the document's stamp");
        assert_eq!(*stat_back, stat(12));
        assert_eq!(
            found.run_id,
            OsString::from("run-b"),
            "the name without .json"
        );
        assert_eq!(
            document.verdict.to_save(),
            Some(0),
            "a process's own mark is not kept"
        );
        assert_eq!(encode(folder, &back), bytes);
        // Marks of a key of this process alone: saved as none.
        let local = decode(&encode(folder, &marked(3)), folder).unwrap();
        assert_eq!(local.saved_key.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_document_stamp_on_a_name_that_is_no_document_is_refused() {
        let folder = Path::new("/logs");
        let mut listings = marked(0);
        listings.memos.swap(0, 1); // run-a (a folder's name) gets the document's stamp
        assert!(decode(&encode(folder, &listings), folder).is_none());
    }

    #[test]
    fn names_in_many_blocks_are_read_back_in_order_and_each_once() {
        let folder = Path::new("/logs");
        let count = BLOCK * 2 + 7;
        let names: Names = (0..count)
            .map(|i| {
                (
                    OsString::from(format!("run-{i:06}.json")),
                    FileType::RegularFile,
                    i as u64,
                )
            })
            .collect();
        let listings = FolderListings {
            names: None,
            memos: (0..count).map(|_| Memo::default()).collect(),
            listed: Arc::new(names.clone()),
            ..FolderListings::default()
        };
        let bytes = encode(folder, &listings);
        let back = decode(&bytes, folder).expect("read back");
        assert_eq!(*back.listed, names);
        // A name of one block repeated at the head of the next: refused.
        let mut twice = names.clone();
        twice[BLOCK] = twice[BLOCK - 1].clone();
        let listings = FolderListings {
            listed: Arc::new(twice),
            memos: (0..count).map(|_| Memo::default()).collect(),
            ..FolderListings::default()
        };
        assert!(decode(&encode(folder, &listings), folder).is_none());
    }
}
