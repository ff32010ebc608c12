//! Steps and branches inside one whole run log document: the layout of the `file-system` and
//! `minio` stores (docs/format.md, "file-system"), where the run, its steps and its branches at
//! every depth are one JSON document.
//!
//! A store changes one step or branch of such a run many times (runnable stores every step
//! several times, and reads it back as often). Validating and dumping the whole run with pydantic
//! for each of those costs O(run) in Python objects; here only the objects on the path from the
//! root to the node are parsed, everything else is carried as raw JSON, byte for byte.
//!
//! The walk is the merger's (and `RunLog._descend`'s): at each level take the longest dot-prefix
//! of the internal name stored there, so a dot inside a step name or a map value does not
//! mislead it.

use crate::error::{CoreError, Result};
use crate::json::{parse_object_bytes, refusal, write_object};
use crate::nesting::{self, Part};

/// The top level of an object on the path, each key once (where it first was, with its last
/// value, as a parser keeping the last of duplicate keys reads it); values are raw JSON text.
#[derive(Debug, Default, Clone)]
struct Object(Vec<(String, String)>);

impl Object {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Replace the value of `key` where it is, or add it at the end.
    fn insert(&mut self, key: String, value: String) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.0.push((key, value)),
        }
    }

    fn text(&self) -> String {
        let mut out = Vec::new();
        write_object(
            &mut out,
            self.0.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        String::from_utf8(out).expect("JSON text is UTF-8")
    }
}

/// What a node is: a step (under the run or a branch) or a branch (under a step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Step,
    Branch,
}

impl NodeKind {
    pub fn parse(kind: &str) -> Result<Self> {
        match kind {
            "step" => Ok(NodeKind::Step),
            "branch" => Ok(NodeKind::Branch),
            other => Err(CoreError::InvalidArgument(format!(
                "a node is a 'step' or a 'branch', not {other:?}"
            ))),
        }
    }

    /// The key under which a node of this kind keeps its children.
    fn children_key(self) -> &'static str {
        match self {
            NodeKind::Step => "branches",
            NodeKind::Branch => "steps",
        }
    }

    fn other(self) -> Self {
        match self {
            NodeKind::Step => NodeKind::Branch,
            NodeKind::Branch => NodeKind::Step,
        }
    }
}

/// Where a document came from, for errors that name it.
struct Source<'a> {
    path: &'a std::path::Path,
}

impl Source<'_> {
    fn object(&self, raw: &[u8], what: &str) -> Result<Object> {
        let fields = parse_object_bytes(raw).map_err(|_| {
            CoreError::corrupt(
                self.path,
                format!("{what} is not a JSON object: {}", refusal(raw)),
            )
        })?;
        let mut object = Object(Vec::with_capacity(fields.len()));
        for (key, value) in fields {
            object.insert(key.into_owned(), value.to_string());
        }
        Ok(object)
    }

    fn children(&self, node: &Object, key: &str, what: &str) -> Result<Object> {
        match node.get(key) {
            None => Ok(Object::default()),
            Some(raw) => self.object(raw.as_bytes(), &format!("{what}.{key}")),
        }
    }
}

/// The longest dot-prefix of `name` (itself included) that `children` holds.
fn longest_prefix<'a>(name: &'a str, children: &Object) -> Option<&'a str> {
    if children.contains_key(name) {
        return Some(name);
    }
    name.rmatch_indices('.')
        .map(|(at, _)| &name[..at])
        .find(|prefix| children.contains_key(prefix))
}

/// A name less its last dot-separated part ("" for a name without a dot): the parent runnable
/// names (a branch `map.3` of step `map`, a step `map.3.work` of branch `map.3`).
pub fn parent_name(name: &str) -> &str {
    name.rsplit_once('.').map_or("", |(head, _)| head)
}

/// Whether a name can be a branch's: `<step>.<key>`, dot-separated parts none empty.
pub fn names_a_branch(name: &str) -> bool {
    name.contains('.') && name.split('.').all(|part| !part.is_empty())
}

/// The raw JSON of the step or branch `name` of a run document, or None when it is not stored.
pub fn find_node(
    path: &std::path::Path,
    document: &[u8],
    kind: NodeKind,
    name: &str,
) -> Result<Option<Vec<u8>>> {
    let source = Source { path };
    let mut node = source.object(document, "the run log")?;
    let mut level = NodeKind::Step; // the kind of the children about to be searched
    loop {
        let children = source.children(&node, level.other().children_key(), "a node")?;
        let Some(found) = longest_prefix(name, &children) else {
            return Ok(None);
        };
        let child = children.get(found).expect("found among them");
        if found == name {
            return Ok((level == kind).then(|| child.as_bytes().to_vec()));
        }
        node = source.object(child.as_bytes(), found)?;
        level = level.other();
    }
}

