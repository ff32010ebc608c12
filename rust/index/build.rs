//! A run index built from nothing: every run of a log folder read and summarized in parallel,
//! its rows inserted into a new SQLite file by a thread of its own meanwhile.
//!
//! Python decides what is built (`runlog_store.search.index`): the statements that make the
//! file (pragmas, tables, the meta rows), the inserts, the statements that end it (secondary
//! indexes, the commit), and which runs go in, each with its fingerprint. The core reads,
//! summarizes and inserts; a run it cannot summarize exactly as Python would (an unreadable
//! document, a time Python reads itself, see `rows::rows_of`) is handed back, and Python adds it
//! after the file is closed here.
//!
//! The file is a build's own (a temporary name no other process opens) and is closed by this
//! SQLite before Python's opens it. Two copies of SQLite in one process must never have the same
//! file open at once: POSIX locks are per process, and the closing copy would drop the other's
//! locks (SQLite's "How To Corrupt", 2.2.1).

use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;

use rayon::prelude::*;
use rusqlite::{Connection, OpenFlags};

use super::rows::{rows_of, IndexRows, ValueRow};
use crate::chunk::{LAYOUT_MARKER, RUN_LOG_FILE};
use crate::error::{CoreError, Result};
use crate::merger::merge_documents;
use crate::run::{Run, RunOptions};
use crate::summary::fingerprint::LoneRunLog;
use crate::summary::{self, DocumentError, RunSummary};
use crate::untrusted::Folder;

/// One SQL statement and its text parameters.
#[derive(Debug, Clone)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<String>,
}

/// The inserts of a run's rows: `runs` (its 18 columns, a new row), then `params` and
/// `metrics` (6) and `steps` (4), each with the key SQLite gave the run's row first: the
/// tables of a run's values name it by that integer, not by its run id.
#[derive(Debug, Clone)]
pub struct Inserts {
    pub run: String,
    pub params: String,
    pub metrics: String,
    pub steps: String,
}

/// How a run is stored, and so read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `<folder>/<run_id>.json` (file-system).
    Document,
    /// `<folder>/<run_id>/` (chunked-fs), read as its store reads it.
    RunFolder,
}

/// A run to index, its fingerprint as the index records it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub run_id: String,
    pub layout: Layout,
    pub fingerprint: String,
}

/// What became of a run handed to [`Builder::add`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Its rows are in.
    Put,
    /// It was not there any more.
    Gone,
    /// Python's to read and add (unreadable, or summarized in a way only Python makes rows of).
    Left,
}

/// Batches of rows queued for the inserting thread: two, so reading runs ahead of inserting by
/// at most that many batches (the rows of every run are never all held at once).
const QUEUED_BATCHES: usize = 2;

/// A build under way: runs are added batch by batch (progress is told between batches), then
/// the build is finished.
pub struct Builder {
    path: PathBuf,
    folder: PathBuf,
    /// The log folder, opened once for the runs read as a lone `RunLog.json` (`None` if it
    /// could not be: every run is then read as its store reads it).
    documents: Option<Folder>,
    options: RunOptions,
    indexed_at: f64,
    queue: Option<SyncSender<Vec<IndexRows>>>,
    inserter: Option<JoinHandle<Result<Connection>>>,
    finish: Vec<Statement>,
}

fn sqlite_error(path: &Path, err: rusqlite::Error) -> CoreError {
    let source = match err.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => std::io::Error::from_raw_os_error(28),
        _ => std::io::Error::other(format!("SQLite: {err}")),
    };
    CoreError::io("write the run index", path, source)
}

fn execute(conn: &Connection, path: &Path, statement: &Statement) -> Result<()> {
    // A pragma answers with a row (`journal_mode`), which `execute` refuses: read and drop it.
    let mut prepared = conn
        .prepare(&statement.sql)
        .map_err(|e| sqlite_error(path, e))?;
    let mut rows = prepared
        .query(rusqlite::params_from_iter(statement.params.iter()))
        .map_err(|e| sqlite_error(path, e))?;
    while rows.next().map_err(|e| sqlite_error(path, e))?.is_some() {}
    Ok(())
}

