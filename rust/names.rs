//! Chunk file names (docs/format.md, "Chunk names").
//!
//! A name is computed from the internal name alone, so writing or reading a step opens one known
//! path with no directory listing. The encoding keeps every name inside the run's folder and
//! makes distinct internal names distinct file names.

use crate::error::{CoreError, Result};

/// Longest encoded key kept as is; longer ones are hashed. File names are limited to 255 bytes:
/// the longest chunk name, `BranchLog-<key>.json` (195 bytes), still fits with the writer's temp
/// file decoration around it (`.<name>.tmp-<pid>-<ns>-<counter>`, at most 54 more).
pub const MAX_KEY_BYTES: usize = 180;

/// The two kinds of chunk a run folder holds besides [`RUN_LOG_FILE`](crate::chunk::RUN_LOG_FILE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChunkKind {
    Step,
    Branch,
}

impl ChunkKind {
    pub fn parse(kind: &str) -> Result<Self> {
        match kind {
            "StepLog" => Ok(ChunkKind::Step),
            "BranchLog" => Ok(ChunkKind::Branch),
            other => Err(CoreError::InvalidArgument(format!(
                "unknown chunk kind {other:?}: expected \"StepLog\" or \"BranchLog\""
            ))),
        }
    }

    pub fn prefix(self) -> &'static str {
        match self {
            ChunkKind::Step => "StepLog",
            ChunkKind::Branch => "BranchLog",
        }
    }
}

fn is_kept(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-' | b' ')
}

/// Percent-encode every byte outside `A-Z a-z 0-9 . _ -` and space.
pub fn encode_key(internal_name: &str) -> String {
    let mut key = String::with_capacity(internal_name.len());
    for &byte in internal_name.as_bytes() {
        if is_kept(byte) {
            key.push(byte as char);
        } else {
            key.push_str(&format!("%{byte:02X}"));
        }
    }
    if key.len() > MAX_KEY_BYTES {
        let digest = blake3::hash(internal_name.as_bytes()).to_hex();
        return format!("~{}", &digest[..32]);
    }
    key
}

