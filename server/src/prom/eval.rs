//! Evaluates a parsed PromQL expression ([`super::promql`]) at a list of instants, the way
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
//! Each selector's samples are fetched once for the whole span of instants (from
//! [`super::series::select`]), then every instant is evaluated in memory.

use std::collections::BTreeMap;

use driftdb_engine::time::Timestamp;
use driftdb_query::Context;
use driftdb_query::exec::ExecStats;

use super::promql::{AggOp, BinOp, Expr, Grouping, OverTime, Selector};
use super::series::{self, Labels, Limits, Series};
use crate::error::{Error, Result};

/// How far back an instant selector looks for a sample (Prometheus' default lookback delta).
pub const LOOKBACK_MS: i64 = 300_000;
/// Most instants a range query may evaluate (Prometheus' limit).
pub const MAX_POINTS: i64 = 11_000;

/// A value per instant.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number per instant.
    Scalar(Vec<f64>),
    /// Series with an optional value per instant, sorted by labels.
    Vector(BTreeMap<Labels, Vec<Option<f64>>>),
    /// Raw samples of a range selector (only as the whole expression of an instant query).
    Matrix(Vec<Series>),
}

/// What evaluation needs besides the expression.
#[derive(Debug, Clone, Copy)]
pub struct Env<'a> {
    /// The query context (reader, catalog, now).
    pub ctx: &'a Context<'a>,
    /// The store's retention cutoff.
    pub retention_floor: Timestamp,
    /// Bounds per selector.
    pub limits: Limits,
}

/// Evaluation state: the instants and what reading met.
#[derive(Debug)]
pub struct Evaluator<'a> {
    env: Env<'a>,
    steps: Vec<i64>,
    /// What the selectors read.
    pub stats: ExecStats,
}

/// The instants of a range query: `start, start + step, ...` up to `end` (all ms).
pub fn steps(start: i64, end: i64, step: i64) -> Result<Vec<i64>> {
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
    if (end - start) / step >= MAX_POINTS {
        return Err(Error::Invalid(format!(
            "exceeded maximum resolution of {MAX_POINTS} points per timeseries. Try decreasing the query resolution (?step=XX)"
        )));
    }
    let mut out = Vec::new();
    let mut t = start;
    while t <= end {
        out.push(t);
        t += step;
    }
    Ok(out)
}

