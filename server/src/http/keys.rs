//! HTTP routes of API keys (scope `admin`; who may manage which keys: [`crate::auth::admin`]):
//!
//! | route | answers |
//! |---|---|
//! | `POST /admin/keys` with `{"name", "team" or "operator": true, "scopes": [...]}` | 201 with `{"key": {...}, "token": "ddb_..."}`; the token is never shown again |
//! | `GET /admin/keys` | `{"keys": [...]}`, revoked ones included, without secrets |
//! | `DELETE /admin/keys/{id}` | `{"key": {...}}` with `revoked_at` set |

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde_json::json;

use super::{ApiError, ApiResult};
use crate::auth::admin::{KeyRequest, key_json};
use crate::auth::{Principal, Scopes};
use crate::error::Error;
use crate::node::Node;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    #[serde(default)]
    team: Option<String>,
    #[serde(default)]
    operator: bool,
    scopes: Scopes,
}

/// `POST /admin/keys`.
async fn create(
    State(node): State<Node>,
    Extension(caller): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: CreateBody = serde_json::from_slice(&body).map_err(|e| {
        Error::Invalid(format!(
            "the body must be JSON {{\"name\": \"...\", \"team\": \"...\" or \"operator\": true, \"scopes\": [\"read\", ...]}}: {e}"
        ))
    })?;
    let k = tokio::task::spawn_blocking(move || {
        node.create_key(
            &caller,
            KeyRequest {
                name: b.name,
                team: b.team,
                operator: b.operator,
                scopes: b.scopes,
            },
        )
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))??;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "key": key_json(&k.record), "token": k.token })),
    )
        .into_response())
}

/// `GET /admin/keys`.
async fn list(State(node): State<Node>, Extension(caller): Extension<Principal>) -> ApiResult {
    let keys: Vec<_> = node.keys(&caller).iter().map(key_json).collect();
    Ok(Json(json!({ "keys": keys })))
}

/// `DELETE /admin/keys/{id}`.
async fn revoke(
    State(node): State<Node>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult {
    let k = tokio::task::spawn_blocking(move || node.revoke_key(&caller, &id))
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
    Ok(Json(json!({ "key": key_json(&k) })))
}

/// The routes of this module.
pub(crate) fn routes() -> Router<Node> {
    Router::new()
        .route("/admin/keys", get(list).post(create))
        .route("/admin/keys/{id}", delete(revoke))
}
