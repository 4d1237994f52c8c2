//! Statistics over sketch states: drift between a window and its baseline, one-sample
//! summaries, labelled performance, false-discovery control and silent-failure signals.
//!
//! Every definition follows `docs/STATISTICS.md`, and the golden test
//! (`engine/tests/golden.rs`) checks each one against scipy / scikit-learn numbers within the
//! tolerances of docs/STATISTICS.md §16. The functions are pure: they read states and return plain result
//! structs, and every result carries the sample sizes it rests on (`n`, `baseline_n`,
//! `n_labeled`), so a caller can judge an effect size and a p-value together.
//!
//! - [`quantile`]: type-7 quantiles of raw values and the collapsed reference bin edges (§1–2);
//! - [`divergence`]: PSI, Jensen–Shannon and Hellinger on bin counts (§3–5);
//! - [`ks`]: Kolmogorov–Smirnov (with a sketch-aware p-value) and Wasserstein-1 (§6–7);
//! - [`special`]: log-gamma and the regularised incomplete gamma behind chi-square p-values;
//! - [`categorical`]: chi-square homogeneity, L∞, unseen categories (§8);
//! - [`numeric`]: numeric drift from two [`crate::sketch::NumericState`]s (§2–7, §9);
//! - [`summary`]: one-sample summaries of states and of raw reference values (§1);
//! - [`fdr`]: Benjamini–Hochberg adjustment (§13);
//! - [`performance`]: binary, regression and ranking metrics from a
//!   [`crate::sketch::PerformanceState`] (§10–12);
//! - [`signals`]: entropy, calibration shift and top-K diversity for `explain`;
//! - [`estimate`]: binary performance estimated without labels from the score distribution and
//!   the reference's calibration (§20).

pub mod categorical;
pub mod divergence;
pub mod estimate;
pub mod fdr;
pub mod ks;
pub mod numeric;
pub mod performance;
pub mod quantile;
pub mod signals;
pub mod special;
pub mod summary;

#[cfg(test)]
mod tests;

pub use categorical::{CategoricalDrift, ChiSquare, categorical_drift, chi_square_homogeneity};
pub use divergence::{BinDrift, PSI_CLIP, bin_drift, hellinger, js_distance, psi};
pub use estimate::{
    Calibration, Estimate, EstimatedPerformance, estimate_performance, labelled_scores,
    sketch_scores,
};
pub use fdr::benjamini_hochberg;
pub use ks::{CdfSample, KsResult, StepCdf, kolmogorov_q, ks_statistic, ks_test, wasserstein};
pub use numeric::{NumericDrift, numeric_drift};
pub use performance::{
    BinaryMetrics, RankingMetrics, RegressionMetrics, binary_metrics, ndcg_at_k, ranking_metrics,
    regression_metrics,
};
pub use quantile::{ReferenceEdges, coarsen_bins, quantile_edges, type7_quantile};
pub use summary::{CategoricalSummary, ExactSummary, NumericSummary};

/// `num / den` as a share, `None` when `den` is 0.
pub(crate) fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// `num / den` on floats, `None` when `den` is 0.
pub(crate) fn fratio(num: f64, den: u64) -> Option<f64> {
    (den > 0).then(|| num / den as f64)
}
