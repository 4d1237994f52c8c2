//! The data the Prometheus tests read: two models over [`WINDOWS`] closed 15-minute windows
//! from 2026-03-01T00:00Z (the test clock stands a day later, so every window is closed).
//!
//! - `shop` (binary, segment key `region` = eu|us, reference profile `v1`): `amount` drifts
//!   further from the reference every window, `channel` shifts towards `pos`, `tenure` stays;
//!   scores carry labels whose agreement with the score decays (AUC falls window by window);
//!   serving latency grows.
//! - `recs` (ranking, segment key `region`, no reference): ten items per request with clicks,
//!   purchases, revenue and relevance.

use driftdb_engine::model::{FeatureKind, ModelDef, Task};
use driftdb_proto::v1 as pb;
use driftdb_server::convert::model_to_pb;

use crate::ingest::{TestServer, t0};

/// Closed windows of live data.
pub const WINDOWS: i64 = 8;
/// Window width (ms).
pub const WIDTH: i64 = 900_000;
/// Rows per window of `shop`.
const SHOP_ROWS: usize = 300;
/// Rows per window of `recs`.
const RECS_ROWS: usize = 120;

/// Start of the live data, ms.
pub fn start() -> i64 {
    t0().0
}

/// End of the last live window, ms.
pub fn end() -> i64 {
    start() + WINDOWS * WIDTH
}

/// A value in (0, 1) that walks a permutation of 1000 levels as `i` grows.
fn level(i: usize, mult: usize, add: usize) -> f64 {
    ((i * mult + add) % 1000) as f64 / 1000.0 + 0.0005
}

fn shop_def() -> ModelDef {
    ModelDef {
        id: "shop".into(),
        task: Task::Binary,
        window: "15m".into(),
        grace: "5m".into(),
        max_label_delay: "30d".into(),
        segments: vec!["region".into()],
        segment_cap: 64,
        features: [
            ("amount".to_string(), FeatureKind::Numeric),
            ("tenure".to_string(), FeatureKind::Numeric),
            ("channel".to_string(), FeatureKind::Categorical),
        ]
        .into_iter()
        .collect(),
        sampling: 1.0,
        team: None,
    }
}

fn recs_def() -> ModelDef {
    ModelDef {
        id: "recs".into(),
        task: Task::Ranking,
        window: "15m".into(),
        grace: "5m".into(),
        max_label_delay: "30d".into(),
        segments: vec!["region".into()],
        segment_cap: 64,
        features: [("query_len".to_string(), FeatureKind::Numeric)]
            .into_iter()
            .collect(),
        sampling: 1.0,
        team: None,
    }
}

/// Row `i` of window `w` (`w < 0`: reference rows): the label agrees with the score less and
/// less as `w` grows.
fn shop_label(i: usize, w: i64) -> f64 {
    let high = level(i, 337, 11) > 0.5;
    let flip_pct = if w < 0 { 5 } else { 5 + 6 * w as usize };
    let flip = (i * 7919 + 13) % 100 < flip_pct;
    if high != flip { 1.0 } else { 0.0 }
}

fn shop_batch(prefix: &str, n: usize, ts0: i64, w: i64, with_labels: bool) -> pb::InferenceBatch {
    let shift = if w < 0 { 0.0 } else { 8.0 * w as f64 };
    let pos_share = if w < 0 { 0 } else { w as usize };
    pb::InferenceBatch {
        model_id: "shop".into(),
        request_ids: (0..n).map(|i| format!("{prefix}{i}")).collect(),
        ts_ms: (0..n)
            .map(|i| ts0 + i as i64 * (WIDTH - 1000) / n as i64)
            .collect(),
        model_versions: vec!["v1".into()],
        segments: vec![pb::SegmentColumn {
            key: "region".into(),
            values: (0..n).map(|i| ["eu", "us"][i % 2].to_string()).collect(),
        }],
        features: vec![
            pb::FeatureColumn {
                name: "amount".into(),
                numbers: (0..n)
                    .map(|i| level(i, 104_729, 17) * 100.0 + shift * (1.0 + (i % 2) as f64))
                    .collect(),
                ..Default::default()
            },
            pb::FeatureColumn {
                name: "tenure".into(),
                numbers: (0..n).map(|i| level(i, 7919, 3) * 50.0).collect(),
                ..Default::default()
            },
            pb::FeatureColumn {
                name: "channel".into(),
                categories: (0..n)
                    .map(|i| {
                        if i % 10 < pos_share {
                            "pos".to_string()
                        } else {
                            ["web", "app", "pos"][i % 3].to_string()
                        }
                    })
                    .collect(),
                ..Default::default()
            },
        ],
        scores: (0..n).map(|i| level(i, 337, 11)).collect(),
        latency_ms: (0..n)
            .map(|i| 10.0 + level(i, 211, 5) * 40.0 + 3.0 * w.max(0) as f64)
            .collect(),
        labels: if with_labels {
            (0..n).map(|i| shop_label(i, w)).collect()
        } else {
            Vec::new()
        },
        ..Default::default()
    }
}

