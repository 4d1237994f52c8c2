//! `uplift(metric, challenger, champion) over R [by keys]`: champion–challenger comparison.
//!
//! For the overall segment and every segment of the `by` keys, both models' `$score` series are
//! merged over the range and per stability window (`step`, default 1 day for ranges of 2 days
//! or more). The **gain** is the challenger's value minus the champion's, sign-flipped for
//! metrics where lower is better, so a positive gain is always an improvement. Its 95 %
//! interval uses the metric's sampling error where one is known (Hanley–McNeil for AUC, the
//! binomial error for rates), and otherwise the spread of the per-window gains.
//!
//! Verdicts: a segment is `promote` when its interval lies above 0 and its gain is positive in
//! at least 80 % of the windows where both models have data; `reject` when its interval lies
//! below 0; `hold` otherwise (including too few labels). The overall row says `promote` only
//! when the overall gain qualifies **and** no segment is `reject` and every judged segment has
//! a positive gain — the gain must be positive and stable across segments and windows.

use std::collections::BTreeMap;

use driftdb_engine::series::{FeatureRef, Segment};
use driftdb_engine::sketch::SeriesState;
use driftdb_storage::SeriesPrefix;

use crate::error::Result;
use crate::exec::{Accumulators, ExecStats, Intervals, accumulate};
use crate::metrics::{BaseRef, Metric, evaluate};
use crate::plan::{Context, ModelScope, TimeRange, UpliftPlan};
use crate::table::{Cell, Table};

/// Share of windows with a positive gain a promotion needs.
pub const STABLE_SHARE: f64 = 0.8;
/// Fewest labelled rows per side before a segment is judged.
pub const MIN_LABELED: u64 = 100;
/// Normal quantile of the 95 % interval.
const Z95: f64 = 1.959_963_985;

fn buckets(range: TimeRange, step: i64) -> Vec<TimeRange> {
    let mut out = Vec::new();
    let mut b = range.from.0.div_euclid(step) * step;
    while b < range.to.0 {
        out.push(TimeRange {
            from: driftdb_engine::time::Timestamp(b.max(range.from.0)),
            to: driftdb_engine::time::Timestamp((b + step).min(range.to.0)),
        });
        b += step;
    }
    out
}

fn scan(
    ctx: &Context<'_>,
    scope: &ModelScope,
    plan: &UpliftPlan,
    ivs: &Intervals,
    stats: &mut ExecStats,
) -> Result<Accumulators> {
    let prefix = SeriesPrefix::Feature {
        model: scope.def.id.clone(),
        version: scope.version.clone(),
        feature: FeatureRef::Score,
    };
    let keys = &plan.segments;
    let keep = |_: &FeatureRef, s: &Segment| {
        *s == Segment::All || (!keys.keys.is_empty() && keys.matches(s))
    };
    let mut acc = accumulate(ctx.reader, &prefix, scope.resolution, ivs, &keep, stats)?;
    Ok(acc.remove(&FeatureRef::Score).unwrap_or_default())
}

fn merged(slots: Option<&Vec<Option<SeriesState>>>) -> Option<SeriesState> {
    let mut out: Option<SeriesState> = None;
    for s in slots?.iter().flatten() {
        match &mut out {
            None => out = Some(s.clone()),
            Some(acc) => {
                let _ = acc.merge(s);
            }
        }
    }
    out
}

/// Standard error of a metric's value where its sampling distribution is known.
fn sampling_se(metric: &Metric, state: &SeriesState, value: f64, n: u64) -> Option<f64> {
    if n == 0 {
        return None;
    }
    let SeriesState::Score(s) = state else {
        return None;
    };
    match metric.def.name {
        "auc" => {
            let b = s.performance.binary.as_ref()?;
            let (np, nn) = (b.positives as f64, (b.n - b.positives) as f64);
            if np < 1.0 || nn < 1.0 {
                return None;
            }
            let a = value;
            let q1 = a / (2.0 - a);
            let q2 = 2.0 * a * a / (1.0 + a);
            let var =
                (a * (1.0 - a) + (np - 1.0) * (q1 - a * a) + (nn - 1.0) * (q2 - a * a)) / (np * nn);
            Some(var.max(0.0).sqrt())
        }
        "accuracy" | "positive_rate" | "label_coverage" | "precision" | "recall" | "ctr" => {
            let p = value.clamp(0.0, 1.0);
            Some((p * (1.0 - p) / n as f64).sqrt())
        }
        _ => None,
    }
}

