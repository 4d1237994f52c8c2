//! Reference-profile helpers on raw values: type-7 quantiles (docs/STATISTICS.md §1) and the collapsed
//! quantile bin edges that PSI, JS and Hellinger bin on (docs/STATISTICS.md §2).
//!
//! These run once, when a reference is uploaded, on the raw reference values, so they may sort.
//! The edges are then stored with the profile and never recomputed per window: a window's
//! histogram is a plain count vector over them that merges by addition.
//!
//! The 10-bin edges are a subset of the 50-bin edges (`k/10` and `5k/50` are the same double,
//! so they pick the same order statistic), so a state only needs counts over the 50-bin edges;
//! [`coarsen_bins`] derives the 10-bin counts exactly.

use crate::error::{Error, Result};
use crate::sketch::BinEdges;

/// The default PSI bin count (docs/STATISTICS.md §14).
pub const BINS_DEFAULT: usize = 10;
/// The optional finer PSI bin count.
pub const BINS_FINE: usize = 50;

/// Type-7 quantile (`numpy.quantile(method="linear")`) of already sorted values.
///
/// `None` when `sorted` is empty or `q` is outside `[0, 1]`. The interpolation uses numpy's own
/// two-sided form (`b − (b − a)(1 − t)` for `t >= 0.5`), so results agree to the last bit.
pub fn type7_quantile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let h = (n - 1) as f64 * q;
    let lo = h.floor();
    // `lo` is in [0, n − 1] because q is in [0, 1].
    let i = lo as usize;
    if i + 1 >= n {
        return sorted.last().copied();
    }
    let t = h - lo;
    let (a, b) = (sorted[i], sorted[i + 1]);
    let d = b - a;
    Some(if t >= 0.5 {
        b - d * (1.0 - t)
    } else {
        a + d * t
    })
}

/// Sorted copy of the finite values of `values` (NaN and ±inf are dropped).
pub fn sorted_finite(values: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    // `total_cmp` is a total order whose equal values are the same bits: stability is moot.
    v.sort_unstable_by(f64::total_cmp);
    v
}

/// Type-7 quantile of unsorted raw values (non-finite values are ignored).
pub fn type7_quantile(values: &[f64], q: f64) -> Option<f64> {
    type7_quantile_sorted(&sorted_finite(values), q)
}

/// Raw (uncollapsed) edges `Q(k/B)`, `k = 1..B−1`, of sorted values.
pub fn raw_quantile_edges_sorted(sorted: &[f64], bins: usize) -> Result<Vec<f64>> {
    if bins < 2 {
        return Err(Error::invalid("bin count", format!("{bins} is below 2")));
    }
    if sorted.is_empty() {
        return Err(Error::invalid("reference values", "no finite value"));
    }
    let mut out = Vec::with_capacity(bins - 1);
    for k in 1..bins {
        let q = k as f64 / bins as f64;
        if let Some(e) = type7_quantile_sorted(sorted, q) {
            out.push(e);
        }
    }
    Ok(out)
}

/// Collapsed quantile edges of sorted values: the sorted unique values of `Q(k/B)`.
pub fn quantile_edges_sorted(sorted: &[f64], bins: usize) -> Result<BinEdges> {
    let mut e = raw_quantile_edges_sorted(sorted, bins)?;
    // numpy.unique semantics: sort, then drop repeats.
    e.sort_by(f64::total_cmp);
    e.dedup();
    BinEdges::new(e)
}

/// Collapsed quantile edges of raw values for `bins` bins (docs/STATISTICS.md §2); ties collapse, so the
/// result may hold fewer than `bins − 1` edges. Non-finite values are ignored.
pub fn quantile_edges(values: &[f64], bins: usize) -> Result<BinEdges> {
    quantile_edges_sorted(&sorted_finite(values), bins)
}

/// For each bin of `fine`, the bin of `coarse` that contains it.
///
/// Fails unless every edge of `coarse` is also an edge of `fine`; only then is every fine bin
/// inside exactly one coarse bin.
pub fn coarsen_map(fine: &BinEdges, coarse: &BinEdges) -> Result<Vec<usize>> {
    let fe = fine.edges();
    if let Some(e) = coarse
        .edges()
        .iter()
        .find(|e| fe.binary_search_by(|f| f.total_cmp(e)).is_err())
    {
        return Err(Error::invalid(
            "coarse bin edges",
            format!("edge {e} is not an edge of the fine set"),
        ));
    }
    let mut map = Vec::with_capacity(fine.num_bins());
    map.push(0);
    // Fine bin j >= 1 starts at fe[j − 1]; no coarse edge lies strictly inside it.
    map.extend(fe.iter().map(|e| coarse.bin(*e)));
    Ok(map)
}

