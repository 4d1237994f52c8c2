//! Expiry of the label-join records (`pending` family): every record written by this version
//! carries a deadline, and a record whose deadline has passed its model's **expiry clock** is
//! removed by a compaction filter, so the family stays bounded by the predictions of the last
//! `max_label_delay` (FORMAT.md §5, "Pending expiry").
//!
//! The expiry clock of a model is the newest event time ingested for it (not the wall clock):
//! a backfill of old data joins its labels exactly as live traffic does, and a replay of the
//! same events expires the same records. The clocks are held in memory, advanced by ingest
//! ([`Store::advance_pending_clock`]) and written to `meta` by [`Store::persist_pending_clocks`]
//! (the maintenance task calls it every minute), so expiry resumes after a restart.
//!
//! The filter reads only the first bytes of a value — the envelope's kind, the record's tag
//! and its deadline — as the layout below fixes them; what a record means is the server's
//! business (`server/src/records/pending.rs`):
//!
//! ```text
//! value   = envelope(kind 0x30, payload)
//! payload = tag u8 | deadline i64le (tags with bit 0x10 set) | the record
//!   0x11 prediction waiting for its label   removed once clock > deadline + memory
//!   0x12 label waiting for its prediction    removed once clock > deadline
//!   0x13 joined (kept for duplicates)        removed once clock > deadline
//!   0x01 0x02 0x03 (older builds: no deadline) kept
//! ```
//!
//! A prediction outlives its deadline by `memory = min(max_label_delay, 1 day)`: in that time
//! it is the tombstone that lets a label arriving too late be counted as expired rather than
//! held as pending.

use std::collections::HashMap;
use std::ffi::CStr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use driftdb_engine::codec::{open, seal};
use rocksdb::compaction_filter::{CompactionFilter, Decision};
use rocksdb::compaction_filter_factory::{CompactionFilterContext, CompactionFilterFactory};
use rocksdb::{BottommostLevelCompaction, CompactOptions};

use crate::error::{Error, Result};
use crate::layout::{CF_META, CF_PENDING, KeyReader, KeyWriter, META_STORAGE, PENDING_BY_ID};
use crate::merge::Counters;
use crate::store::Store;

/// The envelope kind of a pending record.
pub const PENDING_KIND: u8 = 0x30;
/// Tag bit: the record carries a deadline.
pub const TAG_DEADLINE: u8 = 0x10;
/// A prediction waiting for its label, with a deadline.
pub const TAG_PREDICTION: u8 = 0x11;
/// A label waiting for its prediction, with a deadline.
pub const TAG_LABEL: u8 = 0x12;
/// A joined record, with a deadline.
pub const TAG_JOINED: u8 = 0x13;
/// How long an expired prediction is kept at most, as a tombstone.
pub const MAX_TOMBSTONE_MS: i64 = 86_400_000;
/// Value kind of a persisted expiry clock in `meta` (payload: i64le clock, i64le delay).
const KIND_PENDING_CLOCK: u8 = 0xF2;
/// `meta` key name of the persisted clocks.
const META_PENDING_CLOCK_NAME: &[u8] = b"pending-clock";

/// One model's expiry clock: the newest event time ingested and the model's label delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryClock {
    /// Newest event time ingested for the model (ms).
    pub now_ms: i64,
    /// The model's `max_label_delay` (ms).
    pub delay_ms: i64,
}

impl ExpiryClock {
    /// How long an expired prediction stays as a tombstone.
    pub fn tombstone_ms(&self) -> i64 {
        self.delay_ms.clamp(0, MAX_TOMBSTONE_MS)
    }
}

/// The expiry clocks of every model, shared by the store and its compaction filter.
#[derive(Debug, Default)]
pub(crate) struct Clocks {
    map: RwLock<HashMap<String, ExpiryClock>>,
}

impl Clocks {
    pub(crate) fn get(&self, model: &str) -> Option<ExpiryClock> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(model)
            .copied()
    }
}

