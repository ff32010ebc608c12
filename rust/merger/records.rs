//! Journal records applied to the fields of what they are about (a put, a set, a merge), as
//! the merger and the fold both apply them.

use std::borrow::Cow;
use std::path::Path;

use super::parsing::{object_fields, parse_object_str, set, Fields, Json, MergedObject};
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
                let merged = merge_objects(fields, &key, &value)
                    .map_err(|reason| record_error(&path, record, format!("{key:?} {reason}")))?;
                set(fields, key, Json::Merged(Box::new(merged)));
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

/// `update` merged into the current value of `key` in `fields`, key by key (`dict.update`); a
/// missing or null current value is an empty object. A value merged before is taken over as it
/// is (not parsed again), so each record costs what it sets, not what the object holds.
fn merge_objects<'a>(
    fields: &mut Fields<'a>,
    key: &str,
    update: &Json<'a>,
) -> std::result::Result<MergedObject<'a>, String> {
    let update = object_fields(update).map_err(|_| "must be a JSON object".to_string())?;
    let current = fields
        .iter_mut()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, value)| value);
    let mut merged = match current {
        Some(Json::Merged(object)) => std::mem::take(&mut **object),
        Some(value) if value.text().trim() != "null" => MergedObject::from_fields(
            object_fields(value)
                .map_err(|_| "is stored as something else than a JSON object".to_string())?,
        ),
        _ => MergedObject::default(),
    };
    for (key, value) in update {
        merged.set(key, value);
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::merger::parsing::get;

    fn record(kind: RecordKind, stamp: i64, body: String) -> Record {
        Record {
            stamp,
            kind,
            target: if kind == RecordKind::BranchMerge {
                "map.a".to_string()
            } else {
                String::new()
            },
            body: body.into_bytes(),
            journal: Arc::from("journal-1"),
            offset: stamp as u64 * 10,
        }
    }

    fn text_of(fields: &Fields<'_>) -> Vec<(String, String)> {
        fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.text().to_string()))
            .collect()
    }

    /// The merge as it was first written: the stored object parsed, updated with [`set`] and
    /// written again for every record. Obviously right, and quadratic.
    fn reference_apply(
        fields: &mut Vec<(String, String)>,
        body: &str,
    ) -> std::result::Result<(), String> {
        let new = parse_object_str(body)?;
        for (key, value) in new {
            if key == CREATED_NS_KEY || key == STAMP_KEY || key == CHUNK_INDEX_KEY || key == "steps"
            {
                continue;
            }
            let update = parse_object_str(value.text())
                .map_err(|_| format!("{key:?} must be a JSON object"))?;
            let current = fields
                .iter()
                .rev()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.clone());
            let mut merged: Fields<'_> = match &current {
                Some(v) if v.trim() != "null" => parse_object_str(v).map_err(|_| {
                    format!("{key:?} is stored as something else than a JSON object")
                })?,
                _ => Vec::new(),
            };
            for (k, v) in update {
                set(&mut merged, k, v);
            }
            let mut out = vec![b'{'];
            for (i, (k, v)) in merged.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                crate::json::write_key(&mut out, k);
                out.extend_from_slice(v.text().as_bytes());
            }
            out.push(b'}');
            let text = String::from_utf8(out).unwrap();
            match fields.iter().position(|(k, _)| *k == key) {
                Some(first) => {
                    fields[first].1 = text;
                    let mut at = first + 1;
                    while at < fields.len() {
                        if fields[at].0 == *key {
                            fields.remove(at);
                        } else {
                            at += 1;
                        }
                    }
                }
                None => fields.push((key.to_string(), text)),
            }
        }
        Ok(())
    }

    #[test]
    fn twenty_thousand_merges_of_new_keys_keep_every_key_in_order() {
        for kind in [RecordKind::RunMerge, RecordKind::BranchMerge] {
            let records: Vec<Record> = (0..20_000)
                .map(|i| {
                    let body = format!(r#"{{"parameters":{{"key{i}":"{}"}}}}"#, "x".repeat(i % 7));
                    record(kind, i as i64 + 1, body)
                })
                .collect();
            let mut fields = if kind == RecordKind::BranchMerge {
                made_up_branch("map.a")
            } else {
                parse_object_str(r#"{"run_id":"r","parameters":{},"run_config":{}}"#).unwrap()
            };
            for record in &records {
                apply_record(&mut fields, record, Path::new("/run/.journal")).unwrap();
            }
            let parameters: serde_json::Value =
                serde_json::from_str(get(&fields, "parameters").unwrap().text()).unwrap();
            let object = parameters.as_object().unwrap();
            assert_eq!(object.len(), 20_000);
            for (i, (key, value)) in object.iter().enumerate() {
                assert_eq!(key, &format!("key{i}"));
                assert_eq!(value.as_str().unwrap(), "x".repeat(i % 7));
            }
        }
    }

    #[test]
    fn merges_write_what_the_reference_writes_on_random_records() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: u64| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) % n
        };
        let values = [
            "1",
            "null",
            "\"a\"",
            "[1,2]",
            "{\"x\":1}",
            "-0.5",
            "\"\\u00e9\"",
        ];
        let keys = ["a", "b", "c", "d", "e\\\"q", "\\u0061", "f"];
        let outer = ["parameters", "run_config", "steps", "_stamp", "other"];
        let mut failures = 0;
        for round in 0..300 {
            // A stored object, possibly with duplicate keys, null, or not an object.
            let start = match next(5) {
                0 => r#"{"run_id":"r","parameters":null}"#.to_string(),
                1 => r#"{"run_id":"r","parameters":{"a":1,"b":2,"a":3},"other":{},"parameters":{"c":1,"c":2}}"#.to_string(),
                2 => r#"{"run_id":"r","other":[1]}"#.to_string(),
                3 => r#"{"run_id":"r"}"#.to_string(),
                _ => r#"{"run_id":"r","parameters":{"b":1,"a":{"n":[]}},"run_config":{}}"#.to_string(),
            };
            let mut fields = parse_object_str(&start).unwrap();
            let mut reference: Vec<(String, String)> = text_of(&fields);
            let records: Vec<Record> = (0..60)
                .map(|i| {
                    let mut body = String::from("{");
                    for j in 0..=next(3) {
                        if j > 0 {
                            body.push(',');
                        }
                        let name = outer[next(outer.len() as u64) as usize];
                        body.push_str(&format!("\"{name}\":"));
                        if next(25) == 0 {
                            body.push_str(values[next(values.len() as u64) as usize]);
                            continue;
                        }
                        body.push('{');
                        for k in 0..next(4) {
                            if k > 0 {
                                body.push(',');
                            }
                            let key = if next(3) == 0 {
                                format!("new{round}_{i}_{k}")
                            } else {
                                keys[next(keys.len() as u64) as usize].to_string()
                            };
                            let value = values[next(values.len() as u64) as usize];
                            body.push_str(&format!("\"{key}\":{value}"));
                        }
                        body.push('}');
                    }
                    body.push('}');
                    record(RecordKind::RunMerge, i as i64 + 1, body)
                })
                .collect();
            for record in &records {
                let body = std::str::from_utf8(&record.body).unwrap();
                let expected = reference_apply(&mut reference, body);
                let got = apply_record(&mut fields, record, Path::new("/run/.journal"));
                match (&expected, &got) {
                    (Ok(()), Ok(())) => {}
                    (Err(reason), Err(err)) => {
                        let message = err.to_string();
                        assert!(message.contains(reason.as_str()), "{message} / {reason}");
                        assert!(message.contains("offset"), "{message}");
                        assert!(message.contains("journal-1"), "{message}");
                        failures += 1;
                    }
                    _ => panic!("round {round}: {body}: {expected:?} / {got:?}"),
                }
                assert_eq!(text_of(&fields), reference, "round {round}: {body}");
            }
        }
        assert!(
            failures > 0,
            "no record was refused: the errors went untested"
        );
    }
}
