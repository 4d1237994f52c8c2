//! Shared fixtures.

use std::sync::Arc;

use driftdb_engine::series::{FeatureRef, Segment, SeriesKey};
use driftdb_engine::sketch::{BinEdges, CategoricalState, NumericState, SeriesState};
use driftdb_engine::time::{ManualClock, Resolution, Timestamp};
use driftdb_storage::{SeriesReader, Store, StoreConfig, Window};

/// 2026-03-01T00:00:00Z.
pub const T0: i64 = 1_772_323_200_000;
pub const DAY: i64 = 86_400_000;
pub const M15: i64 = 900_000;
pub const HOUR: i64 = 3_600_000;
pub const MIN: i64 = 60_000;

pub fn series(
    model: &str,
    version: &str,
    feature: &str,
    segment: Option<(&str, &str)>,
) -> SeriesKey {
    SeriesKey {
        model: model.into(),
        version: version.into(),
        feature: FeatureRef::parse(feature),
        segment: match segment {
            None => Segment::All,
            Some((k, v)) => Segment::Value {
                key: k.into(),
                value: v.into(),
            },
        },
    }
}

pub fn edges() -> BinEdges {
    BinEdges::new(vec![-500.0, 0.0, 500.0]).unwrap()
}

/// A numeric delta over `values`, binned on [`edges`].
pub fn numeric(values: &[f64]) -> SeriesState {
    let e = edges();
    let mut s = NumericState::new(Some(&e));
    for v in values {
        s.observe(*v, Some(&e));
    }
    SeriesState::Numeric(s)
}

pub fn categorical(values: &[&str]) -> SeriesState {
    let mut s = CategoricalState::default();
    for v in values {
        s.observe(v, false);
    }
    SeriesState::Categorical(s)
}

pub fn clock_at(ts: i64) -> (ManualClock, Arc<ManualClock>) {
    let c = ManualClock::new(Timestamp(ts));
    (c.clone(), Arc::new(c))
}

pub fn config() -> StoreConfig {
    StoreConfig {
        block_cache_bytes: 8 << 20,
        write_buffer_bytes: 4 << 20,
        ..StoreConfig::default()
    }
}

pub fn open(dir: &std::path::Path, clock: &ManualClock, config: StoreConfig) -> Store {
    Store::open(dir, config, Arc::new(clock.clone())).unwrap()
}

pub fn numeric_count(s: &SeriesState) -> u64 {
    match s {
        SeriesState::Numeric(n) => n.count(),
        SeriesState::Categorical(c) => c.count(),
        SeriesState::Score(sc) => sc.predictions,
    }
}

pub fn numeric_sum(s: &SeriesState) -> f64 {
    match s {
        SeriesState::Numeric(n) => n.sum(),
        _ => panic!("not numeric"),
    }
}

/// All windows of a series at a resolution over all time.
pub fn all_windows(store: &Store, s: &SeriesKey, res: Resolution) -> Vec<Window> {
    store
        .windows(s, res, Timestamp(i64::MIN), Timestamp(i64::MAX))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Keys physically present in a column family (no retention filtering, raw RocksDB).
pub fn raw_keys(store: &Store, cf: &str) -> Vec<Vec<u8>> {
    let db = store.raw_db();
    let h = db.cf_handle(cf).unwrap();
    let mut it = db.raw_iterator_cf(h);
    it.seek_to_first();
    let mut out = Vec::new();
    while let Some(k) = it.key() {
        out.push(k.to_vec());
        it.next();
    }
    it.status().unwrap();
    out
}
