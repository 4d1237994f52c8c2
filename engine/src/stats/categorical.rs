//! Categorical drift (docs/STATISTICS.md §2–5, §8–9): PSI, JS and Hellinger over the union of categories,
//! Pearson's chi-square test of homogeneity on the 2×K table (no Yates), L∞ and the share of
//! categories unseen in the baseline.
//!
//! Each category absent from the baseline is its own bin and its own chi-square column (never an
//! "other" lump); the pooled expectations give it a finite expected count, so the statistic
//! stays finite. Only a state that overflowed its exact cap (and so holds frequent-item
//! estimates) adds one residual column for the mass its heavy hitters do not cover, and the
//! result is then flagged inexact.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::sketch::CategoricalState;
use crate::stats::divergence::{hellinger, js_distance, psi};
use crate::stats::special::chi2_sf;

/// Pearson's chi-square test of homogeneity, with Cramér's V as its effect size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChiSquare {
    /// X² (no continuity correction).
    pub statistic: f64,
    /// `P(χ²_dof > X²)`; may be subnormal, never flushed to zero early.
    pub pvalue: f64,
    /// Degrees of freedom, `K − 1` over the non-empty columns.
    pub dof: u64,
    /// Cramér's V, `sqrt(X² / N)` for a 2×K table: an effect size in `[0, 1]` that does not
    /// grow with n.
    pub cramers_v: f64,
    /// Current (second row) total.
    pub n: u64,
    /// Baseline (first row) total.
    pub baseline_n: u64,
}

/// Chi-square homogeneity test of the 2×K table `[baseline; current]` (docs/STATISTICS.md §8).
///
/// Columns empty on both rows are dropped. `Ok(None)` when a row is empty; an error when the
/// rows differ in length. With one column left, X² = 0, dof = 0 and p = 1.
pub fn chi_square_homogeneity(baseline: &[u64], current: &[u64]) -> Result<Option<ChiSquare>> {
    if baseline.len() != current.len() {
        return Err(Error::invalid(
            "contingency table",
            format!("rows of {} and {} columns", baseline.len(), current.len()),
        ));
    }
    let (r0, r1): (u64, u64) = (baseline.iter().sum(), current.iter().sum());
    if r0 == 0 || r1 == 0 {
        return Ok(None);
    }
    let total = (r0 + r1) as f64;
    let (r0f, r1f) = (r0 as f64, r1 as f64);
    let mut k = 0u64;
    let mut stat0 = 0.0;
    let mut stat1 = 0.0;
    for (a, b) in baseline.iter().zip(current) {
        let col = (a + b) as f64;
        if col == 0.0 {
            continue;
        }
        k += 1;
        let e0 = r0f * col / total;
        let e1 = r1f * col / total;
        let d0 = *a as f64 - e0;
        let d1 = *b as f64 - e1;
        stat0 += d0 * d0 / e0;
        stat1 += d1 * d1 / e1;
    }
    let (statistic, dof) = if k <= 1 {
        (0.0, 0)
    } else {
        (stat0 + stat1, k - 1)
    };
    Ok(Some(ChiSquare {
        statistic,
        pvalue: chi2_sf(statistic, dof),
        dof,
        cramers_v: (statistic / total).sqrt().min(1.0),
        n: r1,
        baseline_n: r0,
    }))
}

/// Drift of a categorical series against its baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoricalDrift {
    /// Categories in the baseline ∪ current union (plus a residual column for overflowed states).
    pub n_categories: usize,
    /// PSI over the union (clipped at 1e-4).
    pub psi: f64,
    /// Jensen–Shannon distance, base 2.
    pub js: f64,
    /// Hellinger distance.
    pub hellinger: f64,
    /// `max_j |p_j − q_j|` over the union.
    pub linf: f64,
    /// Chi-square homogeneity test.
    pub chi2: ChiSquare,
    /// Current categories with no baseline count, sorted (only known when the baseline is exact).
    pub unseen_categories: Vec<String>,
    /// Share of current non-null values whose category the baseline lacks.
    pub unseen_share: f64,
    /// `missing_share(current) − missing_share(baseline)` (docs/STATISTICS.md §9); `None` when a side has
    /// no rows.
    pub missing_share_change: Option<f64>,
    /// Whether both sides held exact counts (neither overflowed its category cap).
    pub exact: bool,
    /// Current non-null count.
    pub n: u64,
    /// Baseline non-null count.
    pub baseline_n: u64,
}

/// Aligned columns of two category-count maps: baseline counts, current counts, and the current
/// mass and names of categories missing from the baseline.
struct Aligned {
    base: Vec<u64>,
    cur: Vec<u64>,
    unseen: Vec<String>,
    unseen_count: u64,
}

