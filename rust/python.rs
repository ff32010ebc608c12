//! The Python module `runlog_store._core`.
//!
//! It only converts types, releases the GIL around every I/O call (so other Python threads and
//! the rayon pool run meanwhile), and turns [`CoreError`]s into the typed exceptions of
//! `runlog_store.exceptions`, each carrying the path and the run id, in one conversion
//! ([`PyCoreError`]).

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::exceptions::{PyException, PyImportError, PyValueError};
use pyo3::import_exception;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict, PyTuple, PyType};

use crate::cache::HashCache;
use crate::chunk;
use crate::content;
use crate::copier::copy_files as copy_file_pairs;
use crate::document;
use crate::error::CoreError;
use crate::hasher::{self, Algorithm, StreamHasher};
use crate::lock::FileLock;
use crate::merger::{merge_run as merge_run_folder, MergedRun};
use crate::names::{chunk_file_name as file_name_of, ChunkKind};
use crate::patch::{apply_patch as apply_patch_to, patch_json as patch_document, PatchOptions};
use crate::writer;

mod runs;

// --- errors ------------------------------------------------------------------------------------

/// Declares each class of `runlog_store.exceptions` the core raises (a Rust type per class,
/// imported once) and lists their names in `RAISED_EXCEPTIONS`, which the module checks when it
/// is imported: a class renamed on the Python side fails `import runlog_store._core` (and the
/// tests) instead of the first real failure.
macro_rules! raised_exceptions {
    ($($name:ident),* $(,)?) => {
        $(import_exception!(runlog_store.exceptions, $name);)*
        const RAISED_EXCEPTIONS: &[&str] = &[$(stringify!($name)),*];
    };
}

raised_exceptions!(
    StorageError,
    HashError,
    CorruptChunkError,
    ChunkNotFoundError,
    ChunkExistsError,
    LockTimeoutError,
);

/// Fail the import of `_core` unless every class in `RAISED_EXCEPTIONS` is an exception class of
/// `runlog_store.exceptions` (an imported exception type that is missing would otherwise panic
/// at the moment of a real failure).
fn check_raised_exceptions(py: Python<'_>) -> PyResult<()> {
    let module = py.import("runlog_store.exceptions")?;
    for name in RAISED_EXCEPTIONS {
        let is_exception = module
            .getattr(*name)
            .ok()
            .and_then(|class| class.cast_into::<PyType>().ok())
            .is_some_and(|class| class.is_subclass_of::<PyException>().unwrap_or(false));
        if !is_exception {
            return Err(PyImportError::new_err(format!(
                "runlog_store._core raises runlog_store.exceptions.{name}, which is not an \
                 exception class there"
            )));
        }
    }
    Ok(())
}

/// What a call was doing when it failed, which decides the exception of a storage failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    /// Reading and writing a run's documents: a missing file is a missing chunk
    /// (ChunkNotFoundError, which the stores turn into their typed not-found errors).
    Documents,
    /// Hashing files: every failure to read one, a missing file too, is a HashError.
    Hashing,
    /// Copying files: every failure to copy one, a missing source too, is a StorageError.
    Copying,
}

/// A core error with what Python needs to raise it: the run it concerns and the operation.
/// Its `From` conversion into `PyErr` is the one place core errors become exceptions.
#[derive(Debug)]
struct PyCoreError {
    err: CoreError,
    run_id: String,
    operation: Operation,
}

impl PyCoreError {
    fn new(err: CoreError, run_id: &str, operation: Operation) -> Self {
        PyCoreError {
            err,
            run_id: run_id.to_owned(),
            operation,
        }
    }

