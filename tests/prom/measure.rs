//! Timing of remote read and the query API on a larger store (100 numeric features, 4 regions,
//! one day of 15-minute windows). Not a pass/fail test: run it by hand with
//! `cargo test --release -p driftdb-tests prom::measure -- --ignored --nocapture`.

use std::time::Instant;

use driftdb_engine::model::{FeatureKind, ModelDef, Task};
use driftdb_proto::prometheus as pp;
use driftdb_proto::v1 as pb;
use driftdb_server::convert::model_to_pb;

use super::api::query_range;
use super::http::{enc, get};
use super::remote_read::{decode_frames, decode_samples, eq, read};
use crate::ingest::{TestServer, t0};

const FEATURES: usize = 100;
const WINDOWS: i64 = 96;
const ROWS: usize = 400;
const REGIONS: [&str; 4] = ["eu", "us", "apac", "latam"];

fn batch(prefix: &str, ts0: i64, w: i64, n: usize) -> pb::InferenceBatch {
    pb::InferenceBatch {
        model_id: "big".into(),
        request_ids: (0..n).map(|i| format!("{prefix}{i}")).collect(),
        ts_ms: (0..n).map(|i| ts0 + i as i64 * 2000).collect(),
        model_versions: vec!["v1".into()],
        segments: vec![pb::SegmentColumn {
            key: "region".into(),
            values: (0..n).map(|i| REGIONS[i % 4].to_string()).collect(),
        }],
        features: (0..FEATURES)
            .map(|f| pb::FeatureColumn {
                name: format!("f{f:03}"),
                numbers: (0..n)
                    .map(|i| {
                        ((i * (f + 7) * 7919) % 1000) as f64 + w.max(0) as f64 * f as f64 / 10.0
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        scores: (0..n).map(|i| (i % 100) as f64 / 100.0).collect(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn measure_remote_read_latency() {
    let mut s = TestServer::start().await;
    let def = ModelDef {
        id: "big".into(),
        task: Task::Binary,
        window: "15m".into(),
        grace: "5m".into(),
        max_label_delay: "30d".into(),
        segments: vec!["region".into()],
        segment_cap: 64,
        features: (0..FEATURES)
            .map(|f| (format!("f{f:03}"), FeatureKind::Numeric))
            .collect(),
        sampling: 1.0,
        team: None,
    };
    s.client
        .models
        .create_model(pb::CreateModelRequest {
            model: Some(model_to_pb(&def, vec![])),
        })
        .await
        .unwrap();
    let chunks = vec![
        pb::ReferenceChunk {
            chunk: Some(pb::reference_chunk::Chunk::Header(pb::ReferenceHeader {
                model_id: "big".into(),
                model_version: "v1".into(),
                replace: false,
            })),
        },
        pb::ReferenceChunk {
            chunk: Some(pb::reference_chunk::Chunk::Rows(batch(
                "ref",
                t0().0 - 86_400_000 * 3,
                -1,
                2000,
            ))),
        },
    ];
    s.client
        .models
        .upload_reference(tokio_stream::iter(chunks))
        .await
        .unwrap();
    let day0 = t0().0 - 86_400_000;
    let batches: Vec<_> = (0..WINDOWS)
        .map(|w| batch(&format!("w{w}-"), day0 + w * 900_000, w, ROWS))
        .collect();
    s.ingest(batches).await.unwrap();
    let addr = s.running.as_ref().unwrap().bound.http;
    let (from, to) = (day0, day0 + WINDOWS * 900_000);

    for (what, matchers) in [
        (
            "1 feature, 5 series",
            vec![
                eq("__name__", "driftdb_psi"),
                eq("model", "big"),
                eq("feature", "f007"),
            ],
        ),
        (
            "100 features overall, 100 series",
            vec![
                eq("__name__", "driftdb_psi"),
                eq("model", "big"),
                eq("region", ""),
            ],
        ),
        (
            "100 features x 5 segments, 500 series",
            vec![eq("__name__", "driftdb_psi"), eq("model", "big")],
        ),
        (
            "psi+ks+mean of 100 features x 5 segments, 1500 series",
            vec![
                super::remote_read::matcher(
                    pp::label_matcher::Type::Re,
                    "__name__",
                    "driftdb_(psi|ks|mean)",
                ),
                eq("model", "big"),
            ],
        ),
    ] {
        for accepted in [vec![0], vec![1]] {
            let req = pp::ReadRequest {
                queries: vec![pp::Query {
                    start_timestamp_ms: from,
                    end_timestamp_ms: to,
                    matchers: matchers.clone(),
                    hints: None,
                }],
                accepted_response_types: accepted.clone(),
            };
            let started = Instant::now();
            let r = read(addr, &req).await;
            let took = started.elapsed();
            let (series, samples, bytes) = if accepted == [0] {
                let resp = decode_samples(&r);
                let ts = &resp.results[0].timeseries;
                (
                    ts.len(),
                    ts.iter().map(|t| t.samples.len()).sum::<usize>(),
                    r.body.len(),
                )
            } else {
                let frames = decode_frames(&r.body);
                (frames.len(), 0, r.body.len())
            };
            println!(
                "remote read {what} over 24h, {}: {:.1} ms, {series} series/frames, {samples} samples, {bytes} bytes",
                if accepted == [0] {
                    "SAMPLES"
                } else {
                    "STREAMED"
                },
                took.as_secs_f64() * 1000.0
            );
        }
    }
    for q in [
        r#"driftdb_psi{model="big", region=""}"#,
        r#"topk(10, max by (feature) (max_over_time(driftdb_psi{model="big"}[6h])))"#,
    ] {
        let started = Instant::now();
        let d = query_range(addr, q, from, to, 900).await;
        println!(
            "query_range {q} over 24h step 15m: {:.1} ms, {} series",
            started.elapsed().as_secs_f64() * 1000.0,
            d["result"].as_array().unwrap().len()
        );
    }
    for target in [
        format!(
            "/api/v1/series?match[]={}",
            enc(r#"driftdb_psi{model="big"}"#)
        ),
        format!("/api/v1/series?match[]={}", enc(r#"{model="big"}"#)),
        format!(
            "/api/v1/label/region/values?match[]={}",
            enc(r#"driftdb_rows{model=~"big"}"#)
        ),
        "/api/v1/label/model/values".to_string(),
    ] {
        let started = Instant::now();
        let r = get(addr, &target).await;
        assert_eq!(r.status, 200);
        println!(
            "GET {target}: {:.1} ms, {} entries",
            started.elapsed().as_secs_f64() * 1000.0,
            r.json()["data"].as_array().unwrap().len()
        );
    }
    s.running.take().unwrap().shutdown().await.unwrap();
}
