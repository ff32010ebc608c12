//! Copies into and out of a catalog: atomic (temp file, rename) and hashed in the same pass,
//! so a catalog put reads each file once.
//!
//! The copy keeps the source's modification time, so its identity can be cached like the
//! source's: a later put of an unchanged file into the same place is two stat calls, with no
//! read and no write.
//!
//! Temp files are named by [`temp_beside`], whose names fit wherever the final name fits: a
//! name as long as a file system allows still has a temp file beside it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::cache::HashCache;
use crate::chunk::temp_file_name;
use crate::error::{CoreError, Result};
use crate::flush::{device_of, make_durable, Pending};
use crate::hasher::{
    copy_hashing, hash_with_identity, now_ns, open_regular, retry_while_changing, Algorithm,
    Attempt, FileIdentity, Hashed,
};
use crate::writer::{create_dir_all_durable, fsync_folder};

/// From this size on a BLAKE3 copy is made by the kernel and hashed on every core afterwards
/// (see `copy_file`); below it one pass through a buffer is as fast and reads the file once.
const KERNEL_COPY_MIN_BYTES: u64 = 32 << 20;
/// From this size on, with fsync, a copy is written out to the disk while it is copied and
/// hashed (see [`write_out_meanwhile`]) rather than all at the batch's flush. A 768 MiB copy
/// here is made in about 0.24 s, hashed in 0.13 s, then flushed in 0.24 s; written out
/// meanwhile, the flush finds little left: a durable put of it took 0.42-0.50 s against
/// 0.58-0.90 s. A small file's write-out is short and rides the batch's one flush; a thread of
/// its own would cost more than it saves. (The same size as [`KERNEL_COPY_MIN_BYTES`] by
/// chance, not by need: a SHA-256 copy of this size is written out meanwhile too.)
pub(crate) const EARLY_WRITE_OUT_MIN_BYTES: u64 = 32 << 20;
/// How long the write-out thread waits after a flush that found little to write, before it
/// looks again: a few looks while the kernel copies 100 MiB.
const WRITE_OUT_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);
/// The longest file name, in bytes, of the file systems a catalog lives on (Linux's
/// `NAME_MAX`: ext4, XFS, Btrfs, tmpfs).
pub const NAME_MAX_BYTES: usize = 255;
/// How many hex digits of a long name's BLAKE3 stand for it in its temp file's name: 128 bits,
/// so two long names of one folder never share a stem, and the temp name stays under 100 bytes.
const LONG_NAME_STEM_HEX: usize = 32;

/// A fresh temp file name for a write of `name`: the writers' own pattern
/// (`.<name>.tmp-<pid>-<nanos>-<counter>`, which listings skip and cleaners recognise) when it
/// fits in [`NAME_MAX_BYTES`]; for a name too long for that, the same pattern around a fixed
/// length stem derived from the name's BLAKE3, so the temp name fits wherever the name does.
pub fn bounded_temp_name(name: &str) -> String {
    let temp = temp_file_name(name);
    if temp.len() <= NAME_MAX_BYTES {
        return temp;
    }
    let stem = blake3::hash(name.as_bytes()).to_hex();
    temp_file_name(&stem[..LONG_NAME_STEM_HEX])
}

/// [`bounded_temp_name`] of a file name that may not be UTF-8 (a file someone named with other
/// bytes): such a name stands as the BLAKE3 stem of its bytes, as a long one does.
pub fn bounded_temp_name_of(name: &std::ffi::OsStr) -> String {
    use std::os::unix::ffi::OsStrExt;
    match name.to_str() {
        Some(name) => bounded_temp_name(name),
        None => {
            let stem = blake3::hash(name.as_bytes()).to_hex();
            temp_file_name(&stem[..LONG_NAME_STEM_HEX])
        }
    }
}

/// A fresh temp file beside `target`, named by [`bounded_temp_name_of`].
pub fn temp_beside(target: &Path) -> Result<PathBuf> {
    let name = target
        .file_name()
        .ok_or_else(|| CoreError::InvalidArgument(format!("{} names no file", target.display())))?;
    let folder = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok(folder.join(bounded_temp_name_of(name)))
}

