//! Evaluates a lowered PromQL expression ([`crate::promql`]) at a list of instants, the way
//! Prometheus 2.x does, so a Grafana panel reads the same numbers from driftdb directly as
//! through a Prometheus with `remote_read`:
//!
//! - an instant selector at `t` takes each series' latest sample in `[t - 5m, t]` (the
//!   lookback);
//! - a range selector `[r]` at `t` takes the samples in `[t - r, t]`;
//! - arithmetic and unary minus drop the metric name; a comparison without `bool` filters and
//!   keeps the series as it is; with `bool` it yields 0/1 without the name;
//! - `*_over_time` drop the metric name, except `last_over_time`;
//! - `sum avg min max count` group by the `by` labels (or all but the `without` labels and the
//!   name); `topk`/`bottomk` keep the selected series whole.
//!
//! A vector expression is one selector followed by operations ([`crate::promql::Pipeline`]):
//! the selector's samples are fetched once for the whole span of instants from a
//! [`SeriesSource`], then each operation runs over every instant in memory, in a loop — no
//! recursion. Cost is bounded before allocation: the source refuses a selection whose series
//! × instants pass [`Limits::max_cells`] as soon as its candidate series are known, the
//! evaluator checks the selection it got again, and the `*_over_time` work (samples visited
//! over all instants) is counted before it is done. The [`Budget`] is checked between
//! operations and periodically inside them.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::limits::{Budget, Limits, Ticker};
use crate::promql::{self, AggOp, BinOp, Expr, Grouping, Kind, Op, OverTime, Selector, Source};
use crate::source::{Labels, ReadStats, Series, SeriesSource, too_many_cells};

/// How far back an instant selector looks for a sample (Prometheus' default lookback delta).
pub const LOOKBACK_MS: i64 = 300_000;

/// Values per series and instant.
pub type VectorValues = BTreeMap<Labels, Vec<Option<f64>>>;

/// A value per instant.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number per instant.
    Scalar(Vec<f64>),
    /// Series with an optional value per instant, sorted by labels.
    Vector(VectorValues),
    /// Raw samples of a range selector (only as the whole expression of an instant query).
    Matrix(Vec<Series>),
}

/// An evaluated query: its value, the instants it was evaluated at, what reading met.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The value.
    pub value: Value,
    /// The instants (ms), ascending; one for an instant query.
    pub steps: Vec<i64>,
    /// What the selectors read (for warnings).
    pub stats: ReadStats,
}

/// Parses and evaluates `text` at one instant (`/api/v1/query`).
pub fn instant_query(
    source: &dyn SeriesSource,
    text: &str,
    at_ms: i64,
    limits: &Limits,
    budget: &Budget,
) -> Result<Answer> {
    let expr = promql::parse(text, limits)?;
    let mut ev = Evaluator::new(source, *limits, budget, vec![at_ms]);
    let value = ev.eval(&expr)?;
    Ok(Answer {
        value,
        steps: ev.steps,
        stats: ev.stats,
    })
}

/// Parses and evaluates `text` at `start, start + step, … ≤ end` (all ms,
/// `/api/v1/query_range`).
pub fn range_query(
    source: &dyn SeriesSource,
    text: &str,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
    limits: &Limits,
    budget: &Budget,
) -> Result<Answer> {
    let expr = promql::parse(text, limits)?;
    if expr.kind() == Kind::Matrix {
        return Err(Error::Invalid(
            "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector".into(),
        ));
    }
    let ts = steps(start_ms, end_ms, step_ms, limits.max_points)?;
    let mut ev = Evaluator::new(source, *limits, budget, ts);
    let value = ev.eval(&expr)?;
    Ok(Answer {
        value,
        steps: ev.steps,
        stats: ev.stats,
    })
}

