//! The report of one model version over a range, computed with DriftQL's own operators over a
//! [`Context`] — a server's store or [`crate::memory::MemoryReader`]. Every number in it is one
//! a DriftQL query or the drift summary gives for the same range:
//!
//! - the verdict and the drift table are the drift summary's ([`drift_summary_of`]:
//!   chi-square over the reference's 10 quantile bins or categories, Benjamini–Hochberg over
//!   the model's features), sorted by PSI;
//! - distributions are the same read's merged states: bin counts over the reference's
//!   quantile bins (exact counts, coarsened from the 50 fine bins to the 10 PSI uses),
//!   category counts;
//! - the heatmap is DriftQL's `psi` per feature and step bucket (what `psi(model.*) from … to
//!   … step …` answers), performance over time the task's
//!   headline metric with the same step, the segments table `psi(model.*) … by key`;
//! - `explain(model) from … to …` as it answers.

use std::collections::BTreeMap;

use driftdb_engine::model::{FeatureKind, Task};
use driftdb_engine::reference::SeriesProfile;
use driftdb_engine::series::{FeatureRef, Segment};
use driftdb_engine::sketch::{CategoricalState, NumericState, SeriesState};
use driftdb_engine::time::Timestamp;
use driftdb_query::exec::{
    Accumulators, ExecStats, Intervals, binned_throughout, edges_of, reference_base,
};
use driftdb_query::explain::{ALPHA, MIN_MAGNITUDE};
use driftdb_query::metrics::{Metric, evaluate, lookup};
use driftdb_query::plan::ModelScope;
use driftdb_query::summary::{accumulate_all, drift_summary_of, summary_scope};
use driftdb_query::{Cell, Context, TimeRange};

use crate::data::{
    Calibration, CalibrationPoint, CategoryMass, Distribution, FeatureDrift, Heatmap, NamedValue,
    Performance, Report, SCHEMA, Shape, Table, Verdict,
};

/// Most categories a categorical panel lists (by the larger of the two masses); the rest is
/// `__other__`.
pub const TOP_CATEGORIES: usize = 12;
/// Most step columns a report draws; a finer step over a long range is widened to fit.
pub const MAX_COLUMNS: i64 = 200;

/// What to report on.
#[derive(Debug, Clone)]
pub struct Request {
    /// Model id.
    pub model: String,
    /// Version; the model's default (the one with a reference) when `None`.
    pub version: Option<String>,
    /// Range start; rounded down to a window start.
    pub from: Timestamp,
    /// Range end (exclusive).
    pub to: Timestamp,
    /// Column width of the heatmap and performance series; chosen from the range when `None`.
    pub step_ms: Option<i64>,
    /// Segment key for the segments table.
    pub by: Option<String>,
    /// Where the data came from, shown in the header.
    pub source: String,
    /// The build time shown in the header.
    pub generated_at_ms: i64,
}

/// A step for `[from, to)`: the model's window width, widened to a "round" width so at most
/// [`MAX_COLUMNS`] columns are drawn.
pub fn default_step(width_ms: i64, span_ms: i64) -> i64 {
    const ROUND: [i64; 9] = [
        900_000,
        3_600_000,
        3 * 3_600_000,
        6 * 3_600_000,
        12 * 3_600_000,
        86_400_000,
        7 * 86_400_000,
        30 * 86_400_000,
        365 * 86_400_000,
    ];
    ROUND
        .into_iter()
        .filter(|s| *s >= width_ms && s % width_ms == 0)
        .find(|s| (span_ms + s - 1) / s <= MAX_COLUMNS)
        .unwrap_or(365 * 86_400_000)
}

/// Each feature's and segment's slots merged into one (step buckets into the whole range),
/// without KLL sketches unless `sketch`.
fn merge_slots(
    by_slot: &BTreeMap<FeatureRef, Accumulators>,
    sketch: bool,
) -> driftdb_query::Result<BTreeMap<FeatureRef, Accumulators>> {
    let mut out = BTreeMap::new();
    for (f, segs) in by_slot {
        let mut merged = Accumulators::new();
        for (seg, slots) in segs {
            let mut one: Option<SeriesState> = None;
            for s in slots.iter().flatten() {
                match &mut one {
                    None => one = Some(s.clone()),
                    Some(a) if sketch => a.merge(s)?,
                    Some(a) => a.merge_without_sketch(s)?,
                }
            }
            merged.insert(seg.clone(), vec![one]);
        }
        out.insert(f.clone(), merged);
    }
    Ok(out)
}

