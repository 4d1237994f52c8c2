//! Binary-classifier performance estimated before the labels arrive (confidence-based
//! performance estimation, docs/STATISTICS.md §20).
//!
//! A calibrated score *is* the probability that the row is positive. So the reference's
//! labelled scores give a calibration map `q(score) = P(y = 1 | score)` (isotonic regression
//! over the 1,000-bin per-class score histogram that every [`BinaryPerf`] already keeps), and a
//! window's score distribution (the KLL sketch of `$score`, every retained item with its weight)
//! gives, row by row, the expected outcome: a row predicted positive (`score >= 0.5`) is a true
//! positive with probability `q` and a false positive otherwise; a row predicted negative is a
//! false negative with probability `q`. Summing those expectations gives the expected confusion
//! matrix, hence accuracy, precision, recall and F1; weighting each retained score by `q` and
//! `1 − q` gives the expected positive and negative score distributions, hence ROC AUC.
//!
//! Each estimate carries a standard error: the spread of the realised metric around the
//! estimate if every row's outcome is an independent Bernoulli(`q`) draw (delta method for the
//! ratios, Hanley–McNeil for AUC). It does not cover an unsound calibration map: the estimate is
//! only as good as the assumption that `P(y | score)` did not change since the reference
//! (covariate shift is seen, concept drift is not; `explain` compares the two when labels
//! exist).

use crate::sketch::kll::WeightedCdf;
use crate::sketch::performance::{AUC_BINS, BinaryPerf, THRESHOLD};

/// Fewest labelled reference rows of each class a calibration map is fitted on.
pub const MIN_CALIBRATION_ROWS: u64 = 10;

/// A monotone calibration map fitted on labelled scores: `P(y = 1 | score)`, linear between
/// its knots and constant beyond the first and last.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// Knot scores, strictly ascending.
    xs: Vec<f64>,
    /// Fitted probability at each knot, non-decreasing.
    ys: Vec<f64>,
}

impl Calibration {
    /// Fits the map on `b`'s per-class score histogram by isotonic regression
    /// (pool-adjacent-violators, each histogram bin at its centre weighted by its rows).
    /// `None` unless each class has at least [`MIN_CALIBRATION_ROWS`] rows.
    pub fn fit(b: &BinaryPerf) -> Option<Calibration> {
        let (mut neg, mut pos) = (0u64, 0u64);
        for [n, p] in b.hist.values() {
            neg += n;
            pos += p;
        }
        if neg < MIN_CALIBRATION_ROWS || pos < MIN_CALIBRATION_ROWS {
            return None;
        }
        // One block per run of pooled bins: (rows, positives, first centre, last centre).
        let mut blocks: Vec<(f64, f64, f64, f64)> = Vec::with_capacity(b.hist.len());
        for (&bin, &[n, p]) in &b.hist {
            let w = (n + p) as f64;
            if w == 0.0 {
                continue;
            }
            let x = (f64::from(bin) + 0.5) / f64::from(AUC_BINS);
            blocks.push((w, p as f64, x, x));
            // Pool while the last block's rate is below the one before it.
            while blocks.len() >= 2 {
                let k = blocks.len();
                let (w1, s1, a1, _) = blocks[k - 2];
                let (w2, s2, _, z2) = blocks[k - 1];
                if s1 / w1 <= s2 / w2 {
                    break;
                }
                blocks.truncate(k - 2);
                blocks.push((w1 + w2, s1 + s2, a1, z2));
            }
        }
        let mut xs = Vec::with_capacity(2 * blocks.len());
        let mut ys = Vec::with_capacity(2 * blocks.len());
        for (w, s, first, last) in blocks {
            let y = s / w;
            xs.push(first);
            ys.push(y);
            if last > first {
                xs.push(last);
                ys.push(y);
            }
        }
        Some(Calibration { xs, ys })
    }

