//! Numeric drift of a window's [`NumericState`] against its baseline state: PSI / JS / Hellinger
//! over the reference quantile bins (10 and 50 bins, docs/STATISTICS.md §2–5), KS and Wasserstein-1 over
//! the KLL CDFs (§6–7), and the missing-rate change (§9).
//!
//! States bin on the 50-bin reference edges; the 10-bin counts are derived exactly with
//! [`ReferenceEdges::coarsen`]. A state binned on the 10-bin edges yields the 10-bin metrics
//! only; a state binned on other edges (or not at all) yields no bin metrics.

use crate::error::Result;
use crate::sketch::NumericState;
use crate::stats::categorical::missing_share;
use crate::stats::divergence::{BinDrift, bin_drift};
use crate::stats::ks::{CdfSample, KsResult, ks_and_wasserstein};
use crate::stats::quantile::ReferenceEdges;

/// Drift of a numeric series against its baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct NumericDrift {
    /// PSI / JS / Hellinger on the 10 reference-quantile bins (the default).
    pub q10: Option<BinDrift>,
    /// PSI / JS / Hellinger on the 50 reference-quantile bins.
    pub q50: Option<BinDrift>,
    /// Kolmogorov–Smirnov D with its plain and sketch-aware p-values.
    pub ks: Option<KsResult>,
    /// Wasserstein-1 in the feature's units (unnormalised), estimated bin by bin from exact
    /// per-bin integrals when both states have offset sums (docs/STATISTICS.md §7).
    pub wasserstein: Option<f64>,
    /// Bound on the sketch error of `wasserstein`, in the same units (0 when both CDFs are
    /// exact). It holds without any probability, so it must allow any shape inside a bin: near
    /// zero under drift, several times the value itself at the noise level, where the estimate
    /// is nonetheless unbiased and typically within 1 % of the reference's standard deviation.
    pub wasserstein_error_bound: Option<f64>,
    /// Wasserstein-1 divided by the baseline's standard deviation (unitless).
    pub wasserstein_std: Option<f64>,
    /// `mean(current) − mean(baseline)`.
    pub mean_shift: Option<f64>,
    /// `missing_share(current) − missing_share(baseline)`.
    pub missing_share_change: Option<f64>,
    /// Current non-null count.
    pub n: u64,
    /// Baseline non-null count.
    pub baseline_n: u64,
}

/// The bin metrics of two states binned on the same edges, for `edges`' 10 and 50 bins.
pub fn bin_metrics(
    baseline: &NumericState,
    current: &NumericState,
    edges: &ReferenceEdges,
) -> Result<(Option<BinDrift>, Option<BinDrift>)> {
    let (Some(b), Some(c)) = (baseline.bins(), current.bins()) else {
        return Ok((None, None));
    };
    if b.edges_id != c.edges_id {
        return Ok((None, None));
    }
    if b.edges_id == edges.q50.id() && b.counts.len() == edges.q50.num_bins() {
        let q50 = bin_drift(&b.counts, &c.counts)?;
        let q10 = bin_drift(&edges.coarsen(&b.counts)?, &edges.coarsen(&c.counts)?)?;
        Ok((q10, q50))
    } else if b.edges_id == edges.q10.id() {
        Ok((bin_drift(&b.counts, &c.counts)?, None))
    } else {
        Ok((None, None))
    }
}

/// Numeric drift of `current` against `baseline`, with CDFs taken from the states' KLLs,
/// calibrated to their exact 50-bin counts (see [`crate::stats::ks::StepCdf::calibrated`]).
pub fn numeric_drift(
    baseline: &NumericState,
    current: &NumericState,
    edges: &ReferenceEdges,
) -> Result<NumericDrift> {
    let base_cdf = CdfSample::from_state_binned(baseline, &edges.q50)?;
    numeric_drift_with_baseline_cdf(baseline, &base_cdf, current, edges)
}

/// As [`numeric_drift`], with the baseline's CDF supplied by the caller (a reference profile
/// computes it once; it may be exact, built from raw reference values). The current CDF is
/// calibrated to the current state's 50-bin counts.
pub fn numeric_drift_with_baseline_cdf(
    baseline: &NumericState,
    baseline_cdf: &CdfSample,
    current: &NumericState,
    edges: &ReferenceEdges,
) -> Result<NumericDrift> {
    let (q10, q50) = bin_metrics(baseline, current, edges)?;
    let cur_cdf = CdfSample::from_state_binned(current, &edges.q50)?;
    let (ks, w) = match ks_and_wasserstein(baseline_cdf, &cur_cdf) {
        Some((k, w)) => (Some(k), Some(w)),
        None => (None, None),
    };
    let w1 = w.map(|w| w.value);
    let wasserstein_std = match (w1, baseline.std()) {
        (Some(w), Some(s)) if s > 0.0 => Some(w / s),
        _ => None,
    };
    let mean_shift = match (current.mean(), baseline.mean()) {
        (Some(c), Some(b)) => Some(c - b),
        _ => None,
    };
    let missing_share_change = match (
        missing_share(current.count(), current.count_total()),
        missing_share(baseline.count(), baseline.count_total()),
    ) {
        (Some(c), Some(b)) => Some(c - b),
        _ => None,
    };
    Ok(NumericDrift {
        q10,
        q50,
        ks,
        wasserstein: w1,
        wasserstein_error_bound: w.map(|w| w.error_bound),
        wasserstein_std,
        mean_shift,
        missing_share_change,
        n: current.count(),
        baseline_n: baseline.count(),
    })
}
