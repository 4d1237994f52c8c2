//! Grouped notifications and adaptive (anomaly) thresholds, end to end: a real server, real
//! webhook receivers on 127.0.0.1, data sent over gRPC, windows closed by the clock.

use std::time::{Duration, Instant};

use driftdb_engine::model::ModelDef;
use driftdb_engine::time::{ManualClock, Timestamp};
use driftdb_proto::v1 as pb;
use driftdb_server::rules::next_window;
use serde_json::{Value, json};
use tokio_stream::StreamExt;

use crate::alerts::{AlertServer, Hit, Receiver, W, fast_rules, settled_history, t};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

/// Registers model `m` with numeric features `f00`…, no segments, windows of `window`.
async fn create(s: &mut AlertServer, window: &str, features: usize) {
    let feats: serde_json::Map<String, Value> = (0..features)
        .map(|i| (format!("f{i:02}"), json!("numeric")))
        .collect();
    let def: ModelDef = serde_json::from_value(json!({
        "id": "m", "task": "binary", "window": window, "grace": "1m", "features": feats
    }))
    .unwrap();
    s.register(def).await;
}

/// Sends rows: `(ts, values of f00…)` each.
async fn send(s: &mut AlertServer, tag: &str, rows: &[(i64, Vec<f64>)]) {
    let n = rows.len();
    let features = rows.first().map_or(0, |r| r.1.len());
    let b = pb::InferenceBatch {
        model_id: "m".into(),
        request_ids: (0..n).map(|i| format!("{tag}-{i}")).collect(),
        ts_ms: rows.iter().map(|r| r.0).collect(),
        model_versions: vec!["v1".into()],
        features: (0..features)
            .map(|f| pb::FeatureColumn {
                name: format!("f{f:02}"),
                numbers: rows.iter().map(|r| r.1[f]).collect(),
                ..Default::default()
            })
            .collect(),
        scores: vec![0.5; n],
        ..Default::default()
    };
    let mut acks = s
        .client
        .ingest
        .ingest_inferences(tokio_stream::iter(vec![b]))
        .await
        .unwrap()
        .into_inner();
    let ack = acks.next().await.unwrap().unwrap();
    assert_eq!(ack.accepted, n as u64, "{ack:?}");
}

