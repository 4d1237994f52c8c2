//! driftdb's engine: core types, sketch states and their binary codecs, statistics and rule
//! logic. Pure computation: no I/O, no async runtime, no storage (docs/ARCHITECTURE.md).
//!
//! - [`time`]: timestamps, window ids from event time, the [`time::Clock`] trait;
//! - [`series`]: series identity (model, version, feature, segment);
//! - [`catalog`]: the one metric catalog DriftQL, rules and the Prometheus mapping read;
//! - [`model`]: model definitions;
//! - [`sketch`]: mergeable per-window states holding Apache DataSketches images;
//! - [`ingest`]: folding inference batches into sketch deltas, and the label join;
//! - [`mod@reference`]: reference profiles built once per model version;
//! - [`codec`]: the versioned, checksummed envelope every stored value uses;
//! - [`stats`]: drift, summaries, performance, FDR control and silent-failure signals over states;
//! - [`rules`]: alert rules, their evaluation state machine, alert payloads and retry schedule.
#![warn(missing_docs)]

pub mod catalog;
pub mod codec;
pub mod error;
pub mod ingest;
pub mod model;
pub mod reference;
pub mod rng;
pub mod rules;
pub mod series;
pub mod sketch;
pub mod stats;
pub mod time;

pub use error::{Error, ErrorKind, Result};

/// A hash map for hot paths: foldhash with a per-process random seed (fast on short keys,
/// still not predictable by whoever sends the strings), instead of the standard SipHash.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// The [`FastMap`] set.
pub type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
