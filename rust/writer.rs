//! The atomic writer and the plain reader (docs/format.md, "The atomic writer"), with what they
//! share: temp file names, folder fsync, durable folder creation, and the removal of the temp
//! files that dead writes left.
//!
//! A target is only ever replaced by `rename(2)` of a complete temp file from the same folder,
//! so a reader opening the target sees the old bytes or the new ones, never a torn mix, whatever
//! happens to the writer. With `fsync` the bytes and the rename reach the disk before the call
//! returns, so an acknowledged write survives power loss too.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::chunk::{is_temp_name, temp_file_name, temp_writer_pid};
use crate::error::{CoreError, Result};
use crate::untrusted::MAX_FILE_BYTES;

/// The folder and file name of a target path.
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

/// A fresh temp file beside `name` in `folder` (see [`temp_file_name`]).
pub fn temp_path(folder: &Path, name: &str) -> PathBuf {
    folder.join(temp_file_name(name))
}

/// A fresh temp file beside `target`, in the writer's own pattern, for callers that write the
/// file themselves (a download) and rename it onto `target`; a target whose name is not UTF-8
/// gets a temp name from the BLAKE3 of its bytes (`copier::bounded_temp_name_of`).
pub fn temp_path_beside(target: &Path) -> Result<PathBuf> {
    match split_target(target) {
        Ok((folder, name)) => Ok(temp_path(folder, name)),
        Err(err) => {
            let (Some(name), Some(folder)) = (target.file_name(), target.parent()) else {
                return Err(err);
            };
            let folder = if folder.as_os_str().is_empty() {
                Path::new(".")
            } else {
                folder
            };
            Ok(folder.join(crate::copier::bounded_temp_name_of(name)))
        }
    }
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
    if data.len() as u64 > MAX_FILE_BYTES {
        // A reader would refuse it: what is acknowledged must read back.
        return Err(CoreError::InvalidArgument(format!(
            "{} would be {} bytes, more than the {MAX_FILE_BYTES} a store reads",
            path.display(),
            data.len()
        )));
    }
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

/// Create `path` and every missing folder above it, like `mkdir -p`. With `fsync`, the new
/// names reach the disk before the call returns: a folder's entry is durable only once its
/// parent folder is fsynced, so without that a power cut can lose a new run folder and every
/// acknowledged write inside it. So the parent of every folder that was missing is fsynced, and
/// the deepest folder itself. A folder that already existed costs one `stat` and no fsync.
///
/// Something that is not a folder in the way (a file at `path` or above it) is a
/// [`CoreError::Io`] `ENOTDIR` naming that path.
pub fn create_dir_all_durable(path: &Path, fsync: bool) -> Result<()> {
    let to_flush = create_missing_folders(path)?;
    if fsync {
        for folder in to_flush {
            fsync_folder(folder)?;
        }
    }
    Ok(())
}

/// Create the folders missing on the way to `path`, top down; returns the folders whose
/// entries must be flushed for them to be durable, deepest first: every folder that was missing
/// (each is the parent of the next one down, and the deepest is `path` itself) and the existing
/// folder they were created in. Empty when `path` already existed.
fn create_missing_folders(path: &Path) -> Result<Vec<&Path>> {
    if path.as_os_str().is_empty() {
        return Err(CoreError::InvalidArgument(
            "an empty path names no folder".to_string(),
        ));
    }
    let mut missing: Vec<&Path> = Vec::new();
    let mut current = path;
    let existing = loop {
        match fs::metadata(current) {
            Ok(meta) if meta.is_dir() => break current,
            Ok(_) => return Err(not_a_folder(current)),
            // ENOTDIR: a file above; found as the walk goes up.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                missing.push(current);
                match current.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => current = parent,
                    // A relative path whose first part is missing: it goes in ".".
                    _ => break Path::new("."),
                }
            }
            Err(e) => return Err(CoreError::io("create folder", current, e)),
        }
    };
    if missing.is_empty() {
        return Ok(missing);
    }
    for &folder in missing.iter().rev() {
        match fs::create_dir(folder) {
            Ok(()) => {}
            // Another process or thread created it meanwhile: fine if it is a folder.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if !fs::metadata(folder).is_ok_and(|m| m.is_dir()) {
                    return Err(not_a_folder(folder));
                }
            }
            Err(e) => return Err(CoreError::io("create folder", folder, e)),
        }
    }
    missing.push(existing);
    Ok(missing)
}

