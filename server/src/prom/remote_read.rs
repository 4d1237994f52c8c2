//! `POST /api/v1/read`: Prometheus remote read (README.md), so a real Prometheus configured with
//! `remote_read` — and Grafana through it — can plot every driftdb series.
//!
//! The protocol: the body is a snappy **block**-compressed
//! `prometheus.ReadRequest`; each query carries an inclusive millisecond range and label
//! matchers (the metric name as `__name__`). We answer with the first response type the client
//! accepts that we support (an empty list means SAMPLES):
//!
//! - **SAMPLES**: one snappy-compressed `ReadResponse`, one `QueryResult` per query in request
//!   order, series sorted by labels, samples ascending; `Content-Type: application/x-protobuf`,
//!   `Content-Encoding: snappy`.
//! - **STREAMED_XOR_CHUNKS**: uncompressed frames, each `uvarint(len) | crc32c(msg) as u32 BE |
//!   ChunkedReadResponse`; one series per frame (a series with more chunks than fit
//!   [`MAX_FRAME_BYTES`] continues in the next frames, before the next series starts), XOR
//!   chunks of at most 120 samples; `Content-Type: application/x-streamed-protobuf;
//!   proto=prometheus.ChunkedReadResponse`.
//!
//! Errors are a non-2xx status with a plain-text body, which Prometheus shows as a query
//! warning. Read hints are advice only and ignored: we always return raw samples.

use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use driftdb_proto::prometheus as pb;
use prost::Message;

use driftdb_prom::Series;
use driftdb_prom::xor::{MAX_SAMPLES_PER_CHUNK, encode};

use super::api::with_source;
use crate::auth::Principal;
use crate::error::{Error, Result, to_http};
use crate::node::Node;

mod decode;

pub use decode::{
    MAX_REQUEST_BYTES, MatchType, RawMatcher, ResponseType, decode_request, matchers, negotiate,
};

/// Compiles a query's matchers (regular expressions included).
pub fn compile(raw: &[RawMatcher]) -> Result<Vec<driftdb_prom::Matcher>> {
    use driftdb_prom::MatchOp;
    raw.iter()
        .map(|m| {
            let op = match m.ty {
                MatchType::Eq => MatchOp::Eq,
                MatchType::Neq => MatchOp::Neq,
                MatchType::Re => MatchOp::Re,
                MatchType::Nre => MatchOp::Nre,
            };
            Ok(driftdb_prom::Matcher::new(
                op,
                m.name.clone(),
                m.value.clone(),
            )?)
        })
        .collect()
}

/// Content type of a SAMPLES answer.
pub const SAMPLES_CONTENT_TYPE: &str = "application/x-protobuf";
/// Content type of a STREAMED_XOR_CHUNKS answer.
pub const STREAMED_CONTENT_TYPE: &str =
    "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse";
/// Largest frame we write, like Prometheus' own server (1 MiB).
pub const MAX_FRAME_BYTES: usize = 1 << 20;
fn pb_labels(s: &Series) -> Vec<pb::Label> {
    s.labels
        .iter()
        .map(|(name, value)| pb::Label {
            name: name.clone(),
            value: value.clone(),
        })
        .collect()
}

