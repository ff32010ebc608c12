//! Content hashing of files: BLAKE3 (the default) or SHA-256 (what runnable records).
//!
//! Every byte of every file is hashed, whatever its size. Many files are hashed in parallel
//! (rayon, one task per file); a large file is hashed by BLAKE3's tree hashing on all threads,
//! a piece at a time while the next piece is read ([`read_in_turns`]). SHA-256 cannot be split,
//! so large SHA-256 files run one per thread. A file that changes while it is read is read
//! again, a few times, then an error, never a digest of a mix. No file is read through a memory
//! map: a mapped file that another process cuts short kills the reader with SIGBUS.

use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use rustix::fs::{Mode, OFlags};
use sha2::{Digest as _, Sha256};

use crate::error::{CoreError, Result};

/// Files at least this large are hashed by BLAKE3 on all threads ([`read_in_turns`]). Below it
/// the split does not pay: blake3's own rule of thumb puts `update_rayon` behind a plain
/// `update` under 128 KiB, two buffers of a piece each must be allocated, and a batch of
/// smaller files is spread one file per thread already. At BLAKE3's one-core speed (a few GB/s)
/// 4 MiB is a millisecond or more of hashing, against tens of microseconds to wake the pool.
pub const PARALLEL_MIN_BYTES: u64 = 4 << 20;
/// How much of a large file [`read_in_turns`] reads at a time while the piece before is hashed:
/// enough that BLAKE3's `update_rayon` spreads each piece over every thread, little enough that
/// the first piece, read before any hashing starts, is short. Measured here (200 files of
/// 5 MiB / one of 768 MiB, page cache warm, medians): 1 MiB 165 / 127-133 ms, 2 MiB 164-168 /
/// 120-121 ms, 4 MiB 179-186 / 119-137 ms; through a memory map, as before, 176-182 / 115-118.
const PIECE_BYTES: usize = 2 << 20;
/// The read buffer of a streamed hash or copy (sized down to the file for small ones): at 1 MiB
/// a read's system call is a negligible share of hashing the bytes, and one buffer per thread
/// stays small.
const BUFFER_BYTES: usize = 1 << 20;

/// A content hash algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Blake3,
    Sha256,
}

impl Algorithm {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "blake3" => Ok(Algorithm::Blake3),
            "sha256" => Ok(Algorithm::Sha256),
            other => Err(CoreError::InvalidArgument(format!(
                "unknown hash algorithm {other:?}: expected \"blake3\" or \"sha256\""
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Blake3 => "blake3",
            Algorithm::Sha256 => "sha256",
        }
    }
}

/// What identifies a file's content without reading it: if none of these changed, neither did
/// the content (given the racy-timestamp rule of the cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl FileIdentity {
    pub fn of(meta: &Metadata) -> Self {
        FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        }
    }
}

/// A digest and the identity of the file it was computed from.
#[derive(Debug, Clone)]
pub struct Hashed {
    pub digest: String,
    pub identity: FileIdentity,
    /// Wall clock (ns) before the file was opened: the cache trusts the digest only for files
    /// last modified well before this.
    pub started_ns: i64,
}

pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Hex digest of one file.
pub fn hash_file(path: &Path, algorithm: Algorithm) -> Result<String> {
    hash_with_identity(path, algorithm).map(|h| h.digest)
}

/// Hex digests of many files, in parallel, in the order given; each file fails on its own.
pub fn hash_files(paths: &[PathBuf], algorithm: Algorithm) -> Vec<Result<String>> {
    let folders = SharedFolders::of(paths);
    paths
        .par_iter()
        .enumerate()
        .map(|(at, path)| hash_with_identity_at(&folders.place(at, path), algorithm))
        .map(|hashed| hashed.map(|h| h.digest))
        .collect()
}

/// A folder named by at least this many consecutive paths of a batch is opened once, and those
/// files are opened relative to it (`openat`): the kernel then looks up one name per file
/// instead of walking every folder of its path again. Measured here on 10,000 files of 4 KiB
/// five folders deep: 3.0 us an open by path, 2.7 us relative to the folder, about a tenth of
/// what hashing such a file costs in all. Below this many files, the folder's own open and
/// close (two system calls) would not pay back.
const SHARED_FOLDER_MIN_FILES: usize = 8;

/// Where to open a file from: by its whole path, or by its last name inside a folder opened
/// once for the batch. Either way `path` names it in errors.
struct Place<'a> {
    path: &'a Path,
    inside: Option<(BorrowedFd<'a>, &'a OsStr)>,
}

