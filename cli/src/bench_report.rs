//! `driftdb bench report` (BENCHMARKS.md, "Reports"): the server time of one report — what
//! `GET /models/{id}/report?format=html` and the `/ui` console's model page cost — for a wide
//! model over a day.
//!
//! An embedded node on a temp dir gets one model of `features` numeric features (default 500)
//! with a reference profile, and `hours` of 15-minute windows (default 24: 96 windows) of
//! `values` rows each, the later half drifted, with a binary label joined to every row (so the
//! performance and calibration parts are built too). The store is flushed and compacted; then
//! the report over the whole range is built (`Node::report`: the drift summary, the merged
//! distributions, the heatmap query, performance, `explain`) and rendered to HTML, `runs`
//! times. Prints the median and the slowest run of each step and the page size.

use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use driftdb_engine::ingest::{SegmentRegistry, TimeBounds, fold_batch};
use driftdb_engine::reference::ReferenceBuilder;
use driftdb_engine::series::{FeatureRef, Segment, SeriesKey};
use driftdb_engine::sketch::{PerformanceState, ScoreState, SeriesState};
use driftdb_engine::time::{ManualClock, Resolution, Timestamp};
use driftdb_server::auth::Principal;
use driftdb_server::node::{Node, ReportArgs};
use driftdb_server::query::TimeArg;
use driftdb_server::rules::RulesConfig;
use driftdb_storage::{StoreConfig, WriteSet};

use crate::bench_alerts::{engine_batch, fleet_model};
use crate::error::{Error, Result};
use crate::output;
use crate::rng::{SplitMix as Rng, peak_rss_mib};