fn recs_batch(w: i64) -> (pb::InferenceBatch, pb::LabelBatch) {
    let n = RECS_ROWS;
    let ts0 = start() + w * WIDTH;
    let ids: Vec<String> = (0..n).map(|i| format!("r{w}-{i}")).collect();
    let ts: Vec<i64> = (0..n)
        .map(|i| ts0 + i as i64 * (WIDTH - 1000) / n as i64)
        .collect();
    let batch = pb::InferenceBatch {
        model_id: "recs".into(),
        request_ids: ids.clone(),
        ts_ms: ts.clone(),
        model_versions: vec!["v3".into()],
        segments: vec![pb::SegmentColumn {
            key: "region".into(),
            values: (0..n).map(|i| ["eu", "us"][i % 2].to_string()).collect(),
        }],
        features: vec![pb::FeatureColumn {
            name: "query_len".into(),
            numbers: (0..n).map(|i| (i % 7 + 1) as f64).collect(),
            ..Default::default()
        }],
        scores: (0..n).map(|i| level(i, 337, 1)).collect(),
        items: (0..n)
            .map(|i| pb::RankedList {
                items: (0..10)
                    .map(|j| pb::RankedItem {
                        id: format!("item{}", (i * 3 + j) % 40),
                        score: 1.0 - j as f64 / 10.0,
                    })
                    .collect(),
            })
            .collect(),
        ..Default::default()
    };
    let labels = pb::LabelBatch {
        model_id: "recs".into(),
        labels: (0..n)
            .map(|i| {
                let click = (i + w as usize).is_multiple_of(4);
                let purchase = click && i.is_multiple_of(3);
                pb::Label {
                    request_id: ids[i].clone(),
                    ts_ms: ts[i] + 30_000,
                    outcome: Some(pb::Outcome {
                        click: if click { 1.0 } else { 0.0 },
                        purchase: if purchase { 1.0 } else { 0.0 },
                        revenue: if purchase { 20.0 + w as f64 } else { 0.0 },
                        relevance: [(
                            format!("item{}", (i * 3 + i % 5) % 40),
                            1.0 + (i % 2) as f64,
                        )]
                        .into_iter()
                        .collect(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }
            })
            .collect(),
        ..Default::default()
    };
    (batch, labels)
}

/// A server with `shop` and `recs` loaded.
pub async fn loaded() -> TestServer {
    let mut s = TestServer::start().await;
    for def in [shop_def(), recs_def()] {
        s.client
            .models
            .create_model(pb::CreateModelRequest {
                model: Some(model_to_pb(&def, vec![])),
            })
            .await
            .unwrap();
    }
    let week_before = start() - 7 * 86_400_000;
    let chunks = vec![
        pb::ReferenceChunk {
            chunk: Some(pb::reference_chunk::Chunk::Header(pb::ReferenceHeader {
                model_id: "shop".into(),
                model_version: "v1".into(),
                replace: false,
            })),
        },
        pb::ReferenceChunk {
            chunk: Some(pb::reference_chunk::Chunk::Rows(shop_batch(
                "ref",
                3000,
                week_before,
                -1,
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
    assert_eq!((summary.rows, summary.rejected), (3000, 0));
    for w in 0..WINDOWS {
        let prefix = format!("w{w}-");
        let live = shop_batch(&prefix, SHOP_ROWS, start() + w * WIDTH, w, false);
        let labels = pb::LabelBatch {
            model_id: "shop".into(),
            labels: (0..SHOP_ROWS)
                .map(|i| pb::Label {
                    request_id: format!("{prefix}{i}"),
                    ts_ms: live.ts_ms[i] + 60_000,
                    label: Some(shop_label(i, w)),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let (rb, rl) = recs_batch(w);
        let acks = s.ingest(vec![live, rb]).await.unwrap();
        assert!(acks.iter().all(|a| a.rejected == 0), "{acks:?}");
        let ack = s.labels(labels).await.unwrap();
        assert_eq!(ack.joined, SHOP_ROWS as u64);
        let ack = s.labels(rl).await.unwrap();
        assert_eq!(ack.joined, RECS_ROWS as u64, "{ack:?}");
    }
    s
}

/// Runs DriftQL over gRPC (what `driftdb query` does) and returns the table.
pub async fn driftql(s: &mut TestServer, q: &str) -> pb::Table {
    s.client
        .query
        .query(pb::QueryRequest { query: q.into() })
        .await
        .unwrap_or_else(|e| panic!("{q}: {e}"))
        .into_inner()
        .table
        .unwrap()
}

/// A DriftQL table as `(sample time = bucket start + WIDTH, segment value or "", value)`,
/// null values left out: the samples the Prometheus series of the same query must hold.
pub fn expected_samples(t: &pb::Table, segment_column: Option<&str>) -> Vec<(i64, String, f64)> {
    let col = |name: &str| t.columns.iter().position(|c| c == name);
    let time = col("time").expect("stepped query");
    let value = col("value").unwrap();
    let seg = segment_column.map(|c| col(c).unwrap());
    let mut out = Vec::new();
    for r in &t.rows {
        let text = |i: usize| match &r.cells[i].value {
            Some(pb::cell::Value::Text(s)) => s.clone(),
            _ => String::new(),
        };
        let Some(pb::cell::Value::Number(v)) = r.cells[value].value else {
            continue;
        };
        let ts = driftdb_engine::time::Timestamp::parse_rfc3339(&text(time))
            .unwrap()
            .0
            + WIDTH;
        out.push((ts, seg.map(text).unwrap_or_default(), v));
    }
    out.sort_by(|a, b| (a.1.as_str(), a.0).cmp(&(b.1.as_str(), b.0)));
    out
}
