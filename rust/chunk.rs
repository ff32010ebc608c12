//! The chunk byte format (docs/format.md, "Chunk contents" and "Object storage"), its one
//! owner: the fixed names of a run folder, the `_created_ns` header of a chunk, a branch sealed
//! with the step chunks it embeds, the snapshot of a merged run, and the names of temp files.
//!
//! The merger, the writer and the Python stores all build and cut chunks through this module.
//! Where Python's `json.dumps` used to write part of a stored object (the ETag index of a sealed
//! branch, the first line of a snapshot), the same bytes are written here, so objects stored
//! before the format moved here and after it are alike byte for byte.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::error::{CoreError, Result};
use crate::json::{
    parse_object_bytes, top_level_value, write_python_json_object, write_python_json_string, Fields,
};

/// The run-level document of a run folder (or object prefix).
pub const RUN_LOG_FILE: &str = "RunLog.json";
/// Written when runlog-store creates a run: every step and branch of it has a chunk at its
/// computed name, so a missing chunk is a missing step (no search of older layouts).
pub const LAYOUT_MARKER: &str = ".layout";
/// The content of [`LAYOUT_MARKER`] in a chunked-fs run created now (format 2: runnable's
/// documents at rest, a journal per writer; docs/format.md, "chunked-fs").
pub const LAYOUT_MARKER_TEXT: &[u8] = b"runlog-store chunked-fs 2\n";
/// The marker of format 1 (`StepLog-<key>.json` per step), still read and written to.
pub const LAYOUT_MARKER_TEXT_1: &[u8] = b"runlog-store chunked-fs 1\n";
/// The marker of a chunked-minio run created now (runnable's object names, `RunLog` and
/// `BranchLog-<name>`, with steps folded into them when a branch or the run ends).
pub const MINIO_LAYOUT_MARKER_TEXT: &[u8] = b"runlog-store chunked-minio 2\n";
/// The run-level object of a chunked-minio run of format 2: runnable's chunked-minio name.
pub const RUN_LOG_OBJECT: &str = "RunLog";
/// The key, in a folded document and in each step it embeds, of the stamp of the last journal
/// record folded into it (docs/format.md, "The journal"): readers apply only later records.
pub const STAMP_KEY: &str = "_stamp";
/// The key of a chunk's creation time, first in every chunk runlog-store writes.
pub const CREATED_NS_KEY: &str = "_created_ns";
/// A sealed branch chunk's index of the step chunks it embeds: `{chunk name: ETag}`.
pub const CHUNK_INDEX_KEY: &str = "_chunks";
/// The merged run of an ended run (object storage), with the ETags it was built from.
pub const SNAPSHOT_NAME: &str = ".merged.json";
/// Marks the temp files of writes in flight: `.<name>.tmp-<pid>-<nanos>-<counter>`.
pub const TEMP_MARKER: &str = ".tmp-";

/// How every header starts: `{"_created_ns":` (checked against [`CREATED_NS_KEY`] in a test).
const HEADER_PREFIX: &[u8] = b"{\"_created_ns\":";

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

// --- the chunk header ------------------------------------------------------------------------

/// `document` (a JSON object) with `"_created_ns": created_ns` put first: the bytes of a chunk.
///
/// A compact document `{...}` becomes `{"_created_ns":<n>,...}`, and `{}` becomes
/// `{"_created_ns":<n>}`. Anything but a JSON object, or an object that already has the key,
/// is an [`CoreError::InvalidArgument`] saying so.
pub fn chunk_with_header(created_ns: i64, document: &[u8]) -> Result<Vec<u8>> {
    let fields = parse_argument(document, "the chunk document")?;
    if fields.iter().any(|(key, _)| key == CREATED_NS_KEY) {
        return Err(CoreError::InvalidArgument(format!(
            "the chunk document already has a {CREATED_NS_KEY:?} key"
        )));
    }
    // The parse succeeded, so the first non-blank byte is the object's `{`.
    let open = document
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    let mut chunk = Vec::with_capacity(document.len() + HEADER_PREFIX.len() + 21);
    chunk.extend_from_slice(HEADER_PREFIX);
    chunk.extend_from_slice(created_ns.to_string().as_bytes());
    if fields.is_empty() {
        chunk.push(b'}');
    } else {
        chunk.push(b',');
        chunk.extend_from_slice(&document[open + 1..]);
    }
    Ok(chunk)
}

