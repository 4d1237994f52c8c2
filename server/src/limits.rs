//! Bounds on what a node holds for its callers at once, and the semaphores that enforce them.

use std::sync::Arc;
use std::time::Duration;

/// How long an ingest batch waits for a processing slot before RESOURCE_EXHAUSTED.
pub const OVERLOAD_WAIT: Duration = Duration::from_secs(2);

/// Bounds on what a node holds for its callers at once (`"limits"` in `serve --config`).
/// Past each bound a request is refused (RESOURCE_EXHAUSTED / 429 with a retry hint) rather
/// than queued without end, so memory stays bounded under overload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Ingest batches processed at once (default 8); a batch waits at most
    /// [`OVERLOAD_WAIT`] for a slot.
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
    /// Queries (DriftQL, PromQL, remote read, series listings) running at once (default 4 per
    /// core); a query waits at most 2 s for a slot, then RESOURCE_EXHAUSTED / 429.
    pub query_concurrency: usize,
    /// How long one query may run before it stops with DEADLINE_EXCEEDED / 503 (default 30 s).
    pub query_timeout: Duration,
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
            query_concurrency: 4 * std::thread::available_parallelism().map_or(1, |n| n.get()),
            query_timeout: Duration::from_secs(30),
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
    /// Query slots and the per-query time budget.
    pub queries: crate::query::QueryGate,
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
            queries: crate::query::QueryGate::new(limits.query_concurrency, limits.query_timeout),
        }
    }
}

/// Ingest batches processed concurrently by default; the rest wait in bounded queues.
pub const DEFAULT_INGEST_CONCURRENCY: usize = 8;