/// The SAMPLES answer body (before compression).
pub fn samples_response(results: &[Vec<Series>]) -> pb::ReadResponse {
    pb::ReadResponse {
        results: results
            .iter()
            .map(|series| pb::QueryResult {
                timeseries: series
                    .iter()
                    .map(|s| pb::TimeSeries {
                        labels: pb_labels(s),
                        samples: s
                            .samples
                            .iter()
                            .map(|&(t, v)| pb::Sample {
                                value: v,
                                timestamp: t,
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// The chunks of one series: XOR chunks of at most [`MAX_SAMPLES_PER_CHUNK`] samples.
pub fn chunks(samples: &[(i64, f64)]) -> Vec<pb::Chunk> {
    samples
        .chunks(MAX_SAMPLES_PER_CHUNK)
        .filter_map(|c| {
            let (first, last) = (c.first()?, c.last()?);
            Some(pb::Chunk {
                min_time_ms: first.0,
                max_time_ms: last.0,
                r#type: pb::chunk::Encoding::Xor as i32,
                data: encode(c),
            })
        })
        .collect()
}

/// Appends one frame: `uvarint(len) | crc32c BE | message`.
pub fn push_frame(out: &mut Vec<u8>, msg: &pb::ChunkedReadResponse) {
    let bytes = msg.encode_to_vec();
    let mut len = bytes.len() as u64;
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend(crc32c::crc32c(&bytes).to_be_bytes());
    out.extend(bytes);
}

/// The STREAMED_XOR_CHUNKS body: for each query in order, each series in label order, frames
/// of its chunks, at most `max_frame` message bytes each (a single chunk larger than that
/// still gets its own frame).
pub fn streamed_body(results: &[Vec<Series>], max_frame: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for (qi, series) in results.iter().enumerate() {
        for s in series {
            let labels = pb_labels(s);
            let labels_len: usize = labels.iter().map(|l| l.encoded_len() + 2).sum();
            let mut frame: Vec<pb::Chunk> = Vec::new();
            let mut size = labels_len;
            let flush = |out: &mut Vec<u8>, frame: &mut Vec<pb::Chunk>| {
                push_frame(
                    out,
                    &pb::ChunkedReadResponse {
                        chunked_series: vec![pb::ChunkedSeries {
                            labels: labels.clone(),
                            chunks: std::mem::take(frame),
                        }],
                        query_index: qi as i64,
                    },
                );
            };
            for c in chunks(&s.samples) {
                let c_len = c.encoded_len() + 4;
                if !frame.is_empty() && size + c_len > max_frame {
                    flush(&mut out, &mut frame);
                    size = labels_len;
                }
                size += c_len;
                frame.push(c);
            }
            if !frame.is_empty() {
                flush(&mut out, &mut frame);
            }
        }
    }
    out
}

/// A remote-read error: the status its kind maps to (a read too large is 400: narrow it; one
/// that ran out of time or found every query slot busy is 429, which Prometheus retries), the
/// message as plain text.
fn error_response(e: &Error) -> Response {
    use driftdb_engine::ErrorKind;
    let (code, message) = match e.kind() {
        ErrorKind::DeadlineExceeded | ErrorKind::Cancelled | ErrorKind::ResourceExhausted => {
            (429, e.to_string())
        }
        _ => to_http(e),
    };
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("driftdb remote read: {message}\n"),
    )
        .into_response()
}

/// Runs every query of a request.
async fn run(node: &Node, caller: &Principal, req: pb::ReadRequest) -> Result<Vec<Vec<Series>>> {
    let limits = driftdb_prom::Limits::default();
    let mut parsed = Vec::with_capacity(req.queries.len());
    let mut regexes = 0usize;
    for q in &req.queries {
        let raw = matchers(q)?;
        regexes += raw
            .iter()
            .filter(|m| matches!(m.ty, MatchType::Re | MatchType::Nre))
            .count();
        if regexes > limits.max_regex_matchers {
            break;
        }
        parsed.push((compile(&raw)?, q.start_timestamp_ms, q.end_timestamp_ms));
    }
    // Every regex is compiled and run against label values: bound them per request as PromQL
    // bounds them per query.
    if regexes > limits.max_regex_matchers {
        return Err(Error::Invalid(format!(
            "the read holds {regexes} regular-expression matchers (limit {}); split it",
            limits.max_regex_matchers
        )));
    }
    with_source(node, caller, move |src, _limits, budget| {
        let mut out = Vec::with_capacity(parsed.len());
        for (m, start, end) in &parsed {
            out.push(src.read(m, *start, *end, budget)?.series);
        }
        Ok(out)
    })
    .await
}

/// `POST /api/v1/read`: only the series of models the caller may see.
pub async fn read(
    State(node): State<Node>,
    Extension(caller): Extension<Principal>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let started = std::time::Instant::now();
    // In a cluster, every model's series come from the node serving it (docs/SCALE_OUT.md);
    // while one is moving the read is refused, retryable, rather than answered without it.
    if let Some(c) = &node.cluster
        && let Some(m) = c.moving_model()
    {
        return crate::cluster::moving(&m, "no live member serves its partition yet");
    }
    let result = async {
        let req = decode_request(&body)?;
        let kind = negotiate(&req.accepted_response_types)?;
        let results = run(&node, &caller, req.clone()).await?;
        let results = match &node.cluster {
            Some(c) => match crate::cluster::remote_read(c, &headers, &req, results).await {
                Ok(r) => r,
                Err(resp) => return Ok(resp),
            },
            None => results,
        };
        let n_series: usize = results.iter().map(Vec::len).sum();
        let n_samples: usize = results.iter().flatten().map(|s| s.samples.len()).sum();
        node.metrics.prom.record_read(n_series, n_samples);
        Ok::<_, Error>(match kind {
            ResponseType::Samples => {
                let raw = samples_response(&results).encode_to_vec();
                let body = snap::raw::Encoder::new()
                    .compress_vec(&raw)
                    .map_err(|e| Error::Internal(format!("snappy: {e}")))?;
                let mut r = body.into_response();
                let h = r.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(SAMPLES_CONTENT_TYPE),
                );
                h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("snappy"));
                r
            }
            ResponseType::Streamed => {
                let mut r = streamed_body(&results, MAX_FRAME_BYTES).into_response();
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(STREAMED_CONTENT_TYPE),
                );
                r
            }
        })
    }
    .await;
    node.metrics.prom.record_request(
        crate::metrics::Endpoint::Read,
        started.elapsed(),
        result.is_err(),
    );
    match result {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

#[cfg(test)]
mod tests;
