//! Bounded queues and request sizes: every gate of `node::Limits` refuses at once (or after
//! the ingest wait) with RESOURCE_EXHAUSTED / 429 and a retry hint, oversized messages and
//! bodies are refused, and a `WatchAlerts` client that never reads holds up neither rule
//! evaluation nor the other watchers. (Memory under a real flood is measured on a separate
//! process in `server/tests/overload.rs`.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use driftdb_cli::client::Client;
use driftdb_engine::time::{ManualClock, Timestamp};
use driftdb_proto::v1 as pb;
use driftdb_server::auth::AuthMode;
use driftdb_server::convert::model_to_pb;
use driftdb_server::limits::Limits;
use driftdb_server::node::Node;
use driftdb_server::rules::RulesConfig;
use driftdb_storage::StoreConfig;
use tokio_stream::StreamExt;
use tonic::Code;

use super::fixture::{batch, model, t0};

struct Small {
    node: Node,
    running: driftdb_server::serve::Running,
    client: Client,
    clock: ManualClock,
    _dir: tempfile::TempDir,
}

async fn small(limits: Limits) -> Small {
    driftdb_server::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp(t0().0 + 86_400_000));
    let rules = RulesConfig {
        tick: Duration::from_millis(20),
        ..RulesConfig::default()
    };
    let node = Node::open_with(
        dir.path(),
        StoreConfig::default(),
        rules,
        Arc::new(clock.clone()),
        AuthMode::Disabled,
    )
    .unwrap()
    .with_limits(limits);
    let running = driftdb_server::serve::start(
        node.clone(),
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let mut client = Client::connect(&format!("http://{}", running.bound.grpc))
        .await
        .unwrap();
    client
        .models
        .create_model(pb::CreateModelRequest {
            model: Some(model_to_pb(&model("m", None), vec![])),
        })
        .await
        .unwrap();
    Small {
        node,
        running,
        client,
        clock,
        _dir: dir,
    }
}

/// The outcome of a one-batch ingest stream.
async fn ingest_one(c: &mut Client, b: pb::InferenceBatch) -> Result<pb::BatchAck, tonic::Status> {
    let mut s = c
        .ingest
        .ingest_inferences(tokio_stream::iter(vec![b]))
        .await?
        .into_inner();
    s.next().await.expect("an ack or a status")
}