    /// `P(y = 1 | score)`: interpolated between knots, clipped beyond them.
    pub fn prob(&self, score: f64) -> f64 {
        let (xs, ys) = (&self.xs, &self.ys);
        let i = xs.partition_point(|x| *x <= score);
        if i == 0 {
            return ys.first().copied().unwrap_or(0.0);
        }
        if i == xs.len() {
            return ys.last().copied().unwrap_or(0.0);
        }
        let (x0, x1, y0, y1) = (xs[i - 1], xs[i], ys[i - 1], ys[i]);
        y0 + (y1 - y0) * (score - x0) / (x1 - x0)
    }

    /// The knots: (score, fitted probability), ascending.
    pub fn knots(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.xs.iter().copied().zip(self.ys.iter().copied())
    }
}

/// One estimated metric: its value and standard error.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Estimate {
    /// The expected value of the metric.
    pub value: f64,
    /// Its standard error (see the module documentation).
    pub stderr: f64,
}

/// Expected performance of a window's predictions at [`THRESHOLD`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EstimatedPerformance {
    /// Predictions the estimate covers (the window's scores).
    pub n: u64,
    /// Expected confusion matrix: tp, fp, tn, fn (fractional counts).
    pub confusion: [f64; 4],
    /// Expected accuracy.
    pub accuracy: Option<Estimate>,
    /// Expected precision; `None` when no row is predicted positive.
    pub precision: Option<Estimate>,
    /// Expected recall; `None` when no positive is expected.
    pub recall: Option<Estimate>,
    /// Expected F1.
    pub f1: Option<Estimate>,
    /// Expected ROC AUC; `None` unless both classes are expected.
    pub auc: Option<Estimate>,
}

/// The scores a KLL sketch retains, ascending, each with its weight: every score while the
/// sketch holds them all.
pub fn sketch_scores(cdf: &WeightedCdf) -> Vec<(f64, u64)> {
    let mut below = 0;
    cdf.items()
        .iter()
        .zip(cdf.cumulative())
        .map(|(&x, &c)| {
            let w = c - below;
            below = c;
            (x, w)
        })
        .collect()
}

/// The labelled scores of `b`'s 1,000-bin histogram (both classes), each bin at its centre,
/// ascending: the predictions a realised metric was computed on, for comparing the two.
pub fn labelled_scores(b: &BinaryPerf) -> Vec<(f64, u64)> {
    b.hist
        .iter()
        .filter(|(_, [n, p])| n + p > 0)
        .map(|(&bin, [n, p])| ((f64::from(bin) + 0.5) / f64::from(AUC_BINS), n + p))
        .collect()
}

