//! DriftQL through a real server (RocksDB on a temp dir, gRPC and HTTP on 127.0.0.1:0, the
//! clock fixed a day after the data): gRPC `Query` and `DriftSummary`, the HTTP drift,
//! performance, summary and DriftQL endpoints, and their errors.
//!
//! The model `shop` has a reference for `v1`; its live hour (2026-03-01T00:00Z, four 15-minute
//! windows) keeps `stable` and `channel` on the reference distribution and moves `drifty` up by
//! 60% of its range.

use std::net::SocketAddr;

use driftdb_engine::model::{FeatureKind, ModelDef, Task};
use driftdb_proto::v1 as pb;
use driftdb_server::convert::model_to_pb;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ingest::{TestServer, t0};

const HOUR: &str = "from 2026-03-01T00:00:00Z to 2026-03-01T01:00:00Z";
const LIVE_ROWS: usize = 2000;

fn shop_def(id: &str) -> ModelDef {
    ModelDef {
        id: id.into(),
        task: Task::Binary,
        window: "15m".into(),
        grace: "5m".into(),
        max_label_delay: "30d".into(),
        segments: vec!["region".into()],
        segment_cap: 64,
        features: [
            ("stable".to_string(), FeatureKind::Numeric),
            ("drifty".to_string(), FeatureKind::Numeric),
            ("channel".to_string(), FeatureKind::Categorical),
        ]
        .into_iter()
        .collect(),
        sampling: 1.0,
        team: None,
    }
}

/// A value in (0, 1) that walks a permutation of 1000 levels as `i` grows.
fn level(i: usize, mult: usize, add: usize) -> f64 {
    ((i * mult + add) % 1000) as f64 / 1000.0 + 0.0005
}

fn label_of(i: usize) -> f64 {
    let score_high = level(i, 337, 11) > 0.5;
    if score_high != (i % 10 == 3) {
        1.0
    } else {
        0.0
    }
}

/// `n` rows spread evenly over `[ts0, ts0 + span_ms)`, `drifty` moved up by `shift`.
fn rows(
    model: &str,
    prefix: &str,
    n: usize,
    ts0: i64,
    span_ms: i64,
    shift: f64,
    with_labels: bool,
) -> pb::InferenceBatch {
    pb::InferenceBatch {
        model_id: model.into(),
        request_ids: (0..n).map(|i| format!("{prefix}{i}")).collect(),
        ts_ms: (0..n)
            .map(|i| ts0 + i as i64 * span_ms / n as i64)
            .collect(),
        model_versions: vec!["v1".into()],
        segments: vec![pb::SegmentColumn {
            key: "region".into(),
            values: (0..n).map(|i| ["eu", "us"][i % 2].to_string()).collect(),
        }],
        features: vec![
            pb::FeatureColumn {
                name: "stable".into(),
                numbers: (0..n).map(|i| level(i, 7919, 3) * 100.0).collect(),
                ..Default::default()
            },
            pb::FeatureColumn {
                name: "drifty".into(),
                numbers: (0..n)
                    .map(|i| level(i, 104_729, 17) * 100.0 + shift)
                    .collect(),
                ..Default::default()
            },
            pb::FeatureColumn {
                name: "channel".into(),
                categories: (0..n)
                    .map(|i| ["web", "app", "pos"][i % 3].to_string())
                    .collect(),
                ..Default::default()
            },
        ],
        scores: (0..n).map(|i| level(i, 337, 11)).collect(),
        labels: if with_labels {
            (0..n).map(label_of).collect()
        } else {
            Vec::new()
        },
        ..Default::default()
    }
}

