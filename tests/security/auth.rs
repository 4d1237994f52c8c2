//! Every gRPC method and HTTP route against a real server with auth required, called four
//! ways: without a key (UNAUTHENTICATED / 401), with the right team's key lacking the needed
//! scope (PERMISSION_DENIED / 403), with the wrong team's key holding every scope (another
//! team's model is NOT_FOUND / 404 like a missing one, listings leave it out), and with the
//! right key (success, the team's data in the answer). No answer ever carries a webhook secret.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use driftdb_cli::client::Client;
use driftdb_engine::time::Clock;
use driftdb_proto::v1 as pb;
use driftdb_server::auth::{KeySpec, Scope, Scopes};
use driftdb_server::convert::model_to_pb;
use prost::Message;
use tokio_stream::StreamExt;
use tonic::Code;

use super::fixture::{SecureServer, batch, model, reference, t0};

/// How a call treats the wrong team.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Team {
    /// It names the other team's model: NOT_FOUND.
    Named,
    /// It lists: success, nothing of the other team in it.
    Listing,
    /// It would create something for the other team: PERMISSION_DENIED.
    Forbidden,
    /// It holds no team data (metadata).
    Neutral,
}

/// A secret of the fixture's webhook URLs that no answer may show.
const SECRET: &str = "S3CRET";

// ---------------------------------------------------------------------------------------------
// gRPC

type Answer = Pin<Box<dyn Future<Output = Result<String, tonic::Status>> + Send>>;

struct GrpcCase {
    method: &'static str,
    scope: Scope,
    team: Team,
    /// Text the right key's answer contains.
    marker: &'static str,
    call: Box<dyn Fn(Client) -> Answer + Send + Sync>,
}

fn case(
    method: &'static str,
    scope: Scope,
    team: Team,
    marker: &'static str,
    call: impl Fn(Client) -> Answer + Send + Sync + 'static,
) -> GrpcCase {
    GrpcCase {
        method,
        scope,
        team,
        marker,
        call: Box::new(call),
    }
}

const FROM: &str = "2026-03-01T00:00:00Z";
const TO: &str = "2026-03-01T01:00:00Z";

