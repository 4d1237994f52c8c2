//! API key records: what a key may do (its [`Scopes`]) and the stored form, the record plus
//! the SHA-256 of its secret (JSON).

use serde::{Deserialize, Serialize};

use super::{Record, RecordKind, from_json, to_json};
use crate::error::{Error, Result};

/// One permission a key can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Send data: inference and label batches, reference profiles, event announcements.
    Ingest,
    /// Read models, query results, rules, alerts and series.
    Read,
    /// Change configuration: models, rules, API keys.
    Admin,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 3] = [Scope::Ingest, Scope::Read, Scope::Admin];

    /// The spelling in key listings and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    /// Reads `ingest`, `read` or `admin`.
    pub fn parse(s: &str) -> Result<Scope> {
        Scope::ALL
            .into_iter()
            .find(|x| x.as_str() == s.trim())
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "unknown scope {s:?}; scopes are ingest, read and admin"
                ))
            })
    }

    fn bit(self) -> u8 {
        match self {
            Scope::Ingest => 1,
            Scope::Read => 2,
            Scope::Admin => 4,
        }
    }
}

/// A set of scopes; stored and shown as a list of names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct Scopes(u8);

impl Scopes {
    /// Every scope.
    pub const ALL: Scopes = Scopes(7);

    /// The set of `scopes`.
    pub fn of(scopes: &[Scope]) -> Scopes {
        Scopes(scopes.iter().fold(0, |acc, s| acc | s.bit()))
    }

    /// Reads a comma-separated list (`read,ingest`); empty entries are refused.
    pub fn parse_list(s: &str) -> Result<Scopes> {
        let mut out = Scopes::default();
        for part in s.split(',') {
            out.0 |= Scope::parse(part)?.bit();
        }
        Ok(out)
    }

    /// Whether `scope` is in the set.
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// Whether every scope of `other` is in the set.
    pub fn covers(self, other: Scopes) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The names, in the order ingest, read, admin.
    pub fn names(self) -> Vec<&'static str> {
        Scope::ALL
            .into_iter()
            .filter(|s| self.contains(*s))
            .map(Scope::as_str)
            .collect()
    }
}

impl std::fmt::Display for Scopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.names().join(","))
    }
}

impl TryFrom<Vec<String>> for Scopes {
    type Error = Error;

    fn try_from(v: Vec<String>) -> Result<Scopes> {
        let mut out = Scopes::default();
        for s in v {
            out.0 |= Scope::parse(&s)?.bit();
        }
        Ok(out)
    }
}

impl From<Scopes> for Vec<String> {
    fn from(s: Scopes) -> Vec<String> {
        s.names().into_iter().map(str::to_string).collect()
    }
}

/// A key as listed: everything but the secret and its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The key id (16 hex digits), the second part of the token.
    pub id: String,
    /// A label for people ("grafana", "fraud-pipeline").
    pub name: String,
    /// The team whose models the key may touch; `None` for an operator key (every team, and
    /// the models without a team).
    pub team: Option<String>,
    /// What the key may do.
    pub scopes: Scopes,
    /// When it was created (ms since the epoch).
    pub created_at_ms: i64,
    /// The id of the key that created it (`None`: created offline or at bootstrap).
    pub created_by: Option<String>,
    /// When it was revoked, if it was.
    pub revoked_at_ms: Option<i64>,
}

impl KeyRecord {
    /// Whether the key still opens the door.
    pub fn is_active(&self) -> bool {
        self.revoked_at_ms.is_none()
    }
}

/// A key as stored: the record and the SHA-256 of its secret (hex).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredKey {
    /// The record.
    #[serde(flatten)]
    pub record: KeyRecord,
    /// SHA-256 of the secret, hex.
    pub secret_sha256: String,
}

impl Record for StoredKey {
    const KIND: RecordKind = RecordKind::ApiKey;
    const WHAT: &'static str = "API key";

    fn encode(&self) -> Result<Vec<u8>> {
        to_json(self)
    }

    fn decode(payload: &[u8]) -> Result<Self> {
        from_json(Self::WHAT, payload)
    }
}