fn align(base: &BTreeMap<String, u64>, cur: &BTreeMap<String, u64>) -> Aligned {
    let cap = base.len().max(cur.len()) + 2;
    let mut out = Aligned {
        base: Vec::with_capacity(cap),
        cur: Vec::with_capacity(cap),
        unseen: Vec::new(),
        unseen_count: 0,
    };
    let mut a = base.iter().peekable();
    let mut b = cur.iter().peekable();
    loop {
        let (ca, cb) = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some((_, x)), None) => {
                let x = **x;
                a.next();
                (x, 0)
            }
            (None, Some((k, y))) => {
                let y = **y;
                out.unseen.push((*k).clone());
                out.unseen_count += y;
                b.next();
                (0, y)
            }
            (Some((ka, x)), Some((kb, y))) => match ka.cmp(kb) {
                std::cmp::Ordering::Less => {
                    let x = **x;
                    a.next();
                    (x, 0)
                }
                std::cmp::Ordering::Greater => {
                    let y = **y;
                    out.unseen.push((*kb).clone());
                    out.unseen_count += y;
                    b.next();
                    (0, y)
                }
                std::cmp::Ordering::Equal => {
                    let (x, y) = (**x, **y);
                    a.next();
                    b.next();
                    (x, y)
                }
            },
        };
        if ca > 0 || cb > 0 {
            out.base.push(ca);
            out.cur.push(cb);
        }
    }
    out
}

/// Drift from two exact category-count maps (non-null values only).
///
/// `Ok(None)` when either side has no value. `missing_share_change` is left `None`; use
/// [`categorical_drift`] on states to get it.
pub fn categorical_drift_counts(
    baseline: &BTreeMap<String, u64>,
    current: &BTreeMap<String, u64>,
) -> Result<Option<CategoricalDrift>> {
    let al = align(baseline, current);
    drift_from_aligned(al, None, true)
}

fn drift_from_aligned(
    al: Aligned,
    unseen_override: Option<(u64, u64)>,
    exact: bool,
) -> Result<Option<CategoricalDrift>> {
    let (nb, nc): (u64, u64) = (al.base.iter().sum(), al.cur.iter().sum());
    let Some(chi2) = chi_square_homogeneity(&al.base, &al.cur)? else {
        return Ok(None);
    };
    let p: Vec<f64> = al.base.iter().map(|c| *c as f64 / nb as f64).collect();
    let q: Vec<f64> = al.cur.iter().map(|c| *c as f64 / nc as f64).collect();
    let linf = p
        .iter()
        .zip(&q)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let unseen_share = match unseen_override {
        Some((u, n)) if n > 0 => u as f64 / n as f64,
        Some(_) => 0.0,
        None => al.unseen_count as f64 / nc as f64,
    };
    Ok(Some(CategoricalDrift {
        n_categories: al.base.len(),
        psi: psi(&p, &q),
        js: js_distance(&p, &q),
        hellinger: hellinger(&p, &q),
        linf,
        chi2,
        unseen_categories: al.unseen,
        unseen_share,
        missing_share_change: None,
        exact,
        n: nc,
        baseline_n: nb,
    }))
}

/// Share of rows without a valid value, `(count_total − count) / count_total` (docs/STATISTICS.md §0).
pub(crate) fn missing_share(count: u64, count_total: u64) -> Option<f64> {
    crate::stats::ratio(count_total.saturating_sub(count), count_total)
}

/// Drift of a categorical state against its baseline state.
///
/// With exact states (the normal case) every number follows FORMULAS exactly. When a state
/// overflowed its category cap, its counts are frequent-item estimates plus one residual column,
/// the unseen share comes from the state's own `unseen` counter, and `exact` is false.
pub fn categorical_drift(
    baseline: &CategoricalState,
    current: &CategoricalState,
) -> Result<Option<CategoricalDrift>> {
    let msc = match (
        missing_share(current.count(), current.count_total()),
        missing_share(baseline.count(), baseline.count_total()),
    ) {
        (Some(c), Some(b)) => Some(c - b),
        _ => None,
    };
    let mut out = match (baseline.exact_counts(), current.exact_counts()) {
        (Some(b), Some(c)) => drift_from_aligned(align(b, c), None, true)?,
        _ => {
            let (b, c) = (baseline.counts(), current.counts());
            let mut al = align(&b, &c);
            let rb = baseline.count().saturating_sub(al.base.iter().sum());
            let rc = current.count().saturating_sub(al.cur.iter().sum());
            if rb > 0 || rc > 0 {
                al.base.push(rb);
                al.cur.push(rc);
            }
            let unseen = if baseline.is_exact() {
                None
            } else {
                al.unseen.clear();
                Some((current.unseen(), current.count()))
            };
            drift_from_aligned(al, unseen, false)?
        }
    };
    if let Some(d) = out.as_mut() {
        d.missing_share_change = msc;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_column_is_no_evidence() {
        let c = chi_square_homogeneity(&[5, 0], &[7, 0]).unwrap().unwrap();
        assert_eq!((c.statistic, c.dof, c.pvalue), (0.0, 0, 1.0));
        assert!(chi_square_homogeneity(&[0, 0], &[1, 2]).unwrap().is_none());
        assert!(chi_square_homogeneity(&[1], &[1, 2]).is_err());
    }

    #[test]
    fn overflowed_states_still_compare() {
        let mut a = CategoricalState::default();
        let mut b = CategoricalState::default();
        for i in 0..2_000u32 {
            a.observe(&format!("c{}", i % 400), false);
            b.observe(&format!("c{}", i % 300), false);
        }
        assert!(!a.is_exact());
        let d = categorical_drift(&a, &b).unwrap().unwrap();
        assert!(!d.exact);
        assert!((0.0..=1.0).contains(&d.js) && d.psi >= 0.0);
        assert_eq!((d.n, d.baseline_n), (2_000, 2_000));
    }
}
