//! What the files saved beside a run index for the next process have in common
//! (`saved_listings`, `saved_stamps`): how they are read and written whole, and their
//! little-endian encoding: a magic line and a format number first, byte strings as a u64 length
//! and the bytes, every length checked against what is left when read.

use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{CoreError, Result};

/// Past this a file is not read (100,000 runs make about 10-20 MB).
pub const MAX_BYTES: u64 = 1 << 30;

/// The bytes of the file at `path`: opened without following a link, a regular file of at most
/// [`MAX_BYTES`]; None otherwise.
pub(super) fn read_file(path: &Path) -> Option<Vec<u8>> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > MAX_BYTES {
        return None;
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_BYTES).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// Write `bytes` to `path` whole: a temporary name in the same folder, then a rename. Not
/// synced: a cache that a power cut may leave short is ignored when read.
pub(super) fn write_whole(path: &Path, bytes: &[u8]) -> Result<()> {
    let folder = path.parent().unwrap_or(Path::new("."));
    let mut name = OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".{}.{}.tmp", std::process::id(), unique()));
    let temp = folder.join(name);
    let written = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&temp)?;
        file.write_all(bytes)?;
        fs::rename(&temp, path)
    })();
    if written.is_ok() {
        sweep_temps(folder, path);
    }
    written.map_err(|e| {
        let _ = fs::remove_file(&temp);
        CoreError::io("save", path, e)
    })
}

/// Remove the temporary files of saves killed half way (an hour old): hidden names of the form
/// `.<file name>.<pid>.<n>.tmp` in the folder.
fn sweep_temps(folder: &Path, path: &Path) {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return;
    };
    let head = format!(".{name}.");
    let Ok(entries) = fs::read_dir(folder) else {
        return;
    };
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for entry in entries.flatten() {
        let entry_name = entry.file_name();
        let Some(text) = entry_name.to_str() else {
            continue;
        };
        if !text.starts_with(&head) || !text.ends_with(".tmp") {
            continue;
        }
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|modified| modified < old);
        if stale {
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn unique() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    nanos ^ (NEXT.fetch_add(1, Ordering::Relaxed) << 32)
}

pub(super) fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

pub(super) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u64(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A file's head: its magic line and format number.
pub(super) fn put_head(out: &mut Vec<u8>, magic: &[u8], format: u32) {
    out.extend_from_slice(magic);
    out.extend_from_slice(&format.to_le_bytes());
}

/// A reader of a saved file that refuses anything past its end.
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader of what follows the head `magic`, `format`; None when `bytes` has another.
    pub(super) fn after_head(bytes: &'a [u8], magic: &[u8], format: u32) -> Option<Self> {
        let mut reader = Reader { bytes };
        if reader.take(magic.len())? != magic {
            return None;
        }
        if u32::from_le_bytes(reader.take(4)?.try_into().ok()?) != format {
            return None;
        }
        Some(reader)
    }

    /// A reader of `bytes` from their start (a part of a file read with `bytes`).
    pub(super) fn of(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.bytes.len() {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    pub(super) fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("eight bytes")))
    }

    /// A byte that is 0 or 1.
    pub(super) fn flag(&mut self) -> Option<bool> {
        match self.take(1)?[0] {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }

    pub(super) fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.u64()?).ok()?;
        self.take(len)
    }

    pub(super) fn text(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }

    /// A count of items of at least `each` bytes: never more than what is left could hold.
    pub(super) fn count(&mut self, each: usize) -> Option<usize> {
        let count = usize::try_from(self.u64()?).ok()?;
        (count <= self.bytes.len() / each).then_some(count)
    }

    /// Whether everything was read (a file longer than its contents is not one this wrote).
    pub(super) fn is_done(&self) -> bool {
        self.bytes.is_empty()
    }
}
