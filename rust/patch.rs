//! Read-modify-write of a shared JSON document under the run's lock (docs/format.md,
//! "Read-modify-write and the lock").
//!
//! The patch is merged at the top level: keys in `merge_keys` are merged key by key (like
//! `dict.update`), every other key the patch names is replaced, and keys it does not name are
//! kept byte for byte (values are held as raw JSON, never re-parsed).

use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use crate::error::{CoreError, Result};
use crate::json::{parse_object, parse_object_bytes, refusal, write_object, Fields};
use crate::lock::FileLock;
use crate::writer::{read_file, write_atomic};

/// A document's top level as it is being changed: raw values from the bytes read, or merged.
type Changing<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

/// How to apply one patch.
#[derive(Debug, Clone)]
pub struct PatchOptions<'a> {
    pub lock_path: &'a Path,
    pub merge_keys: &'a [String],
    /// The document to start from when the target does not exist; without it a missing target
    /// is [`CoreError::NotFound`].
    pub create: Option<&'a [u8]>,
    pub fsync: bool,
    pub lock_timeout: Duration,
}

/// Apply `patch` to the JSON object at `path` under the lock; returns the bytes written.
pub fn patch_json(path: &Path, patch: &[u8], options: &PatchOptions<'_>) -> Result<Vec<u8>> {
    check_patch(patch)?;
    let _held = FileLock::acquire(options.lock_path, options.lock_timeout)?;
    let current = read_file(path)?;
    let bytes = apply_patch(
        path,
        current.as_deref(),
        patch,
        options.merge_keys,
        options.create,
    )?;
    write_atomic(path, &bytes, options.fsync, false)?;
    Ok(bytes)
}

fn check_patch(patch: &[u8]) -> Result<Fields<'_>> {
    parse_object_bytes(patch).map_err(|_| {
        CoreError::InvalidArgument(format!(
            "the patch is not a JSON object: {}",
            refusal(patch)
        ))
    })
}

/// The document `patch` turns `current` into (`create` when there is none yet; without it a
/// missing document is [`CoreError::NotFound`] at `path`). The pure half of [`patch_json`],
/// shared with the object stores, which write the result with a conditional PUT instead of
/// under a lock. Values are copied as they are stored, non-finite numbers included.
pub fn apply_patch(
    path: &Path,
    current: Option<&[u8]>,
    patch: &[u8],
    merge_keys: &[String],
    create: Option<&[u8]>,
) -> Result<Vec<u8>> {
    let patch = check_patch(patch)?;
    let document = match (current, create) {
        (Some(bytes), _) => parse_object_bytes(bytes).map_err(|_| {
            CoreError::corrupt(path, format!("not a JSON object: {}", refusal(bytes)))
        })?,
        (None, Some(initial)) => parse_object_bytes(initial).map_err(|_| {
            CoreError::InvalidArgument(format!(
                "the initial document is not a JSON object: {}",
                refusal(initial)
            ))
        })?,
        (None, None) => {
            return Err(CoreError::NotFound {
                path: path.to_path_buf(),
            })
        }
    };
    let mut document = deduplicated(document);
    for (key, value) in patch {
        if merge_keys.iter().any(|k| k == &key) {
            let stored = document
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.as_ref());
            let merged = merge_objects(stored, value, path, &key)?;
            set(&mut document, key, Cow::Owned(merged));
        } else {
            set(&mut document, key, Cow::Borrowed(value));
        }
    }
    let mut out = Vec::new();
    write_object(
        &mut out,
        document.iter().map(|(k, v)| (k.as_ref(), v.as_ref())),
    );
    Ok(out)
}

/// Fields with each key once, where it first was, with its last value (as a JSON parser that
/// keeps the last of duplicate keys reads them).
fn deduplicated(fields: Fields<'_>) -> Changing<'_> {
    let mut out: Changing<'_> = Vec::with_capacity(fields.len());
    for (key, value) in fields {
        set(&mut out, key, Cow::Borrowed(value));
    }
    out
}

fn set<'a>(fields: &mut Changing<'a>, key: Cow<'a, str>, value: Cow<'a, str>) {
    match fields.iter_mut().find(|(k, _)| *k == key) {
        Some(entry) => entry.1 = value,
        None => fields.push((key, value)),
    }
}

