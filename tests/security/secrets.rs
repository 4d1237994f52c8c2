//! Webhook secrets (PagerDuty routing keys, Slack webhook URLs, Jira tokens, webhook query
//! strings): stored apart from the rule text, redacted in every answer, in the alert records
//! and in the logs, yet delivered, also after a restart. And the optional refusal of private
//! webhook targets.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use driftdb_cli::client::Client;
use driftdb_engine::time::{ManualClock, Timestamp};
use driftdb_proto::v1 as pb;
use driftdb_server::auth::{AuthMode, Principal};
use driftdb_server::convert::model_to_pb;
use driftdb_server::node::Node;
use driftdb_server::rules::RulesConfig;
use driftdb_storage::layout;
use driftdb_storage::{Family, StoreConfig};

use super::fixture::{Receiver, model, t0};

/// Every line the process logs, for the redaction check.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs a process-wide subscriber (this is the only test that does) logging driftdb's
/// crates at debug level (other crates at info) into the buffer.
fn capture_logs() -> Captured {
    let c = Captured::default();
    let writer = c.clone();
    tracing_subscriber::fmt()
        .with_env_filter("info,driftdb_server=debug,driftdb_storage=debug,driftdb_engine=debug")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("no other test installs a subscriber");
    c
}

fn open(dir: &std::path::Path, clock: &ManualClock, deny_private: bool) -> Node {
    let mut rules = RulesConfig {
        tick: Duration::from_millis(20),
        deny_private_targets: deny_private,
        ..RulesConfig::default()
    };
    rules.retry.initial = Duration::from_millis(20);
    Node::open_with(
        dir,
        StoreConfig::default(),
        rules,
        Arc::new(clock.clone()),
        AuthMode::Disabled,
    )
    .unwrap()
}

