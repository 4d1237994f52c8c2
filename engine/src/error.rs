//! The engine's error type and the error classification shared by every crate.

/// What kind of failure an error is; `server` maps kinds to gRPC and HTTP status codes in one
/// place, so crates never need to know about transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The caller sent something invalid (bad value, bad name, bad query).
    InvalidArgument,
    /// The named thing does not exist.
    NotFound,
    /// The thing already exists.
    AlreadyExists,
    /// Stored bytes failed their checksum or could not be decoded.
    Corruption,
    /// The request would exceed a configured limit.
    ResourceExhausted,
    /// The operation is not valid in the current state.
    FailedPrecondition,
    /// The caller did not prove who it is: no API key, or an unknown or revoked one.
    Unauthenticated,
    /// The caller is known but may not do this (its key lacks the scope, or the operation is
    /// reserved to operator keys).
    PermissionDenied,
    /// A dependency failed in a way that may pass: a storage write was refused (disk full,
    /// read-only file system). Nothing was written; the caller may retry later.
    Unavailable,
    /// The work ran out of its time budget; a narrower request may fit.
    DeadlineExceeded,
    /// The caller went away before the answer was ready.
    Cancelled,
    /// A bug or an unexpected failure of a dependency.
    Internal,
}

/// Errors raised by the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A stored value ended before its declared length.
    #[error("truncated value: needed {needed} more bytes at offset {offset}")]
    Truncated {
        /// Byte offset where reading stopped.
        offset: usize,
        /// Bytes that were missing.
        needed: usize,
    },
    /// The checksum of a stored value does not match its contents.
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch {
        /// Checksum found in the value.
        stored: u32,
        /// Checksum computed over the value.
        computed: u32,
    },
    /// The format version byte is not one this build understands.
    #[error("unsupported format version {version}")]
    UnsupportedVersion {
        /// The version byte found.
        version: u8,
    },
    /// The state-kind tag is unknown.
    #[error("unknown state kind tag {tag}")]
    UnknownStateKind {
        /// The tag found.
        tag: u8,
    },
    /// Two states of different kinds were merged.
    #[error("cannot merge a {left} state with a {right} state")]
    KindMismatch {
        /// Kind of the left state.
        left: &'static str,
        /// Kind of the right state.
        right: &'static str,
    },
    /// A field holds a value that cannot be valid.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// The field or structure.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// An Apache DataSketches image could not be read or a sketch operation failed.
    #[error("{family} sketch: {detail}")]
    Sketch {
        /// The sketch family (kll, hll, frequent items).
        family: &'static str,
        /// The library's message.
        detail: String,
    },
    /// An argument given by a caller is invalid.
    #[error("invalid {what}: {detail}")]
    InvalidArgument {
        /// The argument.
        what: &'static str,
        /// Why it is invalid.
        detail: String,
    },
}

impl Error {
    /// Classifies the error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Truncated { .. }
            | Error::ChecksumMismatch { .. }
            | Error::UnsupportedVersion { .. }
            | Error::UnknownStateKind { .. }
            | Error::Malformed { .. }
            | Error::Sketch { .. } => ErrorKind::Corruption,
            Error::KindMismatch { .. } => ErrorKind::FailedPrecondition,
            Error::InvalidArgument { .. } => ErrorKind::InvalidArgument,
        }
    }

    pub(crate) fn sketch(family: &'static str, err: impl std::fmt::Display) -> Self {
        Error::Sketch {
            family,
            detail: err.to_string(),
        }
    }

    pub(crate) fn invalid(what: &'static str, detail: impl Into<String>) -> Self {
        Error::InvalidArgument {
            what,
            detail: detail.into(),
        }
    }
}

/// Result with the engine's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
