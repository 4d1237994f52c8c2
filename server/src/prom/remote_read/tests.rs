//! Unit tests of `remote_read`.

use super::*;

fn series(name: &str, n: usize) -> Series {
    Series {
        labels: vec![
            ("__name__".into(), name.into()),
            ("model".into(), "m".into()),
        ],
        samples: (0..n)
            .map(|i| (i as i64 * 900_000, i as f64 / 10.0))
            .collect(),
    }
}

/// Splits a body into frames, checking each length and checksum.
fn frames(mut body: &[u8]) -> Vec<pb::ChunkedReadResponse> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let mut len = 0u64;
        let mut shift = 0;
        loop {
            let b = body[0];
            body = &body[1..];
            len |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b < 0x80 {
                break;
            }
        }
        let crc = u32::from_be_bytes(body[..4].try_into().unwrap());
        let msg = &body[4..4 + len as usize];
        assert_eq!(crc32c::crc32c(msg), crc);
        out.push(pb::ChunkedReadResponse::decode(msg).unwrap());
        body = &body[4 + len as usize..];
    }
    out
}

#[test]
fn negotiation_takes_the_first_supported_type() {
    assert_eq!(negotiate(&[]).unwrap(), ResponseType::Samples);
    assert_eq!(negotiate(&[1, 0]).unwrap(), ResponseType::Streamed);
    assert_eq!(negotiate(&[0, 1]).unwrap(), ResponseType::Samples);
    assert_eq!(negotiate(&[7, 1]).unwrap(), ResponseType::Streamed);
    assert!(negotiate(&[7]).is_err());
}

#[test]
fn requests_must_be_snappy_protobuf() {
    let req = pb::ReadRequest {
        queries: vec![pb::Query {
            start_timestamp_ms: 1,
            end_timestamp_ms: 2,
            matchers: vec![pb::LabelMatcher {
                r#type: pb::label_matcher::Type::Re as i32,
                name: "model".into(),
                value: "fr.*".into(),
            }],
            hints: None,
        }],
        accepted_response_types: vec![],
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap();
    let back = decode_request(&body).unwrap();
    assert_eq!(back, req);
    let m = compile(&matchers(&back.queries[0]).unwrap()).unwrap();
    assert!(m[0].matches("fraud") && !m[0].matches("xfraud"));
    assert!(decode_request(b"not snappy at all").is_err());
    // Snappy framing-format streams are refused (the protocol uses the block format).
    let bad_type = pb::Query {
        matchers: vec![pb::LabelMatcher {
            r#type: 9,
            name: "a".into(),
            value: "b".into(),
        }],
        ..Default::default()
    };
    assert!(matchers(&bad_type).is_err());
}

#[test]
fn streamed_frames_keep_series_whole_and_in_order() {
    let results = vec![
        vec![series("driftdb_ks", 250), series("driftdb_psi", 3)],
        vec![series("driftdb_auc", 1)],
    ];
    let body = streamed_body(&results, MAX_FRAME_BYTES);
    let fr = frames(&body);
    assert_eq!(fr.len(), 3);
    assert_eq!(
        fr.iter().map(|f| f.query_index).collect::<Vec<_>>(),
        [0, 0, 1]
    );
    let ks = &fr[0].chunked_series[0];
    assert_eq!(
        ks.chunks.len(),
        3,
        "250 samples make chunks of 120, 120, 10"
    );
    let mut decoded = Vec::new();
    for c in &ks.chunks {
        assert_eq!(c.r#type, pb::chunk::Encoding::Xor as i32);
        let s = driftdb_prom::xor::decode(&c.data).unwrap();
        assert_eq!(c.min_time_ms, s[0].0);
        assert_eq!(c.max_time_ms, s[s.len() - 1].0);
        decoded.extend(s);
    }
    assert_eq!(decoded, results[0][0].samples);

    // A small frame limit splits a series over consecutive frames, each with its labels.
    let fr = frames(&streamed_body(&results, 200));
    assert_eq!(fr.len(), 5);
    for f in &fr[..3] {
        assert_eq!(f.chunked_series.len(), 1);
        assert_eq!(f.chunked_series[0].labels[0].value, "driftdb_ks");
        assert_eq!(f.chunked_series[0].chunks.len(), 1);
    }
}

#[test]
fn samples_answer_mirrors_the_queries() {
    let results = vec![vec![series("driftdb_psi", 2)], vec![]];
    let r = samples_response(&results);
    assert_eq!(r.results.len(), 2);
    assert!(r.results[1].timeseries.is_empty());
    let ts = &r.results[0].timeseries[0];
    assert_eq!(ts.labels[0].name, "__name__");
    assert_eq!(
        ts.samples,
        vec![
            pb::Sample {
                value: 0.0,
                timestamp: 0
            },
            pb::Sample {
                value: 0.1,
                timestamp: 900_000
            }
        ]
    );
}
