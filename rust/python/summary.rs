//! Run summaries and fingerprints in `runlog_store._core` (`rust/summary/`): the summary of a
//! run log's JSON as a dict of `RunSummary`'s fields, many file-system run documents read and
//! summarized in parallel, and the fingerprints of a file-system or chunked-fs store's runs.
//! Parsing, reading and stats run with the GIL released, on this process's pool.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, RwLock};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyType};
use rayon::prelude::*;

use super::errors::{failure_instance, Operation, PyCoreError};
use super::files::seconds;
use super::pool::in_process_pool;
use crate::error::CoreError;
use crate::run::{Run, RunOptions};
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

/// Read and summarize chunked-fs runs (the folders `<folder>/<run_ids[i]>`) in parallel, each
/// read as the store reads it (`ChunkedRun.read`: its stored merge when still good, which a
/// full read of an ended run stores; a merge made here is not stored, see
/// `Run::read_for_summary`): for each a summary dict, or the exception its read or its summary
/// raised, in order.
#[pyfunction]
#[pyo3(signature = (folder, run_ids, *, fsync = true, lock_timeout = 60.0))]
fn summarize_run_folders<'py>(
    py: Python<'py>,
    folder: PathBuf,
    run_ids: Vec<String>,
    fsync: bool,
    lock_timeout: f64,
) -> PyResult<Bound<'py, PyList>> {
    let options = RunOptions {
        fsync,
        lock_timeout: seconds(lock_timeout, "lock_timeout")?,
    };
    type Outcome = std::result::Result<RunSummary, std::result::Result<CoreError, Unreadable>>;
    let results: Vec<(Outcome, Option<Vec<u8>>)> = in_process_pool(py, || {
        run_ids
            .par_iter()
            .with_min_len(8)
            .map(|run_id| {
                let run = Run::new(&folder.join(run_id), options);
                match run.read_for_summary() {
                    Err(err) => (Err(Ok(err)), None),
                    Ok(merged) => match summary::summarize(&merged.document) {
                        Ok(found) => (Ok(found), None),
                        Err(unreadable) => (Err(Err(unreadable)), Some(merged.document)),
                    },
                }
            })
            .collect()
    })?;
    let out = PyList::empty(py);
    for ((result, data), run_id) in results.into_iter().zip(&run_ids) {
        let item = match result {
            Ok(found) => summary_to_python(py, &found)?.into_any(),
            Err(Ok(err)) => {
                failure_instance(py, PyCoreError::new(err, run_id, Operation::Documents))
            }
            Err(Err(unreadable)) => unreadable_error(
                py,
                &unreadable,
                data.as_deref().unwrap_or(b""),
                Path::new(""),
                run_id,
            )?,
        };
        out.append(item)?;
    }
    Ok(out)
}

/// The stamps an index file records, `{run_id: (fingerprint, indexed_at)}`, as this process
/// last read them, with the state of the file they were read at (its epoch and generation):
/// compared with a store's stamps here, so a quiet search makes no Python object per run.
#[pyclass(name = "StoredStamps", module = "runlog_store._core", frozen)]
struct StoredStamps {
    inner: RwLock<Stored>,
}

struct Stored {
    state: (String, String),
    /// The rows, read when first needed from `saved` when that is where they come from: a
    /// search that finds every run current against them by the marks of an earlier scan
    /// (`fingerprint::Verdict`, saved with the listings) never reads them. None inside: the
    /// file no longer held them.
    rows: OnceLock<Option<Rows>>,
    saved: Option<PathBuf>,
    /// How many rows there are (the saved file's count until they are read).
    count: usize,
    /// The keys a folder's fingerprints are marked current with against these rows when their
    /// state is not one of a file (see `key`), by the racy rule's bits.
    keys: Mutex<Vec<(u64, u64)>>,
}

type Rows = HashMap<String, (String, f64)>;

/// The next key of `Stored::keys` (0 is "none"; never with `SHARED_KEY`'s bit).
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

impl Stored {
    fn new(state: (String, String), rows: Rows) -> Self {
        Stored {
            state,
            count: rows.len(),
            rows: OnceLock::from(Some(rows)),
            saved: None,
            keys: Mutex::new(Vec::new()),
        }
    }

    /// The rows of `state` saved in the file at `path`, read when first needed.
    fn saved(state: (String, String), path: PathBuf, count: usize) -> Self {
        Stored {
            state,
            count,
            rows: OnceLock::new(),
            saved: Some(path),
            keys: Mutex::new(Vec::new()),
        }
    }