fn retry_hint(st: &tonic::Status) -> Option<String> {
    st.metadata()
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_gate_refuses_with_a_retry_hint() {
    let limits = Limits {
        ingest_concurrency: 1,
        ingest_streams: 2,
        ingest_idle_timeout: Duration::from_millis(300),
        ingest_memory_bytes: 64 << 10,
        max_message_bytes: 256 << 10,
        max_http_body_bytes: 64 << 10,
        http_concurrency: 2,
        watchers: 1,
        ..Limits::default()
    };
    let mut s = small(limits).await;
    let c = &mut s.client;
    assert_eq!(
        ingest_one(c, batch("m", "eu", "a", 10))
            .await
            .unwrap()
            .accepted,
        10
    );

    // Every processing slot taken: the batch waits OVERLOAD_WAIT (2 s), then is refused.
    let held = Arc::clone(&s.node.ingest_permits)
        .acquire_owned()
        .await
        .unwrap();
    let t = Instant::now();
    let st = ingest_one(c, batch("m", "eu", "b", 10)).await.unwrap_err();
    assert_eq!(st.code(), Code::ResourceExhausted, "{st:?}");
    assert_eq!(retry_hint(&st).as_deref(), Some("1000"));
    assert!(
        t.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        t.elapsed()
    );
    drop(held);

    // A batch bigger than the bytes the node holds at once is refused at once.
    let big = batch("m", "eu", "big", 5000);
    assert!(prost::Message::encoded_len(&big) > 64 << 10);
    let t = Instant::now();
    let st = ingest_one(c, big).await.unwrap_err();
    assert_eq!(st.code(), Code::ResourceExhausted, "{st:?}");
    assert!(st.message().contains("bytes"), "{st:?}");
    assert_eq!(retry_hint(&st).as_deref(), Some("1000"));
    assert!(t.elapsed() < Duration::from_millis(1500));

    // Every stream slot taken: a new stream is refused at once.
    let streams = Arc::clone(&s.node.gates.ingest_streams)
        .acquire_many_owned(2)
        .await
        .unwrap();
    let st = ingest_one(c, batch("m", "eu", "c", 10)).await.unwrap_err();
    assert_eq!(st.code(), Code::ResourceExhausted, "{st:?}");
    assert!(st.message().contains("streams"), "{st:?}");
    assert_eq!(retry_hint(&st).as_deref(), Some("1000"));
    drop(streams);

    // A stream that goes quiet is ended, and its slot freed for others.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut idle = c
        .ingest
        .ingest_inferences(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(batch("m", "eu", "idle", 1)).await.unwrap();
    assert_eq!(idle.next().await.unwrap().unwrap().accepted, 1);
    let st = idle.next().await.unwrap().unwrap_err();
    assert_eq!(st.code(), Code::DeadlineExceeded, "{st:?}");
    drop(tx);
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.node.gates.ingest_streams.available_permits() < 2 {
        assert!(Instant::now() < deadline, "the idle stream kept its slot");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // A message over the size limit is refused by the transport.
    let huge = batch("m", "eu", "huge", 20_000);
    assert!(prost::Message::encoded_len(&huge) > 256 << 10);
    let st = ingest_one(c, huge).await.unwrap_err();
    assert!(
        matches!(st.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{st:?}"
    );

    // Nothing refused was written: only the accepted batches' rows (10 + 1) are stored.
    let out = c
        .query
        .query(pb::QueryRequest {
            query: "count(m.x) from 2026-03-01T00:00:00Z to 2026-03-01T01:00:00Z".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let text = format!("{out:?}");
    assert!(text.contains("Number(11.0)"), "{text}");
    assert!(
        s.node
            .metrics
            .overloaded
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3
    );

    // One alert stream at a time here: the second is refused.
    let _first = c
        .alerts
        .watch_alerts(pb::WatchAlertsRequest::default())
        .await
        .unwrap();
    let st = c
        .alerts
        .watch_alerts(pb::WatchAlertsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::ResourceExhausted, "{st:?}");

    // HTTP: requests in flight and body size.
    let http = s.running.bound.http;
    let held = Arc::clone(&s.node.gates.http)
        .acquire_many_owned(2)
        .await
        .unwrap();
    let r = reqwest::get(format!("http://{http}/api/v1/metadata"))
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    // Health checks pass whatever the load.
    let r = reqwest::get(format!("http://{http}/healthz"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(held);
    let r = reqwest::get(format!("http://{http}/api/v1/metadata"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = reqwest::Client::new()
        .post(format!("http://{http}/api/v1/driftql"))
        .header("content-type", "application/json")
        .body(vec![b' '; 100 << 10])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    s.running.shutdown().await.unwrap();
}

/// A watcher that never reads its stream: evaluation goes on (the scheduler's window-close
/// alerts and announced events are recorded at once) and another watcher gets everything;
/// the stalled one, once it reads, gets everything too, from the durable log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_watcher_holds_up_nothing() {
    let mut s = small(Limits::default()).await;
    let c = &mut s.client;
    // Ten event rules: each announcement records ten alerts of a few hundred bytes.
    for i in 0..10 {
        c.rules
            .create_rule(pb::CreateRuleRequest {
                definition_json: format!(
                    r#"{{"id": "ev{i}", "model": "m", "kind": "event", "event": "release", "severity": "low",
                        "description": "{}"}}"#,
                    "a rule with a long description to make alerts big ".repeat(8)
                ),
            })
            .await
            .unwrap();
    }
    let mut stalled = c
        .alerts
        .watch_alerts(pb::WatchAlertsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut reader = c.clone();
    let follower = tokio::spawn(async move {
        let mut s = reader
            .alerts
            .watch_alerts(pb::WatchAlertsRequest::default())
            .await
            .unwrap()
            .into_inner();
        let mut n = 0u64;
        let deadline = Instant::now() + Duration::from_secs(60);
        while n < 2001 && Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(10), s.next()).await {
                Ok(Some(Ok(_))) => n += 1,
                _ => break,
            }
        }
        n
    });
    let t = Instant::now();
    let mut slowest = Duration::ZERO;
    for _ in 0..200 {
        s.clock.advance(60_000);
        let call = Instant::now();
        let fired = c
            .rules
            .announce_event(pb::AnnounceEventRequest {
                model: "m".into(),
                event: "release".into(),
                version: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(fired.alerts.len(), 10);
        slowest = slowest.max(call.elapsed());
    }
    // A window-close rule still runs: data in one window, the window closed by the clock.
    c.rules
        .create_rule(pb::CreateRuleRequest {
            definition_json:
                r#"{"id": "rows", "model": "m", "selector": "$score", "metric": "mean",
                "comparison": ">", "threshold": -1, "consecutive": 1, "severity": "high"}"#
                    .into(),
        })
        .await
        .unwrap();
    let now = s.node.clock.now();
    let mut b = batch("m", "eu", "late", 20);
    b.ts_ms = vec![now.0 - 60_000; 20];
    ingest_one(c, b).await.unwrap();
    s.clock.advance(30 * 60_000);
    s.node.rules.wake();
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.node.rules.log.last_seq() < 2001 {
        assert!(Instant::now() < deadline, "window-close evaluation stalled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        slowest < Duration::from_secs(2),
        "an announcement took {slowest:?} with a stalled watcher"
    );
    assert!(t.elapsed() < Duration::from_secs(60));
    assert_eq!(
        follower.await.unwrap(),
        2001,
        "the other watcher got every alert"
    );
    // The stalled watcher, reading at last, gets them all from the log.
    let mut n = 0u64;
    while n < 2001 {
        match tokio::time::timeout(Duration::from_secs(10), stalled.next()).await {
            Ok(Some(Ok(_))) => n += 1,
            other => panic!("stalled watcher stopped at {n}: {other:?}"),
        }
    }
    // The server shuts down even with a watcher that does not read.
    let _never_read = c
        .alerts
        .watch_alerts(pb::WatchAlertsRequest::default())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), s.running.shutdown())
        .await
        .expect("shutdown is not held up by a stalled watcher")
        .unwrap();
}
