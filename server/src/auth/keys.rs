//! API keys: creation, revocation and verification.
//!
//! A token is `ddb_<id>_<secret>`: `id` is 16 lower-case hex digits (8 random bytes) that name
//! the key in listings and logs, `secret` is 32 random bytes in base64url without padding.
//! Only the SHA-256 of the secret is stored (`meta` family, `'K' | str(id)`, JSON sealed with
//! kind `ApiKey` of [`crate::records::RecordKind`]); the token itself is shown once, when the key is created. A 256-bit
//! random secret cannot be guessed or brute-forced from its hash, so a plain (unsalted) SHA-256
//! is enough; the comparison is constant-time anyway. Every key is cached in memory, so
//! checking a request costs one hash and no disk read.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use driftdb_engine::time::Timestamp;
use driftdb_storage::layout::{self, KeyWriter};
use driftdb_storage::{Family, Store, WriteSet};
use ring::rand::SecureRandom as _;
use subtle::ConstantTimeEq as _;

use super::Scopes;
use crate::error::{Error, Result};
use crate::records::{
    self,
    keys::{KeyRecord, StoredKey},
};

/// Every token starts with this.
pub const TOKEN_PREFIX: &str = "ddb_";
const ID_BYTES: usize = 8;
const SECRET_BYTES: usize = 32;
/// Length of the base64url (unpadded) text of the secret.
const SECRET_CHARS: usize = 43;
/// Longest key name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// What a new key is for.
#[derive(Debug, Clone)]
pub struct KeySpec {
    /// A label for people.
    pub name: String,
    /// Its team; `None` makes an operator key.
    pub team: Option<String>,
    /// Its scopes (at least one).
    pub scopes: Scopes,
    /// The id of the key creating it, if any.
    pub created_by: Option<String>,
}

/// A key just created: its record and the token, which is never shown again.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// The record.
    pub record: KeyRecord,
    /// `ddb_<id>_<secret>`: the bearer token.
    pub token: String,
}

/// Every API key of a node, cached over the store.
#[derive(Debug)]
pub struct KeyStore {
    store: Arc<Store>,
    keys: RwLock<BTreeMap<String, StoredKey>>,
    rng: ring::rand::SystemRandom,
}

fn key_of(id: &str) -> Vec<u8> {
    KeyWriter::with_prefix(layout::META_API_KEY)
        .str(id)
        .finish()
}

fn poisoned<T>(_: T) -> Error {
    Error::Internal("key store lock poisoned".into())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(secret: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, secret.as_bytes()).as_ref())
}

/// Splits a token into `(id, secret)` when it has the right shape.
pub fn parse_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let id_ok = id.len() == ID_BYTES * 2
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let secret_ok = secret.len() == SECRET_CHARS
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (id_ok && secret_ok).then_some((id, secret))
}

/// Checks a key name: 1..=[`MAX_NAME_LEN`] bytes without control characters.
fn validate_key_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "key name must be 1..={MAX_NAME_LEN} bytes without control characters"
        )));
    }
    Ok(())
}

impl KeyStore {
    /// Loads every key. A record that fails its checksum or does not parse is skipped with a
    /// warning: a damaged key opens nothing.
    pub fn load(store: Arc<Store>) -> Result<KeyStore> {
        let mut keys = BTreeMap::new();
        for e in store
            .family(Family::Meta)
            .scan_prefix(&[layout::META_API_KEY])?
        {
            let e = match e {
                Ok(e) => e,
                Err(err) => {
                    tracing::warn!(error = %err, "corrupt API key record skipped");
                    continue;
                }
            };
            match records::decode::<StoredKey>(&e) {
                Ok(k) => {
                    keys.insert(k.record.id.clone(), k);
                }
                Err(err) => tracing::warn!(error = %err, "unreadable API key record skipped"),
            }
        }
        Ok(KeyStore {
            store,
            keys: RwLock::new(keys),
            rng: ring::rand::SystemRandom::new(),
        })
    }

    fn random(&self, n: usize) -> Result<Vec<u8>> {
        let mut b = vec![0u8; n];
        self.rng
            .fill(&mut b)
            .map_err(|_| Error::Internal("the system random source failed".into()))?;
        Ok(b)
    }

    fn write(&self, k: &StoredKey) -> Result<()> {
        let mut ws = WriteSet::new();
        records::put(&mut ws, Family::Meta, key_of(&k.record.id), k)?;
        self.store.write(&ws)?;
        Ok(())
    }

    /// Creates a key; the token in the answer is the only copy of the secret.
    pub fn create(&self, spec: KeySpec, now: Timestamp) -> Result<NewKey> {
        validate_key_name(&spec.name)?;
        if spec.scopes.is_empty() {
            return Err(Error::Invalid(
                "a key needs at least one scope (ingest, read, admin)".into(),
            ));
        }
        if let Some(t) = &spec.team {
            driftdb_engine::model::validate_name("team", t)?;
        }
        let mut keys = self.keys.write().map_err(poisoned)?;
        let id = loop {
            let id = hex(&self.random(ID_BYTES)?);
            if !keys.contains_key(&id) {
                break id;
            }
        };
        let secret =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.random(SECRET_BYTES)?);
        let stored = StoredKey {
            record: KeyRecord {
                id: id.clone(),
                name: spec.name,
                team: spec.team,
                scopes: spec.scopes,
                created_at_ms: now.millis(),
                created_by: spec.created_by,
                revoked_at_ms: None,
            },
            secret_sha256: sha256_hex(&secret),
        };
        self.write(&stored)?;
        let record = stored.record.clone();
        keys.insert(id.clone(), stored);
        Ok(NewKey {
            record,
            token: format!("{TOKEN_PREFIX}{id}_{secret}"),
        })
    }

    /// Revokes key `id` (revoking twice keeps the first time); NOT_FOUND when unknown.
    pub fn revoke(&self, id: &str, now: Timestamp) -> Result<KeyRecord> {
        let mut keys = self.keys.write().map_err(poisoned)?;
        let Some(k) = keys.get(id) else {
            return Err(Error::NotFound {
                what: "API key",
                name: id.to_string(),
            });
        };
        if k.record.revoked_at_ms.is_some() {
            return Ok(k.record.clone());
        }
        let mut k = k.clone();
        k.record.revoked_at_ms = Some(now.millis());
        self.write(&k)?;
        let record = k.record.clone();
        keys.insert(id.to_string(), k);
        Ok(record)
    }

    /// One key's record.
    pub fn get(&self, id: &str) -> Option<KeyRecord> {
        self.keys.read().ok()?.get(id).map(|k| k.record.clone())
    }

    /// Every key, revoked ones included, by id.
    pub fn list(&self) -> Vec<KeyRecord> {
        self.keys
            .read()
            .map(|k| k.values().map(|k| k.record.clone()).collect())
            .unwrap_or_default()
    }

    /// Whether no key was ever created (the node's first start).
    pub fn is_empty(&self) -> bool {
        self.keys.read().map(|k| k.is_empty()).unwrap_or(false)
    }

    /// The active key a token stands for, or `None` (malformed, unknown, wrong secret or
    /// revoked: callers are not told which).
    pub fn verify(&self, token: &str) -> Option<KeyRecord> {
        let (id, secret) = parse_token(token)?;
        let keys = self.keys.read().ok()?;
        let k = keys.get(id)?;
        let presented = sha256_hex(secret);
        let equal: bool = presented
            .as_bytes()
            .ct_eq(k.secret_sha256.as_bytes())
            .into();
        (equal && k.record.is_active()).then(|| k.record.clone())
    }
}

#[cfg(test)]
mod tests;
