//! Property tests: every state merges associatively and commutatively with an identity, merging
//! equals folding the union of rows, encode/decode round-trips byte for byte, and any corrupted
//! byte is detected rather than decoded as data.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on broken fixtures"
)]

use driftdb_engine::sketch::performance::PerformanceState;
use driftdb_engine::sketch::{BinEdges, CategoricalState, NumericState, ScoreState, SeriesState};
use proptest::prelude::*;

fn edges() -> BinEdges {
    BinEdges::new(vec![-50.0, -10.0, 0.0, 0.5, 3.0, 10.0, 100.0]).unwrap()
}

fn numeric(vals: &[Option<f64>]) -> NumericState {
    let e = edges();
    let mut s = NumericState::new(Some(&e));
    for v in vals {
        match v {
            Some(x) => s.observe(*x, Some(&e)),
            None => s.observe_missing(),
        }
    }
    s
}

fn categorical(vals: &[Option<String>]) -> CategoricalState {
    let mut s = CategoricalState::default();
    for v in vals {
        match v {
            Some(x) => s.observe(x, x.starts_with('z')),
            None => s.observe_missing(),
        }
    }
    s
}

fn score(rows: &[(f64, bool)]) -> ScoreState {
    let mut s = ScoreState::default();
    for (p, y) in rows {
        s.predictions += 1;
        s.distribution.observe(*p, None);
        s.performance.observe_binary(*p, *y).unwrap();
    }
    s
}

fn value() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        8 => (-1e3f64..1e3).prop_map(Some),
        1 => prop::sample::select(vec![0.0, 0.5, 3.0, 10.0, f64::NAN, f64::INFINITY]).prop_map(Some),
        1 => Just(None),
    ]
}

fn category() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        8 => "[a-e]{1,2}".prop_map(Some),
        1 => "z[0-9]{1,3}".prop_map(Some),
        1 => Just(None),
    ]
}

/// count, missing, invalid, min, max, bins, KLL n.
type ExactView = (
    u64,
    u64,
    u64,
    Option<f64>,
    Option<f64>,
    Option<Vec<u64>>,
    u64,
);

/// Observable summary of a numeric state that must merge exactly.
fn exact_view(s: &NumericState) -> ExactView {
    (
        s.count(),
        s.missing(),
        s.invalid(),
        s.min(),
        s.max(),
        s.bins().map(|b| b.counts.clone()),
        s.kll().unwrap().n(),
    )
}

fn close(a: Option<f64>, b: Option<f64>, rel: f64) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => (x - y).abs() <= rel * x.abs().max(y.abs()).max(1.0),
        (None, None) => true,
        _ => false,
    }
}

