//! Why an attempt could not do its work. Executors turn these into the `error` text
//! of a failed [`crate::RunOutcome`], with the whole chain of causes.

use std::io;
use std::sync::Arc;

/// A failure inside an executor, named by its cause.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The executor was handed a spec of another kind.
    #[error("the {executor} executor cannot run a {spec} spec")]
    SpecMismatch {
        /// The executor's kind.
        executor: &'static str,
        /// The kind of the spec it was handed.
        spec: &'static str,
    },
    /// The working directory given in the spec cannot be entered.
    #[error("working directory {cwd:?} is not usable")]
    WorkingDirectory {
        /// The directory as the spec names it.
        cwd: String,
        /// Why it cannot be entered.
        #[source]
        source: io::Error,
    },
    /// The process could not be started (no such program, not executable, ...).
    #[error("cannot start {program:?}")]
    Spawn {
        /// The program that was to run (`sh` for a command line).
        program: String,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// Waiting for the process to end failed.
    #[error("waiting for the process")]
    Wait(#[source] io::Error),
    /// The shared HTTP client could not be built (TLS set-up).
    #[error("building the HTTP client")]
    HttpClient(#[source] Arc<reqwest::Error>),
    /// The spec's method is not a valid HTTP method.
    #[error("invalid HTTP method {0:?}")]
    InvalidMethod(String),
    /// A header name in the spec is not a valid HTTP header name.
    #[error("invalid header name {0:?}")]
    InvalidHeaderName(String),
    /// A header value in the spec is not a valid HTTP header value.
    #[error("invalid value for header {0:?}")]
    InvalidHeaderValue(String),
    /// The request could not be sent or no answer came (connection refused, DNS,
    /// TLS, bad URL, ...).
    #[error("request failed")]
    Request(#[source] reqwest::Error),
    /// The answer's body broke off.
    #[error("reading the response body")]
    ResponseBody(#[source] reqwest::Error),
    /// The answer's status is not one the spec accepts.
    #[error("unexpected status {status} (expected {expected})")]
    UnexpectedStatus {
        /// The status received.
        status: u16,
        /// The statuses accepted, as people read them (`2xx`, or `200, 204`).
        expected: String,
    },
    /// The record file could not be opened for appending.
    #[error("opening {path:?} for appending")]
    RecordOpen {
        /// The record file.
        path: String,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// Appending the record line failed.
    #[error("appending to {path:?}")]
    RecordWrite {
        /// The record file.
        path: String,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The record line was not written in one piece.
    #[error("short write to {path:?}: {written} of {len} bytes")]
    ShortWrite {
        /// The record file.
        path: String,
        /// Bytes the write took.
        written: usize,
        /// Bytes of the line.
        len: usize,
    },
    /// The blocking task that writes the record died.
    #[error("the record writer task failed")]
    RecordTask(#[source] tokio::task::JoinError),
}

impl ExecError {
    /// The message with every cause after it, `outer: inner: innermost`.
    pub fn chain(&self) -> String {
        rota_core::error::chain(self)
    }

    /// The `failed` outcome of an attempt that ended with this error.
    pub fn outcome(&self) -> rota_core::RunOutcome {
        rota_core::RunOutcome::failed(None, self.chain())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_lists_the_causes() {
        let err = ExecError::Spawn {
            program: "nope".into(),
            source: io::Error::from_raw_os_error(libc::ENOENT),
        };
        let text = err.chain();
        assert!(text.starts_with("cannot start \"nope\": "), "{text}");
        assert!(text.contains("os error 2"), "{text}");
    }
}
