//! HTTP routes of rules and alerts (README.md; README.md, "Rules and alerts"):
//!
//! | route | answers |
//! |---|---|
//! | `POST /models/{id}/alerts` | creates a rule for model `id` from the JSON body (its `model` defaults to `id`); 201 with the stored rule |
//! | `GET /models/{id}/alerts?from=&to=&limit=` | the model's alert history, newest first |
//! | `POST /models/{id}/events` with `{"event": "release", "version": "v2"}` | announces an event; the alerts it fired |
//! | `GET /rules?model=` | every rule (that applies to `model`) |
//! | `POST /rules` | creates (or replaces, version + 1) a rule from the JSON body |
//! | `GET /rules/{id}`, `DELETE /rules/{id}` | one rule, with every stored version / deletes it |
//! | `GET /alerts?model=&from=&to=&limit=` | alert history of every model (in a cluster, every live member's, each alert naming its `node`) |
//! | `GET /alerts/dead_letters` | webhook deliveries given up on, with their last error |
//! | `POST /alerts/{seq}/ack` with `{"by": "alice", "comment": "on it"}` | acknowledges firing `seq`; the alert record |
//!
//! Rule bodies are the JSON documented in `engine/src/rules.rs`; an invalid rule is a 400 whose
//! message names the field at fault. Secrets (PagerDuty routing keys, Slack webhook URLs, Jira
//! tokens, webhook query strings) come back as `"***"`. A team key sees and changes only the
//! rules, alerts and dead letters of its team's models; rules for every model (`"*"`) are the
//! operators'.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::{ApiError, ApiResult, blocking};
use crate::auth::Principal;
use crate::error::Error;
use crate::node::Node;
use crate::query::TimeArg;
use crate::rules::{AlertRecord, StoredRule, redacted_json};

fn rule_json(node: &Node, r: &StoredRule) -> Value {
    json!({
        "id": r.def.id,
        "version": r.version,
        "updated_at": r.updated_at.to_rfc3339(),
        "rule": redacted_json(&r.def),
        "last_error": node.rule_error(&r.def.id),
    })
}

fn alert_json(r: &AlertRecord) -> Value {
    serde_json::to_value(r).unwrap_or(Value::Null)
}

fn parse_body(body: &Bytes) -> Result<Value, Error> {
    serde_json::from_slice(body).map_err(|e| Error::Invalid(format!("invalid rule: not JSON: {e}")))
}

async fn create(node: Node, caller: Principal, body: Value) -> Result<Response, ApiError> {
    let text = body.to_string();
    let n2 = node.clone();
    let stored = blocking(move || n2.create_rule(&caller, &text)).await?;
    Ok((StatusCode::CREATED, Json(rule_json(&node, &stored))).into_response())
}

/// `POST /models/{id}/alerts`.
async fn create_for_model(
    State(node): State<Node>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut v = parse_body(&body)?;
    let Some(obj) = v.as_object_mut() else {
        return Err(Error::Invalid("invalid rule: must be a JSON object".into()).into());
    };
    match obj.get("model") {
        None => {
            obj.insert("model".into(), json!(id));
        }
        Some(Value::String(m)) if *m == id => {}
        Some(other) => {
            return Err(Error::Invalid(format!(
                "invalid rule: model: {other} does not match the model of the URL ({id})"
            ))
            .into());
        }
    }
    create(node, caller, v).await
}

/// `POST /rules`.
async fn create_any(
    State(node): State<Node>,
    Extension(caller): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let v = parse_body(&body)?;
    create(node, caller, v).await
}

#[derive(Debug, Default, serde::Deserialize)]
struct ListParams {
    model: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
}