fn merged<T: Clone>(a: &T, b: &T, f: impl Fn(&mut T, &T)) -> T {
    let mut x = a.clone();
    f(&mut x, b);
    x
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn numeric_merge_laws(a in prop::collection::vec(value(), 0..300), b in prop::collection::vec(value(), 0..300), c in prop::collection::vec(value(), 0..300)) {
        let (sa, sb, sc) = (numeric(&a), numeric(&b), numeric(&c));
        let m = |x: &mut NumericState, y: &NumericState| x.merge(y).unwrap();
        let ab = merged(&sa, &sb, m);
        let ba = merged(&sb, &sa, m);
        prop_assert_eq!(exact_view(&ab), exact_view(&ba));
        prop_assert!(close(ab.mean(), ba.mean(), 1e-12) && close(ab.std(), ba.std(), 1e-9));
        let ab_c = merged(&ab, &sc, m);
        let a_bc = merged(&sa, &merged(&sb, &sc, m), m);
        prop_assert_eq!(exact_view(&ab_c), exact_view(&a_bc));
        prop_assert!(close(ab_c.mean(), a_bc.mean(), 1e-12) && close(ab_c.std(), a_bc.std(), 1e-9));
        // Identity: merging the empty state changes nothing, byte for byte.
        let id = merged(&sa, &NumericState::default(), m);
        prop_assert_eq!(SeriesState::Numeric(id).encode(), SeriesState::Numeric(sa.clone()).encode());
        let id2 = merged(&NumericState::default(), &sa, m);
        prop_assert_eq!(exact_view(&id2), exact_view(&sa));
        // Merge equals folding the union of rows.
        let union: Vec<_> = a.iter().chain(&b).chain(&c).copied().collect();
        let su = numeric(&union);
        prop_assert_eq!(exact_view(&su), exact_view(&ab_c));
        prop_assert!(close(su.mean(), ab_c.mean(), 1e-12) && close(su.std(), ab_c.std(), 1e-9));
    }

    #[test]
    fn categorical_merge_laws(a in prop::collection::vec(category(), 0..400), b in prop::collection::vec(category(), 0..400), c in prop::collection::vec(category(), 0..400)) {
        let (sa, sb, sc) = (categorical(&a), categorical(&b), categorical(&c));
        let m = |x: &mut CategoricalState, y: &CategoricalState| x.merge(y).unwrap();
        let view = |s: &CategoricalState| (s.count(), s.missing(), s.unseen(), s.is_exact(), if s.is_exact() { s.counts() } else { Default::default() });
        let ab_c = merged(&merged(&sa, &sb, m), &sc, m);
        let a_bc = merged(&sa, &merged(&sb, &sc, m), m);
        let cb_a = merged(&merged(&sc, &sb, m), &sa, m);
        prop_assert_eq!(view(&ab_c), view(&a_bc));
        prop_assert_eq!(view(&ab_c), view(&cb_a));
        let union: Vec<_> = a.iter().chain(&b).chain(&c).cloned().collect();
        prop_assert_eq!(view(&categorical(&union)), view(&ab_c));
        let id = merged(&sa, &CategoricalState::default(), m);
        prop_assert_eq!(SeriesState::Categorical(id).encode(), SeriesState::Categorical(sa).encode());
    }

    #[test]
    fn score_merge_is_exact_addition(a in prop::collection::vec((0.0f64..=1.0, any::<bool>()), 0..200), b in prop::collection::vec((0.0f64..=1.0, any::<bool>()), 0..200)) {
        let (sa, sb) = (score(&a), score(&b));
        let mut ab = sa.clone();
        ab.merge(&sb).unwrap();
        let union: Vec<_> = a.iter().chain(&b).copied().collect();
        let su = score(&union);
        let pa = ab.performance.binary.clone().unwrap_or_default();
        let pu = su.performance.binary.clone().unwrap_or_default();
        prop_assert_eq!(pa.n, pu.n);
        prop_assert_eq!(pa.confusion, pu.confusion);
        prop_assert_eq!(&pa.hist, &pu.hist);
        prop_assert_eq!(pa.calibration.iter().map(|c| c.n).collect::<Vec<_>>(), pu.calibration.iter().map(|c| c.n).collect::<Vec<_>>());
        prop_assert!((pa.brier_sum - pu.brier_sum).abs() <= 1e-9 * pu.brier_sum.max(1.0));
        prop_assert_eq!(ab.label_coverage(), su.label_coverage());
        let mut perf = PerformanceState::default();
        perf.merge(&ab.performance);
        prop_assert_eq!(&perf, &ab.performance);
    }

    #[test]
    fn encode_decode_round_trips(vals in prop::collection::vec(value(), 0..500), cats in prop::collection::vec(category(), 0..600), rows in prop::collection::vec((0.0f64..=1.0, any::<bool>()), 0..100)) {
        for s in [SeriesState::Numeric(numeric(&vals)), SeriesState::Categorical(categorical(&cats)), SeriesState::Score(score(&rows))] {
            let bytes = s.encode();
            let back = SeriesState::decode(&bytes).unwrap();
            prop_assert_eq!(back.encode(), bytes);
        }
    }

    #[test]
    fn a_single_value_merges_to_itself_and_a_corrupt_one_to_nothing(vals in prop::collection::vec(value(), 0..400), rows in prop::collection::vec((0.0f64..=1.0, any::<bool>()), 0..100), at in any::<prop::sample::Index>(), flip in 1u8..=255) {
        // What RocksDB asks of the merge operator when it reads a window written once: the
        // value back as it is (it is its own canonical encoding: the round trip above).
        for s in [SeriesState::Numeric(numeric(&vals)), SeriesState::Score(score(&rows))] {
            let bytes = s.encode();
            let out = driftdb_engine::sketch::merge_encoded([bytes.as_slice()]);
            prop_assert_eq!(out.corrupt, 0);
            prop_assert_eq!(out.bytes.as_ref(), Some(&bytes));
            let mut bad = bytes.clone();
            let i = at.index(bad.len());
            bad[i] ^= flip;
            let out = driftdb_engine::sketch::merge_encoded([bad.as_slice()]);
            prop_assert_eq!((out.bytes, out.corrupt), (None, 1), "corruption at byte {} kept", i);
        }
    }

    #[test]
    fn decoding_without_sketch_keeps_everything_but_the_sketch(vals in prop::collection::vec(value(), 0..500), rows in prop::collection::vec((0.0f64..=1.0, any::<bool>()), 0..100)) {
        // What a reader merging without sketches gets: the summary of a full decode, no sketch.
        let summary = |n: &NumericState| (n.count(), n.missing(), n.invalid(), n.sum().to_bits(), n.m2().to_bits(), n.min(), n.max(), n.bins().cloned());
        let full = numeric(&vals);
        let bytes = SeriesState::Numeric(full.clone()).encode();
        let SeriesState::Numeric(lean) = SeriesState::decode_without_sketch(&bytes).unwrap() else { panic!("numeric") };
        prop_assert_eq!(summary(&lean), summary(&full));
        // An empty state stores no sketch to drop.
        prop_assert_eq!(lean.kll().is_err(), full.count() > 0);
        let mut other = numeric(&vals);
        other.merge_without_sketch(&lean);
        prop_assert_eq!(other.count(), 2 * full.count());
        let sc = score(&rows);
        let bytes = SeriesState::Score(sc.clone()).encode();
        let SeriesState::Score(lean) = SeriesState::decode_without_sketch(&bytes).unwrap() else { panic!("score") };
        prop_assert_eq!(summary(&lean.distribution), summary(&sc.distribution));
        prop_assert_eq!((lean.predictions, &lean.performance), (sc.predictions, &sc.performance));
        prop_assert_eq!(lean.distribution.kll().is_err(), sc.distribution.count() > 0);
    }

    #[test]
    fn corrupted_bytes_are_detected(vals in prop::collection::vec(value(), 1..300), at in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let bytes = SeriesState::Numeric(numeric(&vals)).encode();
        let mut bad = bytes.clone();
        let i = at.index(bad.len());
        bad[i] ^= flip;
        prop_assert!(SeriesState::decode(&bad).is_err(), "corruption at byte {} went unnoticed", i);
        prop_assert!(SeriesState::decode_without_sketch(&bad).is_err(), "corruption at byte {} went unnoticed without sketch", i);
        prop_assert!(SeriesState::decode(&bytes[..at.index(bytes.len())]).is_err());
    }
}

