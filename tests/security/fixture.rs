//! A server with auth required (AuthMode::Required) on 127.0.0.1:0, two teams' models with
//! data, rules and alerts, and API keys for every case the security tests need.
//!
//! - `alpha_m` (team `alpha`) and `beta_m` (team `beta`): binary models, segment key `region`
//!   with values `alpha-eu` / `beta-us` (so a leaked label value is easy to spot), a numeric
//!   feature `x`, a reference profile `v1`, and [`ROWS`] rows in the first window of
//!   2026-03-01 (the clock stands a day later: every window is closed);
//! - `op_m`: a model without a team (the operators' own);
//! - per team an event rule `<team>-release` whose webhook goes to a receiver answering 410,
//!   announced once: one alert per team and one dead letter each.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use driftdb_cli::client::{Client, ClientConfig};
use driftdb_engine::model::{FeatureKind, ModelDef, Task};
use driftdb_engine::time::{Clock, ManualClock, Timestamp};
use driftdb_proto::v1 as pb;
use driftdb_server::auth::{AuthMode, KeySpec, Scope, Scopes};
use driftdb_server::convert::model_to_pb;
use driftdb_server::node::Node;
use driftdb_server::rules::RulesConfig;
use driftdb_storage::StoreConfig;
use serde_json::Value;
use tokio_stream::StreamExt;

/// Rows ingested per model.
pub const ROWS: usize = 50;

/// 2026-03-01T00:00:00Z.
pub fn t0() -> Timestamp {
    Timestamp(1_772_323_200_000)
}

/// One request the webhook receiver got.
#[derive(Debug, Clone)]
pub struct Hit {
    /// Path and query.
    pub target: String,
    /// The `authorization` header, if any.
    pub authorization: Option<String>,
    /// The body.
    pub body: Value,
}