/// Closes the window starting at `start` (width `width`) by the clock and waits until it has
/// been evaluated.
async fn close(s: &mut AlertServer, start: i64, width: i64) {
    s.clock.set(Timestamp(start + width + 60_000));
    s.node.rules.wake();
    let deadline = Instant::now() + Duration::from_secs(10);
    while next_window(&s.node.rules, "m")
        .unwrap()
        .is_none_or(|n| n.millis() <= start)
    {
        assert!(
            Instant::now() < deadline,
            "window {start} was never evaluated"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn on(hits: &[Hit], path: &str) -> Vec<Hit> {
    hits.iter().filter(|h| h.path == path).cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_drifted_features_send_one_grouped_message_per_window_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let recv = Receiver::start().await;
    let mut s = AlertServer::start(dir.path(), ManualClock::new(t(0)), fast_rules()).await;
    create(&mut s, "15m", 12).await;
    s.add_rule(json!({
    "id": "drift", "model": "m", "selector": "*", "metric": "mean", "comparison": ">",
    "threshold": 10, "consecutive": 1, "severity": "high",
    "actions": [
        {"kind": "slack", "url": recv.url("/slack"), "group_by": ["model", "rule"]},
        {"kind": "webhook", "url": recv.url("/hook"), "group_by": ["model"]},
        {"kind": "pagerduty", "routing_key": "RK1", "url": recv.url("/pd"),
         "group_by": ["model"]},
    ]}))
    .await;
    // Windows 0 and 1: all 12 features drift (50 > 10); window 2: all heal.
    for (k, v) in [(0, 50.0), (1, 50.0), (2, 0.0)] {
        s.clock.set(t(k));
        let rows: Vec<(i64, Vec<f64>)> = (0..10)
            .map(|_| (t(k).millis() + 120_000, vec![v; 12]))
            .collect();
        send(&mut s, &format!("w{k}"), &rows).await;
        close(&mut s, t(k).millis(), W).await;
    }
    recv.wait_for(6).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hits = recv.hits();
    assert_eq!(
        hits.len(),
        6,
        "one message per action and status: {hits:#?}"
    );

    let slack = on(&hits, "/slack");
    assert_eq!(slack.len(), 2);
    let header = |h: &Hit| {
        h.body["blocks"][0]["text"]["text"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(header(&slack[0]), "FIRING · high · 12 series");
    assert_eq!(header(&slack[1]), "RESOLVED · high · 12 series");
    let list = slack[0].body["blocks"][2]["text"]["text"].as_str().unwrap();
    assert_eq!(list.lines().count(), 12, "{list}");
    for f in 0..12 {
        assert!(
            list.contains(&format!(
                "• f{f:02} [all] on m@v1: mean 50 &gt; 10 (rule drift)"
            )),
            "{list}"
        );
    }
    assert!(
        slack[0].body["text"]
            .as_str()
            .unwrap()
            .starts_with("FIRING: 12 alerts (model=m, rule=drift)"),
        "{}",
        slack[0].body
    );

    let hook = on(&hits, "/hook");
    assert_eq!(hook.len(), 2);
    for (h, status, still) in [(&hook[0], "firing", 12), (&hook[1], "resolved", 0)] {
        assert_eq!(h.body["schema"], "driftdb.alert_group.v1");
        assert_eq!(h.body["status"], status);
        assert_eq!(h.body["group"], json!({"model": "m"}));
        assert_eq!(h.body["count"], 12);
        assert_eq!(h.body["still_firing"], still);
        let alerts = h.body["alerts"].as_array().unwrap();
        assert_eq!(alerts.len(), 12);
        assert!(
            alerts
                .iter()
                .all(|a| a["status"] == status && a["rule_id"] == "drift")
        );
        assert_eq!(h.idempotency_key, h.body["event_id"].as_str().unwrap());
    }
    assert_ne!(hook[0].idempotency_key, hook[1].idempotency_key);

    // PagerDuty: one incident for the group, triggered and resolved with one dedup key.
    let pd = on(&hits, "/pd");
    assert_eq!(pd.len(), 2);
    assert_eq!(pd[0].body["event_action"], "trigger");
    assert_eq!(pd[0].body["payload"]["custom_details"]["count"], 12);
    assert_eq!(pd[1].body["event_action"], "resolve");
    assert_eq!(pd[0].body["dedup_key"], pd[1].body["dedup_key"]);

    // Every alert is in the history, each action marked delivered through its group.
    let hist = settled_history(&mut s).await;
    assert_eq!(hist.len(), 12, "{hist:?}");
    for a in &hist {
        assert_eq!(a.state, "resolved");
        assert_eq!(
            a.actions.len(),
            6,
            "3 actions × firing and resolution: {a:?}"
        );
        assert!(a.actions.iter().all(|x| x.delivered), "{a:?}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_during_a_group_wait_sends_the_group_once_with_every_member() {
    let dir = tempfile::tempdir().unwrap();
    let recv = Receiver::start().await;
    let clock = ManualClock::new(t(0));
    let mut s = AlertServer::start(dir.path(), clock.clone(), fast_rules()).await;
    create(&mut s, "15m", 12).await;
    s.add_rule(json!({
        "id": "drift", "model": "m", "selector": "*", "metric": "mean", "comparison": ">",
        "threshold": 10, "consecutive": 1, "severity": "medium",
        "actions": [{"kind": "webhook", "url": recv.url("/hook"), "group_by": ["model"],
                     "group_wait": "3s"}]}))
        .await;
    let rows: Vec<(i64, Vec<f64>)> = (0..10)
        .map(|_| (t(0).millis() + 120_000, vec![50.0; 12]))
        .collect();
    let fired = Instant::now();
    send(&mut s, "w0", &rows).await;
    close(&mut s, t(0).millis(), W).await;
    assert_eq!(s.history().await.len(), 12);
    s.stop().await;
    assert!(
        fired.elapsed() < Duration::from_secs(3),
        "the test must stop the server inside the group wait"
    );
    assert!(
        recv.hits().is_empty(),
        "nothing is sent before the wait ends"
    );

    let mut s = AlertServer::start(dir.path(), clock, fast_rules()).await;
    let hits = recv.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hits_after = recv.hits();
    assert_eq!(hits_after.len(), 1, "sent once: {hits:#?}");
    assert_eq!(hits_after[0].body["count"], 12);
    assert!(
        fired.elapsed() >= Duration::from_secs(3),
        "not before the wait"
    );
    let hist = settled_history(&mut s).await;
    assert!(
        hist.iter()
            .all(|a| a.actions.len() == 1 && a.actions[0].delivered),
        "{hist:?}"
    );
    s.stop().await;
}

/// The daily shape of the seasonal series: 100 ± 50 over a day.
fn season(hour: i64) -> f64 {
    100.0 + 50.0 * (2.0 * std::f64::consts::PI * hour as f64 / 24.0).sin()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anomaly_threshold_fires_on_a_spike_a_fixed_one_misses_and_not_on_daily_swings() {
    let dir = tempfile::tempdir().unwrap();
    let recv = Receiver::start().await;
    let day0 = t(0).millis();
    let mut s = AlertServer::start(
        dir.path(),
        ManualClock::new(Timestamp(day0 + 7 * DAY)),
        fast_rules(),
    )
    .await;
    create(&mut s, "1h", 1).await;
    // A week of history: every hour the daily shape plus a small offset of the day.
    let offsets = [-2.0, -1.0, 0.0, 1.0, 2.0, 1.0, -1.0];
    let mut history = Vec::new();
    for (d, off) in offsets.iter().enumerate() {
        for h in 0..24 {
            let ts = day0 + d as i64 * DAY + h * HOUR + 600_000;
            for _ in 0..20 {
                history.push((ts, vec![season(h) + off]));
            }
        }
    }
    send(&mut s, "hist", &history).await;
    let rule = |id: &str, threshold: Value| {
        json!({"id": id, "model": "m", "selector": "f00", "metric": "mean", "comparison": ">",
               "threshold": threshold, "consecutive": 1, "severity": "high",
               "actions": [{"kind": "webhook", "url": recv.url(&format!("/{id}"))}]})
    };
    s.add_rule(rule(
        "seasonal",
        json!({"anomaly": {"k": 3, "baseline": "same time 7d ago"}}),
    ))
    .await;
    s.add_rule(rule(
        "trailing",
        json!({"anomaly": {"k": 3, "baseline": "trailing 7d"}}),
    ))
    .await;
    // A band of half a standard deviation of the whole week: the daily swing breaches it,
    // which shows the trailing baseline is computed (and judged) at all.
    s.add_rule(rule(
        "trailing-narrow",
        json!({"anomaly": {"k": 0.5, "baseline": "trailing 7d", "direction": "up"}}),
    ))
    .await;
    // Above the daily maximum (152): a fixed bound that never sees normal days fire.
    s.add_rule(rule("fixed", json!(160))).await;
    // Day 7: a normal day, except at 18:00 (the daily low, 50) the value jumps to 110.
    for h in 0..24 {
        let start = day0 + 7 * DAY + h * HOUR;
        let v = if h == 18 { 110.0 } else { season(h) + 0.5 };
        let rows: Vec<(i64, Vec<f64>)> = (0..20).map(|_| (start + 600_000, vec![v])).collect();
        send(&mut s, &format!("d7h{h}"), &rows).await;
        close(&mut s, start, HOUR).await;
    }
    recv.wait_for(2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hits = recv.hits();
    assert!(on(&hits, "/fixed").is_empty(), "{hits:#?}");
    assert!(on(&hits, "/trailing").is_empty(), "{hits:#?}");
    let narrow = on(&hits, "/trailing-narrow");
    assert!(
        narrow.first().is_some_and(|h| h.body["status"] == "firing"),
        "{hits:#?}"
    );
    let seasonal = on(&hits, "/seasonal");
    assert_eq!(seasonal.len(), 2, "{hits:#?}");
    let spike = Timestamp(day0 + 7 * DAY + 18 * HOUR).to_rfc3339();
    let after = Timestamp(day0 + 7 * DAY + 19 * HOUR).to_rfc3339();
    assert_eq!(seasonal[0].body["status"], "firing");
    assert_eq!(seasonal[0].body["window_start"], spike.as_str());
    assert_eq!(seasonal[0].body["value"], 110.0);
    // The baseline at 18:00 is the seven days' 50 + offset: mean 50, sd of the offsets.
    let sd = {
        let m = offsets.iter().sum::<f64>() / 7.0;
        (offsets.iter().map(|o| (o - m).powi(2)).sum::<f64>() / 6.0).sqrt()
    };
    let bound = seasonal[0].body["threshold"].as_f64().unwrap();
    let want = season(18) + offsets.iter().sum::<f64>() / 7.0 + 3.0 * sd;
    assert!((bound - want).abs() < 1e-6, "bound {bound}, want {want}");
    assert!(
        seasonal[0].body["summary"]
            .as_str()
            .unwrap()
            .contains("mean ± 3σ of same time 7d ago"),
        "{}",
        seasonal[0].body
    );
    assert_eq!(seasonal[1].body["status"], "resolved");
    assert_eq!(seasonal[1].body["window_start"], after.as_str());
    s.stop().await;
}