/// The internal name a key encodes; `None` for a hashed key (`~<hex>`: only the chunk's
/// content says) or one that is not this encoding.
pub fn decode_key(key: &str) -> Option<String> {
    if key.starts_with('~') {
        return None;
    }
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(at + 1..at + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                at += 3;
            }
            byte if is_kept(byte) => {
                out.push(byte);
                at += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// The kind and internal name of a chunk from its file or object name (`StepLog-<key>.json`,
/// `BranchLog-<key>`, ...); `None` for other names and hashed keys.
pub fn chunk_internal_name(name: &str) -> Option<(ChunkKind, String)> {
    let kind = object_chunk_kind(name)?;
    let key = name.strip_prefix(kind.prefix())?.strip_prefix('-')?;
    let key = key.strip_suffix(".json").unwrap_or(key);
    Some((kind, decode_key(key)?))
}

/// `StepLog-<key>.json` or `BranchLog-<key>.json`.
pub fn chunk_file_name(kind: ChunkKind, internal_name: &str) -> Result<String> {
    if internal_name.is_empty() {
        return Err(CoreError::InvalidArgument(
            "an internal name must not be empty".to_string(),
        ));
    }
    Ok(format!(
        "{}-{}.json",
        kind.prefix(),
        encode_key(internal_name)
    ))
}

/// The kind of a chunk file, from its name; `None` for files that are not chunks:
/// `RunLog.json`, and every name starting with a dot (the layout marker, the snapshot of a
/// merged run, temp files of writes in flight, the lock).
pub fn chunk_kind_of(file_name: &str) -> Option<ChunkKind> {
    if file_name.starts_with('.') || !file_name.ends_with(".json") {
        return None;
    }
    if file_name.starts_with("StepLog-") {
        Some(ChunkKind::Step)
    } else if file_name.starts_with("BranchLog-") {
        Some(ChunkKind::Branch)
    } else {
        None
    }
}

/// The kind of a chunk object of object storage, from its name: the folder names above, and
/// runnable's chunked-minio names without `.json` (`BranchLog-<name>`, and this package's
/// `StepLog-<key>`); `None` for the run-level document (`RunLog`, `RunLog.json`) and hidden
/// names.
pub fn object_chunk_kind(name: &str) -> Option<ChunkKind> {
    if name.starts_with('.') {
        return None;
    }
    if name.starts_with("StepLog-") {
        Some(ChunkKind::Step)
    } else if name.starts_with("BranchLog-") {
        Some(ChunkKind::Branch)
    } else {
        None
    }
}

/// The creation time the older layout puts in its names: `StepLog-<name>-<ns>.json`.
pub fn legacy_created_ns(file_name: &str) -> Option<i64> {
    let stem = file_name.strip_suffix(".json")?;
    let (_, digits) = stem.rsplit_once('-')?;
    // Nanosecond timestamps since 2001 have at least 18 digits; shorter numbers are names.
    if digits.len() < 18 || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::{temp_file_name, LAYOUT_MARKER, RUN_LOG_FILE, SNAPSHOT_NAME};

    #[test]
    fn plain_names_are_kept() {
        let name = chunk_file_name(ChunkKind::Step, "map.3.work").unwrap();
        assert_eq!(name, "StepLog-map.3.work.json");
        let name = chunk_file_name(ChunkKind::Branch, "parallel step.branch1").unwrap();
        assert_eq!(name, "BranchLog-parallel step.branch1.json");
    }

    #[test]
    fn separators_and_unicode_are_encoded() {
        assert_eq!(encode_key("../x"), "..%2Fx");
        assert_eq!(encode_key("a\\b"), "a%5Cb");
        assert_eq!(encode_key("50%"), "50%25");
        assert_eq!(encode_key("é"), "%C3%A9");
        assert_eq!(encode_key("a\0b"), "a%00b");
    }

    #[test]
    fn encoding_is_injective_on_examples() {
        let names = ["a/b", "a%2Fb", "a b", "a_b", "a.b", "A.b"];
        let keys: std::collections::HashSet<_> = names.iter().map(|n| encode_key(n)).collect();
        assert_eq!(keys.len(), names.len());
    }

    #[test]
    fn long_names_are_hashed_and_distinct() {
        let a = "x".repeat(500);
        let b = format!("{}y", "x".repeat(499));
        let (ka, kb) = (encode_key(&a), encode_key(&b));
        assert!(ka.starts_with('~') && ka.len() == 33);
        assert_ne!(ka, kb);
        assert_eq!(encode_key(&"x".repeat(180)).len(), 180);
        assert!(encode_key(&"/".repeat(61)).starts_with('~'));
    }

    #[test]
    fn empty_name_and_unknown_kind_are_refused() {
        assert!(chunk_file_name(ChunkKind::Step, "").is_err());
        assert!(ChunkKind::parse("RunLog").is_err());
    }

    #[test]
    fn legacy_names_give_their_creation_time() {
        assert_eq!(
            legacy_created_ns("StepLog-simple-1706852981689005000.json"),
            Some(1706852981689005000)
        );
        assert_eq!(legacy_created_ns("StepLog-map.1.json"), None);
        assert_eq!(legacy_created_ns("StepLog-step-12.json"), None);
    }

    #[test]
    fn keys_decode_back_to_their_names() {
        for name in ["map.3.work", "../x", "a b", "é€", "50%", "a\0b"] {
            assert_eq!(decode_key(&encode_key(name)).as_deref(), Some(name));
        }
        assert_eq!(decode_key(&encode_key(&"x".repeat(500))), None);
        assert_eq!(decode_key("bad/"), None);
        assert_eq!(decode_key("%4"), None);
        assert_eq!(
            chunk_internal_name("BranchLog-map.1"),
            Some((ChunkKind::Branch, "map.1".to_string()))
        );
        assert_eq!(
            chunk_internal_name("StepLog-..%2Fx.json"),
            Some((ChunkKind::Step, "../x".to_string()))
        );
        assert_eq!(chunk_internal_name("RunLog.json"), None);
    }

    #[test]
    fn object_names_with_and_without_json() {
        assert_eq!(
            object_chunk_kind("BranchLog-map.1"),
            Some(ChunkKind::Branch)
        );
        assert_eq!(
            object_chunk_kind("BranchLog-map.1.json"),
            Some(ChunkKind::Branch)
        );
        assert_eq!(object_chunk_kind("StepLog-a.json"), Some(ChunkKind::Step));
        assert_eq!(object_chunk_kind("RunLog"), None);
        assert_eq!(object_chunk_kind(".layout"), None);
    }

    #[test]
    fn chunk_kinds_from_file_names() {
        assert_eq!(chunk_kind_of("StepLog-a.json"), Some(ChunkKind::Step));
        assert_eq!(chunk_kind_of("BranchLog-a.json"), Some(ChunkKind::Branch));
        assert_eq!(chunk_kind_of(".StepLog-a.json.tmp-1-2-3"), None);
        assert_eq!(chunk_kind_of(&temp_file_name("StepLog-a.json")), None);
        assert_eq!(chunk_kind_of(RUN_LOG_FILE), None);
        assert_eq!(chunk_kind_of(LAYOUT_MARKER), None);
        assert_eq!(chunk_kind_of(SNAPSHOT_NAME), None);
        assert_eq!(chunk_kind_of("notes.txt"), None);
    }
}
