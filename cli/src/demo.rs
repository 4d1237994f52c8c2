//! `driftdb demo`: a guided tour on an embedded server (README.md).
//!
//! It starts a server on a temp data dir (loopback, random ports) with a simulated clock,
//! registers a fraud model, uploads a reference profile, registers four rules whose webhooks
//! point at a small receiver it also runs, then streams compressed-time traffic: every 15-minute
//! window is a few thousand predictions plus their labels, sent over gRPC; then the clock moves
//! past the window's close, the rules run, alerts stream back over `WatchAlerts` and the webhooks
//! arrive. From window 5 the `amount` feature drifts and the merchant-category mix shifts; in
//! windows 7–10 the scores of region `apac` are overconfident (calibration breaks there, then is
//! fixed and the alert resolves). At the end it prints the drift table, `explain`, and the alert
//! history, and removes its data.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::post;
use clap::Args;
use driftdb_engine::time::{Clock, ManualClock, Resolution, SystemClock, Timestamp};
use driftdb_proto::v1 as pb;
use driftdb_storage::StoreConfig;
use tokio_stream::StreamExt;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::output;
use crate::rng::SplitMix as Rng;
use driftdb_server::node::Node;
use driftdb_server::rules::RulesConfig;

/// Options of `driftdb demo`.
#[derive(Debug, Args, Clone)]
pub struct DemoArgs {
    /// 15-minute windows of simulated traffic.
    #[arg(long, default_value_t = 12)]
    pub windows: u32,
    /// Predictions per window.
    #[arg(long, default_value_t = 3000)]
    pub rows: usize,
    /// Keep the data here instead of a temp dir removed at the end.
    #[arg(long)]
    pub data: Option<std::path::PathBuf>,
    /// Seed of the simulation.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

const MODEL: &str = "fraud";
const VERSION: &str = "v1";
const REGIONS: [&str; 3] = ["eu", "us", "apac"];
const MERCHANTS: [&str; 6] = [
    "grocery",
    "travel",
    "electronics",
    "fashion",
    "gaming",
    "fuel",
];
const BASE_MIX: [f64; 6] = [0.35, 0.15, 0.10, 0.20, 0.05, 0.15];
const SHIFTED_MIX: [f64; 6] = [0.20, 0.10, 0.35, 0.15, 0.15, 0.05];
/// First window (0-based) with drifted inputs.
const DRIFT_FROM: u32 = 4;
/// Windows with broken calibration in `apac` (then the pipeline is fixed and the alert
/// resolves after two healthy windows).
const MISCALIBRATED: std::ops::Range<u32> = 6..10;

/// What the simulation does to one window.
#[derive(Debug, Clone, Copy)]
struct Regime {
    drifted: bool,
    miscalibrated: bool,
}

/// One simulated prediction.
struct Row {
    region: &'static str,
    amount: f64,
    merchant: &'static str,
    account_age_days: f64,
    hour: f64,
    score: f64,
    label: f64,
    latency_ms: f64,
}

fn simulate(rng: &mut Rng, regime: Regime) -> Row {
    let region = REGIONS[rng.pick(&[0.45, 0.35, 0.20])];
    let mix = if regime.drifted {
        &SHIFTED_MIX
    } else {
        &BASE_MIX
    };
    let m = rng.pick(mix);
    // Amounts are log-normal; drifted traffic spends about 2.2 times more.
    let mu = if regime.drifted { 4.2 } else { 3.4 };
    let amount = (mu + 0.8 * rng.normal()).exp();
    let account_age_days = (-(rng.unit().ln()) * 400.0).min(3650.0);
    let hour = (rng.unit() * 24.0).floor();
    // The true fraud probability, and a model score calibrated to it (a little noise).
    let risk = -3.0 + 0.9 * (amount.ln() - 3.4) + if m == 4 { 1.0 } else { 0.0 }
        - account_age_days / 900.0;
    let p = 1.0 / (1.0 + (-risk).exp());
    let noisy = (p.ln() - (1.0 - p).ln()) + 0.25 * rng.normal();
    let mut score = 1.0 / (1.0 + (-noisy).exp());
    if regime.miscalibrated && region == "apac" {
        // A broken feature pipeline in one region: scores pushed up, outcomes unchanged.
        score = (score + 0.35).min(0.99);
    }
    let label = if rng.unit() < p { 1.0 } else { 0.0 };
    Row {
        region,
        amount,
        merchant: MERCHANTS[m],
        account_age_days,
        hour,
        score,
        label,
        latency_ms: 4.0 + (-(rng.unit().ln())) * 6.0,
    }
}

fn model_def() -> pb::Model {
    use driftdb_engine::model::{FeatureKind, ModelDef, Task};
    let def = ModelDef {
        id: MODEL.into(),
        task: Task::Binary,
        window: "15m".into(),
        grace: "1m".into(),
        max_label_delay: "30d".into(),
        segments: vec!["region".into()],
        segment_cap: 64,
        features: [
            ("amount", FeatureKind::Numeric),
            ("merchant_category", FeatureKind::Categorical),
            ("account_age_days", FeatureKind::Numeric),
            ("hour_of_day", FeatureKind::Numeric),
        ]
        .into_iter()
        .map(|(n, k)| (n.to_string(), k))
        .collect(),
        sampling: 1.0,
        team: None,
    };
    driftdb_server::convert::model_to_pb(&def, Vec::new())
}

/// A columnar batch of `rows` at event times spread over `[start, start + width)`.
fn batch(
    rows: &[Row],
    ids: &[String],
    start: i64,
    width: i64,
    with_labels: bool,
) -> pb::InferenceBatch {
    let n = rows.len();
    let col = |name: &str, f: &dyn Fn(&Row) -> f64| pb::FeatureColumn {
        name: name.into(),
        numbers: rows.iter().map(f).collect(),
        ..Default::default()
    };
    pb::InferenceBatch {
        model_id: MODEL.into(),
        request_ids: ids.to_vec(),
        ts_ms: (0..n)
            .map(|i| start + (i as i64 * width) / n.max(1) as i64)
            .collect(),
        model_versions: vec![VERSION.into()],
        segments: vec![pb::SegmentColumn {
            key: "region".into(),
            values: rows.iter().map(|r| r.region.to_string()).collect(),
        }],
        features: vec![
            col("amount", &|r| r.amount),
            pb::FeatureColumn {
                name: "merchant_category".into(),
                categories: rows.iter().map(|r| r.merchant.to_string()).collect(),
                ..Default::default()
            },
            col("account_age_days", &|r| r.account_age_days),
            col("hour_of_day", &|r| r.hour),
        ],
        scores: rows.iter().map(|r| r.score).collect(),
        latency_ms: rows.iter().map(|r| r.latency_ms).collect(),
        labels: if with_labels {
            rows.iter().map(|r| r.label).collect()
        } else {
            Vec::new()
        },
        ..Default::default()
    }
}

/// The rules the demo registers; `hook` is the receiver's base URL.
fn rules(hook: &str) -> Vec<serde_json::Value> {
    use serde_json::json;
    vec![
        json!({"id": "input-drift", "model": MODEL, "selector": "*", "metric": "psi",
               "comparison": ">", "threshold": 0.2, "consecutive": 2, "severity": "high",
               "description": "An input distribution moved away from the reference (PSI > 0.2).",
               "actions": [{"kind": "slack", "url": format!("{hook}/slack")}]}),
        json!({"id": "calibration", "model": MODEL, "selector": "$score", "metric": "ece",
               "comparison": ">", "threshold": 0.08, "consecutive": 2, "severity": "critical",
               "segment": {"each": "region"},
               "description": "Scores no longer mean what they say in this region.",
               "actions": [{"kind": "pagerduty", "routing_key": "demo-routing-key",
                            "url": format!("{hook}/pagerduty")},
                           {"kind": "retrain", "url": format!("{hook}/retrain")}]}),
        json!({"id": "auc-drop", "model": MODEL, "selector": "$performance", "metric": "auc",
               "comparison": "<", "threshold": {"relative": -0.05}, "consecutive": 2,
               "severity": "medium", "segment": {"each": "region"},
               "actions": [{"kind": "webhook", "url": format!("{hook}/webhook")}]}),
        json!({"id": "latency-p99", "model": MODEL, "selector": "$latency",
               "metric": "quantile(0.99)", "comparison": ">", "threshold": 250,
               "consecutive": 3, "severity": "low", "actions": []}),
    ]
}

#[derive(Debug, Default)]
struct Received {
    count: AtomicU64,
}

async fn receive(
    State(r): State<Arc<Received>>,
    Path(kind): Path<String>,
    body: Bytes,
) -> &'static str {
    r.count.fetch_add(1, Ordering::Relaxed);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let what = match kind.as_str() {
        "pagerduty" => format!(
            "PagerDuty {} (dedup_key {})",
            v["event_action"].as_str().unwrap_or("?"),
            v["dedup_key"].as_str().unwrap_or("?")
        ),
        "slack" => format!(
            "Slack message: {}",
            v["text"]
                .as_str()
                .unwrap_or("?")
                .lines()
                .next()
                .unwrap_or("")
        ),
        "retrain" => format!(
            "retraining pipeline triggered for {}",
            v["model"].as_str().unwrap_or("?")
        ),
        _ => format!("JSON webhook ({})", v["status"].as_str().unwrap_or("?")),
    };
    output::line(&format!("           webhook received → {what}"));
    "ok"
}

