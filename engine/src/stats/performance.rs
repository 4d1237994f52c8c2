//! Labelled performance from a [`PerformanceState`] (docs/STATISTICS.md §10–12): binary classification
//! (thresholded metrics at 0.5, ROC AUC, log loss, Brier, ECE with its bins), regression (RMSE,
//! MAE, MAPE) and ranking (NDCG@K, CTR, CVR, RPM), each with label coverage.
//!
//! Everything but ROC AUC is exact from the state's counts and sums. AUC comes from the 1,000-bin
//! score histogram per class, counting pairs within one bin as ties (½), so it is within 1e-3
//! of the exact value (docs/STATISTICS.md §16). A ratio whose denominator is 0 is `None`, never 0.

use std::collections::BTreeMap;

use crate::sketch::ScoreState;
use crate::sketch::performance::{
    BinaryPerf, CalibrationBin, ECE_BINS, MAX_NDCG_K, PerformanceState, RankingPerf, RegressionPerf,
};
use crate::stats::{fratio, ratio};

/// Confusion counts at the 0.5 threshold (`ŷ = 1` iff `p >= 0.5`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Confusion {
    /// True positives.
    pub tp: u64,
    /// False positives.
    pub fp: u64,
    /// True negatives.
    pub tn: u64,
    /// False negatives.
    pub fn_: u64,
}

/// One ECE calibration bin, `[lower, upper)` (the last bin is closed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CalibrationBinSummary {
    /// Lower score bound.
    pub lower: f64,
    /// Upper score bound.
    pub upper: f64,
    /// Labelled rows in the bin.
    pub n: u64,
    /// Mean score in the bin; `None` when empty.
    pub mean_score: Option<f64>,
    /// Positive rate in the bin; `None` when empty.
    pub pos_rate: Option<f64>,
}

/// Binary classification metrics over labelled rows.
#[derive(Debug, Clone, PartialEq)]
pub struct BinaryMetrics {
    /// Predictions made (labelled or not).
    pub n_rows: u64,
    /// Labelled predictions: the `n` of every metric below.
    pub n_labeled: u64,
    /// `n_labeled / n_rows`.
    pub label_coverage: Option<f64>,
    /// Positive labels.
    pub positives: u64,
    /// Negative labels.
    pub negatives: u64,
    /// `mean(y)`.
    pub positive_rate: Option<f64>,
    /// `mean(p)` over labelled rows.
    pub mean_score: Option<f64>,
    /// Confusion counts at 0.5.
    pub confusion: Confusion,
    /// `mean(ŷ == y)`.
    pub accuracy: Option<f64>,
    /// `TP / (TP + FP)`.
    pub precision: Option<f64>,
    /// `TP / (TP + FN)`.
    pub recall: Option<f64>,
    /// `2 TP / (2 TP + FP + FN)`.
    pub f1: Option<f64>,
    /// ROC AUC from the score histogram; `None` unless both classes are present.
    pub roc_auc: Option<f64>,
    /// Mean log loss, scores clipped to `[1e-15, 1 − 1e-15]`.
    pub log_loss: Option<f64>,
    /// Brier score `mean((p − y)²)`.
    pub brier: Option<f64>,
    /// Expected calibration error over 10 equal-width bins.
    pub ece: Option<f64>,
    /// The 10 calibration bins.
    pub ece_bins: Vec<CalibrationBinSummary>,
}

/// Expected calibration error: `Σ (n_b/N) |mean(y in b) − mean(p in b)|`, empty bins skipped.
pub fn ece(bins: &[CalibrationBin]) -> Option<f64> {
    let n: u64 = bins.iter().map(|b| b.n).sum();
    (n > 0).then(|| {
        bins.iter()
            .filter(|b| b.n > 0)
            .map(|b| {
                let nb = b.n as f64;
                (nb / n as f64) * (b.sum_label / nb - b.sum_score / nb).abs()
            })
            .sum()
    })
}

/// ROC AUC from a per-class score histogram (bin → [negatives, positives]), bins in ascending
/// score order; pairs within one bin count ½. `None` unless both classes are present.
pub fn roc_auc_from_histogram(hist: &BTreeMap<u32, [u64; 2]>) -> Option<f64> {
    let (mut neg_below, mut twice_num) = (0u128, 0u128);
    let (mut npos, mut nneg) = (0u128, 0u128);
    for [neg, pos] in hist.values() {
        let (neg, pos) = (u128::from(*neg), u128::from(*pos));
        // 2 × (pos · neg_below + ½ pos · neg), kept in integers so the ratio is rounded once.
        twice_num += pos * (2 * neg_below + neg);
        neg_below += neg;
        npos += pos;
        nneg += neg;
    }
    (npos > 0 && nneg > 0).then(|| twice_num as f64 / (2 * npos * nneg) as f64)
}

