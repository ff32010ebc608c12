//! The rows of one run in the run index: `runlog_store.search.query.rows_of` of the summary
//! Python would make of the same document, value for value (tests/search/test_index_rows.py
//! compares the two on generated documents). The summary's own JSON (the `summary` column a
//! search answers with) is written as Python's `json` writes it.

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};
use indexmap::IndexMap;

use super::casefold::casefold;
use crate::json::{write_python_json_object, write_python_json_string};
use crate::summary::document::python_float_repr;
use crate::summary::{RunSummary, Value};

/// A row of the `runs` table, its columns in `query.RUN_COLUMNS` order.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub run_id: String,
    pub status: String,
    pub tag: String,
    pub start_time: Option<f64>,
    pub end_time: Option<f64>,
    pub duration: Option<f64>,
    pub dag_hash: Option<String>,
    pub commit: Option<String>,
    pub failed_step: Option<String>,
    pub summary: String,
    pub fingerprint: String,
    pub indexed_at: f64,
    pub run_id_folded: String,
    pub status_folded: String,
    pub tag_folded: String,
    pub dag_hash_folded: Option<String>,
    pub commit_folded: Option<String>,
    pub failed_step_folded: Option<String>,
}

/// A row of the `params` or `metrics` table (its run id is the run row's): the value as
/// `query.encode_value` says, its text case-folded.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueRow {
    pub name: String,
    pub kind: &'static str,
    pub num: Option<f64>,
    pub text: Option<String>,
    pub folded: Option<String>,
}

/// A row of the `steps` table.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRow {
    pub name: String,
    pub status: String,
    pub folded: String,
}

/// Every row of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexRows {
    pub run: RunRow,
    pub params: Vec<ValueRow>,
    pub metrics: Vec<ValueRow>,
    pub steps: Vec<StepRow>,
}

/// Microseconds from 1970 a float holds exactly: times within about 285 years of 1970.
/// Python divides the exact integer by 10**6, correctly rounded; the float division is the
/// same only while the integer is exact.
const EXACT_MICROS: i64 = 1 << 53;

/// The rows of `summary` for the index, or `None` when they are Python's to make: times this
/// reader leaves to Python (`other_times`), a time Python's `datetime` cannot hold (years
/// outside 1-9999, a leap second) or far enough from 1970 that the float division would round
/// twice.
pub fn rows_of(summary: &RunSummary, fingerprint: &str, indexed_at: f64) -> Option<IndexRows> {
    if !summary.other_times.is_empty() {
        return None;
    }
    let start = each(summary.start, python_datetime)?;
    let end = each(summary.end, python_datetime)?;
    let start_time = each(start, time_value)?;
    let end_time = each(end, time_value)?;
    let params = dict(&summary.params);
    let metrics = dict(&summary.metrics);
    let statuses = dict(&summary.step_statuses);
    let run = RunRow {
        run_id: summary.run_id.clone(),
        status: summary.status.clone(),
        tag: summary.tag.clone(),
        start_time,
        end_time,
        duration: summary.duration_seconds(),
        dag_hash: summary.dag_hash.clone(),
        commit: summary.commit.clone(),
        failed_step: summary.failed_step.clone(),
        summary: summary_json(summary, start, end, &params, &metrics, &statuses),
        fingerprint: fingerprint.to_string(),
        indexed_at,
        run_id_folded: casefold(&summary.run_id),
        status_folded: casefold(&summary.status),
        tag_folded: casefold(&summary.tag),
        dag_hash_folded: summary.dag_hash.as_deref().map(casefold),
        commit_folded: summary.commit.as_deref().map(casefold),
        failed_step_folded: summary.failed_step.as_deref().map(casefold),
    };
    Some(IndexRows {
        run,
        params: value_rows(&params),
        metrics: value_rows(&metrics),
        steps: statuses
            .iter()
            .map(|(name, status)| StepRow {
                name: name.to_string(),
                status: status.to_string(),
                folded: casefold(status),
            })
            .collect(),
    })
}

/// `f` of a value that may be missing: `None` when `f` refuses the value, else `Some` of what
/// it made (`None` for a missing value).
fn each<T, U>(value: Option<T>, f: impl Fn(T) -> Option<U>) -> Option<Option<U>> {
    match value {
        None => Some(None),
        Some(value) => f(value).map(Some),
    }
}

/// (key, value) pairs as the dict Python builds of them: a key twice keeps its first place
/// and its last value.
fn dict<V>(pairs: &[(String, V)]) -> IndexMap<&str, &V> {
    let mut found = IndexMap::with_capacity(pairs.len());
    for (key, value) in pairs {
        found.insert(key.as_str(), value);
    }
    found
}

