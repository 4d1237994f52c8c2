//! Decoding of a remote-read request: snappy block format, the `prometheus.ReadRequest`
//! protobuf, response-type negotiation and the label matchers as written (compiled by the
//! caller with `driftdb_prom::Matcher`). This module depends only on the proto crate, prost,
//! snap and the `Invalid` variant of the server's error, so the remote-read fuzz target
//! (`server/fuzz`) compiles this very file.

use driftdb_proto::prometheus as pb;
use prost::Message;

use crate::error::{Error, Result};

/// A label matcher's comparison, as the request states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchType {
    /// `=`.
    Eq,
    /// `!=`.
    Neq,
    /// `=~`.
    Re,
    /// `!~`.
    Nre,
}

/// One label matcher of a query, not compiled yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMatcher {
    /// The comparison.
    pub ty: MatchType,
    /// The label name.
    pub name: String,
    /// The value or pattern.
    pub value: String,
}

/// Largest request body accepted after decompression.
pub const MAX_REQUEST_BYTES: usize = 32 << 20;

/// The answer formats, in the client's order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseType {
    /// One `ReadResponse` of raw samples.
    Samples,
    /// Frames of XOR chunks.
    Streamed,
}

/// Picks the first accepted type we support; empty means SAMPLES.
pub fn negotiate(accepted: &[i32]) -> Result<ResponseType> {
    if accepted.is_empty() {
        return Ok(ResponseType::Samples);
    }
    for &t in accepted {
        match pb::read_request::ResponseType::try_from(t) {
            Ok(pb::read_request::ResponseType::Samples) => return Ok(ResponseType::Samples),
            Ok(pb::read_request::ResponseType::StreamedXorChunks) => {
                return Ok(ResponseType::Streamed);
            }
            Err(_) => {}
        }
    }
    Err(Error::Invalid(format!(
        "none of the accepted response types {accepted:?} is supported (0 SAMPLES, 1 STREAMED_XOR_CHUNKS)"
    )))
}

/// Decodes a request body: snappy block format, then protobuf.
pub fn decode_request(body: &[u8]) -> Result<pb::ReadRequest> {
    let len = snap::raw::decompress_len(body)
        .map_err(|e| Error::Invalid(format!("the body is not snappy block-compressed: {e}")))?;
    if len > MAX_REQUEST_BYTES {
        return Err(Error::Invalid(format!(
            "the request decompresses to {len} bytes (limit {MAX_REQUEST_BYTES})"
        )));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| Error::Invalid(format!("the body is not snappy block-compressed: {e}")))?;
    pb::ReadRequest::decode(raw.as_slice())
        .map_err(|e| Error::Invalid(format!("the body is not a prometheus.ReadRequest: {e}")))
}

/// A query's label matchers as written.
pub fn matchers(q: &pb::Query) -> Result<Vec<RawMatcher>> {
    q.matchers
        .iter()
        .map(|m| {
            let ty = match pb::label_matcher::Type::try_from(m.r#type) {
                Ok(pb::label_matcher::Type::Eq) => MatchType::Eq,
                Ok(pb::label_matcher::Type::Neq) => MatchType::Neq,
                Ok(pb::label_matcher::Type::Re) => MatchType::Re,
                Ok(pb::label_matcher::Type::Nre) => MatchType::Nre,
                Err(_) => {
                    return Err(Error::Invalid(format!(
                        "unknown matcher type {} for label {}",
                        m.r#type, m.name
                    )));
                }
            };
            Ok(RawMatcher {
                ty,
                name: m.name.clone(),
                value: m.value.clone(),
            })
        })
        .collect()
}
