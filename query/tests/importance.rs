//! Attributions and cost end to end: a reference profile and windows built with the engine's
//! builder and fold (attributions on a sample of rows, a cost on every row), written into a
//! real store and read back by `importance`, `importance_drift`, `cost_per_1k` and `explain`.
//!
//! Model `risk` (binary, segment `region`, numeric features a, b, c, d), 8 windows of 15
//! minutes from [`common::T0`]. Every value is N(0, 1) and the attribution of feature f is
//! `w_f · x_f` on every other row. The reference and windows 0–3 weigh a 0.5, b 0.2, c 0.01,
//! d 0.29; from window 4 importance moves from a to b (a 0.1, b 0.6), c's values drift by
//! +2σ (a large drift of a feature that hardly matters) and a's by +0.6σ (a smaller drift of
//! one that matters).

use crate::common;

use std::collections::BTreeMap;

use common::{Rng, T0, WINDOW_MS};
use driftdb_engine::ingest::{
    Column, InferenceBatch, InferenceRow, SegmentRegistry, TimeBounds, fold_batch, validate_batch,
};
use driftdb_engine::model::ModelDef;
use driftdb_engine::reference::{ReferenceBuilder, ReferenceProfile};
use driftdb_engine::time::Timestamp;
use driftdb_query::{Cell, Context, MemoryCatalog, Table};
use driftdb_storage::WriteSet;

const WINDOWS: usize = 8;
const ROWS: usize = 400;
const FEATURES: [&str; 4] = ["a", "b", "c", "d"];
const BEFORE: [f64; 4] = [0.5, 0.2, 0.01, 0.29];
const AFTER: [f64; 4] = [0.1, 0.6, 0.01, 0.29];

fn risk() -> ModelDef {
    serde_json::from_str(
        r#"{"id":"risk","task":"binary","window":"15m","segments":["region"],
            "features":{"a":"numeric","b":"numeric","c":"numeric","d":"numeric"}}"#,
    )
    .unwrap()
}

/// Sums of |attribution| and their counts per feature, and of cost, as the test generated them.
#[derive(Default, Clone)]
struct Truth {
    abs_sum: [f64; 4],
    explained: [u64; 4],
    cost_sum: f64,
    cost_n: u64,
}

impl Truth {
    fn shares(&self) -> [f64; 4] {
        let means: Vec<f64> = (0..4)
            .map(|f| self.abs_sum[f] / self.explained[f] as f64)
            .collect();
        let total: f64 = means.iter().sum();
        [0, 1, 2, 3].map(|f| means[f] / total)
    }
}

fn batch(
    model: &ModelDef,
    rng: &mut Rng,
    ids: std::ops::Range<usize>,
    ts: impl Fn(usize) -> Timestamp,
    drifted: bool,
    truth: &mut Truth,
) -> InferenceBatch {
    let weights = if drifted { AFTER } else { BEFORE };
    let shift = if drifted {
        [0.6, 0.0, 2.0, 0.0]
    } else {
        [0.0; 4]
    };
    let mut values: Vec<Vec<Option<f64>>> = vec![Vec::new(); 4];
    let mut attrs: Vec<Vec<f64>> = vec![Vec::new(); 4];
    let mut missing: Vec<Vec<bool>> = vec![Vec::new(); 4];
    let mut rows = Vec::new();
    for i in ids {
        let explained = i % 2 == 0;
        let cost = 0.002 + 0.001 * rng.f();
        truth.cost_sum += cost;
        truth.cost_n += 1;
        let x: Vec<f64> = (0..4).map(|f| rng.normal() + shift[f]).collect();
        for f in 0..4 {
            values[f].push(Some(x[f]));
            let attr = weights[f] * x[f];
            attrs[f].push(if explained { attr } else { 0.0 });
            missing[f].push(!explained);
            if explained {
                truth.abs_sum[f] += attr.abs();
                truth.explained[f] += 1;
            }
        }
        rows.push(InferenceRow {
            request_id: format!("r{i}"),
            ts: ts(i),
            version: "v1".into(),
            segments: vec![Some(if i % 3 == 0 { "us" } else { "eu" }.into())],
            score: Some(rng.f()),
            cost: Some(cost),
            ..Default::default()
        });
    }
    InferenceBatch {
        model_id: model.id.clone(),
        feature_names: FEATURES.map(String::from).to_vec(),
        segment_keys: vec!["region".into()],
        rows,
        columns: values.into_iter().map(Column::Numbers).collect(),
        attributions: FEATURES
            .iter()
            .zip(attrs.into_iter().zip(missing))
            .map(|(f, (values, missing))| (f.to_string(), Column::Dense { values, missing }))
            .collect(),
    }
}

