//! The Python module `runlog_store._core`.
//!
//! It only converts types, releases the GIL around every I/O call (so other Python threads and
//! the rayon pool run meanwhile), and turns [`CoreError`]s into the typed exceptions of
//! `runlog_store.exceptions`, each carrying the path and the run id.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::error::CoreError;
use crate::lock::FileLock;
use crate::merger::merge_run as merge_run_folder;
use crate::names::{chunk_file_name as file_name_of, ChunkKind};
use crate::patch::{patch_json as patch_document, PatchOptions};
use crate::writer;

/// Raise `err` as the matching exception of `runlog_store.exceptions`.
fn to_py_err(py: Python<'_>, err: CoreError, run_id: &str) -> PyErr {
    let class = match &err {
        CoreError::Io { .. } => "StorageError",
        CoreError::Corrupt { .. } => "CorruptChunkError",
        CoreError::NotFound { .. } => "ChunkNotFoundError",
        CoreError::Exists { .. } => "ChunkExistsError",
        CoreError::LockTimeout { .. } => "LockTimeoutError",
        CoreError::InvalidArgument(message) => return PyValueError::new_err(message.clone()),
    };
    let message = if run_id.is_empty() {
        err.to_string()
    } else {
        format!("{err} (run {run_id:?})")
    };
    let build = || -> PyResult<PyErr> {
        let cls = py.import("runlog_store.exceptions")?.getattr(class)?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("path", err.path().to_string_lossy())?;
        kwargs.set_item("run_id", run_id)?;
        if class == "StorageError" {
            kwargs.set_item("errno", err.errno())?;
        }
        Ok(PyErr::from_value(cls.call((message,), Some(&kwargs))?))
    };
    build().unwrap_or_else(|import_failed| import_failed)
}

fn seconds(value: f64, what: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        PyValueError::new_err(format!(
            "{what} must be a non-negative number of seconds, not {value}"
        ))
    })
}

/// The chunk file name of a step (`kind="StepLog"`) or branch (`kind="BranchLog"`).
#[pyfunction]
fn chunk_file_name(kind: &str, internal_name: &str) -> PyResult<String> {
    let kind = ChunkKind::parse(kind).map_err(|e| PyValueError::new_err(e.to_string()))?;
    file_name_of(kind, internal_name).map_err(|e| PyValueError::new_err(e.to_string()))
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
    py.detach(|| writer::write_atomic(&path, data, fsync, exclusive))
        .map_err(|e| to_py_err(py, e, run_id))
}

/// The bytes of a file, or None when it does not exist.
#[pyfunction]
#[pyo3(signature = (path, *, run_id = ""))]
fn read_file<'py>(
    py: Python<'py>,
    path: PathBuf,
    run_id: &str,
) -> PyResult<Option<Bound<'py, PyBytes>>> {
    let data = py
        .detach(|| writer::read_file(&path))
        .map_err(|e| to_py_err(py, e, run_id))?;
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
        .detach(|| patch_document(&path, patch, &options))
        .map_err(|e| to_py_err(py, e, run_id))?;
    Ok(PyBytes::new(py, &written))
}

/// (path, reason) of each chunk a salvage read left out.
type Skipped = Vec<(String, String)>;

/// The full run log of a chunked run folder, and the chunks salvage left out.
#[pyfunction]
#[pyo3(signature = (run_dir, *, salvage = false, run_id = ""))]
fn merge_run<'py>(
    py: Python<'py>,
    run_dir: PathBuf,
    salvage: bool,
    run_id: &str,
) -> PyResult<(Bound<'py, PyBytes>, Skipped)> {
    let merged = py
        .detach(|| merge_run_folder(&run_dir, salvage))
        .map_err(|e| to_py_err(py, e, run_id))?;
    let skipped = merged
        .skipped
        .into_iter()
        .map(|(path, reason)| (path.to_string_lossy().into_owned(), reason))
        .collect();
    Ok((PyBytes::new(py, &merged.document), skipped))
}

/// Remove temp files of dead writes older than `older_than` seconds; returns how many.
#[pyfunction]
#[pyo3(signature = (folder, older_than = 60.0))]
fn clean_temp_files(py: Python<'_>, folder: PathBuf, older_than: f64) -> PyResult<usize> {
    let age = seconds(older_than, "older_than")?;
    py.detach(|| writer::clean_temp_files(&folder, age))
        .map_err(|e| to_py_err(py, e, ""))
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
                .map_err(|e| to_py_err(py, e, &this.run_id))?;
            *this.held.lock().unwrap_or_else(|p| p.into_inner()) = Some(lock);
        }
        Ok(slf)
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).take();
        false
    }

    #[getter]
    fn path(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(chunk_file_name, m)?)?;
    m.add_function(wrap_pyfunction!(write_atomic, m)?)?;
    m.add_function(wrap_pyfunction!(read_file, m)?)?;
    m.add_function(wrap_pyfunction!(patch_json, m)?)?;
    m.add_function(wrap_pyfunction!(merge_run, m)?)?;
    m.add_function(wrap_pyfunction!(clean_temp_files, m)?)?;
    m.add_class::<PyFileLock>()?;
    Ok(())
}
