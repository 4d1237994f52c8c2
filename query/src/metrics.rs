//! DriftQL's metrics: what each name means, which series it applies to, and how its value is
//! computed from merged sketch states (every statistic itself lives in `driftdb_engine::stats`).
//!
//! Three families:
//! - **drift** (two-sample, against the baseline): `psi js hellinger` (10 reference-quantile
//!   bins for numeric series, the category union for categorical ones), `psi50 js50
//!   hellinger50`, `ks` (D, with a p-value), `wasserstein`, `mean_shift`, `chi2` (statistic, with
//!   a p-value), `linf`, `unseen_share`, `missing_rate_change`;
//! - **summary** (one window or range on its own): `count rows missing_rate invalid_rate mean
//!   std min max distinct quantile(q)`;
//! - **performance** (labelled predictions on `$score`): `auc ece logloss brier accuracy
//!   precision recall f1 positive_rate label_coverage rmse mae mape ndcg(k) ctr cvr rpm
//!   score_entropy`, and estimated without labels from the score distribution and the
//!   reference's calibration: `estimated_auc estimated_accuracy estimated_precision
//!   estimated_recall estimated_f1` (each with a standard error).

use driftdb_engine::reference::SeriesProfile;
use driftdb_engine::sketch::{CategoricalState, NumericState, PerformanceState, SeriesState};
use driftdb_engine::stats::categorical::categorical_drift;
use driftdb_engine::stats::divergence::{BinDrift, bin_drift};
use driftdb_engine::stats::estimate::{Calibration, estimate_performance, sketch_scores};
use driftdb_engine::stats::ks::{CdfSample, ks_and_wasserstein, ks_test};
use driftdb_engine::stats::performance::{binary_metrics, ranking_metrics, regression_metrics};
use driftdb_engine::stats::quantile::ReferenceEdges;
use driftdb_engine::stats::signals::histogram_entropy;
use driftdb_engine::stats::summary::{categorical_summary, numeric_summary};

use crate::error::Result;

pub use driftdb_engine::catalog::{Applies, Family, METRICS, MetricDef, lookup};

/// A metric with its parameter (`quantile`'s q, `ndcg`'s K).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metric {
    /// The definition.
    pub def: &'static MetricDef,
    /// `q` of `quantile`, `K` of `ndcg`.
    pub param: Option<f64>,
}

/// Whether computing `metric` reads the KLL sketch of a numeric or score state. PSI, JS and
/// Hellinger read the exact bin counts only (no bins, no value), the summaries their counts,
/// moments and extremes; everything else (KS, Wasserstein, quantiles, and any metric added
/// later until it is listed here) is assumed to read it.
pub fn needs_sketch(metric: &Metric) -> bool {
    needs_sketch_named(metric.def.name)
}

/// [`needs_sketch`] by the metric's name (unknown names read it).
pub fn needs_sketch_named(name: &str) -> bool {
    !matches!(
        name,
        "psi"
            | "js"
            | "hellinger"
            | "psi50"
            | "js50"
            | "hellinger50"
            | "mean_shift"
            | "missing_rate_change"
            | "count"
            | "rows"
            | "missing_rate"
            | "invalid_rate"
            | "mean"
            | "std"
            | "min"
            | "max"
            | "score_entropy"
            | "cost_per_1k"
            | "importance"
            | "importance_drift"
    )
}

impl Metric {
    /// The name shown in the `metric` column (`quantile(0.99)`, `ndcg@10`, `psi`).
    pub fn label(&self) -> String {
        match (self.def.name, self.param) {
            ("quantile", Some(q)) => format!("quantile({q})"),
            ("ndcg", Some(k)) => format!("ndcg@{k}"),
            (n, _) => n.to_string(),
        }
    }
}

/// A metric's result on one series and bucket.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Value {
    /// The value; `None` when undefined (empty side, no labels, no bins).
    pub value: Option<f64>,
    /// The current sample size the value rests on.
    pub n: u64,
    /// The baseline's sample size, when there is a baseline.
    pub baseline_n: Option<u64>,
    /// The p-value, for metrics that have one.
    pub p: Option<f64>,
    /// Bound on the value's sketch error, for `wasserstein` (docs/STATISTICS.md §7, §17).
    pub error: Option<f64>,
    /// The standard error of an estimate, for the `estimated_*` metrics (docs/STATISTICS.md §20).
    pub stderr: Option<f64>,
    /// The baseline's own value, for metrics computed on both sides (`importance`: the
    /// reference's share).
    pub baseline: Option<f64>,
}

