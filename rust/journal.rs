//! The journal of a chunked-fs run (docs/format.md, "The journal"): the record format, the
//! journal files' names, and reading them back.
//!
//! Every writer process appends the changes it makes to a run (a step, a branch, a parameter
//! update, a status) to its own file in the run's `.journals/` folder, as length-framed,
//! checksummed records. Appending to a file the writer already has is the cheapest durable
//! write a disk offers (one `fdatasync`), where replacing a file costs a new inode, a rename
//! and a folder flush. The records are folded into runnable's documents when a branch or the run
//! ends (`fold.rs`).
//!
//! A frame:
//!
//! ```text
//! magic   4 bytes  FF 52 4A 01 ("\xffRJ" and the format version 1)
//! length  u32 LE   of the payload
//! check   u64 LE   the first 8 bytes of BLAKE3(length || payload)
//! payload          stamp (i64 LE), kind (u8), target length (u32 LE), target (UTF-8), body
//! ```
//!
//! The body is the JSON the record carries (a step, a branch, a patch of the run's fields). A
//! frame cut short by a crash, or one whose check fails with nothing valid after it, is a torn
//! tail: it was never acknowledged (an append returns only after its frame is whole, and synced
//! with `fsync`), so readers stop before it. A bad frame with valid frames after it is damage in
//! the middle of the file: a [`CoreError::Corrupt`] naming the file and the offset, which a
//! salvage read skips, resuming at the next valid frame. A frame whose stamp is further ahead
//! of the clock than [`MAX_STAMP_AHEAD_NS`] is damage too: no writer hands such a stamp out
//! (`run::appending`), and one would hide every later write to what it is about.
//!
//! Journals are read as every file the store did not create is (`untrusted`): a link, a FIFO
//! or a device among them, or one past the size cap, is a corrupt journal naming it.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{CoreError, Result};
use crate::nesting::{self, Part};
use crate::untrusted::{read_bounded, Folder, How};

/// The folder of a run that holds the journals (hidden from runnable, which globs
/// `BranchLog-*.json`).
pub const JOURNAL_DIR: &str = ".journals";
/// The suffix of every journal file: `<pid>-<start ns>-<random>.journal`.
pub const JOURNAL_SUFFIX: &str = ".journal";

const FRAME_MAGIC: [u8; 4] = [0xFF, b'R', b'J', 0x01];
/// Magic, length and check.
pub const FRAME_HEADER: usize = 16;
/// Stamp, kind and target length.
const PAYLOAD_HEADER: usize = 13;
/// The largest payload a reader accepts: a length above it is damage, not a record. A record
/// holds one step's, one branch's or the run's own fields as JSON, far below 256 MiB, and a
/// writer refuses a larger one, so only damage reads as a length past it.
pub const MAX_PAYLOAD: usize = 256 << 20;

/// How far ahead of the wall clock a stamp may be: a day. Stamps are the clock in nanoseconds
/// when they are handed out, so a later one is only there when the clock was set back since
/// (by more than a day, a clock that was wrong) or when someone else wrote it. Readers take a
/// frame or a document with a stamp past this for damage, and a writer never hands one out:
/// a stamp that far ahead would make every later write to the same step, branch or run look
/// older than what is stored, and vanish.
pub const MAX_STAMP_AHEAD_NS: i64 = 86_400 * 1_000_000_000;

/// The latest stamp a reader accepts now.
pub fn latest_plausible_stamp() -> i64 {
    crate::chunk::now_ns().saturating_add(MAX_STAMP_AHEAD_NS)
}

/// What a record changes. The numbers are the format's: never reuse one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// Replace the run-level fields the body names (`status`, `job`, `tag`, ...).
    RunSet = 1,
    /// Merge each object the body names into the run's (`parameters`, `run_config`), like
    /// `dict.update`.
    RunMerge = 2,
    /// A branch's fields, whole (its steps are records of their own).
    BranchPut = 3,
    /// Merge each object the body names into the branch's (`parameters`).
    BranchMerge = 4,
    /// A step's fields, whole (its branches are records of their own).
    StepPut = 5,
}

