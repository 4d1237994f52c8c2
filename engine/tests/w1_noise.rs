//! Wasserstein-1 from sketches against the exact value, at the noise level and under drift
//! (docs/STATISTICS.md §7, §16, §17).
//!
//! For four features — normal, uniform, lognormal and a discrete (Poisson) count — 50
//! reference profiles of 50,000 rows are built as a reference upload builds them (one value
//! at a time, `NumericState::observe` on the exact 50-bin edges), and 4 windows of 5,000 rows
//! each are folded as ingest folds them (`NumericState::from_sorted`, values in
//! `bulk_order_key` order): 200 windows per feature, three of every four undrifted. W1 of
//! window against reference from the two states must be within
//! `max(5 % of the exact W1, 1 % of the reference's standard deviation)` of the exact value
//! for at least 99 % of the windows (and within twice that for all), the median signed error
//! over the undrifted windows within a tenth of the tolerance (no sign bias), and the error
//! within the reported bound every time. The same figures for the estimator the states
//! without offset sums fall back to (the area between the two calibrated sketch CDFs) are
//! printed for comparison.

#![expect(
    clippy::unwrap_used,
    reason = "a test: a failed unwrap is a failed test"
)]

use driftdb_engine::rng::SplitMix;
use driftdb_engine::sketch::NumericState;
use driftdb_engine::sketch::numeric::bulk_order_key;
use driftdb_engine::stats::ks::{CdfSample, StepCdf, ks_and_wasserstein, wasserstein};
use driftdb_engine::stats::quantile::ReferenceEdges;

const REFERENCES: u64 = 50;
const WINDOWS_PER_REFERENCE: u64 = 4;
const REFERENCE_ROWS: usize = 50_000;
const WINDOW_ROWS: usize = 5_000;

fn poisson(r: &mut SplitMix, lambda: f64) -> f64 {
    let limit = (-lambda).exp();
    let (mut k, mut p) = (0.0, 1.0);
    loop {
        p *= r.unit();
        if p <= limit {
            return k;
        }
        k += 1.0;
    }
}

/// One value of `kind`, moved by `shift` standard deviations (a rate change for the counts).
fn draw(kind: &str, r: &mut SplitMix, shift: f64) -> f64 {
    match kind {
        "normal" => 50.0 + 10.0 * (r.normal() + shift),
        "uniform" => 100.0 * r.unit() + 28.87 * shift,
        "lognormal" => (0.5 + 0.6 * (r.normal() + shift)).exp(),
        "poisson" => poisson(r, 4.0 + 2.0 * shift),
        _ => unreachable!("kind {kind}"),
    }
}