    /// The rows; None when they were to be read from a file that no longer holds them.
    fn rows(&self) -> Option<&Rows> {
        self.rows
            .get_or_init(|| {
                let path = self.saved.as_ref()?;
                summary::saved_stamps::load(path, &self.state).filter(|r| r.len() == self.count)
            })
            .as_ref()
    }

    fn len(&self) -> usize {
        match self.rows.get() {
            Some(Some(rows)) => rows.len(),
            _ => self.count,
        }
    }

    /// The key of these rows compared under racy rule `racy` (seconds). At a state of an index
    /// file (its epoch and generation: the same rows in every process), a hash of the state and
    /// the rule, with `SHARED_KEY`'s bit: a mark saved by one process holds in the next. Else
    /// one new to this process.
    fn key(&self, racy: f64) -> u64 {
        if !self.state.0.is_empty() && !self.state.1.is_empty() {
            let mut hasher = blake3::Hasher::new();
            hasher.update(b"runlog-stamps\0");
            hasher.update(self.state.0.as_bytes());
            hasher.update(b"\0");
            hasher.update(self.state.1.as_bytes());
            hasher.update(b"\0");
            hasher.update(&racy.to_bits().to_le_bytes());
            let mut head = [0u8; 8];
            head.copy_from_slice(&hasher.finalize().as_bytes()[..8]);
            return u64::from_le_bytes(head) | fingerprint::SHARED_KEY;
        }
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, key)) = keys.iter().find(|(bits, _)| *bits == racy.to_bits()) {
            return *key;
        }
        let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
        keys.push((racy.to_bits(), key));
        key
    }
}

/// `(stale, gone)`: the runs to summarize again, `(run_id, fingerprint, newest change ns)`, and
/// the run ids recorded that are no longer there.
type Changes = (Vec<(String, String, i64)>, Vec<String>);

/// Whether a run stamped so must be read again: new, changed, or changed too close to the
/// moment it was summarized (the index's racy rule).
fn is_stale(
    recorded: Option<&(String, f64)>,
    head: &str,
    fingerprint: &str,
    changed: i64,
    racy: f64,
) -> bool {
    let Some((recorded, indexed_at)) = recorded else {
        return true;
    };
    let same = recorded.len() == head.len() + fingerprint.len()
        && recorded.starts_with(head)
        && recorded.ends_with(fingerprint);
    !same || (changed != 0 && changed as f64 / 1e9 >= indexed_at - racy)
}

#[pymethods]
impl StoredStamps {
    /// `rows` are the index file's at `state` (its epoch and generation): stamps of one state
    /// are taken to be the same rows in every process, so that a run found current against
    /// them by one process is current against them in the next (see `Stored::key`).
    #[new]
    fn new(state: (String, String), rows: Vec<(String, String, f64)>) -> Self {
        let rows = rows
            .into_iter()
            .map(|(run_id, fingerprint, at)| (run_id, (fingerprint, at)))
            .collect();
        StoredStamps {
            inner: RwLock::new(Stored::new(state, rows)),
        }
    }

    #[getter]
    fn state(&self) -> (String, String) {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .state
            .clone()
    }

    fn __len__(&self) -> usize {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether the rows were read: stamps loaded lazily (`load`) are read only when a
    /// comparison needs them.
    #[getter]
    fn rows_read(&self) -> bool {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .rows
            .get()
            .is_some()
    }

    /// The stamps saved at `path` (see `summary::saved_stamps`) when they are those of state
    /// `state`; None otherwise (another state, no such file, one that cannot be read). With
    /// `lazy`, only the file's head is read now, the rows when a comparison first needs them
    /// (a comparison that then finds the file changed says these stamps are no longer of
    /// their state: the caller reads them again).
    #[staticmethod]
    #[pyo3(signature = (path, state, lazy = false))]
    fn load(
        py: Python<'_>,
        path: PathBuf,
        state: (String, String),
        lazy: bool,
    ) -> Option<StoredStamps> {
        let stored = py.detach(|| {
            if lazy {
                let count = summary::saved_stamps::count_at(&path, &state)?;
                Some(Stored::saved(state, path, count))
            } else {
                let rows = summary::saved_stamps::load(&path, &state)?;
                Some(Stored::new(state, rows))
            }
        })?;
        Some(StoredStamps {
            inner: RwLock::new(stored),
        })
    }

    /// Save these stamps to `path` for other processes, unless the file holds their state
    /// already; whether they were saved.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<bool> {
        let saved = py.detach(|| {
            let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
            match inner.rows() {
                Some(rows) => summary::saved_stamps::save(&path, &inner.state, rows),
                None => Ok(false),
            }
        });
        Ok(saved.map_err(|e| PyCoreError::new(e, "", Operation::Documents))?)
    }

