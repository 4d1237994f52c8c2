//! Who may do what: API keys with scopes, bound to a team.
//!
//! - A **key** carries scopes — `ingest` (send data: inferences, labels, reference profiles,
//!   events), `read` (models, queries, drift, rules, alerts, the Prometheus endpoints) and
//!   `admin` (create models and rules, delete rules, manage keys) — and either one team or, for
//!   an *operator* key, every team. Keys are stored hashed ([`keys`]).
//! - A **model** belongs to the team named in its definition. A model without a team belongs to
//!   the operators: only operator keys see it.
//! - A team key sees only its team's models and what derives from them: their series, rules,
//!   alerts and webhook dead letters. Anything else answers exactly like something that does
//!   not exist (NOT_FOUND, or left out of a listing), so a key learns nothing about other
//!   teams' models, series or label values. Rules for every model (`"model": "*"`) and node-wide
//!   `/metrics` are operator-only.
//! - Every gRPC method and HTTP route needs one scope, decided in one table each
//!   ([`grpc_need`], [`http_need`]) and checked in one place per transport (`crate::guard`) before
//!   any handler runs; handlers then filter by team with the [`Principal`] the check left in
//!   the request. `GET /healthz` is the one open route.
//! - Auth is switched off only explicitly ([`AuthMode::Disabled`]: `driftdb serve
//!   --insecure-no-auth`, `driftdb demo`), with a warning; every caller is then an operator
//!   with every scope.
//!
//! `SECURITY.md` at the repository root describes the threat model.

pub mod admin;
pub mod keys;

use std::sync::Arc;

use driftdb_engine::model::ModelDef;
use driftdb_engine::reference::ReferenceProfile;
use driftdb_storage::Store;

pub use crate::records::keys::{KeyRecord, Scope, Scopes};
pub use keys::{KeySpec, KeyStore, NewKey};

use crate::error::{Error, Result};
use crate::registry::{ModelEntry, Registry};

/// Which teams a caller acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Teams {
    /// Every team, and the models without one (operator keys, or auth switched off).
    All,
    /// One team.
    One(String),
}

/// The caller of a request, as the auth check established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The key used (`None` when auth is switched off).
    pub key_id: Option<String>,
    /// Its teams.
    pub teams: Teams,
    /// Its scopes.
    pub scopes: Scopes,
}

impl Principal {
    /// The caller when auth is switched off: an operator with every scope.
    pub fn unrestricted() -> Principal {
        Principal {
            key_id: None,
            teams: Teams::All,
            scopes: Scopes::ALL,
        }
    }

    /// A caller without a key on an open route: no scope, no team.
    pub fn anonymous() -> Principal {
        Principal {
            key_id: None,
            teams: Teams::One(String::new()),
            scopes: Scopes::default(),
        }
    }

    /// The caller holding key `k`.
    pub fn of_key(k: &KeyRecord) -> Principal {
        Principal {
            key_id: Some(k.id.clone()),
            teams: match &k.team {
                None => Teams::All,
                Some(t) => Teams::One(t.clone()),
            },
            scopes: k.scopes,
        }
    }

    /// Whether the caller acts for every team.
    pub fn is_operator(&self) -> bool {
        self.teams == Teams::All
    }

    /// The caller's team, unless it is an operator.
    pub fn team(&self) -> Option<&str> {
        match &self.teams {
            Teams::All => None,
            Teams::One(t) => Some(t),
        }
    }

    /// Whether the caller may see things of `team` (`None`: the operators' own).
    pub fn sees_team(&self, team: Option<&str>) -> bool {
        match &self.teams {
            Teams::All => true,
            Teams::One(t) => team == Some(t.as_str()),
        }
    }

    /// Whether the caller may see model `def`.
    pub fn sees_model(&self, def: &ModelDef) -> bool {
        self.sees_team(def.team.as_deref())
    }

    /// PERMISSION_DENIED unless the caller holds `scope`.
    pub fn require(&self, scope: Scope) -> Result<()> {
        if self.scopes.contains(scope) {
            Ok(())
        } else {
            Err(Error::PermissionDenied(format!(
                "this API key lacks the {} scope (it has: {})",
                scope.as_str(),
                if self.scopes.is_empty() {
                    "none".to_string()
                } else {
                    self.scopes.to_string()
                }
            )))
        }
    }

    /// PERMISSION_DENIED unless the caller is an operator; `what` says what was refused.
    pub fn require_operator(&self, what: &str) -> Result<()> {
        if self.is_operator() {
            Ok(())
        } else {
            Err(Error::PermissionDenied(format!(
                "{what} needs an operator key (one not bound to a team)"
            )))
        }
    }
}

