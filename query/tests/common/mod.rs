//! Test data for the query tests: a deterministic generator that writes a model's reference
//! profiles and windows into a real RocksDB store through the engine's ingest fold and label
//! join, the same path the server takes.

use std::path::Path;
use std::sync::Arc;

use driftdb_engine::ingest::{
    Column, FieldValue, InferenceBatch, InferenceRow, LabelRow, SegmentRegistry, TimeBounds,
    fold_batch, join_delta,
};
use driftdb_engine::model::ModelDef;
use driftdb_engine::reference::{ReferenceBuilder, ReferenceProfile};
use driftdb_engine::series::{FeatureRef, SeriesKey};
use driftdb_engine::sketch::{NumericState, ScoreState, SeriesState};
use driftdb_engine::time::{ManualClock, Timestamp};
use driftdb_query::{Context, MemoryCatalog};
use driftdb_storage::{Store, StoreConfig, WriteSet};

/// SplitMix64: small, deterministic, good enough for test data.
pub struct Rng(driftdb_engine::rng::SplitMix);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(driftdb_engine::rng::SplitMix(seed))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// Uniform in [0, 1).
    pub fn f(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.f().max(1e-300);
        let v = self.f();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
    pub fn pick<'a>(&mut self, items: &[(&'a str, f64)]) -> &'a str {
        let mut x = self.f() * items.iter().map(|i| i.1).sum::<f64>();
        for (name, w) in items {
            if x < *w {
                return name;
            }
            x -= w;
        }
        items[items.len() - 1].0
    }
}

pub const T0: &str = "2026-03-01T00:00:00Z";
pub const WINDOW_MS: i64 = 900_000;

pub fn shop_model() -> ModelDef {
    serde_json::from_str(
        r#"{"id":"shop","task":"binary","window":"15m","segments":["region","device"],
            "features":{"amount":"numeric","tenure":"numeric","country":"categorical","plan":"categorical"}}"#,
    )
    .unwrap()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// One generated row: what the model saw, said, and what happened.
pub struct GenRow {
    pub region: &'static str,
    pub device: &'static str,
    pub amount: Option<f64>,
    pub tenure: Option<f64>,
    pub country: &'static str,
    pub plan: &'static str,
    pub score: f64,
    pub label: bool,
}

/// `drift` = false: the reference distribution. From window 4 on (`drift` = true): amounts
/// 1.6× larger (and the truth moves with them), a new country `br` (10 %), tenure missing 30 % of the time, and on iOS the
/// labels no longer follow the score (calibration breaks there). `better` models (v2) score
/// with more signal.
pub fn gen_row(rng: &mut Rng, drift: bool, better: bool) -> GenRow {
    let region = if rng.f() < 0.6 { "eu" } else { "us" };
    let device = if rng.f() < 0.5 { "ios" } else { "android" };
    let mut amount = (3.0 + 0.5 * rng.normal()).exp();
    if drift {
        amount *= 1.6;
    }
    let tenure = (rng.f() * 100.0).floor();
    let tenure = if drift && rng.f() < 0.3 {
        None
    } else {
        Some(tenure)
    };
    let country = if drift && rng.f() < 0.1 {
        "br"
    } else {
        rng.pick(&[("de", 0.4), ("fr", 0.3), ("us", 0.3)])
    };
    let plan = rng.pick(&[("free", 0.7), ("pro", 0.3)]);
    // The truth follows amount and plan; the model keeps up with the amount shift, so only
    // the ios labels (which stop following the score) break calibration.
    let signal = 0.08 * (amount - 20.0) + if plan == "pro" { 0.8 } else { -0.3 };
    let p_true = sigmoid(signal);
    let noise = if better { 0.3 } else { 1.2 };
    let mut score = sigmoid(signal + noise * rng.normal());
    score = (score * 1e4).round() / 1e4;
    let p_label = if drift && device == "ios" {
        (p_true * 0.3).min(1.0)
    } else {
        p_true
    };
    let label = rng.f() < p_label;
    GenRow {
        region,
        device,
        amount: Some((amount * 100.0).round() / 100.0),
        tenure,
        country,
        plan,
        score,
        label,
    }
}

pub fn batch(
    model: &ModelDef,
    version: &str,
    rows: &[(String, Timestamp, GenRow)],
) -> InferenceBatch {
    let mut b = InferenceBatch {
        model_id: model.id.clone(),
        feature_names: vec![
            "amount".into(),
            "tenure".into(),
            "country".into(),
            "plan".into(),
        ],
        segment_keys: vec!["region".into(), "device".into()],
        ..Default::default()
    };
    let mut amount = Vec::new();
    let mut tenure = Vec::new();
    let mut country = Vec::new();
    let mut plan = Vec::new();
    for (id, ts, r) in rows {
        b.rows.push(InferenceRow {
            request_id: id.clone(),
            ts: *ts,
            version: version.to_string(),
            segments: vec![Some(r.region.to_string()), Some(r.device.to_string())],
            score: Some(r.score),
            latency_ms: Some(5.0 + (r.score * 10.0).floor()),
            ..Default::default()
        });
        amount.push(r.amount);
        tenure.push(r.tenure);
        country.push(FieldValue::Category(r.country.to_string()));
        plan.push(FieldValue::Category(r.plan.to_string()));
    }
    b.columns = vec![
        Column::Numbers(amount),
        Column::Numbers(tenure),
        Column::Values(country),
        Column::Values(plan),
    ];
    b
}