/// The digest of a file copied (or found already there, `copied == false`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub digest: String,
    pub copied: bool,
}

/// A copy written to its temp file beside its target, not yet flushed or renamed.
struct Written {
    temp: PathBuf,
    hashed: Hashed,
}

/// Copy `src` into a fresh temp file beside `dst`, hashing the bytes as they pass, keeping the
/// source's mtime; a source that changes while it is read is read again (into a new temp
/// file) a few times before that is an error (`hasher::retry_while_changing`). Nothing is
/// flushed but, with `fsync`, a large file, written out meanwhile: the caller flushes a whole
/// batch at once. On error no temp file is left.
fn write_temp(src: &Path, dst: &Path, algorithm: Algorithm, fsync: bool) -> Result<Written> {
    retry_while_changing(src, || {
        let started_ns = now_ns();
        let (mut source, meta) = open_regular(src)?;
        let before = FileIdentity::of(&meta);
        let temp = temp_beside(dst)?;
        let out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&temp)
            .map_err(|e| CoreError::io("create", dst, e))?;
        // Written through a shared reference: the write-out thread flushes the same file.
        let copy_and_hash = || -> Result<Option<String>> {
            let mut writing = &out;
            let digest = if algorithm == Algorithm::Blake3 && before.size >= KERNEL_COPY_MIN_BYTES {
                // A large file: the kernel copies it (copy_file_range, no trip through user
                // space), then the copy is hashed from the page cache by BLAKE3 on every core.
                // One thread reading, hashing and writing in turn is I/O-bound and single-core:
                // 768 MiB took 1.8 s that way here against 0.7 s this way. The digest is of the
                // copy's bytes, what the catalog keeps; the source's identity is checked below.
                io::copy(&mut source, &mut writing).map_err(|e| CoreError::io("copy", dst, e))?;
                hash_with_identity(&temp, algorithm)?.digest
            } else {
                copy_hashing(&mut source, &mut writing, algorithm, before.size, src, dst)?
            };
            let modified = meta.modified().map_err(|e| CoreError::io("stat", src, e))?;
            out.set_modified(modified)
                .map_err(|e| CoreError::io("set the time of", dst, e))?;
            let after = source
                .metadata()
                .map(|m| FileIdentity::of(&m))
                .map_err(|e| CoreError::io("stat", src, e))?;
            Ok((after == before).then_some(digest))
        };
        let written = written_out_if_large(&out, dst, before.size, fsync, copy_and_hash);
        match written {
            Ok(Some(digest)) => Ok(Attempt::Done(Written {
                temp,
                hashed: Hashed {
                    digest,
                    identity: before,
                    started_ns,
                },
            })),
            Ok(None) => {
                let _ = fs::remove_file(&temp);
                Ok(Attempt::Changed)
            }
            Err(err) => {
                let _ = fs::remove_file(&temp);
                Err(err)
            }
        }
    })
}

/// Run `work` (the copy of `size` bytes into `out`, and its hash): with `fsync`, a copy of
/// [`EARLY_WRITE_OUT_MIN_BYTES`] or more is written out meanwhile ([`write_out_meanwhile`]), a
/// smaller one left to the batch's flush. The catalogs' copies all decide here.
pub(crate) fn written_out_if_large<T>(
    out: &fs::File,
    dst: &Path,
    size: u64,
    fsync: bool,
    work: impl FnOnce() -> Result<T>,
) -> Result<T> {
    if fsync && size >= EARLY_WRITE_OUT_MIN_BYTES {
        write_out_meanwhile(out, dst, work)
    } else {
        work()
    }
}

