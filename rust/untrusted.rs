//! Opening files the store did not create: the one way the core opens a document, a journal,
//! a lock, a manifest or a hash cache.
//!
//! A log folder is often shared (a team's NFS folder, a folder another user's pipeline
//! writes), so whoever can write there may have put a symlink, a FIFO, a device or a huge
//! sparse file where a store expects one of its files. So every such file is opened here:
//!
//! - **No symlink followed.** A path is a folder the user configured (a log folder, a catalog
//!   folder; followed if it is a link, as the user set it up) and the components below it
//!   (`<run>/.journals/<name>`), resolved with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`
//!   from that folder, or component by component with `O_NOFOLLOW` where the kernel has no
//!   `openat2`. A link anywhere below the folder is [`CoreError::NotAFile`] naming the path:
//!   nothing is read or written through it, and nothing is created where it points.
//! - **Regular files only.** The open is `O_NONBLOCK` (opening a FIFO otherwise waits for a
//!   writer forever), then `fstat`: a FIFO, a device, a socket or a folder is
//!   [`CoreError::NotAFile`] naming the path.
//! - **Bounded reads.** Nothing larger than [`MAX_FILE_BYTES`] is read.
//!
//! Readers of stored documents report these errors as corrupt documents
//! ([`CoreError::as_document`]), so a salvage leaves such a file out as it does a document that
//! is not JSON.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::error::{CoreError, Result};

/// What identifies a file's state: its inode (a replace makes a new one), size, and
/// modification and change times in ns (a rewrite in place moves them). Written as
/// `<inode>-<size>-<mtime ns>-<ctime ns>` in a run's stored merge (docs/format.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl FileStamp {
    pub fn of_metadata(meta: &std::fs::Metadata) -> FileStamp {
        use std::os::unix::fs::MetadataExt;
        FileStamp {
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        }
    }

    pub fn of_stat(stat: &rustix::fs::Stat) -> FileStamp {
        FileStamp {
            ino: stat.st_ino,
            size: stat.st_size.max(0) as u64,
            mtime_ns: stat.st_mtime * 1_000_000_000 + stat.st_mtime_nsec as i64,
            ctime_ns: stat.st_ctime * 1_000_000_000 + stat.st_ctime_nsec as i64,
        }
    }

    /// `<inode>-<size>-<mtime ns>-<ctime ns>`.
    pub fn text(&self) -> String {
        format!(
            "{}-{}-{}-{}",
            self.ino, self.size, self.mtime_ns, self.ctime_ns
        )
    }
}

/// The largest file the core reads: 1 GiB. A document or journal of a run is far smaller (a
/// journal record is at most 256 MiB, and a writer starts a new journal before one reaches
/// this size); a file past it is damage or someone else's, and reading it would take that much
/// memory (a sparse file costs its owner nothing on disk).
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// How a file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// Read an existing file.
    Read,
    /// Write into an existing file (not appending: positioned writes).
    Write,
    /// Read and write, created if missing (a lock file).
    ReadWriteCreate,
    /// Create a new file for writing; an existing one is an error (`AlreadyExists`).
    CreateNew,
    /// Append, created if missing (an append-only cache).
    AppendCreate,
}

impl How {
    fn flags(self) -> OFlags {
        match self {
            How::Read => OFlags::RDONLY,
            How::Write => OFlags::WRONLY,
            How::ReadWriteCreate => OFlags::RDWR | OFlags::CREATE,
            How::CreateNew => OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
            How::AppendCreate => OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE,
        }
    }

    fn creates(self) -> bool {
        matches!(
            self,
            How::ReadWriteCreate | How::CreateNew | How::AppendCreate
        )
    }
}

/// A folder the user configured, opened once, and the files below it opened without following
/// a link (see the module's documentation).
pub struct Folder {
    path: PathBuf,
    fd: OwnedFd,
}

