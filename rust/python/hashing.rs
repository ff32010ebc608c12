//! Hashing in `runlog_store._core`: digests of files (one, or many in parallel through the hash
//! cache), the catalogs' copy-and-hash of file pairs, and a streaming `Hasher` for bytes that
//! pass through Python.

use std::path::PathBuf;
use std::sync::Mutex;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::errors::{failure_instance, ForRun, Operation, PyCoreError};
use super::pool::{in_process_pool, on_threads};
use crate::cache::HashCache;
use crate::copier;
use crate::error::CoreError;
use crate::hasher::{self, Algorithm, StreamHasher};

/// From this size on, `Hasher.update` hashes with the GIL released. Releasing it is cheap, but
/// taking it back can wait for another thread that took it meanwhile (up to Python's switch
/// interval, 5 ms): worth it only when the hash itself is long enough for other threads to use.
/// 64 KiB is tens of microseconds of hashing (BLAKE3 at a few GB/s, SHA-256 slower), the 1 MiB
/// blocks of a download far more; a few-KiB update is over in about a microsecond.
const DETACH_MIN_BYTES: usize = 64 * 1024;

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
        let algorithm = Algorithm::parse(algorithm)?;
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
        if data.len() >= DETACH_MIN_BYTES {
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

/// The hex digest of one file's content.
#[pyfunction]
#[pyo3(signature = (path, algorithm = "blake3"))]
fn hash_file(py: Python<'_>, path: PathBuf, algorithm: &str) -> PyResult<String> {
    let algorithm = Algorithm::parse(algorithm)?;
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
    let algorithm = Algorithm::parse(algorithm)?;
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
    let algorithm = Algorithm::parse(algorithm)?;
    let results = on_threads(py, jobs, || -> Result<Vec<_>, CoreError> {
        match cache {
            Some(cache_path) => {
                let mut cache = HashCache::open(&cache_path)?;
                Ok(copier::copy_files(
                    &pairs,
                    algorithm,
                    fsync,
                    Some(&mut cache),
                ))
            }
            None => Ok(copier::copy_files(&pairs, algorithm, fsync, None)),
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

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(hash_file, m)?)?;
    m.add_function(wrap_pyfunction!(hash_files, m)?)?;
    m.add_function(wrap_pyfunction!(copy_files, m)?)?;
    m.add_class::<PyHasher>()?;
    Ok(())
}