#[test]
fn merge_encoded_skips_corrupt_operands() {
    let a = SeriesState::Numeric(numeric(&[Some(1.0), Some(2.0)])).encode();
    let b = SeriesState::Numeric(numeric(&[Some(3.0)])).encode();
    let mut bad = b.clone();
    bad[3] ^= 0x40;
    let cat = SeriesState::Categorical(categorical(&[Some("a".into())])).encode();
    let out = driftdb_engine::sketch::merge_encoded([
        a.as_slice(),
        bad.as_slice(),
        b.as_slice(),
        cat.as_slice(),
    ]);
    assert_eq!(out.corrupt, 2);
    match SeriesState::decode(&out.bytes.unwrap()).unwrap() {
        SeriesState::Numeric(n) => assert_eq!((n.count(), n.sum()), (3, 6.0)),
        other => panic!("wrong kind {}", other.kind_name()),
    }
}

#[test]
fn kll_quantiles_of_merged_windows_stay_within_rank_error() {
    // 96 windows of 500 values merged, like a 24 h query over 15-minute windows.
    let mut all = NumericState::default();
    let mut raw = Vec::new();
    for w in 0..96 {
        let vals: Vec<Option<f64>> = (0..500)
            .map(|i| Some(((i * 7919 + w * 104_729) % 100_003) as f64 / 100.0))
            .collect();
        raw.extend(vals.iter().flatten().copied());
        all.merge(&numeric(&vals)).unwrap();
    }
    let exact = driftdb_engine::sketch::kll::WeightedCdf::from_values(&raw);
    let cdf = all.cdf().unwrap();
    let eps = all.kll().unwrap().normalized_rank_error();
    for q in [0.01, 0.1, 0.5, 0.9, 0.99] {
        let v = cdf.quantile(q).unwrap();
        assert!((exact.cdf_le(v) - q).abs() <= eps, "q={q}");
    }
}