async fn start_receiver() -> Result<(SocketAddr, Arc<Received>)> {
    let received = Arc::new(Received::default());
    let app = Router::new()
        .route("/{kind}", post(receive))
        .with_state(Arc::clone(&received));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| Error::Internal(format!("webhook receiver: {e}")))?;
    let addr = l.local_addr().map_err(|e| Error::Internal(e.to_string()))?;
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    Ok((addr, received))
}

fn heading(s: &str) {
    output::line("");
    output::line(&format!("── {s} ──"));
}

async fn print_query(c: &mut Client, text: &str) -> Result<()> {
    output::line(&format!("$ driftdb query '{text}'"));
    let resp = c
        .query
        .query(pb::QueryRequest { query: text.into() })
        .await?
        .into_inner();
    let table = driftdb_server::convert::table_from_pb(resp.table.unwrap_or_default());
    output::text(&table.render_text());
    Ok(())
}

/// Waits until the scheduler has evaluated `target` windows (bounded).
async fn evaluated(node: &Node, target: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.rules.metrics.windows_evaluated.load(Ordering::Relaxed) < target
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs the demo.
pub async fn run(a: DemoArgs) -> Result<()> {
    if a.windows == 0 || a.rows == 0 {
        return Err(Error::Invalid(
            "--windows and --rows must be positive".into(),
        ));
    }
    let started = Instant::now();
    let tmp;
    let dir = match &a.data {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| Error::File {
                path: d.display().to_string(),
                detail: e.to_string(),
            })?;
            d.clone()
        }
        None => {
            tmp = tempfile::tempdir().map_err(|e| Error::Internal(e.to_string()))?;
            tmp.path().to_path_buf()
        }
    };
    // Simulated time: yesterday, from midnight UTC, one window per step.
    let day = 86_400_000;
    let t0 = Timestamp((SystemClock.now().millis() / day - 1) * day);
    let clock = ManualClock::new(t0);
    let width = Resolution::M15.width_ms();
    let rules_cfg = RulesConfig {
        tick: Duration::from_millis(50),
        ..RulesConfig::default()
    };
    let dir2 = dir.clone();
    let clock2 = Arc::new(clock.clone());
    let node = tokio::task::spawn_blocking(move || {
        Node::open_with(
            &dir2,
            StoreConfig::default(),
            rules_cfg,
            clock2,
            // The demo serves on loopback only, for the person running it.
            driftdb_server::auth::AuthMode::Disabled,
        )
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))??;
    let any: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
    let running = driftdb_server::serve::start(node.clone(), any, any).await?;
    let (hook_addr, received) = start_receiver().await?;
    let hook = format!("http://{hook_addr}");
    let url = format!("http://{}", running.bound.grpc);
    let mut c = Client::connect(&url).await?;

    heading("driftdb demo");
    output::line(&format!(
        "embedded server: gRPC {} · HTTP {} · data {}",
        running.bound.grpc,
        running.bound.http,
        dir.display()
    ));
    output::line(&format!("webhook receiver: {hook}"));
    output::line(&format!(
        "simulated time from {} (one 15-minute window per step)",
        t0.to_rfc3339()
    ));

    c.models
        .create_model(pb::CreateModelRequest {
            model: Some(model_def()),
        })
        .await?;
    output::line(
        "model fraud: binary, 15m windows, features amount, merchant_category, account_age_days, hour_of_day; segment key region",
    );

    // Reference: 20,000 labelled rows of healthy traffic.
    let mut rng = Rng(a.seed);
    let healthy = Regime {
        drifted: false,
        miscalibrated: false,
    };
    let reference: Vec<Row> = (0..20_000).map(|_| simulate(&mut rng, healthy)).collect();
    let ref_t = t0.millis() - 7 * day;
    let mut chunks = vec![pb::ReferenceChunk {
        chunk: Some(pb::reference_chunk::Chunk::Header(pb::ReferenceHeader {
            model_id: MODEL.into(),
            model_version: VERSION.into(),
            replace: false,
        })),
    }];
    for (k, part) in reference.chunks(5000).enumerate() {
        let ids: Vec<String> = (0..part.len()).map(|i| format!("ref-{k}-{i}")).collect();
        chunks.push(pb::ReferenceChunk {
            chunk: Some(pb::reference_chunk::Chunk::Rows(batch(
                part, &ids, ref_t, day, true,
            ))),
        });
    }
    let summary = c
        .models
        .upload_reference(tokio_stream::iter(chunks))
        .await?
        .into_inner();
    output::line(&format!(
        "reference fraud@v1: {} labelled rows profiled (quantile bin edges fixed now)",
        summary.rows
    ));

    for r in rules(&hook) {
        let stored = c
            .rules
            .create_rule(pb::CreateRuleRequest {
                definition_json: r.to_string(),
            })
            .await?
            .into_inner()
            .rule
            .ok_or_else(|| Error::Internal("no rule returned".into()))?;
        output::line(&format!("rule {:<12} {}", stored.id, describe_rule(&r)));
    }

    // Alerts as they fire, from the gRPC stream.
    let mut watch = c
        .alerts
        .watch_alerts(pb::WatchAlertsRequest::default())
        .await?
        .into_inner();
    let alerts_seen = Arc::new(AtomicU64::new(0));
    let seen2 = Arc::clone(&alerts_seen);
    let watcher = tokio::spawn(async move {
        while let Some(Ok(alert)) = watch.next().await {
            seen2.fetch_add(1, Ordering::Relaxed);
            output::line(&format!(
                "   ALERT   {}",
                crate::commands::alert_line(&alert)
            ));
        }
    });

    heading("streaming traffic");
    let before = node.rules.metrics.windows_evaluated.load(Ordering::Relaxed);
    let mut evaluated_target = before;
    for w in 0..a.windows {
        let start = t0.millis() + i64::from(w) * width;
        let regime = Regime {
            drifted: w >= DRIFT_FROM,
            miscalibrated: MISCALIBRATED.contains(&w),
        };
        let rows: Vec<Row> = (0..a.rows).map(|_| simulate(&mut rng, regime)).collect();
        let ids: Vec<String> = (0..rows.len()).map(|i| format!("w{w}-{i}")).collect();
        clock.set(Timestamp(start));
        let b = batch(&rows, &ids, start, width, false);
        let acks: Vec<pb::BatchAck> = c
            .ingest
            .ingest_inferences(tokio_stream::iter(vec![b]))
            .await?
            .into_inner()
            .collect::<std::result::Result<Vec<_>, _>>()
            .await?;
        let accepted: u64 = acks.iter().map(|a| a.accepted).sum();
        // Labels arrive before the window closes (in production they may take days; the
        // window's performance then improves in accuracy as they join).
        let labels = pb::LabelBatch {
            model_id: MODEL.into(),
            labels: rows
                .iter()
                .zip(&ids)
                .map(|(r, id)| pb::Label {
                    request_id: id.clone(),
                    ts_ms: start + width,
                    label: Some(r.label),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let lacks: Vec<pb::LabelAck> = c
            .ingest
            .ingest_labels(tokio_stream::iter(vec![labels]))
            .await?
            .into_inner()
            .collect::<std::result::Result<Vec<_>, _>>()
            .await?;
        let joined: u64 = lacks.iter().map(|a| a.joined).sum();
        let mut notes = Vec::new();
        if regime.drifted {
            notes.push("amount ↑, merchant mix shifted");
        }
        if regime.miscalibrated {
            notes.push("apac scores overconfident");
        } else if w >= MISCALIBRATED.end {
            notes.push("apac pipeline fixed");
        }
        output::line(&format!(
            "window {:>2} {}  {accepted} predictions, {joined} labels  {}",
            w + 1,
            Timestamp(start).to_rfc3339(),
            if notes.is_empty() {
                "healthy".to_string()
            } else {
                notes.join("; ")
            }
        ));
        // Close the window: the clock passes its end plus grace, the rules run.
        let close = Timestamp(start + width + 60_000);
        clock.set(close);
        node.rules.wake();
        evaluated_target += 1;
        evaluated(&node, evaluated_target).await;
        // Let the alert stream and the webhooks catch up before the next window.
        tokio::time::sleep(Duration::from_millis(60)).await;
    }

    let end = Timestamp(t0.millis() + i64::from(a.windows) * width);
    let last_hour = Timestamp(end.millis() - 4 * width);
    heading("drift over the last hour, against the reference");
    print_query(
        &mut c,
        &format!(
            "psi(fraud.*) from {} to {}",
            last_hour.to_rfc3339(),
            end.to_rfc3339()
        ),
    )
    .await?;
    output::line("");
    print_query(
        &mut c,
        &format!(
            "ece(fraud) from {} to {} by region",
            last_hour.to_rfc3339(),
            end.to_rfc3339()
        ),
    )
    .await?;

    heading("explain: what drifted, and where performance dropped");
    print_query(
        &mut c,
        &format!(
            "explain(fraud) from {} to {}",
            last_hour.to_rfc3339(),
            end.to_rfc3339()
        ),
    )
    .await?;

    // Deliveries are asynchronous: wait (bounded) until the outbox is empty.
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.rules.metrics.outbox_depth.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    heading("alert history");
    let history = c
        .alerts
        .list_alerts(pb::ListAlertsRequest {
            model: MODEL.into(),
            limit: 100,
            ..Default::default()
        })
        .await?
        .into_inner()
        .alerts;
    for al in history.iter().rev() {
        let actions: Vec<String> = al
            .actions
            .iter()
            .map(|r| {
                format!(
                    "{} {}",
                    r.kind,
                    if r.delivered { "delivered" } else { "pending" }
                )
            })
            .collect();
        let series = match al.feature.as_str() {
            "" => format!("{}@{}", al.model, al.version),
            f => format!("{}@{}.{f}", al.model, al.version),
        };
        let segment = al
            .segment
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .next()
            .unwrap_or_else(|| "all".into());
        let hhmm = |ms: i64| {
            let t = Timestamp(ms).to_rfc3339();
            t.get(11..16).unwrap_or("?").to_string()
        };
        let resolved = if al.resolved_at_ms == 0 {
            "still firing".to_string()
        } else {
            format!("resolved {}", hhmm(al.resolved_at_ms))
        };
        output::line(&format!(
            "#{:<3} {:<8} {:<12} {series} [{segment}]  {} = {}  fired {}, {resolved}  [{}]",
            al.sequence,
            match al.severity {
                1 => "critical",
                2 => "high",
                3 => "medium",
                _ => "low",
            },
            al.rule_id,
            al.metric,
            driftdb_query::table::format_number(al.value),
            hhmm(al.fired_at_ms),
            if actions.is_empty() {
                "no actions".to_string()
            } else {
                actions.join(", ")
            }
        ));
    }
    watcher.abort();
    let m = &node.rules.metrics;
    output::line("");
    output::line(&format!(
        "{} windows, {} predictions, {} rule checks, {} alerts fired and {} resolved, {} webhooks received, in {:.1} s",
        a.windows,
        u64::from(a.windows) * a.rows as u64,
        m.checks.load(Ordering::Relaxed),
        m.fired.load(Ordering::Relaxed),
        m.resolved.load(Ordering::Relaxed),
        received.count.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    ));
    output::line(
        "next: `bash scripts/run.sh` builds the server; `driftdb serve` runs it, `driftdb --help` lists the commands",
    );
    running.shutdown().await?;
    Ok(())
}

fn describe_rule(r: &serde_json::Value) -> String {
    let seg = match r["segment"]["each"].as_str() {
        Some(k) => format!(" per {k}"),
        None => String::new(),
    };
    let actions: Vec<&str> = r["actions"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["kind"].as_str()).collect())
        .unwrap_or_default();
    format!(
        "{}({}) {} {}{} for {} windows → {} [{}]",
        r["metric"].as_str().unwrap_or("?"),
        r["selector"].as_str().unwrap_or("?"),
        r["comparison"].as_str().unwrap_or("?"),
        r["threshold"],
        seg,
        r["consecutive"],
        r["severity"].as_str().unwrap_or("?"),
        if actions.is_empty() {
            "history only".to_string()
        } else {
            actions.join(", ")
        }
    )
}
