//! Steps and branches inside one whole run log document in `runlog_store._core`: finding one
//! and storing one at its place, for the `file-system` and `minio` stores (`rust/document.rs`).

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::errors::ForRun;
use crate::document;

/// The raw JSON of the step (`kind="step"`) or branch (`kind="branch"`) `internal_name` of a
/// whole run log document, or None when it is not stored; CorruptChunkError naming `path`.
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
    let found = document::find_node(&path, document, kind, internal_name).for_run(run_id)?;
    Ok(found.map(|bytes| PyBytes::new(py, &bytes)))
}

/// The document with the step or branch `node` (JSON) stored at its place (as
/// `RunLog.place_step` / `place_branch`), or None when a branch has no stored step above it.
#[pyfunction]
#[pyo3(signature = (path, document, kind, node, *, run_id = ""))]
fn document_place<'py>(
    py: Python<'py>,
    path: PathBuf,
    document: &[u8],
    kind: &str,
    node: &[u8],
    run_id: &str,
) -> PyResult<Option<Bound<'py, PyBytes>>> {
    let kind = document::NodeKind::parse(kind).for_run(run_id)?;
    let placed = document::place_node(&path, document, kind, node).for_run(run_id)?;
    Ok(placed.map(|bytes| PyBytes::new(py, &bytes)))
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(document_find, m)?)?;
    m.add_function(wrap_pyfunction!(document_place, m)?)?;
    Ok(())
}
