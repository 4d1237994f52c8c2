//! `driftdb bench rules` and `driftdb bench alerts` (BENCHMARKS.md): rule evaluation for a whole
//! fleet at one window close, and alert latency from window close to webhook received.
//!
//! `bench rules` fills a store with one closed 15-minute window for `models × features`
//! numeric series (default 1,000 × 500 = 500,000), each model with a reference profile, and
//! one drift rule (`psi(*) > 0.2` over every model). It then moves the clock past the window's
//! close and times the evaluator: one DriftQL query per model, a state step per series, one
//! durable batch per model. Last it closes the store and times a restart with it full
//! (BENCHMARKS.md): the open up to a node that serves, with every model and reference loaded.
//!
//! `bench alerts` runs a real server and a webhook receiver on loopback. Each round sends one
//! window of data to a 50-feature model; the next round's data, dated past the window's end plus
//! grace, closes it by event time. The measured latency runs from sending that closing batch
//! (the window closes while the server takes it) to the webhook arriving: ingest of the batch,
//! evaluation, the durable write of the alert, and the delivery. Windows alternate
//! between breaching and healthy, so every close fires or resolves the rule.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use driftdb_engine::ingest::{
    InferenceBatch, InferenceRow, SegmentRegistry, TimeBounds, fold_batch,
};
use driftdb_engine::model::{FeatureKind, ModelDef, Task};
use driftdb_engine::reference::ReferenceBuilder;
use driftdb_engine::time::{ManualClock, Resolution, Timestamp};
use driftdb_proto::v1 as pb;
use driftdb_storage::{StoreConfig, WriteSet};
use tokio_stream::StreamExt;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::output;
use crate::rng::{SplitMix as Rng, peak_rss_mib};
use driftdb_server::convert::model_to_pb;
use driftdb_server::node::Node;
use driftdb_server::rules::RulesConfig;