/// Estimates the performance of predictions with `scores` (ascending, with weights; see
/// [`sketch_scores`] and [`labelled_scores`]) through the calibration map `cal`
/// (docs/STATISTICS.md §20).
pub fn estimate_performance(scores: &[(f64, u64)], cal: &Calibration) -> EstimatedPerformance {
    let n: u64 = scores.iter().map(|(_, w)| w).sum();
    if n == 0 {
        return EstimatedPerformance::default();
    }
    // Expected tp (a), fn (b) and the variances of their counts; rows predicted positive.
    let (mut a, mut b, mut var_a, mut var_b, mut n_pp) = (0.0, 0.0, 0.0, 0.0, 0.0);
    // AUC: expected positive mass above each score, built from the top down.
    let mut pos_above = 0.0;
    let mut auc_num = 0.0;
    let (mut e_pos, mut e_neg) = (0.0, 0.0);
    for &(x, w) in scores.iter().rev() {
        let w = w as f64;
        let q = cal.prob(x).clamp(0.0, 1.0);
        let (p_mass, n_mass) = (w * q, w * (1.0 - q));
        if x >= THRESHOLD {
            a += p_mass;
            var_a += w * q * (1.0 - q);
            n_pp += w;
        } else {
            b += p_mass;
            var_b += w * q * (1.0 - q);
        }
        // Each expected negative here ranks below every positive above, ties count ½.
        auc_num += n_mass * (pos_above + 0.5 * p_mass);
        pos_above += p_mass;
        e_pos += p_mass;
        e_neg += n_mass;
    }
    let nf = n as f64;
    let n_pn = nf - n_pp;
    let (tp, fn_) = (a, b);
    let (fp, tn) = (n_pp - a, n_pn - b);
    let accuracy = Some(Estimate {
        value: (tp + tn) / nf,
        // correct = a + (n_pn − b): the variances add.
        stderr: (var_a + var_b).sqrt() / nf,
    });
    let precision = (n_pp > 0.0).then(|| Estimate {
        value: a / n_pp,
        stderr: var_a.sqrt() / n_pp,
    });
    let recall = (a + b > 0.0).then(|| {
        let d = (a + b) * (a + b);
        // R = a / (a + b): ∂R/∂a = b / (a + b)², ∂R/∂b = −a / (a + b)².
        Estimate {
            value: a / (a + b),
            stderr: ((b / d).powi(2) * var_a + (a / d).powi(2) * var_b).sqrt(),
        }
    });
    let f1 = (a + n_pp + b > 0.0).then(|| {
        let s = a + n_pp + b;
        // F1 = 2a / (a + n_pp + b): ∂/∂a = 2 (n_pp + b) / s², ∂/∂b = −2a / s².
        let (da, db) = (2.0 * (n_pp + b) / (s * s), -2.0 * a / (s * s));
        Estimate {
            value: 2.0 * a / s,
            stderr: (da * da * var_a + db * db * var_b).sqrt(),
        }
    });
    let auc = (e_pos > 0.0 && e_neg > 0.0).then(|| {
        let v = (auc_num / (e_pos * e_neg)).clamp(0.0, 1.0);
        Estimate {
            value: v,
            stderr: hanley_mcneil(v, e_pos, e_neg),
        }
    });
    EstimatedPerformance {
        n,
        confusion: [tp, fp, tn, fn_],
        accuracy,
        precision,
        recall,
        f1,
        auc,
    }
}

