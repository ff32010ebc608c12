//! How deep a run log may nest, and the check every write makes against it.
//!
//! A run log is one JSON document when it is read in full, whatever the store: the run, its
//! steps, their branches, their steps... and in each the values a pipeline put there
//! (parameters, metrics, run config, fields of its own). Every Python reader parses that
//! document with pydantic's JSON parser (runnable's models and ours alike), which stops at 200
//! levels. So a write that would take the run log past [`MAX_NESTING`] levels is refused with
//! [`CoreError::TooDeep`] naming the step or branch and the place in it, and anything a store
//! acknowledged reads back.
//!
//! A write is judged on what it writes alone, the same way on every store: a step or branch
//! whose internal name has `k` dot-separated parts sits at most `2k` levels below the top of
//! the run log (each step and each branch above it adds its own object and the object of its
//! siblings, and each adds at least one part to the name), so its own fields may nest
//! `MAX_NESTING - 2k` levels deep; the run's own fields `MAX_NESTING`. For the names runnable
//! makes (no dot inside a step name) that is exactly where the node sits.

use std::borrow::Cow;
use std::path::Path;

use crate::error::{CoreError, Result};
use crate::json::{
    deepest_path, describe_path, nesting, nesting_of_bytes, parse_object, Step, Text,
};

/// How deep a run log may nest, counted in JSON objects and arrays with the run log itself as
/// level 1. Every Python reader parses a run log with pydantic's JSON parser, which stops at
/// 200 levels; Python's `json` stops near the interpreter's recursion limit (1000). 128 leaves
/// room below both (and equals serde_json's own default limit), so a run log within it is read
/// by every reader.
pub const MAX_NESTING: usize = 128;

/// What a write is about: the run's own fields, or a step's or a branch's (by internal name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part<'a> {
    Run,
    Step(&'a str),
    Branch(&'a str),
}

impl Part<'_> {
    /// The key under which it keeps its children.
    fn children_key(self) -> &'static str {
        match self {
            Part::Run | Part::Branch(_) => "steps",
            Part::Step(_) => "branches",
        }
    }

    /// How deep its own object may nest.
    fn allowed(self) -> usize {
        match self {
            Part::Run => MAX_NESTING,
            Part::Step(name) | Part::Branch(name) => {
                MAX_NESTING.saturating_sub(2 * name.split('.').count())
            }
        }
    }

    fn describe(self) -> String {
        match self {
            Part::Run => "the run".to_string(),
            Part::Step(name) => format!("step {name:?}"),
            Part::Branch(name) => format!("branch {name:?}"),
        }
    }
}

/// Check the JSON object `body` of `part` (the run's fields, a step or a branch, with any
/// children it carries, which are judged as steps and branches of their own) against
/// [`MAX_NESTING`]. Text that is not a JSON object is left to the parse that will refuse it.
pub fn check(part: Part<'_>, body: &str) -> Result<()> {
    let allowed = part.allowed();
    if nesting(body) <= allowed {
        return Ok(()); // the common case: one scan of the bytes
    }
    let Ok(fields) = parse_object(body) else {
        return Ok(());
    };
    let key = part.children_key();
    let mut own = Vec::with_capacity(fields.len());
    let mut children: Option<&str> = None;
    for (name, value) in fields {
        if name == key {
            children = Some(value);
        } else {
            own.push((name, value));
        }
    }
    if let Some((name, value)) = own.iter().find(|(_, value)| 1 + nesting(value) > allowed) {
        let mut path = vec![Step::Key(name.to_string())];
        path.extend(deepest_path(value, allowed.saturating_sub(1)).unwrap_or_default());
        return Err(CoreError::TooDeep {
            what: part.describe(),
            at: describe_path(&path),
            limit: MAX_NESTING,
        });
    }
    let Some(children) = children.and_then(|text| parse_object(text).ok()) else {
        return Ok(());
    };
    for (key, child) in children {
        let name = internal_name(child).unwrap_or(key);
        let child_part = match part {
            Part::Step(_) => Part::Branch(&name),
            Part::Run | Part::Branch(_) => Part::Step(&name),
        };
        check(child_part, child)?;
    }
    Ok(())
}

/// Check a full run log as read, before it is handed out: one nesting past [`MAX_NESTING`] was
/// not written by a store (each write is checked), and some readers cannot read it (Python's
/// `json` fails with a RecursionError, not a typed error), so it is a [`CoreError::Corrupt`]
/// naming `path` (the run's folder or document).
pub fn check_read(path: &Path, document: &[u8]) -> Result<()> {
    let depth = nesting_of_bytes(document);
    if depth > MAX_NESTING {
        return Err(CoreError::corrupt(
            path,
            format!(
                "its run log nests {depth} levels deep, more than the {MAX_NESTING} a run log \
                 may: not every reader reads it back"
            ),
        ));
    }
    Ok(())
}

fn internal_name(node: &str) -> Option<Cow<'_, str>> {
    let fields = parse_object(node).ok()?;
    let (_, raw) = fields
        .into_iter()
        .rev()
        .find(|(k, _)| k == "internal_name")?;
    serde_json::from_str::<Text<'_>>(raw)
        .ok()
        .map(|text| text.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deep(levels: usize) -> String {
        format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn the_run_fields_may_use_every_level() {
        let fits = format!(
            r#"{{"parameters": {{"p": {{"value": {}}}}}}}"#,
            deep(MAX_NESTING - 3)
        );
        check(Part::Run, &fits).unwrap();
        let deeper = format!(
            r#"{{"parameters": {{"p": {{"value": {}}}}}, "steps": {{}}}}"#,
            deep(MAX_NESTING - 2)
        );
        let err = check(Part::Run, &deeper).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("the run nests too deep at "), "{text}");
        assert!(text.contains(r#"["parameters"]["p"]["value"]"#), "{text}");
        assert!(text.contains("more than 128 levels"), "{text}");
    }

    #[test]
    fn a_step_has_two_levels_fewer_per_part_of_its_name() {
        // map.0.work: run, steps, map, branches, map.0, steps, the step: 7 = 2 * 3 + 1.
        let body =
            |levels: usize| format!(r#"{{"attempts": [{}], "branches": {{}}}}"#, deep(levels));
        let fits = MAX_NESTING - 6 - 2;
        check(Part::Step("map.0.work"), &body(fits)).unwrap();
        let err = check(Part::Step("map.0.work"), &body(fits + 1)).unwrap_err();
        assert!(err.to_string().contains(r#"step "map.0.work""#), "{err}");
        check(Part::Step("work"), &body(fits + 4)).unwrap();
    }

    #[test]
    fn children_carried_along_are_judged_as_their_own_nodes() {
        let branch = format!(
            r#"{{"internal_name": "map.0", "parameters": {{"x": {}}}, "steps": {{}}}}"#,
            deep(MAX_NESTING - 4 - 2)
        );
        let step = format!(r#"{{"internal_name": "map", "branches": {{"map.0": {branch}}}}}"#);
        // The branch fits where it sits, so the step carrying it does.
        check(Part::Step("map"), &step).unwrap();
        let deeper = branch.replace("[1]", "[[1]]");
        let step = format!(r#"{{"internal_name": "map", "branches": {{"map.0": {deeper}}}}}"#);
        let err = check(Part::Step("map"), &step).unwrap_err();
        assert!(err.to_string().contains(r#"branch "map.0""#), "{err}");
    }
}
