//! Folding inference batches into deltas, and the label join's performance deltas.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on broken fixtures"
)]

use driftdb_engine::ingest::*;
use driftdb_engine::model::{ModelDef, Task};
use driftdb_engine::series::{FeatureRef, Segment};
use driftdb_engine::sketch::SeriesState;
use driftdb_engine::sketch::performance::PerformanceState;
use driftdb_engine::time::{Resolution, Timestamp};

fn model() -> ModelDef {
    serde_json::from_str(
        r#"{"id":"m1","task":"binary","window":"15m","segments":["region","device"],"segment_cap":1,
            "features":{"amount":"numeric","country":"categorical","is_new":"categorical"}}"#,
    )
    .unwrap()
}

fn t(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap()
}

fn row(
    id: &str,
    ts: &str,
    region: &str,
    amount: FieldValue,
    country: FieldValue,
) -> (InferenceRow, [FieldValue; 3]) {
    let meta = InferenceRow {
        request_id: id.into(),
        ts: t(ts),
        version: "v1".into(),
        segments: vec![Some(region.into()), None],
        score: Some(0.25),
        latency_ms: Some(12.0),
        ..Default::default()
    };
    (meta, [amount, country, FieldValue::Bool(true)])
}

fn batch(rows: Vec<(InferenceRow, [FieldValue; 3])>) -> InferenceBatch {
    let mut cols = vec![Vec::new(), Vec::new(), Vec::new()];
    let mut metas = Vec::new();
    for (m, vals) in rows {
        metas.push(m);
        for (c, v) in cols.iter_mut().zip(vals) {
            c.push(v);
        }
    }
    InferenceBatch {
        model_id: "m1".into(),
        feature_names: vec!["amount".into(), "country".into(), "is_new".into()],
        segment_keys: vec!["region".into(), "device".into()],
        rows: metas,
        columns: cols.into_iter().map(Column::Values).collect(),
        attributions: Vec::new(),
    }
}

