//! One stored document of runnable's chunked layout, and folding journal records into it
//! (docs/format.md, "The fold").
//!
//! A document is `RunLog.json` (the run's fields and its root steps) or a
//! `BranchLog-<name>.json` (a branch's fields and its direct steps). Each of them, and each step
//! it embeds, may carry two hidden keys runnable's models ignore: `_created_ns` (when it was
//! first written, to order siblings) and `_stamp` (the stamp of the last journal record folded
//! into it). Folding a record means applying it to the document's own fields or to one embedded
//! step, and only when its stamp is later than the stamp already there: so folding twice
//! changes nothing, and a record already folded is never applied again by a reader.
//!
//! The full merger (`merger`) reads every document; this model reads one, for the reads and
//! folds that concern one branch, one step or the run's own fields.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::chunk::{CHUNK_INDEX_KEY, CREATED_NS_KEY};
use crate::error::{CoreError, Result};
use crate::journal::{Record, RecordKind};
use crate::merger::natural_cmp;
use crate::merger::parsing::{
    children_of, internal_name_of, parse_object, parse_object_str, remove, take_stamp, Fields,
};
use crate::merger::records::{apply_record, made_up_branch};
use crate::merger::writing::{write_hidden, write_key};

/// A step embedded in a document.
struct Child<'a> {
    name: Cow<'a, str>,
    fields: Fields<'a>,
    created_ns: Option<i64>,
    stamp: i64,
    /// Stored order, for embedded steps without a creation time (runnable's own).
    sequence: usize,
}

/// A document with the records folded into it so far.
pub struct Doc<'a> {
    path: PathBuf,
    exists: bool,
    fields: Fields<'a>,
    created_ns: Option<i64>,
    stamp: i64,
    children: Vec<Child<'a>>,
    by_name: HashMap<String, usize>,
    changed: bool,
}

impl<'a> Doc<'a> {
    /// A stored document. Its embedded steps are under `steps` (both kinds of document hold
    /// steps).
    pub fn parse(bytes: &'a [u8], path: PathBuf) -> Result<Doc<'a>> {
        let mut fields = parse_object(bytes, &path)?;
        let created_ns = match remove(&mut fields, CREATED_NS_KEY) {
            None => None,
            Some(value) => Some(serde_json::from_str::<i64>(value.text()).map_err(|_| {
                CoreError::corrupt(&path, format!("{CREATED_NS_KEY:?} is not an integer"))
            })?),
        };
        let stamp = take_stamp(&mut fields, &path)?;
        remove(&mut fields, CHUNK_INDEX_KEY);
        let mut doc = Doc {
            path,
            exists: true,
            fields,
            created_ns,
            stamp,
            children: Vec::new(),
            by_name: HashMap::new(),
            changed: false,
        };
        for (key, value) in children_of(&doc.fields, "steps", &doc.path)? {
            let mut fields = parse_object_str(value).map_err(|_| {
                CoreError::corrupt(&doc.path, format!("step {key:?} is not a JSON object"))
            })?;
            let created_ns = remove(&mut fields, CREATED_NS_KEY)
                .and_then(|v| serde_json::from_str::<i64>(v.text()).ok());
            let stamp = take_stamp(&mut fields, &doc.path)?;
            remove(&mut fields, CHUNK_INDEX_KEY);
            let name = internal_name_of(&fields).unwrap_or(key);
            doc.add_child(Child {
                name,
                fields,
                created_ns,
                stamp,
                sequence: doc.children.len(),
            });
        }
        Ok(doc)
    }

    /// A document not stored yet (a branch's, before its first fold).
    pub fn missing(path: PathBuf) -> Doc<'a> {
        Doc {
            path,
            exists: false,
            fields: Vec::new(),
            created_ns: None,
            stamp: 0,
            children: Vec::new(),
            by_name: HashMap::new(),
            changed: false,
        }
    }

    fn add_child(&mut self, child: Child<'a>) {
        match self.by_name.get(child.name.as_ref()) {
            // A name embedded twice: the later stamp wins, then the later copy.
            Some(&at) if self.children[at].stamp > child.stamp => {}
            Some(&at) => {
                let sequence = self.children[at].sequence;
                self.children[at] = Child { sequence, ..child };
            }
            None => {
                self.by_name
                    .insert(child.name.to_string(), self.children.len());
                self.children.push(child);
            }
        }
    }

