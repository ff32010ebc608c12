//! The chunk format in `runlog_store._core`: the fixed names and keys of a run, the
//! `_created_ns` header, sealed branches, snapshots, temp names, and chunk file names from and
//! to internal names (`rust/chunk.rs`, `rust/names.rs`).

use std::collections::{HashMap, HashSet};

use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;

use crate::chunk;
use crate::names::{self, ChunkKind};

/// `document` (a JSON object) with `"_created_ns"` put first: the bytes of a chunk.
#[pyfunction]
fn chunk_with_header<'py>(
    py: Python<'py>,
    created_ns: i64,
    document: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyBytes::new(
        py,
        &chunk::chunk_with_header(created_ns, document)?,
    ))
}

/// The creation time in a chunk's header (None for chunks of older layouts) and the chunk
/// without it.
#[pyfunction]
fn split_chunk_header<'py>(
    py: Python<'py>,
    chunk: &[u8],
) -> PyResult<(Option<i64>, Bound<'py, PyBytes>)> {
    let (created_ns, body) = chunk::split_chunk_header(chunk)?;
    Ok((created_ns, PyBytes::new(py, &body)))
}

/// The patch that seals an ending branch: `patch` plus the step chunks it embeds and their
/// ETag index.
#[pyfunction]
fn seal_branch_patch<'py>(
    py: Python<'py>,
    patch: &[u8],
    steps: Vec<(String, PyBackedBytes)>,
    index: Vec<(String, String)>,
) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyBytes::new(
        py,
        &chunk::seal_branch_patch(patch, &steps, &index)?,
    ))
}

/// The step chunks that sealed branch chunks embed and that are unchanged since (their listed
/// ETag is the one in the index).
#[pyfunction]
fn sealed_step_chunks(
    branch_chunks: &Bound<'_, PyAny>,
    listed: HashMap<String, String>,
) -> PyResult<HashSet<String>> {
    let chunks = branch_chunks
        .try_iter()?
        .map(|item| Ok(item?.extract::<PyBackedBytes>()?))
        .collect::<PyResult<Vec<_>>>()?;
    Ok(chunk::sealed_step_chunks(&chunks, &listed))
}

/// A `.merged.json` snapshot: the ETag map as its first line, then the merged document.
#[pyfunction]
fn encode_snapshot<'py>(
    py: Python<'py>,
    etags: HashMap<String, String>,
    merged: &[u8],
) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &chunk::encode_snapshot(&etags, merged))
}

/// The merged document of a snapshot built from exactly these objects, else None.
#[pyfunction]
fn decode_snapshot<'py>(
    py: Python<'py>,
    data: &[u8],
    etags: HashMap<String, String>,
) -> Option<Bound<'py, PyBytes>> {
    chunk::decode_snapshot(data, &etags).map(|merged| PyBytes::new(py, merged))
}

/// The top-level `"status"` of a run log document, None when it cannot be read.
#[pyfunction]
fn document_status(document: &[u8]) -> Option<String> {
    chunk::document_status(document)
}

/// Whether a file name is the temp file of a write in flight.
#[pyfunction]
fn is_temp_name(name: &str) -> bool {
    chunk::is_temp_name(name)
}

/// The chunk file name of a step (`kind="StepLog"`) or branch (`kind="BranchLog"`).
#[pyfunction]
fn chunk_file_name(kind: &str, internal_name: &str) -> PyResult<String> {
    Ok(names::chunk_file_name(
        ChunkKind::parse(kind)?,
        internal_name,
    )?)
}

/// The kind ("StepLog" or "BranchLog") and internal name of a chunk from its file or object
/// name; None for other names and for hashed keys (only the chunk's content says).
#[pyfunction]
fn chunk_internal_name(name: &str) -> Option<(&'static str, String)> {
    names::chunk_internal_name(name).map(|(kind, internal)| (kind.prefix(), internal))
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("RUN_LOG_FILE", chunk::RUN_LOG_FILE)?;
    m.add("RUN_LOG_OBJECT", chunk::RUN_LOG_OBJECT)?;
    m.add("LAYOUT_MARKER", chunk::LAYOUT_MARKER)?;
    m.add(
        "LAYOUT_MARKER_TEXT",
        PyBytes::new(py, chunk::LAYOUT_MARKER_TEXT),
    )?;
    m.add(
        "LAYOUT_MARKER_TEXT_1",
        PyBytes::new(py, chunk::LAYOUT_MARKER_TEXT_1),
    )?;
    m.add(
        "MINIO_LAYOUT_MARKER_TEXT",
        PyBytes::new(py, chunk::MINIO_LAYOUT_MARKER_TEXT),
    )?;
    m.add("CREATED_NS_KEY", chunk::CREATED_NS_KEY)?;
    m.add("STAMP_KEY", chunk::STAMP_KEY)?;
    m.add("CHUNK_INDEX_KEY", chunk::CHUNK_INDEX_KEY)?;
    m.add("SNAPSHOT_NAME", chunk::SNAPSHOT_NAME)?;
    m.add("TEMP_MARKER", chunk::TEMP_MARKER)?;
    m.add_function(wrap_pyfunction!(chunk_with_header, m)?)?;
    m.add_function(wrap_pyfunction!(split_chunk_header, m)?)?;
    m.add_function(wrap_pyfunction!(seal_branch_patch, m)?)?;
    m.add_function(wrap_pyfunction!(sealed_step_chunks, m)?)?;
    m.add_function(wrap_pyfunction!(encode_snapshot, m)?)?;
    m.add_function(wrap_pyfunction!(decode_snapshot, m)?)?;
    m.add_function(wrap_pyfunction!(document_status, m)?)?;
    m.add_function(wrap_pyfunction!(is_temp_name, m)?)?;
    m.add_function(wrap_pyfunction!(chunk_file_name, m)?)?;
    m.add_function(wrap_pyfunction!(chunk_internal_name, m)?)?;
    Ok(())
}
