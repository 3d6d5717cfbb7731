//! What can go wrong in the binary, and how it is shown to the user.
//!
//! Commands return `anyhow::Error`s built on the typed errors here; `main` prints
//! one as its whole chain on a line after `error: ` (`outer: inner: innermost`),
//! which repeats nothing because every error shows its cause in its message or
//! chains it as its source, never both. An error document
//! from the API (`{"error": {"code", "message", "field"?}}`) is shown as
//! `<field>: <message>`; a server that cannot be reached says so and nothing more.

use std::path::PathBuf;
use std::time::Duration;

/// A rejected server configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A value of the config file; `key` is empty when the file as a whole is wrong.
    #[error("config file {}{}{}: {message}",
        path.display(),
        line.map(|l| format!(", line {l}")).unwrap_or_default(),
        if key.is_empty() { String::new() } else { format!(", key {key}") })]
    File {
        path: PathBuf,
        key: String,
        line: Option<usize>,
        message: String,
    },
    #[error("{var}: {message}")]
    Env { var: &'static str, message: String },
    /// A `ROTA_*` variable of a server setting holds a value the key refuses.
    #[error("{var} (setting {key}): {message}")]
    EnvVar {
        var: String,
        key: &'static str,
        message: String,
    },
    /// The peers (from flags and file together) do not describe a cluster with
    /// this node in it.
    #[error("peers: {0}")]
    Peers(String),
    /// Two settings that are valid alone contradict each other; `key` is the one
    /// to change.
    #[error("{key}: {message}")]
    Conflict { key: &'static str, message: String },
}

/// A failed exchange with a rota server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `--server` / `ROTA_SERVER` is not a usable base URL; `reason` is the shared
    /// URL check's message, which quotes the URL and says what is accepted.
    #[error("--server {reason}")]
    BadServerUrl { reason: String },
    /// `--token` / `ROTA_TOKEN` cannot go in a header.
    #[error("--token: must be printable ASCII without spaces (as `rota token create` prints it)")]
    BadToken,
    /// `--ca-cert` / `ROTA_CA_CERT` cannot be used; `reason` names the file.
    #[error("{reason}")]
    CaCert { reason: String },
    /// The TLS handshake failed, most often on a certificate this client does not
    /// trust.
    #[error(
        "TLS with rota at {url} failed: {reason}; if a private CA signed the server's \
         certificate, pass that CA with --ca-cert FILE (or ROTA_CA_CERT)"
    )]
    Tls { url: String, reason: String },
    /// Nothing answered at the server's address (after retries).
    #[error("cannot reach rota at {url} (is the server running?)")]
    Unreachable { url: String },
    #[error("rota at {url} did not answer within {}s", timeout.as_secs())]
    Timeout { url: String, timeout: Duration },
    /// The exchange broke off for another reason (e.g. the connection dropped
    /// while a response was streaming).
    #[error("talking to rota at {url} failed")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with its error document.
    #[error("{}", api_message(field.as_deref(), message, hint.as_deref()))]
    Api {
        status: u16,
        code: String,
        message: String,
        field: Option<String>,
        /// Extra detail the error document carried (leader URL, current revision).
        hint: Option<String>,
    },
    /// The server answered something that is not rota's JSON (a proxy page, a
    /// truncated body, another service on the port).
    #[error("unexpected answer from rota ({status}): {body}")]
    Unexpected { status: u16, body: String },
}

fn api_message(field: Option<&str>, message: &str, hint: Option<&str>) -> String {
    let mut line = match field.filter(|f| !f.is_empty()) {
        // Some messages already start with their field; do not say it twice.
        Some(field) if !message.starts_with(&format!("{field}:")) => {
            format!("{field}: {message}")
        }
        _ => message.to_string(),
    };
    if let Some(hint) = hint {
        line.push_str(&format!(" ({hint})"));
    }
    line
}

impl ClientError {
    /// Builds the error for a non-success answer from its status and body.
    pub fn from_response(status: u16, body: &str) -> ClientError {
        let doc: Option<serde_json::Value> = serde_json::from_str(body).ok();
        let err = doc.as_ref().map(|d| &d["error"]);
        match err.and_then(|e| e["message"].as_str().map(|m| (e, m))) {
            Some((e, message)) => {
                let text = |k: &str| e[k].as_str().map(str::to_string);
                let hint = match (text("leader"), e["mod_revision"].as_u64()) {
                    (Some(leader), _) => Some(("leader", leader)),
                    (None, Some(rev)) => Some(("current mod_revision", rev.to_string())),
                    (None, None) => None,
                }
                // Said already in the message: do not repeat it.
                .filter(|(_, value)| !message.contains(value.as_str()))
                .map(|(label, value)| format!("{label}: {value}"));
                ClientError::Api {
                    status,
                    code: text("code").unwrap_or_default(),
                    message: message.to_string(),
                    field: text("field"),
                    hint,
                }
            }
            None => ClientError::Unexpected {
                status,
                body: one_line(body, 200),
            },
        }
    }

