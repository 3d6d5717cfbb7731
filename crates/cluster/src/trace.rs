//! The `raft.commit` span of a write, exported as an OpenTelemetry span when the
//! node sends traces (see [`rota_core::TRACE_TARGET`]). It is opened in the
//! caller's task, so an API request's span is its parent; it records the command's
//! `op` (as the log writes it, e.g. `put_job`), whether the write was forwarded to
//! the leader, and the log index it got. A forwarded write carries the W3C
//! `traceparent` of the follower's span, so that the leader's span of the same
//! write joins the follower's trace.

use std::fmt::{self, Write as _};

use rota_core::Command;
use tracing::field::Empty;
use tracing::Span;

use crate::WriteError;

/// A span for committing `command`. `forwarded_by`: this node proposes a write a
/// follower forwarded, with the follower's `traceparent` header if it sent one
/// (its own commit span, which becomes this span's parent).
pub(crate) fn commit_span(
    node: &str,
    command: &Command,
    forwarded_by: Option<Option<&str>>,
) -> Span {
    tracing::info_span!(
        target: rota_core::TRACE_TARGET,
        "raft.commit",
        traceparent = forwarded_by.flatten(),
        otel.status_code = Empty,
        otel.status_message = Empty,
        raft.command = %command_op(command),
        raft.log_index = Empty,
        raft.forwarded_to_leader = Empty,
        raft.forwarded_from_follower = forwarded_by.is_some(),
        node = %node,
    )
}

/// Records the outcome of the write on its span.
pub(crate) fn record_outcome<T>(span: &Span, result: &Result<(u64, T), WriteError>) {
    match result {
        Ok((index, _)) => {
            span.record("raft.log_index", index);
        }
        Err(err) => {
            span.record("otel.status_code", "error");
            span.record("otel.status_message", tracing::field::display(err));
        }
    }
}

/// The `traceparent` header of the current traced span, for a request to a peer.
pub(crate) fn traceparent() -> Option<String> {
    rota_core::trace::current().map(|context| context.traceparent())
}

/// The command's `op` as the log writes it (`put_job` for `Command::PutJob`), taken
/// from the variant name its `Debug` output starts with. Formatting is cut short
/// at the end of the name, so a large job spec is never formatted.
fn command_op(command: &Command) -> String {
    // A write made with a token is named by what it does.
    if let Command::Attributed { command, .. } = command {
        return command_op(command);
    }
    struct VariantName(String);
    impl fmt::Write for VariantName {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            for c in s.chars() {
                if !c.is_ascii_alphanumeric() {
                    // The name ended: stop the formatting here.
                    return Err(fmt::Error);
                }
                if c.is_ascii_uppercase() {
                    if !self.0.is_empty() {
                        self.0.push('_');
                    }
                    self.0.push(c.to_ascii_lowercase());
                } else {
                    self.0.push(c);
                }
            }
            Ok(())
        }
    }
    let mut name = VariantName(String::new());
    let _ = write!(name, "{command:?}");
    name.0
}

#[cfg(test)]
mod tests {
    use rota_core::Command;

    use super::command_op;

    #[test]
    fn the_op_of_a_command_is_its_serde_tag() {
        let commands = [
            Command::DeleteJob {
                name: "a".into(),
                if_revision: None,
            },
            Command::KvDelete {
                key: "k".into(),
                if_revision: None,
            },
            Command::Batch { commands: vec![] },
        ];
        for command in commands {
            let tag = serde_json::to_value(&command).unwrap()["op"].clone();
            assert_eq!(command_op(&command), tag.as_str().unwrap(), "{command:?}");
        }
        let attributed = Command::Attributed {
            token: "ci".into(),
            command: Box::new(Command::Batch { commands: vec![] }),
        };
        assert_eq!(command_op(&attributed), "batch", "named by what it does");
    }
}
