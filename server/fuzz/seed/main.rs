//! Writes seed inputs for the `ingest_batch` and `remote_read` targets from well-formed
//! messages: `seed CORPUS_ROOT` fills `CORPUS_ROOT/ingest_batch` and `CORPUS_ROOT/remote_read`.
//! Not a fuzz target.

use driftdb_proto::prometheus as prom;
use driftdb_proto::v1 as pb;
use prost::Message;

fn batch(n: usize, with_missing: bool) -> pb::InferenceBatch {
    pb::InferenceBatch {
        model_id: "m".into(),
        producer_id: "p".into(),
        sequence: 1,
        request_ids: (0..n).map(|i| format!("r{i}")).collect(),
        ts_ms: (0..n).map(|i| 1_772_323_200_000 + i as i64).collect(),
        model_versions: vec!["v1".into()],
        segments: vec![pb::SegmentColumn {
            key: "region".into(),
            values: (0..n).map(|i| ["eu", "us", ""][i % 3].to_string()).collect(),
        }],
        features: vec![
            pb::FeatureColumn {
                name: "amount".into(),
                numbers: (0..n).map(|i| i as f64 * 1.5).collect(),
                missing: if with_missing { vec![0] } else { vec![] },
                ..Default::default()
            },
            pb::FeatureColumn {
                name: "country".into(),
                categories: (0..n).map(|i| format!("c{}", i % 4)).collect(),
                ..Default::default()
            },
        ],
        scores: (0..n).map(|i| (i % 10) as f64 / 10.0).collect(),
        score_missing: if with_missing { vec![1] } else { vec![] },
        latency_ms: vec![3.0; n],
        ..Default::default()
    }
}

fn write(dir: &str, name: &str, selector: u8, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("corpus dir");
    let mut out = vec![selector];
    out.extend_from_slice(bytes);
    std::fs::write(format!("{dir}/{name}"), out).expect("write seed");
}

fn main() {
    let root = std::env::args().nth(1).expect("usage: seed CORPUS_ROOT");
    let ingest = format!("{root}/ingest_batch");
    for (i, (n, missing)) in [(1, false), (3, true), (20, false)].into_iter().enumerate() {
        write(&ingest, &format!("batch-{i}"), 0, &batch(n, missing).encode_to_vec());
    }
    let labels = pb::LabelBatch {
        model_id: "m".into(),
        labels: (0..3)
            .map(|i| pb::Label {
                request_id: format!("r{i}"),
                ts_ms: 1_772_323_200_000,
                label: Some(1.0),
                outcome: Some(pb::Outcome {
                    click: 1.0,
                    relevance: [("a".to_string(), 2.0)].into_iter().collect(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    // The dictionary-encoded form of the categorical column, one code past the dictionary
    // on a missing row (allowed) to start the fuzzer near the code check.
    let mut coded = batch(4, false);
    coded.features[1] = pb::FeatureColumn {
        name: "country".into(),
        dictionary: vec!["c0".into(), "c1".into()],
        codes: vec![0, 1, 1, 7],
        missing: vec![3],
        ..Default::default()
    };
    write(&ingest, "batch-coded", 0, &coded.encode_to_vec());
    // Costs (NaN: none) and attribution columns, one with a missing row.
    let mut explained = batch(4, false);
    explained.cost = vec![0.5, f64::NAN, 0.25, 0.0];
    explained.attributions = vec![
        pb::FeatureColumn {
            name: "amount".into(),
            numbers: vec![0.1, -0.2, 0.0, 0.3],
            missing: vec![2],
            ..Default::default()
        },
        pb::FeatureColumn {
            name: "country".into(),
            numbers: vec![0.5; 4],
            ..Default::default()
        },
    ];
    write(&ingest, "batch-explained", 0, &explained.encode_to_vec());
    write(&ingest, "labels-0", 1, &labels.encode_to_vec());

    let read = format!("{root}/remote_read");
    let m = |t: prom::label_matcher::Type, name: &str, value: &str| prom::LabelMatcher {
        r#type: t as i32,
        name: name.into(),
        value: value.into(),
    };
    use prom::label_matcher::Type::{Eq, Neq, Nre, Re};
    let req = prom::ReadRequest {
        queries: vec![
            prom::Query {
                start_timestamp_ms: 0,
                end_timestamp_ms: 3_600_000,
                matchers: vec![m(Eq, "__name__", "driftdb_psi"), m(Re, "model", "fr.*|sh[o]p")],
                hints: None,
            },
            prom::Query {
                start_timestamp_ms: -5,
                end_timestamp_ms: i64::MAX,
                matchers: vec![m(Neq, "feature", ""), m(Nre, "region", "(eu|us)+")],
                hints: None,
            },
        ],
        accepted_response_types: vec![1, 0],
    };
    let raw = req.encode_to_vec();
    write(&read, "plain-0", 1, &raw);
    let compressed = snap::raw::Encoder::new()
        .compress_vec(&raw)
        .expect("snappy");
    write(&read, "snappy-0", 0, &compressed);
}
