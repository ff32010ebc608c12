//! Chunked runs in `runlog_store._core`: a chunked-fs run (`ChunkedRun`: journal, reads,
//! folds), the merge of a run folder or of a run held in memory (object storage), and what a
//! fold of the latter must embed.

use std::path::{Path, PathBuf};

use pyo3::prelude::*;
use pyo3::pybacked::{PyBackedBytes, PyBackedStr};
use pyo3::types::PyBytes;

use super::errors::ForRun;
use super::files::seconds;
use super::pool::in_process_pool;
use rayon::prelude::*;

use crate::chunk;
use crate::journal::{self, NewRecord, RecordKind};
use crate::merger::{self, Contents, FoldPlan, MergedRun, Naming};
use crate::names::{self, ChunkKind};
use crate::run::{Run, RunOptions};

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

/// One chunked-fs run folder, as a store object sees it: records appended to this process's
/// journal, reads of the documents with the journals on top, folds. Thread-safe; a forked
/// child starts its own journal.
#[pyclass(name = "ChunkedRun", module = "runlog_store._core", frozen)]
struct PyChunkedRun {
    run: Run,
    run_id: String,
}

fn bytes_or_none(py: Python<'_>, data: Option<Vec<u8>>) -> Option<Bound<'_, PyBytes>> {
    data.map(|bytes| PyBytes::new(py, &bytes))
}

#[pymethods]
impl PyChunkedRun {
    #[new]
    #[pyo3(signature = (run_dir, *, fsync = true, lock_timeout = 60.0, run_id = String::new()))]
    fn new(run_dir: PathBuf, fsync: bool, lock_timeout: f64, run_id: String) -> PyResult<Self> {
        let options = RunOptions {
            fsync,
            lock_timeout: seconds(lock_timeout, "lock_timeout")?,
        };
        Ok(PyChunkedRun {
            run: Run::new(&run_dir, options),
            run_id,
        })
    }

    /// Append `(kind, target, body)` records (kind: run-set, run-merge, branch-put,
    /// branch-merge, step-put; target: the branch's or step's internal name, "" for the run;
    /// body: a JSON object) as one write; returns when they are durable and visible.
    fn append(
        &self,
        py: Python<'_>,
        records: Vec<(String, String, PyBackedBytes)>,
    ) -> PyResult<()> {
        let records = records
            .into_iter()
            .map(|(kind, target, body)| {
                NewRecord::new(RecordKind::parse(&kind)?, &target, body.to_vec())
            })
            .collect::<crate::Result<Vec<_>>>()
            .for_run(&self.run_id)?;
        Ok(py
            .detach(|| self.run.append(&records))
            .for_run(&self.run_id)?)
    }

    /// Fold an ended branch into its document (and the step holding it into its own).
    fn fold_branch(&self, py: Python<'_>, name: &str) -> PyResult<()> {
        Ok(py
            .detach(|| self.run.fold_branch(name))
            .for_run(&self.run_id)?)
    }

    /// Fold every record into the documents and remove the journals.
    fn fold_all(&self, py: Python<'_>) -> PyResult<()> {
        Ok(in_process_pool(py, || self.run.fold_all())?.for_run(&self.run_id)?)
    }

    /// The full run log and, with `salvage`, what was left out: (path, reason).
    #[pyo3(signature = (*, salvage = false))]
    fn read<'py>(
        &self,
        py: Python<'py>,
        salvage: bool,
    ) -> PyResult<(Bound<'py, PyBytes>, Skipped)> {
        let merged = in_process_pool(py, || self.run.read(salvage))?.for_run(&self.run_id)?;
        Ok(merged_to_python(py, merged))
    }

    /// The run's fields with its root steps (each without branches); with `steps=False`, with
    /// `"steps": {}`.
    #[pyo3(signature = (*, steps = true))]
    fn read_run<'py>(&self, py: Python<'py>, steps: bool) -> PyResult<Bound<'py, PyBytes>> {
        let data = py
            .detach(|| self.run.read_run(steps))
            .for_run(&self.run_id)?;
        Ok(PyBytes::new(py, &data))
    }

    /// A branch with its direct steps, or None.
    fn read_branch<'py>(
        &self,
        py: Python<'py>,
        name: &str,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let data = py
            .detach(|| self.run.read_branch(name))
            .for_run(&self.run_id)?;
        Ok(bytes_or_none(py, data))
    }

    /// A step without its branches, or None.
    fn read_step<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let data = py
            .detach(|| self.run.read_step(name))
            .for_run(&self.run_id)?;
        Ok(bytes_or_none(py, data))
    }

    /// Whether the run has this branch.
    fn has_branch(&self, py: Python<'_>, name: &str) -> PyResult<bool> {
        Ok(py
            .detach(|| self.run.has_branch(name))
            .for_run(&self.run_id)?)
    }

    /// The journals holding records not folded yet: (file name, size in bytes).
    fn journals(&self, py: Python<'_>) -> PyResult<Vec<(String, u64)>> {
        Ok(py.detach(|| self.run.journals()).for_run(&self.run_id)?)
    }

    #[getter]
    fn run_dir(&self) -> PathBuf {
        self.run.dir().to_path_buf()
    }
}

