//! Special functions: log-gamma and the regularised incomplete gamma functions, for chi-square
//! p-values (docs/STATISTICS.md §8).
//!
//! The upper tail is evaluated in log space (Numerical Recipes §6.2: series for `x < a + 1`,
//! Lentz's continued fraction otherwise), so p-values far below `f64::MIN_POSITIVE` come out as
//! correctly scaled subnormals instead of underflowing early: a 2×27 table with X² ≈ 1540 has
//! `p ≈ 3.6e-309`.

/// Lanczos approximation, g = 7, n = 9 (relative error below 2e-15 for real arguments).
const LANCZOS_G: f64 = 7.0;
const LANCZOS: [f64; 9] = [
    0.999_999_999_999_809_9,
    676.520_368_121_885_1,
    -1_259.139_216_722_402_8,
    771.323_428_777_653_1,
    -176.615_029_162_140_6,
    12.507_343_278_686_905,
    -0.138_571_095_265_720_12,
    9.984_369_578_019_572e-6,
    1.505_632_735_149_311_6e-7,
];

/// `ln(sqrt(2π))`.
const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_8;

/// Relative convergence threshold of the series and the continued fraction.
const EPS: f64 = 1e-17;
/// Guard against division by zero in Lentz's method.
const TINY: f64 = 1e-300;
/// Iteration cap; convergence needs `O(sqrt(a))` steps, far fewer for the dof seen here.
const MAX_ITER: usize = 100_000;

/// Natural log of the gamma function for `x > 0` (`NaN` otherwise).
///
/// Uses Stirling's series for `x >= 10` and Lanczos' approximation below it.
pub fn ln_gamma(x: f64) -> f64 {
    if x.is_nan() || x <= 0.0 {
        return f64::NAN;
    }
    if x.is_infinite() {
        return f64::INFINITY;
    }
    if x >= 10.0 {
        // Stirling: (x − ½) ln x − x + ln √(2π) + Σ B₂ₖ / (2k(2k−1) x^(2k−1)).
        let r = 1.0 / x;
        let r2 = r * r;
        let series = r
            * (1.0 / 12.0
                - r2 * (1.0 / 360.0
                    - r2 * (1.0 / 1260.0 - r2 * (1.0 / 1680.0 - r2 * (1.0 / 1188.0)))));
        return (x - 0.5) * x.ln() - x + LN_SQRT_2PI + series;
    }
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx).
        let s = (std::f64::consts::PI * x).sin();
        return (std::f64::consts::PI / s).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = LANCZOS[0];
    for (i, c) in LANCZOS.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    let t = x + LANCZOS_G + 0.5;
    LN_SQRT_2PI + (x + 0.5) * t.ln() - t + a.ln()
}

/// `ln(x^a e^-x / Γ(a))`, the common prefactor of both incomplete-gamma expansions.
fn ln_prefactor(a: f64, x: f64) -> f64 {
    a * x.ln() - x - ln_gamma(a)
}

/// Series for the lower regularised gamma `P(a, x)`, without the prefactor. Use for `x < a + 1`.
fn lower_series(a: f64, x: f64) -> f64 {
    let mut ap = a;
    let mut term = 1.0 / a;
    let mut sum = term;
    for _ in 0..MAX_ITER {
        ap += 1.0;
        term *= x / ap;
        sum += term;
        if term.abs() < sum.abs() * EPS {
            break;
        }
    }
    sum
}

/// Continued fraction for the upper regularised gamma `Q(a, x)`, without the prefactor
/// (modified Lentz). Use for `x >= a + 1`.
fn upper_fraction(a: f64, x: f64) -> f64 {
    let mut b = x + 1.0 - a;
    let mut c = 1.0 / TINY;
    let mut d = 1.0 / b;
    let mut h = d;
    for i in 1..MAX_ITER {
        let an = -(i as f64) * (i as f64 - a);
        b += 2.0;
        d = an * d + b;
        if d.abs() < TINY {
            d = TINY;
        }
        c = b + an / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() < EPS {
            break;
        }
    }
    h
}