/// The state ingest builds from a window's values.
fn fold_window(values: &[f64], edges: &ReferenceEdges) -> NumericState {
    let mut ordered = values.to_vec();
    ordered.sort_by_key(|v| bulk_order_key(*v));
    NumericState::from_sorted(&ordered, 0, 0, Some(&edges.q50))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Outcome {
    /// Signed error / tolerance, and whether the window drifted.
    errors: Vec<(f64, bool)>,
    old_errors: Vec<(f64, bool)>,
    outside_bound: usize,
    bound_over_tol: Vec<f64>,
    w1: Vec<f64>,
    /// Relative errors of the undrifted windows (new, sketch area).
    rel: Vec<(f64, f64)>,
}

fn run(kind: &str) -> Outcome {
    let mut out = Outcome {
        errors: Vec::new(),
        old_errors: Vec::new(),
        outside_bound: 0,
        bound_over_tol: Vec::new(),
        w1: Vec::new(),
        rel: Vec::new(),
    };
    for seed in 0..REFERENCES {
        let mut r = SplitMix(0xD1F7 + 7919 * seed + kind.len() as u64);
        let reference: Vec<f64> = (0..REFERENCE_ROWS)
            .map(|_| draw(kind, &mut r, 0.0))
            .collect();
        let edges = ReferenceEdges::from_values(&reference).unwrap();
        let mut profile = NumericState::new(Some(&edges.q50));
        for v in &reference {
            profile.observe(*v, Some(&edges.q50));
        }
        let sd = profile.std().unwrap();
        let base = CdfSample::from_state_binned(&profile, &edges.q50).unwrap();
        let exact_ref = StepCdf::from_values(&reference);
        for w in 0..WINDOWS_PER_REFERENCE {
            let drifted = w == WINDOWS_PER_REFERENCE - 1;
            let shift = if drifted {
                0.1 * (seed % 5) as f64 + 0.05
            } else {
                0.0
            };
            let window: Vec<f64> = (0..WINDOW_ROWS)
                .map(|_| draw(kind, &mut r, shift))
                .collect();
            let state = fold_window(&window, &edges);
            let cur = CdfSample::from_state_binned(&state, &edges.q50).unwrap();
            let exact = wasserstein(&exact_ref, &StepCdf::from_values(&window)).unwrap();
            let tol = (0.05 * exact).max(0.01 * sd);
            let (_, w1) = ks_and_wasserstein(&base, &cur).unwrap();
            let old = wasserstein(base.cdf(), cur.cdf()).unwrap();
            out.errors.push(((w1.value - exact) / tol, drifted));
            out.old_errors.push(((old - exact) / tol, drifted));
            if (w1.value - exact).abs() > w1.error_bound * (1.0 + 1e-9) + 1e-12 {
                out.outside_bound += 1;
            }
            out.bound_over_tol.push(w1.error_bound / tol);
            out.w1.push(exact);
            if !drifted {
                out.rel.push((w1.value / exact - 1.0, old / exact - 1.0));
            }
        }
    }
    out
}

/// (median signed error / tol over undrifted windows, share within tol, largest |error| / tol)
fn summary(errors: &[(f64, bool)]) -> (f64, f64, f64) {
    let undrifted: Vec<f64> = errors.iter().filter(|e| !e.1).map(|e| e.0).collect();
    let within = errors.iter().filter(|e| e.0.abs() <= 1.0).count() as f64 / errors.len() as f64;
    let worst = errors.iter().fold(0.0f64, |m, e| m.max(e.0.abs()));
    (median(undrifted), within, worst)
}

#[test]
fn wasserstein_is_unbiased_and_within_tolerance() {
    let mut failures = Vec::new();
    for kind in ["normal", "uniform", "lognormal", "poisson"] {
        let o = run(kind);
        let (bias, within, worst) = summary(&o.errors);
        let (old_bias, old_within, old_worst) = summary(&o.old_errors);
        eprintln!(
            "{kind:9}: {} windows, median exact W1 {:.4}; median error/tol {bias:+.3} (sketch \
             area {old_bias:+.3}), within tol {:.1} % ({:.1} %), worst |error|/tol {worst:.2} \
             ({old_worst:.2}); error within bound {}/{}, median bound/tol {:.1}",
            o.errors.len(),
            median(o.w1.clone()),
            100.0 * within,
            100.0 * old_within,
            o.errors.len() - o.outside_bound,
            o.errors.len(),
            median(o.bound_over_tol.clone()),
        );
        eprintln!(
            "{kind:9}  undrifted: median relative error {:+.1} % (sketch area {:+.1} %)",
            100.0 * median(o.rel.iter().map(|r| r.0).collect()),
            100.0 * median(o.rel.iter().map(|r| r.1).collect()),
        );
        if bias.abs() >= 0.1 {
            failures.push(format!(
                "{kind}: median signed error {bias:+.3} of the tolerance"
            ));
        }
        if within < 0.99 {
            failures.push(format!(
                "{kind}: only {:.1} % within tolerance",
                100.0 * within
            ));
        }
        if worst > 2.0 {
            failures.push(format!("{kind}: an error of {worst:.2} tolerances"));
        }
        if o.outside_bound > 0 {
            failures.push(format!(
                "{kind}: {} errors beyond the bound",
                o.outside_bound
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
