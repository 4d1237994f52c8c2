//! The noise-level golden cases (`tests/data/golden/noise_cases.json`, written by
//! `tests/data/golden/make_noise_cases.py` with numpy and scipy): Wasserstein-1 of undrifted
//! and drifted windows, and the KS p-value of a discrete feature whose every CDF jump sits on
//! a reference bin edge, from sketch states built as a reference upload and ingest build them.
//!
//! Tolerances (docs/STATISTICS.md §16): W1 within `max(5 % of W1, 1 % of the reference's
//! standard deviation)` and within the reported error bound; KS D within two rank errors, and
//! to 1e-12 with the p-value to 1e-6 of scipy's Kolmogorov p wherever driftdb reports D as
//! exact; the capped Poisson feature must be reported exact in every window.

#![expect(
    clippy::unwrap_used,
    reason = "a test: a failed unwrap is a failed test"
)]

use driftdb_engine::rng::SplitMix;
use driftdb_engine::sketch::NumericState;
use driftdb_engine::sketch::numeric::bulk_order_key;
use driftdb_engine::stats::ks::{CdfSample, ks_and_wasserstein};
use driftdb_engine::stats::quantile::ReferenceEdges;
use serde_json::Value;

const FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/data/golden/noise_cases.json"
);
/// KLL k=200 normalized rank error per side.
const KLL_EPS: f64 = 0.013_3;

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

/// The values of a histogram block: `k / scale` for the sorted integers it encodes.
fn decode(block: &Value, scale: f64) -> Vec<f64> {
    let mut k = block["first"].as_i64().unwrap();
    let deltas = block["deltas"].as_array().unwrap();
    let counts = block["counts"].as_array().unwrap();
    assert_eq!(deltas.len() + 1, counts.len());
    let mut out = Vec::new();
    for (i, c) in counts.iter().enumerate() {
        if i > 0 {
            k += deltas[i - 1].as_i64().unwrap();
        }
        out.extend(std::iter::repeat_n(
            k as f64 / scale,
            c.as_u64().unwrap() as usize,
        ));
    }
    out
}

#[test]
fn noise_level_golden_cases() {
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(FILE).unwrap()).unwrap();
    let mut failures = Vec::new();
    let mut fail = |ok: bool, msg: String| {
        if !ok {
            failures.push(msg);
        }
    };
    let (mut checked, mut exact_ks) = (0usize, 0usize);
    for (name, f) in golden["features"].as_object().unwrap() {
        let scale = num(&f["scale"]);
        let mut reference = decode(&f["reference"], scale);
        assert_eq!(reference.len(), 50_000);
        // Upload order is not sorted: shuffle before folding one value at a time.
        let mut rng = SplitMix(0x60_1D);
        for i in (1..reference.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            reference.swap(i, j);
        }
        let edges = ReferenceEdges::from_values(&reference).unwrap();
        let want_edges: Vec<f64> = f["reference_edges_q50"]
            .as_array()
            .unwrap()
            .iter()
            .map(num)
            .collect();
        fail(
            edges.q50.edges().len() == want_edges.len()
                && edges
                    .q50
                    .edges()
                    .iter()
                    .zip(&want_edges)
                    .all(|(a, b)| (a - b).abs() <= 1e-12 * b.abs()),
            format!("{name}: reference edges differ"),
        );
        let mut profile = NumericState::new(Some(&edges.q50));
        for v in &reference {
            profile.observe(*v, Some(&edges.q50));
        }
        let sd = num(&f["reference_std"]);
        fail(
            (profile.std().unwrap() - sd).abs() <= 1e-9 * sd,
            format!("{name}: reference std"),
        );
        let base = CdfSample::from_state_binned(&profile, &edges.q50).unwrap();
        for (w, e) in f["windows"].as_array().unwrap().iter().enumerate() {
            let at = format!("{name} window {w} (shift {})", e["shift"]);
            let mut window = decode(&e["values"], scale);
            window.sort_by_key(|v| bulk_order_key(*v));
            let state = NumericState::from_sorted(&window, 0, 0, Some(&edges.q50));
            let cur = CdfSample::from_state_binned(&state, &edges.q50).unwrap();
            let (ks, w1) = ks_and_wasserstein(&base, &cur).unwrap();
            let want_w1 = num(&e["wasserstein"]);
            let tol = (0.05 * want_w1).max(0.01 * sd);
            let err = (w1.value - want_w1).abs();
            eprintln!(
                "{at}: W1 {:.5} exact {want_w1:.5} (error {:+.2} of tolerance {tol:.4}, bound \
                 {:.4}); D {:.5} exact {:.5}, p {:.6} (Kolmogorov {:.6}){}",
                w1.value,
                (w1.value - want_w1) / tol,
                w1.error_bound,
                ks.statistic,
                num(&e["ks_stat"]),
                ks.pvalue_conservative,
                num(&e["ks_pvalue_kolmogorov"]),
                if ks.statistic_is_exact() {
                    ", D exact"
                } else {
                    ""
                },
            );
            fail(err <= tol, format!("{at}: W1 {} vs {want_w1}", w1.value));
            fail(
                err <= w1.error_bound + 1e-12,
                format!("{at}: W1 error {err} beyond its bound {}", w1.error_bound),
            );
            let (want_d, want_p) = (num(&e["ks_stat"]), num(&e["ks_pvalue_kolmogorov"]));
            fail(
                (ks.statistic - want_d).abs() <= 2.0 * KLL_EPS,
                format!("{at}: D {} vs {want_d}", ks.statistic),
            );
            if ks.statistic_is_exact() {
                exact_ks += 1;
                fail(
                    (ks.statistic - want_d).abs() <= 1e-12,
                    format!("{at}: D reported exact, {} vs {want_d}", ks.statistic),
                );
                fail(
                    (ks.pvalue_conservative - want_p).abs() <= 1e-6,
                    format!("{at}: p {} vs {want_p}", ks.pvalue_conservative),
                );
            } else {
                fail(
                    ks.pvalue_conservative >= want_p - 1e-12
                        || (ks.statistic - want_d).abs() > ks.rank_error,
                    format!(
                        "{at}: conservative p {} below {want_p}",
                        ks.pvalue_conservative
                    ),
                );
            }
            if e["every_jump_on_an_edge"].as_bool().unwrap() {
                fail(
                    ks.statistic_is_exact(),
                    format!("{at}: every jump on an edge, yet D is not reported exact"),
                );
            }
            checked += 1;
        }
    }
    eprintln!("{checked} windows checked, D exact in {exact_ks}");
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(checked, 25);
    assert!(exact_ks >= 5);
}