/// What storing a node did: the new document, or the node it needs above it that is not
/// stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placed {
    Document(Vec<u8>),
    /// A branch whose step is not stored (the step's name).
    NoStep(String),
    /// A step whose branch is not stored (the branch's name).
    NoBranch(String),
}

/// The run document with the step or branch `node` stored at its place, as
/// `RunLog.place_step` / `place_branch` store it: a step goes under the deepest stored branch
/// its name continues (else the run), a branch under the deepest stored step; a node already
/// there is replaced, but its children that the new one does not carry are kept (they are
/// written on their own, often by other processes).
///
/// A branch with no stored step above it is [`Placed::NoStep`]. A step whose name continues a
/// stored step but none of its branches, or that continues nothing stored while its name less
/// the last part names a branch (it has a dot), is [`Placed::NoBranch`] with that name, as
/// runnable refuses it ([`names_a_branch`]); a root step may still have a dot in its name
/// (`v1.2`, `../x`). The node must
/// fit the run log's nesting limit ([`nesting::check`]).
pub fn place_node(
    path: &std::path::Path,
    document: &[u8],
    kind: NodeKind,
    node: &[u8],
) -> Result<Placed> {
    let source = Source { path };
    let new_node = source.object(node, "the node").map_err(|e| match e {
        CoreError::Corrupt { reason, .. } => CoreError::InvalidArgument(reason),
        other => other,
    })?;
    let name = match new_node.get("internal_name") {
        Some(quoted) => serde_json::from_str::<String>(quoted).map_err(|_| {
            CoreError::InvalidArgument("the node's internal_name is not a string".into())
        })?,
        None => {
            return Err(CoreError::InvalidArgument(
                "the node has no internal_name".into(),
            ))
        }
    };
    let part = match kind {
        NodeKind::Step => Part::Step(&name),
        NodeKind::Branch => Part::Branch(&name),
    };
    let text = std::str::from_utf8(node).expect("checked as JSON above");
    nesting::check(part, text)?;
    let mut run = source.object(document, "the run log")?;
    let steps = source.children(&run, "steps", "the run log")?;
    let placed = match place_in(&source, steps, NodeKind::Step, kind, &name, new_node, true)? {
        Ok(placed) => placed,
        Err(missing) => return Ok(missing),
    };
    run.insert("steps".to_string(), placed.text());
    Ok(Placed::Document(run.text().into_bytes()))
}

/// Children with the node placed among or below them, or what is missing for it.
type Placing = std::result::Result<Object, Placed>;

/// Place `node` (of `kind`, named `name`) among or below `children`, which are of `level`
/// (`at_root`: the run's own steps).
fn place_in(
    source: &Source<'_>,
    children: Object,
    level: NodeKind,
    kind: NodeKind,
    name: &str,
    node: Object,
    at_root: bool,
) -> Result<Placing> {
    let found = longest_prefix(name, &children).map(str::to_string);
    if level == kind {
        // The node goes here, unless its name continues a stored node of this level: then it
        // goes below that one, in the child whose name it continues.
        if let Some(prefix) = found.filter(|p| p != name) {
            let owner = source.object(children.get(&prefix).expect("found").as_bytes(), &prefix)?;
            let below = source.children(&owner, level.children_key(), &prefix)?;
            if longest_prefix(name, &below).is_some() {
                return below_owner(
                    source, children, level, prefix, owner, below, kind, name, node,
                );
            }
            if kind == NodeKind::Step {
                // A step of a branch of that step, and the branch is not stored.
                return Ok(Err(Placed::NoBranch(parent_name(name).to_string())));
            }
        } else if kind == NodeKind::Step
            && at_root
            && !children.contains_key(name)
            && names_a_branch(parent_name(name))
        {
            // Nothing stored above it, and its name says it is in a branch.
            return Ok(Err(Placed::NoBranch(parent_name(name).to_string())));
        }
        let mut children = children;
        let placed = merged(source, &children, name, kind, node)?;
        children.insert(name.to_string(), placed.text());
        return Ok(Ok(children));
    }
    // Children of the other kind: the node goes below the one whose name it continues.
    let Some(prefix) = found else {
        // A branch whose step is not stored.
        let step = parent_name(name);
        return Ok(Err(Placed::NoStep(
            (if step.is_empty() { name } else { step }).to_string(),
        )));
    };
    if prefix == name && kind == NodeKind::Branch {
        // The branch's own name is stored as a step: it has no step above it.
        let step = parent_name(name);
        return Ok(Err(Placed::NoStep(
            (if step.is_empty() { name } else { step }).to_string(),
        )));
    }
    let owner = source.object(children.get(&prefix).expect("found").as_bytes(), &prefix)?;
    let below = source.children(&owner, level.children_key(), &prefix)?;
    below_owner(
        source, children, level, prefix, owner, below, kind, name, node,
    )
}

