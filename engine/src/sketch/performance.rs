//! Labelled-performance state: what a window's predictions scored once their labels joined.
//!
//! Everything is a count or a running sum, so merging is addition and every metric of
//! docs/STATISTICS.md §10–12 is exact, except ROC AUC, which uses a 1,000-bin score histogram per class
//! (error ≤ 1e-3, docs/STATISTICS.md §16).

use std::collections::BTreeMap;

use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};

/// Equal-width calibration bins for ECE.
pub const ECE_BINS: usize = 10;
/// Score histogram resolution for ROC AUC.
pub const AUC_BINS: u32 = 1000;
/// Largest K kept for NDCG@K.
pub const MAX_NDCG_K: usize = 20;
/// Decision threshold for thresholded metrics: predict 1 when `score >= 0.5`.
pub const THRESHOLD: f64 = 0.5;

/// One calibration bin: count, sum of scores, sum of labels.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CalibrationBin {
    /// Labelled rows in the bin.
    pub n: u64,
    /// Sum of their scores.
    pub sum_score: f64,
    /// Sum of their labels (positives).
    pub sum_label: f64,
}

/// Binary classification sums.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BinaryPerf {
    /// Labelled rows.
    pub n: u64,
    /// Positive labels.
    pub positives: u64,
    /// Sum of scores over labelled rows.
    pub sum_score: f64,
    /// ECE bins `min(floor(10p), 9)`.
    pub calibration: [CalibrationBin; ECE_BINS],
    /// Score histogram: bin → (negatives, positives).
    pub hist: BTreeMap<u32, [u64; 2]>,
    /// Confusion at [`THRESHOLD`]: tp, fp, tn, fn.
    pub confusion: [u64; 4],
    /// Σ −(y ln p + (1−y) ln(1−p)), p clipped to [1e-15, 1 − 1e-15].
    pub log_loss_sum: f64,
    /// Σ (p − y)².
    pub brier_sum: f64,
}

/// Regression sums.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegressionPerf {
    /// Labelled rows.
    pub n: u64,
    /// Σ (ŷ − y)².
    pub sq_err_sum: f64,
    /// Σ |ŷ − y|.
    pub abs_err_sum: f64,
    /// Σ |ŷ − y| / |y| over y ≠ 0.
    pub ape_sum: f64,
    /// Rows with y ≠ 0.
    pub n_ape: u64,
}

/// Ranking sums.
#[derive(Debug, Clone, PartialEq)]
pub struct RankingPerf {
    /// Ranking predictions whose outcome arrived.
    pub impressions: u64,
    /// Σ clicks.
    pub clicks: f64,
    /// Σ purchases.
    pub purchases: f64,
    /// Σ revenue.
    pub revenue: f64,
    /// Σ NDCG@K for K = 1..=MAX_NDCG_K (index K − 1).
    pub ndcg_sum: [f64; MAX_NDCG_K],
}

impl Default for RankingPerf {
    fn default() -> Self {
        RankingPerf {
            impressions: 0,
            clicks: 0.0,
            purchases: 0.0,
            revenue: 0.0,
            ndcg_sum: [0.0; MAX_NDCG_K],
        }
    }
}

/// All labelled-performance sums of a window; sections appear as labels of that kind join.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PerformanceState {
    /// Binary classification.
    pub binary: Option<BinaryPerf>,
    /// Regression.
    pub regression: Option<RegressionPerf>,
    /// Ranking.
    pub ranking: Option<RankingPerf>,
}

/// ECE bin of a score: `min(floor(10 p), 9)`, clamped into range.
pub fn ece_bin(p: f64) -> usize {
    ((10.0 * p).floor().max(0.0) as usize).min(ECE_BINS - 1)
}

/// AUC histogram bin of a score.
pub fn auc_bin(p: f64) -> u32 {
    ((f64::from(AUC_BINS) * p).floor().max(0.0) as u32).min(AUC_BINS - 1)
}