    pub fn exists(&self) -> bool {
        self.exists
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether folding changed anything (a document that does not exist yet counts as changed
    /// once it has fields).
    pub fn changed(&self) -> bool {
        self.changed
    }

    /// Whether the document holds anything: its own fields (a branch that was stored) or steps.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.children.is_empty()
    }

    pub fn stamp(&self) -> i64 {
        self.stamp
    }

    pub fn has_fields(&self) -> bool {
        !self.fields.is_empty()
    }

    /// The stamp of an embedded step (0 when it has none), or None when it is not embedded.
    pub fn child_stamp(&self, name: &str) -> Option<i64> {
        self.by_name.get(name).map(|&at| self.children[at].stamp)
    }

    /// Fold a record of the document's own fields (a run or branch record) if it is newer.
    pub fn fold_own(&mut self, record: &'a Record, journal_dir: &Path) -> Result<()> {
        if record.stamp <= self.stamp {
            return Ok(());
        }
        if self.fields.is_empty() && record.kind == RecordKind::BranchMerge {
            self.fields = made_up_branch(&record.target);
        }
        apply_record(&mut self.fields, record, journal_dir)?;
        if self.created_ns.is_none() && !self.exists {
            self.created_ns = Some(record.stamp);
        }
        self.stamp = record.stamp;
        self.changed = true;
        Ok(())
    }

    /// Fold a step record into the step it embeds (added when missing) if it is newer.
    pub fn fold_step(&mut self, record: &'a Record, journal_dir: &Path) -> Result<()> {
        let at = match self.by_name.get(record.target.as_str()) {
            Some(&at) => at,
            None => {
                self.add_child(Child {
                    name: Cow::Borrowed(record.target.as_str()),
                    fields: Vec::new(),
                    created_ns: Some(record.stamp),
                    stamp: 0,
                    sequence: self.children.len(),
                });
                self.children.len() - 1
            }
        };
        let child = &mut self.children[at];
        if record.stamp <= child.stamp {
            return Ok(());
        }
        apply_record(&mut child.fields, record, journal_dir)?;
        child.stamp = record.stamp;
        if let Some(created) = child.created_ns {
            child.created_ns = Some(created.min(record.stamp));
        }
        self.changed = true;
        Ok(())
    }

    /// A document of one step: a step stored whole at the top level of its own file (format
    /// 1's `StepLog-<key>.json`, `_created_ns` first).
    pub fn single_step(bytes: &'a [u8], path: PathBuf) -> Result<Doc<'a>> {
        let mut fields = parse_object(bytes, &path)?;
        let created_ns = match remove(&mut fields, CREATED_NS_KEY) {
            None => None,
            Some(value) => Some(serde_json::from_str::<i64>(value.text()).map_err(|_| {
                CoreError::corrupt(&path, format!("{CREATED_NS_KEY:?} is not an integer"))
            })?),
        };
        let stamp = take_stamp(&mut fields, &path)?;
        let name = internal_name_of(&fields)
            .ok_or_else(|| CoreError::corrupt(&path, "it has no string \"internal_name\""))?;
        let mut doc = Doc::missing(path);
        doc.exists = true;
        doc.add_child(Child {
            name,
            fields,
            created_ns,
            stamp,
            sequence: 0,
        });
        Ok(doc)
    }

    /// The document's own fields with `"steps": {}`, no hidden keys.
    pub fn clean_fields(&self) -> Vec<u8> {
        let mut out = Vec::new();
        write_fields_as(&mut out, &self.fields, "steps");
        out
    }

    /// The document as stored: hidden keys kept, steps in order.
    pub fn stored(&self) -> Vec<u8> {
        self.write(true)
    }

    /// The document as the API gives it: no hidden keys.
    pub fn clean(&self) -> Vec<u8> {
        self.write(false)
    }

    /// One embedded step as the API gives it; None when it is not embedded (or only a record
    /// of it was seen that put nothing).
    pub fn step(&self, name: &str) -> Option<Vec<u8>> {
        let &at = self.by_name.get(name)?;
        let child = &self.children[at];
        if child.fields.is_empty() {
            return None;
        }
        let mut out = Vec::new();
        write_fields(&mut out, &child.fields, None, 0, false);
        Some(out)
    }

    fn write(&self, hidden: bool) -> Vec<u8> {
        let mut order: Vec<usize> = (0..self.children.len())
            .filter(|&at| !self.children[at].fields.is_empty())
            .collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&self.children[a], &self.children[b]);
            let key = |c: &Child<'_>| match c.created_ns {
                None => (false, c.sequence, 0),
                Some(created) => (true, 0, created),
            };
            key(a)
                .cmp(&key(b))
                .then_with(|| natural_cmp(&a.name, &b.name))
        });
        let size: usize = self
            .children
            .iter()
            .flat_map(|c| c.fields.iter())
            .chain(self.fields.iter())
            .map(|(k, v)| k.len() + v.text().len() + 4)
            .sum();
        let mut out = Vec::with_capacity(size + 64 * (self.children.len() + 1));
        out.push(b'{');
        let any = hidden && write_hidden(&mut out, self.created_ns, self.stamp);
        let mut written = false;
        for (index, (key, value)) in self.fields.iter().enumerate() {
            if index > 0 || any {
                out.push(b',');
            }
            write_key(&mut out, key);
            if key == "steps" && !written {
                written = true;
                self.write_children(&mut out, &order, hidden);
            } else {
                out.extend_from_slice(value.text().as_bytes());
            }
        }
        if !written {
            if !self.fields.is_empty() || any {
                out.push(b',');
            }
            write_key(&mut out, "steps");
            self.write_children(&mut out, &order, hidden);
        }
        out.push(b'}');
        out
    }

    fn write_children(&self, out: &mut Vec<u8>, order: &[usize], hidden: bool) {
        out.push(b'{');
        for (index, &at) in order.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            let child = &self.children[at];
            write_key(out, &child.name);
            write_fields(out, &child.fields, child.created_ns, child.stamp, hidden);
        }
        out.push(b'}');
    }
}

