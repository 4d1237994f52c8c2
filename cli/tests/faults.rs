//! A storage write failure, for real: `driftdb serve` runs under a file-size limit
//! (`ulimit -f`, with SIGXFSZ ignored, so a write past the limit fails with EFBIG as on a full
//! disk — and it works as root, unlike a read-only directory). Ingest goes on until RocksDB
//! cannot append to its write-ahead log: that batch gets UNAVAILABLE with a retry hint and a
//! clean message, the batches before it stay acknowledged, reads keep working, and after a
//! restart without the limit exactly the acknowledged rows are stored — nothing half-written.

use crate::common;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use driftdb_cli::client::Client;
use driftdb_engine::model::{FeatureKind, ModelDef, Task};
use driftdb_engine::time::{Clock, SystemClock};
use driftdb_proto::v1 as pb;
use driftdb_server::convert::model_to_pb;
use tokio_stream::StreamExt;
use tonic::Code;

const ROWS: usize = 500;

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the server on `data`; with `limit_kib`, under that file-size limit.
fn start(data: &Path, limit_kib: Option<u64>) -> Server {
    let bin = env!("CARGO_BIN_EXE_driftdb");
    let serve = format!(
        "exec '{bin}' serve --insecure-no-auth --data '{}' --grpc 127.0.0.1:0 --http 127.0.0.1:0",
        data.display()
    );
    let script = match limit_kib {
        // `trap ''` makes SIGXFSZ ignored, which exec keeps: the write fails with EFBIG.
        Some(kib) => format!("trap '' XFSZ; ulimit -f {kib}; {serve}"),
        None => serve,
    };
    let mut child = Command::new("bash")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (grpc, _) = common::ready_addrs(&mut child);
    Server {
        child,
        url: format!("http://{grpc}"),
    }
}

fn model() -> ModelDef {
    ModelDef {
        id: "full".into(),
        task: Task::Binary,
        window: "15m".into(),
        grace: "5m".into(),
        max_label_delay: "30d".into(),
        segments: vec![],
        segment_cap: 64,
        features: (0..20)
            .map(|f| (format!("f{f}"), FeatureKind::Numeric))
            .collect(),
        sampling: 1.0,
        team: None,
    }
}

fn batch(seq: u64, now: i64) -> pb::InferenceBatch {
    pb::InferenceBatch {
        model_id: "full".into(),
        producer_id: "faults".into(),
        sequence: seq,
        request_ids: (0..ROWS)
            .map(|i| format!("b{seq}-{i}-{}", "x".repeat(40)))
            .collect(),
        ts_ms: vec![now; ROWS],
        model_versions: vec!["v1".into()],
        features: (0..20)
            .map(|f| pb::FeatureColumn {
                name: format!("f{f}"),
                numbers: (0..ROWS).map(|i| (i + f) as f64).collect(),
                ..Default::default()
            })
            .collect(),
        scores: vec![0.25; ROWS],
        ..Default::default()
    }
}

async fn stored_rows(c: &mut Client) -> u64 {
    let out = c
        .query
        .query(pb::QueryRequest {
            query: "rows(full.$score) over 2h".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let t = out.table.unwrap();
    let value = t.columns.iter().position(|c| c == "value").unwrap();
    match t.rows.first().map(|r| &r.cells[value].value) {
        Some(Some(pb::cell::Value::Number(x))) => *x as u64,
        None => 0,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_is_an_error_to_the_client_and_leaves_nothing_half_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let now = SystemClock.now().0 - 60_000;
    let server = start(&data, Some(2048));
    let mut c = Client::connect(&server.url).await.unwrap();
    c.models
        .create_model(pb::CreateModelRequest {
            model: Some(model_to_pb(&model(), vec![])),
        })
        .await
        .unwrap();
    let mut acked = 0u64;
    let mut failure = None;
    for seq in 1..=200u64 {
        let mut s = c
            .ingest
            .ingest_inferences(tokio_stream::iter(vec![batch(seq, now)]))
            .await
            .unwrap()
            .into_inner();
        match s.next().await.unwrap() {
            Ok(ack) => {
                assert_eq!(ack.accepted, ROWS as u64);
                acked += 1;
            }
            Err(st) => {
                failure = Some(st);
                break;
            }
        }
    }
    let st = failure.expect("200 batches fit under a 2 MiB file-size limit");
    eprintln!("{acked} batches acknowledged, then: {st:?}");
    assert!(acked > 0, "the limit left room for no batch");
    assert_eq!(st.code(), Code::Unavailable, "{st:?}");
    assert!(
        st.message().contains("nothing was written"),
        "{}",
        st.message()
    );
    assert!(
        !st.message().contains(&data.display().to_string()),
        "the message names no file: {}",
        st.message()
    );
    assert_eq!(
        st.metadata()
            .get("retry-after-ms")
            .and_then(|v| v.to_str().ok()),
        Some("1000")
    );
    // The node is still up: reads answer, and show exactly the acknowledged rows.
    assert_eq!(stored_rows(&mut c).await, acked * ROWS as u64);
    // Writes stay refused (RocksDB stops writing after a failed WAL append) with the same
    // clean error, not a crash.
    let mut s = c
        .ingest
        .ingest_inferences(tokio_stream::iter(vec![batch(1000, now)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        s.next().await.unwrap().unwrap_err().code(),
        Code::Unavailable
    );
    drop(c);
    drop(server);

    // Restarted without the limit: the acknowledged batches, whole, and nothing else.
    let server = start(&data, None);
    let mut c = Client::connect(&server.url).await.unwrap();
    let stored = stored_rows(&mut c).await;
    assert_eq!(stored, acked * ROWS as u64, "{acked} batches acknowledged");
    // The failed batch can be sent again and is applied once.
    let mut s = c
        .ingest
        .ingest_inferences(tokio_stream::iter(vec![batch(acked + 1, now)]))
        .await
        .unwrap()
        .into_inner();
    let ack = s.next().await.unwrap().unwrap();
    assert!(!ack.replayed, "the failed batch was not applied before");
    assert_eq!(ack.accepted, ROWS as u64);
    assert_eq!(stored_rows(&mut c).await, (acked + 1) * ROWS as u64);
}
