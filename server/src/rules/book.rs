//! The rule store: definitions in the `meta` family, every version kept, the current ones
//! cached in memory.
//!
//! `'R' | str(id)` holds the current record, `'U' | str(id) | u64(version)` every version ever
//! written (a deletion is a version too), both as JSON
//! `{"version", "updated_at_ms", "deleted", "rule"}` sealed with kind [`KIND_RULE`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use driftdb_engine::model::ModelDef;
use driftdb_engine::rules::RuleDef;
use driftdb_engine::time::Timestamp;
use driftdb_storage::layout::{self, KeyWriter};
use driftdb_storage::{Family, Store, WriteSet};
use serde_json::{Value, json};

use crate::error::{Error, Result};

/// Envelope kind of a stored rule record.
pub const KIND_RULE: u8 = 0x50;

/// A rule as stored: its definition, version and when it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRule {
    /// The definition.
    pub def: RuleDef,
    /// 1 for the first definition of this id, +1 per replacement.
    pub version: u64,
    /// When this version was written.
    pub updated_at: Timestamp,
}

/// Rule definitions, cached over the store.
#[derive(Debug)]
pub struct RuleBook {
    store: Arc<Store>,
    rules: RwLock<BTreeMap<String, Arc<StoredRule>>>,
    /// Highest version per id, deleted ones included, so a re-created id continues its count.
    versions: Mutex<HashMap<String, u64>>,
    errors: Mutex<HashMap<String, String>>,
}

fn current_key(id: &str) -> Vec<u8> {
    KeyWriter::with_prefix(layout::META_RULE).str(id).finish()
}

fn version_key(id: &str, version: u64) -> Vec<u8> {
    KeyWriter::with_prefix(layout::META_RULE_VERSION)
        .str(id)
        .u64(version)
        .finish()
}

fn poisoned<T>(_: T) -> Error {
    Error::Internal("rule book lock poisoned".into())
}

/// The rule's JSON with secrets replaced by `"***"` (PagerDuty routing keys), for every answer
/// and log line.
pub fn redacted_json(def: &RuleDef) -> Value {
    let mut v = def.to_json();
    if let Some(actions) = v.get_mut("actions").and_then(Value::as_array_mut) {
        for a in actions {
            if let Some(obj) = a.as_object_mut()
                && obj.contains_key("routing_key")
            {
                obj.insert("routing_key".into(), json!("***"));
            }
        }
    }
    v
}

impl RuleBook {
    /// Loads every current rule.
    pub fn load(store: Arc<Store>) -> Result<RuleBook> {
        let mut rules = BTreeMap::new();
        let mut versions = HashMap::new();
        for e in store
            .family(Family::Meta)
            .scan_prefix(&[layout::META_RULE])?
        {
            let e = e?;
            let rec: Value = serde_json::from_slice(&e.payload)
                .map_err(|err| Error::Internal(format!("stored rule: {err}")))?;
            let version = rec["version"].as_u64().unwrap_or(0);
            let updated_at = Timestamp(rec["updated_at_ms"].as_i64().unwrap_or(0));
            let def = RuleDef::from_value(&rec["rule"])
                .map_err(|err| Error::Internal(format!("stored rule: {err}")))?;
            versions.insert(def.id.clone(), version);
            if rec["deleted"].as_bool() == Some(true) {
                continue;
            }
            rules.insert(
                def.id.clone(),
                Arc::new(StoredRule {
                    def,
                    version,
                    updated_at,
                }),
            );
        }
        Ok(RuleBook {
            store,
            rules: RwLock::new(rules),
            versions: Mutex::new(versions),
            errors: Mutex::new(HashMap::new()),
        })
    }

    fn write(&self, def: &RuleDef, version: u64, at: Timestamp, deleted: bool) -> Result<()> {
        let rec = json!({
            "version": version,
            "updated_at_ms": at.millis(),
            "deleted": deleted,
            "rule": def.to_json(),
        });
        let bytes = serde_json::to_vec(&rec).map_err(|e| Error::Internal(e.to_string()))?;
        let mut ws = WriteSet::new();
        ws.put(Family::Meta, current_key(&def.id), KIND_RULE, &bytes);
        ws.put(
            Family::Meta,
            version_key(&def.id, version),
            KIND_RULE,
            &bytes,
        );
        self.store.write(&ws)?;
        Ok(())
    }

