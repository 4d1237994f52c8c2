//! Two-sample Kolmogorov–Smirnov test (docs/STATISTICS.md §6) and Wasserstein-1 distance (§7) over step
//! CDFs: exact ones built from raw values, or the weighted CDF of a KLL sketch.
//!
//! A sketch CDF is off by up to its rank error ε at any point, so a sketched D is off by up to
//! `ε_ref + ε_cur`. The plain p-value `Q_KS(sqrt(en)·D)` treats D as exact and therefore goes to
//! 0 as n grows even when D is pure sketch error; [`KsResult::pvalue_conservative`] shrinks D by
//! the rank error first (`Q_KS(sqrt(en)·max(0, D − ε))`), so a verdict built on it does not
//! swing with n when the true difference is within the sketch's resolution.

use crate::error::{Error, Result};
use crate::sketch::kll::WeightedCdf;
use crate::sketch::{BinEdges, NumericState};

/// Switch point between the two series of `Q_KS` (docs/STATISTICS.md §6).
const KOLMOGOROV_SWITCH: f64 = 1.18;

/// A right-continuous step CDF: `F(x) = fs[i]` for `xs[i] <= x < xs[i+1]`, 0 below `xs[0]`.
///
/// Built exactly from raw values or a KLL's weighted items, or *bin-calibrated*: a KLL's items
/// reweighted so that the mass in every reference bin equals the state's exact bin count. The
/// calibrated CDF is exact at every bin edge, and inside a bin it can be off by at most that
/// bin's mass, whatever the sketch did; KS and above all Wasserstein-1 get much closer to their
/// exact values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepCdf {
    xs: Vec<f64>,
    fs: Vec<f64>,
    n: u64,
}

impl StepCdf {
    /// The exact CDF of raw values (NaN ignored).
    pub fn from_values(values: &[f64]) -> Self {
        Self::from_weighted(&WeightedCdf::from_values(values))
    }

    /// The CDF of a weighted item set (a KLL sketch, or exact values): `F = cum / total`.
    pub fn from_weighted(cdf: &WeightedCdf) -> Self {
        let total = cdf.total();
        let t = total as f64;
        StepCdf {
            xs: cdf.items().to_vec(),
            fs: cdf.cumulative().iter().map(|c| *c as f64 / t).collect(),
            n: total,
        }
    }

    /// A KLL CDF reweighted to exact bin counts over `edges` (see the type's docs).
    ///
    /// A bin with values but no retained item gets one point carrying its whole mass: the exact
    /// min (first bin), the exact max (last bin) or the bin's midpoint.
    pub fn calibrated(cdf: &WeightedCdf, edges: &BinEdges, counts: &[u64]) -> Result<Self> {
        if counts.len() != edges.num_bins() {
            return Err(Error::invalid(
                "bin counts",
                format!("{} counts for {} bins", counts.len(), edges.num_bins()),
            ));
        }
        let n: u64 = counts.iter().sum();
        if n == 0 || cdf.is_empty() {
            return Ok(StepCdf::default());
        }
        let (items, cum) = (cdf.items(), cdf.cumulative());
        let e = edges.edges();
        let nf = n as f64;
        let mut xs = Vec::with_capacity(items.len() + 4);
        let mut fs = Vec::with_capacity(items.len() + 4);
        let mut i = 0usize;
        let mut prefix = 0u64;
        for (b, c) in counts.iter().enumerate() {
            // Items of bin b: x < e[b] (and x >= e[b − 1], guaranteed by the walk).
            let start = i;
            while i < items.len() && (b == e.len() || items[i] < e[b]) {
                i += 1;
            }
            let before = if start == 0 { 0 } else { cum[start - 1] };
            let sketch_mass = if i > start { cum[i - 1] - before } else { 0 };
            if *c == 0 {
                continue;
            }
            if sketch_mass == 0 {
                let x = if b == 0 {
                    cdf.min()
                } else if b == e.len() {
                    cdf.max()
                } else {
                    (0.5 * (e[b - 1] + e[b])).clamp(cdf.min(), cdf.max())
                };
                prefix += c;
                xs.push(x);
                fs.push(prefix as f64 / nf);
                continue;
            }
            let scale = *c as f64 / sketch_mass as f64;
            let base = prefix as f64;
            for k in start..i {
                let inside = (cum[k] - before) as f64 * scale;
                xs.push(items[k]);
                fs.push(((base + inside) / nf).min(1.0));
            }
            prefix += c;
            // Pin the bin's last point to the exact prefix so rounding cannot drift.
            if let Some(f) = fs.last_mut() {
                *f = prefix as f64 / nf;
            }
        }
        // Synthetic points can land out of order only when a bin's midpoint passes an item of a
        // neighbouring bin, which the walk rules out; keep the invariant cheap to check anyway.
        debug_assert!(xs.windows(2).all(|w| w[0] <= w[1]));
        Ok(StepCdf { xs, fs, n })
    }