impl Builder {
    /// Create the file at `path` (it must not exist) and run `setup` in it; `folder` is the log
    /// folder the runs are read from, `indexed_at` the time recorded in each run's row.
    pub fn start(
        path: &Path,
        setup: &[Statement],
        inserts: Inserts,
        finish: Vec<Statement>,
        folder: &Path,
        options: RunOptions,
        indexed_at: f64,
    ) -> Result<Builder> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| sqlite_error(path, e))?;
        for statement in setup {
            execute(&conn, path, statement)?;
        }
        let (queue, batches) = sync_channel::<Vec<IndexRows>>(QUEUED_BATCHES);
        let inserting = path.to_path_buf();
        let inserter = std::thread::Builder::new()
            .name("runlog-index-build".to_string())
            .spawn(move || -> Result<Connection> {
                for batch in batches {
                    insert(&conn, &inserting, &inserts, &batch)?;
                }
                Ok(conn)
            })
            .map_err(|e| CoreError::io("start a thread for", path, e))?;
        Ok(Builder {
            path: path.to_path_buf(),
            folder: folder.to_path_buf(),
            documents: Folder::open(folder).ok(),
            options,
            indexed_at,
            queue: Some(queue),
            inserter: Some(inserter),
            finish,
        })
    }

    /// Read and summarize these runs in parallel (on the current rayon pool) and queue their
    /// rows; what became of each, in order. Entries are best given in run id order, the order of
    /// the tables' keys.
    pub fn add(&mut self, entries: &[Entry]) -> Result<Vec<Outcome>> {
        let made: Vec<(Outcome, Option<IndexRows>)> = entries
            .par_iter()
            .with_min_len(8)
            .map(|entry| self.rows(entry))
            .collect();
        let mut outcomes = Vec::with_capacity(made.len());
        let mut batch = Vec::with_capacity(made.len());
        for (outcome, rows) in made {
            outcomes.push(outcome);
            batch.extend(rows);
        }
        batch.sort_by(|a, b| a.run.run_id.cmp(&b.run.run_id));
        let sent = match &self.queue {
            Some(queue) => queue.send(batch).is_ok(),
            None => false,
        };
        if !sent {
            // The inserting thread stopped: its error says why.
            self.queue = None;
            self.join()?;
            return Err(CoreError::InvalidArgument(format!(
                "the build of {} stopped",
                self.path.display()
            )));
        }
        Ok(outcomes)
    }

    fn rows(&self, entry: &Entry) -> (Outcome, Option<IndexRows>) {
        let found = match entry.layout {
            Layout::Document => {
                let path = self.folder.join(format!("{}.json", entry.run_id));
                match summary::summarize_document_file(&path, &entry.run_id) {
                    Ok(found) => Ok(found),
                    Err(DocumentError::Core(CoreError::NotFound { .. })) => Err(Outcome::Gone),
                    Err(_) => Err(Outcome::Left),
                }
            }
            Layout::RunFolder => match self.lone_run_log(entry) {
                Some(found) => found,
                None => {
                    let run = Run::new(&self.folder.join(&entry.run_id), self.options);
                    match run.read_for_summary() {
                        Ok(merged) => {
                            summary::summarize(&merged.document).map_err(|_| Outcome::Left)
                        }
                        Err(CoreError::NotFound { .. }) => Err(Outcome::Gone),
                        Err(err) if err.errno() == Some(2) => Err(Outcome::Gone),
                        Err(_) => Err(Outcome::Left),
                    }
                }
            },
        };
        match found {
            // A document that names another run is the store's to judge (a copy, say).
            Ok(found) if found.run_id != entry.run_id => (Outcome::Left, None),
            Ok(found) => match rows_of(&found, &entry.fingerprint, self.indexed_at) {
                Some(rows) => (Outcome::Put, Some(rows)),
                None => (Outcome::Left, None),
            },
            Err(outcome) => (outcome, None),
        }
    }

    /// The summary of a run whose folder held nothing but its `RunLog.json` (and the layout
    /// marker) when it was stamped, read as four system calls (open, fstat, read, close) of
    /// that one document instead of the store's read, which lists the folder again and looks
    /// for journals and a stored merge, and opens the folder twice (sixteen calls).
    /// The document is merged alone, as the store's read merges a run of one document, so the
    /// summary is the same; it is used only if the stamps of what was read (the marker's
    /// stat'ed) make the very fingerprint the run was stamped with, which the index records
    /// for it. `None`: read the run as its store does (another fingerprint, more documents,
    /// anything that fails here).
    fn lone_run_log(&self, entry: &Entry) -> Option<std::result::Result<RunSummary, Outcome>> {
        let documents = self.documents.as_ref()?;
        // A fingerprint of more documents is known before any read.
        let lone = LoneRunLog::of(entry.fingerprint.rsplit(' ').next()?)?;
        let run = Path::new(&entry.run_id);
        let (bytes, stamp) = documents.read_stamped(&run.join(RUN_LOG_FILE)).ok()??;
        let marker = lone
            .with_marker()
            .then(|| documents.stat_below(&run.join(LAYOUT_MARKER)))
            .flatten();
        if !lone.matches(&stamp, marker.as_ref()) {
            return None;
        }
        let dir = self.folder.join(&entry.run_id);
        let merged = merge_documents(&dir, bytes, Vec::new(), false, Some(&entry.run_id)).ok()?;
        // Its nesting checked by the merge, on these very bytes.
        let summary = summary::summarize_within_nesting(&merged.document);
        Some(summary.map_err(|_| Outcome::Left))
    }

    fn join(&mut self) -> Result<Connection> {
        let inserter = self.inserter.take().ok_or_else(|| {
            CoreError::InvalidArgument(format!("the build of {} is over", self.path.display()))
        })?;
        inserter.join().map_err(|_| {
            CoreError::InvalidArgument(format!(
                "the build of {} failed: its inserting thread panicked",
                self.path.display()
            ))
        })?
    }

    /// Wait for every row to be in, run the finishing statements, and close the file.
    pub fn finish(mut self) -> Result<()> {
        self.queue = None;
        let conn = self.join()?;
        for statement in &self.finish {
            execute(&conn, &self.path, statement)?;
        }
        conn.close().map_err(|(_, e)| sqlite_error(&self.path, e))
    }
}