    /// Record a write made at state `expected`, which left the file at `state`: rows put and
    /// run ids removed. False (nothing changed) when these stamps are not those of `expected`.
    fn apply(
        &self,
        expected: (String, String),
        state: (String, String),
        put: Vec<(String, String, f64)>,
        removed: Vec<String>,
    ) -> bool {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if inner.state != expected || inner.rows().is_none() {
            return false;
        }
        let Some(Some(rows)) = inner.rows.get_mut() else {
            return false;
        };
        for run_id in removed {
            rows.remove(&run_id);
        }
        for (run_id, fingerprint, at) in put {
            rows.insert(run_id, (fingerprint, at));
        }
        inner.count = rows.len();
        inner.state = state;
        // Other rows: no fingerprint marked current against the old ones is current now.
        inner
            .keys
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        true
    }

    /// The changes from these stamps to a store's (`{run_id: (fingerprint, newest change ns)}`),
    /// or None when these are no longer the stamps of state `expected`.
    fn diff(
        &self,
        expected: (String, String),
        stamps: HashMap<String, (String, i64)>,
        racy_seconds: f64,
    ) -> Option<Changes> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        if inner.state != expected {
            return None;
        }
        let rows = inner.rows()?;
        let mut stale: Vec<(String, String, i64)> = stamps
            .iter()
            .filter(|(run_id, (fp, changed))| {
                is_stale(rows.get(run_id.as_str()), "", fp, *changed, racy_seconds)
            })
            .map(|(run_id, (fp, changed))| (run_id.clone(), fp.clone(), *changed))
            .collect();
        stale.sort_unstable();
        let mut gone: Vec<String> = rows
            .keys()
            .filter(|run_id| !stamps.contains_key(*run_id))
            .cloned()
            .collect();
        gone.sort_unstable();
        Some((stale, gone))
    }
}

/// `(stale, gone, both, unnamed)` of a log folder against an index's stamps: the runs of either
/// layout (one listing, stamped as `fingerprint_documents` and `fingerprint_run_folders` stamp
/// them, their fingerprints headed by their layout's name, a run folder over a document of the
/// same name) to summarize again and the recorded ones gone (see `StoredStamps.diff`); the run
/// ids found in both layouts (sorted); the names that are not UTF-8 (no index can hold them).
/// None when `stored` is no longer at state `expected`. Stats run on this process's pool.
#[pyfunction]
fn folder_changes(
    py: Python<'_>,
    folder: PathBuf,
    stored: &StoredStamps,
    expected: (String, String),
    racy_seconds: f64,
) -> PyResult<Option<FolderDiff>> {
    let found = in_process_pool(py, || {
        fingerprint::fingerprint_folder(&folder, (racy_seconds * 1e9) as i64).map(|found| {
            let inner = stored.inner.read().unwrap_or_else(|p| p.into_inner());
            if inner.state != expected {
                return None;
            }
            let diff = folder_diff(&inner, found, racy_seconds)?;
            let quiet = diff.0 .0.is_empty() && diff.0 .1.is_empty();
            fingerprint::judged_against(&folder, inner.key(racy_seconds), quiet);
            Some(diff)
        })
    })?;
    Ok(found.map_err(|e| PyCoreError::new(e, "", Operation::Documents))?)
}

/// Take the listings of log folder `folder` saved in `path` by another process, unless this
/// one keeps its own (see `summary::saved_listings`); whether they were taken. A file that
/// cannot be read, or is not such a file, is ignored.
#[pyfunction]
fn load_folder_listings(py: Python<'_>, folder: PathBuf, path: PathBuf) -> PyResult<bool> {
    // Decoded on this process's pool (never rayon's global one: see `pool`).
    in_process_pool(py, || {
        summary::saved_listings::load_listings(&folder, &path)
    })
}

/// Save this process's listings of log folder `folder` to `path` when enough changed since
/// they were last saved or loaded; whether they were.
#[pyfunction]
fn save_folder_listings(py: Python<'_>, folder: PathBuf, path: PathBuf) -> PyResult<bool> {
    let saved = py.detach(|| summary::saved_listings::save_listings(&folder, &path));
    Ok(saved.map_err(|e| PyCoreError::new(e, "", Operation::Documents))?)
}

/// How many listings the last scan of log folder `folder` in this process took anew (see
/// `summary::saved_listings`).
#[pyfunction]
fn folder_listings_taken(folder: PathBuf) -> u64 {
    summary::saved_listings::listings_taken(&folder)
}

/// What `folder_changes` hands back: the changes, the run ids found in both layouts, the names
/// that are not UTF-8.
type FolderDiff = (Changes, Vec<String>, Vec<OsString>);
/// A stale run: its id, its new stamp and its newest change time (ns).
type StaleEntry = (String, String, i64);

