//! The bulk fold against the one-value-at-a-time fold it replaced: `NumericState::from_sorted`
//! against `observe` in turn, and `fold_batch` / `fold_planned` (any thread count) against a
//! row-by-row reference fold written here (features, `$score`, `$latency`, `$cost` and
//! attributions). Counts, missing, invalid, min, max and bins must be
//! equal; sum and squared deviations equal to rounding; KLL sketches hold the same n and answer
//! quantiles within their rank error.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on broken fixtures"
)]

use std::collections::{BTreeMap, HashMap};

use driftdb_engine::ingest::*;
use driftdb_engine::model::ModelDef;
use driftdb_engine::series::{FeatureRef, OTHER_SEGMENT_VALUE, Segment, SeriesKey};
use driftdb_engine::sketch::kll::{kll_quantize, kll_rank_error_bound};
use driftdb_engine::sketch::{BinEdges, CategoricalState, NumericState, SeriesState};
use driftdb_engine::time::{Resolution, Timestamp};
use proptest::prelude::*;

fn edges() -> BinEdges {
    BinEdges::new(vec![-50.0, -10.0, -0.0, 0.5, 3.0, 10.0, 100.0]).unwrap()
}

fn sequential(vals: &[Option<f64>], e: Option<&BinEdges>) -> NumericState {
    let mut s = NumericState::new(e);
    for v in vals {
        match v {
            Some(x) => s.observe(*x, e),
            None => s.observe_missing(),
        }
    }
    s
}

fn bulk(vals: &[Option<f64>], e: Option<&BinEdges>) -> NumericState {
    let mut finite: Vec<f64> = vals
        .iter()
        .flatten()
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    finite.sort_by(f64::total_cmp);
    let missing = vals.iter().filter(|v| v.is_none()).count() as u64;
    let invalid = vals.iter().flatten().filter(|x| !x.is_finite()).count() as u64;
    NumericState::from_sorted(&finite, missing, invalid, e)
}

fn close(a: f64, b: f64, scale: f64) -> bool {
    (a - b).abs() <= 1e-9 * scale.max(1e-300)
}

/// Exact counts, bins and extremes; moments to rounding; the same KLL n, and every KLL
/// quantile of `got` within the sketch's rank error of the exact rank in `values`.
fn assert_equivalent(got: &NumericState, want: &NumericState, values: &[f64]) {
    assert_eq!(
        (got.count(), got.missing(), got.invalid()),
        (want.count(), want.missing(), want.invalid())
    );
    assert_eq!(got.min(), want.min());
    assert_eq!(got.max(), want.max());
    assert_eq!(got.bins(), want.bins());
    let scale = values.iter().map(|x| x.abs()).sum::<f64>().max(1.0);
    assert!(
        close(got.sum(), want.sum(), scale),
        "{} vs {}",
        got.sum(),
        want.sum()
    );
    let m2_scale = values.iter().map(|x| x * x).sum::<f64>().max(1.0);
    assert!(
        close(got.m2(), want.m2(), m2_scale),
        "{} vs {}",
        got.m2(),
        want.m2()
    );
    assert_eq!(got.kll().unwrap().n(), want.kll().unwrap().n());
    assert_kll_within_error(got, values);
}

fn assert_kll_within_error(s: &NumericState, values: &[f64]) {
    let mut sorted: Vec<f64> = values
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .map(kll_quantize)
        .collect();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        return;
    }
    let cdf = s.cdf().unwrap();
    assert_eq!(cdf.total(), n as u64);
    // Twice the 99 % bound (plus one item) keeps a randomised sketch from failing by chance.
    let eps = 2.0 * kll_rank_error_bound() * n as f64 + 1.0;
    for q in [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99] {
        let x = cdf.quantile(q).unwrap();
        let below = sorted.partition_point(|v| *v < x) as f64;
        let at_most = sorted.partition_point(|v| *v <= x) as f64;
        let target = q * n as f64;
        assert!(
            at_most + eps >= target && below - eps <= target,
            "q={q}: {x} has ranks [{below}, {at_most}] for target {target} of {n} (eps {eps})"
        );
    }
}

