//! Daily rollups: every 15-minute and hourly delta reaches its day's window exactly once,
//! whether rolled up on write or behind the write path by `Store::roll_up` (runs cut short,
//! reopened, raced by late writes), downsampling does not add it twice, and the marker and
//! cursor say which days are complete.

use driftdb_engine::time::{Resolution, Timestamp};
use driftdb_storage::{SeriesReader, StoreConfig, WriteSet};

use crate::common::*;

fn day_totals(
    store: &driftdb_storage::Store,
    s: &driftdb_engine::series::SeriesKey,
) -> Vec<(i64, u64, f64)> {
    all_windows(store, s, Resolution::D1)
        .iter()
        .map(|w| (w.start.0, numeric_count(&w.state), numeric_sum(&w.state)))
        .collect()
}

/// Per-day count and sum of the finer windows (15m and 1h).
fn fine_totals(
    store: &driftdb_storage::Store,
    s: &driftdb_engine::series::SeriesKey,
) -> Vec<(i64, u64, f64)> {
    let mut days: std::collections::BTreeMap<i64, (u64, f64)> = Default::default();
    for res in [Resolution::M15, Resolution::H1] {
        for w in all_windows(store, s, res) {
            let e = days
                .entry(Resolution::D1.window_start(w.start).0)
                .or_default();
            e.0 += numeric_count(&w.state);
            e.1 += numeric_sum(&w.state);
        }
    }
    days.into_iter().map(|(d, (n, s))| (d, n, s)).collect()
}

fn eager() -> StoreConfig {
    StoreConfig {
        rollup_after_ms: 0,
        ..config()
    }
}

#[test]
fn daily_windows_roll_up_every_delta_once_even_across_downsampling() {
    for cfg in [config(), eager()] {
        every_delta_once_across_downsampling(cfg);
    }
}

fn every_delta_once_across_downsampling(cfg: StoreConfig) {
    let lazy = cfg.rollup_after_ms > 0;
    let dir = tempfile::tempdir().unwrap();
    let (clock, _) = clock_at(T0);
    let store = open(dir.path(), &clock, cfg);
    assert_eq!(
        store.daily_rollups_from(),
        Some(Timestamp(i64::MIN)),
        "a new store rolls up from the start"
    );
    let a = series("m", "v1", "amount", None);
    // 40 days of 15-minute windows, then late deltas into old windows after downsampling.
    let first = T0 - 40 * DAY;
    let mut set = WriteSet::new();
    for i in 0..40 * 96 {
        let n = (i % 5) as usize + 1;
        set.merge(
            &a,
            Resolution::M15,
            Timestamp(first + i * M15),
            &numeric(&vec![(i % 11) as f64; n]),
        );
        if set.delta_count() > 400 {
            store.write(&set).unwrap();
            set.clear();
        }
    }
    store.write(&set).unwrap();
    let report = store.downsample().unwrap();
    assert!(report.windows_moved > 0);
    let mut late = WriteSet::new();
    late.merge(
        &a,
        Resolution::M15,
        Timestamp(first + 5 * DAY + 7 * M15),
        &numeric(&[100.0, 100.0]),
    );
    late.merge(
        &a,
        Resolution::H1,
        Timestamp(first + 6 * DAY),
        &numeric(&[3.0]),
    );
    store.write(&late).unwrap();
    if lazy {
        // Downsampling rolled up its band first; the last 30 days wait for a run.
        assert_eq!(
            store.daily_rollups_until(),
            Some(Timestamp(T0 - 30 * DAY)),
            "downsampling rolls its band up first"
        );
        assert_eq!(day_totals(&store, &a).len(), 10);
        let r = store.roll_up(Timestamp(T0)).unwrap();
        assert_eq!(r.rolled_until, Some(Timestamp(T0)));
        assert_eq!(r.windows, 30 * 96);
        assert_eq!(
            store.roll_up(Timestamp(T0)).unwrap().windows,
            0,
            "idempotent"
        );
    } else {
        assert_eq!(store.daily_rollups_until(), Some(Timestamp(i64::MAX)));
    }
    store.flush().unwrap();
    store.compact_windows().unwrap();
    let (days, fine) = (day_totals(&store, &a), fine_totals(&store, &a));
    assert_eq!(days.len(), 40);
    assert_eq!(
        days, fine,
        "each day's rollup holds exactly its finer windows"
    );
    assert_eq!(
        days.iter().map(|d| d.1).sum::<u64>(),
        (0..40 * 96).map(|i| (i % 5) as u64 + 1).sum::<u64>() + 3
    );
}

