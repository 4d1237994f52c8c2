//! Daily rollups: every 15-minute and hourly delta is also merged into its day's window in the
//! same batch, downsampling does not add it twice, and the marker says from when rollups are
//! complete.

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

#[test]
fn daily_windows_roll_up_every_delta_once_even_across_downsampling() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, _) = clock_at(T0);
    let store = open(dir.path(), &clock, config());
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
