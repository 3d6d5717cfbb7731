//! Errors of the store.
//!
//! Refusals of a command (unknown job, CAS mismatch, stale session) are not errors:
//! they are [`rota_core::Response`] values, because every replica must apply every
//! committed entry the same way. An error here means the state file could not be
//! read or written, or holds something this release cannot decode.
//!
//! A variant that wraps another error marks it `#[source]` and leaves it out of its
//! own message, so [`rota_core::error::chain`] prints each cause once.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("opening the state database")]
    Open(#[from] redb::DatabaseError),
    /// A redb transaction, table, read or commit failed.
    #[error("state database")]
    Database(#[source] redb::Error),
    /// The state file was written by a release with another layout: refused before
    /// anything in it is read.
    #[error(
        "the state file {} has format version {found}; this release reads version {expected}: {}",
        path.display(),
        format_advice(*found, *expected)
    )]
    FormatVersion {
        path: std::path::PathBuf,
        found: u32,
        expected: u32,
    },
    /// A stored record starts with a version byte this release does not know.
    #[error("{what} record has version {version}; this release reads version {expected}")]
    UnknownVersion {
        what: &'static str,
        version: u8,
        expected: u8,
    },
    /// A stored record is empty or its body does not decode.
    #[error("{what} record does not decode")]
    Decode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// A record is missing its version byte.
    #[error("{what} record is empty")]
    EmptyRecord { what: &'static str },
    #[error("encoding {what}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// An index key does not have the layout of its table.
    #[error("malformed key in table {table}")]
    MalformedKey { table: &'static str },
    /// Reading or writing a snapshot stream failed.
    #[error("snapshot I/O")]
    SnapshotIo(#[from] std::io::Error),
    /// A snapshot stream is not one this release wrote, or is cut short or damaged.
    #[error("malformed snapshot: {detail}")]
    MalformedSnapshot { detail: String },
}

/// Implements `From` for every redb error type the storage code meets with `?`,
/// through [`redb::Error`] into the tuple variant `$variant` of `$target`. The store
/// and the cluster's Raft log both keep redb files; this is their one list. The
/// calling crate depends on `redb` itself (the types are named `::redb::...`).
#[macro_export]
macro_rules! impl_from_redb_errors {
    ($target:ty, $variant:path) => {
        $crate::impl_from_redb_errors!(
            @each $target, $variant,
            ::redb::Error,
            ::redb::TransactionError,
            ::redb::TableError,
            ::redb::StorageError,
            ::redb::CommitError,
            ::redb::SetDurabilityError
        );
    };
    (@each $target:ty, $variant:path, $($t:ty),*) => {$(
        impl From<$t> for $target {
            fn from(e: $t) -> Self {
                $variant(::redb::Error::from(e))
            }
        }
    )*};
}

impl_from_redb_errors!(StoreError, StoreError::Database);

/// What to do about a state file of another format.
fn format_advice(found: u32, expected: u32) -> &'static str {
    if found > expected {
        "it was written by a newer release of rota; run that release (or a newer one) \
         on this data directory, or restore a backup taken before the upgrade"
    } else {
        "it was written by an older release this one cannot migrate; upgrade through the \
         releases in between, or restore a backup"
    }
}