impl RecordKind {
    fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            1 => RecordKind::RunSet,
            2 => RecordKind::RunMerge,
            3 => RecordKind::BranchPut,
            4 => RecordKind::BranchMerge,
            5 => RecordKind::StepPut,
            _ => return None,
        })
    }

    /// The kind Python names: `run-set`, `run-merge`, `branch-put`, `branch-merge`, `step-put`.
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "run-set" => RecordKind::RunSet,
            "run-merge" => RecordKind::RunMerge,
            "branch-put" => RecordKind::BranchPut,
            "branch-merge" => RecordKind::BranchMerge,
            "step-put" => RecordKind::StepPut,
            other => {
                return Err(CoreError::InvalidArgument(format!(
                    "unknown record kind {other:?}: expected run-set, run-merge, branch-put, \
                     branch-merge or step-put"
                )))
            }
        })
    }

    /// Whether the record's target is the run itself (its target is empty).
    pub fn is_run(self) -> bool {
        matches!(self, RecordKind::RunSet | RecordKind::RunMerge)
    }

    /// Whether the record replaces or merges (merges keep what the body does not name).
    pub fn merges(self) -> bool {
        matches!(self, RecordKind::RunMerge | RecordKind::BranchMerge)
    }
}

/// What a record is about: the run's own fields, a branch's or a step's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    Run,
    Branch(String),
    Step(String),
}

impl Key {
    pub fn of(kind: RecordKind, target: &str) -> Key {
        match kind {
            RecordKind::RunSet | RecordKind::RunMerge => Key::Run,
            RecordKind::BranchPut | RecordKind::BranchMerge => Key::Branch(target.to_string()),
            RecordKind::StepPut => Key::Step(target.to_string()),
        }
    }
}

/// A record as written by a caller: the stamp is given by the appender.
#[derive(Debug, Clone)]
pub struct NewRecord {
    pub kind: RecordKind,
    pub target: String,
    pub body: Vec<u8>,
}

impl NewRecord {
    /// A record, checked: run records have no target, the others one; the body is UTF-8 text
    /// in braces that fits the run log's nesting limit (`nesting`). (Bodies come from the
    /// models' serialiser; every reader parses them, and names the record of one that is not a
    /// JSON object.)
    pub fn new(kind: RecordKind, target: &str, body: Vec<u8>) -> Result<Self> {
        if kind.is_run() != target.is_empty() {
            return Err(CoreError::InvalidArgument(if kind.is_run() {
                format!("a run record has no target, not {target:?}")
            } else {
                "a branch or step record needs the internal name it is about".to_string()
            }));
        }
        let trimmed = body.trim_ascii();
        if !(trimmed.starts_with(b"{") && trimmed.ends_with(b"}"))
            || std::str::from_utf8(&body).is_err()
        {
            return Err(CoreError::InvalidArgument(format!(
                "the body of a {} record is not a JSON object",
                kind_name(kind)
            )));
        }
        if PAYLOAD_HEADER + target.len() + body.len() > MAX_PAYLOAD {
            return Err(CoreError::InvalidArgument(format!(
                "a record of {} bytes is larger than the {MAX_PAYLOAD} a journal holds",
                body.len()
            )));
        }
        let part = match kind {
            RecordKind::RunSet | RecordKind::RunMerge => Part::Run,
            RecordKind::BranchPut | RecordKind::BranchMerge => Part::Branch(target),
            RecordKind::StepPut => Part::Step(target),
        };
        nesting::check(part, std::str::from_utf8(&body).expect("checked above"))?;
        Ok(NewRecord {
            kind,
            target: target.to_string(),
            body,
        })
    }
}