impl Folder {
    /// Open the folder `path` (a link to a folder is followed: the user configured it).
    pub fn open(path: &Path) -> Result<Folder> {
        let at = if path.as_os_str().is_empty() {
            Path::new(".")
        } else {
            path
        };
        let fd = rustix::fs::open(
            at,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            let err = io::Error::from(e);
            if err.kind() == io::ErrorKind::NotFound {
                CoreError::NotFound {
                    path: path.to_path_buf(),
                }
            } else {
                CoreError::io("open", path, err)
            }
        })?;
        Ok(Folder {
            path: path.to_path_buf(),
            fd,
        })
    }

    /// The path of a file below the folder, for messages.
    pub fn path_of(&self, below: &Path) -> PathBuf {
        self.path.join(below)
    }

    /// Open the file `below` (a relative path inside the folder); `Ok(None)` when it does not
    /// exist (for the ways that do not create it).
    pub fn open_file(&self, below: &Path, how: How) -> Result<Option<File>> {
        Ok(self.open_file_sized(below, how)?.map(|(file, _)| file))
    }

    /// [`Folder::open_file`], with the file's size as the `fstat` that checked its type saw it.
    fn open_file_sized(&self, below: &Path, how: How) -> Result<Option<(File, u64)>> {
        Ok(self
            .open_file_stat(below, how)?
            .map(|(file, stat)| (file, stat.st_size.max(0) as u64)))
    }

    /// [`Folder::open_file`], with the `fstat` that checked its type.
    fn open_file_stat(&self, below: &Path, how: How) -> Result<Option<(File, rustix::fs::Stat)>> {
        let path = self.path_of(below);
        let fd = match self.resolve(below, how) {
            Ok(fd) => fd,
            Err(e) if e == Errno::NOENT && !how.creates() => return Ok(None),
            Err(e) => return Err(open_error(&path, e, how)),
        };
        // fstat, not statx: this is on every append's path, and only the type is needed.
        let stat = rustix::fs::fstat(&fd).map_err(|e| CoreError::io("stat", &path, e.into()))?;
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::RegularFile => Ok(Some((File::from(fd), stat))),
            // A folder where a file is expected is an I/O error, as reading one is.
            FileType::Directory => {
                let op = if how == How::Read { "read" } else { "open" };
                Err(CoreError::io(op, &path, eisdir()))
            }
            other => Err(not_a_file(&path, describe_kind(other))),
        }
    }

    /// The whole file `below`, at most [`MAX_FILE_BYTES`]; `Ok(None)` when it does not exist.
    pub fn read(&self, below: &Path) -> Result<Option<Vec<u8>>> {
        // The size the open's fstat saw: a run's thousand documents are read with one fstat
        // each, not two.
        let Some((file, size)) = self.open_file_sized(below, How::Read)? else {
            return Ok(None);
        };
        read_bounded_sized(&file, &self.path_of(below), size).map(Some)
    }

    /// [`Folder::read`], with the file's stamp as the open's `fstat` saw it, before any byte
    /// was read: a change to the file after that moves its stamp, so a cache built from these
    /// bytes and recorded against this stamp is never taken for a later state of the file.
    pub fn read_stamped(&self, below: &Path) -> Result<Option<(Vec<u8>, FileStamp)>> {
        let Some((file, stat)) = self.open_file_stat(below, How::Read)? else {
            return Ok(None);
        };
        let stamp = FileStamp::of_stat(&stat);
        read_bounded_sized(&file, &self.path_of(below), stamp.size)
            .map(|bytes| Some((bytes, stamp)))
    }

    /// The stat of what is at `below` (a link there is not followed; one above it is, as by
    /// `fstatat`): for a file's stamp only, never to decide what to open.
    pub fn stat_below(&self, below: &Path) -> Option<rustix::fs::Stat> {
        rustix::fs::statat(&self.fd, below, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).ok()
    }

    /// The folder `name` right inside this one, opened without following a link; `None` when
    /// it cannot be (missing, a link, not a folder): the caller then opens what it wants below
    /// this folder by the longer path, whose open says what is wrong. Files opened below the
    /// returned folder are found by one name each, not a path of two.
    pub fn folder_inside(&self, name: &std::ffi::OsStr) -> Option<Folder> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        Some(Folder {
            path: self.path.join(name),
            fd,
        })
    }

    /// Remove the folder `name` right inside this one if it is empty; whether it was. A link
    /// in its place is not followed (nor removed), and a folder that is not empty stays.
    pub fn remove_empty_folder(&self, name: &std::ffi::OsStr) -> bool {
        rustix::fs::unlinkat(&self.fd, name, rustix::fs::AtFlags::REMOVEDIR).is_ok()
    }

    fn resolve(&self, below: &Path, how: How) -> std::result::Result<OwnedFd, Errno> {
        let flags = how.flags() | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        // openat2 takes a mode only with O_CREAT.
        let mode = if how.creates() {
            Mode::from_raw_mode(0o644)
        } else {
            Mode::empty()
        };
        let resolve =
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        match rustix::fs::openat2(&self.fd, below, flags, mode, resolve) {
            // No openat2 (Linux before 5.6, or a sandbox that refuses it): one component at a
            // time, none of them followed.
            Err(Errno::NOSYS) | Err(Errno::PERM) => self.resolve_by_component(below, flags, mode),
            other => other,
        }
    }

    fn resolve_by_component(
        &self,
        below: &Path,
        flags: OFlags,
        mode: Mode,
    ) -> std::result::Result<OwnedFd, Errno> {
        let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
        for component in below.components() {
            match component {
                Component::Normal(part) => parts.push(part),
                Component::CurDir => {}
                // Only names below the folder: never its parent, never an absolute path.
                _ => return Err(Errno::XDEV),
            }
        }
        let Some((last, folders)) = parts.split_last() else {
            return Err(Errno::ISDIR);
        };
        let mut dir: Option<OwnedFd> = None;
        for part in folders {
            let at = dir.as_ref().unwrap_or(&self.fd);
            let next = rustix::fs::openat(
                at,
                *part,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            // A link opened with O_NOFOLLOW | O_DIRECTORY is not a folder.
            .map_err(|e| if e == Errno::NOTDIR { Errno::LOOP } else { e })?;
            dir = Some(next);
        }
        rustix::fs::openat(dir.as_ref().unwrap_or(&self.fd), *last, flags, mode)
    }
}