/// The naming of a run's documents in object storage: "objects" (format 2, runnable's
/// chunked-minio names) or "folder" (format 1 and chunked-fs names).
fn naming_of(naming: &str) -> crate::Result<Naming> {
    match naming {
        "objects" => Ok(Naming::Objects),
        "folder" => Ok(Naming::Folder),
        other => Err(crate::CoreError::InvalidArgument(format!(
            "unknown naming {other:?}: expected \"objects\" or \"folder\""
        ))),
    }
}

/// A run held in memory (object storage) merged: the run-level document's bytes and `(name,
/// bytes)` of the run's other objects. `view` picks what comes back: "full" (the full run log),
/// "run" (the run's fields and root steps without branches), "branch" or "step" (the one
/// named `name`, None when missing). Errors name `location`/<name>.
#[pyfunction]
#[pyo3(signature = (
    location, run_log, objects, *, salvage = false, run_id = "", view = "full", name = ""
))]
#[allow(clippy::too_many_arguments)]
fn merge_chunks<'py>(
    py: Python<'py>,
    location: PathBuf,
    run_log: &[u8],
    objects: Vec<(String, Vec<u8>)>,
    salvage: bool,
    run_id: &str,
    view: &str,
    name: &str,
) -> PyResult<(Option<Bound<'py, PyBytes>>, Skipped)> {
    let view = View::parse(view, name)?;
    merge_view(
        py,
        &location,
        run_log,
        || Ok(objects),
        salvage,
        run_id,
        view,
    )
}

/// A run held as rows of a database (the postgres store) merged as [`merge_chunks`] merges
/// one held in memory: the run-level document's bytes and `(kind, internal name,
/// created_ns, body)` of each step (kind "step") and branch ("branch"), a body without the
/// `_created_ns` header. The chunks' names and headers are made here, on the process's
/// threads, rather than a Python call or two per row. A body that is not a JSON object is
/// passed on as it is, for the merge to find it damaged (a salvage leaves it out).
#[pyfunction]
#[pyo3(signature = (
    location, run_log, rows, *, salvage = false, run_id = "", view = "full", name = ""
))]
#[allow(clippy::too_many_arguments)]
fn merge_rows<'py>(
    py: Python<'py>,
    location: PathBuf,
    run_log: &[u8],
    rows: Vec<(PyBackedStr, PyBackedStr, i64, PyBackedBytes)>,
    salvage: bool,
    run_id: &str,
    view: &str,
    name: &str,
) -> PyResult<(Option<Bound<'py, PyBytes>>, Skipped)> {
    let view = View::parse(view, name)?;
    let objects = || -> crate::Result<Vec<(String, Vec<u8>)>> {
        rows.par_iter()
            .map(|(kind, internal_name, created_ns, body)| {
                let kind = match &**kind {
                    "step" => ChunkKind::Step,
                    "branch" => ChunkKind::Branch,
                    other => {
                        return Err(crate::CoreError::InvalidArgument(format!(
                            "unknown kind of row {other:?}: expected \"step\" or \"branch\""
                        )))
                    }
                };
                let object = names::chunk_file_name(kind, internal_name)?;
                let chunk =
                    chunk::chunk_with_header(*created_ns, body).unwrap_or_else(|_| body.to_vec());
                Ok((object, chunk))
            })
            .collect()
    };
    merge_view(py, &location, run_log, objects, salvage, run_id, view)
}