fn merge_objects(current: Option<&str>, update: &str, path: &Path, key: &str) -> Result<String> {
    let update = parse_object(update).map_err(|_| {
        CoreError::InvalidArgument(format!("the patch's {key:?} must be a JSON object"))
    })?;
    let mut merged = match current {
        Some(raw) if raw.trim_ascii() != "null" => {
            deduplicated(parse_object(raw).map_err(|_| {
                let reason = refusal(raw.as_bytes());
                CoreError::corrupt(path, format!("{key:?} is not a JSON object: {reason}"))
            })?)
        }
        _ => Changing::new(),
    };
    for (name, value) in update {
        set(&mut merged, name, Cow::Borrowed(value));
    }
    let mut out = Vec::new();
    write_object(
        &mut out,
        merged.iter().map(|(k, v)| (k.as_ref(), v.as_ref())),
    );
    Ok(String::from_utf8(out).expect("JSON text is UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options<'a>(
        lock: &'a Path,
        merge: &'a [String],
        create: Option<&'a [u8]>,
    ) -> PatchOptions<'a> {
        PatchOptions {
            lock_path: lock,
            merge_keys: merge,
            create,
            fsync: false,
            lock_timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn merges_named_keys_replaces_others_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let (path, lock) = (dir.path().join("RunLog.json"), dir.path().join(".lock"));
        std::fs::write(
            &path,
            br#"{"_created_ns":5,"status":"CREATED","parameters":{"a":1},"steps":{"x":{"n": 1}}}"#,
        )
        .unwrap();
        let merge = vec!["parameters".to_string()];
        let out = patch_json(
            &path,
            br#"{"status":"SUCCESS","parameters":{"b":2}}"#,
            &options(&lock, &merge, None),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"_created_ns":5,"status":"SUCCESS","parameters":{"a":1,"b":2},"steps":{"x":{"n": 1}}}"#
        );
    }

    #[test]
    fn missing_target_needs_create() {
        let dir = tempfile::tempdir().unwrap();
        let (path, lock) = (dir.path().join("B.json"), dir.path().join(".lock"));
        let err = patch_json(&path, b"{}", &options(&lock, &[], None)).unwrap_err();
        assert!(matches!(err, CoreError::NotFound { .. }));
        let out = patch_json(
            &path,
            br#"{"status":"FAIL"}"#,
            &options(&lock, &[], Some(br#"{"status":"CREATED","steps":{}}"#)),
        )
        .unwrap();
        assert_eq!(out, br#"{"status":"FAIL","steps":{}}"#);
    }

    #[test]
    fn corrupt_target_is_named_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (path, lock) = (dir.path().join("RunLog.json"), dir.path().join(".lock"));
        std::fs::write(&path, b"{\"status\": ").unwrap();
        let err = patch_json(&path, b"{}", &options(&lock, &[], None)).unwrap_err();
        assert!(matches!(err, CoreError::Corrupt { .. }));
        assert!(err.to_string().contains("RunLog.json"));
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"status\": ");
    }

    #[test]
    fn bad_patch_is_an_argument_error() {
        let dir = tempfile::tempdir().unwrap();
        let (path, lock) = (dir.path().join("R.json"), dir.path().join(".lock"));
        let err = patch_json(&path, b"[1]", &options(&lock, &[], None)).unwrap_err();
        assert!(matches!(err, CoreError::InvalidArgument(_)));
    }

    #[test]
    fn concurrent_patches_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("RunLog.json");
        let lock = dir.path().join(".lock");
        std::fs::write(&path, br#"{"parameters":{}}"#).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (path, lock) = (path.clone(), lock.clone());
                std::thread::spawn(move || {
                    let merge = vec!["parameters".to_string()];
                    for i in 0..50 {
                        let patch = format!(r#"{{"parameters":{{"p{t}_{i}":{i}}}}}"#);
                        patch_json(&path, patch.as_bytes(), &options(&lock, &merge, None)).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(doc["parameters"].as_object().unwrap().len(), 200);
    }
}
