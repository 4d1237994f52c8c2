//! The `$items` series of ranking models end to end: reference profiles and windows built with
//! the engine's builder and fold, written into a real store, read back by DriftQL selects and by
//! `explain`'s `topk_distinct_share` signal.
//!
//! Model `recs` (ranking, segment `region`), 8 windows of 15 minutes from [`common::T0`]. Both
//! versions' references served 400 lists of 10 from a catalogue of 200 items (each item 20
//! times: 4,000 slots). Version `v1` keeps serving 10 of the 200 items for the first 4 windows,
//! then every list collapses to the same 3 items; `v2` serves 10 of the 200 throughout, with
//! 3 times the reference's volume per hour.

use crate::common;

use std::collections::BTreeMap;

use common::{Rng, T0, WINDOW_MS};
use driftdb_engine::ingest::{
    Column, InferenceBatch, InferenceRow, RankedItem, SegmentRegistry, TimeBounds, fold_batch,
};
use driftdb_engine::model::ModelDef;
use driftdb_engine::reference::{ReferenceBuilder, ReferenceProfile};
use driftdb_engine::time::Timestamp;
use driftdb_query::explain::TOPK_COLLAPSE_RATIO;
use driftdb_query::{Cell, Context, MemoryCatalog, Table};
use driftdb_storage::WriteSet;

const CATALOGUE: usize = 200;
const WINDOWS: usize = 8;

fn recs() -> ModelDef {
    serde_json::from_str(
        r#"{"id":"recs","task":"ranking","window":"15m","segments":["region"],"features":{"slot":"numeric"}}"#,
    )
    .unwrap()
}

fn item(i: usize) -> String {
    format!("item{i}")
}

/// Ten distinct catalogue items from a random start (17 is coprime with 200).
fn diverse(rng: &mut Rng) -> Vec<String> {
    let start = (rng.next_u64() % CATALOGUE as u64) as usize;
    (0..10)
        .map(|j| item((start + 17 * j) % CATALOGUE))
        .collect()
}

