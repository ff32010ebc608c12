//! The top level of a stored JSON object as (key, raw value) fields borrowed from the file's
//! bytes, the helpers that read and change them, and a chunk parsed into the nodes it holds.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::tree::{NewNode, Position};
use crate::chunk::{CHUNK_INDEX_KEY, CREATED_NS_KEY, STAMP_KEY};
use crate::error::{CoreError, Result};
use crate::json::{parse_object as parse_json_object, parse_object_of_objects, Text};
use crate::names::{legacy_created_ns, ChunkKind};

/// A field value: raw JSON from a file (non-finite tokens included), made up by the merger, or
/// an object that journal merge records are merged into.
#[derive(Debug, Clone)]
pub(crate) enum Json<'a> {
    Raw(&'a str),
    Owned(String),
    Merged(Box<MergedObject<'a>>),
}

impl Json<'_> {
    pub(crate) fn text(&self) -> &str {
        match self {
            Json::Raw(raw) => raw,
            Json::Owned(text) => text,
            Json::Merged(object) => object.text(),
        }
    }
}

/// A JSON object that merge records update key by key (`dict.update`), kept as its fields
/// until its text is asked for: a run or branch can get thousands of parameters through the
/// journal, one record each, and parsing and writing the whole object again for every record
/// would make reading and folding them quadratic. Setting a key costs the same however many
/// the object holds; the text is written once, and again only after a change.
#[derive(Debug, Clone, Default)]
pub(crate) struct MergedObject<'a> {
    /// The fields in stored order; `None` where a later duplicate of a key was dropped.
    entries: Vec<Option<(Cow<'a, str>, Json<'a>)>>,
    /// Where each key is in `entries`: more than once only for duplicates read from a
    /// document, which the object keeps until the key is set, as the stored order had them.
    positions: HashMap<Cow<'a, str>, Vec<usize>>,
    text: OnceLock<String>,
}

impl<'a> MergedObject<'a> {
    pub(crate) fn from_fields(fields: Fields<'a>) -> MergedObject<'a> {
        let mut object = MergedObject::default();
        for (key, value) in fields {
            object
                .positions
                .entry(key.clone())
                .or_default()
                .push(object.entries.len());
            object.entries.push(Some((key, value)));
        }
        object
    }

    /// Replace the value of `key` where it first is (its later duplicates go), or add it at
    /// the end, as [`set`] does on fields.
    pub(crate) fn set(&mut self, key: Cow<'a, str>, value: Json<'a>) {
        self.text = OnceLock::new();
        if let Some(at) = self.positions.get_mut(&key) {
            let first = at[0];
            for &later in &at[1..] {
                self.entries[later] = None;
            }
            at.truncate(1);
            if let Some(entry) = &mut self.entries[first] {
                entry.1 = value;
            }
            return;
        }
        self.positions.insert(key.clone(), vec![self.entries.len()]);
        self.entries.push(Some((key, value)));
    }

    fn text(&self) -> &str {
        self.text.get_or_init(|| {
            let mut out = Vec::with_capacity(64);
            out.push(b'{');
            for (i, (key, value)) in self.entries.iter().flatten().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                crate::json::write_key(&mut out, key);
                out.extend_from_slice(value.text().as_bytes());
            }
            out.push(b'}');
            String::from_utf8(out).expect("JSON text is UTF-8")
        })
    }
}

/// The fields of a JSON object held in `value`, borrowed from it when it is raw text of the
/// documents or records (which outlive the fields), copied otherwise.
pub(crate) fn object_fields<'a>(value: &Json<'a>) -> std::result::Result<Fields<'a>, String> {
    match value {
        Json::Raw(raw) => parse_object_str(raw),
        other => Ok(parse_object_str(other.text())?
            .into_iter()
            .map(|(key, value)| {
                (
                    Cow::Owned(key.into_owned()),
                    Json::Owned(value.text().to_string()),
                )
            })
            .collect()),
    }
}

/// The top level of a JSON object in stored order. Documents have a dozen keys, so a vector
/// searched from the end (the last of duplicate keys wins, as in most parsers) beats a map.
pub(crate) type Fields<'a> = Vec<(Cow<'a, str>, Json<'a>)>;

pub(crate) fn get<'f, 'a>(fields: &'f Fields<'a>, key: &str) -> Option<&'f Json<'a>> {
    fields.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
}