struct Side {
    value: Option<f64>,
    n: u64,
    se: Option<f64>,
}

fn side(metric: &Metric, state: Option<&SeriesState>) -> Result<Side> {
    let Some(state) = state else {
        return Ok(Side {
            value: None,
            n: 0,
            se: None,
        });
    };
    let v = evaluate(metric, state, BaseRef::Missing, None)?.unwrap_or_default();
    Ok(Side {
        value: v.value,
        n: v.n,
        se: v.value.and_then(|x| sampling_se(metric, state, x, v.n)),
    })
}

/// Runs `uplift`.
pub fn run(
    ctx: &Context<'_>,
    plan: &UpliftPlan,
    stats: &mut ExecStats,
    warnings: &mut Vec<String>,
) -> Result<Table> {
    let ivs = Intervals(buckets(plan.range, plan.step));
    let ch = scan(ctx, &plan.challenger, plan, &ivs, stats)?;
    let cp = scan(ctx, &plan.champion, plan, &ivs, stats)?;
    let higher = plan.metric.def.higher_is_better.unwrap_or(true);
    let sign = if higher { 1.0 } else { -1.0 };

    let mut columns: Vec<String> = plan.segments.keys.clone();
    columns.extend(
        [
            "metric",
            "challenger",
            "champion",
            "gain",
            "lower",
            "upper",
            "n_challenger",
            "n_champion",
            "windows",
            "windows_positive",
            "verdict",
            "reason",
        ]
        .map(String::from),
    );
    let mut table = Table::new(columns);

    let mut segments: Vec<Segment> = ch.keys().chain(cp.keys()).cloned().collect();
    segments.sort();
    segments.dedup();
    if !segments.contains(&Segment::All) {
        segments.insert(0, Segment::All);
    }
    struct Judged {
        segment: Segment,
        cells: Vec<Cell>,
        verdict: &'static str,
        gain: Option<f64>,
        reason: String,
    }
    let mut judged: Vec<Judged> = Vec::new();
    for seg in &segments {
        let (a, b) = (merged(ch.get(seg)), merged(cp.get(seg)));
        let (sa, sb) = (
            side(&plan.metric, a.as_ref())?,
            side(&plan.metric, b.as_ref())?,
        );
        let gain = sa.value.zip(sb.value).map(|(x, y)| sign * (x - y));
        // Per-window gains.
        let mut wgains = Vec::new();
        for i in 0..ivs.0.len() {
            let wa = ch.get(seg).and_then(|v| v.get(i)).and_then(Option::as_ref);
            let wb = cp.get(seg).and_then(|v| v.get(i)).and_then(Option::as_ref);
            let (x, y) = (side(&plan.metric, wa)?, side(&plan.metric, wb)?);
            if let (Some(x), Some(y)) = (x.value, y.value) {
                wgains.push(sign * (x - y));
            }
        }
        let positive = wgains.iter().filter(|g| **g > 0.0).count();
        let se = match (sa.se, sb.se) {
            (Some(x), Some(y)) => Some((x * x + y * y).sqrt()),
            _ if wgains.len() >= 2 => {
                let k = wgains.len() as f64;
                let mean = wgains.iter().sum::<f64>() / k;
                let var = wgains.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / (k - 1.0);
                Some((var / k).sqrt())
            }
            _ => None,
        };
        let (lo, hi) = match (gain, se) {
            (Some(g), Some(se)) => (Some(g - Z95 * se), Some(g + Z95 * se)),
            _ => (None, None),
        };
        let share = if wgains.is_empty() {
            None
        } else {
            Some(positive as f64 / wgains.len() as f64)
        };
        let (verdict, reason) = if sa.n < MIN_LABELED || sb.n < MIN_LABELED {
            (
                "hold",
                format!("fewer than {MIN_LABELED} labelled predictions on a side"),
            )
        } else {
            match (lo, hi) {
                (Some(l), _) if l > 0.0 && share.unwrap_or(0.0) >= STABLE_SHARE => (
                    "promote",
                    "gain above 0 and positive in most windows".to_string(),
                ),
                (Some(l), _) if l > 0.0 => (
                    "hold",
                    format!(
                        "gain above 0 but positive in only {:.0}% of windows",
                        100.0 * share.unwrap_or(0.0)
                    ),
                ),
                (_, Some(h)) if h < 0.0 => ("reject", "challenger significantly worse".to_string()),
                (Some(_), Some(_)) => ("hold", "interval includes 0".to_string()),
                _ => ("hold", "no interval: too few windows or labels".to_string()),
            }
        };
        let mut cells: Vec<Cell> = plan
            .segments
            .keys
            .iter()
            .map(|k| match seg {
                Segment::Value { key, value } if key == k => Cell::text(value),
                _ => Cell::Null,
            })
            .collect();
        cells.extend([
            Cell::text(plan.metric.label()),
            Cell::num(sa.value),
            Cell::num(sb.value),
            Cell::num(gain),
            Cell::num(lo),
            Cell::num(hi),
            Cell::count(sa.n),
            Cell::count(sb.n),
            Cell::count(wgains.len() as u64),
            Cell::num(share),
        ]);
        judged.push(Judged {
            segment: seg.clone(),
            cells,
            verdict,
            gain,
            reason,
        });
    }
    // The overall verdict also needs every judged segment to agree.
    let seg_rejects: Vec<String> = judged
        .iter()
        .filter(|j| j.segment != Segment::All && j.verdict == "reject")
        .map(|j| seg_label(&j.segment))
        .collect();
    let seg_negative: Vec<String> = judged
        .iter()
        .filter(|j| {
            j.segment != Segment::All && j.verdict != "hold" && j.gain.is_some_and(|g| g <= 0.0)
        })
        .map(|j| seg_label(&j.segment))
        .collect();
    let mut by_seg: BTreeMap<Segment, usize> = BTreeMap::new();
    for (i, j) in judged.iter().enumerate() {
        by_seg.insert(j.segment.clone(), i);
    }
    if let Some(&i) = by_seg.get(&Segment::All) {
        let j = &mut judged[i];
        if j.verdict == "promote" && (!seg_rejects.is_empty() || !seg_negative.is_empty()) {
            j.verdict = "hold";
            j.reason = format!(
                "overall gain positive but not in every segment (worse in {})",
                seg_rejects
                    .iter()
                    .chain(&seg_negative)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        } else if j.verdict != "reject" && !seg_rejects.is_empty() {
            j.verdict = if j.verdict == "promote" {
                "hold"
            } else {
                j.verdict
            };
            j.reason = format!(
                "{}; significantly worse in {}",
                j.reason,
                seg_rejects.join(", ")
            );
        }
    }
    if judged.iter().all(|j| j.gain.is_none()) {
        warnings.push(format!(
            "no labelled predictions for both {}@{} and {}@{} in range",
            plan.challenger.def.id,
            plan.challenger.version,
            plan.champion.def.id,
            plan.champion.version
        ));
    }
    for j in judged {
        let mut cells = j.cells;
        cells.push(Cell::text(j.verdict));
        cells.push(Cell::text(j.reason));
        table.rows.push(cells);
    }
    Ok(table)
}

fn seg_label(s: &Segment) -> String {
    match s {
        Segment::All => "all".into(),
        Segment::Value { key, value } => format!("{key}={value}"),
    }
}
