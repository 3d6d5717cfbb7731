//! The HTTP client the CLI talks to a rota server with.
//!
//! One [`Client`] per invocation. Every write carries the session headers
//! `Rota-Client-Id` (a fresh ULID per invocation) and `Rota-Request-Seq` (1, 2, ...
//! per write). When the server cannot be reached or answers 503 (no leader yet, a
//! commit timed out), the request is retried a few times with backoff under the
//! SAME client id and sequence number: the server answers a repeated pair with the
//! first answer, so a write whose acknowledgement was lost is applied once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde_json::Value;
use tracing::debug;

use crate::error::ClientError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Whole-request bound for everything but streamed output. Above the server's own
/// commit timeout, so that a slow write is answered by the server, not cut here.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Waits between attempts of a retryable request (about 2 s in all): long enough
/// for a restarting single node to come back, short enough for a person waiting
/// to be told the server is down.
const RETRY_DELAYS: [Duration; 4] = [
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_millis(1000),
];

pub const CLIENT_ID_HEADER: &str = "Rota-Client-Id";
pub const REQUEST_SEQ_HEADER: &str = "Rota-Request-Seq";

/// A successful answer: its status and JSON body (`Null` when empty, e.g. 204).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

pub struct Client {
    http: reqwest::Client,
    base: Url,
    client_id: String,
    last_seq: AtomicU64,
}

impl Client {
    /// A client for the server at `server` (e.g. `http://127.0.0.1:7700`).
    #[cfg(test)]
    pub fn new(server: &str) -> Result<Client, ClientError> {
        Client::with_token(server, None)
    }

    /// A client that sends `token` as `Authorization: Bearer TOKEN` on every
    /// request.
    #[cfg(test)]
    pub fn with_token(server: &str, token: Option<&str>) -> Result<Client, ClientError> {
        Client::connect(server, token, None)
    }

    /// A client that sends `token` (if any) as `Authorization: Bearer TOKEN` on
    /// every request and, given `ca_cert`, trusts the CA certificates of that PEM
    /// file instead of the system's roots.
    pub fn connect(
        server: &str,
        token: Option<&str>,
        ca_cert: Option<&std::path::Path>,
    ) -> Result<Client, ClientError> {
        let bad = |reason: String| ClientError::BadServerUrl { reason };
        rota_core::validate::check_http_url(server.trim()).map_err(bad)?;
        let base =
            Url::parse(server.trim()).map_err(|e| bad(format!("{server:?} is not a URL ({e})")))?;
        // `main` installs the provider first; doing it here too keeps every other
        // caller (tests) from a panic in `build`. Installing twice is a no-op error.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) {
            let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .ok()
                .filter(|_| token.bytes().all(|b| b.is_ascii_graphic()))
                .ok_or(ClientError::BadToken)?;
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let mut builder = reqwest::Client::builder();
        if let Some(path) = ca_cert {
            let config = crate::tls::client_config("--ca-cert", path).map_err(|err| {
                ClientError::CaCert {
                    reason: format!("{err:#}"),
                }
            })?;
            builder = builder.tls_backend_preconfigured(config);
        }
        let http = builder
            .default_headers(headers)
            .connect_timeout(CONNECT_TIMEOUT)
            // A follow stream may be silent for long; keepalive notices a dead peer.
            .tcp_keepalive(Duration::from_secs(30))
            .user_agent(concat!("rota/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| ClientError::Transport {
                url: server.to_string(),
                source,
            })?;
        Ok(Client {
            http,
            base,
            client_id: ulid::Ulid::generate().to_string(),
            last_seq: AtomicU64::new(0),
        })
    }

