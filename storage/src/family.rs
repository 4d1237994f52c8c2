//! Typed access to the non-window families (`meta`, `reference`, `pending`, `dedup`, `alerts`,
//! `outbox`): raw-byte keys built with [`crate::layout::KeyWriter`], values sealed in the
//! engine's envelope (`codec::seal`: version byte, kind byte, payload, crc32).
//!
//! For several changes that must land together (a dedup record with its sketch deltas), use a
//! [`crate::WriteSet`] instead of these single-key writes.

use driftdb_engine::codec::{open, seal};
use rocksdb::{DB, DBRawIteratorWithThreadMode, ReadOptions, WriteBatch};

use crate::error::{Error, Result};
use crate::layout::prefix_successor;
use crate::store::Store;
use crate::write::Family;

/// One record of a family: its key, and the kind and payload of its sealed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The full key.
    pub key: Vec<u8>,
    /// The value's kind byte (the caller's own tag).
    pub kind: u8,
    /// The value's payload.
    pub payload: Vec<u8>,
}

/// A handle on one non-window family of a [`Store`].
#[derive(Debug, Clone, Copy)]
pub struct FamilyRef<'a> {
    store: &'a Store,
    family: Family,
}

impl Store {
    /// A handle on `family`.
    pub fn family(&self, family: Family) -> FamilyRef<'_> {
        FamilyRef {
            store: self,
            family,
        }
    }
}

fn unseal(family: Family, key: &[u8], value: &[u8]) -> Result<Entry> {
    let (kind, payload) = open(value).map_err(|source| Error::CorruptValue {
        family: family.cf_name(),
        source,
    })?;
    Ok(Entry {
        key: key.to_vec(),
        kind,
        payload: payload.to_vec(),
    })
}

impl<'a> FamilyRef<'a> {
    /// The record under `key`; a value that fails its checksum is an
    /// [`Error::CorruptValue`].
    pub fn get(&self, key: &[u8]) -> Result<Option<Entry>> {
        let cf = self.store.family_cf(self.family)?;
        match self
            .store
            .db
            .get_pinned_cf(cf, key)
            .map_err(Error::rocks("get"))?
        {
            None => Ok(None),
            Some(v) => unseal(self.family, key, &v).map(Some),
        }
    }

    /// The records under `keys`, in the order of `keys`: one batched RocksDB `MultiGet`,
    /// much cheaper than a [`FamilyRef::get`] per key when most keys are absent (memtable and
    /// bloom filter probes are done together). A value that fails its checksum is an
    /// [`Error::CorruptValue`] in its own slot; the others are still answered.
    pub fn get_many<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<Vec<Result<Option<Entry>>>> {
        let cf = self.store.family_cf(self.family)?;
        // Sorted here rather than by RocksDB: a pattern-defeating sort finds the runs that
        // typical keys have (request ids counting up), and RocksDB then skips its own sort,
        // whose comparator call per comparison cost more than the lookups (families use the
        // bytewise order).
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_unstable_by(|a, b| keys[*a].as_ref().cmp(keys[*b].as_ref()));
        let found =
            self.store
                .db
                .batched_multi_get_cf(cf, order.iter().map(|i| keys[*i].as_ref()), true);
        let mut out: Vec<Result<Option<Entry>>> = Vec::with_capacity(keys.len());
        out.resize_with(keys.len(), || Ok(None));
        for (r, i) in found.into_iter().zip(order) {
            let key = keys[i].as_ref();
            out[i] = match r.map_err(Error::rocks("multi_get")) {
                Err(e) => Err(e),
                Ok(None) => Ok(None),
                Ok(Some(v)) => unseal(self.family, key, &v).map(Some),
            };
        }
        Ok(out)
    }

    /// Stores `payload` sealed as `kind` under `key`; durable when it returns (WAL, fsync per
    /// [`crate::StoreConfig::sync_writes`]).
    pub fn put(&self, key: &[u8], kind: u8, payload: &[u8]) -> Result<()> {
        let mut b = WriteBatch::default();
        b.put_cf(self.store.family_cf(self.family)?, key, seal(kind, payload));
        self.store
            .db
            .write_opt(b, &self.store.write_options())
            .map_err(Error::rocks("write"))
    }

    /// Deletes `key` (a no-op when absent).
    pub fn delete(&self, key: &[u8]) -> Result<()> {
        let mut b = WriteBatch::default();
        b.delete_cf(self.store.family_cf(self.family)?, key);
        self.store
            .db
            .write_opt(b, &self.store.write_options())
            .map_err(Error::rocks("write"))
    }

    /// Every record whose key starts with `prefix`, in key order. A corrupt value yields an
    /// `Err` item and the scan continues after it.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<FamilyIter<'a>> {
        let cf = self.store.family_cf(self.family)?;
        let mut ro = ReadOptions::default();
        if let Some(u) = prefix_successor(prefix) {
            ro.set_iterate_upper_bound(u);
        }
        let mut it = self.store.db.raw_iterator_cf_opt(cf, ro);
        it.seek(prefix);
        Ok(FamilyIter {
            it,
            family: self.family,
            positioned: true,
            done: false,
        })
    }
}

/// Records of one family in key order; see [`FamilyRef::scan_prefix`].
pub struct FamilyIter<'a> {
    it: DBRawIteratorWithThreadMode<'a, DB>,
    family: Family,
    positioned: bool,
    done: bool,
}

impl std::fmt::Debug for FamilyIter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FamilyIter")
            .field("family", &self.family)
            .finish_non_exhaustive()
    }
}

impl Iterator for FamilyIter<'_> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        if self.done {
            return None;
        }
        if !self.positioned {
            self.it.next();
        }
        self.positioned = false;
        match self.it.item() {
            Some((k, v)) => Some(unseal(self.family, k, v)),
            None => {
                self.done = true;
                self.it
                    .status()
                    .err()
                    .map(|e| Err(Error::rocks("iterate")(e)))
            }
        }
    }
}
