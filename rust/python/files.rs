//! The stores' file operations in `runlog_store._core`: atomic writes and reads, durable folders,
//! temp files, the read-modify-write of a JSON document under its lock, and the inter-process
//! lock (`FileLock`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

use super::errors::ForRun;
use crate::error::CoreError;
use crate::lock::FileLock;
use crate::patch::PatchOptions;
use crate::writer;

/// A number of seconds from Python (a timeout, an age) as a duration; negative or not finite is
/// an argument error.
pub(super) fn seconds(value: f64, what: &str) -> crate::Result<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        CoreError::InvalidArgument(format!(
            "{what} must be a non-negative number of seconds, not {value}"
        ))
    })
}

/// Write `data` to `path` atomically (temp file, fsync, rename, folder fsync).
#[pyfunction]
#[pyo3(signature = (path, data, *, fsync = true, exclusive = false, run_id = ""))]
fn write_atomic(
    py: Python<'_>,
    path: PathBuf,
    data: &[u8],
    fsync: bool,
    exclusive: bool,
    run_id: &str,
) -> PyResult<()> {
    Ok(py
        .detach(|| writer::write_atomic(&path, data, fsync, exclusive))
        .for_run(run_id)?)
}

/// The bytes of a stored document, or None when it does not exist: a symlink, a FIFO, a device
/// or a file past `MAX_FILE_BYTES` in its place is a CorruptChunkError naming it.
#[pyfunction]
#[pyo3(signature = (path, *, run_id = ""))]
fn read_file<'py>(
    py: Python<'py>,
    path: PathBuf,
    run_id: &str,
) -> PyResult<Option<Bound<'py, PyBytes>>> {
    let data = py.detach(|| writer::read_file(&path)).for_run(run_id)?;
    Ok(data.map(|bytes| PyBytes::new(py, &bytes)))
}

/// Merge `patch` into the JSON object at `path` under the lock at `lock_path`.
#[pyfunction]
#[pyo3(signature = (
    path, patch, *, lock_path, merge_keys = Vec::new(), create = None, fsync = true,
    lock_timeout = 60.0, run_id = ""
))]
#[allow(clippy::too_many_arguments)]
fn patch_json<'py>(
    py: Python<'py>,
    path: PathBuf,
    patch: &[u8],
    lock_path: PathBuf,
    merge_keys: Vec<String>,
    create: Option<&[u8]>,
    fsync: bool,
    lock_timeout: f64,
    run_id: &str,
) -> PyResult<Bound<'py, PyBytes>> {
    let options = PatchOptions {
        lock_path: &lock_path,
        merge_keys: &merge_keys,
        create,
        fsync,
        lock_timeout: seconds(lock_timeout, "lock_timeout")?,
    };
    let written = py
        .detach(|| crate::patch::patch_json(&path, patch, &options))
        .for_run(run_id)?;
    Ok(PyBytes::new(py, &written))
}

/// The document `patch` turns `current` into (no I/O): what `patch_json` writes, for stores
/// that write it themselves (a conditional PUT). `path` names the document in errors.
#[pyfunction]
#[pyo3(signature = (path, current, patch, *, merge_keys = Vec::new(), create = None, run_id = ""))]
#[allow(clippy::too_many_arguments)]
fn apply_patch<'py>(
    py: Python<'py>,
    path: PathBuf,
    current: Option<&[u8]>,
    patch: &[u8],
    merge_keys: Vec<String>,
    create: Option<&[u8]>,
    run_id: &str,
) -> PyResult<Bound<'py, PyBytes>> {
    let document =
        crate::patch::apply_patch(&path, current, patch, &merge_keys, create).for_run(run_id)?;
    Ok(PyBytes::new(py, &document))
}

/// Remove temp files of dead writes older than `older_than` seconds; returns how many.
#[pyfunction]
#[pyo3(signature = (folder, older_than = 60.0))]
fn clean_temp_files(py: Python<'_>, folder: PathBuf, older_than: f64) -> PyResult<usize> {
    let age = seconds(older_than, "older_than")?;
    Ok(py.detach(|| writer::clean_temp_files(&folder, age))?)
}

/// A fresh temp file path beside `target`, in the atomic writer's pattern.
#[pyfunction]
fn temp_path(target: PathBuf) -> PyResult<OsString> {
    Ok(writer::temp_path_beside(&target)?.into_os_string())
}

/// Create a folder and every missing one above it, durably (see `writer::create_dir_all_durable`).
#[pyfunction]
#[pyo3(signature = (path, *, fsync = true, run_id = ""))]
fn ensure_dir(py: Python<'_>, path: PathBuf, fsync: bool, run_id: &str) -> PyResult<()> {
    Ok(py
        .detach(|| writer::create_dir_all_durable(&path, fsync))
        .for_run(run_id)?)
}

/// An exclusive inter-process lock on a file, as a context manager.
#[pyclass(name = "FileLock", module = "runlog_store._core")]
struct PyFileLock {
    path: PathBuf,
    timeout: Duration,
    run_id: String,
    held: Mutex<Option<FileLock>>,
}

#[pymethods]
impl PyFileLock {
    #[new]
    #[pyo3(signature = (path, timeout = 60.0, run_id = String::new()))]
    fn new(path: PathBuf, timeout: f64, run_id: String) -> PyResult<Self> {
        Ok(PyFileLock {
            path,
            timeout: seconds(timeout, "timeout")?,
            run_id,
            held: Mutex::new(None),
        })
    }

    fn __enter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, Self>> {
        let py = slf.py();
        {
            let this = slf.borrow();
            let (path, timeout) = (this.path.clone(), this.timeout);
            let lock = py
                .detach(|| FileLock::acquire(&path, timeout))
                .for_run(&this.run_id)?;
            *this.held.lock().unwrap_or_else(|p| p.into_inner()) = Some(lock);
        }
        Ok(slf)
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, PyTuple>) -> bool {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).take();
        false
    }

    #[getter]
    fn path(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("MAX_FILE_BYTES", crate::untrusted::MAX_FILE_BYTES)?;
    m.add_function(wrap_pyfunction!(write_atomic, m)?)?;
    m.add_function(wrap_pyfunction!(read_file, m)?)?;
    m.add_function(wrap_pyfunction!(patch_json, m)?)?;
    m.add_function(wrap_pyfunction!(apply_patch, m)?)?;
    m.add_function(wrap_pyfunction!(clean_temp_files, m)?)?;
    m.add_function(wrap_pyfunction!(temp_path, m)?)?;
    m.add_function(wrap_pyfunction!(ensure_dir, m)?)?;
    m.add_class::<PyFileLock>()?;
    Ok(())
}
