//! The driftdb node and its transports: the model registry, the ingest and label-join paths,
//! rules, alerts and the webhook outbox, maintenance and auth (the node), served over gRPC
//! (tonic) and HTTP (axum).
//!
//! Only this crate knows about transports: errors from the core crates are classified by kind
//! and mapped to gRPC and HTTP codes in [`error`]. Who may call what is decided in [`auth`].
//! Clients, file readers and the command line live in `driftdb-cli`.

#![warn(missing_docs, unreachable_pub)]

// The node and what it is made of; none of these names a transport.
pub mod auth;
pub mod checkpoint;
pub mod cluster;
pub mod config;
pub mod error;
pub mod ingest;
pub mod limits;
pub mod maintenance;
pub mod metrics;
pub mod node;
pub mod pipeline;
pub mod query;
pub mod records;
pub mod registry;
pub mod rules;
pub mod sources;

// The transports over the node.
pub mod convert;
pub mod grpc;
pub mod guard;
pub mod http;
pub mod prom;
pub mod serve;
pub mod tls;
