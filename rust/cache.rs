//! The hash cache: a file whose identity (device, inode, size, mtime, ctime) is unchanged since
//! it was hashed is not read again (docs/format.md, "The hash cache").
//!
//! Stored as an append-only text file, one checksummed line per entry, so writers in any number
//! of processes append under a lock without rewriting each other's entries, a torn line (a
//! crash mid-append) is skipped on reading, and the file is compacted when it has grown to many
//! times its live entries. The cache is advisory: a lost entry costs one more read of a file,
//! never a wrong digest.
//!
//! A digest is recorded only for a file last modified at least [`SETTLED_NS`] before the hash
//! started, and only once its bytes are on disk ([`make_durable_all`]):
//!
//! - File timestamps come from a coarse clock (a few ms), so a file rewritten right after being
//!   hashed could keep its mtime; one modified long before cannot be rewritten without its
//!   mtime moving past the recorded one.
//! - After a power cut a file can keep its new size and times while its unsynced bytes are lost
//!   (zeros, on XFS or ext4 with `data=writeback`): an entry recorded for it would vouch for
//!   bytes it no longer holds. So the file's bytes are flushed before its entry is recorded:
//!   a batch's files all at once, by one `syncfs` of their file system where that flushes
//!   everything (else an `fdatasync` each; `flush.rs`).
//! - Linux writes a dirty page back once it is older than `dirty_expire_centisecs` (30 s by
//!   default), looking every `dirty_writeback_centisecs` (5 s): a file last modified more than
//!   35 s ago is almost always on disk already, and syncing it costs a system call. A younger
//!   file is usually still in the page cache, and syncing it would cost a disk write per file.
//!   It is not recorded: the next put reads it again, and the first put after it has settled
//!   records it.
//!
//! The cache and its lock sit in a catalog folder others may write to, so both are opened as
//! every file the store did not create is (`untrusted`): a link in the cache's place is an
//! error naming it (a put fails rather than append to, or create, what the link points to),
//! and a cache past the size cap is not read.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::error::{CoreError, Result};
use rayon::prelude::*;

use crate::flush::{make_durable, Pending};
use crate::hasher::{hash_with_identity, Algorithm, FileIdentity, Hashed};
use crate::lock::FileLock;
use crate::untrusted::{self, How};
use crate::writer::write_atomic;

/// How long before the start of a hash a file must have been last modified to be cached (the
/// module's documentation says why: timestamps, and bytes that are on disk).
pub const SETTLED_NS: i64 = 35_000_000_000;
const FORMAT: &str = "1";
/// How long a flush waits for the cache's lock. Its holder only appends a batch's lines or
/// compacts the file (milliseconds), so a wait this long means a stuck holder; and the cache is
/// advisory: a flush that gives up loses entries (later reads of those files), never a digest.
const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    hashed_ns: i64,
    digest: String,
}

type Key = (Algorithm, u64, u64);

/// The cache of one catalog, opened once per batch of files.
#[derive(Debug)]
pub struct HashCache {
    path: PathBuf,
    entries: HashMap<Key, Entry>,
    lines_on_disk: usize,
    pending: Vec<String>,
    /// How far the file was read (whole lines only), in the file `read_of` (device, inode).
    read_to: u64,
    read_lines: usize,
    read_of: (u64, u64),
    prefix: blake3::Hash,
}

/// What this process last read of a cache file, so that the next open reads only the lines
/// appended since: a put opens the cache once per batch, and reading 20,000 lines again for
/// each of a 10,000-file put's 40 batches cost 0.2-0.4 s (docs/performance.md). The file only
/// grows by appends, or is replaced whole by a compaction (a new inode); a file that is not
/// the one read, is shorter than what was read, or whose bytes read before changed (an edit in
/// place) is parsed again from its start.
#[derive(Debug)]
struct ReadBefore {
    read_of: (u64, u64),
    read_to: u64,
    read_lines: usize,
    /// The BLAKE3 of the bytes read.
    prefix: blake3::Hash,
    entries: HashMap<Key, Entry>,
}

