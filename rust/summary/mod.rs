//! Run summaries: what a listing and a search across runs know of each run, computed from the
//! run's merged JSON in one pass (`document`), and the fingerprints that tell an index which
//! runs changed since it looked (`fingerprint`).
//!
//! A summary is what `runlog_store.ops.runs.summarize` computed from `json.loads` of the run
//! log, field for field: the times are the earliest and latest start or end of any attempt of
//! any step at any depth and of the job; the failed step is the deepest failed one (a failed
//! map step fails because one of its branches' steps did); and so on (see [`RunSummary`]).
//! A document that is not JSON, or whose run-level fields the models refuse, is
//! [`Unreadable`], saying why.

pub mod document;
pub mod fingerprint;
pub mod saved_file;
pub mod saved_listings;
pub mod saved_stamps;
pub mod time;
pub mod value;

use std::collections::HashMap;
use std::path::Path;

use chrono::NaiveDateTime;

use crate::error::CoreError;
use document::{identifiers, Loose, Map, Raw, Run, RunFields, Step, StepFields};
use time::Time;
pub use value::{parse_value, Value};

/// What a listing and a search know of a run (`RunSummary` in Python, but its layout).
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub run_id: String,
    pub status: String,
    pub tag: String,
    /// The earliest and latest attempt time this reader read (naive local).
    pub start: Option<NaiveDateTime>,
    pub end: Option<NaiveDateTime>,
    /// Time texts in forms this reader leaves to Python's `fromisoformat` (see `time`): the
    /// caller folds them into `start` and `end`. Almost always empty.
    pub other_times: Vec<String>,
    /// Steps at every depth.
    pub steps: usize,
    /// Branches at every depth (`len()` of each step's `branches`).
    pub branches: usize,
    pub failed_step: Option<String>,
    pub dag_hash: Option<String>,
    /// The first code identifier recorded, in run order.
    pub commit: Option<String>,
    /// (status, count) in the order statuses first appear.
    pub steps_by_status: Vec<(String, usize)>,
    pub branches_by_status: Vec<(String, usize)>,
    /// Root parameters of kind "json" (their value) and "object" (their stored name).
    pub params: Vec<(String, Value)>,
    /// Root parameters of kind "metric": their value.
    pub metrics: Vec<(String, Value)>,
    /// (internal name, status) of every step at every depth, in run order (a name twice
    /// keeps its last status).
    pub step_statuses: Vec<(String, String)>,
}

impl RunSummary {
    /// `(end - start).total_seconds()` when both are known.
    pub fn duration_seconds(&self) -> Option<f64> {
        let (start, end) = (self.start?, self.end?);
        let micros = (end - start).num_microseconds()?;
        // Python divides the integer microseconds by 10**6, correctly rounded, as this does.
        Some(micros as f64 / 1e6)
    }
}

/// Why a document has no summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreadable {
    /// Not JSON at all: serde_json's words.
    NotJson(String),
    /// JSON, but not a run log: "not a run log (a JSON list, not an object)" or "not a valid
    /// run log (<field>: <why>)".
    NotARun(String),
}

impl Unreadable {
    /// The reason as a summary of the run states it.
    pub fn reason(&self) -> String {
        match self {
            Unreadable::NotJson(why) => format!("not valid JSON ({why})"),
            Unreadable::NotARun(why) => why.clone(),
        }
    }
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason())
    }
}

/// The summary of a run log's JSON (a merged run log: the whole run in one document).
pub fn summarize(data: &[u8]) -> Result<RunSummary, Unreadable> {
    let text = utf8(data)?;
    // Values are taken apart recursively (`value`): a document nesting deeper than any store
    // writes (a hostile one, 100,000 levels) would overflow the stack of the thread reading it.
    let depth = crate::json::nesting_of_bytes(data);
    if depth > crate::nesting::MAX_NESTING {
        return Err(Unreadable::NotJson(format!(
            "it nests {depth} levels deep, more than the {} a run log may",
            crate::nesting::MAX_NESTING
        )));
    }
    summarize_text(text)
}

/// [`summarize`] of a document whose nesting was just found within the limit: the merge that
/// made it checked every byte of it (`merger::merge_documents`, `nesting::check_read`), which
/// [`summarize`]'s own check would do again. Any other document goes through [`summarize`].
pub fn summarize_within_nesting(data: &[u8]) -> Result<RunSummary, Unreadable> {
    summarize_text(utf8(data)?)
}

fn utf8(data: &[u8]) -> Result<&str, Unreadable> {
    std::str::from_utf8(data).map_err(|e| Unreadable::NotJson(format!("it is not UTF-8: {e}")))
}

