//! Every record the node stores outside the window families, in one place: one kind enum
//! ([`RecordKind`], the kind byte of the value envelope), one codec per record ([`Record`]),
//! and one way to write and read them ([`put`], [`decode`], [`get`]).
//!
//! | kind | byte | family, key | payload |
//! |---|---|---|---|
//! | [`RecordKind::Model`] | `0x10` | meta `'M' \| str(model)` | the model definition, JSON |
//! | [`RecordKind::Segments`] | `0x11` | meta `'S' \| str(model)` | admitted segment values, binary |
//! | [`RecordKind::Reference`] | `0x20` | reference `'H' \| str(model) \| str(version)` | the reference profile's codec |
//! | [`RecordKind::Pending`] | `0x30` | pending `'I' \| str(model) \| str(request id)` | a prediction, a label or "joined", binary |
//! | [`RecordKind::Producer`] | `0x31` | dedup `'P' \| str(model) \| str(kind) \| str(producer)` | last applied sequence, varint |
//! | [`RecordKind::AlertState`] | `0x40` | alerts `'S' \| …` | the engine's sealed alert state |
//! | [`RecordKind::Rule`] | `0x50` | meta `'R' \| str(id)`, `'U' \| str(id) \| u64(version)` | a rule version, JSON |
//! | [`RecordKind::Alert`] | `0x51` | alerts `'L' \| u64(seq)` | an alert record, JSON |
//! | [`RecordKind::EventId`] | `0x52` | alerts `'K' \| str(event id)` | the sequence it was recorded as, varint |
//! | [`RecordKind::Episode`] | `0x53` | alerts `'H' \| str(model) \| i64(fired) \| str(dedup)` | an episode, JSON |
//! | [`RecordKind::EventFired`] | `0x54` | alerts `'E' \| str(model) \| str(rule)` | when an event rule last fired, f64 ms |
//! | [`RecordKind::Cursor`] | `0x55` | meta `'C' \| str(model)` | the evaluation cursor, JSON |
//! | [`RecordKind::Delivery`] | `0x56` | outbox `'O'`/`'D' \| u64(seq) \| u8(index)` | a webhook delivery, JSON |
//! | [`RecordKind::RuleSecrets`] | `0x57` | meta `'X' \| str(id)` | a rule's action secrets, JSON |
//! | [`RecordKind::Silence`] | `0x58` | meta `'Q' \| str(id)`, `'W' \| str(id) \| u64(version)` | a silence version, JSON |
//! | [`RecordKind::PendingGroup`] | `0x59` | outbox `'P' \| str(group key)` | alerts waiting to be sent as one grouped notification, JSON |
//! | [`RecordKind::GroupState`] | `0x5A` | outbox `'F' \| str(group series)` | a group's firing series and last notifications, JSON |
//! | [`RecordKind::ApiKey`] | `0x60` | meta `'K' \| str(id)` | an API key and its secret's hash, JSON |
//!
//! `storage/FORMAT.md` §5 draws the keys. A value whose envelope is sound but whose kind is not
//! the record's, or whose payload does not decode, is [`Error::Corruption`]: stored bytes are
//! wrong, which is neither the caller's fault nor a bug of the code reading them. Every record
//! has a checked-in fixture (`server/tests/data/records/`) that must keep decoding to the same
//! value and re-encoding to the same bytes, so a codec change that would strand stored data
//! fails a test.

pub mod alerts;
pub mod keys;
pub mod pending;

use std::collections::{BTreeMap, BTreeSet};

use driftdb_engine::codec::{Reader, Writer};
use driftdb_engine::model::ModelDef;
use driftdb_engine::reference::ReferenceProfile;
use driftdb_engine::rules::{ALERT_STATE_KIND, AlertState};
use driftdb_storage::{Entry, Family, Store, WriteSet};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// The kind byte of every stored record outside the window families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum RecordKind {
    /// A model definition.
    Model = 0x10,
    /// A model's admitted segment values.
    Segments = 0x11,
    /// A reference profile of one model version.
    Reference = 0x20,
    /// The label-join record of one request id.
    Pending = 0x30,
    /// The last applied sequence of one producer.
    Producer = 0x31,
    /// A rule's state on one series.
    AlertState = ALERT_STATE_KIND,
    /// A rule version.
    Rule = 0x50,
    /// An alert record.
    Alert = 0x51,
    /// The sequence an event id was recorded as.
    EventId = 0x52,
    /// An alert episode.
    Episode = 0x53,
    /// When an event rule last fired for a model.
    EventFired = 0x54,
    /// A model's rule-evaluation cursor.
    Cursor = 0x55,
    /// A webhook delivery in the outbox.
    Delivery = 0x56,
    /// A rule's action secrets.
    RuleSecrets = 0x57,
    /// A silence version.
    Silence = 0x58,
    /// A grouped notification being collected.
    PendingGroup = 0x59,
    /// What a group has fired and sent.
    GroupState = 0x5A,
    /// An API key.
    ApiKey = 0x60,
}