static READ_BEFORE: Mutex<Option<HashMap<PathBuf, ReadBefore>>> = Mutex::new(None);

impl HashCache {
    /// Load the cache at `path` (an empty one when the file does not exist yet).
    pub fn open(path: &Path) -> Result<HashCache> {
        let mut cache = HashCache {
            path: path.to_path_buf(),
            entries: HashMap::new(),
            lines_on_disk: 0,
            pending: Vec::new(),
            read_to: 0,
            read_lines: 0,
            read_of: (0, 0),
            prefix: blake3::Hasher::new().finalize(),
        };
        cache.load()?;
        Ok(cache)
    }

    fn load(&mut self) -> Result<()> {
        let before = READ_BEFORE
            .lock()
            .ok()
            .and_then(|mut all| all.as_mut()?.remove(&self.path));
        let Some(file) = untrusted::open_file(&self.path, How::Read)? else {
            return Ok(());
        };
        let stat =
            rustix::fs::fstat(&file).map_err(|e| CoreError::io("stat", &self.path, e.into()))?;
        let read_of = (stat.st_dev, stat.st_ino);
        let bytes = untrusted::read_bounded(&file, &self.path, 0)?;
        // What was read before is parsed again only if it changed: the same file, its first
        // bytes the same (hashing them costs a fraction of parsing them).
        let mut prefix = blake3::Hasher::new();
        if let Some(before) = before {
            let end = before.read_to as usize;
            if before.read_of == read_of
                && end <= bytes.len()
                && prefix.update(&bytes[..end]).finalize() == before.prefix
            {
                self.entries = before.entries;
                self.read_to = before.read_to;
                self.read_lines = before.read_lines;
            } else {
                prefix.reset();
            }
        }
        self.read_of = read_of;
        let start = self.read_to as usize;
        // Whole lines only: a line still being appended is read, whole, by the next open.
        let whole = bytes[start..]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(start, |end| start + end + 1);
        let text = String::from_utf8_lossy(&bytes[start..whole]);
        for line in text.split('\n') {
            if line.is_empty() {
                continue;
            }
            self.read_lines += 1;
            if let Some((key, entry)) = parse_line(line) {
                self.entries.insert(key, entry);
            }
        }
        self.prefix = prefix.update(&bytes[start..whole]).finalize();
        self.read_to = whole as u64;
        // A torn or partial last line counts as a line on disk, as compaction sees it.
        self.lines_on_disk = self.read_lines + usize::from(whole < bytes.len());
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The digest recorded for a file with exactly this identity.
    pub fn lookup(&self, algorithm: Algorithm, identity: &FileIdentity) -> Option<&str> {
        let entry = self.entries.get(&(algorithm, identity.dev, identity.ino))?;
        let same = entry.size == identity.size
            && entry.mtime_ns == identity.mtime_ns
            && entry.ctime_ns == identity.ctime_ns;
        same.then_some(entry.digest.as_str())
    }

    /// Whether `record_identity` would add an entry (the file is old enough, and not recorded
    /// with this identity and digest already): callers make such a file durable first.
    pub fn would_record(
        &self,
        algorithm: Algorithm,
        identity: &FileIdentity,
        started_ns: i64,
        digest: &str,
    ) -> bool {
        if identity.mtime_ns > started_ns - SETTLED_NS {
            return false;
        }
        match self.entries.get(&(algorithm, identity.dev, identity.ino)) {
            Some(entry) => {
                entry.size != identity.size
                    || entry.mtime_ns != identity.mtime_ns
                    || entry.ctime_ns != identity.ctime_ns
                    || entry.digest != digest
            }
            None => true,
        }
    }

    /// Remember a digest, if the file was old enough when hashed to be trusted later.
    pub fn record(&mut self, algorithm: Algorithm, hashed: &Hashed) -> bool {
        self.record_identity(
            algorithm,
            &hashed.identity,
            hashed.started_ns,
            &hashed.digest,
        )
    }

    pub fn record_identity(
        &mut self,
        algorithm: Algorithm,
        identity: &FileIdentity,
        started_ns: i64,
        digest: &str,
    ) -> bool {
        if identity.mtime_ns > started_ns - SETTLED_NS {
            return false;
        }
        let key = (algorithm, identity.dev, identity.ino);
        let entry = Entry {
            size: identity.size,
            mtime_ns: identity.mtime_ns,
            ctime_ns: identity.ctime_ns,
            hashed_ns: started_ns,
            digest: digest.to_string(),
        };
        if self.entries.get(&key) == Some(&entry) {
            return true;
        }
        self.pending.push(format_line(key, &entry));
        self.entries.insert(key, entry);
        true
    }

    /// Hex digests of `paths` in order, reading only files whose identity is not cached; the
    /// new digests are recorded and flushed. Each file fails on its own.
    pub fn hash_files(&mut self, paths: &[PathBuf], algorithm: Algorithm) -> Vec<Result<String>> {
        let results: Vec<Result<(String, Option<Hashed>)>> = {
            let cache = &*self;
            paths
                .par_iter()
                .map(|path| {
                    if let Ok(meta) = fs::metadata(path) {
                        if meta.is_file() {
                            let identity = FileIdentity::of(&meta);
                            if let Some(digest) = cache.lookup(algorithm, &identity) {
                                return Ok((digest.to_string(), None));
                            }
                        }
                    }
                    let hashed = hash_with_identity(path, algorithm)?;
                    Ok((hashed.digest.clone(), Some(hashed)))
                })
                .collect()
        };
        let fresh: Vec<(&PathBuf, &Hashed)> = paths
            .iter()
            .zip(&results)
            .filter_map(|(path, r)| Some((path, r.as_ref().ok()?.1.as_ref()?)))
            .filter(|(_, h)| self.would_record(algorithm, &h.identity, h.started_ns, &h.digest))
            .collect();
        let durable = make_durable_all(fresh.iter().map(|(path, h)| (path.as_path(), *h)));
        for ((_, hashed), synced) in fresh.iter().zip(durable) {
            if synced {
                self.record(algorithm, hashed);
            }
        }
        // The digests are right whether or not the cache could be written (a full disk, a
        // read-only catalog): the next batch reads those files again, nothing worse.
        let _ = self.flush();
        results
            .into_iter()
            .map(|r| r.map(|(digest, _)| digest))
            .collect()
    }

    /// Append what was recorded since the last flush; compact a file that has grown to many
    /// times its live entries.
    pub fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let lock_path = lock_path_of(&self.path);
        let _held = FileLock::acquire(&lock_path, LOCK_TIMEOUT)?;
        let mut text = self.pending.join("\n");
        text.push('\n');
        let mut file = untrusted::open_file(&self.path, How::AppendCreate)?
            .expect("an append creates the cache when missing");
        file.write_all(text.as_bytes())
            .map_err(|e| CoreError::io("write", &self.path, e))?;
        drop(file);
        self.lines_on_disk += self.pending.len();
        self.pending.clear();
        // Compacting rewrites the whole file, so it waits until most lines are dead (four per
        // live entry), and never runs for a small cache (10,000 lines, about a MiB).
        if self.lines_on_disk > 4 * self.entries.len() + 10_000 {
            self.compact_locked()?;
        }
        Ok(())
    }

