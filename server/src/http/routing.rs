//! The cluster's HTTP layer (docs/SCALE_OUT.md): after auth, each model request is answered
//! here, relayed to the member that owns the model, or refused as moving (503), as
//! [`crate::cluster::Cluster::route`] decides.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::cluster::{FORWARDED_HEADER, NODE_HEADER, Route, model_of, moving};
use crate::node::Node;

/// The HTTP layer (after auth): answers here, relays to the owner, or refuses as moving.
pub(super) async fn http(State(node): State<Node>, req: Request, next: Next) -> Response {
    let Some(c) = node.cluster.clone() else {
        return next.run(req).await;
    };
    let path = req.uri().path().to_string();
    // A model's alert history is fanned out instead (each node holds the alerts it fired).
    let history = req.method() == axum::http::Method::GET
        && path.starts_with("/models/")
        && path.ends_with("/alerts")
        && path.matches('/').count() == 3;
    let routed = (path.starts_with("/models/") || path == "/api/v1/driftql") && !history;
    if !routed {
        return next.run(req).await;
    }
    let forwarded = req.headers().contains_key(FORWARDED_HEADER);
    let (parts, body) = req.into_parts();
    // Bodies are read whole (to find a DriftQL statement's model, and to relay them), within
    // the same limit as the handlers' (413 past it).
    let bytes = if !matches!(
        parts.method,
        axum::http::Method::GET | axum::http::Method::HEAD
    ) {
        match axum::body::to_bytes(body, node.limits.max_http_body_bytes).await {
            Ok(b) => Some(b),
            Err(e) => {
                return (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    axum::Json(serde_json::json!({"error": e.to_string()})),
                )
                    .into_response();
            }
        }
    } else {
        let _ = body;
        None
    };
    let model = model_of(
        &path,
        parts.uri.query(),
        bytes.as_deref().filter(|_| path == "/api/v1/driftql"),
    );
    let route = model
        .as_deref()
        .map_or(Route::Local, |m| c.route(m, forwarded));
    let me = c.node_id();
    let mut resp = match route {
        Route::Local => {
            c.count(0);
            let body = bytes.map_or_else(Body::empty, Body::from);
            next.run(Request::from_parts(parts, body)).await
        }
        Route::Moving => {
            c.count(2);
            moving(
                model.as_deref().unwrap_or_default(),
                "no live member owns its partition yet",
            )
        }
        Route::Forward { node: owner, url } => {
            let target = format!(
                "{url}{}",
                parts.uri.path_and_query().map_or("/", |p| p.as_str())
            );
            let mut rb = c
                .client
                .request(parts.method.clone(), &target)
                .header(FORWARDED_HEADER, &me);
            for h in [header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT] {
                if let Some(v) = parts.headers.get(&h) {
                    rb = rb.header(h, v);
                }
            }
            if let Some(b) = bytes {
                rb = rb.body(b);
            }
            match relay(rb).await {
                Ok(r) => {
                    c.count(1);
                    return r;
                }
                Err(e) => {
                    c.count(3);
                    tracing::warn!(owner = %owner, error = %e, "cluster: forward failed");
                    moving(
                        model.as_deref().unwrap_or_default(),
                        &format!("its owner {owner} did not answer"),
                    )
                }
            }
        }
    };
    if let Ok(v) = HeaderValue::from_str(&me) {
        resp.headers_mut()
            .insert(HeaderName::from_static(NODE_HEADER), v);
    }
    resp
}

/// Sends a forwarded request and turns the owner's answer into ours (status, content type,
/// retry hint, the answering node, body).
async fn relay(rb: reqwest::RequestBuilder) -> Result<Response, reqwest::Error> {
    let r = rb.send().await?;
    let status = StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut keep = Vec::new();
    for h in [header::CONTENT_TYPE, header::RETRY_AFTER] {
        if let Some(v) = r.headers().get(&h) {
            keep.push((h, v.clone()));
        }
    }
    if let Some(v) = r.headers().get(NODE_HEADER) {
        keep.push((HeaderName::from_static(NODE_HEADER), v.clone()));
    }
    let body = r.bytes().await?;
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    for (k, v) in keep {
        resp.headers_mut().insert(k, v);
    }
    Ok(resp)
}
