//! The crate's error type. Every variant maps to one [`ErrorKind`] (the server turns kinds into
//! HTTP and gRPC statuses) and to one Prometheus `errorType` ([`Error::error_type`]).
//!
//! The split that matters to a client is between a query that is **too large** — retrying
//! cannot help, the message names the limit and how to narrow the query, kind
//! `InvalidArgument` — and a query stopped because it ran out of **time** (kind
//! `DeadlineExceeded`: retrying later, on a quieter node, or a narrower query may work) or was
//! **cancelled** (kind `Cancelled`: its caller went away).

use std::time::Duration;

use driftdb_engine::ErrorKind;

/// Errors of parsing, planning and evaluating PromQL and of selecting series.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An engine error (an invalid model definition or duration in the catalog).
    #[error(transparent)]
    Engine(#[from] driftdb_engine::Error),
    /// A storage error while reading windows.
    #[error(transparent)]
    Storage(#[from] driftdb_storage::Error),
    /// A DriftQL metric failed while computing a sample.
    #[error(transparent)]
    Query(#[from] driftdb_query::Error),
    /// The request is malformed: a PromQL syntax error, a bad matcher or parameter.
    #[error("{0}")]
    Invalid(String),
    /// Valid PromQL outside the subset driftdb evaluates; the text names the construct.
    #[error("unsupported PromQL: {0}")]
    Unsupported(String),
    /// The query passes a size limit; the text says which and how to narrow the query.
    /// Retrying the same query cannot help.
    #[error("{0}")]
    TooLarge(String),
    /// The query ran past its deadline and was stopped.
    #[error(
        "the query was stopped after {:.1} s, its time limit; retry later, or narrow it (fewer series, a shorter range or a larger step)",
        .0.as_secs_f64()
    )]
    Timeout(Duration),
    /// The query was cancelled (the client went away or the node is shutting down).
    #[error("the query was cancelled")]
    Cancelled,
}

impl Error {
    /// Classifies the error: `InvalidArgument` for everything the client must change
    /// (including [`Error::TooLarge`]), `DeadlineExceeded` and `Cancelled` for a query stopped
    /// by its [`crate::limits::Budget`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Engine(e) => e.kind(),
            Error::Storage(e) => e.kind(),
            Error::Query(e) => e.kind(),
            Error::Invalid(_) | Error::Unsupported(_) | Error::TooLarge(_) => {
                ErrorKind::InvalidArgument
            }
            Error::Timeout(_) => ErrorKind::DeadlineExceeded,
            Error::Cancelled => ErrorKind::Cancelled,
        }
    }

    /// The Prometheus HTTP API `errorType` of the error: `bad_data` for bad or unsupported
    /// queries, `execution` for queries over a size limit, `timeout`, `canceled`, and
    /// `internal` for everything the client cannot fix.
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::Invalid(_) | Error::Unsupported(_) => "bad_data",
            Error::TooLarge(_) => "execution",
            Error::Timeout(_) => "timeout",
            Error::Cancelled => "canceled",
            Error::Engine(_) | Error::Storage(_) | Error::Query(_) => match self.kind() {
                ErrorKind::InvalidArgument | ErrorKind::NotFound => "bad_data",
                ErrorKind::DeadlineExceeded => "timeout",
                ErrorKind::Cancelled => "canceled",
                _ => "internal",
            },
        }
    }
}

/// Result with this crate's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_separate_too_large_from_retryable() {
        assert_eq!(
            Error::TooLarge("x".into()).kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(Error::TooLarge("x".into()).error_type(), "execution");
        assert_eq!(
            Error::Timeout(Duration::from_secs(2)).kind(),
            ErrorKind::DeadlineExceeded
        );
        assert_eq!(
            Error::Timeout(Duration::from_secs(2)).error_type(),
            "timeout"
        );
        assert_eq!(Error::Cancelled.kind(), ErrorKind::Cancelled);
        assert_eq!(Error::Unsupported("x".into()).error_type(), "bad_data");
        let e = Error::Unsupported("function rate()".into());
        assert_eq!(e.to_string(), "unsupported PromQL: function rate()");
        assert!(
            Error::Timeout(Duration::from_millis(1500))
                .to_string()
                .contains("1.5 s")
        );
    }
}