/// Binary metrics of `b`, for a window that made `n_rows` predictions.
pub fn binary_metrics(b: &BinaryPerf, n_rows: u64) -> BinaryMetrics {
    let [tp, fp, tn, fn_] = b.confusion;
    let n = b.n;
    let width = 1.0 / ECE_BINS as f64;
    let ece_bins = b
        .calibration
        .iter()
        .enumerate()
        .map(|(i, c)| CalibrationBinSummary {
            lower: i as f64 * width,
            upper: (i + 1) as f64 * width,
            n: c.n,
            mean_score: fratio(c.sum_score, c.n),
            pos_rate: fratio(c.sum_label, c.n),
        })
        .collect();
    BinaryMetrics {
        n_rows,
        n_labeled: n,
        label_coverage: ratio(n, n_rows),
        positives: b.positives,
        negatives: n.saturating_sub(b.positives),
        positive_rate: ratio(b.positives, n),
        mean_score: fratio(b.sum_score, n),
        confusion: Confusion { tp, fp, tn, fn_ },
        accuracy: ratio(tp + tn, n),
        precision: ratio(tp, tp + fp),
        recall: ratio(tp, tp + fn_),
        f1: ratio(2 * tp, 2 * tp + fp + fn_),
        roc_auc: roc_auc_from_histogram(&b.hist),
        log_loss: fratio(b.log_loss_sum, n),
        brier: fratio(b.brier_sum, n),
        ece: ece(&b.calibration),
        ece_bins,
    }
}

/// Regression metrics over labelled rows (docs/STATISTICS.md §11).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegressionMetrics {
    /// Predictions made.
    pub n_rows: u64,
    /// Labelled predictions.
    pub n_labeled: u64,
    /// `n_labeled / n_rows`.
    pub label_coverage: Option<f64>,
    /// Root mean squared error.
    pub rmse: Option<f64>,
    /// Mean absolute error.
    pub mae: Option<f64>,
    /// Mean absolute percentage error as a fraction, over rows with `y != 0`.
    pub mape: Option<f64>,
    /// Rows MAPE uses.
    pub n_mape: u64,
}

/// Regression metrics of `r`, for a window that made `n_rows` predictions.
pub fn regression_metrics(r: &RegressionPerf, n_rows: u64) -> RegressionMetrics {
    RegressionMetrics {
        n_rows,
        n_labeled: r.n,
        label_coverage: ratio(r.n, n_rows),
        rmse: fratio(r.sq_err_sum, r.n).map(f64::sqrt),
        mae: fratio(r.abs_err_sum, r.n),
        mape: fratio(r.ape_sum, r.n_ape),
        n_mape: r.n_ape,
    }
}

/// Ranking metrics over impressions whose outcome arrived (docs/STATISTICS.md §12).
#[derive(Debug, Clone, PartialEq)]
pub struct RankingMetrics {
    /// Ranking predictions made.
    pub n_rows: u64,
    /// Predictions whose outcome arrived: the `n` of every metric below.
    pub impressions: u64,
    /// `impressions / n_rows`.
    pub label_coverage: Option<f64>,
    /// Mean NDCG@K for K = 1..=20 (index K − 1); empty when there is no impression.
    pub ndcg: Vec<f64>,
    /// `Σ clicks / impressions`.
    pub ctr: Option<f64>,
    /// `Σ purchases / Σ clicks`; `None` without clicks.
    pub cvr: Option<f64>,
    /// `1000 · Σ revenue / impressions`.
    pub rpm: Option<f64>,
}

impl RankingMetrics {
    /// Mean NDCG@k for `1 <= k <= 20`.
    pub fn ndcg_at(&self, k: usize) -> Option<f64> {
        k.checked_sub(1).and_then(|i| self.ndcg.get(i)).copied()
    }
}