/// Shrunk proptest failure kept as a named case: three empty windows merged must look exactly
/// like the empty union (an empty state reports no bins, whether or not it was created with
/// edges).
#[test]
fn regression_empty_windows_merge_like_the_empty_union() {
    let mut merged = numeric(&[]);
    merged.merge(&numeric(&[])).unwrap();
    merged.merge(&NumericState::default()).unwrap();
    assert_eq!(exact_view(&merged), exact_view(&numeric(&[])));
    assert!(merged.bins().is_none());
}
/// A numeric state as RocksDB's merge operator sees it: encoded and decoded, so its sketch is
/// a stored image. Half are built value by value (the crate's sketch, level 0 unsorted), half
/// by the bulk fold (the image written directly).
fn stored(vals: &[f64], bulk: bool) -> NumericState {
    let e = edges();
    let s = if bulk {
        let mut v = vals.to_vec();
        v.sort_by(f64::total_cmp);
        NumericState::from_sorted(&v, 0, 0, Some(&e))
    } else {
        let opts: Vec<Option<f64>> = vals.iter().copied().map(Some).collect();
        numeric(&opts)
    };
    match SeriesState::decode(&SeriesState::Numeric(s).encode()).unwrap() {
        SeriesState::Numeric(n) => n,
        other => panic!("wrong kind {}", other.kind_name()),
    }
}

/// `states` encoded, merged by `merge_encoded` (what RocksDB's merge operator runs) with no
/// operand left out, and decoded.
fn through_merge_operator(states: impl Iterator<Item = SeriesState>) -> SeriesState {
    let encoded: Vec<Vec<u8>> = states.map(|s| s.encode()).collect();
    let out = driftdb_engine::sketch::merge_encoded(encoded.iter().map(Vec::as_slice));
    assert_eq!(out.corrupt, 0);
    SeriesState::decode(&out.bytes.unwrap()).unwrap()
}