/// Whether callers must present a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Every route but `/healthz` needs a valid key with the route's scope.
    Required,
    /// No checks: every caller is an operator with every scope. For local use only
    /// (`driftdb serve --insecure-no-auth`, `driftdb demo`, tests that say so).
    Disabled,
}

/// The authentication state of a node: the mode and the keys.
#[derive(Debug)]
pub struct Auth {
    mode: AuthMode,
    keys: KeyStore,
}

/// The message of a request without a key.
pub const MISSING_KEY: &str =
    "missing API key: send `authorization: Bearer <key>` (driftdb --api-key or DRIFTDB_API_KEY)";
/// The message of a request with a key that does not open anything.
pub const BAD_KEY: &str = "invalid or revoked API key";

impl Auth {
    /// Loads the keys from `store`.
    pub fn open(store: Arc<Store>, mode: AuthMode) -> Result<Auth> {
        Ok(Auth {
            mode,
            keys: KeyStore::load(store)?,
        })
    }

    /// Whether keys are checked.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// The keys.
    pub fn keys(&self) -> &KeyStore {
        &self.keys
    }

    /// Who sends `authorization` (the header's raw value, if any). UNAUTHENTICATED without a
    /// bearer token or with one that is unknown, wrong or revoked; with auth switched off,
    /// everyone is [`Principal::unrestricted`].
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Principal> {
        if self.mode == AuthMode::Disabled {
            return Ok(Principal::unrestricted());
        }
        let Some(raw) = authorization else {
            return Err(Error::Unauthenticated(MISSING_KEY.into()));
        };
        let token = std::str::from_utf8(raw)
            .ok()
            .and_then(|v| {
                let (scheme, rest) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .ok_or_else(|| Error::Unauthenticated(MISSING_KEY.into()))?;
        match self.keys.verify(token) {
            Some(k) => Ok(Principal::of_key(&k)),
            None => {
                // The key id (never the secret) helps an operator find a stale client.
                let id = keys::parse_token(token).map(|(id, _)| id).unwrap_or("?");
                tracing::warn!(key_id = id, "request with an invalid or revoked API key");
                Err(Error::Unauthenticated(BAD_KEY.into()))
            }
        }
    }
}

/// What a route or method needs from its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing: anyone may call it (`GET /healthz`).
    Open,
    /// A key with this scope.
    Scope(Scope),
    /// An operator key with this scope.
    OperatorScope(Scope),
}

/// What gRPC method `path` (`/driftdb.v1.Service/Method`) needs. Unknown methods need `admin`,
/// so probing for methods teaches an unauthenticated caller nothing.
pub fn grpc_need(path: &str) -> Need {
    let scope = match path {
        "/driftdb.v1.Models/GetModel"
        | "/driftdb.v1.Models/ListModels"
        | "/driftdb.v1.Query/Query"
        | "/driftdb.v1.Query/DriftSummary"
        | "/driftdb.v1.Query/Report"
        | "/driftdb.v1.Rules/ListRules"
        | "/driftdb.v1.Rules/ListSilences"
        | "/driftdb.v1.Alerts/WatchAlerts"
        | "/driftdb.v1.Alerts/ListAlerts" => Scope::Read,
        "/driftdb.v1.Models/UploadReference"
        | "/driftdb.v1.Ingest/IngestInferences"
        | "/driftdb.v1.Ingest/IngestLabels"
        | "/driftdb.v1.Rules/AnnounceEvent" => Scope::Ingest,
        // CreateModel, CreateRule, DeleteRule, the Admin service, and anything unknown.
        _ => Scope::Admin,
    };
    Need::Scope(scope)
}

/// What HTTP route `route` (the router's pattern, e.g. `/rules/{id}`) needs for `method`.
/// Routes not in this table need `admin`.
pub fn http_need(method: &axum::http::Method, route: &str) -> Need {
    use axum::http::Method;
    let write = *method != Method::GET && *method != Method::HEAD;
    match route {
        // The console's page holds no data: it asks for a key and sends it with each request.
        "/healthz" | "/ui" => Need::Open,
        // Rejected records may belong to any model: node-wide, like /metrics.
        "/metrics" | "/ingest/rejects" | "/admin/checkpoints" => Need::OperatorScope(Scope::Read),
        // A checkpoint holds every team's models: the operator's.
        "/admin/checkpoint" => Need::OperatorScope(Scope::Admin),
        "/models/{id}/drift"
        | "/models/{id}/drift/summary"
        | "/models/{id}/performance"
        | "/models/{id}/report"
        | "/models"
        | "/alerts/watch"
        | "/api/v1/driftql"
        | "/alerts"
        | "/alerts/dead_letters"
        // The Prometheus API reads only, whatever the method (its clients POST forms).
        | "/api/v1/read"
        | "/api/v1/query"
        | "/api/v1/query_range"
        | "/api/v1/series"
        | "/api/v1/labels"
        | "/api/v1/label/{name}/values"
        | "/api/v1/metadata"
        | "/api/v1/query_exemplars" => Need::Scope(Scope::Read),
        "/models/{id}/events" => Need::Scope(Scope::Ingest),
        "/models/{id}/alerts" | "/rules" | "/rules/{id}" | "/silences" | "/silences/{id}"
            if !write =>
        {
            Need::Scope(Scope::Read)
        }
        // Rule and silence creation and deletion, API keys, and anything unknown.
        _ => Need::Scope(Scope::Admin),
    }
}

impl Auth {
    /// Checks `need` for a request carrying `authorization`; the principal when it passes.
    pub fn check(&self, need: Need, authorization: Option<&[u8]>) -> Result<Principal> {
        if need == Need::Open {
            return Ok(Principal::anonymous());
        }
        let p = self.authenticate(authorization)?;
        match need {
            Need::Open => {}
            Need::Scope(s) => p.require(s)?,
            Need::OperatorScope(s) => {
                p.require(s)?;
                p.require_operator("this endpoint (node-wide)")?;
            }
        }
        Ok(p)
    }
}

/// The registry as the query planner sees it for one caller: only the models the caller may
/// see exist (with their references), so DriftQL, drift summaries and the Prometheus series
/// and label APIs never name, read or hint at another team's model.
#[derive(Debug)]
pub struct VisibleCatalog<'a> {
    /// The registry.
    pub registry: &'a Registry,
    /// The caller.
    pub principal: &'a Principal,
}

