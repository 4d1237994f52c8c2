//! Bin-based divergences between a baseline and a current distribution: PSI (docs/STATISTICS.md §3),
//! Jensen–Shannon distance base 2 (§4) and Hellinger distance (§5).
//!
//! Inputs are counts over the same bins (numeric: the reference quantile edges; categorical:
//! the union of categories, each unseen category its own bin). Proportions are over non-null
//! values. All three are symmetric in their two arguments and zero on identical proportions.

use crate::error::{Error, Result};

/// Proportions are clipped from below at this value for PSI only (no renormalisation).
pub const PSI_CLIP: f64 = 1e-4;

/// Population stability index of two proportion vectors of equal length (docs/STATISTICS.md §3):
/// `Σ (q' − p') ln(q'/p')` with `p' = max(p, 1e-4)`, `q' = max(q, 1e-4)`.
pub fn psi(p: &[f64], q: &[f64]) -> f64 {
    p.iter()
        .zip(q)
        .map(|(p, q)| {
            let (p, q) = (p.max(PSI_CLIP), q.max(PSI_CLIP));
            (q - p) * (q / p).ln()
        })
        .sum()
}

/// Jensen–Shannon distance, base 2, of two proportion vectors (docs/STATISTICS.md §4): the square root
/// of the divergence, in `[0, 1]`; unclipped, with `0 · ln 0 = 0`.
pub fn js_distance(p: &[f64], q: &[f64]) -> f64 {
    let rel = |x: f64, m: f64| if x > 0.0 { x * (x / m).ln() } else { 0.0 };
    let s: f64 = p
        .iter()
        .zip(q)
        .map(|(p, q)| {
            let m = (p + q) / 2.0;
            rel(*p, m) + rel(*q, m)
        })
        .sum();
    (s / (2.0 * std::f64::consts::LN_2))
        .max(0.0)
        .sqrt()
        .min(1.0)
}

/// Hellinger distance of two proportion vectors (docs/STATISTICS.md §5), in `[0, 1]`:
/// `sqrt(½ Σ (√p − √q)²)`, the form that stays exact for small distances.
pub fn hellinger(p: &[f64], q: &[f64]) -> f64 {
    let s: f64 = p
        .iter()
        .zip(q)
        .map(|(p, q)| {
            let d = p.sqrt() - q.sqrt();
            d * d
        })
        .sum();
    (0.5 * s).sqrt().min(1.0)
}

/// Proportions of counts; `None` when they sum to 0.
pub fn proportions(counts: &[u64]) -> Option<Vec<f64>> {
    let n: u64 = counts.iter().sum();
    (n > 0).then(|| counts.iter().map(|c| *c as f64 / n as f64).collect())
}

/// PSI, JS and Hellinger of one pair of histograms, with the sizes they rest on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BinDrift {
    /// Population stability index (clipped at [`PSI_CLIP`], natural log).
    pub psi: f64,
    /// Jensen–Shannon distance, base 2.
    pub js: f64,
    /// Hellinger distance.
    pub hellinger: f64,
    /// Number of bins compared.
    pub n_bins: usize,
    /// Current (window) non-null count.
    pub n: u64,
    /// Baseline non-null count.
    pub baseline_n: u64,
}

/// PSI, JS and Hellinger of current counts against baseline counts over the same bins.
///
/// `Ok(None)` when either side is empty (nothing to compare); an error when the bin counts
/// differ (the histograms were not taken on the same bins). One pass, no allocation, three
/// logarithms per bin: this runs for every series of every window.
pub fn bin_drift(baseline: &[u64], current: &[u64]) -> Result<Option<BinDrift>> {
    if baseline.len() != current.len() {
        return Err(Error::invalid(
            "bin counts",
            format!(
                "baseline has {} bins, current {}",
                baseline.len(),
                current.len()
            ),
        ));
    }
    let (nb, nc): (u64, u64) = (baseline.iter().sum(), current.iter().sum());
    if nb == 0 || nc == 0 {
        return Ok(None);
    }
    let (ib, ic) = (1.0 / nb as f64, 1.0 / nc as f64);
    let (mut psi_sum, mut js_sum, mut h_sum) = (0.0, 0.0, 0.0);
    let ln_clip = PSI_CLIP.ln();
    for (b, c) in baseline.iter().zip(current) {
        if *b == 0 && *c == 0 {
            continue;
        }
        let (p, q) = (*b as f64 * ib, *c as f64 * ic);
        let lp = if *b > 0 { p.ln() } else { f64::NEG_INFINITY };
        let lq = if *c > 0 { q.ln() } else { f64::NEG_INFINITY };
        // PSI on clipped proportions: ln max(x, clip) = max(ln x, ln clip).
        let (pc, qc) = (p.max(PSI_CLIP), q.max(PSI_CLIP));
        psi_sum += (qc - pc) * (lq.max(ln_clip) - lp.max(ln_clip));
        // JS: p ln(p/m) + q ln(q/m), with 0 · ln 0 = 0.
        let lm = ((p + q) * 0.5).ln();
        if *b > 0 {
            js_sum += p * (lp - lm);
        }
        if *c > 0 {
            js_sum += q * (lq - lm);
        }
        let d = p.sqrt() - q.sqrt();
        h_sum += d * d;
    }
    Ok(Some(BinDrift {
        psi: psi_sum,
        js: (js_sum / (2.0 * std::f64::consts::LN_2))
            .max(0.0)
            .sqrt()
            .min(1.0),
        hellinger: (0.5 * h_sum).sqrt().min(1.0),
        n_bins: baseline.len(),
        n: nc,
        baseline_n: nb,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_pass_matches_the_definitions() {
        let a = [0u64, 5, 17, 0, 3, 900, 1];
        let b = [2u64, 0, 11, 0, 40, 700, 0];
        let p = proportions(&a).unwrap();
        let q = proportions(&b).unwrap();
        let d = bin_drift(&a, &b).unwrap().unwrap();
        assert!((d.psi - psi(&p, &q)).abs() < 1e-13);
        assert!((d.js - js_distance(&p, &q)).abs() < 1e-13);
        assert!((d.hellinger - hellinger(&p, &q)).abs() < 1e-15);
        assert!(bin_drift(&a, &b[1..]).is_err());
        assert!(bin_drift(&[0, 0], &[1, 1]).unwrap().is_none());
    }
}