impl PerformanceState {
    /// Labelled rows across all sections.
    pub fn n_labeled(&self) -> u64 {
        self.binary.as_ref().map_or(0, |b| b.n)
            + self.regression.as_ref().map_or(0, |r| r.n)
            + self.ranking.as_ref().map_or(0, |r| r.impressions)
    }

    /// Folds one labelled binary prediction. Scores outside [0, 1] or non-finite are rejected.
    pub fn observe_binary(&mut self, p: f64, y: bool) -> Result<()> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::invalid(
                "score",
                format!("{p} is not a probability in [0, 1]"),
            ));
        }
        let b = self.binary.get_or_insert_with(Default::default);
        let yf = if y { 1.0 } else { 0.0 };
        b.n += 1;
        b.positives += u64::from(y);
        b.sum_score += p;
        let cb = &mut b.calibration[ece_bin(p)];
        cb.n += 1;
        cb.sum_score += p;
        cb.sum_label += yf;
        b.hist.entry(auc_bin(p)).or_insert([0, 0])[usize::from(y)] += 1;
        let pred = p >= THRESHOLD;
        let idx = match (pred, y) {
            (true, true) => 0,
            (true, false) => 1,
            (false, false) => 2,
            (false, true) => 3,
        };
        b.confusion[idx] += 1;
        let pc = p.clamp(1e-15, 1.0 - 1e-15);
        b.log_loss_sum += -(yf * pc.ln() + (1.0 - yf) * (1.0 - pc).ln());
        b.brier_sum += (p - yf) * (p - yf);
        Ok(())
    }

    /// Folds one labelled regression prediction.
    pub fn observe_regression(&mut self, pred: f64, y: f64) -> Result<()> {
        if !pred.is_finite() || !y.is_finite() {
            return Err(Error::invalid("label", "regression values must be finite"));
        }
        let r = self.regression.get_or_insert_with(Default::default);
        let e = pred - y;
        r.n += 1;
        r.sq_err_sum += e * e;
        r.abs_err_sum += e.abs();
        if y != 0.0 {
            r.ape_sum += e.abs() / y.abs();
            r.n_ape += 1;
        }
        Ok(())
    }

    /// Folds one ranking impression whose outcome arrived; `ndcg[k-1]` is its NDCG@k.
    pub fn observe_ranking(
        &mut self,
        ndcg: &[f64; MAX_NDCG_K],
        clicks: f64,
        purchases: f64,
        revenue: f64,
    ) {
        let r = self.ranking.get_or_insert_with(Default::default);
        r.impressions += 1;
        r.clicks += clicks;
        r.purchases += purchases;
        r.revenue += revenue;
        for (s, v) in r.ndcg_sum.iter_mut().zip(ndcg) {
            *s += v;
        }
    }

    /// Merges `other` into `self` (addition).
    pub fn merge(&mut self, other: &PerformanceState) {
        if let Some(o) = &other.binary {
            let b = self.binary.get_or_insert_with(Default::default);
            b.n += o.n;
            b.positives += o.positives;
            b.sum_score += o.sum_score;
            for (x, y) in b.calibration.iter_mut().zip(&o.calibration) {
                x.n += y.n;
                x.sum_score += y.sum_score;
                x.sum_label += y.sum_label;
            }
            for (k, v) in &o.hist {
                let e = b.hist.entry(*k).or_insert([0, 0]);
                e[0] += v[0];
                e[1] += v[1];
            }
            for (x, y) in b.confusion.iter_mut().zip(&o.confusion) {
                *x += y;
            }
            b.log_loss_sum += o.log_loss_sum;
            b.brier_sum += o.brier_sum;
        }
        if let Some(o) = &other.regression {
            let r = self.regression.get_or_insert_with(Default::default);
            r.n += o.n;
            r.sq_err_sum += o.sq_err_sum;
            r.abs_err_sum += o.abs_err_sum;
            r.ape_sum += o.ape_sum;
            r.n_ape += o.n_ape;
        }
        if let Some(o) = &other.ranking {
            let r = self.ranking.get_or_insert_with(Default::default);
            r.impressions += o.impressions;
            r.clicks += o.clicks;
            r.purchases += o.purchases;
            r.revenue += o.revenue;
            for (x, y) in r.ndcg_sum.iter_mut().zip(&o.ndcg_sum) {
                *x += y;
            }
        }
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        let flags = u8::from(self.binary.is_some())
            | u8::from(self.regression.is_some()) << 1
            | u8::from(self.ranking.is_some()) << 2;
        w.u8(flags);
        if let Some(b) = &self.binary {
            w.varint(b.n);
            w.varint(b.positives);
            w.f64(b.sum_score);
            for c in &b.calibration {
                w.varint(c.n);
                if c.n > 0 {
                    w.f64(c.sum_score);
                    w.f64(c.sum_label);
                }
            }
            w.varint(b.hist.len() as u64);
            let mut prev = 0u32;
            for (k, v) in &b.hist {
                w.varint(u64::from(k - prev));
                prev = *k;
                w.varint(v[0]);
                w.varint(v[1]);
            }
            for c in b.confusion {
                w.varint(c);
            }
            w.f64(b.log_loss_sum);
            w.f64(b.brier_sum);
        }
        if let Some(r) = &self.regression {
            w.varint(r.n);
            w.f64(r.sq_err_sum);
            w.f64(r.abs_err_sum);
            w.f64(r.ape_sum);
            w.varint(r.n_ape);
        }
        if let Some(r) = &self.ranking {
            w.varint(r.impressions);
            w.f64(r.clicks);
            w.f64(r.purchases);
            w.f64(r.revenue);
            for v in r.ndcg_sum {
                w.f64(v);
            }
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let flags = r.u8()?;
        if flags > 7 {
            return Err(Error::Malformed {
                what: "performance state",
                detail: format!("flags {flags:#x}"),
            });
        }
        let mut s = PerformanceState::default();
        if flags & 1 != 0 {
            let mut b = BinaryPerf {
                n: r.varint()?,
                positives: r.varint()?,
                sum_score: r.f64()?,
                ..Default::default()
            };
            for c in b.calibration.iter_mut() {
                c.n = r.varint()?;
                if c.n > 0 {
                    c.sum_score = r.f64()?;
                    c.sum_label = r.f64()?;
                }
            }
            let n = r.len(AUC_BINS as usize, "auc histogram")?;
            let mut k = 0u32;
            for i in 0..n {
                let d = u32::try_from(r.varint()?).ok().filter(|d| i == 0 || *d > 0);
                k = d
                    .and_then(|d| k.checked_add(d))
                    .filter(|k| *k < AUC_BINS)
                    .ok_or_else(|| Error::Malformed {
                        what: "auc histogram",
                        detail: "bin out of order or range".into(),
                    })?;
                b.hist.insert(k, [r.varint()?, r.varint()?]);
            }
            for c in b.confusion.iter_mut() {
                *c = r.varint()?;
            }
            b.log_loss_sum = r.f64()?;
            b.brier_sum = r.f64()?;
            if b.confusion.iter().sum::<u64>() != b.n
                || b.calibration.iter().map(|c| c.n).sum::<u64>() != b.n
            {
                return Err(Error::Malformed {
                    what: "performance state",
                    detail: "binary counts disagree".into(),
                });
            }
            s.binary = Some(b);
        }
        if flags & 2 != 0 {
            s.regression = Some(RegressionPerf {
                n: r.varint()?,
                sq_err_sum: r.f64()?,
                abs_err_sum: r.f64()?,
                ape_sum: r.f64()?,
                n_ape: r.varint()?,
            });
        }
        if flags & 4 != 0 {
            let mut k = RankingPerf {
                impressions: r.varint()?,
                clicks: r.f64()?,
                purchases: r.f64()?,
                revenue: r.f64()?,
                ..Default::default()
            };
            for v in k.ndcg_sum.iter_mut() {
                *v = r.f64()?;
            }
            s.ranking = Some(k);
        }
        Ok(s)
    }
}
