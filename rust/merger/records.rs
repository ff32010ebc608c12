//! Journal records applied to the fields of what they are about (a put, a set, a merge), as
//! the merger and the fold both apply them.

use std::borrow::Cow;
use std::path::Path;

use super::parsing::{get, parse_object_str, set, Fields, Json};
use super::writing::write_key;
use crate::chunk::{CHUNK_INDEX_KEY, CREATED_NS_KEY, STAMP_KEY};
use crate::error::{CoreError, Result};
use crate::journal::{Record, RecordKind};

/// The fields a branch has before anything is recorded of it (a merge record on a branch no
/// record or document put).
pub(crate) fn made_up_branch<'a>(name: &str) -> Fields<'a> {
    vec![
        (
            Cow::Borrowed("internal_name"),
            Json::Owned(serde_json::Value::from(name).to_string()),
        ),
        (
            Cow::Borrowed("status"),
            Json::Owned("\"CREATED\"".to_string()),
        ),
        (Cow::Borrowed("steps"), Json::Owned("{}".to_string())),
        (Cow::Borrowed("parameters"), Json::Owned("{}".to_string())),
    ]
}

/// Apply one journal record to the fields of what it is about. A put replaces every field (the
/// node's children are nodes of their own, so they are kept); a set replaces the fields the
/// body names; a merge merges each object the body names into the stored one, key by key.
/// Hidden keys in a body are ignored, and a run record never replaces the root steps.
pub(crate) fn apply_record<'a>(
    fields: &mut Fields<'a>,
    record: &'a Record,
    journal_dir: &Path,
) -> Result<()> {
    let path = journal_dir.join(&*record.journal);
    let body = std::str::from_utf8(&record.body)
        .map_err(|_| record_error(&path, record, "its body is not UTF-8".to_string()))?;
    let new = parse_object_str(body).map_err(|reason| record_error(&path, record, reason))?;
    let hidden = |key: &str| key == CREATED_NS_KEY || key == STAMP_KEY || key == CHUNK_INDEX_KEY;
    match record.kind {
        RecordKind::StepPut | RecordKind::BranchPut => {
            *fields = new.into_iter().filter(|(k, _)| !hidden(k)).collect();
        }
        RecordKind::RunSet => {
            for (key, value) in new {
                if !hidden(&key) && key != "steps" {
                    set(fields, key, value);
                }
            }
        }
        RecordKind::RunMerge | RecordKind::BranchMerge => {
            for (key, value) in new {
                if hidden(&key) || key == "steps" {
                    continue;
                }
                let merged = merge_objects(get(fields, &key), &value)
                    .map_err(|reason| record_error(&path, record, format!("{key:?} {reason}")))?;
                set(fields, key, Json::Owned(merged));
            }
        }
    }
    Ok(())
}

/// A record of the run's fields must not name another run: one that would (written by
/// someone else into a journal of this run) is [`CoreError::RunIdMismatch`] naming its journal.
pub(crate) fn check_run_record(record: &Record, asked: &str, journal_dir: &Path) -> Result<()> {
    let Ok(body) = std::str::from_utf8(&record.body) else {
        return Ok(()); // applying it says what is wrong with it
    };
    let Ok(fields) = crate::json::parse_object(body) else {
        return Ok(());
    };
    let Some((_, raw)) = fields.iter().rev().find(|(key, _)| key == "run_id") else {
        return Ok(());
    };
    let found = serde_json::from_str::<String>(raw).unwrap_or_else(|_| raw.to_string());
    if found == asked {
        return Ok(());
    }
    Err(CoreError::RunIdMismatch {
        path: journal_dir.join(&*record.journal),
        asked: asked.to_string(),
        found,
    })
}

fn record_error(path: &Path, record: &Record, reason: String) -> CoreError {
    CoreError::corrupt(
        path,
        format!(
            "the journal record at offset {} ({:?}) is not valid: {reason}",
            record.offset, record.target
        ),
    )
}

/// `update` merged into `current` key by key (`dict.update`); a missing or null current value
/// is an empty object.
fn merge_objects(
    current: Option<&Json<'_>>,
    update: &Json<'_>,
) -> std::result::Result<String, String> {
    let update =
        parse_object_str(update.text()).map_err(|_| "must be a JSON object".to_string())?;
    let mut merged: Fields<'_> = match current {
        Some(value) if value.text().trim() != "null" => parse_object_str(value.text())
            .map_err(|_| "is stored as something else than a JSON object".to_string())?,
        _ => Vec::new(),
    };
    for (key, value) in update {
        set(&mut merged, key, value);
    }
    let mut out = Vec::with_capacity(64);
    out.push(b'{');
    for (i, (key, value)) in merged.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_key(&mut out, key);
        out.extend_from_slice(value.text().as_bytes());
    }
    out.push(b'}');
    Ok(String::from_utf8(out).expect("JSON text is UTF-8"))
}
