//! Reference profiles: exact edges and quantiles, per-segment baselines, storage round trip.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on broken fixtures"
)]

use driftdb_engine::ingest::{Baselines, Column, FieldValue, InferenceBatch, InferenceRow};
use driftdb_engine::model::ModelDef;
use driftdb_engine::reference::{ReferenceBuilder, ReferenceProfile};
use driftdb_engine::series::{FeatureRef, Segment};
use driftdb_engine::time::Timestamp;

fn model() -> ModelDef {
    serde_json::from_str(
        r#"{"id":"m","task":"binary","window":"1h","segments":["region"],
            "features":{"x":"numeric","c":"categorical"}}"#,
    )
    .unwrap()
}

fn batch(n: usize) -> (InferenceBatch, Vec<Option<f64>>) {
    let mut rows = Vec::new();
    let (mut x, mut c, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        rows.push(InferenceRow {
            request_id: format!("r{i}"),
            ts: Timestamp(0),
            version: "v1".into(),
            segments: vec![Some(if i % 2 == 0 { "eu" } else { "us" }.into())],
            score: Some((i % 10) as f64 / 10.0),
            latency_ms: Some(5.0),
            ..Default::default()
        });
        x.push(if i % 25 == 0 {
            FieldValue::Missing
        } else {
            FieldValue::Number(i as f64)
        });
        c.push(FieldValue::Category(format!("k{}", i % 3)));
        labels.push(Some((i % 2) as f64));
    }
    let b = InferenceBatch {
        model_id: "m".into(),
        feature_names: vec!["x".into(), "c".into()],
        segment_keys: vec!["region".into()],
        rows,
        columns: vec![Column::Values(x), Column::Values(c)],
        attributions: Vec::new(),
    };
    (b, labels)
}

#[test]
fn profile_has_exact_edges_per_segment_and_round_trips() {
    let (b, labels) = batch(1000);
    let mut builder = ReferenceBuilder::new(&model(), "v1").unwrap();
    assert!(builder.add(&b, &labels).unwrap().is_empty());
    let p = builder.finish(Timestamp(42)).unwrap();
    assert_eq!(p.rows(), 1000);
    let x = FeatureRef::Named("x".into());
    let all = p.series(&x, &Segment::All).unwrap().numeric().unwrap();
    assert_eq!((all.state.count(), all.state.missing()), (960, 40));
    // Non-missing values are 1..999 without multiples of 25; type-7 edges at k/10.
    let mut vals: Vec<f64> = (0..1000)
        .filter(|i| i % 25 != 0)
        .map(|i| i as f64)
        .collect();
    vals.sort_by(f64::total_cmp);
    let q = |p: f64| {
        let h = (vals.len() - 1) as f64 * p;
        let lo = h.floor() as usize;
        vals[lo] + (h - lo as f64) * (vals[(lo + 1).min(vals.len() - 1)] - vals[lo])
    };
    let e = all.edges.as_ref().unwrap();
    assert_eq!(e.q10.edges().len(), 9);
    for (k, edge) in e.q10.edges().iter().enumerate() {
        assert!((edge - q((k + 1) as f64 / 10.0)).abs() < 1e-9);
    }
    assert_eq!(e.q50.edges().len(), 49);
    assert_eq!(all.state.bins().unwrap().counts.iter().sum::<u64>(), 960);
    assert!((all.quantiles[3] - q(0.5)).abs() < 1e-9);
    // Segment eu has its own edges from its own rows.
    let eu = Segment::Value {
        key: "region".into(),
        value: "eu".into(),
    };
    let eu_p = p.series(&x, &eu).unwrap().numeric().unwrap();
    assert_eq!(eu_p.state.count(), 480);
    assert_ne!(eu_p.edges.as_ref().unwrap().q50.edges(), e.q50.edges());
    // Performance of labelled reference rows.
    assert_eq!(
        p.segments[&Segment::All]
            .performance
            .binary
            .as_ref()
            .unwrap()
            .n,
        1000
    );
    // Round trip through the stored encoding.
    let back = ReferenceProfile::decode(&p.encode()).unwrap();
    assert_eq!(back.encode(), p.encode());
    assert_eq!(back.created_at, Timestamp(42));
    // The calibration map (docs/STATISTICS.md §20) is fitted when the profile is built and
    // again, identically, when it is read. Labels are 1 on odd rows: segment eu (even rows)
    // has no positive, so no map.
    let built = p.segments[&Segment::All].calibration.as_ref().unwrap();
    assert_eq!(
        back.segments[&Segment::All].calibration.as_ref(),
        Some(built)
    );
    let knots: Vec<(f64, f64)> = built.knots().collect();
    assert!(
        knots
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
    );
    assert!(p.segments[&eu].calibration.is_none());
    assert!(back.segments[&eu].calibration.is_none());
    // The profile's bins carry offset sums (W1 per bin, docs/STATISTICS.md §7), stored too.
    let back_all = back.series(&x, &Segment::All).unwrap().numeric().unwrap();
    assert!(back_all.state.bins().unwrap().sums.is_some());
    assert_eq!(back_all.state.bins(), all.state.bins());
    // As fold baselines.
    let mut by_version = std::collections::BTreeMap::new();
    by_version.insert("v1".to_string(), back);
    assert_eq!(
        by_version.edges("v1", &x, &eu).unwrap().edges(),
        eu_p.edges.as_ref().unwrap().q50.edges()
    );
    assert_eq!(
        by_version.knows_category("v1", "c", &Segment::All, "k1"),
        Some(true)
    );
    assert_eq!(
        by_version.knows_category("v1", "c", &Segment::All, "k9"),
        Some(false)
    );
    assert_eq!(
        by_version.knows_category("v2", "c", &Segment::All, "k1"),
        None
    );
    let mut bad = p.encode();
    let mid = bad.len() / 2;
    bad[mid] ^= 1;
    assert!(ReferenceProfile::decode(&bad).is_err());
}

