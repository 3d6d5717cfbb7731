//! Writing one batch of lines to InfluxDB 1.x (`/write`) or 2.x (`/api/v2/write`).

use std::time::Duration;

use reqwest::{StatusCode, Url};
use rota_core::sink::{InfluxApi, InfluxDbSpec};

use crate::Error;

/// Longest server message kept in an error.
const MAX_MESSAGE_CHARS: usize = 300;

/// Where and how a sink's batches are POSTed.
#[derive(Debug, Clone)]
pub(crate) struct InfluxTarget {
    url: Url,
    auth: Auth,
    timeout: Duration,
}

#[derive(Debug, Clone)]
enum Auth {
    None,
    Basic {
        username: String,
        password: Option<String>,
    },
    Token(String),
}

impl InfluxTarget {
    /// The write URL of a validated spec: `{url}/write?db=DB&precision=ns` or
    /// `{url}/api/v2/write?org=ORG&bucket=BUCKET&precision=ns`.
    pub(crate) fn new(spec: &InfluxDbSpec) -> Result<Self, Error> {
        let base = spec.url.trim_end_matches('/');
        let (path, query, auth) = match spec.api() {
            InfluxApi::V1 {
                database,
                username,
                password,
            } => (
                "/write",
                vec![("db", database)],
                match username {
                    Some(username) => Auth::Basic {
                        username: username.to_string(),
                        password: password.map(str::to_string),
                    },
                    None => Auth::None,
                },
            ),
            InfluxApi::V2 { org, bucket, token } => (
                "/api/v2/write",
                vec![("org", org), ("bucket", bucket)],
                Auth::Token(token.to_string()),
            ),
        };
        let mut url = Url::parse(&format!("{base}{path}")).map_err(|e| Error::InvalidUrl {
            url: spec.url.clone(),
            reason: e.to_string(),
        })?;
        url.query_pairs_mut()
            .extend_pairs(query)
            .append_pair("precision", "ns");
        Ok(Self {
            url,
            auth,
            timeout: spec.timeout.0,
        })
    }

    /// The URL without credentials, for messages.
    pub(crate) fn url(&self) -> &Url {
        &self.url
    }

    /// POSTs `body` (lines, each ending with `\n`) once, within the sink's
    /// timeout or `within`, whichever is shorter.
    pub(crate) async fn write(
        &self,
        client: &reqwest::Client,
        body: String,
        within: Option<Duration>,
    ) -> Result<(), Error> {
        let timeout = within.map_or(self.timeout, |w| w.min(self.timeout));
        let mut request = client
            .post(self.url.clone())
            .timeout(timeout)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(body);
        request = match &self.auth {
            Auth::None => request,
            Auth::Basic { username, password } => request.basic_auth(username, password.as_ref()),
            Auth::Token(token) => request.header("Authorization", format!("Token {token}")),
        };
        let url = self.url.to_string();
        let response = request.send().await.map_err(|source| Error::Unreachable {
            url: url.clone(),
            source,
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        // InfluxDB explains itself in `{"error": "..."}` (1.x) or
        // `{"code", "message"}` (2.x); anything else is shown as it came.
        let text = response.text().await.unwrap_or_default();
        let message = server_message(&text, status);
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            Err(Error::Unavailable {
                url,
                status: status.as_u16(),
                message,
            })
        } else {
            Err(Error::Refused {
                url,
                status: status.as_u16(),
                message,
            })
        }
    }
}

fn server_message(body: &str, status: StatusCode) -> String {
    let body = body.trim();
    let from_json = json_message(body);
    let message = match from_json {
        Some(m) => m,
        None if body.is_empty() => status
            .canonical_reason()
            .unwrap_or("no message")
            .to_string(),
        None => body.to_string(),
    };
    if message.chars().count() <= MAX_MESSAGE_CHARS {
        return message;
    }
    let mut cut: String = message.chars().take(MAX_MESSAGE_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// The `"error"` (1.x) or `"message"` (2.x) string of a JSON error body.
fn json_message(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    ["error", "message"]
        .iter()
        .find_map(|key| value.get(key)?.as_str().map(str::to_string))
}

#[cfg(test)]
mod tests {
    use rota_core::sink::{parse_sink_json, SinkSpec};

    use super::*;

    fn target(json: &str) -> InfluxTarget {
        let SinkSpec::InfluxDb(spec) = parse_sink_json(json.as_bytes()).unwrap();
        spec.validate().unwrap();
        InfluxTarget::new(&spec).unwrap()
    }

    #[test]
    fn write_urls() {
        let t = target(r#"{"type": "influxdb", "url": "http://i:8086/", "database": "ci data"}"#);
        assert_eq!(
            t.url().as_str(),
            "http://i:8086/write?db=ci+data&precision=ns"
        );
        assert!(matches!(t.auth, Auth::None));
        let t = target(
            r#"{"type": "influxdb", "url": "https://i/influx", "org": "o&1", "bucket": "b", "token": "t"}"#,
        );
        assert_eq!(
            t.url().as_str(),
            "https://i/influx/api/v2/write?org=o%261&bucket=b&precision=ns"
        );
        assert!(matches!(&t.auth, Auth::Token(t) if t == "t"));
    }

    #[test]
    fn server_messages() {
        let bad = StatusCode::BAD_REQUEST;
        assert_eq!(
            server_message(
                r#"{"error":"unable to parse 'x': invalid \"field\" format"}"#,
                bad
            ),
            "unable to parse 'x': invalid \"field\" format"
        );
        assert_eq!(
            server_message(r#"{"code":"invalid","message":"no bucket"}"#, bad),
            "no bucket"
        );
        assert_eq!(server_message("", bad), "Bad Request");
        assert_eq!(
            server_message("<html>oops</html>", bad),
            "<html>oops</html>"
        );
        assert_eq!(server_message(&"x".repeat(400), bad).chars().count(), 300);
    }
}
