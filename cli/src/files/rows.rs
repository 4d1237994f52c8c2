//! The row-at-a-time API: a file's records as JSON objects ([`read_records`]) and a builder that
//! appends them to a batch ([`BatchBuilder`]). Tests and small tools use it; `driftdb ingest`,
//! `labels` and `reference load` use the columnar readers of [`super::pipeline`], which build no
//! per-row objects. Timestamps follow the same rules (RFC 3339, or epoch numbers by magnitude).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use driftdb_engine::model::{FeatureKind, ModelDef};
use driftdb_engine::time::Timestamp;
use driftdb_proto::v1 as pb;
use serde_json::{Map, Value};

use super::{Format, format_of};
use crate::error::{Error, Result};

/// One record of a file with its 1-based line (or row) number.
#[derive(Debug, Clone)]
pub struct Record {
    /// Line number (JSONL, CSV) or row number (Parquet), from 1.
    pub line: u64,
    /// The fields; CSV fields are strings, JSONL and Parquet fields are typed.
    pub fields: Map<String, Value>,
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::File {
        path: path.display().to_string(),
        detail: e.to_string(),
    }
}

/// Counts bytes read, for progress bars.
#[derive(Debug)]
struct Counting<R> {
    inner: R,
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// Streams the records of `path` to `f`; `progress` receives bytes (or rows, for Parquet) read.
/// A record that cannot be parsed at all (broken JSON line) is passed to `bad` with its reason.
pub fn read_records(
    path: &Path,
    progress: &std::sync::Arc<std::sync::atomic::AtomicU64>,
    mut f: impl FnMut(Record) -> Result<()>,
    mut bad: impl FnMut(u64, String),
) -> Result<()> {
    let file = File::open(path).map_err(|e| file_err(path, e))?;
    match format_of(path)? {
        Format::Jsonl => {
            let r = BufReader::new(Counting {
                inner: file,
                read: std::sync::Arc::clone(progress),
            });
            for (i, line) in r.lines().enumerate() {
                let line = line.map_err(|e| file_err(path, e))?;
                let n = i as u64 + 1;
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<Value>(&line) {
                    Ok(Value::Object(fields)) => f(Record { line: n, fields })?,
                    Ok(_) => bad(n, "line is not a JSON object".into()),
                    Err(e) => bad(n, format!("invalid JSON: {e}")),
                }
            }
        }
        Format::Csv => {
            let mut r = csv::ReaderBuilder::new()
                .has_headers(true)
                .flexible(false)
                .from_reader(Counting {
                    inner: file,
                    read: std::sync::Arc::clone(progress),
                });
            let headers = r.headers().map_err(|e| file_err(path, e))?.clone();
            for (i, rec) in r.records().enumerate() {
                let n = i as u64 + 2;
                match rec {
                    Ok(rec) => {
                        let mut fields = Map::new();
                        for (h, v) in headers.iter().zip(rec.iter()) {
                            fields.insert(h.to_string(), Value::String(v.to_string()));
                        }
                        f(Record { line: n, fields })?;
                    }
                    Err(e) => bad(n, format!("invalid CSV row: {e}")),
                }
            }
        }
        Format::Parquet => {
            let reader = parquet::file::reader::SerializedFileReader::new(file)
                .map_err(|e| file_err(path, e))?;
            for (i, row) in reader.into_iter().enumerate() {
                let row = row.map_err(|e| file_err(path, e))?;
                progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                match row.to_json_value() {
                    Value::Object(fields) => f(Record {
                        line: i as u64 + 1,
                        fields,
                    })?,
                    _ => bad(i as u64 + 1, "row is not a record".into()),
                }
            }
        }
    }
    Ok(())
}

/// A field of a record, looked up at top level or in a nested object (`features`, `segments`).
fn field<'a>(r: &'a Record, nested: &str, name: &str) -> Option<&'a Value> {
    r.fields
        .get(nested)
        .and_then(|o| o.as_object())
        .and_then(|o| o.get(name))
        .or_else(|| r.fields.get(name))
}

fn as_number(v: &Value) -> std::result::Result<Option<f64>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_f64()
            .map(Some)
            .ok_or_else(|| "number out of range".into()),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => match s.trim() {
            "NaN" | "nan" => Ok(Some(f64::NAN)),
            "inf" | "Infinity" | "+inf" => Ok(Some(f64::INFINITY)),
            "-inf" | "-Infinity" => Ok(Some(f64::NEG_INFINITY)),
            t => t
                .parse::<f64>()
                .map(Some)
                .map_err(|_| format!("{s:?} is not a number")),
        },
        Value::Bool(_) => Err("a boolean is not a number".into()),
        _ => Err("expected a number".into()),
    }
}

