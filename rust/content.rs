//! The content store of the content catalogs (docs/format.md, "Content catalogs"): contents
//! stored once under their BLAKE3 digest, put into place by reflink, hard link or copy, and the
//! run manifests' format.
//!
//! Every content is stored once, named by the BLAKE3 digest of its bytes
//! (`<objects>/<2 hex>/<62 hex>`), and a run owns a manifest (path -> digest, size, mode). This
//! module does the byte work: hashing a file for its object name and the catalog's recorded
//! algorithm in one pass (through the hash cache), storing missing contents atomically and
//! durably, materializing contents into a folder by reflink, hard link or copy, and the manifest
//! format, whose only author it is.
//!
//! Objects are read-only (mode 0444) and never written in place: a content is written to a temp
//! file in its object folder, checked against its name, fsynced, renamed into place, and the
//! folder fsynced. A hard link of an object therefore refuses writes by anyone but root (and the
//! owner after a `chmod`): see [`LinkMode::Auto`] for how the default keeps root away from them.
//!
//! What the store holds is not trusted beyond what it is: a content is read only through the
//! objects folder and its `<2 hex>` folders themselves, never through a symbolic link put in
//! their place (see [`open_object`]), and a content put into place gets the executable bit's
//! meaning of its recorded mode only, as git does (see [`file_mode`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rayon::prelude::*;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use crate::cache::{make_durable_all, HashCache};
use crate::copier::{temp_beside, written_out_if_large};
use crate::error::{CoreError, Result};
use crate::flush::{device_of, make_durable, Pending};
use crate::hasher::{
    now_ns, open_regular, read_in_turns, retry_while_changing, Algorithm, Attempt, FileIdentity,
    Hashed, StreamHasher, PARALLEL_MIN_BYTES,
};
use crate::writer::{create_dir_all_durable, fsync_folder};

/// The read buffer of a streamed hash or copy (sized down to the file for small ones), as the
/// hasher's: at 1 MiB a read's system call is a negligible share of hashing and writing the
/// bytes, and one buffer per thread stays small.
const BUFFER_BYTES: usize = 1 << 20;
/// The mode of every published content: nobody writes an object in place.
pub const OBJECT_MODE: u32 = 0o444;
/// The mode of a content renamed into place whose name may not be durable yet (see
/// [`store_contents`]): read-only too.
pub const PENDING_MODE: u32 = 0o400;
/// The manifest format this module writes (and the only one it reads).
pub const MANIFEST_FORMAT: u32 = 1;

// --- object names -------------------------------------------------------------------------------

fn is_hex_digest(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `<root>/<2 hex>/<62 hex>` for a BLAKE3 hex digest; an argument error for anything else, so
/// no name from a damaged manifest can reach outside the store.
pub fn object_path(root: &Path, digest: &str) -> Result<PathBuf> {
    if !is_hex_digest(digest) {
        return Err(CoreError::InvalidArgument(format!(
            "{digest:?} is not a BLAKE3 digest (64 lower-case hex digits)"
        )));
    }
    Ok(root.join(&digest[..2]).join(&digest[2..]))
}

// --- hashing for the store ----------------------------------------------------------------------

/// What a put needs to know of a file: its object name, the digest the catalog records (the
/// same when it records BLAKE3), its size and its permission bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentDigests {
    pub blake3: String,
    pub recorded: String,
    pub size: u64,
    pub mode: u32,
}

/// Both digests of one file from one read: BLAKE3 and `algorithm` fed the same buffers (a big
/// file a piece at a time, BLAKE3 tree-hashing each piece on the pool while the other algorithm
/// streams it and the next piece is read: `hasher::read_in_turns`).
/// A file that changes while it is read is read again (`hasher::retry_while_changing`).
fn hash_both(path: &Path, algorithm: Algorithm) -> Result<(Hashed, String)> {
    retry_while_changing(path, || hash_both_once(path, algorithm))
}

fn hash_both_once(path: &Path, algorithm: Algorithm) -> Result<Attempt<(Hashed, String)>> {
    let started_ns = now_ns();
    let (mut file, meta) = open_regular(path)?;
    let before = FileIdentity::of(&meta);
    let (blake3_hex, recorded) = if before.size >= PARALLEL_MIN_BYTES {
        let (mut tree, mut other) = (blake3::Hasher::new(), StreamHasher::new(algorithm));
        let whole = read_in_turns(&mut file, before.size, |piece| {
            rayon::join(|| tree.update_rayon(piece), || other.update(piece));
        })
        .map_err(|e| CoreError::io("read", path, e))?;
        if !whole {
            return Ok(Attempt::Changed);
        }
        (tree.finalize().to_hex().to_string(), other.finalize())
    } else {
        let mut tree = blake3::Hasher::new();
        let mut other = StreamHasher::new(algorithm);
        let mut buffer = vec![0u8; (before.size as usize).clamp(4096, BUFFER_BYTES)];
        loop {
            let n = match file.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CoreError::io("read", path, e)),
            };
            tree.update(&buffer[..n]);
            other.update(&buffer[..n]);
        }
        (tree.finalize().to_hex().to_string(), other.finalize())
    };
    let after = fs::metadata(path)
        .map(|m| FileIdentity::of(&m))
        .map_err(|e| CoreError::io("stat", path, e))?;
    if after != before {
        return Ok(Attempt::Changed);
    }
    let hashed = Hashed {
        digest: blake3_hex,
        identity: before,
        started_ns,
    };
    Ok(Attempt::Done((hashed, recorded)))
}