impl Drop for Builder {
    fn drop(&mut self) {
        // An abandoned build: the thread ends once its queue is gone; the file is the caller's
        // to remove.
        self.queue = None;
        if let Some(inserter) = self.inserter.take() {
            let _ = inserter.join();
        }
    }
}

/// Bind `values` to `statement` (1-based, in order) and run it: the per-row path of millions
/// of rows, without `execute`'s checks of the parameter count at each row.
fn run_with(
    statement: &mut rusqlite::CachedStatement<'_>,
    values: &[&dyn rusqlite::ToSql],
) -> rusqlite::Result<()> {
    for (at, value) in values.iter().enumerate() {
        statement.raw_bind_parameter(at + 1, value)?;
    }
    statement.raw_execute().map(|_| ())
}

fn insert(conn: &Connection, path: &Path, inserts: &Inserts, batch: &[IndexRows]) -> Result<()> {
    let fail = |e| sqlite_error(path, e);
    let mut runs = conn.prepare_cached(&inserts.run).map_err(fail)?;
    let mut keys = Vec::with_capacity(batch.len());
    for rows in batch {
        let run = &rows.run;
        run_with(
            &mut runs,
            &[
                &run.run_id,
                &run.status,
                &run.tag,
                &run.start_time,
                &run.end_time,
                &run.duration,
                &run.dag_hash,
                &run.commit,
                &run.failed_step,
                &run.summary,
                &run.fingerprint,
                &run.indexed_at,
                &run.run_id_folded,
                &run.status_folded,
                &run.tag_folded,
                &run.dag_hash_folded,
                &run.commit_folded,
                &run.failed_step_folded,
            ],
        )
        .map_err(fail)?;
        // The run's key (`runs.run_key`, its rowid): a plain insert into a table without
        // triggers, so the row this statement made.
        keys.push(conn.last_insert_rowid());
    }
    for (sql, values) in [
        (&inserts.params, |rows: &IndexRows| &rows.params),
        (&inserts.metrics, |rows: &IndexRows| &rows.metrics),
    ] as [(&String, fn(&IndexRows) -> &Vec<ValueRow>); 2]
    {
        let mut statement = conn.prepare_cached(sql).map_err(fail)?;
        for (rows, key) in batch.iter().zip(&keys) {
            for value in values(rows) {
                run_with(
                    &mut statement,
                    &[
                        key,
                        &value.name,
                        &value.kind,
                        &value.num,
                        &value.text,
                        &value.folded,
                    ],
                )
                .map_err(fail)?;
            }
        }
    }
    let mut steps = conn.prepare_cached(&inserts.steps).map_err(fail)?;
    for (rows, key) in batch.iter().zip(&keys) {
        for step in &rows.steps {
            run_with(&mut steps, &[key, &step.name, &step.status, &step.folded]).map_err(fail)?;
        }
    }
    Ok(())
}
