//! The server's error type and the one place that maps error kinds to gRPC and HTTP codes.

use driftdb_engine::ErrorKind;

/// Errors raised while serving a request or running a command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An engine error (validation, decoding).
    #[error(transparent)]
    Engine(#[from] driftdb_engine::Error),
    /// A storage error.
    #[error(transparent)]
    Storage(#[from] driftdb_storage::Error),
    /// A DriftQL query failed: parse and plan errors name the line and column.
    #[error(transparent)]
    Query(#[from] driftdb_query::Error),
    /// A PromQL query, a series listing or a remote read failed.
    #[error(transparent)]
    Prom(#[from] driftdb_prom::Error),
    /// The request is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The named thing does not exist.
    #[error("{what} {:?} not found", driftdb_engine::model::clip(name))]
    NotFound {
        /// What kind of thing.
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// The thing already exists.
    #[error("{what} {:?} already exists", driftdb_engine::model::clip(name))]
    AlreadyExists {
        /// What kind of thing.
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// A limit was hit; the client should retry later.
    #[error("{0}")]
    Overloaded(String),
    /// No API key, or an unknown or revoked one.
    #[error("{0}")]
    Unauthenticated(String),
    /// The key is valid but may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// A local file could not be read or parsed.
    #[error("{path}: {detail}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// Stored bytes are sound (their checksum holds) but are not the record they should be.
    #[error("corrupt {what}: {detail}")]
    Corruption {
        /// Which record.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// Anything unexpected.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Classifies the error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Engine(e) => e.kind(),
            Error::Storage(e) => e.kind(),
            Error::Query(e) => e.kind(),
            Error::Prom(e) => e.kind(),
            Error::Invalid(_) | Error::File { .. } => ErrorKind::InvalidArgument,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Error::Overloaded(_) => ErrorKind::ResourceExhausted,
            Error::Unauthenticated(_) => ErrorKind::Unauthenticated,
            Error::PermissionDenied(_) => ErrorKind::PermissionDenied,
            Error::Corruption { .. } => ErrorKind::Corruption,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }
}

/// What a client is told when storage refused a write: the real error names files and is
/// only logged.
pub const UNAVAILABLE_MESSAGE: &str = "storage unavailable: the write was refused and nothing was written (see server log); retry later";

/// How long a client should wait before retrying an overloaded or unavailable request.
pub const RETRY_AFTER_SECS: u64 = 1;

/// Maps an error to a gRPC status. Internal and storage errors are logged and hidden from
/// clients; RESOURCE_EXHAUSTED and UNAVAILABLE carry a `retry-after-ms` hint in their metadata.
pub fn to_status(e: &Error) -> tonic::Status {
    use tonic::Code;
    let code = match e.kind() {
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::ResourceExhausted => Code::ResourceExhausted,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::DeadlineExceeded => Code::DeadlineExceeded,
        ErrorKind::Cancelled => Code::Cancelled,
        ErrorKind::Corruption | ErrorKind::Internal => Code::Internal,
    };
    let mut status = match code {
        Code::Internal => {
            tracing::error!(error = %e, "internal error");
            return tonic::Status::internal("internal error (see server log)");
        }
        Code::Unavailable => {
            tracing::error!(error = %e, "storage write refused");
            tonic::Status::unavailable(UNAVAILABLE_MESSAGE)
        }
        code => tonic::Status::new(code, e.to_string()),
    };
    if matches!(code, Code::ResourceExhausted | Code::Unavailable) {
        status.metadata_mut().insert(
            RETRY_AFTER_MS_HEADER,
            tonic::metadata::MetadataValue::from(RETRY_AFTER_SECS * 1000),
        );
    }
    status
}

/// gRPC metadata key of the retry hint (milliseconds) on RESOURCE_EXHAUSTED and UNAVAILABLE.
pub const RETRY_AFTER_MS_HEADER: &str = "retry-after-ms";

/// Maps an error to an HTTP status code and a message safe to show. 429 and 503 answers
/// should carry `Retry-After: RETRY_AFTER_SECS` (the HTTP layer adds it).
pub fn to_http(e: &Error) -> (u16, String) {
    match e.kind() {
        ErrorKind::InvalidArgument => (400, e.to_string()),
        ErrorKind::Unauthenticated => (401, e.to_string()),
        ErrorKind::PermissionDenied => (403, e.to_string()),
        ErrorKind::NotFound => (404, e.to_string()),
        ErrorKind::AlreadyExists => (409, e.to_string()),
        ErrorKind::ResourceExhausted => (429, e.to_string()),
        ErrorKind::FailedPrecondition => (412, e.to_string()),
        ErrorKind::Unavailable => {
            tracing::error!(error = %e, "storage write refused");
            (503, UNAVAILABLE_MESSAGE.into())
        }
        // Prometheus answers a query timeout with 503; the message says how to narrow it.
        ErrorKind::DeadlineExceeded => (503, e.to_string()),
        // The caller is gone; the code is for logs (nginx's "client closed request").
        ErrorKind::Cancelled => (499, e.to_string()),
        ErrorKind::Corruption | ErrorKind::Internal => {
            tracing::error!(error = %e, "internal error");
            (500, "internal error (see server log)".into())
        }
    }
}

/// Result with the server's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