fn grpc_cases(victim_key: String) -> Vec<GrpcCase> {
    use Scope::{Admin, Ingest, Read};
    use Team::{Forbidden, Listing, Named};
    let rule = |id: &str| {
        format!(
            r#"{{"id": "{id}", "model": "alpha_m", "kind": "event", "event": "retrain",
                "severity": "low", "actions": [{{"kind": "pagerduty", "routing_key": "{SECRET}-pd"}}]}}"#
        )
    };
    let rule_a = rule("alpha-grpc-rule");
    vec![
        case(
            "Models/CreateModel",
            Admin,
            Forbidden,
            "alpha_new",
            |mut c| {
                Box::pin(async move {
                    let r = c
                        .models
                        .create_model(pb::CreateModelRequest {
                            model: Some(model_to_pb(&model("alpha_new", Some("alpha")), vec![])),
                        })
                        .await?;
                    Ok(format!("{:?}", r.into_inner()))
                })
            },
        ),
        case("Models/GetModel", Read, Named, "alpha_m", |mut c| {
            Box::pin(async move {
                let r = c
                    .models
                    .get_model(pb::GetModelRequest {
                        id: "alpha_m".into(),
                    })
                    .await?;
                Ok(format!("{:?}", r.into_inner()))
            })
        }),
        case("Models/ListModels", Read, Listing, "alpha_m", |mut c| {
            Box::pin(async move {
                let r = c.models.list_models(pb::ListModelsRequest {}).await?;
                Ok(format!("{:?}", r.into_inner()))
            })
        }),
        case(
            "Models/UploadReference",
            Ingest,
            Named,
            "alpha_m",
            |mut c| {
                Box::pin(async move {
                    let mut chunks = reference("alpha_m");
                    if let Some(pb::reference_chunk::Chunk::Header(h)) = &mut chunks[0].chunk {
                        h.model_version = "v2".into();
                    }
                    let r = c
                        .models
                        .upload_reference(tokio_stream::iter(chunks))
                        .await?;
                    Ok(format!("{:?}", r.into_inner()))
                })
            },
        ),
        case(
            "Ingest/IngestInferences",
            Ingest,
            Named,
            "accepted: 5",
            |mut c| {
                Box::pin(async move {
                    let mut s = c
                        .ingest
                        .ingest_inferences(tokio_stream::iter(vec![batch(
                            "alpha_m", "alpha-eu", "more", 5,
                        )]))
                        .await?
                        .into_inner();
                    let ack = s.next().await.expect("an ack or a status")?;
                    Ok(format!("{ack:?}"))
                })
            },
        ),
        case(
            "Ingest/IngestLabels",
            Ingest,
            Named,
            "joined: 3",
            |mut c| {
                Box::pin(async move {
                    let labels = (0..3)
                        .map(|i| pb::Label {
                            request_id: format!("alpha_m-{i}"),
                            ts_ms: t0().0 + 600_000,
                            label: Some(1.0),
                            ..Default::default()
                        })
                        .collect();
                    let mut s = c
                        .ingest
                        .ingest_labels(tokio_stream::iter(vec![pb::LabelBatch {
                            model_id: "alpha_m".into(),
                            labels,
                            ..Default::default()
                        }]))
                        .await?
                        .into_inner();
                    let ack = s.next().await.expect("an ack or a status")?;
                    Ok(format!("{ack:?}"))
                })
            },
        ),
        case("Query/Query", Read, Named, "alpha_m", |mut c| {
            Box::pin(async move {
                let r = c
                    .query
                    .query(pb::QueryRequest {
                        query: format!("mean(alpha_m@v1.x) from {FROM} to {TO}"),
                    })
                    .await?;
                Ok(format!("{:?}", r.into_inner()))
            })
        }),
        case(
            "Query/DriftSummary",
            Read,
            Named,
            "model_version: \"v1\"",
            |mut c| {
                Box::pin(async move {
                    let r = c
                        .query
                        .drift_summary(pb::DriftSummaryRequest {
                            model_id: "alpha_m".into(),
                            model_version: "v1".into(),
                            from: FROM.into(),
                            to: TO.into(),
                        })
                        .await?;
                    Ok(format!("{:?}", r.into_inner()))
                })
            },
        ),
        case(
            "Rules/CreateRule",
            Admin,
            Named,
            "alpha-grpc-rule",
            move |mut c| {
                let rule = rule_a.clone();
                Box::pin(async move {
                    let r = c
                        .rules
                        .create_rule(pb::CreateRuleRequest {
                            definition_json: rule,
                        })
                        .await?;
                    Ok(format!("{:?}", r.into_inner()))
                })
            },
        ),
        case(
            "Rules/ListRules",
            Read,
            Listing,
            "alpha-release",
            |mut c| {
                Box::pin(async move {
                    let r = c.rules.list_rules(pb::ListRulesRequest::default()).await?;
                    Ok(format!("{:?}", r.into_inner()))
                })
            },
        ),
        case("Rules/DeleteRule", Admin, Named, "", |mut c| {
            Box::pin(async move {
                let r = c
                    .rules
                    .delete_rule(pb::DeleteRuleRequest {
                        id: "alpha-doomed-grpc".into(),
                    })
                    .await?;
                Ok(format!("{:?}", r.into_inner()))
            })
        }),
        case(
            "Rules/CreateSilence",
            Admin,
            Named,
            "alpha-grpc-silence",
            |mut c| {
                Box::pin(async move {
                    let r = c
                        .rules
                        .create_silence(pb::CreateSilenceRequest {
                            definition_json: silence("alpha-grpc-silence"),
                        })
                        .await?;
                    Ok(format!("{:?}", r.into_inner()))
                })
            },
        ),
        case("Rules/ListSilences", Read, Listing, "alpha_m", |mut c| {
            Box::pin(async move {
                let r = c
                    .rules
                    .list_silences(pb::ListSilencesRequest {
                        include_expired: true,
                    })
                    .await?;
                Ok(format!("{:?}", r.into_inner()))
            })
        }),
        case("Rules/ExpireSilence", Admin, Named, "expired", |mut c| {
            Box::pin(async move {
                let r = c
                    .rules
                    .expire_silence(pb::ExpireSilenceRequest { id: "s-1".into() })
                    .await?;
                Ok(format!("{:?}", r.into_inner()))
            })
        }),
        case("Rules/AnnounceEvent", Ingest, Named, "alerts", |mut c| {
            Box::pin(async move {
                let r = c
                    .rules
                    .announce_event(pb::AnnounceEventRequest {
                        model: "alpha_m".into(),
                        event: "deploy".into(),
                        version: String::new(),
                    })
                    .await?;
                Ok(format!("{:?}", r.into_inner()))
            })
        }),
        case("Alerts/WatchAlerts", Read, Listing, "alpha_m", |mut c| {
            Box::pin(async move {
                let mut s = c
                    .alerts
                    .watch_alerts(pb::WatchAlertsRequest::default())
                    .await?
                    .into_inner();
                // The stored alerts are replayed at once; then the stream waits for more.
                let mut seen = Vec::new();
                while let Ok(Some(a)) =
                    tokio::time::timeout(Duration::from_millis(500), s.next()).await
                {
                    seen.push(format!("{:?}", a?));
                }
                Ok(format!("{} alerts {}", seen.len(), seen.join(" ")))
            })
        }),
        case(
            "Alerts/WatchAlerts(model)",
            Read,
            Named,
            "alpha_m",
            |mut c| {
                Box::pin(async move {
                    let mut s = c
                        .alerts
                        .watch_alerts(pb::WatchAlertsRequest {
                            model: "alpha_m".into(),
                            ..Default::default()
                        })
                        .await?
                        .into_inner();
                    match tokio::time::timeout(Duration::from_secs(5), s.next()).await {
                        Ok(Some(a)) => Ok(format!("{:?}", a?)),
                        other => Ok(format!("no alert: {other:?}")),
                    }
                })
            },
        ),
        case("Alerts/ListAlerts", Read, Listing, "alpha_m", |mut c| {
            Box::pin(async move {
                let r = c
                    .alerts
                    .list_alerts(pb::ListAlertsRequest::default())
                    .await?;
                Ok(format!("{:?}", r.into_inner()))
            })
        }),
        case("Admin/CreateKey", Admin, Forbidden, "ddb_", |mut c| {
            Box::pin(async move {
                let r = c
                    .admin
                    .create_key(pb::CreateKeyRequest {
                        name: "made-by-test".into(),
                        team: "alpha".into(),
                        scopes: vec!["admin".into()],
                        operator: false,
                    })
                    .await?;
                Ok(format!("{:?}", r.into_inner()))
            })
        }),
        case("Admin/ListKeys", Admin, Listing, "\"alpha\"", |mut c| {
            Box::pin(async move {
                let r = c.admin.list_keys(pb::ListKeysRequest {}).await?;
                Ok(format!("{:?}", r.into_inner()))
            })
        }),
        case(
            "Admin/RevokeKey",
            Admin,
            Named,
            "revoked_at_ms",
            move |mut c| {
                let id = victim_key.clone();
                Box::pin(async move {
                    let r = c.admin.revoke_key(pb::RevokeKeyRequest { id }).await?;
                    Ok(format!("{:?}", r.into_inner()))
                })
            },
        ),
    ]
}