#[test]
fn rollups_switched_on_later_are_complete_from_the_next_day_and_off_means_none() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, _) = clock_at(T0 + 3 * M15);
    let off = StoreConfig {
        daily_rollups: false,
        ..config()
    };
    let a = series("m", "v1", "amount", None);
    {
        let store = open(dir.path(), &clock, off.clone());
        assert_eq!(store.daily_rollups_from(), None);
        let mut set = WriteSet::new();
        set.merge(&a, Resolution::M15, Timestamp(T0 - M15), &numeric(&[1.0]));
        store.write(&set).unwrap();
        assert!(
            all_windows(&store, &a, Resolution::D1).is_empty(),
            "no rollup while off"
        );
    }
    {
        let store = open(dir.path(), &clock, config());
        assert_eq!(
            store.daily_rollups_from(),
            Some(Timestamp(T0 + DAY)),
            "complete from the next UTC day"
        );
    }
    // The marker persists across reopen, and switching off removes it.
    let store = open(dir.path(), &clock, config());
    assert_eq!(
        SeriesReader::daily_rollups_from(&store),
        Some(Timestamp(T0 + DAY))
    );
    drop(store);
    let store = open(dir.path(), &clock, off);
    assert_eq!(store.daily_rollups_from(), None);
    drop(store);
    let store = open(dir.path(), &clock, config());
    assert_eq!(store.daily_rollups_from(), Some(Timestamp(T0 + DAY)));
}

/// Deltas of `count` values each into `windows` windows of every series, starting at `first`
/// every `step` ms; returns the values written per series.
fn write_grid(
    store: &driftdb_storage::Store,
    keys: &[(driftdb_engine::series::SeriesKey, Resolution)],
    first: i64,
    step: i64,
    windows: i64,
    count: usize,
) {
    let mut set = WriteSet::new();
    for (k, res) in keys {
        for i in 0..windows {
            set.merge(
                k,
                *res,
                Timestamp(first + i * step),
                &numeric(&vec![1.0; count]),
            );
        }
        if set.delta_count() > 500 {
            store.write(&set).unwrap();
            set.clear();
        }
    }
    store.write(&set).unwrap();
}

#[test]
fn runs_behind_the_write_path_count_every_delta_once_across_cut_runs_reopens_and_late_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, _) = clock_at(T0 + 3 * DAY);
    // 400 series of 15-minute windows and 50 hourly ones: several chunks in each family.
    let mut keys: Vec<_> = (0..400)
        .map(|i| {
            (
                series("m", "v1", &format!("f{i:03}"), None),
                Resolution::M15,
            )
        })
        .collect();
    keys.extend((0..50).map(|i| (series("h", "v1", &format!("g{i:02}"), None), Resolution::H1)));
    let day0 = T0;
    {
        let store = open(dir.path(), &clock, config());
        assert_eq!(store.daily_rollups_until(), Some(Timestamp(i64::MIN)));
        // Day 0 and day 1, one window every 2 hours: 450 × 24 = 10,800 finer windows.
        write_grid(&store, &keys, day0, 2 * HOUR, 24, 2);
        assert!(
            all_windows(&store, &keys[0].0, Resolution::D1).is_empty(),
            "young windows are written once"
        );
        // A run cut short after two chunks (as a crash would leave it) ...
        let r = store
            .roll_up_partially(Timestamp(day0 + 2 * DAY), 2)
            .unwrap();
        assert_eq!((r.batches, r.rolled_until), (2, None));
        assert_eq!(r.windows, 2 * 2048);
        // ... then writes land on both sides of where it stopped, in both families.
        write_grid(&store, &keys, day0 + 15 * MIN, 4 * HOUR, 12, 1);
    }
    // Reopen: the run resumes from its persisted key; more writes race nothing but are
    // placed by the reloaded cursor.
    let store = open(dir.path(), &clock, config());
    write_grid(&store, &keys[..5], day0 + 30 * MIN, DAY, 2, 3);
    let r = store.roll_up(Timestamp(day0 + DAY)).unwrap();
    assert_eq!(
        r.rolled_until,
        Some(Timestamp(day0 + 2 * DAY)),
        "the interrupted run finishes its own band first"
    );
    // Late data for rolled windows goes to its day as well.
    write_grid(&store, &keys[390..], day0 + 45 * MIN, 3 * HOUR, 16, 5);
    assert_eq!(store.daily_rollups_until(), Some(Timestamp(day0 + 2 * DAY)));
    let expected = |i: usize| -> u64 {
        24 * 2 + 12 + if i < 5 { 2 * 3 } else { 0 } + if i >= 390 { 16 * 5 } else { 0 }
    };
    for (i, (k, _)) in keys.iter().enumerate() {
        let (days, fine) = (day_totals(&store, k), fine_totals(&store, k));
        assert_eq!(
            days, fine,
            "series {i}: each day holds exactly its finer windows"
        );
        assert_eq!(
            days.iter().map(|d| d.1).sum::<u64>(),
            expected(i),
            "series {i}"
        );
    }
}

