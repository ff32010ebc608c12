//! The Python module `runlog_store._core`.
//!
//! It only converts types, releases the GIL around every I/O call (so other Python threads and
//! the rayon pool run meanwhile), and turns [`CoreError`]s into the typed exceptions of
//! `runlog_store.exceptions`, each carrying the path and the run id.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::cache::HashCache;
use crate::copier::copy_files as copy_file_pairs;
use crate::error::CoreError;
use crate::hasher::{self, Algorithm, StreamHasher};
use crate::lock::FileLock;
use crate::merger::{merge_documents, merge_run as merge_run_folder, MergedRun};
use crate::names::{chunk_file_name as file_name_of, ChunkKind};
use crate::patch::{apply_patch as apply_patch_to, patch_json as patch_document, PatchOptions};
use crate::writer;

/// Raise `err` as the matching exception of `runlog_store.exceptions`.
fn to_py_err(py: Python<'_>, err: CoreError, run_id: &str) -> PyErr {
    to_py_err_as(py, err, run_id, None)
}

/// Like [`to_py_err`], with storage errors raised as `class` (a subclass of StorageError).
fn to_py_err_as(py: Python<'_>, err: CoreError, run_id: &str, storage: Option<&str>) -> PyErr {
    let class = match &err {
        CoreError::Io { .. } | CoreError::NotAFile { .. } | CoreError::NotFound { .. }
            if storage.is_some() =>
        {
            storage.unwrap_or("StorageError")
        }
        CoreError::Io { .. } | CoreError::NotAFile { .. } => "StorageError",
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
        if matches!(err, CoreError::Io { .. } | CoreError::NotAFile { .. }) || storage.is_some() {
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

/// A merged run as Python gets it: the document's bytes and the `(path, reason)` of every
/// chunk a salvage left out.
fn merged_to_python(py: Python<'_>, merged: MergedRun) -> (Bound<'_, PyBytes>, Skipped) {
    let skipped = merged
        .skipped
        .into_iter()
        .map(|(path, reason)| (path.to_string_lossy().into_owned(), reason))
        .collect();
    (PyBytes::new(py, &merged.document), skipped)
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
    let document = apply_patch_to(&path, current, patch, &merge_keys, create)
        .map_err(|e| to_py_err(py, e, run_id))?;
    Ok(PyBytes::new(py, &document))
}

/// The full run log of a chunked run folder, and the chunks salvage left out.
#[pyfunction]
#[pyo3(signature = (run_dir, *, salvage = false, run_id = ""))]
fn merge_run<'py>(
    py: Python<'py>,
    run_dir: PathBuf,
    salvage: bool,
    run_id: &str,
) -> PyResult<(Bound<'py, PyBytes>, Skipped)> {
    let merged = in_process_pool(py, || merge_run_folder(&run_dir, salvage))?
        .map_err(|e| to_py_err(py, e, run_id))?;
    Ok(merged_to_python(py, merged))
}

/// The full run log of a run held in memory (object storage): `RunLog.json`'s bytes and
/// `(name, bytes)` of the run's other objects. Errors name `location`/<name>.
#[pyfunction]
#[pyo3(signature = (location, run_log, objects, *, salvage = false, run_id = ""))]
fn merge_chunks<'py>(
    py: Python<'py>,
    location: PathBuf,
    run_log: &[u8],
    objects: Vec<(String, Vec<u8>)>,
    salvage: bool,
    run_id: &str,
) -> PyResult<(Bound<'py, PyBytes>, Skipped)> {
    let merged = in_process_pool(py, || {
        merge_documents(&location, run_log, &objects, salvage)
    })?
    .map_err(|e| to_py_err(py, e, run_id))?;
    Ok(merged_to_python(py, merged))
}

/// A streaming content hash, for bytes that pass through Python (uploads, downloads).
#[pyclass(name = "Hasher", module = "runlog_store._core")]
struct PyHasher {
    state: Mutex<Option<StreamHasher>>,
    algorithm: Algorithm,
}

#[pymethods]
impl PyHasher {
    #[new]
    #[pyo3(signature = (algorithm = "blake3"))]
    fn new(algorithm: &str) -> PyResult<Self> {
        let algorithm = algorithm_of(algorithm)?;
        Ok(PyHasher {
            state: Mutex::new(Some(StreamHasher::new(algorithm))),
            algorithm,
        })
    }

    /// Add bytes; the GIL is released while hashing large buffers.
    fn update(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let hasher = state
            .as_mut()
            .ok_or_else(|| PyValueError::new_err("update() after hexdigest()"))?;
        if data.len() >= 64 * 1024 {
            py.detach(|| hasher.update(data));
        } else {
            hasher.update(data);
        }
        Ok(())
    }

    /// The hex digest; the hasher cannot be updated after it.
    fn hexdigest(&self) -> PyResult<String> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .take()
            .map(StreamHasher::finalize)
            .ok_or_else(|| PyValueError::new_err("hexdigest() was already called"))
    }

    #[getter]
    fn algorithm(&self) -> &'static str {
        self.algorithm.name()
    }
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

