//! Downsampling 15m → 1h: exact counts, idempotence, only the new band per run, late writes,
//! reads of old ranges, and recovery from a half-done run.

use driftdb_engine::time::{Resolution, Timestamp};
use driftdb_storage::layout::{CF_WIN_1H, CF_WIN_15M, split_window_key, window_key};
use driftdb_storage::{SeriesReader, WriteSet};

use crate::common::*;

fn total(ws: &[driftdb_storage::Window]) -> u64 {
    ws.iter().map(|w| numeric_count(&w.state)).sum()
}

#[test]
fn downsampling_moves_old_windows_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, _) = clock_at(T0);
    let mut store = open(dir.path(), &clock, config());
    let a = series("m", "v1", "amount", None);
    let b = series("m", "v1", "browser", Some(("region", "eu")));
    // 15m windows every 15 minutes from 40 days ago to 20 days ago, window i holding
    // (i % 7) + 1 values; series b only on even windows.
    let first = T0 - 40 * DAY;
    let n_windows = 20 * 96;
    let mut set = WriteSet::new();
    let mut want_a = 0u64;
    for i in 0..n_windows {
        let ts = Timestamp(first + i * M15);
        let n = (i % 7) as usize + 1;
        set.merge(&a, Resolution::M15, ts, &numeric(&vec![i as f64; n]));
        want_a += n as u64;
        if i % 2 == 0 {
            set.merge(&b, Resolution::M15, ts, &numeric(&[1.0]));
        }
        if set.delta_count() > 500 {
            store.write(&set).unwrap();
            set.clear();
        }
    }
    store.write(&set).unwrap();
    store.flush().unwrap();

    // downsample_after = 30 days: windows older than T0 - 30d move.
    let r = store.downsample().unwrap();
    let moved_a: i64 = 10 * 96;
    assert_eq!(r.previous, None);
    assert_eq!(r.watermark, Some(Timestamp(T0 - 30 * DAY)));
    assert_eq!(r.windows_moved as i64, moved_a + moved_a / 2);
    assert_eq!(r.series, 2);
    assert_eq!(r.corrupt, 0);
    // No 15m key older than the watermark remains; hourly keys hold 4 windows each.
    for k in raw_keys(&store, CF_WIN_15M) {
        assert!(split_window_key(&k).unwrap().2 >= Timestamp(T0 - 30 * DAY));
    }
    let hourly = all_windows(&store, &a, Resolution::H1);
    assert_eq!(hourly.len() as i64, moved_a / 4);
    for h in &hourly {
        let i0 = (h.start.millis() - first) / M15;
        let want: u64 = (i0..i0 + 4).map(|i| (i % 7) as u64 + 1).sum();
        assert_eq!(numeric_count(&h.state), want);
    }
    let fine = all_windows(&store, &a, Resolution::M15);
    assert_eq!(fine.len() as i64, n_windows - moved_a);
    assert_eq!(total(&hourly) + total(&fine), want_a);

    // A second run in the same hour changes nothing.
    let keys_before = (raw_keys(&store, CF_WIN_15M), raw_keys(&store, CF_WIN_1H));
    let r2 = store.downsample().unwrap();
    assert_eq!(r2.windows_moved, 0);
    assert_eq!(r2.previous, r.watermark);
    assert_eq!(
        keys_before,
        (raw_keys(&store, CF_WIN_15M), raw_keys(&store, CF_WIN_1H))
    );

    // Reading the old range at 15m falls back to the hourly windows.
    let (from, to) = (Timestamp(first), Timestamp(T0));
    let resolved = store
        .windows_resolved(&a, Resolution::M15, from, to)
        .unwrap();
    assert_eq!(total(&resolved), want_a);
    assert!(resolved.windows(2).all(|p| p[0].start <= p[1].start));
    assert!(
        store
            .windows(&a, Resolution::M15, from, Timestamp(T0 - 30 * DAY))
            .unwrap()
            .next()
            .is_none()
    );

    // A late delta for a downsampled 15m window is folded into its hour.
    let mut set = WriteSet::new();
    set.merge(
        &a,
        Resolution::M15,
        Timestamp(first + 5 * M15),
        &numeric(&[9.0, 9.0]),
    );
    store.write(&set).unwrap();
    assert!(!raw_keys(&store, CF_WIN_15M).contains(&window_key(
        &a,
        Resolution::M15,
        Timestamp(first + 4 * M15)
    )));
    let h = &all_windows(&store, &a, Resolution::H1)[1];
    assert_eq!(h.start, Timestamp(first + 4 * M15));
    assert_eq!(
        numeric_count(&h.state),
        (4..8).map(|i| (i % 7) as u64 + 1).sum::<u64>() + 2
    );

    // One day later only the new band moves, and the watermark survives a reopen.
    drop(store);
    clock.advance(DAY);
    store = open(dir.path(), &clock, config());
    assert_eq!(
        store.downsampled_before(Resolution::M15),
        Some(Timestamp(T0 - 30 * DAY))
    );
    let r3 = store.downsample().unwrap();
    assert_eq!(r3.previous, Some(Timestamp(T0 - 30 * DAY)));
    assert_eq!(r3.windows_moved, 96 + 48);
    let resolved = store
        .windows_resolved(&a, Resolution::M15, from, to)
        .unwrap();
    assert_eq!(total(&resolved), want_a + 2);
    assert_eq!(store.corrupt_values() + store.corrupt_operands(), 0);
}

#[test]
fn rerun_after_a_half_done_run_does_not_double_count() {
    // A crash mid-run leaves some chunks moved (1h merge + 15m delete, atomically) and the
    // watermark unwritten. Build that state by hand, then run downsampling.
    let dir = tempfile::tempdir().unwrap();
    let (clock, _) = clock_at(T0);
    let store = open(dir.path(), &clock, config());
    let a = series("m", "v1", "amount", None);
    let hour = Resolution::H1.window_start(Timestamp(T0 - 35 * DAY));
    let mut set = WriteSet::new();
    for i in 0..8 {
        set.merge(
            &a,
            Resolution::M15,
            Timestamp(hour.millis() + i * M15),
            &numeric(&[i as f64; 3]),
        );
    }
    store.write(&set).unwrap();
    // "Moved" windows 0 and 1 of the first hour in one batch, as a chunk would.
    let db = store.raw_db();
    let (c15, c1h) = (
        db.cf_handle(CF_WIN_15M).unwrap(),
        db.cf_handle(CF_WIN_1H).unwrap(),
    );
    let mut moved = numeric(&[]);
    let mut batch = rocksdb_batch();
    for i in 0..2 {
        let k = window_key(&a, Resolution::M15, Timestamp(hour.millis() + i * M15));
        let v = db.get_cf(c15, &k).unwrap().unwrap();
        moved
            .merge(&driftdb_engine::sketch::SeriesState::decode(&v).unwrap())
            .unwrap();
        batch.delete_cf(c15, &k);
    }
    batch.merge_cf(c1h, window_key(&a, Resolution::H1, hour), moved.encode());
    db.write(batch).unwrap();

    let r = store.downsample().unwrap();
    assert_eq!(r.windows_moved, 6);
    let hourly = all_windows(&store, &a, Resolution::H1);
    assert_eq!(hourly.len(), 2);
    assert_eq!(numeric_count(&hourly[0].state), 12);
    assert_eq!(numeric_count(&hourly[1].state), 12);
    assert!(raw_keys(&store, CF_WIN_15M).is_empty());
}

fn rocksdb_batch() -> driftdb_storage::rocksdb::WriteBatch {
    driftdb_storage::rocksdb::WriteBatch::default()
}
