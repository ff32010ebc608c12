//! The listings a scan of a log folder keeps (`fingerprint`), saved to a file beside the run
//! index and loaded by the next process, so that its first search does not list every run
//! folder again (100,000 run folders: an `openat`, two `getdents` and a `close` each, 0.4 s of
//! kernel time here, against one read of a file of about 10 MB).
//!
//! What is saved is what a scan trusts only while it is still true: the names of the log
//! folder under the folder's stat, and the names of each run folder (and of its `.journals`)
//! under that folder's stat. A scan checks each stat before it uses the names, exactly as it
//! checks the listings it kept itself; a stale entry is listed again. Fingerprints, stats of
//! files and the marks of runs found current are not saved: they are made again from the
//! stats the scan takes anyway.
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
//! 64-bit numbers); the count of names, then each name, its file type (raw mode bits) and
//! inode, then whether a run-folder listing follows and that listing. Byte strings are a u64
//! length and the bytes.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rustix::fs::FileType;

use super::fingerprint::{
    keep_listings, listings_of, FolderListings, Listing, Memo, Names, StatKey,
};
use super::saved_file::{put_bytes, put_head, put_u64, read_file, write_whole, Reader};
use crate::error::Result;

const MAGIC: &[u8] = b"runlog-listings\n";
const FORMAT: u32 = 1;
/// A listing saved once in this process is saved again only when this many (or a hundredth
/// of the runs, if more) were taken anew since: a search that relists a few runs does not
/// rewrite a file of every run's.
const RESAVE_AFTER: u64 = 64;

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
/// listed anew since they were last saved or loaded here, and that never happened before, or
/// enough were (see `RESAVE_AFTER`), or the log folder itself was, or the file is gone.
/// Whether they were saved.
pub fn save_listings(folder: &Path, path: &Path) -> Result<bool> {
    let listings = listings_of(folder);
    let unsaved = listings.unsaved.load(Ordering::Relaxed);
    let runs = listings.listed.len() as u64;
    let enough = RESAVE_AFTER.max(runs / 100).min(runs.max(1));
    // The log folder listed anew (runs made or removed since): every new process would match
    // each name of the saved listing by name (a map of 100,000 names) instead of in place.
    let names = listings.names_unsaved.load(Ordering::Relaxed) && listings.names.is_some();
    if unsaved == 0 || (was_saved(folder) && unsaved < enough && !names && path.exists()) {
        return Ok(false);
    }
    let bytes = encode(folder, &listings);
    write_whole(path, &bytes)?;
    // What was listed since the copy was taken counts from now on.
    listings.unsaved.fetch_sub(unsaved, Ordering::Relaxed);
    listings.names_unsaved.store(false, Ordering::Relaxed);
    mark_saved(folder);
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

fn put_names(out: &mut Vec<u8>, names: &[Vec<u8>]) {
    put_u64(out, names.len() as u64);
    for name in names {
        put_bytes(out, name);
    }
}

fn encode(folder: &Path, listings: &FolderListings) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + listings.listed.len() * 96);
    put_head(&mut out, MAGIC, FORMAT);
    put_bytes(&mut out, folder.as_os_str().as_bytes());
    // The names are trusted under the key only when they are the very listing the memos are of.
    let trusted = listings
        .names
        .as_ref()
        .filter(|(_, names)| Arc::ptr_eq(names, &listings.listed))
        .map(|(key, _)| key);
    put_optional_key(&mut out, trusted);
    // In the order of the names (which the reader checks: no name twice), not the listing's.
    let mut order: Vec<usize> = (0..listings.listed.len()).collect();
    order.sort_unstable_by(|&a, &b| listings.listed[a].0.cmp(&listings.listed[b].0));
    put_u64(&mut out, listings.listed.len() as u64);
    for at in order {
        let (name, kind, ino) = &listings.listed[at];
        put_bytes(&mut out, name.as_bytes());
        put_u64(&mut out, u64::from(kind.as_raw_mode()));
        put_u64(&mut out, *ino);
        match listings
            .memos
            .get(at)
            .and_then(|memo| memo.listing.as_ref())
        {
            Some(listing) => {
                out.push(1);
                put_optional_key(&mut out, listing.folder.as_ref());
                put_names(&mut out, &listing.names);
                match &listing.journals {
                    Some((key, names)) => {
                        out.push(1);
                        put_key(&mut out, key);
                        put_names(&mut out, names);
                    }
                    None => out.push(0),
                }
                match &listing.marker {
                    Some((text, changed)) => {
                        out.push(1);
                        put_bytes(&mut out, text.as_bytes());
                        put_u64(&mut out, *changed as u64);
                    }
                    None => out.push(0),
                }
            }
            None => out.push(0),
        }
    }
    out
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

fn decode(bytes: &[u8], folder: &Path) -> Option<FolderListings> {
    let mut reader = Reader::after_head(bytes, MAGIC, FORMAT)?;
    if reader.bytes()? != folder.as_os_str().as_bytes() {
        return None; // made for another folder (copied along with it, say)
    }
    let trusted = read_optional_key(&mut reader)?;
    let count = reader.count(8 + 16 + 1)?;
    let mut listed: Names = Vec::with_capacity(count);
    let mut memos = Vec::with_capacity(count);
    let mut previous: Option<&[u8]> = None;
    for _ in 0..count {
        let name = reader.bytes()?;
        // Each name once: they are saved in increasing order.
        if name.is_empty() || name.contains(&b'/') || previous.is_some_and(|p| p >= name) {
            return None;
        }
        previous = Some(name);
        let mode = u32::try_from(reader.u64()?).ok()?;
        let ino = reader.u64()?;
        let listing = if reader.flag()? {
            let folder_key = read_optional_key(&mut reader)?;
            let names = read_names(&mut reader)?;
            let journals = if reader.flag()? {
                Some((read_key(&mut reader)?, read_names(&mut reader)?))
            } else {
                None
            };
            let marker = if reader.flag()? {
                let text = String::from_utf8(reader.bytes()?.to_vec()).ok()?;
                Some((text, reader.u64()? as i64))
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
                last: None,
            }))
        } else {
            None
        };
        listed.push((
            OsString::from_vec(name.to_vec()),
            FileType::from_raw_mode(mode),
            ino,
        ));
        memos.push(Memo::with_listing(listing));
    }
    if !reader.is_done() {
        return None;
    }
    let listed = Arc::new(listed);
    Some(FolderListings {
        names: trusted.map(|key| (key, Arc::clone(&listed))),
        listed,
        memos,
        unsaved: AtomicU64::new(0),
        taken: 0,
        names_unsaved: AtomicBool::new(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
