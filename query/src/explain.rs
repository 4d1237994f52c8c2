//! `explain(model) over R`: where is the model going wrong, and how.
//!
//! Three sections in one table (column `section`):
//! - `drift`: every (feature, segment) against its reference, ranked by its contribution to
//!   drift, `magnitude × volume share`, where magnitude is PSI (10 reference-quantile bins, or
//!   categories) plus the absolute change of the missing share (a feature that goes missing
//!   drifts without moving its present values). p-values (chi-square homogeneity over the 10
//!   reference-quantile bins for numeric series — exact counts, so deterministic — or KS where
//!   a series has no bins; chi-square over categories for categorical series; a two-proportion
//!   z-test for the missing share) are adjusted with
//!   Benjamini–Hochberg across every pair; a pair is `drifted` when its adjusted p < 0.05 and
//!   its magnitude ≥ 0.02. When the model's events carry attributions, the contribution is
//!   also weighted by the feature's importance — its share of the mean |attribution| times the
//!   number of explained features, so equal importance weighs 1 — from the reference profile
//!   when it has attributions, else from the range itself: the ranking is by **impact**, and a
//!   feature that drifted but does not matter ranks below one that matters (a warning says
//!   which importance was used; features without attributions and `$score` weigh 1).
//! - `performance`: every segment with labels, by its performance drop against the overall
//!   value weighted by its volume share (AUC for binary models, RMSE for regression, NDCG@10
//!   for ranking), and its calibration (ECE) against the segment's reference.
//!   Binary models also compare each segment's realised AUC with the AUC estimated from the
//!   same labelled rows' scores through the reference's calibration (a realised value well
//!   below the estimate is concept drift, docs/STATISTICS.md §20).
//! - `signal`: the silent-failure patterns of query/DRIFTQL.md: stable inputs with falling performance,
//!   a score-entropy spike, a calibration shift, concept drift (realised below estimated AUC),
//!   and collapse of distinct items in the top K.

use std::collections::BTreeMap;

use driftdb_engine::model::Task;
use driftdb_engine::series::{FeatureRef, Segment, TOP_K_ITEMS};
use driftdb_engine::sketch::{PerformanceState, SeriesState};
use driftdb_engine::stats::categorical::categorical_drift;
use driftdb_engine::stats::categorical::chi_square_homogeneity;
use driftdb_engine::stats::divergence::bin_drift;
use driftdb_engine::stats::estimate::{estimate_performance, labelled_scores};
use driftdb_engine::stats::fdr::benjamini_hochberg;
use driftdb_engine::stats::ks::{CdfSample, ks_test};
use driftdb_engine::stats::performance::{
    binary_metrics, ranking_metrics, regression_metrics, roc_auc_from_histogram,
};
use driftdb_engine::stats::quantile::ReferenceEdges;
use driftdb_engine::stats::signals::{calibration_shift, histogram_entropy, topk_diversity};

use crate::error::Result;
use crate::exec::{ExecStats, Intervals, accumulate_features, edges_of, reference_base};
use crate::metrics::{BaseRef, numeric_of};
use crate::plan::{Context, ExplainPlan};
use crate::table::{Cell, Table};

/// Adjusted p-value below which a pair counts as drifted.
pub const ALPHA: f64 = 0.05;
/// Smallest magnitude (PSI + |Δ missing share|) a drifted pair must reach.
pub const MIN_MAGNITUDE: f64 = 0.02;
/// ECE above the segment's reference by at least this much is a calibration shift.
pub const ECE_SHIFT: f64 = 0.05;
/// A relative performance drop of at least this much against the reference is "falling".
pub const PERF_DROP: f64 = 0.05;
/// Realised AUC below the AUC estimated from the same rows' scores by more than this many
/// standard errors (and by at least [`CONCEPT_GAP_MIN`]) is a concept-drift flag.
pub const CONCEPT_GAP_Z: f64 = 3.0;
/// Smallest AUC gap between estimate and realised value that is flagged.
pub const CONCEPT_GAP_MIN: f64 = 0.02;
/// Normalised score entropy moving by at least this much is a spike (or collapse).
pub const ENTROPY_SHIFT: f64 = 0.1;
/// Fewest labelled rows a segment needs before its performance is judged.
pub const MIN_LABELED: u64 = 30;
/// A ranking model's share of distinct items in its top-K slots below this fraction of the
/// reference's share (at the same number of slots) is a collapse of distinct items in top-K.
pub const TOPK_COLLAPSE_RATIO: f64 = 0.5;