/// Run `work` (the copy of a large file into `out`, and its hash) while a thread of its own
/// flushes `out` again and again, so the disk writes the copy while the kernel makes it and
/// BLAKE3 reads it back: the batch's flush afterwards finds it written. A flush that fails
/// fails the copy (`dst` named), whatever `work` did: its error is reported to this open file
/// once, and the batch's flush, through another, might not see it.
fn write_out_meanwhile<T>(
    out: &fs::File,
    dst: &Path,
    work: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| -> io::Result<()> {
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                let started = std::time::Instant::now();
                out.sync_data()?;
                if started.elapsed() < WRITE_OUT_PAUSE / 4 {
                    std::thread::park_timeout(WRITE_OUT_PAUSE);
                }
            }
            out.sync_data()
        });
        // Set when `work` ends, however it ends: a panic in it must not leave the scope
        // waiting forever on a thread that flushes until told to stop.
        struct Stop<'a>(&'a std::sync::atomic::AtomicBool, &'a std::thread::Thread);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::Release);
                self.1.unpark();
            }
        }
        let result = {
            let _stop = Stop(&done, writer.thread());
            work()
        };
        let flushed = writer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the write-out thread panicked")));
        match (result, flushed) {
            (Err(err), _) => Err(err),
            (Ok(_), Err(err)) => Err(CoreError::io("flush", dst, err)),
            (Ok(value), Ok(())) => Ok(value),
        }
    })
}

/// Copy `src` to `dst` atomically, hashing the bytes as they pass; returns the source's
/// digest and identity and the copy's identity. One file's [`copy_files`].
pub fn copy_file(
    src: &Path,
    dst: &Path,
    algorithm: Algorithm,
    fsync: bool,
) -> Result<(Hashed, FileIdentity)> {
    let pairs = [(src.to_path_buf(), dst.to_path_buf())];
    let mut done = copy_batch(&pairs, algorithm, fsync, None);
    let (_, fresh) = done.remove(0)?;
    let (hashed, copy) = fresh.expect("a copy without a cache is always made");
    let copy = match copy {
        Some(copy) => copy,
        None => fs::metadata(dst)
            .map(|m| FileIdentity::of(&m))
            .map_err(|e| CoreError::io("stat", dst, e))?,
    };
    Ok((hashed, copy))
}

/// Copy many files in parallel, durably with `fsync` at the cost of one flush for the batch
/// (see the module's documentation, "Durable puts" in docs/catalogs.md); with a cache, a
/// source whose identity is cached and whose destination holds (by its cached identity) the
/// same digest is not read or written again. Each pair fails on its own; none is under its
/// name before the call is over (with `fsync`: before its bytes and its name are durable).
pub fn copy_files(
    pairs: &[(PathBuf, PathBuf)],
    algorithm: Algorithm,
    fsync: bool,
    cache: Option<&mut HashCache>,
) -> Vec<Result<Copied>> {
    copy_batch(pairs, algorithm, fsync, cache)
        .into_iter()
        .map(|r| r.map(|(copied, _)| copied))
        .collect()
}

/// What one pair of a batch came to: whether it was copied, and for a copy made the source's
/// hash and (when it was needed for the cache) the copy's identity.
type PairOutcome = (Copied, Option<(Hashed, Option<FileIdentity>)>);

