//! Daily rollups built behind the write path.
//!
//! A day's window (`win_1d`) holds the merge of its 15-minute and hourly windows, so a query
//! over whole days reads one window per day. Writing every delta twice (its window and its
//! day) doubled the bytes of the ingest path; instead, a window is written once while it is
//! young and [`Store::roll_up`] merges it into its day once it is
//! [`crate::StoreConfig::rollup_after_ms`] old. Deltas that arrive for a window already rolled
//! (late data) are written to both, in the same batch.
//!
//! The cursor says which windows are rolled: every window ending at or before `done`, plus,
//! while a run is moving through a band `(done, target]`, the windows of that band whose key
//! the run has passed (the 15-minute family first, then the hourly one). [`Store::write`]
//! reads it under the shared writer lock; the run changes it only under the exclusive one,
//! in the same atomic batch as the day operands of the chunk it just read. So every datum of
//! a finer window reaches its day exactly once: by the run's read if it was written before,
//! by the write itself if after. A crash leaves the persisted cursor and the day operands in
//! step, and the next run resumes from the persisted key. `FORMAT.md`, "Daily rollups", draws
//! the record.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use driftdb_engine::codec::{open, seal};
use driftdb_engine::sketch::SeriesState;
use driftdb_engine::time::{Resolution, Timestamp};
use rocksdb::WriteBatch;

use crate::error::{Error, Result};
use crate::layout::{
    CF_META, CF_WIN_1D, CF_WIN_1H, CF_WIN_15M, roll_cursor_key, series_skip_key, split_window_key,
    window_key_from_prefix,
};
use crate::merge::first_live_start;
use crate::store::Store;

/// Value kind of the rollup cursor in `meta`.
pub const KIND_ROLL_CURSOR: u8 = 0xF1;

/// Finer windows read per atomic batch; writers wait at most one chunk.
const CHUNK: usize = 2048;

/// Iterator steps (reads and seeks) per atomic batch: a band holding few windows among many
/// series still hands the writer lock back regularly.
const CHUNK_STEPS: usize = 4 * CHUNK;

/// `done` of a store that rolls up on write: every window counts as rolled.
pub(crate) const ALL_ROLLED: i64 = i64::MAX;

/// `done` of a store that has rolled nothing.
pub(crate) const NONE_ROLLED: i64 = i64::MIN;

/// The families a run reads, in order; a band's `phase` indexes it.
const PHASES: [(Resolution, &str); 2] =
    [(Resolution::M15, CF_WIN_15M), (Resolution::H1, CF_WIN_1H)];

/// Which finer windows are merged into their day's window already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RollCursor {
    /// Every finer window ending at or before this instant (ms) is rolled.
    pub done: i64,
    /// A run in progress over the windows ending in `(done, band.target]`.
    pub band: Option<Band>,
}

/// A run in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Band {
    /// Windows ending after `done` and at or before this instant (ms) are being rolled.
    pub target: i64,
    /// Index into `PHASES`: families before it are done for the band.
    pub phase: u8,
    /// In the phase's family, band windows with keys before this one are rolled.
    pub resume: Vec<u8>,
}

fn phase_of(res: Resolution) -> u8 {
    match res {
        Resolution::M15 => 0,
        Resolution::H1 => 1,
        Resolution::D1 => 2,
    }
}

impl RollCursor {
    pub(crate) fn at(done: i64) -> RollCursor {
        RollCursor { done, band: None }
    }

    /// Whether the window of `res` starting at `start` under `key` (its full window key) is
    /// merged into its day already, so a delta for it must go to the day too.
    pub(crate) fn is_rolled(&self, res: Resolution, key: &[u8], start: Timestamp) -> bool {
        let end = start.millis().saturating_add(res.width_ms());
        if end <= self.done {
            return true;
        }
        match &self.band {
            Some(b) if end <= b.target => {
                let phase = phase_of(res);
                phase < b.phase || (phase == b.phase && key < b.resume.as_slice())
            }
            _ => false,
        }
    }

