//! What clients did: a [`History`] of [`Operation`]s on rota's KV API, each with
//! the time it was called, the time it returned (if it did) and its answer.
//!
//! Times are nanoseconds on one monotonic clock shared by every client of the run
//! (see [`crate::Recorder`]); only their order matters. An operation without an
//! answer (timeout, connection reset, leader crash) is *pending*: it may or may
//! not have taken effect, at any moment after its call.

use serde::{Deserialize, Serialize};

use crate::error::LincheckError;

/// A request to the KV API.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Input {
    /// `PUT /v1/kv/{key}`.
    Put { key: String, value: String },
    /// `GET /v1/kv/{key}` (linearizable, not `?stale=true`).
    Get { key: String },
    /// `DELETE /v1/kv/{key}`.
    Delete { key: String },
    /// `PUT /v1/kv/{key}?if_revision=N`: write only if the key's `mod_revision` is
    /// `expected_revision` (0 = the key must not exist).
    Cas {
        key: String,
        expected_revision: u64,
        value: String,
    },
}

impl Input {
    /// The key this request touches.
    pub fn key(&self) -> &str {
        match self {
            Input::Put { key, .. }
            | Input::Get { key }
            | Input::Delete { key }
            | Input::Cas { key, .. } => key,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Input::Put { .. } => "put",
            Input::Get { .. } => "get",
            Input::Delete { .. } => "delete",
            Input::Cas { .. } => "cas",
        }
    }
}

/// The KV API's answer, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Output {
    /// A put was applied at log index `revision`.
    Put { revision: u64 },
    /// A get found the key.
    Found { value: String, mod_revision: u64 },
    /// A get answered 404.
    NotFound,
    /// A delete was applied at log index `revision`; `deleted` says whether the key
    /// existed.
    Deleted { deleted: bool, revision: u64 },
    /// A CAS matched and was applied at log index `revision`.
    CasOk { revision: u64 },
    /// A CAS answered 409 `revision_mismatch` with the key's `mod_revision` then
    /// (0 = absent).
    Mismatch { current: u64 },
}

impl Output {
    fn kind(&self) -> &'static str {
        match self {
            Output::Put { .. } => "put",
            Output::Found { .. } => "found",
            Output::NotFound => "not_found",
            Output::Deleted { .. } => "deleted",
            Output::CasOk { .. } => "cas_ok",
            Output::Mismatch { .. } => "mismatch",
        }
    }

    /// A log index this answer proves was committed when it was sent: the write's
    /// own revision, or the revision a read or a refused CAS observed.
    pub(crate) fn observed_revision(&self) -> Option<u64> {
        match self {
            Output::Put { revision }
            | Output::Deleted { revision, .. }
            | Output::CasOk { revision } => Some(*revision),
            Output::Found { mod_revision, .. } => Some(*mod_revision),
            Output::Mismatch { current } => Some(*current).filter(|c| *c > 0),
            Output::NotFound => None,
        }
    }

    /// The log index of the entry a write answer reports.
    pub(crate) fn write_revision(&self) -> Option<u64> {
        match self {
            Output::Put { revision }
            | Output::Deleted { revision, .. }
            | Output::CasOk { revision } => Some(*revision),
            _ => None,
        }
    }
}

/// One client request and what came of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// Who issued it; only used in reports.
    pub client: u64,
    /// When the request was about to be sent, in nanoseconds.
    pub call: u64,
    /// When the answer was received; `None` for a pending operation, which is
    /// treated as returning after everything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ret: Option<u64>,
    pub input: Input,
    /// The answer; present exactly when `ret` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Output>,
}

impl Operation {
    /// Whether the operation never got an answer.
    pub fn is_pending(&self) -> bool {
        self.ret.is_none()
    }
}

/// A recorded run: every operation of every client, in no particular order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// Format of the saved record, so a later release can read an older one.
    pub format: u32,
    pub ops: Vec<Operation>,
}

impl Default for History {
    fn default() -> Self {
        History::new(Vec::new())
    }
}

