//! Run summaries and fingerprints in `runlog_store._core` (`rust/summary/`): the summary of a
//! run log's JSON as a dict of `RunSummary`'s fields, many file-system run documents read and
//! summarized in parallel, and the fingerprints of a file-system or chunked-fs store's runs.
//! Parsing, reading and stats run with the GIL released, on this process's pool.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyType};
use rayon::prelude::*;

use super::errors::{failure_instance, Operation, PyCoreError};
use super::pool::in_process_pool;
use crate::error::CoreError;
use crate::summary::fingerprint::{self, Fingerprint};
use crate::summary::{self, DocumentError, RunSummary, Unreadable, Value};

pyo3::import_exception!(runlog_store.exceptions, CorruptChunkError);

static DATETIME: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn value_to_python<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::Int(i) => i.into_pyobject(py)?.into_any(),
        Value::BigInt(digits) => py
            .get_type::<pyo3::types::PyInt>()
            .call1((digits.as_str(),))?,
        Value::Float(f) => f.into_pyobject(py)?.into_any(),
        Value::Str(s) => s.into_pyobject(py)?.into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(value_to_python(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(fields) => pairs_to_dict(py, fields)?.into_any(),
    })
}

/// A dict of (key, value) pairs: a key twice keeps its first place and its last value, as
/// `json.loads` builds it.
fn pairs_to_dict<'py>(py: Python<'py>, pairs: &[(String, Value)]) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (key, value) in pairs {
        dict.set_item(key, value_to_python(py, value)?)?;
    }
    Ok(dict)
}

fn datetime<'py>(
    py: Python<'py>,
    at: Option<chrono::NaiveDateTime>,
) -> PyResult<Bound<'py, PyAny>> {
    use chrono::{Datelike, Timelike};
    let Some(at) = at else {
        return Ok(py.None().into_bound(py));
    };
    let class = DATETIME.import(py, "datetime", "datetime")?;
    class.call1((
        at.year(),
        at.month(),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.nanosecond() / 1000,
    ))
}

/// A summary as the keyword arguments of `RunSummary` (all but `layout` and `error`), plus
/// `other_times`: time texts Python's `fromisoformat` judges (see `summary::time`).
fn summary_to_python<'py>(py: Python<'py>, summary: &RunSummary) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    out.set_item(intern!(py, "run_id"), &summary.run_id)?;
    out.set_item(intern!(py, "status"), &summary.status)?;
    out.set_item(intern!(py, "tag"), &summary.tag)?;
    out.set_item(intern!(py, "start"), datetime(py, summary.start)?)?;
    out.set_item(intern!(py, "end"), datetime(py, summary.end)?)?;
    out.set_item(intern!(py, "duration_seconds"), summary.duration_seconds())?;
    out.set_item(intern!(py, "steps"), summary.steps)?;
    out.set_item(intern!(py, "branches"), summary.branches)?;
    out.set_item(intern!(py, "failed_step"), &summary.failed_step)?;
    out.set_item(intern!(py, "dag_hash"), &summary.dag_hash)?;
    out.set_item(intern!(py, "commit"), &summary.commit)?;
    let counts = |pairs: &[(String, usize)]| -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (status, count) in pairs {
            dict.set_item(status, count)?;
        }
        Ok(dict)
    };
    out.set_item(
        intern!(py, "steps_by_status"),
        counts(&summary.steps_by_status)?,
    )?;
    out.set_item(
        intern!(py, "branches_by_status"),
        counts(&summary.branches_by_status)?,
    )?;
    out.set_item(intern!(py, "params"), pairs_to_dict(py, &summary.params)?)?;
    out.set_item(intern!(py, "metrics"), pairs_to_dict(py, &summary.metrics)?)?;
    let statuses = PyDict::new(py);
    for (name, status) in &summary.step_statuses {
        statuses.set_item(name, status)?;
    }
    out.set_item(intern!(py, "step_statuses"), statuses)?;
    out.set_item(intern!(py, "other_times"), &summary.other_times)?;
    Ok(out)
}

/// The CorruptChunkError saying why a document is no run log (the message is the reason
/// alone), carrying `run_fields`: the run-level fields of a JSON object the models refuse (for
/// the models' own words), else None.
fn unreadable_error<'py>(
    py: Python<'py>,
    unreadable: &Unreadable,
    data: &[u8],
    path: &Path,
    run_id: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let kwargs = PyDict::new(py);
    kwargs.set_item("path", path.as_os_str())?;
    kwargs.set_item("run_id", run_id)?;
    let error = py
        .get_type::<CorruptChunkError>()
        .call((unreadable.reason(),), Some(&kwargs))?;
    let fields = match unreadable {
        Unreadable::NotARun(_) => summary::run_level_fields(data)
            .map(|pairs| pairs_to_dict(py, &pairs))
            .transpose()?
            .map(Bound::into_any),
        Unreadable::NotJson(_) => None,
    };
    error.setattr("run_fields", fields)?;
    Ok(error)
}

/// The summary of a run log's JSON (`RunSummary`'s fields, see `summary_to_python`);
/// CorruptChunkError (with `run_fields`) when it is not JSON or not a run log.
#[pyfunction]
#[pyo3(signature = (data, run_id = ""))]
fn summarize_run<'py>(py: Python<'py>, data: &[u8], run_id: &str) -> PyResult<Bound<'py, PyDict>> {
    match py.detach(|| summary::summarize(data)) {
        Ok(found) => summary_to_python(py, &found),
        Err(unreadable) => Err(PyErr::from_value(unreadable_error(
            py,
            &unreadable,
            data,
            Path::new(""),
            run_id,
        )?)),
    }
}