/// Options of `driftdb bench rules`.
#[derive(Debug, Args, Clone)]
pub struct RulesBenchArgs {
    /// Models in the fleet.
    #[arg(long, default_value_t = 1000)]
    pub models: usize,
    /// Numeric features per model.
    #[arg(long, default_value_t = 500)]
    pub features: usize,
    /// Values per series in the window.
    #[arg(long, default_value_t = 200)]
    pub values: usize,
    /// Share of models whose inputs drift in the window (each of their features then fires
    /// the rule): 0.01 is a busy window, 0.1 an alert storm.
    #[arg(long, default_value_t = 0.01)]
    pub drifted: f64,
    /// Also mute: a second fleet rule (`missing_rate(*) > 0.5`, never firing here) that
    /// inhibits the drift rule, and silences on a tenth of the models plus every 200th (half of
    /// the drifting ones at the default share); the window then costs twice the checks, and
    /// every fired alert is matched against the silences.
    #[arg(long)]
    pub mute: bool,
    /// Also group: the drift rule gets a webhook action with `group_by: ["model"]`, so every
    /// fired alert joins its model's pending group, and the timed close includes turning every
    /// group into its one outbox entry (nothing listens at the URL; no delivery is attempted).
    #[arg(long)]
    pub group: bool,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Options of `driftdb bench alerts`.
#[derive(Debug, Args, Clone)]
pub struct AlertsBenchArgs {
    /// Window closes to measure.
    #[arg(long, default_value_t = 40)]
    pub windows: usize,
    /// Features of the model (one `psi(*)` rule watches them all).
    #[arg(long, default_value_t = 50)]
    pub features: usize,
    /// Rows per window.
    #[arg(long, default_value_t = 500)]
    pub rows: usize,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub(crate) fn fleet_model(id: &str, features: usize) -> ModelDef {
    ModelDef {
        id: id.into(),
        task: Task::Binary,
        window: "15m".into(),
        grace: "1m".into(),
        max_label_delay: "30d".into(),
        segments: Vec::new(),
        segment_cap: 64,
        features: (0..features)
            .map(|i| (format!("f{i:03}"), FeatureKind::Numeric))
            .collect(),
        sampling: 1.0,
        team: None,
    }
}

pub(crate) fn engine_batch(
    def: &ModelDef,
    rng: &mut Rng,
    n: usize,
    ts: Timestamp,
    shift: f64,
) -> InferenceBatch {
    use driftdb_engine::ingest::Column;
    let names: Vec<String> = def.features.keys().cloned().collect();
    InferenceBatch {
        model_id: def.id.clone(),
        feature_names: names.clone(),
        segment_keys: Vec::new(),
        rows: (0..n)
            .map(|i| InferenceRow {
                request_id: format!("r{i}"),
                ts,
                version: "v1".into(),
                score: Some(rng.unit()),
                ..Default::default()
            })
            .collect(),
        columns: names
            .iter()
            .enumerate()
            .map(|(j, _)| {
                Column::Numbers(
                    (0..n)
                        .map(|_| Some((rng.unit() * 100.0 + j as f64 + shift).ln()))
                        .collect(),
                )
            })
            .collect(),
        attributions: Vec::new(),
    }
}

/// Runs `driftdb bench rules`.
pub async fn rules(a: RulesBenchArgs) -> Result<()> {
    if a.models == 0 || a.features == 0 || a.values == 0 {
        return Err(Error::Invalid(
            "models, features and values must be positive".into(),
        ));
    }
    tokio::task::spawn_blocking(move || rules_blocking(&a))
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
}

/// The rules bench's node: default store and rules, the bench's clock, auth off.
pub(crate) fn open_fleet(dir: &std::path::Path, clock: &ManualClock) -> Result<Node> {
    Ok(Node::open_with(
        dir,
        StoreConfig::default(),
        RulesConfig::default(),
        Arc::new(clock.clone()),
        driftdb_server::auth::AuthMode::Disabled,
    )?)
}

fn rules_blocking(a: &RulesBenchArgs) -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::Internal(e.to_string()))?;
    let t = Timestamp(1_772_323_200_000); // 2026-03-01T00:00:00Z
    let clock = ManualClock::new(t);
    let node = open_fleet(dir.path(), &clock)?;
    let setup = Instant::now();
    let mut rng = Rng(0x5eed);
    // One reference, profiled once, given to every model under its own id.
    let proto = fleet_model("m0000", a.features);
    let mut rb = ReferenceBuilder::new(&proto, "v1")?;
    rb.add(
        &engine_batch(&proto, &mut rng, 1000, Timestamp(t.0 - 86_400_000), 0.0),
        &[],
    )?;
    let reference = rb.finish(Timestamp(t.0 - 86_400_000))?;
    let progress = indicatif::ProgressBar::with_draw_target(
        Some(a.models as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    for m in 0..a.models {
        let def = fleet_model(&format!("m{m:04}"), a.features);
        let entry = node.registry.create(def.clone())?;
        let mut profile = reference.clone();
        profile.model = def.id.clone();
        node.registry.put_reference(&entry, profile, false)?;
        // `drifted` of the models drift (their values move up), the rest look like the
        // reference.
        let every = (1.0 / a.drifted.clamp(1e-9, 1.0)).round().max(1.0) as usize;
        let shift = if a.drifted > 0.0 && m % every == 0 {
            60.0
        } else {
            0.0
        };
        let batch = engine_batch(&def, &mut rng, a.values, Timestamp(t.0 + 60_000), shift);
        let refs = entry
            .references
            .read()
            .map_err(|_| Error::Internal("lock".into()))?
            .clone();
        let out = fold_batch(
            &def,
            Resolution::M15,
            &batch,
            &refs,
            &mut SegmentRegistry::new(64),
            TimeBounds {
                oldest: Timestamp(t.0 - 86_400_000),
                newest: Timestamp(t.0 + 86_400_000),
            },
            &|_, _| false,
        );
        let mut ws = WriteSet::new();
        for (key, ts, state) in &out.deltas {
            ws.merge(key, Resolution::M15, *ts, state);
        }
        node.store.write(&ws)?;
        progress.inc(1);
    }
    progress.finish_and_clear();
    let mut drift_rule = serde_json::json!({"id": "fleet-drift", "model": "*", "selector": "*",
        "metric": "psi", "comparison": ">", "threshold": 0.2, "consecutive": 1,
        "severity": "high"});
    if a.group {
        drift_rule["actions"] = serde_json::json!([{"kind": "webhook",
            "url": "http://127.0.0.1:9/driftdb-bench", "group_by": ["model"]}]);
    }
    driftdb_server::rules::create_rule(
        &node.rules,
        &driftdb_server::auth::Principal::unrestricted(),
        &drift_rule.to_string(),
    )?;
    if a.mute {
        let op = driftdb_server::auth::Principal::unrestricted();
        driftdb_server::rules::create_rule(
            &node.rules,
            &op,
            r#"{"id": "fleet-missing", "model": "*", "selector": "*", "metric": "missing_rate",
                "comparison": ">", "threshold": 0.5, "consecutive": 1, "severity": "critical",
                "inhibits": ["fleet-drift"]}"#,
        )?;
        // One silence per 10 models, on models that stay quiet (every model m % 10 == 5), and
        // one on every 200th model, half of the drifting ones at the default share (m % 100 == 0
        // drift): every fired alert is matched against all of them, some are silenced.
        for m in (5..a.models).step_by(10).chain((0..a.models).step_by(200)) {
            driftdb_server::rules::create_silence(
                &node.rules,
                &op,
                &serde_json::json!({"matchers": {"model": format!("m{m:04}")}, "duration": "1d",
                                    "created_by": "bench", "comment": "muted"})
                .to_string(),
            )?;
        }
    }
    // Cursors start at the open window.
    driftdb_server::rules::evaluate_due(&node.rules)?;
    // Steady state: the setup's writes are flushed and compacted, so no background work
    // left over from the bulk load competes with the evaluation.
    node.store.settle()?;
    let setup_secs = setup.elapsed().as_secs_f64();
    tracing::info!(setup_secs, "rules bench: setup done, evaluating");
    // Close the window and time the evaluation of every model's rules.
    clock.set(Timestamp(t.0 + 16 * 60_000));
    let checks0 = node.rules.metrics.checks.load(Ordering::Relaxed);
    let t0 = Instant::now();
    let windows = driftdb_server::rules::evaluate_due(&node.rules)?;
    let groups_sent = if a.group {
        driftdb_server::rules::flush_due_groups(&node.rules, i64::MAX)?
    } else {
        0
    };
    let secs = t0.elapsed().as_secs_f64();
    let checks = node.rules.metrics.checks.load(Ordering::Relaxed) - checks0;
    let fired = node.rules.metrics.fired.load(Ordering::Relaxed);
    let series = (a.models * a.features) as u64;
    let rules_per_series = if a.mute { 2 } else { 1 };
    let log = node.rules.log.read_after(0, usize::MAX)?;
    let suppressed = log.iter().filter(|r| r.suppressed.is_some()).count();
    let inhibited = log
        .iter()
        .filter(|r| {
            r.suppressed
                .as_deref()
                .is_some_and(|w| w.starts_with("inhibited"))
        })
        .count();
    let rss = peak_rss_mib();
    // Restart with the full store (BENCHMARKS.md): close it, then time the open up to a node that
    // serves (store, registry with every reference, rules, alert log, keys).
    drop(node);
    let r0 = Instant::now();
    let node = open_fleet(dir.path(), &clock)?;
    let restart_secs = r0.elapsed().as_secs_f64();
    let reopened = node.registry.list()?.len();
    if reopened != a.models {
        return Err(Error::Internal(format!(
            "reopened {reopened} models, expected {}",
            a.models
        )));
    }
    let on_disk_mib = dir_bytes(dir.path()) as f64 / (1u64 << 20) as f64;
    if a.json {
        output::line(
            &serde_json::json!({
                "models": a.models, "features": a.features, "series": series,
                "drifted_share": a.drifted, "mute": a.mute, "group": a.group,
                "grouped_notifications": groups_sent,
                "windows_evaluated": windows, "checks": checks, "alerts_fired": fired,
                "alerts_suppressed": suppressed, "alerts_inhibited": inhibited,
                "seconds": secs, "series_per_s": checks as f64 / secs,
                "ratio_to_9s_target": secs / 9.0, "setup_seconds": setup_secs,
                "peak_rss_mib": rss, "restart_seconds": restart_secs, "store_mib": on_disk_mib,
            })
            .to_string(),
        );
    } else {
        output::line(&format!(
            "rules at one window close: {} models × {} features = {series} series",
            a.models, a.features
        ));
        output::line(&format!(
            "  {checks} checks, {fired} alerts fired ({suppressed} not delivered, {inhibited} of them inhibited), in {secs:.2} s ({:.0} series/s); {:.2}× the 9 s target",
            checks as f64 / secs,
            secs / 9.0
        ));
        if a.group {
            output::line(&format!(
                "  grouped: {groups_sent} notifications in the outbox (one per drifting model)"
            ));
        }
        output::line(&format!("  setup {setup_secs:.1} s, peak RSS {rss:.0} MiB"));
        output::line(&format!(
            "  restart with this store ({on_disk_mib:.0} MiB on disk, {reopened} models): {restart_secs:.2} s"
        ));
    }
    if checks != series * rules_per_series {
        return Err(Error::Internal(format!(
            "expected {} checks, made {checks}",
            series * rules_per_series
        )));
    }
    Ok(())
}

/// Bytes of the files under `dir`, recursively.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[derive(Debug, Default)]
struct Arrivals {
    at: Mutex<Vec<Instant>>,
    count: AtomicU64,
}

async fn arrive(axum::extract::State(s): axum::extract::State<Arc<Arrivals>>) -> &'static str {
    if let Ok(mut v) = s.at.lock() {
        v.push(Instant::now());
    }
    s.count.fetch_add(1, Ordering::Relaxed);
    "ok"
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs `driftdb bench alerts`.
pub async fn alerts(a: AlertsBenchArgs) -> Result<()> {
    if a.windows == 0 || a.features == 0 || a.rows == 0 {
        return Err(Error::Invalid(
            "windows, features and rows must be positive".into(),
        ));
    }
    let dir = tempfile::tempdir().map_err(|e| Error::Internal(e.to_string()))?;
    let t = Timestamp(1_772_323_200_000);
    let clock = ManualClock::new(t);
    let path = dir.path().to_path_buf();
    let c2 = clock.clone();
    let node = tokio::task::spawn_blocking(move || {
        Node::open_with(
            &path,
            StoreConfig::default(),
            RulesConfig::default(),
            Arc::new(c2),
            driftdb_server::auth::AuthMode::Disabled,
        )
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))??;
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let running = driftdb_server::serve::start(node.clone(), any, any).await?;
    let arrivals = Arc::new(Arrivals::default());
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(arrive))
        .with_state(Arc::clone(&arrivals));
    let l = tokio::net::TcpListener::bind(any)
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
    let hook = format!(
        "http://{}/hook",
        l.local_addr().map_err(|e| Error::Internal(e.to_string()))?
    );
    let receiver = tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    let mut c = Client::connect(&format!("http://{}", running.bound.grpc)).await?;
    let def = fleet_model("lat", a.features);
    c.models
        .create_model(pb::CreateModelRequest {
            model: Some(model_to_pb(&def, vec![])),
        })
        .await?;
    // Reference through the API.
    let mut rng = Rng(42);
    let pb_batch = |rng: &mut Rng, prefix: &str, n: usize, ts: i64, shift: f64| {
        let mut features = Vec::new();
        for (j, name) in def.features.keys().enumerate() {
            features.push(pb::FeatureColumn {
                name: name.clone(),
                numbers: (0..n)
                    .map(|_| (rng.unit() * 100.0 + j as f64 + shift).ln())
                    .collect(),
                ..Default::default()
            });
        }
        pb::InferenceBatch {
            model_id: def.id.clone(),
            request_ids: (0..n).map(|i| format!("{prefix}-{i}")).collect(),
            ts_ms: vec![ts; n],
            model_versions: vec!["v1".into()],
            features,
            scores: (0..n).map(|_| rng.unit()).collect(),
            labels: Vec::new(),
            ..Default::default()
        }
    };
    let mut reference = pb_batch(&mut rng, "ref", 2000, t.0 - 86_400_000, 0.0);
    reference.labels = vec![1.0; 2000];
    c.models
        .upload_reference(tokio_stream::iter(vec![
            pb::ReferenceChunk {
                chunk: Some(pb::reference_chunk::Chunk::Header(pb::ReferenceHeader {
                    model_id: def.id.clone(),
                    model_version: "v1".into(),
                    replace: false,
                })),
            },
            pb::ReferenceChunk {
                chunk: Some(pb::reference_chunk::Chunk::Rows(reference)),
            },
        ]))
        .await?;
    let rule = serde_json::json!({
        "id": "lat", "model": def.id, "selector": "f000", "metric": "psi",
        "comparison": ">", "threshold": 0.2, "consecutive": 1, "severity": "high",
        "actions": [{"kind": "webhook", "url": hook}]
    });
    c.rules
        .create_rule(pb::CreateRuleRequest {
            definition_json: rule.to_string(),
        })
        .await?;
    // A second rule watches every feature: the evaluation a window close really costs.
    c.rules
        .create_rule(pb::CreateRuleRequest {
            definition_json: serde_json::json!({
                "id": "all", "model": def.id, "selector": "*", "metric": "psi",
                "comparison": ">", "threshold": 100, "consecutive": 3, "severity": "low"
            })
            .to_string(),
        })
        .await?;
    node.rules.wake();
    let deadline = Instant::now() + Duration::from_secs(10);
    while driftdb_server::rules::next_window(&node.rules, &def.id)?.is_none()
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let width = Resolution::M15.width_ms();
    let mut latencies = Vec::new();
    let send = |c: &mut Client, b: pb::InferenceBatch| {
        let mut c = c.clone();
        async move {
            let mut acks = c
                .ingest
                .ingest_inferences(tokio_stream::iter(vec![b]))
                .await?
                .into_inner();
            while let Some(ack) = acks.next().await {
                ack?;
            }
            Ok::<(), Error>(())
        }
    };
    for k in 0..=a.windows {
        // Data at start + 2 minutes: it closes window k - 1 (grace 1 minute) when acknowledged.
        let start = t.0 + k as i64 * width;
        clock.set(Timestamp(start));
        let shift = if k % 2 == 1 { 400.0 } else { 0.0 };
        let b = pb_batch(&mut rng, &format!("w{k}"), a.rows, start + 120_000, shift);
        let before = arrivals.count.load(Ordering::Relaxed);
        // The window closes while the server takes this batch (the watermark passes its end
        // plus grace); the webhook can arrive before the client has read the ack, so the clock
        // starts when the batch is sent: an upper bound of close → webhook.
        let closed = Instant::now();
        send(&mut c, b).await?;
        if k == 0 {
            continue;
        }
        // Window k - 1 breached if odd, healed if even (after the first firing): every close
        // from window 1 on is a transition with one webhook.
        if k < 2 {
            continue;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while arrivals.count.load(Ordering::Relaxed) <= before && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let got = arrivals
            .at
            .lock()
            .map_err(|_| Error::Internal("lock".into()))?
            .get(before as usize)
            .copied();
        match got {
            Some(at) => latencies.push(at.saturating_duration_since(closed).as_secs_f64() * 1e3),
            None => {
                return Err(Error::Internal(format!(
                    "no webhook within 10 s of window {} closing",
                    k - 1
                )));
            }
        }
    }
    running.shutdown().await?;
    receiver.abort();
    latencies.sort_by(f64::total_cmp);
    let (p50, p99, max) = (
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN),
    );
    if a.json {
        output::line(
            &serde_json::json!({
                "windows": latencies.len(), "features": a.features, "rows": a.rows,
                "latency_ms_p50": p50, "latency_ms_p99": p99, "latency_ms_max": max,
                "ratio_p50_to_1s_target": p50 / 1000.0, "ratio_max_to_1s_target": max / 1000.0,
            })
            .to_string(),
        );
    } else {
        output::line(&format!(
            "alert latency, closing batch sent → webhook received ({} closes, {}-feature model):",
            latencies.len(),
            a.features
        ));
        output::line(&format!(
            "  p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms; p50 is {:.4}× the 1 s target",
            p50 / 1000.0
        ));
    }
    Ok(())
}
