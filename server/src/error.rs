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
    /// The request is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The named thing does not exist.
    #[error("{what} {name:?} not found")]
    NotFound {
        /// What kind of thing.
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// The thing already exists.
    #[error("{what} {name:?} already exists")]
    AlreadyExists {
        /// What kind of thing.
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// A limit was hit; the client should retry later.
    #[error("{0}")]
    Overloaded(String),
    /// A local file could not be read or parsed.
    #[error("{path}: {detail}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// A network or RPC failure talking to a server.
    #[error("{0}")]
    Transport(String),
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
            Error::Invalid(_) | Error::File { .. } => ErrorKind::InvalidArgument,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Error::Overloaded(_) => ErrorKind::ResourceExhausted,
            Error::Transport(_) | Error::Internal(_) => ErrorKind::Internal,
        }
    }
}

/// Maps an error to a gRPC status. Internal errors are logged and hidden from clients.
pub fn to_status(e: &Error) -> tonic::Status {
    use tonic::Code;
    let code = match e.kind() {
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::ResourceExhausted => Code::ResourceExhausted,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::Corruption | ErrorKind::Internal => Code::Internal,
    };
    if code == Code::Internal {
        tracing::error!(error = %e, "internal error");
        return tonic::Status::internal("internal error (see server log)");
    }
    tonic::Status::new(code, e.to_string())
}

/// Maps an error to an HTTP status code and a message safe to show.
pub fn to_http(e: &Error) -> (u16, String) {
    match e.kind() {
        ErrorKind::InvalidArgument => (400, e.to_string()),
        ErrorKind::NotFound => (404, e.to_string()),
        ErrorKind::AlreadyExists => (409, e.to_string()),
        ErrorKind::ResourceExhausted => (429, e.to_string()),
        ErrorKind::FailedPrecondition => (412, e.to_string()),
        ErrorKind::Corruption | ErrorKind::Internal => {
            tracing::error!(error = %e, "internal error");
            (500, "internal error (see server log)".into())
        }
    }
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Self {
        if s.message().is_empty() {
            Error::Transport(code_name(s.code()).to_string())
        } else {
            Error::Transport(s.message().to_string())
        }
    }
}

fn code_name(c: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match c {
        InvalidArgument => "invalid argument",
        NotFound => "not found",
        AlreadyExists => "already exists",
        ResourceExhausted => "resource exhausted",
        FailedPrecondition => "failed precondition",
        Unavailable => "unavailable",
        Internal => "internal",
        _ => "error",
    }
}

/// Result with the server's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
