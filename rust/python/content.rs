//! The content catalogs in `runlog_store._core`: contents hashed for their BLAKE3 object name,
//! stored once under it, materialized into a folder (reflink, hard link or copy), and the run
//! manifests' format (`rust/content.rs`).

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::errors::{failure_instance, ForRun, Operation, PyCoreError};
use super::pool::in_process_pool;
use crate::cache::HashCache;
use crate::content;
use crate::error::CoreError;
use crate::hasher::Algorithm;

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
    let algorithm = Algorithm::parse(algorithm)?;
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

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
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