/// Hanley & McNeil (1982) standard error of an AUC of `auc` with `n1` positives and `n2`
/// negatives.
pub fn hanley_mcneil(auc: f64, n1: f64, n2: f64) -> f64 {
    let q1 = auc / (2.0 - auc);
    let q2 = 2.0 * auc * auc / (1.0 + auc);
    let a2 = auc * auc;
    let v = (auc * (1.0 - auc) + (n1 - 1.0) * (q1 - a2) + (n2 - 1.0) * (q2 - a2)) / (n1 * n2);
    v.max(0.0).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix;
    use crate::sketch::NumericState;
    use crate::sketch::PerformanceState;
    use crate::stats::binary_metrics;

    fn labelled(scores: &[(f64, bool)]) -> BinaryPerf {
        let mut p = PerformanceState::default();
        for &(s, y) in scores {
            p.observe_binary(s, y).expect("probability");
        }
        p.binary.expect("binary section")
    }

    #[test]
    fn calibration_is_isotonic_and_interpolates() {
        // Bins 100 (rate 0.2), 300 (rate 0.6), 500 (rate 0.4): the last two pool to 0.5.
        let mut rows = Vec::new();
        for (score, n, pos) in [(0.1005, 10, 2), (0.3005, 10, 6), (0.5005, 10, 4)] {
            for i in 0..n {
                rows.push((score, i < pos));
            }
        }
        // Enough rows of each class.
        let cal = Calibration::fit(&labelled(&rows)).expect("fitted");
        let knots: Vec<(f64, f64)> = cal.knots().collect();
        assert_eq!(knots.len(), 3);
        assert!((knots[0].1 - 0.2).abs() < 1e-12);
        assert!((knots[1].1 - 0.5).abs() < 1e-12 && (knots[2].1 - 0.5).abs() < 1e-12);
        assert!((cal.prob(0.0) - 0.2).abs() < 1e-12, "clipped below");
        assert!((cal.prob(0.9) - 0.5).abs() < 1e-12, "clipped above");
        // Halfway between the first two knots (0.1005 and 0.3005).
        assert!((cal.prob(0.2005) - 0.35).abs() < 1e-12);
        let ys: Vec<f64> = (0..=100).map(|i| cal.prob(f64::from(i) / 100.0)).collect();
        assert!(ys.windows(2).all(|w| w[0] <= w[1]), "monotone");
    }

    #[test]
    fn too_few_labels_fit_nothing() {
        let rows: Vec<(f64, bool)> = (0..50).map(|i| (0.3, i < 5)).collect();
        assert!(Calibration::fit(&labelled(&rows)).is_none());
    }

    #[test]
    fn degenerate_windows_give_defined_or_null_values() {
        let mut rows = Vec::new();
        for i in 0..100 {
            rows.push((0.2, i < 20));
            rows.push((0.8, i < 80));
        }
        let cal = Calibration::fit(&labelled(&rows)).expect("fitted");
        // No scores: nothing estimated.
        let e = estimate_performance(&[], &cal);
        assert_eq!(e.n, 0);
        assert!(e.auc.is_none() && e.accuracy.is_none());
        // One score value for every row: AUC is ½ (all ties), precision is q, recall is 1.
        let e = estimate_performance(&[(0.8005, 50)], &cal);
        assert!((e.auc.expect("auc").value - 0.5).abs() < 1e-12);
        assert!((e.precision.expect("p").value - 0.8).abs() < 1e-12);
        assert!((e.recall.expect("r").value - 1.0).abs() < 1e-12);
        // Every row predicted negative: precision undefined, recall 0.
        let e = estimate_performance(&[(0.2005, 10), (0.3, 5)], &cal);
        assert!(e.precision.is_none());
        assert_eq!(e.recall.expect("r").value, 0.0);
        assert_eq!(e.f1.expect("f1").value, 0.0);
        // A reference whose scores all fall in one bin gives a constant map: AUC ½.
        let flat: Vec<(f64, bool)> = (0..100).map(|i| (0.6, i % 2 == 0)).collect();
        let cal = Calibration::fit(&labelled(&flat)).expect("fitted");
        assert_eq!(cal.knots().count(), 1);
        let e = estimate_performance(&[(0.1, 10), (0.9, 10)], &cal);
        assert!((e.auc.expect("auc").value - 0.5).abs() < 1e-12);
        assert!((e.accuracy.expect("acc").value - 0.5).abs() < 1e-12);
    }

    #[test]
    fn hand_computed_small_case() {
        // Calibration: 0.2 below 0.5, 0.8 above (two bins, 100 rows each).
        let mut rows = Vec::new();
        for i in 0..100 {
            rows.push((0.2, i < 20));
            rows.push((0.8, i < 80));
        }
        let cal = Calibration::fit(&labelled(&rows)).expect("fitted");
        // Scores exactly at the knots: 3 rows at 0.2005, 1 row at 0.8005.
        let cdf = WeightedCdf::from_values(&[0.2005, 0.2005, 0.2005, 0.8005]);
        let e = estimate_performance(&sketch_scores(&cdf), &cal);
        // tp 0.8, fp 0.2, tn 2.4, fn 0.6.
        let [tp, fp, tn, fn_] = e.confusion;
        for (got, want) in [(tp, 0.8), (fp, 0.2), (tn, 2.4), (fn_, 0.6)] {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
        let acc = e.accuracy.expect("accuracy");
        assert!((acc.value - 0.8).abs() < 1e-12);
        assert!((acc.stderr - (4.0f64 * 0.16).sqrt() / 4.0).abs() < 1e-12);
        assert!((e.precision.expect("p").value - 0.8).abs() < 1e-12);
        assert!((e.recall.expect("r").value - 0.8 / 1.4).abs() < 1e-12);
        assert!((e.f1.expect("f1").value - 1.6 / 2.4).abs() < 1e-12);
        // AUC: positive mass 0.6 low + 0.8 high, negative 2.4 low + 0.2 high.
        // Pairs (pos above neg): 0.8·2.4 + ½(0.6·2.4 + 0.8·0.2) = 2.72; over 1.4·2.6.
        let auc = e.auc.expect("auc").value;
        assert!((auc - 2.72 / (1.4 * 2.6)).abs() < 1e-12, "{auc}");
    }

    /// Rows of a calibrated model: `score` drawn from a logistic-normal around `centre`, and
    /// the label a Bernoulli(`score`) draw.
    fn calibrated_rows(rng: &mut SplitMix, n: usize, centre: f64, spread: f64) -> Vec<(f64, bool)> {
        (0..n)
            .map(|_| {
                let z = centre + spread * rng.normal();
                let s = 1.0 / (1.0 + (-z).exp());
                (s, rng.unit() < s)
            })
            .collect()
    }

    #[test]
    fn estimates_track_realised_performance_under_covariate_shift() {
        let mut rng = SplitMix(7);
        let reference = calibrated_rows(&mut rng, 50_000, -1.0, 1.5);
        let cal = Calibration::fit(&labelled(&reference)).expect("fitted");
        for (centre, spread) in [(-1.0, 1.5), (0.5, 1.0), (-2.0, 2.5), (1.5, 0.8)] {
            let window = calibrated_rows(&mut rng, 20_000, centre, spread);
            // Through the sketch, as a window's `$score` state holds them.
            let mut state = NumericState::default();
            for (s, _) in &window {
                state.observe(*s, None);
            }
            let e = estimate_performance(&sketch_scores(&state.cdf().expect("cdf")), &cal);
            assert_eq!(e.n, 20_000);
            let labels = labelled(&window);
            let realised = binary_metrics(&labels, window.len() as u64);
            // The same rows through their labelled histogram (what `explain` compares).
            let binned = estimate_performance(&labelled_scores(&labels), &cal);
            let (x, y) = (e.auc.expect("auc"), binned.auc.expect("auc"));
            assert!((x.value - y.value).abs() < 0.01, "{x:?} vs {y:?}");
            for (name, est, real) in [
                ("auc", e.auc, realised.roc_auc),
                ("accuracy", e.accuracy, realised.accuracy),
                ("precision", e.precision, realised.precision),
                ("recall", e.recall, realised.recall),
                ("f1", e.f1, realised.f1),
            ] {
                let (est, real) = (est.expect("estimate"), real.expect("realised"));
                // Four standard errors, plus the sketch's rank error and the 1e-3 binning.
                let tol = 4.0 * est.stderr + 0.01;
                assert!(
                    (est.value - real).abs() <= tol,
                    "{name} at ({centre}, {spread}): estimated {} ± {}, realised {real}",
                    est.value,
                    est.stderr
                );
                assert!(
                    est.stderr > 0.0 && est.stderr < 0.05,
                    "{name}: {}",
                    est.stderr
                );
            }
        }
    }

    #[test]
    fn concept_drift_is_not_seen() {
        // Same scores, labels flipped for high scores: realised accuracy falls, the estimate
        // (which only sees scores) does not. This is what `explain` flags as a gap.
        let mut rng = SplitMix(11);
        let reference = calibrated_rows(&mut rng, 50_000, 0.0, 1.5);
        let cal = Calibration::fit(&labelled(&reference)).expect("fitted");
        let window: Vec<(f64, bool)> = calibrated_rows(&mut rng, 20_000, 0.0, 1.5)
            .into_iter()
            .map(|(s, y)| (s, if s > 0.7 { !y } else { y }))
            .collect();
        let mut state = NumericState::default();
        for (s, _) in &window {
            state.observe(*s, None);
        }
        let e = estimate_performance(&sketch_scores(&state.cdf().expect("cdf")), &cal);
        let realised = binary_metrics(&labelled(&window), window.len() as u64);
        let est = e.accuracy.expect("accuracy");
        let real = realised.accuracy.expect("accuracy");
        assert!(
            est.value - real > 10.0 * est.stderr,
            "{} vs {real}",
            est.value
        );
    }
}