/// Maps counts over the `fine` edges to counts over the `coarse` edges, exactly (e.g. 50-bin
/// counts to 10-bin counts). See [`coarsen_map`] for the subset requirement.
pub fn coarsen_bins(fine: &BinEdges, fine_counts: &[u64], coarse: &BinEdges) -> Result<Vec<u64>> {
    if fine_counts.len() != fine.num_bins() {
        return Err(Error::invalid(
            "bin counts",
            format!(
                "{} counts for {} fine bins",
                fine_counts.len(),
                fine.num_bins()
            ),
        ));
    }
    let map = coarsen_map(fine, coarse)?;
    Ok(apply_coarsen_map(&map, fine_counts, coarse.num_bins()))
}

/// Applies a map from [`coarsen_map`]; `map` and `fine_counts` have the same length.
pub fn apply_coarsen_map(map: &[usize], fine_counts: &[u64], coarse_bins: usize) -> Vec<u64> {
    let mut out = vec![0u64; coarse_bins];
    for (c, j) in fine_counts.iter().zip(map) {
        if let Some(o) = out.get_mut(*j) {
            *o += c;
        }
    }
    out
}

/// The two edge sets of a numeric reference profile, with the fine-to-coarse bin map.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceEdges {
    /// Edges for [`BINS_DEFAULT`] (10) bins.
    pub q10: BinEdges,
    /// Edges for [`BINS_FINE`] (50) bins; states bin on these.
    pub q50: BinEdges,
    /// For each `q50` bin, its `q10` bin (one byte each: every reference profile holds one
    /// per numeric series in memory).
    pub q50_to_q10: Vec<u8>,
}

impl ReferenceEdges {
    /// Edges of raw reference values (non-finite values ignored).
    pub fn from_values(values: &[f64]) -> Result<Self> {
        Self::from_sorted(&sorted_finite(values))
    }

    /// Edges of sorted finite reference values.
    pub fn from_sorted(sorted: &[f64]) -> Result<Self> {
        let q10 = quantile_edges_sorted(sorted, BINS_DEFAULT)?;
        let q50 = quantile_edges_sorted(sorted, BINS_FINE)?;
        Self::new(q10, q50)
    }

    /// Edge sets from a stored profile; `q10` must be a subset of `q50`.
    pub fn new(q10: BinEdges, q50: BinEdges) -> Result<Self> {
        let q50_to_q10 = coarsen_map(&q50, &q10)?
            .into_iter()
            .map(|b| {
                u8::try_from(b).map_err(|_| {
                    Error::invalid("coarse bin edges", format!("{b} coarse bins, over 255"))
                })
            })
            .collect::<Result<Vec<u8>>>()?;
        Ok(ReferenceEdges {
            q10,
            q50,
            q50_to_q10,
        })
    }

    /// 10-bin counts from counts over the 50-bin edges (exact).
    pub fn coarsen(&self, q50_counts: &[u64]) -> Result<Vec<u64>> {
        if q50_counts.len() != self.q50.num_bins() {
            return Err(Error::invalid(
                "bin counts",
                format!(
                    "{} counts for {} bins",
                    q50_counts.len(),
                    self.q50.num_bins()
                ),
            ));
        }
        let mut out = vec![0u64; self.q10.num_bins()];
        for (c, j) in q50_counts.iter().zip(&self.q50_to_q10) {
            if let Some(o) = out.get_mut(usize::from(*j)) {
                *o += c;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type7_matches_numpy() {
        let v = [1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 3.0, 5.0, 5.0, 10.0];
        assert_eq!(type7_quantile(&v, 0.25), Some(2.0));
        // numpy.quantile(v, 0.95) == 7.749999999999995 (the b − (b−a)(1−t) form).
        assert_eq!(type7_quantile(&v, 0.95), Some(7.749_999_999_999_995));
        assert_eq!(type7_quantile(&v, 0.0), Some(1.0));
        assert_eq!(type7_quantile(&v, 1.0), Some(10.0));
        assert_eq!(type7_quantile(&[], 0.5), None);
        assert_eq!(type7_quantile(&v, 1.5), None);
    }

    #[test]
    fn edges_collapse_and_coarsen_exactly() {
        let v = [1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 3.0, 5.0, 5.0, 10.0];
        let raw = raw_quantile_edges_sorted(&sorted_finite(&v), 4).unwrap();
        assert_eq!(raw, vec![2.0, 2.0, 4.5]);
        assert_eq!(quantile_edges(&v, 4).unwrap().edges(), &[2.0, 4.5]);

        let vals: Vec<f64> = (0..997).map(|i| ((i * 37) % 101) as f64 * 0.5).collect();
        let re = ReferenceEdges::from_values(&vals).unwrap();
        let mut fine = vec![0u64; re.q50.num_bins()];
        let mut coarse = vec![0u64; re.q10.num_bins()];
        for x in &vals {
            fine[re.q50.bin(*x)] += 1;
            coarse[re.q10.bin(*x)] += 1;
        }
        assert_eq!(re.coarsen(&fine).unwrap(), coarse);
        assert_eq!(coarsen_bins(&re.q50, &fine, &re.q10).unwrap(), coarse);
        // Not a subset: refused.
        let other = BinEdges::new(vec![0.123]).unwrap();
        assert!(coarsen_bins(&re.q50, &fine, &other).is_err());
        assert!(re.coarsen(&fine[1..]).is_err());
    }
}