    /// Rewrite the file with one line per live entry (the lock is held by the caller).
    fn compact_locked(&mut self) -> Result<()> {
        self.entries.clear();
        self.lines_on_disk = 0;
        self.read_to = 0;
        self.read_lines = 0;
        self.load()?;
        let mut text = String::new();
        for (key, entry) in &self.entries {
            text.push_str(&format_line(*key, entry));
            text.push('\n');
        }
        write_atomic(&self.path, text.as_bytes(), false, false)?;
        self.lines_on_disk = self.entries.len();
        // A new file: the next open reads it from its start.
        self.read_of = (0, 0);
        Ok(())
    }
}

impl Drop for HashCache {
    fn drop(&mut self) {
        // Entries not written (a flush that failed) are not handed on.
        if self.read_of == (0, 0) || !self.pending.is_empty() {
            return;
        }
        if let Ok(mut all) = READ_BEFORE.lock() {
            all.get_or_insert_with(HashMap::new).insert(
                self.path.clone(),
                ReadBefore {
                    read_of: self.read_of,
                    read_to: self.read_to,
                    read_lines: self.read_lines,
                    prefix: self.prefix,
                    entries: std::mem::take(&mut self.entries),
                },
            );
        }
    }
}

/// Put files' bytes on disk before the cache vouches for them, all at once (one `syncfs` per
/// file system where that flushes everything, else an `fdatasync` per file: `flush.rs`); per
/// file, false when that failed, and its entry is then not recorded (it is read again next
/// time). The files are settled (see [`SETTLED_NS`]), so there is seldom anything to write.
pub fn make_durable_all<'a>(files: impl Iterator<Item = (&'a Path, &'a Hashed)>) -> Vec<bool> {
    let pending: Vec<Pending<'a>> = files
        .map(|(path, hashed)| Pending {
            path,
            dev: hashed.identity.dev,
        })
        .collect();
    if pending.is_empty() {
        return Vec::new();
    }
    make_durable(&pending).iter().map(Result::is_ok).collect()
}

