//! The node's own counters, rendered on `GET /metrics` in Prometheus' text format: ingest and
//! label counts, overload refusals, corrupt values met, and the Prometheus endpoints' requests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use driftdb_storage::Store;

/// Counters exported on `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Counters of the Prometheus remote-read and query API endpoints.
    pub prom: PromMetrics,
    /// Inference batches acknowledged.
    pub batches: AtomicU64,
    /// Rows accepted.
    pub rows_accepted: AtomicU64,
    /// Rows rejected.
    pub rows_rejected: AtomicU64,
    /// Duplicate rows skipped.
    pub rows_duplicate: AtomicU64,
    /// Feature values folded (accepted rows × features).
    pub feature_values: AtomicU64,
    /// Invalid (NaN/inf) values counted.
    pub invalid_values: AtomicU64,
    /// Labels joined.
    pub labels_joined: AtomicU64,
    /// Labels held for their prediction.
    pub labels_pending: AtomicU64,
    /// Labels rejected.
    pub labels_rejected: AtomicU64,
    /// Labels that came too late to join.
    pub labels_expired: AtomicU64,
    /// Requests refused for overload.
    pub overloaded: AtomicU64,
}

impl Metrics {
    /// The counters in Prometheus' text format.
    pub fn render(&self, store: &Store) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
            ));
        };
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            "driftdb_ingest_batches_total",
            "Inference batches acknowledged.",
            g(&self.batches),
        );
        counter(
            "driftdb_ingest_rows_accepted_total",
            "Inference rows accepted.",
            g(&self.rows_accepted),
        );
        counter(
            "driftdb_ingest_rows_rejected_total",
            "Inference rows rejected.",
            g(&self.rows_rejected),
        );
        counter(
            "driftdb_ingest_rows_duplicate_total",
            "Duplicate inference rows skipped.",
            g(&self.rows_duplicate),
        );
        counter(
            "driftdb_ingest_feature_values_total",
            "Feature values folded into sketches.",
            g(&self.feature_values),
        );
        counter(
            "driftdb_ingest_invalid_values_total",
            "NaN or infinite values counted as invalid.",
            g(&self.invalid_values),
        );
        counter(
            "driftdb_labels_joined_total",
            "Labels joined with their prediction.",
            g(&self.labels_joined),
        );
        counter(
            "driftdb_labels_pending_total",
            "Labels held until their prediction arrives.",
            g(&self.labels_pending),
        );
        counter(
            "driftdb_labels_rejected_total",
            "Labels rejected.",
            g(&self.labels_rejected),
        );
        counter(
            "driftdb_labels_expired_total",
            "Labels that came too late to join (max_label_delay after their prediction's window).",
            g(&self.labels_expired),
        );
        counter(
            "driftdb_pending_expired_removed_total",
            "Label-join records past their deadline removed by compaction.",
            store.pending_expired_removed(),
        );
        counter(
            "driftdb_overloaded_total",
            "Requests refused with RESOURCE_EXHAUSTED.",
            g(&self.overloaded),
        );
        counter(
            "driftdb_storage_corrupt_values_total",
            "Stored values that failed their checksum and were skipped.",
            store.corrupt_values() + store.corrupt_operands(),
        );
        // How far the daily rollups reach: finer windows ending before this are in their day.
        // Lagging far behind `now - rollup_after` means the maintenance task is stuck.
        if let Some(until) = store.daily_rollups_until()
            && until.millis() > i64::MIN
            && until.millis() < i64::MAX
        {
            out.push_str(&format!(
                "# HELP driftdb_daily_rollup_until_seconds Finer windows ending at or before this \
                 Unix time are merged into their day's rollup.\n\
                 # TYPE driftdb_daily_rollup_until_seconds gauge\n\
                 driftdb_daily_rollup_until_seconds {}\n",
                until.millis() / 1000
            ));
        }
        out
    }
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