    /// The exception class, and whether it takes `errno` (the StorageError family does).
    fn class<'py>(&self, py: Python<'py>) -> Option<(Bound<'py, PyType>, bool)> {
        use CoreError as E;
        use Operation as Op;
        Some(match (&self.err, self.operation) {
            (E::Io { .. } | E::NotAFile { .. } | E::NotFound { .. }, Op::Hashing) => {
                (py.get_type::<HashError>(), true)
            }
            (E::Io { .. } | E::NotAFile { .. }, _) | (E::NotFound { .. }, Op::Copying) => {
                (py.get_type::<StorageError>(), true)
            }
            (E::NotFound { .. }, Op::Documents) => (py.get_type::<ChunkNotFoundError>(), false),
            (E::Corrupt { .. }, _) => (py.get_type::<CorruptChunkError>(), false),
            (E::Exists { .. }, _) => (py.get_type::<ChunkExistsError>(), false),
            (E::LockTimeout { .. }, _) => (py.get_type::<LockTimeoutError>(), false),
            (E::InvalidArgument(_), _) => return None,
        })
    }

    fn into_py_err(self, py: Python<'_>) -> PyErr {
        let Some((class, takes_errno)) = self.class(py) else {
            return PyValueError::new_err(self.err.to_string());
        };
        let message = if self.run_id.is_empty() {
            self.err.to_string()
        } else {
            format!("{} (run {:?})", self.err, self.run_id)
        };
        let build = || -> PyResult<PyErr> {
            let kwargs = PyDict::new(py);
            kwargs.set_item("path", self.err.path().as_os_str())?;
            kwargs.set_item("run_id", &self.run_id)?;
            if takes_errno {
                kwargs.set_item("errno", self.err.errno())?;
            }
            Ok(PyErr::from_value(class.call((message,), Some(&kwargs))?))
        };
        // A class whose constructor refuses these arguments is a bug, raised as it is.
        build().unwrap_or_else(|refused| refused)
    }
}

impl From<PyCoreError> for PyErr {
    fn from(err: PyCoreError) -> PyErr {
        Python::attach(|py| err.into_py_err(py))
    }
}

/// A core error outside any run (argument errors mostly) is a documents error with no run id.
impl From<CoreError> for PyErr {
    fn from(err: CoreError) -> PyErr {
        PyCoreError::new(err, "", Operation::Documents).into()
    }
}

/// `result.for_run(run_id)?` raises a core error naming the run.
trait ForRun<T> {
    fn for_run(self, run_id: &str) -> Result<T, PyCoreError>;
}

impl<T> ForRun<T> for crate::Result<T> {
    fn for_run(self, run_id: &str) -> Result<T, PyCoreError> {
        self.map_err(|err| PyCoreError::new(err, run_id, Operation::Documents))
    }
}

/// The exception instance for one failed item of a batch (returned in its place, not raised).
fn failure_instance(py: Python<'_>, err: PyCoreError) -> Bound<'_, PyAny> {
    PyErr::from(err).into_value(py).into_bound(py).into_any()
}

fn seconds(value: f64, what: &str) -> crate::Result<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        CoreError::InvalidArgument(format!(
            "{what} must be a non-negative number of seconds, not {value}"
        ))
    })
}

