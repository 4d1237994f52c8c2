//! The HTTP adapters of the Prometheus integration: remote read (`POST /api/v1/read`,
//! [`remote_read`]) and the Prometheus-compatible query API ([`api`]: `/api/v1/query`,
//! `query_range`, `series`, `labels`, `label/{name}/values`, `metadata`), so a real Prometheus
//! with `remote_read`, or Grafana directly, can read every driftdb metric as a series.
//!
//! They only decode requests, run the `driftdb-prom` crate (PromQL parsed by promql-parser,
//! series computed from the stored sketches, XOR chunks) on the blocking pool under the query
//! slots and a time budget, and encode its answers; `prom/PROMETHEUS_API.md` documents the
//! series, the PromQL subset, the limits and the error mapping. [`health`] adds RocksDB sizes
//! and these endpoints' counters to driftdb's own `/metrics`.

pub mod api;
pub mod health;
pub mod remote_read;

use axum::Router;
use axum::routing::{get, post};

use crate::node::Node;

/// The routes of this module, merged into the HTTP router.
pub fn routes() -> Router<Node> {
    Router::new()
        .route("/api/v1/read", post(remote_read::read))
        .route("/api/v1/query", get(api::query).post(api::query))
        .route(
            "/api/v1/query_range",
            get(api::query_range).post(api::query_range),
        )
        .route("/api/v1/series", get(api::series).post(api::series))
        .route("/api/v1/labels", get(api::labels).post(api::labels))
        .route(
            "/api/v1/label/{name}/values",
            get(api::label_values).post(api::label_values),
        )
        .route("/api/v1/metadata", get(api::metadata))
        .route(
            "/api/v1/query_exemplars",
            get(api::exemplars).post(api::exemplars),
        )
}
