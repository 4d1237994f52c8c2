//! The `/ui` console and the two routes it reads besides the report and DriftQL:
//!
//! | route | answers |
//! |---|---|
//! | `GET /ui` | the console: one page (inline CSS and script, no external URL); it holds no data |
//! | `GET /models` | the models the key may see: id, task, window, features, segments, team, versions (in a cluster, every live member's, each with `served_by`) |
//! | `GET /alerts/watch?after=SEQ&model=` | the alerts after sequence `SEQ`, then each new one as it is recorded: one JSON object per line (`application/x-ndjson`), open until the client leaves |
//!
//! The console asks for an API key once and keeps it in the tab's session storage; every
//! request carries it as `Authorization: Bearer …` (never in a URL), so the page sees exactly
//! what the key may see: a team key its team's models and alerts. It lists the models with
//! their drift over the last 24 hours, shows a model's report (`/models/{id}/report`, drawn by
//! the same renderer as `driftdb report`) for a chosen range, opens `explain` for the window of
//! a heatmap cell, and follows the alert feed live.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio_stream::StreamExt;

use super::ApiError;
use crate::auth::Principal;
use crate::error::Error;
use crate::node::Node;

/// The console page.
const PAGE: &str = include_str!("ui.html");

pub(super) fn routes() -> Router<Node> {
    Router::new()
        .route("/ui", get(page))
        .route("/models", get(models))
        .route("/alerts/watch", get(watch))
}

/// `GET /ui`.
async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // The page loads nothing from elsewhere and may not be framed by other sites.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 img-src data:; connect-src 'self'; frame-src 'self' about:; \
                 frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
        .into_response()
}

/// `GET /models`: the models `caller` sees; in a cluster (docs/SCALE_OUT.md), every live
/// member's too (a model defined on one node only is listed), each with the node that answers
/// for it now (`served_by`; `null` while it moves).
async fn models(
    State(node): State<Node>,
    Extension(caller): Extension<Principal>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let models = node.models(&caller)?;
    let mut list: Vec<Value> = models
        .iter()
        .map(|m| {
            let versions: Vec<String> = m
                .references
                .read()
                .map(|r| r.keys().cloned().collect())
                .unwrap_or_default();
            json!({
                "id": m.def.id,
                "task": format!("{:?}", m.def.task).to_lowercase(),
                "window": m.def.window,
                "features": m.def.features.len(),
                "segments": m.def.segments,
                "team": m.def.team,
                "versions": versions,
            })
        })
        .collect();
    let fan_out = node
        .cluster
        .as_ref()
        .filter(|_| !headers.contains_key(crate::cluster::FORWARDED_HEADER));
    if let Some(c) = fan_out {
        let theirs = match crate::cluster::ask_members(c, &headers, "/models").await {
            Ok(t) => t,
            Err(resp) => return Ok(resp),
        };
        let mut by_id: std::collections::BTreeMap<String, Value> = list
            .into_iter()
            .map(|m| (m["id"].as_str().unwrap_or_default().to_string(), m))
            .collect();
        for (_, body) in theirs {
            for m in body["models"].as_array().cloned().unwrap_or_default() {
                let id = m["id"].as_str().unwrap_or_default().to_string();
                by_id.entry(id).or_insert(m);
            }
        }
        let me = c.node_id();
        for (id, m) in &mut by_id {
            m["served_by"] = match c.route(id, false) {
                crate::cluster::Route::Local => Value::from(me.as_str()),
                crate::cluster::Route::Forward { node, .. } => Value::from(node),
                crate::cluster::Route::Moving => Value::Null,
            };
        }
        list = by_id.into_values().collect();
    }
    Ok(Json(json!({ "models": list })).into_response())
}

#[derive(Debug, serde::Deserialize)]
struct WatchParams {
    after: Option<u64>,
    model: Option<String>,
}

/// `GET /alerts/watch?after=&model=`.
async fn watch(
    State(node): State<Node>,
    Extension(caller): Extension<Principal>,
    params: Result<Query<WatchParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params?;
    let model = p.model.filter(|m| !m.trim().is_empty());
    if let Some(m) = &model {
        node.model(&caller, m)?;
    }
    let slot = Arc::clone(&node.gates.watchers)
        .try_acquire_owned()
        .map_err(|_| {
            Error::Overloaded(format!(
                "too many open alert streams (limit {}); retry after 1s",
                node.limits.watchers
            ))
        })?;
    let filter = crate::rules::AlertFilter {
        model,
        min_severity: None,
        principal: caller,
    };
    let rx = node.watch_alerts(p.after.unwrap_or(0), filter, slot);
    let lines = tokio_stream::wrappers::ReceiverStream::new(rx).map(|rec| {
        let mut line = serde_json::to_vec(&rec).unwrap_or_else(|_| b"null".to_vec());
        line.push(b'\n');
        Ok::<_, Infallible>(Bytes::from(line))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(lines),
    )
        .into_response())
}
