//! Why a benchmark could not produce a result.

use std::io;
use std::path::PathBuf;

/// Every failure of the load generator, named by its cause.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("could not build the HTTP client")]
    ClientBuild(#[source] reqwest::Error),

    #[error("{method} {url} failed")]
    Request {
        method: &'static str,
        url: String,
        #[source]
        source: reqwest::Error,
    },

    #[error("{method} {url} answered {status}: {body}")]
    Status {
        method: &'static str,
        url: String,
        status: u16,
        body: String,
    },

    #[error("{url} answered a body that is not the expected JSON")]
    Decode {
        url: String,
        #[source]
        source: serde_json::Error,
    },

    #[error("could not access {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{path}:{line}: {reason}")]
    RecordLine {
        path: PathBuf,
        line: usize,
        reason: String,
    },

    #[error("{path}:{line}: not a benchmark result")]
    ResultLine {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },

    #[error("/proc/{pid}/status has no {field} (is {pid} a running process?)")]
    ProcField { pid: u32, field: &'static str },

    #[error(
        "creating {jobs} jobs did not finish before their fire time in {attempts} attempts \
         (last attempt took {last_secs:.1}s); give a larger --lead-secs"
    )]
    CreationOverran {
        jobs: usize,
        attempts: u32,
        last_secs: f64,
    },

    #[error("{url} was not ready within {waited_secs}s: {last}")]
    NotReady {
        url: String,
        waited_secs: u64,
        last: String,
    },

    #[error("a client task failed")]
    Task(#[source] tokio::task::JoinError),

    #[error("no request of the run succeeded; first error: {first}")]
    NothingSucceeded { first: String },

    #[error("{path} records no kill: nothing to measure")]
    NoKills { path: PathBuf },

    #[error("no endpoint given (--url)")]
    NoEndpoint,

    #[error("the cluster at {urls} did not settle within {waited_secs}s: {last}")]
    ClusterNotReady {
        urls: String,
        waited_secs: u64,
        last: String,
    },

    #[error("could not signal process {pid}")]
    Signal {
        pid: u32,
        #[source]
        source: io::Error,
    },

    #[error("{errors} requests of the set-up failed; first error: {first}")]
    SetupFailed { errors: u64, first: String },
}

impl BenchError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        BenchError::Io {
            path: path.into(),
            source,
        }
    }

    /// Whether sending the same request again may succeed: the connection broke or
    /// the server said it is busy or between leaders. rota's session headers make
    /// the retry safe (the same pair is answered once).
    pub fn is_transient(&self) -> bool {
        match self {
            BenchError::Request { source, .. } => {
                source.is_connect() || source.is_timeout() || source.is_request()
            }
            BenchError::Status { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            _ => false,
        }
    }
}