/// Natural log of the upper regularised incomplete gamma `ln Q(a, x)`, for `a > 0`, `x >= 0`.
///
/// Stays finite where `Q` itself underflows to 0, so callers can report `-log10 p`.
pub fn ln_gamma_q(a: f64, x: f64) -> f64 {
    if a.is_nan() || x.is_nan() || a <= 0.0 || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return 0.0;
    }
    if x.is_infinite() {
        return f64::NEG_INFINITY;
    }
    if x < a + 1.0 {
        // Q = 1 − P; here P is at most about ½, so the subtraction loses nothing.
        let p = (ln_prefactor(a, x) + lower_series(a, x).ln()).exp();
        (1.0 - p.min(1.0)).ln()
    } else {
        ln_prefactor(a, x) + upper_fraction(a, x).ln()
    }
}

/// Upper regularised incomplete gamma `Q(a, x) = Γ(a, x) / Γ(a)`, for `a > 0`, `x >= 0`.
pub fn gamma_q(a: f64, x: f64) -> f64 {
    ln_gamma_q(a, x).exp().clamp(0.0, 1.0)
}

/// Lower regularised incomplete gamma `P(a, x) = 1 − Q(a, x)`, for `a > 0`, `x >= 0`.
pub fn gamma_p(a: f64, x: f64) -> f64 {
    if a.is_nan() || x.is_nan() || a <= 0.0 || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return 0.0;
    }
    if x < a + 1.0 {
        (ln_prefactor(a, x) + lower_series(a, x).ln())
            .exp()
            .clamp(0.0, 1.0)
    } else {
        1.0 - gamma_q(a, x)
    }
}

/// Chi-square survival function `P(χ²_dof > stat)`; 1 when `dof == 0` (a one-column table).
pub fn chi2_sf(stat: f64, dof: u64) -> f64 {
    if dof == 0 {
        return 1.0;
    }
    if stat.is_nan() {
        return f64::NAN;
    }
    gamma_q(dof as f64 / 2.0, stat.max(0.0) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_gamma_matches_factorials_and_half_integers() {
        let mut fact = 1.0f64;
        for n in 1..30u32 {
            // Γ(n) = (n − 1)!
            let got = ln_gamma(f64::from(n));
            assert!(
                (got - fact.ln()).abs() <= 1e-13 * fact.ln().abs().max(1.0),
                "n={n}"
            );
            fact *= f64::from(n);
        }
        let sqrt_pi = std::f64::consts::PI.sqrt();
        assert!((ln_gamma(0.5) - sqrt_pi.ln()).abs() < 1e-14);
        // Γ(10.5) = 1133278.3889487855...
        assert!((ln_gamma(10.5) - 1_133_278.388_948_785_6_f64.ln()).abs() < 1e-13);
        assert!(ln_gamma(0.0).is_nan());
    }

    #[test]
    fn chi2_sf_known_values() {
        // dof 1: Q(½, x/2) = erfc(sqrt(x/2)); chi2.sf(3.841458820694124, 1) = 0.05.
        assert!((chi2_sf(3.841_458_820_694_124, 1) - 0.05).abs() < 1e-12);
        // dof 2: exp(−x/2).
        for x in [0.1, 1.0, 5.0, 40.0, 700.0, 1400.0] {
            let want = (-x / 2.0f64).exp();
            let got = chi2_sf(x, 2);
            assert!(
                (got - want).abs() <= 1e-13 * want,
                "x={x} got={got} want={want}"
            );
        }
        // Subnormal region: exp(−1430/2) ≈ 2.2e-311 stays non-zero and relatively accurate.
        let got = chi2_sf(1430.0, 2);
        let want = (-715.0f64).exp();
        assert!(
            got > 0.0 && ((got - want) / want).abs() < 1e-9,
            "{got} {want}"
        );
        assert_eq!(chi2_sf(5.0, 0), 1.0);
        assert_eq!(chi2_sf(0.0, 3), 1.0);
    }

    #[test]
    fn p_plus_q_is_one() {
        for a in [0.5, 1.0, 3.5, 12.0, 60.0] {
            for x in [0.01, 0.7, 3.0, 13.0, 59.0, 80.0] {
                let s = gamma_p(a, x) + gamma_q(a, x);
                assert!((s - 1.0).abs() < 1e-13, "a={a} x={x} s={s}");
            }
        }
    }
}