/// Why a document has no summary, with its bytes when the models' words need them.
type Refused = (DocumentError, Option<Vec<u8>>);

/// Read and summarize file-system run documents (`paths[i]` of run `run_ids[i]`) in parallel,
/// with the checks the store makes when it reads one: for each a summary dict, or the
/// exception saying why there is none (ChunkNotFoundError: gone; CorruptChunkError,
/// RunIdMismatchError, StorageError...), in order.
#[pyfunction]
fn summarize_files<'py>(
    py: Python<'py>,
    paths: Vec<PathBuf>,
    run_ids: Vec<String>,
) -> PyResult<Bound<'py, PyList>> {
    if paths.len() != run_ids.len() {
        return Err(CoreError::InvalidArgument(format!(
            "{} paths for {} run ids",
            paths.len(),
            run_ids.len()
        ))
        .into());
    }
    let results: Vec<Result<RunSummary, Refused>> = in_process_pool(py, || {
        paths
            .par_iter()
            .zip(run_ids.par_iter())
            .map(|(path, run_id)| {
                summary::summarize_document_file(path, run_id).map_err(|err| match err {
                    // The bytes again for the models' words (a rare document).
                    DocumentError::Unreadable(Unreadable::NotARun(_)) => {
                        let data = crate::writer::read_file(path).ok().flatten();
                        (err, data)
                    }
                    other => (other, None),
                })
            })
            .collect()
    })?;
    let out = PyList::empty(py);
    for ((result, path), run_id) in results.into_iter().zip(&paths).zip(&run_ids) {
        let item = match result {
            Ok(found) => summary_to_python(py, &found)?.into_any(),
            Err((DocumentError::Core(err), _)) => {
                failure_instance(py, PyCoreError::new(err, run_id, Operation::Documents))
            }
            Err((DocumentError::Unreadable(unreadable), data)) => unreadable_error(
                py,
                &unreadable,
                data.as_deref().unwrap_or(b""),
                path,
                run_id,
            )?,
        };
        out.append(item)?;
    }
    Ok(out)
}

fn fingerprints_to_python<'py>(
    py: Python<'py>,
    found: Vec<Fingerprint>,
) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    for item in found {
        out.set_item(item.run_id, (item.fingerprint, item.newest_change_ns))?;
    }
    Ok(out)
}

/// `{run_id: (fingerprint, newest change ns)}` of every run document of a file-system store's
/// folder (see `summary::fingerprint::fingerprint_documents`); empty when it does not exist.
#[pyfunction]
fn fingerprint_documents(py: Python<'_>, folder: PathBuf) -> PyResult<Bound<'_, PyDict>> {
    let found = in_process_pool(py, || fingerprint::fingerprint_documents(&folder))?;
    fingerprints_to_python(
        py,
        found.map_err(|e| PyCoreError::new(e, "", Operation::Documents))?,
    )
}

/// `{run_id: (fingerprint, newest change ns)}` of every run folder of a chunked-fs store's
/// folder (see `summary::fingerprint::fingerprint_run_folders`); empty when it does not exist.
#[pyfunction]
fn fingerprint_run_folders(py: Python<'_>, folder: PathBuf) -> PyResult<Bound<'_, PyDict>> {
    let found = in_process_pool(py, || fingerprint::fingerprint_run_folders(&folder))?;
    fingerprints_to_python(
        py,
        found.map_err(|e| PyCoreError::new(e, "", Operation::Documents))?,
    )
}

/// `(fingerprint, newest change ns)` of one run as `fingerprint_documents` gives it; None
/// when the store does not list it.
#[pyfunction]
fn fingerprint_document(
    py: Python<'_>,
    folder: PathBuf,
    run_id: OsString,
) -> PyResult<Option<(String, i64)>> {
    let found = py
        .detach(|| fingerprint::fingerprint_document(&folder, &run_id))
        .map_err(|e| PyCoreError::new(e, "", Operation::Documents))?;
    Ok(found.map(|f| (f.fingerprint, f.newest_change_ns)))
}

/// `(fingerprint, newest change ns)` of one run as `fingerprint_run_folders` gives it; None
/// when the store does not list it.
#[pyfunction]
fn fingerprint_run_folder(
    py: Python<'_>,
    folder: PathBuf,
    run_id: OsString,
) -> PyResult<Option<(String, i64)>> {
    let found = py
        .detach(|| fingerprint::fingerprint_run_folder(&folder, &run_id))
        .map_err(|e| PyCoreError::new(e, "", Operation::Documents))?;
    Ok(found.map(|f| (f.fingerprint, f.newest_change_ns)))
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(summarize_run, m)?)?;
    m.add_function(wrap_pyfunction!(summarize_files, m)?)?;
    m.add_function(wrap_pyfunction!(fingerprint_documents, m)?)?;
    m.add_function(wrap_pyfunction!(fingerprint_run_folders, m)?)?;
    m.add_function(wrap_pyfunction!(fingerprint_document, m)?)?;
    m.add_function(wrap_pyfunction!(fingerprint_run_folder, m)?)?;
    Ok(())
}