/// Builds the report of `req` over `ctx`.
pub fn build(ctx: &Context<'_>, req: &Request) -> driftdb_query::Result<Report> {
    let (scope, range) = summary_scope(
        ctx,
        &req.model,
        req.version.as_deref(),
        Some(req.from),
        Some(req.to),
    )?;
    let width = scope.resolution.width_ms();
    let step_ms = match req.step_ms {
        Some(s) if s >= width && s % width == 0 => s,
        Some(s) => {
            return Err(driftdb_query::Error::Plan {
                pos: None,
                message: format!(
                    "step {s} ms must be a positive multiple of the model's window ({width} ms)"
                ),
            });
        }
        None => default_step(width, range.to.0 - range.from.0),
    };
    if let Some(key) = &req.by
        && !scope.def.segments.contains(key)
    {
        return Err(driftdb_query::Error::Plan {
            pos: None,
            message: format!(
                "by: {key:?} is not a segment key of {} (its keys: {})",
                scope.def.id,
                scope.def.segments.join(", ")
            ),
        });
    }
    let columns = windows_of(range, step_ms);

    // One read of every input feature and `$score` (segment `all`): per step bucket when the
    // report draws a heatmap, whose buckets then merge into the range's states the drift
    // summary and the distributions use; the whole range at once otherwise.
    let series = scope.input_and_score_series();
    let mut stats = ExecStats::default();
    let (acc, by_bucket) = if columns.len() > 1 {
        let buckets = Intervals(
            columns
                .iter()
                .map(|w| TimeRange {
                    from: Timestamp((*w).max(range.from.0)),
                    to: Timestamp((w + step_ms).min(range.to.0)),
                })
                .collect(),
        );
        let by_bucket = accumulate_all(ctx, &scope, &series, &buckets, &mut stats)?;
        let sketch = !binned_throughout(&by_bucket, scope.reference.as_deref());
        (merge_slots(&by_bucket, sketch)?, Some(by_bucket))
    } else {
        let whole = Intervals(vec![range]);
        (
            accumulate_all(ctx, &scope, &series, &whole, &mut stats)?,
            None,
        )
    };
    let summary = drift_summary_of(scope.clone(), range, &acc)?;
    let mut warnings = summary.warnings.clone();

    // The drift table, largest PSI first (features without a PSI last, in name order).
    let t = &summary.drifted_features;
    let mut features: Vec<FeatureDrift> = (0..t.rows.len())
        .map(|i| {
            let num = |c: &str| t.get(i, c).and_then(Cell::as_f64);
            let name = t
                .get(i, "feature")
                .and_then(Cell::as_str)
                .unwrap_or_default()
                .to_string();
            let kind = match scope.def.features.get(&name) {
                Some(FeatureKind::Categorical) => "categorical",
                _ => "numeric",
            };
            FeatureDrift {
                kind: kind.to_string(),
                psi: num("psi"),
                statistic: num("statistic"),
                p_adj: num("p_adj"),
                missing_change: num("missing_change"),
                n: num("n").map_or(0, |v| v as u64),
                baseline_n: num("baseline_n").map_or(0, |v| v as u64),
                drifted: t.get(i, "drifted").and_then(Cell::as_str) == Some("yes"),
                feature: name,
            }
        })
        .collect();
    features.sort_by(|a, b| {
        let key = |f: &FeatureDrift| f.psi.filter(|v| v.is_finite()).unwrap_or(f64::NEG_INFINITY);
        key(b)
            .total_cmp(&key(a))
            .then_with(|| a.feature.cmp(&b.feature))
    });
    let drifted = features.iter().filter(|f| f.drifted).count();
    let verdict = Verdict {
        features: features.len(),
        drifted,
        test: "chi-square over the reference's 10 quantile bins (numeric) or its categories \
               (categorical), p-values adjusted for the model's features by Benjamini–Hochberg"
            .to_string(),
        alpha: ALPHA,
        min_effect: MIN_MAGNITUDE,
        drift: drifted > 0,
    };
    let prediction_shift = summary
        .prediction_shift
        .rows
        .iter()
        .map(|r| NamedValue {
            name: r
                .first()
                .and_then(Cell::as_str)
                .unwrap_or_default()
                .to_string(),
            value: r.get(1).and_then(Cell::as_f64),
        })
        .collect();

    // Distributions and calibration from the range's merged states.
    let mut series: Vec<FeatureRef> = features
        .iter()
        .map(|f| FeatureRef::Named(f.feature.clone()))
        .collect();
    series.push(FeatureRef::Score);
    let mut distributions = Vec::new();
    let mut calibration = None;
    for f in &series {
        let state = acc
            .get(f)
            .and_then(|m| m.get(&Segment::All))
            .and_then(|v| v.first())
            .and_then(Option::as_ref);
        let Some(state) = state else { continue };
        if let (FeatureRef::Score, SeriesState::Score(s)) = (f, state) {
            calibration = reliability(&s.performance);
        }
        if let Some(shape) = shape_of(&scope, f, state) {
            distributions.push(Distribution {
                feature: f.to_string(),
                shape,
            });
        } else if scope.reference.is_some() {
            warnings.push(format!("{f}: no distribution to draw (no reference bins)"));
        }
    }
    if let Some(c) = &mut calibration {
        c.ece = summary
            .performance
            .rows
            .iter()
            .find(|r| r.first().and_then(Cell::as_str) == Some("ece"))
            .and_then(|r| r.get(1))
            .and_then(Cell::as_f64);
    }

    let model_ref = driftdb_query::text::model_ref(&scope.def.id, Some(&scope.version));
    let time = format!(
        "from {} to {}",
        range.from.to_rfc3339(),
        range.to.to_rfc3339()
    );
    let step = format!("step {}ms", step_ms);

    // Drift over time: one PSI per feature and step bucket, by DriftQL's own metric over the
    // buckets' merged states (what `psi(model.*) from … to … step …` answers, without building
    // and re-reading its table).
    let heatmap = if let Some(by_bucket) = &by_bucket {
        let names: Vec<String> = features.iter().map(|f| f.feature.clone()).collect();
        let refs: Vec<FeatureRef> = names.iter().map(|n| FeatureRef::Named(n.clone())).collect();
        let reference = scope.reference.as_deref();
        let psi = Metric {
            def: lookup("psi").ok_or_else(|| driftdb_query::Error::Plan {
                pos: None,
                message: "the metric catalog has no psi".into(),
            })?,
            param: None,
        };
        let mut values = Vec::with_capacity(refs.len());
        for f in &refs {
            let slots = by_bucket.get(f).and_then(|m| m.get(&Segment::All));
            let base = reference_base(reference, f, &Segment::All);
            let edges = edges_of(reference, f, &Segment::All);
            let mut row = Vec::with_capacity(columns.len());
            for c in 0..columns.len() {
                let state = slots.and_then(|v| v.get(c)).and_then(Option::as_ref);
                row.push(match state {
                    Some(s) => evaluate(&psi, s, base, edges)?.and_then(|v| v.value),
                    None => None,
                });
            }
            values.push(row);
        }
        Some(Heatmap {
            metric: "psi".into(),
            windows: columns.clone(),
            features: names,
            values,
        })
    } else {
        None
    };

    // Performance, when any label joined; for binary models also the AUC estimated from the
    // scores, which needs no label.
    let labeled = summary
        .performance
        .rows
        .iter()
        .any(|r| r.last().and_then(Cell::as_f64).is_some_and(|n| n > 0.0));
    let estimated = if scope.def.task == Task::Binary {
        let out = driftdb_query::run(ctx, &format!("estimated_auc({model_ref}) {time} {step}"))?;
        let t = &out.table;
        let by_window: BTreeMap<i64, Option<f64>> = (0..t.rows.len())
            .filter_map(|i| {
                let w = t.get(i, "time").and_then(time_ms)?;
                Some((w, t.get(i, "value").and_then(Cell::as_f64)))
            })
            .collect();
        let values: Vec<Option<f64>> = columns
            .iter()
            .map(|w| by_window.get(w).copied().flatten())
            .collect();
        if values.iter().any(Option::is_some) {
            values
        } else {
            Vec::new()
        }
    } else {
        Vec::new()
    };
    let performance = if labeled || !estimated.is_empty() {
        let metric = match scope.def.task {
            Task::Binary => "auc",
            Task::Multiclass | Task::Regression => "rmse",
            Task::Ranking => "ndcg(10, ",
        };
        let call = if metric.ends_with(", ") {
            format!("{metric}{model_ref})")
        } else {
            format!("{metric}({model_ref})")
        };
        let out = driftdb_query::run(ctx, &format!("{call} {time} {step}"))?;
        warnings.extend(out.warnings);
        let mut by_window: BTreeMap<i64, Option<f64>> = BTreeMap::new();
        let t = &out.table;
        for i in 0..t.rows.len() {
            if let Some(w) = t.get(i, "time").and_then(time_ms) {
                by_window.insert(w, t.get(i, "value").and_then(Cell::as_f64));
            }
        }
        let label = if metric.starts_with("ndcg") {
            "ndcg@10"
        } else {
            metric
        };
        let reference = summary
            .performance
            .rows
            .iter()
            .find(|r| r.first().and_then(Cell::as_str) == Some(label))
            .and_then(|r| r.get(2))
            .and_then(Cell::as_f64);
        Some(Performance {
            summary: table_of(&summary.performance),
            metric: label.to_string(),
            values: columns
                .iter()
                .map(|w| by_window.get(w).copied().flatten())
                .collect(),
            windows: columns.clone(),
            reference,
            estimated,
        })
    } else {
        warnings.push("no labels joined in the range: no performance or calibration".into());
        calibration = None;
        None
    };
    if !labeled && performance.is_some() {
        warnings.push(
            "no labels joined in the range: performance is estimated from the scores only (no calibration)"
                .into(),
        );
        calibration = None;
    }

    let explain = driftdb_query::run(ctx, &format!("explain({model_ref}) {time}"))?;
    warnings.extend(explain.warnings);
    let segments = match &req.by {
        Some(key) => {
            let out = driftdb_query::run(ctx, &format!("psi({model_ref}.*) {time} by {key}"))?;
            warnings.extend(out.warnings);
            Some(table_of(&out.table))
        }
        None => None,
    };
    warnings.sort();
    warnings.dedup();

    Ok(Report {
        schema: SCHEMA.to_string(),
        model: scope.def.id.clone(),
        version: scope.version.clone(),
        task: task_name(scope.def.task).to_string(),
        from_ms: range.from.0,
        to_ms: range.to.0,
        step_ms,
        by: req.by.clone(),
        source: req.source.clone(),
        generated_at_ms: req.generated_at_ms,
        verdict,
        features,
        prediction_shift,
        distributions,
        heatmap,
        performance,
        calibration,
        explain: table_of(&explain.table),
        segments,
        warnings,
    })
}