fn algorithm_of(name: &str) -> PyResult<Algorithm> {
    Algorithm::parse(name).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// This process's rayon pool (every core), built at its first use in each process.
///
/// Not rayon's global pool: a process forked after that pool started (runnable's local executor
/// forks its `multiprocessing.Pool` workers) inherits the pool's state but none of its threads,
/// and its first parallel call would wait forever for them. A pool built by another process is
/// leaked, not dropped: its threads are not there to be told to stop.
fn process_pool() -> PyResult<Arc<rayon::ThreadPool>> {
    static POOL: Mutex<Option<(u32, Arc<rayon::ThreadPool>)>> = Mutex::new(None);
    let pid = std::process::id();
    let mut slot = POOL.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((owner, pool)) = slot.as_ref() {
        if *owner == pid {
            return Ok(Arc::clone(pool));
        }
    }
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .build()
            .map_err(|e| PyValueError::new_err(format!("cannot start the thread pool: {e}")))?,
    );
    if let Some(inherited) = slot.replace((pid, Arc::clone(&pool))) {
        std::mem::forget(inherited);
    }
    Ok(pool)
}

/// Run `work` in this process's pool with the GIL released (see [`process_pool`]).
fn in_process_pool<T: Send>(py: Python<'_>, work: impl FnOnce() -> T + Send) -> PyResult<T> {
    let pool = process_pool()?;
    Ok(py.detach(|| pool.install(work)))
}

/// Run `work` on `jobs` threads (all cores when None), with the GIL released.
fn on_threads<T: Send>(
    py: Python<'_>,
    jobs: Option<usize>,
    work: impl FnOnce() -> T + Send,
) -> PyResult<T> {
    match jobs {
        None => in_process_pool(py, work),
        Some(0) => Err(PyValueError::new_err("jobs must be at least 1")),
        Some(n) => {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .map_err(|e| PyValueError::new_err(format!("cannot start {n} threads: {e}")))?;
            Ok(py.detach(|| pool.install(work)))
        }
    }
}

/// The hex digest of one file's content.
#[pyfunction]
#[pyo3(signature = (path, algorithm = "blake3"))]
fn hash_file(py: Python<'_>, path: PathBuf, algorithm: &str) -> PyResult<String> {
    let algorithm = algorithm_of(algorithm)?;
    in_process_pool(py, || hasher::hash_file(&path, algorithm))?
        .map_err(|e| to_py_err_as(py, e, "", Some("HashError")))
}

/// Digests of many files in order; a file that fails gives a HashError instance in its place.
#[pyfunction]
#[pyo3(signature = (paths, algorithm = "blake3", *, jobs = None, cache = None))]
fn hash_files<'py>(
    py: Python<'py>,
    paths: Vec<PathBuf>,
    algorithm: &str,
    jobs: Option<usize>,
    cache: Option<PathBuf>,
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let algorithm = algorithm_of(algorithm)?;
    let results = on_threads(py, jobs, || -> Result<Vec<_>, CoreError> {
        match cache {
            Some(cache_path) => Ok(HashCache::open(&cache_path)?.hash_files(&paths, algorithm)),
            None => Ok(hasher::hash_files(&paths, algorithm)),
        }
    })?
    .map_err(|e| to_py_err(py, e, ""))?;
    results
        .into_iter()
        .map(|result| match result {
            Ok(digest) => Ok(digest.into_pyobject(py)?.into_any()),
            Err(err) => Ok(to_py_err_as(py, err, "", Some("HashError"))
                .into_value(py)
                .into_bound(py)
                .into_any()),
        })
        .collect()
}

/// Copy (source, destination) pairs atomically, hashing as they pass. Each result is
/// `(digest, copied)` or a StorageError instance for a pair that failed.
#[pyfunction]
#[pyo3(signature = (pairs, algorithm = "blake3", *, fsync = true, jobs = None, cache = None, run_id = ""))]
fn copy_files<'py>(
    py: Python<'py>,
    pairs: Vec<(PathBuf, PathBuf)>,
    algorithm: &str,
    fsync: bool,
    jobs: Option<usize>,
    cache: Option<PathBuf>,
    run_id: &str,
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let algorithm = algorithm_of(algorithm)?;
    let results = on_threads(py, jobs, || -> Result<Vec<_>, CoreError> {
        match cache {
            Some(cache_path) => {
                let mut cache = HashCache::open(&cache_path)?;
                Ok(copy_file_pairs(&pairs, algorithm, fsync, Some(&mut cache)))
            }
            None => Ok(copy_file_pairs(&pairs, algorithm, fsync, None)),
        }
    })?
    .map_err(|e| to_py_err(py, e, run_id))?;
    results
        .into_iter()
        .map(|result| match result {
            Ok(copied) => Ok((copied.digest, copied.copied).into_pyobject(py)?.into_any()),
            Err(err) => Ok(to_py_err_as(py, err, run_id, Some("StorageError"))
                .into_value(py)
                .into_bound(py)
                .into_any()),
        })
        .collect()
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(chunk_file_name, m)?)?;
    m.add_function(wrap_pyfunction!(write_atomic, m)?)?;
    m.add_function(wrap_pyfunction!(read_file, m)?)?;
    m.add_function(wrap_pyfunction!(patch_json, m)?)?;
    m.add_function(wrap_pyfunction!(apply_patch, m)?)?;
    m.add_function(wrap_pyfunction!(merge_run, m)?)?;
    m.add_function(wrap_pyfunction!(merge_chunks, m)?)?;
    m.add_function(wrap_pyfunction!(clean_temp_files, m)?)?;
    m.add_function(wrap_pyfunction!(hash_file, m)?)?;
    m.add_function(wrap_pyfunction!(hash_files, m)?)?;
    m.add_function(wrap_pyfunction!(copy_files, m)?)?;
    m.add_class::<PyFileLock>()?;
    m.add_class::<PyHasher>()?;
    Ok(())
}
