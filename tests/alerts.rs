//! Rules and alerts end to end: a real server on 127.0.0.1:0 over a temp data dir, data sent
//! over gRPC, windows closed by event time or by the clock, webhooks received by a real HTTP
//! server on 127.0.0.1.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use driftdb_cli::client::Client;
use driftdb_engine::model::ModelDef;
use driftdb_engine::time::{Clock, ManualClock, Timestamp};
use driftdb_proto::v1 as pb;
use driftdb_server::auth::AuthMode;
use driftdb_server::convert::model_to_pb;
use driftdb_server::node::Node;
use driftdb_server::rules::{RulesConfig, next_window};
use driftdb_storage::StoreConfig;
use serde_json::{Value, json};
use tokio_stream::StreamExt;

pub(crate) const W: i64 = 15 * 60_000;

pub(crate) fn t(k: i64) -> Timestamp {
    // 2026-03-01T00:00:00Z + k windows.
    Timestamp(1_772_323_200_000 + k * W)
}

/// One request a receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    pub(crate) path: String,
    pub(crate) idempotency_key: String,
    pub(crate) body: Value,
}

#[derive(Debug, Default)]
struct RecvState {
    hits: Mutex<Vec<Hit>>,
    /// Answer `fail_status` to this many requests first.
    fail_first: AtomicUsize,
    fail_status: AtomicUsize,
}

/// A webhook receiver on 127.0.0.1 that records every POST.
pub(crate) struct Receiver {
    addr: SocketAddr,
    state: Arc<RecvState>,
    task: tokio::task::JoinHandle<()>,
}