fn value() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        8 => (-1e3f64..1e3).prop_map(Some),
        2 => prop::sample::select(vec![0.0, -0.0, 0.5, 3.0, 10.0, -50.0, 1e-300]).prop_map(Some),
        1 => prop::sample::select(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY]).prop_map(Some),
        1 => Just(None),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn from_sorted_matches_observing_in_turn(
        vals in prop::collection::vec(value(), 0..1500),
        binned in any::<bool>(),
    ) {
        let e = edges();
        let e = binned.then_some(&e);
        let finite: Vec<f64> = vals.iter().flatten().copied().filter(|x| x.is_finite()).collect();
        assert_equivalent(&bulk(&vals, e), &sequential(&vals, e), &finite);
    }
}

#[test]
fn from_sorted_of_many_values_stays_within_rank_error() {
    let mut x = 7u64;
    let vals: Vec<Option<f64>> = (0..50_000)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            Some(((x >> 11) as f64 / (1u64 << 53) as f64).powi(3) * 1e4 - 300.0)
        })
        .collect();
    let e = edges();
    let finite: Vec<f64> = vals.iter().flatten().copied().collect();
    let b = bulk(&vals, Some(&e));
    assert_equivalent(&b, &sequential(&vals, Some(&e)), &finite);
    assert!(b.kll_rank_error().unwrap() > 0.0, "50,000 values compact");
}

#[test]
fn unsorted_or_non_finite_input_falls_back_to_exact_semantics() {
    let e = edges();
    let vals = [3.0, f64::NAN, -1.0, 2.0];
    let s = NumericState::from_sorted(&vals, 1, 0, Some(&e));
    let want = sequential(&vals.map(Some), Some(&e));
    assert_eq!((s.count(), s.invalid(), s.missing()), (3, 1, 1));
    assert_eq!(s.bins(), want.bins());
    assert_eq!((s.min(), s.max()), (Some(-1.0), Some(3.0)));
}

// ---------------------------------------------------------------------------------------------
// Whole batches.

fn model() -> ModelDef {
    serde_json::from_str(
        r#"{"id":"m","task":"binary","window":"15m","segments":["region","device"],"segment_cap":3,
            "features":{"a":"numeric","b":"numeric","c":"categorical","d":"numeric"}}"#,
    )
    .unwrap()
}

/// Edges for `all` and for region=r0 only, so groups bin on different edges or none.
#[derive(Debug)]
struct SomeEdges {
    all: BinEdges,
    r0: BinEdges,
}

impl Baselines for SomeEdges {
    fn edges(&self, _: &str, feature: &FeatureRef, segment: &Segment) -> Option<&BinEdges> {
        if matches!(
            feature,
            FeatureRef::Latency | FeatureRef::Cost | FeatureRef::Attribution(_)
        ) {
            return None;
        }
        match segment {
            Segment::All => Some(&self.all),
            Segment::Value { key, value } if key == "region" && value == "r0" => Some(&self.r0),
            _ => None,
        }
    }
    fn knows_category(&self, _: &str, _: &str, _: &Segment, value: &str) -> Option<bool> {
        Some(value != "new")
    }
}

fn baselines() -> SomeEdges {
    SomeEdges {
        all: edges(),
        r0: BinEdges::new(vec![0.0, 1.0, 2.0]).unwrap(),
    }
}

const T0: i64 = 1_772_323_200_000; // 2026-03-01T00:00:00Z

#[derive(Debug, Clone)]
struct GenRow {
    window: i64,
    version: u8,
    region: Option<u8>,
    device: Option<u8>,
    a: Option<f64>,
    b: Option<f64>,
    c: Option<u8>,
    d: Option<f64>,
    score: Option<f64>,
    latency: Option<f64>,
    cost: Option<f64>,
    /// The attribution of feature `a`.
    attr_a: Option<f64>,
}

fn gen_row() -> impl Strategy<Value = GenRow> {
    (
        (
            0..2i64,
            0..2u8,
            prop::option::of(0..6u8),
            prop::option::weighted(0.7, 0..2u8),
        ),
        (value(), value(), prop::option::of(0..3u8), value()),
        (
            prop::option::of(0.0f64..1.0),
            prop::option::weighted(0.8, 0.0f64..50.0),
            prop::option::weighted(0.6, 0.0f64..5.0),
            prop::option::weighted(0.5, -3.0f64..3.0),
        ),
    )
        .prop_map(
            |((window, version, region, device), (a, b, c, d), (score, latency, cost, attr_a))| {
                GenRow {
                    window,
                    version,
                    region,
                    device,
                    a,
                    b,
                    c,
                    d,
                    score,
                    latency,
                    cost,
                    attr_a,
                }
            },
        )
}