struct Data {
    _dir: tempfile::TempDir,
    store: driftdb_storage::Store,
    catalog: MemoryCatalog,
    now: Timestamp,
    reference: Truth,
    /// Per hour (windows 0–3, 4–7).
    hours: [Truth; 2],
}

impl Data {
    fn ctx(&self) -> Context<'_> {
        Context {
            reader: &self.store,
            catalog: &self.catalog,
            now: self.now,
        }
    }

    fn run(&self, q: &str) -> (Table, Vec<String>) {
        let out = driftdb_query::run(&self.ctx(), q).unwrap_or_else(|e| panic!("{q}: {e}"));
        (out.table, out.warnings)
    }

    fn error(&self, q: &str) -> String {
        match driftdb_query::run(&self.ctx(), q) {
            Ok(_) => panic!("{q} should fail"),
            Err(e) => e.to_string(),
        }
    }
}

fn data() -> Data {
    let dir = tempfile::tempdir().unwrap();
    let t0 = Timestamp::parse_rfc3339(T0).unwrap();
    let now = Timestamp(t0.0 + WINDOWS as i64 * WINDOW_MS - 60_000);
    let store = common::open(dir.path(), now);
    let model = risk();
    let res = model.validate().unwrap();
    let mut catalog = MemoryCatalog::new();
    catalog.add_model(model.clone());
    let mut rng = Rng::new(23);
    let mut reference = Truth::default();
    let t_ref = Timestamp::parse_rfc3339("2026-02-01T00:00:00Z").unwrap();
    let rb_batch = batch(&model, &mut rng, 0..4000, |_| t_ref, false, &mut reference);
    let mut rb = ReferenceBuilder::new(&model, "v1").unwrap();
    assert!(rb.add(&rb_batch, &[]).unwrap().is_empty());
    let profile: ReferenceProfile = rb.finish(t_ref).unwrap();
    let mut refs = BTreeMap::new();
    refs.insert("v1".to_string(), profile.clone());
    catalog.add_reference(profile);
    let mut segs = SegmentRegistry::new(16);
    let bounds = TimeBounds {
        oldest: Timestamp(0),
        newest: Timestamp(i64::MAX / 2),
    };
    let mut hours = [Truth::default(), Truth::default()];
    for w in 0..WINDOWS {
        let drifted = w >= 4;
        let start = t0.0 + w as i64 * WINDOW_MS;
        let b = batch(
            &model,
            &mut rng,
            w * ROWS..(w + 1) * ROWS,
            |i| Timestamp(start + (i % ROWS) as i64 * 1000),
            drifted,
            &mut hours[w / 4],
        );
        let out = fold_batch(&model, res, &b, &refs, &mut segs, bounds, &|_, _| false);
        assert!(out.rejected.is_empty(), "{:?}", out.rejected);
        let mut ws = WriteSet::new();
        for (key, ts, state) in &out.deltas {
            ws.merge(key, res, *ts, state);
        }
        store.write(&ws).unwrap();
    }
    Data {
        _dir: dir,
        store,
        catalog,
        now,
        reference,
        hours,
    }
}

fn col(t: &Table, name: &str) -> usize {
    t.columns
        .iter()
        .position(|c| c == name)
        .unwrap_or_else(|| panic!("no column {name} in {:?}", t.columns))
}

fn num(c: &Cell) -> f64 {
    c.as_f64().unwrap_or_else(|| panic!("not a number: {c:?}"))
}

fn text(c: &Cell) -> String {
    match c {
        Cell::Text(s) => s.clone(),
        other => panic!("not text: {other:?}"),
    }
}