#[test]
fn fold_places_rows_by_event_time_and_caps_segments() {
    let m = model();
    let batch = batch(vec![
        row(
            "r1",
            "2026-03-01T00:00:01Z",
            "eu",
            FieldValue::Number(10.0),
            FieldValue::Category("DE".into()),
        ),
        row(
            "r2",
            "2026-03-01T00:14:59.999Z",
            "us",
            FieldValue::Number(f64::NAN),
            FieldValue::Missing,
        ),
        row(
            "r3",
            "2026-03-01T00:15:00Z",
            "eu",
            FieldValue::Missing,
            FieldValue::Category("FR".into()),
        ),
        row(
            "bad-type",
            "2026-03-01T00:15:00Z",
            "eu",
            FieldValue::Category("x".into()),
            FieldValue::Missing,
        ),
        row(
            "too-old",
            "2025-01-01T00:00:00Z",
            "eu",
            FieldValue::Number(1.0),
            FieldValue::Missing,
        ),
        row(
            "future",
            "2027-01-01T00:00:00Z",
            "eu",
            FieldValue::Number(1.0),
            FieldValue::Missing,
        ),
        row(
            "dup",
            "2026-03-01T00:00:01Z",
            "eu",
            FieldValue::Number(1.0),
            FieldValue::Missing,
        ),
    ]);
    assert_eq!(validate_batch(&m, &batch), Ok(()));
    let mut reg = SegmentRegistry::new(1);
    let bounds = TimeBounds {
        oldest: t("2026-01-01T00:00:00Z"),
        newest: t("2026-03-02T00:00:00Z"),
    };
    let out = fold_batch(
        &m,
        Resolution::M15,
        &batch,
        &NoBaselines,
        &mut reg,
        bounds,
        &|_, r| r.request_id == "dup",
    );
    assert_eq!(out.accepted, 3);
    let reasons: Vec<_> = out
        .rejected
        .iter()
        .map(|r| (r.request_id.as_str(), r.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons[0].1.contains("expected a number"));
    assert!(reasons[1].1.contains("older than the retention"));
    assert!(reasons[2].1.contains("future"));
    assert_eq!(out.invalid_values, 1);
    // Segment cap 1: "eu" admitted first, "us" folds into __other__.
    let amount = |w: &str, seg: Segment| -> Option<(u64, u64, u64)> {
        out.deltas.iter().find_map(|(k, ts, s)| match s {
            SeriesState::Numeric(n)
                if k.feature == FeatureRef::Named("amount".into())
                    && k.segment == seg
                    && *ts == t(w) =>
            {
                Some((n.count(), n.missing(), n.invalid()))
            }
            _ => None,
        })
    };
    let other = Segment::Value {
        key: "region".into(),
        value: "__other__".into(),
    };
    let eu = Segment::Value {
        key: "region".into(),
        value: "eu".into(),
    };
    assert_eq!(
        amount("2026-03-01T00:00:00Z", Segment::All),
        Some((1, 0, 1))
    );
    assert_eq!(amount("2026-03-01T00:00:00Z", other), Some((0, 0, 1)));
    assert_eq!(amount("2026-03-01T00:15:00Z", eu), Some((0, 1, 0)));
    // Booleans are categories "true"/"false"; $score counts predictions; $latency folds.
    let is_new = out.deltas.iter().find_map(|(k, _, s)| match s {
        SeriesState::Categorical(c)
            if k.feature == FeatureRef::Named("is_new".into()) && k.segment == Segment::All =>
        {
            Some(c.counts())
        }
        _ => None,
    });
    assert_eq!(is_new.unwrap().get("true"), Some(&2));
    let preds: u64 = out
        .deltas
        .iter()
        .filter_map(|(k, _, s)| match s {
            SeriesState::Score(sc) if k.segment == Segment::All => Some(sc.predictions),
            _ => None,
        })
        .sum();
    assert_eq!(preds, 3);
    assert_eq!(out.pending.len(), 3);
    assert_eq!(
        out.pending[0].1.segments.len(),
        2,
        "all + region (device absent)"
    );
}

#[test]
fn batch_schema_is_checked() {
    let m = model();
    let mut b = InferenceBatch {
        model_id: "m1".into(),
        feature_names: vec!["nope".into()],
        ..Default::default()
    };
    assert!(
        validate_batch(&m, &b)
            .unwrap_err()
            .contains("unknown feature")
    );
    b.feature_names = vec!["amount".into(), "amount".into()];
    assert!(validate_batch(&m, &b).unwrap_err().contains("twice"));
    b.feature_names = vec!["amount".into()];
    assert!(validate_batch(&m, &b).unwrap_err().contains("columns"));
    b.columns = vec![Column::Numbers(vec![])];
    b.segment_keys = vec!["planet".into()];
    assert!(validate_batch(&m, &b).unwrap_err().contains("segment key"));
}

#[test]
fn sampling_is_deterministic_and_close_to_the_rate() {
    let kept = (0..20_000)
        .filter(|i| sampled_in(&format!("req-{i}"), 0.25))
        .count();
    assert!((4_500..5_500).contains(&kept), "kept {kept}");
    assert_eq!(sampled_in("req-7", 0.25), sampled_in("req-7", 0.25));
    assert!(sampled_in("anything", 1.0));
}

#[test]
fn ranking_join_matches_the_worked_case() {
    let g: serde_json::Value = serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/data/golden/expected.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let r = &g["worked_cases"]["ranking"];
    let mut perf = PerformanceState::default();
    for inf in r["inferences"].as_array().unwrap() {
        let id = inf["request_id"].as_str().unwrap();
        let Some(label) = r["labels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["request_id"] == id)
        else {
            continue;
        };
        let p = PendingPrediction {
            version: "v1".into(),
            window: Timestamp(0),
            segments: vec![Segment::All].into(),
            score: None,
            items: inf["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_string())
                .collect(),
        };
        let o = &label["outcomes"];
        let lr = LabelRow {
            request_id: id.into(),
            click: o["click"].as_f64(),
            purchase: o["purchase"].as_f64(),
            revenue: o["revenue"].as_f64(),
            relevance: o["relevance"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
                        .collect()
                })
                .unwrap_or_default(),
            ..Default::default()
        };
        perf.merge(&join_delta(Task::Ranking, &p, &lr).unwrap());
    }
    let k = perf.ranking.unwrap();
    assert_eq!(k.impressions, r["impressions"].as_u64().unwrap());
    let rel = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs().max(1e-300);
    assert!(rel(
        k.ndcg_sum[2] / k.impressions as f64,
        r["ndcg_at_3"].as_f64().unwrap()
    ));
    assert!(rel(
        k.ndcg_sum[4] / k.impressions as f64,
        r["ndcg_at_5"].as_f64().unwrap()
    ));
    assert!(rel(
        k.clicks / k.impressions as f64,
        r["ctr"].as_f64().unwrap()
    ));
    assert!(rel(
        1000.0 * k.revenue / k.impressions as f64,
        r["rpm"].as_f64().unwrap()
    ));
}

#[test]
fn binary_join_rejects_bad_labels() {
    let p = PendingPrediction {
        version: "v1".into(),
        window: Timestamp(0),
        segments: vec![Segment::All].into(),
        score: Some(0.7),
        items: vec![],
    };
    let lr = |y: f64| LabelRow {
        request_id: "r".into(),
        label: Some(y),
        ..Default::default()
    };
    assert!(join_delta(Task::Binary, &p, &lr(2.0)).is_err());
    let d = join_delta(Task::Binary, &p, &lr(1.0)).unwrap();
    assert_eq!(d.binary.unwrap().confusion, [1, 0, 0, 0]);
}

fn ranked(ids: &[&str]) -> Vec<RankedItem> {
    ids.iter()
        .enumerate()
        .map(|(i, id)| RankedItem {
            id: (*id).to_string(),
            score: 1.0 - i as f64 / 100.0,
        })
        .collect()
}

#[test]
fn ranking_rows_fold_their_top_k_item_ids_per_segment() {
    use driftdb_engine::reference::ReferenceBuilder;
    use driftdb_engine::series::TOP_K_ITEMS;
    use std::collections::BTreeMap;

    let m: ModelDef = serde_json::from_str(
        r#"{"id":"recs","task":"ranking","window":"15m","segments":["region"],"features":{"slot":"numeric"}}"#,
    )
    .unwrap();
    let res = m.validate().unwrap();
    // Twelve items served: only the first TOP_K_ITEMS count.
    let long: Vec<String> = (0..12).map(|i| format!("i{i}")).collect();
    let long: Vec<&str> = long.iter().map(String::as_str).collect();
    let row = |id: &str, ts: &str, region: &str, items: &[&str]| InferenceRow {
        request_id: id.into(),
        ts: t(ts),
        version: "v1".into(),
        segments: vec![Some(region.into())],
        items: ranked(items),
        ..Default::default()
    };
    let batch = InferenceBatch {
        model_id: "recs".into(),
        segment_keys: vec!["region".into()],
        rows: vec![
            row("a", "2026-03-01T00:01:00Z", "eu", &long),
            row("b", "2026-03-01T00:02:00Z", "us", &["i0", "x"]),
            row("c", "2026-03-01T00:03:00Z", "eu", &[]),
            row("d", "2026-03-01T00:16:00Z", "eu", &["i0"]),
        ],
        ..Default::default()
    };
    // The reference knows i0..i9 (overall) and only i0 in eu.
    let mut rb = ReferenceBuilder::new(&m, "v1").unwrap();
    let ref_rows = InferenceBatch {
        model_id: "recs".into(),
        segment_keys: vec!["region".into()],
        rows: vec![
            row("r1", "2026-02-01T00:00:00Z", "us", &long[1..]),
            row("r2", "2026-02-01T00:00:00Z", "eu", &["i0"]),
        ],
        ..Default::default()
    };
    assert!(rb.add(&ref_rows, &[None, None]).unwrap().is_empty());
    let mut refs = BTreeMap::new();
    refs.insert("v1".to_string(), rb.finish(Timestamp(0)).unwrap());
    let bounds = TimeBounds {
        oldest: Timestamp(0),
        newest: Timestamp(i64::MAX / 2),
    };
    let mut segs = SegmentRegistry::new(10);
    let out = fold_batch(&m, res, &batch, &refs, &mut segs, bounds, &|_, _| false);
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    assert_eq!(out.accepted, 4);
    let items = |seg: &Segment, w: &str| {
        let found: Vec<_> = out
            .deltas
            .iter()
            .filter(|(k, ts, _)| k.feature == FeatureRef::Items && &k.segment == seg && *ts == t(w))
            .collect();
        assert!(found.len() <= 1);
        found.first().map(|(_, _, s)| match s {
            SeriesState::Categorical(c) => c.clone(),
            other => panic!("$items is categorical, got {}", other.kind_name()),
        })
    };
    let region = |v: &str| Segment::Value {
        key: "region".into(),
        value: v.into(),
    };
    let w0 = "2026-03-01T00:00:00Z";
    let w1 = "2026-03-01T00:15:00Z";
    // Window 0, overall: rows a (10 of 12 items) and b (2 items); c served nothing.
    let all0 = items(&Segment::All, w0).unwrap();
    assert_eq!(all0.count(), TOP_K_ITEMS as u64 + 2);
    assert_eq!(all0.n_distinct(), 11.0);
    let c = all0.exact_counts().unwrap();
    assert_eq!((c["i0"], c["i9"], c["x"]), (2, 1, 1));
    assert!(!c.contains_key("i10") && !c.contains_key("i11"));
    // The overall reference served i1..i10 (r1, first ten of its 11) and i0 (r2): x is new.
    assert_eq!(all0.unseen(), 1);
    // Window 0, eu: row a only; its reference knows only i0.
    let eu0 = items(&region("eu"), w0).unwrap();
    assert_eq!((eu0.count(), eu0.unseen()), (10, 9));
    // Window 0, us: row b; the us reference served i1..i10, so both i0 and x are unseen.
    let us0 = items(&region("us"), w0).unwrap();
    assert_eq!((us0.count(), us0.unseen()), (2, 2));
    // Window 1: row d in all and eu, nothing for us.
    let all1 = items(&Segment::All, w1).unwrap();
    assert_eq!((all1.count(), all1.unseen()), (1, 0));
    assert_eq!(items(&region("eu"), w1).unwrap().count(), 1);
    assert!(items(&region("us"), w1).is_none());
    // Rows with an empty list count for $score but not for $items.
    let score_all0 = out
        .deltas
        .iter()
        .find(|(k, ts, _)| {
            k.feature == FeatureRef::Score && k.segment == Segment::All && *ts == t(w0)
        })
        .unwrap();
    match &score_all0.2 {
        SeriesState::Score(s) => assert_eq!(s.predictions, 3),
        other => panic!("{}", other.kind_name()),
    }
}

#[test]
fn non_ranking_models_have_no_items_series() {
    let m = model();
    let mut b = batch(vec![row(
        "r1",
        "2026-03-01T00:00:01Z",
        "eu",
        FieldValue::Number(1.0),
        FieldValue::Category("DE".into()),
    )]);
    b.rows[0].items = ranked(&["a", "b"]);
    let res = m.validate().unwrap();
    let bounds = TimeBounds {
        oldest: Timestamp(0),
        newest: Timestamp(i64::MAX / 2),
    };
    let mut segs = SegmentRegistry::new(10);
    let out = fold_batch(&m, res, &b, &NoBaselines, &mut segs, bounds, &|_, _| false);
    assert_eq!(out.accepted, 1);
    assert!(
        out.deltas
            .iter()
            .all(|(k, _, _)| k.feature != FeatureRef::Items)
    );
}

#[test]
fn items_feature_spelling_round_trips() {
    assert_eq!(FeatureRef::parse("$items"), FeatureRef::Items);
    assert_eq!(FeatureRef::Items.to_string(), "$items");
    assert!(FeatureRef::Latency < FeatureRef::Items);
}

/// The row pass looks at a column only when one of its values could fail: a dense numeric
/// column and a dictionary of short categories pass untouched, while an over-long dictionary
/// value rejects exactly the rows that use it. A version is checked once, and a bad one
/// rejects its rows even after a good one was seen.
#[test]
fn row_checks_reject_exactly_the_bad_rows_whatever_the_column_layout() {
    let m = model();
    let long = "x".repeat(driftdb_engine::model::MAX_CATEGORY_LEN + 1);
    let versions = ["v1", "v1", "$bad", "v1", "v2", "v2"];
    // Row 1 uses the over-long category; row 2 has a bad version; the rest are fine.
    let codes = vec![0u32, 1, 0, 2, 0, 2];
    let rows: Vec<InferenceRow> = versions
        .iter()
        .enumerate()
        .map(|(i, v)| InferenceRow {
            request_id: format!("r{i}"),
            ts: t("2026-01-01T00:00:00Z"),
            version: (*v).into(),
            segments: vec![Some("eu".into()), None],
            score: Some(0.5),
            ..Default::default()
        })
        .collect();
    let dense = Column::Dense {
        values: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        missing: vec![false, false, false, true, false, false],
    };
    let country =
        Column::coded(vec!["de".into(), long.clone(), "fr".into()], codes, vec![]).unwrap();
    let is_new = Column::coded(vec!["true".into()], vec![0; 6], vec![]).unwrap();
    let b = InferenceBatch {
        model_id: "m1".into(),
        feature_names: vec!["amount".into(), "country".into(), "is_new".into()],
        segment_keys: vec!["region".into(), "device".into()],
        rows,
        columns: vec![dense, country, is_new],
        attributions: Vec::new(),
    };
    let bounds = TimeBounds {
        oldest: Timestamp(i64::MIN),
        newest: Timestamp(i64::MAX),
    };
    // Each fold with a fresh segment registry.
    let fold = |b: &InferenceBatch| {
        let mut segs = SegmentRegistry::new(10);
        fold_batch(
            &m,
            Resolution::M15,
            b,
            &NoBaselines,
            &mut segs,
            bounds,
            &|_, _| false,
        )
    };
    let out = fold(&b);
    let rejected: Vec<(usize, bool)> = out
        .rejected
        .iter()
        .map(|r| (r.row, r.reason.contains("category value")))
        .collect();
    assert_eq!(rejected, vec![(1, true), (2, false)], "{:?}", out.rejected);
    assert!(out.rejected[1].reason.contains("model_version"));
    assert_eq!(out.accepted, 4);
    let ids: Vec<&str> = out.pending.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["r0", "r3", "r4", "r5"]);
    // The long value is in the dictionary but no row uses it: nothing is rejected.
    let mut b2 = b.clone();
    b2.columns[1] = Column::coded(
        vec!["de".into(), long, "fr".into()],
        vec![0, 2, 0, 2, 0, 2],
        vec![],
    )
    .unwrap();
    for r in &mut b2.rows {
        r.version = "v1".into();
    }
    let out = fold(&b2);
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    assert_eq!(out.accepted, 6);

    // Without pending records, the same deltas and counts, and no pending.
    let mut segs = SegmentRegistry::new(10);
    let mut plan = plan_batch(&m, Resolution::M15, &b, &mut segs, bounds, &|_, _| false);
    plan.without_pending();
    let bare = fold_planned(&m, &b, plan, &NoBaselines, 2);
    let full = fold(&b);
    assert!(bare.pending.is_empty());
    assert_eq!(full.pending.len(), 4);
    let keys = |o: &FoldOutput| {
        o.deltas
            .iter()
            .map(|(k, w, _)| (k.clone(), *w))
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&bare), keys(&full));
    assert_eq!((bare.accepted, bare.rejected.len()), (4, 2));
}