fn summarize_text(text: &str) -> Result<RunSummary, Unreadable> {
    match serde_json::from_str::<Run<'_>>(text) {
        Ok(run) => summarize_parsed(run, text, text),
        Err(refused) => {
            // Python's NaN and infinities: read a copy with numbers of the same length in
            // their place, and take the values a summary hands out from the original text.
            let Some(finite) = crate::json::with_finite_stand_ins(text) else {
                return Err(Unreadable::NotJson(refused.to_string()));
            };
            let run = serde_json::from_str::<Run<'_>>(&finite)
                .map_err(|e| Unreadable::NotJson(e.to_string()))?;
            summarize_parsed(run, &finite, text)
        }
    }
}

/// Check the run-level fields as the models read them (`RunLog` with its steps and job left
/// out, which a summary reads leniently), and summarize.
fn summarize_parsed(run: Run<'_>, parsed: &str, original: &str) -> Result<RunSummary, Unreadable> {
    let run = match run.0 {
        Ok(fields) => fields,
        Err(other) => {
            return Err(Unreadable::NotARun(format!(
                "not a run log (a JSON {}, not an object)",
                other.python_type()
            )))
        }
    };
    if let Some(problem) = run_fields_problem(&run) {
        return Err(Unreadable::NotARun(format!(
            "not a valid run log ({problem})"
        )));
    }
    // Raw values were taken from `parsed`: the original text at the same place.
    let base = parsed.as_ptr() as usize;
    let original_of = |part: &str| -> String {
        let at = part.as_ptr() as usize - base;
        original[at..at + part.len()].to_string()
    };
    let mut summary = RunSummary {
        run_id: run.run_id.as_str().unwrap_or_default().to_string(),
        status: run.status.as_str().unwrap_or_default().to_string(),
        tag: run.tag.as_str().unwrap_or_default().to_string(),
        start: None,
        end: None,
        other_times: Vec::new(),
        steps: 0,
        branches: 0,
        failed_step: None,
        dag_hash: run.dag_hash.as_str().map(str::to_string),
        commit: None,
        steps_by_status: Vec::new(),
        branches_by_status: Vec::new(),
        params: Vec::new(),
        metrics: Vec::new(),
        step_statuses: Vec::new(),
    };
    for (name, parameter) in run.parameters.entries() {
        let Some(fields) = &parameter.0 else { continue };
        let Some(raw) = fields.value else { continue };
        let value = parse_value(&original_of(raw)).unwrap_or(Value::Null);
        match fields.kind.as_str() {
            Some("json") | Some("object") => summary.params.push((name.to_string(), value)),
            Some("metric") => summary.metrics.push((name.to_string(), value)),
            _ => {}
        }
    }
    let mut walk = Walk {
        original_of: Some(&original_of),
        ..Walk::default()
    };
    walk.steps(&run.steps);
    let job = run.job.0.as_ref();
    if let Some(job) = job {
        walk.holder(job);
    }
    summary.steps = walk.steps;
    summary.branches = walk.branches;
    summary.commit = walk.commit;
    summary.start = walk.start;
    summary.end = walk.end;
    summary.other_times = walk.other_times;
    summary.steps_by_status = walk.steps_by_status.into_counts();
    summary.branches_by_status = walk.branches_by_status.into_counts();
    summary.step_statuses = walk.step_statuses;
    summary.failed_step = deepest(&walk.failed).or_else(|| {
        job.filter(|job| job.status.as_str() == Some("FAIL"))
            .map(|_| "job".to_string())
    });
    Ok(summary)
}

/// Why the models refuse the run-level fields (`RunLog.model_validate` with no steps and no
/// job), in short; `None` when they read them. The caller words it (Python's summary uses the
/// models' own words).
fn run_fields_problem(run: &RunFields<'_>) -> Option<String> {
    match &run.run_id {
        Loose::Str(_) => {}
        Loose::Absent => return Some("run_id: Field required".to_string()),
        _ => return Some("run_id: Input should be a valid string".to_string()),
    }
    for (name, value) in [("dag_hash", &run.dag_hash), ("tag", &run.tag)] {
        if !matches!(value, Loose::Absent | Loose::Null | Loose::Str(_)) {
            return Some(format!("{name}: Input should be a valid string"));
        }
    }
    if !matches!(run.status, Loose::Absent | Loose::Str(_)) {
        return Some("status: Input should be a valid string".to_string());
    }
    if !matches!(run.run_config, Loose::Absent | Loose::Object(_)) {
        return Some("run_config: Input should be a valid dictionary".to_string());
    }
    match &run.parameters {
        Map::Other(Loose::Absent) => {}
        Map::Other(_) => return Some("parameters: Input should be a valid dictionary".to_string()),
        Map::Object(entries) => {
            for (name, parameter) in entries {
                let Some(fields) = &parameter.0 else {
                    return Some(format!(
                        "parameters.{name}: Input should be a valid dictionary"
                    ));
                };
                let ok = match fields.kind.as_str() {
                    Some("json" | "metric") => fields.value.is_some(),
                    Some("object") => {
                        fields.value_is_string
                            && matches!(
                                fields.description,
                                Loose::Absent | Loose::Null | Loose::Str(_)
                            )
                    }
                    _ => false,
                };
                if !ok {
                    return Some(format!(
                        "parameters.{name}: not a parameter the models read"
                    ));
                }
            }
        }
    }
    None
}