/// Every retained item's rank in the merged sketch is within twice KLL's 99 % bound (plus one
/// item) of its exact rank among the (quantized) inputs.
fn assert_within_rank_error(s: &NumericState, values: &[f64]) {
    use driftdb_engine::sketch::kll::{kll_quantize, kll_rank_error_bound};
    let mut sorted: Vec<f64> = values.iter().copied().map(kll_quantize).collect();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len() as f64;
    let cdf = s.cdf().unwrap();
    assert_eq!(cdf.total(), sorted.len() as u64);
    let eps = 2.0 * kll_rank_error_bound() * n + 1.0;
    for q in [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99] {
        let x = cdf.quantile(q).unwrap();
        let below = sorted.partition_point(|v| *v < x) as f64;
        let at_most = sorted.partition_point(|v| *v <= x) as f64;
        assert!(
            at_most + eps >= q * n && below - eps <= q * n,
            "q={q}: {x} has ranks [{below}, {at_most}] of {n} (eps {eps})"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The one-pass merge of many windows gives what merging them in turn gives for every
    /// exact part, a sketch the DataSketches crate reads back (its validation checks levels,
    /// weights, order and extremes), quantiles within the rank error of the union, and the
    /// same bytes every time.
    #[test]
    fn merge_all_equals_merging_in_turn(
        windows in prop::collection::vec(
            (prop::collection::vec(-1e3f64..1e3, 0..700), any::<bool>()),
            1..7,
        ),
    ) {
        let states: Vec<NumericState> = windows.iter().map(|(v, bulk)| stored(v, *bulk)).collect();
        let all = NumericState::merge_all(&states).unwrap();
        let mut in_turn = states[0].clone();
        for s in &states[1..] {
            in_turn.merge(s).unwrap();
        }
        prop_assert_eq!(exact_view(&all), exact_view(&in_turn));
        prop_assert!(close(all.mean(), in_turn.mean(), 1e-12) && close(all.std(), in_turn.std(), 1e-9));
        let union: Vec<f64> = windows.iter().flat_map(|(v, _)| v.iter().copied()).collect();
        if !union.is_empty() {
            assert_within_rank_error(&all, &union);
        }
        // The one-pass path itself succeeded (merge_all falls back to merging in turn when
        // it cannot), and its image is what merge_all stored; the crate reads it back.
        let images: Vec<Vec<u8>> = states
            .iter()
            .filter(|s| s.count() > 0)
            .map(|s| s.kll().unwrap().serialize())
            .collect();
        let refs: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
        let one_pass = driftdb_engine::sketch::kll::kll_merge_images(&refs).unwrap();
        prop_assert_eq!(one_pass, all.kll().unwrap().serialize());
        let again = NumericState::merge_all(&states).unwrap();
        prop_assert_eq!(
            SeriesState::Numeric(all).encode(),
            SeriesState::Numeric(again).encode()
        );
    }
}

/// 96 windows of 500 values merged at once, like a compaction of a day's operands: within the
/// rank error, and `merge_encoded` (the storage merge operator) takes this path for numeric
/// windows with the same exact parts as merging in turn.
#[test]
fn one_pass_merge_of_a_day_of_windows() {
    let mut raw = Vec::new();
    let mut states = Vec::new();
    for w in 0..96u64 {
        let vals: Vec<f64> = (0..500u64)
            .map(|i| ((i * 7919 + w * 104_729) % 100_003) as f64 / 100.0)
            .collect();
        raw.extend_from_slice(&vals);
        states.push(stored(&vals, w % 2 == 0));
    }
    let all = NumericState::merge_all(&states).unwrap();
    assert_within_rank_error(&all, &raw);
    let images: Vec<Vec<u8>> = states
        .iter()
        .map(|s| s.kll().unwrap().serialize())
        .collect();
    let refs: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
    let one_pass = driftdb_engine::sketch::kll::kll_merge_images(&refs).unwrap();
    assert_eq!(one_pass, all.kll().unwrap().serialize());
    assert!(all.kll().unwrap().is_estimation_mode());
    let via_operator =
        match through_merge_operator(states.iter().cloned().map(SeriesState::Numeric)) {
            SeriesState::Numeric(n) => n,
            other => panic!("wrong kind {}", other.kind_name()),
        };
    let mut in_turn = states[0].clone();
    for s in &states[1..] {
        in_turn.merge(s).unwrap();
    }
    assert_eq!(exact_view(&via_operator), exact_view(&in_turn));
    assert_within_rank_error(&via_operator, &raw);
}

/// An image the one-pass merge cannot take (another k) makes `merge_all` fall back to the
/// crate's merge in turn, with the same exact parts; a truncated image is an error, not data.
#[test]
fn one_pass_merge_refuses_foreign_or_broken_images() {
    use driftdb_engine::sketch::kll::kll_merge_images;
    let a = stored(&(0..300).map(f64::from).collect::<Vec<_>>(), true);
    let b = stored(
        &(0..300).map(|i| f64::from(i) * 0.5).collect::<Vec<_>>(),
        false,
    );
    let image = a.kll().unwrap().serialize();
    let mut other_k = image.clone();
    other_k[4] = 100;
    assert!(kll_merge_images(&[&image, &other_k]).is_err());
    assert!(kll_merge_images(&[&image, &image[..image.len() - 5]]).is_err());
    let mut nan = image.clone();
    let last = nan.len() - 8;
    nan[last..].copy_from_slice(&f64::NAN.to_le_bytes());
    assert!(kll_merge_images(&[&image, &nan]).is_err());
    let all = NumericState::merge_all(&[a.clone(), b.clone()]).unwrap();
    let mut in_turn = a;
    in_turn.merge(&b).unwrap();
    assert_eq!(exact_view(&all), exact_view(&in_turn));
    assert_eq!(all.kll().unwrap().n(), 600);
}

/// Score windows through the storage merge operator: predictions and performance add exactly,
/// the score distribution merges in one pass with the same exact parts as merging in turn.
#[test]
fn merge_encoded_merges_score_windows_in_one_pass() {
    let windows: Vec<ScoreState> = (0..5u32)
        .map(|w| {
            let rows: Vec<(f64, bool)> = (0..400u32)
                .map(|i| (f64::from((i * 37 + w * 11) % 100) / 100.0, (i + w) % 3 == 0))
                .collect();
            score(&rows)
        })
        .collect();
    let SeriesState::Score(merged) =
        through_merge_operator(windows.iter().cloned().map(SeriesState::Score))
    else {
        panic!("not a score state");
    };
    let mut in_turn = windows[0].clone();
    for w in &windows[1..] {
        in_turn.merge(w).unwrap();
    }
    assert_eq!(merged.predictions, 2_000);
    assert_eq!(merged.performance, in_turn.performance);
    assert_eq!(
        exact_view(&merged.distribution),
        exact_view(&in_turn.distribution)
    );
    assert_eq!(merged.distribution.kll().unwrap().n(), 2_000);
}