/// What a series is compared against, resolved to states.
#[derive(Debug, Clone, Copy)]
pub enum BaseRef<'a> {
    /// No baseline data (e.g. nothing stored in the baseline range).
    Missing,
    /// A reference profile's series, with its segment's reference performance.
    Profile {
        /// The series' profile.
        series: &'a SeriesProfile,
        /// The segment's labelled reference performance.
        performance: &'a PerformanceState,
        /// Its calibration map, fitted when the profile was loaded.
        calibration: Option<&'a Calibration>,
    },
    /// Merged windows (previous, offset, range, other version).
    State(&'a SeriesState),
}

impl<'a> BaseRef<'a> {
    fn numeric(&self) -> Option<&'a NumericState> {
        match *self {
            BaseRef::Profile { series, .. } => series.numeric().map(|n| &n.state),
            BaseRef::State(s) => numeric_of(s),
            BaseRef::Missing => None,
        }
    }

    fn categorical(&self) -> Option<&'a CategoricalState> {
        match *self {
            BaseRef::Profile { series, .. } => series.categorical(),
            BaseRef::State(SeriesState::Categorical(c)) => Some(c),
            _ => None,
        }
    }

    fn performance(&self) -> Option<&'a PerformanceState> {
        match *self {
            BaseRef::Profile { performance, .. } => Some(performance),
            BaseRef::State(SeriesState::Score(s)) => Some(&s.performance),
            _ => None,
        }
    }
}

/// The numeric distribution of a state (a score's distribution for `$score`).
pub fn numeric_of(s: &SeriesState) -> Option<&NumericState> {
    match s {
        SeriesState::Numeric(n) => Some(n),
        SeriesState::Score(sc) => Some(&sc.distribution),
        SeriesState::Categorical(_) => None,
    }
}

/// Whether `def` can be computed on a series whose merged state looks like `state`.
pub fn applies_to(def: &MetricDef, state: &SeriesState) -> bool {
    match def.applies {
        Applies::Any => true,
        Applies::Numeric => !matches!(state, SeriesState::Categorical(_)),
        Applies::Categorical => matches!(state, SeriesState::Categorical(_)),
        Applies::Score => matches!(state, SeriesState::Score(_)),
        Applies::Cost => matches!(state, SeriesState::Numeric(_)),
    }
}

fn summary_value(value: Option<f64>, n: u64, base_n: Option<u64>) -> Value {
    Value {
        value,
        n,
        baseline_n: base_n,
        p: None,
        error: None,
        stderr: None,
        baseline: None,
    }
}

/// Computes `metric` on `current` against `base`; `edges` are the reference quantile edges
/// of this (version, feature, segment), which the bin metrics need. `Ok(None)` when the metric
/// does not apply to this kind of series.
pub fn evaluate(
    metric: &Metric,
    current: &SeriesState,
    base: BaseRef<'_>,
    edges: Option<&ReferenceEdges>,
) -> Result<Option<Value>> {
    if !applies_to(metric.def, current) {
        return Ok(None);
    }
    Ok(Some(match metric.def.family {
        Family::Drift => drift(metric, current, base, edges)?,
        Family::Summary => summary(metric, current, base)?,
        Family::Performance if is_estimated(metric.def) => estimated(metric, current, base)?,
        Family::Performance => performance(metric, current, base),
    }))
}