    /// The server's base URL as people wrote it (without a trailing slash).
    pub fn server(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// The base URL with `segments` appended, each percent-encoded as one segment.
    pub fn url<'a>(&self, segments: impl IntoIterator<Item = &'a str>) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            // `new` checked that the base can carry a path, so this always runs.
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// [`Client::url`] plus a query string.
    pub fn url_with_query<'a>(
        &self,
        segments: impl IntoIterator<Item = &'a str>,
        query: &[(&str, String)],
    ) -> Url {
        let mut url = self.url(segments);
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        url
    }

    /// `GET`, JSON answer.
    pub async fn get(&self, url: Url) -> Result<Answer, ClientError> {
        let response = self
            .send(|| self.http.get(url.clone()).timeout(REQUEST_TIMEOUT))
            .await?;
        read_json(&url, response).await
    }

    /// A write (`PUT`, `POST`, `DELETE`) with the session headers and an optional
    /// JSON body; JSON answer.
    pub async fn write(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Answer, ClientError> {
        let seq = self.last_seq.fetch_add(1, Ordering::Relaxed) + 1;
        let response = self
            .send(|| {
                let mut request = self
                    .http
                    .request(method.clone(), url.clone())
                    .timeout(REQUEST_TIMEOUT)
                    .header(CLIENT_ID_HEADER, &self.client_id)
                    .header(REQUEST_SEQ_HEADER, seq.to_string());
                if let Some(body) = body {
                    request = request.json(body);
                }
                request
            })
            .await?;
        read_json(&url, response).await
    }

    /// `GET` whose successful response body the caller reads as a stream. Without
    /// `timeout` the body may take as long as it takes (`exec logs -f`).
    pub async fn get_stream(
        &self,
        url: Url,
        timeout: Option<Duration>,
    ) -> Result<Response, ClientError> {
        self.send(|| {
            let request = self.http.get(url.clone());
            match timeout {
                Some(t) => request.timeout(t),
                None => request,
            }
        })
        .await
    }

    /// `GET` of an event stream with the request header `Last-Event-ID` when
    /// `last_event_id` is given; no time limit on the body.
    pub async fn get_events(
        &self,
        url: Url,
        last_event_id: Option<u64>,
    ) -> Result<Response, ClientError> {
        self.send(|| {
            let request = self.http.get(url.clone());
            match last_event_id {
                Some(id) => request.header("Last-Event-ID", id.to_string()),
                None => request,
            }
        })
        .await
    }

    /// Sends the request `build` makes, again after a pause while the failure is
    /// retryable and retries are left. Answers only success responses.
    async fn send(&self, build: impl Fn() -> RequestBuilder) -> Result<Response, ClientError> {
        let mut delays = RETRY_DELAYS.iter();
        loop {
            let result = self.send_once(build()).await;
            match result {
                Err(err) if err.is_retryable() => match delays.next() {
                    Some(delay) => {
                        debug!(error = %err, ?delay, "retrying");
                        tokio::time::sleep(*delay).await;
                    }
                    None => return Err(err),
                },
                other => return other,
            }
        }
    }

    async fn send_once(&self, request: RequestBuilder) -> Result<Response, ClientError> {
        let response = request.send().await.map_err(|e| self.transport(e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        Err(ClientError::from_response(status.as_u16(), &body))
    }

    /// Names a transport failure by what the user can do about it.
    pub fn transport(&self, source: reqwest::Error) -> ClientError {
        let url = self.server().to_string();
        if let Some(reason) = tls_failure(&source) {
            ClientError::Tls { url, reason }
        } else if source.is_connect() {
            ClientError::Unreachable { url }
        } else if source.is_timeout() {
            ClientError::Timeout {
                url,
                timeout: REQUEST_TIMEOUT,
            }
        } else {
            ClientError::Transport { url, source }
        }
    }
}

/// The TLS failure among the causes of `err` (an unknown CA, a name the
/// certificate does not cover), as the innermost cause that speaks of a
/// certificate: the connector wraps rustls's error as text, so it cannot be matched
/// by type.
fn tls_failure(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut found = None;
    let mut cause = Some(err);
    while let Some(err) = cause {
        let text = err.to_string();
        if text.contains("certificate") {
            found = Some(text);
        }
        cause = err.source();
    }
    found
}

async fn read_json(url: &Url, response: Response) -> Result<Answer, ClientError> {
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|source| ClientError::Transport {
            url: url.to_string(),
            source,
        })?;
    let body = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).map_err(|_| ClientError::Unexpected {
            status: status.as_u16(),
            body: crate::error::one_line(&text, 200),
        })?
    };
    Ok(Answer { status, body })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::extract::State;
    use axum::http::HeaderMap;
    use axum::routing::{get, put};
    use axum::{Json, Router};

    use super::*;

    #[test]
    fn urls_encode_each_segment() {
        let c = Client::new("http://127.0.0.1:7700").unwrap();
        assert_eq!(
            c.url(["v1", "jobs", "nightly"]).as_str(),
            "http://127.0.0.1:7700/v1/jobs/nightly"
        );
        assert_eq!(
            c.url(["v1", "kv", "a b?#%"]).as_str(),
            "http://127.0.0.1:7700/v1/kv/a%20b%3F%23%25"
        );
        let c = Client::new("https://example.com/rota/").unwrap();
        assert_eq!(
            c.url(["v1", "health"]).as_str(),
            "https://example.com/rota/v1/health"
        );
        assert_eq!(c.server(), "https://example.com/rota");
        let u = c.url_with_query(["v1", "kv"], &[("prefix", "a&b=c".into())]);
        assert_eq!(
            u.as_str(),
            "https://example.com/rota/v1/kv?prefix=a%26b%3Dc"
        );
    }

    #[test]
    fn bad_server_urls_are_rejected() {
        for bad in ["127.0.0.1:7700", "ftp://x", "mailto:a@b", "not a url", ""] {
            assert!(
                matches!(Client::new(bad), Err(ClientError::BadServerUrl { .. })),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn connection_refused_says_the_server_is_not_running() {
        // Bind then drop: nothing listens on the port afterwards.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = Client::new(&format!("http://127.0.0.1:{port}")).unwrap();
        let err = c.get(c.url(["v1", "health"])).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cannot reach rota at http://127.0.0.1:{port} (is the server running?)")
        );
    }

    /// A fake server that answers 503 to the first `fail_first` writes and records
    /// the session headers of every attempt.
    #[derive(Clone, Default)]
    struct Fake {
        seen: Arc<Mutex<Vec<(String, String)>>>,
        fail_first: usize,
    }

    async fn fake_put(State(fake): State<Fake>, headers: HeaderMap) -> axum::response::Response {
        use axum::response::IntoResponse;
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let attempt = {
            let mut seen = fake.seen.lock().unwrap();
            seen.push((header(CLIENT_ID_HEADER), header(REQUEST_SEQ_HEADER)));
            seen.len()
        };
        if attempt <= fake.fail_first {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({"error": {"code": "unavailable", "message": "no leader yet"}})),
            )
                .into_response()
        } else {
            Json(serde_json::json!({"key": "k", "revision": 7})).into_response()
        }
    }

    async fn serve(fake: Fake) -> String {
        let app = Router::new()
            .route("/v1/kv/{*key}", put(fake_put))
            .route("/v1/missing", get(|| async {
                (
                    StatusCode::NOT_FOUND,
                    Json(serde_json::json!({"error": {"code": "not_found", "message": "job \"x\" not found"}})),
                )
            }))
            .with_state(fake);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        url
    }

    #[tokio::test]
    async fn writes_are_retried_on_503_with_the_same_session() {
        let fake = Fake {
            fail_first: 2,
            ..Default::default()
        };
        let url = serve(fake.clone()).await;
        let c = Client::new(&url).unwrap();
        let body = serde_json::json!({"value": "v"});
        let answer = c
            .write(Method::PUT, c.url(["v1", "kv", "k"]), Some(&body))
            .await
            .unwrap();
        assert_eq!(answer.body["revision"], 7);
        let answer = c
            .write(Method::PUT, c.url(["v1", "kv", "k"]), Some(&body))
            .await
            .unwrap();
        assert_eq!(answer.status, StatusCode::OK);

        let seen = fake.seen.lock().unwrap().clone();
        assert_eq!(
            seen.len(),
            4,
            "two failed attempts, then one per write: {seen:?}"
        );
        let id = &seen[0].0;
        assert_eq!(id.len(), 26, "a ULID: {seen:?}");
        assert!(seen.iter().all(|(i, _)| i == id), "one client id: {seen:?}");
        let seqs: Vec<&str> = seen.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(seqs, ["1", "1", "1", "2"]);
    }

    #[tokio::test]
    async fn retries_end_with_the_last_error() {
        let fake = Fake {
            fail_first: usize::MAX,
            ..Default::default()
        };
        let url = serve(fake.clone()).await;
        let c = Client::new(&url).unwrap();
        let err = c
            .write(Method::PUT, c.url(["v1", "kv", "k"]), None)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "no leader yet");
        assert_eq!(fake.seen.lock().unwrap().len(), RETRY_DELAYS.len() + 1);
    }

    #[tokio::test]
    async fn client_errors_are_not_retried_and_carry_the_message() {
        let url = serve(Fake::default()).await;
        let c = Client::new(&url).unwrap();
        let err = c.get(c.url(["v1", "missing"])).await.unwrap_err();
        assert!(
            matches!(err, ClientError::Api { status: 404, .. }),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "job \"x\" not found");
    }
}
