//! driftdb's storage: window sketches and everything else driftdb keeps, in one embedded
//! RocksDB (storage/FORMAT.md).
//!
//! - [`layout`]: column families, key prefixes and the order-preserving, model-first key
//!   encoding (docs/DATA_MODEL.md, scale-out 2); byte diagrams in `storage/FORMAT.md`.
//! - [`Store`]: opening, the durable write path ([`Store::write`] of a [`WriteSet`]: one atomic
//!   WAL-logged batch of sketch merges plus dedup and other records, docs/DATA_MODEL.md, scale-out 4), retention
//!   enforced by a compaction filter, and [`Store::downsample`] (15m → 1h after 30 days).
//! - [`read`]: the [`SeriesReader`] contract `query` depends on, implemented by [`Store`].
//! - [`family`]: sealed get/put/delete/scan for the non-window families.
//!
//! Sketch deltas are RocksDB merge operands folded by the engine's
//! `driftdb_engine::sketch::merge_encoded`; writers never read (docs/DATA_MODEL.md, scale-out 5).
#![warn(missing_docs)]

pub mod config;
pub mod downsample;
pub mod error;
pub mod family;
pub mod layout;
pub mod merge;
pub mod pending;
pub mod read;
pub mod rollup;
pub mod store;
pub mod write;

/// The RocksDB bindings this crate is built on, for users of [`Store::raw_db`].
pub use rocksdb;

pub use config::StoreConfig;
pub use downsample::DownsampleReport;
pub use error::{Error, Result};
pub use family::{Entry, FamilyIter, FamilyRef};
pub use pending::ExpiryClock;
pub use read::{ScanIter, SeriesPrefix, SeriesReader, SeriesWindow, Window, WindowIter};
pub use rollup::RollReport;
pub use store::Store;
pub use write::{Family, WriteSet};