fn drift(
    metric: &Metric,
    current: &SeriesState,
    base: BaseRef<'_>,
    edges: Option<&ReferenceEdges>,
) -> Result<Value> {
    let name = metric.def.name;
    if let SeriesState::Categorical(cur) = current {
        let Some(b) = base.categorical() else {
            return Ok(summary_value(None, cur.count(), None));
        };
        let d = categorical_drift(b, cur)?;
        let mut v = summary_value(None, cur.count(), Some(b.count()));
        if let Some(d) = d {
            (v.value, v.p) = match name {
                "psi" => (Some(d.psi), None),
                "js" => (Some(d.js), None),
                "hellinger" => (Some(d.hellinger), None),
                "chi2" => (Some(d.chi2.statistic), Some(d.chi2.pvalue)),
                "linf" => (Some(d.linf), None),
                "unseen_share" => (Some(d.unseen_share), None),
                "missing_rate_change" => (d.missing_share_change, None),
                _ => (None, None),
            };
        } else if name == "missing_rate_change" {
            v.value = share(cur.count(), cur.count_total())
                .zip(share(b.count(), b.count_total()))
                .map(|(c, b)| c - b);
        }
        return Ok(v);
    }
    let Some(cur) = numeric_of(current) else {
        return Ok(Value::default());
    };
    let Some(b) = base.numeric() else {
        return Ok(summary_value(None, cur.count(), None));
    };
    let mut v = summary_value(None, cur.count(), Some(b.count()));
    match name {
        "psi" | "js" | "hellinger" | "psi50" | "js50" | "hellinger50" => {
            if let Some(edges) = edges {
                let bins = bin_metric(b, cur, edges, name.ends_with("50"))?;
                v.value = bins.map(|d| match name {
                    "psi" | "psi50" => d.psi,
                    "js" | "js50" => d.js,
                    _ => d.hellinger,
                });
            }
        }
        "ks" | "wasserstein" => {
            let (bc, cc) = match edges {
                Some(e) => (
                    CdfSample::from_state_binned(b, &e.q50)?,
                    CdfSample::from_state_binned(cur, &e.q50)?,
                ),
                None => (CdfSample::from_state(b)?, CdfSample::from_state(cur)?),
            };
            if name == "ks" {
                // D alone: W1's within-bin model is not needed.
                if let Some(ks) = ks_test(&bc, &cc) {
                    v.value = Some(ks.statistic);
                    v.p = Some(ks.pvalue_conservative);
                }
            } else if let Some((_, w1)) = ks_and_wasserstein(&bc, &cc) {
                v.value = Some(w1.value);
                v.error = Some(w1.error_bound);
            }
        }
        "mean_shift" => v.value = cur.mean().zip(b.mean()).map(|(c, b)| c - b),
        "missing_rate_change" => {
            v.value = share(cur.count(), cur.count_total())
                .zip(share(b.count(), b.count_total()))
                .map(|(c, b)| c - b);
        }
        _ => {}
    }
    Ok(v)
}

/// PSI/JS/Hellinger of two states binned on the reference's 50-bin edges, over those 50 bins
/// (`fine`) or the 10 bins they collapse to; `None` when the states are not binned on them.
fn bin_metric(
    baseline: &NumericState,
    current: &NumericState,
    edges: &ReferenceEdges,
    fine: bool,
) -> Result<Option<BinDrift>> {
    let (Some(b), Some(c)) = (baseline.bins(), current.bins()) else {
        return Ok(None);
    };
    if b.edges_id != c.edges_id || b.counts.len() != c.counts.len() {
        return Ok(None);
    }
    if b.edges_id == edges.q50.id() && b.counts.len() == edges.q50.num_bins() {
        if fine {
            return Ok(bin_drift(&b.counts, &c.counts)?);
        }
        return Ok(bin_drift(
            &edges.coarsen(&b.counts)?,
            &edges.coarsen(&c.counts)?,
        )?);
    }
    if !fine && b.edges_id == edges.q10.id() {
        return Ok(bin_drift(&b.counts, &c.counts)?);
    }
    Ok(None)
}

/// `(total − count) / total`: FORMULAS' missing share (missing and invalid values alike).
fn share(count: u64, total: u64) -> Option<f64> {
    (total > 0).then(|| (total - count) as f64 / total as f64)
}

fn summary(metric: &Metric, current: &SeriesState, base: BaseRef<'_>) -> Result<Value> {
    let name = metric.def.name;
    if let SeriesState::Categorical(c) = current {
        let s = categorical_summary(c);
        let base_n = base.categorical().map(CategoricalState::count);
        let value = match name {
            "count" => Some(s.count as f64),
            "rows" => Some(s.count_total as f64),
            "missing_rate" => s.missing_share,
            "invalid_rate" => s.invalid_rate,
            "distinct" => Some(s.n_distinct),
            _ => None,
        };
        return Ok(summary_value(value, s.count, base_n));
    }
    let Some(n) = numeric_of(current) else {
        return Ok(Value::default());
    };
    let base_n = base.numeric().map(NumericState::count);
    let value = match name {
        "count" => Some(n.count() as f64),
        "rows" => Some(n.count_total() as f64),
        "missing_rate" => share(n.count(), n.count_total()),
        "invalid_rate" => {
            (n.count_total() > 0).then(|| n.invalid() as f64 / n.count_total() as f64)
        }
        "mean" => n.mean(),
        "cost_per_1k" => n.mean().map(|m| 1000.0 * m),
        "std" => n.std(),
        "min" => n.min(),
        "max" => n.max(),
        "quantile" => {
            let q = metric.param.unwrap_or(0.5);
            numeric_summary(n, &[q])?.quantiles.first().map(|x| x.value)
        }
        "score_entropy" => n
            .bins()
            .and_then(|b| histogram_entropy(&b.counts))
            .map(|e| e.normalized),
        _ => None,
    };
    Ok(summary_value(value, n.count(), base_n))
}

