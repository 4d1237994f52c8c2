//! Silent-failure signals for `explain`: failures that leave drift metrics quiet but show in
//! the shape of the output, such as a score that collapses to a few values (low entropy),
//! calibration that moves between windows, or recommendations that stop varying (few distinct
//! items in the top K).

use crate::sketch::performance::BinaryPerf;
use crate::stats::performance::ece;

/// Shannon entropy of a histogram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entropy {
    /// Entropy in bits.
    pub bits: f64,
    /// `bits / log2(bins)`, in `[0, 1]`: 1 for a flat histogram, 0 for a single occupied bin.
    pub normalized: f64,
    /// Bins of the histogram (occupied or not).
    pub bins: usize,
    /// Observations in the histogram.
    pub n: u64,
}

/// Shannon entropy (bits) of counts over `bins` bins (unlisted bins are empty); `None` when the
/// counts sum to 0.
pub fn entropy_of_counts(counts: impl IntoIterator<Item = u64>, bins: usize) -> Option<Entropy> {
    let counts: Vec<u64> = counts.into_iter().filter(|c| *c > 0).collect();
    let n: u64 = counts.iter().sum();
    if n == 0 {
        return None;
    }
    let nf = n as f64;
    let bits: f64 = counts
        .iter()
        .map(|c| {
            let p = *c as f64 / nf;
            -p * p.log2()
        })
        .sum::<f64>()
        .max(0.0);
    let max_bits = (bins.max(counts.len()) as f64).log2();
    Some(Entropy {
        bits,
        normalized: if max_bits > 0.0 {
            (bits / max_bits).min(1.0)
        } else {
            0.0
        },
        bins: bins.max(counts.len()),
        n,
    })
}

/// Entropy of a histogram given as a dense count vector (e.g. a numeric state's bins).
pub fn histogram_entropy(counts: &[u64]) -> Option<Entropy> {
    entropy_of_counts(counts.iter().copied(), counts.len())
}

/// Entropy of the labelled scores over the 1,000-bin AUC histogram (both classes pooled).
pub fn score_entropy(b: &BinaryPerf) -> Option<Entropy> {
    entropy_of_counts(
        b.hist.values().map(|[neg, pos]| neg + pos),
        crate::sketch::performance::AUC_BINS as usize,
    )
}

/// How calibration moved between two windows of the same series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CalibrationShift {
    /// ECE of the earlier window.
    pub ece_before: f64,
    /// ECE of the later window.
    pub ece_after: f64,
    /// `ece_after − ece_before`.
    pub ece_change: f64,
    /// `mean score − positive rate` of the earlier window (> 0: over-predicts).
    pub gap_before: f64,
    /// `mean score − positive rate` of the later window.
    pub gap_after: f64,
    /// `gap_after − gap_before`.
    pub gap_change: f64,
    /// Labelled rows of the earlier window.
    pub n_before: u64,
    /// Labelled rows of the later window.
    pub n_after: u64,
}

fn gap(b: &BinaryPerf) -> Option<f64> {
    (b.n > 0).then(|| (b.sum_score - b.positives as f64) / b.n as f64)
}

/// Calibration shift from `before` to `after`; `None` when either has no labelled row.
pub fn calibration_shift(before: &BinaryPerf, after: &BinaryPerf) -> Option<CalibrationShift> {
    let (eb, ea) = (ece(&before.calibration)?, ece(&after.calibration)?);
    let (gb, ga) = (gap(before)?, gap(after)?);
    Some(CalibrationShift {
        ece_before: eb,
        ece_after: ea,
        ece_change: ea - eb,
        gap_before: gb,
        gap_after: ga,
        gap_change: ga - gb,
        n_before: before.n,
        n_after: after.n,
    })
}

/// Distinct items in the top K as a share of the slots shown: `distinct / (impressions · k)`,
/// capped at 1. `distinct` is an exact or HLL count of the items served in the top K. Near 0
/// means the ranker serves the same few items to everyone. `None` when no slot was shown.
pub fn distinct_share_top_k(distinct: f64, impressions: u64, k: usize) -> Option<f64> {
    let slots = impressions as f64 * k as f64;
    (slots > 0.0 && distinct.is_finite()).then(|| (distinct.max(0.0) / slots).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_bounds() {
        let flat = histogram_entropy(&[5, 5, 5, 5]).unwrap();
        assert!((flat.bits - 2.0).abs() < 1e-12 && (flat.normalized - 1.0).abs() < 1e-12);
        let one = histogram_entropy(&[0, 9, 0, 0]).unwrap();
        assert_eq!((one.bits, one.normalized), (0.0, 0.0));
        assert!(histogram_entropy(&[0, 0]).is_none());
    }

    #[test]
    fn calibration_shift_and_diversity() {
        let mut a = crate::sketch::PerformanceState::default();
        let mut b = crate::sketch::PerformanceState::default();
        for i in 0..100 {
            a.observe_binary(0.3, i % 10 < 3).unwrap();
            b.observe_binary(0.6, i % 10 < 3).unwrap();
        }
        let s = calibration_shift(a.binary.as_ref().unwrap(), b.binary.as_ref().unwrap()).unwrap();
        assert!(s.ece_before.abs() < 1e-12 && (s.ece_after - 0.3).abs() < 1e-12);
        assert!((s.gap_change - 0.3).abs() < 1e-12);
        assert_eq!(distinct_share_top_k(5.0, 10, 5), Some(0.1));
        assert_eq!(distinct_share_top_k(5.0, 0, 5), None);
    }
}