#[test]
fn wrong_types_are_rejected_per_row() {
    let (mut b, labels) = batch(10);
    if let Column::Values(v) = &mut b.columns[0] {
        v[3] = FieldValue::Category("oops".into());
    }
    let mut builder = ReferenceBuilder::new(&model(), "v1").unwrap();
    let rej = builder.add(&b, &labels).unwrap();
    assert_eq!(rej.len(), 1);
    assert_eq!(rej[0].request_id, "r3");
    assert_eq!(builder.finish(Timestamp(0)).unwrap().rows(), 9);
}

/// Rows `range` of [`batch`]'s rows as a batch of their own.
fn slice(
    b: &InferenceBatch,
    labels: &[Option<f64>],
    range: std::ops::Range<usize>,
) -> (InferenceBatch, Vec<Option<f64>>) {
    let column = |c: &Column| match c {
        Column::Values(v) => Column::Values(v[range.clone()].to_vec()),
        _ => unreachable!("batch() builds value columns"),
    };
    (
        InferenceBatch {
            rows: b.rows[range.clone()].to_vec(),
            columns: b.columns.iter().map(column).collect(),
            ..b.clone()
        },
        labels[range].to_vec(),
    )
}

#[test]
fn a_profile_does_not_depend_on_how_its_rows_are_batched_and_counts_every_row() {
    let (b, labels) = batch(1000);
    let whole = {
        let mut builder = ReferenceBuilder::new(&model(), "v1").unwrap();
        assert!(builder.add(&b, &labels).unwrap().is_empty());
        builder.finish(Timestamp(7)).unwrap()
    };
    let split = {
        let mut builder = ReferenceBuilder::new(&model(), "v1").unwrap();
        for r in [0..1, 1..333, 333..334, 334..1000] {
            let (part, l) = slice(&b, &labels, r);
            assert!(builder.add(&part, &l).unwrap().is_empty());
        }
        builder.finish(Timestamp(7)).unwrap()
    };
    // Same bytes: every series got the same values in the same order, sketches included.
    assert_eq!(split.encode(), whole.encode());
    // Each segment holds exactly its rows, checked against values counted here.
    let x = FeatureRef::Named("x".into());
    for (seg, parity) in [
        (Segment::All, None),
        (region("eu"), Some(0)),
        (region("us"), Some(1)),
    ] {
        let mine: Vec<usize> = (0..1000)
            .filter(|i| parity.is_none_or(|p| i % 2 == p))
            .collect();
        let prof = &whole.segments[&seg];
        assert_eq!(prof.rows, mine.len() as u64, "{seg}");
        let xs: Vec<f64> = mine
            .iter()
            .filter(|i| *i % 25 != 0)
            .map(|i| *i as f64)
            .collect();
        let st = &whole.series(&x, &seg).unwrap().numeric().unwrap().state;
        assert_eq!(st.count(), xs.len() as u64, "{seg}");
        assert_eq!(st.missing(), (mine.len() - xs.len()) as u64, "{seg}");
        assert_eq!(st.min(), xs.iter().copied().reduce(f64::min), "{seg}");
        assert_eq!(st.max(), xs.iter().copied().reduce(f64::max), "{seg}");
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((st.mean().unwrap() - mean).abs() < 1e-9, "{seg}");
        let score = whole
            .series(&FeatureRef::Score, &seg)
            .unwrap()
            .numeric()
            .unwrap();
        assert_eq!(score.state.count(), mine.len() as u64, "{seg}");
        let latency = whole
            .series(&FeatureRef::Latency, &seg)
            .unwrap()
            .numeric()
            .unwrap();
        assert_eq!(latency.state.count(), mine.len() as u64, "{seg}");
        let label = whole
            .series(&FeatureRef::Label, &seg)
            .unwrap()
            .numeric()
            .unwrap();
        assert_eq!(
            label.state.sum(),
            mine.iter().filter(|i| *i % 2 == 1).count() as f64
        );
        let c = whole
            .series(&FeatureRef::Named("c".into()), &seg)
            .unwrap()
            .categorical()
            .unwrap();
        let counts = c.exact_counts().unwrap();
        for k in 0..3 {
            let want = mine.iter().filter(|i| *i % 3 == k).count() as u64;
            assert_eq!(
                counts.get(&format!("k{k}")).copied(),
                Some(want),
                "{seg} k{k}"
            );
        }
        let perf = prof.performance.binary.as_ref().unwrap();
        assert_eq!(perf.n, mine.len() as u64, "{seg}");
    }
}

