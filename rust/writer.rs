//! The atomic writer and the plain reader (docs/format.md, "The atomic writer").
//!
//! A target is only ever replaced by `rename(2)` of a complete temp file from the same folder,
//! so a reader opening the target sees the old bytes or the new ones, never a torn mix, whatever
//! happens to the writer. With `fsync` the bytes and the rename reach the disk before the call
//! returns, so an acknowledged write survives power loss too.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{CoreError, Result};

/// Marks the temp files of writes in flight: `.<name>.tmp-<pid>-<nanos>-<counter>`.
pub const TEMP_MARKER: &str = ".tmp-";

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn split_target(path: &Path) -> Result<(&Path, &str)> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| CoreError::InvalidArgument(format!("{} names no file", path.display())))?;
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok((folder, name))
}

pub fn temp_path(folder: &Path, name: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let counter = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    folder.join(format!(
        ".{name}{TEMP_MARKER}{}-{nanos}-{counter}",
        std::process::id()
    ))
}

/// Whether a file name is the temp file of a write in flight (readers skip these).
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(TEMP_MARKER)
}

/// Flush a folder's entries (a rename or link inside it) to disk.
pub fn fsync_folder(folder: &Path) -> Result<()> {
    File::open(folder)
        .and_then(|f| f.sync_all())
        .map_err(|e| CoreError::io("fsync folder", folder, e))
}

/// Write `data` to `path` atomically: temp file, write, fsync, rename (or link for
/// `exclusive`, which fails with [`CoreError::Exists`] if the target is there), fsync folder.
pub fn write_atomic(path: &Path, data: &[u8], fsync: bool, exclusive: bool) -> Result<()> {
    let (folder, name) = split_target(path)?;
    let temp = temp_path(folder, name);
    let result = write_temp_and_publish(&temp, path, data, fsync, exclusive);
    if result.is_err() || exclusive {
        // After a failure the temp file is garbage; after a link it is a second name.
        let _ = fs::remove_file(&temp);
    }
    result?;
    if fsync {
        fsync_folder(folder)?;
    }
    Ok(())
}

fn write_temp_and_publish(
    temp: &Path,
    target: &Path,
    data: &[u8],
    fsync: bool,
    exclusive: bool,
) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(temp)
        .map_err(|e| CoreError::io("create", target, e))?;
    file.write_all(data)
        .map_err(|e| CoreError::io("write", target, e))?;
    if fsync {
        file.sync_data()
            .map_err(|e| CoreError::io("fsync", target, e))?;
    }
    drop(file);
    if exclusive {
        fs::hard_link(temp, target).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                CoreError::Exists {
                    path: target.to_path_buf(),
                }
            } else {
                CoreError::io("create", target, e)
            }
        })
    } else {
        fs::rename(temp, target).map_err(|e| CoreError::io("replace", target, e))
    }
}

/// Read a whole file; `Ok(None)` when it does not exist.
pub fn read_file(path: &Path) -> Result<Option<Vec<u8>>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CoreError::io("open", path, e)),
    };
    let mut data = Vec::new();
    file.read_to_end(&mut data)
        .map_err(|e| CoreError::io("read", path, e))?;
    Ok(Some(data))
}

/// Remove temp files of writes that died (older than `older_than`); returns how many.
///
/// Younger ones may belong to a write still in flight in another process and are left alone,
/// unless the process named in the temp file's name (`.<name>.tmp-<pid>-...`) is not running on
/// this host: a writer killed mid-write leaves its temp file, which goes at the next cleaning.
pub fn clean_temp_files(folder: &Path, older_than: Duration) -> Result<usize> {
    let entries = match fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(CoreError::io("list", folder, e)),
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !is_temp_name(name) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        let age = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or_default();
        let dead = writer_pid(name).is_some_and(|pid| !process_exists(pid));
        if (age >= older_than || dead) && fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// The pid in a temp file's name.
fn writer_pid(name: &str) -> Option<i32> {
    let (_, rest) = name.split_once(TEMP_MARKER)?;
    rest.split('-').next()?.parse().ok()
}

/// Whether a process of this pid exists on this host (a reused pid counts as alive: the file is
/// then left for the age rule, the safe side).
fn process_exists(pid: i32) -> bool {
    match rustix::process::Pid::from_raw(pid) {
        Some(pid) => !matches!(
            rustix::process::test_kill_process(pid),
            Err(rustix::io::Errno::SRCH)
        ),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_atomic(&path, b"one", true, false).unwrap();
        assert_eq!(read_file(&path).unwrap().unwrap(), b"one");
        write_atomic(&path, b"two", false, false).unwrap();
        assert_eq!(read_file(&path).unwrap().unwrap(), b"two");
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file is left behind");
    }

    #[test]
    fn exclusive_create_refuses_existing_target() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("RunLog.json");
        write_atomic(&path, b"first", true, true).unwrap();
        let err = write_atomic(&path, b"second", true, true).unwrap_err();
        assert!(matches!(err, CoreError::Exists { .. }), "{err:?}");
        assert_eq!(read_file(&path).unwrap().unwrap(), b"first");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn missing_folder_is_an_error_naming_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope").join("a.json");
        let err = write_atomic(&path, b"x", true, false).unwrap_err();
        assert_eq!(err.path(), path.as_path());
        assert_eq!(err.errno(), Some(2));
    }

    #[test]
    fn missing_file_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_file(&dir.path().join("x")).unwrap().is_none());
    }

    #[test]
    fn old_temp_files_are_cleaned_young_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(".a.json.tmp-1-2-3"), b"x").unwrap();
        fs::write(dir.path().join("a.json"), b"x").unwrap();
        assert_eq!(
            clean_temp_files(dir.path(), Duration::from_secs(60)).unwrap(),
            0
        );
        assert_eq!(clean_temp_files(dir.path(), Duration::ZERO).unwrap(), 1);
        assert!(dir.path().join("a.json").exists());
    }

    #[test]
    fn temp_files_of_dead_writers_go_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mine = format!(".a.json.tmp-{}-1-1", std::process::id());
        fs::write(dir.path().join(&mine), b"in flight").unwrap();
        // pid 2^22 + 1 is above Linux's pid_max: no such process.
        fs::write(dir.path().join(".b.json.tmp-4194305-1-1"), b"dead").unwrap();
        assert_eq!(
            clean_temp_files(dir.path(), Duration::from_secs(60)).unwrap(),
            1
        );
        assert!(dir.path().join(&mine).exists());
        assert_eq!(writer_pid(".x.tmp-123-456-7"), Some(123));
        assert_eq!(writer_pid("plain.json"), None);
    }

    #[test]
    fn disk_full_is_said_plainly() {
        let err = CoreError::io(
            "write",
            Path::new("/x/a.json"),
            io::Error::from_raw_os_error(28),
        );
        assert!(err.to_string().contains("disk full"), "{err}");
    }
}