/// The time as Python's `datetime` holds it (whole microseconds), if it can.
fn python_datetime(at: NaiveDateTime) -> Option<NaiveDateTime> {
    let nanos = at.nanosecond();
    if !(1..=9999).contains(&at.year()) || nanos >= 1_000_000_000 {
        return None;
    }
    at.with_nanosecond(nanos / 1000 * 1000)
}

/// `query.time_value`: the epoch seconds of a naive time read as written.
fn time_value(at: NaiveDateTime) -> Option<f64> {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?.and_hms_opt(0, 0, 0)?;
    let micros = (at - epoch).num_microseconds()?;
    (micros.abs() < EXACT_MICROS).then(|| micros as f64 / 1e6)
}

/// `query._value_rows` of a dict of values.
fn value_rows(values: &IndexMap<&str, &Value>) -> Vec<ValueRow> {
    values
        .iter()
        .map(|(name, value)| {
            let (kind, num, text) = encode_value(value);
            ValueRow {
                name: name.to_string(),
                kind,
                num,
                folded: text.as_deref().map(casefold),
                text,
            }
        })
        .collect()
}

/// `query.encode_value`: (type, number, text), a NaN a number with no value.
fn encode_value(value: &Value) -> (&'static str, Option<f64>, Option<String>) {
    match value {
        Value::Str(text) => ("string", None, Some(text.clone())),
        Value::Bool(b) => ("bool", Some(if *b { 1.0 } else { 0.0 }), None),
        // Rounded to nearest, ties to even, as Python's float(int) rounds.
        Value::Int(i) => ("number", Some(*i as f64), None),
        // Past the float range Python's float() overflows and the index stores an infinity;
        // Rust's parse gives the same infinity.
        Value::BigInt(digits) => ("number", digits.parse::<f64>().ok(), None),
        Value::Float(f) => ("number", (!f.is_nan()).then_some(*f), None),
        Value::Null => ("null", None, None),
        Value::Array(_) => ("list", None, None),
        Value::Object(_) => ("object", None, None),
    }
}

/// `query.summary_json` of the summary's fields: `json` with compact separators.
fn summary_json(
    summary: &RunSummary,
    start: Option<NaiveDateTime>,
    end: Option<NaiveDateTime>,
    params: &IndexMap<&str, &Value>,
    metrics: &IndexMap<&str, &Value>,
    statuses: &IndexMap<&str, &String>,
) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(1024);
    let key = |out: &mut Vec<u8>, name: &str, first: bool| {
        if !first {
            out.push(b',');
        }
        write_python_json_string(out, name);
        out.push(b':');
    };
    out.push(b'{');
    key(&mut out, "run_id", true);
    write_python_json_string(&mut out, &summary.run_id);
    key(&mut out, "status", false);
    write_python_json_string(&mut out, &summary.status);
    key(&mut out, "tag", false);
    write_python_json_string(&mut out, &summary.tag);
    key(&mut out, "start", false);
    write_time(&mut out, start);
    key(&mut out, "end", false);
    write_time(&mut out, end);
    key(&mut out, "duration_seconds", false);
    match summary.duration_seconds() {
        Some(seconds) => write_float(&mut out, seconds),
        None => out.extend_from_slice(b"null"),
    }
    key(&mut out, "steps", false);
    out.extend_from_slice(summary.steps.to_string().as_bytes());
    key(&mut out, "branches", false);
    out.extend_from_slice(summary.branches.to_string().as_bytes());
    for (name, text) in [
        ("failed_step", &summary.failed_step),
        ("dag_hash", &summary.dag_hash),
        ("commit", &summary.commit),
    ] {
        key(&mut out, name, false);
        match text {
            Some(text) => write_python_json_string(&mut out, text),
            None => out.extend_from_slice(b"null"),
        }
    }
    for (name, counts) in [
        ("steps_by_status", &summary.steps_by_status),
        ("branches_by_status", &summary.branches_by_status),
    ] {
        key(&mut out, name, false);
        write_python_json_object(&mut out, dict(counts).iter(), COMPACT, |out, count| {
            out.extend_from_slice(count.to_string().as_bytes())
        });
    }
    key(&mut out, "params", false);
    write_python_json_object(&mut out, params.iter(), COMPACT, |out, v| {
        write_value(out, v)
    });
    key(&mut out, "metrics", false);
    write_python_json_object(&mut out, metrics.iter(), COMPACT, |out, v| {
        write_value(out, v)
    });
    key(&mut out, "step_statuses", false);
    write_python_json_object(&mut out, statuses.iter(), COMPACT, |out, status| {
        write_python_json_string(out, status)
    });
    out.push(b'}');
    // Only ASCII is written (`ensure_ascii`).
    String::from_utf8(out).unwrap_or_default()
}

/// `json.dumps`'s separators of the summary's JSON.
const COMPACT: (&[u8], &[u8]) = (b",", b":");

