//! Errors of the store.
//!
//! Refusals of a command (unknown job, CAS mismatch, stale session) are not errors:
//! they are [`rota_core::Response`] values, because every replica must apply every
//! committed entry the same way. An error here means the state file could not be
//! read or written, or holds something this release cannot decode.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("opening the state database: {0}")]
    Open(#[from] redb::DatabaseError),
    /// A redb transaction, table, read or commit failed.
    #[error("state database: {0}")]
    Database(#[source] redb::Error),
    /// The state file was written by a release with another layout.
    #[error("the state file has format version {found}; this release reads version {expected}")]
    FormatVersion { found: u32, expected: u32 },
    /// A stored record starts with a version byte this release does not know.
    #[error("{what} record has version {version}; this release reads version {expected}")]
    UnknownVersion {
        what: &'static str,
        version: u8,
        expected: u8,
    },
    /// A stored record is empty or its body does not decode.
    #[error("{what} record does not decode: {source}")]
    Decode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// A record is missing its version byte.
    #[error("{what} record is empty")]
    EmptyRecord { what: &'static str },
    #[error("encoding {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// An index key does not have the layout of its table.
    #[error("malformed key in table {table}")]
    MalformedKey { table: &'static str },
    /// Reading or writing a snapshot stream failed.
    #[error("snapshot I/O: {0}")]
    SnapshotIo(#[from] std::io::Error),
    /// A snapshot stream is not one this release wrote, or is cut short or damaged.
    #[error("malformed snapshot: {detail}")]
    MalformedSnapshot { detail: String },
}

macro_rules! redb_error {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Database(redb::Error::from(e))
            }
        }
    )*};
}

redb_error!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);