/// `path` opened without following a link at its last component, a regular file only; the
/// folder it is in is taken as configured (followed if it is a link). `Ok(None)` when it does
/// not exist (for the ways that do not create it).
pub fn open_file(path: &Path, how: How) -> Result<Option<File>> {
    let (folder, name) = split(path)?;
    Folder::open(folder)
        .map_err(|e| match e {
            // A missing folder is a missing file, to a reader.
            CoreError::NotFound { .. } if !how.creates() => CoreError::NotFound {
                path: path.to_path_buf(),
            },
            CoreError::NotFound { .. } => CoreError::io(
                "open",
                path,
                io::Error::from_raw_os_error(Errno::NOENT.raw_os_error()),
            ),
            // Errors name the file asked for, not its folder.
            CoreError::Io { op, source, .. } => CoreError::io(op, path, source),
            other => other,
        })
        .and_then(|folder| folder.open_file(Path::new(name), how))
        .or_else(|e| match e {
            CoreError::NotFound { .. } if !how.creates() => Ok(None),
            other => Err(other),
        })
}

/// The whole file at `path` (see [`open_file`]), at most [`MAX_FILE_BYTES`]; `Ok(None)` when it
/// does not exist.
pub fn read_file(path: &Path) -> Result<Option<Vec<u8>>> {
    let Some(file) = open_file(path, How::Read)? else {
        return Ok(None);
    };
    read_bounded(&file, path, 0).map(Some)
}

/// The bytes of an opened file from `offset` to its end, refused when the file is larger than
/// [`MAX_FILE_BYTES`] (its size is checked before a byte is read, and what is read is capped
/// in case it grows meanwhile).
pub fn read_bounded(file: &File, path: &Path, offset: u64) -> Result<Vec<u8>> {
    let size = rustix::fs::fstat(file)
        .map_err(|e| CoreError::io("stat", path, e.into()))?
        .st_size
        .max(0) as u64;
    read_bounded_from(file, path, offset, size)
}

