//! The remote-read request decoder: arbitrary bytes as a `POST /api/v1/read` body (snappy
//! block format, then a `prometheus.ReadRequest`), the response type negotiated and every
//! query's label matchers compiled (regular expressions included), then applied to a label
//! set, as the server does before it reads any series.
#![no_main]

use driftdb_server_fuzz::matcher::{MatchOp, Matcher};
use driftdb_server_fuzz::remote_read_decode::{MatchType, decode_request, matchers, negotiate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks how the rest is used: odd, compressed here first, so the fuzzer
    // also explores the protobuf layer without having to learn snappy framing; even, as the
    // request body itself (snappy framing included).
    let Some((&how, rest)) = data.split_first() else {
        return;
    };
    let body = if how & 1 == 1 {
        match snap::raw::Encoder::new().compress_vec(rest) {
            Ok(c) => c,
            Err(_) => return,
        }
    } else {
        rest.to_vec()
    };
    let Ok(req) = decode_request(&body) else {
        return;
    };
    let _ = negotiate(&req.accepted_response_types);
    let labels = vec![
        ("__name__".to_string(), "driftdb_psi".to_string()),
        ("feature".to_string(), "amount".to_string()),
        ("model".to_string(), "fraud".to_string()),
    ];
    for q in &req.queries {
        if let Ok(raw) = matchers(q) {
            for r in &raw {
                let op = match r.ty {
                    MatchType::Eq => MatchOp::Eq,
                    MatchType::Neq => MatchOp::Neq,
                    MatchType::Re => MatchOp::Re,
                    MatchType::Nre => MatchOp::Nre,
                };
                if let Ok(m) = Matcher::new(op, r.name.clone(), r.value.clone()) {
                    let _ = m.matches_labels(&labels);
                }
            }
        }
    }
});