    /// Number of values the CDF summarises.
    pub fn n(&self) -> u64 {
        self.n
    }

    /// Whether the CDF has no mass.
    pub fn is_empty(&self) -> bool {
        self.xs.is_empty()
    }

    /// Support points, ascending.
    pub fn xs(&self) -> &[f64] {
        &self.xs
    }

    /// `F` at each support point.
    pub fn fs(&self) -> &[f64] {
        &self.fs
    }

    /// Inclusive quantile: the smallest support point `x` with `F(x) >= q`; `None` when empty or
    /// `q` is outside `[0, 1]`.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.xs.is_empty() || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let i = self.fs.partition_point(|f| *f < q).min(self.xs.len() - 1);
        Some(self.xs[i])
    }
}

/// A step CDF with the rank error it carries (0 for an exact CDF).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CdfSample {
    cdf: StepCdf,
    rank_error: f64,
    w1_error: f64,
}

impl CdfSample {
    /// A CDF with an explicit rank error (a fraction of n, e.g. 0.0133 for KLL k=200). Its
    /// Wasserstein error bound is `rank_error × (max − min)` of the support.
    pub fn new(cdf: StepCdf, rank_error: f64) -> Self {
        let rank_error = rank_error.max(0.0);
        let span = match (cdf.xs.first(), cdf.xs.last()) {
            (Some(a), Some(b)) => b - a,
            _ => 0.0,
        };
        CdfSample {
            cdf,
            rank_error,
            w1_error: rank_error * span,
        }
    }

    /// The exact CDF of raw values (NaN ignored); rank error 0.
    pub fn exact(values: &[f64]) -> Self {
        CdfSample::new(StepCdf::from_values(values), 0.0)
    }

    /// The CDF of a numeric state's KLL sketch. Its rank error is 0 while the sketch still holds
    /// every value, and the sketch's normalized (single-sided, 99 %) rank error once it compacts.
    pub fn from_state(state: &NumericState) -> Result<Self> {
        let mut s = CdfSample::new(
            StepCdf::from_weighted(&state.cdf()?),
            sketch_rank_error(state),
        );
        s.w1_error += quantization_w1(state);
        Ok(s)
    }

    /// The KLL CDF of a state calibrated to its exact counts over `edges` when the state binned
    /// on them (else as [`CdfSample::from_state`]). The rank error is the sketch's, capped by the
    /// largest bin's share, which bounds a calibrated CDF's error without any probability.
    ///
    /// Its Wasserstein error bound is `Σ_j min(ε, p_j) · width_j` over the bins, each clipped to
    /// the exact `[min, max]`: inside bin `j` a calibrated CDF is off by at most `p_j`.
    pub fn from_state_binned(state: &NumericState, edges: &BinEdges) -> Result<Self> {
        let eps = sketch_rank_error(state);
        match (state.bins(), state.min(), state.max()) {
            (Some(b), Some(lo), Some(hi)) if eps > 0.0 && b.edges_id == edges.id() => {
                let cdf = StepCdf::calibrated(&state.cdf()?, edges, &b.counts)?;
                let n = cdf.n().max(1) as f64;
                let e = edges.edges();
                let mut max_share = 0.0f64;
                let mut w1_error = 0.0;
                for (j, c) in b.counts.iter().enumerate() {
                    let share = *c as f64 / n;
                    max_share = max_share.max(share);
                    let left = if j == 0 { lo } else { e[j - 1].max(lo) };
                    let right = if j == e.len() { hi } else { e[j].min(hi) };
                    if right > left {
                        w1_error += eps.min(share) * (right - left);
                    }
                }
                Ok(CdfSample {
                    cdf,
                    rank_error: eps.min(max_share),
                    w1_error: w1_error + quantization_w1(state),
                })
            }
            _ => Self::from_state(state),
        }
    }

    /// The CDF.
    pub fn cdf(&self) -> &StepCdf {
        &self.cdf
    }

    /// Rank error of the CDF, as a fraction of its total weight.
    pub fn rank_error(&self) -> f64 {
        self.rank_error
    }

    /// Total weight (number of values summarised).
    pub fn n(&self) -> u64 {
        self.cdf.n()
    }

    /// Bound on `W1(this CDF, the exact CDF)` in the feature's units (0 for an exact CDF): the
    /// Wasserstein-1 of two samples is within the sum of their bounds of the exact value.
    pub fn wasserstein_error(&self) -> f64 {
        self.w1_error
    }
}

