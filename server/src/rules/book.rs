//! The rule store: definitions in the `meta` family, every version kept, the current ones
//! cached in memory.
//!
//! `'R' | str(id)` holds the current record, `'U' | str(id) | u64(version)` every version ever
//! written (a deletion is a version too), both as JSON
//! `{"version", "updated_at_ms", "deleted", "rule"}` sealed as [`crate::records::RuleVersion`].
//!
//! **Secrets are kept apart from the rule text.** The stored `rule` is the redacted form
//! ([`redacted_json`]): PagerDuty routing keys, Slack webhook URLs, Jira tokens and the query
//! strings of other webhook URLs read `"***"` (or `https://host/***`, `…?***`). The current
//! version's secrets live in their own record, `'X' | str(id)`: JSON
//! `{"version": v, "actions": {"<index>": {"<field>": "<value>"}}}` sealed with kind
//! [`crate::records::RuleSecrets`], joined back into the definition in memory (the evaluator and the
//! outbox need them) and never into an answer. Old versions keep no secrets; deleting a rule
//! deletes its secrets. Rules stored in clear by an older build are split on load.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use driftdb_engine::model::ModelDef;
use driftdb_engine::rules::{ActionKind, RuleDef, redact_url};
use driftdb_engine::time::Timestamp;
use driftdb_storage::layout::{self, KeyWriter};
use driftdb_storage::{Family, Store, WriteSet};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::records::{self, RuleSecrets, RuleVersion, Secrets};

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

fn secrets_key(id: &str) -> Vec<u8> {
    KeyWriter::with_prefix(layout::META_RULE_SECRET)
        .str(id)
        .finish()
}

/// Action fields whose whole value is a secret.
const SECRET_FIELDS: &[&str] = &["routing_key", "token"];

fn action_kind(name: &str) -> Option<ActionKind> {
    [
        ActionKind::Pagerduty,
        ActionKind::Slack,
        ActionKind::Jira,
        ActionKind::Webhook,
        ActionKind::Retrain,
        ActionKind::RouteToBackup,
    ]
    .into_iter()
    .find(|k| k.as_str() == name)
}

/// Splits a rule's JSON into its redacted form and the secrets taken out of it.
fn split_secrets(rule: &Value) -> (Value, Secrets) {
    let mut v = rule.clone();
    let mut secrets = Secrets::new();
    if let Some(actions) = v.get_mut("actions").and_then(Value::as_array_mut) {
        for (i, a) in actions.iter_mut().enumerate() {
            let Some(obj) = a.as_object_mut() else {
                continue;
            };
            let kind = obj
                .get("kind")
                .and_then(Value::as_str)
                .and_then(action_kind);
            let mut taken = BTreeMap::new();
            for field in SECRET_FIELDS {
                if let Some(Value::String(s)) = obj.get(*field)
                    && s != "***"
                {
                    taken.insert((*field).to_string(), s.clone());
                    obj.insert((*field).to_string(), json!("***"));
                }
            }
            if let (Some(kind), Some(Value::String(url))) = (kind, obj.get("url")) {
                let shown = redact_url(kind, url);
                if shown != *url {
                    taken.insert("url".to_string(), url.clone());
                    obj.insert("url".to_string(), json!(shown));
                }
            }
            if !taken.is_empty() {
                secrets.insert(i.to_string(), taken);
            }
        }
    }
    (v, secrets)
}

/// Puts `secrets` back into a redacted rule JSON.
fn join_secrets(rule: &mut Value, secrets: &Secrets) {
    let Some(actions) = rule.get_mut("actions").and_then(Value::as_array_mut) else {
        return;
    };
    for (i, fields) in secrets {
        let Some(obj) = i
            .parse::<usize>()
            .ok()
            .and_then(|i| actions.get_mut(i))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        for (f, v) in fields {
            obj.insert(f.clone(), json!(v));
        }
    }
}

/// Whether a rule still holds placeholders where its secrets belong (they were not found).
fn missing_secrets(rule: &Value) -> bool {
    let Some(actions) = rule.get("actions").and_then(Value::as_array) else {
        return false;
    };
    actions.iter().filter_map(Value::as_object).any(|a| {
        SECRET_FIELDS
            .iter()
            .any(|f| a.get(*f).and_then(Value::as_str) == Some("***"))
            || a.get("url")
                .and_then(Value::as_str)
                .is_some_and(|u| u.ends_with("***"))
    })
}

/// The rule's JSON with every secret replaced by `"***"` (PagerDuty routing keys, Jira
/// tokens), Slack webhook URLs shown as `https://host/***` and the query strings of other
/// URLs as `?***`: the form of every answer, log line and stored rule text.
pub fn redacted_json(def: &RuleDef) -> Value {
    split_secrets(&def.to_json()).0
}