/// The creation time in a chunk's header and the chunk without it. Chunks of older layouts
/// (runnable's own) have no header: `(None, chunk)`. A header that starts but does not end in
/// an integer is an [`CoreError::InvalidArgument`].
pub fn split_chunk_header(chunk: &[u8]) -> Result<(Option<i64>, Vec<u8>)> {
    let Some(rest) = chunk.strip_prefix(HEADER_PREFIX) else {
        return Ok((None, chunk.to_vec()));
    };
    let Some(end) = rest.iter().position(|&b| b == b',' || b == b'}') else {
        return Err(CoreError::InvalidArgument(format!(
            "the chunk's {CREATED_NS_KEY:?} header has no end"
        )));
    };
    let digits = std::str::from_utf8(&rest[..end])
        .ok()
        .map(str::trim_ascii)
        .unwrap_or_default();
    let created_ns: i64 = digits.parse().map_err(|_| {
        CoreError::InvalidArgument(format!(
            "the chunk's {CREATED_NS_KEY:?} is not an integer: {:?}",
            String::from_utf8_lossy(&rest[..end])
        ))
    })?;
    let mut body = Vec::with_capacity(chunk.len() - HEADER_PREFIX.len() - end + 1);
    body.push(b'{');
    if rest[end] == b'}' {
        body.extend_from_slice(&rest[end..]);
    } else {
        body.extend_from_slice(&rest[end + 1..]);
    }
    Ok((Some(created_ns), body))
}

// --- sealed branches -------------------------------------------------------------------------

/// The patch that seals an ending branch (object storage): `patch` (the branch's own fields, a
/// JSON object) plus `"steps": {internal name: step chunk}` with each step chunk as it is
/// stored (header included) and the index `"_chunks": {chunk name: ETag}`, in the order given.
/// With no step and no index entry the patch is returned as it is.
pub fn seal_branch_patch<B: AsRef<[u8]>>(
    patch: &[u8],
    steps: &[(String, B)],
    index: &[(String, String)],
) -> Result<Vec<u8>> {
    let fields = parse_argument(patch, "the branch patch")?;
    if steps.is_empty() && index.is_empty() {
        return Ok(patch.to_vec());
    }
    for key in ["steps", CHUNK_INDEX_KEY] {
        if fields.iter().any(|(k, _)| k == key) {
            return Err(CoreError::InvalidArgument(format!(
                "the branch patch already has a {key:?} key"
            )));
        }
    }
    let mut seen = HashSet::new();
    for (internal_name, chunk) in steps {
        if !seen.insert(internal_name.as_str()) {
            return Err(CoreError::InvalidArgument(format!(
                "step {internal_name:?} is given twice"
            )));
        }
        parse_argument(
            chunk.as_ref(),
            &format!("the chunk of step {internal_name:?}"),
        )?;
    }
    let mut seen = HashSet::new();
    if let Some((name, _)) = index.iter().find(|(name, _)| !seen.insert(name.as_str())) {
        return Err(CoreError::InvalidArgument(format!(
            "chunk {name:?} is in the index twice"
        )));
    }
    let close = patch
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    let mut out = Vec::with_capacity(
        patch.len()
            + steps
                .iter()
                .map(|(n, c)| n.len() + c.as_ref().len() + 4)
                .sum::<usize>()
            + 64,
    );
    out.extend_from_slice(&patch[..close]);
    if !fields.is_empty() {
        out.push(b',');
    }
    out.extend_from_slice(b"\"steps\":{");
    for (i, (internal_name, chunk)) in steps.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_python_json_string(&mut out, internal_name);
        out.push(b':');
        out.extend_from_slice(chunk.as_ref());
    }
    out.extend_from_slice(b"},");
    write_python_json_string(&mut out, CHUNK_INDEX_KEY);
    out.push(b':');
    write_python_json_map(
        &mut out,
        index.iter().map(|(n, e)| (n.as_str(), e.as_str())),
    );
    out.push(b'}');
    Ok(out)
}