fn region(v: &str) -> Segment {
    Segment::Value {
        key: "region".into(),
        value: v.into(),
    }
}

#[test]
fn ranking_reference_profiles_served_items_and_round_trips() {
    use driftdb_engine::ingest::RankedItem;
    let m: ModelDef = serde_json::from_str(
        r#"{"id":"recs","task":"ranking","window":"15m","segments":["region"],"features":{"x":"numeric"}}"#,
    )
    .unwrap();
    let mut rows = Vec::new();
    let mut x = Vec::new();
    for i in 0..40usize {
        // 12 items per list from a catalog of 30; only the first 10 are sketched.
        let items = (0..12)
            .map(|j| RankedItem {
                id: format!("item{}", (i + j) % 30),
                score: 1.0 / (j + 1) as f64,
            })
            .collect();
        rows.push(InferenceRow {
            request_id: format!("r{i}"),
            version: "v1".into(),
            segments: vec![Some(if i < 10 { "eu" } else { "us" }.into())],
            items,
            ..Default::default()
        });
        x.push(FieldValue::Number(i as f64));
    }
    // One row with no served list: it counts as a row but not for $items.
    rows.push(InferenceRow {
        request_id: "empty".into(),
        version: "v1".into(),
        segments: vec![Some("eu".into())],
        ..Default::default()
    });
    x.push(FieldValue::Missing);
    let b = InferenceBatch {
        model_id: "recs".into(),
        feature_names: vec!["x".into()],
        segment_keys: vec!["region".into()],
        rows,
        columns: vec![Column::Values(x)],
        attributions: Vec::new(),
    };
    let mut builder = ReferenceBuilder::new(&m, "v1").unwrap();
    assert!(builder.add(&b, &[]).unwrap().is_empty());
    let p = builder.finish(Timestamp(7)).unwrap();
    assert_eq!(p.rows(), 41);
    let all = p
        .series(&FeatureRef::Items, &Segment::All)
        .unwrap()
        .categorical()
        .unwrap();
    assert_eq!(
        (all.count(), all.n_distinct(), all.unseen()),
        (400, 30.0, 0)
    );
    let eu = Segment::Value {
        key: "region".into(),
        value: "eu".into(),
    };
    // eu: rows 0..9 serve items 0..18.
    let eu_items = p
        .series(&FeatureRef::Items, &eu)
        .unwrap()
        .categorical()
        .unwrap();
    assert_eq!((eu_items.count(), eu_items.n_distinct()), (100, 19.0));
    assert_eq!(eu_items.exact_counts().unwrap()["item9"], 10);
    // Round trip keeps $items.
    let back = ReferenceProfile::decode(&p.encode()).unwrap();
    assert_eq!(back.encode(), p.encode());
    let back_items = back
        .series(&FeatureRef::Items, &eu)
        .unwrap()
        .categorical()
        .unwrap();
    assert_eq!(back_items.exact_counts(), eu_items.exact_counts());
    // As fold baselines: known and unknown item ids, per segment.
    let mut by_version = std::collections::BTreeMap::new();
    by_version.insert("v1".to_string(), back);
    assert_eq!(by_version.knows_item("v1", &eu, "item18"), Some(true));
    assert_eq!(by_version.knows_item("v1", &eu, "item25"), Some(false));
    assert_eq!(
        by_version.knows_item("v1", &Segment::All, "item25"),
        Some(true)
    );
    assert_eq!(by_version.knows_item("v2", &eu, "item1"), None);
    // A binary model's profile has no $items series.
    let (bb, labels) = batch(10);
    let mut binary = ReferenceBuilder::new(&model(), "v1").unwrap();
    binary.add(&bb, &labels).unwrap();
    let bp = binary.finish(Timestamp(0)).unwrap();
    assert!(bp.series(&FeatureRef::Items, &Segment::All).is_none());
}

