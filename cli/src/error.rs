//! The command line's error: what went wrong on this side (a file, the connection) or what the
//! server or a core crate refused.

/// Errors of a client command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The node's own error (an embedded server: `demo`, `bench`, `keys --data`).
    #[error(transparent)]
    Server(#[from] driftdb_server::error::Error),
    /// An engine error (a model definition, a timestamp).
    #[error(transparent)]
    Engine(#[from] driftdb_engine::Error),
    /// A storage error (an embedded store).
    #[error(transparent)]
    Storage(#[from] driftdb_storage::Error),
    /// A DriftQL error.
    #[error(transparent)]
    Query(#[from] driftdb_query::Error),
    /// The command line or a file's content is invalid.
    #[error("{0}")]
    Invalid(String),
    /// A local file could not be read or parsed.
    #[error("{path}: {detail}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// A network or RPC failure talking to a server (the server's message when it sent one).
    #[error("{0}")]
    Transport(String),
    /// Anything unexpected.
    #[error("internal error: {0}")]
    Internal(String),
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
        Unauthenticated => "unauthenticated",
        PermissionDenied => "permission denied",
        Unavailable => "unavailable",
        Internal => "internal",
        DeadlineExceeded => "deadline exceeded",
        _ => "error",
    }
}

/// Result with the command line's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
