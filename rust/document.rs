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

use indexmap::IndexMap;
use serde_json::value::RawValue;

use crate::error::{CoreError, Result};

type RawObject = IndexMap<String, Box<RawValue>>;

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
    fn object(&self, raw: &[u8], what: &str) -> Result<RawObject> {
        serde_json::from_slice(raw)
            .map_err(|e| CoreError::corrupt(self.path, format!("{what} is not a JSON object: {e}")))
    }

    fn children(&self, node: &RawObject, key: &str, what: &str) -> Result<RawObject> {
        match node.get(key) {
            None => Ok(RawObject::new()),
            Some(raw) => self.object(raw.get().as_bytes(), &format!("{what}.{key}")),
        }
    }
}

/// The longest dot-prefix of `name` (itself included) that `children` holds.
fn longest_prefix<'a>(name: &'a str, children: &RawObject) -> Option<&'a str> {
    if children.contains_key(name) {
        return Some(name);
    }
    name.rmatch_indices('.')
        .map(|(at, _)| &name[..at])
        .find(|prefix| children.contains_key(*prefix))
}

fn raw(value: &impl serde::Serialize) -> Result<Box<RawValue>> {
    let bytes = serde_json::to_string(value)
        .map_err(|e| CoreError::InvalidArgument(format!("cannot write JSON: {e}")))?;
    RawValue::from_string(bytes)
        .map_err(|e| CoreError::InvalidArgument(format!("cannot write JSON: {e}")))
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
        let child = &children[found];
        if found == name {
            return Ok((level == kind).then(|| child.get().as_bytes().to_vec()));
        }
        node = source.object(child.get().as_bytes(), found)?;
        level = level.other();
    }
}

/// The run document with the step or branch `node` stored at its place, as
/// `RunLog.place_step` / `place_branch` store it: a step goes under the deepest stored branch
/// its name continues (else the run), a branch under the deepest stored step; a node already
/// there is replaced, but its children that the new one does not carry are kept (they are
/// written on their own, often by other processes). None when a branch has no stored step to
/// go under.
pub fn place_node(
    path: &std::path::Path,
    document: &[u8],
    kind: NodeKind,
    node: &[u8],
) -> Result<Option<Vec<u8>>> {
    let source = Source { path };
    let new_node = source.object(node, "the node")?;
    let name = match new_node.get("internal_name").map(|v| v.get()) {
        Some(quoted) => serde_json::from_str::<String>(quoted).map_err(|_| {
            CoreError::InvalidArgument("the node's internal_name is not a string".into())
        })?,
        None => {
            return Err(CoreError::InvalidArgument(
                "the node has no internal_name".into(),
            ))
        }
    };
    let mut run = source.object(document, "the run log")?;
    let steps = source.children(&run, "steps", "the run log")?;
    let Some(placed) = place_in(&source, steps, NodeKind::Step, kind, &name, new_node)? else {
        return Ok(None);
    };
    run.insert("steps".to_string(), raw(&placed)?);
    serde_json::to_vec(&run)
        .map(Some)
        .map_err(|e| CoreError::InvalidArgument(format!("cannot write JSON: {e}")))
}

/// Place `node` (of `kind`, named `name`) among or below `children`, which are of `level`.
fn place_in(
    source: &Source<'_>,
    children: RawObject,
    level: NodeKind,
    kind: NodeKind,
    name: &str,
    node: RawObject,
) -> Result<Option<RawObject>> {
    let found = longest_prefix(name, &children).map(str::to_string);
    if level == kind {
        // The node goes here, unless the level below the node whose name it continues holds
        // a prefix of it too: then the walk goes down, and so does the node.
        if let Some(prefix) = found.filter(|p| p != name) {
            let owner = source.object(children[&prefix].get().as_bytes(), &prefix)?;
            let below = source.children(&owner, level.children_key(), &prefix)?;
            if longest_prefix(name, &below).is_some() {
                return below_owner(
                    source, children, level, prefix, owner, below, kind, name, node,
                );
            }
        }
        let mut children = children;
        let placed = merged(source, &children, name, kind, node)?;
        children.insert(name.to_string(), raw(&placed)?);
        return Ok(Some(children));
    }
    // Children of the other kind: the node goes below the one whose name it continues.
    let Some(prefix) = found else {
        return Ok(None); // a branch whose step is not stored
    };
    if prefix == name && kind == NodeKind::Branch {
        return Ok(None); // the branch's own name is stored as a step: it has no step above it
    }
    let owner = source.object(children[&prefix].get().as_bytes(), &prefix)?;
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
    mut children: RawObject,
    level: NodeKind,
    prefix: String,
    mut owner: RawObject,
    below: RawObject,
    kind: NodeKind,
    name: &str,
    node: RawObject,
) -> Result<Option<RawObject>> {
    let Some(placed) = place_in(source, below, level.other(), kind, name, node)? else {
        return Ok(None);
    };
    owner.insert(level.children_key().to_string(), raw(&placed)?);
    children.insert(prefix, raw(&owner)?);
    Ok(Some(children))
}

/// `node`, with the children of a stored node of the same name kept where it does not carry them.
fn merged(
    source: &Source<'_>,
    siblings: &RawObject,
    name: &str,
    kind: NodeKind,
    mut node: RawObject,
) -> Result<RawObject> {
    let Some(old) = siblings.get(name) else {
        return Ok(node);
    };
    let key = kind.children_key();
    let old = source.object(old.get().as_bytes(), name)?;
    let kept = source.children(&old, key, name)?;
    if kept.is_empty() {
        return Ok(node);
    }
    let mut children = kept;
    for (child, value) in source.children(&node, key, "the node")? {
        children.insert(child, value);
    }
    node.insert(key.to_string(), raw(&children)?);
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
        assert!(place(&run(), NodeKind::Branch, node).is_none());
        let root = json!({"internal_name": "lonely", "steps": {}});
        assert!(place(&run(), NodeKind::Branch, root).is_none());
    }

    #[test]
    fn a_step_whose_branch_is_not_stored_goes_to_the_deepest_stored_level() {
        // As RunLog.place_step: map.7 is not stored, so map.7.work goes under the run.
        let doc = place(
            &run(),
            NodeKind::Step,
            json!({"internal_name": "map.7.work"}),
        )
        .unwrap();
        assert!(value(&doc)["steps"]["map.7.work"].is_object());
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
