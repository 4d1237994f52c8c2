//! Integration tests of the `driftdb` binary: each one runs the real executable (built by cargo
//! for this test binary) against real servers on 127.0.0.1 and real RocksDB data directories.
//! One test binary, so RocksDB is linked once.

#![expect(clippy::unwrap_used, reason = "tests fail loudly on a broken setup")]

mod bench_cli;
mod common;
mod demo_cli;
mod estimated_cli;
mod faults;
mod files_cli;
mod golden_cli;
mod hostile;
mod importance_cli;
mod kafka_cli;
mod keys_cli;
mod kill9;
mod overload;
mod query_cli;
mod report_cli;
mod silence_cli;