/// Per file (in parallel, in order): its BLAKE3 and its `algorithm` digest, its size and mode.
/// A file whose identity the cache knows for both is not read; the digests of files read are
/// recorded (once their bytes are on disk, the cache's rule). Each file fails on its own.
pub fn hash_contents(
    paths: &[PathBuf],
    algorithm: Algorithm,
    cache: Option<&mut HashCache>,
) -> Vec<Result<ContentDigests>> {
    type Fresh = Option<(Hashed, String)>;
    let results: Vec<Result<(ContentDigests, Fresh)>> = {
        let cache = cache.as_deref();
        paths
            .par_iter()
            .map(|path| {
                let meta = fs::metadata(path).map_err(|e| CoreError::io("read", path, e))?;
                let mode = meta.permissions().mode() & 0o7777;
                if let (Some(cache), true) = (cache, meta.is_file()) {
                    let identity = FileIdentity::of(&meta);
                    let tree = cache.lookup(Algorithm::Blake3, &identity);
                    let other = cache.lookup(algorithm, &identity);
                    if let (Some(tree), Some(other)) = (tree, other) {
                        let found = ContentDigests {
                            blake3: tree.to_string(),
                            recorded: other.to_string(),
                            size: identity.size,
                            mode,
                        };
                        return Ok((found, None));
                    }
                }
                let (hashed, recorded) = if algorithm == Algorithm::Blake3 {
                    let hashed = crate::hasher::hash_with_identity(path, algorithm)?;
                    let digest = hashed.digest.clone();
                    (hashed, digest)
                } else {
                    hash_both(path, algorithm)?
                };
                let found = ContentDigests {
                    blake3: hashed.digest.clone(),
                    recorded: recorded.clone(),
                    size: hashed.identity.size,
                    mode,
                };
                Ok((found, Some((hashed, recorded))))
            })
            .collect()
    };
    if let Some(cache) = cache {
        let fresh: Vec<(&PathBuf, &Hashed, &String)> = paths
            .iter()
            .zip(&results)
            .filter_map(|(path, r)| {
                let (hashed, recorded) = r.as_ref().ok()?.1.as_ref()?;
                Some((path, hashed, recorded))
            })
            .filter(|(_, h, _)| {
                cache.would_record(Algorithm::Blake3, &h.identity, h.started_ns, &h.digest)
            })
            .collect();
        let durable = make_durable_all(fresh.iter().map(|(path, h, _)| (path.as_path(), *h)));
        for ((_, hashed, recorded), synced) in fresh.iter().zip(durable) {
            if synced && cache.record(Algorithm::Blake3, hashed) && algorithm != Algorithm::Blake3 {
                cache.record_identity(algorithm, &hashed.identity, hashed.started_ns, recorded);
            }
        }
        // Advisory: a cache that cannot be written costs reads next time, nothing worse.
        let _ = cache.flush();
    }
    results
        .into_iter()
        .map(|r| r.map(|(found, _)| found))
        .collect()
}

// --- storing contents ---------------------------------------------------------------------------

/// Why a failed reflink or hard link means "this filesystem or this pair cannot", not "this
/// file is broken": the automatic mode then tries the next way.
fn unsupported(errno: Option<i32>) -> bool {
    let Some(code) = errno else { return false };
    [
        Errno::OPNOTSUPP,
        Errno::NOTTY,
        Errno::XDEV,
        Errno::INVAL,
        Errno::NOSYS,
        Errno::PERM,
        Errno::MLINK,
        Errno::ACCESS,
    ]
    .iter()
    .any(|e| e.raw_os_error() == code)
}

fn io_errno(err: &io::Error) -> Option<i32> {
    err.raw_os_error()
}

/// Clone `source`'s extents into `target` (FICLONE): a copy that shares the blocks until
/// either is written, in constant time.
fn reflink(source: &File, target: &File) -> io::Result<()> {
    rustix::fs::ioctl_ficlone(target, source).map_err(io::Error::from)
}

/// Copy `source` into `out` (both at their start), hashing with BLAKE3 as the bytes pass.
fn copy_hashing(
    source: &mut File,
    out: &mut impl Write,
    size: u64,
    src: &Path,
    dst: &Path,
) -> Result<String> {
    crate::hasher::copy_hashing(source, out, Algorithm::Blake3, size, src, dst)
}

fn hash_open_file(file: &mut File, path: &Path) -> Result<String> {
    file.seek(SeekFrom::Start(0))
        .map_err(|e| CoreError::io("read", path, e))?;
    // The size is the file's own: hash_reader reads exactly that many bytes.
    let size = file
        .metadata()
        .map_err(|e| CoreError::io("stat", path, e))?
        .len();
    crate::hasher::hash_reader(file, Algorithm::Blake3, size)
        .map_err(|e| CoreError::io("read", path, e))
}

fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

// --- reading the store without following links -------------------------------------------------

/// The error for a symbolic link where the store keeps a folder or a content: the store is
/// damaged (someone put it there), and nothing is read or written through it.
fn linked(path: &Path) -> CoreError {
    CoreError::corrupt(
        path,
        "a symbolic link where the content store keeps its contents: a content catalog never \
         reads or writes through one (remove it; runlog verify shows the runs it affects)",
    )
}

