//! The auth check, once per transport, before any handler runs: an axum middleware on the HTTP
//! routes (it reads the matched route pattern) and the same middleware around the gRPC router
//! (it reads the method path). Each looks up what the route needs ([`crate::auth::http_need`],
//! [`crate::auth::grpc_need`]), checks the `authorization` header, and leaves the [`Principal`] in
//! the request's extensions for the handler's team filtering. A handler that finds no
//! principal refuses the request ([`grpc_principal`]; axum's `Extension` extractor), so a route
//! that escaped the check fails closed.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::{MISSING_KEY, Need, Principal, Scope, grpc_need, http_need};
use crate::error::{Error, to_http, to_status};
use crate::node::Node;

/// The JSON error answer of a refused HTTP request, in a shape both driftdb's clients
/// (`error`) and Prometheus' (`status`, `errorType`) read.
pub fn refused(e: &Error) -> Response {
    let (code, message) = to_http(e);
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let kind = match code {
        401 => "unauthorized",
        403 => "forbidden",
        _ => "error",
    };
    let mut r = (
        status,
        axum::Json(json!({ "status": "error", "errorType": kind, "error": message })),
    )
        .into_response();
    if code == 401 {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"driftdb\""),
        );
    }
    r
}

/// HTTP middleware (installed with `Router::route_layer`, so the matched route is known).
pub async fn http(State(node): State<Node>, mut req: Request, next: Next) -> Response {
    let need = match req.extensions().get::<MatchedPath>() {
        Some(route) => http_need(req.method(), route.as_str()),
        // Not routed: the router answers 404 by itself; refuse anything else.
        None => Need::Scope(Scope::Admin),
    };
    let check = node.auth.check(
        need,
        req.headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes),
    );
    match check {
        Ok(p) => {
            if need != Need::Open {
                req.extensions_mut().insert(p);
            }
            next.run(req).await
        }
        Err(e) => refused(&e),
    }
}

/// gRPC middleware: a refused call ends with its status (UNAUTHENTICATED, PERMISSION_DENIED)
/// before the service decodes a message.
pub async fn grpc(State(node): State<Node>, mut req: Request, next: Next) -> Response {
    let need = grpc_need(req.uri().path());
    let check = node.auth.check(
        need,
        req.headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes),
    );
    match check {
        Ok(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Err(e) => to_status(&e).into_http::<axum::body::Body>(),
    }
}

/// Wraps the gRPC services with [`grpc`].
pub fn grpc_routes(routes: tonic::service::Routes, node: &Node) -> tonic::service::Routes {
    tonic::service::Routes::from(
        routes
            .into_axum_router()
            .layer(axum::middleware::from_fn_with_state(node.clone(), grpc)),
    )
}

/// The caller of a gRPC request, as the middleware left it; UNAUTHENTICATED when missing (the
/// service was reached without the check).
pub fn grpc_principal<T>(req: &tonic::Request<T>) -> Result<Principal, tonic::Status> {
    req.extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| tonic::Status::unauthenticated(MISSING_KEY))
}
