//! The window merge operator and the retention compaction filter.
//!
//! Ingest never reads before it writes: every sketch delta is a RocksDB merge operand
//! (docs/DATA_MODEL.md, scale-out 5) and the operator folds operands with the engine's [`merge_encoded`], which is
//! associative and commutative, so RocksDB may group operands any way (full and partial merge
//! use the same function). Operands that fail their checksum are left out and counted, never
//! folded in as data (SECURITY.md), and the operator never panics across the FFI boundary.
//!
//! An **empty value** is the operator's "nothing": it is what a merge of only corrupt operands
//! produces, is skipped by later merges and by reads, and is removed by the compaction filter.

use std::ffi::CStr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use driftdb_engine::sketch::merge_encoded;
use driftdb_engine::time::{Clock, Resolution, Timestamp};
use rocksdb::MergeOperands;
use rocksdb::compaction_filter::{CompactionFilter, Decision};
use rocksdb::compaction_filter_factory::{CompactionFilterContext, CompactionFilterFactory};

use crate::layout::split_window_key;

/// Counters shared by the store, its merge operators and compaction filters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Merge operands skipped because they did not decode (each time a merge met them).
    pub corrupt_operands: AtomicU64,
    /// Stored window values that reads or downsampling skipped because they did not decode.
    pub corrupt_values: AtomicU64,
    /// Window keys (values) removed by the retention filter.
    pub expired_removed: AtomicU64,
    /// Pending label-join records removed by the expiry filter.
    pub pending_removed: AtomicU64,
}

/// Merges `existing` and `operands` into one encoded state; corrupt operands are counted.
pub(crate) fn merge_window_values<'a>(
    existing: Option<&'a [u8]>,
    operands: impl Iterator<Item = &'a [u8]>,
    counters: &Counters,
) -> Vec<u8> {
    let values: Vec<&[u8]> = existing
        .into_iter()
        .chain(operands)
        .filter(|v| !v.is_empty())
        .collect();
    let merged = catch_unwind(AssertUnwindSafe(|| merge_encoded(values.iter().copied())));
    let (bytes, corrupt) = match merged {
        Ok(m) => (m.bytes, m.corrupt),
        // A panic inside a sketch library on hostile bytes: fold operands one at a time and
        // leave out only those whose merge panics.
        Err(_) => {
            let mut acc: Option<Vec<u8>> = None;
            let mut corrupt = 0;
            for v in values {
                let step = catch_unwind(AssertUnwindSafe(|| match &acc {
                    None => merge_encoded([v]),
                    Some(a) => merge_encoded([a.as_slice(), v]),
                }));
                match step {
                    Ok(m) => {
                        corrupt += m.corrupt;
                        if m.bytes.is_some() {
                            acc = m.bytes;
                        }
                    }
                    Err(_) => corrupt += 1,
                }
            }
            (acc, corrupt)
        }
    };
    if corrupt > 0 {
        counters
            .corrupt_operands
            .fetch_add(corrupt as u64, Ordering::Relaxed);
    }
    bytes.unwrap_or_default()
}

/// The merge function installed on every window column family.
pub(crate) fn window_merge_operator(
    counters: Arc<Counters>,
) -> impl Fn(&[u8], Option<&[u8]>, &MergeOperands) -> Option<Vec<u8>> + Clone + Send + Sync + 'static
{
    move |_key, existing, operands| Some(merge_window_values(existing, operands.iter(), &counters))
}

/// Whether a window of `res` starting at `start` is past retention at `cutoff`
/// (`now - retention`): its end is at or before the cutoff.
pub fn is_expired(res: Resolution, start: Timestamp, cutoff: Timestamp) -> bool {
    start.millis().saturating_add(res.width_ms()) <= cutoff.millis()
}

/// The first window start still live at `cutoff` for `res`.
pub fn first_live_start(res: Resolution, cutoff: Timestamp) -> Timestamp {
    Timestamp(
        cutoff
            .millis()
            .saturating_sub(res.width_ms())
            .saturating_add(1),
    )
}

