//! What can go wrong building points and writing them.

/// A point refused, or a write that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Line protocol cannot carry the point (see [`crate::Point::validate`]).
    #[error("point {measurement:?} cannot be written: {reason}")]
    InvalidPoint { measurement: String, reason: String },

    /// The sink's `url` does not make a write URL.
    #[error("sink url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },

    /// No answer: refused, reset, DNS, TLS, or the request timed out.
    #[error("cannot reach {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },

    /// The server answered with a status that retrying may cure (5xx, 429).
    #[error("{url} answered {status}: {message}")]
    Unavailable {
        url: String,
        status: u16,
        message: String,
    },

    /// The server refused the batch (a 4xx other than 429): retrying the same
    /// points would be refused again.
    #[error("{url} refused the batch with {status}: {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
}

impl Error {
    /// Whether the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unreachable { .. } | Error::Unavailable { .. })
    }
}
