//! The `/ui` console and the two routes it reads besides the report and DriftQL:
//!
//! | route | answers |
//! |---|---|
//! | `GET /ui` | the console: one page (inline CSS and script, no external URL); it holds no data |
//! | `GET /models` | the models the key may see: id, task, window, features, segments, team, versions |
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
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio_stream::StreamExt;

use super::{ApiError, ApiResult};
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

/// `GET /models`.
async fn models(State(node): State<Node>, Extension(caller): Extension<Principal>) -> ApiResult {
    let models = node.models(&caller)?;
    let list: Vec<_> = models
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
    Ok(Json(json!({ "models": list })))
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
