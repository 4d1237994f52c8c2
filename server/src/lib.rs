//! The `driftdb` server and command-line client: gRPC (tonic) and HTTP (axum) servers over one
//! node, the model registry, the ingest and label-join paths, file readers and the CLI.
//!
//! Only this crate knows about transports: errors from the core crates are classified by kind
//! and mapped to gRPC and HTTP codes in [`error`]. Who may call what is decided in [`auth`].

pub mod auth;
pub mod bench;
pub mod bench_alerts;
pub mod cli;
pub mod client;
pub mod convert;
pub mod demo;
pub mod error;
pub mod files;
pub mod grpc;
pub mod http;
pub mod ingest;
pub mod maintenance;
pub mod node;
pub mod output;
pub mod prom;
pub mod query;
pub mod registry;
pub mod rng;
pub mod rules;
pub mod serve;
pub mod tls;