/// What the compaction filter should do with one pending value under `clock`.
pub fn expired(value_payload: &[u8], clock: ExpiryClock) -> bool {
    let Some((&tag, rest)) = value_payload.split_first() else {
        return false;
    };
    if tag & TAG_DEADLINE == 0 || rest.len() < 8 {
        return false;
    }
    let mut d = [0u8; 8];
    d.copy_from_slice(&rest[..8]);
    let deadline = i64::from_le_bytes(d);
    match tag {
        TAG_PREDICTION => clock.now_ms > deadline.saturating_add(clock.tombstone_ms()),
        TAG_LABEL | TAG_JOINED => clock.now_ms > deadline,
        _ => false,
    }
}

fn clock_key(model: &str) -> Vec<u8> {
    let mut w = KeyWriter::with_prefix(META_STORAGE);
    w.raw(META_PENDING_CLOCK_NAME).u8(0).str(model);
    w.finish()
}

impl Store {
    /// Moves `model`'s expiry clock forward to `event_ms` (never back) and records its label
    /// delay. Ingest calls it after each durable write with the batch's newest accepted time.
    pub fn advance_pending_clock(&self, model: &str, event_ms: i64, delay_ms: i64) {
        let mut map = self
            .pending_clocks
            .map
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let c = map.entry(model.to_string()).or_insert(ExpiryClock {
            now_ms: i64::MIN,
            delay_ms,
        });
        c.now_ms = c.now_ms.max(event_ms);
        c.delay_ms = delay_ms;
    }

    /// `model`'s expiry clock, if anything was ingested for it.
    pub fn pending_clock(&self, model: &str) -> Option<ExpiryClock> {
        self.pending_clocks.get(model)
    }

    /// Writes every expiry clock to `meta`, so expiry resumes after a restart.
    pub fn persist_pending_clocks(&self) -> Result<()> {
        let clocks: Vec<(String, ExpiryClock)> = self
            .pending_clocks
            .map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(m, c)| (m.clone(), *c))
            .collect();
        if clocks.is_empty() {
            return Ok(());
        }
        let cf = self.cf(CF_META)?;
        let mut b = rocksdb::WriteBatch::default();
        for (m, c) in clocks {
            let mut v = Vec::with_capacity(16);
            v.extend_from_slice(&c.now_ms.to_le_bytes());
            v.extend_from_slice(&c.delay_ms.to_le_bytes());
            b.put_cf(cf, clock_key(&m), seal(KIND_PENDING_CLOCK, &v));
        }
        self.db
            .write_opt(b, &self.write_options())
            .map_err(Error::rocks("write"))
    }

    /// Reads the persisted expiry clocks (at open).
    pub(crate) fn load_pending_clocks(&self) -> Result<()> {
        let cf = self.cf(CF_META)?;
        let mut prefix = vec![META_STORAGE];
        prefix.extend_from_slice(META_PENDING_CLOCK_NAME);
        prefix.push(0);
        let mut map = self
            .pending_clocks
            .map
            .write()
            .unwrap_or_else(|e| e.into_inner());
        for item in self.db.prefix_iterator_cf(cf, &prefix) {
            let (k, v) = item.map_err(Error::rocks("read"))?;
            if !k.starts_with(&prefix) {
                break;
            }
            let mut r = KeyReader::new("meta", &k[prefix.len()..]);
            let Ok(model) = r.str() else { continue };
            let Ok((kind, p)) = open(&v) else { continue };
            if kind != KIND_PENDING_CLOCK || p.len() != 16 {
                continue;
            }
            let mut a = [0u8; 8];
            a.copy_from_slice(&p[..8]);
            let now_ms = i64::from_le_bytes(a);
            a.copy_from_slice(&p[8..]);
            let delay_ms = i64::from_le_bytes(a);
            map.insert(model, ExpiryClock { now_ms, delay_ms });
        }
        Ok(())
    }

    /// Compacts the `pending` family to its last level, so the expiry filter sees every
    /// record now rather than when RocksDB next compacts it. Blocks until done.
    pub fn compact_pending(&self) -> Result<()> {
        let mut opts = CompactOptions::default();
        opts.set_bottommost_level_compaction(BottommostLevelCompaction::Force);
        opts.set_exclusive_manual_compaction(false);
        self.db
            .compact_range_cf_opt(self.cf(CF_PENDING)?, None::<&[u8]>, None::<&[u8]>, &opts);
        Ok(())
    }

    /// Pending records the expiry filter removed, since open.
    pub fn pending_expired_removed(&self) -> u64 {
        self.counters.pending_removed.load(Ordering::Relaxed)
    }
}