/// [`read_bounded`] from the start of a file whose size an `fstat` just gave.
fn read_bounded_sized(file: &File, path: &Path, size: u64) -> Result<Vec<u8>> {
    if size > MAX_FILE_BYTES {
        return Err(too_large(path, size));
    }
    // One read of the size the open's fstat saw and a byte more: a file that still has that
    // size is read in one system call, where reading until a read returns nothing takes a
    // second one (a thousand of a thousand-branch run's first read). A file that is longer
    // now, or a read that came back short, is read on to its end as before.
    let mut bytes = vec![0u8; size as usize + 1];
    let read = loop {
        match file.read_at(&mut bytes, 0) {
            Ok(read) => break read,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CoreError::io("read", path, e)),
        }
    };
    bytes.truncate(read);
    if read as u64 != size {
        read_at_to_end(file, path, 0, &mut bytes)?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(too_large(path, bytes.len() as u64));
        }
    }
    Ok(bytes)
}

fn read_bounded_from(file: &File, path: &Path, offset: u64, size: u64) -> Result<Vec<u8>> {
    if size > MAX_FILE_BYTES {
        return Err(too_large(path, size));
    }
    let mut bytes = Vec::with_capacity(size.saturating_sub(offset).min(MAX_FILE_BYTES) as usize);
    if offset == 0 {
        let limit = MAX_FILE_BYTES + 1;
        let handle = file;
        handle
            .take(limit)
            .read_to_end(&mut bytes)
            .map_err(|e| CoreError::io("read", path, e))?;
    } else {
        read_at_to_end(file, path, offset, &mut bytes)?;
    }
    if offset + bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(path, offset + bytes.len() as u64));
    }
    Ok(bytes)
}

/// Positioned reads from `offset` to the end (or past the cap), growing the buffer as needed.
fn read_at_to_end(file: &File, path: &Path, offset: u64, bytes: &mut Vec<u8>) -> Result<()> {
    // 16 KiB holds what most looks at a journal find (a few records of a few hundred bytes) in
    // one read; a long read doubles it up to 4 MiB, so it takes few reads.
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let at = offset + bytes.len() as u64;
        if at > MAX_FILE_BYTES {
            return Ok(());
        }
        let read = match file.read_at(&mut chunk, at) {
            Ok(0) => return Ok(()),
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CoreError::io("read", path, e)),
        };
        bytes.extend_from_slice(&chunk[..read]);
        if read < chunk.len() {
            return Ok(()); // a regular file reads short only at its end
        }
        if chunk.len() < 4 << 20 {
            chunk.resize(chunk.len() * 2, 0);
        }
    }
}

/// The folder and the name of a file path.
fn split(path: &Path) -> Result<(&Path, &std::ffi::OsStr)> {
    let name = path
        .file_name()
        .ok_or_else(|| CoreError::InvalidArgument(format!("{} names no file", path.display())))?;
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok((folder, name))
}

fn open_error(path: &Path, errno: Errno, how: How) -> CoreError {
    match errno {
        Errno::LOOP | Errno::MLINK => not_a_file(
            path,
            "is a symbolic link, or has one in its path below the folder, which the store \
             never follows",
        ),
        Errno::XDEV => not_a_file(path, "is outside its folder"),
        Errno::NXIO => not_a_file(path, "is a FIFO or a device, not a regular file"),
        _ => {
            let op = match how {
                How::CreateNew => "create",
                _ => "open",
            };
            CoreError::io(op, path, io::Error::from_raw_os_error(errno.raw_os_error()))
        }
    }
}

fn eisdir() -> io::Error {
    io::Error::from_raw_os_error(Errno::ISDIR.raw_os_error())
}

fn describe_kind(kind: FileType) -> &'static str {
    match kind {
        FileType::Fifo => "is a FIFO, not a regular file",
        FileType::CharacterDevice | FileType::BlockDevice => "is a device, not a regular file",
        FileType::Socket => "is a socket, not a regular file",
        _ => "is not a regular file",
    }
}