fn is_link(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// An open that failed because `path` is a link says so; any other failure is the OS's.
fn refused_open(path: &Path, err: Errno) -> CoreError {
    if is_link(path) {
        return linked(path);
    }
    CoreError::io("open", path, io::Error::from(err))
}

fn last_part(path: &Path) -> Result<&std::ffi::OsStr> {
    path.file_name()
        .ok_or_else(|| CoreError::InvalidArgument(format!("{} names no file", path.display())))
}

/// Open a stored content (`<objects>/<2 hex>/<62 hex>`) for reading without following a link
/// at any of its three levels: the objects folder, its `<2 hex>` folder and the content are
/// each opened with `O_NOFOLLOW`, each below the descriptor of the one above, so a link put
/// in place of any of them (even while this runs) is refused with an error naming it, never
/// read through. What is above the objects folder is the catalog's configured place, links
/// and all.
fn open_object(object: &Path) -> Result<(File, fs::Metadata)> {
    let folder = folder_of(object);
    let root = folder_of(folder);
    let folders = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let root_fd =
        rustix::fs::open(root, folders, Mode::empty()).map_err(|e| refused_open(root, e))?;
    let folder_fd = rustix::fs::openat(&root_fd, last_part(folder)?, folders, Mode::empty())
        .map_err(|e| refused_open(folder, e))?;
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(&folder_fd, last_part(object)?, flags, Mode::empty())
        .map_err(|e| refused_open(object, e))?;
    let file = File::from(fd);
    let meta = file
        .metadata()
        .map_err(|e| CoreError::io("stat", object, e))?;
    if !meta.is_file() {
        return Err(CoreError::corrupt(
            object,
            "not a regular file where the content store keeps a content",
        ));
    }
    Ok((file, meta))
}

/// Refuse to write below `folders` (the objects folder, then a `<2 hex>` folder) when one of
/// them is a link: a content is never stored outside the store.
fn refuse_linked(folders: &[&Path]) -> Result<()> {
    match folders.iter().find(|folder| is_link(folder)) {
        Some(folder) => Err(linked(folder)),
        None => Ok(()),
    }
}

/// What storing one content found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Found {
    /// Written now to this temp file beside its object, not yet flushed or renamed.
    Written(PathBuf),
    /// Stored now; its name is durable once its folder is fsynced.
    Stored,
    /// There and published ([`OBJECT_MODE`]): its writer made its name durable before that.
    Durable,
    /// There, but its writer may not have made its name durable (it died in between).
    Pending,
}

/// The (source device, target device) pairs a reflink was refused for in this process: the
/// file system cannot (EOPNOTSUPP, ENOTTY, ENOSYS, EINVAL) or the pair spans two (EXDEV). A
/// put of many files then copies them without asking again for each.
static NO_REFLINK: Mutex<BTreeSet<(u64, u64)>> = Mutex::new(BTreeSet::new());

fn reflink_refused(devices: (u64, u64)) -> bool {
    NO_REFLINK
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(&devices)
}

fn refuses_reflinks(err: &io::Error) -> bool {
    [
        Errno::OPNOTSUPP,
        Errno::NOTTY,
        Errno::XDEV,
        Errno::INVAL,
        Errno::NOSYS,
    ]
    .iter()
    .any(|e| Some(e.raw_os_error()) == err.raw_os_error())
}