fn batch_of(rows: &[GenRow]) -> InferenceBatch {
    let num = |f: &dyn Fn(&GenRow) -> Option<f64>| Column::Numbers(rows.iter().map(f).collect());
    InferenceBatch {
        model_id: "m".into(),
        feature_names: vec!["a".into(), "b".into(), "c".into(), "d".into()],
        segment_keys: vec!["region".into(), "device".into()],
        rows: rows
            .iter()
            .enumerate()
            .map(|(i, r)| InferenceRow {
                request_id: format!("r{i}"),
                ts: Timestamp(T0 + r.window * 900_000 + i as i64),
                version: format!("v{}", r.version),
                segments: vec![
                    r.region.map(|x| format!("r{x}")),
                    r.device.map(|x| format!("d{x}")),
                ],
                score: r.score,
                latency_ms: r.latency,
                cost: r.cost,
                ..Default::default()
            })
            .collect(),
        columns: vec![
            num(&|r| r.a),
            // `b` arrives as typed values, the path of row-oriented sources.
            Column::Values(
                rows.iter()
                    .map(|r| match r.b {
                        Some(x) => FieldValue::Number(x),
                        None => FieldValue::Missing,
                    })
                    .collect(),
            ),
            Column::Values(
                rows.iter()
                    .map(|r| match r.c {
                        Some(0) => FieldValue::Category("new".into()),
                        Some(x) => FieldValue::Category(format!("c{x}")),
                        None => FieldValue::Missing,
                    })
                    .collect(),
            ),
            // `d` arrives as a gRPC batch's doubles: a value in every row, missing rows flagged
            // (their placeholder NaN must not count as invalid).
            Column::Dense {
                values: rows.iter().map(|r| r.d.unwrap_or(f64::NAN)).collect(),
                missing: rows.iter().map(|r| r.d.is_none()).collect(),
            },
        ],
        // Attributions of `a` on some rows, as a gRPC batch sends them.
        attributions: vec![(
            "a".into(),
            Column::Dense {
                values: rows.iter().map(|r| r.attr_a.unwrap_or(0.0)).collect(),
                missing: rows.iter().map(|r| r.attr_a.is_none()).collect(),
            },
        )],
    }
}

fn bounds() -> TimeBounds {
    TimeBounds {
        oldest: Timestamp(0),
        newest: Timestamp(i64::MAX / 2),
    }
}

/// Row `r`'s segments (`all` first) with the registry's cap rule: the first 3 values of a
/// key are admitted, later ones become `__other__`.
fn segments_of(r: &GenRow, admitted: &mut BTreeMap<&'static str, Vec<String>>) -> Vec<Segment> {
    let mut segs = vec![Segment::All];
    for (key, v) in [
        ("region", r.region.map(|x| format!("r{x}"))),
        ("device", r.device.map(|x| format!("d{x}"))),
    ] {
        if let Some(v) = v {
            let list = admitted.entry(key).or_default();
            let value = if list.contains(&v) {
                v
            } else if list.len() < 3 {
                list.push(v.clone());
                v
            } else {
                OTHER_SEGMENT_VALUE.to_string()
            };
            segs.push(Segment::Value {
                key: key.into(),
                value,
            });
        }
    }
    segs
}