impl<'a> Place<'a> {
    fn by_path(path: &'a Path) -> Self {
        Place { path, inside: None }
    }
}

/// The folders shared by runs of consecutive paths of a batch (see
/// [`SHARED_FOLDER_MIN_FILES`]), each opened once (`O_PATH`: nothing is read through it).
struct SharedFolders<'a> {
    opened: Vec<OwnedFd>,
    /// For each path of the batch, the index in `opened` of its folder and its last name, when
    /// it is opened inside a shared folder.
    inside: Vec<Option<(usize, &'a OsStr)>>,
}

impl<'a> SharedFolders<'a> {
    fn of(paths: &'a [PathBuf]) -> Self {
        let split: Vec<Option<(&Path, &OsStr)>> =
            paths.iter().map(|path| split_last_name(path)).collect();
        let mut shared = SharedFolders {
            opened: Vec::new(),
            inside: vec![None; paths.len()],
        };
        let mut start = 0;
        while start < split.len() {
            let folder = split[start].map(|(folder, _)| folder);
            let mut end = start + 1;
            while end < split.len() && folder.is_some() && split[end].map(|(f, _)| f) == folder {
                end += 1;
            }
            if let Some(folder) = folder.filter(|_| end - start >= SHARED_FOLDER_MIN_FILES) {
                // A folder that cannot be opened leaves its files to be opened by path, each
                // then failing (or not) with its own error.
                if let Ok(fd) = rustix::fs::open(
                    folder,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    shared.opened.push(fd);
                    let index = shared.opened.len() - 1;
                    for (inside, found) in
                        shared.inside[start..end].iter_mut().zip(&split[start..end])
                    {
                        *inside = found.map(|(_, name)| (index, name));
                    }
                }
            }
            start = end;
        }
        shared
    }

    fn place(&'a self, at: usize, path: &'a Path) -> Place<'a> {
        let inside = self.inside[at].map(|(index, name)| (self.opened[index].as_fd(), name));
        Place { path, inside }
    }
}

/// `(folder, name)` of a path that is exactly `folder/name` with a plain last name, so that
/// opening `name` inside `folder` opens what the path opens; None for anything else (a path
/// without a folder, ending in `/`, `.` or `..`), which is then opened by its whole path.
fn split_last_name(path: &Path) -> Option<(&Path, &OsStr)> {
    let bytes = path.as_os_str().as_bytes();
    let slash = bytes.iter().rposition(|&b| b == b'/')?;
    let name = &bytes[slash + 1..];
    if name.is_empty() || name == b"." || name == b".." {
        return None;
    }
    // The folder as written, its trailing slashes kept ("/" for a file at the root).
    let folder = if slash == 0 {
        &bytes[..1]
    } else {
        &bytes[..slash]
    };
    Some((
        Path::new(OsStr::from_bytes(folder)),
        OsStr::from_bytes(name),
    ))
}

/// Open a path for reading only if it is a regular file. `O_NONBLOCK` keeps a FIFO that
/// appears at the path from blocking the open; the type is checked on the opened descriptor.
pub fn open_regular(path: &Path) -> Result<(File, Metadata)> {
    open_regular_at(&Place::by_path(path))
}

/// [`open_regular`] from a [`Place`].
fn open_regular_at(place: &Place<'_>) -> Result<(File, Metadata)> {
    let path = place.path;
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let opened = match place.inside {
        Some((folder, name)) => rustix::fs::openat(folder, name, flags, Mode::empty()),
        None => rustix::fs::open(path, flags, Mode::empty()),
    };
    let fd = opened.map_err(|e| CoreError::io("open", path, io::Error::from(e)))?;
    let file = File::from(fd);
    let meta = file
        .metadata()
        .map_err(|e| CoreError::io("stat", path, e))?;
    if !meta.is_file() {
        return Err(CoreError::NotAFile {
            path: path.to_path_buf(),
            reason: format!("is {}, not a regular file", describe_type(&meta)),
        });
    }
    Ok((file, meta))
}

fn describe_type(meta: &Metadata) -> &'static str {
    let kind = meta.file_type();
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_char_device() {
        "a character device"
    } else {
        "a special file"
    }
}

/// How many times a file that changed while it was read is read again before that is an
/// error: a writer finishing a file as a put starts usually settles within a few reads.
pub const CHANGED_RETRIES: u32 = 5;
/// The wait before the first read again, doubled before each next one (10, 20, 40, 80, 160 ms:
/// about 0.3 s in all before a put gives up on a file).
const FIRST_CHANGED_WAIT: Duration = Duration::from_millis(10);

