//! Ingest under a flood, against a `driftdb serve` process of its own (so its memory is its
//! own): many more concurrent streams and bytes than the limits allow. The server answers
//! RESOURCE_EXHAUSTED with a retry hint instead of queueing, its peak resident memory grows by
//! far less than what was offered, every acknowledged batch is stored whole, and it still
//! serves afterwards.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use driftdb_cli::client::Client;
use driftdb_engine::model::{FeatureKind, ModelDef, Task};
use driftdb_engine::time::{Clock, SystemClock};
use driftdb_proto::v1 as pb;
use driftdb_server::convert::model_to_pb;
use tokio_stream::StreamExt;
use tonic::Code;

const FEATURES: usize = 50;
const ROWS: usize = 2000;

struct Server {
    child: Child,
    url: String,
    http: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &std::path::Path) -> Server {
    let cfg = dir.join("config.json");
    std::fs::write(
        &cfg,
        r#"{"ingest_concurrency": 2, "limits": {"ingest_streams": 16, "ingest_memory_mb": 4}}"#,
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_driftdb"))
        .args(["serve", "--insecure-no-auth", "--data"])
        .arg(dir.join("data"))
        .arg("--config")
        .arg(&cfg)
        .args(["--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (grpc, http) = common::ready_addrs(&mut child);
    Server {
        url: format!("http://{grpc}"),
        http: http.to_string(),
        child,
    }
}

/// `VmRSS` and `VmHWM` (peak) of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn model() -> ModelDef {
    ModelDef {
        id: "flood".into(),
        task: Task::Binary,
        window: "15m".into(),
        grace: "5m".into(),
        max_label_delay: "30d".into(),
        segments: vec![],
        segment_cap: 64,
        features: (0..FEATURES)
            .map(|f| (format!("f{f}"), FeatureKind::Numeric))
            .collect(),
        sampling: 1.0,
        team: None,
    }
}

/// About 0.85 MB: 2,000 rows × 50 numeric features.
fn batch(tag: &str, now: i64) -> pb::InferenceBatch {
    pb::InferenceBatch {
        model_id: "flood".into(),
        request_ids: (0..ROWS).map(|i| format!("{tag}-{i}")).collect(),
        ts_ms: vec![now; ROWS],
        model_versions: vec!["v1".into()],
        features: (0..FEATURES)
            .map(|f| pb::FeatureColumn {
                name: format!("f{f}"),
                numbers: (0..ROWS).map(|i| (i * (f + 1)) as f64 * 0.37).collect(),
                ..Default::default()
            })
            .collect(),
        scores: vec![0.5; ROWS],
        ..Default::default()
    }
}

/// Bytes in the server's memtables, from its `/metrics` (open: the server runs without auth).
async fn memtable_bytes(http: &str) -> u64 {
    let text = reqwest::get(format!("http://{http}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("driftdb_rocksdb_memtable_bytes{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_gets_resource_exhausted_and_memory_stays_bounded() {
    driftdb_server::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let pid = server.child.id();
    let mut c = Client::connect(&server.url).await.unwrap();
    c.models
        .create_model(pb::CreateModelRequest {
            model: Some(model_to_pb(&model(), vec![])),
        })
        .await
        .unwrap();
    let now = SystemClock.now().0;
    let one = prost::Message::encoded_len(&batch("x", now)) as u64;
    assert!(one > 800_000, "{one}");
    // Warm up (first writes, memtables, sketches) before the baseline.
    for w in 0..3 {
        let mut s = c
            .ingest
            .ingest_inferences(tokio_stream::iter(vec![batch(&format!("warm{w}"), now)]))
            .await
            .unwrap()
            .into_inner();
        s.next().await.unwrap().unwrap();
    }
    let (base_rss, _) = memory_kib(pid);

    // 48 clients, 3 rounds each of a stream of 8 batches: ~1 GB offered.
    let offered = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let exhausted = Arc::new(AtomicU64::new(0));
    let hinted = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..48 {
        let mut c = c.clone();
        let (offered, acked, exhausted, hinted) = (
            Arc::clone(&offered),
            Arc::clone(&acked),
            Arc::clone(&exhausted),
            Arc::clone(&hinted),
        );
        tasks.push(tokio::spawn(async move {
            for round in 0..3 {
                let batches: Vec<_> = (0..8)
                    .map(|b| batch(&format!("t{t}-r{round}-b{b}"), now))
                    .collect();
                offered.fetch_add(one * 8, Ordering::Relaxed);
                let r = c
                    .ingest
                    .ingest_inferences(tokio_stream::iter(batches))
                    .await;
                let mut s = match r {
                    Ok(s) => s.into_inner(),
                    Err(st) => {
                        assert_eq!(st.code(), Code::ResourceExhausted, "{st:?}");
                        exhausted.fetch_add(1, Ordering::Relaxed);
                        if st.metadata().get("retry-after-ms").is_some() {
                            hinted.fetch_add(1, Ordering::Relaxed);
                        }
                        continue;
                    }
                };
                while let Some(item) = s.next().await {
                    match item {
                        Ok(ack) => {
                            assert_eq!(ack.accepted, ROWS as u64);
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(st) => {
                            assert_eq!(st.code(), Code::ResourceExhausted, "{st:?}");
                            exhausted.fetch_add(1, Ordering::Relaxed);
                            if st.metadata().get("retry-after-ms").is_some() {
                                hinted.fetch_add(1, Ordering::Relaxed);
                            }
                            break;
                        }
                    }
                }
            }
        }));
    }
    // Sample the server's memory while the flood runs.
    let mut peak_rss = base_rss;
    while !tasks.iter().all(|t| t.is_finished()) {
        peak_rss = peak_rss.max(memory_kib(pid).0);
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the flood never ended"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (_, hwm) = memory_kib(pid);
    let offered_mb = offered.load(Ordering::Relaxed) / 1_000_000;
    let growth_mb = (hwm.max(peak_rss) - base_rss) / 1024;
    // What RocksDB keeps in its memtables is stored data (each row's pending label join),
    // bounded by RocksDB's write buffers, not a queue: counted apart.
    let memtables_mb = memtable_bytes(&server.http).await / 1_000_000;
    let (acked, exhausted, hinted) = (
        acked.load(Ordering::Relaxed),
        exhausted.load(Ordering::Relaxed),
        hinted.load(Ordering::Relaxed),
    );
    eprintln!(
        "offered {offered_mb} MB in {:?}: {acked} batches acked, {exhausted} refused ({hinted} with a hint); \
         server RSS {} MB before, peak +{growth_mb} MB, of which memtables hold {memtables_mb} MB",
        started.elapsed(),
        base_rss / 1024
    );
    assert!(exhausted > 0, "the flood was never refused");
    assert!(hinted > 0, "no refusal carried retry-after-ms");
    assert!(acked > 0, "nothing got through");
    // Loose but real: the server held a small part of what it was offered.
    assert!(offered_mb > 900, "{offered_mb}");
    assert!(
        growth_mb < 300,
        "peak RSS grew by {growth_mb} MB for {offered_mb} MB offered"
    );
    assert!(
        growth_mb.saturating_sub(memtables_mb) < 100,
        "peak RSS grew by {growth_mb} MB ({memtables_mb} MB memtables) for {offered_mb} MB offered"
    );

    // Every acknowledged batch is stored whole, and the server still answers.
    let out = c
        .query
        .query(pb::QueryRequest {
            query: "count(flood.f0) over 1h".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let table = out.table.unwrap();
    let value = table.columns.iter().position(|c| c == "value").unwrap();
    let count = match table.rows[0].cells[value].value {
        Some(pb::cell::Value::Number(x)) => x as u64,
        ref other => panic!("{other:?}"),
    };
    assert_eq!(count, (acked + 3) * ROWS as u64);
    drop(server);
}