impl History {
    /// The format this release writes and reads.
    pub const FORMAT: u32 = 1;

    pub fn new(ops: Vec<Operation>) -> Self {
        History {
            format: Self::FORMAT,
            ops,
        }
    }

    /// Check that every operation is well formed: an answer of the right kind with
    /// a return time not before its call, or no answer at all.
    pub fn validate(&self) -> Result<(), LincheckError> {
        if self.format != Self::FORMAT {
            return Err(LincheckError::UnsupportedFormat {
                found: self.format,
                expected: Self::FORMAT,
            });
        }
        for (index, op) in self.ops.iter().enumerate() {
            match (op.ret, &op.output) {
                (None, None) => {}
                (Some(ret), Some(output)) => {
                    if ret < op.call {
                        return Err(LincheckError::ReturnBeforeCall {
                            index,
                            call: op.call,
                            ret,
                        });
                    }
                    let fits = matches!(
                        (&op.input, output),
                        (Input::Put { .. }, Output::Put { .. })
                            | (Input::Get { .. }, Output::Found { .. } | Output::NotFound)
                            | (Input::Delete { .. }, Output::Deleted { .. })
                            | (
                                Input::Cas { .. },
                                Output::CasOk { .. } | Output::Mismatch { .. }
                            )
                    );
                    if !fits {
                        return Err(LincheckError::OutputMismatch {
                            index,
                            input: op.input.kind(),
                            output: output.kind(),
                        });
                    }
                }
                _ => return Err(LincheckError::IncompleteReturn { index }),
            }
        }
        Ok(())
    }

    /// The history as pretty JSON, to save a failing run next to its test output.
    pub fn to_json(&self) -> Result<String, LincheckError> {
        serde_json::to_string_pretty(self).map_err(LincheckError::Encode)
    }

    /// Read a saved history back, refusing formats this release does not know and
    /// malformed operations.
    pub fn from_json(text: &str) -> Result<History, LincheckError> {
        let history: History = serde_json::from_str(text).map_err(LincheckError::Decode)?;
        history.validate()?;
        Ok(history)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(input: Input, ret: Option<u64>, output: Option<Output>) -> Operation {
        Operation {
            client: 1,
            call: 10,
            ret,
            input,
            output,
        }
    }

    #[test]
    fn json_round_trip_keeps_pending_and_answered_operations() {
        let history = History::new(vec![
            op(
                Input::Cas {
                    key: "k".into(),
                    expected_revision: 0,
                    value: "v".into(),
                },
                Some(20),
                Some(Output::CasOk { revision: 3 }),
            ),
            op(Input::Delete { key: "k".into() }, None, None),
        ]);
        let text = history.to_json().unwrap();
        assert!(text.contains("\"op\": \"cas\""), "{text}");
        assert!(!text.contains("\"ret\": null"), "{text}");
        assert_eq!(History::from_json(&text).unwrap(), history);
    }

    #[test]
    fn an_unknown_format_is_refused() {
        let text = r#"{"format": 2, "ops": []}"#;
        assert!(matches!(
            History::from_json(text),
            Err(LincheckError::UnsupportedFormat {
                found: 2,
                expected: 1
            })
        ));
    }

    #[test]
    fn malformed_operations_are_refused_with_their_index() {
        let get = || Input::Get { key: "k".into() };
        let cases = [
            (
                op(get(), Some(20), Some(Output::Put { revision: 1 })),
                "a get request cannot be answered with put",
            ),
            (op(get(), Some(20), None), "both present or both absent"),
            (op(get(), None, Some(Output::NotFound)), "both present"),
            (
                op(get(), Some(5), Some(Output::NotFound)),
                "before its call",
            ),
        ];
        for (bad, message) in cases {
            let history = History::new(vec![op(get(), None, None), bad]);
            let err = history.validate().unwrap_err().to_string();
            assert!(err.starts_with("operation 1:"), "{err}");
            assert!(err.contains(message), "{err} / {message}");
        }
    }
}