/// Place the node among `below`, the children of `children[prefix]` (`owner`, of `level`), and
/// put the changed owner back in its place.
#[allow(clippy::too_many_arguments)]
fn below_owner(
    source: &Source<'_>,
    mut children: Object,
    level: NodeKind,
    prefix: String,
    mut owner: Object,
    below: Object,
    kind: NodeKind,
    name: &str,
    node: Object,
) -> Result<Placing> {
    let placed = match place_in(source, below, level.other(), kind, name, node, false)? {
        Ok(placed) => placed,
        Err(missing) => return Ok(Err(missing)),
    };
    owner.insert(level.children_key().to_string(), placed.text());
    children.insert(prefix, owner.text());
    Ok(Ok(children))
}

/// `node`, with the children of a stored node of the same name kept where it does not carry them.
fn merged(
    source: &Source<'_>,
    siblings: &Object,
    name: &str,
    kind: NodeKind,
    mut node: Object,
) -> Result<Object> {
    let Some(old) = siblings.get(name) else {
        return Ok(node);
    };
    let key = kind.children_key();
    let old = source.object(old.as_bytes(), name)?;
    let kept = source.children(&old, key, name)?;
    if kept.is_empty() {
        return Ok(node);
    }
    let mut children = kept;
    for (child, value) in source.children(&node, key, "the node")?.0 {
        children.insert(child, value);
    }
    node.insert(key.to_string(), children.text());
    Ok(node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::path::Path;

    fn run() -> Vec<u8> {
        json!({
            "run_id": "r",
            "status": "PROCESSING",
            "steps": {
                "prep": {"internal_name": "prep", "status": "SUCCESS", "branches": {}},
                "map": {"internal_name": "map", "status": "PROCESSING", "branches": {
                    "map.1": {"internal_name": "map.1", "status": "PROCESSING", "steps": {
                        "map.1.work": {"internal_name": "map.1.work", "status": "SUCCESS", "branches": {}}
                    }}
                }}
            }
        })
        .to_string()
        .into_bytes()
    }

    fn value(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    fn place(doc: &[u8], kind: NodeKind, node: Value) -> Option<Vec<u8>> {
        match place_node(Path::new("r.json"), doc, kind, node.to_string().as_bytes()).unwrap() {
            Placed::Document(bytes) => Some(bytes),
            _ => None,
        }
    }

    fn missing(doc: &[u8], kind: NodeKind, node: Value) -> Placed {
        place_node(Path::new("r.json"), doc, kind, node.to_string().as_bytes()).unwrap()
    }

    fn find(doc: &[u8], kind: NodeKind, name: &str) -> Option<Value> {
        find_node(Path::new("r.json"), doc, kind, name)
            .unwrap()
            .map(|b| value(&b))
    }

    #[test]
    fn finds_steps_and_branches_at_any_depth() {
        let doc = run();
        assert_eq!(
            find(&doc, NodeKind::Step, "prep").unwrap()["status"],
            "SUCCESS"
        );
        assert_eq!(
            find(&doc, NodeKind::Branch, "map.1").unwrap()["internal_name"],
            "map.1"
        );
        assert_eq!(
            find(&doc, NodeKind::Step, "map.1.work").unwrap()["status"],
            "SUCCESS"
        );
        assert!(
            find(&doc, NodeKind::Step, "map.1").is_none(),
            "a branch is not a step"
        );
        assert!(find(&doc, NodeKind::Step, "map.2.work").is_none());
        assert!(find(&doc, NodeKind::Branch, "nothing.1").is_none());
    }

    #[test]
    fn places_a_new_step_in_its_branch_and_keeps_everything_else() {
        let doc = place(
            &run(),
            NodeKind::Step,
            json!({"internal_name": "map.1.score", "status": "SUCCESS", "branches": {}}),
        )
        .unwrap();
        let steps = &value(&doc)["steps"]["map"]["branches"]["map.1"]["steps"];
        assert_eq!(
            steps.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["map.1.work", "map.1.score"]
        );
        assert_eq!(value(&doc)["steps"]["prep"]["status"], "SUCCESS");
        assert_eq!(value(&doc)["run_id"], "r");
    }

    #[test]
    fn a_restored_step_keeps_branches_it_does_not_carry() {
        let doc = place(
            &run(),
            NodeKind::Step,
            json!({"internal_name": "map", "status": "SUCCESS", "branches": {}}),
        )
        .unwrap();
        let map = &value(&doc)["steps"]["map"];
        assert_eq!(map["status"], "SUCCESS");
        assert_eq!(
            map["branches"]["map.1"]["steps"]["map.1.work"]["status"],
            "SUCCESS"
        );
    }

    #[test]
    fn a_restored_branch_keeps_its_steps() {
        let doc = place(
            &run(),
            NodeKind::Branch,
            json!({"internal_name": "map.1", "status": "SUCCESS", "steps": {}}),
        )
        .unwrap();
        let branch = &value(&doc)["steps"]["map"]["branches"]["map.1"];
        assert_eq!(branch["status"], "SUCCESS");
        assert_eq!(branch["steps"]["map.1.work"]["status"], "SUCCESS");
        let added = place(
            &doc,
            NodeKind::Branch,
            json!({"internal_name": "map.2", "steps": {}}),
        );
        assert!(value(&added.unwrap())["steps"]["map"]["branches"]["map.2"].is_object());
    }

    #[test]
    fn a_branch_without_its_step_has_no_place() {
        let node = json!({"internal_name": "other.1", "steps": {}});
        assert_eq!(
            missing(&run(), NodeKind::Branch, node),
            Placed::NoStep("other".into())
        );
        let root = json!({"internal_name": "lonely", "steps": {}});
        assert_eq!(
            missing(&run(), NodeKind::Branch, root),
            Placed::NoStep("lonely".into())
        );
    }

    #[test]
    fn a_step_whose_branch_is_not_stored_has_no_place() {
        // As runnable: map.7 is not stored, so map.7.work has nowhere to go.
        for (name, branch) in [
            ("map.7.work", "map.7"),
            ("map.1.work.x.y", "map.1.work.x"),
            ("nothing.0.work", "nothing.0"),
        ] {
            let node = json!({"internal_name": name});
            assert_eq!(
                missing(&run(), NodeKind::Step, node),
                Placed::NoBranch(branch.into()),
                "{name}"
            );
        }
        // A root step may have a dot in its name, and one stored already is stored again.
        for name in ["v1.2", "../x", "a..b.c"] {
            let doc = place(&run(), NodeKind::Step, json!({"internal_name": name})).unwrap();
            assert!(value(&doc)["steps"][name].is_object(), "{name}");
        }
        let doc = json!({"steps": {"a.b.c": {"internal_name": "a.b.c", "status": "X"}}});
        let again = json!({"internal_name": "a.b.c", "status": "Y"});
        let doc = place(doc.to_string().as_bytes(), NodeKind::Step, again).unwrap();
        assert_eq!(value(&doc)["steps"]["a.b.c"]["status"], "Y");
    }

    #[test]
    fn non_finite_numbers_are_kept_and_nodes_too_deep_are_refused() {
        let doc = br#"{"run_id":"r","parameters":{"x":{"value":NaN}},"steps":{"s":{"internal_name":"s","m":-Infinity}}}"#;
        let placed = place(doc, NodeKind::Step, json!({"internal_name": "t"})).unwrap();
        let text = String::from_utf8(placed).unwrap();
        assert!(
            text.contains(r#""value":NaN"#) && text.contains(r#""m":-Infinity"#),
            "{text}"
        );
        let found = find_node(Path::new("r.json"), doc, NodeKind::Step, "s")
            .unwrap()
            .unwrap();
        assert_eq!(found, br#"{"internal_name":"s","m":-Infinity}"#);
        let mut deep = String::from("1");
        for _ in 0..crate::nesting::MAX_NESTING {
            deep = format!("[{deep}]");
        }
        let node = format!(r#"{{"internal_name":"t","x":{deep}}}"#);
        let err =
            place_node(Path::new("r.json"), doc, NodeKind::Step, node.as_bytes()).unwrap_err();
        assert!(matches!(err, CoreError::TooDeep { .. }), "{err}");
    }

    #[test]
    fn dots_inside_names_follow_the_longest_stored_prefix() {
        let doc = json!({"steps": {"a.b": {"internal_name": "a.b", "branches": {
            "a.b.x.y": {"internal_name": "a.b.x.y", "steps": {}}}}}})
        .to_string();
        let placed = place(
            doc.as_bytes(),
            NodeKind::Step,
            json!({"internal_name": "a.b.x.y.s"}),
        )
        .unwrap();
        assert!(
            value(&placed)["steps"]["a.b"]["branches"]["a.b.x.y"]["steps"]["a.b.x.y.s"].is_object()
        );
        assert!(find(&placed, NodeKind::Step, "a.b.x.y.s").is_some());
    }

    #[test]
    fn corrupt_documents_and_bad_nodes_are_named() {
        let err = find_node(Path::new("r.json"), b"[1]", NodeKind::Step, "a").unwrap_err();
        assert!(err.to_string().contains("r.json"), "{err}");
        let err = place_node(Path::new("r.json"), &run(), NodeKind::Step, b"{}").unwrap_err();
        assert!(err.to_string().contains("internal_name"), "{err}");
        assert!(NodeKind::parse("leaf").is_err());
    }
}