async fn grpc_call(s: &SecureServer, key: Option<&str>, c: &GrpcCase) -> Result<String, Code> {
    let client = s.client(key).await;
    match (c.call)(client).await {
        Ok(text) => {
            assert!(!text.contains(SECRET), "{}: a secret in {text}", c.method);
            Ok(text)
        }
        Err(st) => {
            assert!(
                !st.message().contains(SECRET),
                "{}: a secret in {st:?}",
                c.method
            );
            Err(st.code())
        }
    }
}

/// A silence of model `alpha_m` (for a rule that never fires) with `comment`.
fn silence(comment: &str) -> String {
    format!(
        r#"{{"matchers": {{"model": "alpha_m", "rule": "nothing-*"}}, "duration": "1h",
            "created_by": "tests", "comment": "{comment}"}}"#
    )
}

/// Rules, silences (s-1 for gRPC, s-2 for HTTP) and keys the "right key" calls delete, end or
/// revoke.
async fn victims(s: &SecureServer) -> String {
    let mut op = s.client(Some(&s.keys.operator)).await;
    for comment in ["alpha-doomed-grpc", "alpha-doomed-http"] {
        op.rules
            .create_silence(pb::CreateSilenceRequest {
                definition_json: silence(comment),
            })
            .await
            .unwrap();
    }
    for id in ["alpha-doomed-grpc", "alpha-doomed-http"] {
        op.rules
            .create_rule(pb::CreateRuleRequest {
                definition_json: format!(
                    r#"{{"id": "{id}", "model": "alpha_m", "kind": "event", "event": "x", "severity": "low"}}"#
                ),
            })
            .await
            .unwrap();
    }
    s.node
        .auth
        .keys()
        .create(
            KeySpec {
                name: "victim".into(),
                team: Some("alpha".into()),
                scopes: Scopes::of(&[Scope::Read]),
                created_by: None,
            },
            s.clock.now(),
        )
        .unwrap()
        .record
        .id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_grpc_method_checks_key_scope_and_team() {
    let s = SecureServer::start().await;
    let victim = victims(&s).await;
    for c in grpc_cases(victim) {
        let m = c.method;
        assert_eq!(
            grpc_call(&s, None, &c).await,
            Err(Code::Unauthenticated),
            "{m} without a key"
        );
        assert_eq!(
            grpc_call(
                &s,
                Some("ddb_0123456789abcdef_notakeynotakeynotakeynotakeynotakeynota"),
                &c
            )
            .await,
            Err(Code::Unauthenticated),
            "{m} with an unknown key"
        );
        assert_eq!(
            grpc_call(&s, Some(s.keys.alpha_without(c.scope)), &c).await,
            Err(Code::PermissionDenied),
            "{m} with a key lacking {}",
            c.scope.as_str()
        );
        let wrong = grpc_call(&s, Some(&s.keys.beta), &c).await;
        match c.team {
            Team::Named => assert_eq!(wrong, Err(Code::NotFound), "{m} with the wrong team"),
            Team::Forbidden => {
                assert_eq!(
                    wrong,
                    Err(Code::PermissionDenied),
                    "{m} with the wrong team"
                )
            }
            Team::Listing | Team::Neutral => {
                let text = wrong.unwrap_or_else(|e| panic!("{m} with the wrong team: {e:?}"));
                assert!(!text.contains("alpha"), "{m}: the wrong team sees {text}");
            }
        }
        let right = grpc_call(&s, Some(s.keys.alpha_only(c.scope)), &c)
            .await
            .unwrap_or_else(|e| panic!("{m} with the right key: {e:?}"));
        assert!(right.contains(c.marker), "{m}: {right}");
    }
    // The right key's writes took effect; the wrong team's did not.
    let rules = s.node.rules.book.list(Some("alpha_m"));
    let ids: Vec<&str> = rules.iter().map(|r| r.def.id.as_str()).collect();
    assert!(ids.contains(&"alpha-grpc-rule"), "{ids:?}");
    assert!(!ids.contains(&"alpha-doomed-grpc"), "{ids:?}");
    assert_eq!(
        s.node
            .registry
            .get("alpha_new")
            .unwrap()
            .def
            .team
            .as_deref(),
        Some("alpha")
    );
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// HTTP

struct HttpCase {
    method: reqwest::Method,
    path: String,
    body: Option<(&'static str, Vec<u8>)>,
    scope: Scope,
    team: Team,
    marker: &'static str,
    /// The remote-read answer is snappy-compressed protobuf.
    snappy: bool,
}

fn get(path: impl Into<String>, scope: Scope, team: Team, marker: &'static str) -> HttpCase {
    HttpCase {
        method: reqwest::Method::GET,
        path: path.into(),
        body: None,
        scope,
        team,
        marker,
        snappy: false,
    }
}

fn with_body(
    method: reqwest::Method,
    path: impl Into<String>,
    json: String,
    scope: Scope,
    team: Team,
    marker: &'static str,
) -> HttpCase {
    HttpCase {
        method,
        path: path.into(),
        body: Some(("application/json", json.into_bytes())),
        scope,
        team,
        marker,
        snappy: false,
    }
}

fn remote_read_body() -> Vec<u8> {
    use driftdb_proto::prometheus as prom;
    let req = prom::ReadRequest {
        queries: vec![prom::Query {
            start_timestamp_ms: t0().0,
            end_timestamp_ms: t0().0 + 3_600_000,
            matchers: vec![prom::LabelMatcher {
                r#type: prom::label_matcher::Type::Eq as i32,
                name: "__name__".into(),
                value: "driftdb_rows".into(),
            }],
            hints: None,
        }],
        accepted_response_types: vec![],
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap()
}

fn http_cases(victim_key: &str) -> Vec<HttpCase> {
    use Scope::{Admin, Ingest, Read};
    use Team::{Forbidden, Listing, Named, Neutral};
    let range = format!("from={FROM}&to={TO}");
    let q = format!("mean(alpha_m.x) from {FROM} to {TO}");
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let end = (t0().0 + 900_000) / 1000;
    let rule = |id: &str| {
        format!(
            r#"{{"id": "{id}", "model": "alpha_m", "kind": "event", "event": "retrain", "severity": "low",
                "actions": [{{"kind": "slack", "url": "https://hooks.slack.com/services/T/B/{SECRET}"}}]}}"#
        )
    };
    let post = reqwest::Method::POST;
    let delete = reqwest::Method::DELETE;
    vec![
        get(
            format!("/models/alpha_m/drift?{range}"),
            Read,
            Named,
            "alpha_m",
        ),
        get(
            format!("/models/alpha_m/drift/summary?{range}"),
            Read,
            Named,
            "alpha_m",
        ),
        get(
            format!("/models/alpha_m/performance?{range}"),
            Read,
            Named,
            "alpha_m",
        ),
        get(
            format!("/api/v1/driftql?q={}", enc(&q)),
            Read,
            Named,
            "alpha_m",
        ),
        with_body(
            post.clone(),
            "/api/v1/driftql",
            serde_json::json!({ "query": q }).to_string(),
            Read,
            Named,
            "alpha_m",
        ),
        get("/models/alpha_m/alerts", Read, Named, "alpha-release"),
        with_body(
            post.clone(),
            "/models/alpha_m/alerts",
            rule("alpha-http-rule"),
            Admin,
            Named,
            "alpha-http-rule",
        ),
        with_body(
            post.clone(),
            "/models/alpha_m/events",
            r#"{"event": "deploy"}"#.into(),
            Ingest,
            Named,
            "alerts",
        ),
        get("/rules", Read, Listing, "alpha-release"),
        with_body(
            post.clone(),
            "/rules",
            rule("alpha-http-rule2"),
            Admin,
            Named,
            "alpha-http-rule2",
        ),
        get("/rules/alpha-release", Read, Named, "alpha-release"),
        get("/silences?expired=true", Read, Listing, "alpha_m"),
        get("/silences/s-2", Read, Named, "alpha-doomed"),
        with_body(
            post.clone(),
            "/silences",
            silence("alpha-http-silence"),
            Admin,
            Named,
            "alpha-http-silence",
        ),
        HttpCase {
            method: delete.clone(),
            path: "/silences/s-2".into(),
            body: None,
            scope: Admin,
            team: Named,
            marker: "expired",
            snappy: false,
        },
        HttpCase {
            method: delete.clone(),
            path: "/rules/alpha-doomed-http".into(),
            body: None,
            scope: Admin,
            team: Named,
            marker: "alpha-doomed-http",
            snappy: false,
        },
        get("/alerts", Read, Listing, "alpha-release"),
        get("/alerts/dead_letters", Read, Listing, "/alpha?***"),
        HttpCase {
            method: post.clone(),
            path: "/api/v1/read".into(),
            body: Some(("application/x-protobuf", remote_read_body())),
            scope: Read,
            team: Listing,
            marker: "alpha_m",
            snappy: true,
        },
        get(
            format!("/api/v1/query?query=driftdb_rows&time={end}"),
            Read,
            Listing,
            "alpha_m",
        ),
        get(
            format!(
                "/api/v1/query_range?query=driftdb_rows&start={}&end={}&step=900",
                end - 900,
                end + 3600
            ),
            Read,
            Listing,
            "alpha_m",
        ),
        get(
            format!("/api/v1/series?{}={}", enc("match[]"), "driftdb_rows"),
            Read,
            Listing,
            "alpha_m",
        ),
        get("/api/v1/labels", Read, Listing, "region"),
        get("/api/v1/label/region/values", Read, Listing, "alpha-eu"),
        get("/api/v1/label/model/values", Read, Listing, "alpha_m"),
        get("/api/v1/metadata", Read, Neutral, "driftdb_psi"),
        get("/api/v1/query_exemplars", Read, Neutral, "success"),
        get("/admin/keys", Admin, Listing, "\"team\":\"alpha\""),
        with_body(
            post,
            "/admin/keys",
            r#"{"name": "made-by-http", "team": "alpha", "scopes": ["admin"]}"#.into(),
            Admin,
            Forbidden,
            "ddb_",
        ),
        HttpCase {
            method: delete,
            path: format!("/admin/keys/{victim_key}"),
            body: None,
            scope: Admin,
            team: Named,
            marker: "revoked_at",
            snappy: false,
        },
    ]
}

/// Sends a case; the status and the (decompressed) body.
async fn send(s: &SecureServer, key: Option<&str>, c: &HttpCase) -> (u16, String) {
    let url = format!("http://{}{}", s.http(), c.path);
    let mut req = reqwest::Client::new().request(c.method.clone(), url);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if let Some((ct, body)) = &c.body {
        req = req.header("content-type", *ct).body(body.clone());
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    if status == 401 {
        assert_eq!(
            r.headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer realm=\"driftdb\""),
            "{}",
            c.path
        );
    }
    let bytes = r.bytes().await.unwrap();
    let body = if c.snappy && status == 200 {
        snap::raw::Decoder::new().decompress_vec(&bytes).unwrap()
    } else {
        bytes.to_vec()
    };
    let text = String::from_utf8_lossy(&body).into_owned();
    assert!(!text.contains(SECRET), "{}: a secret in {text}", c.path);
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_http_route_checks_key_scope_and_team() {
    let s = SecureServer::start().await;
    let victim = victims(&s).await;
    for c in http_cases(&victim) {
        let what = format!("{} {}", c.method, c.path);
        let (status, body) = send(&s, None, &c).await;
        assert_eq!(status, 401, "{what} without a key: {body}");
        let (status, _) = send(&s, Some("Basic dXNlcjpwYXNz"), &c).await;
        assert_eq!(status, 401, "{what} with a malformed key");
        let (status, body) = send(&s, Some(s.keys.alpha_without(c.scope)), &c).await;
        assert_eq!(status, 403, "{what} lacking {}: {body}", c.scope.as_str());
        let (status, body) = send(&s, Some(&s.keys.beta), &c).await;
        match c.team {
            Team::Named => assert_eq!(status, 404, "{what} with the wrong team: {body}"),
            Team::Forbidden => assert_eq!(status, 403, "{what} with the wrong team: {body}"),
            Team::Listing | Team::Neutral => {
                assert!(
                    (200..300).contains(&status),
                    "{what} with the wrong team: {status} {body}"
                );
                assert!(
                    !body.contains("alpha"),
                    "{what}: the wrong team sees {body}"
                );
            }
        }
        if c.team == Team::Listing && c.path.contains("region/values") {
            assert!(body.contains("beta-us"), "{what}: {body}");
        }
        let (status, body) = send(&s, Some(s.keys.alpha_only(c.scope)), &c).await;
        assert!(
            (200..300).contains(&status),
            "{what} with the right key: {status} {body}"
        );
        assert!(body.contains(c.marker), "{what}: {body}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_open_and_metrics_are_for_operators() {
    let s = SecureServer::start().await;
    let health = get("/healthz", Scope::Read, Team::Neutral, "ok");
    assert_eq!(send(&s, None, &health).await, (200, "ok\n".to_string()));
    let metrics = get("/metrics", Scope::Read, Team::Neutral, "");
    assert_eq!(send(&s, None, &metrics).await.0, 401);
    // A team key, even with every scope, may not read node-wide counters.
    assert_eq!(send(&s, Some(&s.keys.alpha), &metrics).await.0, 403);
    let op_ingest = s
        .node
        .auth
        .keys()
        .create(
            KeySpec {
                name: "op-ingest".into(),
                team: None,
                scopes: Scopes::of(&[Scope::Ingest]),
                created_by: None,
            },
            s.clock.now(),
        )
        .unwrap()
        .token;
    assert_eq!(send(&s, Some(&op_ingest), &metrics).await.0, 403);
    let (status, body) = send(&s, Some(&s.keys.operator), &metrics).await;
    assert_eq!(status, 200);
    assert!(body.contains("driftdb_ingest_batches_total"), "{body}");
    s.stop().await;
}

/// The models without a team are the operators': a team key does not see them anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_without_a_team_are_operator_only() {
    let s = SecureServer::start().await;
    let mut alpha = s.client(Some(&s.keys.alpha)).await;
    let st = alpha
        .models
        .get_model(pb::GetModelRequest { id: "op_m".into() })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::NotFound);
    // Not even in the planner's "did you mean" hint.
    let st = alpha
        .query
        .query(pb::QueryRequest {
            query: format!("mean(op_mm.x) from {FROM} to {TO}"),
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::NotFound);
    assert!(!st.message().contains("op_m\""), "{}", st.message());
    assert!(!st.message().contains("beta_m"), "{}", st.message());
    // A team key cannot write a rule for every model, nor register another team's model.
    let st = alpha
        .rules
        .create_rule(pb::CreateRuleRequest {
            definition_json:
                r#"{"id": "all", "model": "*", "kind": "event", "event": "x", "severity": "low"}"#
                    .into(),
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::PermissionDenied);
    let st = alpha
        .models
        .create_model(pb::CreateModelRequest {
            model: Some(model_to_pb(&model("sneaky", Some("beta")), vec![])),
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::PermissionDenied);
    // A model registered by a team key without a team is the team's.
    alpha
        .models
        .create_model(pb::CreateModelRequest {
            model: Some(model_to_pb(&model("alpha_two", None), vec![])),
        })
        .await
        .unwrap();
    assert_eq!(
        s.node
            .registry
            .get("alpha_two")
            .unwrap()
            .def
            .team
            .as_deref(),
        Some("alpha")
    );
    // A rule id of another team cannot be taken over.
    let mut beta = s.client(Some(&s.keys.beta)).await;
    let st = beta
        .rules
        .create_rule(pb::CreateRuleRequest {
            definition_json: r#"{"id": "alpha-release", "model": "beta_m", "kind": "event", "event": "x", "severity": "low"}"#.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::AlreadyExists);
    assert_eq!(
        s.node.rules.book.get("alpha-release").unwrap().def.model,
        "alpha_m"
    );
    // The operator sees every model.
    let mut op = s.client(Some(&s.keys.operator)).await;
    let all = op
        .models
        .list_models(pb::ListModelsRequest {})
        .await
        .unwrap()
        .into_inner()
        .models;
    let ids: Vec<&str> = all.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["alpha_m", "alpha_two", "beta_m", "op_m"]);
    s.stop().await;
}

/// Keys: a team admin manages its own team's keys only and cannot grant more than it holds;
/// a revoked key stops working at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_admins_manage_their_own_keys() {
    let s = SecureServer::start().await;
    let mut admin = s.client(Some(s.keys.alpha_only(Scope::Admin))).await;
    let st = admin
        .admin
        .create_key(pb::CreateKeyRequest {
            name: "escalate".into(),
            team: String::new(),
            scopes: vec!["read".into()],
            operator: false,
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::PermissionDenied, "{st:?}");
    let st = admin
        .admin
        .create_key(pb::CreateKeyRequest {
            name: "op".into(),
            team: String::new(),
            scopes: vec!["admin".into()],
            operator: true,
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::PermissionDenied, "{st:?}");
    let made = admin
        .admin
        .create_key(pb::CreateKeyRequest {
            name: "alpha-bot".into(),
            team: String::new(),
            scopes: vec!["admin".into()],
            operator: false,
        })
        .await
        .unwrap()
        .into_inner();
    let key = made.key.unwrap();
    assert_eq!(key.team, "alpha");
    // The new key works, then is revoked and does not.
    let mut bot = s.client(Some(&made.token)).await;
    bot.admin.list_keys(pb::ListKeysRequest {}).await.unwrap();
    admin
        .admin
        .revoke_key(pb::RevokeKeyRequest { id: key.id.clone() })
        .await
        .unwrap();
    let st = bot
        .admin
        .list_keys(pb::ListKeysRequest {})
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::Unauthenticated);
    // The store keeps no token.
    let listed = s.node.auth.keys().list();
    let rec = listed.iter().find(|k| k.id == key.id).unwrap();
    assert!(rec.revoked_at_ms.is_some());
    assert_eq!(rec.created_by.as_deref().map(|c| c.len()), Some(16));
    s.stop().await;
}