/// The step chunks embedded in sealed branch chunks and unchanged since the seal: every name in
/// a branch's `_chunks` index whose ETag is the one `listed` now. Branch chunks that are not
/// JSON objects are passed over (the merge reports them).
pub fn sealed_step_chunks<B: AsRef<[u8]>>(
    branch_chunks: &[B],
    listed: &HashMap<String, String>,
) -> HashSet<String> {
    let needle = CHUNK_INDEX_KEY.as_bytes();
    let mut covered = HashSet::new();
    for chunk in branch_chunks {
        let chunk = chunk.as_ref();
        if !chunk.windows(needle.len()).any(|w| w == needle) {
            continue; // not sealed: no parse
        }
        let Some(index) = top_level_value(chunk, CHUNK_INDEX_KEY) else {
            continue;
        };
        let Ok(index) = serde_json::from_str::<HashMap<String, Value>>(index) else {
            continue;
        };
        for (name, etag) in index {
            if matches!((&etag, listed.get(&name)), (Value::String(e), Some(l)) if e == l) {
                covered.insert(name);
            }
        }
    }
    covered
}

// --- snapshots -------------------------------------------------------------------------------

/// The `.merged.json` of a run: a first line with the JSON object `{"blake3": <hash of the
/// merged document>, "documents": <map (sorted) of every object's name and ETag the merge was
/// built from>, "length": <its length>}`, then the merged document. The length and hash make a
/// snapshot cut short or damaged (it is a cache, written without fsync) read as no snapshot.
pub fn encode_snapshot(etags: &HashMap<String, String>, merged: &[u8]) -> Vec<u8> {
    let mut out = snapshot_header(etags, &blake3::hash(merged), merged.len(), merged.len());
    out.extend_from_slice(merged);
    out
}

/// The first line of a snapshot of a merged document of `length` bytes whose hash is `hash`
/// (see [`encode_snapshot`]), with room for `room` more bytes: a writer that has the merged
/// document in hand writes it after this line, without copying it into one buffer first.
pub fn snapshot_header(
    etags: &HashMap<String, String>,
    hash: &blake3::Hash,
    length: usize,
    room: usize,
) -> Vec<u8> {
    let sorted: BTreeMap<&str, &str> = etags
        .iter()
        .map(|(n, e)| (n.as_str(), e.as_str()))
        .collect();
    let mut out = Vec::with_capacity(room + 64 * etags.len() + 128);
    out.extend_from_slice(b"{\"blake3\": \"");
    out.extend_from_slice(hash.to_hex().as_bytes());
    out.extend_from_slice(b"\", \"documents\": ");
    write_python_json_map(&mut out, sorted.into_iter());
    out.extend_from_slice(format!(", \"length\": {length}}}\n").as_bytes());
    out
}

#[derive(serde::Deserialize)]
struct SnapshotHeader {
    blake3: String,
    documents: HashMap<String, String>,
    length: usize,
}

/// The merged document of a snapshot, if it was built from exactly the objects `etags` lists
/// now (the same names with the same ETags) and is whole; `None` for any other snapshot,
/// damaged or cut short ones too.
pub fn decode_snapshot<'a>(data: &'a [u8], etags: &HashMap<String, String>) -> Option<&'a [u8]> {
    let end = data.iter().position(|&b| b == b'\n').filter(|&e| e > 0)?;
    let header: SnapshotHeader = serde_json::from_slice(&data[..end]).ok()?;
    let same = header.documents.len() == etags.len()
        && header
            .documents
            .iter()
            .all(|(name, etag)| etags.get(name) == Some(etag));
    let merged = &data[end + 1..];
    let whole = merged.len() == header.length
        && blake3::hash(merged).to_hex().as_str() == header.blake3.as_str();
    (same && whole).then_some(merged)
}

// --- run documents ---------------------------------------------------------------------------

/// The top-level `"status"` of a run log document; `None` when it is not a JSON object or has
/// no string status.
pub fn document_status(document: &[u8]) -> Option<String> {
    let status = top_level_value(document, "status")?;
    serde_json::from_str::<String>(status).ok()
}

// --- temp files ------------------------------------------------------------------------------

/// Whether a file name is the temp file of a write in flight (readers skip these).
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(TEMP_MARKER)
}

