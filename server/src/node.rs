//! A running driftdb node: the store, the model registry, the clock and the metrics, shared by
//! the gRPC and HTTP servers.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use driftdb_engine::time::Clock;
use driftdb_proto::v1 as pb;
use driftdb_storage::{Store, StoreConfig};

use crate::error::Result;
use crate::registry::Registry;
use crate::rules::{Rules, RulesConfig};

/// Counters exported on `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Counters of the Prometheus remote-read and query API endpoints.
    pub prom: crate::prom::PromMetrics,
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
    /// Requests refused for overload.
    pub overloaded: AtomicU64,
}

impl Metrics {
    /// Counts one inference ack.
    pub fn record_ingest(&self, ack: &pb::BatchAck, features: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.rows_accepted
            .fetch_add(ack.accepted, Ordering::Relaxed);
        self.rows_rejected
            .fetch_add(ack.rejected, Ordering::Relaxed);
        self.rows_duplicate
            .fetch_add(ack.duplicates, Ordering::Relaxed);
        self.feature_values
            .fetch_add(ack.accepted * features as u64, Ordering::Relaxed);
        self.invalid_values
            .fetch_add(ack.invalid_values, Ordering::Relaxed);
    }

    /// Counts one label ack.
    pub fn record_labels(&self, ack: &pb::LabelAck) {
        self.labels_joined.fetch_add(ack.joined, Ordering::Relaxed);
        self.labels_pending
            .fetch_add(ack.pending, Ordering::Relaxed);
        self.labels_rejected
            .fetch_add(ack.rejected, Ordering::Relaxed);
    }

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
            "driftdb_overloaded_total",
            "Requests refused with RESOURCE_EXHAUSTED.",
            g(&self.overloaded),
        );
        counter(
            "driftdb_storage_corrupt_values_total",
            "Stored values that failed their checksum and were skipped.",
            store.corrupt_values() + store.corrupt_operands(),
        );
        out
    }
}

/// Everything a request handler needs.
#[derive(Debug, Clone)]
pub struct Node {
    /// The store.
    pub store: Arc<Store>,
    /// Models and references.
    pub registry: Arc<Registry>,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Ingest requests allowed in flight before RESOURCE_EXHAUSTED.
    pub ingest_permits: Arc<tokio::sync::Semaphore>,
    /// Rules, alert log and webhook outbox.
    pub rules: Arc<Rules>,
}

/// Ingest batches processed concurrently by default; the rest wait in bounded queues.
pub const DEFAULT_INGEST_CONCURRENCY: usize = 8;

impl Node {
    /// Opens the store under `dir` and loads the registry, with default rule settings.
    pub fn open(dir: &Path, config: StoreConfig, clock: Arc<dyn Clock>) -> Result<Node> {
        Node::open_with(dir, config, RulesConfig::default(), clock)
    }

    /// Opens the store under `dir` and loads the registry, rules and alert log.
    pub fn open_with(
        dir: &Path,
        config: StoreConfig,
        rules: RulesConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Node> {
        let store = Arc::new(Store::open(dir, config, Arc::clone(&clock))?);
        let registry = Arc::new(Registry::load(Arc::clone(&store))?);
        let rules = Arc::new(Rules::open(Arc::clone(&store), rules)?);
        Ok(Node {
            store,
            registry,
            clock,
            metrics: Arc::new(Metrics::default()),
            ingest_permits: Arc::new(tokio::sync::Semaphore::new(DEFAULT_INGEST_CONCURRENCY)),
            rules,
        })
    }
}