/// Counts by status, in the order statuses first appear.
#[derive(Default)]
struct Counts {
    order: Vec<(String, usize)>,
    place: HashMap<String, usize>,
}

impl Counts {
    fn add(&mut self, status: &str) {
        match self.place.get(status) {
            Some(&at) => self.order[at].1 += 1,
            None => {
                self.place.insert(status.to_string(), self.order.len());
                self.order.push((status.to_string(), 1));
            }
        }
    }

    fn into_counts(self) -> Vec<(String, usize)> {
        self.order
    }
}

/// The walk over every step at every depth in run order (parents before their branches'
/// steps), then the job, gathering what the summary counts.
#[derive(Default)]
struct Walk<'o> {
    /// The original text of a raw value (see `summarize`).
    original_of: Option<&'o dyn Fn(&str) -> String>,
    steps: usize,
    branches: usize,
    commit: Option<String>,
    start: Option<NaiveDateTime>,
    end: Option<NaiveDateTime>,
    other_times: Vec<String>,
    steps_by_status: Counts,
    branches_by_status: Counts,
    step_statuses: Vec<(String, String)>,
    /// The names of failed steps, in run order.
    failed: Vec<String>,
}

impl Walk<'_> {
    fn steps(&mut self, steps: &Map<'_, Step<'_>>) {
        for (_, step) in steps.entries() {
            let Some(step) = &step.0 else { continue };
            self.steps += 1;
            let name = self.step_name(step);
            if let Some(status) = step.status.as_str() {
                self.steps_by_status.add(status);
                self.step_statuses.push((name.clone(), status.to_string()));
                if status == "FAIL" {
                    self.failed.push(name);
                }
            }
            self.holder(step);
            self.branches += match &step.branches {
                Map::Object(entries) => entries.len(),
                Map::Other(Loose::Array(n)) => *n,
                Map::Other(Loose::Str(s)) => s.chars().count(),
                Map::Other(_) => 0,
            };
            for (_, branch) in step.branches.entries() {
                let Some(branch) = &branch.0 else { continue };
                if let Some(status) = branch.status.as_str() {
                    self.branches_by_status.add(status);
                }
                self.steps(&branch.steps);
            }
        }
    }

    /// The value of a raw field as Python read it (non-finite tokens included).
    fn value_of(&self, raw: &str) -> Value {
        let value = match (raw.starts_with('"'), self.original_of) {
            (false, Some(original_of)) => parse_value(&original_of(raw)),
            _ => parse_value(raw), // a string reads the same in the copy and the original
        };
        value.unwrap_or(Value::Null)
    }

    /// `str(step.get("internal_name") or step.get("name") or "")`.
    fn step_name(&self, step: &StepFields<'_>) -> String {
        for field in [step.internal_name, step.name] {
            let Raw(Some(raw)) = field else { continue };
            let value = self.value_of(raw);
            if value.truthy() {
                return value.text();
            }
        }
        String::new()
    }

    /// The first code identifier Python finds true in a `code_identities` list, as `str()`.
    fn first_identifier(&self, list: &document::List<document::Identity<'_>>) -> Option<String> {
        identifiers(list)
            .map(|raw| self.value_of(raw))
            .find(Value::truthy)
            .map(|value| value.text())
    }

    /// A step's or the job's own code identities (older layouts) and attempts.
    fn holder(&mut self, holder: &StepFields<'_>) {
        if self.commit.is_none() {
            self.commit = holder
                .code_identities
                .as_ref()
                .and_then(|list| self.first_identifier(list))
                .or_else(|| {
                    holder.attempts().find_map(|a| {
                        a.code_identities
                            .as_ref()
                            .and_then(|list| self.first_identifier(list))
                    })
                });
        }
        for attempt in holder.attempts() {
            for value in [&attempt.start_time, &attempt.end_time] {
                let Some(text) = value.as_str() else { continue };
                match time::parse_time(text) {
                    Time::At(at) => {
                        self.start = Some(self.start.map_or(at, |s| s.min(at)));
                        self.end = Some(self.end.map_or(at, |e| e.max(at)));
                    }
                    Time::Other => self.other_times.push(text.to_string()),
                    Time::Invalid => {}
                }
            }
        }
    }
}