/// `datetime.isoformat()` of a naive time, or null.
fn write_time(out: &mut Vec<u8>, at: Option<NaiveDateTime>) {
    let Some(at) = at else {
        out.extend_from_slice(b"null");
        return;
    };
    let mut text = format!(
        "\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        at.year(),
        at.month(),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
    let micros = at.nanosecond() / 1000;
    if micros != 0 {
        text.push_str(&format!(".{micros:06}"));
    }
    text.push('"');
    out.extend_from_slice(text.as_bytes());
}

/// A float as `json` writes it: its `repr()`, the non-finite ones as JavaScript names them.
fn write_float(out: &mut Vec<u8>, value: f64) {
    let text = if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
    } else {
        python_float_repr(value)
    };
    out.extend_from_slice(text.as_bytes());
}

/// A value as `json` writes what `json.loads` made of it.
fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Value::BigInt(digits) => out.extend_from_slice(digits.as_bytes()),
        Value::Float(f) => write_float(out, *f),
        Value::Str(text) => write_python_json_string(out, text),
        Value::Array(items) => {
            out.push(b'[');
            for (at, item) in items.iter().enumerate() {
                if at > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(fields) => {
            write_python_json_object(out, dict(fields).iter(), COMPACT, |out, v| {
                write_value(out, v)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::summarize;

    fn rows(document: &str) -> IndexRows {
        let summary = summarize(document.as_bytes()).unwrap();
        rows_of(&summary, "file-system f", 5.0).unwrap()
    }

    #[test]
    fn a_run_and_its_values() {
        let found = rows(
            r#"{"run_id": "R1", "status": "SUCCESS", "tag": "Nightly", "dag_hash": "D",
                "parameters": {
                    "lr": {"kind": "json", "value": 0.1},
                    "Model": {"kind": "json", "value": "XGB"},
                    "n": {"kind": "json", "value": 3},
                    "big": {"kind": "json", "value": 123456789012345678901234567890},
                    "flag": {"kind": "json", "value": true},
                    "none": {"kind": "json", "value": null},
                    "nan": {"kind": "json", "value": NaN},
                    "layers": {"kind": "json", "value": [1, 2]},
                    "acc": {"kind": "metric", "value": 0.9}},
                "steps": {"a": {"name": "a", "internal_name": "a", "status": "SUCCESS",
                    "step_type": "task", "attempts": [
                        {"start_time": "2026-01-02 03:04:05.5", "end_time": "2026-01-02 03:04:06",
                         "status": "SUCCESS"}]}}}"#,
        );
        assert_eq!(found.run.run_id, "R1");
        assert_eq!(found.run.tag_folded, "nightly");
        assert_eq!(found.run.duration, Some(0.5));
        assert_eq!(found.run.fingerprint, "file-system f");
        let kinds: Vec<_> = found
            .params
            .iter()
            .map(|r| (r.name.as_str(), r.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("lr", "number"),
                ("Model", "string"),
                ("n", "number"),
                ("big", "number"),
                ("flag", "bool"),
                ("none", "null"),
                ("nan", "number"),
                ("layers", "list")
            ]
        );
        assert_eq!(found.params[1].folded.as_deref(), Some("xgb"));
        assert_eq!(found.params[3].num, Some(1.2345678901234568e29));
        assert_eq!(found.params[6].num, None);
        assert_eq!(found.metrics[0].num, Some(0.9));
        assert_eq!(found.steps[0].folded, "success");
        assert!(found
            .run
            .summary
            .contains(r#""start":"2026-01-02T03:04:05.500000""#));
        assert!(found.run.summary.contains(r#""nan":NaN"#));
        assert!(found
            .run
            .summary
            .contains(r#""big":123456789012345678901234567890"#));
        assert!(found
            .run
            .summary
            .ends_with(r#""step_statuses":{"a":"SUCCESS"}}"#));
    }

    #[test]
    fn a_key_twice_keeps_its_first_place_and_last_value() {
        let found = rows(
            r#"{"run_id": "R", "status": "S", "parameters": {
                "a": {"kind": "json", "value": 1}, "b": {"kind": "json", "value": 2},
                "a": {"kind": "json", "value": {"x": 1, "y": 2, "x": "é"}}}}"#,
        );
        let names: Vec<_> = found.params.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(found.params[0].kind, "object");
        assert!(found
            .run
            .summary
            .contains(r#""params":{"a":{"x":"\u00e9","y":2},"b":2}"#));
    }

    #[test]
    fn times_python_cannot_hold_are_left_to_it() {
        let summary = summarize(
            br#"{"run_id": "R", "status": "S", "steps": {"a": {"name": "a",
                "internal_name": "a", "status": "S", "step_type": "task", "attempts": [
                {"start_time": "2600-01-01 00:00:00", "status": "S"}]}}}"#,
        )
        .unwrap();
        assert!(summary.start.is_some());
        assert_eq!(rows_of(&summary, "f", 0.0), None);
    }
}
