//! Reading inference, reference and label files (JSONL, CSV, Parquet; chosen by extension) into
//! columnar gRPC batches (docs/DATA_MODEL.md, "File formats").
//!
//! - [`pipeline`] reads a file on threads and hands on converted chunks in file order.
//! - [`jsonl`] scans JSONL lines straight into batch columns ([`json`] is its scanner);
//!   [`columnar`] converts Arrow record batches (Parquet through the parquet crate's Arrow
//!   reader, CSV through arrow-csv) a column at a time.
//! - [`batch`] holds what they produce and the batch helpers (drop rejected rows, split by rows
//!   and bytes); [`values`] the shared value rules (timestamps, numbers as text, clipping user
//!   input in errors).
//! - [`rows`] is the older row-at-a-time API (records as JSON objects), kept for tests.
//!
//! A JSONL line is an object as in docs/DATA_MODEL.md (`segments` and `features` nested, or flat
//! keys). A CSV or Parquet row has one column per field, with segment and feature columns named
//! as in the model definition. Values a column cannot hold (a string in a numeric feature, an
//! unparsable timestamp) reject that row with a reason; nothing else is affected.

use std::path::Path;

use crate::error::{Error, Result};

pub mod batch;
pub mod columnar;
pub mod json;
pub mod jsonl;
pub mod pipeline;
pub mod rows;
pub mod values;

pub use rows::{BatchBuilder, Record, as_timestamp, label_from_record, read_records, record_model};

/// A file format, from the file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line (`.jsonl`, `.ndjson`, `.json`).
    Jsonl,
    /// Comma-separated with a header row (`.csv`).
    Csv,
    /// Apache Parquet (`.parquet`, `.pq`).
    Parquet,
}

/// The format of `path` by extension.
pub fn format_of(path: &Path) -> Result<Format> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "jsonl" | "ndjson" | "json" => Ok(Format::Jsonl),
        "csv" => Ok(Format::Csv),
        "parquet" | "pq" => Ok(Format::Parquet),
        _ => Err(Error::File {
            path: path.display().to_string(),
            detail: "unknown extension: use .jsonl, .csv or .parquet".into(),
        }),
    }
}

/// The progress total of `path`: its size in bytes, or its row count for Parquet.
pub fn progress_total(path: &Path) -> Result<u64> {
    let err = |e: &dyn std::fmt::Display| Error::File {
        path: path.display().to_string(),
        detail: e.to_string(),
    };
    if format_of(path)? == Format::Parquet {
        let file = std::fs::File::open(path).map_err(|e| err(&e))?;
        let meta =
            parquet::arrow::arrow_reader::ArrowReaderMetadata::load(&file, Default::default())
                .map_err(|e| err(&e))?;
        return Ok(meta.metadata().file_metadata().num_rows().max(0) as u64);
    }
    Ok(std::fs::metadata(path).map_err(|e| err(&e))?.len())
}

/// Whether the file's records name their model: a `model_id` column (CSV, Parquet), or a
/// `model_id` key on the first line (JSONL).
pub fn names_models(path: &Path) -> Result<bool> {
    let err = |e: &dyn std::fmt::Display| Error::File {
        path: path.display().to_string(),
        detail: e.to_string(),
    };
    match format_of(path)? {
        Format::Parquet => {
            let file = std::fs::File::open(path).map_err(|e| err(&e))?;
            let meta =
                parquet::arrow::arrow_reader::ArrowReaderMetadata::load(&file, Default::default())
                    .map_err(|e| err(&e))?;
            Ok(meta
                .schema()
                .fields()
                .iter()
                .any(|f| f.name() == "model_id"))
        }
        Format::Csv => {
            let mut r = csv::ReaderBuilder::new()
                .has_headers(true)
                .from_path(path)
                .map_err(|e| err(&e))?;
            let h = r.headers().map_err(|e| err(&e))?;
            Ok(h.iter()
                .any(|c| c.trim_start_matches('\u{feff}').trim() == "model_id"))
        }
        Format::Jsonl => {
            use std::io::BufRead;
            let f = std::fs::File::open(path).map_err(|e| err(&e))?;
            let r = std::io::BufReader::new(f);
            for line in r.split(b'\n').take(1000) {
                let line = line.map_err(|e| err(&e))?;
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_start_matches('\u{feff}').trim();
                if text.is_empty() {
                    continue;
                }
                let mut p = json::Parser::new(text);
                if p.begin_object().is_err() {
                    return Ok(false);
                }
                let mut first = true;
                while let Ok(Some(k)) = p.next_key(first) {
                    first = false;
                    let v = p.value();
                    if k == "model_id" {
                        return Ok(matches!(v, Ok(json::Val::Str(ref s)) if !s.is_empty()));
                    }
                    if v.is_err() {
                        break;
                    }
                }
                return Ok(false);
            }
            Ok(false)
        }
    }
}
