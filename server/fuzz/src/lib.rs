//! The server's request decoders, compiled from the server's own source files:
//! `convert/batch.rs` (ingest batches), `prom/remote_read/decode.rs` and the prom crate's
//! `matcher.rs`
//! (remote-read requests), `checkpoint/manifest.rs` (checkpoint manifests). They use nothing of the server but two variants of its error type,
//! provided here with the same names, so the fuzzers run exactly the code the server runs
//! without building RocksDB for the sanitizer target.
#![allow(dead_code, missing_docs)]

/// Stand-in for `driftdb_server::error`, with the variants the decoders use.
pub mod error {
    /// The server's error, reduced to what the decoders raise.
    #[derive(Debug)]
    pub enum Error {
        /// The request is invalid.
        Invalid(String),
        /// A limit was hit.
        Overloaded(String),
    }

    impl std::fmt::Display for Error {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                Error::Invalid(s) | Error::Overloaded(s) => f.write_str(s),
            }
        }
    }

    /// Result with the stand-in error.
    pub type Result<T, E = Error> = std::result::Result<T, E>;
}

#[path = "../../src/convert/batch.rs"]
pub mod batch;

/// The prom crate's label matchers, compiled with the stand-in error.
#[path = "../../../prom/src/matcher.rs"]
pub mod matcher;

#[path = "../../src/prom/remote_read/decode.rs"]
pub mod remote_read_decode;

/// A checkpoint's manifest, as a restore reads it from the object store.
#[path = "../../src/checkpoint/manifest.rs"]
pub mod checkpoint_manifest;


