//! Every row's stamp of a run index at one state of the file, saved beside it so that another
//! process's first search need not read them all from SQLite (100,000 rows: 60-90 ms of
//! queries and 50 ms more to make them into the core's map, against about 30 ms to read this
//! file back).
//!
//! The stamps are saved with the state they are of: the index file's epoch (new at every
//! build) and generation (counted up by every write transaction). They are used only at that
//! very state, read in the searching transaction itself; at any other, the rows are read from
//! SQLite (and saved again). The file is written and read as the listings are
//! (`saved_file`: a temporary name and a rename, no link followed, checked lengths); one that
//! cannot be read, or of another state, is ignored. Like the index, a file altered by someone
//! who may write the index's folder can make a search trust a stale row.
//!
//! Format (little-endian): the magic `runlog-stamps\n`, a format number (u32), the epoch and the
//! generation, the count of rows, then each row's run id, fingerprint and time stamped (f64
//! bits). Byte strings are a u64 length and the bytes.

use std::collections::HashMap;
use std::path::Path;

use super::saved_file::{put_bytes, put_head, put_u64, read_file, write_whole, Reader};
use crate::error::Result;

const MAGIC: &[u8] = b"runlog-stamps\n";
const FORMAT: u32 = 1;

/// A row's stamp: its fingerprint and the time it was stamped (seconds since the epoch).
pub type Rows = HashMap<String, (String, f64)>;

/// The head of a file of the stamps of state `state`: all that `holds_state` reads.
fn head(state: &(String, String)) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    put_head(&mut out, MAGIC, FORMAT);
    put_bytes(&mut out, state.0.as_bytes());
    put_bytes(&mut out, state.1.as_bytes());
    out
}

/// The bytes of the stamps `rows` of state `state`.
pub fn encode(state: &(String, String), rows: &Rows) -> Vec<u8> {
    let mut out = head(state);
    out.reserve(8 + rows.len() * 96);
    put_u64(&mut out, rows.len() as u64);
    for (run_id, (fingerprint, at)) in rows {
        put_bytes(&mut out, run_id.as_bytes());
        put_bytes(&mut out, fingerprint.as_bytes());
        put_u64(&mut out, at.to_bits());
    }
    out
}

/// The rows saved in `bytes` when they are those of state `state`.
pub fn decode(bytes: &[u8], state: &(String, String)) -> Option<Rows> {
    let mut reader = Reader::after_head(bytes, MAGIC, FORMAT)?;
    if reader.text()? != state.0 || reader.text()? != state.1 {
        return None; // another state of the file: its rows may differ
    }
    // A row is at least two lengths and a time.
    let count = reader.count(24)?;
    let mut rows = Rows::with_capacity(count);
    for _ in 0..count {
        let run_id = reader.text()?;
        let fingerprint = reader.text()?;
        let at = f64::from_bits(reader.u64()?);
        if rows
            .insert(run_id.to_owned(), (fingerprint.to_owned(), at))
            .is_some()
        {
            return None; // a run twice: not a file this module wrote
        }
    }
    reader.is_done().then_some(rows)
}

/// The rows saved in the file at `path`, when they are those of state `state`.
pub fn load(path: &Path, state: &(String, String)) -> Option<Rows> {
    decode(&read_file(path)?, state)
}

/// The first `length` bytes of the file at `path` (fewer if it is shorter), opened without
/// following a link.
fn read_head(path: &Path, length: usize) -> Option<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .ok()?;
    let mut found = Vec::with_capacity(length);
    file.take(length as u64).read_to_end(&mut found).ok()?;
    Some(found)
}

/// Whether the file at `path` holds the stamps of state `state` (its head alone is compared).
pub fn holds_state(path: &Path, state: &(String, String)) -> bool {
    let head = head(state);
    read_head(path, head.len()).is_some_and(|found| found == head)
}

/// How many rows the file at `path` says it holds, when they are those of state `state` (its
/// head and count alone are read: `load` checks the rest when the rows are needed).
pub fn count_at(path: &Path, state: &(String, String)) -> Option<usize> {
    let head = head(state);
    let found = read_head(path, head.len() + 8)?;
    if found.len() != head.len() + 8 || found[..head.len()] != head[..] {
        return None;
    }
    let mut count = [0u8; 8];
    count.copy_from_slice(&found[head.len()..]);
    usize::try_from(u64::from_le_bytes(count)).ok()
}

/// Save the stamps `rows` of state `state` to `path`, unless the file holds that state already;
/// whether they were saved.
pub fn save(path: &Path, state: &(String, String), rows: &Rows) -> Result<bool> {
    if holds_state(path, state) {
        return Ok(false);
    }
    write_whole(path, &encode(state, rows))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ((String, String), Rows) {
        let state = ("epoch".to_string(), "7".to_string());
        let mut rows = Rows::new();
        rows.insert("run-a".into(), ("chunked-fs 1:2:abc".into(), 1.5e9 + 0.125));
        rows.insert("run-é".into(), ("file-system 3-4-5-6".into(), 1.7e9));
        (state, rows)
    }

    #[test]
    fn stamps_are_read_back_at_their_state_only() {
        let (state, rows) = sample();
        let bytes = encode(&state, &rows);
        assert_eq!(decode(&bytes, &state), Some(rows));
        assert_eq!(decode(&bytes, &("epoch".into(), "8".into())), None);
        assert_eq!(decode(&bytes, &("other".into(), "7".into())), None);
    }

    #[test]
    fn a_damaged_file_is_not_read() {
        let (state, rows) = sample();
        let bytes = encode(&state, &rows);
        for end in 0..bytes.len() {
            assert!(decode(&bytes[..end], &state).is_none(), "cut at {end}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer, &state).is_none());
        for at in 0..bytes.len() {
            let mut changed = bytes.clone();
            changed[at] ^= 0xff;
            let _ = decode(&changed, &state);
        }
    }

    #[test]
    fn a_file_of_the_same_state_is_not_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.stamps");
        let (state, rows) = sample();
        assert!(save(&path, &state, &rows).unwrap());
        assert_eq!(count_at(&path, &state), Some(2));
        assert!(!save(&path, &state, &rows).unwrap());
        assert_eq!(load(&path, &state), Some(rows.clone()));
        let next = ("epoch".to_string(), "8".to_string());
        assert!(save(&path, &next, &rows).unwrap());
        assert_eq!(load(&path, &state), None);
        assert_eq!(count_at(&path, &state), None);
    }
}
