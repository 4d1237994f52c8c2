//! The drift summary of one model version over a range (gRPC `DriftSummary`, HTTP
//! `GET /models/{id}/drift/summary`): features with high drift, the prediction's shift, and
//! labelled performance against the reference.

use std::collections::BTreeMap;

use driftdb_engine::model::Task;
use driftdb_engine::series::{FeatureRef, Segment};
use driftdb_engine::sketch::SeriesState;

use crate::ast::ModelRef;
use crate::error::Result;
use crate::exec::{ExecStats, Intervals, accumulate_features_for, edges_of, reference_base};
use crate::explain::{ALPHA, MIN_MAGNITUDE, drift_cell, overall_drift};
use crate::metrics::{Metric, evaluate, lookup, reference_performance};
use crate::plan::{Context, TimeRange, resolve_model};
use crate::table::{Cell, Table};

/// The three tables of a drift summary.
#[derive(Debug, Clone, Default)]
pub struct DriftSummary {
    /// Model version summarised.
    pub version: String,
    /// The range.
    pub range: Option<TimeRange>,
    /// Every feature's drift against the reference, worst first, with a `drifted` verdict.
    pub drifted_features: Table,
    /// `$score` against the reference: psi, ks, mean shift.
    pub prediction_shift: Table,
    /// Labelled performance in range against the reference's.
    pub performance: Table,
    /// Notes (no reference, no labels).
    pub warnings: Vec<String>,
}

/// Summarises `model` (`version`, or the default version) over `[from, to)`; `None` bounds
/// mean the last hour.
pub fn drift_summary(
    ctx: &Context<'_>,
    model: &str,
    version: Option<&str>,
    from: Option<driftdb_engine::time::Timestamp>,
    to: Option<driftdb_engine::time::Timestamp>,
) -> Result<DriftSummary> {
    Ok(drift_summary_with_states(ctx, model, version, from, to)?.0)
}

/// [`drift_summary`], and the merged state of every input feature and `$score` over the range
/// (segment `all`; what the summary was computed from). The states are merged without their
/// KLL sketches when every one of them holds counts on its reference's bins (the summary then
/// reads none); otherwise with them.
pub fn drift_summary_with_states(
    ctx: &Context<'_>,
    model: &str,
    version: Option<&str>,
    from: Option<driftdb_engine::time::Timestamp>,
    to: Option<driftdb_engine::time::Timestamp>,
) -> Result<(
    DriftSummary,
    BTreeMap<FeatureRef, crate::exec::Accumulators>,
)> {
    let (scope, range) = summary_scope(ctx, model, version, from, to)?;
    let mut stats = ExecStats::default();
    let features = scope.input_and_score_series();
    let acc = accumulate_all(ctx, &scope, &features, &Intervals(vec![range]), &mut stats)?;
    let summary = drift_summary_of(scope, range, &acc)?;
    Ok((summary, acc))
}

/// The model (`version`, or the default version) and the window-aligned range a drift summary
/// over `[from, to)` covers (`None` bounds: the last hour).
pub fn summary_scope(
    ctx: &Context<'_>,
    model: &str,
    version: Option<&str>,
    from: Option<driftdb_engine::time::Timestamp>,
    to: Option<driftdb_engine::time::Timestamp>,
) -> Result<(crate::plan::ModelScope, TimeRange)> {
    let scope = resolve_model(
        ctx,
        &ModelRef {
            id: model.to_string(),
            version: version.map(str::to_string),
            pos: Default::default(),
        },
    )
    .map_err(|e| match e {
        // Not named in any query text: no position to point at.
        crate::error::Error::NotFound {
            what, name, hint, ..
        } => crate::error::Error::NotFound {
            pos: None,
            what,
            name,
            hint,
        },
        crate::error::Error::Plan { message, .. } => {
            crate::error::Error::Plan { pos: None, message }
        }
        other => other,
    })?;
    let res = scope.resolution;
    let to = to.unwrap_or(driftdb_engine::time::Timestamp(
        res.window_start(ctx.now).0 + res.width_ms(),
    ));
    let from = res.window_start(from.unwrap_or(driftdb_engine::time::Timestamp(to.0 - 3_600_000)));
    if from >= to {
        return Err(crate::error::Error::plan(
            None,
            "empty range: `from` must be before `to`",
        ));
    }
    Ok((scope, TimeRange { from, to }))
}