fn task_name(t: Task) -> &'static str {
    match t {
        Task::Binary => "binary",
        Task::Multiclass => "multiclass",
        Task::Regression => "regression",
        Task::Ranking => "ranking",
    }
}

/// Step bucket starts covering `range`, aligned to multiples of `step` from the epoch (as
/// DriftQL's `step` aligns them).
fn windows_of(range: TimeRange, step: i64) -> Vec<i64> {
    let mut out = Vec::new();
    let mut w = range.from.0.div_euclid(step) * step;
    while w < range.to.0 && out.len() < MAX_COLUMNS as usize * 2 {
        out.push(w);
        w += step;
    }
    out
}

/// A `time` cell (RFC 3339 text, or milliseconds) as milliseconds.
fn time_ms(c: &Cell) -> Option<i64> {
    match c {
        Cell::Number(v) => Some(*v as i64),
        Cell::Text(s) => driftdb_engine::time::Timestamp::parse_rfc3339(s)
            .ok()
            .map(|t| t.0),
        Cell::Null => None,
    }
}

/// A DriftQL table as report data.
pub fn table_of(t: &driftdb_query::Table) -> Table {
    Table {
        columns: t.columns.clone(),
        rows: t
            .rows
            .iter()
            .map(|r| {
                r.iter()
                    .map(|c| match c {
                        Cell::Null => serde_json::Value::Null,
                        Cell::Number(v) => serde_json::Number::from_f64(*v)
                            .map_or(serde_json::Value::Null, serde_json::Value::Number),
                        Cell::Text(s) => serde_json::Value::String(s.clone()),
                    })
                    .collect()
            })
            .collect(),
    }
}

