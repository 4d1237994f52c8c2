//! [`WriteSet`]: everything one acknowledged ingest step writes, applied as one atomic,
//! WAL-logged RocksDB batch (storage/FORMAT.md; docs/DATA_MODEL.md, scale-out 4).

use driftdb_engine::codec::seal;
use driftdb_engine::series::SeriesKey;
use driftdb_engine::sketch::SeriesState;
use driftdb_engine::time::{Resolution, Timestamp};

use crate::layout::{
    CF_ALERTS, CF_DEDUP, CF_META, CF_OUTBOX, CF_PENDING, CF_REFERENCE, WINDOW_SUFFIX_LEN,
    series_prefix,
};

/// A column family outside the window families; its values are sealed envelopes
/// (`driftdb_engine::codec::seal`: version byte, kind byte, payload, crc32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// [`CF_META`]: models, versions, storage watermarks.
    Meta,
    /// [`CF_REFERENCE`]: reference profiles.
    Reference,
    /// [`CF_PENDING`]: pending label joins.
    Pending,
    /// [`CF_DEDUP`]: request ids and producer batch sequences.
    Dedup,
    /// [`CF_ALERTS`]: alert history and rule state.
    Alerts,
    /// [`CF_OUTBOX`]: webhook deliveries.
    Outbox,
}

impl Family {
    /// Every family.
    pub const ALL: [Family; 6] = [
        Family::Meta,
        Family::Reference,
        Family::Pending,
        Family::Dedup,
        Family::Alerts,
        Family::Outbox,
    ];

    /// The column family's name.
    pub fn cf_name(self) -> &'static str {
        match self {
            Family::Meta => CF_META,
            Family::Reference => CF_REFERENCE,
            Family::Pending => CF_PENDING,
            Family::Dedup => CF_DEDUP,
            Family::Alerts => CF_ALERTS,
            Family::Outbox => CF_OUTBOX,
        }
    }
}

/// One sketch delta: merge `state` into the window of `series` at `resolution` starting at
/// `start`.
#[derive(Debug, Clone)]
pub(crate) struct Delta {
    /// The encoded series ([`series_prefix`]).
    pub series_prefix: Vec<u8>,
    pub resolution: Resolution,
    pub start: Timestamp,
    /// The encoded state ([`SeriesState::encode`]).
    pub value: Vec<u8>,
}

/// RocksDB's write batch header: sequence number and count.
const BATCH_HEADER: usize = 12;
/// Per record: a tag byte, the column family id and two length varints (5 bytes each at most).
const RECORD_OVERHEAD: usize = 16;

/// A put or delete in a non-window family.
#[derive(Debug, Clone)]
pub(crate) enum FamilyOp {
    Put {
        family: Family,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        family: Family,
        key: Vec<u8>,
    },
}

/// Sketch deltas (merges into windows) plus puts and deletes in other families, written by
/// [`crate::Store::write`] as one atomic batch: either all of it survives a crash or none.
///
/// Ops apply in the order added; a later put or delete of the same key wins.
#[derive(Debug, Clone, Default)]
pub struct WriteSet {
    pub(crate) deltas: Vec<Delta>,
    pub(crate) ops: Vec<FamilyOp>,
}

impl WriteSet {
    /// An empty write set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Merges `delta` into the window of `series` at `resolution` holding `ts` (the window
    /// start is `resolution.window_start(ts)`).
    pub fn merge(
        &mut self,
        series: &SeriesKey,
        resolution: Resolution,
        ts: Timestamp,
        delta: &SeriesState,
    ) {
        self.merge_encoded(series_prefix(series), resolution, ts, delta.encode());
    }

    /// Like [`WriteSet::merge`] with the series already encoded
    /// ([`crate::layout::series_prefix`]) and the state already encoded
    /// ([`SeriesState::encode`]); saves work when one series gets many windows. A value that
    /// does not decode is stored but skipped and counted by every later merge and read.
    pub fn merge_encoded(
        &mut self,
        series_prefix: Vec<u8>,
        resolution: Resolution,
        ts: Timestamp,
        value: Vec<u8>,
    ) {
        self.deltas.push(Delta {
            series_prefix,
            resolution,
            start: resolution.window_start(ts),
            value,
        });
    }

