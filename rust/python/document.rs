//! Run log documents in `runlog_store._core`: steps and branches inside one whole run log
//! document, found and stored at their place, for the `file-system` and `minio` stores
//! (`rust/document.rs`); the check every write makes against the run log's nesting limit
//! (`rust/nesting.rs`); and the check that a document names the run asked for.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::errors::ForRun;
use crate::document::{self, Placed};
use crate::error::CoreError;
use crate::json::parse_object_bytes;
use crate::merger::parsing::{Fields, Json};
use crate::nesting::{self, Part};

/// The top-level run id of `document` must be `run_id` (checked when one is given).
fn check_run_id(path: &std::path::Path, document: &[u8], run_id: &str) -> crate::Result<()> {
    if run_id.is_empty() {
        return Ok(());
    }
    let fields: Fields<'_> = parse_object_bytes(document)
        .map_err(|reason| CoreError::corrupt(path, reason))?
        .into_iter()
        .map(|(key, value)| (key, Json::Raw(value)))
        .collect();
    crate::merger::check_run_id(&fields, path, run_id)
}

/// The raw JSON of the step (`kind="step"`) or branch (`kind="branch"`) `internal_name` of a
/// whole run log document, or None when it is not stored; CorruptChunkError naming `path`, and
/// RunIdMismatchError when the document names another run than `run_id`.
#[pyfunction]
#[pyo3(signature = (path, document, kind, internal_name, *, run_id = ""))]
fn document_find<'py>(
    py: Python<'py>,
    path: PathBuf,
    document: &[u8],
    kind: &str,
    internal_name: &str,
    run_id: &str,
) -> PyResult<Option<Bound<'py, PyBytes>>> {
    let kind = document::NodeKind::parse(kind).for_run(run_id)?;
    check_run_id(&path, document, run_id).for_run(run_id)?;
    let found = document::find_node(&path, document, kind, internal_name).for_run(run_id)?;
    Ok(found.map(|bytes| PyBytes::new(py, &bytes)))
}

/// The document with the step or branch `node` (JSON) stored at its place (as
/// `RunLog.place_step` / `place_branch`), or what it needs above it that is not stored:
/// `("step", name)` for a branch whose step is missing, `("branch", name)` for a step whose
/// branch is. NestingTooDeepError when the node would take the run log past its nesting limit.
#[pyfunction]
#[pyo3(signature = (path, document, kind, node, *, run_id = ""))]
fn document_place<'py>(
    py: Python<'py>,
    path: PathBuf,
    document: &[u8],
    kind: &str,
    node: &[u8],
    run_id: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let kind = document::NodeKind::parse(kind).for_run(run_id)?;
    check_run_id(&path, document, run_id).for_run(run_id)?;
    let placed = document::place_node(&path, document, kind, node).for_run(run_id)?;
    Ok(match placed {
        Placed::Document(bytes) => PyBytes::new(py, &bytes).into_any(),
        Placed::NoStep(name) => ("step", name).into_pyobject(py)?.into_any(),
        Placed::NoBranch(name) => ("branch", name).into_pyobject(py)?.into_any(),
    })
}

/// Check the JSON object `body` of the run's fields (`kind="run"`), of a step or of a branch
/// (with the children it carries) against the run log's nesting limit: NestingTooDeepError
/// naming the run, the step or branch and the place too deep.
#[pyfunction]
#[pyo3(signature = (kind, name, body, *, run_id = ""))]
fn check_nesting(kind: &str, name: &str, body: &[u8], run_id: &str) -> PyResult<()> {
    let part = match kind {
        "run" => Part::Run,
        "step" => Part::Step(name),
        "branch" => Part::Branch(name),
        other => {
            return Err(CoreError::InvalidArgument(format!(
                "a part of a run is 'run', 'step' or 'branch', not {other:?}"
            ))
            .into())
        }
    };
    let text = std::str::from_utf8(body)
        .map_err(|_| CoreError::InvalidArgument("the body is not UTF-8".to_string()))?;
    Ok(nesting::check(part, text).for_run(run_id)?)
}

/// Check a whole run document read at `path` before it is handed out: RunIdMismatchError when
/// it names another run than `run_id` (a document copied or written under another run's
/// name), CorruptChunkError when it is not a JSON object or nests deeper than a run log may.
#[pyfunction]
#[pyo3(signature = (path, document, run_id))]
fn check_run_document(path: PathBuf, document: &[u8], run_id: &str) -> PyResult<()> {
    check_run_id(&path, document, run_id).for_run(run_id)?;
    Ok(nesting::check_read(&path, document).for_run(run_id)?)
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("MAX_NESTING", nesting::MAX_NESTING)?;
    m.add_function(wrap_pyfunction!(document_find, m)?)?;
    m.add_function(wrap_pyfunction!(document_place, m)?)?;
    m.add_function(wrap_pyfunction!(check_nesting, m)?)?;
    m.add_function(wrap_pyfunction!(check_run_document, m)?)?;
    Ok(())
}
