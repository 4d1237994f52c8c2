//! A running driftdb node: the store, the model registry, the clock and the metrics, shared by
//! the gRPC and HTTP servers.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use driftdb_engine::time::Clock;
use driftdb_proto::v1 as pb;
use driftdb_storage::{Store, StoreConfig};

use crate::auth::{Auth, AuthMode};
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

/// Bounds on what a node holds for its callers at once (`"limits"` in `serve --config`).
/// Past each bound a request is refused (RESOURCE_EXHAUSTED / 429 with a retry hint) rather
/// than queued without end, so memory stays bounded under overload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Ingest batches processed at once (default 8); a batch waits at most
    /// [`crate::grpc::OVERLOAD_WAIT`] for a slot.
    pub ingest_concurrency: usize,
    /// Open ingest streams (inference, label and reference uploads) at once (default 64).
    pub ingest_streams: usize,
    /// An inference or label stream that sends nothing for this long is ended with
    /// DEADLINE_EXCEEDED, freeing its slot (default 5 minutes).
    pub ingest_idle_timeout: std::time::Duration,
    /// Bytes of received ingest messages held at once, waiting or being processed (default
    /// 256 MiB); a batch that does not fit is refused at once.
    pub ingest_memory_bytes: usize,
    /// Largest gRPC message accepted, bytes (default 64 MiB; a 1,000-row × 500-feature batch
    /// is about 4 MB).
    pub max_message_bytes: usize,
    /// Largest HTTP request body, bytes (default 8 MiB).
    pub max_http_body_bytes: usize,
    /// HTTP requests served at once (default 256).
    pub http_concurrency: usize,
    /// Open `WatchAlerts` streams (default 256).
    pub watchers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            ingest_concurrency: DEFAULT_INGEST_CONCURRENCY,
            ingest_streams: 64,
            ingest_idle_timeout: std::time::Duration::from_secs(300),
            ingest_memory_bytes: 256 << 20,
            max_message_bytes: 64 << 20,
            max_http_body_bytes: 8 << 20,
            http_concurrency: 256,
            watchers: 256,
        }
    }
}

/// The semaphores enforcing [`Limits`] (the ingest slots are [`Node::ingest_permits`]).
#[derive(Debug)]
pub struct Gates {
    /// One permit per open ingest stream.
    pub ingest_streams: Arc<tokio::sync::Semaphore>,
    /// One permit per KiB of ingest messages held.
    pub ingest_kib: Arc<tokio::sync::Semaphore>,
    /// One permit per HTTP request in flight.
    pub http: Arc<tokio::sync::Semaphore>,
    /// One permit per open alert stream.
    pub watchers: Arc<tokio::sync::Semaphore>,
}

impl Gates {
    /// Gates sized by `limits` (each at least one permit).
    pub fn new(limits: &Limits) -> Gates {
        let sem = |n: usize| Arc::new(tokio::sync::Semaphore::new(n.max(1)));
        Gates {
            ingest_streams: sem(limits.ingest_streams),
            ingest_kib: sem(limits.ingest_memory_bytes.div_ceil(1024)),
            http: sem(limits.http_concurrency),
            watchers: sem(limits.watchers),
        }
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
    /// API keys and whether they are required.
    pub auth: Arc<Auth>,
    /// Bounds on requests held at once.
    pub limits: Limits,
    /// The semaphores enforcing `limits`.
    pub gates: Arc<Gates>,
}

/// Ingest batches processed concurrently by default; the rest wait in bounded queues.
pub const DEFAULT_INGEST_CONCURRENCY: usize = 8;

impl Node {
    /// Opens the store under `dir` and loads the registry, with default rule settings. `auth`
    /// says whether callers need API keys: there is no default, every caller states it.
    pub fn open(
        dir: &Path,
        config: StoreConfig,
        clock: Arc<dyn Clock>,
        auth: AuthMode,
    ) -> Result<Node> {
        Node::open_with(dir, config, RulesConfig::default(), clock, auth)
    }

    /// Opens the store under `dir` and loads the registry, rules, alert log and API keys.
    pub fn open_with(
        dir: &Path,
        config: StoreConfig,
        rules: RulesConfig,
        clock: Arc<dyn Clock>,
        auth: AuthMode,
    ) -> Result<Node> {
        let store = Arc::new(Store::open(dir, config, Arc::clone(&clock))?);
        let registry = Arc::new(Registry::load(Arc::clone(&store))?);
        let rules = Arc::new(Rules::open(Arc::clone(&store), rules)?);
        let auth = Arc::new(Auth::open(Arc::clone(&store), auth)?);
        if auth.mode() == AuthMode::Disabled {
            tracing::warn!(
                "authentication is switched off: every caller is an operator with every scope (local use only)"
            );
        }
        let limits = Limits::default();
        Ok(Node {
            store,
            registry,
            clock,
            metrics: Arc::new(Metrics::default()),
            ingest_permits: Arc::new(tokio::sync::Semaphore::new(limits.ingest_concurrency)),
            rules,
            auth,
            gates: Arc::new(Gates::new(&limits)),
            limits,
        })
    }

    /// The node with other limits (fresh gates; call before serving).
    pub fn with_limits(mut self, limits: Limits) -> Node {
        self.ingest_permits = Arc::new(tokio::sync::Semaphore::new(
            limits.ingest_concurrency.max(1),
        ));
        self.gates = Arc::new(Gates::new(&limits));
        self.limits = limits;
        self
    }
}