/// The chunk file name of a step (`kind="StepLog"`) or branch (`kind="BranchLog"`).
#[pyfunction]
fn chunk_file_name(kind: &str, internal_name: &str) -> PyResult<String> {
    Ok(file_name_of(ChunkKind::parse(kind)?, internal_name)?)
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

/// The bytes of a file, or None when it does not exist.
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
        .detach(|| patch_document(&path, patch, &options))
        .for_run(run_id)?;
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
    let document = apply_patch_to(&path, current, patch, &merge_keys, create).for_run(run_id)?;
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
    let merged = in_process_pool(py, || merge_run_folder(&run_dir, salvage))?.for_run(run_id)?;
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
    Ok(py.detach(|| writer::clean_temp_files(&folder, age))?)
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

fn algorithm_of(name: &str) -> crate::Result<Algorithm> {
    Algorithm::parse(name)
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
        Some(0) => Err(CoreError::InvalidArgument("jobs must be at least 1".to_string()).into()),
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
    Ok(in_process_pool(py, || hasher::hash_file(&path, algorithm))?
        .map_err(|e| PyCoreError::new(e, "", Operation::Hashing))?)
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
    .for_run("")?;
    results
        .into_iter()
        .map(|result| match result {
            Ok(digest) => Ok(digest.into_pyobject(py)?.into_any()),
            Err(err) => Ok(failure_instance(
                py,
                PyCoreError::new(err, "", Operation::Hashing),
            )),
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
    .for_run(run_id)?;
    results
        .into_iter()
        .map(|result| match result {
            Ok(copied) => Ok((copied.digest, copied.copied).into_pyobject(py)?.into_any()),
            Err(err) => Ok(failure_instance(
                py,
                PyCoreError::new(err, run_id, Operation::Copying),
            )),
        })
        .collect()
}

// --- the chunk format (rust/chunk.rs) ----------------------------------------------------------

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

// --- content catalogs (rust/content.rs) --------------------------------------------------------

/// A manifest entry as Python passes it: (path, BLAKE3 hex, size, mode, SHA-256 hex or None).
type ManifestRow = (String, String, u64, u32, Option<String>);

/// Per path, `(blake3, recorded, size, mode)`: the object name, the digest of `algorithm`, the
/// size and permission bits, from one read (none for files the cache knows); a HashError
/// instance in place of a file that fails.
#[pyfunction]
#[pyo3(signature = (paths, algorithm = "blake3", *, cache = None))]
fn hash_contents<'py>(
    py: Python<'py>,
    paths: Vec<PathBuf>,
    algorithm: &str,
    cache: Option<PathBuf>,
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let algorithm = algorithm_of(algorithm)?;
    let results = in_process_pool(py, || -> Result<Vec<_>, CoreError> {
        match cache {
            Some(cache_path) => {
                let mut cache = HashCache::open(&cache_path)?;
                Ok(content::hash_contents(&paths, algorithm, Some(&mut cache)))
            }
            None => Ok(content::hash_contents(&paths, algorithm, None)),
        }
    })?
    .for_run("")?;
    results
        .into_iter()
        .map(|result| match result {
            Ok(found) => Ok((found.blake3, found.recorded, found.size, found.mode)
                .into_pyobject(py)?
                .into_any()),
            Err(err) => Ok(failure_instance(
                py,
                PyCoreError::new(err, "", Operation::Hashing),
            )),
        })
        .collect()
}

/// Store the missing contents of `(source, BLAKE3 digest)` pairs under `objects`: per pair True
/// (stored now), False (already there) or a StorageError instance.
#[pyfunction]
#[pyo3(signature = (objects, items, *, fsync = true, run_id = ""))]
fn store_contents<'py>(
    py: Python<'py>,
    objects: PathBuf,
    items: Vec<(PathBuf, String)>,
    fsync: bool,
    run_id: &str,
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let results = in_process_pool(py, || content::store_contents(&objects, &items, fsync))?;
    results
        .into_iter()
        .map(|result| match result {
            Ok(stored) => Ok(stored.into_pyobject(py)?.to_owned().into_any()),
            Err(err) => Ok(failure_instance(
                py,
                PyCoreError::new(err, run_id, Operation::Copying),
            )),
        })
        .collect()
}

/// Put contents into place from `(object, target, mode, BLAKE3 digest)`: per item the way used
/// (`"reflink"`, `"hardlink"`, `"copy"`) or an exception instance (StorageError; a checked copy
/// of a damaged object, CorruptChunkError).
#[pyfunction]
#[pyo3(signature = (items, link = "auto", *, fsync = true, check = true, run_id = ""))]
fn materialize_contents<'py>(
    py: Python<'py>,
    items: Vec<(PathBuf, PathBuf, u32, String)>,
    link: &str,
    fsync: bool,
    check: bool,
    run_id: &str,
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let link = content::LinkMode::parse(link)?;
    let places: Vec<content::Placement> = items
        .into_iter()
        .map(|(object, target, mode, digest)| content::Placement {
            object,
            target,
            mode,
            digest,
        })
        .collect();
    let results = in_process_pool(py, || content::materialize(&places, link, fsync, check))?;
    results
        .into_iter()
        .map(|result| match result {
            Ok(how) => Ok(how.name().into_pyobject(py)?.into_any()),
            Err(err) => Ok(failure_instance(
                py,
                PyCoreError::new(err, run_id, Operation::Copying),
            )),
        })
        .collect()
}