/// Options of `driftdb bench report`.
#[derive(Debug, Args, Clone)]
pub struct ReportBenchArgs {
    /// Numeric features of the model.
    #[arg(long, default_value_t = 500)]
    pub features: usize,
    /// Hours of 15-minute windows reported on.
    #[arg(long, default_value_t = 24)]
    pub hours: usize,
    /// Rows per window.
    #[arg(long, default_value_t = 200)]
    pub values: usize,
    /// Reports built and rendered (the median and the slowest are printed).
    #[arg(long, default_value_t = 7)]
    pub runs: usize,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The `/ui` target: a page's server time for a 500-feature model over 24 h.
const TARGET_MS: f64 = 200.0;

/// Runs `driftdb bench report`.
pub async fn report(a: ReportBenchArgs) -> Result<()> {
    if a.features == 0 || a.hours == 0 || a.values == 0 || a.runs == 0 {
        return Err(Error::Invalid(
            "features, hours, values and runs must be positive".into(),
        ));
    }
    let dir = tempfile::tempdir().map_err(|e| Error::Internal(e.to_string()))?;
    let t0 = Timestamp(1_772_323_200_000); // 2026-03-01T00:00:00Z
    let end = Timestamp(t0.0 + a.hours as i64 * 3_600_000);
    let clock = ManualClock::new(end);
    let node = Node::open_with(
        dir.path(),
        StoreConfig::default(),
        RulesConfig::default(),
        Arc::new(clock),
        driftdb_server::auth::AuthMode::Disabled,
    )?;
    let setup = Instant::now();
    let args = a.clone();
    let loader = node.clone();
    tokio::task::spawn_blocking(move || load(&loader, &args, t0))
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
    node.store.settle()?;
    let setup_secs = setup.elapsed().as_secs_f64();

    let mut build_ms = Vec::with_capacity(a.runs);
    let mut render_ms = Vec::with_capacity(a.runs);
    let mut bytes = 0;
    let mut cells = 0;
    for _ in 0..a.runs {
        let b0 = Instant::now();
        let report = node
            .report(
                &Principal::unrestricted(),
                ReportArgs {
                    model: "wide".into(),
                    version: None,
                    from: Some(TimeArg::At(t0)),
                    to: Some(TimeArg::At(end)),
                    step_ms: None,
                    by: None,
                    source: "bench".into(),
                },
            )
            .await?;
        build_ms.push(b0.elapsed().as_secs_f64() * 1e3);
        let r0 = Instant::now();
        let page = driftdb_report::render::html(&report);
        render_ms.push(r0.elapsed().as_secs_f64() * 1e3);
        bytes = page.len();
        cells = report
            .heatmap
            .as_ref()
            .map_or(0, |h| h.features.len() * h.windows.len());
    }
    let total: Vec<f64> = build_ms
        .iter()
        .zip(&render_ms)
        .map(|(b, r)| b + r)
        .collect();
    let (med, max) = (median(&total), max_of(&total));
    if a.json {
        output::line(
            &serde_json::json!({
                "features": a.features, "hours": a.hours, "windows": a.hours * 4,
                "rows": a.hours * 4 * a.values, "runs": a.runs,
                "build_ms_median": median(&build_ms), "render_ms_median": median(&render_ms),
                "server_ms_median": med, "server_ms_max": max,
                "ratio_to_200ms_target": med / TARGET_MS, "heatmap_cells": cells,
                "html_bytes": bytes, "setup_seconds": setup_secs, "peak_rss_mib": peak_rss_mib(),
            })
            .to_string(),
        );
    } else {
        output::line(&format!(
            "report of a {}-feature model over {} h ({} windows of {} rows, labels joined)",
            a.features,
            a.hours,
            a.hours * 4,
            a.values
        ));
        output::line(&format!(
            "  build {:.1} ms + render {:.1} ms = {med:.1} ms median (slowest {max:.1} ms) over {} runs; {:.2}× the {TARGET_MS} ms target",
            median(&build_ms),
            median(&render_ms),
            a.runs,
            med / TARGET_MS
        ));
        output::line(&format!(
            "  page {} kB, {cells} heatmap cells; setup {setup_secs:.1} s",
            bytes / 1000
        ));
    }
    Ok(())
}

/// The model, its reference, and every window with labels joined.
fn load(node: &Node, a: &ReportBenchArgs, t0: Timestamp) -> Result<()> {
    let mut rng = Rng(0x7e907);
    let mut def = fleet_model("wide", a.features);
    def.max_label_delay = "30d".into();
    let mut rb = ReferenceBuilder::new(&def, "v1")?;
    let refrows = engine_batch(&def, &mut rng, 2000, Timestamp(t0.0 - 86_400_000), 0.0);
    let labels: Vec<Option<f64>> = refrows
        .rows
        .iter()
        .map(|r| r.score.map(|s| f64::from(u8::from(s > 0.5))))
        .collect();
    rb.add(&refrows, &labels)?;
    let entry = node.registry.create(def.clone())?;
    node.registry
        .put_reference(&entry, rb.finish(Timestamp(t0.0 - 86_400_000))?, false)?;
    let refs = entry
        .references
        .read()
        .map_err(|_| Error::Internal("lock".into()))?
        .clone();
    let windows = a.hours * 4;
    for w in 0..windows {
        let start = Timestamp(t0.0 + w as i64 * 900_000);
        let shift = if w >= windows / 2 { 20.0 } else { 0.0 };
        let batch = engine_batch(&def, &mut rng, a.values, Timestamp(start.0 + 60_000), shift);
        let mut ws = fold_window(&def, &batch, &refs);
        // Every row's label joins: what the label join would merge into the window's score.
        let mut perf = PerformanceState::default();
        for r in &batch.rows {
            if let Some(s) = r.score {
                let y = rng.unit() < s;
                perf.observe_binary(s, y)?;
            }
        }
        let key = SeriesKey {
            model: def.id.clone(),
            version: "v1".into(),
            feature: FeatureRef::Score,
            segment: Segment::All,
        };
        let score = SeriesState::Score(ScoreState {
            performance: perf,
            ..Default::default()
        });
        ws.merge(&key, Resolution::M15, start, &score);
        node.store.write(&ws)?;
    }
    Ok(())
}

/// The 15-minute deltas of `batch` folded by the engine, as the write ingest makes of them.
pub(crate) fn fold_window(
    def: &driftdb_engine::model::ModelDef,
    batch: &driftdb_engine::ingest::InferenceBatch,
    baselines: &dyn driftdb_engine::ingest::Baselines,
) -> WriteSet {
    let out = fold_batch(
        def,
        Resolution::M15,
        batch,
        baselines,
        &mut SegmentRegistry::new(64),
        TimeBounds {
            oldest: Timestamp(i64::MIN),
            newest: Timestamp(i64::MAX),
        },
        &|_, _| false,
    );
    let mut ws = WriteSet::new();
    for (key, ts, state) in &out.deltas {
        ws.merge(key, Resolution::M15, *ts, state);
    }
    ws
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
}

fn max_of(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}