/// One read of a file: what it gave, or that the file changed while it was read.
pub enum Attempt<T> {
    Done(T),
    Changed,
}

/// Run `attempt` until the file it reads stays unchanged through it, at most
/// [`CHANGED_RETRIES`] times again (waiting a little longer each time); a file that changed on
/// every read is an error naming it and saying how many times it changed.
pub fn retry_while_changing<T>(
    path: &Path,
    mut attempt: impl FnMut() -> Result<Attempt<T>>,
) -> Result<T> {
    let mut wait = FIRST_CHANGED_WAIT;
    for tried in 0..=CHANGED_RETRIES {
        if let Attempt::Done(value) = attempt()? {
            return Ok(value);
        }
        if tried < CHANGED_RETRIES {
            std::thread::sleep(wait);
            wait *= 2;
        }
    }
    Err(changed_while_read(path, CHANGED_RETRIES + 1))
}

/// Hash one file and say which file (identity) the digest belongs to; a file that changes
/// while it is read is read again (see [`retry_while_changing`]).
pub fn hash_with_identity(path: &Path, algorithm: Algorithm) -> Result<Hashed> {
    hash_with_identity_at(&Place::by_path(path), algorithm)
}

fn hash_with_identity_at(place: &Place<'_>, algorithm: Algorithm) -> Result<Hashed> {
    retry_while_changing(place.path, || hash_once(place, algorithm))
}

fn hash_once(place: &Place<'_>, algorithm: Algorithm) -> Result<Attempt<Hashed>> {
    let path = place.path;
    let started_ns = now_ns();
    let (mut file, meta) = open_regular_at(place)?;
    let before = FileIdentity::of(&meta);
    let digest = if algorithm == Algorithm::Blake3 && before.size >= PARALLEL_MIN_BYTES {
        let mut hasher = blake3::Hasher::new();
        let whole = read_in_turns(&mut file, before.size, |piece| {
            hasher.update_rayon(piece);
        })
        .map_err(|e| CoreError::io("read", path, e))?;
        let after = file
            .metadata()
            .map(|m| FileIdentity::of(&m))
            .map_err(|e| CoreError::io("stat", path, e))?;
        if !whole || after != before {
            return Ok(Attempt::Changed);
        }
        hasher.finalize().to_hex().to_string()
    } else {
        let digest = hash_reader(&mut file, algorithm, before.size)
            .map_err(|e| CoreError::io("read", path, e))?;
        let after = file
            .metadata()
            .map(|m| FileIdentity::of(&m))
            .map_err(|e| CoreError::io("stat", path, e))?;
        if after != before {
            return Ok(Attempt::Changed);
        }
        digest
    };
    Ok(Attempt::Done(Hashed {
        digest,
        identity: before,
        started_ns,
    }))
}

/// Read `size` bytes of `file` from where it stands, a piece at a time, handing each piece to
/// `take` while the next one is read (`rayon::join`): reading and hashing overlap, and every
/// byte comes through a buffer, never a memory map (see the module's docs). `Ok(false)` when
/// the file ended before `size` bytes: it was cut short while it was read.
pub fn read_in_turns(
    file: &mut File,
    size: u64,
    mut take: impl FnMut(&[u8]) + Send,
) -> io::Result<bool> {
    let piece = (size as usize).min(PIECE_BYTES);
    let (mut current, mut next) = (Piece::take(piece), Piece::take(piece));
    let mut left = size;
    let mut current_len = left.min(piece as u64) as usize;
    if read_full(file, &mut current[..current_len])? < current_len {
        return Ok(false);
    }
    left -= current_len as u64;
    while left > 0 {
        let wanted = left.min(piece as u64) as usize;
        let ((), got) = rayon::join(
            || take(&current[..current_len]),
            || read_full(file, &mut next[..wanted]),
        );
        if got? < wanted {
            return Ok(false);
        }
        left -= wanted as u64;
        std::mem::swap(&mut current, &mut next);
        current_len = wanted;
    }
    take(&current[..current_len]);
    Ok(true)
}

/// A buffer of [`read_in_turns`], taken from the few the process keeps and given back when
/// dropped: a fresh buffer costs its page faults on every file, and files of a few MiB come by
/// the hundred.
struct Piece(Vec<u8>);

