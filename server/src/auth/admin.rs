//! Key management for callers with the `admin` scope, shared by the gRPC `Admin` service and
//! the HTTP `/admin/keys` routes.
//!
//! - An operator admin manages every key and is the only one who may create operator keys.
//! - A team admin manages its own team's keys only: it creates keys for its team, with no
//!   scope it does not hold itself (no escalation), and lists and revokes only them; any other
//!   key id is NOT_FOUND.

use driftdb_engine::time::Timestamp;

use super::Auth;
use super::{KeyRecord, KeySpec, NewKey, Principal, Scopes};
use crate::error::{Error, Result};

/// A request to create a key.
#[derive(Debug, Clone, Default)]
pub struct KeyRequest {
    /// A label for people.
    pub name: String,
    /// Its team (the caller's own when `None` and the caller is a team key).
    pub team: Option<String>,
    /// An operator key (every team).
    pub operator: bool,
    /// Its scopes.
    pub scopes: Scopes,
}

fn visible(caller: &Principal, k: &KeyRecord) -> bool {
    caller.is_operator() || k.team.as_deref() == caller.team()
}

/// Creates a key for `caller` (see the module docs for who may create what).
pub fn create_key(
    auth: &Auth,
    caller: &Principal,
    req: KeyRequest,
    now: Timestamp,
) -> Result<NewKey> {
    let team = if req.operator {
        if req.team.is_some() {
            return Err(Error::Invalid(
                "an operator key has no team; name a team or ask for an operator key, not both"
                    .into(),
            ));
        }
        caller.require_operator("creating an operator key")?;
        None
    } else {
        let team = req
            .team
            .filter(|t| !t.is_empty())
            .or_else(|| caller.team().map(str::to_string))
            .ok_or_else(|| {
                Error::Invalid(
                    "name the key's team (--team) or ask for an operator key (--operator)".into(),
                )
            })?;
        if let Some(own) = caller.team()
            && own != team
        {
            return Err(Error::PermissionDenied(format!(
                "a key of team {own} can only create keys for team {own}"
            )));
        }
        Some(team)
    };
    if !caller.scopes.covers(req.scopes) {
        return Err(Error::PermissionDenied(format!(
            "a key can only grant scopes it holds itself ({})",
            caller.scopes
        )));
    }
    auth.keys().create(
        KeySpec {
            name: req.name,
            team,
            scopes: req.scopes,
            created_by: caller.key_id.clone(),
        },
        now,
    )
}

/// The keys `caller` may see, revoked ones included.
pub fn list_keys(auth: &Auth, caller: &Principal) -> Vec<KeyRecord> {
    auth.keys()
        .list()
        .into_iter()
        .filter(|k| visible(caller, k))
        .collect()
}

/// Revokes key `id`; NOT_FOUND when unknown or not `caller`'s to revoke.
pub fn revoke_key(auth: &Auth, caller: &Principal, id: &str, now: Timestamp) -> Result<KeyRecord> {
    let not_found = || Error::NotFound {
        what: "API key",
        name: id.to_string(),
    };
    let k = auth.keys().get(id).ok_or_else(not_found)?;
    if !visible(caller, &k) {
        return Err(not_found());
    }
    auth.keys().revoke(id, now)
}

/// A key record as JSON (HTTP answers, `driftdb keys list --json`).
pub fn key_json(k: &KeyRecord) -> serde_json::Value {
    serde_json::json!({
        "id": k.id,
        "name": k.name,
        "team": k.team,
        "scopes": k.scopes,
        "created_at": Timestamp(k.created_at_ms).to_rfc3339(),
        "created_by": k.created_by,
        "revoked_at": k.revoked_at_ms.map(|t| Timestamp(t).to_rfc3339()),
    })
}