impl VisibleCatalog<'_> {
    fn visible(&self, model: &str) -> bool {
        self.principal.is_operator()
            || driftdb_query::Catalog::model(self.registry, model)
                .is_some_and(|d| self.principal.sees_model(&d))
    }
}

impl driftdb_query::Catalog for VisibleCatalog<'_> {
    fn model(&self, id: &str) -> Option<ModelDef> {
        driftdb_query::Catalog::model(self.registry, id).filter(|d| self.principal.sees_model(d))
    }

    fn model_ids(&self) -> Vec<String> {
        let ids = driftdb_query::Catalog::model_ids(self.registry);
        if self.principal.is_operator() {
            return ids;
        }
        ids.into_iter().filter(|id| self.visible(id)).collect()
    }

    fn reference(&self, model: &str, version: &str) -> Option<Arc<ReferenceProfile>> {
        if !self.visible(model) {
            return None;
        }
        driftdb_query::Catalog::reference(self.registry, model, version)
    }

    fn reference_with_sketches(&self, model: &str, version: &str) -> Option<Arc<ReferenceProfile>> {
        if !self.visible(model) {
            return None;
        }
        driftdb_query::Catalog::reference_with_sketches(self.registry, model, version)
    }

    fn reference_versions(&self, model: &str) -> Vec<String> {
        if !self.visible(model) {
            return Vec::new();
        }
        driftdb_query::Catalog::reference_versions(self.registry, model)
    }
}

/// The definition a caller may register: a team key's model belongs to its team (a model
/// naming no team gets the key's; naming another team is PERMISSION_DENIED). Operator keys
/// register what they are given; a model without a team is then the operators' own.
pub fn own_model(principal: &Principal, mut def: ModelDef) -> Result<ModelDef> {
    if let Some(team) = principal.team() {
        match &def.team {
            None => def.team = Some(team.to_string()),
            Some(t) if t == team => {}
            Some(t) => {
                return Err(Error::PermissionDenied(format!(
                    "a key of team {team} cannot register a model of team {t}"
                )));
            }
        }
    }
    Ok(def)
}

/// Model `id` if the caller may see it; NOT_FOUND otherwise, worded exactly as for a model that
/// does not exist.
pub fn visible_model(
    registry: &Registry,
    principal: &Principal,
    id: &str,
) -> Result<Arc<ModelEntry>> {
    let m = registry.get(id)?;
    if principal.sees_model(&m.def) {
        Ok(m)
    } else {
        Err(Error::NotFound {
            what: "model",
            name: id.to_string(),
        })
    }
}

/// Whether the caller may see what belongs to model `id` (alerts, rules, dead letters). A
/// model missing from the registry counts as the operators'.
pub fn sees_model_id(registry: &Registry, principal: &Principal, id: &str) -> bool {
    if principal.is_operator() {
        return true;
    }
    registry.get(id).is_ok_and(|m| principal.sees_model(&m.def))
}

/// Whether the caller may see (and change) a rule for `model` (`*`: every model, operators
/// only).
pub fn sees_rule_model(registry: &Registry, principal: &Principal, model: &str) -> bool {
    if model == "*" {
        return principal.is_operator();
    }
    sees_model_id(registry, principal, model)
}

#[cfg(test)]
mod tests;