#[test]
fn importance_is_each_features_share_of_mean_absolute_attribution() {
    let d = data();
    let (t, warnings) = d.run("importance(risk.*) over 2h step 1h");
    assert!(warnings.is_empty(), "{warnings:?}");
    let (f, v, b, n) = (
        col(&t, "feature"),
        col(&t, "value"),
        col(&t, "baseline"),
        col(&t, "n"),
    );
    assert_eq!(t.rows.len(), 8, "{t:?}");
    let want_ref = d.reference.shares();
    for (hour, rows) in t.rows.chunks(4).enumerate() {
        let want = d.hours[hour].shares();
        let mut sum = 0.0;
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(text(&r[f]), FEATURES[i]);
            assert!((num(&r[v]) - want[i]).abs() < 1e-9, "hour {hour}: {r:?}");
            assert!((num(&r[b]) - want_ref[i]).abs() < 1e-9, "{r:?}");
            assert_eq!(num(&r[n]) as u64, d.hours[hour].explained[i]);
            sum += num(&r[v]);
        }
        assert!((sum - 1.0).abs() < 1e-12);
    }
    // Importance moved from a to b in the second hour.
    assert!(num(&t.rows[0][v]) > 0.4 && num(&t.rows[4][v]) < 0.15);
    assert!(num(&t.rows[5][v]) > 0.5);

    // The plan says what is read: every feature's attributions.
    let (t, _) = d.run("EXPLAIN importance(risk.b) over 1h");
    let plan: Vec<String> = t.rows.iter().map(|r| text(&r[0])).collect();
    assert!(
        plan.iter()
            .any(|l| l
                .contains("SeriesScanExec: model=risk version=v1 features=$attr:* (4 features)")),
        "{plan:?}"
    );

    // One feature, per segment: a share of the same vector.
    let (t, _) = d.run("importance(risk.b) over 1h by region");
    assert_eq!(t.rows.len(), 2);
    assert!(t.rows.iter().all(|r| num(&r[col(&t, "value")]) > 0.5));
}

#[test]
fn importance_drift_ranks_against_the_reference_and_names_what_moved() {
    let d = data();
    let (t, _) = d.run("importance_drift(risk) over 2h step 1h");
    let (v, moved) = (col(&t, "value"), col(&t, "moved"));
    assert_eq!(t.rows.len(), 2, "{t:?}");
    // Same ranking as the reference (a > d > b > c) in the first hour: ρ = 1.
    assert!((num(&t.rows[0][v]) - 1.0).abs() < 1e-12, "{t:?}");
    // b > d > a > c against a > d > b > c: Σd² = 8 over 4 features, ρ = 1 − 6·8/60 = 0.2.
    assert!((num(&t.rows[1][v]) - 0.2).abs() < 1e-12, "{t:?}");
    // a and b moved by about 0.4 each, in opposite directions; c and d hardly.
    let note = text(&t.rows[1][moved]);
    let mut first_two: Vec<&str> = note.split(", ").take(2).collect();
    first_two.sort_unstable();
    assert!(
        first_two[0].starts_with("a -0.") && first_two[1].starts_with("b +0."),
        "{note}"
    );
}

#[test]
fn explain_ranks_drift_by_impact() {
    let d = data();
    let (t, warnings) = d.run("explain(risk) over 1h");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("ranked by impact") && w.contains("from the reference")),
        "{warnings:?}"
    );
    let (sec, f, seg, v, score, finding) = (
        col(&t, "section"),
        col(&t, "feature"),
        col(&t, "segment"),
        col(&t, "value"),
        col(&t, "score"),
        col(&t, "finding"),
    );
    let drift: Vec<&Vec<Cell>> = t
        .rows
        .iter()
        .filter(|r| text(&r[sec]) == "drift" && text(&r[seg]) == "all")
        .collect();
    let row = |name: &str| {
        *drift
            .iter()
            .find(|r| text(&r[f]) == name)
            .unwrap_or_else(|| panic!("no drift row for {name}: {t:?}"))
    };
    let (a, c) = (row("a"), row("c"));
    // c drifted more than a ...
    assert!(num(&c[v]) > 2.0 * num(&a[v]), "{a:?} {c:?}");
    // ... but a matters 50 times more: a ranks first.
    assert_eq!(text(&drift[0][f]), "a", "{t:?}");
    assert!(num(&a[score]) > num(&c[score]));
    // Weights are the reference's shares times 4 features: about 2 and 0.04.
    let weight = |r: &Vec<Cell>| -> f64 {
        let s = text(&r[finding]);
        let w = s.rsplit("importance weight ").next().unwrap_or("");
        w.parse().unwrap_or_else(|_| panic!("{s}"))
    };
    assert!((weight(a) - 2.0).abs() < 0.1, "{a:?}");
    assert!((weight(c) - 0.04).abs() < 0.01, "{c:?}");
}

