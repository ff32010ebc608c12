//! The run index in `runlog_store._core` (`rust/index/`): the case folding of its text, the rows
//! of one run (what `runlog_store.search.query.rows_of` makes, for the tests that compare the
//! two), and `IndexBuilder`, a build from nothing that reads, summarizes and inserts with the
//! GIL released.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use super::files::seconds;
use super::pool::process_pool;
use crate::error::CoreError;
use crate::index::build::{Builder, Entry, Inserts, Layout, Outcome, Statement};
use crate::index::casefold as folding;
use crate::index::rows::{rows_of, IndexRows, ValueRow};
use crate::run::RunOptions;
use crate::summary;

/// `text.casefold()`, by the table the index's folded columns are made with (see
/// rust/index/casefold.rs).
#[pyfunction]
fn casefold(text: &str) -> String {
    folding::casefold(text)
}

fn value_rows<'py>(
    py: Python<'py>,
    run_id: &str,
    rows: &[ValueRow],
) -> PyResult<Bound<'py, PyList>> {
    let out = PyList::empty(py);
    for row in rows {
        out.append((
            run_id,
            &row.name,
            row.kind,
            row.num,
            row.text.as_deref(),
            row.folded.as_deref(),
        ))?;
    }
    Ok(out)
}

fn rows_to_python<'py>(py: Python<'py>, rows: &IndexRows) -> PyResult<Bound<'py, PyTuple>> {
    let run = &rows.run;
    let run_row = PyTuple::new(
        py,
        [
            run.run_id.clone().into_pyobject(py)?.into_any(),
            run.status.clone().into_pyobject(py)?.into_any(),
            run.tag.clone().into_pyobject(py)?.into_any(),
            run.start_time.into_pyobject(py)?.into_any(),
            run.end_time.into_pyobject(py)?.into_any(),
            run.duration.into_pyobject(py)?.into_any(),
            run.dag_hash.clone().into_pyobject(py)?.into_any(),
            run.commit.clone().into_pyobject(py)?.into_any(),
            run.failed_step.clone().into_pyobject(py)?.into_any(),
            run.summary.clone().into_pyobject(py)?.into_any(),
            run.fingerprint.clone().into_pyobject(py)?.into_any(),
            run.indexed_at.into_pyobject(py)?.into_any(),
            run.run_id_folded.clone().into_pyobject(py)?.into_any(),
            run.status_folded.clone().into_pyobject(py)?.into_any(),
            run.tag_folded.clone().into_pyobject(py)?.into_any(),
            run.dag_hash_folded.clone().into_pyobject(py)?.into_any(),
            run.commit_folded.clone().into_pyobject(py)?.into_any(),
            run.failed_step_folded.clone().into_pyobject(py)?.into_any(),
        ],
    )?;
    let steps = PyList::empty(py);
    for step in &rows.steps {
        steps.append((&run.run_id, &step.name, &step.status, &step.folded))?;
    }
    PyTuple::new(
        py,
        [
            run_row.into_any(),
            value_rows(py, &run.run_id, &rows.params)?.into_any(),
            value_rows(py, &run.run_id, &rows.metrics)?.into_any(),
            steps.into_any(),
        ],
    )
}

/// The index rows of the run log `data` as `(run, params, metrics, steps)`, or None when they
/// are Python's to make (see rust/index/rows.rs) or the document is no run log.
#[pyfunction]
fn index_rows<'py>(
    py: Python<'py>,
    data: &[u8],
    fingerprint: &str,
    indexed_at: f64,
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let Ok(found) = py.detach(|| summary::summarize(data)) else {
        return Ok(None);
    };
    match rows_of(&found, fingerprint, indexed_at) {
        Some(rows) => Ok(Some(rows_to_python(py, &rows)?)),
        None => Ok(None),
    }
}

fn statements(given: Vec<(String, Vec<String>)>) -> Vec<Statement> {
    given
        .into_iter()
        .map(|(sql, params)| Statement { sql, params })
        .collect()
}