fn not_a_folder(path: &Path) -> CoreError {
    CoreError::io(
        "create folder",
        path,
        io::Error::from_raw_os_error(rustix::io::Errno::NOTDIR.raw_os_error()),
    )
}

/// Read a whole stored document; `Ok(None)` when it does not exist. It is opened as every file
/// the store did not create is (`untrusted`): a link, a FIFO, a device or a file past the cap
/// is a corrupt document ([`CoreError::Corrupt`]) naming it, never followed, waited for or read.
pub fn read_file(path: &Path) -> Result<Option<Vec<u8>>> {
    crate::untrusted::read_file(path).map_err(CoreError::as_document)
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
        let dead = temp_writer_pid(name).is_some_and(|pid| !process_exists(pid));
        if (age >= older_than || dead) && fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
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
    }

    #[test]
    fn every_new_folder_and_its_parent_are_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        let run = logs.join("run-1");
        let data = run.join("data");
        let flushed = create_missing_folders(&data).unwrap();
        assert_eq!(
            flushed,
            [data.as_path(), run.as_path(), logs.as_path(), dir.path()]
        );
        assert!(data.is_dir());
        assert!(create_missing_folders(&data).unwrap().is_empty());
        let more = data.join("more");
        assert_eq!(
            create_missing_folders(&more).unwrap(),
            [more.as_path(), data.as_path()]
        );
        let err = create_missing_folders(Path::new("")).unwrap_err();
        assert!(matches!(err, CoreError::InvalidArgument(_)), "{err:?}");
    }

    #[test]
    fn folders_are_created_with_every_missing_parent() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("logs").join("run-1").join("data");
        create_dir_all_durable(&deep, true).unwrap();
        assert!(deep.is_dir());
        // Existing folders are fine, with or without fsync.
        create_dir_all_durable(&deep, true).unwrap();
        create_dir_all_durable(&deep, false).unwrap();
        create_dir_all_durable(dir.path(), true).unwrap();
        let shallow = dir.path().join("other");
        create_dir_all_durable(&shallow, false).unwrap();
        assert!(shallow.is_dir());
    }

    #[test]
    fn a_file_in_the_way_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("logs");
        fs::write(&file, b"not a folder").unwrap();
        for wanted in [
            file.clone(),
            file.join("run-1"),
            file.join("run-1").join("x"),
        ] {
            let err = create_dir_all_durable(&wanted, true).unwrap_err();
            assert_eq!(err.path(), file.as_path(), "{err}");
            assert_eq!(err.errno(), Some(20));
            assert_eq!(
                err.to_string(),
                format!(
                    "create folder {}: Not a directory (os error 20)",
                    file.display()
                )
            );
        }
        assert_eq!(fs::read(&file).unwrap(), b"not a folder");
    }

    #[test]
    fn parallel_creators_of_one_folder_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a").join("b").join("c");
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| create_dir_all_durable(&deep, true).unwrap());
            }
        });
        assert!(deep.is_dir());
    }

    #[test]
    fn temp_paths_sit_beside_their_target() {
        let temp = temp_path_beside(Path::new("/x/y/data.csv")).unwrap();
        assert_eq!(temp.parent(), Some(Path::new("/x/y")));
        let name = temp.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with(".data.csv.tmp-") && is_temp_name(name),
            "{name}"
        );
        assert_eq!(
            temp_path_beside(Path::new("data.csv")).unwrap().parent(),
            Some(Path::new("."))
        );
        assert!(temp_path_beside(Path::new("/")).is_err());
        assert!(temp_path_beside(Path::new("a/..")).is_err());
        use std::os::unix::ffi::OsStrExt;
        let odd = Path::new("/x").join(std::ffi::OsStr::from_bytes(b"run-\xff\xfe"));
        let temp = temp_path_beside(&odd).unwrap();
        assert_eq!(temp.parent(), Some(Path::new("/x")));
        assert!(is_temp_name(temp.file_name().unwrap().to_str().unwrap()));
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
