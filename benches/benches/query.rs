//! DriftQL latency (BENCHMARKS.md), each against the bare cost of reading the same windows:
//! - one series over 90 days, step 1d (target ≤ 10 ms), 60 of those days downsampled to 1h;
//! - 500 features over 24 h, step 15m (target ≤ 300 ms);
//! - `explain` over 1 h of a 500-feature, 10-segment model (target ≤ 300 ms);
//! - a drift report for 12 features over 1 M stored rows, 24 h (target ≤ 10 ms; Evidently
//!   recomputes it from raw rows in ~12 s on this machine);
//! - the stored-data drift report (psi, ks, js over 10 features and the score, 1 M rows over
//!   4 days) over one whole day, three whole days and the last 24 h (target ≤ 10 ms each).
//!
//! "scan" rows read and decode every window the query reads, without merging or statistics.
#![expect(clippy::unwrap_used, reason = "benches")]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use driftdb_benches::Rng;
use driftdb_engine::model::ModelDef;
use driftdb_engine::reference::{NumericProfile, ReferenceProfile, SegmentProfile, SeriesProfile};
use driftdb_engine::series::{FeatureRef, Segment, SeriesKey};
use driftdb_engine::sketch::{NumericState, ScoreState, SeriesState};
use driftdb_engine::stats::quantile::ReferenceEdges;
use driftdb_engine::time::{ManualClock, Resolution, Timestamp};
use driftdb_query::{Context, MemoryCatalog};
use driftdb_storage::{SeriesPrefix, SeriesReader, Store, StoreConfig, WriteSet};

/// 2026-03-01T00:00:00Z.
const T_END: i64 = 1_772_323_200_000;
const M15: i64 = 900_000;

struct Data {
    _dir: tempfile::TempDir,
    store: Store,
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
}

fn model(id: &str, features: usize, segments: &[&str]) -> ModelDef {
    let feats: BTreeMap<String, &str> = (0..features)
        .map(|i| (format!("f{i:03}"), "numeric"))
        .collect();
    let json = serde_json::json!({
        "id": id, "task": "binary", "window": "15m",
        "segments": segments, "features": feats,
    });
    serde_json::from_value(json).unwrap()
}

/// A reference with `n` standard-normal-ish values per feature and segment (edges shared).
fn reference(
    def: &ModelDef,
    segs: &[Segment],
    rng: &mut Rng,
) -> (ReferenceProfile, ReferenceEdges) {
    let mut vals: Vec<f64> = (0..5_000).map(|_| 50.0 + 10.0 * rng.normal()).collect();
    vals.sort_by(f64::total_cmp);
    let edges = ReferenceEdges::from_sorted(&vals).unwrap();
    let mut state = NumericState::new(Some(&edges.q50));
    for v in &vals {
        state.observe(*v, Some(&edges.q50));
    }
    let np = NumericProfile {
        state,
        edges: Some(edges.clone()),
        quantiles: [0.0; 7],
    };
    let mut segments = BTreeMap::new();
    for s in segs {
        let mut sp = SegmentProfile {
            rows: 5_000,
            ..Default::default()
        };
        for f in def.features.keys() {
            sp.series.insert(
                FeatureRef::Named(f.clone()),
                SeriesProfile::Numeric(np.clone()),
            );
        }
        sp.series
            .insert(FeatureRef::Score, SeriesProfile::Numeric(np.clone()));
        segments.insert(s.clone(), sp);
    }
    (
        ReferenceProfile {
            model: def.id.clone(),
            version: "v1".into(),
            created_at: Timestamp(0),
            segments,
        },
        edges,
    )
}

/// Writes `windows` 15-minute windows ending at `T_END` for every feature × segment, each
/// with `values` values, then optionally downsamples what is older than 30 days.
fn build(def: ModelDef, segs: Vec<Segment>, windows: i64, values: usize, downsample: bool) -> Data {
    let dir = tempfile::tempdir().unwrap();
    let now = Timestamp(T_END - 60_000);
    let cfg = StoreConfig {
        sync_writes: false,
        ..StoreConfig::default()
    };
    let store = Store::open(dir.path(), cfg, Arc::new(ManualClock::new(now))).unwrap();
    let mut rng = Rng(42);
    let (profile, edges) = reference(&def, &segs, &mut rng);
    let res = Resolution::M15;
    let mut features: Vec<FeatureRef> = def
        .features
        .keys()
        .map(|f| FeatureRef::Named(f.clone()))
        .collect();
    features.push(FeatureRef::Score);
    let mut ws = WriteSet::new();
    for w in 0..windows {
        let start = Timestamp(T_END - (windows - w) * M15);
        let shift = if w >= windows - 4 { 3.0 } else { 0.0 };
        for seg in &segs {
            for f in &features {
                let mut st = NumericState::new(Some(&edges.q50));
                for _ in 0..values {
                    st.observe(50.0 + shift + 10.0 * rng.normal(), Some(&edges.q50));
                }
                let state = if *f == FeatureRef::Score {
                    SeriesState::Score(ScoreState {
                        predictions: values as u64,
                        distribution: st,
                        performance: Default::default(),
                    })
                } else {
                    SeriesState::Numeric(st)
                };
                let key = SeriesKey {
                    model: def.id.clone(),
                    version: "v1".into(),
                    feature: f.clone(),
                    segment: seg.clone(),
                };
                ws.merge(&key, res, start, &state);
            }
        }
        if ws.delta_count() > 20_000 {
            store.write(&ws).unwrap();
            ws.clear();
        }
    }
    store.write(&ws).unwrap();
    // Where the server's maintenance task keeps the daily rollups: `rollup_after` behind now.
    let until = store
        .clock()
        .now()
        .saturating_add_ms(-store.config().rollup_after_ms);
    store.roll_up(until).unwrap();
    store.flush().unwrap();
    if downsample {
        store.downsample().unwrap();
    }
    store.compact_windows().unwrap();
    let mut catalog = MemoryCatalog::new();
    catalog.add_model(def);
    catalog.add_reference(profile);
    Data {
        _dir: dir,
        store,
        catalog,
        now,
    }
}