const DOCUMENT_HEAD: &str = "file-system ";
const FOLDER_HEAD: &str = "chunked-fs ";

/// None when the rows were needed and could not be read (see `Stored::rows`).
fn folder_diff(
    inner: &Stored,
    found: fingerprint::FolderFingerprints,
    racy: f64,
) -> Option<FolderDiff> {
    let folders: HashSet<&OsStr> = if found.documents.is_empty() {
        HashSet::new()
    } else {
        found
            .folders
            .iter()
            .map(|f| f.fingerprint.run_id.as_os_str())
            .collect()
    };
    let mut both: Vec<String> = Vec::new();
    // Each run once: a document of a run folder's name is read as the run folder.
    let mut listed: Vec<(&fingerprint::Stamped, &str)> =
        Vec::with_capacity(found.documents.len() + found.folders.len());
    for item in &found.documents {
        let run_id = item.fingerprint.run_id.as_os_str();
        if folders.contains(run_id) {
            both.extend(run_id.to_str().map(str::to_owned));
        } else {
            listed.push((item, DOCUMENT_HEAD));
        }
    }
    listed.extend(found.folders.iter().map(|item| (item, FOLDER_HEAD)));
    let key = inner.key(racy);
    let unreadable = AtomicBool::new(false);
    // Looked up on every core: (recorded, stale entry) of each run. A fingerprint found
    // current against these rows by the last scan, and unchanged since, is current still.
    let judged: Vec<(bool, Option<StaleEntry>)> = listed
        .par_iter()
        .with_min_len(1024)
        .filter_map(|(stamped, head)| {
            let item = &stamped.fingerprint;
            // Only a name that is UTF-8 was ever found current (checked first: most runs).
            if stamped.verdict.current_for(key) {
                return Some((true, None));
            }
            let run_id = item.run_id.to_str()?;
            let Some(rows) = inner.rows() else {
                unreadable.store(true, Ordering::Relaxed);
                return None;
            };
            let recorded = rows.get(run_id);
            let changed = item.newest_change_ns;
            let stale = is_stale(recorded, head, &item.fingerprint, changed, racy);
            if !stale {
                stamped.verdict.set_current_for(key);
            }
            let entry = stale.then(|| {
                (
                    run_id.to_owned(),
                    format!("{head}{}", item.fingerprint),
                    changed,
                )
            });
            Some((recorded.is_some(), entry))
        })
        .collect();
    if unreadable.into_inner() {
        return None;
    }
    // A name that is not UTF-8 is the only one judged leaves out.
    let unnamed: Vec<OsString> = if judged.len() == listed.len() {
        Vec::new()
    } else {
        listed
            .iter()
            .filter(|(item, _)| item.fingerprint.run_id.to_str().is_none())
            .map(|(item, _)| item.fingerprint.run_id.clone())
            .collect()
    };
    let matched = judged.iter().filter(|(recorded, _)| *recorded).count();
    let mut stale: Vec<(String, String, i64)> =
        judged.into_iter().filter_map(|(_, entry)| entry).collect();
    // Every recorded run seen again: none gone (each run id is counted once).
    let gone = if matched == inner.len() {
        Vec::new()
    } else {
        let seen: HashSet<&str> = found
            .documents
            .iter()
            .chain(&found.folders)
            .filter_map(|item| item.fingerprint.run_id.to_str())
            .collect();
        let mut gone: Vec<String> = inner
            .rows()?
            .keys()
            .filter(|run_id| !seen.contains(run_id.as_str()))
            .cloned()
            .collect();
        gone.sort_unstable();
        gone
    };
    stale.sort_unstable();
    both.sort_unstable();
    Some(((stale, gone), both, unnamed))
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<StoredStamps>()?;
    m.add_function(wrap_pyfunction!(summarize_run_folders, m)?)?;
    m.add_function(wrap_pyfunction!(folder_changes, m)?)?;
    m.add_function(wrap_pyfunction!(load_folder_listings, m)?)?;
    m.add_function(wrap_pyfunction!(save_folder_listings, m)?)?;
    m.add_function(wrap_pyfunction!(folder_listings_taken, m)?)?;
    m.add_function(wrap_pyfunction!(summarize_run, m)?)?;
    m.add_function(wrap_pyfunction!(summarize_files, m)?)?;
    m.add_function(wrap_pyfunction!(fingerprint_documents, m)?)?;
    m.add_function(wrap_pyfunction!(fingerprint_run_folders, m)?)?;
    m.add_function(wrap_pyfunction!(fingerprint_document, m)?)?;
    m.add_function(wrap_pyfunction!(fingerprint_run_folder, m)?)?;
    Ok(())
}