fn not_a_file(path: &Path, reason: &str) -> CoreError {
    CoreError::NotAFile {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn too_large(path: &Path, size: u64) -> CoreError {
    not_a_file(
        path,
        &format!("is {size} bytes, more than the {MAX_FILE_BYTES} a store reads"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::symlink;

    /// A file read in one `pread` of the size its `fstat` saw is still read whole when it
    /// has grown or shrunk since (the size is a hint, never a limit), and its stamp is the
    /// one a `stat` of it gives.
    #[test]
    fn a_file_is_read_whole_whatever_size_its_stat_said() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("doc.json");
        let bytes: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let file = File::open(&path).unwrap();
        for hint in [0, 1, 69_999, 70_000, 70_001, 140_000] {
            assert_eq!(
                read_bounded_sized(&file, &path, hint).unwrap(),
                bytes,
                "{hint}"
            );
        }
        let folder = Folder::open(dir.path()).unwrap();
        let (read, stamp) = folder.read_stamped(Path::new("doc.json")).unwrap().unwrap();
        assert_eq!(read, bytes);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(stamp, FileStamp::of_metadata(&meta));
        assert_eq!(stamp.size, 70_000);
        assert!(folder
            .read_stamped(Path::new("gone.json"))
            .unwrap()
            .is_none());
    }

    #[test]
    fn regular_files_are_read_and_missing_ones_are_none() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("run")).unwrap();
        std::fs::write(dir.path().join("run").join("a.json"), b"{}").unwrap();
        let folder = Folder::open(dir.path()).unwrap();
        assert_eq!(
            folder.read(Path::new("run/a.json")).unwrap().unwrap(),
            b"{}"
        );
        assert!(folder.read(Path::new("run/b.json")).unwrap().is_none());
        assert!(read_file(&dir.path().join("nope").join("x"))
            .unwrap()
            .is_none());
        assert_eq!(
            read_file(&dir.path().join("run/a.json")).unwrap().unwrap(),
            b"{}"
        );
    }

    #[test]
    fn links_are_never_followed_nor_created_through() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        std::fs::create_dir(&run).unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        symlink(&victim, run.join(".lock")).unwrap();
        symlink(dir.path().join("missing"), run.join("dangling")).unwrap();
        symlink(&run, dir.path().join("linked-run")).unwrap();
        let folder = Folder::open(dir.path()).unwrap();
        for (below, how) in [
            ("run/.lock", How::ReadWriteCreate),
            ("run/.lock", How::Read),
            ("run/dangling", How::ReadWriteCreate),
            ("run/dangling", How::AppendCreate),
            ("linked-run/a", How::Read),
            ("linked-run/a", How::CreateNew),
        ] {
            let err = folder.open_file(Path::new(below), how).unwrap_err();
            assert!(
                matches!(err, CoreError::NotAFile { .. }),
                "{below}: {err:?}"
            );
            assert!(err.to_string().contains("symbolic link"), "{err}");
            assert_eq!(err.path(), dir.path().join(below));
        }
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(!dir.path().join("missing").exists());
        assert!(!run.join("a").exists());
        // The last component of a single path too.
        let err = read_file(&run.join(".lock")).unwrap_err();
        assert!(matches!(err, CoreError::NotAFile { .. }), "{err:?}");
    }

    #[test]
    fn fifos_folders_and_devices_are_named_not_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        for how in [How::Read, How::Write, How::ReadWriteCreate] {
            let err = open_file(&fifo, how).unwrap_err();
            assert!(
                matches!(err, CoreError::NotAFile { .. }),
                "{how:?}: {err:?}"
            );
            assert!(err.to_string().contains("FIFO"), "{err}");
        }
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let err = read_file(&dir.path().join("sub")).unwrap_err();
        assert_eq!(err.errno(), Some(21), "{err}");
        let err = Folder::open(Path::new("/dev"))
            .unwrap()
            .read(Path::new("zero"))
            .unwrap_err();
        assert!(err.to_string().contains("device"), "{err}");
    }

    #[test]
    fn files_past_the_cap_are_refused_before_a_byte_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        let file = File::create(&path).unwrap();
        file.set_len(MAX_FILE_BYTES + 1).unwrap();
        let err = read_file(&path).unwrap_err();
        assert!(
            err.to_string().contains(&MAX_FILE_BYTES.to_string()),
            "{err}"
        );
        let mut file = File::options().write(true).open(&path).unwrap();
        file.set_len(0).unwrap();
        file.write_all(b"abcdef").unwrap();
        let opened = open_file(&path, How::Read).unwrap().unwrap();
        assert_eq!(read_bounded(&opened, &path, 2).unwrap(), b"cdef");
    }
}