fn batch(
    model: &ModelDef,
    version: &str,
    rows: Vec<(String, Timestamp, Vec<String>)>,
) -> InferenceBatch {
    let n = rows.len();
    InferenceBatch {
        model_id: model.id.clone(),
        feature_names: vec!["slot".into()],
        segment_keys: vec!["region".into()],
        rows: rows
            .into_iter()
            .enumerate()
            .map(|(i, (id, ts, items))| InferenceRow {
                request_id: id,
                ts,
                version: version.into(),
                segments: vec![Some(if i % 3 == 0 { "us" } else { "eu" }.into())],
                items: items
                    .into_iter()
                    .enumerate()
                    .map(|(rank, id)| RankedItem {
                        id,
                        score: 1.0 / (rank + 1) as f64,
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        columns: vec![Column::Numbers(vec![Some(1.0); n])],
        attributions: Vec::new(),
    }
}

/// 400 lists of 10: every catalogue item served exactly 20 times.
fn reference(model: &ModelDef, version: &str) -> ReferenceProfile {
    let t = Timestamp::parse_rfc3339("2026-02-01T00:00:00Z").unwrap();
    let rows = (0..400)
        .map(|i| {
            let items = (0..10).map(|j| item((i * 10 + j) % CATALOGUE)).collect();
            (format!("ref{i}"), t, items)
        })
        .collect();
    let mut rb = ReferenceBuilder::new(model, version).unwrap();
    assert!(
        rb.add(&batch(model, version, rows), &[])
            .unwrap()
            .is_empty()
    );
    rb.finish(Timestamp(t.0 + if version == "v1" { 0 } else { 1 }))
        .unwrap()
}

struct Data {
    _dir: tempfile::TempDir,
    store: driftdb_storage::Store,
    catalog: MemoryCatalog,
    now: Timestamp,
}

impl Data {
    fn ctx(&self) -> Context<'_> {
        Context {
            reader: &self.store,
            catalog: &self.catalog,
            now: self.now,
        }
    }

    fn run(&self, q: &str) -> Table {
        driftdb_query::run(&self.ctx(), q)
            .unwrap_or_else(|e| panic!("{q}: {e}"))
            .table
    }
}

fn data() -> Data {
    let dir = tempfile::tempdir().unwrap();
    let t0 = Timestamp::parse_rfc3339(T0).unwrap();
    // `over 1h` covers windows 4..8, `over 2h` all of them.
    let now = Timestamp(t0.0 + WINDOWS as i64 * WINDOW_MS - 60_000);
    let store = common::open(dir.path(), now);
    let model = recs();
    let res = model.validate().unwrap();
    let mut catalog = MemoryCatalog::new();
    catalog.add_model(model.clone());
    // A binary model with only a reference, for the planner's error on `$items`.
    let ctr: ModelDef = serde_json::from_str(
        r#"{"id":"ctr","task":"binary","window":"15m","features":{"pos":"numeric"}}"#,
    )
    .unwrap();
    catalog.add_model(ctr.clone());
    let mut rb = ReferenceBuilder::new(&ctr, "v1").unwrap();
    let ctr_rows = InferenceBatch {
        model_id: "ctr".into(),
        feature_names: vec!["pos".into()],
        rows: vec![InferenceRow {
            request_id: "c0".into(),
            version: "v1".into(),
            score: Some(0.5),
            ..Default::default()
        }],
        columns: vec![Column::Numbers(vec![Some(1.0)])],
        ..Default::default()
    };
    rb.add(&ctr_rows, &[]).unwrap();
    catalog.add_reference(rb.finish(Timestamp(0)).unwrap());
    let mut refs = BTreeMap::new();
    for v in ["v1", "v2"] {
        let p = reference(&model, v);
        refs.insert(v.to_string(), p.clone());
        catalog.add_reference(p);
    }
    let mut segs = SegmentRegistry::new(16);
    let bounds = TimeBounds {
        oldest: Timestamp(0),
        newest: Timestamp(i64::MAX / 2),
    };
    let mut rng = Rng::new(7);
    for w in 0..WINDOWS {
        for v in ["v1", "v2"] {
            let per_window = if v == "v1" { 50 } else { 300 };
            let rows = (0..per_window)
                .map(|i| {
                    let ts = Timestamp(t0.0 + w as i64 * WINDOW_MS + i as i64 * 1000);
                    let items = if v == "v1" && w >= 4 {
                        (0..3).map(item).collect()
                    } else {
                        diverse(&mut rng)
                    };
                    (format!("{v}-{w}-{i}"), ts, items)
                })
                .collect();
            let b = batch(&model, v, rows);
            let out = fold_batch(&model, res, &b, &refs, &mut segs, bounds, &|_, _| false);
            assert!(out.rejected.is_empty(), "{:?}", out.rejected);
            let mut ws = WriteSet::new();
            for (key, ts, state) in &out.deltas {
                ws.merge(key, res, *ts, state);
            }
            store.write(&ws).unwrap();
        }
    }
    Data {
        _dir: dir,
        store,
        catalog,
        now,
    }
}

/// The `topk_distinct_share` row of an explain table.
fn topk_row(t: &Table) -> Vec<Cell> {
    let metric = t.column("metric").unwrap();
    let rows: Vec<&Vec<Cell>> = t
        .rows
        .iter()
        .filter(|r| r[metric].as_str() == Some("topk_distinct_share"))
        .collect();
    assert_eq!(rows.len(), 1, "{t:?}");
    rows[0].clone()
}

fn cell(t: &Table, row: &[Cell], col: &str) -> Cell {
    row[t.column(col).unwrap()].clone()
}

#[test]
fn explain_flags_served_items_collapsing_to_three() {
    let d = data();
    let t = d.run("explain(recs@v1) over 1h");
    let row = topk_row(&t);
    assert_eq!(cell(&t, &row, "section").as_str(), Some("signal"));
    assert_eq!(cell(&t, &row, "feature").as_str(), Some("$items"));
    assert_eq!(cell(&t, &row, "segment").as_str(), Some("all"));
    // 4 windows x 50 lists of 3 items: 600 slots, 60 impressions of 10, 3 distinct items.
    let value = cell(&t, &row, "value").as_f64().unwrap();
    assert!((value - 3.0 / 600.0).abs() < 1e-12, "{value}");
    assert_eq!(cell(&t, &row, "n").as_f64(), Some(60.0));
    // The reference, at 600 of its 4,000 slots, shows ~192 of its 200 items.
    let baseline = cell(&t, &row, "baseline").as_f64().unwrap();
    assert!(
        baseline > 180.0 / 600.0 && baseline < 200.0 / 600.0,
        "{baseline}"
    );
    let ratio = cell(&t, &row, "score").as_f64().unwrap();
    assert!(ratio < TOPK_COLLAPSE_RATIO && (ratio - value / baseline).abs() < 1e-12);
    let finding = cell(&t, &row, "finding");
    let finding = finding.as_str().unwrap();
    assert!(
        finding.starts_with("FLAG: collapse of distinct items in top-K"),
        "{finding}"
    );
    assert!(
        finding.contains("3 distinct items in 600 slots"),
        "{finding}"
    );

    // Over 2h the diverse first hour is included: 200 distinct items, no collapse.
    let t2 = d.run("explain(recs@v1) over 2h");
    let row2 = topk_row(&t2);
    assert_eq!(cell(&t2, &row2, "finding").as_str(), Some("stable"));
}

#[test]
fn explain_does_not_flag_steady_items_at_a_larger_volume() {
    let d = data();
    let t = d.run("explain(recs@v2) over 1h");
    let row = topk_row(&t);
    assert_eq!(cell(&t, &row, "finding").as_str(), Some("stable"), "{t:?}");
    // 1,200 lists of 10 over every catalogue item: 12,000 slots, 3x the reference's 4,000.
    let value = cell(&t, &row, "value").as_f64().unwrap();
    assert!((value - 200.0 / 12_000.0).abs() < 1e-12, "{value}");
    assert_eq!(cell(&t, &row, "n").as_f64(), Some(1200.0));
    // The reference is compared at the same number of slots: it cannot show more than its own
    // 200 items, so its share there is 200 / 12,000 and the ratio is 1. Its raw share,
    // 200 / 4,000 = 0.05, would have put the ratio at 1/3: a false collapse.
    let baseline = cell(&t, &row, "baseline").as_f64().unwrap();
    assert!((baseline - value).abs() < 1e-12, "{baseline}");
    assert!(value < TOPK_COLLAPSE_RATIO * 0.05);
    assert!((cell(&t, &row, "score").as_f64().unwrap() - 1.0).abs() < 1e-12);
}

#[test]
fn explain_without_served_items_says_so() {
    let d = data();
    // Before the first window: nothing stored in range.
    let t = d.run("explain(recs@v1) from 2026-02-28T00:00:00Z to 2026-02-28T01:00:00Z");
    let row = topk_row(&t);
    assert_eq!(
        cell(&t, &row, "finding").as_str(),
        Some("no served items in range")
    );
    assert_eq!(cell(&t, &row, "value"), Cell::Null);
}

#[test]
fn items_are_selectable_in_driftql() {
    let d = data();
    let one = |q: &str| -> f64 {
        let t = d.run(q);
        assert_eq!(t.rows.len(), 1, "{q}: {t:?}");
        let v = t.column("value").unwrap();
        t.rows[0][v]
            .as_f64()
            .unwrap_or_else(|| panic!("{q}: {t:?}"))
    };
    assert_eq!(one("distinct(recs@v1.$items) over 1h"), 3.0);
    assert_eq!(one("count(recs@v1.$items) over 1h"), 600.0);
    assert_eq!(one("distinct(recs@v1.$ITEMS) over 2h"), 200.0);
    assert_eq!(one("distinct(recs@v2.$items) over 1h"), 200.0);
    assert_eq!(one("count(recs@v2.$items) over 15m"), 3000.0);
    // Served items all come from the reference catalogue: nothing unseen.
    assert_eq!(one("unseen_share(recs@v2.$items) over 1h"), 0.0);
    // Three items instead of 200 is a large shift; steady serving is not.
    assert!(one("psi(recs@v1.$items) over 1h") > 1.0);
    assert!(one("psi(recs@v2.$items) over 1h") < 0.05);
    // Per segment: every third list is served in `us`.
    let t = d.run("count(recs@v1.$items) over 1h by region");
    assert_eq!(t.rows.len(), 2, "{t:?}");
    let v = t.column("value").unwrap();
    let total: f64 = t.rows.iter().map(|r| r[v].as_f64().unwrap()).sum();
    assert_eq!(total, 600.0);
    // Steps: one row per window.
    let t = d.run("distinct(recs@v1.$items) over 2h step 15m");
    let got: Vec<f64> = t
        .rows
        .iter()
        .map(|r| r[v_col(&t)].as_f64().unwrap())
        .collect();
    assert_eq!(got.len(), 8);
    assert!(got[..4].iter().all(|d| *d > 100.0) && got[4..].iter().all(|d| *d == 3.0));
}

fn v_col(t: &Table) -> usize {
    t.column("value").unwrap()
}

#[test]
fn items_planning_errors() {
    let d = data();
    let err = |q: &str| driftdb_query::run(&d.ctx(), q).unwrap_err().to_string();
    let e = err("distinct(ctr.$items) over 1h");
    assert!(e.contains("not a ranking model"), "{e}");
    let e = err("mean(recs.$items) over 1h");
    assert!(e.contains("$items is categorical"), "{e}");
    let e = err("auc(recs.$items) over 1h");
    assert!(e.contains("$score"), "{e}");
}