#[test]
fn cost_per_1k_is_a_thousand_times_the_mean_cost() {
    let d = data();
    let (t, _) = d.run("cost_per_1k(risk) over 2h step 1h");
    let (f, v, n) = (col(&t, "feature"), col(&t, "value"), col(&t, "n"));
    assert_eq!(t.rows.len(), 2);
    for (hour, r) in t.rows.iter().enumerate() {
        let h = &d.hours[hour];
        assert_eq!(text(&r[f]), "$cost");
        let want = 1000.0 * h.cost_sum / h.cost_n as f64;
        assert!((num(&r[v]) - want).abs() < 1e-9 * want, "{r:?} vs {want}");
        assert_eq!(num(&r[n]) as u64, h.cost_n);
    }
    // The same series under its own name.
    let (t, _) = d.run("mean(risk.$cost) over 2h");
    let all = d.hours[0].cost_sum + d.hours[1].cost_sum;
    let want = all / (d.hours[0].cost_n + d.hours[1].cost_n) as f64;
    assert!((num(&t.rows[0][col(&t, "value")]) - want).abs() < 1e-12);
}

#[test]
fn misuse_is_refused_with_the_reason() {
    let d = data();
    for (q, want) in [
        ("importance(risk.$score)", "write risk.* or risk.<feature>"),
        ("importance(risk)", "needs a feature"),
        ("importance_drift(risk.a)", "write importance_drift(risk)"),
        ("cost_per_1k(risk.a)", "write risk or risk.$cost"),
        ("auc(risk.$cost)", "labelled performance"),
        ("importance(risk.*, vs previous)", "drop `vs`"),
        ("chi2(risk.$cost)", "$cost is numeric"),
    ] {
        let e = d.error(q);
        assert!(e.contains(want), "{q}: {e}");
    }
}

#[test]
fn bad_attributions_and_costs_get_precise_errors() {
    let model = risk();
    let res = model.validate().unwrap();
    let mut rng = Rng::new(5);
    let t = Timestamp::parse_rfc3339(T0).unwrap();
    let mut b = batch(&model, &mut rng, 0..6, |_| t, false, &mut Truth::default());
    let Column::Dense { values, .. } = &mut b.attributions[0].1 else {
        panic!("dense");
    };
    values[0] = f64::NAN;
    values[2] = f64::INFINITY;
    b.rows[4].cost = Some(-1.0);
    let out = fold_batch(
        &model,
        res,
        &b,
        &driftdb_engine::ingest::NoBaselines,
        &mut SegmentRegistry::new(4),
        TimeBounds {
            oldest: Timestamp(0),
            newest: Timestamp(i64::MAX / 2),
        },
        &|_, _| false,
    );
    let reasons: Vec<(usize, &str)> = out
        .rejected
        .iter()
        .map(|r| (r.row, r.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (0, "attribution of feature a: NaN is not a finite number"),
            (2, "attribution of feature a: inf is not a finite number"),
            (4, "cost -1 is not a finite number >= 0"),
        ]
    );
    assert_eq!(out.accepted, 3);

    let mut unknown = b.clone();
    unknown.attributions[1].0 = "zeta".into();
    assert_eq!(
        validate_batch(&model, &unknown).unwrap_err(),
        "attributions for unknown feature \"zeta\" of model \"risk\""
    );
    let mut twice = b.clone();
    twice.attributions[1].0 = "a".into();
    assert_eq!(
        validate_batch(&model, &twice).unwrap_err(),
        "attributions of feature \"a\" named twice"
    );
}