/// Creates one [`RetentionFilter`] per compaction, reading "now" once from the clock.
pub(crate) struct RetentionFilterFactory {
    pub clock: Arc<dyn Clock>,
    pub retention_ms: i64,
    pub counters: Arc<Counters>,
}

impl CompactionFilterFactory for RetentionFilterFactory {
    type Filter = RetentionFilter;

    fn create(&mut self, _context: CompactionFilterContext) -> RetentionFilter {
        RetentionFilter {
            cutoff: self.clock.now().saturating_add_ms(-self.retention_ms),
            counters: Arc::clone(&self.counters),
        }
    }

    fn name(&self) -> &CStr {
        c"driftdb.retention.factory"
    }
}

/// Drops window values whose window ended at or before `cutoff`, and empty values.
///
/// RocksDB's C API passes plain values to the filter but not merge operands; operand-only keys
/// are first full-merged into a plain value when compaction reaches the bottommost level and
/// dropped by the next compaction of that file (see `FORMAT.md`, "Retention").
pub(crate) struct RetentionFilter {
    cutoff: Timestamp,
    counters: Arc<Counters>,
}

impl CompactionFilter for RetentionFilter {
    fn filter(&mut self, _level: u32, key: &[u8], value: &[u8]) -> Decision {
        let expired = match split_window_key(key) {
            Some((_, res, start)) => is_expired(res, start, self.cutoff),
            // A key we cannot parse is kept: never delete what we do not understand.
            None => false,
        };
        if expired {
            self.counters
                .expired_removed
                .fetch_add(1, Ordering::Relaxed);
            Decision::Remove
        } else if value.is_empty() {
            Decision::Remove
        } else {
            Decision::Keep
        }
    }

    fn name(&self) -> &CStr {
        c"driftdb.retention"
    }
}

impl std::fmt::Debug for RetentionFilterFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetentionFilterFactory")
            .field("retention_ms", &self.retention_ms)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RetentionFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetentionFilter")
            .field("cutoff", &self.cutoff)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use driftdb_engine::sketch::{NumericState, SeriesState};

    use super::*;

    fn numeric(values: &[f64]) -> Vec<u8> {
        let mut s = NumericState::new(None);
        for v in values {
            s.observe(*v, None);
        }
        SeriesState::Numeric(s).encode()
    }

    fn count(bytes: &[u8]) -> u64 {
        match SeriesState::decode(bytes).unwrap() {
            SeriesState::Numeric(n) => n.count(),
            other => panic!("unexpected {}", other.kind_name()),
        }
    }

    #[test]
    fn merges_and_counts_corrupt_operands() {
        let c = Counters::default();
        let a = numeric(&[1.0, 2.0]);
        let b = numeric(&[3.0]);
        let mut bad = numeric(&[4.0]);
        bad[3] ^= 0x40;
        let ops = [b.as_slice(), bad.as_slice(), b"garbage".as_slice()];
        let out = merge_window_values(Some(&a), ops.iter().copied(), &c);
        assert_eq!(count(&out), 3);
        assert_eq!(c.corrupt_operands.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn only_corrupt_operands_merge_to_nothing_and_nothing_is_identity() {
        let c = Counters::default();
        let out = merge_window_values(None, [b"xx".as_slice()].into_iter(), &c);
        assert!(out.is_empty());
        let a = numeric(&[1.0]);
        let out = merge_window_values(Some(&out), [a.as_slice()].into_iter(), &c);
        assert_eq!(count(&out), 1);
        assert_eq!(c.corrupt_operands.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn expiry_is_by_window_end() {
        let cutoff = Timestamp(3_600_000);
        assert!(is_expired(Resolution::M15, Timestamp(2_700_000), cutoff));
        assert!(!is_expired(Resolution::M15, Timestamp(2_700_001), cutoff));
        assert!(!is_expired(Resolution::H1, Timestamp(1), cutoff));
        let first = first_live_start(Resolution::M15, cutoff);
        assert!(!is_expired(Resolution::M15, first, cutoff));
        assert!(is_expired(
            Resolution::M15,
            Timestamp(first.millis() - 1),
            cutoff
        ));
    }
}