/// Write one content to a temp file beside its object (nothing to do when its object is there
/// with the right size: not even an open of the source). The source is reflinked (or, where
/// its file system pair refused a reflink before, copied) into the temp file, hashed from
/// there (the temp is private, so what is hashed is what is published) and checked against
/// `digest`; [`store_contents`] flushes, renames and publishes it.
fn store_one(
    root: &Path,
    root_dev: u64,
    source: &Path,
    digest: &str,
    fsync: bool,
) -> Result<Found> {
    let target = object_path(root, digest)?;
    let folder = folder_of(&target);
    refuse_linked(&[folder])?;
    if let (Ok(found), Ok(wanted)) = (fs::symlink_metadata(&target), fs::metadata(source)) {
        // A content of another size under this name is damaged, and so is a link in its
        // place: stored again over it (the rename replaces the link, not what it points to).
        if found.is_file() && wanted.is_file() && found.len() == wanted.len() {
            return Ok(if found.permissions().mode() & 0o7777 == OBJECT_MODE {
                Found::Durable
            } else {
                Found::Pending
            });
        }
    }
    let (mut input, meta) = open_regular(source)?;
    create_dir_all_durable(folder, fsync)?;
    let temp = temp_beside(&target)?;
    let result = (|| -> Result<()> {
        let mut out = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(PENDING_MODE)
            .open(&temp)
            .map_err(|e| CoreError::io("create", &target, e))?;
        let devices = (std::os::unix::fs::MetadataExt::dev(&meta), root_dev);
        let reflinked = !reflink_refused(devices)
            && match reflink(&input, &out) {
                Ok(()) => true,
                Err(err) => {
                    if refuses_reflinks(&err) {
                        NO_REFLINK
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(devices);
                    }
                    false
                }
            };
        let written = if reflinked {
            hash_open_file(&mut out, &temp)?
        } else {
            // A large content is written out to the disk while it is copied, as the
            // file-system catalog's copies are.
            let file = &out;
            written_out_if_large(file, &target, meta.len(), fsync, || {
                let mut writing = file;
                copy_hashing(&mut input, &mut writing, meta.len(), source, &target)
            })?
        };
        if written != digest {
            return Err(CoreError::NotAFile {
                path: source.to_path_buf(),
                reason: format!(
                    "changed since it was hashed (BLAKE3 {digest}, now {written}); put it again \
                     once it is complete"
                ),
            });
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map(|()| Found::Written(temp))
}

/// Store the contents of `(source, BLAKE3 digest)` pairs under `root` (in parallel; each item
/// fails on its own); `Ok(true)` for one stored now, `Ok(false)` for one already there.
///
/// As the file-system catalog's copies (`copier.rs`), the batch pays for one flush: every
/// missing content is written to a temp file first, then (with `fsync`) all of them are
/// flushed at once (`flush::make_durable`), then renamed into place.
///
/// A content's mode says whether its name is durable: it is renamed into place with
/// [`PENDING_MODE`], and only once its folder and `root` are fsynced is it published with
/// [`OBJECT_MODE`]. A content found published costs one `stat`; one found pending (its writer
/// died between the rename and the fsyncs, or a power cut undid the publishing `chmod`) gets
/// those fsyncs and is published here. So when this returns (with `fsync`), no content of
/// `items` can be taken back by a power cut, and a manifest written next never names one that
/// could be; a put of contents all stored already makes no fsync at all.
pub fn store_contents(root: &Path, items: &[(PathBuf, String)], fsync: bool) -> Vec<Result<bool>> {
    let linked_root = refuse_linked(&[root])
        .and_then(|()| create_dir_all_durable(root, fsync))
        .and_then(|()| device_of(root));
    let root_dev = match linked_root {
        Ok(dev) => dev,
        Err(err) => {
            let errno = err.errno();
            return items
                .iter()
                .map(|_| {
                    Err(match errno {
                        Some(code) => {
                            CoreError::io("create folder", root, io::Error::from_raw_os_error(code))
                        }
                        None => linked(root),
                    })
                })
                .collect();
        }
    };
    let mut found: Vec<Result<Found>> = items
        .par_iter()
        .map(|(source, digest)| store_one(root, root_dev, source, digest, fsync))
        .collect();
    // One flush for every content written, then the renames.
    if fsync {
        let temps: Vec<(usize, Pending<'_>)> = found
            .iter()
            .enumerate()
            .filter_map(|(i, r)| match r {
                Ok(Found::Written(temp)) => Some((
                    i,
                    Pending {
                        path: temp.as_path(),
                        dev: root_dev,
                    },
                )),
                _ => None,
            })
            .collect();
        let flushed = make_durable(&temps.iter().map(|(_, p)| *p).collect::<Vec<_>>());
        let failed: Vec<(usize, CoreError)> = temps
            .iter()
            .zip(flushed)
            .filter_map(|((i, _), r)| r.err().map(|e| (*i, e)))
            .collect();
        for (i, err) in failed {
            if let Ok(Found::Written(temp)) = &found[i] {
                let _ = fs::remove_file(temp);
            }
            found[i] = Err(err);
        }
    }
    let found: Vec<Result<Found>> = found
        .into_par_iter()
        .zip(items.par_iter())
        .map(|(step, (_, digest))| match step {
            Ok(Found::Written(temp)) => {
                let target = object_path(root, digest)?;
                match fs::rename(&temp, &target) {
                    Ok(()) => Ok(Found::Stored),
                    Err(e) => {
                        let _ = fs::remove_file(&temp);
                        Err(CoreError::io("store", &target, e))
                    }
                }
            }
            other => other,
        })
        .collect();
    let mut results: Vec<Result<bool>> = Vec::with_capacity(items.len());
    let unpublished: Vec<(usize, PathBuf)> = items
        .iter()
        .zip(&found)
        .enumerate()
        .filter(|(_, (_, r))| matches!(r, Ok(Found::Stored | Found::Pending)))
        .filter_map(|(i, ((_, digest), _))| Some((i, object_path(root, digest).ok()?)))
        .collect();
    let mut failed: BTreeMap<&Path, i32> = BTreeMap::new();
    if fsync && !unpublished.is_empty() {
        let folders: BTreeSet<&Path> = unpublished
            .iter()
            .map(|(_, path)| folder_of(path))
            .chain([root])
            .collect();
        failed = fsync_folders(folders.into_iter());
    }
    let mut publish_failed: BTreeMap<usize, CoreError> = BTreeMap::new();
    for (i, path) in &unpublished {
        for folder in [folder_of(path), root] {
            if let Some(errno) = failed.get(folder) {
                publish_failed.insert(*i, folder_fsync_error(folder, *errno));
            }
        }
        if publish_failed.contains_key(i) {
            continue;
        }
        // Through a descriptor opened without following links: a link put in the content's
        // place is refused, and what it points to keeps its mode.
        let published = open_object(path).and_then(|(file, _)| {
            file.set_permissions(fs::Permissions::from_mode(OBJECT_MODE))
                .map_err(|e| CoreError::io("publish", path, e))
        });
        if let Err(err) = published {
            publish_failed.insert(*i, err);
        }
    }
    for (i, result) in found.into_iter().enumerate() {
        results.push(match (publish_failed.remove(&i), result) {
            (Some(err), _) => Err(err),
            (None, Ok(how)) => Ok(how == Found::Stored),
            (None, Err(err)) => Err(err),
        });
    }
    results
}

/// Fsync each folder once (in parallel); the errno of each that failed.
fn fsync_folders<'a>(folders: impl Iterator<Item = &'a Path>) -> BTreeMap<&'a Path, i32> {
    let folders: Vec<&Path> = folders.collect();
    folders
        .par_iter()
        .filter_map(|f| fsync_folder(f).err().map(|e| (*f, e.errno().unwrap_or(5))))
        .collect()
}

fn folder_fsync_error(folder: &Path, errno: i32) -> CoreError {
    CoreError::io("fsync folder", folder, io::Error::from_raw_os_error(errno))
}

// --- materializing contents ---------------------------------------------------------------------

/// How a content is put into place in a folder (the catalogs' `link:` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    /// A reflink where the filesystem can; else a hard link, except for root; else a copy.
    /// Root's writes ignore the read-only mode, so a hard link would let root change the
    /// stored content in place through the run's folder: the default never makes one for root.
    Auto,
    /// A reflink (XFS, Btrfs; same filesystem): a writable copy sharing the blocks.
    Reflink,
    /// A hard link to the read-only object: no bytes written, read-only for its users.
    Hardlink,
    /// A copy of every byte, checked against the content's name as it passes.
    Copy,
}

impl LinkMode {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "auto" => Ok(LinkMode::Auto),
            "reflink" => Ok(LinkMode::Reflink),
            "hardlink" => Ok(LinkMode::Hardlink),
            "copy" => Ok(LinkMode::Copy),
            other => Err(CoreError::InvalidArgument(format!(
                "unknown link mode {other:?}: expected \"auto\", \"reflink\", \"hardlink\" or \
                 \"copy\""
            ))),
        }
    }
}

/// How one content was put into place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linked {
    Reflink,
    Hardlink,
    Copy,
}

impl Linked {
    pub fn name(self) -> &'static str {
        match self {
            Linked::Reflink => "reflink",
            Linked::Hardlink => "hardlink",
            Linked::Copy => "copy",
        }
    }
}