/// Bound on how far rounding the sketch items (`kll_quantize`) moves the CDF in W1: every
/// item moves by at most its magnitude times the quantization error.
fn quantization_w1(state: &NumericState) -> f64 {
    match (state.min(), state.max()) {
        (Some(lo), Some(hi)) => lo.abs().max(hi.abs()) * crate::sketch::kll::KLL_QUANTIZATION_ERROR,
        _ => 0.0,
    }
}

/// Rank error of a state's KLL: 0 while it holds every value, else the normalized rank error.
fn sketch_rank_error(state: &NumericState) -> f64 {
    state.kll_rank_error().unwrap_or(0.0)
}

/// `D = max |F_a − F_b|` and `W1 = ∫ |F_a − F_b| dx` in one merge of the two supports.
///
/// `F` is right-continuous, so between consecutive pooled points `z_k < z_{k+1}` the gap is the
/// one evaluated at `z_k` (scipy's `searchsorted(side="right")`).
fn d_and_w1(a: &StepCdf, b: &StepCdf) -> (f64, f64) {
    let (xa, fa, xb, fb) = (&a.xs[..], &a.fs[..], &b.xs[..], &b.fs[..]);
    let (Some(&a0), Some(&b0)) = (xa.first(), xb.first()) else {
        return (0.0, 0.0);
    };
    let (mut i, mut j) = (0usize, 0usize);
    let (mut va, mut vb) = (0.0f64, 0.0f64);
    let (mut d, mut w1) = (0.0f64, 0.0f64);
    // The previous pooled point and the gap that holds from it to the next one.
    let (mut z0, mut g0) = (a0.min(b0), 0.0f64);
    // Both sides left: advance whichever is smaller (both on a tie). Written without
    // data-dependent branches, since the interleaving of two samples is unpredictable.
    while i < xa.len() && j < xb.len() {
        let (x, y) = (xa[i], xb[j]);
        let (ta, tb) = (x <= y, y <= x);
        va = if ta { fa[i] } else { va };
        vb = if tb { fb[j] } else { vb };
        i += usize::from(ta);
        j += usize::from(tb);
        let z = if ta { x } else { y };
        let gap = (va - vb).abs();
        d = d.max(gap);
        w1 += (z - z0) * g0;
        z0 = z;
        g0 = gap;
    }
    // One side is exhausted: its CDF stays at its last value.
    let (rest_x, rest_f, fixed, rest_is_a) = if i < xa.len() {
        (&xa[i..], &fa[i..], vb, true)
    } else {
        (&xb[j..], &fb[j..], va, false)
    };
    for (z, f) in rest_x.iter().zip(rest_f) {
        let gap = if rest_is_a { f - fixed } else { fixed - f }.abs();
        d = d.max(gap);
        w1 += (z - z0) * g0;
        z0 = *z;
        g0 = gap;
    }
    (d, w1)
}

/// Two-sample KS statistic `D = max |F_a(x) − F_b(x)|` over the pooled values (docs/STATISTICS.md §6);
/// `None` when either side is empty. Bit-identical to `scipy.stats.ks_2samp` on exact CDFs.
pub fn ks_statistic(a: &StepCdf, b: &StepCdf) -> Option<f64> {
    (!a.is_empty() && !b.is_empty()).then(|| d_and_w1(a, b).0)
}

/// Wasserstein-1 distance `∫ |F_a − F_b| dx` in the feature's units, unnormalised (FORMULAS
/// §7); `None` when either side is empty.
pub fn wasserstein(a: &StepCdf, b: &StepCdf) -> Option<f64> {
    (!a.is_empty() && !b.is_empty()).then(|| d_and_w1(a, b).1)
}

/// The Kolmogorov distribution's survival function `Q_KS(λ) = P(K > λ)`, as
/// `scipy.special.kolmogorov` (docs/STATISTICS.md §6); 1 for `λ <= 0`.
pub fn kolmogorov_q(lambda: f64) -> f64 {
    if lambda.is_nan() {
        return f64::NAN;
    }
    if lambda <= 0.0 {
        return 1.0;
    }
    if lambda < KOLMOGOROV_SWITCH {
        // 1 − (√(2π)/λ) Σ exp(−(2k−1)² π² / (8 λ²)); converges fast for small λ.
        let c = std::f64::consts::PI * std::f64::consts::PI / (8.0 * lambda * lambda);
        let mut sum = 0.0;
        for k in 1..=50u32 {
            let m = f64::from(2 * k - 1);
            let term = (-m * m * c).exp();
            sum += term;
            if term <= sum * 1e-17 {
                break;
            }
        }
        (1.0 - (2.0 * std::f64::consts::PI).sqrt() / lambda * sum).clamp(0.0, 1.0)
    } else {
        // 2 Σ (−1)^(k−1) exp(−2 k² λ²); relative accuracy holds in the far tail too.
        let l2 = lambda * lambda;
        let mut sum = 0.0;
        let mut sign = 1.0;
        for k in 1..=100u32 {
            let kf = f64::from(k);
            let term = (-2.0 * kf * kf * l2).exp();
            sum += sign * term;
            if term <= sum.abs() * 1e-17 {
                break;
            }
            sign = -sign;
        }
        (2.0 * sum).clamp(0.0, 1.0)
    }
}

