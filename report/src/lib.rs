//! driftdb's pictures (`driftdb report`, and later the `/ui` console).
//!
//! - [`data`]: what a report holds, as plain serialisable data (`--format json`);
//! - [`build`]: the report of a model over a range, computed with DriftQL's own operators over
//!   any [`driftdb_query::Context`] — a server's store, or windows folded in memory from files;
//! - [`memory`]: an in-memory [`driftdb_storage::SeriesReader`] and the fold of inference rows
//!   into it, for reports straight from files with no server;
//! - [`render`]: one self-contained HTML page (inline CSS and SVG drawn here; no scripts, no
//!   external URLs).
#![warn(missing_docs)]

pub mod build;
pub mod data;
pub mod memory;
pub mod render;

pub use data::Report;
