//! Downsampling: 15-minute windows older than `downsample_after` are merged into hourly ones
//! (storage/FORMAT.md, "compression after 30 days"). Accuracy and crash-safety are argued in
//! `storage/FORMAT.md`, "Downsampling".
//!
//! Each chunk of windows moves in one atomic batch: the hourly merge operand is the merge of
//! exactly the 15-minute states deleted in the same batch, so a crash at any point leaves every
//! datum in exactly one window, and a re-run only finds what was not moved yet. A watermark in
//! `meta` records the age band already done; each run scans only the band since it (one seek
//! per series, plus the windows in the band).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use driftdb_engine::sketch::SeriesState;
use driftdb_engine::time::{Resolution, Timestamp};
use rocksdb::WriteBatch;

use crate::error::{Error, Result};
use crate::layout::{
    CF_META, series_skip_key, split_window_key, window_cf, window_key_from_prefix,
};
use crate::merge::first_live_start;
use crate::store::Store;

/// Windows moved per atomic batch; writers wait at most one chunk.
const CHUNK: usize = 2048;

/// Iterator steps (reads and seeks) per atomic batch, so a band with few windows among many
/// series still hands the writer lock back regularly.
const CHUNK_STEPS: usize = 4 * CHUNK;

/// What one [`Store::downsample`] run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DownsampleReport {
    /// The watermark before the run; `None` on the first run.
    pub previous: Option<Timestamp>,
    /// The watermark after the run: 15-minute windows ending at or before it are now held by
    /// hourly windows.
    pub watermark: Option<Timestamp>,
    /// Series that had windows moved.
    pub series: u64,
    /// 15-minute windows merged into hourly ones and deleted.
    pub windows_moved: u64,
    /// Merge operands written to hourly windows.
    pub hourly_operands: u64,
    /// 15-minute values that did not decode; left in place (they expire with retention) and
    /// counted in [`Store::corrupt_values`].
    pub corrupt: u64,
    /// Atomic batches written.
    pub batches: u64,
}

impl Store {
    /// Merges every 15-minute window whose hour ended at least
    /// [`crate::StoreConfig::downsample_after_ms`] ago into its hourly window and deletes it.
    ///
    /// Idempotent: a second run with the clock in the same hour changes nothing. Crash-safe: see
    /// the module docs. Concurrent [`Store::write`]s stay correct: deltas for windows in the
    /// band being moved go straight to the hourly window.
    pub fn downsample(&self) -> Result<DownsampleReport> {
        let _run = self.maintenance.lock().unwrap_or_else(|e| e.into_inner());
        let (src, dst) = (Resolution::M15, Resolution::H1);
        let target = dst.window_start(
            self.clock
                .now()
                .saturating_add_ms(-self.config.downsample_after_ms),
        );
        let previous = self.read_watermark(src)?;
        let mut report = DownsampleReport {
            previous,
            watermark: previous,
            ..Default::default()
        };
        if previous.is_some_and(|p| p >= target) {
            return Ok(report);
        }
        // Roll up the band first: a window moved to its hour must be rolled into its day
        // already (its hour too), or a later rollup run would miss or repeat it.
        self.roll_up_locked(target, None)?;
        {
            // From now on deltas for windows in the band go to the hourly window, so nothing
            // lands behind the moving scan.
            let _excl = self.lock_writers_exclusive();
            self.downsampled_before
                .fetch_max(target.millis(), Ordering::SeqCst);
        }
        // Windows ending after `previous` (start >= previous, as both are aligned), still live.
        let from = previous
            .unwrap_or(Timestamp(i64::MIN))
            .max(first_live_start(src, self.retention_cutoff()));
        let src_cf = self.cf(window_cf(src))?;
        let dst_cf = self.cf(window_cf(dst))?;
        let mut resume: Vec<u8> = Vec::new();
        let mut last_series: Option<Vec<u8>> = None;
        loop {
            let _excl = self.lock_writers_exclusive();
            let mut it = self.db.raw_iterator_cf(src_cf);
            it.seek(&resume);
            let mut batch = WriteBatch::default();
            let mut hourly: BTreeMap<Vec<u8>, SeriesState> = BTreeMap::new();
            let (mut n, mut steps) = (0, 0);
            while n < CHUNK && steps < CHUNK_STEPS {
                steps += 1;
                let Some((key, value)) = it.item() else {
                    break;
                };
                let Some((part, _, start)) = split_window_key(key) else {
                    it.next();
                    continue;
                };
                if start < from {
                    let k = window_key_from_prefix(part, src, from);
                    it.seek(k);
                    continue;
                }
                if start >= target {
                    let k = series_skip_key(part);
                    it.seek(k);
                    continue;
                }
                n += 1;
                if value.is_empty() {
                    batch.delete_cf(src_cf, key);
                    it.next();
                    continue;
                }
                let moved = match SeriesState::decode(value) {
                    Ok(state) => {
                        let hk = window_key_from_prefix(part, dst, dst.window_start(start));
                        match hourly.get_mut(&hk) {
                            None => {
                                hourly.insert(hk, state);
                                true
                            }
                            Some(acc) => acc.merge(&state).is_ok(),
                        }
                    }
                    Err(_) => false,
                };
                if moved {
                    batch.delete_cf(src_cf, key);
                    report.windows_moved += 1;
                    if last_series.as_deref() != Some(part) {
                        report.series += 1;
                        last_series = Some(part.to_vec());
                    }
                } else {
                    report.corrupt += 1;
                    self.counters.corrupt_values.fetch_add(1, Ordering::Relaxed);
                }
                it.next();
            }
            it.status().map_err(Error::rocks("iterate"))?;
            let exhausted = match it.key() {
                Some(k) => {
                    resume = k.to_vec();
                    false
                }
                None => true,
            };
            drop(it);
            for (k, state) in hourly {
                batch.merge_cf(dst_cf, k, state.encode());
                report.hourly_operands += 1;
            }
            if !batch.is_empty() {
                self.db
                    .write_opt(batch, &self.write_options())
                    .map_err(Error::rocks("write"))?;
                report.batches += 1;
            }
            if exhausted {
                break;
            }
        }
        let mut batch = WriteBatch::default();
        Store::watermark_put(&mut batch, self.cf(CF_META)?, src, target);
        self.db
            .write_opt(batch, &self.write_options())
            .map_err(Error::rocks("write"))?;
        report.watermark = Some(target);
        Ok(report)
    }
}