    /// Stores `def` as a new rule, or as the next version of the rule with its id. `model` is
    /// the definition of the rule's model when it names one (the rule is checked against it).
    pub fn put(
        &self,
        def: RuleDef,
        model: Option<&ModelDef>,
        now: Timestamp,
    ) -> Result<Arc<StoredRule>> {
        let invalid =
            |e: driftdb_engine::rules::RuleError| Error::Invalid(format!("invalid rule: {e}"));
        def.validate().map_err(invalid)?;
        if let Some(m) = model {
            def.validate_for_model(m).map_err(invalid)?;
        }
        let mut rules = self.rules.write().map_err(poisoned)?;
        let mut versions = self.versions.lock().map_err(poisoned)?;
        if let Some(existing) = rules.get(&def.id)
            && existing.def == def
        {
            return Ok(Arc::clone(existing));
        }
        let version = versions.get(&def.id).copied().unwrap_or(0) + 1;
        self.write(&def, version, now, false)?;
        versions.insert(def.id.clone(), version);
        let stored = Arc::new(StoredRule {
            def,
            version,
            updated_at: now,
        });
        rules.insert(stored.def.id.clone(), Arc::clone(&stored));
        if let Ok(mut errs) = self.errors.lock() {
            errs.remove(&stored.def.id);
        }
        Ok(stored)
    }

    /// Deletes rule `id` (its versions stay in the store); NOT_FOUND when there is none.
    pub fn delete(&self, id: &str, now: Timestamp) -> Result<()> {
        let mut rules = self.rules.write().map_err(poisoned)?;
        let mut versions = self.versions.lock().map_err(poisoned)?;
        let Some(existing) = rules.get(id) else {
            return Err(Error::NotFound {
                what: "rule",
                name: id.to_string(),
            });
        };
        let version = versions.get(id).copied().unwrap_or(existing.version) + 1;
        self.write(&existing.def, version, now, true)?;
        versions.insert(id.to_string(), version);
        rules.remove(id);
        Ok(())
    }

    /// A rule by id.
    pub fn get(&self, id: &str) -> Option<Arc<StoredRule>> {
        self.rules.read().ok()?.get(id).cloned()
    }

    /// Every rule that applies to `model` (every rule for `None`), by id.
    pub fn list(&self, model: Option<&str>) -> Vec<Arc<StoredRule>> {
        let Ok(rules) = self.rules.read() else {
            return Vec::new();
        };
        rules
            .values()
            .filter(|r| model.is_none_or(|m| r.def.applies_to_model(m)))
            .cloned()
            .collect()
    }

    /// Every stored version of rule `id`, oldest first, as `(version, deleted, definition)`.
    pub fn history(&self, id: &str) -> Result<Vec<(u64, bool, RuleDef)>> {
        let prefix = KeyWriter::with_prefix(layout::META_RULE_VERSION)
            .str(id)
            .finish();
        let mut out = Vec::new();
        for e in self.store.family(Family::Meta).scan_prefix(&prefix)? {
            let e = e?;
            let rec: Value = serde_json::from_slice(&e.payload)
                .map_err(|err| Error::Internal(format!("stored rule: {err}")))?;
            let def = RuleDef::from_value(&rec["rule"])
                .map_err(|err| Error::Internal(format!("stored rule: {err}")))?;
            out.push((
                rec["version"].as_u64().unwrap_or(0),
                rec["deleted"].as_bool() == Some(true),
                def,
            ));
        }
        Ok(out)
    }

    /// Records (or clears, with `None`) the last evaluation problem of rule `id`.
    pub fn set_error(&self, id: &str, error: Option<String>) {
        if let Ok(mut errs) = self.errors.lock() {
            match error {
                Some(e) => {
                    errs.insert(id.to_string(), e);
                }
                None => {
                    errs.remove(id);
                }
            }
        }
    }

    /// The last evaluation problem of rule `id`, if any.
    pub fn error(&self, id: &str) -> Option<String> {
        self.errors.lock().ok()?.get(id).cloned()
    }
}
