//! The inter-process lock: an exclusive `flock(2)` on a lock file, waited for with a deadline.
//!
//! `flock` is released by the kernel when the holding descriptor is closed, including when the
//! process is killed, so a crashed writer never leaves a run locked. It serialises processes on
//! one host (not across NFS clients; docs/format.md).
//!
//! The lock file sits in a shared folder, so it is opened as every file the store did not
//! create is (`untrusted`): a link in its place is an error naming it, and nothing is written
//! to, or created at, where the link points.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use rustix::fs::{flock, FlockOperation};
use rustix::io::Errno;

use crate::error::{CoreError, Result};
use crate::untrusted::{self, Folder, How};

/// The first wait of a locker that found the lock held, doubled at each try up to
/// [`LONGEST_PAUSE`]. A lock is held for an append to a journal (tens of microseconds) or the
/// rewrite of a document (milliseconds): a short first pause takes it soon after an append.
const FIRST_PAUSE: Duration = Duration::from_micros(50);
/// The longest wait between tries: a waiter notices a release within 5 ms, and a long wait
/// costs at most 200 tries a second.
const LONGEST_PAUSE: Duration = Duration::from_millis(5);

/// An acquired lock; dropping it releases the lock.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
    path: PathBuf,
}

impl FileLock {
    /// Lock `path` (created if missing), waiting at most `timeout`.
    pub fn acquire(path: &Path, timeout: Duration) -> Result<FileLock> {
        let file = untrusted::open_file(path, How::ReadWriteCreate)
            .map_err(|e| lock_error(path, e))?
            .expect("a lock file is created when missing");
        Self::wait_for(file, path, timeout)
    }

    /// Lock the file `below` inside `folder` (created if missing), no link followed on the way.
    pub fn acquire_in(folder: &Folder, below: &Path, timeout: Duration) -> Result<FileLock> {
        let path = folder.path_of(below);
        let file = folder
            .open_file(below, How::ReadWriteCreate)
            .map_err(|e| lock_error(&path, e))?
            .expect("a lock file is created when missing");
        Self::wait_for(file, &path, timeout)
    }

    fn wait_for(file: File, path: &Path, timeout: Duration) -> Result<FileLock> {
        let deadline = Instant::now() + timeout;
        let mut pause = FIRST_PAUSE;
        loop {
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {
                    return Ok(FileLock {
                        _file: file,
                        path: path.to_path_buf(),
                    })
                }
                Err(Errno::WOULDBLOCK) | Err(Errno::INTR) => {}
                Err(e) => return Err(CoreError::io("lock", path, e.into())),
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(CoreError::LockTimeout {
                    path: path.to_path_buf(),
                    timeout_secs: timeout.as_secs_f64(),
                });
            }
            thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(LONGEST_PAUSE);
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The locked file (a run's lock file also keeps the last journal stamp, `run`).
    pub fn file(&self) -> &File {
        &self._file
    }
}

/// An open that failed names the lock (the error of the open itself says what it was).
fn lock_error(path: &Path, err: CoreError) -> CoreError {
    match err {
        CoreError::Io { source, .. } => CoreError::io("open lock", path, source),
        other => other,
    }
}

impl Drop for FileLock {
    /// Unlocked explicitly before the descriptor closes: a process forked while this lock was
    /// held (by one thread, while another forked: runnable's Pool, a user's threads) has a copy
    /// of the descriptor, and closing ours alone would leave the run locked for as long as
    /// that child lives.
    fn drop(&mut self) {
        let _ = flock(&self._file, FlockOperation::Unlock);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_times_out_then_gets_it_after_release() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".lock");
        let first = FileLock::acquire(&path, Duration::from_secs(1)).unwrap();
        // flock locks belong to open file descriptions, so a second open in the same process
        // contends exactly like another process would.
        let err = FileLock::acquire(&path, Duration::from_millis(50)).unwrap_err();
        assert!(matches!(err, CoreError::LockTimeout { .. }), "{err:?}");
        assert!(err.to_string().contains(".lock"));
        drop(first);
        FileLock::acquire(&path, Duration::from_millis(50)).unwrap();
    }

    #[test]
    fn waiters_get_the_lock_in_turn() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".lock");
        let counter = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let (path, counter) = (path.clone(), counter.clone());
                thread::spawn(move || {
                    let _held = FileLock::acquire(&path, Duration::from_secs(10)).unwrap();
                    counter.lock().unwrap().push(i);
                    thread::sleep(Duration::from_millis(5));
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(counter.lock().unwrap().len(), 4);
    }

    #[test]
    fn release_unlocks_even_while_a_copy_of_the_descriptor_lives() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".lock");
        let held = FileLock::acquire(&path, Duration::from_secs(1)).unwrap();
        // What a child forked meanwhile holds: the same open file description.
        let copy = held.file().try_clone().unwrap();
        drop(held);
        FileLock::acquire(&path, Duration::from_millis(50)).unwrap();
        drop(copy);
    }

    #[test]
    fn a_link_in_place_of_the_lock_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let path = dir.path().join(".lock");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let err = FileLock::acquire(&path, Duration::from_millis(10)).unwrap_err();
        assert!(matches!(err, CoreError::NotAFile { .. }), "{err:?}");
        assert_eq!(err.path(), path.as_path());
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        let dangling = dir.path().join("other.lock");
        std::os::unix::fs::symlink(dir.path().join("made"), &dangling).unwrap();
        assert!(FileLock::acquire(&dangling, Duration::from_millis(10)).is_err());
        assert!(!dir.path().join("made").exists());
    }

    #[test]
    fn missing_folder_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err =
            FileLock::acquire(&dir.path().join("no/.lock"), Duration::from_millis(10)).unwrap_err();
        assert_eq!(err.errno(), Some(2));
    }
}
