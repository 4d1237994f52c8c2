//! Merge operands stacked on one window key: `StoreConfig::max_successive_merges` bounds how
//! many a read merges, and the stored state is the same either way.

use driftdb_engine::time::{Resolution, Timestamp};
use driftdb_storage::{StoreConfig, WriteSet};
use rocksdb::perf::{PerfContext, PerfMetric, PerfStatsLevel, set_perf_stats};

use crate::common::*;

/// Writes `batches` single-delta batches into one 15-minute window, then reads it back;
/// returns the window's (count, sum) and the merge operands the read went through.
fn stack_and_read(config: StoreConfig, batches: usize) -> (u64, f64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let (clock, _) = clock_at(T0 + HOUR);
    let store = open(dir.path(), &clock, config);
    let s = series("fraud", "v1", "amount", None);
    for i in 0..batches {
        let mut set = WriteSet::new();
        let v = i as f64;
        set.merge(
            &s,
            Resolution::M15,
            Timestamp(T0 + 1_000),
            &numeric(&[v, v + 0.5]),
        );
        store.write(&set).unwrap();
    }
    set_perf_stats(PerfStatsLevel::EnableCount);
    let mut perf = PerfContext::default();
    perf.reset();
    let windows = all_windows(&store, &s, Resolution::M15);
    let merged = perf.metric(PerfMetric::InternalMergeCount);
    set_perf_stats(PerfStatsLevel::Disable);
    assert_eq!(windows.len(), 1);
    let state = &windows[0].state;
    (numeric_count(state), numeric_sum(state), merged)
}

#[test]
fn reads_merge_a_bounded_stack_of_operands() {
    let n = 40;
    let want_sum: f64 = (0..n).map(|i| 2.0 * i as f64 + 0.5).sum();
    let bounded = StoreConfig {
        max_successive_merges: 4,
        ..config()
    };
    let (count, sum, merged) = stack_and_read(bounded, n);
    assert_eq!((count, sum), (2 * n as u64, want_sum));
    assert!(
        merged <= 4,
        "a read merged {merged} operands past a bound of 4"
    );
    // Unbounded, the read goes through every operand: what the bound is there to prevent.
    let unbounded = StoreConfig {
        max_successive_merges: 0,
        ..config()
    };
    let (count, sum, merged) = stack_and_read(unbounded, n);
    assert_eq!((count, sum), (2 * n as u64, want_sum));
    assert!(
        merged >= n as u64,
        "an unbounded read merged only {merged} operands"
    );
}