/// Where the content of a BLAKE3 digest is stored under `objects` (`<2 hex>/<62 hex>`).
#[pyfunction]
fn content_object_path(objects: PathBuf, digest: &str) -> PyResult<PathBuf> {
    Ok(content::object_path(&objects, digest)?)
}

/// The bytes of a run's manifest from its entries.
#[pyfunction]
fn encode_manifest<'py>(
    py: Python<'py>,
    run_id: &str,
    files: Vec<ManifestRow>,
) -> PyResult<Bound<'py, PyBytes>> {
    let files = files
        .into_iter()
        .map(|(path, blake3, size, mode, sha256)| {
            let entry = content::ManifestEntry {
                blake3,
                size,
                mode,
                sha256,
            };
            (path, entry)
        })
        .collect();
    Ok(PyBytes::new(py, &content::encode_manifest(run_id, files)?))
}

/// `(run_id, entries)` of a manifest's bytes; CorruptChunkError naming `location` when they
/// are not a manifest this version reads.
#[pyfunction]
#[pyo3(signature = (location, data, *, run_id = ""))]
fn decode_manifest(
    location: PathBuf,
    data: &[u8],
    run_id: &str,
) -> PyResult<(String, Vec<ManifestRow>)> {
    let manifest = content::decode_manifest(&location, data).for_run(run_id)?;
    let rows = manifest
        .files
        .into_iter()
        .map(|(path, e)| (path, e.blake3, e.size, e.mode, e.sha256))
        .collect();
    Ok((manifest.run_id, rows))
}

fn add_content_functions(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("CONTENT_OBJECT_MODE", content::OBJECT_MODE)?;
    m.add("MANIFEST_FORMAT", content::MANIFEST_FORMAT)?;
    m.add_function(wrap_pyfunction!(hash_contents, m)?)?;
    m.add_function(wrap_pyfunction!(store_contents, m)?)?;
    m.add_function(wrap_pyfunction!(materialize_contents, m)?)?;
    m.add_function(wrap_pyfunction!(content_object_path, m)?)?;
    m.add_function(wrap_pyfunction!(encode_manifest, m)?)?;
    m.add_function(wrap_pyfunction!(decode_manifest, m)?)?;
    Ok(())
}

// --- steps and branches inside one whole run log document (rust/document.rs) -----------------

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

fn add_document_functions(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(document_find, m)?)?;
    m.add_function(wrap_pyfunction!(document_place, m)?)?;
    Ok(())
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    check_raised_exceptions(py)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("RAISED_EXCEPTIONS", PyTuple::new(py, RAISED_EXCEPTIONS)?)?;
    m.add("RUN_LOG_FILE", chunk::RUN_LOG_FILE)?;
    m.add("LAYOUT_MARKER", chunk::LAYOUT_MARKER)?;
    m.add(
        "LAYOUT_MARKER_TEXT",
        PyBytes::new(py, chunk::LAYOUT_MARKER_TEXT),
    )?;
    m.add("CREATED_NS_KEY", chunk::CREATED_NS_KEY)?;
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
    m.add_function(wrap_pyfunction!(temp_path, m)?)?;
    m.add_function(wrap_pyfunction!(ensure_dir, m)?)?;
    m.add_function(wrap_pyfunction!(chunk_file_name, m)?)?;
    m.add_function(wrap_pyfunction!(write_atomic, m)?)?;
    m.add_function(wrap_pyfunction!(read_file, m)?)?;
    m.add_function(wrap_pyfunction!(patch_json, m)?)?;
    m.add_function(wrap_pyfunction!(apply_patch, m)?)?;
    m.add_function(wrap_pyfunction!(merge_run, m)?)?;
    m.add_function(wrap_pyfunction!(clean_temp_files, m)?)?;
    m.add_function(wrap_pyfunction!(hash_file, m)?)?;
    m.add_function(wrap_pyfunction!(hash_files, m)?)?;
    m.add_function(wrap_pyfunction!(copy_files, m)?)?;
    m.add_class::<PyFileLock>()?;
    m.add_class::<PyHasher>()?;
    runs::register(m)?;
    add_document_functions(m)?;
    add_content_functions(m)?;
    Ok(())
}
