//! driftdb's PromQL front end and evaluator, compiled from the prom crate's own source files:
//! `limits.rs`, `scan.rs` (the pre-parse scan), `matcher.rs`, `promql.rs` (promql-parser and
//! the lowering), `source.rs` (the in-memory series source) and `eval.rs`. They use nothing of
//! the crate but its error type, provided here with the same variants, so the fuzzer runs
//! exactly the code the server runs without building `driftdb-storage` (and RocksDB) for the
//! sanitizer target.
#![allow(dead_code, missing_docs, unreachable_pub)]

/// Stand-in for `driftdb_prom::error`, with the variants the included files raise.
pub mod error {
    use std::time::Duration;

    /// The crate's error, reduced to what the included files raise.
    #[derive(Debug)]
    pub enum Error {
        /// The request is malformed.
        Invalid(String),
        /// Valid PromQL outside the subset.
        Unsupported(String),
        /// Over a size limit.
        TooLarge(String),
        /// Past the deadline.
        Timeout(Duration),
        /// Cancelled.
        Cancelled,
    }

    impl std::fmt::Display for Error {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                Error::Invalid(s) | Error::TooLarge(s) => f.write_str(s),
                Error::Unsupported(s) => write!(f, "unsupported PromQL: {s}"),
                Error::Timeout(d) => write!(f, "the query was stopped after {d:?}"),
                Error::Cancelled => f.write_str("the query was cancelled"),
            }
        }
    }

    /// Result with the stand-in error.
    pub type Result<T, E = Error> = std::result::Result<T, E>;
}

#[path = "../../src/limits.rs"]
pub mod limits;

#[path = "../../src/scan.rs"]
pub mod scan;

#[path = "../../src/matcher.rs"]
pub mod matcher;

#[path = "../../src/promql.rs"]
pub mod promql;

#[path = "../../src/source.rs"]
pub mod source;

#[path = "../../src/eval.rs"]
pub mod eval;
