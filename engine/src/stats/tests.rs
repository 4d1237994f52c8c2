//! Property tests of the statistics: identities, symmetry, ranges, and that merging two
//! windows' states before computing equals computing on the union of their rows.

use proptest::prelude::*;

use crate::sketch::{CategoricalState, NumericState};
use crate::stats::categorical::categorical_drift;
use crate::stats::divergence::bin_drift;
use crate::stats::ks::{CdfSample, ks_test};
use crate::stats::numeric::numeric_drift;
use crate::stats::quantile::ReferenceEdges;

fn counts_pair() -> impl Strategy<Value = (Vec<u64>, Vec<u64>)> {
    (1usize..60).prop_flat_map(|k| {
        (
            prop::collection::vec(0u64..500, k),
            prop::collection::vec(0u64..500, k),
        )
    })
}

fn fold(values: &[f64], edges: &ReferenceEdges) -> NumericState {
    let mut s = NumericState::new(Some(&edges.q50));
    for v in values {
        s.observe(*v, Some(&edges.q50));
    }
    s
}

fn reference_edges() -> ReferenceEdges {
    let vals: Vec<f64> = (0..5_000)
        .map(|i| (f64::from(i) * 0.618_033_988_7).fract() * 100.0)
        .collect();
    ReferenceEdges::from_values(&vals).unwrap()
}

proptest! {
    #[test]
    fn divergences_vanish_on_identical_inputs((a, _) in counts_pair()) {
        prop_assume!(a.iter().sum::<u64>() > 0);
        let d = bin_drift(&a, &a).unwrap().unwrap();
        prop_assert_eq!((d.psi, d.js, d.hellinger), (0.0, 0.0, 0.0));
    }

    #[test]
    fn divergences_are_symmetric_and_bounded((a, b) in counts_pair()) {
        prop_assume!(a.iter().sum::<u64>() > 0 && b.iter().sum::<u64>() > 0);
        let ab = bin_drift(&a, &b).unwrap().unwrap();
        let ba = bin_drift(&b, &a).unwrap().unwrap();
        prop_assert!((ab.psi - ba.psi).abs() <= 1e-12 * (1.0 + ab.psi));
        prop_assert!((ab.js - ba.js).abs() <= 1e-15);
        prop_assert!((ab.hellinger - ba.hellinger).abs() <= 1e-15);
        prop_assert!(ab.psi >= 0.0);
        prop_assert!((0.0..=1.0).contains(&ab.js));
        prop_assert!((0.0..=1.0).contains(&ab.hellinger));
    }

    #[test]
    fn disjoint_supports_reach_one(k in 1usize..20, n in 1u64..1000) {
        let mut a = vec![0u64; 2 * k];
        let mut b = vec![0u64; 2 * k];
        a[0] = n;
        b[2 * k - 1] = n + 3;
        let d = bin_drift(&a, &b).unwrap().unwrap();
        prop_assert!((d.js - 1.0).abs() < 1e-12);
        prop_assert!((d.hellinger - 1.0).abs() < 1e-12);
    }

    #[test]
    fn merged_windows_equal_the_union_of_rows(
        base in prop::collection::vec(0.0f64..120.0, 1..3_000),
        w1 in prop::collection::vec(-10.0f64..130.0, 1..1_500),
        w2 in prop::collection::vec(-10.0f64..130.0, 1..1_500),
    ) {
        let edges = reference_edges();
        let reference = fold(&base, &edges);
        let mut merged = fold(&w1, &edges);
        merged.merge(&fold(&w2, &edges)).unwrap();
        let union: Vec<f64> = w1.iter().chain(&w2).copied().collect();
        let direct = fold(&union, &edges);

        let dm = numeric_drift(&reference, &merged, &edges).unwrap();
        let dd = numeric_drift(&reference, &direct, &edges).unwrap();
        // Bin metrics rest on exact counts: bit-identical.
        prop_assert_eq!(dm.q10, dd.q10);
        prop_assert_eq!(dm.q50, dd.q50);
        prop_assert!(dm.q10.is_some() && dm.q50.is_some());
        prop_assert_eq!(dm.n, union.len() as u64);
        // KS on sketches: both within their rank error of the exact D.
        let exact = ks_test(&CdfSample::exact(&base), &CdfSample::exact(&union)).unwrap();
        for d in [dm.ks.unwrap(), dd.ks.unwrap()] {
            prop_assert!((d.statistic - exact.statistic).abs() <= d.rank_error + 1e-12,
                "sketch D {} exact D {} eps {}", d.statistic, exact.statistic, d.rank_error);
            prop_assert!(d.pvalue_conservative >= d.pvalue);
        }
    }

    #[test]
    fn merged_categorical_windows_equal_the_union(
        base in prop::collection::vec(0u8..12, 1..500),
        w1 in prop::collection::vec(0u8..15, 1..300),
        w2 in prop::collection::vec(0u8..15, 1..300),
    ) {
        let cat = |xs: &[u8]| {
            let mut s = CategoricalState::default();
            for x in xs {
                s.observe(&format!("k{x}"), false);
            }
            s
        };
        let reference = cat(&base);
        let mut merged = cat(&w1);
        merged.merge(&cat(&w2)).unwrap();
        let union: Vec<u8> = w1.iter().chain(&w2).copied().collect();
        let direct = cat(&union);
        let a = categorical_drift(&reference, &merged).unwrap().unwrap();
        let b = categorical_drift(&reference, &direct).unwrap().unwrap();
        prop_assert_eq!(&a, &b);
        prop_assert!((0.0..=1.0).contains(&a.chi2.pvalue));
        prop_assert!((0.0..=1.0).contains(&a.js) && (0.0..=1.0).contains(&a.hellinger));
    }
}

#[test]
fn sketch_ks_pvalue_does_not_collapse_with_n() {
    // Same distribution on both sides; n large enough that the plain p-value is at the mercy
    // of sketch error. The conservative p stays high.
    let uniform = |seed: u64, n: usize| -> Vec<f64> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 11) as f64 / (1u64 << 53) as f64
            })
            .collect()
    };
    let edges = reference_edges();
    let a = fold(&uniform(1, 300_000), &edges);
    let b = fold(&uniform(2, 300_000), &edges);
    let ks = ks_test(
        &CdfSample::from_state(&a).unwrap(),
        &CdfSample::from_state(&b).unwrap(),
    )
    .unwrap();
    assert!(
        ks.rank_error > 0.02,
        "both sides are sketched: {}",
        ks.rank_error
    );
    assert!(ks.pvalue_conservative > 0.5, "{ks:?}");
    assert!(ks.pvalue_conservative >= ks.pvalue);
    // The bins of the same states do not carry sketch error at all.
    let d = numeric_drift(&a, &b, &edges).unwrap();
    assert!(d.q10.unwrap().psi < 1e-3);
}
