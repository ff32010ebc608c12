//! Copies into and out of a catalog: atomic (temp file, rename) and hashed in the same pass,
//! so a catalog put reads each file once.
//!
//! The copy keeps the source's modification time, so its identity can be cached like the
//! source's: a later put of an unchanged file into the same place is two stat calls, with no
//! read and no write.
//!
//! Temp files are named by [`temp_beside`], whose names fit wherever the final name fits: a
//! name as long as a file system allows still has a temp file beside it.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::cache::{make_durable, HashCache};
use crate::chunk::temp_file_name;
use crate::error::{CoreError, Result};
use crate::hasher::{
    changed_while_read, copy_hashing, hash_with_identity, now_ns, open_regular, Algorithm,
    FileIdentity, Hashed,
};
use crate::writer::{create_dir_all_durable, fsync_folder};

/// From this size on a BLAKE3 copy is made by the kernel and hashed on every core afterwards
/// (see `copy_file`); below it one pass through a buffer is as fast and reads the file once.
const KERNEL_COPY_MIN_BYTES: u64 = 32 << 20;
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

/// Copy `src` to `dst` atomically, hashing the bytes as they pass; returns the source's
/// digest and identity and the copy's identity.
pub fn copy_file(
    src: &Path,
    dst: &Path,
    algorithm: Algorithm,
    fsync: bool,
) -> Result<(Hashed, FileIdentity)> {
    let started_ns = now_ns();
    let (mut source, meta) = open_regular(src)?;
    let before = FileIdentity::of(&meta);
    let folder = match dst.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let temp = temp_beside(dst)?;
    create_dir_all_durable(folder, fsync)?;
    let result = (|| -> Result<String> {
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&temp)
            .map_err(|e| CoreError::io("create", dst, e))?;
        let digest = if algorithm == Algorithm::Blake3 && before.size >= KERNEL_COPY_MIN_BYTES {
            // A large file: the kernel copies it (copy_file_range, no trip through user
            // space), then the copy is hashed from the page cache by BLAKE3 on every core.
            // One thread reading, hashing and writing in turn is I/O-bound and single-core:
            // 768 MiB took 1.8 s that way here against 0.7 s this way. The digest is of the
            // copy's bytes, what the catalog keeps; the source's identity is checked below.
            io::copy(&mut source, &mut out).map_err(|e| CoreError::io("copy", dst, e))?;
            hash_with_identity(&temp, algorithm)?.digest
        } else {
            copy_hashing(&mut source, &mut out, algorithm, before.size, src, dst)?
        };
        let modified = meta.modified().map_err(|e| CoreError::io("stat", src, e))?;
        out.set_modified(modified)
            .map_err(|e| CoreError::io("set the time of", dst, e))?;
        if fsync {
            out.sync_data()
                .map_err(|e| CoreError::io("fsync", dst, e))?;
        }
        let after = source
            .metadata()
            .map(|m| FileIdentity::of(&m))
            .map_err(|e| CoreError::io("stat", src, e))?;
        if after != before {
            return Err(changed_while_read(src));
        }
        fs::rename(&temp, dst).map_err(|e| CoreError::io("replace", dst, e))?;
        Ok(digest)
    })();
    let digest = match result {
        Ok(digest) => digest,
        Err(err) => {
            let _ = fs::remove_file(&temp);
            return Err(err);
        }
    };
    if fsync {
        fsync_folder(folder)?;
    }
    let copy = fs::metadata(dst)
        .map(|m| FileIdentity::of(&m))
        .map_err(|e| CoreError::io("stat", dst, e))?;
    Ok((
        Hashed {
            digest,
            identity: before,
            started_ns,
        },
        copy,
    ))
}

/// Copy many files in parallel; with a cache, a source whose identity is cached and whose
/// destination holds (by its cached identity) the same digest is not read or written again.
pub fn copy_files(
    pairs: &[(PathBuf, PathBuf)],
    algorithm: Algorithm,
    fsync: bool,
    cache: Option<&mut HashCache>,
) -> Vec<Result<Copied>> {
    type Outcome = (Copied, Option<(Hashed, FileIdentity)>);
    let results: Vec<Result<Outcome>> = {
        let cache = cache.as_deref();
        pairs
            .par_iter()
            .map(|(src, dst)| {
                if let Some(digest) = cache.and_then(|c| unchanged(c, src, dst, algorithm)) {
                    let copied = Copied {
                        digest,
                        copied: false,
                    };
                    return Ok((copied, None));
                }
                let (hashed, copy) = copy_file(src, dst, algorithm, fsync)?;
                let copied = Copied {
                    digest: hashed.digest.clone(),
                    copied: true,
                };
                Ok((copied, Some((hashed, copy))))
            })
            .collect()
    };
    if let Some(cache) = cache {
        // Entries vouch only for bytes on disk (see the cache): a source is synced before its
        // entry is recorded; a copy is on disk only when it was fsynced, so without fsync it
        // is not recorded (the next put copies it again rather than trust it).
        let fresh: Vec<(&(PathBuf, PathBuf), &Hashed, &FileIdentity)> = pairs
            .iter()
            .zip(&results)
            .filter_map(|(pair, r)| {
                let (hashed, copy) = r.as_ref().ok()?.1.as_ref()?;
                Some((pair, hashed, copy))
            })
            .filter(|(_, h, _)| cache.would_record(algorithm, &h.identity, h.started_ns, &h.digest))
            .collect();
        let durable: Vec<bool> = fresh
            .par_iter()
            .map(|((src, _), _, _)| make_durable(src))
            .collect();
        for ((_, hashed, copy), synced) in fresh.iter().zip(durable) {
            if synced && cache.record(algorithm, hashed) && fsync {
                // The copy has the source's mtime, so it is as old, and as trustworthy.
                cache.record_identity(algorithm, copy, hashed.started_ns, &hashed.digest);
            }
        }
        let _ = cache.flush();
    }
    results.into_iter().map(|r| r.map(|(c, _)| c)).collect()
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
