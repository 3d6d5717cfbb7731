//! Errors of the store.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("opening the state database: {0}")]
    Open(#[from] redb::DatabaseError),
}
