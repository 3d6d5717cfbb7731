//! The one error a user sees when a spec, a name or a value is wrong.

/// A rejected input: which field (a dotted path such as `schedule.cron` or
/// `retry.max_attempts`), and a message that says what was wrong and what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// Dotted path of the offending field; empty when the whole document is wrong.
    pub field: String,
    /// What was wrong and what is accepted.
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Prefixes the field path, e.g. `cron` inside `schedule` becomes `schedule.cron`.
    pub fn within(mut self, parent: &str) -> Self {
        self.field = if self.field.is_empty() {
            parent.to_string()
        } else {
            format!("{parent}.{}", self.field)
        };
        self
    }
}

/// An error and its causes on one line, `outer: inner: innermost`.
///
/// Every error type of rota either shows its cause in its own message or marks it
/// `#[source]`, never both, so walking the chain repeats nothing.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