/// The instants of a range query: `start, start + step, ...` up to `end` (all ms), at most
/// `max_points` of them.
pub fn steps(start: i64, end: i64, step: i64, max_points: usize) -> Result<Vec<i64>> {
    if step <= 0 {
        return Err(Error::Invalid(
            "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
        ));
    }
    if end < start {
        return Err(Error::Invalid(
            "end timestamp must not be before start time".into(),
        ));
    }
    // Prometheus answers this one as bad data (400), like a malformed step.
    if (i128::from(end) - i128::from(start)) / i128::from(step) >= max_points as i128 {
        return Err(Error::Invalid(format!(
            "exceeded maximum resolution of {max_points} points per timeseries. Try decreasing the query resolution (?step=XX)"
        )));
    }
    let mut out = Vec::new();
    let mut t = start;
    while t <= end {
        out.push(t);
        match t.checked_add(step) {
            Some(n) => t = n,
            None => break,
        }
    }
    Ok(out)
}

/// Evaluation state: the instants, the source, the bounds, and what reading met.
pub struct Evaluator<'a> {
    source: &'a dyn SeriesSource,
    limits: Limits,
    budget: &'a Budget,
    steps: Vec<i64>,
    /// What the selectors read.
    pub stats: ReadStats,
}

impl std::fmt::Debug for Evaluator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluator")
            .field("limits", &self.limits)
            .field("steps", &self.steps.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<'a> Evaluator<'a> {
    /// An evaluator for `steps` (ascending, at least one).
    pub fn new(
        source: &'a dyn SeriesSource,
        limits: Limits,
        budget: &'a Budget,
        steps: Vec<i64>,
    ) -> Evaluator<'a> {
        Evaluator {
            source,
            limits,
            budget,
            steps,
            stats: ReadStats::default(),
        }
    }

    /// The samples a selector needs for every instant: `back_ms` before the first up to the
    /// last; `instants` values per series will be held.
    fn fetch(&mut self, sel: &Selector, back_ms: i64, instants: usize) -> Result<Vec<Series>> {
        let (Some(&first), Some(&last)) = (self.steps.first(), self.steps.last()) else {
            return Ok(Vec::new());
        };
        let got = self.source.select(
            &sel.matchers,
            first.saturating_sub(back_ms),
            last,
            instants,
            self.budget,
        )?;
        self.stats.add(&got.stats);
        // The source checked its estimate; hold it to what it returned too.
        let cells = (got.series.len() as u64).saturating_mul(instants as u64);
        if cells > self.limits.max_cells as u64 {
            return Err(too_many_cells(
                got.series.len() as u64,
                instants,
                self.limits.max_cells,
            ));
        }
        Ok(got.series)
    }

    /// Evaluates `e` at every instant.
    pub fn eval(&mut self, e: &Expr) -> Result<Value> {
        self.budget.check()?;
        match e {
            Expr::Number(n) => Ok(Value::Scalar(vec![*n; self.steps.len()])),
            Expr::Range(sel, range) => {
                let [t] = self.steps[..] else {
                    return Err(Error::Invalid(
                        "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector".into(),
                    ));
                };
                let data = self.fetch(sel, *range, 0)?;
                Ok(Value::Matrix(
                    data.into_iter()
                        .filter_map(|s| {
                            let samples: Vec<(i64, f64)> =
                                window(&s.samples, t.saturating_sub(*range), t).to_vec();
                            (!samples.is_empty()).then_some(Series {
                                labels: s.labels,
                                samples,
                            })
                        })
                        .collect(),
                ))
            }
            Expr::Vector(p) => {
                let mut v = self.source_values(&p.source)?;
                for op in &p.ops {
                    self.budget.check()?;
                    v = self.apply(op, v)?;
                }
                Ok(Value::Vector(v))
            }
        }
    }

    fn source_values(&mut self, source: &Source) -> Result<VectorValues> {
        let n = self.steps.len();
        let mut tick = Ticker::new(self.budget, 64);
        match source {
            Source::Selector(sel) => {
                let data = self.fetch(sel, LOOKBACK_MS, n)?;
                let mut out = BTreeMap::new();
                for s in data {
                    tick.tick()?;
                    let vals: Vec<Option<f64>> = self
                        .steps
                        .iter()
                        .map(|&t| latest(&s.samples, t.saturating_sub(LOOKBACK_MS), t))
                        .collect();
                    if vals.iter().any(Option::is_some) {
                        out.insert(s.labels, vals);
                    }
                }
                Ok(out)
            }
            Source::OverTime {
                func,
                selector,
                range_ms,
            } => {
                let data = self.fetch(selector, *range_ms, n)?;
                // Count the samples the windows visit before visiting them.
                let mut work = 0u64;
                for s in &data {
                    tick.tick()?;
                    for &t in &self.steps {
                        work = work.saturating_add(
                            window(&s.samples, t.saturating_sub(*range_ms), t).len() as u64,
                        );
                    }
                    if work > self.limits.max_range_samples {
                        return Err(Error::TooLarge(format!(
                            "the *_over_time windows of one selector would visit more than {} samples; shorten the range in [...], use a larger step or select fewer series",
                            self.limits.max_range_samples
                        )));
                    }
                }
                let mut out = BTreeMap::new();
                for s in data {
                    tick.tick()?;
                    let vals: Vec<Option<f64>> = self
                        .steps
                        .iter()
                        .map(|&t| {
                            over_time(*func, window(&s.samples, t.saturating_sub(*range_ms), t))
                        })
                        .collect();
                    if vals.iter().any(Option::is_some) {
                        let labels = if *func == OverTime::Last {
                            s.labels
                        } else {
                            drop_name(s.labels)
                        };
                        merge_into(&mut out, labels, vals)?;
                    }
                }
                Ok(out)
            }
        }
    }

    fn apply(&mut self, op: &Op, v: VectorValues) -> Result<VectorValues> {
        let n = self.steps.len();
        match op {
            Op::Neg => {
                let mut out = BTreeMap::new();
                for (l, vals) in v {
                    merge_into(
                        &mut out,
                        drop_name(l),
                        vals.into_iter().map(|v| v.map(|x| -x)).collect(),
                    )?;
                }
                Ok(out)
            }
            Op::Scalar {
                op,
                scalar,
                scalar_left,
                return_bool,
            } => vector_scalar(*op, *return_bool, v, *scalar, *scalar_left),
            Op::Aggregate { op, k, grouping } => aggregate(n, *op, *k, grouping, v, self.budget),
        }
    }
}

