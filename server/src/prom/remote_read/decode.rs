//! Decoding of a remote-read request: snappy block format, the `prometheus.ReadRequest`
//! protobuf, response-type negotiation and the label matchers. This module depends only on the
//! proto crate, prost, snap, [`crate::prom::matcher`] and the `Invalid` variant of the server's
//! error, so the remote-read fuzz target (`server/fuzz`) compiles this very file.

use driftdb_proto::prometheus as pb;
use prost::Message;

use crate::error::{Error, Result};
use crate::prom::matcher::{MatchOp, Matcher};

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

/// Compiles a query's label matchers.
pub fn matchers(q: &pb::Query) -> Result<Vec<Matcher>> {
    q.matchers
        .iter()
        .map(|m| {
            let op = match pb::label_matcher::Type::try_from(m.r#type) {
                Ok(pb::label_matcher::Type::Eq) => MatchOp::Eq,
                Ok(pb::label_matcher::Type::Neq) => MatchOp::Neq,
                Ok(pb::label_matcher::Type::Re) => MatchOp::Re,
                Ok(pb::label_matcher::Type::Nre) => MatchOp::Nre,
                Err(_) => {
                    return Err(Error::Invalid(format!(
                        "unknown matcher type {} for label {}",
                        m.r#type, m.name
                    )));
                }
            };
            Matcher::new(op, m.name.clone(), m.value.clone())
        })
        .collect()
}
