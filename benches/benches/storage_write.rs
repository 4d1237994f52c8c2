//! Durable write throughput: series-windows merged per second through `Store::write`, WAL
//! fsynced on every batch (the production default), for batches of 100 and 1,000 deltas.
#![expect(clippy::unwrap_used, reason = "benches")]

use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use driftdb_engine::series::{FeatureRef, Segment, SeriesKey};
use driftdb_engine::sketch::{NumericState, SeriesState};
use driftdb_engine::time::{ManualClock, Resolution, Timestamp};
use driftdb_storage::layout::series_prefix;
use driftdb_storage::{Store, StoreConfig, WriteSet};

/// 2026-03-01T00:00:00Z.
const T0: i64 = 1_772_323_200_000;
const M15: i64 = 900_000;
/// Values folded into each delta (one ingest batch's share of a series-window).
const VALUES_PER_DELTA: usize = 16;

fn delta(seed: u64) -> Vec<u8> {
    let mut s = NumericState::new(None);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for _ in 0..VALUES_PER_DELTA {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.observe((x % 10_000) as f64 / 100.0, None);
    }
    SeriesState::Numeric(s).encode()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp(T0));
    let store = Store::open(dir.path(), StoreConfig::default(), Arc::new(clock)).unwrap();
    let prefixes: Vec<Vec<u8>> = (0..1_000)
        .map(|i| {
            series_prefix(&SeriesKey {
                model: "fraud".into(),
                version: "v1".into(),
                feature: FeatureRef::Named(format!("f{i:03}")),
                segment: Segment::All,
            })
        })
        .collect();
    let deltas: Vec<Vec<u8>> = (0..1_000).map(delta).collect();

    let mut g = c.benchmark_group("storage_write");
    g.sample_size(10);
    for batch in [100usize, 1_000] {
        g.throughput(Throughput::Elements(batch as u64));
        let mut window = 0i64;
        g.bench_with_input(BenchmarkId::new("sync_wal", batch), &batch, |b, &batch| {
            b.iter(|| {
                // Each batch: `batch` series, one window, like one ingest step of a wide model.
                window = (window + 1) % 96;
                let mut set = WriteSet::new();
                for i in 0..batch {
                    set.merge_encoded(
                        prefixes[i].clone(),
                        Resolution::M15,
                        Timestamp(T0 - 96 * M15 + window * M15),
                        deltas[i].clone(),
                    );
                }
                store.write(&set).unwrap();
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
