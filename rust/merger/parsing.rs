//! The top level of a stored JSON object as (key, raw value) fields borrowed from the file's
//! bytes, the helpers that read and change them, and a chunk parsed into the nodes it holds.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use super::tree::{NewNode, Position};
use crate::chunk::{CHUNK_INDEX_KEY, CREATED_NS_KEY, STAMP_KEY};
use crate::error::{CoreError, Result};
use crate::json::{parse_object as parse_json_object, Text};
use crate::names::{legacy_created_ns, ChunkKind};

/// A field value: raw JSON from a file (non-finite tokens included), or made up by the merger.
#[derive(Debug, Clone)]
pub(crate) enum Json<'a> {
    Raw(&'a str),
    Owned(String),
}

impl Json<'_> {
    pub(crate) fn text(&self) -> &str {
        match self {
            Json::Raw(raw) => raw,
            Json::Owned(text) => text,
        }
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
    let mut fields = parse_object(bytes, &path)?;
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
    let children = children_of(&fields, children_key(kind), &path)?;
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
    children: Vec<(Cow<'a, str>, &'a str)>,
    kind: ChunkKind,
    path: &Path,
) -> Result<Vec<NewNode<'a>>> {
    let mut out = Vec::new();
    let mut sequence = 0;
    let mut pending: Vec<(Cow<'a, str>, &'a str, ChunkKind)> = children
        .into_iter()
        .map(|(k, v)| (k, v, kind))
        .rev()
        .collect();
    while let Some((key, value, kind)) = pending.pop() {
        let mut fields = parse_object_str(value)
            .map_err(|_| CoreError::corrupt(path, format!("{key:?} is not a JSON object")))?;
        // A chunk embedded whole (a sealed or folded branch) keeps its creation time, its
        // stamp and its place.
        let created_ns = remove(&mut fields, CREATED_NS_KEY)
            .and_then(|v| serde_json::from_str::<i64>(v.text()).ok());
        let stamp = take_stamp(&mut fields, path)?;
        remove(&mut fields, CHUNK_INDEX_KEY);
        let name = internal_name_of(&fields).unwrap_or(key);
        let grandchildren = children_of(&fields, children_key(kind), path)?;
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
