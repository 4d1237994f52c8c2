//! Queries over whole days read the daily rollups and give the same answers as reading every
//! 15-minute window (store opened without rollups), for exact metrics to the last bit; days
//! the rollup runs have not finished are read from their finer windows.

use crate::common;

use driftdb_query::Cell;
use driftdb_storage::StoreConfig;

#[test]
fn whole_day_queries_match_with_and_without_rollups() {
    // 4 days of 15-minute windows, 20 predictions each per version.
    let with = common::shop_fixture_with(4 * 96, 20, StoreConfig::default());
    let without = common::shop_fixture_with(
        4 * 96,
        20,
        StoreConfig {
            daily_rollups: false,
            ..StoreConfig::default()
        },
    );
    let queries = [
        "psi(shop.*) over 4d step 1d",
        "count(shop.country) over 4d step 1d by region",
        "mean(shop.amount) from 2026-03-01T06:00:00Z to 2026-03-04T12:00:00Z",
        "auc(shop) over 4d step 1d by device",
        "ece(shop) over 3d",
        "chi2(shop.country, vs previous) over 4d step 1d",
        "psi(shop.amount, vs range(2026-03-01T00:00:00Z, 2026-03-02T00:00:00Z)) over 2d",
        "label_coverage(shop) over 4d",
    ];
    // The fixture rolled up every window that ended before its clock: the last day's last
    // window is still open, so that day comes from its 15-minute windows. Then the rollup
    // run reaches the end of the day, and only whole days' rollups are read.
    let day_end = driftdb_engine::time::Timestamp(with.now.0 + 60_000);
    for finished in [false, true] {
        if finished {
            let r = with.store.roll_up(day_end).unwrap();
            assert_eq!(r.rolled_until, Some(day_end));
            assert!(r.windows > 0, "the last window of every series");
        }
        compare(&with, &without, &queries, if finished { 20 } else { 3 });
    }
}

fn compare(with: &common::Fixture, without: &common::Fixture, queries: &[&str], fewer: u64) {
    for q in queries {
        let a = driftdb_query::run(&with.ctx(), q).unwrap();
        let b = driftdb_query::run(&without.ctx(), q).unwrap();
        assert!(!a.table.rows.is_empty(), "{q}");
        assert_eq!(a.table.columns, b.table.columns, "{q}");
        assert_eq!(a.table.rows.len(), b.table.rows.len(), "{q}");
        for (ra, rb) in a.table.rows.iter().zip(&b.table.rows) {
            for (x, y) in ra.iter().zip(rb) {
                match (x, y) {
                    (Cell::Number(x), Cell::Number(y)) => {
                        assert!((x - y).abs() <= 1e-9 * y.abs().max(1.0), "{q}: {x} vs {y}")
                    }
                    _ => assert_eq!(x, y, "{q}"),
                }
            }
        }
        if q.contains("step 1d") && !q.contains("previous") {
            assert!(
                a.stats.windows_read * fewer < b.stats.windows_read,
                "{q}: rollups read {} windows, 15-minute windows {}",
                a.stats.windows_read,
                b.stats.windows_read
            );
        }
    }
}
