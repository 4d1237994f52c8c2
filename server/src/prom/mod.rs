//! Prometheus and Grafana integration (SPEC §5, issue 7): every driftdb metric as a Prometheus
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

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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

/// The endpoints counted on `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /api/v1/read`.
    Read,
    /// `/api/v1/query`.
    Query,
    /// `/api/v1/query_range`.
    QueryRange,
    /// `/api/v1/series`.
    Series,
    /// `/api/v1/labels`.
    Labels,
    /// `/api/v1/label/{name}/values`.
    LabelValues,
}

impl Endpoint {
    const ALL: [Endpoint; 6] = [
        Endpoint::Read,
        Endpoint::Query,
        Endpoint::QueryRange,
        Endpoint::Series,
        Endpoint::Labels,
        Endpoint::LabelValues,
    ];

    fn name(self) -> &'static str {
        match self {
            Endpoint::Read => "read",
            Endpoint::Query => "query",
            Endpoint::QueryRange => "query_range",
            Endpoint::Series => "series",
            Endpoint::Labels => "labels",
            Endpoint::LabelValues => "label_values",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Counters of the Prometheus endpoints (part of the node's metrics).
#[derive(Debug, Default)]
pub struct PromMetrics {
    requests: [AtomicU64; 6],
    errors: [AtomicU64; 6],
    micros: [AtomicU64; 6],
    read_series: AtomicU64,
    read_samples: AtomicU64,
}

impl PromMetrics {
    /// Counts one request.
    pub fn record_request(&self, e: Endpoint, took: Duration, failed: bool) {
        let i = e.index();
        self.requests[i].fetch_add(1, Ordering::Relaxed);
        if failed {
            self.errors[i].fetch_add(1, Ordering::Relaxed);
        }
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.micros[i].fetch_add(us, Ordering::Relaxed);
    }

    /// Counts what one remote read returned.
    pub fn record_read(&self, series: usize, samples: usize) {
        self.read_series.fetch_add(series as u64, Ordering::Relaxed);
        self.read_samples
            .fetch_add(samples as u64, Ordering::Relaxed);
    }

    /// The counters in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let family =
            |out: &mut String, name: &str, help: &str, vals: &[AtomicU64; 6], scale: f64| {
                out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
                for e in Endpoint::ALL {
                    let v = g(&vals[e.index()]) as f64 * scale;
                    out.push_str(&format!("{name}{{endpoint=\"{}\"}} {v}\n", e.name()));
                }
            };
        family(
            &mut out,
            "driftdb_prom_requests_total",
            "Requests to the Prometheus remote-read and query API endpoints.",
            &self.requests,
            1.0,
        );
        family(
            &mut out,
            "driftdb_prom_request_errors_total",
            "Requests to the Prometheus endpoints answered with an error.",
            &self.errors,
            1.0,
        );
        family(
            &mut out,
            "driftdb_prom_request_seconds_total",
            "Time spent answering the Prometheus endpoints.",
            &self.micros,
            1e-6,
        );
        for (name, help, v) in [
            (
                "driftdb_remote_read_series_total",
                "Series returned by remote read.",
                g(&self.read_series),
            ),
            (
                "driftdb_remote_read_samples_total",
                "Samples returned by remote read.",
                g(&self.read_samples),
            ),
        ] {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_per_endpoint() {
        let m = PromMetrics::default();
        m.record_request(Endpoint::Read, Duration::from_millis(1500), false);
        m.record_request(Endpoint::QueryRange, Duration::from_millis(2), true);
        m.record_read(3, 40);
        let text = m.render();
        assert!(text.contains("driftdb_prom_requests_total{endpoint=\"read\"} 1\n"));
        assert!(text.contains("driftdb_prom_request_errors_total{endpoint=\"query_range\"} 1\n"));
        assert!(text.contains("driftdb_prom_request_errors_total{endpoint=\"read\"} 0\n"));
        assert!(text.contains("driftdb_prom_request_seconds_total{endpoint=\"read\"} 1.5\n"));
        assert!(text.contains("driftdb_remote_read_samples_total 40\n"));
    }
}