/// The first failed step that no other failed step is below (`<name>.` starts no other name),
/// else the first.
fn deepest(names: &[String]) -> Option<String> {
    let first = names.first()?;
    let mut sorted: Vec<&str> = names.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let has_below = |name: &str| {
        let prefix = format!("{name}.");
        let at = sorted.partition_point(|other| *other < prefix.as_str());
        sorted
            .get(at)
            .is_some_and(|other| other.starts_with(&prefix))
    };
    Some(
        names
            .iter()
            .find(|name| !has_below(name))
            .unwrap_or(first)
            .clone(),
    )
}

// --- stored documents ---------------------------------------------------------------------------

/// Why a stored run document has no summary: a core error reading or checking it (missing,
/// a link, a FIFO, too large, naming another run, nesting too deep), or a document that is no
/// run log.
#[derive(Debug)]
pub enum DocumentError {
    Core(CoreError),
    Unreadable(Unreadable),
}

/// Read the file-system run document at `path` for run `run_id` and summarize it, with the
/// checks `FileSystemRunLogStore.get_run_log_json` makes: opened without following a link, a
/// regular file within the size cap, naming the run asked for, nesting within the limit.
pub fn summarize_document_file(path: &Path, run_id: &str) -> Result<RunSummary, DocumentError> {
    let data = crate::writer::read_file(path)
        .map_err(DocumentError::Core)?
        .ok_or_else(|| {
            DocumentError::Core(CoreError::NotFound {
                path: path.to_path_buf(),
            })
        })?;
    summarize_document(path, &data, run_id)
}

/// [`summarize_document_file`] of bytes already read.
pub fn summarize_document(
    path: &Path,
    data: &[u8],
    run_id: &str,
) -> Result<RunSummary, DocumentError> {
    let summary = summarize(data);
    // The checks of the document before it is handed out, in the order the store makes them.
    match &summary {
        Ok(found) if found.run_id != run_id => {
            return Err(DocumentError::Core(CoreError::RunIdMismatch {
                path: path.to_path_buf(),
                asked: run_id.to_string(),
                found: found.run_id.clone(),
            }))
        }
        Ok(_) => {}
        Err(_) => check_run_id(path, data, run_id).map_err(DocumentError::Core)?,
    }
    if summary.is_err() {
        // A summary is only made of a document within the nesting limit: checked again only
        // for one refused, which may be refused for nesting too deep.
        crate::nesting::check_read(path, data).map_err(DocumentError::Core)?;
    }
    summary.map_err(DocumentError::Unreadable)
}

/// The store's check of a document's run id (see `merger::check_run_id`), for a document the
/// summary refused: one that is not a JSON object is corrupt; a run id that is not a string,
/// or names another run, is refused as the store refuses it.
fn check_run_id(path: &Path, data: &[u8], run_id: &str) -> crate::Result<()> {
    let fields =
        crate::json::parse_object_bytes(data).map_err(|reason| CoreError::corrupt(path, reason))?;
    let Some((_, raw)) = fields.iter().rev().find(|(key, _)| key == "run_id") else {
        return Ok(());
    };
    let found: String = serde_json::from_str::<crate::json::Text<'_>>(raw)
        .map(|text| text.0.into_owned())
        .map_err(|_| CoreError::corrupt(path, "its \"run_id\" is not a string"))?;
    if found != run_id {
        return Err(CoreError::RunIdMismatch {
            path: path.to_path_buf(),
            asked: run_id.to_string(),
            found,
        });
    }
    Ok(())
}

/// The run-level fields of a document (all but `steps` and `job`), for a caller that words
/// why the models refuse them in the models' own words; `None` when it is no JSON object.
pub fn run_level_fields(data: &[u8]) -> Option<Vec<(String, Value)>> {
    let fields = crate::json::parse_object_bytes(data).ok()?;
    Some(
        fields
            .into_iter()
            .filter(|(key, _)| key != "steps" && key != "job")
            .map(|(key, raw)| (key.into_owned(), parse_value(raw).unwrap_or(Value::Null)))
            .collect(),
    )
}

#[cfg(test)]
mod tests;