/// A run index built from nothing into a new file (rust/index/build.rs): made with the
/// statements that set it up, fed runs batch by batch with `add` (each read and summarized on
/// this process's pool, its rows inserted by a thread of the build's own), closed by `finish`.
#[pyclass(name = "IndexBuilder", module = "runlog_store._core")]
struct IndexBuilder {
    builder: Option<Builder>,
}

impl IndexBuilder {
    fn builder(&mut self) -> PyResult<&mut Builder> {
        self.builder
            .as_mut()
            .ok_or_else(|| CoreError::InvalidArgument("the index build is over".to_string()).into())
    }
}

#[pymethods]
impl IndexBuilder {
    /// `setup` and `finish`: (sql, text parameters) run first and last; `inserts`: the
    /// statements of a run's rows in `runs`, `params`, `metrics` and `steps`; runs are read
    /// from `folder` as its stores read them (`fsync`, `lock_timeout`), each row stamped
    /// `indexed_at`.
    #[new]
    #[pyo3(signature = (path, setup, inserts, finish, folder, *, indexed_at, fsync = true, lock_timeout = 60.0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        setup: Vec<(String, Vec<String>)>,
        inserts: (String, String, String, String),
        finish: Vec<(String, Vec<String>)>,
        folder: PathBuf,
        indexed_at: f64,
        fsync: bool,
        lock_timeout: f64,
    ) -> PyResult<Self> {
        let options = RunOptions {
            fsync,
            lock_timeout: seconds(lock_timeout, "lock_timeout")?,
        };
        let (run, params, metrics, steps) = inserts;
        let inserts = Inserts {
            run,
            params,
            metrics,
            steps,
        };
        let setup = statements(setup);
        let finish = statements(finish);
        let builder = py.detach(|| {
            Builder::start(&path, &setup, inserts, finish, &folder, options, indexed_at)
        })?;
        Ok(IndexBuilder {
            builder: Some(builder),
        })
    }

    /// Read, summarize and queue these runs, `(run_id, layout, fingerprint)` with layout
    /// `"file-system"` or `"chunked-fs"`: the run ids gone and those left to Python (see
    /// rust/index/build.rs), each in order.
    fn add(
        &mut self,
        py: Python<'_>,
        runs: Vec<(String, String, String)>,
    ) -> PyResult<(Vec<String>, Vec<String>)> {
        let mut entries = Vec::with_capacity(runs.len());
        for (run_id, layout, fingerprint) in runs {
            let layout = match layout.as_str() {
                "file-system" => Layout::Document,
                "chunked-fs" => Layout::RunFolder,
                other => {
                    return Err(CoreError::InvalidArgument(format!(
                        "run {run_id:?} has layout {other:?}: an index build reads \
                         \"file-system\" and \"chunked-fs\" runs"
                    ))
                    .into())
                }
            };
            entries.push(Entry {
                run_id,
                layout,
                fingerprint,
            });
        }
        let pool = process_pool()?;
        let builder = self.builder()?;
        let outcomes = py.detach(|| pool.install(|| builder.add(&entries)))?;
        let (mut gone, mut left) = (Vec::new(), Vec::new());
        for (entry, outcome) in entries.into_iter().zip(outcomes) {
            match outcome {
                Outcome::Put => {}
                Outcome::Gone => gone.push(entry.run_id),
                Outcome::Left => left.push(entry.run_id),
            }
        }
        Ok((gone, left))
    }

    /// Wait for every row to be in, run the finishing statements and close the file.
    fn finish(&mut self, py: Python<'_>) -> PyResult<()> {
        let builder = self.builder.take().ok_or_else(|| {
            PyErr::from(CoreError::InvalidArgument(
                "the index build is over".to_string(),
            ))
        })?;
        py.detach(|| builder.finish())?;
        Ok(())
    }

    /// Give the build up (its file is the caller's to remove).
    fn abandon(&mut self, py: Python<'_>) {
        if let Some(builder) = self.builder.take() {
            py.detach(|| drop(builder));
        }
    }
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<IndexBuilder>()?;
    m.add_function(wrap_pyfunction!(casefold, m)?)?;
    m.add_function(wrap_pyfunction!(index_rows, m)?)?;
    m.add("CASEFOLD_UNICODE_VERSION", folding::UNICODE_VERSION)?;
    Ok(())
}