impl RecordKind {
    /// Every kind, in byte order.
    pub const ALL: [RecordKind; 18] = [
        RecordKind::Model,
        RecordKind::Segments,
        RecordKind::Reference,
        RecordKind::Pending,
        RecordKind::Producer,
        RecordKind::AlertState,
        RecordKind::Rule,
        RecordKind::Alert,
        RecordKind::EventId,
        RecordKind::Episode,
        RecordKind::EventFired,
        RecordKind::Cursor,
        RecordKind::Delivery,
        RecordKind::RuleSecrets,
        RecordKind::Silence,
        RecordKind::PendingGroup,
        RecordKind::GroupState,
        RecordKind::ApiKey,
    ];

    /// The kind byte.
    pub fn byte(self) -> u8 {
        self as u8
    }

    /// The kind of a byte, if it is one.
    pub fn of(byte: u8) -> Option<RecordKind> {
        RecordKind::ALL.into_iter().find(|k| k.byte() == byte)
    }
}

/// A stored record: its kind and its payload codec.
pub trait Record: Sized {
    /// Its kind byte.
    const KIND: RecordKind;
    /// What it is, in errors.
    const WHAT: &'static str;
    /// The payload bytes.
    fn encode(&self) -> Result<Vec<u8>>;
    /// Reads a payload; bytes that do not decode are [`Error::Corruption`].
    fn decode(payload: &[u8]) -> Result<Self>;
}

/// Adds `record` under `key` of `family` to `ws`.
pub fn put<R: Record>(ws: &mut WriteSet, family: Family, key: Vec<u8>, record: &R) -> Result<()> {
    ws.put(family, key, R::KIND.byte(), &record.encode()?);
    Ok(())
}

/// Reads an entry as record `R`; another kind or an undecodable payload is corruption.
pub fn decode<R: Record>(e: &Entry) -> Result<R> {
    if e.kind != R::KIND.byte() {
        return Err(Error::Corruption {
            what: R::WHAT,
            detail: format!(
                "stored kind {:#04x}, expected {:#04x}",
                e.kind,
                R::KIND.byte()
            ),
        });
    }
    R::decode(&e.payload)
}

/// The record `R` under `key` of `family`, if any.
pub fn get<R: Record>(store: &Store, family: Family, key: &[u8]) -> Result<Option<R>> {
    match store.family(family).get(key)? {
        Some(e) => decode(&e).map(Some),
        None => Ok(None),
    }
}

/// The records `R` under `keys` of `family`, in the order of `keys` (one batched lookup);
/// each slot fails on its own (corruption), the call as a whole only when the store does.
pub fn get_many<R: Record, K: AsRef<[u8]>>(
    store: &Store,
    family: Family,
    keys: &[K],
) -> Result<Vec<Result<Option<R>>>> {
    Ok(store
        .family(family)
        .get_many(keys)?
        .into_iter()
        .map(|r| match r? {
            Some(e) => decode(&e).map(Some),
            None => Ok(None),
        })
        .collect())
}

/// `what` did not decode.
pub fn corrupt(what: &'static str, detail: impl std::fmt::Display) -> Error {
    Error::Corruption {
        what,
        detail: detail.to_string(),
    }
}

/// A record as JSON.
pub(crate) fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Internal(format!("record to JSON: {e}")))
}

/// A JSON record; what does not parse is corruption.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(what: &'static str, b: &[u8]) -> Result<T> {
    serde_json::from_slice(b).map_err(|e| corrupt(what, e))
}

/// An engine codec's error on stored bytes, as corruption of `what`.
fn engine(what: &'static str) -> impl Fn(driftdb_engine::Error) -> Error {
    move |e| corrupt(what, e)
}

impl Record for ModelDef {
    const KIND: RecordKind = RecordKind::Model;
    const WHAT: &'static str = "model definition";

    fn encode(&self) -> Result<Vec<u8>> {
        to_json(self)
    }

    fn decode(payload: &[u8]) -> Result<Self> {
        from_json(Self::WHAT, payload)
    }
}

/// A model's admitted segment values: segment key → values (the cardinality cap's memory).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdmittedSegments(pub BTreeMap<String, BTreeSet<String>>);

impl Record for AdmittedSegments {
    const KIND: RecordKind = RecordKind::Segments;
    const WHAT: &'static str = "admitted segments";

