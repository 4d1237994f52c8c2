//! Prometheus and Grafana integration (README.md): every driftdb metric as a Prometheus
//! series, served two ways —
//!
//! - **remote read** (`POST /api/v1/read`, [`remote_read`]): a real Prometheus with
//!   `remote_read` pointing here (and `read_recent: true`) queries driftdb's series with its
//!   own PromQL; Grafana talks to that Prometheus;
//! - **a Prometheus-compatible query API** ([`api`]): `/api/v1/query`, `query_range`,
//!   `series`, `labels`, `label/{name}/values`, `metadata`, so Grafana can use driftdb itself
//!   as a Prometheus data source. It evaluates a PromQL subset ([`promql`], [`eval`]): series
//!   selectors, `sum/avg/min/max/count/topk/bottomk` with `by`/`without`, `*_over_time`, number
//!   arithmetic and comparisons against numbers; anything else is a `bad_data` error naming
//!   what is unsupported.
//!
//! Both read the same series ([`series`]): `driftdb_<metric>{model, version, feature,
//! <segment key>=<value>}`, one sample per closed window, stamped at the window's end,
//! computed on the fly from the stored sketches. `server/PROMETHEUS_API.md` documents the
//! names, labels and the supported PromQL. [`health`] adds RocksDB sizes and these endpoints'
//! counters to driftdb's own `/metrics`.

pub mod api;
pub mod eval;
pub mod health;
pub mod matcher;
pub mod promql;
pub mod remote_read;
pub mod series;
pub mod xor;

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
