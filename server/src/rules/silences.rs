//! The silence store: silences in the `meta` family, every version kept, all of them cached in
//! memory (a node holds tens or hundreds, not millions).
//!
//! `'Q' | str(id)` holds the current version, `'W' | str(id) | u64(version)` every version
//! (creation, then an expiry by a user), both sealed as [`crate::records::SilenceVersion`].
//! Ids are `s-<n>`, `n` one more than the largest ever stored, so an id is never reused.
//! Expired silences stay listed with `?expired=true` (the record of who muted what, and why).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use driftdb_engine::rules::{Alert, Silence, SilenceState};
use driftdb_engine::time::Timestamp;
use driftdb_storage::layout::{self, KeyWriter};
use driftdb_storage::{Family, Store, WriteSet};

use crate::error::{Error, Result};
use crate::records::{self, SilenceVersion};

/// A silence as stored: the silence, its version, when it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSilence {
    /// The silence (its `id` filled in).
    pub silence: Silence,
    /// 1 when created, +1 per change.
    pub version: u64,
    /// When this version was written.
    pub updated_at: Timestamp,
}

/// Every silence of the node, cached over the store.
#[derive(Debug)]
pub struct SilenceBook {
    store: Arc<Store>,
    silences: RwLock<BTreeMap<String, StoredSilence>>,
}

fn current_key(id: &str) -> Vec<u8> {
    KeyWriter::with_prefix(layout::META_SILENCE)
        .str(id)
        .finish()
}

fn version_key(id: &str, version: u64) -> Vec<u8> {
    KeyWriter::with_prefix(layout::META_SILENCE_VERSION)
        .str(id)
        .u64(version)
        .finish()
}

fn poisoned<T>(_: T) -> Error {
    Error::Internal("silence book lock poisoned".into())
}

/// The number in an id `s-<n>`.
fn id_number(id: &str) -> Option<u64> {
    id.strip_prefix("s-")?.parse().ok()
}

impl SilenceBook {
    /// Loads every stored silence.
    pub fn load(store: Arc<Store>) -> Result<SilenceBook> {
        let mut silences = BTreeMap::new();
        for e in store
            .family(Family::Meta)
            .scan_prefix(&[layout::META_SILENCE])?
        {
            let rec: SilenceVersion = records::decode(&e?)?;
            silences.insert(
                rec.silence.id.clone(),
                StoredSilence {
                    silence: rec.silence,
                    version: rec.version,
                    updated_at: Timestamp(rec.updated_at_ms),
                },
            );
        }
        Ok(SilenceBook {
            store,
            silences: RwLock::new(silences),
        })
    }

    fn write(&self, s: &StoredSilence) -> Result<()> {
        let rec = SilenceVersion {
            version: s.version,
            updated_at_ms: s.updated_at.millis(),
            silence: s.silence.clone(),
        };
        let mut ws = WriteSet::new();
        records::put(&mut ws, Family::Meta, current_key(&s.silence.id), &rec)?;
        records::put(
            &mut ws,
            Family::Meta,
            version_key(&s.silence.id, s.version),
            &rec,
        )?;
        self.store.write(&ws)?;
        Ok(())
    }

    /// Stores a new silence (already validated) under the next id; returns it.
    pub fn create(&self, mut silence: Silence, now: Timestamp) -> Result<StoredSilence> {
        let mut map = self.silences.write().map_err(poisoned)?;
        let next = map.keys().filter_map(|id| id_number(id)).max().unwrap_or(0) + 1;
        silence.id = format!("s-{next}");
        let stored = StoredSilence {
            silence,
            version: 1,
            updated_at: now,
        };
        self.write(&stored)?;
        map.insert(stored.silence.id.clone(), stored.clone());
        Ok(stored)
    }

    /// Ends silence `id` now (a pending one never starts); a new version. Expiring an expired
    /// silence changes nothing.
    pub fn expire(&self, id: &str, now: Timestamp) -> Result<StoredSilence> {
        let mut map = self.silences.write().map_err(poisoned)?;
        let Some(cur) = map.get(id) else {
            return Err(Error::NotFound {
                what: "silence",
                name: id.to_string(),
            });
        };
        if cur.silence.state(now) == SilenceState::Expired {
            return Ok(cur.clone());
        }
        let mut next = cur.clone();
        next.silence.ends_at_ms = now.millis();
        next.silence.starts_at_ms = next.silence.starts_at_ms.min(now.millis());
        next.version += 1;
        next.updated_at = now;
        self.write(&next)?;
        map.insert(id.to_string(), next.clone());
        Ok(next)
    }

    /// One silence.
    pub fn get(&self, id: &str) -> Option<StoredSilence> {
        self.silences.read().ok()?.get(id).cloned()
    }

    /// Every stored version of silence `id`, oldest first.
    pub fn history(&self, id: &str) -> Result<Vec<StoredSilence>> {
        let prefix = KeyWriter::with_prefix(layout::META_SILENCE_VERSION)
            .str(id)
            .finish();
        let mut out = Vec::new();
        for e in self.store.family(Family::Meta).scan_prefix(&prefix)? {
            let rec: SilenceVersion = records::decode(&e?)?;
            out.push(StoredSilence {
                silence: rec.silence,
                version: rec.version,
                updated_at: Timestamp(rec.updated_at_ms),
            });
        }
        Ok(out)
    }

    /// Silences not yet expired at `now` (every one with `expired`), by id number.
    pub fn list(&self, expired: bool, now: Timestamp) -> Vec<StoredSilence> {
        let Ok(map) = self.silences.read() else {
            return Vec::new();
        };
        let mut out: Vec<StoredSilence> = map
            .values()
            .filter(|s| expired || s.silence.state(now) != SilenceState::Expired)
            .cloned()
            .collect();
        out.sort_by_key(|s| id_number(&s.silence.id));
        out
    }

    /// The id of the first silence (by id number) active at `at` that matches `alert`.
    pub fn silencing(&self, alert: &Alert, at: Timestamp) -> Option<String> {
        let map = self.silences.read().ok()?;
        map.values()
            .filter(|s| s.silence.silences(alert, at))
            .min_by_key(|s| id_number(&s.silence.id))
            .map(|s| s.silence.id.clone())
    }
}