#[test]
fn a_store_that_rolled_up_on_write_switches_to_runs_without_counting_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, manual) = clock_at(T0 + 6 * HOUR);
    let a = series("m", "v1", "amount", None);
    {
        let store = open(dir.path(), &clock, eager());
        write_grid(&store, &[(a.clone(), Resolution::M15)], T0, HOUR, 6, 2);
        assert_eq!(day_totals(&store, &a), fine_totals(&store, &a));
    }
    let store = open(dir.path(), &clock, config());
    // Everything it may hold is rolled already: it goes on writing both until two days on.
    assert_eq!(store.daily_rollups_until(), Some(Timestamp(T0 + 2 * DAY)));
    write_grid(
        &store,
        &[(a.clone(), Resolution::M15)],
        T0 + DAY,
        HOUR,
        30,
        1,
    );
    manual.set(Timestamp(T0 + 5 * DAY));
    let r = store.roll_up(Timestamp(T0 + 4 * DAY)).unwrap();
    assert_eq!(r.windows, 6, "only the windows past the two days");
    write_grid(
        &store,
        &[(a.clone(), Resolution::M15)],
        T0 + 3 * DAY,
        HOUR,
        4,
        1,
    );
    assert_eq!(day_totals(&store, &a), fine_totals(&store, &a));
    assert_eq!(
        day_totals(&store, &a).iter().map(|d| d.1).sum::<u64>(),
        6 * 2 + 30 + 4
    );
}

#[test]
fn a_run_over_many_series_with_few_windows_hands_the_writer_lock_back() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, _) = clock_at(T0 + DAY);
    let store = open(dir.path(), &clock, config());
    let keys: Vec<_> = (0..12_000)
        .map(|i| {
            (
                series("m", "v1", &format!("f{i:05}"), None),
                Resolution::M15,
            )
        })
        .collect();
    write_grid(&store, &keys, T0, HOUR, 1, 1);
    assert_eq!(store.roll_up(Timestamp(T0 + HOUR)).unwrap().windows, 12_000);
    // One new window among 12,000 series: the run seeks past every series (one step each,
    // 8,192 steps a batch), so it takes two batches in the 15-minute family.
    write_grid(&store, &keys[2500..2501], T0 + 2 * HOUR, HOUR, 1, 4);
    let r = store.roll_up(Timestamp(T0 + 3 * HOUR + 7 * MIN)).unwrap();
    assert_eq!(r.windows, 1);
    assert!(r.batches >= 3, "{r:?}");
    assert_eq!(
        r.rolled_until,
        Some(Timestamp(T0 + 3 * HOUR)),
        "rolled to the last 15-minute boundary"
    );
    assert_eq!(
        day_totals(&store, &keys[2500].0),
        fine_totals(&store, &keys[2500].0)
    );
    assert_eq!(day_totals(&store, &keys[2500].0)[0].1, 5);
}