/// Fields as a JSON object with `{}` under `key` (added at the end when missing).
fn write_fields_as(out: &mut Vec<u8>, fields: &Fields<'_>, key: &str) {
    out.push(b'{');
    for (index, (name, value)) in fields.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_key(out, name);
        if name == key {
            out.extend_from_slice(b"{}");
        } else {
            out.extend_from_slice(value.text().as_bytes());
        }
    }
    if !fields.iter().any(|(k, _)| k == key) {
        if !fields.is_empty() {
            out.push(b',');
        }
        write_key(out, key);
        out.extend_from_slice(b"{}");
    }
    out.push(b'}');
}

/// A step's fields as a JSON object, with its hidden keys first when `hidden`.
fn write_fields(
    out: &mut Vec<u8>,
    fields: &Fields<'_>,
    created_ns: Option<i64>,
    stamp: i64,
    hidden: bool,
) {
    out.push(b'{');
    let any = hidden && write_hidden(out, created_ns, stamp);
    for (index, (key, value)) in fields.iter().enumerate() {
        if index > 0 || any {
            out.push(b',');
        }
        write_key(out, key);
        out.extend_from_slice(value.text().as_bytes());
    }
    if !fields.iter().any(|(k, _)| k == "branches") {
        if !fields.is_empty() || any {
            out.push(b',');
        }
        write_key(out, "branches");
        out.extend_from_slice(b"{}");
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn record(stamp: i64, kind: RecordKind, target: &str, body: &str) -> Record {
        Record {
            stamp,
            kind,
            target: target.to_string(),
            body: body.as_bytes().to_vec(),
            journal: Arc::from("j.journal"),
            offset: stamp as u64,
        }
    }

    fn json(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bytes).unwrap()
    }

    const BRANCH: &str = r#"{"_created_ns":5,"_stamp":20,"internal_name":"m.1","status":"PROCESSING","steps":{"m.1.a":{"_created_ns":6,"_stamp":20,"name":"a","internal_name":"m.1.a","status":"CREATED","branches":{}}},"parameters":{"x":1}}"#;

    #[test]
    fn later_records_fold_in_and_earlier_ones_do_not() {
        let journal = Path::new("/r/.journals");
        let doc_bytes = BRANCH.as_bytes();
        let mut doc = Doc::parse(doc_bytes, PathBuf::from("/r/BranchLog-m.1.json")).unwrap();
        let old = record(
            19,
            RecordKind::BranchPut,
            "m.1",
            r#"{"internal_name":"m.1","status":"OLD","steps":{},"parameters":{}}"#,
        );
        let params = record(
            21,
            RecordKind::BranchMerge,
            "m.1",
            r#"{"parameters":{"y":2}}"#,
        );
        let step_old = record(
            20,
            RecordKind::StepPut,
            "m.1.a",
            r#"{"name":"a","internal_name":"m.1.a","status":"STALE","branches":{}}"#,
        );
        let step = record(
            22,
            RecordKind::StepPut,
            "m.1.b",
            r#"{"name":"b","internal_name":"m.1.b","status":"SUCCESS","branches":{}}"#,
        );
        for r in [&old, &step_old] {
            if r.kind == RecordKind::StepPut {
                doc.fold_step(r, journal).unwrap();
            } else {
                doc.fold_own(r, journal).unwrap();
            }
        }
        assert!(!doc.changed());
        assert_eq!(doc.stored(), doc_bytes, "nothing newer: the same bytes");
        doc.fold_own(&params, journal).unwrap();
        doc.fold_step(&step, journal).unwrap();
        let stored = json(&doc.stored());
        assert_eq!(stored["_stamp"], 21);
        assert_eq!(stored["_created_ns"], 5);
        assert_eq!(stored["parameters"], serde_json::json!({"x": 1, "y": 2}));
        assert_eq!(stored["status"], "PROCESSING");
        let steps: Vec<_> = stored["steps"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(steps, ["m.1.a", "m.1.b"]);
        assert_eq!(stored["steps"]["m.1.b"]["_stamp"], 22);
        assert_eq!(stored["steps"]["m.1.b"]["_created_ns"], 22);
        let clean = json(&doc.clean());
        assert!(clean.get("_stamp").is_none());
        assert!(clean["steps"]["m.1.b"].get("_created_ns").is_none());
        assert_eq!(clean["steps"]["m.1.b"]["status"], "SUCCESS");
        // Folding the same records again changes nothing.
        let again_bytes = doc.stored();
        let mut again = Doc::parse(&again_bytes, PathBuf::from("x")).unwrap();
        again.fold_own(&params, journal).unwrap();
        again.fold_step(&step, journal).unwrap();
        assert!(!again.changed());
        assert_eq!(again.stored(), again_bytes);
    }

    #[test]
    fn a_missing_branch_document_is_made_from_its_records() {
        let journal = Path::new("/r/.journals");
        let put = record(
            30,
            RecordKind::BranchPut,
            "m.2",
            r#"{"internal_name":"m.2","status":"SUCCESS","steps":{},"parameters":{}}"#,
        );
        let mut doc = Doc::missing(PathBuf::from("/r/BranchLog-m.2.json"));
        assert!(doc.is_empty());
        doc.fold_own(&put, journal).unwrap();
        let stored = json(&doc.stored());
        assert_eq!(
            stored,
            serde_json::json!({"_created_ns": 30, "_stamp": 30, "internal_name": "m.2", "status": "SUCCESS", "steps": {}, "parameters": {}})
        );
    }

    #[test]
    fn runnable_documents_keep_their_order_and_shape() {
        let stored = br#"{"run_id": "r", "steps": {"b": {"name": "b", "internal_name": "b", "branches": {}}, "a": {"name": "a", "internal_name": "a", "branches": {}}}, "status": "SUCCESS"}"#;
        let doc = Doc::parse(stored, PathBuf::from("RunLog.json")).unwrap();
        let out = json(&doc.stored());
        let steps: Vec<_> = out["steps"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(steps, ["b", "a"]);
        assert_eq!(out, json(stored));
    }
}
