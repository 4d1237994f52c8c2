//! HTTP routes of silences (README.md, "Rules and alerts"):
//!
//! | route | answers |
//! |---|---|
//! | `POST /silences` | creates a silence from the JSON body (`engine/src/rules/silence.rs`); 201 with it |
//! | `GET /silences?expired=true` | pending and active silences (expired ones too with `expired=true`), by id |
//! | `GET /silences/{id}` | one silence and every stored version |
//! | `DELETE /silences/{id}` | ends it now (a new version); the silence as it is now |
//!
//! An invalid silence is a 400 naming the field. A team key sees and changes only silences
//! of its own models; a model pattern (`*`) is the operators'.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::{ApiError, ApiResult, blocking};
use crate::auth::Principal;
use crate::error::Error;
use crate::node::Node;
use crate::rules::StoredSilence;

/// The JSON form of a stored silence, with its state at `now`.
pub(crate) fn silence_json(s: &StoredSilence, now: driftdb_engine::time::Timestamp) -> Value {
    let v = &s.silence;
    json!({
        "id": v.id,
        "version": s.version,
        "updated_at": s.updated_at.to_rfc3339(),
        "state": v.state(now).as_str(),
        "matchers": v.matchers,
        "starts_at": driftdb_engine::time::Timestamp(v.starts_at_ms).to_rfc3339(),
        "ends_at": driftdb_engine::time::Timestamp(v.ends_at_ms).to_rfc3339(),
        "created_by": v.created_by,
        "comment": v.comment,
    })
}

/// `POST /silences`.
async fn create(
    State(node): State<Node>,
    Extension(caller): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| Error::Invalid("invalid silence: the body is not UTF-8".into()))?;
    let n2 = node.clone();
    let stored = blocking(move || n2.create_silence(&caller, &text)).await?;
    let now = node.clock.now();
    Ok((StatusCode::CREATED, Json(silence_json(&stored, now))).into_response())
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    expired: Option<bool>,
}

/// `GET /silences`.
async fn list(
    State(node): State<Node>,
    Extension(caller): Extension<Principal>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> ApiResult {
    let Query(p) = params?;
    let now = node.clock.now();
    let rows: Vec<Value> = node
        .silences_of(&caller, p.expired.unwrap_or(false))
        .iter()
        .map(|s| silence_json(s, now))
        .collect();
    Ok(Json(json!({ "silences": rows })))
}

/// `GET /silences/{id}`.
async fn get_one(
    State(node): State<Node>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult {
    let n2 = node.clone();
    let (cur, versions) = blocking(move || n2.silence(&caller, &id)).await?;
    let now = node.clock.now();
    Ok(Json(json!({
        "silence": silence_json(&cur, now),
        "versions": versions.iter().map(|s| silence_json(s, now)).collect::<Vec<_>>(),
    })))
}

/// `DELETE /silences/{id}`.
async fn expire(
    State(node): State<Node>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult {
    let n2 = node.clone();
    let s = blocking(move || n2.expire_silence(&caller, &id)).await?;
    Ok(Json(silence_json(&s, node.clock.now())))
}

/// The routes of this module.
pub(crate) fn routes() -> Router<Node> {
    Router::new()
        .route("/silences", get(list).post(create))
        .route("/silences/{id}", get(get_one).delete(expire))
}