impl RuleBook {
    /// Loads every current rule, joining each with its secrets. A rule stored with its secrets
    /// in clear (an older build) is rewritten split, every stored version included.
    pub fn load(store: Arc<Store>) -> Result<RuleBook> {
        let meta = store.family(Family::Meta);
        let mut rules = BTreeMap::new();
        let mut versions = HashMap::new();
        let mut errors = HashMap::new();
        let mut migrate = WriteSet::new();
        let mut migrated = 0usize;
        for e in meta.scan_prefix(&[layout::META_RULE])? {
            let e = e?;
            let mut rec: RuleVersion = records::decode(&e)?;
            let version = rec.version;
            let updated_at = Timestamp(rec.updated_at_ms);
            let (redacted, clear) = split_secrets(&rec.rule);
            let mut full = rec.rule.clone();
            if clear.is_empty() {
                let id = rec.rule["id"].as_str().unwrap_or_default().to_string();
                match records::get::<RuleSecrets>(&store, Family::Meta, &secrets_key(&id)) {
                    Ok(Some(sv)) => join_secrets(&mut full, &sv.actions),
                    Ok(None) => {}
                    Err(err) => {
                        tracing::error!(rule = %id, error = %err, "unreadable rule secrets")
                    }
                }
            } else {
                // Stored in clear: keep the secrets apart from now on.
                rec.rule = redacted.clone();
                let id = rec.rule["id"].as_str().unwrap_or_default().to_string();
                records::put(&mut migrate, Family::Meta, e.key.clone(), &rec)?;
                put_secrets(&mut migrate, &id, version, &clear)?;
                migrated += 1;
            }
            let def = RuleDef::from_value(&full).map_err(|err| records::corrupt("rule", err))?;
            versions.insert(def.id.clone(), version);
            if rec.deleted {
                continue;
            }
            if missing_secrets(&full) {
                errors.insert(
                    def.id.clone(),
                    "the secrets of this rule's actions are missing or unreadable; create the rule again".to_string(),
                );
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
        if migrated > 0 {
            // Old versions too: none may keep a secret in clear.
            for e in meta.scan_prefix(&[layout::META_RULE_VERSION])? {
                let e = e?;
                let Ok(mut rec) = records::decode::<RuleVersion>(&e) else {
                    continue;
                };
                let (redacted, clear) = split_secrets(&rec.rule);
                if !clear.is_empty() {
                    rec.rule = redacted;
                    records::put(&mut migrate, Family::Meta, e.key.clone(), &rec)?;
                }
            }
            store.write(&migrate)?;
            tracing::info!(
                rules = migrated,
                "rule secrets moved out of the stored rule text"
            );
        }
        Ok(RuleBook {
            store,
            rules: RwLock::new(rules),
            versions: Mutex::new(versions),
            errors: Mutex::new(errors),
        })
    }

    fn write(&self, def: &RuleDef, version: u64, at: Timestamp, deleted: bool) -> Result<()> {
        let (redacted, secrets) = split_secrets(&def.to_json());
        let rec = RuleVersion {
            version,
            updated_at_ms: at.millis(),
            deleted,
            rule: redacted,
        };
        let mut ws = WriteSet::new();
        records::put(&mut ws, Family::Meta, current_key(&def.id), &rec)?;
        records::put(&mut ws, Family::Meta, version_key(&def.id, version), &rec)?;
        if deleted || secrets.is_empty() {
            ws.delete(Family::Meta, secrets_key(&def.id));
        } else {
            put_secrets(&mut ws, &def.id, version, &secrets)?;
        }
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

    /// Every stored version of rule `id`, oldest first, as `(version, deleted, rule JSON)`; the
    /// JSON is the stored, redacted text.
    pub fn history(&self, id: &str) -> Result<Vec<(u64, bool, Value)>> {
        let prefix = KeyWriter::with_prefix(layout::META_RULE_VERSION)
            .str(id)
            .finish();
        let mut out = Vec::new();
        for e in self.store.family(Family::Meta).scan_prefix(&prefix)? {
            let e = e?;
            let rec: RuleVersion = records::decode(&e)?;
            out.push((
                rec.version,
                rec.deleted,
                // Redacted again in case a record predates the split.
                split_secrets(&rec.rule).0,
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

fn put_secrets(ws: &mut WriteSet, id: &str, version: u64, secrets: &Secrets) -> Result<()> {
    let rec = RuleSecrets {
        version,
        actions: secrets.clone(),
    };
    records::put(ws, Family::Meta, secrets_key(id), &rec)
}

#[cfg(test)]
mod tests;
