//! Unnamed files made ahead of the folds that need them.
//!
//! A fold publishes a document as a new file, and on a busy ext4 volume most of what that costs
//! is finding a free inode (the allocator reads inode tables to skip recently deleted ones):
//! 100 us to over 1 ms per file as the disk's state moves, against about 25 us to write and
//! name a file whose inode exists already. So a run keeps a few unnamed files (`O_TMPFILE`)
//! made by a short-lived thread of its own while the writer does other work, and a fold takes
//! one, writes the document into it and links it in (`linkat`), which is atomic: a reader
//! sees no document or the whole one. A document that exists already is replaced the usual
//! way: the spare is linked under a temp name, then renamed over it.
//!
//! An unnamed file does not take its folder's lock, so making one does not hold up the
//! writer's own renames and links there. It has no name until it is linked, so a crash or
//! exit leaves nothing behind (the file system frees it). Where `O_TMPFILE` or
//! `/proc/self/fd` (what `linkat` names the file by without privileges) is missing, a fold
//! makes its temp file as before.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, TryLockError};

use rustix::fs::{AtFlags, Mode, OFlags, CWD};
use rustix::io::Errno;

use crate::error::{CoreError, Result};
use crate::writer::temp_path_beside;

/// Spares a run keeps; a refill starts when it is down to [`REFILL_AT`]. A branch end folds
/// one or two documents, so this covers a burst of branch ends while the thread catches up.
const TARGET: usize = 8;
/// Half the target: the four left cover the folds of a few branch ends while the refill runs.
const REFILL_AT: usize = 4;
/// Spares the whole process may hold open (file descriptors): a process with many runs open
/// at once keeps to this.
const PROCESS_LIMIT: usize = 64;

static OPEN_SPARES: AtomicUsize = AtomicUsize::new(0);

/// One unnamed file, counted against `PROCESS_LIMIT` while it is open.
#[derive(Debug)]
pub struct Spare(File);

impl Drop for Spare {
    fn drop(&mut self) {
        OPEN_SPARES.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Pool {
    /// The process the spares belong to: a forked child must not write into its parent's.
    pid: u32,
    files: Vec<Spare>,
    refilling: bool,
    /// The folder's file system cannot make them (or name them without privileges).
    unsupported: bool,
}

/// The spares of one folder.
pub struct Spares {
    dir: PathBuf,
    pool: Arc<Mutex<Pool>>,
}

fn proc_fd_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| Path::new("/proc/self/fd").is_dir())
}

fn make_spare(dir: &Path) -> io::Result<Spare> {
    let fd = rustix::fs::open(
        dir,
        OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )?;
    OPEN_SPARES.fetch_add(1, Ordering::Relaxed);
    Ok(Spare(File::from(fd)))
}

impl Spares {
    pub fn new(dir: &Path) -> Spares {
        Spares {
            dir: dir.to_path_buf(),
            pool: Arc::new(Mutex::new(Pool::default())),
        }
    }

