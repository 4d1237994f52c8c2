//! The in-process fold of one ingest batch: rows → sketch deltas, the part of ingest
//! that is neither gRPC nor RocksDB. The batch has the shape of `driftdb bench ingest`'s: 2,000
//! rows, numeric features, 2 segment keys × 8 values, every group binned on reference edges.
//! Fewer features (50) than the 500 of the end-to-end bench keep a sample short; the cost is
//! linear in the feature count.
//!
//! `row_by_row` is the fold as it was before the bulk path, one `NumericState::observe` per
//! value and state, kept here as the baseline so the speed-up is measured in the same run.
#![expect(clippy::unwrap_used, reason = "benches")]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use driftdb_benches::Rng;
use driftdb_engine::ingest::{
    Baselines, Column, InferenceBatch, InferenceRow, SegmentRegistry, TimeBounds, fold_batch,
    fold_planned, plan_batch,
};
use driftdb_engine::model::ModelDef;
use driftdb_engine::series::{FeatureRef, Segment};
use driftdb_engine::sketch::{BinEdges, NumericState, merge_encoded};
use driftdb_engine::time::{Resolution, Timestamp};

const ROWS: usize = 2_000;
const FEATURES: usize = 50;
const SEGMENT_VALUES: u64 = 8;
/// 2026-03-01T00:00:00Z.
const T0: i64 = 1_772_323_200_000;

fn model() -> ModelDef {
    let features: serde_json::Map<String, serde_json::Value> = (0..FEATURES)
        .map(|i| (format!("f{i:03}"), "numeric".into()))
        .collect();
    serde_json::from_value(serde_json::json!({
        "id": "bench", "task": "binary", "window": "15m", "segments": ["s0", "s1"],
        "segment_cap": 64, "features": features,
    }))
    .unwrap()
}

fn batch(rng: &mut Rng) -> InferenceBatch {
    InferenceBatch {
        model_id: "bench".into(),
        feature_names: (0..FEATURES).map(|i| format!("f{i:03}")).collect(),
        segment_keys: vec!["s0".into(), "s1".into()],
        rows: (0..ROWS)
            .map(|i| InferenceRow {
                request_id: format!("r{i}"),
                ts: Timestamp(T0 + 1_000),
                version: "v1".into(),
                segments: (0..2)
                    .map(|_| Some(format!("v{}", rng.next_u64() % SEGMENT_VALUES)))
                    .collect(),
                score: Some(rng.unit()),
                latency_ms: Some(5.0 + 20.0 * rng.unit()),
                ..Default::default()
            })
            .collect(),
        columns: (0..FEATURES)
            .map(|j| {
                Column::Numbers(
                    (0..ROWS)
                        .map(|_| Some((rng.unit() * 100.0 + j as f64).ln()))
                        .collect(),
                )
            })
            .collect(),
        attributions: Vec::new(),
    }
}

/// 49 edges (50 bins) spanning the values, the same for every series.
#[derive(Debug)]
struct Edges(BinEdges);

impl Baselines for Edges {
    fn edges(&self, _: &str, _: &FeatureRef, _: &Segment) -> Option<&BinEdges> {
        Some(&self.0)
    }
    fn knows_category(&self, _: &str, _: &str, _: &Segment, _: &str) -> Option<bool> {
        None
    }
}

/// The pre-bulk fold's numeric hot loop: every value observed into each of its row's states.
fn row_by_row(b: &InferenceBatch, edges: &BinEdges) -> usize {
    let group = |row: &InferenceRow, k: usize| -> usize {
        let v = row.segments[k].as_deref().unwrap_or("v0");
        1 + k * SEGMENT_VALUES as usize + v[1..].parse::<usize>().unwrap()
    };
    let groups: Vec<[usize; 3]> = b
        .rows
        .iter()
        .map(|r| [0, group(r, 0), group(r, 1)])
        .collect();
    let mut retained = 0;
    for col in &b.columns {
        let mut states: Vec<NumericState> = (0..1 + 2 * SEGMENT_VALUES as usize)
            .map(|_| NumericState::new(Some(edges)))
            .collect();
        for (i, gs) in groups.iter().enumerate() {
            match col.get(i) {
                driftdb_engine::ingest::FieldRef::Number(x) => {
                    for g in gs {
                        states[*g].observe(x, Some(edges));
                    }
                }
                _ => {
                    for g in gs {
                        states[*g].observe_missing();
                    }
                }
            }
        }
        retained += states.iter().map(|s| s.count() as usize).sum::<usize>();
    }
    retained
}

fn bench(c: &mut Criterion) {
    let mut rng = Rng(0x5eed);
    let m = model();
    let b = batch(&mut rng);
    let edges = Edges(BinEdges::new((1..50).map(|i| (i as f64 * 0.1).exp()).collect()).unwrap());
    let bounds = TimeBounds {
        oldest: Timestamp(0),
        newest: Timestamp(i64::MAX / 2),
    };
    let mut g = c.benchmark_group("ingest_fold");
    g.sample_size(10);
    // Throughput in feature-values (rows × features), the unit of the ingest target.
    g.throughput(Throughput::Elements((ROWS * FEATURES) as u64));
    g.bench_function("row_by_row", |bch| {
        bch.iter(|| black_box(row_by_row(&b, &edges.0)))
    });
    g.bench_function("fold_batch", |bch| {
        bch.iter(|| {
            let mut reg = SegmentRegistry::new(64);
            black_box(fold_batch(
                &m,
                Resolution::M15,
                &b,
                &edges,
                &mut reg,
                bounds,
                &|_, _| false,
            ))
        })
    });
    for threads in [1usize, 2] {
        g.bench_with_input(
            BenchmarkId::new("fold_planned_and_encode", threads),
            &threads,
            |bch, &threads| {
                bch.iter(|| {
                    let mut reg = SegmentRegistry::new(64);
                    let plan = plan_batch(&m, Resolution::M15, &b, &mut reg, bounds, &|_, _| false);
                    let out = fold_planned(&m, &b, plan, &edges, threads);
                    let bytes: usize = out.deltas.iter().map(|(_, _, s)| s.encode().len()).sum();
                    black_box(bytes)
                })
            },
        );
    }
    g.finish();

    // What a memtable flush does with those deltas: RocksDB hands the merge operator every
    // operand of a window key at once (about five batches' deltas per key with 64 MiB
    // memtables), and the operator merges them into one value.
    const OPERANDS: usize = 5;
    let mut per_key: std::collections::BTreeMap<_, Vec<Vec<u8>>> = Default::default();
    for _ in 0..OPERANDS {
        let b = batch(&mut rng);
        let mut reg = SegmentRegistry::new(64);
        let plan = plan_batch(&m, Resolution::M15, &b, &mut reg, bounds, &|_, _| false);
        for (key, start, state) in fold_planned(&m, &b, plan, &edges, 1).deltas {
            per_key
                .entry((key, start))
                .or_default()
                .push(state.encode());
        }
    }
    let mut g = c.benchmark_group("flush_merge");
    g.sample_size(10);
    g.throughput(Throughput::Elements((OPERANDS * ROWS * FEATURES) as u64));
    g.bench_function(BenchmarkId::new("operands", OPERANDS), |bch| {
        bch.iter(|| {
            let mut bytes = 0;
            for operands in per_key.values() {
                let merged = merge_encoded(operands.iter().map(Vec::as_slice));
                bytes += merged.bytes.map_or(0, |b| b.len());
            }
            black_box(bytes)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
