//! Silent-failure signals for `explain`: failures that leave drift metrics quiet but show in
//! the shape of the output, such as a score that collapses to a few values (low entropy),
//! calibration that moves between windows, or recommendations that stop varying (few distinct
//! items in the top K).

use crate::sketch::CategoricalState;
use crate::sketch::performance::BinaryPerf;
use crate::stats::performance::ece;
use crate::stats::special::ln_gamma;

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

/// Expected number of distinct items among `slots` served slots drawn at random, without
/// replacement, from the slots of `reference` (Hurlbert's rarefaction,
/// `Σᵢ 1 − C(N − nᵢ, m) / C(N, m)` over the reference's items with counts `nᵢ`, `N = Σ nᵢ`).
///
/// The number of distinct items grows with the sample, so a share of distinct items only
/// compares between samples of the same size: this brings the reference down to the current
/// sample's size. While the state is exact (≤ 256 items) the counts are exact; past the cap the
/// frequent items keep their estimated counts and the remaining slots are spread evenly over
/// the remaining distinct items (the HLL estimate minus the frequent ones). For `slots ≥ N` the
/// reference's own distinct count is returned: it does not extrapolate, so it is a lower bound of
/// what a larger sample from the reference would show. `None` when the reference has no slot.
pub fn rarefied_distinct(reference: &CategoricalState, slots: u64) -> Option<f64> {
    let total = reference.count();
    if total == 0 {
        return None;
    }
    let distinct = reference.n_distinct();
    if slots >= total {
        return Some(distinct);
    }
    let (n, m) = (total as f64, slots as f64);
    let ln_all = ln_gamma(n + 1.0) - ln_gamma(n - m + 1.0);
    // Probability that an item holding `c` of the N slots is absent from the m drawn.
    let absent = |c: f64| -> f64 {
        let rest = n - c.clamp(0.0, n);
        if rest < m {
            0.0
        } else {
            (ln_gamma(rest + 1.0) - ln_gamma(rest - m + 1.0) - ln_all)
                .exp()
                .clamp(0.0, 1.0)
        }
    };
    let expected = match reference.exact_counts() {
        Some(counts) => counts.values().map(|c| 1.0 - absent(*c as f64)).sum(),
        None => {
            let heavy = reference.counts();
            let heavy_slots: f64 = heavy.values().map(|c| *c as f64).sum::<f64>().min(n);
            let mut e: f64 = heavy.values().map(|c| 1.0 - absent(*c as f64)).sum();
            let rest_items = (distinct - heavy.len() as f64).max(0.0);
            let rest_slots = n - heavy_slots;
            if rest_items > 0.0 && rest_slots > 0.0 {
                e += rest_items * (1.0 - absent(rest_slots / rest_items));
            }
            e
        }
    };
    Some(expected.clamp(0.0, m))
}

/// Served-item diversity of a range's top-K slots next to its reference's (the `explain` signal
/// "collapse of distinct items in top-K").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopKDiversity {
    /// Distinct item ids served in the range (exact, or the HLL estimate past 256).
    pub distinct: f64,
    /// Slots shown: item ids folded, at most K per prediction.
    pub slots: u64,
    /// `⌈slots / K⌉`: predictions with items, counted as full top-K lists.
    pub impressions: u64,
    /// [`distinct_share_top_k`]`(distinct, impressions, K)`.
    pub share: f64,
    /// Distinct items expected in `slots` slots drawn from the reference
    /// ([`rarefied_distinct`]); `None` without a reference.
    pub reference_distinct: Option<f64>,
    /// [`distinct_share_top_k`]`(reference_distinct, impressions, K)`: the reference's share at
    /// the range's sample size.
    pub reference_share: Option<f64>,
}

/// Top-K diversity of `current` (an `$items` state) against `reference` (the reference's
/// `$items` profile). Impressions are counted from slots (`⌈slots / K⌉`), so lists shorter than
/// K are judged on the slots they did show. `None` when `current` holds no served item.
pub fn topk_diversity(
    current: &CategoricalState,
    reference: Option<&CategoricalState>,
    k: usize,
) -> Option<TopKDiversity> {
    let slots = current.count();
    let impressions = slots.div_ceil(k.max(1) as u64);
    let distinct = current.n_distinct();
    let share = distinct_share_top_k(distinct, impressions, k)?;
    let reference_distinct = reference.and_then(|r| rarefied_distinct(r, slots));
    Some(TopKDiversity {
        distinct,
        slots,
        impressions,
        share,
        reference_distinct,
        reference_share: reference_distinct.and_then(|d| distinct_share_top_k(d, impressions, k)),
    })
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

    fn items(n_items: usize, each: usize) -> CategoricalState {
        let mut st = CategoricalState::default();
        for _ in 0..each {
            for i in 0..n_items {
                st.observe(&format!("item{i}"), false);
            }
        }
        st
    }

    #[test]
    fn rarefaction_matches_the_hypergeometric_expectation() {
        // 200 items served 5 times each: N = 1000 slots.
        let r = items(200, 5);
        assert_eq!(rarefied_distinct(&r, 1000), Some(200.0));
        assert_eq!(rarefied_distinct(&r, 5000), Some(200.0));
        assert_eq!(rarefied_distinct(&r, 0), Some(0.0));
        // One item is absent from 10 draws with probability C(995, 10) / C(1000, 10).
        let absent: f64 = (0..10)
            .map(|j| (995.0 - j as f64) / (1000.0 - j as f64))
            .product();
        let want = 200.0 * (1.0 - absent);
        let got = rarefied_distinct(&r, 10).unwrap();
        assert!((got - want).abs() < 1e-9 * want, "{got} vs {want}");
        assert!(got < 10.0 && got > 9.5);
        // A single item is always present.
        let one = items(1, 100);
        assert!((rarefied_distinct(&one, 5).unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(rarefied_distinct(&CategoricalState::default(), 5), None);
    }

    #[test]
    fn rarefaction_past_the_exact_cap_is_close() {
        // 2,000 items served 10 times each: the state overflows to sketches.
        let r = items(2000, 10);
        assert!(!r.is_exact());
        let absent: f64 = (0..500)
            .map(|j| (19_990.0 - j as f64) / (20_000.0 - j as f64))
            .product();
        let want = 2000.0 * (1.0 - absent);
        let got = rarefied_distinct(&r, 500).unwrap();
        assert!((got - want).abs() < 0.05 * want, "{got} vs {want}");
    }

    #[test]
    fn topk_diversity_compares_at_the_same_sample_size() {
        // Reference: 200 items over 100 lists of 10. Current: 50 lists of the same 3 items.
        let reference = items(200, 5);
        let collapsed = items(3, 50);
        let d = topk_diversity(&collapsed, Some(&reference), 10).unwrap();
        assert_eq!((d.slots, d.impressions, d.distinct), (150, 15, 3.0));
        assert!((d.share - 0.02).abs() < 1e-12);
        let rd = d.reference_distinct.unwrap();
        assert!(rd > 100.0 && rd < 150.0, "{rd}");
        assert!((d.reference_share.unwrap() - rd / 150.0).abs() < 1e-12);
        // The reference against itself: same share.
        let same = topk_diversity(&reference, Some(&reference), 10).unwrap();
        assert_eq!(same.share, same.reference_share.unwrap());
        assert!(topk_diversity(&CategoricalState::default(), Some(&reference), 10).is_none());
        assert_eq!(
            topk_diversity(&collapsed, None, 10)
                .unwrap()
                .reference_share,
            None
        );
    }
}