    /// `varint(keys) | { str(key) | varint(values) | { str(value) } }`.
    fn encode(&self) -> Result<Vec<u8>> {
        let mut w = Writer::new();
        w.varint(self.0.len() as u64);
        for (k, vs) in &self.0 {
            w.str(k);
            w.varint(vs.len() as u64);
            for v in vs {
                w.str(v);
            }
        }
        Ok(w.into_bytes())
    }

    fn decode(b: &[u8]) -> Result<Self> {
        let bad = engine(Self::WHAT);
        let mut r = Reader::new(b);
        let mut out = BTreeMap::new();
        let n = r.len(10_000, "segment keys").map_err(&bad)?;
        for _ in 0..n {
            let k = r.str().map_err(&bad)?.to_string();
            let m = r.len(1_000_000, "segment values").map_err(&bad)?;
            let mut set = BTreeSet::new();
            for _ in 0..m {
                set.insert(r.str().map_err(&bad)?.to_string());
            }
            out.insert(k, set);
        }
        r.finish(Self::WHAT).map_err(&bad)?;
        Ok(AdmittedSegments(out))
    }
}

impl Record for ReferenceProfile {
    const KIND: RecordKind = RecordKind::Reference;
    const WHAT: &'static str = "reference profile";

    fn encode(&self) -> Result<Vec<u8>> {
        Ok(ReferenceProfile::encode(self))
    }

    fn decode(payload: &[u8]) -> Result<Self> {
        ReferenceProfile::decode(payload).map_err(engine(Self::WHAT))
    }
}

impl Record for AlertState {
    const KIND: RecordKind = RecordKind::AlertState;
    const WHAT: &'static str = "rule state";

    /// The engine's own sealed form, inside the envelope.
    fn encode(&self) -> Result<Vec<u8>> {
        Ok(AlertState::encode(self))
    }

    fn decode(payload: &[u8]) -> Result<Self> {
        AlertState::decode(payload).map_err(engine(Self::WHAT))
    }
}

/// One version of a rule as stored: the redacted definition (secrets live in
/// [`RuleSecrets`]), its version and when it was written; a deletion is a version too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleVersion {
    /// 1 for the first definition of an id, +1 per replacement or deletion.
    #[serde(default)]
    pub version: u64,
    /// When this version was written (ms).
    #[serde(default)]
    pub updated_at_ms: i64,
    /// Whether this version deletes the rule.
    #[serde(default)]
    pub deleted: bool,
    /// The definition, JSON.
    pub rule: Value,
}

impl Record for RuleVersion {
    const KIND: RecordKind = RecordKind::Rule;
    const WHAT: &'static str = "rule";

    fn encode(&self) -> Result<Vec<u8>> {
        to_json(self)
    }

    fn decode(payload: &[u8]) -> Result<Self> {
        from_json(Self::WHAT, payload)
    }
}

/// One stored version of a silence (its creation, or its expiry by a user).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SilenceVersion {
    /// 1 when created, +1 per change.
    pub version: u64,
    /// When this version was written (ms).
    pub updated_at_ms: i64,
    /// The silence.
    pub silence: driftdb_engine::rules::Silence,
}

impl Record for SilenceVersion {
    const KIND: RecordKind = RecordKind::Silence;
    const WHAT: &'static str = "silence";

    fn encode(&self) -> Result<Vec<u8>> {
        to_json(self)
    }

    fn decode(payload: &[u8]) -> Result<Self> {
        from_json(Self::WHAT, payload)
    }
}

/// The secrets of one rule's actions: action index → field → value.
pub type Secrets = BTreeMap<String, BTreeMap<String, String>>;

/// A rule's action secrets, kept apart from its stored text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSecrets {
    /// The rule version they belong to.
    #[serde(default)]
    pub version: u64,
    /// Action index → field → value.
    #[serde(default)]
    pub actions: Secrets,
}

impl Record for RuleSecrets {
    const KIND: RecordKind = RecordKind::RuleSecrets;
    const WHAT: &'static str = "rule secrets";

    fn encode(&self) -> Result<Vec<u8>> {
        to_json(self)
    }

    fn decode(payload: &[u8]) -> Result<Self> {
        from_json(Self::WHAT, payload)
    }
}

/// Where a model's rule evaluation stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalCursor {
    /// Start of the next window to evaluate (ms).
    pub next_ms: i64,
    /// Versions seen so far.
    pub versions: BTreeSet<String>,
}

impl Record for EvalCursor {
    const KIND: RecordKind = RecordKind::Cursor;
    const WHAT: &'static str = "rule cursor";

    fn encode(&self) -> Result<Vec<u8>> {
        to_json(self)
    }

    fn decode(payload: &[u8]) -> Result<Self> {
        from_json(Self::WHAT, payload)
    }
}

#[cfg(test)]
mod tests;