    /// `done` (i64) | band flag (u8) | [target (i64) | phase (u8) | resume key], big endian.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(18 + self.band.as_ref().map_or(0, |b| b.resume.len()));
        v.extend_from_slice(&self.done.to_be_bytes());
        match &self.band {
            None => v.push(0),
            Some(b) => {
                v.push(1);
                v.extend_from_slice(&b.target.to_be_bytes());
                v.push(b.phase);
                v.extend_from_slice(&b.resume);
            }
        }
        seal(KIND_ROLL_CURSOR, &v)
    }

    pub(crate) fn decode(sealed: &[u8]) -> Result<RollCursor> {
        let bad = |detail: String| Error::CorruptValue {
            family: CF_META,
            source: driftdb_engine::Error::Malformed {
                what: "rollup cursor",
                detail,
            },
        };
        let (kind, p) = open(sealed).map_err(|source| Error::CorruptValue {
            family: CF_META,
            source,
        })?;
        if kind != KIND_ROLL_CURSOR || p.len() < 9 {
            return Err(bad(format!("kind {kind}, {} bytes", p.len())));
        }
        let i64_at = |at: usize| -> i64 {
            let mut a = [0u8; 8];
            a.copy_from_slice(&p[at..at + 8]);
            i64::from_be_bytes(a)
        };
        let done = i64_at(0);
        let band = match p[8] {
            0 if p.len() == 9 => None,
            1 if p.len() >= 18 && usize::from(p[17]) < PHASES.len() => Some(Band {
                target: i64_at(9),
                phase: p[17],
                resume: p[18..].to_vec(),
            }),
            flag => return Err(bad(format!("band flag {flag}, {} bytes", p.len()))),
        };
        Ok(RollCursor { done, band })
    }
}

/// What one [`Store::roll_up`] call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RollReport {
    /// Finer windows ending at or before this instant were rolled before the call.
    pub previous: Option<Timestamp>,
    /// ... and after it; `None` when nothing is rolled (or the store keeps no rollups).
    pub rolled_until: Option<Timestamp>,
    /// Finer windows read and merged into their days.
    pub windows: u64,
    /// Merge operands written to daily windows.
    pub daily_operands: u64,
    /// Finer windows that did not decode; left out of the day and counted in
    /// [`Store::corrupt_values`].
    pub corrupt: u64,
    /// Atomic batches written.
    pub batches: u64,
}

fn as_instant(ms: i64) -> Option<Timestamp> {
    (ms != NONE_ROLLED).then_some(Timestamp(ms))
}

impl Store {
    /// Merges every finer window ending at or before `until` into its day's window, if not
    /// done before; returns at once when the store rolls up on write or keeps no rollups.
    /// A run interrupted by a crash resumes where its last batch ended. Runs one at a time,
    /// also against [`Store::downsample`].
    pub fn roll_up(&self, until: Timestamp) -> Result<RollReport> {
        let _run = self.maintenance.lock().unwrap_or_else(|e| e.into_inner());
        self.roll_up_locked(until, None)
    }

    /// Like [`Store::roll_up`], but stops after `max_batches` atomic batches (a run left half
    /// done, as a crash would leave it; for tests).
    #[doc(hidden)]
    pub fn roll_up_partially(&self, until: Timestamp, max_batches: u64) -> Result<RollReport> {
        let _run = self.maintenance.lock().unwrap_or_else(|e| e.into_inner());
        self.roll_up_locked(until, Some(max_batches))
    }

    /// Daily windows ending at or before the returned instant (and starting at or after
    /// [`Store::daily_rollups_from`]) hold all of their finer windows; `None` when the store
    /// keeps no rollups.
    pub fn daily_rollups_until(&self) -> Option<Timestamp> {
        self.rollups_from?;
        Some(Timestamp(self.roll_cursor().done))
    }

