//! The storage crate's error type.

use driftdb_engine::ErrorKind;

/// Errors raised by storage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// RocksDB reported a failure.
    #[error("rocksdb {op}: {source}")]
    RocksDb {
        /// The operation that failed (`open`, `write`, `get`, `iterate`, ...).
        op: &'static str,
        /// RocksDB's error.
        source: rocksdb::Error,
    },
    /// A column family the layout needs is missing from the open database.
    #[error("column family {name} is missing")]
    MissingColumnFamily {
        /// The family's name.
        name: &'static str,
    },
    /// A [`crate::StoreConfig`] field is out of range.
    #[error("invalid store config {field}: {detail}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// Why it is invalid.
        detail: String,
    },
    /// A stored key does not follow the layout of its family.
    #[error("malformed {family} key at byte {offset}: {detail}")]
    MalformedKey {
        /// The column family.
        family: &'static str,
        /// Byte offset where decoding failed.
        offset: usize,
        /// What was wrong.
        detail: &'static str,
    },
    /// A stored value failed its checksum or could not be decoded.
    #[error("corrupt value in {family}: {source}")]
    CorruptValue {
        /// The column family.
        family: &'static str,
        /// The decoding error.
        source: driftdb_engine::Error,
    },
    /// A write targets a window that is already past retention.
    #[error("window starting at {window_start} ms is past retention (cutoff {cutoff} ms)")]
    OutOfRetention {
        /// Start of the window, ms since the epoch.
        window_start: i64,
        /// Windows ending at or before this instant are expired, ms since the epoch.
        cutoff: i64,
    },
    /// An engine operation failed.
    #[error(transparent)]
    Engine(#[from] driftdb_engine::Error),
}

impl Error {
    /// Classifies the error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::RocksDb { source, .. } => match source.kind() {
                rocksdb::ErrorKind::Corruption => ErrorKind::Corruption,
                rocksdb::ErrorKind::Busy
                | rocksdb::ErrorKind::TryAgain
                | rocksdb::ErrorKind::Incomplete => ErrorKind::ResourceExhausted,
                rocksdb::ErrorKind::InvalidArgument => ErrorKind::InvalidArgument,
                // Disk full, a read-only file system, a file-size limit: RocksDB refuses the
                // write (and every later one until reopened) and keeps nothing of it.
                rocksdb::ErrorKind::IOError => ErrorKind::Unavailable,
                _ => ErrorKind::Internal,
            },
            Error::MissingColumnFamily { .. } => ErrorKind::Internal,
            Error::InvalidConfig { .. } => ErrorKind::InvalidArgument,
            Error::MalformedKey { .. } | Error::CorruptValue { .. } => ErrorKind::Corruption,
            Error::OutOfRetention { .. } => ErrorKind::InvalidArgument,
            Error::Engine(e) => e.kind(),
        }
    }

    pub(crate) fn rocks(op: &'static str) -> impl FnOnce(rocksdb::Error) -> Error {
        move |source| Error::RocksDb { op, source }
    }
}

/// Result with storage's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