/// What a merge of a run held in memory gives back.
#[derive(Clone, Copy)]
enum View<'a> {
    Full,
    Run,
    Branch(&'a str),
    Step(&'a str),
}

impl<'a> View<'a> {
    fn parse(view: &str, name: &'a str) -> crate::Result<Self> {
        match view {
            "full" => Ok(View::Full),
            "run" => Ok(View::Run),
            "branch" => Ok(View::Branch(name)),
            "step" => Ok(View::Step(name)),
            other => Err(crate::CoreError::InvalidArgument(format!(
                "unknown view {other:?}: expected \"full\", \"run\", \"branch\" or \"step\""
            ))),
        }
    }
}

/// The merge of [`merge_chunks`] and [`merge_rows`], the objects made by `objects` on the
/// process's threads, the GIL released.
fn merge_view<'py>(
    py: Python<'py>,
    location: &Path,
    run_log: &[u8],
    objects: impl FnOnce() -> crate::Result<Vec<(String, Vec<u8>)>> + Send,
    salvage: bool,
    run_id: &str,
    view: View<'_>,
) -> PyResult<(Option<Bound<'py, PyBytes>>, Skipped)> {
    let asked = (!run_id.is_empty()).then_some(run_id);
    let merged = in_process_pool(py, || -> crate::Result<(Option<Vec<u8>>, _)> {
        let contents = Contents::from_objects(location, run_log.to_vec(), objects()?, asked);
        let mut tree = contents.tree(&[], salvage)?;
        let document = match view {
            View::Full => {
                let document = tree.document();
                crate::nesting::check_read(location, &document)?;
                Some(document)
            }
            View::Run => Some(tree.shallow()),
            View::Branch(name) => tree.branch(name),
            View::Step(name) => tree.step(name),
        };
        Ok((document, tree.take_skipped()))
    })?
    .for_run(run_id)?;
    let (document, skipped) = merged;
    let skipped = skipped
        .into_iter()
        .map(|(path, reason)| (path.to_string_lossy().into_owned(), reason))
        .collect();
    Ok((bytes_or_none(py, document), skipped))
}

/// What a fold of a run held in memory must embed where (object storage): per document, the
/// `(internal name, object name)` of each step whose newest copy is its own object, not a copy
/// embedded in the document that holds it.
#[pyfunction]
#[pyo3(signature = (location, run_log, objects, *, naming = "objects", run_id = ""))]
fn fold_plan(
    py: Python<'_>,
    location: PathBuf,
    run_log: &[u8],
    objects: Vec<(String, Vec<u8>)>,
    naming: &str,
    run_id: &str,
) -> PyResult<FoldPlan> {
    let naming = naming_of(naming)?;
    let asked = (!run_id.is_empty()).then_some(run_id);
    Ok(in_process_pool(py, || {
        let contents = Contents::from_objects(&location, run_log.to_vec(), objects, asked);
        let tree = contents.tree(&[], false)?;
        tree.object_fold_plan(naming)
    })?
    .for_run(run_id)?)
}

/// The journals of a chunked-fs run folder holding records not folded yet: (name, size).
#[pyfunction]
#[pyo3(signature = (run_dir, *, run_id = ""))]
fn pending_journals(
    py: Python<'_>,
    run_dir: PathBuf,
    run_id: &str,
) -> PyResult<Vec<(String, u64)>> {
    let options = RunOptions {
        fsync: false,
        lock_timeout: std::time::Duration::ZERO,
    };
    Ok(py
        .detach(|| Run::new(&run_dir, options).journals())
        .for_run(run_id)?)
}

/// The full run log of a chunked run folder, and the chunks salvage left out; with `run_id`,
/// its `RunLog.json` must name that run (RunIdMismatchError).
#[pyfunction]
#[pyo3(signature = (run_dir, *, salvage = false, run_id = ""))]
fn merge_run<'py>(
    py: Python<'py>,
    run_dir: PathBuf,
    salvage: bool,
    run_id: &str,
) -> PyResult<(Bound<'py, PyBytes>, Skipped)> {
    let merged = in_process_pool(py, || {
        merger::merge_run(&run_dir, salvage, (!run_id.is_empty()).then_some(run_id))
    })?
    .for_run(run_id)?;
    Ok(merged_to_python(py, merged))
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("JOURNAL_DIR", journal::JOURNAL_DIR)?;
    m.add_class::<PyChunkedRun>()?;
    m.add_function(wrap_pyfunction!(merge_run, m)?)?;
    m.add_function(wrap_pyfunction!(merge_chunks, m)?)?;
    m.add_function(wrap_pyfunction!(merge_rows, m)?)?;
    m.add_function(wrap_pyfunction!(fold_plan, m)?)?;
    m.add_function(wrap_pyfunction!(pending_journals, m)?)?;
    Ok(())
}