/// Buffers kept for the next large files: two for each of two files hashed at once.
static SPARE_PIECES: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());
const SPARE_PIECES_KEPT: usize = 4;

impl Piece {
    fn take(len: usize) -> Piece {
        let spare = SPARE_PIECES.lock().ok().and_then(|mut spare| spare.pop());
        let mut buffer = spare.unwrap_or_default();
        buffer.resize(len, 0);
        Piece(buffer)
    }
}

impl Drop for Piece {
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.0);
        if buffer.capacity() >= PIECE_BYTES {
            if let Ok(mut spare) = SPARE_PIECES.lock() {
                if spare.len() < SPARE_PIECES_KEPT {
                    spare.push(buffer);
                }
            }
        }
    }
}

impl std::ops::Deref for Piece {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::DerefMut for Piece {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

/// Fill `buffer` from `file`; fewer bytes only at the file's end.
fn read_full(file: &mut File, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The error for a file that changed on each of `times` reads.
pub fn changed_while_read(path: &Path, times: u32) -> CoreError {
    let reads = if times == 1 {
        "once, while it was read".to_string()
    } else {
        format!("on each of {times} reads in a row")
    };
    CoreError::NotAFile {
        path: path.to_path_buf(),
        reason: format!(
            "changed {reads} (some process is still writing it); put or hash it again once it \
             is complete"
        ),
    }
}

/// Copy `source` (`size` bytes by its fstat) into `out`, hashing the bytes as they pass (one
/// read of the source); the hex
/// digest of what was written. The one copy-and-hash loop of the catalogs (copier.rs,
/// content.rs).
pub fn copy_hashing(
    source: &mut impl Read,
    out: &mut impl Write,
    algorithm: Algorithm,
    size: u64,
    src: &Path,
    dst: &Path,
) -> Result<String> {
    let mut hasher = StreamHasher::new(algorithm);
    let mut buffer = vec![0u8; BUFFER_BYTES.min(size as usize + 1).max(4096)];
    let mut total: u64 = 0;
    // Stop at the size fstat gave, without one more read to see the end (as hash_reader):
    // callers compare the source's identity, size included, after the copy. A file that says
    // it is empty is read to its end (pseudo-files have content).
    while size == 0 || total < size {
        let n = match source.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CoreError::io("read", src, e)),
        };
        hasher.update(&buffer[..n]);
        out.write_all(&buffer[..n])
            .map_err(|e| CoreError::io("write", dst, e))?;
        total += n as u64;
    }
    Ok(hasher.finalize())
}

/// Streaming hasher of either algorithm.
pub enum StreamHasher {
    Blake3(Box<blake3::Hasher>),
    Sha256(Sha256),
}

impl StreamHasher {
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Blake3 => StreamHasher::Blake3(Box::new(blake3::Hasher::new())),
            Algorithm::Sha256 => StreamHasher::Sha256(Sha256::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            StreamHasher::Blake3(h) => {
                h.update(data);
            }
            StreamHasher::Sha256(h) => h.update(data),
        }
    }

    pub fn finalize(self) -> String {
        match self {
            StreamHasher::Blake3(h) => h.finalize().to_hex().to_string(),
            StreamHasher::Sha256(h) => to_hex(&h.finalize()),
        }
    }
}