/// A reference profile stored by the build before the offset sums (the server's record
/// fixture as it was then): it still decodes and re-encodes to the same bytes, its numeric
/// states have counts but no sums, and W1 against it falls back to the sketch CDFs' area while
/// windows folded now (with sums) still merge and compare with it.
#[test]
fn profiles_stored_without_offset_sums_still_work() {
    use driftdb_engine::codec::open;
    use driftdb_engine::sketch::NumericState;
    use driftdb_engine::stats::ks::{CdfSample, ks_and_wasserstein, wasserstein};
    let stored = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/reference_without_offset_sums.bin"
    ))
    .unwrap();
    let (_, payload) = open(&stored).unwrap();
    let p = ReferenceProfile::decode(payload).unwrap();
    assert_eq!(p.encode(), payload);
    let mut numeric = 0;
    for seg in p.segments.values() {
        for s in seg.series.values() {
            let Some(n) = s.numeric() else { continue };
            let (Some(bins), Some(edges)) = (n.state.bins(), n.edges.as_ref()) else {
                continue;
            };
            numeric += 1;
            assert!(bins.sums.is_none());
            // A window folded now, on the profile's edges.
            let e = &edges.q50;
            let (lo, hi) = (n.state.min().unwrap(), n.state.max().unwrap());
            let mut w = NumericState::new(Some(e));
            for i in 0..2_000 {
                w.observe(lo + (hi - lo) * f64::from(i % 997) / 997.0, Some(e));
            }
            assert!(w.bins().unwrap().sums.is_some());
            let (b, c) = (
                CdfSample::from_state_binned(&n.state, e).unwrap(),
                CdfSample::from_state_binned(&w, e).unwrap(),
            );
            let (_, w1) = ks_and_wasserstein(&b, &c).unwrap();
            assert_eq!(w1.value, wasserstein(b.cdf(), c.cdf()).unwrap());
            assert_eq!(
                w1.error_bound,
                b.wasserstein_error() + c.wasserstein_error()
            );
            let mut merged = n.state.clone();
            merged.merge(&w).unwrap();
            assert!(merged.bins().unwrap().sums.is_none());
            assert_eq!(merged.count(), n.state.count() + w.count());
        }
    }
    assert!(numeric > 0);
}
