//! A corrupted stored value, end to end: written under a window key through RocksDB directly
//! (as a bit flip or a torn write would leave it), it is skipped by DriftQL, the HTTP series and
//! Prometheus remote read, reported as a warning and on `/metrics`, and never served as data.
//! (A storage write failure is tested on a process of its own, `server/tests/faults.rs`.)

use std::sync::Arc;

use driftdb_cli::client::Client;
use driftdb_engine::series::{FeatureRef, Segment, SeriesKey};
use driftdb_engine::time::{ManualClock, Resolution, Timestamp};
use driftdb_proto::v1 as pb;
use driftdb_server::auth::AuthMode;
use driftdb_server::convert::model_to_pb;
use driftdb_server::node::Node;
use driftdb_storage::StoreConfig;
use driftdb_storage::layout::{CF_WIN_15M, window_key};
use prost::Message;
use tokio_stream::StreamExt;

use super::fixture::{batch, model, t0};

const W: i64 = 900_000;

fn counts(out: &pb::QueryResponse) -> Vec<(String, f64)> {
    let t = out.table.as_ref().unwrap();
    let col = |name: &str| t.columns.iter().position(|c| c == name).unwrap();
    let (time, value) = (col("time"), col("value"));
    t.rows
        .iter()
        .filter_map(|r| {
            let ts = match &r.cells[time].value {
                Some(pb::cell::Value::Text(s)) => s.clone(),
                _ => return None,
            };
            match r.cells[value].value {
                Some(pb::cell::Value::Number(x)) => Some((ts, x)),
                _ => None,
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_window_is_reported_and_skipped_never_served() {
    driftdb_server::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp(t0().0 + 86_400_000));
    let node = Node::open(
        dir.path(),
        StoreConfig::default(),
        Arc::new(clock),
        AuthMode::Disabled,
    )
    .unwrap();
    let running = driftdb_server::serve::start(
        node.clone(),
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let mut c = Client::connect(&format!("http://{}", running.bound.grpc))
        .await
        .unwrap();
    c.models
        .create_model(pb::CreateModelRequest {
            model: Some(model_to_pb(&model("m", None), vec![])),
        })
        .await
        .unwrap();
    // Ten rows in each of three windows.
    let batches: Vec<_> = (0..3)
        .map(|w| {
            let mut b = batch("m", "eu", &format!("w{w}"), 10);
            b.ts_ms = vec![t0().0 + w * W + 60_000; 10];
            b
        })
        .collect();
    let mut acks = c
        .ingest
        .ingest_inferences(tokio_stream::iter(batches))
        .await
        .unwrap()
        .into_inner();
    for _ in 0..3 {
        assert_eq!(acks.next().await.unwrap().unwrap().accepted, 10);
    }
    let q = "count(m.x) from 2026-03-01T00:00:00Z to 2026-03-01T00:45:00Z step 15m";
    let run = |mut c: Client| async move {
        c.query
            .query(pb::QueryRequest { query: q.into() })
            .await
            .unwrap()
            .into_inner()
    };
    let before = run(c.clone()).await;
    assert_eq!(
        counts(&before).iter().map(|x| x.1).collect::<Vec<_>>(),
        [10.0; 3]
    );
    assert!(before.warnings.is_empty(), "{:?}", before.warnings);

    // The middle window's value: one flipped byte, written past the store's own checks.
    let key = window_key(
        &SeriesKey {
            model: "m".into(),
            version: "v1".into(),
            feature: FeatureRef::Named("x".into()),
            segment: Segment::All,
        },
        Resolution::M15,
        Timestamp(t0().0 + W),
    );
    {
        let db = node.store.raw_db();
        let cf = db.cf_handle(CF_WIN_15M).unwrap();
        let mut v = db.get_cf(cf, &key).unwrap().expect("the window is stored");
        let mid = v.len() / 2;
        v[mid] ^= 0x04;
        db.put_cf(cf, &key, &v).unwrap();
    }
    let after = run(c.clone()).await;
    let got = counts(&after);
    assert_eq!(got.len(), 2, "the corrupt window is left out: {got:?}");
    assert!(got.iter().all(|(_, x)| *x == 10.0), "{got:?}");
    assert!(
        !got.iter().any(|(t, _)| t.starts_with("2026-03-01T00:15")),
        "{got:?}"
    );
    assert!(
        after
            .warnings
            .iter()
            .any(|w| w.contains("failed their checksum")),
        "{:?}",
        after.warnings
    );

    // The same through HTTP: the DriftQL API and Prometheus remote read.
    let http = running.bound.http;
    let body = reqwest::Client::new()
        .post(format!("http://{http}/api/v1/driftql"))
        .header("content-type", "application/json")
        .body(serde_json::json!({ "query": q }).to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["rows"].as_array().unwrap().len(), 2, "{body}");
    assert!(body.contains("failed their checksum"), "{body}");
    use driftdb_proto::prometheus as prom;
    let req = prom::ReadRequest {
        queries: vec![prom::Query {
            start_timestamp_ms: t0().0,
            end_timestamp_ms: t0().0 + 3 * W,
            matchers: vec![
                prom::LabelMatcher {
                    r#type: prom::label_matcher::Type::Eq as i32,
                    name: "__name__".into(),
                    value: "driftdb_mean".into(),
                },
                prom::LabelMatcher {
                    r#type: prom::label_matcher::Type::Eq as i32,
                    name: "feature".into(),
                    value: "x".into(),
                },
            ],
            hints: None,
        }],
        accepted_response_types: vec![],
    };
    let r = reqwest::Client::new()
        .post(format!("http://{http}/api/v1/read"))
        .body(
            snap::raw::Encoder::new()
                .compress_vec(&req.encode_to_vec())
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&r.bytes().await.unwrap())
        .unwrap();
    let resp = prom::ReadResponse::decode(raw.as_slice()).unwrap();
    let overall = resp.results[0]
        .timeseries
        .iter()
        .find(|s| !s.labels.iter().any(|l| l.name == "region"))
        .expect("the overall series");
    let stamps: Vec<i64> = overall.samples.iter().map(|s| s.timestamp).collect();
    assert_eq!(
        stamps,
        [t0().0 + W, t0().0 + 3 * W],
        "the corrupt window has no sample"
    );
    // Counted on /metrics.
    let metrics = reqwest::get(format!("http://{http}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let corrupt: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("driftdb_storage_corrupt_values_total "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(corrupt >= 1, "{corrupt}");
    running.shutdown().await.unwrap();
}