impl<'a> Evaluator<'a> {
    /// An evaluator for `steps` (ascending, at least one).
    pub fn new(env: Env<'a>, steps: Vec<i64>) -> Evaluator<'a> {
        Evaluator {
            env,
            steps,
            stats: ExecStats::default(),
        }
    }

    fn fetch(&mut self, sel: &Selector, back_ms: i64) -> Result<Vec<Series>> {
        let (Some(&first), Some(&last)) = (self.steps.first(), self.steps.last()) else {
            return Ok(Vec::new());
        };
        let got = series::select(
            self.env.ctx,
            &sel.matchers,
            first.saturating_sub(back_ms),
            last,
            self.env.retention_floor,
            self.env.limits,
        )?;
        self.stats.add(&got.stats);
        Ok(got.series)
    }

    /// Evaluates `e` at every instant.
    pub fn eval(&mut self, e: &Expr) -> Result<Value> {
        match e {
            Expr::Number(n) => Ok(Value::Scalar(vec![*n; self.steps.len()])),
            Expr::Vector(sel) => {
                let data = self.fetch(sel, LOOKBACK_MS)?;
                let mut out = BTreeMap::new();
                for s in data {
                    let vals: Vec<Option<f64>> = self
                        .steps
                        .iter()
                        .map(|&t| latest(&s.samples, t - LOOKBACK_MS, t))
                        .collect();
                    if vals.iter().any(Option::is_some) {
                        out.insert(s.labels, vals);
                    }
                }
                Ok(Value::Vector(out))
            }
            Expr::Range(sel, range) => {
                let [t] = self.steps[..] else {
                    return Err(Error::Invalid(
                        "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector".into(),
                    ));
                };
                let data = self.fetch(sel, *range)?;
                Ok(Value::Matrix(
                    data.into_iter()
                        .filter_map(|s| {
                            let samples: Vec<(i64, f64)> =
                                window(&s.samples, t - range, t).to_vec();
                            (!samples.is_empty()).then_some(Series {
                                labels: s.labels,
                                samples,
                            })
                        })
                        .collect(),
                ))
            }
            Expr::OverTime {
                func,
                selector,
                range_ms,
            } => {
                let data = self.fetch(selector, *range_ms)?;
                let mut out = BTreeMap::new();
                for s in data {
                    let vals: Vec<Option<f64>> = self
                        .steps
                        .iter()
                        .map(|&t| over_time(*func, window(&s.samples, t - range_ms, t)))
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
                Ok(Value::Vector(out))
            }
            Expr::Aggregate {
                op,
                param,
                grouping,
                expr,
            } => {
                let k = match param {
                    Some(p) => match self.eval(p)? {
                        Value::Scalar(k) => Some(k),
                        _ => return Err(Error::Invalid("k must be a number".into())),
                    },
                    None => None,
                };
                let Value::Vector(input) = self.eval(expr)? else {
                    return Err(Error::Invalid("aggregations take an instant vector".into()));
                };
                Ok(Value::Vector(aggregate(
                    self.steps.len(),
                    *op,
                    k,
                    grouping,
                    input,
                )))
            }
            Expr::Neg(inner) => Ok(match self.eval(inner)? {
                Value::Scalar(v) => Value::Scalar(v.into_iter().map(|x| -x).collect()),
                Value::Vector(m) => {
                    let mut out = BTreeMap::new();
                    for (l, vals) in m {
                        merge_into(
                            &mut out,
                            drop_name(l),
                            vals.into_iter().map(|v| v.map(|x| -x)).collect(),
                        )?;
                    }
                    Value::Vector(out)
                }
                Value::Matrix(_) => {
                    return Err(Error::Invalid("unary minus of a range vector".into()));
                }
            }),
            Expr::Binary {
                op,
                return_bool,
                lhs,
                rhs,
            } => {
                let l = self.eval(lhs)?;
                let r = self.eval(rhs)?;
                binary(*op, *return_bool, l, r)
            }
        }
    }
}

/// A series of an aggregation's group: its labels and values.
type Member<'a> = (&'a Labels, &'a Vec<Option<f64>>);

/// Aggregates `input` per group at each of `n` instants.
fn aggregate(
    n: usize,
    op: AggOp,
    k: Option<Vec<f64>>,
    grouping: &Grouping,
    input: BTreeMap<Labels, Vec<Option<f64>>>,
) -> BTreeMap<Labels, Vec<Option<f64>>> {
    let mut out: BTreeMap<Labels, Vec<Option<f64>>> = BTreeMap::new();
    // Group membership does not change between instants.
    let mut groups: BTreeMap<Labels, Vec<Member<'_>>> = BTreeMap::new();
    for (l, vals) in &input {
        groups
            .entry(group_key(l, grouping))
            .or_default()
            .push((l, vals));
    }
    for (key, members) in groups {
        for i in 0..n {
            let present: Vec<(&Labels, f64)> = members
                .iter()
                .filter_map(|(l, v)| v[i].map(|x| (*l, x)))
                .collect();
            if present.is_empty() {
                continue;
            }
            match op {
                AggOp::Topk | AggOp::Bottomk => {
                    let kk = k.as_ref().and_then(|k| k.get(i)).copied().unwrap_or(0.0);
                    let kk = if kk.is_finite() && kk >= 1.0 {
                        kk as usize
                    } else {
                        0
                    };
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
    out
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
fn merge_into(
    out: &mut BTreeMap<Labels, Vec<Option<f64>>>,
    labels: Labels,
    vals: Vec<Option<f64>>,
) -> Result<()> {
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

fn binary(op: BinOp, return_bool: bool, l: Value, r: Value) -> Result<Value> {
    match (l, r) {
        (Value::Scalar(a), Value::Scalar(b)) => Ok(Value::Scalar(
            a.into_iter().zip(b).map(|(x, y)| op.apply(x, y)).collect(),
        )),
        (Value::Vector(v), Value::Scalar(s)) => vector_scalar(op, return_bool, v, &s, false),
        (Value::Scalar(s), Value::Vector(v)) => vector_scalar(op, return_bool, v, &s, true),
        _ => Err(Error::Invalid(
            "unsupported: binary operations between two vectors or on range vectors".into(),
        )),
    }
}

fn vector_scalar(
    op: BinOp,
    return_bool: bool,
    v: BTreeMap<Labels, Vec<Option<f64>>>,
    s: &[f64],
    scalar_left: bool,
) -> Result<Value> {
    let mut out = BTreeMap::new();
    for (labels, vals) in v {
        let vals: Vec<Option<f64>> = vals
            .into_iter()
            .zip(s)
            .map(|(x, &y)| {
                let x = x?;
                let (a, b) = if scalar_left { (y, x) } else { (x, y) };
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
        let keep_name = op.is_comparison() && !return_bool;
        let labels = if keep_name { labels } else { drop_name(labels) };
        merge_into(&mut out, labels, vals)?;
    }
    Ok(Value::Vector(out))
}

#[cfg(test)]
mod tests;