pub fn reference(model: &ModelDef, version: &str, n: usize, seed: u64) -> ReferenceProfile {
    let mut rng = Rng::new(seed);
    let t = Timestamp::parse_rfc3339("2026-02-01T00:00:00Z").unwrap();
    let rows: Vec<(String, Timestamp, GenRow)> = (0..n)
        .map(|i| {
            (
                format!("ref{i}"),
                t,
                gen_row(&mut rng, false, version != "v1"),
            )
        })
        .collect();
    let labels: Vec<Option<f64>> = rows
        .iter()
        .map(|(_, _, r)| Some(if r.label { 1.0 } else { 0.0 }))
        .collect();
    let mut rb = ReferenceBuilder::new(model, version).unwrap();
    let rejected = rb.add(&batch(model, version, &rows), &labels).unwrap();
    assert!(rejected.is_empty(), "{rejected:?}");
    // Versions loaded in order: later versions get later creation times.
    let created = Timestamp(t.0 + if version == "v1" { 0 } else { 1000 });
    rb.finish(created).unwrap()
}

/// A store holding the `shop` model: references for v1 and v2 and `windows` 15-minute windows
/// of `rows_per_window` predictions per version from [`T0`], every prediction labelled.
pub struct Fixture {
    #[expect(dead_code, reason = "held so the directory lives as long as the store")]
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub catalog: MemoryCatalog,
    pub now: Timestamp,
}

impl Fixture {
    pub fn ctx(&self) -> Context<'_> {
        Context {
            reader: &self.store,
            catalog: &self.catalog,
            now: self.now,
        }
    }
}

pub fn shop_fixture(windows: usize, rows_per_window: usize) -> Fixture {
    shop_fixture_with(windows, rows_per_window, StoreConfig::default())
}

/// [`shop_fixture`] on a store opened with `config`.
pub fn shop_fixture_with(windows: usize, rows_per_window: usize, config: StoreConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let t0 = Timestamp::parse_rfc3339(T0).unwrap();
    // One minute before the end of the last window: `over 1h` covers the last 4 windows.
    let now = Timestamp(t0.0 + windows as i64 * WINDOW_MS - 60_000);
    let store = Store::open(dir.path(), config, Arc::new(ManualClock::new(now))).unwrap();
    let model = shop_model();
    let res = model.validate().unwrap();
    let mut catalog = MemoryCatalog::new();
    catalog.add_model(model.clone());
    let mut refs = std::collections::BTreeMap::new();
    for (v, seed) in [("v1", 11u64), ("v2", 12)] {
        let p = reference(&model, v, 4000, seed);
        refs.insert(v.to_string(), p.clone());
        catalog.add_reference(p);
    }
    let mut segs = SegmentRegistry::new(64);
    for (vi, v) in ["v1", "v2"].into_iter().enumerate() {
        let mut rng = Rng::new(100 + vi as u64);
        for w in 0..windows {
            let drift = w >= 4 && w % 96 >= 4;
            let rows: Vec<(String, Timestamp, GenRow)> = (0..rows_per_window)
                .map(|i| {
                    let ts = Timestamp(t0.0 + w as i64 * WINDOW_MS + (i as i64 * 997) % WINDOW_MS);
                    (
                        format!("{v}-{w}-{i}"),
                        ts,
                        gen_row(&mut rng, drift, v == "v2"),
                    )
                })
                .collect();
            let b = batch(&model, v, &rows);
            let bounds = TimeBounds {
                oldest: Timestamp(0),
                newest: Timestamp(i64::MAX / 2),
            };
            let out = fold_batch(&model, res, &b, &refs, &mut segs, bounds, &|_, _| false);
            assert!(out.rejected.is_empty(), "{:?}", out.rejected);
            let mut ws = WriteSet::new();
            for (key, ts, state) in &out.deltas {
                ws.merge(key, res, *ts, state);
            }
            let labels: std::collections::HashMap<&str, bool> = rows
                .iter()
                .map(|(id, _, r)| (id.as_str(), r.label))
                .collect();
            for (id, p) in &out.pending {
                let label = LabelRow {
                    request_id: id.clone(),
                    ts: now,
                    label: Some(if labels[id.as_str()] { 1.0 } else { 0.0 }),
                    ..Default::default()
                };
                let perf = join_delta(model.task, p, &label).unwrap();
                let score = SeriesState::Score(ScoreState {
                    performance: perf,
                    ..Default::default()
                });
                let mut l = NumericState::default();
                l.observe(label.label.unwrap(), None);
                let l = SeriesState::Numeric(l);
                for seg in p.segments.iter() {
                    let key = |feature| SeriesKey {
                        model: model.id.clone(),
                        version: p.version.clone(),
                        feature,
                        segment: seg.clone(),
                    };
                    ws.merge(&key(FeatureRef::Score), res, p.window, &score);
                    ws.merge(&key(FeatureRef::Label), res, p.window, &l);
                }
            }
            store.write(&ws).unwrap();
        }
    }
    // What the server's maintenance task does behind the write path: merge every window
    // that has ended into its day.
    store.roll_up(now).unwrap();
    Fixture {
        dir,
        store,
        catalog,
        now,
    }
}

pub fn open(dir: &Path, now: Timestamp) -> Store {
    Store::open(dir, StoreConfig::default(), Arc::new(ManualClock::new(now))).unwrap()
}