    /// A spare if one is ready (starting a refill when few are left); `None` means: make the
    /// file the usual way this time.
    ///
    /// Never waits for the pool: a process forked while the refill thread held its lock has a
    /// copy of that lock held by a thread that does not exist there (waiting would hang the
    /// fold, and with it the run's lock). Such a child makes its files the usual way.
    pub fn take(&self) -> Option<Spare> {
        let mut pool = match self.pool.try_lock() {
            Ok(pool) => pool,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        let pid = std::process::id();
        if pool.pid != pid {
            // A forked child: its copies of the parent's spares share their open files with
            // the parent, and the parent's refill thread does not exist here.
            *pool = Pool {
                pid,
                unsupported: pool.unsupported,
                ..Pool::default()
            };
        }
        if pool.unsupported {
            return None;
        }
        let spare = pool.files.pop();
        if pool.files.len() <= REFILL_AT && !pool.refilling {
            pool.refilling = true;
            let (dir, shared) = (self.dir.clone(), Arc::clone(&self.pool));
            let spawned = std::thread::Builder::new()
                .name("runlog-spares".into())
                .spawn(move || refill(&dir, &shared, pid));
            if spawned.is_err() {
                pool.refilling = false;
            }
        }
        spare
    }

    /// Close every spare held (the run has ended).
    pub fn release(&self) {
        if let Ok(mut pool) = self.pool.try_lock() {
            pool.files.clear();
        }
    }
}

fn refill(dir: &Path, shared: &Mutex<Pool>, pid: u32) {
    let unsupported = !proc_fd_available();
    loop {
        {
            let mut pool = shared.lock().unwrap_or_else(|p| p.into_inner());
            let full =
                pool.files.len() >= TARGET || OPEN_SPARES.load(Ordering::Relaxed) >= PROCESS_LIMIT;
            if pool.pid != pid || unsupported || full {
                pool.unsupported |= unsupported;
                pool.refilling = false;
                return;
            }
        }
        // Made without the pool's lock: this is the slow part.
        let made = make_spare(dir);
        let mut pool = shared.lock().unwrap_or_else(|p| p.into_inner());
        match made {
            Ok(spare) => pool.files.push(spare),
            Err(e) => {
                // No O_TMPFILE here (an older kernel, a FUSE or network file system): the
                // folds make their temp files. Other errors (a full disk, a folder deleted)
                // end this refill; the next take starts another.
                let errno = e.raw_os_error().map(Errno::from_raw_os_error);
                if matches!(
                    errno,
                    Some(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL | Errno::NOSYS)
                ) {
                    pool.unsupported = true;
                }
                pool.refilling = false;
                return;
            }
        }
    }
}

impl Spare {
    /// Write `data` into the spare (synced with `fsync`) and give it the name `path`,
    /// atomically: a new name is linked; an existing document is replaced by a rename. Returns
    /// the file, named now.
    pub fn publish(self, path: &Path, data: &[u8], fsync: bool) -> Result<Spare> {
        self.0
            .write_all_at(data, 0)
            .map_err(|e| CoreError::io("write", path, e))?;
        if fsync {
            self.0
                .sync_data()
                .map_err(|e| CoreError::io("fsync", path, e))?;
        }
        let named = format!("/proc/self/fd/{}", self.0.as_raw_fd());
        let link = |to: &Path| rustix::fs::linkat(CWD, &named, CWD, to, AtFlags::SYMLINK_FOLLOW);
        match link(path) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let temp = temp_path_beside(path)?;
                link(&temp).map_err(|e| CoreError::io("link", path, e.into()))?;
                std::fs::rename(&temp, path).map_err(|e| {
                    let _ = std::fs::remove_file(&temp);
                    CoreError::io("replace", path, e)
                })?;
            }
            Err(e) => return Err(CoreError::io("link", path, e.into())),
        }
        Ok(self)
    }

    pub fn metadata(&self) -> io::Result<std::fs::Metadata> {
        self.0.metadata()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn ready(spares: &Spares) -> Spare {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(spare) = spares.take() {
                return spare;
            }
            assert!(Instant::now() < deadline, "no spare was made");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_spare_becomes_a_new_document_or_replaces_one_whole() {
        let dir = tempfile::tempdir().unwrap();
        let spares = Spares::new(dir.path());
        let target = dir.path().join("BranchLog-b.json");
        ready(&spares)
            .publish(&target, b"{\"a\":1}", false)
            .unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"{\"a\":1}");
        ready(&spares)
            .publish(&target, b"{\"a\":22}", true)
            .unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"{\"a\":22}");
        // Only the document has a name: no temp file, and the spares have none.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["BranchLog-b.json"]);
        spares.release();
    }

    #[test]
    fn a_missing_folder_is_an_error_naming_the_document() {
        let dir = tempfile::tempdir().unwrap();
        let spares = Spares::new(dir.path());
        let spare = ready(&spares);
        let gone = dir.path().join("gone").join("RunLog.json");
        let err = spare.publish(&gone, b"{}", false).unwrap_err();
        assert!(err.to_string().contains("RunLog.json"), "{err}");
    }
}
