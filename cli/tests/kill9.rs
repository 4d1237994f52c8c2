//! Process-level durability: `kill -9` a real `driftdb serve` during ingest; every acknowledged
//! row survives, and replaying the unacknowledged tail with the same producer sequence numbers
//! counts each row exactly once.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use driftdb_cli::client::{Client, ClientConfig};
use driftdb_engine::series::{FeatureRef, Segment, SeriesKey};
use driftdb_engine::sketch::SeriesState;
use driftdb_engine::time::{Clock, Resolution, SystemClock, Timestamp};
use driftdb_proto::v1 as pb;
use driftdb_server::auth::AuthMode;
use driftdb_server::node::Node;
use driftdb_storage::{SeriesReader, StoreConfig};
use rand::Rng;
use tokio_stream::StreamExt;

const ROWS: usize = 200;

/// Starts `driftdb serve` on `dir`; its URL and the operator key it wrote on its first start.
fn start(dir: &std::path::Path) -> (Child, ClientConfig) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_driftdb"))
        .args(["serve", "--data"])
        .arg(dir)
        .args(["--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("driftdb starts");
    let (grpc, _) = common::ready_addrs(&mut child);
    let key = std::fs::read_to_string(dir.join("admin.key")).unwrap();
    (
        child,
        ClientConfig::url(format!("http://{grpc}")).with_key(key.trim()),
    )
}

fn batch(seq: u64, now: i64) -> pb::InferenceBatch {
    pb::InferenceBatch {
        model_id: "k9".into(),
        producer_id: "test".into(),
        sequence: seq,
        request_ids: (0..ROWS).map(|i| format!("b{seq}-{i}")).collect(),
        ts_ms: vec![now; ROWS],
        model_versions: vec!["v1".into()],
        features: vec![pb::FeatureColumn {
            name: "x".into(),
            numbers: (0..ROWS).map(|i| i as f64).collect(),
            ..Default::default()
        }],
        scores: vec![0.5; ROWS],
        ..Default::default()
    }
}

fn stored_rows(dir: &std::path::Path, now: i64) -> u64 {
    let node = Node::open(
        dir,
        StoreConfig::default(),
        Arc::new(SystemClock),
        AuthMode::Disabled,
    )
    .unwrap();
    let key = SeriesKey {
        model: "k9".into(),
        version: "v1".into(),
        feature: FeatureRef::Score,
        segment: Segment::All,
    };
    let from = Timestamp(Resolution::M15.window_start(Timestamp(now)).0 - 900_000);
    let mut total = 0;
    for w in node
        .store
        .windows(&key, Resolution::M15, from, Timestamp(now + 3_600_000))
        .unwrap()
    {
        if let SeriesState::Score(s) = w.unwrap().state {
            total += s.predictions;
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_row() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemClock.now().0;
    let (mut child, url) = start(dir.path());
    let mut c = Client::connect_with(&url).await.unwrap();
    let def = driftdb_engine::model::ModelDef {
        id: "k9".into(),
        task: driftdb_engine::model::Task::Binary,
        window: "15m".into(),
        grace: "5m".into(),
        max_label_delay: "30d".into(),
        segments: vec![],
        segment_cap: 64,
        features: [("x".to_string(), driftdb_engine::model::FeatureKind::Numeric)]
            .into_iter()
            .collect(),
        sampling: 1.0,
        team: None,
    };
    c.models
        .create_model(pb::CreateModelRequest {
            model: Some(driftdb_server::convert::model_to_pb(&def, vec![])),
        })
        .await
        .unwrap();
    let mut acked: u64 = 0; // highest acknowledged sequence
    let mut rng = rand::rng();
    let cycles = 20;
    for cycle in 0..cycles {
        // Stream batches; kill at a random point while batches are in flight.
        let (tx, rx) = tokio::sync::mpsc::channel::<pb::InferenceBatch>(2);
        let mut acks = c
            .ingest
            .ingest_inferences(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let first = acked + 1;
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let sent2 = Arc::clone(&sent);
        let sender = tokio::spawn(async move {
            for seq in first..first + 1000 {
                // Count before handing over: a batch may reach the server as soon as it is sent.
                sent2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if tx.send(batch(seq, now)).await.is_err() {
                    break;
                }
            }
        });
        let kill_after = Duration::from_millis(rng.random_range(20..300));
        let deadline = tokio::time::Instant::now() + kill_after;
        loop {
            tokio::select! {
                a = acks.next() => match a {
                    Some(Ok(a)) => { assert!(!a.replayed); acked = a.sequence; }
                    _ => break,
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        sender.abort();
        let stored = stored_rows(dir.path(), now);
        assert!(
            stored >= acked * ROWS as u64,
            "cycle {cycle}: {stored} rows stored, {} acknowledged",
            acked * ROWS as u64
        );
        assert!(
            stored <= (first - 1 + sent.load(std::sync::atomic::Ordering::SeqCst)) * ROWS as u64,
            "cycle {cycle}: more rows than were sent"
        );
        assert_eq!(stored % ROWS as u64, 0, "cycle {cycle}: a torn batch");
        // Restart; replay from the first unacknowledged sequence: already-applied batches are
        // recognised (producer sequence), so each row counts once.
        let (ch, u) = start(dir.path());
        child = ch;
        c = Client::connect_with(&u).await.unwrap();
        let applied = stored / ROWS as u64;
        let replay: Vec<_> = (acked + 1..=applied).map(|s| batch(s, now)).collect();
        if !replay.is_empty() {
            let mut r = c
                .ingest
                .ingest_inferences(tokio_stream::iter(replay))
                .await
                .unwrap()
                .into_inner();
            while let Some(a) = r.next().await {
                let a = a.unwrap();
                assert!(
                    a.replayed,
                    "cycle {cycle}: batch {} applied twice",
                    a.sequence
                );
            }
            acked = applied;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(stored_rows(dir.path(), now), acked * ROWS as u64);
    assert!(
        acked > cycles as u64,
        "the test should have acknowledged batches in most cycles"
    );
}