/// The reference: every accepted row folded into every one of its segments, one value at a
/// time, with the same cap rule as the registry (first `cap` values admitted).
fn reference_fold(
    rows: &[GenRow],
    skip: &dyn Fn(usize) -> bool,
) -> HashMap<(String, String, i64), (Vec<f64>, NumericState)> {
    let b = baselines();
    let mut admitted: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut out: HashMap<(String, String, i64), (Vec<f64>, NumericState)> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        if skip(i) {
            continue;
        }
        let window = T0 + r.window * 900_000;
        let segs = segments_of(r, &mut admitted);
        for seg in &segs {
            for (feature, val) in [
                ("a", Some(r.a)),
                ("b", Some(r.b)),
                ("d", Some(r.d)),
                ("$score", Some(r.score)),
                ("$latency", r.latency.map(Some)),
                ("$cost", r.cost.map(Some)),
                ("$attr:a", r.attr_a.map(|x| Some(x.abs()))),
            ] {
                let Some(val) = val else { continue };
                let fref = FeatureRef::parse(feature);
                let e = b.edges("", &fref, seg);
                let key = (format!("v{}/{feature}", r.version), seg.to_string(), window);
                let (vals, st) = out
                    .entry(key)
                    .or_insert_with(|| (Vec::new(), NumericState::new(e)));
                match val {
                    Some(x) => {
                        if x.is_finite() {
                            vals.push(x);
                        }
                        st.observe(x, e)
                    }
                    None => st.observe_missing(),
                }
            }
        }
    }
    out
}

/// The categorical reference: feature `c` observed row by row into every segment of its row
/// (the same segment rule as [`reference_fold`]), "new" unseen per [`SomeEdges`].
fn reference_categorical(
    rows: &[GenRow],
    skip: &dyn Fn(usize) -> bool,
) -> BTreeMap<(String, String, i64), CategoricalState> {
    let mut admitted: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut out: BTreeMap<(String, String, i64), CategoricalState> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        if skip(i) {
            continue;
        }
        let window = T0 + r.window * 900_000;
        let segs = segments_of(r, &mut admitted);
        for seg in segs {
            let st = out
                .entry((format!("v{}", r.version), seg.to_string(), window))
                .or_default();
            match r.c {
                Some(0) => st.observe("new", true),
                Some(x) => st.observe(&format!("c{x}"), false),
                None => st.observe_missing(),
            }
        }
    }
    out
}

fn categorical_deltas(out: &FoldOutput) -> BTreeMap<(String, String, i64), CategoricalState> {
    out.deltas
        .iter()
        .filter_map(|(k, ts, s)| match s {
            SeriesState::Categorical(c) => Some((
                (k.version.clone(), k.segment.to_string(), ts.millis()),
                c.clone(),
            )),
            _ => None,
        })
        .collect()
}

/// (version, segment, window) of a categorical delta.
type CatKey = (String, String, i64);
/// A categorical state's exact content: count, missing, unseen and the count per value.
type CatSummary = (CatKey, u64, u64, u64, BTreeMap<String, u64>);

fn categorical_summary(m: &BTreeMap<CatKey, CategoricalState>) -> Vec<CatSummary> {
    m.iter()
        .map(|(k, s)| (k.clone(), s.count(), s.missing(), s.unseen(), s.counts()))
        .collect()
}