fn segments(keys: usize, values: usize) -> Vec<Segment> {
    let mut out = vec![Segment::All];
    for k in 0..keys {
        for v in 0..values {
            out.push(Segment::Value {
                key: format!("k{k}"),
                value: format!("v{v}"),
            });
        }
    }
    out
}

/// Reads and decodes every window under `prefix` in range (what the query reads, no merge).
fn scan(d: &Data, prefix: &SeriesPrefix, from: i64, to: i64) -> usize {
    let mut n = 0;
    for res in [Resolution::M15, Resolution::H1] {
        for w in d
            .store
            .scan(prefix, res, Timestamp(from), Timestamp(to))
            .unwrap()
        {
            black_box(w.unwrap());
            n += 1;
        }
    }
    n
}

fn run(d: &Data, q: &str) -> usize {
    let out = driftdb_query::run(&d.ctx(), q).unwrap();
    assert!(
        !out.table.rows.is_empty(),
        "{q}: no rows; {:?}",
        out.warnings
    );
    out.table.rows.len()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("query");
    g.sample_size(10);

    // One series, 90 days, step 1d; days 31..90 back are downsampled to 1h windows.
    let d = build(model("m1", 1, &[]), vec![Segment::All], 90 * 96, 200, true);
    let q = "psi(m1.f000) over 90d step 1d";
    assert_eq!(run(&d, q), 90);
    let p = SeriesPrefix::Feature {
        model: "m1".into(),
        version: "v1".into(),
        feature: FeatureRef::Named("f000".into()),
    };
    g.bench_function("one_series_90d_step_1d", |b| b.iter(|| run(&d, q)));
    g.bench_function("one_series_90d_scan", |b| {
        b.iter(|| scan(&d, &p, T_END - 91 * 86_400_000, T_END))
    });
    drop(d);

    // 500 features over 24 h, step 15m.
    let d = build(model("m500", 500, &[]), vec![Segment::All], 96, 100, false);
    let q = "psi(m500.*) over 24h step 15m";
    assert_eq!(run(&d, q), 500 * 96);
    let p = SeriesPrefix::Version {
        model: "m500".into(),
        version: "v1".into(),
    };
    g.bench_function("features500_24h_step_15m", |b| b.iter(|| run(&d, q)));
    g.bench_function("features500_24h_scan", |b| {
        b.iter(|| scan(&d, &p, T_END - 86_400_000, T_END))
    });
    drop(d);

    // explain over 1 h: 500 features x (all + 2 keys x 5 values).
    let d = build(
        model("mx", 500, &["k0", "k1"]),
        segments(2, 5),
        4,
        100,
        false,
    );
    let p = SeriesPrefix::Version {
        model: "mx".into(),
        version: "v1".into(),
    };
    g.bench_function("explain_500x10_1h", |b| {
        b.iter(|| run(&d, "explain(mx) over 1h"))
    });
    g.bench_function("explain_500x10_1h_scan", |b| {
        b.iter(|| scan(&d, &p, T_END - 3_600_000, T_END))
    });
    drop(d);

    // Drift report: 12 features, 24 h of 15-minute windows holding 1 M rows (10,417 per window).
    let d = build(model("m12", 12, &[]), vec![Segment::All], 96, 10_417, false);
    let p = SeriesPrefix::Version {
        model: "m12".into(),
        version: "v1".into(),
    };
    g.bench_function("drift_report_12x1M", |b| {
        b.iter(|| run(&d, "psi(m12.*) over 24h"))
    });
    g.bench_function("drift_summary_12x1M", |b| {
        b.iter(|| {
            driftdb_query::drift_summary(
                &d.ctx(),
                "m12",
                None,
                Some(Timestamp(T_END - 86_400_000)),
                None,
            )
            .unwrap()
        })
    });
    g.bench_function("drift_report_12x1M_scan", |b| {
        b.iter(|| scan(&d, &p, T_END - 86_400_000, T_END))
    });
    drop(d);

    // The stored-data drift report: psi, ks and js over 10 numeric features and the score
    // (chi2 applies to categorical features only, and this model has none), 1 M rows over 4 days of 15-minute
    // windows, read over one whole day (its daily rollup), three whole days, and the last 24 h
    // (one partial day's rollup is not there yet: its windows).
    let d = build(
        model("m10", 10, &[]),
        vec![Segment::All],
        4 * 96,
        2_604,
        false,
    );
    let day = |k: i64| Timestamp(T_END - k * 86_400_000).to_rfc3339();
    let report = |range: String| -> Vec<String> {
        ["psi", "ks", "js"]
            .iter()
            .flat_map(|m| {
                [
                    format!("{m}(m10.*) {range}"),
                    format!("{m}(m10.$score) {range}"),
                ]
            })
            .collect()
    };
    for (name, range) in [
        (
            "report_10x1M_one_day",
            format!("from {} to {}", day(3), day(2)),
        ),
        (
            "report_10x1M_three_days",
            format!("from {} to {}", day(4), day(1)),
        ),
        ("report_10x1M_last_24h", "over 24h".to_string()),
    ] {
        let qs = report(range);
        for q in &qs {
            let want = if q.contains("$score") { 1 } else { 10 };
            assert_eq!(run(&d, q), want, "{q}");
        }
        g.bench_function(name, |b| {
            b.iter(|| qs.iter().map(|q| run(&d, q)).sum::<usize>())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
