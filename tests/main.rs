//! driftdb's integration tests: one binary, real components (RocksDB on temp dirs, servers on
//! 127.0.0.1:0).

mod deps;
mod ingest;
