//! The HTTP server (axum): health and driftdb's own metrics.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::node::Node;

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics(State(node): State<Node>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        node.metrics.render(&node.store),
    )
}

/// The HTTP routes.
pub fn router(node: Node) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(node)
}
