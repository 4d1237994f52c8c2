//! The label-join state is bounded: pending records expire `max_label_delay` after their
//! window (on the model's event-time clock), so a stream of predictions spanning many times
//! the delay keeps a flat `pending` family, and labels that come too late are counted as
//! expired rather than held.

use std::collections::BTreeMap;
use std::sync::Arc;

use driftdb_engine::ingest::{Column, InferenceBatch, InferenceRow, LabelRow};
use driftdb_engine::model::{FeatureKind, ModelDef, Task};
use driftdb_engine::time::{ManualClock, Timestamp};
use driftdb_server::auth::{AuthMode, Principal};
use driftdb_server::ingest::{LabelIn, Source};
use driftdb_server::node::Node;
use driftdb_storage::{Family, StoreConfig};

const T0: i64 = 1_772_323_200_000; // 2026-03-01T00:00:00Z
const WINDOW: i64 = 15 * 60_000;
const ROWS: usize = 100;

fn model() -> ModelDef {
    ModelDef {
        id: "m".into(),
        task: Task::Binary,
        window: "15m".into(),
        grace: "5m".into(),
        max_label_delay: "1h".into(),
        segments: vec![],
        segment_cap: 64,
        features: BTreeMap::from([("x".to_string(), FeatureKind::Numeric)]),
        sampling: 1.0,
        team: None,
    }
}

fn batch(w: i64) -> InferenceBatch {
    let rows = (0..ROWS)
        .map(|i| InferenceRow {
            request_id: format!("w{w}-{i}"),
            ts: Timestamp(T0 + w * WINDOW + i as i64 * 1000),
            version: "v1".into(),
            segments: vec![],
            score: Some((i % 10) as f64 / 10.0),
            prediction: None,
            items: vec![],
            latency_ms: None,
            cost: None,
        })
        .collect();
    InferenceBatch {
        model_id: "m".into(),
        feature_names: vec!["x".into()],
        segment_keys: vec![],
        rows,
        columns: vec![Column::Numbers((0..ROWS).map(|i| Some(i as f64)).collect())],
        attributions: Vec::new(),
    }
}

fn label(id: String, ts: i64) -> LabelIn {
    LabelIn {
        model_id: None,
        label: LabelRow {
            request_id: id,
            ts: Timestamp(ts),
            label: Some(1.0),
            click: None,
            purchase: None,
            revenue: None,
            relevance: vec![],
        },
    }
}

