//! One series over 90 days: 8,640 15-minute windows of ~1,000 values each, read and merged
//! (target ≤ 10 ms), from the 15-minute windows and from the daily rollups; the same range after
//! 60 days were downsampled to hourly windows; and the
//! bytes on disk per 15-minute series-window after flush + compaction (printed to stderr).
#![expect(clippy::unwrap_used, reason = "benches")]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use driftdb_engine::series::{FeatureRef, Segment, SeriesKey};
use driftdb_engine::sketch::{BinEdges, NumericState, SeriesState};
use driftdb_engine::time::{ManualClock, Resolution, Timestamp};
use driftdb_storage::{SeriesReader, Store, StoreConfig, WriteSet};

/// 2026-03-01T00:00:00Z: the end of the 90-day range.
const T_END: i64 = 1_772_323_200_000;
const M15: i64 = 900_000;
const WINDOWS: i64 = 90 * 96;
const VALUES_PER_WINDOW: usize = 1_000;

use driftdb_benches::Rng;

#[derive(Clone, Copy, Debug)]
enum Values {
    /// Full-precision doubles: the worst case for compression.
    F64,
    /// Values that were float32 before reaching driftdb (most feature pipelines and tensors).
    F32,
}

fn series() -> SeriesKey {
    SeriesKey {
        model: "fraud".into(),
        version: "v1".into(),
        feature: FeatureRef::Named("amount".into()),
        segment: Segment::All,
    }
}

/// A store holding 90 days of 15-minute windows of one series; returns it with the mean
/// encoded value size.
fn build(dir: &std::path::Path, kind: Values) -> (Store, f64) {
    let clock = ManualClock::new(Timestamp(T_END));
    let cfg = StoreConfig {
        sync_writes: false,
        ..StoreConfig::default()
    };
    let store = Store::open(dir, cfg, Arc::new(clock)).unwrap();
    let edges = BinEdges::new((1..50).map(|i| 25.0 + i as f64).collect()).unwrap();
    let s = series();
    let mut rng = Rng(7);
    let mut set = WriteSet::new();
    let mut value_bytes = 0usize;
    for w in 0..WINDOWS {
        let mut st = NumericState::new(Some(&edges));
        for _ in 0..VALUES_PER_WINDOW {
            let v = 50.0 + 10.0 * rng.normal();
            let v = match kind {
                Values::F64 => v,
                Values::F32 => f64::from(v as f32),
            };
            st.observe(v, Some(&edges));
        }
        let state = SeriesState::Numeric(st);
        value_bytes += state.encode().len();
        set.merge(
            &s,
            Resolution::M15,
            Timestamp(T_END - (WINDOWS - w) * M15),
            &state,
        );
        if set.delta_count() == 96 {
            store.write(&set).unwrap();
            set.clear();
        }
    }
    store.write(&set).unwrap();
    // Every window has ended: the maintenance task would have rolled them all into days.
    store.roll_up(Timestamp(T_END)).unwrap();
    store.flush().unwrap();
    store.compact_windows().unwrap();
    (store, value_bytes as f64 / WINDOWS as f64)
}

fn read_merge(store: &Store, downsampled: bool) -> NumericState {
    let s = series();
    let (from, to) = (Timestamp(T_END - WINDOWS * M15), Timestamp(T_END));
    let windows = if downsampled {
        store
            .windows_resolved(&s, Resolution::M15, from, to)
            .unwrap()
    } else {
        store
            .windows(&s, Resolution::M15, from, to)
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let mut acc = NumericState::default();
    for w in &windows {
        if let SeriesState::Numeric(n) = &w.state {
            acc.merge(n).unwrap();
        }
    }
    assert_eq!(acc.count(), (WINDOWS as u64) * VALUES_PER_WINDOW as u64);
    acc
}

fn bench(c: &mut Criterion) {
    for kind in [Values::F64, Values::F32] {
        let dir = tempfile::tempdir().unwrap();
        let (store, mean_value) = build(dir.path(), kind);
        let disk = store.window_sst_bytes(Resolution::M15).unwrap();
        let daily = store.window_sst_bytes(Resolution::D1).unwrap();
        eprintln!(
            "bytes on disk per 15m series-window ({kind:?} values, {VALUES_PER_WINDOW} per window, \
             {WINDOWS} windows, after flush+compaction): {:.0} (encoded value {:.0} B); \
             daily rollups add {:.0} B per 15m window",
            disk as f64 / WINDOWS as f64,
            mean_value,
            daily as f64 / WINDOWS as f64
        );
        if let Values::F32 = kind {
            continue;
        }
        let mut g = c.benchmark_group("storage_scan");
        g.sample_size(10);
        g.throughput(Throughput::Elements(WINDOWS as u64));
        g.bench_function("90d_15m_raw_iterate", |b| {
            // RocksDB alone: iterate the series' keys and values without decoding them.
            b.iter(|| {
                let db = store.raw_db();
                let cf = db.cf_handle(driftdb_storage::layout::CF_WIN_15M).unwrap();
                let mut it = db.raw_iterator_cf(cf);
                it.seek_to_first();
                let mut bytes = 0usize;
                while let Some(v) = it.value() {
                    bytes += v.len();
                    it.next();
                }
                black_box(bytes)
            })
        });
        g.bench_function("90d_15m_read_decode", |b| {
            b.iter(|| {
                let n = store
                    .windows(
                        &series(),
                        Resolution::M15,
                        Timestamp(T_END - WINDOWS * M15),
                        Timestamp(T_END),
                    )
                    .unwrap()
                    .map(Result::unwrap)
                    .count();
                black_box(n)
            })
        });
        g.bench_function("90d_15m_read_merge", |b| {
            b.iter(|| black_box(read_merge(&store, false)))
        });
        g.bench_function("90d_daily_rollups_read_merge", |b| {
            // The same 90 days from the 90 daily rollup windows the write path keeps.
            b.iter(|| {
                let mut acc = NumericState::default();
                for w in store
                    .windows(
                        &series(),
                        Resolution::D1,
                        Timestamp(T_END - WINDOWS * M15),
                        Timestamp(T_END),
                    )
                    .unwrap()
                {
                    if let SeriesState::Numeric(n) = &w.unwrap().state {
                        acc.merge(n).unwrap();
                    }
                }
                assert_eq!(acc.count(), (WINDOWS as u64) * VALUES_PER_WINDOW as u64);
                black_box(acc)
            })
        });
        let r = store.downsample().unwrap();
        store.compact_windows().unwrap();
        eprintln!(
            "downsampled {} 15m windows into {} hourly operands; 1h bytes on disk {}",
            r.windows_moved,
            r.hourly_operands,
            store.window_sst_bytes(Resolution::H1).unwrap()
        );
        g.bench_function("90d_read_merge_after_downsample", |b| {
            b.iter(|| black_box(read_merge(&store, true)))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
