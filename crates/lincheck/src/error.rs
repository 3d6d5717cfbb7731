//! Errors of the checker: a history that cannot be checked because it is malformed
//! or cannot be decoded. A history that is well formed but not linearizable is not
//! an error: it is a [`crate::CheckResult::Violation`].

/// Why a history could not be checked or decoded.
#[derive(Debug, thiserror::Error)]
pub enum LincheckError {
    /// An operation's answer does not belong to its request (a get answered with a
    /// revision, a put answered `not_found`, ...): the recorder was fed wrong data.
    #[error("operation {index}: a {input} request cannot be answered with {output}")]
    OutputMismatch {
        index: usize,
        input: &'static str,
        output: &'static str,
    },
    /// Exactly one of `ret` and `output` is present: an answer needs both a time and
    /// a value, a pending operation has neither.
    #[error("operation {index}: `ret` and `output` must be both present or both absent")]
    IncompleteReturn { index: usize },
    /// The answer is timestamped before the request.
    #[error("operation {index}: returned at {ret} ns, before its call at {call} ns")]
    ReturnBeforeCall { index: usize, call: u64, ret: u64 },
    /// The saved history was written in a format this release does not read.
    #[error("history has format {found}; this release reads format {expected}")]
    UnsupportedFormat { found: u32, expected: u32 },
    /// The saved history is not valid JSON for this format.
    #[error("history does not decode: {0}")]
    Decode(#[source] serde_json::Error),
    /// The history could not be encoded (only possible with non-string map keys,
    /// kept for completeness of the JSON boundary).
    #[error("history does not encode: {0}")]
    Encode(#[source] serde_json::Error),
}
