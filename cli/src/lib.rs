//! The `driftdb` command line as a library: the clap commands ([`commands`]), the gRPC client
//! ([`client`]), the file readers ([`files`]), the one place that prints ([`output`]), the guided
//! `demo` and the load generators behind `driftdb bench`.
//!
//! The binary (`src/main.rs`) only picks the allocator and calls [`commands::main`]. The server
//! library (`driftdb-server`) knows nothing of this crate: clients, file formats and terminals
//! live here, so the node carries none of their dependencies.

#![warn(missing_docs, unreachable_pub)]

pub mod bench;
pub mod bench_alerts;
pub mod bench_checkpoint;
pub mod bench_cluster;
pub mod bench_kafka;
pub mod bench_report;
pub mod client;
pub mod cluster;
pub mod commands;
pub mod demo;
pub mod error;
pub mod files;
pub mod kafka;
pub mod output;
pub mod rng;