/// `GET /rules?model=`.
async fn list(
    State(node): State<Node>,
    Extension(caller): Extension<Principal>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> ApiResult {
    let Query(p) = params?;
    let model = p.model.filter(|m| !m.is_empty());
    let rules: Vec<Value> = node
        .rules_of(&caller, model.as_deref())
        .iter()
        .map(|r| rule_json(&node, r))
        .collect();
    Ok(Json(json!({ "rules": rules })))
}

/// `GET /rules/{id}`: the rule and every stored version.
async fn get_rule(
    State(node): State<Node>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult {
    let current = node.rules.book.get(&id);
    let n2 = node.clone();
    let id2 = id.clone();
    let history = blocking(move || n2.rules.book.history(&id2)).await?;
    // Whose rule it is: the current version's model, or the last stored version's.
    let model = current.as_ref().map(|r| r.def.model.clone()).or_else(|| {
        history
            .last()
            .and_then(|(_, _, d)| d["model"].as_str().map(str::to_string))
    });
    let visible = model.is_some_and(|m| crate::auth::sees_rule_model(&node.registry, &caller, &m));
    if !visible {
        return Err(Error::NotFound {
            what: "rule",
            name: id,
        }
        .into());
    }
    let versions: Vec<Value> = history
        .iter()
        .map(|(v, deleted, rule)| json!({"version": v, "deleted": deleted, "rule": rule}))
        .collect();
    Ok(Json(json!({
        "rule": current.map(|r| rule_json(&node, &r)),
        "versions": versions,
    })))
}

/// `DELETE /rules/{id}`.
async fn delete_rule(
    State(node): State<Node>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult {
    let n2 = node.clone();
    let id2 = id.clone();
    blocking(move || n2.delete_rule(&caller, &id2)).await?;
    Ok(Json(json!({ "deleted": id })))
}

/// The alert history newest first; in a cluster (docs/SCALE_OUT.md), every live member's too
/// (each alert names the `node` that fired it: its `seq` is that node's), merged by when they
/// were recorded.
async fn history(
    node: Node,
    caller: Principal,
    model: Option<String>,
    p: ListParams,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let now = node.clock.now();
    let from = TimeArg::parse("from", p.from.as_deref().unwrap_or(""))?.map(|t| t.resolve(now));
    let to = TimeArg::parse("to", p.to.as_deref().unwrap_or(""))?.map(|t| t.resolve(now));
    let limit = p.limit.unwrap_or(100).clamp(1, 10_000);
    let n2 = node.clone();
    let m2 = model.clone();
    let recs = blocking(move || n2.alert_history(&caller, m2.as_deref(), from, to, limit)).await?;
    let mut alerts: Vec<Value> = recs.iter().map(alert_json).collect();
    let fan_out = node
        .cluster
        .as_ref()
        .filter(|_| !headers.contains_key(crate::cluster::FORWARDED_HEADER));
    if let Some(c) = fan_out {
        let query = {
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in [("model", model), ("from", p.from), ("to", p.to)] {
                if let Some(v) = v {
                    q.append_pair(k, &v);
                }
            }
            q.append_pair("limit", &limit.to_string());
            q.finish()
        };
        let theirs =
            match crate::cluster::ask_members(c, headers, &format!("/alerts?{query}")).await {
                Ok(t) => t,
                Err(resp) => return Ok(resp),
            };
        let me = c.node_id();
        for a in &mut alerts {
            a["node"] = Value::from(me.as_str());
        }
        for (member, body) in theirs {
            for mut a in body["alerts"].as_array().cloned().unwrap_or_default() {
                a["node"] = Value::from(member.as_str());
                alerts.push(a);
            }
        }
        let key = |a: &Value| {
            (
                a["recorded_at_ms"].as_i64().unwrap_or(0),
                a["node"].as_str().unwrap_or("").to_string(),
                a["seq"].as_u64().unwrap_or(0),
            )
        };
        alerts.sort_by_key(|a| std::cmp::Reverse(key(a)));
        alerts.truncate(limit);
    }
    Ok(Json(json!({ "alerts": alerts })).into_response())
}

/// `GET /models/{id}/alerts`.
async fn model_history(
    State(node): State<Node>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params?;
    history(node, caller, Some(id), p, &headers).await
}

/// `GET /alerts?model=`.
async fn all_history(
    State(node): State<Node>,
    Extension(caller): Extension<Principal>,
    headers: HeaderMap,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(mut p) = params?;
    let model = p.model.take().filter(|m| !m.is_empty());
    history(node, caller, model, p, &headers).await
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EventBody {
    event: String,
    version: Option<String>,
}

/// `POST /models/{id}/events`.
async fn announce(
    State(node): State<Node>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let b: EventBody = serde_json::from_slice(&body).map_err(|e| {
        Error::Invalid(format!(
            "the body must be JSON {{\"event\": \"<name>\", \"version\": \"<optional>\"}}: {e}"
        ))
    })?;
    let n2 = node.clone();
    let recs =
        blocking(move || n2.announce_event(&caller, &id, &b.event, b.version.as_deref())).await?;
    Ok(Json(
        json!({ "alerts": recs.iter().map(alert_json).collect::<Vec<_>>() }),
    ))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    by: String,
    #[serde(default)]
    comment: String,
}

/// `POST /alerts/{seq}/ack`.
async fn acknowledge(
    State(node): State<Node>,
    Extension(caller): Extension<Principal>,
    Path(seq): Path<String>,
    body: Bytes,
) -> ApiResult {
    let seq: u64 = seq
        .parse()
        .map_err(|_| Error::Invalid(format!("{seq:?} is not an alert sequence number")))?;
    let b: AckBody = serde_json::from_slice(&body).map_err(|e| {
        Error::Invalid(format!(
            "the body must be JSON {{\"by\": \"<who>\", \"comment\": \"<optional>\"}}: {e}"
        ))
    })?;
    let n2 = node.clone();
    let rec = blocking(move || n2.acknowledge_alert(&caller, seq, &b.by, &b.comment)).await?;
    Ok(Json(alert_json(&rec)))
}

/// `GET /alerts/dead_letters`.
async fn dead_letters(
    State(node): State<Node>,
    Extension(caller): Extension<Principal>,
) -> ApiResult {
    let n2 = node.clone();
    let dead = blocking(move || n2.dead_letters(&caller)).await?;
    let rows: Vec<Value> = dead
        .iter()
        .map(|d| {
            json!({
                "sequence": d.seq,
                "action_index": d.index,
                "kind": d.kind,
                "url": crate::rules::display_url_of(&d.kind, &d.url),
                "attempts": d.attempts,
                "last_error": d.last_error,
                "event_id": d.event_id,
            })
        })
        .collect();
    Ok(Json(json!({ "dead_letters": rows })))
}

/// The routes of this module.
pub(crate) fn routes() -> Router<Node> {
    Router::new()
        .route(
            "/models/{id}/alerts",
            post(create_for_model).get(model_history),
        )
        .route("/models/{id}/events", post(announce))
        .route("/rules", get(list).post(create_any))
        .route("/rules/{id}", get(get_rule).delete(delete_rule))
        .route("/alerts", get(all_history))
        .route("/alerts/dead_letters", get(dead_letters))
        .route("/alerts/{seq}/ack", post(acknowledge))
}