pub(crate) fn remove<'a>(fields: &mut Fields<'a>, key: &str) -> Option<Json<'a>> {
    let index = fields.iter().rposition(|(k, _)| k == key)?;
    let (_, value) = fields.remove(index);
    fields.retain(|(k, _)| k != key);
    Some(value)
}

/// Replace the value of `key` in place (later duplicates of it go), or add it at the end.
pub(crate) fn set<'a>(fields: &mut Fields<'a>, key: Cow<'a, str>, value: Json<'a>) {
    match fields.iter().position(|(k, _)| *k == key) {
        Some(first) => {
            fields[first].1 = value;
            let mut at = first + 1;
            while at < fields.len() {
                if fields[at].0 == key {
                    fields.remove(at);
                } else {
                    at += 1;
                }
            }
        }
        None => fields.push((key, value)),
    }
}

/// The stamp of the last journal record folded into a document or node (0 when none), taken
/// off its fields. Anything but an integer is corrupt.
pub(crate) fn take_stamp(fields: &mut Fields<'_>, path: &Path) -> Result<i64> {
    match remove(fields, STAMP_KEY) {
        None => Ok(0),
        Some(value) => serde_json::from_str::<i64>(value.text())
            .map_err(|_| CoreError::corrupt(path, format!("{STAMP_KEY:?} is not an integer"))),
    }
}

/// One chunk file, parsed at the top level, with the nodes embedded in it (parsed in the
/// parallel pass too: in a folded run they are most of the bytes).
pub(super) struct Chunk<'a> {
    pub(super) path: PathBuf,
    pub(super) kind: ChunkKind,
    pub(super) name: Cow<'a, str>,
    pub(super) created_ns: Option<i64>,
    pub(super) stamp: i64,
    pub(super) fields: Fields<'a>,
    pub(super) embedded: Vec<NewNode<'a>>,
}

pub(super) fn parse_chunk<'a>(
    run_dir: &Path,
    file_name: &str,
    kind: ChunkKind,
    bytes: &'a [u8],
) -> Result<Chunk<'a>> {
    let path = run_dir.join(file_name);
    let key = children_key(kind);
    // The document and its children in one pass (see `parse_object_with_children`); any text
    // that pass does not take is read the longer way, for the same result or the same error.
    let one_pass = std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| crate::json::parse_object_with_children(text, key));
    let (mut fields, children) = match one_pass {
        Some(parsed) => (raw_fields(parsed.fields), Some(parsed.children)),
        None => (parse_object(bytes, &path)?, None),
    };
    let created_ns = match remove(&mut fields, CREATED_NS_KEY) {
        None => legacy_created_ns(file_name),
        Some(value) => Some(serde_json::from_str::<i64>(value.text()).map_err(|_| {
            CoreError::corrupt(&path, format!("{CREATED_NS_KEY:?} is not an integer"))
        })?),
    };
    let stamp = take_stamp(&mut fields, &path)?;
    remove(&mut fields, CHUNK_INDEX_KEY);
    let name = internal_name_of(&fields)
        .ok_or_else(|| CoreError::corrupt(&path, "it has no string \"internal_name\""))?;
    // The children are checked here, so a corrupt chunk adds nothing.
    let children = match children {
        Some(children) => children
            .into_iter()
            .map(|(key, child)| (key, Embedded::Parsed(raw_fields(child))))
            .collect(),
        None => embedded_children_of(&fields, key, &path)?,
    };
    let embedded = collect_embedded(children, child_kind(kind), &path)?;
    Ok(Chunk {
        path,
        kind,
        name,
        created_ns,
        stamp,
        fields,
        embedded,
    })
}