async fn record(
    State(s): State<Arc<RecvState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let failing = s
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        return StatusCode::from_u16(s.fail_status.load(Ordering::SeqCst) as u16).unwrap();
    }
    s.hits.lock().unwrap().push(Hit {
        path: uri.path().to_string(),
        idempotency_key: headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    StatusCode::OK
}

impl Receiver {
    pub(crate) async fn start_on(
        addr: SocketAddr,
        fail_first: usize,
        fail_status: u16,
    ) -> Receiver {
        let state = Arc::new(RecvState::default());
        state.fail_first.store(fail_first, Ordering::SeqCst);
        state
            .fail_status
            .store(fail_status as usize, Ordering::SeqCst);
        let app = Router::new()
            .fallback(record)
            .with_state(Arc::clone(&state));
        let l = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        Receiver { addr, state, task }
    }

    /// From now on, answer 200 to every request.
    pub(crate) fn recover(&self) {
        self.state.fail_first.store(0, Ordering::SeqCst);
    }

    pub(crate) async fn start() -> Receiver {
        Receiver::start_on("127.0.0.1:0".parse().unwrap(), 0, 200).await
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().unwrap().clone()
    }

    /// Waits (bounded) until at least `n` requests arrived.
    pub(crate) async fn wait_for(&self, n: usize) -> Vec<Hit> {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.hits().len() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.hits()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) struct AlertServer {
    pub(crate) node: Node,
    pub(crate) client: Client,
    pub(crate) clock: ManualClock,
    running: Option<driftdb_server::serve::Running>,
    http: SocketAddr,
}

pub(crate) fn fast_rules() -> RulesConfig {
    let mut c = RulesConfig {
        tick: Duration::from_millis(20),
        ..RulesConfig::default()
    };
    c.retry.initial = Duration::from_millis(50);
    c.retry.max_delay = Duration::from_millis(200);
    c
}

impl AlertServer {
    pub(crate) async fn start(dir: &Path, clock: ManualClock, cfg: RulesConfig) -> AlertServer {
        driftdb_server::tls::install_crypto_provider();
        // Alerting is what is tested here; auth is covered by tests/auth.rs.
        let node = Node::open_with(
            dir,
            StoreConfig::default(),
            cfg,
            Arc::new(clock.clone()),
            AuthMode::Disabled,
        )
        .unwrap();
        AlertServer::serve(node, clock).await
    }

    /// Serves `node`, opened on `clock`.
    pub(crate) async fn serve(node: Node, clock: ManualClock) -> AlertServer {
        let running = driftdb_server::serve::start(
            node.clone(),
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        let client = Client::connect(&format!("http://{}", running.bound.grpc))
            .await
            .unwrap();
        let http = running.bound.http;
        AlertServer {
            node,
            client,
            clock,
            running: Some(running),
            http,
        }
    }

    pub(crate) async fn stop(mut self) {
        self.running.take().unwrap().shutdown().await.unwrap();
    }

    /// Registers model `m` and waits until the scheduler has placed its cursor.
    async fn create_model(&mut self) {
        let def: ModelDef = serde_json::from_value(json!({
            "id": "m", "task": "binary", "window": "15m", "grace": "1m",
            "segments": ["region"], "features": {"x": "numeric"}
        }))
        .unwrap();
        self.register(def).await;
    }

    /// Registers `def` (its id must be `m`) and waits until the scheduler has placed its
    /// cursor.
    pub(crate) async fn register(&mut self, def: ModelDef) {
        self.client
            .models
            .create_model(pb::CreateModelRequest {
                model: Some(model_to_pb(&def, vec![])),
            })
            .await
            .unwrap();
        self.node.rules.wake();
        let deadline = Instant::now() + Duration::from_secs(10);
        while next_window(&self.node.rules, "m").unwrap().is_none() {
            assert!(Instant::now() < deadline, "scheduler never saw the model");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub(crate) async fn add_rule(&mut self, rule: Value) -> pb::Rule {
        self.client
            .rules
            .create_rule(pb::CreateRuleRequest {
                definition_json: rule.to_string(),
            })
            .await
            .unwrap()
            .into_inner()
            .rule
            .unwrap()
    }

    /// Sends window `k`: `eu` rows with `x = eu`, `us` rows with `x = us`, 10 each, at the
    /// window's start + 2 minutes (so they also close window `k - 1` by event time).
    async fn send_window(&mut self, id: &str, k: i64, eu: f64, us: f64) {
        self.send_window_missing(id, k, eu, us, vec![]).await;
    }

    /// Like [`AlertServer::send_window`], with the rows in `missing` (even rows are `eu`)
    /// carrying no value of `x`.
    async fn send_window_missing(&mut self, id: &str, k: i64, eu: f64, us: f64, missing: Vec<u32>) {
        let n = 20;
        let ts = t(k).millis() + 120_000;
        let b = pb::InferenceBatch {
            model_id: "m".into(),
            request_ids: (0..n).map(|i| format!("{id}-{k}-{i}")).collect(),
            ts_ms: vec![ts; n],
            model_versions: vec!["v1".into()],
            segments: vec![pb::SegmentColumn {
                key: "region".into(),
                values: (0..n)
                    .map(|i| if i % 2 == 0 { "eu" } else { "us" }.to_string())
                    .collect(),
            }],
            features: vec![pb::FeatureColumn {
                name: "x".into(),
                numbers: (0..n).map(|i| if i % 2 == 0 { eu } else { us }).collect(),
                missing,
                ..Default::default()
            }],
            scores: vec![0.5; n],
            ..Default::default()
        };
        let mut acks = self
            .client
            .ingest
            .ingest_inferences(tokio_stream::iter(vec![b]))
            .await
            .unwrap()
            .into_inner();
        let ack = acks.next().await.unwrap().unwrap();
        assert_eq!(ack.accepted, n as u64, "{ack:?}");
    }

    /// Waits (bounded) until window `k` has been evaluated.
    async fn evaluated(&self, k: i64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if next_window(&self.node.rules, "m")
                .unwrap()
                .is_some_and(|n| n > t(k))
            {
                return;
            }
            assert!(Instant::now() < deadline, "window {k} was never evaluated");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Closes window `k` by moving the clock past its end plus grace.
    async fn close_by_clock(&mut self, k: i64) {
        self.clock.set(Timestamp(t(k + 1).millis() + 60_000));
        self.node.rules.wake();
        self.evaluated(k).await;
    }

    async fn watch(&mut self, after: u64, min: pb::Severity) -> tonic::Streaming<pb::Alert> {
        self.client
            .alerts
            .watch_alerts(pb::WatchAlertsRequest {
                after_sequence: after,
                model: "m".into(),
                min_severity: min as i32,
            })
            .await
            .unwrap()
            .into_inner()
    }

    pub(crate) async fn history(&mut self) -> Vec<pb::Alert> {
        self.client
            .alerts
            .list_alerts(pb::ListAlertsRequest {
                model: "m".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .alerts
    }
}

fn mean_rule(id: &str, hook: &str, consecutive: u32, segment: Value, severity: &str) -> Value {
    json!({"id": id, "model": "m", "selector": "x", "metric": "mean", "comparison": ">",
           "threshold": 10, "consecutive": consecutive, "segment": segment,
           "severity": severity, "actions": [{"kind": "webhook", "url": hook}]})
}

async fn next_alert(s: &mut tonic::Streaming<pb::Alert>) -> pb::Alert {
    tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .expect("an alert within 10 s")
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_windows_fire_and_resolve_with_hysteresis_per_segment() {
    let dir = tempfile::tempdir().unwrap();
    let recv = Receiver::start().await;
    let mut s = AlertServer::start(dir.path(), ManualClock::new(t(0)), fast_rules()).await;
    s.create_model().await;
    s.add_rule(mean_rule(
        "overall",
        &recv.url("/overall"),
        3,
        json!("all"),
        "high",
    ))
    .await;
    s.add_rule(mean_rule(
        "per-region",
        &recv.url("/region"),
        2,
        json!({"each": "region"}),
        "low",
    ))
    .await;
    let mut watch = s.watch(0, pb::Severity::Unspecified).await;
    // Mean of eu per window; us is always 0, so the overall mean is half of it.
    let eu = [
        10., 40., 40., 10., 40., 40., 40., 40., 10., 10., 40., 10., 10., 10.,
    ];
    for (k, v) in eu.iter().enumerate() {
        let k = k as i64;
        s.clock.set(t(k));
        s.send_window("r", k, *v, 0.0).await;
        if k > 0 {
            // The data at start + 2 minutes closed the previous window (grace 1 minute).
            s.evaluated(k - 1).await;
        }
    }
    s.close_by_clock(eu.len() as i64 - 1).await;

    // Overall: breaches at 1,2 | 4,5,6,7 → fires on 6 (3 in a row); heals 8,9, breach 10
    // resets, heals 11,12,13 → resolves on 13. eu: fires on 2, resolves on 9 (2 healthy);
    // the single breach on 10 does not fire again. us never breaches.
    let want = [
        ("per-region", "firing", 2, "region=eu"),
        ("overall", "firing", 6, "all"),
        ("per-region", "resolved", 9, "region=eu"),
        ("overall", "resolved", 13, "all"),
    ];
    for (i, (rule, state, k, segment)) in want.iter().enumerate() {
        let a = next_alert(&mut watch).await;
        assert_eq!(a.sequence, i as u64 + 1);
        assert_eq!(
            (a.rule_id.as_str(), a.state.as_str(), a.window_start_ms),
            (*rule, *state, t(*k).millis()),
            "{a:?}"
        );
        let seg = a.segment.iter().map(|(k, v)| format!("{k}={v}")).next();
        assert_eq!(seg.as_deref().unwrap_or("all"), *segment);
    }
    let hits = recv.wait_for(4).await;
    assert_eq!(hits.len(), 4, "{hits:?}");
    let mut got: Vec<(String, String, String)> = hits
        .iter()
        .map(|h| {
            (
                h.path.clone(),
                h.body["status"].as_str().unwrap().to_string(),
                h.body["window_start"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    let mut expect = vec![
        ("/overall".into(), "firing".into(), t(6).to_rfc3339()),
        ("/overall".into(), "resolved".into(), t(13).to_rfc3339()),
        ("/region".into(), "firing".into(), t(2).to_rfc3339()),
        ("/region".into(), "resolved".into(), t(9).to_rfc3339()),
    ];
    expect.sort();
    assert_eq!(got, expect);
    for h in &hits {
        assert_eq!(h.body["schema"], "driftdb.alert.v1");
        assert_eq!(h.body["event_id"].as_str().unwrap(), h.idempotency_key);
    }
    let resolved = hits
        .iter()
        .find(|h| h.path == "/overall" && h.body["status"] == "resolved")
        .unwrap();
    assert_eq!(resolved.body["value"], 5.0);
    assert_eq!(resolved.body["threshold"], 10.0);

    // History: two episodes, each with its firing and resolution time and delivered actions.
    // A delivery is recorded as delivered just after the receiver answers: wait (bounded) for
    // the last record to be written.
    let deadline = Instant::now() + Duration::from_secs(10);
    let hist = loop {
        let hist = s.history().await;
        let all_delivered = hist.iter().all(|a| a.actions.iter().all(|x| x.delivered));
        if all_delivered || Instant::now() > deadline {
            break hist;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(hist.len(), 2, "{hist:?}");
    let overall = hist.iter().find(|a| a.rule_id == "overall").unwrap();
    assert_eq!(overall.state, "resolved");
    assert_eq!(
        overall.fired_at_ms,
        t(7).millis(),
        "fired at the end of window 6"
    );
    assert_eq!(overall.resolved_at_ms, t(14).millis());
    assert!(
        overall
            .actions
            .iter()
            .all(|a| a.delivered && a.attempts == 1)
    );
    assert_eq!(
        overall.actions.len(),
        2,
        "one delivery when firing, one when resolved"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_payload_shape_reaches_its_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let recv = Receiver::start().await;
    let mut s = AlertServer::start(dir.path(), ManualClock::new(t(0)), fast_rules()).await;
    s.create_model().await;
    s.add_rule(json!({
        "id": "all-actions", "model": "m", "selector": "x", "metric": "mean",
        "comparison": ">", "threshold": 10, "consecutive": 1, "severity": "critical",
        "description": "runbook: https://wiki.example/x",
        "actions": [
            {"kind": "pagerduty", "routing_key": "RK123", "url": recv.url("/pd")},
            {"kind": "slack", "url": recv.url("/slack")},
            {"kind": "jira", "url": recv.url("/jira"), "project": "ML"},
            {"kind": "webhook", "url": recv.url("/generic")},
            {"kind": "retrain", "url": recv.url("/retrain")},
            {"kind": "route_to_backup", "url": recv.url("/backup"), "backup_version": "v0"}
        ]
    }))
    .await;
    s.clock.set(t(0));
    s.send_window("p", 0, 50.0, 50.0).await;
    s.close_by_clock(0).await;
    let hits = recv.wait_for(6).await;
    assert_eq!(hits.len(), 6, "{hits:?}");
    let by = |p: &str| hits.iter().find(|h| h.path == p).unwrap().body.clone();
    let pd = by("/pd");
    assert_eq!(pd["routing_key"], "RK123");
    assert_eq!(pd["event_action"], "trigger");
    assert_eq!(pd["payload"]["severity"], "critical");
    assert_eq!(pd["payload"]["source"], "driftdb/m@v1");
    assert!(
        pd["dedup_key"]
            .as_str()
            .unwrap()
            .starts_with("driftdb/all-actions/")
    );
    let slack = by("/slack");
    assert!(
        slack["text"]
            .as_str()
            .unwrap()
            .contains("mean of x on m@v1")
    );
    assert_eq!(slack["blocks"][0]["type"], "header");
    let jira = by("/jira");
    assert_eq!(jira["fields"]["project"]["key"], "ML");
    assert_eq!(jira["fields"]["issuetype"]["name"], "Task");
    assert!(
        jira["fields"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("[driftdb]")
    );
    let generic = by("/generic");
    assert_eq!(generic["value"], 50.0);
    assert_eq!(generic["description"], "runbook: https://wiki.example/x");
    assert_eq!(by("/retrain")["action"], "retrain");
    let backup = by("/backup");
    assert_eq!(backup["action"], "route_to_backup");
    assert_eq!(backup["backup_version"], "v0");

    // Resolution: PagerDuty, Slack and the generic webhook are told; Jira, retrain and
    // route-to-backup act on firing only.
    s.clock.set(t(1));
    s.send_window("p", 1, 0.0, 0.0).await;
    s.close_by_clock(1).await;
    let hits = recv.wait_for(9).await;
    assert_eq!(hits.len(), 9, "{hits:?}");
    let resolves: Vec<&Hit> = hits[6..].iter().collect();
    let mut paths: Vec<&str> = resolves.iter().map(|h| h.path.as_str()).collect();
    paths.sort();
    assert_eq!(paths, ["/generic", "/pd", "/slack"]);
    let pd = &resolves.iter().find(|h| h.path == "/pd").unwrap().body;
    assert_eq!(pd["event_action"], "resolve");
    assert_eq!(pd["dedup_key"], by("/pd")["dedup_key"]);

    // The routing key never comes back from the API.
    let rules = s
        .client
        .rules
        .list_rules(pb::ListRulesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .rules;
    assert!(!rules[0].definition_json.contains("RK123"));
    assert!(rules[0].definition_json.contains("***"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_retry_while_the_receiver_fails_and_dead_letter_after_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    // 503 three times, then 200.
    let flaky = Receiver::start_on("127.0.0.1:0".parse().unwrap(), 3, 503).await;
    // 500 forever: dead-lettered after the deadline. 404: refused at once.
    let broken = Receiver::start_on("127.0.0.1:0".parse().unwrap(), usize::MAX, 500).await;
    let gone = Receiver::start_on("127.0.0.1:0".parse().unwrap(), usize::MAX, 404).await;
    let mut cfg = fast_rules();
    // The flaky receiver's 4th attempt comes ≈ 350 ms after the first (backoff 50, 100,
    // 200 ms): the deadline leaves it a wide margin on a loaded machine (at 600 ms, a CI run
    // on two busy cores once dead-lettered it first).
    cfg.retry.dead_letter_after = Duration::from_millis(2_000);
    let mut s = AlertServer::start(dir.path(), ManualClock::new(t(0)), cfg).await;
    s.create_model().await;
    s.add_rule(json!({
        "id": "r", "model": "m", "selector": "x", "metric": "mean", "comparison": ">",
        "threshold": 10, "consecutive": 1, "severity": "high",
        "actions": [{"kind": "webhook", "url": flaky.url("/a")},
                    {"kind": "webhook", "url": broken.url("/b")},
                    {"kind": "webhook", "url": gone.url("/c")}]
    }))
    .await;
    s.clock.set(t(0));
    s.send_window("d", 0, 50.0, 50.0).await;
    s.close_by_clock(0).await;
    let hits = flaky.wait_for(1).await;
    assert_eq!(hits.len(), 1);
    // Wait until the other two are dead-lettered.
    let deadline = Instant::now() + Duration::from_secs(15);
    let alert = loop {
        let a = s.history().await.remove(0);
        if a.actions.iter().filter(|r| r.dead_lettered).count() == 2 {
            break a;
        }
        assert!(Instant::now() < deadline, "not dead-lettered: {a:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let r = |i: usize| &alert.actions[i];
    assert!(r(0).delivered && r(0).attempts == 4, "{:?}", r(0));
    assert!(
        r(1).dead_lettered && !r(1).delivered && r(1).attempts >= 3,
        "{:?}",
        r(1)
    );
    assert_eq!(r(1).last_error, "HTTP 500");
    assert!(
        r(2).dead_lettered && r(2).attempts == 1,
        "a 404 is not retried: {:?}",
        r(2)
    );
    assert_eq!(r(2).last_error, "HTTP 404");
    let dead = driftdb_server::rules::dead_letters(&s.node.rules).unwrap();
    assert_eq!(dead.len(), 2);
    assert_eq!(s.node.rules.metrics.outbox_depth.load(Ordering::Relaxed), 0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_delivery_loses_no_alert_and_keeps_rule_state() {
    let dir = tempfile::tempdir().unwrap();
    // The receiver is "down": it answers 503 to everything until it is told to recover. It
    // stays bound for the whole test, so no other test can take its port in between (a freed
    // port given to a parallel test's server once turned the retries into a 404 dead letter).
    let recv = Receiver::start_on("127.0.0.1:0".parse().unwrap(), usize::MAX, 503).await;
    let hook = recv.url("/late");
    let clock = ManualClock::new(t(0));
    let mut s = AlertServer::start(dir.path(), clock.clone(), fast_rules()).await;
    s.create_model().await;
    s.add_rule(mean_rule("r", &hook, 1, json!("all"), "critical"))
        .await;
    s.add_rule(mean_rule("slow", &hook, 3, json!("all"), "low"))
        .await;
    s.clock.set(t(0));
    s.send_window("k", 0, 50.0, 50.0).await;
    s.close_by_clock(0).await;
    s.send_window("k", 1, 50.0, 50.0).await;
    s.close_by_clock(1).await;
    // `r` fired on window 0; `slow` has seen 2 of its 3 breaches. The receiver is down.
    let hist = s.history().await;
    assert_eq!(hist.len(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a = s.history().await.remove(0);
    assert!(
        !a.actions[0].delivered && a.actions[0].attempts >= 1,
        "{a:?}"
    );
    assert!(recv.hits().is_empty());
    s.stop().await;

    // Restart on the same data, then bring the receiver up.
    let mut s = AlertServer::start(dir.path(), clock.clone(), fast_rules()).await;
    recv.recover();
    let hits = recv.wait_for(1).await;
    assert_eq!(hits.len(), 1, "the outbox entry survived the restart");
    assert_eq!(hits[0].body["rule_id"], "r");
    // The third breach after the restart fires `slow`: its state survived too.
    s.clock.set(t(2));
    s.send_window("k", 2, 50.0, 50.0).await;
    s.close_by_clock(2).await;
    let hits = recv.wait_for(2).await;
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert_eq!(hits[1].body["rule_id"], "slow");
    assert_eq!(hits[1].body["window_start"], t(2).to_rfc3339());
    // Nothing fired twice: windows evaluated before the restart were not evaluated again.
    let hist = s.history().await;
    assert_eq!(hist.len(), 2, "{hist:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_alerts_resumes_after_a_sequence_and_filters_by_severity() {
    let dir = tempfile::tempdir().unwrap();
    let recv = Receiver::start().await;
    let mut s = AlertServer::start(dir.path(), ManualClock::new(t(0)), fast_rules()).await;
    s.create_model().await;
    s.add_rule(mean_rule("hi", &recv.url("/h"), 1, json!("all"), "high"))
        .await;
    s.add_rule(mean_rule(
        "lo",
        &recv.url("/l"),
        1,
        json!({"each": "region"}),
        "low",
    ))
    .await;
    // Window 0 breaches everywhere: hi fires (all), lo fires twice (eu, us).
    s.clock.set(t(0));
    s.send_window("w", 0, 50.0, 50.0).await;
    s.close_by_clock(0).await;
    let all: Vec<pb::Alert> = {
        let mut w = s.watch(0, pb::Severity::Unspecified).await;
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(next_alert(&mut w).await);
        }
        v
    };
    assert_eq!(
        all.iter().map(|a| a.sequence).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    // Resume after 1: 2 and 3, then the live ones.
    let mut resumed = s.watch(1, pb::Severity::Unspecified).await;
    assert_eq!(next_alert(&mut resumed).await.sequence, 2);
    assert_eq!(next_alert(&mut resumed).await.sequence, 3);
    let mut high_only = s.watch(0, pb::Severity::High).await;
    let first_high = next_alert(&mut high_only).await;
    assert_eq!(first_high.rule_id, "hi");
    // Window 1 heals everything: three resolutions, live.
    s.clock.set(t(1));
    s.send_window("w", 1, 0.0, 0.0).await;
    s.close_by_clock(1).await;
    let live: Vec<u64> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            let a = next_alert(&mut resumed).await;
            assert_eq!(a.state, "resolved");
            v.push(a.sequence);
        }
        v
    };
    assert_eq!(live, [4, 5, 6]);
    let next_high = next_alert(&mut high_only).await;
    assert_eq!(
        (next_high.rule_id.as_str(), next_high.state.as_str()),
        ("hi", "resolved")
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_rules_are_refused_with_the_reason_and_rules_are_versioned() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = AlertServer::start(dir.path(), ManualClock::new(t(0)), fast_rules()).await;
    s.create_model().await;
    let bad = [
        (
            json!({"id": "a", "model": "m", "selector": "x", "metric": "psi", "comparison": ">",
                "threshold": 0.2, "severity": "urgent"}),
            "severity",
        ),
        (
            json!({"id": "a", "model": "m", "selector": "x", "metric": "nope", "comparison": ">",
                "threshold": 0.2, "severity": "high"}),
            "metric",
        ),
        (
            json!({"id": "a", "model": "m", "selector": "x", "metric": "psi", "comparison": ">",
                "threshold": {"relative": 0.1}, "severity": "high"}),
            "threshold",
        ),
        (
            json!({"id": "a", "model": "m", "selector": "y", "metric": "psi", "comparison": ">",
                "threshold": 0.2, "severity": "high"}),
            "selector",
        ),
        (
            json!({"id": "a", "model": "m", "selector": "x", "metric": "psi", "comparison": ">",
                "threshold": 0.2, "severity": "high",
                "actions": [{"kind": "webhook", "url": "ftp://x"}]}),
            "actions[0].url",
        ),
    ];
    for (rule, field) in bad {
        let e = s
            .client
            .rules
            .create_rule(pb::CreateRuleRequest {
                definition_json: rule.to_string(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{rule}");
        assert!(
            e.message().starts_with(&format!("invalid rule: {field}:")),
            "{field}: {}",
            e.message()
        );
    }
    let e = s
        .client
        .rules
        .create_rule(pb::CreateRuleRequest {
            definition_json: json!({"id": "a", "model": "nosuch", "selector": "x",
                "metric": "psi", "comparison": ">", "threshold": 0.2, "severity": "high"})
            .to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);

    // HTTP: create through the model's route, a mismatch and an invalid rule are 400s.
    let http = reqwest::Client::new();
    let url = format!("http://{}/models/m/alerts", s.http);
    let ok = http
        .post(&url)
        .body(
            json!({"id": "h", "selector": "x", "metric": "mean", "comparison": ">",
                     "threshold": 1, "severity": "low"})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 201);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(
        (body["id"].as_str(), body["version"].as_u64()),
        (Some("h"), Some(1))
    );
    let mismatch = http
        .post(&url)
        .body(
            json!({"id": "h", "model": "other", "selector": "x", "metric": "mean",
                     "comparison": ">", "threshold": 1, "severity": "low"})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(mismatch.status(), 400);
    let invalid = http
        .post(&url)
        .body(
            json!({"id": "h", "selector": "x", "metric": "mean", "comparison": "~",
                     "threshold": 1, "severity": "low"})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), 400);
    let err: Value = invalid.json().await.unwrap();
    assert!(
        err["error"].as_str().unwrap().contains("comparison"),
        "{err}"
    );

    // A replacement is version 2; the same definition again changes nothing.
    let v2 = s
        .add_rule(
            json!({"id": "h", "model": "m", "selector": "x", "metric": "mean",
                         "comparison": ">", "threshold": 2, "severity": "low"}),
        )
        .await;
    assert_eq!(v2.version, 2);
    let again = s
        .add_rule(
            json!({"id": "h", "model": "m", "selector": "x", "metric": "mean",
                         "comparison": ">", "threshold": 2, "severity": "low"}),
        )
        .await;
    assert_eq!(again.version, 2);
    let versions: Value = http
        .get(format!("http://{}/rules/h", s.http))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(versions["versions"].as_array().unwrap().len(), 2);
    assert_eq!(versions["versions"][0]["rule"]["threshold"], 1.0);
    s.client
        .rules
        .delete_rule(pb::DeleteRuleRequest { id: "h".into() })
        .await
        .unwrap();
    let gone = s
        .client
        .rules
        .delete_rule(pb::DeleteRuleRequest { id: "h".into() })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
    // Stored rules survive a restart; deleted ones stay deleted, and ids continue their count.
    s.add_rule(mean_rule(
        "keep",
        "http://127.0.0.1:9/x",
        3,
        json!("all"),
        "low",
    ))
    .await;
    s.stop().await;
    let mut s = AlertServer::start(dir.path(), ManualClock::new(t(0)), fast_rules()).await;
    let ids: Vec<String> = s
        .client
        .rules
        .list_rules(pb::ListRulesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .rules
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, ["keep"]);
    let v4 = s
        .add_rule(
            json!({"id": "h", "model": "m", "selector": "x", "metric": "mean",
                         "comparison": ">", "threshold": 3, "severity": "low"}),
        )
        .await;
    assert_eq!(v4.version, 4, "1, 2, deleted as 3, re-created as 4");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_rules_fire_on_announcements_and_freshness_rules_on_age() {
    let dir = tempfile::tempdir().unwrap();
    let recv = Receiver::start().await;
    let mut s = AlertServer::start(dir.path(), ManualClock::new(t(0)), fast_rules()).await;
    s.create_model().await;
    s.add_rule(
        json!({"id": "on-release", "model": "*", "kind": "event", "event": "release",
                      "severity": "medium", "cooldown": "1h",
                      "actions": [{"kind": "retrain", "url": recv.url("/retrain")}]}),
    )
    .await;
    let announce = |version: &str| pb::AnnounceEventRequest {
        model: "m".into(),
        event: "release".into(),
        version: version.into(),
    };
    let first = s
        .client
        .rules
        .announce_event(announce("v3"))
        .await
        .unwrap()
        .into_inner()
        .alerts;
    assert_eq!(first.len(), 1);
    assert_eq!(
        (first[0].event.as_str(), first[0].version.as_str()),
        ("release", "v3")
    );
    // Within the cooldown: nothing.
    s.clock.set(Timestamp(t(0).millis() + 30 * 60_000));
    let second = s
        .client
        .rules
        .announce_event(announce("v3"))
        .await
        .unwrap()
        .into_inner()
        .alerts;
    assert!(second.is_empty());
    let hits = recv.wait_for(1).await;
    assert_eq!(hits[0].body["action"], "retrain");
    assert_eq!(hits[0].body["version"], "v3");

    // Freshness: a reference profiled at t(0) is 2 days old two days later.
    let mut chunks = vec![pb::ReferenceChunk {
        chunk: Some(pb::reference_chunk::Chunk::Header(pb::ReferenceHeader {
            model_id: "m".into(),
            model_version: "v1".into(),
            replace: false,
        })),
    }];
    chunks.push(pb::ReferenceChunk {
        chunk: Some(pb::reference_chunk::Chunk::Rows(pb::InferenceBatch {
            model_id: "m".into(),
            request_ids: (0..10).map(|i| format!("ref{i}")).collect(),
            ts_ms: vec![t(-10).millis(); 10],
            model_versions: vec!["v1".into()],
            segments: vec![pb::SegmentColumn {
                key: "region".into(),
                values: vec!["eu".into(); 10],
            }],
            features: vec![pb::FeatureColumn {
                name: "x".into(),
                numbers: (0..10).map(f64::from).collect(),
                ..Default::default()
            }],
            scores: vec![0.5; 10],
            labels: vec![1.0; 10],
            ..Default::default()
        })),
    });
    s.client
        .models
        .upload_reference(tokio_stream::iter(chunks))
        .await
        .unwrap();
    s.add_rule(
        json!({"id": "stale", "model": "m", "kind": "freshness", "retrain_every": "1d",
                      "severity": "low",
                      "actions": [{"kind": "webhook", "url": recv.url("/stale")}]}),
    )
    .await;
    // Windows one day and more after the reference was made: the first close fires.
    let k = 4 * 24 + 1;
    s.clock.set(t(k));
    s.send_window("f", k, 1.0, 1.0).await;
    s.close_by_clock(k).await;
    let hits = recv.wait_for(2).await;
    let stale = hits
        .iter()
        .find(|h| h.path == "/stale")
        .expect("freshness alert");
    assert_eq!(stale.body["rule_kind"], "freshness");
    assert_eq!(stale.body["version"], "v1");
    assert!(stale.body["value"].as_f64().unwrap() >= 1.0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_evaluation_and_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let recv = Receiver::start().await;
    let mut s = AlertServer::start(dir.path(), ManualClock::new(t(0)), fast_rules()).await;
    s.create_model().await;
    s.add_rule(mean_rule("r", &recv.url("/r"), 1, json!("all"), "high"))
        .await;
    s.clock.set(t(0));
    s.send_window("m", 0, 50.0, 50.0).await;
    s.close_by_clock(0).await;
    recv.wait_for(1).await;
    let text = reqwest::get(format!("http://{}/metrics", s.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or_else(|| panic!("{name} missing in {text}"))
            .parse()
            .unwrap()
    };
    assert_eq!(value("driftdb_alerts_fired_total"), 1.0);
    assert!(value("driftdb_rule_checks_total") >= 1.0);
    assert!(value("driftdb_rule_windows_evaluated_total") >= 1.0);
    assert!(value("driftdb_rule_evaluation_seconds_total") > 0.0);
    // Clock at window 1's start + 1 minute: window 0 closed and evaluated, window 1 open.
    assert_eq!(value("driftdb_open_windows"), 1.0);
    assert_eq!(value("driftdb_rule_windows_pending"), 0.0);
    // The maintenance task rolled up to `rollup_after` (1 h) before the clock it started with
    // (its first pass runs at start; wait for it, bounded).
    let gauge = "driftdb_daily_rollup_until_seconds ";
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut metrics = text.clone();
    while !metrics.contains(gauge) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        metrics = reqwest::get(format!("http://{}/metrics", s.http))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    }
    let rolled: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(gauge))
        .unwrap_or_else(|| panic!("no rollup gauge in {metrics}"))
        .parse()
        .unwrap();
    assert!(
        rolled > 0.0 && rolled <= (s.clock.now().millis() / 1000 - 3600) as f64,
        "{rolled}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while value_now(&s).await != 1.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(value_now(&s).await, 1.0);
    s.stop().await;
}

async fn value_now(s: &AlertServer) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", s.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with("driftdb_webhook_delivered_total "))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap()
}

/// POSTs JSON to the node's HTTP API; the status and the JSON answer.
async fn http_post(s: &AlertServer, path: &str, body: &Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("http://{}{path}", s.http))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn http_call(s: &AlertServer, method: reqwest::Method, path: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .request(method, format!("http://{}{path}", s.http))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Waits (bounded) until every action of every episode in the history is delivered.
pub(crate) async fn settled_history(s: &mut AlertServer) -> Vec<pb::Alert> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let hist = s.history().await;
        let done = hist.iter().all(|a| a.actions.iter().all(|x| x.delivered));
        if done || Instant::now() > deadline {
            return hist;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_records_alerts_without_delivering_them_until_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let recv = Receiver::start().await;
    let clock = ManualClock::new(t(0));
    let mut s = AlertServer::start(dir.path(), clock.clone(), fast_rules()).await;
    s.create_model().await;
    // The overall mean over 20 rows fires at min_n 20; the same rule per region (10 rows
    // each) at min_n 11 never judges a window.
    let mut overall = mean_rule("overall", &recv.url("/overall"), 1, json!("all"), "high");
    overall["min_n"] = json!(20);
    s.add_rule(overall).await;
    let mut thin = mean_rule(
        "thin",
        &recv.url("/thin"),
        1,
        json!({"each": "region"}),
        "low",
    );
    thin["min_n"] = json!(11);
    s.add_rule(thin).await;

    // Refused silences name the field.
    let (code, body) = http_post(
        &s,
        "/silences",
        &json!({"matchers": {"rule": "overall"}, "duration": "1h",
                "created_by": "alice", "comment": "x"}),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body.to_string().contains("matchers.model: required"),
        "{body}"
    );
    // Silence model m from now (window 0) to the start of window 4.
    let (code, body) = http_post(
        &s,
        "/silences",
        &json!({"matchers": {"model": "m", "severity": "high"}, "ends_at": t(4).to_rfc3339(),
                "created_by": "alice", "comment": "planned retraining"}),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["id"], "s-1");
    assert_eq!(body["state"], "active");
    assert_eq!(body["starts_at"], t(0).to_rfc3339());
    // A silence that never matches (another model), ended early over gRPC.
    let other = s
        .client
        .rules
        .create_silence(pb::CreateSilenceRequest {
            definition_json: json!({"matchers": {"model": "elsewhere"}, "duration": "1d",
                                    "created_by": "bob", "comment": "unrelated"})
            .to_string(),
        })
        .await
        .unwrap()
        .into_inner()
        .silence
        .unwrap();
    assert_eq!((other.id.as_str(), other.state.as_str()), ("s-2", "active"));
    let ended = s
        .client
        .rules
        .expire_silence(pb::ExpireSilenceRequest { id: "s-2".into() })
        .await
        .unwrap()
        .into_inner()
        .silence
        .unwrap();
    assert_eq!((ended.state.as_str(), ended.version), ("expired", 2));
    let (code, _) = http_call(&s, reqwest::Method::DELETE, "/silences/s-9").await;
    assert_eq!(code, 404);

    let mut watch = s.watch(0, pb::Severity::Unspecified).await;
    // Overall mean: 20 (breach), 5, 20, 5 inside the silence; 20, 5 after it ended.
    let eu = [40., 10., 40., 10., 40., 10.];
    for (k, v) in eu.iter().enumerate() {
        let k = k as i64;
        s.clock.set(t(k));
        s.send_window("s", k, *v, 0.0).await;
        s.close_by_clock(k).await;
    }
    let mut got = Vec::new();
    for _ in 0..6 {
        let a = next_alert(&mut watch).await;
        got.push((
            a.state.clone(),
            (a.window_start_ms - t(0).millis()) / W,
            a.suppressed.clone(),
        ));
    }
    let muted = |why: &str| why.to_string();
    assert_eq!(
        got,
        vec![
            ("firing".into(), 0, muted("silenced by s-1")),
            (
                "resolved".into(),
                1,
                muted("its firing was not delivered (silenced by s-1)")
            ),
            ("firing".into(), 2, muted("silenced by s-1")),
            (
                "resolved".into(),
                3,
                muted("its firing was not delivered (silenced by s-1)")
            ),
            ("firing".into(), 4, String::new()),
            ("resolved".into(), 5, String::new()),
        ]
    );
    // Only the firing and resolution after the silence ended reached the receiver.
    let hits = recv.wait_for(2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let hits_now = recv.hits();
    assert_eq!(hits_now.len(), 2, "{hits:?}");
    let seen: Vec<(String, String, String)> = hits_now
        .iter()
        .map(|h| {
            (
                h.path.clone(),
                h.body["status"].as_str().unwrap().to_string(),
                h.body["window_start"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("/overall".into(), "firing".into(), t(4).to_rfc3339()),
            ("/overall".into(), "resolved".into(), t(5).to_rfc3339()),
        ]
    );
    // History keeps all three episodes; the silenced ones have no action.
    let hist = settled_history(&mut s).await;
    assert_eq!(hist.len(), 3, "{hist:?}");
    assert!(
        hist.iter().all(|a| a.rule_id == "overall"),
        "thin never fired"
    );
    let silenced: Vec<_> = hist.iter().filter(|a| !a.suppressed.is_empty()).collect();
    assert_eq!(silenced.len(), 2);
    assert!(silenced.iter().all(|a| a.actions.is_empty()));
    // The listing: nothing pending or active now; both with ?expired=true.
    let (_, now_list) = http_call(&s, reqwest::Method::GET, "/silences").await;
    assert_eq!(now_list["silences"], json!([]));
    let (_, all) = http_call(&s, reqwest::Method::GET, "/silences?expired=true").await;
    let states: Vec<(&str, &str)> = all["silences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["id"].as_str().unwrap(), v["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, vec![("s-1", "expired"), ("s-2", "expired")]);
    let (_, one) = http_call(&s, reqwest::Method::GET, "/silences/s-2").await;
    assert_eq!(one["versions"].as_array().unwrap().len(), 2, "{one}");
    assert_eq!(one["silence"]["comment"], "unrelated");
    s.stop().await;

    // Silences are durable: a restarted node lists the same ones, and ids continue.
    let mut s = AlertServer::start(dir.path(), clock.clone(), fast_rules()).await;
    let listed = s
        .client
        .rules
        .list_silences(pb::ListSilencesRequest {
            include_expired: true,
        })
        .await
        .unwrap()
        .into_inner()
        .silences;
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].created_by, "alice");
    assert_eq!(
        listed[0].matchers.get("severity").map(String::as_str),
        Some("high")
    );
    let (code, body) = http_post(
        &s,
        "/silences",
        &json!({"matchers": {"model": "m"}, "duration": "10m",
                "created_by": "carol", "comment": "after restart"}),
    )
    .await;
    assert_eq!((code, body["id"].as_str()), (201, Some("s-3")), "{body}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firing_missing_rate_rule_inhibits_the_drift_alerts_of_its_segment() {
    let dir = tempfile::tempdir().unwrap();
    let recv = Receiver::start().await;
    let mut s = AlertServer::start(dir.path(), ManualClock::new(t(0)), fast_rules()).await;
    s.create_model().await;
    s.add_rule(json!({"id": "missing-x", "model": "m", "selector": "x",
                      "metric": "missing_rate", "comparison": ">", "threshold": 0.2,
                      "consecutive": 1, "segment": {"each": "region"}, "severity": "critical",
                      "inhibits": ["drift-*"],
                      "actions": [{"kind": "webhook", "url": recv.url("/missing")}]}))
        .await;
    s.add_rule(mean_rule(
        "drift-mean",
        &recv.url("/drift"),
        1,
        json!({"each": "region"}),
        "high",
    ))
    .await;
    // Window 0: half of eu's values are missing and the rest drifted (40 > 10); us is fine.
    // Window 1: eu heals. Window 2: both regions drift with no value missing. Window 3: heals.
    let plan: [(f64, f64, Vec<u32>); 4] = [
        (40., 0., vec![0, 4, 8, 12, 16]),
        (0., 0., vec![]),
        (40., 40., vec![]),
        (0., 0., vec![]),
    ];
    for (k, (eu, us, missing)) in plan.into_iter().enumerate() {
        let k = k as i64;
        s.clock.set(t(k));
        s.send_window_missing("i", k, eu, us, missing).await;
        s.close_by_clock(k).await;
    }
    let hits = recv.wait_for(6).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut seen: Vec<(String, String, i64, String)> = recv
        .hits()
        .iter()
        .map(|h| {
            let start = Timestamp::parse_rfc3339(h.body["window_start"].as_str().unwrap())
                .unwrap()
                .millis();
            (
                h.path.clone(),
                h.body["status"].as_str().unwrap().to_string(),
                (start - t(0).millis()) / W,
                h.body["segment"].to_string(),
            )
        })
        .collect();
    seen.sort();
    let region = |r: &str| json!(format!("region={r}")).to_string();
    assert_eq!(
        seen,
        vec![
            ("/drift".into(), "firing".into(), 2, region("eu")),
            ("/drift".into(), "firing".into(), 2, region("us")),
            ("/drift".into(), "resolved".into(), 3, region("eu")),
            ("/drift".into(), "resolved".into(), 3, region("us")),
            ("/missing".into(), "firing".into(), 0, region("eu")),
            ("/missing".into(), "resolved".into(), 1, region("eu")),
        ],
        "{hits:?}"
    );
    // The inhibited episode is in the history, with the reason and no action.
    let hist = settled_history(&mut s).await;
    let inhibited: Vec<_> = hist.iter().filter(|a| !a.suppressed.is_empty()).collect();
    assert_eq!(inhibited.len(), 1, "{hist:?}");
    let a = inhibited[0];
    assert_eq!(a.rule_id, "drift-mean");
    assert_eq!(a.window_start_ms, t(0).millis());
    assert_eq!(a.suppressed, "inhibited by rule missing-x (region=eu)");
    assert!(a.actions.is_empty());
    assert_eq!(
        hist.len(),
        4,
        "missing eu, drift eu twice, drift us: {hist:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firing_is_acknowledged_with_who_and_why_and_the_history_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let recv = Receiver::start().await;
    let clock = ManualClock::new(t(0));
    let mut s = AlertServer::start(dir.path(), clock.clone(), fast_rules()).await;
    s.create_model().await;
    s.add_rule(mean_rule("r", &recv.url("/r"), 1, json!("all"), "high"))
        .await;
    for (k, eu) in [(0, 40.0), (1, 10.0)] {
        s.clock.set(t(k));
        s.send_window("a", k, eu, 0.0).await;
        s.close_by_clock(k).await;
    }
    // Sequence 1 fired on window 0, sequence 2 resolved it on window 1.
    let ack = |sequence: u64, by: &str, comment: &str| pb::AcknowledgeAlertRequest {
        sequence,
        by: by.into(),
        comment: comment.into(),
    };
    let a = s
        .client
        .alerts
        .acknowledge_alert(ack(1, "alice", "looking into the feed"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            a.state.as_str(),
            a.acknowledged_by.as_str(),
            a.ack_comment.as_str()
        ),
        ("firing", "alice", "looking into the feed")
    );
    assert_eq!(a.acknowledged_at_ms, s.clock.now().millis());
    let err = s
        .client
        .alerts
        .acknowledge_alert(ack(2, "alice", ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("is a resolution"), "{err:?}");
    let err = s
        .client
        .alerts
        .acknowledge_alert(ack(99, "alice", ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = s
        .client
        .alerts
        .acknowledge_alert(ack(1, " ", ""))
        .await
        .unwrap_err();
    assert!(err.message().starts_with("by: must be"), "{err:?}");
    // Over HTTP: a bad body is a 400; a second acknowledgement replaces the first.
    let (code, body) = http_post(&s, "/alerts/1/ack", &json!({"who": "bob"})).await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = http_post(&s, "/alerts/x/ack", &json!({"by": "bob"})).await;
    assert_eq!(code, 400, "{body}");
    s.clock.advance(60_000);
    let (code, body) = http_post(
        &s,
        "/alerts/1/ack",
        &json!({"by": "bob", "comment": "ticket ML-7"}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["ack"]["by"], "bob");
    assert_eq!(body["ack"]["at_ms"], s.clock.now().millis());
    // The episode (resolved by now) carries its firing's acknowledgement, across a restart.
    s.stop().await;
    let mut s = AlertServer::start(dir.path(), clock.clone(), fast_rules()).await;
    let hist = s.history().await;
    assert_eq!(hist.len(), 1, "{hist:?}");
    assert_eq!(
        (
            hist[0].state.as_str(),
            hist[0].acknowledged_by.as_str(),
            hist[0].ack_comment.as_str()
        ),
        ("resolved", "bob", "ticket ML-7")
    );
    s.stop().await;
}

/// Scores of a calibrated model in 20 levels, `per_level` rows each: level `j` scores
/// `(j + ½)/20`, and (for the reference) that share of its rows is positive.
fn calibrated_levels(per_level: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut scores, mut labels) = (Vec::new(), Vec::new());
    for j in 0..20 {
        let s = (f64::from(j) + 0.5) / 20.0;
        let positives = (s * per_level as f64).round() as usize;
        for i in 0..per_level {
            scores.push(s);
            labels.push(if i < positives { 1.0 } else { 0.0 });
        }
    }
    (scores, labels)
}

/// A rule on `estimated_auc` judges a window by its scores alone: it fires when the scores
/// lose their spread, with no label in the window (docs/STATISTICS.md §20).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn estimated_auc_rule_fires_before_any_label() {
    let dir = tempfile::tempdir().unwrap();
    let recv = Receiver::start().await;
    let mut s = AlertServer::start(dir.path(), ManualClock::new(t(0)), fast_rules()).await;
    s.create_model().await;
    let (scores, labels) = calibrated_levels(50);
    let n = scores.len();
    let rows = |ids: &str, ts: i64, scores: Vec<f64>, labels: Vec<f64>| pb::InferenceBatch {
        model_id: "m".into(),
        request_ids: (0..scores.len()).map(|i| format!("{ids}{i}")).collect(),
        ts_ms: vec![ts; scores.len()],
        model_versions: vec!["v1".into()],
        segments: vec![pb::SegmentColumn {
            key: "region".into(),
            values: vec!["eu".into(); scores.len()],
        }],
        features: vec![pb::FeatureColumn {
            name: "x".into(),
            numbers: vec![1.0; scores.len()],
            ..Default::default()
        }],
        scores,
        labels,
        ..Default::default()
    };
    let chunks = vec![
        pb::ReferenceChunk {
            chunk: Some(pb::reference_chunk::Chunk::Header(pb::ReferenceHeader {
                model_id: "m".into(),
                model_version: "v1".into(),
                replace: false,
            })),
        },
        pb::ReferenceChunk {
            chunk: Some(pb::reference_chunk::Chunk::Rows(rows(
                "ref",
                t(-10).millis(),
                scores.clone(),
                labels,
            ))),
        },
    ];
    s.client
        .models
        .upload_reference(tokio_stream::iter(chunks))
        .await
        .unwrap();
    s.add_rule(json!({"id": "est", "model": "m", "selector": "$performance",
                      "metric": "estimated_auc", "comparison": "<", "threshold": 0.7, "consecutive": 1,
                      "severity": "high", "actions": [{"kind": "webhook", "url": recv.url("/est")}]}))
        .await;
    // Window 0: the reference's own scores, no labels: the estimate is the reference's AUC.
    let mut acks = s
        .client
        .ingest
        .ingest_inferences(tokio_stream::iter(vec![rows(
            "w0-",
            t(0).millis() + 60_000,
            scores,
            vec![],
        )]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(acks.next().await.unwrap().unwrap().accepted, n as u64);
    s.close_by_clock(0).await;
    // Window 1: every score 0.5 (`send_window`): nothing separates the classes any more.
    s.send_window("w1", 1, 1.0, 1.0).await;
    s.close_by_clock(1).await;
    let hits = recv.wait_for(1).await;
    assert_eq!(hits.len(), 1, "{hits:?}");
    let b = &hits[0].body;
    assert_eq!(b["rule_id"], "est");
    assert_eq!(b["window_start"], t(1).to_rfc3339());
    assert!((b["value"].as_f64().unwrap() - 0.5).abs() < 1e-9, "{b}");
    // Window 0's estimate (the reference's own scores) held: no alert for it.
    let h = s.history().await;
    assert!(
        h.iter().all(|a| a.window_start_ms == t(1).millis()),
        "{h:?}"
    );
    s.stop().await;
}

/// A rule on `cost_per_1k` (selector `$cost`) fires on the window whose events got dearer,
/// with the cost per 1,000 events as its value (docs/STATISTICS.md §21).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_per_1k_rule_fires_when_serving_gets_dearer() {
    let dir = tempfile::tempdir().unwrap();
    let recv = Receiver::start().await;
    let mut s = AlertServer::start(dir.path(), ManualClock::new(t(0)), fast_rules()).await;
    s.create_model().await;
    s.add_rule(json!({"id": "cost", "model": "m", "selector": "$cost",
                      "metric": "cost_per_1k", "comparison": ">", "threshold": 5.0, "consecutive": 1,
                      "severity": "low", "actions": [{"kind": "webhook", "url": recv.url("/cost")}]}))
        .await;
    let rows = |ids: &str, ts: i64, cost: f64| pb::InferenceBatch {
        model_id: "m".into(),
        request_ids: (0..100).map(|i| format!("{ids}{i}")).collect(),
        ts_ms: vec![ts; 100],
        model_versions: vec!["v1".into()],
        segments: vec![pb::SegmentColumn {
            key: "region".into(),
            values: vec!["eu".into(); 100],
        }],
        features: vec![pb::FeatureColumn {
            name: "x".into(),
            numbers: vec![1.0; 100],
            ..Default::default()
        }],
        scores: vec![0.5; 100],
        // Every other event reports a cost; the rest say NaN (none).
        cost: (0..100)
            .map(|i| if i % 2 == 0 { cost } else { f64::NAN })
            .collect(),
        ..Default::default()
    };
    for (w, cost) in [(0, 0.002), (1, 0.01)] {
        let mut acks = s
            .client
            .ingest
            .ingest_inferences(tokio_stream::iter(vec![rows(
                &format!("w{w}-"),
                t(w).millis() + 60_000,
                cost,
            )]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(acks.next().await.unwrap().unwrap().accepted, 100);
        s.close_by_clock(w).await;
    }
    let hits = recv.wait_for(1).await;
    assert_eq!(hits.len(), 1, "{hits:?}");
    let b = &hits[0].body;
    assert_eq!(b["rule_id"], "cost");
    assert_eq!(b["window_start"], t(1).to_rfc3339());
    assert!((b["value"].as_f64().unwrap() - 10.0).abs() < 1e-9, "{b}");
    let h = s.history().await;
    assert!(
        h.iter().all(|a| a.window_start_ms == t(1).millis()),
        "{h:?}"
    );
    s.stop().await;
}

/// A node whose deliveries wait for checkpoints, saved on request only (the worker asks).
fn gated_node(dir: &Path, url: &str, clock: &ManualClock, hold_max: Duration) -> Node {
    driftdb_server::tls::install_crypto_provider();
    let cps = driftdb_server::checkpoint::Checkpoints::open(url, 4, None, dir.join(".cw"))
        .unwrap()
        .with_delivery_gate(hold_max);
    Node::open_with(
        dir,
        StoreConfig::default(),
        fast_rules(),
        Arc::new(clock.clone()),
        AuthMode::Disabled,
    )
    .unwrap()
    .with_checkpoints(cps)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_waits_for_a_checkpoint_that_holds_its_alert() {
    let dir = tempfile::tempdir().unwrap();
    let cp = tempfile::tempdir().unwrap();
    let url = format!("file://{}", cp.path().display());
    let recv = Receiver::start().await;
    let clock = ManualClock::new(t(0));
    let node = gated_node(dir.path(), &url, &clock, Duration::from_secs(60));
    let mut s = AlertServer::serve(node, clock.clone()).await;
    s.create_model().await;
    s.add_rule(mean_rule("r", &recv.url("/r"), 1, json!("all"), "high"))
        .await;
    s.send_window("k", 0, 50.0, 50.0).await;
    s.close_by_clock(0).await;
    let hits = recv.wait_for(1).await;
    assert_eq!(hits.len(), 1, "{hits:?}");
    let cps = s.node.checkpoints.clone().unwrap();
    // The worker asked for the checkpoint (none is saved on a timer here), and it holds the
    // alert: a node restoring it knows the alert fired and does not fire it again.
    let seqs = cps.seqs().await.unwrap();
    assert!(!seqs.is_empty(), "no checkpoint before the delivery");
    let first = cps.manifest(seqs[0]).await.unwrap();
    let alert_seq = s.history().await[0].sequence;
    s.stop().await;
    let restored = tempfile::tempdir().unwrap();
    let r = cps.restore(restored.path()).await.unwrap().unwrap();
    assert!(r.seq >= first.seq);
    let mut successor = AlertServer::start(restored.path(), clock.clone(), fast_rules()).await;
    let hist = successor.history().await;
    assert_eq!(hist.len(), 1, "{hist:?}");
    assert_eq!(hist[0].sequence, alert_seq);
    assert_eq!(hist[0].rule_id, "r");
    // The successor evaluates later windows, not window 0 again.
    successor.send_window("k", 1, 1.0, 1.0).await;
    successor.close_by_clock(1).await;
    assert_eq!(successor.history().await.len(), 1);
    // The checkpoint was saved before the delivery finished, so its outbox still holds the
    // delivery: the successor may send it again, with the same idempotency key (at least
    // once), never as a new alert.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hits: Vec<Hit> = recv
        .hits()
        .into_iter()
        .filter(|h| h.body["status"] == "firing")
        .collect();
    assert!(!hits.is_empty() && hits.len() <= 2, "{hits:?}");
    assert!(
        hits.iter()
            .all(|h| h.idempotency_key == hits[0].idempotency_key),
        "{hits:?}"
    );
    successor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_held_for_a_checkpoint_store_that_is_down_goes_out_after_hold_max() {
    let dir = tempfile::tempdir().unwrap();
    // The checkpoint "directory" is under a regular file: every save fails.
    let blocker = tempfile::NamedTempFile::new().unwrap();
    let url = format!("file://{}/checkpoints", blocker.path().display());
    let recv = Receiver::start().await;
    let clock = ManualClock::new(t(0));
    let node = gated_node(dir.path(), &url, &clock, Duration::from_millis(1500));
    let mut s = AlertServer::serve(node, clock.clone()).await;
    s.create_model().await;
    s.add_rule(mean_rule("r", &recv.url("/r"), 1, json!("all"), "high"))
        .await;
    s.send_window("k", 0, 50.0, 50.0).await;
    let fired = Instant::now();
    s.close_by_clock(0).await;
    let hits = recv.wait_for(1).await;
    assert_eq!(hits.len(), 1, "never delivered: {hits:?}");
    assert!(
        fired.elapsed() >= Duration::from_millis(1400),
        "delivered after {:?}, before hold_max",
        fired.elapsed()
    );
    let m = s.node.checkpoints.clone().unwrap().render();
    assert!(
        m.contains("driftdb_checkpoint_deliveries_unheld_total 1\n"),
        "{m}"
    );
    assert!(
        !m.contains("driftdb_checkpoints_total{result=\"failed\"} 0\n"),
        "{m}"
    );
    s.stop().await;
}

/// The ownership a cluster gives the scheduler (`serve --cluster`), switched by hand: whether
/// this node serves the model, and what its previous owner published.
#[derive(Debug, Default)]
struct Owned {
    serves: std::sync::atomic::AtomicBool,
    handed: Mutex<Option<driftdb_server::rules::Handover>>,
}

impl driftdb_server::rules::Ownership for Owned {
    fn evaluates(&self, _model: &str) -> bool {
        self.serves.load(Ordering::SeqCst)
    }

    fn handed_over(&self, _model: &str) -> Option<driftdb_server::rules::Handover> {
        self.handed.lock().unwrap().clone()
    }
}

/// Waits (bounded) until the scheduler's next window of `m` on `node` is `want`.
async fn cursor_at(node: &Node, want: Timestamp) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while next_window(&node.rules, "m").unwrap() != Some(want) {
        assert!(
            Instant::now() < deadline,
            "the cursor never reached {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_evaluates_only_what_it_serves_and_continues_a_taken_over_model() {
    let recv = Receiver::start().await;
    let (d_old, d_new) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut old = AlertServer::start(d_old.path(), ManualClock::new(t(0)), fast_rules()).await;
    old.create_model().await;
    old.add_rule(mean_rule("r", &recv.url("/old"), 1, json!("all"), "high"))
        .await;
    // The node that takes the model over: it does not serve it while the data arrives.
    let owned = Arc::new(Owned::default());
    owned.serves.store(true, Ordering::SeqCst);
    let clock = ManualClock::new(t(0));
    let node = Node::open_with(
        d_new.path(),
        StoreConfig::default(),
        fast_rules(),
        Arc::new(clock.clone()),
        AuthMode::Disabled,
    )
    .unwrap();
    node.rules
        .set_ownership(Arc::clone(&owned) as Arc<dyn driftdb_server::rules::Ownership>);
    let mut new = AlertServer::serve(node, clock).await;
    new.create_model().await;
    new.add_rule(mean_rule("r", &recv.url("/new"), 1, json!("all"), "high"))
        .await;
    let placed = next_window(&new.node.rules, "m").unwrap();
    owned.serves.store(false, Ordering::SeqCst);
    // Windows 0 and 2 breach, 1 and 3 do not; the rows of each close the one before. The old
    // owner fires on 0, resolves on 1, fires on 2.
    for (k, v) in [(0, 40.0), (1, 0.0), (2, 40.0), (3, 0.0)] {
        for s in [&mut old, &mut new] {
            s.clock.set(t(k));
            s.send_window("r", k, v, v).await;
        }
    }
    old.evaluated(2).await;
    let hits = recv.wait_for(3).await;
    assert_eq!(hits.len(), 3, "{hits:?}");
    assert!(hits.iter().all(|h| h.path == "/old"));
    // The node not serving the model evaluated none of its windows.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(new.history().await.is_empty());
    assert_eq!(next_window(&new.node.rules, "m").unwrap(), placed);
    let (_, pending) = driftdb_server::rules::window_backlog(&new.node.rules).unwrap();
    assert_eq!(
        pending, 0,
        "a model served elsewhere is not this node's backlog"
    );

    // The takeover: the old owner's published evaluation state, and the model served here.
    let h = driftdb_server::rules::handover_of(&old.node.rules, &["m".to_string()])
        .unwrap()
        .remove("m")
        .unwrap();
    assert_eq!(h.next_ms, t(3).millis());
    assert!(!h.states.is_empty(), "the firing series' state travels");
    *owned.handed.lock().unwrap() = Some(h);
    owned.serves.store(true, Ordering::SeqCst);
    new.node.rules.wake();
    cursor_at(&new.node, t(3)).await;
    assert!(
        new.history().await.is_empty(),
        "windows the old owner evaluated are not evaluated again"
    );
    // Window 3 (healthy) closes on both: each resolves the episode that fired on window 2 —
    // the new owner knows it fires from the old owner's state — with the same event id.
    for s in [&mut old, &mut new] {
        s.clock.set(t(4));
        s.send_window("r", 4, 40.0, 40.0).await;
        s.evaluated(3).await;
    }
    let hits = recv.wait_for(5).await;
    let at = |p: &str| -> Vec<&Hit> { hits.iter().filter(|h| h.path == p).collect() };
    assert_eq!(at("/old").len(), 4, "{hits:?}");
    let new_hits = at("/new");
    assert_eq!(new_hits.len(), 1, "{hits:?}");
    assert_eq!(new_hits[0].body["status"], "resolved");
    assert_eq!(new_hits[0].body["event_id"], at("/old")[3].body["event_id"]);
    old.stop().await;
    new.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_waits_for_every_gate() {
    let dir = tempfile::tempdir().unwrap();
    let recv = Receiver::start().await;
    let clock = ManualClock::new(t(0));
    let node = Node::open_with(
        dir.path(),
        StoreConfig::default(),
        fast_rules(),
        Arc::new(clock.clone()),
        AuthMode::Disabled,
    )
    .unwrap();
    let gates = [
        Arc::new(driftdb_server::checkpoint::DeliveryGate::new(
            Duration::from_secs(60),
        )),
        Arc::new(driftdb_server::checkpoint::DeliveryGate::new(
            Duration::from_secs(60),
        )),
    ];
    for g in &gates {
        node.rules.hold_deliveries(Arc::clone(g));
    }
    let mut s = AlertServer::serve(node, clock).await;
    s.create_model().await;
    s.add_rule(mean_rule("r", &recv.url("/a"), 1, json!("all"), "high"))
        .await;
    s.send_window("r", 0, 40.0, 40.0).await;
    s.clock.set(t(1));
    s.send_window("r", 1, 40.0, 40.0).await;
    s.evaluated(0).await;
    assert_eq!(s.history().await.len(), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(recv.hits().is_empty(), "held while no gate covers it");
    gates[0].cover(s.node.store.latest_sequence());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        recv.hits().is_empty(),
        "held while one gate does not cover it"
    );
    gates[1].cover(s.node.store.latest_sequence());
    let hits = recv.wait_for(1).await;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].body["status"], "firing");
    assert_eq!(
        gates
            .iter()
            .map(|g| g.released_unsaved_total())
            .sum::<u64>(),
        0
    );
    s.stop().await;
}
