//! Corrupt stored values are detected by checksum, counted, and never returned as data.

use driftdb_engine::time::{Resolution, Timestamp};
use driftdb_storage::layout::{CF_WIN_15M, window_key};
use driftdb_storage::{SeriesPrefix, SeriesReader, WriteSet};

use crate::common::*;

#[test]
fn corrupt_values_and_operands_are_counted_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, _) = clock_at(T0 + DAY);
    let store = open(dir.path(), &clock, config());
    let s = series("m", "v1", "amount", None);
    let mut set = WriteSet::new();
    for w in 0..5 {
        set.merge(
            &s,
            Resolution::M15,
            Timestamp(T0 + w * M15),
            &numeric(&[w as f64, 1.0]),
        );
    }
    store.write(&set).unwrap();
    store.flush().unwrap();
    store.compact_windows().unwrap();

    let db = store.raw_db();
    let cf = db.cf_handle(CF_WIN_15M).unwrap();
    let key = |w: i64| window_key(&s, Resolution::M15, Timestamp(T0 + w * M15));
    // Window 1: one flipped bit in the stored value.
    let mut v = db.get_cf(cf, key(1)).unwrap().unwrap();
    v[5] ^= 0x10;
    db.put_cf(cf, key(1), &v).unwrap();
    // Window 2: a torn (truncated) value.
    let v = db.get_cf(cf, key(2)).unwrap().unwrap();
    db.put_cf(cf, key(2), &v[..v.len() / 2]).unwrap();
    // Window 3: garbage.
    db.put_cf(cf, key(3), b"not a sketch").unwrap();
    // Window 4: a good value plus a corrupt merge operand on top of it.
    db.merge_cf(cf, key(4), b"\x01\x01garbage operand").unwrap();

    let mut it = store
        .windows(&s, Resolution::M15, Timestamp(T0), Timestamp(T0 + DAY))
        .unwrap();
    let got: Vec<_> = it.by_ref().map(Result::unwrap).collect();
    let starts: Vec<i64> = got.iter().map(|w| (w.start.millis() - T0) / M15).collect();
    assert_eq!(starts, vec![0, 4]);
    assert_eq!(it.corrupt(), 3);
    assert_eq!(store.corrupt_values(), 3);
    assert_eq!(
        numeric_count(&got[1].state),
        2,
        "the bad operand was not folded in"
    );
    assert!(store.corrupt_operands() >= 1);

    // Scans skip them the same way.
    let mut scan = store
        .scan(
            &SeriesPrefix::Model("m".into()),
            Resolution::M15,
            Timestamp(T0),
            Timestamp(T0 + DAY),
        )
        .unwrap();
    assert_eq!(scan.by_ref().count(), 2);
    assert_eq!(scan.corrupt(), 3);

    // Compaction keeps working: the corrupt operand is dropped from the merged value, the
    // corrupt plain values stay unreadable, and nothing panics.
    store.compact_windows().unwrap();
    let got = all_windows(&store, &s, Resolution::M15);
    assert_eq!(got.len(), 2);
    assert_eq!(numeric_count(&got[1].state), 2);
}