fn pending_records(node: &Node) -> usize {
    node.store
        .family(Family::Pending)
        .scan_prefix(&[])
        .unwrap()
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_state_stays_flat_over_many_label_delays() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp(T0));
    let node = Node::open(
        dir.path(),
        StoreConfig {
            retention_ms: 3650 * 86_400_000,
            ..StoreConfig::default()
        },
        Arc::new(clock.clone()),
        AuthMode::Disabled,
    )
    .unwrap();
    let me = Principal::unrestricted();
    let m = node.create_model(&me, model()).unwrap();
    // 40 windows = 10 hours of event time, ten times the 1 h label delay. Half of each
    // window's predictions get their label 10 minutes after the window ends.
    let mut sizes = Vec::new();
    for w in 0..40 {
        clock.set(Timestamp(T0 + (w + 1) * WINDOW));
        let ack = node
            .ingest_inferences(Arc::clone(&m), batch(w), Source::default())
            .await
            .unwrap();
        assert_eq!(ack.accepted, ROWS as u64);
        let labels = (0..ROWS / 2)
            .map(|i| label(format!("w{w}-{i}"), T0 + (w + 1) * WINDOW + 600_000))
            .collect();
        let ack = node
            .ingest_labels(Arc::clone(&m), labels, Source::default())
            .await
            .unwrap();
        assert_eq!(ack.joined, (ROWS / 2) as u64, "window {w}");
        node.store.compact_pending().unwrap();
        sizes.push(pending_records(&node));
    }
    // A prediction lives its window + 1 h delay + 1 h tombstone; a joined record window + 1 h:
    // at most ~(2 h / 15 m + 1) windows' worth of records remain, whatever the run's length.
    let bound = (2 * 3_600_000 / WINDOW as usize + 2) * ROWS;
    let steady = &sizes[20..];
    assert!(
        steady.iter().all(|n| *n <= bound),
        "pending records per window: {sizes:?} (bound {bound})"
    );
    let (lo, hi) = (steady.iter().min().unwrap(), steady.iter().max().unwrap());
    assert!(hi - lo <= ROWS, "not flat: {sizes:?}");
    assert!(
        sizes[39] < 40 * ROWS / 4,
        "expiry removed nothing: {sizes:?}"
    );
    assert!(node.store.pending_expired_removed() > 0);

    // A label for an expired prediction (window 33 ended 1.5 h before the clock; unlabelled) is
    // counted as expired; so is a label whose own hold would already be over; a fresh label
    // for a live prediction still joins.
    let ack = node
        .ingest_labels(
            Arc::clone(&m),
            vec![
                label("w33-99".into(), T0 + 40 * WINDOW),
                label("never-predicted".into(), T0),
                label("w39-99".into(), T0 + 40 * WINDOW),
            ],
            Source::default(),
        )
        .await
        .unwrap();
    assert_eq!((ack.expired, ack.joined, ack.pending), (2, 1, 0), "{ack:?}");

    // The clocks survive a restart: expiry goes on where it stopped.
    driftdb_server::maintenance::run_once(&node.store, false).unwrap();
    let clock_before = node.store.pending_clock("m").unwrap();
    drop(m);
    drop(node);
    let node = Node::open(
        dir.path(),
        StoreConfig {
            retention_ms: 3650 * 86_400_000,
            ..StoreConfig::default()
        },
        Arc::new(clock),
        AuthMode::Disabled,
    )
    .unwrap();
    assert_eq!(node.store.pending_clock("m"), Some(clock_before));
}

/// The footprint of the label-join state per prediction (run by hand:
/// `cargo test --release --test integration -- --ignored pending_footprint --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn pending_footprint() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp(T0));
    let node = Node::open(
        dir.path(),
        StoreConfig {
            retention_ms: 3650 * 86_400_000,
            ..StoreConfig::default()
        },
        Arc::new(clock.clone()),
        AuthMode::Disabled,
    )
    .unwrap();
    let mut def = model();
    def.max_label_delay = "30d".into();
    def.segments = vec!["region".into(), "device".into()];
    let m = node.create_model(&Principal::unrestricted(), def).unwrap();
    // 200,000 predictions with random 32-hex-digit request ids (UUID-like) and two segments.
    let windows = 2000;
    let mut rng = driftdb_engine::rng::SplitMix(7);
    for w in 0..windows {
        clock.set(Timestamp(T0 + (w + 1) * WINDOW));
        let mut b = batch(w);
        b.segment_keys = vec!["region".into(), "device".into()];
        for (i, r) in b.rows.iter_mut().enumerate() {
            r.request_id = format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
            r.segments = vec![
                Some(["eu", "us", "apac"][i % 3].into()),
                Some(["ios", "android"][i % 2].into()),
            ];
        }
        node.ingest_inferences(Arc::clone(&m), b, Source::default())
            .await
            .unwrap();
    }
    node.store.flush().unwrap();
    node.store.compact_pending().unwrap();
    let db = node.store.raw_db();
    let cf = db.cf_handle("pending").unwrap();
    let bytes = db
        .property_int_value_cf(cf, "rocksdb.total-sst-files-size")
        .unwrap()
        .unwrap();
    let n = (windows as usize * ROWS) as f64;
    eprintln!(
        "pending: {} predictions, {bytes} SST bytes, {:.1} bytes per prediction",
        n,
        bytes as f64 / n
    );
}