/// The states of `features` (segment `all`) per interval: merged without KLL sketches when
/// every state holds counts on its reference's bins, read again with them otherwise.
pub fn accumulate_all(
    ctx: &Context<'_>,
    scope: &crate::plan::ModelScope,
    features: &[FeatureRef],
    intervals: &Intervals,
    stats: &mut ExecStats,
) -> Result<BTreeMap<FeatureRef, crate::exec::Accumulators>> {
    let all = |_: &FeatureRef, s: &Segment| *s == Segment::All;
    let acc = accumulate_features_for(ctx.reader, scope, features, intervals, &all, false, stats)?;
    if crate::exec::binned_throughout(&acc, scope.reference.as_deref()) {
        return Ok(acc);
    }
    accumulate_features_for(ctx.reader, scope, features, intervals, &all, true, stats)
}

/// The drift summary of `scope` over `range` from `acc`: the merged state of every input
/// feature and `$score` over the whole range (segment `all`, one slot each), as
/// [`drift_summary_with_states`] reads them.
pub fn drift_summary_of(
    scope: crate::plan::ModelScope,
    range: TimeRange,
    acc: &BTreeMap<FeatureRef, crate::exec::Accumulators>,
) -> Result<DriftSummary> {
    let mut warnings = Vec::new();
    let reference = scope.reference.as_deref();
    if reference.is_none() {
        warnings.push(format!(
            "{}@{} has no reference profile",
            scope.def.id, scope.version
        ));
    }

    let mut drifted = Table::new([
        "feature",
        "psi",
        "statistic",
        "p_adj",
        "missing_change",
        "n",
        "baseline_n",
        "drifted",
    ]);
    for (f, c, adj) in overall_drift(acc, reference)? {
        let is = adj < ALPHA && c.magnitude() >= MIN_MAGNITUDE;
        drifted.rows.push(vec![
            Cell::text(f.to_string()),
            Cell::num(c.psi),
            Cell::num(c.statistic),
            Cell::num(Some(adj)),
            Cell::num(c.missing_change),
            Cell::count(c.n),
            Cell::count(c.baseline_n),
            Cell::text(if is { "yes" } else { "no" }),
        ]);
    }

    let score = acc
        .get(&FeatureRef::Score)
        .and_then(|m| m.get(&Segment::All))
        .and_then(|v| v.first())
        .and_then(Option::as_ref);
    let mut shift = Table::new(["metric", "value", "n", "baseline_n"]);
    if let Some(s) = score {
        let base = reference_base(reference, &FeatureRef::Score, &Segment::All);
        let edges = edges_of(reference, &FeatureRef::Score, &Segment::All);
        if let Some(c) = drift_cell(s, base, edges)? {
            shift.rows.push(vec![
                Cell::text("psi"),
                Cell::num(c.psi),
                Cell::count(c.n),
                Cell::count(c.baseline_n),
            ]);
            shift.rows.push(vec![
                Cell::text("ks"),
                Cell::num(c.statistic),
                Cell::count(c.n),
                Cell::count(c.baseline_n),
            ]);
        }
        for name in ["mean_shift", "mean"] {
            if let Some(def) = lookup(name)
                && let Some(v) = evaluate(&Metric { def, param: None }, s, base, edges)?
            {
                shift.rows.push(vec![
                    Cell::text(name),
                    Cell::num(v.value),
                    Cell::count(v.n),
                    v.baseline_n.map_or(Cell::Null, Cell::count),
                ]);
            }
        }
    }

    let mut perf = Table::new(["metric", "value", "reference", "change", "n_labeled"]);
    let names: &[&str] = match scope.def.task {
        Task::Binary | Task::Multiclass => &[
            "auc",
            "ece",
            "logloss",
            "brier",
            "accuracy",
            "label_coverage",
        ],
        Task::Regression => &["rmse", "mae", "mape", "label_coverage"],
        Task::Ranking => &["ndcg", "ctr", "cvr", "rpm", "label_coverage"],
    };
    if let Some(s @ SeriesState::Score(_)) = score {
        let ref_seg = reference.and_then(|r| r.segments.get(&Segment::All));
        for name in names {
            let Some(def) = lookup(name) else { continue };
            let m = Metric {
                def,
                param: (*name == "ndcg").then_some(10.0),
            };
            let Some(v) = evaluate(&m, s, crate::metrics::BaseRef::Missing, None)? else {
                continue;
            };
            let r = ref_seg.and_then(|sp| reference_performance(&m, &sp.performance, sp.rows));
            perf.rows.push(vec![
                Cell::text(m.label()),
                Cell::num(v.value),
                Cell::num(r),
                Cell::num(v.value.zip(r).map(|(a, b)| a - b)),
                Cell::count(v.n),
            ]);
        }
    } else {
        warnings.push("no predictions in range".to_string());
    }
    Ok(DriftSummary {
        version: scope.version,
        range: Some(range),
        drifted_features: drifted,
        prediction_shift: shift,
        performance: perf,
        warnings,
    })
}
