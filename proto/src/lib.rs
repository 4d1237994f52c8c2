//! driftdb's gRPC API: the `.proto` files under `driftdb/v1/` and the code generated from them.
//! Conversions to engine types live in the server crate (`server/src/convert/`).
#![allow(
    missing_docs,
    clippy::all,
    missing_debug_implementations,
    reason = "generated code"
)]

/// `driftdb.v1`: models, ingest, query, rules and alerts.
pub mod v1 {
    tonic::include_proto!("driftdb.v1");
}
