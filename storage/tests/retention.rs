//! Retention: expired windows vanish from reads at once and physically after compaction,
//! including keys that were only merge operands.

use driftdb_engine::time::{Resolution, Timestamp};
use driftdb_storage::layout::{CF_WIN_1H, CF_WIN_15M, window_key};
use driftdb_storage::{SeriesReader, WriteSet};

use crate::common::*;

#[test]
fn expired_windows_disappear_from_reads_then_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, _) = clock_at(T0);
    let store = open(dir.path(), &clock, config());
    let s = series("m", "v1", "amount", None);
    let other = series("m", "v1", "old_only", None);
    let old = Timestamp(T0 - 89 * DAY);
    let recent = Timestamp(T0 - DAY);
    let mut set = WriteSet::new();
    set.merge(&s, Resolution::M15, old, &numeric(&[1.0, 2.0]));
    set.merge(&s, Resolution::M15, recent, &numeric(&[3.0]));
    set.merge(&other, Resolution::M15, old, &numeric(&[4.0]));
    set.merge(&s, Resolution::H1, old, &numeric(&[5.0]));
    store.write(&set).unwrap();
    // Flushed to an SST as a plain value after a compaction; the other key stays operand-only.
    store.flush().unwrap();
    store.compact_windows().unwrap();
    let mut set = WriteSet::new();
    set.merge(&s, Resolution::M15, old, &numeric(&[6.0]));
    store.write(&set).unwrap();

    assert_eq!(all_windows(&store, &s, Resolution::M15).len(), 2);
    assert_eq!(
        numeric_count(&all_windows(&store, &s, Resolution::M15)[0].state),
        3
    );
    assert_eq!(
        store.series("m", None).unwrap(),
        vec![s.clone(), other.clone()]
    );

    // Two days later the old windows are past 90 days.
    clock.advance(2 * DAY);
    let w = all_windows(&store, &s, Resolution::M15);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].start, recent);
    assert!(all_windows(&store, &other, Resolution::M15).is_empty());
    assert!(all_windows(&store, &s, Resolution::H1).is_empty());
    assert_eq!(store.series("m", None).unwrap(), vec![s.clone()]);
    // Still on disk until compaction.
    assert_eq!(raw_keys(&store, CF_WIN_15M).len(), 3);
    // Writes into expired windows are refused and change nothing.
    let mut set = WriteSet::new();
    set.merge(&s, Resolution::M15, recent, &numeric(&[7.0]));
    set.merge(&s, Resolution::M15, old, &numeric(&[7.0]));
    let err = store.write(&set).unwrap_err();
    assert_eq!(err.kind(), driftdb_engine::ErrorKind::InvalidArgument);
    assert_eq!(
        numeric_count(&all_windows(&store, &s, Resolution::M15)[0].state),
        1
    );

    store.compact_windows().unwrap();
    assert_eq!(
        raw_keys(&store, CF_WIN_15M),
        vec![window_key(&s, Resolution::M15, recent)]
    );
    assert!(raw_keys(&store, CF_WIN_1H).is_empty());
    assert!(store.expired_removed() >= 3);
}

#[test]
fn operand_only_keys_are_removed_by_one_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, _) = clock_at(T0);
    let store = open(dir.path(), &clock, config());
    let s = series("m", "v1", "amount", None);
    // Several merges of the same old window, never read and never compacted: in the memtable
    // only as merge operands.
    for i in 0..5 {
        let mut set = WriteSet::new();
        set.merge(
            &s,
            Resolution::M15,
            Timestamp(T0 - 89 * DAY),
            &numeric(&[i as f64]),
        );
        set.merge(
            &s,
            Resolution::M15,
            Timestamp(T0 - 89 * DAY + M15),
            &numeric(&[i as f64]),
        );
        set.merge(&s, Resolution::M15, Timestamp(T0), &numeric(&[i as f64]));
        store.write(&set).unwrap();
    }
    clock.advance(2 * DAY);
    store.compact_windows().unwrap();
    assert_eq!(
        raw_keys(&store, CF_WIN_15M),
        vec![window_key(&s, Resolution::M15, Timestamp(T0))]
    );
    // And again after the operands were flushed to L0 files first.
    for i in 0..5 {
        let mut set = WriteSet::new();
        set.merge(
            &s,
            Resolution::M15,
            Timestamp(T0 - 86 * DAY),
            &numeric(&[i as f64]),
        );
        store.write(&set).unwrap();
        store.flush().unwrap();
    }
    assert_eq!(raw_keys(&store, CF_WIN_15M).len(), 2);
    clock.advance(3 * DAY);
    store.compact_windows().unwrap();
    assert_eq!(
        raw_keys(&store, CF_WIN_15M),
        vec![window_key(&s, Resolution::M15, Timestamp(T0))]
    );
    let w = all_windows(&store, &s, Resolution::M15);
    assert_eq!(numeric_count(&w[0].state), 5);
}