/// A series of an aggregation's group: its labels and values.
type Member<'a> = (&'a Labels, &'a Vec<Option<f64>>);

/// Aggregates `input` per group at each of `n` instants.
fn aggregate(
    n: usize,
    op: AggOp,
    k: Option<f64>,
    grouping: &Grouping,
    input: VectorValues,
    budget: &Budget,
) -> Result<VectorValues> {
    let mut out: VectorValues = BTreeMap::new();
    let mut tick = Ticker::new(budget, 1024);
    // Group membership does not change between instants.
    let mut groups: BTreeMap<Labels, Vec<Member<'_>>> = BTreeMap::new();
    for (l, vals) in &input {
        groups
            .entry(group_key(l, grouping))
            .or_default()
            .push((l, vals));
    }
    let kk = k.unwrap_or(0.0);
    let kk = if kk.is_finite() && kk >= 1.0 {
        kk as usize
    } else {
        0
    };
    for (key, members) in groups {
        for i in 0..n {
            tick.tick()?;
            let present: Vec<(&Labels, f64)> = members
                .iter()
                .filter_map(|(l, v)| v.get(i).copied().flatten().map(|x| (*l, x)))
                .collect();
            if present.is_empty() {
                continue;
            }
            match op {
                AggOp::Topk | AggOp::Bottomk => {
                    let mut sorted = present;
                    sorted.sort_by(|a, b| {
                        if op == AggOp::Topk {
                            b.1.total_cmp(&a.1)
                        } else {
                            a.1.total_cmp(&b.1)
                        }
                    });
                    for (l, x) in sorted.into_iter().take(kk) {
                        out.entry(l.clone()).or_insert_with(|| vec![None; n])[i] = Some(x);
                    }
                }
                _ => {
                    let xs = present.iter().map(|(_, x)| *x);
                    let v = match op {
                        AggOp::Sum => xs.sum(),
                        AggOp::Avg => xs.sum::<f64>() / present.len() as f64,
                        AggOp::Min => xs.fold(f64::INFINITY, f64::min),
                        AggOp::Max => xs.fold(f64::NEG_INFINITY, f64::max),
                        _ => present.len() as f64,
                    };
                    out.entry(key.clone()).or_insert_with(|| vec![None; n])[i] = Some(v);
                }
            }
        }
    }
    Ok(out)
}