/// Shares of `counts` (all zero when the total is).
fn masses(counts: &[u64]) -> Vec<f64> {
    let total: u64 = counts.iter().sum();
    counts
        .iter()
        .map(|c| {
            if total == 0 {
                0.0
            } else {
                *c as f64 / total as f64
            }
        })
        .collect()
}

/// The CDF at each fine edge: the share of values below it.
fn cdf_points(edges: &[f64], counts: &[u64]) -> Vec<(f64, f64)> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return Vec::new();
    }
    let mut below = 0u64;
    edges
        .iter()
        .zip(counts)
        .map(|(e, c)| {
            below += c;
            (*e, below as f64 / total as f64)
        })
        .collect()
}

fn numeric_of(state: &SeriesState) -> Option<&NumericState> {
    match state {
        SeriesState::Numeric(n) => Some(n),
        SeriesState::Score(s) => Some(&s.distribution),
        _ => None,
    }
}

/// The reference-vs-current shape of one series; `None` without a reference or bins.
fn shape_of(scope: &ModelScope, f: &FeatureRef, state: &SeriesState) -> Option<Shape> {
    let profile = scope.reference.as_ref()?.series(f, &Segment::All)?;
    match (profile, state) {
        (SeriesProfile::Numeric(p), s) => {
            let cur = numeric_of(s)?;
            let edges = p.edges.as_ref()?;
            let cur_bins = cur.bins().filter(|b| b.edges_id == edges.q50.id())?;
            let ref_bins = p.state.bins().filter(|b| b.edges_id == edges.q50.id())?;
            let cur10 = edges.coarsen(&cur_bins.counts).ok()?;
            let ref10 = edges.coarsen(&ref_bins.counts).ok()?;
            Some(Shape::Numeric {
                edges: edges.q10.edges().to_vec(),
                reference: masses(&ref10),
                current: masses(&cur10),
                reference_cdf: cdf_points(edges.q50.edges(), &ref_bins.counts),
                current_cdf: cdf_points(edges.q50.edges(), &cur_bins.counts),
                n: cur.count(),
                baseline_n: p.state.count(),
            })
        }
        (SeriesProfile::Categorical(r), SeriesState::Categorical(c)) => Some(categories(r, c)),
        _ => None,
    }
}