fn kind_name(kind: RecordKind) -> &'static str {
    match kind {
        RecordKind::RunSet => "run-set",
        RecordKind::RunMerge => "run-merge",
        RecordKind::BranchPut => "branch-put",
        RecordKind::BranchMerge => "branch-merge",
        RecordKind::StepPut => "step-put",
    }
}

/// A record read back, with where it was read (for messages and a stable order).
#[derive(Debug, Clone)]
pub struct Record {
    pub stamp: i64,
    pub kind: RecordKind,
    pub target: String,
    pub body: Vec<u8>,
    pub journal: Arc<str>,
    pub offset: u64,
}

impl Record {
    pub fn key(&self) -> Key {
        Key::of(self.kind, &self.target)
    }

    /// The order every reader applies records in: by stamp, then where they were read
    /// (duplicated frames carry the same stamp and apply the same change).
    pub fn order(&self) -> (i64, &str, u64) {
        (self.stamp, &self.journal, self.offset)
    }
}

// --- frames ------------------------------------------------------------------------------------

fn check_of(length: &[u8; 4], payload: &[u8]) -> [u8; 8] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(length);
    hasher.update(payload);
    let digest = hasher.finalize();
    let mut check = [0u8; 8];
    check.copy_from_slice(&digest.as_bytes()[..8]);
    check
}

/// Append one frame to `out`.
pub fn encode_frame(out: &mut Vec<u8>, stamp: i64, record: &NewRecord) {
    let payload_len = PAYLOAD_HEADER + record.target.len() + record.body.len();
    let length = (payload_len as u32).to_le_bytes();
    let start = out.len();
    out.extend_from_slice(&FRAME_MAGIC);
    out.extend_from_slice(&length);
    out.extend_from_slice(&[0u8; 8]);
    let payload_start = out.len();
    out.extend_from_slice(&stamp.to_le_bytes());
    out.push(record.kind as u8);
    out.extend_from_slice(&(record.target.len() as u32).to_le_bytes());
    out.extend_from_slice(record.target.as_bytes());
    out.extend_from_slice(&record.body);
    let check = check_of(&length, &out[payload_start..]);
    out[start + 8..start + 16].copy_from_slice(&check);
}

/// Why the bytes at an offset are not a whole, valid frame.
#[derive(Debug, PartialEq, Eq)]
enum Bad {
    /// The file ends inside the frame.
    Short,
    /// The bytes are there but are not a valid frame (the reason).
    Invalid(String),
}

struct Frame<'a> {
    stamp: i64,
    kind: RecordKind,
    target: &'a str,
    body: &'a [u8],
    len: usize,
}

fn frame_at(bytes: &[u8], at: usize, latest: i64) -> std::result::Result<Frame<'_>, Bad> {
    let rest = &bytes[at..];
    if rest.len() < FRAME_HEADER {
        if FRAME_MAGIC.starts_with(&rest[..rest.len().min(4)]) {
            return Err(Bad::Short);
        }
        return Err(Bad::Invalid("no frame starts here".to_string()));
    }
    if rest[..4] != FRAME_MAGIC {
        return Err(Bad::Invalid("no frame starts here".to_string()));
    }
    let length: [u8; 4] = rest[4..8].try_into().expect("4 bytes");
    let payload_len = u32::from_le_bytes(length) as usize;
    if !(PAYLOAD_HEADER..=MAX_PAYLOAD).contains(&payload_len) {
        return Err(Bad::Invalid(format!(
            "impossible record length {payload_len}"
        )));
    }
    if rest.len() < FRAME_HEADER + payload_len {
        return Err(Bad::Short);
    }
    let payload = &rest[FRAME_HEADER..FRAME_HEADER + payload_len];
    if rest[8..16] != check_of(&length, payload) {
        return Err(Bad::Invalid("its checksum does not match".to_string()));
    }
    let stamp = i64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
    if stamp > latest {
        return Err(Bad::Invalid(format!(
            "its stamp {stamp} is further ahead of the clock than any writer stamps"
        )));
    }
    let kind = RecordKind::from_byte(payload[8]).ok_or_else(|| {
        Bad::Invalid(format!(
            "unknown record kind {} (written by a newer runlog-store?)",
            payload[8]
        ))
    })?;
    let target_len = u32::from_le_bytes(payload[9..13].try_into().expect("4 bytes")) as usize;
    if PAYLOAD_HEADER + target_len > payload_len {
        return Err(Bad::Invalid(format!(
            "its target length {target_len} runs past the record"
        )));
    }
    let target = std::str::from_utf8(&payload[PAYLOAD_HEADER..PAYLOAD_HEADER + target_len])
        .map_err(|_| Bad::Invalid("its target is not UTF-8".to_string()))?;
    if kind.is_run() != target.is_empty() {
        return Err(Bad::Invalid(format!(
            "a {} record with target {target:?}",
            kind_name(kind)
        )));
    }
    Ok(Frame {
        stamp,
        kind,
        target,
        body: &payload[PAYLOAD_HEADER + target_len..],
        len: FRAME_HEADER + payload_len,
    })
}