/// Flatten embedded children (at any depth) into nodes, checking their shape first so a
/// corrupt document adds nothing. Nodes without a creation time are numbered in stored order
/// from 1 (the tree offsets the numbers by the documents before).
pub(super) fn collect_embedded<'a>(
    children: Vec<(Cow<'a, str>, Embedded<'a>)>,
    kind: ChunkKind,
    path: &Path,
) -> Result<Vec<NewNode<'a>>> {
    let mut out = Vec::new();
    let mut sequence = 0;
    let mut pending: Vec<(Cow<'a, str>, Embedded<'a>, ChunkKind)> = children
        .into_iter()
        .map(|(k, v)| (k, v, kind))
        .rev()
        .collect();
    while let Some((key, value, kind)) = pending.pop() {
        let mut fields = match value {
            Embedded::Parsed(fields) => fields,
            Embedded::Raw(value) => parse_object_str(value)
                .map_err(|_| CoreError::corrupt(path, format!("{key:?} is not a JSON object")))?,
        };
        // A chunk embedded whole (a sealed or folded branch) keeps its creation time, its
        // stamp and its place.
        let created_ns = remove(&mut fields, CREATED_NS_KEY)
            .and_then(|v| serde_json::from_str::<i64>(v.text()).ok());
        let stamp = take_stamp(&mut fields, path)?;
        remove(&mut fields, CHUNK_INDEX_KEY);
        let name = internal_name_of(&fields).unwrap_or(key);
        let grandchildren = embedded_children_of(&fields, children_key(kind), path)?;
        sequence += 1;
        let position = match created_ns {
            Some(created_ns) => Position {
                chunked: true,
                sequence: 0,
                created_ns,
            },
            None => Position {
                chunked: false,
                sequence,
                created_ns: 0,
            },
        };
        out.push(NewNode {
            name,
            kind,
            fields,
            position,
            stamp,
        });
        let child = child_kind(kind);
        pending.extend(grandchildren.into_iter().map(|(k, v)| (k, v, child)).rev());
    }
    Ok(out)
}

/// An embedded child as [`embedded_children_of`] gives it: its top level read already, or its
/// raw text (read when it is flattened, which reports it if it is not an object).
pub(super) enum Embedded<'a> {
    Parsed(Fields<'a>),
    Raw(&'a str),
}

/// The embedded children of a document or node under `key`, in stored order: each one's top
/// level read in the same pass as the object that holds them when they are all well-formed
/// objects (nearly always), else as [`children_of`] gives them, for the same result or error.
pub(super) fn embedded_children_of<'a>(
    fields: &Fields<'a>,
    key: &str,
    path: &Path,
) -> Result<Vec<(Cow<'a, str>, Embedded<'a>)>> {
    if let Some(Json::Raw(raw)) = get(fields, key) {
        let text: &'a str = raw;
        if text != "{}" && text != "null" {
            if let Some(children) = parse_object_of_objects(text) {
                return Ok(children
                    .into_iter()
                    .map(|(key, child)| (key, Embedded::Parsed(raw_fields(child))))
                    .collect());
            }
        }
    }
    Ok(children_of(fields, key, path)?
        .into_iter()
        .map(|(key, value)| (key, Embedded::Raw(value)))
        .collect())
}

/// Fields of raw text as the merger holds them.
fn raw_fields(fields: crate::json::Fields<'_>) -> Fields<'_> {
    fields
        .into_iter()
        .map(|(key, value)| (key, Json::Raw(value)))
        .collect()
}

pub(crate) fn parse_object<'a>(bytes: &'a [u8], path: &Path) -> Result<Fields<'a>> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| CoreError::corrupt(path, format!("it is not UTF-8 ({e})")))?;
    parse_object_str(text).map_err(|reason| CoreError::corrupt(path, reason))
}

pub(crate) fn parse_object_str(text: &str) -> std::result::Result<Fields<'_>, String> {
    Ok(parse_json_object(text)?
        .into_iter()
        .map(|(key, value)| (key, Json::Raw(value)))
        .collect())
}

pub(crate) fn internal_name_of<'a>(fields: &Fields<'a>) -> Option<Cow<'a, str>> {
    let Json::Raw(raw) = get(fields, "internal_name")? else {
        return None;
    };
    let raw: &'a str = raw;
    match serde_json::from_str::<Text<'a>>(raw) {
        Ok(Text(name)) if !name.is_empty() => Some(name),
        _ => None,
    }
}

pub(crate) fn children_key(kind: ChunkKind) -> &'static str {
    match kind {
        ChunkKind::Step => "branches",
        ChunkKind::Branch => "steps",
    }
}

pub(crate) fn child_kind(kind: ChunkKind) -> ChunkKind {
    match kind {
        ChunkKind::Step => ChunkKind::Branch,
        ChunkKind::Branch => ChunkKind::Step,
    }
}

/// The embedded children of a document: (key, raw value) in stored order.
pub(crate) fn children_of<'a>(
    fields: &Fields<'a>,
    key: &str,
    path: &Path,
) -> Result<Vec<(Cow<'a, str>, &'a str)>> {
    let Some(Json::Raw(raw)) = get(fields, key) else {
        return Ok(Vec::new());
    };
    let text: &'a str = raw;
    if text == "{}" || text == "null" {
        return Ok(Vec::new());
    }
    parse_json_object(text)
        .map_err(|_| CoreError::corrupt(path, format!("{key:?} is not a JSON object")))
}