fn performance(metric: &Metric, current: &SeriesState, base: BaseRef<'_>) -> Value {
    let SeriesState::Score(s) = current else {
        return Value::default();
    };
    let base_n = base.performance().map(PerformanceState::n_labeled);
    let perf = &s.performance;
    let name = metric.def.name;
    let (value, n) = if let Some(b) = &perf.binary {
        let m = binary_metrics(b, s.predictions);
        let v = match name {
            "auc" => m.roc_auc,
            "ece" => m.ece,
            "logloss" => m.log_loss,
            "brier" => m.brier,
            "accuracy" => m.accuracy,
            "precision" => m.precision,
            "recall" => m.recall,
            "f1" => m.f1,
            "positive_rate" => m.positive_rate,
            "label_coverage" => m.label_coverage,
            _ => None,
        };
        (v, m.n_labeled)
    } else if let Some(r) = &perf.regression {
        let m = regression_metrics(r, s.predictions);
        let v = match name {
            "rmse" => m.rmse,
            "mae" => m.mae,
            "mape" => m.mape,
            "label_coverage" => m.label_coverage,
            _ => None,
        };
        (v, m.n_labeled)
    } else if let Some(r) = &perf.ranking {
        let m = ranking_metrics(r, s.predictions);
        let v = match name {
            "ndcg" => m.ndcg_at(metric.param.unwrap_or(10.0) as usize),
            "ctr" => m.ctr,
            "cvr" => m.cvr,
            "rpm" => m.rpm,
            "label_coverage" => m.label_coverage,
            _ => None,
        };
        (v, m.impressions)
    } else {
        let v = (name == "label_coverage" && s.predictions > 0).then_some(0.0);
        (v, 0)
    };
    Value {
        value,
        n,
        baseline_n: base_n,
        p: None,
        error: None,
        stderr: None,
        baseline: None,
    }
}

/// Whether `def` is estimated from the score distribution without labels (`estimated_auc` …).
pub fn is_estimated(def: &MetricDef) -> bool {
    def.name.starts_with(ESTIMATED)
}

const ESTIMATED: &str = "estimated_";

/// An `estimated_*` metric: the current window's scores through the calibration map fitted on
/// the baseline's labelled scores (the reference profile's, by default). Undefined when the
/// baseline has too few labels of either class.
fn estimated(metric: &Metric, current: &SeriesState, base: BaseRef<'_>) -> Result<Value> {
    let SeriesState::Score(s) = current else {
        return Ok(Value::default());
    };
    let n = s.distribution.count();
    let labelled = base.performance().and_then(|p| p.binary.as_ref());
    let mut v = summary_value(None, n, labelled.map(|b| b.n));
    // A profile's map was fitted when it was loaded; merged baseline windows fit theirs here.
    let fitted;
    let cal = match base {
        BaseRef::Profile { calibration, .. } => calibration,
        _ => {
            fitted = labelled.and_then(Calibration::fit);
            fitted.as_ref()
        }
    };
    let Some(cal) = cal else {
        return Ok(v);
    };
    if n == 0 {
        return Ok(v);
    }
    let e = estimate_performance(&sketch_scores(&s.distribution.cdf()?), cal);
    let est = match &metric.def.name[ESTIMATED.len()..] {
        "auc" => e.auc,
        "accuracy" => e.accuracy,
        "precision" => e.precision,
        "recall" => e.recall,
        "f1" => e.f1,
        _ => None,
    };
    v.value = est.map(|x| x.value);
    v.stderr = est.map(|x| x.stderr);
    Ok(v)
}

/// The value of a performance metric on a reference segment's labelled rows (for `explain`
/// and relative comparisons); `None` when the reference has no such labels.
pub fn reference_performance(metric: &Metric, perf: &PerformanceState, rows: u64) -> Option<f64> {
    // An estimate's reference value is the realised metric on the reference's labels.
    let realised;
    let metric = if is_estimated(metric.def) {
        realised = Metric {
            def: driftdb_engine::catalog::lookup(&metric.def.name[ESTIMATED.len()..])?,
            param: metric.param,
        };
        &realised
    } else {
        metric
    };
    let state = SeriesState::Score(driftdb_engine::sketch::ScoreState {
        predictions: rows,
        distribution: NumericState::default(),
        performance: perf.clone(),
    });
    performance(metric, &state, BaseRef::Missing).value
}