fn categories(r: &CategoricalState, c: &CategoricalState) -> Shape {
    let (rc, cc) = (r.counts(), c.counts());
    let (rn, cn) = (r.count().max(1) as f64, c.count().max(1) as f64);
    let mut names: Vec<(&String, f64, f64)> = rc
        .keys()
        .chain(cc.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|k| {
            let m = |m: &BTreeMap<String, u64>, n: f64| m.get(k).map_or(0.0, |v| *v as f64 / n);
            (k, m(&rc, rn), m(&cc, cn))
        })
        .collect();
    names.sort_by(|a, b| b.1.max(b.2).total_cmp(&a.1.max(a.2)).then(a.0.cmp(b.0)));
    names.truncate(TOP_CATEGORIES);
    let top_ref: f64 = names.iter().map(|n| n.1).sum();
    let top_cur: f64 = names.iter().map(|n| n.2).sum();
    Shape::Categorical {
        categories: names
            .into_iter()
            .map(|(k, a, b)| CategoryMass {
                name: k.clone(),
                reference: a,
                current: b,
            })
            .collect(),
        other_reference: if r.count() == 0 {
            0.0
        } else {
            (1.0 - top_ref).max(0.0)
        },
        other_current: if c.count() == 0 {
            0.0
        } else {
            (1.0 - top_cur).max(0.0)
        },
        unseen_current: c.unseen() as f64 / cn,
        n: c.count(),
        baseline_n: r.count(),
    }
}

/// The reliability diagram of binary performance sums.
fn reliability(p: &driftdb_engine::sketch::performance::PerformanceState) -> Option<Calibration> {
    let b = p.binary.as_ref()?;
    let bins: Vec<CalibrationPoint> = b
        .calibration
        .iter()
        .enumerate()
        .filter(|(_, c)| c.n > 0)
        .map(|(i, c)| CalibrationPoint {
            lower: i as f64 / b.calibration.len() as f64,
            predicted: c.sum_score / c.n as f64,
            observed: c.sum_label / c.n as f64,
            n: c.n,
        })
        .collect();
    (!bins.is_empty()).then_some(Calibration { bins, ece: None })
}