    pub(crate) fn roll_cursor(&self) -> RollCursor {
        self.roll.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The body of [`Store::roll_up`]; the caller holds `maintenance`.
    pub(crate) fn roll_up_locked(
        &self,
        until: Timestamp,
        max_batches: Option<u64>,
    ) -> Result<RollReport> {
        let start = self.roll_cursor();
        let mut report = RollReport {
            previous: as_instant(start.done),
            rolled_until: as_instant(start.done),
            ..Default::default()
        };
        if self.rollups_from.is_none() || start.done == ALL_ROLLED {
            return Ok(report);
        }
        // Window ends are aligned to 15 minutes: a run between two boundaries has nothing to
        // read, so it does not start one (and scan every series for nothing).
        let w = Resolution::M15.width_ms();
        let until = Timestamp(until.millis().div_euclid(w).saturating_mul(w));
        loop {
            let cursor = self.roll_cursor();
            if cursor.band.is_none() {
                if until.millis() <= cursor.done {
                    break;
                }
                // Writers see no change: nothing in the new band is passed yet.
                self.roll.write().unwrap_or_else(|e| e.into_inner()).band = Some(Band {
                    target: until.millis(),
                    phase: 0,
                    resume: Vec::new(),
                });
            }
            // An interrupted run is finished first, whatever `until` says now.
            if !self.run_band(&mut report, max_batches)? {
                return Ok(report);
            }
        }
        report.rolled_until = as_instant(self.roll_cursor().done);
        Ok(report)
    }

    /// Rolls the cursor's band to its end, one chunk per atomic batch; `false` when it
    /// stopped at `max_batches` first.
    fn run_band(&self, report: &mut RollReport, max_batches: Option<u64>) -> Result<bool> {
        let (done, target) = {
            let c = self.roll_cursor();
            match c.band {
                Some(b) => (c.done, b.target),
                None => return Ok(true),
            }
        };
        let meta = self.cf(CF_META)?;
        let day_cf = self.cf(CF_WIN_1D)?;
        loop {
            if max_batches.is_some_and(|m| report.batches >= m) {
                return Ok(false);
            }
            let _excl = self.lock_writers_exclusive();
            let cursor = self.roll_cursor();
            let Some(band) = cursor.band.clone() else {
                break;
            };
            let (res, cf_name) = PHASES[usize::from(band.phase)];
            let width = res.width_ms();
            // The first window start worth reading: ends after `done`, still live.
            let live = first_live_start(res, self.retention_cutoff());
            let lo = if done == NONE_ROLLED {
                live
            } else {
                res.window_start(Timestamp(done)).max(live)
            };
            let mut it = self.db.raw_iterator_cf(self.cf(cf_name)?);
            it.seek(&band.resume);
            let mut days: BTreeMap<Vec<u8>, SeriesState> = BTreeMap::new();
            let (mut n, mut steps) = (0, 0);
            while n < CHUNK && steps < CHUNK_STEPS {
                steps += 1;
                let Some((key, value)) = it.item() else {
                    break;
                };
                let Some((part, _, wstart)) = split_window_key(key) else {
                    it.next();
                    continue;
                };
                if wstart < lo {
                    it.seek(window_key_from_prefix(part, res, lo));
                    continue;
                }
                if wstart.millis().saturating_add(width) > target {
                    it.seek(series_skip_key(part));
                    continue;
                }
                n += 1;
                if !value.is_empty() {
                    match SeriesState::decode(value) {
                        Ok(state) => {
                            let dk = window_key_from_prefix(
                                part,
                                Resolution::D1,
                                Resolution::D1.window_start(wstart),
                            );
                            let merged = match days.get_mut(&dk) {
                                None => {
                                    days.insert(dk, state);
                                    true
                                }
                                Some(acc) => acc.merge(&state).is_ok(),
                            };
                            if merged {
                                report.windows += 1;
                            } else {
                                report.corrupt += 1;
                            }
                        }
                        Err(_) => {
                            report.corrupt += 1;
                            self.counters.corrupt_values.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                it.next();
            }
            it.status().map_err(Error::rocks("iterate"))?;
            let next = match it.key() {
                Some(k) => RollCursor {
                    done,
                    band: Some(Band {
                        resume: k.to_vec(),
                        ..band
                    }),
                },
                None if usize::from(band.phase) + 1 < PHASES.len() => RollCursor {
                    done,
                    band: Some(Band {
                        target,
                        phase: band.phase + 1,
                        resume: Vec::new(),
                    }),
                },
                None => RollCursor::at(target),
            };
            drop(it);
            let mut batch = WriteBatch::default();
            for (k, state) in days {
                batch.merge_cf(day_cf, k, state.encode());
                report.daily_operands += 1;
            }
            batch.put_cf(meta, roll_cursor_key(), next.encode());
            self.db
                .write_opt(batch, &self.write_options())
                .map_err(Error::rocks("write"))?;
            report.batches += 1;
            *self.roll.write().unwrap_or_else(|e| e.into_inner()) = next;
        }
        report.rolled_until = as_instant(self.roll_cursor().done);
        Ok(true)
    }

    /// Reads the persisted cursor and settles it for this open: a store that rolls up on
    /// write records that every window is rolled; a store switching to rolling up behind
    /// the write path from one that rolled on write (or predates the cursor) has every
    /// window it may hold rolled already, so it starts from two days ahead, beyond any
    /// event time the server accepts. `marker_created` says the rollup marker was written by
    /// this open (a fresh store, or rollups just switched on from `rollups_from`).
    pub(crate) fn init_roll_cursor(&self, rollups_from: i64, marker_created: bool) -> Result<()> {
        let meta = self.cf(CF_META)?;
        let key = roll_cursor_key();
        let stored = match self
            .db
            .get_pinned_cf(meta, &key)
            .map_err(Error::rocks("get"))?
        {
            Some(v) => Some(RollCursor::decode(&v)?),
            None => None,
        };
        if !self.config.daily_rollups {
            if stored.is_some() {
                self.db
                    .delete_cf(meta, &key)
                    .map_err(Error::rocks("write"))?;
            }
            return Ok(());
        }
        let cursor = if self.config.rollup_after_ms == 0 {
            RollCursor::at(ALL_ROLLED)
        } else {
            match stored.clone() {
                Some(c) if c.done != ALL_ROLLED => c,
                None if marker_created => RollCursor::at(rollups_from),
                // Rolled on write until now.
                _ => {
                    let day = Resolution::D1.width_ms();
                    RollCursor::at(Resolution::D1.window_start(self.clock.now()).millis() + 2 * day)
                }
            }
        };
        if stored.as_ref() != Some(&cursor) {
            self.db
                .put_cf_opt(meta, &key, cursor.encode(), &self.write_options())
                .map_err(Error::rocks("write"))?;
        }
        *self.roll.write().unwrap_or_else(|e| e.into_inner()) = cursor;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        for c in [
            RollCursor::at(NONE_ROLLED),
            RollCursor::at(1_700_000_000_000),
            RollCursor {
                done: 5,
                band: Some(Band {
                    target: 900_000,
                    phase: 1,
                    resume: vec![1, 2, 3, 0xFF],
                }),
            },
        ] {
            assert_eq!(RollCursor::decode(&c.encode()).unwrap(), c);
        }
        let mut bad = RollCursor::at(7).encode();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(RollCursor::decode(&bad).is_err());
        assert!(RollCursor::decode(&seal(KIND_ROLL_CURSOR, &[0; 3])).is_err());
        assert!(RollCursor::decode(&seal(KIND_ROLL_CURSOR, &[0; 9 + 1])).is_err());
    }

    #[test]
    fn a_window_is_rolled_once_its_end_is_done_or_the_run_passed_its_key() {
        let m15 = Resolution::M15.width_ms();
        let c = RollCursor {
            done: 4 * m15,
            band: Some(Band {
                target: 8 * m15,
                phase: 0,
                resume: b"k".to_vec(),
            }),
        };
        let at = |i: i64| Timestamp(i * m15);
        assert!(c.is_rolled(Resolution::M15, b"z", at(3)), "ends at done");
        assert!(c.is_rolled(Resolution::M15, b"a", at(5)), "in band, passed");
        assert!(
            !c.is_rolled(Resolution::M15, b"k", at(5)),
            "in band, at resume"
        );
        assert!(!c.is_rolled(Resolution::M15, b"a", at(8)), "past the band");
        assert!(
            !c.is_rolled(Resolution::H1, b"a", at(4)),
            "hourly family not reached"
        );
        let later = RollCursor {
            band: Some(Band {
                phase: 1,
                resume: Vec::new(),
                ..c.band.clone().unwrap()
            }),
            ..c
        };
        assert!(later.is_rolled(Resolution::M15, b"zz", at(7)));
        assert!(!later.is_rolled(Resolution::H1, b"a", at(4)));
        assert!(RollCursor::at(ALL_ROLLED).is_rolled(Resolution::H1, b"", at(1 << 40)));
        assert!(!RollCursor::at(NONE_ROLLED).is_rolled(Resolution::M15, b"", at(-(1 << 40))));
    }
}