thread_local! {
    /// The read buffer of [`hash_reader`] on this thread, kept from file to file: a fresh
    /// buffer for each of 10,000 small files is an allocation and a zeroing each (about 2% of
    /// hashing a 4 KiB file here). It grows to the largest file read, at most 1 MiB.
    static READ_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

pub fn hash_reader(reader: &mut impl Read, algorithm: Algorithm, size: u64) -> io::Result<String> {
    READ_BUFFER.with_borrow_mut(|kept| {
        // Sized to the file (one read for a small one), at most 1 MiB.
        let wanted = (size as usize).clamp(4096, BUFFER_BYTES - 1) + 1;
        if kept.len() < wanted {
            kept.resize(wanted, 0);
        }
        hash_reader_with(reader, algorithm, size, &mut kept[..wanted])
    })
}

fn hash_reader_with(
    reader: &mut impl Read,
    algorithm: Algorithm,
    size: u64,
    buffer: &mut [u8],
) -> io::Result<String> {
    let mut hasher = StreamHasher::new(algorithm);
    let mut total: u64 = 0;
    // Stop at the size fstat gave, without a read to see the end: the caller compares the
    // file's identity (size included) after reading, so growth or shrinkage is an error.
    // Files that say they are empty are read to the end: pseudo-files (/proc) have content.
    while size == 0 || total < size {
        let n = match reader.read(buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buffer[..n]);
        total += n as u64;
    }
    Ok(hasher.finalize())
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const EMPTY_BLAKE3: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

    #[test]
    fn known_vectors() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        assert_eq!(hash_file(&empty, Algorithm::Sha256).unwrap(), EMPTY_SHA256);
        assert_eq!(hash_file(&empty, Algorithm::Blake3).unwrap(), EMPTY_BLAKE3);
        let abc = dir.path().join("abc");
        std::fs::write(&abc, b"abc").unwrap();
        assert_eq!(
            hash_file(&abc, Algorithm::Sha256).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hash_file(&abc, Algorithm::Blake3).unwrap(),
            blake3::hash(b"abc").to_hex().to_string()
        );
    }

    #[test]
    fn large_files_hash_every_byte_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let mut data = vec![0u8; (PARALLEL_MIN_BYTES as usize) * 2 + 12345];
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i * 31 % 251) as u8;
        }
        std::fs::write(&path, &data).unwrap();
        assert_eq!(
            hash_file(&path, Algorithm::Blake3).unwrap(),
            blake3::hash(&data).to_hex().to_string()
        );
        assert_eq!(
            hash_file(&path, Algorithm::Sha256).unwrap(),
            to_hex(&Sha256::digest(&data))
        );
        // One byte flipped at the very end changes the digest.
        let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.seek(SeekFrom::End(-1)).unwrap();
        file.write_all(&[data[data.len() - 1] ^ 1]).unwrap();
        assert_ne!(
            hash_file(&path, Algorithm::Blake3).unwrap(),
            blake3::hash(&data).to_hex().to_string()
        );
    }

    #[test]
    fn per_file_errors_name_the_path_and_keep_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good");
        std::fs::write(&good, b"x").unwrap();
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let paths = vec![
            good.clone(),
            dir.path().join("missing"),
            dir.path().to_path_buf(),
            fifo.clone(),
        ];
        let results = hash_files(&paths, Algorithm::Blake3);
        assert_eq!(
            results[0].as_ref().unwrap(),
            &blake3::hash(b"x").to_hex().to_string()
        );
        let missing = results[1].as_ref().unwrap_err();
        assert_eq!(missing.errno(), Some(2));
        assert!(missing.to_string().contains("missing"));
        let folder = results[2].as_ref().unwrap_err().to_string();
        assert!(folder.contains("a directory"), "{folder}");
        let fifo_err = results[3].as_ref().unwrap_err().to_string();
        assert!(fifo_err.contains("a FIFO"), "{fifo_err}");
    }

    #[test]
    fn a_folder_shared_by_many_paths_opens_each_as_its_path_would() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("many");
        std::fs::create_dir(&folder).unwrap();
        let mut paths: Vec<PathBuf> = (0..SHARED_FOLDER_MIN_FILES + 2)
            .map(|i| {
                let path = folder.join(format!("f{i}"));
                std::fs::write(&path, format!("content {i}")).unwrap();
                path
            })
            .collect();
        std::os::unix::fs::symlink(&paths[0], folder.join("link")).unwrap();
        std::fs::create_dir(folder.join("sub")).unwrap();
        // In the same run of paths: a link (followed, as an open by path follows it), a missing
        // file and a folder (each its own error naming it), a file through a doubled slash, and
        // names that are not a plain last name (trailing slash, "." and ".."), opened by path.
        let text = folder.to_str().unwrap();
        for odd in ["link", "missing", "sub", "/f1", "f2/", "sub/..", "sub/."] {
            paths.push(PathBuf::from(format!("{text}/{odd}")));
        }
        assert!(SharedFolders::of(&paths).opened.len() == 1);
        let batch = hash_files(&paths, Algorithm::Blake3);
        for (path, found) in paths.iter().zip(&batch) {
            let alone = hash_file(path, Algorithm::Blake3);
            match (found, &alone) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{path:?}"),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{path:?}"),
                _ => panic!("{path:?}: {found:?} in the batch, {alone:?} alone"),
            }
        }
        let n = SHARED_FOLDER_MIN_FILES + 2;
        assert_eq!(batch[n].as_ref().unwrap(), batch[0].as_ref().unwrap());
        assert_eq!(batch[n + 1].as_ref().unwrap_err().errno(), Some(2));
        assert!(batch[n + 2]
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("a directory"));
        assert_eq!(batch[n + 3].as_ref().unwrap(), batch[1].as_ref().unwrap());
        assert_eq!(batch[n + 4].as_ref().unwrap_err().errno(), Some(20)); // ENOTDIR
        assert!(batch[n + 5].is_err() && batch[n + 6].is_err());
    }

    #[test]
    fn a_path_is_split_into_its_folder_and_a_plain_last_name_or_not_at_all() {
        fn split(p: &str) -> Option<(&str, &str)> {
            split_last_name(Path::new(p)).map(|(f, n)| (f.to_str().unwrap(), n.to_str().unwrap()))
        }
        assert_eq!(split("/a/b/c.bin"), Some(("/a/b", "c.bin")));
        assert_eq!(split("/c.bin"), Some(("/", "c.bin")));
        assert_eq!(split("a//c"), Some(("a/", "c")));
        assert_eq!(split("rel/c"), Some(("rel", "c")));
        for whole in ["c.bin", "a/", "a/.", "a/..", "/"] {
            assert_eq!(split(whole), None, "{whole}");
        }
    }

    #[test]
    fn a_file_changing_on_every_read_is_read_six_times_then_named() {
        let path = Path::new("/data/busy.bin");
        let mut reads = 0;
        let started = std::time::Instant::now();
        let err = retry_while_changing(path, || -> Result<Attempt<()>> {
            reads += 1;
            Ok(Attempt::Changed)
        })
        .unwrap_err();
        assert_eq!(reads, CHANGED_RETRIES + 1);
        assert!(
            started.elapsed() >= Duration::from_millis(310),
            "the waits grow"
        );
        let message = err.to_string();
        assert!(message.contains("/data/busy.bin"), "{message}");
        assert!(message.contains("on each of 6 reads in a row"), "{message}");
        // A file that settles is answered by the read that found it unchanged.
        let mut left = 2;
        let value = retry_while_changing(path, || -> Result<Attempt<u8>> {
            left -= 1;
            Ok(if left < 0 {
                Attempt::Done(7)
            } else {
                Attempt::Changed
            })
        })
        .unwrap();
        assert_eq!(value, 7);
    }

    #[test]
    fn read_in_turns_hands_every_byte_in_order_and_says_when_a_file_ended_early() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..PIECE_BYTES * 5 / 2).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let mut seen = Vec::new();
        let whole = read_in_turns(
            &mut File::open(&path).unwrap(),
            data.len() as u64,
            |piece| seen.extend_from_slice(piece),
        )
        .unwrap();
        assert!(whole);
        assert_eq!(seen, data);
        // A file shorter than the size its stat gave: cut short while it was read.
        let claimed = data.len() as u64 + 10;
        let mut file = File::open(&path).unwrap();
        assert!(!read_in_turns(&mut file, claimed, |_| ()).unwrap());
    }

    #[test]
    fn a_large_file_cut_short_while_it_is_hashed_is_read_again_not_a_crash() {
        // A memory-mapped read of a file another thread truncates dies of SIGBUS (this test
        // binary with it); a read through buffers sees the file end and reads it again.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("busy.bin");
        let data: Vec<u8> = (0..PARALLEL_MIN_BYTES as usize * 4)
            .map(|i| (i % 241) as u8)
            .collect();
        std::fs::write(&path, &data).unwrap();
        // Each version the file passes through, whole: cut to 4096 bytes, emptied by the
        // rewrite's open, written again.
        let versions =
            [&data[..], &data[..4096], &[]].map(|v| blake3::hash(v).to_hex().to_string());
        assert_eq!(hash_file(&path, Algorithm::Blake3).unwrap(), versions[0]);
        let stop = std::sync::atomic::AtomicBool::new(false);
        // Set however the hashing loop ends: a failed assertion must not leave the scope
        // waiting on a writer that runs until told to stop.
        struct Stop<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                    file.set_len(4096).unwrap();
                    std::thread::sleep(Duration::from_millis(2));
                    std::fs::write(&path, &data).unwrap();
                }
            });
            let _stop = Stop(&stop);
            for _ in 0..40 {
                match hash_file(&path, Algorithm::Blake3) {
                    Ok(digest) => assert!(versions.contains(&digest), "a mix: {digest}"),
                    Err(err) => assert!(err.to_string().contains("changed"), "{err}"),
                }
            }
        });
    }

    #[test]
    fn algorithms_by_name() {
        assert_eq!(Algorithm::parse("sha256").unwrap(), Algorithm::Sha256);
        assert!(Algorithm::parse("md5").is_err());
    }
}
