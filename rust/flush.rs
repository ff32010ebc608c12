//! One flush for many files: how a catalog put makes a whole batch of new files durable at the
//! cost of about one `fsync` (docs/catalogs.md, "Durable puts").
//!
//! The anchor is git's `core.fsyncMethod=batch`: every file is written first, then one flush
//! puts all of their bytes on the disk, then they are renamed to their names, then each folder
//! touched is fsynced once. Here the one flush is `syncfs(2)` of the filesystem holding the
//! files. It writes back every dirty page of that filesystem and commits its journal (a disk
//! cache flush included) on the filesystems listed in [`flushes_whole_filesystem`]; measured on
//! this project's machine (ext4 on a virtual disk), 2,000 new 4 KiB files took 0.04-0.19 s by
//! one syncfs after all writes, 0.48-0.55 s by one fdatasync per file after all writes and
//! 0.60-0.69 s by one fdatasync per file as each is written (docs/performance.md).
//!
//! Elsewhere a syncfs may flush nothing: FUSE passes it to the file system server only for
//! virtiofs, NFS and SMB write back through their own protocols, and an overlay's upper layer
//! is another file system. There every file is fdatasynced (after all of them are written), as
//! before. The kind of file system is read from `fstatfs`'s `f_type`. Linux reports a
//! write-back error through syncfs only from 5.8 on; an older kernel also gets the per-file
//! way, whose fdatasync reports each file's own error.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::OnceLock;

use rayon::prelude::*;

use crate::error::{CoreError, Result};

/// `f_type` of the file systems whose syncfs writes back every dirty file and commits the
/// journal with a cache flush: ext2/3/4, XFS, Btrfs, F2FS, and tmpfs (nothing to write back).
const WHOLE_FILESYSTEM_FLUSH: [u64; 5] = [
    0xEF53,      // ext2, ext3, ext4
    0x5846_5342, // XFS
    0x9123_683E, // Btrfs
    0xF2F5_2010, // F2FS
    0x0102_1994, // tmpfs
];

/// Whether one `syncfs` of the file system holding `fd` makes every file written on it durable
/// (the module's documentation says which and why); false when that cannot be told.
pub fn flushes_whole_filesystem(fd: &File) -> bool {
    if !kernel_reports_syncfs_errors() {
        return false;
    }
    match rustix::fs::fstatfs(fd) {
        Ok(found) => WHOLE_FILESYSTEM_FLUSH.contains(&(found.f_type as u64)),
        Err(_) => false,
    }
}

/// Linux 5.8 or later: syncfs returns the write-back errors of the file system since the
/// descriptor was opened (before, it returned 0 whatever write-back met).
fn kernel_reports_syncfs_errors() -> bool {
    static NEW_ENOUGH: OnceLock<bool> = OnceLock::new();
    *NEW_ENOUGH.get_or_init(|| {
        let Ok(text) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
            return false;
        };
        let mut numbers = text
            .split(|c: char| !c.is_ascii_digit())
            .map(|part| part.parse::<u32>().unwrap_or(0));
        let major = numbers.next().unwrap_or(0);
        let minor = numbers.next().unwrap_or(0);
        (major, minor) >= (5, 8)
    })
}

/// One file to be made durable: its path (for errors and to reopen it) and the device it is on.
#[derive(Debug, Clone, Copy)]
pub struct Pending<'a> {
    pub path: &'a Path,
    pub dev: u64,
}

/// Up to this many files of one device are flushed by an `fdatasync` each rather than by one
/// `syncfs`: a syncfs also waits for every other program's unwritten data on the file system,
/// which on a busy machine costs more than a few files' own flushes. The put of one 768 MiB
/// file inside a runnable pipeline here (2 cores shared with other work) took 1.0-2.3 s with a
/// syncfs and 0.76-0.81 s with its own fdatasync (docs/performance.md).
pub const OWN_FLUSH_MAX_FILES: usize = 4;

