//! One-sample summaries (docs/STATISTICS.md): count, missing and invalid rates, mean, std, min, max,
//! quantiles and distinct counts of a state, and the exact summary of raw reference values
//! (docs/STATISTICS.md §1) that a reference profile stores.
//!
//! Quantiles of a state come from its KLL sketch with DataSketches' inclusive criterion, so they
//! carry the sketch's rank error (reported alongside); count, mean, std, min and max are exact.

use crate::error::Result;
use crate::sketch::{CategoricalState, NumericState};
use crate::stats::categorical::missing_share;
use crate::stats::quantile::{sorted_finite, type7_quantile_sorted};
use crate::stats::ratio;

/// The quantiles every summary reports: p1, p5, p25, p50, p75, p95, p99.
pub const SUMMARY_QUANTILES: [f64; 7] = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99];

/// One quantile of a summary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantileValue {
    /// The probability, in `[0, 1]`.
    pub q: f64,
    /// The quantile.
    pub value: f64,
}

/// Summary of a numeric state.
#[derive(Debug, Clone, PartialEq)]
pub struct NumericSummary {
    /// Valid (non-null, finite) values: the `n` of every distribution statistic.
    pub count: u64,
    /// Rows seen: valid + missing + invalid.
    pub count_total: u64,
    /// Missing (null) values.
    pub missing: u64,
    /// Invalid values (NaN, ±inf, wrong type).
    pub invalid: u64,
    /// `missing / count_total`.
    pub missing_rate: Option<f64>,
    /// `invalid / count_total`.
    pub invalid_rate: Option<f64>,
    /// `(count_total − count) / count_total`, the docs/STATISTICS.md §0 `missing_share`.
    pub missing_share: Option<f64>,
    /// Mean (exact, running sum).
    pub mean: Option<f64>,
    /// Sample standard deviation, n − 1 (exact, Welford / Chan).
    pub std: Option<f64>,
    /// Exact minimum.
    pub min: Option<f64>,
    /// Exact maximum.
    pub max: Option<f64>,
    /// KLL quantiles (inclusive criterion) at the requested probabilities; empty when count is 0.
    pub quantiles: Vec<QuantileValue>,
    /// Rank error of the quantiles (0 while the sketch holds every value).
    pub quantile_rank_error: f64,
}

/// Summary of a numeric state at the probabilities `qs` (e.g. [`SUMMARY_QUANTILES`]).
pub fn numeric_summary(state: &NumericState, qs: &[f64]) -> Result<NumericSummary> {
    let total = state.count_total();
    let (quantiles, quantile_rank_error) = if state.count() > 0 {
        let cdf = state.cdf()?;
        let qv = qs
            .iter()
            .filter_map(|q| cdf.quantile(*q).map(|value| QuantileValue { q: *q, value }))
            .collect();
        (qv, state.kll_rank_error()?)
    } else {
        (Vec::new(), 0.0)
    };
    Ok(NumericSummary {
        count: state.count(),
        count_total: total,
        missing: state.missing(),
        invalid: state.invalid(),
        missing_rate: ratio(state.missing(), total),
        invalid_rate: ratio(state.invalid(), total),
        missing_share: missing_share(state.count(), total),
        mean: state.mean(),
        std: state.std(),
        min: state.min(),
        max: state.max(),
        quantiles,
        quantile_rank_error,
    })
}

/// Summary of a categorical state.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoricalSummary {
    /// Non-null values.
    pub count: u64,
    /// Rows seen.
    pub count_total: u64,
    /// Missing values.
    pub missing: u64,
    /// Invalid values.
    pub invalid: u64,
    /// `missing / count_total`.
    pub missing_rate: Option<f64>,
    /// `invalid / count_total`.
    pub invalid_rate: Option<f64>,
    /// `(count_total − count) / count_total`.
    pub missing_share: Option<f64>,
    /// Distinct non-null categories (exact, or the HLL estimate past the cap).
    pub n_distinct: f64,
    /// Whether `n_distinct` is exact.
    pub distinct_exact: bool,
    /// Values whose category the reference lacked when they were folded.
    pub unseen: u64,
    /// `unseen / count`.
    pub unseen_rate: Option<f64>,
}

/// Summary of a categorical state.
pub fn categorical_summary(state: &CategoricalState) -> CategoricalSummary {
    let total = state.count_total();
    CategoricalSummary {
        count: state.count(),
        count_total: total,
        missing: state.missing(),
        invalid: state.invalid(),
        missing_rate: ratio(state.missing(), total),
        invalid_rate: ratio(state.invalid(), total),
        missing_share: missing_share(state.count(), total),
        n_distinct: state.n_distinct(),
        distinct_exact: state.is_exact(),
        unseen: state.unseen(),
        unseen_rate: ratio(state.unseen(), state.count()),
    }
}

/// Exact summary of raw values, as a reference profile stores it (docs/STATISTICS.md §1).
#[derive(Debug, Clone, PartialEq)]
pub struct ExactSummary {
    /// Finite values summarised.
    pub count: u64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Sample standard deviation (n − 1); `None` when n < 2.
    pub std: Option<f64>,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
    /// Type-7 quantiles at the requested probabilities.
    pub quantiles: Vec<QuantileValue>,
}

impl ExactSummary {
    /// Summary of the finite values of `values` at probabilities `qs`; `None` when there is none.
    pub fn from_values(values: &[f64], qs: &[f64]) -> Option<Self> {
        let sorted = sorted_finite(values);
        let n = sorted.len();
        let (min, max) = (*sorted.first()?, *sorted.last()?);
        let mean = sorted.iter().sum::<f64>() / n as f64;
        // Two passes: the deviations are summed around the exact mean.
        let std = (n > 1).then(|| {
            let ss: f64 = sorted.iter().map(|x| (x - mean) * (x - mean)).sum();
            (ss / (n - 1) as f64).sqrt()
        });
        let quantiles = qs
            .iter()
            .filter_map(|q| {
                type7_quantile_sorted(&sorted, *q).map(|value| QuantileValue { q: *q, value })
            })
            .collect();
        Some(ExactSummary {
            count: n as u64,
            mean,
            std,
            min,
            max,
            quantiles,
        })
    }
}