/// Drift of one series against its baseline, as `explain` and the drift summary use it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriftCell {
    /// PSI (10 bins, or categories); `None` without bins.
    pub psi: Option<f64>,
    /// The chi-square statistic (over the 10 reference bins, or categories), or KS D for
    /// numeric series without bins.
    pub statistic: Option<f64>,
    /// Its p-value (sketch-aware when it is KS's).
    pub p: Option<f64>,
    /// `missing_share(current) − missing_share(baseline)`.
    pub missing_change: Option<f64>,
    /// Two-proportion z-test p-value of the missing-share change.
    pub p_missing: Option<f64>,
    /// Current non-null count.
    pub n: u64,
    /// Current rows (missing included).
    pub rows: u64,
    /// Baseline non-null count.
    pub baseline_n: u64,
}

impl DriftCell {
    /// `PSI + |Δ missing share|`.
    pub fn magnitude(&self) -> f64 {
        self.psi.unwrap_or(0.0) + self.missing_change.map_or(0.0, f64::abs)
    }

    /// The smaller of the two p-values, Bonferroni-doubled when both exist.
    pub fn p_combined(&self) -> Option<f64> {
        match (self.p, self.p_missing) {
            (Some(a), Some(b)) => Some((2.0 * a.min(b)).min(1.0)),
            (a, b) => a.or(b),
        }
    }
}

fn missing_test(
    cur_rows: u64,
    cur_n: u64,
    base_rows: u64,
    base_n: u64,
) -> (Option<f64>, Option<f64>) {
    if cur_rows == 0 || base_rows == 0 {
        return (None, None);
    }
    let (m1, m0) = ((cur_rows - cur_n) as f64, (base_rows - base_n) as f64);
    let (r1, r0) = (cur_rows as f64, base_rows as f64);
    let (s1, s0) = (m1 / r1, m0 / r0);
    let pooled = (m1 + m0) / (r1 + r0);
    let se = (pooled * (1.0 - pooled) * (1.0 / r1 + 1.0 / r0)).sqrt();
    let p = if se > 0.0 {
        // Two-sided normal tail via the Kolmogorov-free erfc identity: 2·Q(|z|).
        let z = ((s1 - s0) / se).abs();
        Some(normal_two_sided(z))
    } else {
        Some(1.0)
    };
    (Some(s1 - s0), p)
}

/// `2·(1 − Φ(|z|))`, from a rational erfc approximation (abs error < 1.2e-7).
pub fn normal_two_sided(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * x);
    let y = t
        * (-x * x - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    y.clamp(0.0, 1.0)
}