async fn serve(node: &Node) -> (driftdb_server::serve::Running, Client) {
    let running = driftdb_server::serve::start(
        node.clone(),
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let c = Client::connect(&format!("http://{}", running.bound.grpc))
        .await
        .unwrap();
    (running, c)
}

/// Every value in the `meta` family under `prefix`, as text.
fn meta_texts(node: &Node, prefix: u8) -> Vec<String> {
    node.store
        .family(Family::Meta)
        .scan_prefix(&[prefix])
        .unwrap()
        .map(|e| String::from_utf8_lossy(&e.unwrap().payload).into_owned())
        .collect()
}

/// Every raw value of a column family, as text.
fn family_text(node: &Node, cf: &str) -> String {
    let db = node.store.raw_db();
    let h = db.cf_handle(cf).unwrap();
    let mut out = String::new();
    for kv in db.iterator_cf(h, rocksdb_mode()) {
        let (_, v) = kv.unwrap();
        out.push_str(&String::from_utf8_lossy(&v));
        out.push('\n');
    }
    out
}

fn rocksdb_mode() -> driftdb_storage::rocksdb::IteratorMode<'static> {
    driftdb_storage::rocksdb::IteratorMode::Start
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secrets_are_stored_apart_redacted_everywhere_and_still_delivered() {
    let logs = capture_logs();
    driftdb_server::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp(t0().0 + 86_400_000));
    let recv = Receiver::start(200).await;
    let node = open(dir.path(), &clock, false);
    let (running, mut c) = serve(&node).await;
    c.models
        .create_model(pb::CreateModelRequest {
            model: Some(model_to_pb(&model("fraud", None), vec![])),
        })
        .await
        .unwrap();
    let rule = format!(
        r#"{{"id": "pager", "model": "fraud", "kind": "event", "event": "release", "severity": "critical",
            "actions": [
              {{"kind": "pagerduty", "routing_key": "PD-S3CRET-KEY", "url": "{pd}"}},
              {{"kind": "slack", "url": "{slack}"}},
              {{"kind": "jira", "url": "{jira}", "project": "ML", "user": "bot@example.com", "token": "JIRA-S3CRET-TOKEN"}},
              {{"kind": "webhook", "url": "{hook}"}}
            ]}}"#,
        pd = recv.url("/pd"),
        slack = recv.url("/services/T0/B0/SLACK-S3CRET-PATH"),
        jira = recv.url("/rest/api/2/issue"),
        hook = recv.url("/hook?token=HOOK-S3CRET-QUERY"),
    );
    let created = c
        .rules
        .create_rule(pb::CreateRuleRequest {
            definition_json: rule.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .rule
        .unwrap();
    let listed = c
        .rules
        .list_rules(pb::ListRulesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let http = running.bound.http;
    let get = |path: &str| {
        let url = format!("http://{http}{path}");
        async move { reqwest::get(url).await.unwrap().text().await.unwrap() }
    };
    let answers = [
        created.definition_json.clone(),
        format!("{listed:?}"),
        get("/rules").await,
        get("/rules/pager").await,
    ];
    for a in &answers {
        assert!(!a.contains("S3CRET"), "a secret in an answer: {a}");
    }
    let shown: serde_json::Value = serde_json::from_str(&created.definition_json).unwrap();
    let actions = shown["actions"].as_array().unwrap();
    assert_eq!(actions[0]["routing_key"], "***");
    assert_eq!(
        actions[1]["url"],
        format!("http://{}/***", recv.addr),
        "Slack URLs show scheme and host only"
    );
    assert_eq!(actions[2]["token"], "***");
    assert_eq!(actions[2]["user"], "bot@example.com");
    assert_eq!(actions[3]["url"], recv.url("/hook?***"));
    // On disk: the rule text (current and versions) holds none; the secrets record holds all.
    for t in meta_texts(&node, layout::META_RULE)
        .iter()
        .chain(&meta_texts(&node, layout::META_RULE_VERSION))
    {
        assert!(!t.contains("S3CRET"), "a secret in the stored rule: {t}");
    }
    let secrets = meta_texts(&node, layout::META_RULE_SECRET).join("\n");
    for s in [
        "PD-S3CRET-KEY",
        "SLACK-S3CRET-PATH",
        "JIRA-S3CRET-TOKEN",
        "HOOK-S3CRET-QUERY",
    ] {
        assert!(secrets.contains(s), "{s} missing from {secrets}");
    }

    // Firing delivers with the real values.
    let fired = c
        .rules
        .announce_event(pb::AnnounceEventRequest {
            model: "fraud".into(),
            event: "release".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!format!("{fired:?}").contains("S3CRET"), "{fired:?}");
    let hits = recv.wait_for(4).await;
    assert_eq!(hits.len(), 4, "{hits:?}");
    let hit = |prefix: &str| {
        hits.iter()
            .find(|h| h.target.starts_with(prefix))
            .unwrap_or_else(|| panic!("no request to {prefix}: {hits:?}"))
            .clone()
    };
    assert_eq!(hit("/pd").body["routing_key"], "PD-S3CRET-KEY");
    hit("/services/T0/B0/SLACK-S3CRET-PATH");
    assert_eq!(hit("/hook").target, "/hook?token=HOOK-S3CRET-QUERY");
    let jira = hit("/rest/api/2/issue");
    use base64::Engine as _;
    let basic =
        base64::engine::general_purpose::STANDARD.encode("bot@example.com:JIRA-S3CRET-TOKEN");
    assert_eq!(jira.authorization, Some(format!("Basic {basic}")));
    assert_eq!(
        hit("/pd").authorization,
        None,
        "credentials go to Jira only"
    );

    // Alert records and history show no secret, nor do the stored alert records.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let h = get("/alerts").await;
        assert!(!h.contains("S3CRET"), "{h}");
        if h.matches("\"delivered\":true").count() == 4 {
            break;
        }
        assert!(Instant::now() < deadline, "deliveries not recorded: {h}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!family_text(&node, layout::CF_ALERTS).contains("S3CRET"));

    // After a restart the secrets are joined back: another announcement delivers again.
    running.shutdown().await.unwrap();
    drop(c);
    drop(node);
    clock.advance(60_000);
    let node = open(dir.path(), &clock, false);
    assert_eq!(node.rules.book.error("pager"), None);
    let (running, mut c) = serve(&node).await;
    c.rules
        .announce_event(pb::AnnounceEventRequest {
            model: "fraud".into(),
            event: "release".into(),
            version: String::new(),
        })
        .await
        .unwrap();
    let hits = recv.wait_for(8).await;
    assert_eq!(hits.len(), 8);
    assert_eq!(
        hits.iter()
            .filter(|h| h.body["routing_key"] == "PD-S3CRET-KEY")
            .count(),
        2
    );
    // Deleting the rule deletes its secrets.
    c.rules
        .delete_rule(pb::DeleteRuleRequest { id: "pager".into() })
        .await
        .unwrap();
    assert!(meta_texts(&node, layout::META_RULE_SECRET).is_empty());
    running.shutdown().await.unwrap();
    let log = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(
        log.contains("authentication is switched off"),
        "driftdb's logs were captured"
    );
    assert!(!log.contains("S3CRET"), "a secret in the logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_webhook_targets_can_be_refused() {
    driftdb_server::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp(t0().0 + 86_400_000));
    let recv = Receiver::start(200).await;
    let caller = Principal::unrestricted();
    let rule = |id: &str| {
        format!(
            r#"{{"id": "{id}", "model": "m", "kind": "event", "event": "release", "severity": "low",
                "actions": [{{"kind": "webhook", "url": "{}"}}]}}"#,
            recv.url("/internal")
        )
    };
    {
        // Allowed by default: loopback receivers are the common test and intranet case.
        let node = open(dir.path(), &clock, false);
        node.registry.create(model("m", None)).unwrap();
        driftdb_server::rules::create_rule(&node.rules, &caller, &rule("before")).unwrap();
    }
    let node = open(dir.path(), &clock, true);
    let e = driftdb_server::rules::create_rule(&node.rules, &caller, &rule("after")).unwrap_err();
    assert!(
        e.to_string().contains("actions[0].url") && e.to_string().contains("private"),
        "{e}"
    );
    for url in [
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:80/x",
        "http://localhost:9/x",
        "http://10.0.0.8/x",
    ] {
        let r = format!(
            r#"{{"id": "x", "model": "m", "kind": "event", "event": "release", "severity": "low",
                "actions": [{{"kind": "webhook", "url": "{url}"}}]}}"#
        );
        assert!(
            driftdb_server::rules::create_rule(&node.rules, &caller, &r).is_err(),
            "{url}"
        );
    }
    // A rule stored before the policy was switched on is not delivered to its private target.
    let (running, mut c) = serve(&node).await;
    c.rules
        .announce_event(pb::AnnounceEventRequest {
            model: "m".into(),
            event: "release".into(),
            version: String::new(),
        })
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let dead = loop {
        let d = driftdb_server::rules::dead_letters(&node.rules).unwrap();
        if !d.is_empty() {
            break d;
        }
        assert!(Instant::now() < deadline, "never dead-lettered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("private")),
        "{dead:?}"
    );
    assert!(recv.hits().is_empty(), "the private target was called");
    running.shutdown().await.unwrap();
}