fn lock_path_of(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    path.with_file_name(name)
}

fn checksum(text: &str) -> String {
    blake3::hash(text.as_bytes()).to_hex()[..8].to_string()
}

fn format_line(key: Key, entry: &Entry) -> String {
    let body = format!(
        "{FORMAT} {} {} {} {} {} {} {} {}",
        key.0.name(),
        key.1,
        key.2,
        entry.size,
        entry.mtime_ns,
        entry.ctime_ns,
        entry.hashed_ns,
        entry.digest
    );
    let check = checksum(&body);
    format!("{body} {check}")
}

fn parse_line(line: &str) -> Option<(Key, Entry)> {
    let (body, check) = line.rsplit_once(' ')?;
    if checksum(body) != check {
        return None;
    }
    let fields: Vec<&str> = body.split(' ').collect();
    if fields.len() != 9 || fields[0] != FORMAT {
        return None;
    }
    let algorithm = Algorithm::parse(fields[1]).ok()?;
    let key = (algorithm, fields[2].parse().ok()?, fields[3].parse().ok()?);
    let entry = Entry {
        size: fields[4].parse().ok()?,
        mtime_ns: fields[5].parse().ok()?,
        ctime_ns: fields[6].parse().ok()?,
        hashed_ns: fields[7].parse().ok()?,
        digest: fields[8].to_string(),
    };
    Some((key, entry))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hasher::now_ns;

    fn old_file(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, content).unwrap();
        let old = std::time::SystemTime::now() - Duration::from_secs(60);
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        path
    }

    #[test]
    fn entries_survive_a_reload_and_a_change_misses() {
        let dir = tempfile::tempdir().unwrap();
        let cache_path = dir.path().join(".cache");
        let file = old_file(dir.path(), "a", b"hello");
        let hashed = hash_with_identity(&file, Algorithm::Blake3).unwrap();
        let mut cache = HashCache::open(&cache_path).unwrap();
        assert!(cache.record(Algorithm::Blake3, &hashed));
        cache.flush().unwrap();
        let cache = HashCache::open(&cache_path).unwrap();
        assert_eq!(
            cache.lookup(Algorithm::Blake3, &hashed.identity),
            Some(hashed.digest.as_str())
        );
        assert_eq!(cache.lookup(Algorithm::Sha256, &hashed.identity), None);
        let mut changed = hashed.identity;
        changed.mtime_ns += 1;
        assert_eq!(cache.lookup(Algorithm::Blake3, &changed), None);
    }

    #[test]
    fn batch_hashing_reads_only_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let cache_path = dir.path().join(".cache");
        let a = old_file(dir.path(), "a", b"one");
        let b = old_file(dir.path(), "b", b"two");
        let paths = vec![a.clone(), b.clone(), dir.path().join("missing")];
        let first = HashCache::open(&cache_path)
            .unwrap()
            .hash_files(&paths, Algorithm::Sha256);
        assert!(first[2].is_err());
        let mut cache = HashCache::open(&cache_path).unwrap();
        assert_eq!(cache.len(), 2);
        // Same size, new content, mtime put back: the ctime still tells.
        let meta = fs::metadata(&b).unwrap();
        fs::write(&b, b"TWO").unwrap();
        fs::File::options()
            .write(true)
            .open(&b)
            .unwrap()
            .set_modified(meta.modified().unwrap())
            .unwrap();
        let second = cache.hash_files(&paths, Algorithm::Sha256);
        assert_eq!(second[0].as_ref().unwrap(), first[0].as_ref().unwrap());
        assert_eq!(
            second[1].as_ref().unwrap(),
            &crate::hasher::hash_file(&b, Algorithm::Sha256).unwrap()
        );
        assert_ne!(second[1].as_ref().unwrap(), first[1].as_ref().unwrap());
    }

    #[test]
    fn fresh_files_are_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fresh");
        fs::write(&file, b"new").unwrap();
        let hashed = hash_with_identity(&file, Algorithm::Blake3).unwrap();
        let mut cache = HashCache::open(&dir.path().join(".cache")).unwrap();
        assert!(!cache.record(Algorithm::Blake3, &hashed));
        assert!(cache.is_empty());
    }

    #[test]
    fn torn_and_foreign_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let cache_path = dir.path().join(".cache");
        let file = old_file(dir.path(), "a", b"x");
        let hashed = hash_with_identity(&file, Algorithm::Sha256).unwrap();
        let mut cache = HashCache::open(&cache_path).unwrap();
        cache.record(Algorithm::Sha256, &hashed);
        cache.flush().unwrap();
        let good = fs::read_to_string(&cache_path).unwrap();
        let torn = &good[..good.len() / 2];
        fs::write(
            &cache_path,
            format!("garbage line\n{torn}{good}1 sha256 1 2 3 4 5 6 deadbeef 00000000\n"),
        )
        .unwrap();
        let cache = HashCache::open(&cache_path).unwrap();
        assert_eq!(
            cache.len(),
            0,
            "the torn line swallowed the good one after it"
        );
        fs::write(&cache_path, format!("garbage\n{torn}\n{good}")).unwrap();
        let cache = HashCache::open(&cache_path).unwrap();
        assert_eq!(cache.len(), 1);
    }

    fn identity(ino: u64) -> FileIdentity {
        FileIdentity {
            dev: 1,
            ino,
            size: 1,
            mtime_ns: 0,
            ctime_ns: 0,
        }
    }

    #[test]
    fn a_reopen_reads_what_others_appended_and_a_replaced_cache_whole() {
        let dir = tempfile::tempdir().unwrap();
        let cache_path = dir.path().join(".cache");
        let mut ours = HashCache::open(&cache_path).unwrap();
        ours.record_identity(Algorithm::Blake3, &identity(1), now_ns(), "one");
        ours.flush().unwrap();
        drop(ours);
        // Another process's lines, appended after ours was read.
        let line = format_line(
            (Algorithm::Blake3, 1, 2),
            &Entry {
                size: 1,
                mtime_ns: 0,
                ctime_ns: 0,
                hashed_ns: now_ns(),
                digest: "two".into(),
            },
        );
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(&cache_path)
            .unwrap();
        file.write_all(format!("{line}\n").as_bytes()).unwrap();
        // A line still being appended is left for a later open, not lost.
        let other = format_line(
            (Algorithm::Blake3, 1, 3),
            &Entry {
                size: 1,
                mtime_ns: 0,
                ctime_ns: 0,
                hashed_ns: now_ns(),
                digest: "three".into(),
            },
        );
        let (first, rest) = other.split_at(10);
        file.write_all(first.as_bytes()).unwrap();
        let reopened = HashCache::open(&cache_path).unwrap();
        assert_eq!(
            reopened.lookup(Algorithm::Blake3, &identity(1)),
            Some("one")
        );
        assert_eq!(
            reopened.lookup(Algorithm::Blake3, &identity(2)),
            Some("two")
        );
        assert_eq!(reopened.lookup(Algorithm::Blake3, &identity(3)), None);
        drop(reopened);
        file.write_all(format!("{rest}\n").as_bytes()).unwrap();
        let reopened = HashCache::open(&cache_path).unwrap();
        assert_eq!(
            reopened.lookup(Algorithm::Blake3, &identity(3)),
            Some("three")
        );
        assert_eq!(reopened.len(), 3);
        drop(reopened);
        // A cache removed and made anew holds only its own entries.
        fs::remove_file(&cache_path).unwrap();
        let mut fresh = HashCache::open(&cache_path).unwrap();
        assert!(fresh.is_empty());
        fresh.record_identity(Algorithm::Blake3, &identity(4), now_ns(), "four");
        fresh.flush().unwrap();
        drop(fresh);
        let reopened = HashCache::open(&cache_path).unwrap();
        assert_eq!(reopened.len(), 1);
        assert_eq!(reopened.lookup(Algorithm::Blake3, &identity(1)), None);
    }

    #[test]
    fn concurrent_writers_keep_every_entry() {
        let dir = tempfile::tempdir().unwrap();
        let cache_path = dir.path().join(".cache");
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let cache_path = cache_path.clone();
                std::thread::spawn(move || {
                    for i in 0..50u64 {
                        let mut cache = HashCache::open(&cache_path).unwrap();
                        let identity = FileIdentity {
                            dev: 1,
                            ino: t * 1000 + i,
                            size: 1,
                            mtime_ns: 0,
                            ctime_ns: 0,
                        };
                        cache.record_identity(Algorithm::Blake3, &identity, now_ns(), "d");
                        cache.flush().unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(HashCache::open(&cache_path).unwrap().len(), 200);
    }

    #[test]
    fn a_link_in_place_of_the_cache_is_refused_and_nothing_written_through_it() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious\n").unwrap();
        let cache_path = dir.path().join(".cache");
        std::os::unix::fs::symlink(&victim, &cache_path).unwrap();
        let err = HashCache::open(&cache_path).unwrap_err();
        assert!(matches!(err, CoreError::NotAFile { .. }), "{err:?}");
        assert_eq!(err.path(), cache_path.as_path());
        fs::remove_file(&cache_path).unwrap();
        let mut cache = HashCache::open(&cache_path).unwrap();
        std::os::unix::fs::symlink(dir.path().join("made"), &cache_path).unwrap();
        let identity = FileIdentity {
            dev: 1,
            ino: 1,
            size: 1,
            mtime_ns: 0,
            ctime_ns: 0,
        };
        cache.record_identity(Algorithm::Blake3, &identity, now_ns(), "d");
        assert!(cache.flush().is_err());
        assert!(!dir.path().join("made").exists());
        assert_eq!(fs::read(&victim).unwrap(), b"precious\n");
    }

    #[test]
    fn compaction_keeps_live_entries() {
        let dir = tempfile::tempdir().unwrap();
        let cache_path = dir.path().join(".cache");
        let identity = FileIdentity {
            dev: 1,
            ino: 1,
            size: 1,
            mtime_ns: 0,
            ctime_ns: 0,
        };
        let mut cache = HashCache::open(&cache_path).unwrap();
        for round in 0..10_050i64 {
            cache.record_identity(Algorithm::Blake3, &identity, now_ns() + round, "d");
            cache.flush().unwrap();
        }
        let lines = fs::read_to_string(&cache_path).unwrap().lines().count();
        assert!(lines < 100, "{lines} lines after compaction");
        assert_eq!(HashCache::open(&cache_path).unwrap().len(), 1);
    }
}