fn numeric_deltas(out: &FoldOutput) -> HashMap<(String, String, i64), NumericState> {
    out.deltas
        .iter()
        .filter_map(|(k, ts, s)| {
            let SeriesKey {
                version,
                feature,
                segment,
                ..
            } = k;
            let st = match s {
                SeriesState::Numeric(n) => n.clone(),
                SeriesState::Score(sc) => {
                    assert_eq!(sc.predictions, sc.distribution.count_total());
                    sc.distribution.clone()
                }
                SeriesState::Categorical(_) => return None,
            };
            Some((
                (
                    format!("{version}/{feature}"),
                    segment.to_string(),
                    ts.millis(),
                ),
                st,
            ))
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn bulk_fold_matches_the_row_by_row_fold(
        rows in prop::collection::vec(gen_row(), 1..400),
        dup_every in 3usize..50,
        threads in 1usize..4,
    ) {
        let m = model();
        let batch = batch_of(&rows);
        let b = baselines();
        let skip = |i: usize| i % dup_every == 1;
        let mut reg = SegmentRegistry::new(3);
        let seq = fold_batch(&m, Resolution::M15, &batch, &b, &mut reg, bounds(), &|i, _| skip(i));
        let mut reg = SegmentRegistry::new(3);
        let plan = plan_batch(&m, Resolution::M15, &batch, &mut reg, bounds(), &|i, _| skip(i));
        let par = fold_planned(&m, &batch, plan, &b, threads);
        // Same keys in the same order, same bookkeeping.
        let keys = |o: &FoldOutput| o.deltas.iter().map(|(k, ts, _)| (k.clone(), *ts)).collect::<Vec<_>>();
        prop_assert_eq!(keys(&seq), keys(&par));
        prop_assert_eq!(seq.accepted, par.accepted);
        prop_assert_eq!(seq.invalid_values, par.invalid_values);
        prop_assert_eq!(&seq.pending, &par.pending);
        // A plan told there are no labels folds the same deltas and leaves no pending records.
        let mut reg = SegmentRegistry::new(3);
        let mut plan = plan_batch(&m, Resolution::M15, &batch, &mut reg, bounds(), &|i, _| skip(i));
        plan.without_pending();
        let bare = fold_planned(&m, &batch, plan, &b, threads);
        prop_assert!(bare.pending.is_empty());
        prop_assert_eq!(keys(&bare), keys(&par));
        prop_assert_eq!(bare.accepted, par.accepted);
        let want = reference_fold(&rows, &skip);
        let got_seq = numeric_deltas(&seq);
        let got_par = numeric_deltas(&par);
        prop_assert_eq!(got_seq.len(), want.len());
        prop_assert_eq!(got_par.len(), want.len());
        for (key, (vals, w)) in &want {
            let g = got_seq.get(key).unwrap_or_else(|| panic!("missing {key:?}"));
            assert_equivalent(g, w, vals);
            let p = got_par.get(key).unwrap();
            assert_equivalent(p, w, vals);
            // Apart from KLL coins, the thread count changes nothing.
            prop_assert_eq!((p.sum(), p.m2(), p.bins()), (g.sum(), g.m2(), g.bins()));
        }
        // Categorical `c`: counts per value, missing and unseen exactly as row by row.
        let want_c = categorical_summary(&reference_categorical(&rows, &skip));
        prop_assert_eq!(&categorical_summary(&categorical_deltas(&seq)), &want_c);
        prop_assert_eq!(&categorical_summary(&categorical_deltas(&par)), &want_c);
        let invalid: u64 = rows
            .iter()
            .enumerate()
            .filter(|(i, _)| !skip(*i))
            .map(|(_, r)| {
                [r.a, r.b, r.d, r.score, r.latency]
                    .iter()
                    .flatten()
                    .filter(|x| !x.is_finite())
                    .count() as u64
            })
            .sum();
        prop_assert_eq!(seq.invalid_values, invalid);
    }
}

#[test]
fn a_batch_always_builds_the_same_kll_image() {
    use driftdb_engine::sketch::kll::kll_image_from_sorted;
    // 5,000 values compact several times, so coins decide which items survive.
    let values: Vec<f64> = (0..5000).map(|i| f64::from(i) * 0.37).collect();
    let a = kll_image_from_sorted(&values).unwrap();
    let b = kll_image_from_sorted(&values).unwrap();
    assert_eq!(
        a, b,
        "same batch, same image (a replay rebuilds identical windows)"
    );
    // Another batch of the same size gets its own coins, not a copy of these.
    let shifted: Vec<f64> = values.iter().map(|v| v + 1000.0).collect();
    let c = kll_image_from_sorted(&shifted).unwrap();
    assert_ne!(a, c);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The bulk fold's fused passes give exactly the plain two-pass formulas (sum in slice
    /// order, then squared deviations from the mean), bit for bit, so a state's stored bytes
    /// do not depend on how the loops are arranged.
    #[test]
    fn bulk_moments_are_the_two_pass_formulas(
        vals in prop::collection::vec(prop_oneof![
            8 => -1e6f64..1e6,
            1 => prop::sample::select(vec![0.0, -0.0, 1e-300]),
        ], 1..400),
    ) {
        let mut v = vals;
        v.sort_by(f64::total_cmp);
        for e in [None, Some(edges())] {
            let s = NumericState::from_sorted(&v, 0, 0, e.as_ref());
            let sum: f64 = v.iter().sum();
            let mean = sum / v.len() as f64;
            let m2: f64 = v.iter().map(|x| (x - mean) * (x - mean)).sum();
            prop_assert_eq!(s.sum().to_bits(), sum.to_bits());
            prop_assert_eq!(s.m2().to_bits(), m2.to_bits());
        }
    }
}
