//! What can go wrong reading a deck.

use std::time::Duration;

/// `Duration` as people write it: `10s`, `300ms`.
pub(crate) fn human(d: &Duration) -> String {
    let ms = d.as_millis();
    match (ms / 1000, ms % 1000) {
        (secs, 0) => format!("{secs}s"),
        _ => format!("{ms}ms"),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `--url` is not an http(s) URL with a host.
    #[error("url {input:?}: {reason}; accepted: a deck URL such as https://prow.example.com/?job=*name* or its /prowjobs.js URL")]
    InvalidUrl { input: String, reason: String },

    /// Connecting failed (refused, DNS, TLS).
    #[error("cannot reach deck {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },

    /// No whole answer within the timeout.
    #[error("deck {url} did not answer within {}", human(.timeout))]
    Timeout { url: String, timeout: Duration },

    /// The deck answered, but not with 2xx.
    #[error("deck {url} answered {status}")]
    Status { url: String, status: String },

    /// The answer broke off: the connection closed before the whole page came.
    #[error("reading the answer of deck {url}")]
    Body {
        url: String,
        #[source]
        source: reqwest::Error,
    },

    /// The page fetched from `url` is not a job list (see the source).
    #[error("deck {url}")]
    Page {
        url: String,
        #[source]
        source: Box<Error>,
    },

    /// The page is neither `{"items": [...]}` nor `var NAME = {...};`.
    #[error(
        "not a deck job list: {found}; expected {{\"items\": [...]}} or var allBuilds = {{...}};"
    )]
    NotADeckDocument { found: String },

    /// The page looks like a job list but its JSON is broken (truncated, say).
    #[error("deck job list is not valid JSON")]
    Json {
        #[source]
        source: serde_json::Error,
    },
}
