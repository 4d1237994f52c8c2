//! The query crate's error type.

use driftdb_engine::ErrorKind;

use crate::ast::Pos;
use crate::parser::ParseError;

/// Errors raised while parsing, planning or running a query.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The text is not valid DriftQL.
    #[error("syntax error at {0}")]
    Parse(#[from] ParseError),
    /// The query is well formed but asks for something that cannot be answered (unknown
    /// metric, metric that does not apply to the feature, bad range...).
    #[error("{}{message}", pos.map(|p| format!("at {p}: ")).unwrap_or_default())]
    Plan {
        /// Where the offending part starts, when known.
        pos: Option<Pos>,
        /// What is wrong, and what would be right.
        message: String,
    },
    /// A model, version, reference or feature does not exist.
    #[error("{}{what} {:?} not found{hint}", pos.map(|p| format!("at {p}: ")).unwrap_or_default(), driftdb_engine::model::clip(name))]
    NotFound {
        /// Where it was named.
        pos: Option<Pos>,
        /// What kind of thing.
        what: &'static str,
        /// Its name.
        name: String,
        /// Extra help (e.g. the names that do exist), starting with a separator.
        hint: String,
    },
    /// The query would read or return more than a limit allows: retrying cannot help, a
    /// narrower query can.
    #[error("query too large: {0}")]
    TooLarge(String),
    /// The query ran out of its time budget.
    #[error("query timed out: {0}")]
    DeadlineExceeded(String),
    /// The query was cancelled (its caller went away).
    #[error("query cancelled")]
    Cancelled,
    /// Reading sketches failed.
    #[error(transparent)]
    Storage(#[from] driftdb_storage::Error),
    /// A statistic failed on stored data.
    #[error(transparent)]
    Engine(#[from] driftdb_engine::Error),
}

impl Error {
    /// Classifies the error (the server maps kinds to status codes).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Parse(_) | Error::Plan { .. } => ErrorKind::InvalidArgument,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::TooLarge(_) => ErrorKind::InvalidArgument,
            Error::DeadlineExceeded(_) => ErrorKind::DeadlineExceeded,
            Error::Cancelled => ErrorKind::Cancelled,
            Error::Storage(e) => e.kind(),
            Error::Engine(e) => e.kind(),
        }
    }

    pub(crate) fn plan(pos: impl Into<Option<Pos>>, message: impl Into<String>) -> Self {
        Error::Plan {
            pos: pos.into(),
            message: message.into(),
        }
    }
}

/// Result with the query crate's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
