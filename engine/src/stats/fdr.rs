//! False-discovery-rate control: Benjamini–Hochberg adjusted p-values (docs/STATISTICS.md §13), applied
//! by default when many features × segments are tested in one window (docs/STATISTICS.md).

use crate::error::{Error, Result};

/// Benjamini–Hochberg adjusted p-values, in the order of `pvalues`.
///
/// `adj_(i) = min_{j >= i} min(1, m · p_(j) / j)` over the ascending order, as
/// `scipy.stats.false_discovery_control(p, method="bh")`. A test is rejected at FDR level α when
/// its adjusted p is `<= α`. Every p must lie in `[0, 1]` (NaN is an error).
pub fn benjamini_hochberg(pvalues: &[f64]) -> Result<Vec<f64>> {
    if let Some(p) = pvalues.iter().find(|p| !(0.0..=1.0).contains(*p)) {
        return Err(Error::invalid(
            "p-value",
            format!("{p} is not a probability"),
        ));
    }
    let m = pvalues.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|a, b| pvalues[*a].total_cmp(&pvalues[*b]));
    let mut adjusted = vec![0.0; m];
    let mut running = 1.0f64;
    let mf = m as f64;
    for (rank0, idx) in order.iter().enumerate().rev() {
        // scipy multiplies by (m / i), computed first.
        let v = pvalues[*idx] * (mf / (rank0 + 1) as f64);
        running = running.min(v);
        adjusted[*idx] = running.min(1.0);
    }
    Ok(adjusted)
}

/// Which adjusted p-values are rejected at FDR level `alpha` (`adj <= alpha`).
pub fn rejected(adjusted: &[f64], alpha: f64) -> Vec<bool> {
    adjusted.iter().map(|p| *p <= alpha).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bh_monotone_and_bounded() {
        let p = [0.5, 0.01, 0.04, 0.03, 0.9];
        let adj = benjamini_hochberg(&p).unwrap();
        assert_eq!(adj[1], 0.05);
        assert!(adj.iter().zip(&p).all(|(a, p)| a >= p && *a <= 1.0));
        assert!(benjamini_hochberg(&[f64::NAN]).is_err());
        assert!(benjamini_hochberg(&[]).unwrap().is_empty());
        assert!(rejected(&adj, 0.05)[1]);
    }
}