/// The next offset after `from` where a whole, valid frame starts.
fn next_valid_frame(bytes: &[u8], from: usize, latest: i64) -> Option<usize> {
    let mut at = from;
    while at + FRAME_HEADER <= bytes.len() {
        let found = bytes[at..]
            .windows(FRAME_MAGIC.len())
            .position(|w| w == FRAME_MAGIC)?;
        at += found;
        if frame_at(bytes, at, latest).is_ok() {
            return Some(at);
        }
        at += 1;
    }
    None
}

/// What one pass over a journal's bytes found.
#[derive(Debug, Default)]
pub struct Scanned {
    pub records: Vec<Record>,
    /// The offset just after the last frame read: where the next pass starts (a torn tail,
    /// perhaps an append still in flight, is read again then).
    pub end: u64,
    /// Damaged stretches skipped by a salvage read: (offset, reason).
    pub skipped: Vec<(u64, String)>,
}

/// Read the frames in `bytes`, which start at `offset` of the journal at `path` (named `name`).
///
/// Without `salvage` a damaged frame followed by valid ones is a [`CoreError::Corrupt`] naming
/// the file and the offset; with it, it is skipped and listed. A torn tail is never an error.
pub fn scan(
    bytes: &[u8],
    offset: u64,
    path: &Path,
    name: &Arc<str>,
    salvage: bool,
) -> Result<Scanned> {
    let mut scanned = Scanned {
        end: offset,
        ..Scanned::default()
    };
    let latest = latest_plausible_stamp();
    let mut at = 0usize;
    while at < bytes.len() {
        match frame_at(bytes, at, latest) {
            Ok(frame) => {
                scanned.records.push(Record {
                    stamp: frame.stamp,
                    kind: frame.kind,
                    target: frame.target.to_string(),
                    body: frame.body.to_vec(),
                    journal: Arc::clone(name),
                    offset: offset + at as u64,
                });
                at += frame.len;
                scanned.end = offset + at as u64;
            }
            Err(bad) => {
                if bytes[at..].iter().all(|&b| b == 0) {
                    break; // the room made ahead of the frames (zeros): the usual end
                }
                let Some(next) = next_valid_frame(bytes, at + 1, latest) else {
                    break; // a torn tail: nothing valid follows
                };
                let reason = match bad {
                    Bad::Short => "a record cut short".to_string(),
                    Bad::Invalid(reason) => reason,
                };
                let where_ = offset + at as u64;
                if !salvage {
                    return Err(CoreError::corrupt(
                        path,
                        format!("the journal is damaged at offset {where_}: {reason}"),
                    ));
                }
                scanned.skipped.push((
                    where_,
                    format!(
                        "the journal is damaged at offset {where_} ({reason}): {} bytes skipped",
                        next - at
                    ),
                ));
                at = next;
                scanned.end = offset + at as u64;
            }
        }
    }
    Ok(scanned)
}