fn as_category(v: &Value) -> std::result::Result<Option<String>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        Value::Number(_) => Err("expected a string or boolean (categorical), got a number".into()),
        _ => Err("expected a string or boolean (categorical)".into()),
    }
}

/// Parses a timestamp: RFC 3339 text, or an epoch number read by magnitude
/// ([`super::values::TsUnit::Auto`]).
pub fn as_timestamp(v: &Value) -> std::result::Result<Timestamp, String> {
    let unit = super::values::TsUnit::Auto;
    match v {
        Value::String(s) => super::values::timestamp_text(s, unit).map(Timestamp),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Ok(Timestamp(unit.int_to_ms(i))),
            None => unit
                .float_to_ms(n.as_f64().unwrap_or(f64::NAN))
                .map(Timestamp),
        },
        _ => Err("missing or invalid ts".into()),
    }
}

fn text(r: &Record, name: &str) -> Option<String> {
    match r.fields.get(name)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The model id a record names (`model_id`).
pub fn record_model(r: &Record) -> Option<String> {
    text(r, "model_id")
}

/// Accumulates records of one model into a columnar batch.
#[derive(Debug)]
pub struct BatchBuilder {
    model_id: String,
    features: Vec<(String, FeatureKind)>,
    segments: Vec<String>,
    with_labels: bool,
    batch: pb::InferenceBatch,
}

impl BatchBuilder {
    /// A builder for `model`; `with_labels` reads inline labels (reference files).
    pub fn new(model: &ModelDef, with_labels: bool) -> Self {
        let mut b = BatchBuilder {
            model_id: model.id.clone(),
            features: model
                .features
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            segments: model.segments.clone(),
            with_labels,
            batch: pb::InferenceBatch::default(),
        };
        b.reset();
        b
    }

    fn reset(&mut self) {
        self.batch = pb::InferenceBatch {
            model_id: self.model_id.clone(),
            segments: self
                .segments
                .iter()
                .map(|k| pb::SegmentColumn {
                    key: k.clone(),
                    values: vec![],
                })
                .collect(),
            features: self
                .features
                .iter()
                .map(|(k, _)| pb::FeatureColumn {
                    name: k.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
    }

    /// Rows in the batch so far.
    pub fn len(&self) -> usize {
        self.batch.request_ids.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a record, or says why it cannot be added (the batch is unchanged then).
    pub fn push(&mut self, r: &Record) -> std::result::Result<(), String> {
        let request_id = text(r, "request_id").ok_or("missing request_id")?;
        let ts = as_timestamp(r.fields.get("ts").unwrap_or(&Value::Null))?;
        let version = text(r, "model_version").ok_or("missing model_version")?;
        // Check every value before touching the columns, so a bad row changes nothing.
        let mut nums: Vec<Option<f64>> = Vec::with_capacity(self.features.len());
        let mut cats: Vec<Option<String>> = Vec::with_capacity(self.features.len());
        for (name, kind) in &self.features {
            let v = field(r, "features", name).unwrap_or(&Value::Null);
            match kind {
                FeatureKind::Numeric => {
                    nums.push(as_number(v).map_err(|e| format!("feature {name}: {e}"))?)
                }
                FeatureKind::Categorical => {
                    cats.push(as_category(v).map_err(|e| format!("feature {name}: {e}"))?)
                }
            }
        }
        let seg_vals: Vec<String> = self
            .segments
            .iter()
            .map(|k| match field(r, "segments", k) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::Bool(b)) => b.to_string(),
                _ => String::new(),
            })
            .collect();
        let score = match r.fields.get("score").or_else(|| r.fields.get("prediction")) {
            Some(v) => as_number(v).map_err(|e| format!("score: {e}"))?,
            None => None,
        };
        let latency = match r.fields.get("latency_ms") {
            Some(v) => as_number(v).map_err(|e| format!("latency_ms: {e}"))?,
            None => None,
        };
        let label = if self.with_labels {
            match r.fields.get("label") {
                Some(Value::Bool(b)) => Some(if *b { 1.0 } else { 0.0 }),
                Some(v) => as_number(v).map_err(|e| format!("label: {e}"))?,
                None => None,
            }
        } else {
            None
        };
        let items: Vec<pb::RankedItem> = match r.fields.get("items") {
            Some(Value::Array(a)) => a
                .iter()
                .map(ranked_item)
                .collect::<std::result::Result<_, _>>()?,
            Some(Value::String(s)) if !s.is_empty() => match serde_json::from_str::<Value>(s) {
                Ok(Value::Array(a)) => a
                    .iter()
                    .map(ranked_item)
                    .collect::<std::result::Result<_, _>>()?,
                _ => return Err("items: expected a JSON array".into()),
            },
            _ => Vec::new(),
        };
        let row = self.len() as u32;
        let b = &mut self.batch;
        b.request_ids.push(request_id);
        b.ts_ms.push(ts.millis());
        b.model_versions.push(version);
        for (col, v) in b.segments.iter_mut().zip(seg_vals) {
            col.values.push(v);
        }
        let (mut ni, mut ci) = (nums.into_iter(), cats.into_iter());
        for ((_, kind), col) in self.features.iter().zip(b.features.iter_mut()) {
            match kind {
                FeatureKind::Numeric => match ni.next().flatten() {
                    Some(x) => col.numbers.push(x),
                    None => {
                        col.numbers.push(0.0);
                        col.missing.push(row);
                    }
                },
                FeatureKind::Categorical => match ci.next().flatten() {
                    Some(c) => col.categories.push(c),
                    None => {
                        col.categories.push(String::new());
                        col.missing.push(row);
                    }
                },
            }
        }
        match score {
            Some(s) => b.scores.push(s),
            None => {
                b.scores.push(0.0);
                b.score_missing.push(row);
            }
        }
        b.latency_ms.push(latency.unwrap_or(f64::NAN));
        b.items.push(pb::RankedList { items });
        if self.with_labels {
            match label {
                Some(y) => b.labels.push(y),
                None => {
                    b.labels.push(0.0);
                    b.label_missing.push(row);
                }
            }
        }
        Ok(())
    }

    /// Takes the batch built so far and starts a new one.
    pub fn take(&mut self) -> pb::InferenceBatch {
        let mut b = std::mem::take(&mut self.batch);
        self.reset();
        // Collapse a single version, and drop all-empty optional columns.
        if b.model_versions.windows(2).all(|w| w[0] == w[1]) && !b.model_versions.is_empty() {
            b.model_versions.truncate(1);
        }
        if b.items.iter().all(|l| l.items.is_empty()) {
            b.items.clear();
        }
        if b.latency_ms.iter().all(|l| l.is_nan()) {
            b.latency_ms.clear();
        }
        b
    }
}

fn ranked_item(v: &Value) -> std::result::Result<pb::RankedItem, String> {
    let id = match v.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err("items: each item needs an id".into()),
    };
    let score = v.get("score").and_then(Value::as_f64).unwrap_or(f64::NAN);
    Ok(pb::RankedItem { id, score })
}

/// Parses a label record (docs/DATA_MODEL.md labels JSONL, or CSV columns `request_id,ts,label` and the
/// outcome columns `click,purchase,revenue,dwell_ms`).
pub fn label_from_record(r: &Record) -> std::result::Result<pb::Label, String> {
    let request_id = text(r, "request_id").ok_or("missing request_id")?;
    let ts = match r.fields.get("ts") {
        Some(v) => as_timestamp(v)?.millis(),
        None => 0,
    };
    let label = match r.fields.get("label") {
        Some(Value::Bool(b)) => Some(if *b { 1.0 } else { 0.0 }),
        Some(v) => as_number(v).map_err(|e| format!("label: {e}"))?,
        None => None,
    };
    let mut outcome = pb::Outcome::default();
    let mut has_outcome = false;
    let get = |name: &str| -> std::result::Result<Option<f64>, String> {
        match field(r, "outcomes", name) {
            Some(v) => as_number(v).map_err(|e| format!("{name}: {e}")),
            None => Ok(None),
        }
    };
    for (name, slot) in [
        ("click", &mut outcome.click),
        ("purchase", &mut outcome.purchase),
        ("revenue", &mut outcome.revenue),
        ("dwell_ms", &mut outcome.dwell_ms),
    ] {
        if let Some(x) = get(name)? {
            *slot = x;
            has_outcome = true;
        }
    }
    if let Some(Value::Object(m)) = field(r, "outcomes", "relevance") {
        let mut rel = BTreeMap::new();
        for (k, v) in m {
            rel.insert(
                k.clone(),
                as_number(v)
                    .map_err(|e| format!("relevance {k}: {e}"))?
                    .unwrap_or(0.0),
            );
        }
        outcome.relevance = rel.into_iter().collect();
        has_outcome = true;
    }
    Ok(pb::Label {
        request_id,
        ts_ms: ts,
        label,
        outcome: has_outcome.then_some(outcome),
        model_id: text(r, "model_id").unwrap_or_default(),
    })
}