/// One content to put into place: the object, the target path, the recorded mode (a copy or
/// reflink gets its [`file_mode`]; a hard link shares the object's 0444), and the BLAKE3
/// digest the object must hold.
#[derive(Debug, Clone)]
pub struct Placement {
    pub object: PathBuf,
    pub target: PathBuf,
    pub mode: u32,
    pub digest: String,
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The mode a copy or a reflink of a content is created with, before the process's umask: the
/// executable bit's meaning of the recorded mode only, as git checks files out (0o777 when the
/// owner could execute it, else 0o666). Never setuid, setgid or sticky, never writable by
/// more than the umask allows, whatever mode a manifest records.
pub fn file_mode(recorded: u32) -> u32 {
    if recorded & 0o100 != 0 {
        0o777
    } else {
        0o666
    }
}

/// A new private file for a copy or a reflink: created with [`file_mode`], which the kernel
/// masks with the umask (the one place the umask can be applied without reading it, which no
/// thread can do without changing it for every other).
fn create_private(place: &Placement, temp: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(file_mode(place.mode))
        .open(temp)
        .map_err(|e| CoreError::io("create", &place.target, e))
}

fn place_reflink(place: &Placement, temp: &Path) -> Result<()> {
    let (source, _) = open_object(&place.object)?;
    let out = create_private(place, temp)?;
    reflink(&source, &out)
        .map_err(|e| CoreError::io("reflink (XFS or Btrfs, one filesystem)", &place.target, e))
}

/// A hard link of the object, made by path (a link made from a descriptor needs privileges),
/// then checked to be of the inode [`open_object`] opened without following links: a link
/// swapped in between is refused, not shared into the folder.
fn place_hardlink(place: &Placement, temp: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let (_, object) = open_object(&place.object)?;
    fs::hard_link(&place.object, temp)
        .map_err(|e| CoreError::io("hard-link (one filesystem)", &place.target, e))?;
    let made = fs::symlink_metadata(temp).map_err(|e| CoreError::io("stat", temp, e))?;
    if (made.dev(), made.ino()) != (object.dev(), object.ino()) {
        let _ = fs::remove_file(temp);
        return Err(linked(&place.object));
    }
    Ok(())
}

fn place_copy(place: &Placement, temp: &Path, check: bool) -> Result<()> {
    let (mut source, meta) = open_object(&place.object)?;
    let mut out = create_private(place, temp)?;
    let digest = copy_hashing(
        &mut source,
        &mut out,
        meta.len(),
        &place.object,
        &place.target,
    )?;
    if check && digest != place.digest {
        return Err(CoreError::corrupt(
            &place.object,
            format!(
                "the stored content named {} holds bytes whose BLAKE3 is {digest}: the content \
                 store is damaged (runlog verify shows the runs it affects)",
                place.digest
            ),
        ));
    }
    Ok(())
}

/// Try one way; `Ok(None)` when it is unsupported here and the next may be tried.
fn attempt(result: Result<()>, temp: &Path) -> Result<Option<()>> {
    match result {
        Ok(()) => Ok(Some(())),
        Err(err) => {
            let _ = fs::remove_file(temp);
            match &err {
                CoreError::Io { source, .. } if unsupported(io_errno(source)) => Ok(None),
                _ => Err(err),
            }
        }
    }
}

fn place_one(place: &Placement, link: LinkMode, fsync: bool, check: bool) -> Result<Linked> {
    let folder = folder_of(&place.target);
    create_dir_all_durable(folder, fsync)?;
    let temp = temp_beside(&place.target)?;
    let result = (|| -> Result<Linked> {
        let how = match link {
            LinkMode::Reflink => {
                place_reflink(place, &temp)?;
                Linked::Reflink
            }
            LinkMode::Hardlink => {
                place_hardlink(place, &temp)?;
                Linked::Hardlink
            }
            LinkMode::Copy => {
                place_copy(place, &temp, check)?;
                Linked::Copy
            }
            LinkMode::Auto => {
                if attempt(place_reflink(place, &temp), &temp)?.is_some() {
                    Linked::Reflink
                } else if !is_root() && attempt(place_hardlink(place, &temp), &temp)?.is_some() {
                    Linked::Hardlink
                } else {
                    place_copy(place, &temp, check)?;
                    Linked::Copy
                }
            }
        };
        if fsync && how != Linked::Hardlink {
            File::open(&temp)
                .and_then(|f| f.sync_all())
                .map_err(|e| CoreError::io("fsync", &place.target, e))?;
        }
        fs::rename(&temp, &place.target).map_err(|e| CoreError::io("replace", &place.target, e))?;
        Ok(how)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Put contents into place (in parallel; each fails on its own), each target replaced
/// atomically (temp name beside it, then rename): a reader of the folder sees the old file or
/// the new one. With `check`, a copy whose bytes do not hash to the content's name fails
/// (a reflink or hard link reads nothing, so it is not checked). With `fsync`, the files and
/// their folders are durable when the call returns.
pub fn materialize(
    places: &[Placement],
    link: LinkMode,
    fsync: bool,
    check: bool,
) -> Vec<Result<Linked>> {
    let mut results: Vec<Result<Linked>> = places
        .par_iter()
        .map(|place| place_one(place, link, fsync, check))
        .collect();
    if fsync {
        let folders: BTreeSet<&Path> = places.iter().map(|p| folder_of(&p.target)).collect();
        let failed = fsync_folders(folders.into_iter());
        for (place, result) in places.iter().zip(results.iter_mut()) {
            let folder = folder_of(&place.target);
            if let (Ok(_), Some(errno)) = (&*result, failed.get(folder)) {
                *result = Err(folder_fsync_error(folder, *errno));
            }
        }
    }
    results
}

// --- the manifest -------------------------------------------------------------------------------

/// One file of a run: the BLAKE3 digest naming its content, its size, its permission bits, and
/// the SHA-256 digest when the catalog records SHA-256 (so a get answers without reading).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    pub blake3: String,
    pub size: u64,
    pub mode: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// What a run owns in a content catalog: its files by path relative to the run's folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub run_id: String,
    pub files: BTreeMap<String, ManifestEntry>,
}

/// Whether a manifest path stays inside the run's folder: relative, no `.`/`..`/empty part,
/// no NUL, no backslash.
fn is_inside_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\0')
        && !path.contains('\\')
        && path.split('/').all(|part| !matches!(part, "" | "." | ".."))
}

fn check_entry(path: &str, entry: &ManifestEntry) -> std::result::Result<(), String> {
    if !is_inside_path(path) {
        return Err(format!("{path:?} is not a path inside the run's folder"));
    }
    if !is_hex_digest(&entry.blake3) {
        return Err(format!(
            "{path:?}: blake3 {:?} is not a digest",
            entry.blake3
        ));
    }
    if let Some(sha) = &entry.sha256 {
        if !is_hex_digest(sha) {
            return Err(format!("{path:?}: sha256 {sha:?} is not a digest"));
        }
    }
    if entry.mode > 0o7777 {
        return Err(format!(
            "{path:?}: mode {} is not a permission mode",
            entry.mode
        ));
    }
    Ok(())
}

/// The bytes of a manifest (entries in path order, one JSON object). An entry that could not
/// be read back (a path leaving the run's folder, a malformed digest) is refused here, before
/// anything is written.
pub fn encode_manifest(run_id: &str, files: BTreeMap<String, ManifestEntry>) -> Result<Vec<u8>> {
    for (path, entry) in &files {
        check_entry(path, entry).map_err(CoreError::InvalidArgument)?;
    }
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        run_id: run_id.to_string(),
        files,
    };
    let mut bytes = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| CoreError::InvalidArgument(format!("cannot encode a manifest: {e}")))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// A manifest read back, every entry checked (paths inside the run, digests well formed); a
/// damaged one is [`CoreError::Corrupt`] naming `where_`.
pub fn decode_manifest(where_: &Path, bytes: &[u8]) -> Result<Manifest> {
    let manifest: Manifest = serde_json::from_slice(bytes)
        .map_err(|e| CoreError::corrupt(where_, format!("not a content manifest: {e}")))?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(CoreError::corrupt(
            where_,
            format!(
                "manifest format {} (this version reads {MANIFEST_FORMAT})",
                manifest.format
            ),
        ));
    }
    for (path, entry) in &manifest.files {
        check_entry(path, entry).map_err(|reason| CoreError::corrupt(where_, reason))?;
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn digest_of(data: &[u8]) -> String {
        blake3::hash(data).to_hex().to_string()
    }

    /// This process's umask, read without changing it (tests run on threads side by side).
    fn umask() -> u32 {
        let status = fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
        u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
    }

    /// A store under `dir/objects` holding `data`, and the object's path.
    fn stored(dir: &Path, data: &[u8]) -> (PathBuf, PathBuf, String) {
        let root = dir.join("objects");
        let src = dir.join("src");
        fs::write(&src, data).unwrap();
        let d = digest_of(data);
        store_contents(&root, &[(src, d.clone())], false)[0]
            .as_ref()
            .unwrap();
        let object = object_path(&root, &d).unwrap();
        (root, object, d)
    }

    #[test]
    fn copies_get_the_executable_bit_only_under_the_umask() {
        for (recorded, wanted) in [
            (0o4755, 0o777),
            (0o6777, 0o777),
            (0o2750, 0o777),
            (0o1666, 0o666),
            (0o644, 0o666),
            (0o444, 0o666),
            (0o070, 0o666),
            (0o7000, 0o666),
        ] {
            assert_eq!(file_mode(recorded), wanted, "{recorded:o}");
        }
        let dir = tempfile::tempdir().unwrap();
        let (_, object, d) = stored(dir.path(), b"#!/bin/sh\n");
        for (name, recorded) in [("suid", 0o4755), ("all", 0o7777), ("open", 0o1666)] {
            let place = Placement {
                object: object.clone(),
                target: dir.path().join("out").join(name),
                mode: recorded,
                digest: d.clone(),
            };
            materialize(&[place], LinkMode::Copy, false, true)[0]
                .as_ref()
                .unwrap();
            let got = fs::metadata(dir.path().join("out").join(name))
                .unwrap()
                .mode()
                & 0o7777;
            assert_eq!(got, file_mode(recorded) & !umask(), "{name}: {got:o}");
        }
    }

    #[test]
    fn links_in_the_store_are_never_read_or_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let (root, object, d) = stored(dir.path(), b"stored");
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret"), b"secret").unwrap();
        let place = |name: &str| Placement {
            object: object.clone(),
            target: dir.path().join("out").join(name),
            mode: 0o644,
            digest: d.clone(),
        };
        let refused = |result: &Result<Linked>, link: &Path| {
            let err = result.as_ref().unwrap_err();
            assert!(matches!(err, CoreError::Corrupt { .. }), "{err:?}");
            assert_eq!(err.path(), link, "{err}");
        };
        // The content itself a link to a file of the same size outside the store.
        let held = dir.path().join("held");
        fs::rename(&object, &held).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), &object).unwrap();
        for link in [LinkMode::Copy, LinkMode::Hardlink, LinkMode::Auto] {
            refused(&materialize(&[place("a")], link, false, false)[0], &object);
        }
        // A put of that content replaces the link, leaving what it points to alone.
        let src = dir.path().join("src");
        assert!(*store_contents(&root, &[(src.clone(), d.clone())], true)[0]
            .as_ref()
            .unwrap());
        assert!(!is_link(&object));
        assert_eq!(fs::read(outside.join("secret")).unwrap(), b"secret");
        // Its folder a link to a folder outside holding a file of its name.
        let folder = object.parent().unwrap().to_path_buf();
        fs::remove_dir_all(&folder).unwrap();
        fs::write(outside.join(object.file_name().unwrap()), b"stolen").unwrap();
        std::os::unix::fs::symlink(&outside, &folder).unwrap();
        refused(
            &materialize(&[place("b")], LinkMode::Copy, false, false)[0],
            &folder,
        );
        let err = store_contents(&root, &[(src.clone(), d.clone())], true)[0]
            .as_ref()
            .unwrap_err()
            .path()
            .to_path_buf();
        assert_eq!(err, folder);
        // The objects folder a link.
        fs::remove_file(&folder).unwrap();
        let moved = dir.path().join("moved");
        fs::rename(&root, &moved).unwrap();
        std::os::unix::fs::symlink(&moved, &root).unwrap();
        refused(
            &materialize(&[place("c")], LinkMode::Copy, false, false)[0],
            &root,
        );
        let err = store_contents(&root, &[(src, d.clone())], true)[0]
            .as_ref()
            .unwrap_err()
            .path()
            .to_path_buf();
        assert_eq!(err, root);
        assert_eq!(fs::read(outside.join("secret")).unwrap(), b"secret");
        assert!(!dir.path().join("out").join("a").exists());
        assert_eq!(fs::read_dir(dir.path().join("out")).unwrap().count(), 0);
    }

    #[test]
    fn a_name_as_long_as_the_file_system_allows_is_put_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let (_, object, d) = stored(dir.path(), b"long");
        let name = "n".repeat(crate::copier::NAME_MAX_BYTES);
        let place = Placement {
            object,
            target: dir.path().join("out").join(&name),
            mode: 0o644,
            digest: d,
        };
        for link in [LinkMode::Copy, LinkMode::Auto] {
            materialize(std::slice::from_ref(&place), link, true, true)[0]
                .as_ref()
                .unwrap();
            assert_eq!(fs::read(&place.target).unwrap(), b"long");
        }
        assert_eq!(fs::read_dir(dir.path().join("out")).unwrap().count(), 1);
    }

    #[test]
    fn object_names_are_digests_only() {
        let root = Path::new("/store/objects");
        let d = digest_of(b"x");
        assert_eq!(
            object_path(root, &d).unwrap(),
            root.join(&d[..2]).join(&d[2..])
        );
        for bad in ["", "../../etc/passwd", &d[..63], &d.to_uppercase()] {
            assert!(object_path(root, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn both_digests_in_one_pass_small_and_big() {
        let dir = tempfile::tempdir().unwrap();
        for size in [0usize, 5, (PARALLEL_MIN_BYTES as usize) + 777] {
            let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
            let path = dir.path().join(format!("f{size}"));
            fs::write(&path, &data).unwrap();
            let found = hash_contents(std::slice::from_ref(&path), Algorithm::Sha256, None);
            let found = found[0].as_ref().unwrap();
            assert_eq!(found.blake3, digest_of(&data));
            assert_eq!(
                found.recorded,
                crate::hasher::hash_file(&path, Algorithm::Sha256).unwrap()
            );
            assert_eq!(found.size, size as u64);
            let only = hash_contents(&[path], Algorithm::Blake3, None);
            assert_eq!(only[0].as_ref().unwrap().recorded, digest_of(&data));
        }
    }

    #[test]
    fn the_cache_answers_both_digests_the_second_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old");
        fs::write(&path, b"cached content").unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let cache_path = dir.path().join(".cache");
        let mut cache = HashCache::open(&cache_path).unwrap();
        let first = hash_contents(
            std::slice::from_ref(&path),
            Algorithm::Sha256,
            Some(&mut cache),
        );
        let cache = HashCache::open(&cache_path).unwrap();
        let identity = FileIdentity::of(&fs::metadata(&path).unwrap());
        let first = first[0].as_ref().unwrap();
        assert_eq!(
            cache.lookup(Algorithm::Blake3, &identity),
            Some(first.blake3.as_str())
        );
        assert_eq!(
            cache.lookup(Algorithm::Sha256, &identity),
            Some(first.recorded.as_str())
        );
    }

    #[test]
    fn a_large_content_is_stored_whole_when_written_out_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("objects");
        let src = dir.path().join("src");
        let data: Vec<u8> = (0..crate::copier::EARLY_WRITE_OUT_MIN_BYTES as usize + 4_321)
            .map(|i| (i % 249) as u8)
            .collect();
        fs::write(&src, &data).unwrap();
        let d = digest_of(&data);
        let stored = store_contents(&root, &[(src.clone(), d.clone())], true);
        assert!(*stored[0].as_ref().unwrap());
        assert_eq!(fs::read(object_path(&root, &d).unwrap()).unwrap(), data);
        // A wrong digest is refused after the copy, its temp file (written out) removed.
        let wrong = digest_of(b"other");
        let refused = store_contents(&root, &[(src, wrong.clone())], true);
        assert!(refused[0].is_err());
        assert!(!object_path(&root, &wrong).unwrap().exists());
    }

    #[test]
    fn stores_once_read_only_and_refuses_a_source_that_changed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("objects");
        let src = dir.path().join("src");
        fs::write(&src, b"content").unwrap();
        let d = digest_of(b"content");
        let items = vec![(src.clone(), d.clone()), (src.clone(), d.clone())];
        let first = store_contents(&root, &items[..1], true);
        assert!(*first[0].as_ref().unwrap());
        let again = store_contents(&root, &items, true);
        assert!(again.iter().all(|r| !*r.as_ref().unwrap()));
        let object = object_path(&root, &d).unwrap();
        assert_eq!(fs::read(&object).unwrap(), b"content");
        assert_eq!(fs::metadata(&object).unwrap().mode() & 0o777, 0o444);
        // A content its writer left unpublished (killed before the fsyncs) is published by the
        // next put that finds it.
        fs::set_permissions(&object, fs::Permissions::from_mode(PENDING_MODE)).unwrap();
        assert!(!*store_contents(&root, &items[..1], true)[0]
            .as_ref()
            .unwrap());
        assert_eq!(fs::metadata(&object).unwrap().mode() & 0o777, 0o444);
        // The source changed after it was hashed: nothing is stored under the old name.
        fs::write(&src, b"CONTENT").unwrap();
        let wrong = digest_of(b"other");
        let refused = store_contents(&root, &[(src.clone(), wrong.clone())], false);
        let err = refused[0].as_ref().unwrap_err().to_string();
        assert!(err.contains("changed since it was hashed"), "{err}");
        assert!(!object_path(&root, &wrong).unwrap().exists());
        let folder = object.parent().unwrap();
        assert_eq!(
            fs::read_dir(folder).unwrap().count(),
            1,
            "no temp file left"
        );
        // A damaged object (other size) is stored again.
        fs::set_permissions(&object, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&object, b"cont").unwrap();
        fs::write(&src, b"content").unwrap();
        assert!(*store_contents(&root, &items[..1], false)[0]
            .as_ref()
            .unwrap());
        assert_eq!(fs::read(&object).unwrap(), b"content");
    }

    #[test]
    fn materializes_by_hard_link_and_copy_and_checks_copies() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("objects");
        let src = dir.path().join("src");
        fs::write(&src, b"payload").unwrap();
        let d = digest_of(b"payload");
        store_contents(&root, &[(src, d.clone())], false);
        let object = object_path(&root, &d).unwrap();
        let place = |name: &str, mode: u32| Placement {
            object: object.clone(),
            target: dir.path().join("out").join(name),
            mode,
            digest: d.clone(),
        };
        let linked = materialize(&[place("h", 0o644)], LinkMode::Hardlink, true, true);
        assert_eq!(*linked[0].as_ref().unwrap(), Linked::Hardlink);
        let h = fs::metadata(dir.path().join("out/h")).unwrap();
        assert_eq!(h.ino(), fs::metadata(&object).unwrap().ino());
        assert_eq!(h.mode() & 0o777, 0o444);
        let copied = materialize(&[place("c", 0o755)], LinkMode::Copy, true, true);
        assert_eq!(*copied[0].as_ref().unwrap(), Linked::Copy);
        let c = fs::metadata(dir.path().join("out/c")).unwrap();
        assert_ne!(c.ino(), fs::metadata(&object).unwrap().ino());
        assert_eq!(c.mode() & 0o7777, 0o777 & !umask());
        let ro = materialize(&[place("ro", 0o444)], LinkMode::Copy, false, true);
        assert!(ro[0].is_ok());
        let ro = fs::metadata(dir.path().join("out/ro")).unwrap();
        assert_eq!(
            ro.mode() & 0o7777,
            0o666 & !umask(),
            "a private copy is writable as the umask allows"
        );
        assert_eq!(fs::read(dir.path().join("out/c")).unwrap(), b"payload");
        // ext4 and tmpfs have no reflinks: asked for, it is an error naming the target; the
        // automatic mode goes on to a hard link (or, for root, a copy).
        let refused = materialize(&[place("r", 0o644)], LinkMode::Reflink, false, true);
        if let Err(err) = &refused[0] {
            assert!(err.to_string().contains("reflink"), "{err}");
            let auto = materialize(&[place("a", 0o644)], LinkMode::Auto, false, true);
            let expected = if is_root() {
                Linked::Copy
            } else {
                Linked::Hardlink
            };
            assert_eq!(*auto[0].as_ref().unwrap(), expected);
        }
        // A damaged object fails a checked copy and is copied as it is without the check.
        fs::remove_file(&object).unwrap();
        fs::write(&object, b"PAYLOAD").unwrap();
        let damaged = materialize(&[place("d", 0o644)], LinkMode::Copy, false, true);
        let err = damaged[0].as_ref().unwrap_err();
        assert!(matches!(err, CoreError::Corrupt { .. }), "{err:?}");
        assert!(!dir.path().join("out/d").exists());
        let faithful = materialize(&[place("d", 0o644)], LinkMode::Copy, false, false);
        assert!(faithful[0].is_ok());
        assert_eq!(fs::read(dir.path().join("out/d")).unwrap(), b"PAYLOAD");
        let names: Vec<_> = fs::read_dir(dir.path().join("out"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    }

    #[test]
    fn manifests_round_trip_and_refuse_escapes() {
        let d = digest_of(b"x");
        let mut files = BTreeMap::new();
        files.insert(
            "data/a.csv".to_string(),
            ManifestEntry {
                blake3: d.clone(),
                size: 1,
                mode: 0o644,
                sha256: None,
            },
        );
        let path = Path::new("manifests/run.json");
        let bytes = encode_manifest("run", files.clone()).unwrap();
        let back = decode_manifest(path, &bytes).unwrap();
        assert_eq!(back.files, files);
        assert_eq!(back.run_id, "run");
        for bad in ["../x", "/abs", "a//b", "a/./b", ""] {
            let mut escaping = BTreeMap::new();
            escaping.insert(bad.to_string(), files["data/a.csv"].clone());
            assert!(encode_manifest("run", escaping).is_err(), "{bad}");
            let forged = String::from_utf8(bytes.clone())
                .unwrap()
                .replace("data/a.csv", bad);
            let err = decode_manifest(path, forged.as_bytes()).unwrap_err();
            assert!(matches!(err, CoreError::Corrupt { .. }), "{bad}: {err:?}");
        }
        let err = decode_manifest(path, b"{\"format\": 2, \"run_id\": \"r\", \"files\": {}}")
            .unwrap_err();
        assert!(err.to_string().contains("format 2"), "{err}");
        assert!(decode_manifest(path, b"garbage").is_err());
    }
}
