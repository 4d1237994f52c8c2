//! driftdb's integration tests: one binary, real components (RocksDB on temp dirs, servers on
//! 127.0.0.1:0).

#![expect(clippy::unwrap_used, reason = "tests fail loudly on broken setup")]

mod alert_groups;
mod alerts;
mod checkpoint;
mod deps;
mod ingest;
mod pending;
mod prom;
mod query_e2e;
mod security;