/// Drift of `current` against `base` (reference or merged windows).
pub fn drift_cell(
    current: &SeriesState,
    base: BaseRef<'_>,
    edges: Option<&ReferenceEdges>,
) -> Result<Option<DriftCell>> {
    if let SeriesState::Categorical(cur) = current {
        let Some(b) = base_categorical(base) else {
            return Ok(None);
        };
        let d = categorical_drift(b, cur)?;
        let (mc, pm) = missing_test(cur.count_total(), cur.count(), b.count_total(), b.count());
        return Ok(Some(DriftCell {
            psi: d.as_ref().map(|d| d.psi),
            statistic: d.as_ref().map(|d| d.chi2.statistic),
            p: d.as_ref().map(|d| d.chi2.pvalue),
            missing_change: mc,
            p_missing: pm,
            n: cur.count(),
            rows: cur.count_total(),
            baseline_n: b.count(),
        }));
    }
    let Some(cur) = numeric_of(current) else {
        return Ok(None);
    };
    let Some(b) = base_numeric(base) else {
        return Ok(None);
    };
    // With both sides on the reference's bins, test homogeneity of the 10 bin counts
    // (chi-square): exact counts, so the verdict is deterministic and costs no CDF extraction.
    // Without bins, fall back to KS on the KLL CDFs.
    let binned = match edges {
        Some(e) => match (b.bins(), cur.bins()) {
            (Some(bb), Some(cb))
                if bb.edges_id == e.q50.id()
                    && cb.edges_id == e.q50.id()
                    && bb.counts.len() == e.q50.num_bins() =>
            {
                let (base10, cur10) = (e.coarsen(&bb.counts)?, e.coarsen(&cb.counts)?);
                let d = bin_drift(&base10, &cur10)?;
                let chi = chi_square_homogeneity(&base10, &cur10)?;
                Some((d.map(|d| d.psi), chi.map(|c| (c.statistic, c.pvalue))))
            }
            _ => None,
        },
        None => None,
    };
    let (psi, test) = match binned {
        Some(x) => x,
        None => {
            let ks = ks_test(&CdfSample::from_state(b)?, &CdfSample::from_state(cur)?);
            (None, ks.map(|k| (k.statistic, k.pvalue_conservative)))
        }
    };
    let (mc, pm) = missing_test(cur.count_total(), cur.count(), b.count_total(), b.count());
    Ok(Some(DriftCell {
        psi,
        statistic: test.map(|t| t.0),
        p: test.map(|t| t.1),
        missing_change: mc,
        p_missing: pm,
        n: cur.count(),
        rows: cur.count_total(),
        baseline_n: b.count(),
    }))
}

fn base_numeric<'a>(b: BaseRef<'a>) -> Option<&'a driftdb_engine::sketch::NumericState> {
    match b {
        BaseRef::Profile { series, .. } => series.numeric().map(|n| &n.state),
        BaseRef::State(s) => numeric_of(s),
        BaseRef::Missing => None,
    }
}

fn base_categorical<'a>(b: BaseRef<'a>) -> Option<&'a driftdb_engine::sketch::CategoricalState> {
    match b {
        BaseRef::Profile { series, .. } => series.categorical(),
        BaseRef::State(SeriesState::Categorical(c)) => Some(c),
        _ => None,
    }
}

/// The headline performance metric of a task: (name, value, labelled n, higher is better).
pub fn headline(
    task: Task,
    perf: &PerformanceState,
    predictions: u64,
) -> Option<(&'static str, f64, u64, bool)> {
    match task {
        Task::Binary | Task::Multiclass => {
            let m = binary_metrics(perf.binary.as_ref()?, predictions);
            Some(("auc", m.roc_auc?, m.n_labeled, true))
        }
        Task::Regression => {
            let m = regression_metrics(perf.regression.as_ref()?, predictions);
            Some(("rmse", m.rmse?, m.n_labeled, false))
        }
        Task::Ranking => {
            let m = ranking_metrics(perf.ranking.as_ref()?, predictions);
            Some(("ndcg@10", m.ndcg_at(10)?, m.impressions, true))
        }
    }
}

fn seg_name(s: &Segment) -> String {
    match s {
        Segment::All => "all".to_string(),
        Segment::Value { key, value } => format!("{key}={value}"),
    }
}

struct Out {
    table: Table,
}

impl Out {
    #[expect(
        clippy::too_many_arguments,
        reason = "one call per table row, every column named"
    )]
    fn row(
        &mut self,
        section: &str,
        feature: &str,
        segment: &str,
        metric: &str,
        value: Option<f64>,
        baseline: Option<f64>,
        n: Option<u64>,
        score: Option<f64>,
        p_adj: Option<f64>,
        finding: &str,
    ) {
        self.table.rows.push(vec![
            Cell::text(section),
            Cell::text(feature),
            Cell::text(segment),
            Cell::text(metric),
            Cell::num(value),
            Cell::num(baseline),
            n.map_or(Cell::Null, Cell::count),
            Cell::num(score),
            Cell::num(p_adj),
            Cell::text(finding),
        ]);
    }
}