/// Creates one [`PendingFilter`] per compaction.
pub(crate) struct PendingFilterFactory {
    pub(crate) clocks: Arc<Clocks>,
    pub(crate) counters: Arc<Counters>,
}

impl CompactionFilterFactory for PendingFilterFactory {
    type Filter = PendingFilter;

    fn create(&mut self, _context: CompactionFilterContext) -> PendingFilter {
        PendingFilter {
            clocks: Arc::clone(&self.clocks),
            counters: Arc::clone(&self.counters),
            last: None,
        }
    }

    fn name(&self) -> &CStr {
        c"driftdb.pending-expiry.factory"
    }
}

/// Removes pending records past their deadline (see the module docs).
pub(crate) struct PendingFilter {
    clocks: Arc<Clocks>,
    counters: Arc<Counters>,
    /// The last model looked up and its clock (keys come in order, so runs of one model).
    last: Option<(Vec<u8>, Option<ExpiryClock>)>,
}

impl PendingFilter {
    fn clock_of(&mut self, model_key: &[u8]) -> Option<ExpiryClock> {
        if let Some((k, c)) = &self.last
            && k.as_slice() == model_key
        {
            return *c;
        }
        let mut r = KeyReader::new("pending", model_key);
        let c = r.str().ok().and_then(|m| self.clocks.get(&m));
        self.last = Some((model_key.to_vec(), c));
        c
    }
}

impl CompactionFilter for PendingFilter {
    fn filter(&mut self, _level: u32, key: &[u8], value: &[u8]) -> Decision {
        // `'I' | str(model) | str(request id)`: anything else is kept.
        let Some((&PENDING_BY_ID, rest)) = key.split_first() else {
            return Decision::Keep;
        };
        // The model part ends at the first unescaped `00 01`.
        let mut end = None;
        let mut i = 0;
        while i + 1 < rest.len() {
            if rest[i] == 0 {
                if rest[i + 1] == 1 {
                    end = Some(i + 2);
                    break;
                }
                i += 2;
            } else {
                i += 1;
            }
        }
        let Some(end) = end else {
            return Decision::Keep;
        };
        let Some(clock) = self.clock_of(&rest[..end]) else {
            return Decision::Keep;
        };
        let Ok((kind, payload)) = open(value) else {
            return Decision::Keep;
        };
        if kind == PENDING_KIND && expired(payload, clock) {
            self.counters
                .pending_removed
                .fetch_add(1, Ordering::Relaxed);
            Decision::Remove
        } else {
            Decision::Keep
        }
    }

    fn name(&self) -> &CStr {
        c"driftdb.pending-expiry"
    }
}

impl std::fmt::Debug for PendingFilterFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingFilterFactory")
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for PendingFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingFilter").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(tag: u8, deadline: i64) -> Vec<u8> {
        let mut p = vec![tag];
        p.extend_from_slice(&deadline.to_le_bytes());
        p.push(7);
        p
    }

    #[test]
    fn deadlines_against_the_clock() {
        let c = |now_ms| ExpiryClock {
            now_ms,
            delay_ms: 3_600_000,
        };
        // A held label and a joined record go at their deadline.
        assert!(!expired(&payload(TAG_LABEL, 1000), c(1000)));
        assert!(expired(&payload(TAG_LABEL, 1000), c(1001)));
        assert!(expired(&payload(TAG_JOINED, 1000), c(1001)));
        // A prediction stays one more delay (at most a day) as the tombstone of its label.
        assert!(!expired(&payload(TAG_PREDICTION, 1000), c(1001)));
        assert!(!expired(&payload(TAG_PREDICTION, 1000), c(3_601_000)));
        assert!(expired(&payload(TAG_PREDICTION, 1000), c(3_601_001)));
        let long = ExpiryClock {
            now_ms: 1000 + MAX_TOMBSTONE_MS + 1,
            delay_ms: 30 * MAX_TOMBSTONE_MS,
        };
        assert!(expired(&payload(TAG_PREDICTION, 1000), long));
        // Older records without a deadline, and garbage, are kept.
        for old in [vec![1u8, 0, 0], vec![3u8], vec![], vec![0x11, 1, 2]] {
            assert!(!expired(&old, c(i64::MAX)), "{old:?}");
        }
    }
}