    /// Puts `payload` sealed as a value of `kind` under `key` in `family`.
    pub fn put(&mut self, family: Family, key: impl Into<Vec<u8>>, kind: u8, payload: &[u8]) {
        self.ops.push(FamilyOp::Put {
            family,
            key: key.into(),
            value: seal(kind, payload),
        });
    }

    /// Puts `value`, already a whole sealed envelope (`driftdb_engine::codec::seal`, or
    /// `Writer::sealed` … `finish_sealed`), under `key` in `family`: for callers that build
    /// many values of one shape and seal them in place.
    pub fn put_sealed(&mut self, family: Family, key: impl Into<Vec<u8>>, value: Vec<u8>) {
        debug_assert!(
            driftdb_engine::codec::open(&value).is_ok(),
            "put_sealed takes a sealed envelope"
        );
        self.ops.push(FamilyOp::Put {
            family,
            key: key.into(),
            value,
        });
    }

    /// Deletes `key` from `family`.
    pub fn delete(&mut self, family: Family, key: impl Into<Vec<u8>>) {
        self.ops.push(FamilyOp::Delete {
            family,
            key: key.into(),
        });
    }

    /// Number of sketch deltas.
    pub fn delta_count(&self) -> usize {
        self.deltas.len()
    }

    /// Bytes of the RocksDB write batch this set becomes, deltas counted once (a delta also
    /// merged into its day adds its size again): a record's key and value plus its tag,
    /// column family and length varints, at most [`RECORD_OVERHEAD`] bytes.
    pub(crate) fn batch_bytes(&self) -> usize {
        let deltas: usize = self
            .deltas
            .iter()
            .map(|d| d.series_prefix.len() + WINDOW_SUFFIX_LEN + d.value.len() + RECORD_OVERHEAD)
            .sum();
        let ops: usize = self
            .ops
            .iter()
            .map(|op| match op {
                FamilyOp::Put { key, value, .. } => key.len() + value.len() + RECORD_OVERHEAD,
                FamilyOp::Delete { key, .. } => key.len() + RECORD_OVERHEAD,
            })
            .sum();
        BATCH_HEADER + deltas + ops
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.deltas.is_empty() && self.ops.is_empty()
    }

    /// Removes everything, keeping allocations.
    pub fn clear(&mut self) {
        self.deltas.clear();
        self.ops.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::window_key_from_prefix;

    /// The estimate is an upper bound of what RocksDB's batch holds (so the buffer never
    /// grows) and not far above it.
    #[test]
    fn batch_bytes_bounds_the_rocksdb_batch() {
        let mut set = WriteSet::new();
        for i in 0..50u8 {
            let value = vec![i; 40 + 300 * usize::from(i % 3)];
            set.merge_encoded(vec![b'p', i], Resolution::M15, Timestamp(0), value);
        }
        set.put(Family::Dedup, vec![7u8; 30], 1, &[1; 200]);
        set.delete(Family::Pending, vec![8u8; 20]);
        // 300 (two bytes) and 17 column families: the widest varints a real batch has.
        let mut b = rocksdb::WriteBatch::default();
        for d in &set.deltas {
            b.merge(
                window_key_from_prefix(&d.series_prefix, d.resolution, d.start),
                &d.value,
            );
        }
        for op in &set.ops {
            match op {
                FamilyOp::Put { key, value, .. } => b.put(key, value),
                FamilyOp::Delete { key, .. } => b.delete(key),
            }
        }
        let actual = b.size_in_bytes();
        let estimate = set.batch_bytes();
        assert!(estimate >= actual, "{estimate} < {actual}");
        assert!(
            estimate <= actual + 52 * RECORD_OVERHEAD,
            "{estimate} vs {actual}"
        );
    }
}