/// A two-sample KS result: the effect size D with both p-values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KsResult {
    /// The statistic D (effect size, in `[0, 1]`).
    pub statistic: f64,
    /// `Q_KS(sqrt(en)·D)` with `en = n·m/(n+m)` (docs/STATISTICS.md §6 `ks_pvalue_kolmogorov`).
    pub pvalue: f64,
    /// `Q_KS(sqrt(en)·max(0, D − rank_error))`: never below `pvalue`, equal to it for exact
    /// CDFs. Use it for verdicts on sketched data.
    pub pvalue_conservative: f64,
    /// Total rank error of the two CDFs (`ε_ref + ε_cur`); 0 when both are exact.
    pub rank_error: f64,
    /// Current (window) sample size.
    pub n: u64,
    /// Baseline sample size.
    pub baseline_n: u64,
}

impl KsResult {
    /// Whether D was computed from exact CDFs on both sides.
    pub fn is_exact(&self) -> bool {
        self.rank_error == 0.0
    }
}

/// KS test of `current` against `baseline`; `None` when either side is empty.
pub fn ks_test(baseline: &CdfSample, current: &CdfSample) -> Option<KsResult> {
    ks_and_wasserstein(baseline, current).map(|(ks, _)| ks)
}

/// The KS test and the Wasserstein-1 distance of `current` against `baseline` from one merge of
/// the two CDFs; `None` when either side is empty.
pub fn ks_and_wasserstein(baseline: &CdfSample, current: &CdfSample) -> Option<(KsResult, f64)> {
    if baseline.cdf.is_empty() || current.cdf.is_empty() {
        return None;
    }
    let (d, w1) = d_and_w1(&baseline.cdf, &current.cdf);
    let (n, m) = (baseline.n(), current.n());
    let en = (n as f64 * m as f64) / (n + m) as f64;
    let rank_error = baseline.rank_error + current.rank_error;
    let pvalue = kolmogorov_q(en.sqrt() * d);
    let pvalue_conservative = if rank_error > 0.0 {
        kolmogorov_q(en.sqrt() * (d - rank_error).max(0.0))
    } else {
        pvalue
    };
    let ks = KsResult {
        statistic: d,
        pvalue,
        pvalue_conservative,
        rank_error,
        n: m,
        baseline_n: n,
    };
    Some((ks, w1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ks_and_w1_on_small_samples() {
        let a = StepCdf::from_values(&[1.0, 2.0, 3.0]);
        let b = StepCdf::from_values(&[1.0, 2.0, 3.0]);
        assert_eq!(ks_statistic(&a, &b), Some(0.0));
        assert_eq!(wasserstein(&a, &b), Some(0.0));
        let c = StepCdf::from_values(&[4.0, 5.0, 6.0]);
        assert_eq!(ks_statistic(&a, &c), Some(1.0));
        assert!((wasserstein(&a, &c).unwrap() - 3.0).abs() < 1e-12);
        assert_eq!(ks_statistic(&a, &StepCdf::default()), None);
    }

    #[test]
    fn kolmogorov_series_agree_at_the_switch() {
        // Both series are valid everywhere; they must agree where they meet.
        let lam: f64 = KOLMOGOROV_SWITCH;
        let small = {
            let c = std::f64::consts::PI.powi(2) / (8.0 * lam * lam);
            let s: f64 = (1..50)
                .map(|k| (-(f64::from(2 * k - 1)).powi(2) * c).exp())
                .sum();
            1.0 - (2.0 * std::f64::consts::PI).sqrt() / lam * s
        };
        assert!((kolmogorov_q(lam) - small).abs() < 1e-14);
        assert_eq!(kolmogorov_q(0.0), 1.0);
        assert_eq!(kolmogorov_q(0.01), 1.0);
        assert!(kolmogorov_q(40.0) == 0.0);
    }
}