/// The batch copy, in five steps: (1) each target folder made once; (2) every copy written to
/// its temp file, in parallel, with no flush; (3) with `fsync`, one flush of every temp file
/// (`flush::make_durable`: a syncfs per file system, or an fdatasync per file where a syncfs
/// may not flush), together with the settled sources the hash cache is about to vouch for;
/// (4) the renames; (5) with `fsync`, one fsync per folder renamed into. A power cut before
/// (5) ends can leave temp files (which listings skip and cleaners remove) and, after (4),
/// some whole copies under their names, never a partial one.
fn copy_batch(
    pairs: &[(PathBuf, PathBuf)],
    algorithm: Algorithm,
    fsync: bool,
    mut cache: Option<&mut HashCache>,
) -> Vec<Result<PairOutcome>> {
    // (1) Each target folder once, not once per file.
    let folders: BTreeSet<&Path> = pairs.iter().map(|(_, dst)| folder_of(dst)).collect();
    let folder_state: BTreeMap<&Path, std::result::Result<u64, i32>> = folders
        .into_iter()
        .map(|folder| {
            let made = create_dir_all_durable(folder, fsync).and_then(|()| device_of(folder));
            (folder, made.map_err(|e| e.errno().unwrap_or(5)))
        })
        .collect();

    // (2) The copies, unflushed.
    enum Step {
        Unchanged(String),
        Written(Written),
    }
    let steps: Vec<Result<Step>> = {
        let cache = cache.as_deref();
        pairs
            .par_iter()
            .map(|(src, dst)| {
                if let Some(digest) = cache.and_then(|c| unchanged(c, src, dst, algorithm)) {
                    return Ok(Step::Unchanged(digest));
                }
                let folder = folder_of(dst);
                if let Err(errno) = folder_state[folder] {
                    return Err(CoreError::io(
                        "create folder",
                        folder,
                        io::Error::from_raw_os_error(errno),
                    ));
                }
                write_temp(src, dst, algorithm, fsync).map(Step::Written)
            })
            .collect()
    };

    // (3) One flush for the batch: the temp files (with fsync), and the settled sources whose
    // digests the cache will record (an entry vouches only for bytes on disk: see cache.rs).
    let mut steps: Vec<Result<Step>> = steps;
    let mut to_flush: Vec<(usize, Pending<'_>, bool)> = Vec::new();
    for (index, step) in steps.iter().enumerate() {
        let Ok(Step::Written(written)) = step else {
            continue;
        };
        if fsync {
            let dev = *folder_state[folder_of(&pairs[index].1)]
                .as_ref()
                .expect("a copy was written in this folder");
            to_flush.push((
                index,
                Pending {
                    path: &written.temp,
                    dev,
                },
                false,
            ));
        }
        let hashed = &written.hashed;
        let vouched = cache.as_deref().is_some_and(|c| {
            c.would_record(
                algorithm,
                &hashed.identity,
                hashed.started_ns,
                &hashed.digest,
            )
        });
        if vouched {
            let source = Pending {
                path: &pairs[index].0,
                dev: hashed.identity.dev,
            };
            to_flush.push((index, source, true));
        }
    }
    let flushed = make_durable(&to_flush.iter().map(|(_, p, _)| *p).collect::<Vec<_>>());
    let mut source_on_disk = vec![false; pairs.len()];
    let mut temp_failed: BTreeMap<usize, CoreError> = BTreeMap::new();
    for ((index, _, is_source), result) in to_flush.iter().zip(flushed) {
        match (is_source, result) {
            (true, ok) => source_on_disk[*index] = ok.is_ok(),
            (false, Ok(())) => {}
            (false, Err(err)) => {
                temp_failed.insert(*index, err);
            }
        }
    }
    for (index, err) in temp_failed {
        if let Ok(Step::Written(written)) = &steps[index] {
            let _ = fs::remove_file(&written.temp);
        }
        steps[index] = Err(err);
    }

    // (4) The renames.
    let renamed: Vec<Result<Step>> = steps
        .into_par_iter()
        .zip(pairs.par_iter())
        .map(|(step, (_, dst))| match step {
            Ok(Step::Written(written)) => match fs::rename(&written.temp, dst) {
                Ok(()) => Ok(Step::Written(written)),
                Err(e) => {
                    let _ = fs::remove_file(&written.temp);
                    Err(CoreError::io("replace", dst, e))
                }
            },
            other => other,
        })
        .collect();

    // (5) Each folder renamed into, fsynced once.
    let mut folder_failed: BTreeMap<&Path, i32> = BTreeMap::new();
    if fsync {
        let touched: BTreeSet<&Path> = renamed
            .iter()
            .zip(pairs)
            .filter(|(r, _)| matches!(r, Ok(Step::Written(_))))
            .map(|(_, (_, dst))| folder_of(dst))
            .collect();
        let touched: Vec<&Path> = touched.into_iter().collect();
        folder_failed = touched
            .par_iter()
            .filter_map(|f| fsync_folder(f).err().map(|e| (*f, e.errno().unwrap_or(5))))
            .collect();
    }

    // The cache: sources flushed above, and with fsync their copies (which have the source's
    // mtime, so they are as old, and as trustworthy); without fsync a copy may not be on disk,
    // so it is not recorded (the next put copies it again rather than trust it).
    let mut outcomes: Vec<Result<PairOutcome>> = Vec::with_capacity(pairs.len());
    for (index, (step, (_, dst))) in renamed.into_iter().zip(pairs).enumerate() {
        outcomes.push(match step {
            Err(err) => Err(err),
            Ok(Step::Unchanged(digest)) => Ok((
                Copied {
                    digest,
                    copied: false,
                },
                None,
            )),
            Ok(Step::Written(written)) => {
                let folder = folder_of(dst);
                if let Some(errno) = folder_failed.get(folder) {
                    Err(CoreError::io(
                        "fsync folder",
                        folder,
                        io::Error::from_raw_os_error(*errno),
                    ))
                } else {
                    let hashed = written.hashed;
                    let mut copy = None;
                    if let Some(cache) = cache.as_deref_mut() {
                        if source_on_disk[index] && cache.record(algorithm, &hashed) && fsync {
                            // The rename moved the copy's ctime: its identity is read now.
                            if let Ok(meta) = fs::metadata(dst) {
                                let identity = FileIdentity::of(&meta);
                                cache.record_identity(
                                    algorithm,
                                    &identity,
                                    hashed.started_ns,
                                    &hashed.digest,
                                );
                                copy = Some(identity);
                            }
                        }
                    }
                    let copied = Copied {
                        digest: hashed.digest.clone(),
                        copied: true,
                    };
                    Ok((copied, Some((hashed, copy))))
                }
            }
        });
    }
    if let Some(cache) = cache {
        // Advisory: a cache that cannot be written costs reads next time, nothing worse.
        let _ = cache.flush();
    }
    outcomes
}

fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn unchanged(cache: &HashCache, src: &Path, dst: &Path, algorithm: Algorithm) -> Option<String> {
    let src_meta = fs::metadata(src).ok().filter(|m| m.is_file())?;
    let digest = cache.lookup(algorithm, &FileIdentity::of(&src_meta))?;
    let dst_meta = fs::metadata(dst).ok().filter(|m| m.is_file())?;
    let copy_digest = cache.lookup(algorithm, &FileIdentity::of(&dst_meta))?;
    (digest == copy_digest).then(|| digest.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hasher::hash_file;
    use std::time::{Duration, SystemTime};

    /// A hash cache's path, one source file `a` (settled when `aged`), and its copy's pair.
    fn one_source(dir: &Path, aged: bool) -> (PathBuf, PathBuf, Vec<(PathBuf, PathBuf)>) {
        let src = dir.join("a");
        fs::write(&src, b"content").unwrap();
        if aged {
            age(&src);
        }
        let pairs = vec![(src.clone(), dir.join("out/a"))];
        (dir.join(".cache"), src, pairs)
    }

    fn age(path: &Path) {
        let old = SystemTime::now() - Duration::from_secs(60);
        fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }

    /// Copy `len` bytes with `algorithm`: the copy holds them, the digest is the source's, the
    /// copy keeps the source's mtime, and no temp file is left beside it.
    fn copies_whole(len: usize, algorithm: Algorithm) {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("data.bin");
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        fs::write(&src, &data).unwrap();
        let dst = dir.path().join("catalog/run/data.bin");
        let (hashed, copy) = copy_file(&src, &dst, algorithm, true).unwrap();
        assert_eq!(fs::read(&dst).unwrap(), data);
        assert_eq!(hashed.digest, hash_file(&src, algorithm).unwrap());
        assert_eq!(copy.mtime_ns, hashed.identity.mtime_ns);
        assert_eq!(fs::read_dir(dst.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn copies_hash_and_keep_the_mtime() {
        copies_whole(3_000_000, Algorithm::Sha256);
    }

    #[test]
    fn second_copy_of_unchanged_files_reads_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (cache_path, src, pairs) = one_source(dir.path(), true);
        let mut cache = HashCache::open(&cache_path).unwrap();
        let first = copy_files(&pairs, Algorithm::Blake3, true, Some(&mut cache));
        assert!(first[0].as_ref().unwrap().copied);
        let mut cache = HashCache::open(&cache_path).unwrap();
        let second = copy_files(&pairs, Algorithm::Blake3, true, Some(&mut cache));
        assert_eq!(
            second[0].as_ref().unwrap(),
            &Copied {
                digest: first[0].as_ref().unwrap().digest.clone(),
                copied: false
            }
        );
        // A changed source is copied again; so is a damaged copy.
        fs::write(&src, b"CONTENT").unwrap();
        age(&src);
        let third = copy_files(&pairs, Algorithm::Blake3, true, Some(&mut cache));
        assert!(third[0].as_ref().unwrap().copied);
        assert_eq!(fs::read(dir.path().join("out/a")).unwrap(), b"CONTENT");
        fs::write(dir.path().join("out/a"), b"damaged").unwrap();
        let fourth = copy_files(&pairs, Algorithm::Blake3, true, Some(&mut cache));
        assert!(fourth[0].as_ref().unwrap().copied);
        assert_eq!(fs::read(dir.path().join("out/a")).unwrap(), b"CONTENT");
    }

    #[test]
    fn large_files_are_copied_by_the_kernel_and_hashed_in_parallel() {
        copies_whole(KERNEL_COPY_MIN_BYTES as usize + 12_345, Algorithm::Blake3);
    }

    #[test]
    fn large_files_hashed_as_they_pass_are_written_out_meanwhile() {
        copies_whole(EARLY_WRITE_OUT_MIN_BYTES as usize + 777, Algorithm::Sha256);
    }

    #[test]
    fn a_write_out_meanwhile_hands_back_what_the_work_did() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        let out = fs::File::create(&path).unwrap();
        let wrote = write_out_meanwhile(&out, &path, || {
            let mut writing = &out;
            for _ in 0..64 {
                io::Write::write_all(&mut writing, &[7u8; 1 << 16]).unwrap();
            }
            Ok(42)
        });
        assert_eq!(wrote.unwrap(), 42);
        assert_eq!(fs::metadata(&path).unwrap().len(), 64 << 16);
        let failed: Result<()> = write_out_meanwhile(&out, &path, || {
            Err(CoreError::InvalidArgument("the copy failed".into()))
        });
        assert!(failed.unwrap_err().to_string().contains("the copy failed"));
        // A panic in the work stops the write-out thread too: the panic comes back, no hang.
        let panicked = std::panic::catch_unwind(|| {
            write_out_meanwhile(&out, &path, || -> Result<()> { panic!("in the copy") })
        });
        assert!(panicked.is_err());
    }

    #[test]
    fn copies_not_fsynced_are_not_vouched_for() {
        // Without fsync a copy's bytes may not be on disk yet: the cache does not record it, so
        // the next put copies again instead of trusting a copy a power cut may have emptied.
        let dir = tempfile::tempdir().unwrap();
        let (cache_path, _, pairs) = one_source(dir.path(), true);
        for _ in 0..2 {
            let mut cache = HashCache::open(&cache_path).unwrap();
            let copied = copy_files(&pairs, Algorithm::Blake3, false, Some(&mut cache));
            assert!(copied[0].as_ref().unwrap().copied);
        }
    }

    #[test]
    fn fresh_sources_are_copied_but_not_recorded() {
        // A file a step has just written is likely still in the page cache: recording it would
        // cost a disk flush per file, so it is read again until it has settled.
        let dir = tempfile::tempdir().unwrap();
        let (cache_path, _, pairs) = one_source(dir.path(), false);
        let mut cache = HashCache::open(&cache_path).unwrap();
        copy_files(&pairs, Algorithm::Blake3, true, Some(&mut cache));
        assert!(HashCache::open(&cache_path).unwrap().is_empty());
    }

    #[test]
    fn a_durable_batch_leaves_every_copy_named_and_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let pairs: Vec<(PathBuf, PathBuf)> = (0..30)
            .map(|i| {
                let src = dir.path().join(format!("src-{i}"));
                fs::write(&src, format!("bytes {i}")).unwrap();
                (src, dir.path().join(format!("out/{}/f{i}", i % 3)))
            })
            .collect();
        for fsync in [true, false] {
            let copied = copy_files(&pairs, Algorithm::Blake3, fsync, None);
            for ((src, dst), result) in pairs.iter().zip(&copied) {
                assert_eq!(fs::read(dst).unwrap(), fs::read(src).unwrap());
                assert_eq!(
                    result.as_ref().unwrap().digest,
                    hash_file(src, Algorithm::Blake3).unwrap()
                );
            }
            for folder in 0..3 {
                let names = fs::read_dir(dir.path().join(format!("out/{folder}"))).unwrap();
                assert_eq!(names.count(), 10, "no temp file is left beside the copies");
            }
        }
        // A pair that fails fails alone.
        let mut with_missing = pairs.clone();
        with_missing.push((dir.path().join("missing"), dir.path().join("out/0/m")));
        let copied = copy_files(&with_missing, Algorithm::Blake3, true, None);
        assert!(copied[..30].iter().all(|r| r.is_ok()));
        assert_eq!(copied[30].as_ref().unwrap_err().errno(), Some(2));
        assert!(!dir.path().join("out/0/m").exists());
    }

    #[test]
    fn temp_names_fit_wherever_the_name_fits() {
        use crate::chunk::{is_temp_name, temp_writer_pid};
        let short = bounded_temp_name("data.csv");
        assert!(short.starts_with(".data.csv.tmp-"), "{short}");
        let pid = std::process::id() as i32;
        for name in [
            "n".repeat(NAME_MAX_BYTES),
            "é".repeat(127) + "x",
            "m".repeat(210),
        ] {
            let temp = bounded_temp_name(&name);
            assert!(temp.len() <= NAME_MAX_BYTES, "{} bytes: {temp}", temp.len());
            assert!(is_temp_name(&temp), "{temp}");
            assert_eq!(temp_writer_pid(&temp), Some(pid), "{temp}");
            assert_ne!(temp, bounded_temp_name(&name), "a fresh name each time");
        }
        // Two long names of one folder never share a temp name's stem.
        let stem = |name: &str| {
            bounded_temp_name(name)
                .split(".tmp-")
                .next()
                .map(String::from)
        };
        assert_ne!(
            stem(&("a".repeat(250) + "1")),
            stem(&("a".repeat(250) + "2"))
        );
    }

    #[test]
    fn a_name_as_long_as_the_file_system_allows_is_copied() {
        let dir = tempfile::tempdir().unwrap();
        let name = "n".repeat(NAME_MAX_BYTES);
        let src = dir.path().join(&name);
        fs::write(&src, b"long").unwrap();
        let dst = dir.path().join("out").join(&name);
        copy_file(&src, &dst, Algorithm::Blake3, true).unwrap();
        assert_eq!(fs::read(&dst).unwrap(), b"long");
        assert_eq!(fs::read_dir(dir.path().join("out")).unwrap().count(), 1);
    }

    #[test]
    fn failed_copy_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let err = copy_file(
            &dir.path().join("missing"),
            &dir.path().join("out/x"),
            Algorithm::Blake3,
            false,
        )
        .unwrap_err();
        assert_eq!(err.errno(), Some(2));
        let err =
            copy_file(dir.path(), &dir.path().join("y"), Algorithm::Blake3, false).unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");
        assert!(!dir.path().join("y").exists());
    }
}