/// Make the bytes of every file of `files` durable: per device, one `syncfs` when that file
/// system flushes whole and more than [`OWN_FLUSH_MAX_FILES`] files are on it, else one
/// `fdatasync` per file (in parallel). The result per file, in order: Ok, or the error of its
/// flush (a failed syncfs fails every file of its device).
pub fn make_durable(files: &[Pending<'_>]) -> Vec<Result<()>> {
    let mut by_device: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (index, file) in files.iter().enumerate() {
        by_device.entry(file.dev).or_default().push(index);
    }
    let mut results: Vec<Option<Result<()>>> = files.iter().map(|_| None).collect();
    let mut one_by_one: Vec<usize> = Vec::new();
    for indexes in by_device.values() {
        if indexes.len() <= OWN_FLUSH_MAX_FILES {
            one_by_one.extend(indexes);
            continue;
        }
        let first = files[indexes[0]].path;
        match File::open(first) {
            Ok(opened) if flushes_whole_filesystem(&opened) => {
                let flushed = rustix::fs::syncfs(&opened)
                    .map_err(|e| CoreError::io("flush (syncfs)", first, io::Error::from(e)));
                for &index in indexes {
                    results[index] = Some(flushed.clone_for(files[index].path));
                }
            }
            _ => one_by_one.extend(indexes),
        }
    }
    let synced: Vec<(usize, Result<()>)> = one_by_one
        .par_iter()
        .map(|&index| (index, fdatasync_path(files[index].path)))
        .collect();
    for (index, result) in synced {
        results[index] = Some(result);
    }
    results.into_iter().map(|r| r.unwrap_or(Ok(()))).collect()
}

/// The device a path is on (`stat`), for [`Pending`].
pub fn device_of(path: &Path) -> Result<u64> {
    std::fs::metadata(path)
        .map(|m| m.dev())
        .map_err(|e| CoreError::io("stat", path, e))
}

fn fdatasync_path(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_data())
        .map_err(|e| CoreError::io("fsync", path, e))
}

/// A flush's outcome for each file it covered: the same error, naming that file.
trait ForEachFile {
    fn clone_for(&self, path: &Path) -> Result<()>;
}

impl ForEachFile for Result<()> {
    fn clone_for(&self, path: &Path) -> Result<()> {
        match self {
            Ok(()) => Ok(()),
            Err(err) => Err(CoreError::io(
                "flush (syncfs)",
                path,
                io::Error::from_raw_os_error(err.errno().unwrap_or(5)),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_is_answered_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<_> = (0..5).map(|i| dir.path().join(format!("f{i}"))).collect();
        for path in &paths {
            std::fs::write(path, b"bytes").unwrap();
        }
        let dev = device_of(dir.path()).unwrap();
        let mut pending: Vec<Pending<'_>> =
            paths.iter().map(|p| Pending { path: p, dev }).collect();
        let missing = dir.path().join("missing");
        // A file of another (made-up) device that cannot be opened fails on its own.
        pending.push(Pending {
            path: &missing,
            dev: dev + 1,
        });
        let results = make_durable(&pending);
        assert_eq!(results.len(), 6);
        assert!(results[..5].iter().all(|r| r.is_ok()), "{results:?}");
        assert_eq!(results[5].as_ref().unwrap_err().errno(), Some(2));
    }

    #[test]
    fn a_few_files_are_each_flushed_on_their_own() {
        // Up to OWN_FLUSH_MAX_FILES files of a device get an fdatasync each, which answers for
        // its own file: one that is gone fails alone (a syncfs would answer Ok for it).
        let dir = tempfile::tempdir().unwrap();
        let present = dir.path().join("present");
        std::fs::write(&present, b"bytes").unwrap();
        let gone = dir.path().join("gone");
        let dev = device_of(dir.path()).unwrap();
        let results = make_durable(&[
            Pending {
                path: &present,
                dev,
            },
            Pending { path: &gone, dev },
        ]);
        assert!(results[0].is_ok(), "{results:?}");
        assert_eq!(results[1].as_ref().unwrap_err().errno(), Some(2));
    }

    #[test]
    fn the_kernel_version_is_read() {
        // The machines this runs on are far newer than 5.8.
        assert!(kernel_reports_syncfs_errors());
    }
}