/// A webhook receiver on 127.0.0.1 answering `status` to everything.
pub struct Receiver {
    pub addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start(status: u16) -> Receiver {
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let state = (Arc::clone(&hits), status);
        let app = axum::Router::new()
            .fallback(
                |State((hits, status)): State<(Arc<Mutex<Vec<Hit>>>, u16)>,
                 uri: axum::http::Uri,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    hits.lock().unwrap().push(Hit {
                        target: uri
                            .path_and_query()
                            .map(|p| p.to_string())
                            .unwrap_or_default(),
                        authorization: headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string),
                        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                    });
                    StatusCode::from_u16(status).unwrap()
                },
            )
            .with_state(state);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        Receiver { addr, hits, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Waits (bounded) until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Hit> {
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

pub fn model(id: &str, team: Option<&str>) -> ModelDef {
    ModelDef {
        id: id.into(),
        task: Task::Binary,
        window: "15m".into(),
        grace: "5m".into(),
        max_label_delay: "30d".into(),
        segments: vec!["region".into()],
        segment_cap: 64,
        features: [("x".to_string(), FeatureKind::Numeric)]
            .into_iter()
            .collect(),
        sampling: 1.0,
        team: team.map(str::to_string),
    }
}

/// `n` rows for `model` in the first window of t0, region `region`.
pub fn batch(model: &str, region: &str, tag: &str, n: usize) -> pb::InferenceBatch {
    pb::InferenceBatch {
        model_id: model.into(),
        request_ids: (0..n).map(|i| format!("{tag}-{i}")).collect(),
        ts_ms: (0..n).map(|i| t0().0 + 60_000 + i as i64 * 1000).collect(),
        model_versions: vec!["v1".into()],
        segments: vec![pb::SegmentColumn {
            key: "region".into(),
            values: vec![region.to_string(); n],
        }],
        features: vec![pb::FeatureColumn {
            name: "x".into(),
            numbers: (0..n).map(|i| (i % 17) as f64).collect(),
            ..Default::default()
        }],
        scores: (0..n).map(|i| (i % 10) as f64 / 10.0).collect(),
        ..Default::default()
    }
}

/// The reference upload of `model` (`v1`, 200 labelled rows).
pub fn reference(model: &str) -> Vec<pb::ReferenceChunk> {
    let mut rows = batch(model, "ref", "ref", 200);
    rows.labels = (0..200).map(|i| f64::from(i % 2)).collect();
    vec![
        pb::ReferenceChunk {
            chunk: Some(pb::reference_chunk::Chunk::Header(pb::ReferenceHeader {
                model_id: model.into(),
                model_version: "v1".into(),
                replace: false,
            })),
        },
        pb::ReferenceChunk {
            chunk: Some(pb::reference_chunk::Chunk::Rows(rows)),
        },
    ]
}

/// The keys of the tests, by role.
#[derive(Debug, Clone)]
pub struct Keys {
    /// Operator, every scope.
    pub operator: String,
    /// Team `beta`, every scope: the wrong team for `alpha_m`.
    pub beta: String,
    /// Team `alpha`, every scope.
    pub alpha: String,
    /// Team `alpha`, all scopes but the one named (index: ingest, read, admin).
    alpha_without: [String; 3],
    /// Team `alpha`, exactly one scope (index: ingest, read, admin).
    alpha_only: [String; 3],
}

fn index(s: Scope) -> usize {
    match s {
        Scope::Ingest => 0,
        Scope::Read => 1,
        Scope::Admin => 2,
    }
}

impl Keys {
    /// Team `alpha` with every scope but `s`.
    pub fn alpha_without(&self, s: Scope) -> &str {
        &self.alpha_without[index(s)]
    }

    /// Team `alpha` with `s` only.
    pub fn alpha_only(&self, s: Scope) -> &str {
        &self.alpha_only[index(s)]
    }
}

pub struct SecureServer {
    pub node: Node,
    pub running: Option<driftdb_server::serve::Running>,
    pub keys: Keys,
    pub receiver: Receiver,
    pub clock: ManualClock,
    _dir: tempfile::TempDir,
}

impl SecureServer {
    /// A server with auth required, the two teams' data, rules and alerts.
    pub async fn start() -> SecureServer {
        driftdb_server::tls::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(Timestamp(t0().0 + 86_400_000));
        let mut rules = RulesConfig {
            tick: Duration::from_millis(20),
            ..RulesConfig::default()
        };
        rules.retry.initial = Duration::from_millis(20);
        let node = Node::open_with(
            dir.path(),
            StoreConfig::default(),
            rules,
            Arc::new(clock.clone()),
            AuthMode::Required,
        )
        .unwrap();
        let k = |team: Option<&str>, scopes: &[Scope]| {
            node.auth
                .keys()
                .create(
                    KeySpec {
                        name: "test".into(),
                        team: team.map(str::to_string),
                        scopes: Scopes::of(scopes),
                        created_by: None,
                    },
                    clock.now(),
                )
                .unwrap()
                .token
        };
        use Scope::{Admin, Ingest, Read};
        let keys = Keys {
            operator: k(None, &[Ingest, Read, Admin]),
            beta: k(Some("beta"), &[Ingest, Read, Admin]),
            alpha: k(Some("alpha"), &[Ingest, Read, Admin]),
            alpha_without: [
                k(Some("alpha"), &[Read, Admin]),
                k(Some("alpha"), &[Ingest, Admin]),
                k(Some("alpha"), &[Ingest, Read]),
            ],
            alpha_only: [
                k(Some("alpha"), &[Ingest]),
                k(Some("alpha"), &[Read]),
                k(Some("alpha"), &[Admin]),
            ],
        };
        let running = driftdb_server::serve::start(
            node.clone(),
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        let receiver = Receiver::start(410).await;
        let s = SecureServer {
            node,
            running: Some(running),
            keys,
            receiver,
            clock,
            _dir: dir,
        };
        s.load().await;
        s
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.running.as_ref().unwrap().bound.grpc)
    }

    pub fn http(&self) -> SocketAddr {
        self.running.as_ref().unwrap().bound.http
    }

    /// A client sending `key` (none for `None`).
    pub async fn client(&self, key: Option<&str>) -> Client {
        let mut cfg = ClientConfig::url(self.grpc_url());
        cfg.api_key = key.map(str::to_string);
        Client::connect_with(&cfg).await.unwrap()
    }

    async fn load(&self) {
        let mut op = self.client(Some(&self.keys.operator)).await;
        for (id, team, region) in [
            ("alpha_m", Some("alpha"), "alpha-eu"),
            ("beta_m", Some("beta"), "beta-us"),
            ("op_m", None, "op-zone"),
        ] {
            op.models
                .create_model(pb::CreateModelRequest {
                    model: Some(model_to_pb(&model(id, team), vec![])),
                })
                .await
                .unwrap();
            op.models
                .upload_reference(tokio_stream::iter(reference(id)))
                .await
                .unwrap();
            let mut acks = op
                .ingest
                .ingest_inferences(tokio_stream::iter(vec![batch(id, region, id, ROWS)]))
                .await
                .unwrap()
                .into_inner();
            let ack = acks.next().await.unwrap().unwrap();
            assert_eq!(ack.accepted, ROWS as u64);
            if let Some(team) = team {
                let rule = format!(
                    r#"{{"id": "{team}-release", "model": "{id}", "kind": "event", "event": "release",
                        "severity": "low", "actions": [{{"kind": "webhook", "url": "{}"}}]}}"#,
                    self.receiver.url(&format!("/{team}?token=S3CRET-{team}"))
                );
                op.rules
                    .create_rule(pb::CreateRuleRequest {
                        definition_json: rule,
                    })
                    .await
                    .unwrap();
                let fired = op
                    .rules
                    .announce_event(pb::AnnounceEventRequest {
                        model: id.into(),
                        event: "release".into(),
                        version: "v1".into(),
                    })
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(fired.alerts.len(), 1);
            }
        }
        // Both deliveries are refused (410): two dead letters.
        let deadline = Instant::now() + Duration::from_secs(15);
        while driftdb_server::rules::dead_letters(&self.node.rules)
            .unwrap()
            .len()
            < 2
        {
            assert!(Instant::now() < deadline, "no dead letters");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await.unwrap();
        }
    }
}
