//! Storage maintenance behind the write path: windows older than `rollup_after` are merged
//! into their day (`Store::roll_up`), and 15-minute windows older than `downsample_after`
//! are merged into hourly ones (`Store::downsample`). Both are idempotent and resume after a
//! crash, so the loop only has to run them now and then.

use std::sync::Arc;
use std::time::{Duration, Instant};

use driftdb_storage::Store;

use crate::error::{Error, Result};

/// How often the rollup runs: a window is in its day at most this long after it is
/// `rollup_after` old.
pub const ROLLUP_EVERY: Duration = Duration::from_secs(60);

/// How often downsampling runs (it moves whole hours).
pub const DOWNSAMPLE_EVERY: Duration = Duration::from_secs(3600);

/// One pass: the rollup, and downsampling when `downsample`.
pub fn run_once(store: &Store, downsample: bool) -> Result<()> {
    // The pending records' expiry clocks, so expiry resumes where it was after a restart.
    store.persist_pending_clocks().map_err(Error::from)?;
    let lag = store.config().rollup_after_ms;
    if store.config().daily_rollups && lag > 0 {
        let until = store.clock().now().saturating_add_ms(-lag);
        let r = store.roll_up(until).map_err(Error::from)?;
        if r.windows > 0 || r.corrupt > 0 {
            tracing::info!(
                windows = r.windows,
                daily_operands = r.daily_operands,
                corrupt = r.corrupt,
                until = until.millis(),
                "daily rollup"
            );
        }
    }
    if downsample {
        let r = store.downsample().map_err(Error::from)?;
        if r.windows_moved > 0 || r.corrupt > 0 {
            tracing::info!(
                windows = r.windows_moved,
                series = r.series,
                corrupt = r.corrupt,
                "downsampled 15-minute windows to hourly"
            );
        }
    }
    Ok(())
}

/// Runs [`run_once`] at start (finishing a run a crash interrupted) and then every
/// [`ROLLUP_EVERY`], downsampling every [`DOWNSAMPLE_EVERY`], until shutdown. Failures are
/// logged and retried on the next pass.
pub async fn run_maintenance(
    store: Arc<Store>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let mut last_downsample: Option<Instant> = None;
    loop {
        let downsample = last_downsample.is_none_or(|t| t.elapsed() >= DOWNSAMPLE_EVERY);
        let s2 = Arc::clone(&store);
        match tokio::task::spawn_blocking(move || run_once(&s2, downsample)).await {
            Ok(Ok(())) => {
                if downsample {
                    last_downsample = Some(Instant::now());
                }
            }
            Ok(Err(e)) => tracing::error!(error = %e, "storage maintenance failed"),
            Err(e) => tracing::error!(error = %e, "storage maintenance task failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(ROLLUP_EVERY) => {}
            _ = shutdown.wait_for(|v| *v) => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {

    use driftdb_engine::series::{FeatureRef, Segment, SeriesKey};
    use driftdb_engine::sketch::{NumericState, SeriesState};
    use driftdb_engine::time::{ManualClock, Resolution, Timestamp};
    use driftdb_storage::{SeriesReader, StoreConfig, WriteSet};

    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn a_pass_rolls_up_behind_now_and_downsamples_old_windows() {
        let dir = tempfile::tempdir().unwrap();
        let now = Timestamp(1_772_323_200_000 + 40 * DAY);
        let clock = ManualClock::new(now);
        let store = Store::open(dir.path(), StoreConfig::default(), Arc::new(clock)).unwrap();
        let key = SeriesKey {
            model: "m".into(),
            version: "v1".into(),
            feature: FeatureRef::Named("x".into()),
            segment: Segment::All,
        };
        let mut st = NumericState::default();
        st.observe(1.0, None);
        let state = SeriesState::Numeric(st);
        let mut ws = WriteSet::new();
        // One window a day for 35 days, and one 30 minutes ago (not rolled yet).
        for d in 1..=35 {
            ws.merge(&key, Resolution::M15, Timestamp(now.0 - d * DAY), &state);
        }
        ws.merge(
            &key,
            Resolution::M15,
            Timestamp(now.0 - 30 * 60_000),
            &state,
        );
        store.write(&ws).unwrap();
        run_once(&store, true).unwrap();
        assert_eq!(
            store.daily_rollups_until(),
            Some(Timestamp(now.0 - 3_600_000))
        );
        let values: u64 = store
            .windows(&key, Resolution::D1, Timestamp(0), now)
            .unwrap()
            .map(|w| match w.unwrap().state {
                SeriesState::Numeric(n) => n.count(),
                other => panic!("{other:?}"),
            })
            .sum();
        assert_eq!(values, 35, "every window but the young one is in its day");
        let boundary = SeriesReader::downsampled_before(&store, Resolution::M15).unwrap();
        assert_eq!(boundary, Timestamp(now.0 - 30 * DAY));
    }
}