/// A server with `shop` (reference v1, one live hour with labels) and `shop-eu` (a few rows,
/// no reference).
async fn loaded_server() -> TestServer {
    let mut s = TestServer::start().await;
    for id in ["shop", "shop-eu"] {
        s.client
            .models
            .create_model(pb::CreateModelRequest {
                model: Some(model_to_pb(&shop_def(id), vec![])),
            })
            .await
            .unwrap();
    }
    let week_before = t0().0 - 7 * 86_400_000;
    let chunks = vec![
        pb::ReferenceChunk {
            chunk: Some(pb::reference_chunk::Chunk::Header(pb::ReferenceHeader {
                model_id: "shop".into(),
                model_version: "v1".into(),
                replace: false,
            })),
        },
        pb::ReferenceChunk {
            chunk: Some(pb::reference_chunk::Chunk::Rows(rows(
                "shop",
                "ref",
                4000,
                week_before,
                3_600_000,
                0.0,
                true,
            ))),
        },
    ];
    let summary = s
        .client
        .models
        .upload_reference(tokio_stream::iter(chunks))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((summary.rows, summary.rejected), (4000, 0));
    let live = rows("shop", "live", LIVE_ROWS, t0().0, 3_600_000, 60.0, false);
    let labels = pb::LabelBatch {
        model_id: "shop".into(),
        labels: (0..LIVE_ROWS)
            .map(|i| pb::Label {
                request_id: format!("live{i}"),
                ts_ms: live.ts_ms[i] + 60_000,
                label: Some(label_of(i)),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let acks = s
        .ingest(vec![
            live,
            rows("shop-eu", "eu", 50, t0().0, 3_600_000, 0.0, false),
        ])
        .await
        .unwrap();
    assert!(acks.iter().all(|a| a.rejected == 0), "{acks:?}");
    let ack = s.labels(labels).await.unwrap();
    assert_eq!(ack.joined, LIVE_ROWS as u64);
    s
}

fn pb_text(c: &pb::Cell) -> Option<&str> {
    match &c.value {
        Some(pb::cell::Value::Text(t)) => Some(t),
        _ => None,
    }
}

fn pb_number(c: &pb::Cell) -> Option<f64> {
    match c.value {
        Some(pb::cell::Value::Number(v)) => Some(v),
        _ => None,
    }
}

/// The cell of `column` in the row whose `key_column` is `key`.
fn pb_cell<'a>(t: &'a pb::Table, key_column: &str, key: &str, column: &str) -> &'a pb::Cell {
    let k = t.columns.iter().position(|c| c == key_column).unwrap();
    let c = t.columns.iter().position(|c| c == column).unwrap();
    let row = t
        .rows
        .iter()
        .find(|r| pb_text(&r.cells[k]) == Some(key))
        .unwrap_or_else(|| panic!("no row with {key_column} = {key}"));
    &row.cells[c]
}

async fn query(s: &mut TestServer, q: &str) -> Result<pb::QueryResponse, tonic::Status> {
    s.client
        .query
        .query(pb::QueryRequest { query: q.into() })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_query_and_drift_summary() {
    let mut s = loaded_server().await;

    // (a) PSI of every feature over the live hour: the drifted feature stands out.
    let r = query(&mut s, &format!("psi(shop.*) {HOUR}")).await.unwrap();
    let t = r.table.unwrap();
    assert_eq!(
        t.columns,
        [
            "model",
            "version",
            "feature",
            "metric",
            "value",
            "n",
            "baseline_n"
        ]
    );
    let psi = |f: &str| pb_number(pb_cell(&t, "feature", f, "value")).unwrap();
    let (drifty, stable) = (psi("drifty"), psi("stable"));
    assert!(drifty > 1.0, "drifty psi {drifty}");
    assert!((0.0..0.05).contains(&stable), "stable psi {stable}");
    assert!(psi("channel") < 0.05);
    assert_eq!(
        pb_number(pb_cell(&t, "feature", "drifty", "n")),
        Some(2000.0)
    );
    assert_eq!(
        pb_number(pb_cell(&t, "feature", "drifty", "baseline_n")),
        Some(4000.0)
    );
    assert_eq!(
        pb_text(pb_cell(&t, "feature", "drifty", "version")),
        Some("v1")
    );

    // Stepped: one row per 15-minute window, `time` first; ks has a p column.
    let r = query(&mut s, &format!("ks(shop.drifty) {HOUR} step 15m"))
        .await
        .unwrap();
    let t = r.table.unwrap();
    assert_eq!(
        t.columns,
        [
            "time",
            "model",
            "version",
            "feature",
            "metric",
            "value",
            "n",
            "baseline_n",
            "p"
        ]
    );
    assert_eq!(t.rows.len(), 4);

    // `EXPLAIN` answers with the plan.
    let r = query(&mut s, &format!("EXPLAIN psi(shop.*) {HOUR}"))
        .await
        .unwrap();
    assert_eq!(r.table.unwrap().columns, ["plan"]);

    // No reference: a warning, not an error.
    let r = query(&mut s, &format!("psi(\"shop-eu\".*) {HOUR}"))
        .await
        .unwrap();
    assert!(
        r.warnings.iter().any(|w| w.contains("no reference")),
        "{:?}",
        r.warnings
    );

    // (b) A syntax error is INVALID_ARGUMENT and points at the line and column.
    let e = query(&mut s, "psi(shop.*) ovr 1h").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("line 1, column 13"), "{}", e.message());
    let e = query(&mut s, "").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    // A well-formed query asking for something impossible is INVALID_ARGUMENT too.
    let e = query(
        &mut s,
        "psi(shop.*) from 2026-03-02T00:00:00Z to 2026-03-01T00:00:00Z",
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");

    // (c) Unknown model or feature: NOT_FOUND.
    let e = query(&mut s, "psi(nope.*) over 1h").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    assert!(e.message().contains("nope"), "{}", e.message());
    let e = query(&mut s, "psi(shop.height) over 1h").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");

    // (d) The summary ranks the drifted feature first; relative times read the server clock
    // (2026-03-02T00:00Z), so now-1d..now-23h is the live hour.
    let sum = s
        .client
        .query
        .drift_summary(pb::DriftSummaryRequest {
            model_id: "shop".into(),
            model_version: String::new(),
            from: "now-1d".into(),
            to: "now-23h".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sum.model_version, "v1");
    assert_eq!(sum.from, "2026-03-01T00:00:00.000Z");
    assert_eq!(sum.to, "2026-03-01T01:00:00.000Z");
    assert!(sum.warnings.is_empty(), "{:?}", sum.warnings);
    let d = sum.drifted_features.unwrap();
    let col = |name: &str| d.columns.iter().position(|c| c == name).unwrap();
    assert_eq!(pb_text(&d.rows[0].cells[col("feature")]), Some("drifty"));
    assert_eq!(pb_text(&d.rows[0].cells[col("drifted")]), Some("yes"));
    assert_eq!(
        pb_text(pb_cell(&d, "feature", "stable", "drifted")),
        Some("no")
    );
    let perf = sum.performance.unwrap();
    let auc = pb_number(pb_cell(&perf, "metric", "auc", "value")).unwrap();
    assert!((0.7..=1.0).contains(&auc), "auc {auc}");
    assert!(!sum.prediction_shift.unwrap().rows.is_empty());

    // Summary errors: bad time, unknown model, missing model id.
    let ask = |model: &str, from: &str| pb::DriftSummaryRequest {
        model_id: model.into(),
        from: from.into(),
        ..Default::default()
    };
    let e = s
        .client
        .query
        .drift_summary(ask("shop", "yesterday"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("from"), "{}", e.message());
    let e = s
        .client
        .query
        .drift_summary(ask("nope", ""))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    assert!(!e.message().contains("line 0"), "{}", e.message());
    let e = s.client.query.drift_summary(ask("", "")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");

    s.running.take().unwrap().shutdown().await.unwrap();
}

/// Percent-encodes a query-string value.
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One HTTP/1.1 exchange on a fresh connection; returns the status and the JSON body.
async fn http(addr: SocketAddr, method: &str, target: &str, body: &str) -> (u16, Value) {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(
        !head.to_ascii_lowercase().contains("chunked"),
        "chunked response: {head}"
    );
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let json = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{method} {target}: body is not JSON ({e}): {body}"));
    (status, json)
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_drift_performance_summary_and_driftql() {
    let mut s = loaded_server().await;
    let addr = s.running.as_ref().unwrap().bound.http;

    // Drift series: defaults to the model's 15-minute step.
    let (code, j) = http(addr, "GET", "/models/shop/drift?from=now-1d&to=now-23h", "").await;
    assert_eq!(code, 200, "{j}");
    assert_eq!(j["model"], "shop");
    assert_eq!(j["version"], "v1");
    assert!(j["query"].as_str().unwrap().ends_with("step 15m"), "{j}");
    assert_eq!(
        strings(&j["columns"]),
        [
            "time",
            "model",
            "version",
            "feature",
            "metric",
            "value",
            "n",
            "baseline_n"
        ]
    );
    let rows = j["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4 * 3, "{j}");
    for r in rows.iter().filter(|r| r["feature"] == "drifty") {
        assert!(r["value"].as_f64().unwrap() > 1.0, "{r}");
        assert_eq!(r["n"], 500.0);
    }
    // Absolute times and an explicit step and version.
    let (code, j) = http(
        addr,
        "GET",
        &format!(
            "/models/shop/drift?from={}&to={}&step=1h&version=v1",
            enc("2026-03-01T00:00:00Z"),
            enc("2026-03-01T01:00:00+00:00")
        ),
        "",
    )
    .await;
    assert_eq!(code, 200, "{j}");
    assert_eq!(j["rows"].as_array().unwrap().len(), 3, "{j}");
    // Default range: the last 24 hours before the server clock hold the live hour.
    let (code, j) = http(addr, "GET", "/models/shop/drift?step=1d", "").await;
    assert_eq!(code, 200, "{j}");
    assert!(j["query"].as_str().unwrap().contains("over 1d"), "{j}");

    // A model id that is not an identifier is quoted, not spliced.
    let (code, j) = http(
        addr,
        "GET",
        "/models/shop-eu/drift?from=now-1d&to=now-23h",
        "",
    )
    .await;
    assert_eq!(code, 200, "{j}");
    assert!(
        j["query"]
            .as_str()
            .unwrap()
            .starts_with("psi(\"shop-eu\"@v1.*)"),
        "{j}"
    );
    assert!(!j["warnings"].as_array().unwrap().is_empty(), "{j}");

    // Performance.
    let (code, j) = http(
        addr,
        "GET",
        "/models/shop/performance?metric=auc&from=now-1d&to=now-23h&step=1h",
        "",
    )
    .await;
    assert_eq!(code, 200, "{j}");
    let rows = j["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{j}");
    assert_eq!(rows[0]["metric"], "auc");
    let auc = rows[0]["value"].as_f64().unwrap();
    assert!((0.7..=1.0).contains(&auc), "{j}");
    let (code, j) = http(addr, "GET", "/models/shop/performance?from=now-1d", "").await;
    assert_eq!(code, 200, "{j}");
    assert!(
        j["query"].as_str().unwrap().starts_with("auc(shop@v1)"),
        "{j}"
    );

    // Summary.
    let (code, j) = http(
        addr,
        "GET",
        "/models/shop/drift/summary?from=now-1d&to=now-23h",
        "",
    )
    .await;
    assert_eq!(code, 200, "{j}");
    assert_eq!(j["version"], "v1");
    assert_eq!(j["from"], "2026-03-01T00:00:00.000Z");
    assert_eq!(j["drifted_features"]["rows"][0]["feature"], "drifty");
    assert_eq!(j["drifted_features"]["rows"][0]["drifted"], "yes");
    assert!(strings(&j["performance"]["columns"]).contains(&"reference"));
    assert!(!j["prediction_shift"]["rows"].as_array().unwrap().is_empty());

    // Arbitrary DriftQL, by GET and by POST.
    let q = format!("ks(shop.*) {HOUR} top 1");
    let (code, j) = http(addr, "GET", &format!("/api/v1/driftql?q={}", enc(&q)), "").await;
    assert_eq!(code, 200, "{j}");
    assert_eq!(j["rows"][0]["feature"], "drifty");
    assert!(strings(&j["columns"]).contains(&"p"));
    let body = serde_json::json!({ "query": q }).to_string();
    let (code, j2) = http(addr, "POST", "/api/v1/driftql", &body).await;
    assert_eq!(code, 200, "{j2}");
    assert_eq!(j2["columns"], j["columns"]);
    assert_eq!(j2["rows"][0]["feature"], "drifty");
    // KS over several windows merges KLL sketches, whose compaction is randomised: the same
    // query may differ in the third decimal between runs.
    let (a, b) = (
        j["rows"][0]["value"].as_f64().unwrap(),
        j2["rows"][0]["value"].as_f64().unwrap(),
    );
    assert!((a - b).abs() < 0.02, "{a} vs {b}");

    // Errors: JSON bodies with 400 / 404.
    let bad = [
        "/api/v1/driftql?q=psi(shop.*)%20ovr%201h".to_string(),
        "/api/v1/driftql".to_string(),
        "/models/shop/drift?from=yesterday".to_string(),
        "/models/shop/drift?step=often".to_string(),
        format!(
            "/models/shop/performance?metric={}",
            enc("auc(shop) over 1h --")
        ),
        "/models/shop/drift/summary?to=tomorrow".to_string(),
    ];
    for target in &bad {
        let (code, j) = http(addr, "GET", target, "").await;
        assert_eq!(code, 400, "{target}: {j}");
        assert!(j["error"].is_string(), "{target}: {j}");
    }
    let (_, j) = http(addr, "GET", &bad[0], "").await;
    assert!(
        j["error"].as_str().unwrap().contains("line 1, column 13"),
        "{j}"
    );
    let (code, j) = http(addr, "POST", "/api/v1/driftql", "psi(shop.*)").await;
    assert_eq!(code, 400, "{j}");
    for target in [
        "/models/nope/drift",
        "/models/nope/performance",
        "/models/nope/drift/summary",
        "/api/v1/driftql?q=psi(nope.*)",
    ] {
        let (code, j) = http(addr, "GET", target, "").await;
        assert_eq!(code, 404, "{target}: {j}");
        assert!(
            j["error"].as_str().unwrap().contains("nope"),
            "{target}: {j}"
        );
    }

    s.running.take().unwrap().shutdown().await.unwrap();
}