/// Ranking metrics of `r`, for a window that made `n_rows` ranking predictions.
pub fn ranking_metrics(r: &RankingPerf, n_rows: u64) -> RankingMetrics {
    let imp = r.impressions;
    RankingMetrics {
        n_rows,
        impressions: imp,
        label_coverage: ratio(imp, n_rows),
        ndcg: if imp > 0 {
            r.ndcg_sum.iter().map(|s| s / imp as f64).collect()
        } else {
            Vec::new()
        },
        ctr: fratio(r.clicks, imp),
        cvr: (r.clicks > 0.0).then(|| r.purchases / r.clicks),
        rpm: fratio(1000.0 * r.revenue, imp),
    }
}

/// All labelled-performance metrics of a score state.
#[derive(Debug, Clone, PartialEq)]
pub struct PerformanceReport {
    /// Binary metrics, when binary labels joined.
    pub binary: Option<BinaryMetrics>,
    /// Regression metrics, when numeric labels joined.
    pub regression: Option<RegressionMetrics>,
    /// Ranking metrics, when outcomes joined.
    pub ranking: Option<RankingMetrics>,
}

/// Metrics of a performance state for a window that made `n_rows` predictions.
pub fn performance_report(perf: &PerformanceState, n_rows: u64) -> PerformanceReport {
    PerformanceReport {
        binary: perf.binary.as_ref().map(|b| binary_metrics(b, n_rows)),
        regression: perf
            .regression
            .as_ref()
            .map(|r| regression_metrics(r, n_rows)),
        ranking: perf.ranking.as_ref().map(|r| ranking_metrics(r, n_rows)),
    }
}

/// Metrics of a score state (its prediction count is the coverage denominator).
pub fn score_performance(state: &ScoreState) -> PerformanceReport {
    performance_report(&state.performance, state.predictions)
}

/// `DCG@K = Σ_{i=1..min(K, n)} rel_i / log2(i + 1)`, linear gain, positions 1-based.
pub fn dcg_at_k(relevances: &[f64], k: usize) -> f64 {
    relevances
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, r)| r / ((i + 2) as f64).log2())
        .sum()
}

/// NDCG@K of one request (docs/STATISTICS.md §12).
///
/// `served` holds the relevance of each served item in display order (0 for an unjudged item);
/// `judged` holds every relevance value of the request, served or not, in any order; the ideal
/// DCG sorts them descending. 0 when the ideal DCG is 0 (no relevant item) or `k == 0`.
pub fn ndcg_at_k(served: &[f64], judged: &[f64], k: usize) -> f64 {
    let mut ideal = judged.to_vec();
    ideal.sort_by(|a, b| b.total_cmp(a));
    ndcg_sorted(served, &ideal, k)
}

fn ndcg_sorted(served: &[f64], ideal_desc: &[f64], k: usize) -> f64 {
    let idcg = dcg_at_k(ideal_desc, k);
    if idcg > 0.0 {
        dcg_at_k(served, k) / idcg
    } else {
        0.0
    }
}

/// NDCG@1..=20 of one request, as [`PerformanceState::observe_ranking`] takes them.
pub fn ndcg_all(served: &[f64], judged: &[f64]) -> [f64; MAX_NDCG_K] {
    let mut ideal = judged.to_vec();
    ideal.sort_by(|a, b| b.total_cmp(a));
    let mut out = [0.0; MAX_NDCG_K];
    for (i, o) in out.iter_mut().enumerate() {
        *o = ndcg_sorted(served, &ideal, i + 1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_with_ties_in_one_bin() {
        let mut h = BTreeMap::new();
        h.insert(100, [1, 1]);
        h.insert(900, [0, 1]);
        // pairs: (pos@900, neg@100) = 1; (pos@100, neg@100) = ½ → 1.5 / 2.
        assert_eq!(roc_auc_from_histogram(&h), Some(0.75));
        h.insert(50, [0, 0]);
        let mut only_pos = BTreeMap::new();
        only_pos.insert(3, [0, 4]);
        assert_eq!(roc_auc_from_histogram(&only_pos), None);
    }

    #[test]
    fn ndcg_edge_cases() {
        assert_eq!(ndcg_at_k(&[0.0, 0.0], &[], 3), 0.0);
        assert_eq!(ndcg_at_k(&[3.0, 2.0], &[2.0, 3.0], 2), 1.0);
        assert_eq!(ndcg_at_k(&[3.0], &[3.0], 0), 0.0);
        let all = ndcg_all(&[0.0, 1.0], &[1.0]);
        assert_eq!(all[0], 0.0);
        assert!((all[1] - 1.0 / 3f64.log2()).abs() < 1e-15);
    }
}