    /// Whether a retry with the same session may get a different answer: the
    /// server was unreachable or said it is temporarily unavailable (503).
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } => true,
            ClientError::Api { status, .. } | ClientError::Unexpected { status, .. } => {
                *status == 503
            }
            _ => false,
        }
    }
}

/// `text` on one line, cut to `max` characters.
pub fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() > max {
        let cut: String = flat.chars().take(max).collect();
        format!("{cut}…")
    } else if flat.is_empty() {
        "(empty body)".to_string()
    } else {
        flat
    }
}

/// Whether the error is stdout having been closed (`rota job ls | head`), which is
/// not a failure worth reporting.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn api_errors_show_field_and_message() {
        let err = ClientError::from_response(
            400,
            r#"{"error":{"code":"invalid","message":"hour 25 is out of range 0-23","field":"schedule.cron"}}"#,
        );
        assert_eq!(
            err.to_string(),
            "schedule.cron: hour 25 is out of range 0-23"
        );
        assert!(matches!(&err, ClientError::Api { code, status: 400, .. } if code == "invalid"));
        assert!(!err.is_retryable());
    }

    #[test]
    fn api_errors_without_field_show_the_message() {
        let err = ClientError::from_response(
            404,
            r#"{"error":{"code":"not_found","message":"job \"x\" not found"}}"#,
        );
        assert_eq!(err.to_string(), "job \"x\" not found");
        let anyhow_err = anyhow::Error::new(err);
        assert_eq!(format!("{anyhow_err:#}"), "job \"x\" not found");
    }

    #[test]
    fn a_field_already_in_the_message_is_not_repeated() {
        let err = ClientError::from_response(
            400,
            r#"{"error":{"code":"invalid","message":"name: must not be empty","field":"name"}}"#,
        );
        assert_eq!(err.to_string(), "name: must not be empty");
    }

    #[test]
    fn hints_are_appended() {
        let err = ClientError::from_response(
            503,
            r#"{"error":{"code":"not_leader","message":"this node is not the leader","leader":"http://n2:7700"}}"#,
        );
        assert_eq!(
            err.to_string(),
            "this node is not the leader (leader: http://n2:7700)"
        );
        assert!(err.is_retryable());
        let err = ClientError::from_response(
            409,
            r#"{"error":{"code":"revision_mismatch","message":"revision mismatch","mod_revision":12}}"#,
        );
        assert_eq!(
            err.to_string(),
            "revision mismatch (current mod_revision: 12)"
        );
    }

    #[test]
    fn non_json_answers_are_shown_briefly() {
        let err = ClientError::from_response(502, "<html>\n<body>Bad gateway</body></html>");
        assert_eq!(
            err.to_string(),
            "unexpected answer from rota (502): <html> <body>Bad gateway</body></html>"
        );
        assert!(!err.is_retryable());
        let err = ClientError::from_response(503, "");
        assert!(err.is_retryable());
        assert!(err.to_string().contains("(empty body)"), "{err}");
        let long = "x".repeat(500);
        let err = ClientError::from_response(500, &long);
        assert!(err.to_string().chars().count() < 260, "{err}");
    }

    #[test]
    fn unreachable_renders_without_socket_details() {
        let err = anyhow::Error::new(ClientError::Unreachable {
            url: "http://127.0.0.1:7700".into(),
        });
        assert_eq!(
            format!("{err:#}"),
            "cannot reach rota at http://127.0.0.1:7700 (is the server running?)"
        );
        assert!(ClientError::Unreachable { url: String::new() }.is_retryable());
    }

    #[test]
    fn context_is_kept_in_front() {
        let err: anyhow::Result<()> = Err(ClientError::from_response(
            400,
            r#"{"error":{"code":"invalid","message":"bad","field":"schedule.cron"}}"#,
        ))
        .context("job/bad-hour");
        let shown = format!("{:#}", err.unwrap_err());
        assert_eq!(shown, "job/bad-hour: schedule.cron: bad");
    }

    #[test]
    fn io_chains_are_shown_with_their_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let err = anyhow::Error::new(io).context("cannot read jobs.toml");
        assert_eq!(format!("{err:#}"), "cannot read jobs.toml: No such file");
        assert!(!is_broken_pipe(&err));
        let pipe = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            .context("writing output");
        assert!(is_broken_pipe(&pipe));
    }

    #[test]
    fn config_errors_name_file_line_and_key() {
        let err = ConfigError::File {
            path: "rota.toml".into(),
            key: "listen".into(),
            line: Some(3),
            message: "bad".into(),
        };
        assert_eq!(
            err.to_string(),
            "config file rota.toml, line 3, key listen: bad"
        );
    }
}