/// Most drift rows listed (the highest contributions).
pub const MAX_DRIFT_ROWS: usize = 25;

/// Runs `explain`.
pub fn run(
    ctx: &Context<'_>,
    plan: &ExplainPlan,
    stats: &mut ExecStats,
    warnings: &mut Vec<String>,
) -> Result<Table> {
    let scope = &plan.scope;
    let reference = scope.reference.as_deref();
    if reference.is_none() {
        warnings.push(format!(
            "{}@{} has no reference profile: explain needs one to measure drift and performance change",
            scope.def.id, scope.version
        ));
    }
    let ivs = Intervals(vec![plan.range]);
    let features = scope.input_and_score_series();
    // Without sketches when every numeric state is on its reference's bins (the drift tests
    // then read none); with them otherwise (KS on the KLL CDFs).
    let mut acc = crate::exec::accumulate_features_for(
        ctx.reader,
        scope,
        &features,
        &ivs,
        &|_, _| true,
        false,
        stats,
    )?;
    if !crate::exec::binned_throughout(&acc, reference) {
        acc = accumulate_features(ctx.reader, scope, &features, &ivs, &|_, _| true, stats)?;
    }
    let take = |f: &FeatureRef, s: &Segment| -> Option<&SeriesState> {
        acc.get(f)?.get(s)?.first()?.as_ref()
    };

    let mut out = Out {
        table: Table::new([
            "section", "feature", "segment", "metric", "value", "baseline", "n", "score", "p_adj",
            "finding",
        ]),
    };

    // Volume of each segment: rows of the score series (every prediction has one).
    let rows_of = |s: &Segment| -> u64 {
        match take(&FeatureRef::Score, s) {
            Some(SeriesState::Score(sc)) => sc.predictions,
            _ => 0,
        }
    };
    let total_rows = rows_of(&Segment::All).max(1);

    // Importance weights of the input features (drift impact), when attributions exist.
    let names: Vec<String> = scope.def.features.keys().cloned().collect();
    let importance = match crate::importance::weights(reference, &names, &[]) {
        Some(w) => Some(w),
        None => {
            let attrs: Vec<FeatureRef> = names
                .iter()
                .map(|n| FeatureRef::Attribution(n.clone()))
                .collect();
            let a = crate::exec::accumulate_features_for(
                ctx.reader,
                scope,
                &attrs,
                &ivs,
                &|_, s| *s == Segment::All,
                false,
                stats,
            )?;
            let current: Vec<Option<f64>> = attrs
                .iter()
                .map(|f| {
                    a.get(f)?
                        .get(&Segment::All)?
                        .first()?
                        .as_ref()
                        .and_then(numeric_of)?
                        .mean()
                })
                .collect();
            crate::importance::weights(None, &names, &current)
        }
    };
    let weight_of = |f: &FeatureRef| -> Option<f64> {
        let (weights, _) = importance.as_ref()?;
        let FeatureRef::Named(n) = f else { return None };
        weights.get(names.binary_search(n).ok()?).copied().flatten()
    };
    if let Some((_, source)) = &importance {
        warnings.push(format!(
            "drift is ranked by impact: (psi+|dmissing|) x volume share x importance, the feature's share of mean |attribution| (from the {source}) times the number of explained features"
        ));
    }

    // --- drift ---
    let mut cells: Vec<(FeatureRef, Segment, DriftCell)> = Vec::new();
    for (feature, segs) in &acc {
        if matches!(feature, FeatureRef::Label | FeatureRef::Latency) {
            continue;
        }
        for (segment, slots) in segs {
            let Some(state) = slots.first().and_then(Option::as_ref) else {
                continue;
            };
            let base = reference_base(reference, feature, segment);
            if let Some(c) = drift_cell(state, base, edges_of(reference, feature, segment))? {
                cells.push((feature.clone(), segment.clone(), c));
            }
        }
    }
    let ps: Vec<f64> = cells
        .iter()
        .map(|(_, _, c)| c.p_combined().unwrap_or(1.0))
        .collect();
    let adj = if ps.is_empty() {
        Vec::new()
    } else {
        benjamini_hochberg(&ps)?
    };
    let mut ranked: Vec<(f64, usize)> = cells
        .iter()
        .enumerate()
        .map(|(i, (_, s, c))| {
            let share = if *s == Segment::All {
                1.0
            } else {
                rows_of(s) as f64 / total_rows as f64
            };
            let weight = weight_of(&cells[i].0).unwrap_or(1.0);
            (c.magnitude() * share.min(1.0) * weight, i)
        })
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut drifted_inputs = 0usize;
    for (i, (f, s, c)) in cells.iter().enumerate() {
        if *s == Segment::All
            && *f != FeatureRef::Score
            && adj[i] < ALPHA
            && c.magnitude() >= MIN_MAGNITUDE
        {
            drifted_inputs += 1;
        }
    }
    // The largest contributions, plus every drifted feature of the overall segment: a drifted
    // feature must be named even when its segments crowd the list.
    let listed = ranked.iter().enumerate().filter(|(rank, (_, i))| {
        let (_, s, c) = &cells[*i];
        *rank < MAX_DRIFT_ROWS
            || (*s == Segment::All && adj[*i] < ALPHA && c.magnitude() >= MIN_MAGNITUDE)
    });
    for (_, (score, i)) in listed {
        let (f, s, c) = &cells[*i];
        let drifted = adj[*i] < ALPHA && c.magnitude() >= MIN_MAGNITUDE;
        let mut finding = String::new();
        if drifted {
            finding.push_str("drifted");
            let mc = c.missing_change.unwrap_or(0.0);
            if mc.abs() > c.psi.unwrap_or(0.0) {
                finding.push_str(&format!(": missing share {:+.3}", mc));
            } else {
                finding.push_str(&format!(": psi {:.3}", c.psi.unwrap_or(0.0)));
            }
        } else {
            finding.push_str("stable");
        }
        if let Some(w) = weight_of(f) {
            finding.push_str(&format!("; importance weight {w:.2}"));
        }
        out.row(
            "drift",
            &f.to_string(),
            &seg_name(s),
            "psi+|dmissing|",
            Some(c.magnitude()),
            None,
            Some(c.n),
            Some(*score),
            Some(adj[*i]),
            &finding,
        );
    }

    // --- performance by segment ---
    let task = scope.def.task;
    let perf_of = |s: &Segment| -> Option<(&PerformanceState, u64)> {
        match take(&FeatureRef::Score, s) {
            Some(SeriesState::Score(sc)) => Some((&sc.performance, sc.predictions)),
            _ => None,
        }
    };
    let overall = perf_of(&Segment::All).and_then(|(p, n)| headline(task, p, n));
    let ref_perf = |s: &Segment| {
        reference
            .and_then(|r| r.segments.get(s))
            .map(|sp| (&sp.performance, sp.rows))
    };
    let overall_ref = ref_perf(&Segment::All).and_then(|(p, n)| headline(task, p, n));
    // (score, segment, metric, value, overall value, labelled n, finding)
    type PerfRow = (f64, String, &'static str, f64, Option<f64>, u64, String);
    let mut perf_rows: Vec<PerfRow> = Vec::new();
    let mut calib: Vec<(f64, String, f64, f64, u64)> = Vec::new();
    let segments: Vec<&Segment> = acc
        .get(&FeatureRef::Score)
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    for s in segments {
        let Some((perf, preds)) = perf_of(s) else {
            continue;
        };
        if let Some((name, v, n, higher)) = headline(task, perf, preds)
            && n >= MIN_LABELED
        {
            let base = overall.map(|o| o.1);
            let drop = base
                .map(|b| if higher { b - v } else { v - b })
                .unwrap_or(0.0);
            let share = rows_of(s) as f64 / total_rows as f64;
            let refv = ref_perf(s)
                .and_then(|(p, r)| headline(task, p, r))
                .map(|h| h.1);
            let finding = match refv {
                Some(r)
                    if (if higher { r - v } else { v - r }) > PERF_DROP * r.abs().max(1e-12) =>
                {
                    format!("below its reference ({name} {r:.3} -> {v:.3})")
                }
                _ if *s != Segment::All && drop > 0.0 => "below overall".to_string(),
                _ => "ok".to_string(),
            };
            perf_rows.push((drop * share, seg_name(s), name, v, base, n, finding));
        }
        if let (Some(b), Some((rp, _))) = (perf.binary.as_ref(), ref_perf(s))
            && let Some(rb) = rp.binary.as_ref()
            && let Some(shift) = calibration_shift(rb, b)
            && b.n >= MIN_LABELED
        {
            calib.push((
                shift.ece_change,
                seg_name(s),
                shift.ece_after,
                shift.ece_before,
                b.n,
            ));
        }
    }
    // Realised against estimated AUC on the same labelled rows (binary models): the estimate
    // follows the scores through the reference's calibration, so a realised value well below
    // it means the scores now mean other outcomes: concept drift (docs/STATISTICS.md §20).
    // (gap in standard errors, segment, realised, estimated, labelled n, gap)
    let mut gaps: Vec<(f64, String, f64, f64, u64, f64)> = Vec::new();
    if task == Task::Binary {
        for s in acc
            .get(&FeatureRef::Score)
            .into_iter()
            .flat_map(|m| m.keys())
        {
            let Some(b) = perf_of(s).and_then(|(p, _)| p.binary.as_ref()) else {
                continue;
            };
            if b.n < MIN_LABELED {
                continue;
            }
            let Some(cal) = reference
                .and_then(|r| r.segments.get(s))
                .and_then(|sp| sp.calibration.as_ref())
            else {
                continue;
            };
            if let (Some(real), Some(est)) = (
                roc_auc_from_histogram(&b.hist),
                estimate_performance(&labelled_scores(b), cal).auc,
            ) {
                let gap = est.value - real;
                let z = if est.stderr > 0.0 {
                    gap / est.stderr
                } else {
                    0.0
                };
                gaps.push((z, seg_name(s), real, est.value, b.n, gap));
            }
        }
    }
    gaps.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let concept = |z: f64, gap: f64| z >= CONCEPT_GAP_Z && gap >= CONCEPT_GAP_MIN;
    perf_rows.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    for (score, seg, name, v, base, n, finding) in &perf_rows {
        out.row(
            "performance",
            "$score",
            seg,
            name,
            Some(*v),
            *base,
            Some(*n),
            Some(*score),
            None,
            finding,
        );
    }
    calib.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    for (change, seg, ece, ece_ref, n) in &calib {
        let finding = if *change >= ECE_SHIFT {
            "miscalibrated"
        } else {
            "calibrated"
        };
        out.row(
            "performance",
            "$score",
            seg,
            "ece",
            Some(*ece),
            Some(*ece_ref),
            Some(*n),
            Some(*change),
            None,
            finding,
        );
    }

    for (z, seg, real, est, n, gap) in &gaps {
        let finding = if concept(*z, *gap) {
            format!(
                "concept drift: realised auc {real:.3} is {gap:.3} below its estimate from the scores ({est:.3}, {z:.1} standard errors)"
            )
        } else {
            "realised auc agrees with its estimate from the scores".to_string()
        };
        out.row(
            "performance",
            "$score",
            seg,
            "auc vs estimated_auc",
            Some(*real),
            Some(*est),
            Some(*n),
            Some(*z),
            None,
            &finding,
        );
    }

    // --- silent-failure signals ---
    match (overall, overall_ref) {
        (Some((name, v, n, higher)), Some((_, r, _, _))) => {
            let fall = if higher { r - v } else { v - r };
            let falling = fall > PERF_DROP * r.abs().max(1e-12);
            let finding = if falling && drifted_inputs == 0 {
                "FLAG: inputs stable but performance falling: suspect serving, features pipeline or candidate generation"
            } else if falling {
                "performance falling, explained by input drift above"
            } else {
                "performance holding"
            };
            out.row(
                "signal",
                "$score",
                "all",
                &format!("{name} vs reference"),
                Some(v),
                Some(r),
                Some(n),
                Some(fall),
                None,
                finding,
            );
        }
        _ => out.row(
            "signal",
            "$score",
            "all",
            "performance vs reference",
            None,
            None,
            None,
            None,
            None,
            "not enough labels in range or reference",
        ),
    }
    let entropy = |s: Option<&driftdb_engine::sketch::NumericState>| {
        s.and_then(|n| n.bins())
            .and_then(|b| histogram_entropy(&b.counts))
            .map(|e| e.normalized)
    };
    let cur_e = entropy(take(&FeatureRef::Score, &Segment::All).and_then(numeric_of));
    let ref_e = entropy(
        reference
            .and_then(|r| r.series(&FeatureRef::Score, &Segment::All))
            .and_then(|p| p.numeric())
            .map(|p| &p.state),
    );
    let de = cur_e.zip(ref_e).map(|(c, r)| c - r);
    out.row(
        "signal",
        "$score",
        "all",
        "score_entropy",
        cur_e,
        ref_e,
        None,
        de,
        None,
        match de {
            Some(d) if d >= ENTROPY_SHIFT => {
                "FLAG: score-entropy spike: the model is less certain than in training"
            }
            Some(d) if d <= -ENTROPY_SHIFT => {
                "FLAG: score-entropy collapse: scores concentrate on few values"
            }
            Some(_) => "stable",
            None => "no score distribution to compare",
        },
    );
    match calib.first() {
        Some((change, seg, ece, ece_ref, n)) if *change >= ECE_SHIFT => out.row(
            "signal",
            "$score",
            seg,
            "calibration_shift",
            Some(*ece),
            Some(*ece_ref),
            Some(*n),
            Some(*change),
            None,
            &format!("FLAG: calibration shift in {seg}: ECE {ece_ref:.3} -> {ece:.3}"),
        ),
        Some((change, seg, ece, ece_ref, n)) => out.row(
            "signal",
            "$score",
            seg,
            "calibration_shift",
            Some(*ece),
            Some(*ece_ref),
            Some(*n),
            Some(*change),
            None,
            "no calibration shift",
        ),
        None => out.row(
            "signal",
            "$score",
            "all",
            "calibration_shift",
            None,
            None,
            None,
            None,
            None,
            "no labelled binary predictions to compare",
        ),
    }
    if task == Task::Binary {
        match gaps.first() {
            Some((z, seg, real, est, n, gap)) => out.row(
                "signal",
                "$score",
                seg,
                "concept_drift",
                Some(*real),
                Some(*est),
                Some(*n),
                Some(*z),
                None,
                &if concept(*z, *gap) {
                    format!(
                        "FLAG: concept drift in {seg}: realised auc {real:.3} against {est:.3} estimated from its scores"
                    )
                } else {
                    "realised performance agrees with its estimate from the scores".to_string()
                },
            ),
            None => out.row(
                "signal",
                "$score",
                "all",
                "concept_drift",
                None,
                None,
                None,
                None,
                None,
                "no labelled binary predictions with a calibrated reference to compare",
            ),
        }
    }
    if task == Task::Ranking {
        topk_signal(ctx, scope, &ivs, stats, &mut out)?;
    }
    Ok(out.table)
}

/// The `topk_distinct_share` signal row of a ranking model, from the overall `$items` series.
///
/// `value` is the range's share of distinct items among its top-K slots, with impressions
/// counted as `⌈slots / K⌉` (lists shorter than K are judged on the slots they showed).
/// `baseline` is the reference's share at the same number of slots (rarefied: the distinct
/// items expected among that many of the reference's slots), because a share of distinct items
/// falls as the sample grows and only compares at equal sizes. `score` is value / baseline.
fn topk_signal(
    ctx: &Context<'_>,
    scope: &crate::plan::ModelScope,
    ivs: &Intervals,
    stats: &mut ExecStats,
    out: &mut Out,
) -> Result<()> {
    let acc = accumulate_features(
        ctx.reader,
        scope,
        &[FeatureRef::Items],
        ivs,
        &|_, s| *s == Segment::All,
        stats,
    )?;
    let current = match acc
        .get(&FeatureRef::Items)
        .and_then(|m| m.get(&Segment::All))
        .and_then(|v| v.first())
        .and_then(Option::as_ref)
    {
        Some(SeriesState::Categorical(c)) => Some(c),
        _ => None,
    };
    let reference = scope
        .reference
        .as_deref()
        .and_then(|r| r.series(&FeatureRef::Items, &Segment::All))
        .and_then(|p| p.categorical());
    let diversity = current.and_then(|c| topk_diversity(c, reference, TOP_K_ITEMS));
    let Some(d) = diversity else {
        out.row(
            "signal",
            "$items",
            "all",
            "topk_distinct_share",
            None,
            None,
            None,
            None,
            None,
            "no served items in range",
        );
        return Ok(());
    };
    let ratio = d.reference_share.filter(|r| *r > 0.0).map(|r| d.share / r);
    let finding = match (ratio, d.reference_distinct) {
        (Some(q), Some(expected)) if q < TOPK_COLLAPSE_RATIO => format!(
            "FLAG: collapse of distinct items in top-K: {:.0} distinct items in {} slots, ~{:.0} expected from the reference",
            d.distinct, d.slots, expected
        ),
        (Some(_), _) => "stable".to_string(),
        _ => "no reference served items to compare".to_string(),
    };
    out.row(
        "signal",
        "$items",
        "all",
        "topk_distinct_share",
        Some(d.share),
        d.reference_share,
        Some(d.impressions),
        ratio,
        None,
        &finding,
    );
    Ok(())
}

/// Per-feature drift of the overall segment for the drift summary: `(feature, cell, p_adj)`,
/// worst first.
pub fn overall_drift(
    acc: &BTreeMap<FeatureRef, crate::exec::Accumulators>,
    reference: Option<&driftdb_engine::reference::ReferenceProfile>,
) -> Result<Vec<(FeatureRef, DriftCell, f64)>> {
    let mut cells = Vec::new();
    for (f, segs) in acc {
        if !matches!(f, FeatureRef::Named(_)) {
            continue;
        }
        let Some(state) = segs
            .get(&Segment::All)
            .and_then(|v| v.first())
            .and_then(Option::as_ref)
        else {
            continue;
        };
        if let Some(c) = drift_cell(
            state,
            reference_base(reference, f, &Segment::All),
            edges_of(reference, f, &Segment::All),
        )? {
            cells.push((f.clone(), c));
        }
    }
    let ps: Vec<f64> = cells
        .iter()
        .map(|(_, c)| c.p_combined().unwrap_or(1.0))
        .collect();
    let adj = if ps.is_empty() {
        Vec::new()
    } else {
        benjamini_hochberg(&ps)?
    };
    let mut out: Vec<(FeatureRef, DriftCell, f64)> = cells
        .into_iter()
        .zip(adj)
        .map(|((f, c), a)| (f, c, a))
        .collect();
    out.sort_by(|a, b| {
        b.1.magnitude()
            .total_cmp(&a.1.magnitude())
            .then_with(|| a.0.cmp(&b.0))
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::normal_two_sided;

    #[test]
    fn normal_tail() {
        assert!((normal_two_sided(1.959_963_985) - 0.05).abs() < 1e-6);
        assert!((normal_two_sided(0.0) - 1.0).abs() < 1e-6);
        assert!(normal_two_sided(10.0) < 1e-20);
    }
}