// --- journal files ------------------------------------------------------------------------------

/// A fresh journal name for this process: `<pid>-<ns>-<random hex>.journal`, never reused.
pub fn new_journal_name() -> String {
    let nanos = crate::chunk::now_ns();
    let mut random = [0u8; 8];
    let filled = File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .is_ok();
    if !filled {
        // No /dev/urandom: the pid and the clock are unique on this host already; the hash of
        // the stack address and a counter only spreads them.
        let seed = format!(
            "{}-{nanos}-{:p}-{}",
            std::process::id(),
            &random,
            crate::chunk::next_counter()
        );
        random.copy_from_slice(&blake3::hash(seed.as_bytes()).as_bytes()[..8]);
    }
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{nanos}-{hex}{JOURNAL_SUFFIX}", std::process::id())
}

/// Whether a file name is a journal's.
pub fn is_journal_name(name: &str) -> bool {
    !name.starts_with('.') && name.ends_with(JOURNAL_SUFFIX)
}

/// The journals of a run folder, by name (sorted); none when the folder has no `.journals`.
pub fn list_journals(run_dir: &Path) -> Result<Vec<String>> {
    let dir = run_dir.join(JOURNAL_DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(Vec::new())
        }
        Err(e) => return Err(CoreError::io("list", &dir, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| CoreError::io("list", &dir, e))?;
        if let Some(name) = entry.file_name().to_str() {
            if is_journal_name(name) {
                names.push(name.to_string());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// The path of a journal of a run folder.
pub fn journal_path(run_dir: &Path, name: &str) -> PathBuf {
    run_dir.join(JOURNAL_DIR).join(name)
}

/// The bytes of the journal `below` the `folder` that holds the run, from `offset` to its end;
/// `None` when it is gone (folded and removed meanwhile). A journal that is not a regular file,
/// or is past the size cap, is a [`CoreError::Corrupt`] naming it.
pub fn read_from(folder: &Folder, below: &Path, offset: u64) -> Result<Option<Vec<u8>>> {
    let path = folder.path_of(below);
    let opened = folder
        .open_file(below, How::Read)
        .map_err(CoreError::as_document)?;
    let Some(file) = opened else {
        return Ok(None);
    };
    read_bounded(&file, &path, offset)
        .map(Some)
        .map_err(CoreError::as_document)
}

/// What a salvage read left out: (path, reason).
pub type Skipped = Vec<(PathBuf, String)>;

/// Every record of the journals of a run folder, read whole (a reader with no cache). With
/// `salvage`, a journal that cannot be read as one (a FIFO, a link) is left out and listed.
pub fn read_all(run_dir: &Path, salvage: bool) -> Result<(Vec<Record>, Skipped)> {
    let mut records = Vec::new();
    let mut skipped = Vec::new();
    let names = list_journals(run_dir)?;
    if names.is_empty() {
        return Ok((records, skipped));
    }
    let (root, run) = crate::merger::run_place(run_dir);
    let folder = Folder::open(root)?;
    for name in names {
        let below = Path::new(run).join(JOURNAL_DIR).join(&name);
        let path = journal_path(run_dir, &name);
        let bytes = match read_from(&folder, &below, 0) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => continue,
            Err(CoreError::Corrupt { path, reason }) if salvage => {
                skipped.push((path, reason));
                continue;
            }
            Err(err) => return Err(err),
        };
        let shared: Arc<str> = Arc::from(name.as_str());
        let scanned = scan(&bytes, 0, &path, &shared, salvage)?;
        records.extend(scanned.records);
        skipped.extend(scanned.skipped.into_iter().map(|(_, r)| (path.clone(), r)));
    }
    Ok((records, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: RecordKind, target: &str, body: &str) -> NewRecord {
        NewRecord::new(kind, target, body.as_bytes().to_vec()).unwrap()
    }

    fn frames(records: &[(i64, NewRecord)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (stamp, r) in records {
            encode_frame(&mut out, *stamp, r);
        }
        out
    }

    fn name() -> Arc<str> {
        Arc::from("1-2-ab.journal")
    }

    fn three() -> Vec<u8> {
        frames(&[
            (
                10,
                record(RecordKind::StepPut, "map.1.a", r#"{"status":"SUCCESS"}"#),
            ),
            (
                11,
                record(RecordKind::RunMerge, "", r#"{"parameters":{"x":1}}"#),
            ),
            (
                12,
                record(RecordKind::BranchPut, "map.1", r#"{"status":"FAIL"}"#),
            ),
        ])
    }

    #[test]
    fn frames_round_trip() {
        let bytes = three();
        let got = scan(&bytes, 0, Path::new("j"), &name(), false).unwrap();
        assert_eq!(got.end, bytes.len() as u64);
        let summary: Vec<_> = got
            .records
            .iter()
            .map(|r| (r.stamp, r.kind, r.target.as_str(), r.body.clone()))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    10,
                    RecordKind::StepPut,
                    "map.1.a",
                    br#"{"status":"SUCCESS"}"#.to_vec()
                ),
                (
                    11,
                    RecordKind::RunMerge,
                    "",
                    br#"{"parameters":{"x":1}}"#.to_vec()
                ),
                (
                    12,
                    RecordKind::BranchPut,
                    "map.1",
                    br#"{"status":"FAIL"}"#.to_vec()
                )
            ]
        );
        assert_eq!(
            got.records[1].offset,
            got.records[0].offset + 16 + 13 + 7 + 20
        );
    }

    #[test]
    fn every_cut_of_the_last_frame_is_a_torn_tail() {
        let bytes = three();
        let two = scan(&bytes, 0, Path::new("j"), &name(), false)
            .unwrap()
            .records[2]
            .offset as usize;
        for cut in two..bytes.len() {
            let got = scan(&bytes[..cut], 0, Path::new("j"), &name(), false).unwrap();
            assert_eq!(got.records.len(), 2, "cut at {cut}");
            assert_eq!(got.end, two as u64, "cut at {cut}");
        }
        // zeros where the unsynced tail was (a power cut that kept the size only)
        let mut zeroed = bytes.clone();
        zeroed[two..].fill(0);
        let got = scan(&zeroed, 0, Path::new("j"), &name(), false).unwrap();
        assert_eq!((got.records.len(), got.end), (2, two as u64));
        // the room made ahead of the frames (with fsync): read as nothing, every time
        let mut room = bytes.clone();
        room.resize(bytes.len() + 64 * 1024, 0);
        let got = scan(&room, 0, Path::new("j"), &name(), false).unwrap();
        assert_eq!((got.records.len(), got.end), (3, bytes.len() as u64));
        // ... but zeros with a frame after them are damage, not an end
        let mut hole = vec![0u8; 100];
        hole.extend_from_slice(&bytes);
        assert!(scan(&hole, 0, Path::new("j"), &name(), false).is_err());
    }

    #[test]
    fn damage_in_the_middle_is_named_and_salvage_reads_past_it() {
        let bytes = three();
        let offsets: Vec<u64> = scan(&bytes, 0, Path::new("j"), &name(), false)
            .unwrap()
            .records
            .iter()
            .map(|r| r.offset)
            .collect();
        for flip in [offsets[1] as usize + 2, offsets[1] as usize + 20] {
            let mut damaged = bytes.clone();
            damaged[flip] ^= 0x40;
            let err = scan(&damaged, 100, Path::new("/r/.journals/j"), &name(), false).unwrap_err();
            assert!(matches!(err, CoreError::Corrupt { .. }), "{err:?}");
            let text = err.to_string();
            assert!(text.contains("/r/.journals/j"), "{text}");
            assert!(
                text.contains(&format!("offset {}", offsets[1] + 100)),
                "{text}"
            );
            let got = scan(&damaged, 100, Path::new("j"), &name(), true).unwrap();
            let stamps: Vec<i64> = got.records.iter().map(|r| r.stamp).collect();
            assert_eq!(stamps, [10, 12]);
            assert_eq!(got.skipped.len(), 1);
            assert_eq!(got.skipped[0].0, offsets[1] + 100);
            assert_eq!(got.end, bytes.len() as u64 + 100);
        }
    }

    #[test]
    fn a_cut_frame_in_the_middle_is_damage() {
        let bytes = three();
        let offsets: Vec<usize> = scan(&bytes, 0, Path::new("j"), &name(), false)
            .unwrap()
            .records
            .iter()
            .map(|r| r.offset as usize)
            .collect();
        let mut spliced = bytes[..offsets[1] + 10].to_vec();
        spliced.extend_from_slice(&bytes[offsets[2]..]);
        assert!(scan(&spliced, 0, Path::new("j"), &name(), false).is_err());
        let got = scan(&spliced, 0, Path::new("j"), &name(), true).unwrap();
        assert_eq!(got.records.len(), 2);
    }

    #[test]
    fn duplicated_frames_read_twice_with_one_stamp() {
        let bytes = three();
        let mut doubled = bytes.clone();
        doubled.extend_from_slice(&bytes);
        let got = scan(&doubled, 0, Path::new("j"), &name(), false).unwrap();
        let stamps: Vec<i64> = got.records.iter().map(|r| r.stamp).collect();
        assert_eq!(stamps, [10, 11, 12, 10, 11, 12]);
    }

    #[test]
    fn garbage_alone_is_a_torn_tail_and_unknown_kinds_are_damage() {
        let got = scan(b"not a journal at all", 0, Path::new("j"), &name(), false).unwrap();
        assert!(got.records.is_empty() && got.end == 0);
        let mut bytes = three();
        let second = bytes.clone();
        // a valid frame of an unknown kind, then valid frames: damage
        let mut odd = Vec::new();
        encode_frame(&mut odd, 5, &record(RecordKind::StepPut, "x", r#"{"a":1}"#));
        odd[16 + 8] = 77;
        let payload_len = odd.len() - 16;
        let length = (payload_len as u32).to_le_bytes();
        let check = check_of(&length, &odd[16..]);
        odd[8..16].copy_from_slice(&check);
        bytes.extend_from_slice(&odd);
        bytes.extend_from_slice(&second);
        let err = scan(&bytes, 0, Path::new("j"), &name(), false).unwrap_err();
        assert!(err.to_string().contains("unknown record kind 77"), "{err}");
    }

    #[test]
    fn records_are_checked_when_made() {
        assert!(NewRecord::new(RecordKind::RunSet, "x", b"{}".to_vec()).is_err());
        assert!(NewRecord::new(RecordKind::StepPut, "", b"{}".to_vec()).is_err());
        let err = NewRecord::new(RecordKind::StepPut, "a", b"[1]".to_vec()).unwrap_err();
        assert!(
            err.to_string()
                .contains("step-put record is not a JSON object"),
            "{err}"
        );
        assert!(RecordKind::parse("step").is_err());
        assert_eq!(
            RecordKind::parse("branch-merge").unwrap(),
            RecordKind::BranchMerge
        );
    }

    #[test]
    fn journal_names_are_fresh_and_recognised() {
        let a = new_journal_name();
        let b = new_journal_name();
        assert_ne!(a, b);
        assert!(is_journal_name(&a), "{a}");
        assert!(a.starts_with(&format!("{}-", std::process::id())));
        assert!(!is_journal_name(".x.journal.tmp-1"));
        assert!(!is_journal_name("RunLog.json"));
    }
}