/// The latest sample in `[from, to]`.
fn latest(samples: &[(i64, f64)], from: i64, to: i64) -> Option<f64> {
    let i = samples.partition_point(|s| s.0 <= to);
    let (t, v) = *samples.get(i.checked_sub(1)?)?;
    (t >= from).then_some(v)
}

/// The samples in `[from, to]`.
fn window(samples: &[(i64, f64)], from: i64, to: i64) -> &[(i64, f64)] {
    let a = samples.partition_point(|s| s.0 < from);
    let b = samples.partition_point(|s| s.0 <= to);
    &samples[a..b.max(a)]
}

fn over_time(f: OverTime, w: &[(i64, f64)]) -> Option<f64> {
    let last = w.last()?.1;
    let xs = w.iter().map(|s| s.1);
    Some(match f {
        OverTime::Avg => xs.sum::<f64>() / w.len() as f64,
        OverTime::Min => xs.fold(f64::INFINITY, f64::min),
        OverTime::Max => xs.fold(f64::NEG_INFINITY, f64::max),
        OverTime::Sum => xs.sum(),
        OverTime::Count => w.len() as f64,
        OverTime::Last => last,
    })
}

fn drop_name(mut l: Labels) -> Labels {
    l.retain(|(n, _)| n != "__name__");
    l
}

fn group_key(l: &Labels, g: &Grouping) -> Labels {
    match g {
        Grouping::All => Vec::new(),
        Grouping::By(keep) => l
            .iter()
            .filter(|(n, _)| keep.contains(n))
            .cloned()
            .collect(),
        Grouping::Without(drop) => l
            .iter()
            .filter(|(n, _)| n != "__name__" && !drop.contains(n))
            .cloned()
            .collect(),
    }
}

/// Adds a series, refusing two series that end up with the same labels (as Prometheus does
/// when dropping the name makes them collide) where both have a value at the same instant.
fn merge_into(out: &mut VectorValues, labels: Labels, vals: Vec<Option<f64>>) -> Result<()> {
    match out.entry(labels) {
        std::collections::btree_map::Entry::Vacant(v) => {
            v.insert(vals);
        }
        std::collections::btree_map::Entry::Occupied(mut o) => {
            for (a, b) in o.get_mut().iter_mut().zip(vals) {
                match (&a, b) {
                    (Some(_), Some(_)) => {
                        return Err(Error::Invalid(
                            "vector cannot contain metrics with the same labelset (the operation dropped the metric name; select one metric)".into(),
                        ));
                    }
                    (None, b) => *a = b,
                    (Some(_), None) => {}
                }
            }
        }
    }
    Ok(())
}

/// `vector op scalar`, or `scalar op vector` with `scalar_left`.
fn vector_scalar(
    op: BinOp,
    return_bool: bool,
    v: VectorValues,
    s: f64,
    scalar_left: bool,
) -> Result<VectorValues> {
    let mut out = BTreeMap::new();
    let keep_name = op.is_comparison() && !return_bool;
    for (labels, vals) in v {
        let vals: Vec<Option<f64>> = vals
            .into_iter()
            .map(|x| {
                let x = x?;
                let (a, b) = if scalar_left { (s, x) } else { (x, s) };
                let r = op.apply(a, b);
                if op.is_comparison() && !return_bool {
                    (r == 1.0).then_some(x)
                } else {
                    Some(r)
                }
            })
            .collect();
        if vals.iter().all(Option::is_none) {
            continue;
        }
        let labels = if keep_name { labels } else { drop_name(labels) };
        merge_into(&mut out, labels, vals)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