/// Nanoseconds since the epoch, by the wall clock (0 if the clock is before 1970).
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A number this process never hands out twice.
pub fn next_counter() -> u64 {
    TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// A fresh temp file name for a write of `name`, unique on this host:
/// `.<name>.tmp-<pid>-<nanos>-<counter>` (the pid lets a cleaner tell a dead writer's file).
pub fn temp_file_name(name: &str) -> String {
    let nanos = now_ns();
    let counter = next_counter();
    format!(
        ".{name}{TEMP_MARKER}{}-{nanos}-{counter}",
        std::process::id()
    )
}

/// The pid in a temp file's name.
pub fn temp_writer_pid(name: &str) -> Option<i32> {
    let (_, rest) = name.split_once(TEMP_MARKER)?;
    rest.split('-').next()?.parse().ok()
}

/// The top level of a JSON object given by a caller; `what` names it in the error.
fn parse_argument<'a>(bytes: &'a [u8], what: &str) -> Result<Fields<'a>> {
    parse_object_bytes(bytes).map_err(|reason| {
        CoreError::InvalidArgument(format!("{what} is not a JSON object: {reason}"))
    })
}

// --- JSON as Python's json.dumps wrote it ------------------------------------------------------

/// A map of strings as `json.dumps` writes it: `{"a": "b", "c": "d"}`.
fn write_python_json_map<'a>(out: &mut Vec<u8>, entries: impl Iterator<Item = (&'a str, &'a str)>) {
    write_python_json_object(out, entries, (b", ", b": "), |out, value| {
        write_python_json_string(out, value)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_json(bytes: &[u8]) -> bool {
        serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
    }

    fn listed(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(n, e)| (n.to_string(), e.to_string()))
            .collect()
    }

    #[test]
    fn header_prefix_is_the_created_ns_key() {
        assert_eq!(HEADER_PREFIX, format!("{{\"{CREATED_NS_KEY}\":").as_bytes());
    }

    #[test]
    fn header_goes_first_and_comes_off_again() {
        let document = br#"{"internal_name":"a","branches":{}}"#;
        let chunk = chunk_with_header(1706852981689005000, document).unwrap();
        assert_eq!(
            chunk,
            br#"{"_created_ns":1706852981689005000,"internal_name":"a","branches":{}}"#
        );
        let (created_ns, body) = split_chunk_header(&chunk).unwrap();
        assert_eq!(created_ns, Some(1706852981689005000));
        assert_eq!(body, document);
    }

    #[test]
    fn an_empty_object_gets_a_valid_header() {
        let chunk = chunk_with_header(5, b"{}").unwrap();
        assert_eq!(chunk, br#"{"_created_ns":5}"#);
        assert!(is_json(&chunk));
        assert_eq!(
            split_chunk_header(&chunk).unwrap(),
            (Some(5), b"{}".to_vec())
        );
        let chunk = chunk_with_header(-7, b" { } ").unwrap();
        assert_eq!(chunk, br#"{"_created_ns":-7}"#);
    }

    #[test]
    fn blanks_around_a_document_are_fine() {
        let chunk = chunk_with_header(3, b"\n {\"a\": 1}\n").unwrap();
        assert_eq!(chunk, b"{\"_created_ns\":3,\"a\": 1}\n");
        assert!(is_json(&chunk));
    }

    #[test]
    fn only_objects_without_a_header_get_one() {
        for (bad, says) in [
            (&b"[1]"[..], "is not a JSON object: it is not a JSON object"),
            (b"", "is not a JSON object: it is empty"),
            (b"{\"a\":", "is not a JSON object: it is not valid JSON"),
            (b"\xff", "is not a JSON object: it is not UTF-8"),
            (
                b"{\"_created_ns\":1,\"a\":2}",
                "already has a \"_created_ns\" key",
            ),
        ] {
            let err = chunk_with_header(1, bad).unwrap_err();
            assert!(matches!(err, CoreError::InvalidArgument(_)), "{err:?}");
            assert!(err.to_string().starts_with("the chunk document "), "{err}");
            assert!(err.to_string().contains(says), "{err} lacks {says}");
        }
    }

    #[test]
    fn chunks_without_a_header_are_returned_whole() {
        let chunk = br#"{"internal_name":"a","_created_ns":5}"#;
        assert_eq!(split_chunk_header(chunk).unwrap(), (None, chunk.to_vec()));
        assert_eq!(split_chunk_header(b"").unwrap(), (None, Vec::new()));
    }

    #[test]
    fn broken_headers_are_errors() {
        let err = split_chunk_header(br#"{"_created_ns":12"#).unwrap_err();
        assert!(err.to_string().contains("has no end"), "{err}");
        let err = split_chunk_header(br#"{"_created_ns":"x","a":1}"#).unwrap_err();
        assert!(
            err.to_string().contains("is not an integer: \"\\\"x\\\"\""),
            "{err}"
        );
        let err = split_chunk_header(br#"{"_created_ns":1.5,"a":1}"#).unwrap_err();
        assert!(matches!(err, CoreError::InvalidArgument(_)));
        assert_eq!(
            split_chunk_header(br#"{"_created_ns": 9 ,"a":1}"#).unwrap(),
            (Some(9), br#"{"a":1}"#.to_vec())
        );
    }

    #[test]
    fn sealing_embeds_steps_and_their_etags() {
        let steps = vec![
            (
                "map.1.a".to_string(),
                br#"{"_created_ns":1,"x":1}"#.to_vec(),
            ),
            (
                "map.1.é".to_string(),
                br#"{"_created_ns":2,"x":2}"#.to_vec(),
            ),
        ];
        let index = vec![
            ("StepLog-map.1.a.json".to_string(), "e1".to_string()),
            ("StepLog-map.1.%C3%A9.json".to_string(), "e\"2".to_string()),
        ];
        let sealed = seal_branch_patch(br#"{"status":"SUCCESS"}"#, &steps, &index).unwrap();
        assert_eq!(
            String::from_utf8(sealed.clone()).unwrap(),
            concat!(
                r#"{"status":"SUCCESS","steps":{"map.1.a":{"_created_ns":1,"x":1},"#,
                r#""map.1.\u00e9":{"_created_ns":2,"x":2}},"_chunks":"#,
                r#"{"StepLog-map.1.a.json": "e1", "StepLog-map.1.%C3%A9.json": "e\"2"}}"#
            )
        );
        assert!(is_json(&sealed));
        let sealed = seal_branch_patch(b"{}", &steps[..1], &index[..1]).unwrap();
        assert_eq!(
            sealed,
            br#"{"steps":{"map.1.a":{"_created_ns":1,"x":1}},"_chunks":{"StepLog-map.1.a.json": "e1"}}"#
        );
    }

    #[test]
    fn nothing_to_seal_leaves_the_patch_alone() {
        let patch = br#"{"status":"FAIL"}"#;
        assert_eq!(
            seal_branch_patch::<Vec<u8>>(patch, &[], &[]).unwrap(),
            patch
        );
    }

    #[test]
    fn bad_seals_are_refused() {
        let step = vec![("a".to_string(), b"{}".to_vec())];
        type Case<'a> = (
            &'a [u8],
            Vec<(String, Vec<u8>)>,
            Vec<(String, String)>,
            &'a str,
        );
        let cases: Vec<Case<'_>> = vec![
            (
                b"[]",
                step.clone(),
                vec![],
                "the branch patch is not a JSON object",
            ),
            (
                b"{\"steps\":{}}",
                step.clone(),
                vec![],
                "already has a \"steps\" key",
            ),
            (
                b"{\"_chunks\":{}}",
                step.clone(),
                vec![],
                "already has a \"_chunks\" key",
            ),
            (
                b"{}",
                vec![("a".to_string(), b"{\"half".to_vec())],
                vec![],
                "the chunk of step \"a\" is not a JSON object",
            ),
            (
                b"{}",
                [step.clone(), step.clone()].concat(),
                vec![],
                "step \"a\" is given twice",
            ),
            (
                b"{}",
                step.clone(),
                vec![
                    ("n".to_string(), "1".to_string()),
                    ("n".to_string(), "2".to_string()),
                ],
                "chunk \"n\" is in the index twice",
            ),
        ];
        for (patch, steps, index, says) in cases {
            let err = seal_branch_patch(patch, &steps, &index).unwrap_err();
            assert!(matches!(err, CoreError::InvalidArgument(_)), "{err:?}");
            assert!(err.to_string().contains(says), "{err} lacks {says}");
        }
    }

    #[test]
    fn sealed_chunks_are_those_whose_etag_is_unchanged() {
        let sealed =
            br#"{"internal_name":"m.1","steps":{},"_chunks":{"S-a.json":"e1","S-b.json":"e2","S-c.json":7}}"#;
        let other = br#"{"internal_name":"m.2","_chunks":{"S-d.json":"e4"}}"#;
        let unsealed = br#"{"internal_name":"m.3"}"#;
        let broken = br#"{"_chunks":{"S-e.json":"e5""#;
        let not_an_index = br#"{"_chunks":["S-f.json"]}"#;
        let chunks: Vec<&[u8]> = vec![sealed, other, unsealed, broken, not_an_index];
        let now = listed(&[
            ("S-a.json", "e1"),
            ("S-b.json", "changed"),
            ("S-c.json", "7"),
            ("S-d.json", "e4"),
            ("S-e.json", "e5"),
            ("S-f.json", "e6"),
        ]);
        let covered = sealed_step_chunks(&chunks, &now);
        let mut covered: Vec<_> = covered.into_iter().collect();
        covered.sort();
        assert_eq!(covered, ["S-a.json", "S-d.json"]);
    }

    #[test]
    fn snapshots_round_trip_and_check_every_etag() {
        let etags = listed(&[
            ("RunLog.json", "r1"),
            ("BranchLog-b.json", "b1"),
            ("é", "x"),
        ]);
        let merged = b"{\"run_id\":\"x\"}\n";
        let snapshot = encode_snapshot(&etags, merged);
        let header = format!(
            "{{\"blake3\": \"{}\", \"documents\": {{\"BranchLog-b.json\": \"b1\", \"RunLog.json\": \"r1\", \"\\u00e9\": \"x\"}}, \"length\": 15}}\n",
            blake3::hash(merged).to_hex()
        );
        assert_eq!(snapshot, [header.as_bytes(), &merged[..]].concat());
        assert_eq!(decode_snapshot(&snapshot, &etags), Some(&merged[..]));
        let mut changed = etags.clone();
        changed.insert("RunLog.json".into(), "r2".into());
        assert_eq!(decode_snapshot(&snapshot, &changed), None);
        let mut more = etags.clone();
        more.insert("StepLog-new.json".into(), "s".into());
        assert_eq!(decode_snapshot(&snapshot, &more), None);
        let mut fewer = etags.clone();
        fewer.remove("é");
        assert_eq!(decode_snapshot(&snapshot, &fewer), None);
        // Cut short, or one byte changed: not a snapshot.
        assert_eq!(
            decode_snapshot(&snapshot[..snapshot.len() - 1], &etags),
            None
        );
        let mut flipped = snapshot.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 1;
        assert_eq!(decode_snapshot(&flipped, &etags), None);
        for damaged in [
            &b"no newline"[..],
            b"\n{}",
            b"{\"a\":\n{}",
            b"[]\n{}",
            b"{\"a\": 1}\n{}",
        ] {
            assert_eq!(decode_snapshot(damaged, &listed(&[("a", "1")])), None);
        }
        let empty = encode_snapshot(&HashMap::new(), b"");
        assert_eq!(decode_snapshot(&empty, &HashMap::new()), Some(&b""[..]));
    }

    #[test]
    fn status_of_a_run_log() {
        assert_eq!(
            document_status(br#"{"status":"SUCCESS","steps":{}}"#).as_deref(),
            Some("SUCCESS")
        );
        assert_eq!(
            document_status(br#"{"status":"A","status":"B"}"#).as_deref(),
            Some("B")
        );
        assert_eq!(document_status(br#"{"steps":{}}"#), None);
        assert_eq!(document_status(br#"{"status":3}"#), None);
        assert_eq!(document_status(br#"["status"]"#), None);
        assert_eq!(document_status(br#"{"status":"SUCC"#), None);
    }

    #[test]
    fn temp_names() {
        let name = temp_file_name("RunLog.json");
        assert!(name.starts_with(".RunLog.json.tmp-"), "{name}");
        assert!(is_temp_name(&name));
        assert_ne!(name, temp_file_name("RunLog.json"));
        assert_eq!(temp_writer_pid(&name), Some(std::process::id() as i32));
        assert!(!is_temp_name("RunLog.json"));
        assert!(!is_temp_name(LAYOUT_MARKER));
        assert!(!is_temp_name(SNAPSHOT_NAME));
        assert!(!is_temp_name("data.tmp-1"));
        assert_eq!(temp_writer_pid(".x.tmp-123-456-7"), Some(123));
        assert_eq!(temp_writer_pid("plain.json"), None);
    }

    #[test]
    fn strings_are_written_as_python_wrote_them() {
        let mut out = Vec::new();
        write_python_json_string(&mut out, "a\"\\\n\r\t\u{8}\u{c}\u{1}\u{7f}é€😀 ~");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#""a\"\\\n\r\t\b\f\u0001\u007f\u00e9\u20ac\ud83d\ude00 ~""#
        );
    }
}
