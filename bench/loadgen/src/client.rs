//! HTTP clients for the systems under test: rota's REST API (as the CLI speaks it,
//! with session headers) and etcd 3.4's gRPC gateway.
//!
//! Every simulated client owns one HTTP/1.1 keep-alive connection, so both systems
//! see the same number of connections and neither benefits from multiplexing.

use std::time::Duration;

use base64::prelude::{Engine as _, BASE64_STANDARD};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tracing::debug;

use crate::error::BenchError;

/// Longest a single request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts of one rota write when the failure is transient (see
/// [`BenchError::is_transient`]).
const WRITE_ATTEMPTS: u32 = 5;

/// An HTTP/1.1 client holding at most one idle connection (keep-alive) per host.
pub fn http_client() -> Result<reqwest::Client, BenchError> {
    // reqwest is built without a TLS provider of its own and refuses to build a
    // client until one is installed, even for plain HTTP. Installing is idempotent
    // (a second install fails harmlessly), so every entry point is covered here.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(BenchError::ClientBuild)
}

/// A client id that no earlier run used: rota answers a repeated
/// (`Rota-Client-Id`, `Rota-Request-Seq`) pair from its session table instead of
/// applying it again, so reusing ids across runs would measure the cache.
pub fn unique_client_id(role: &str, index: usize) -> String {
    let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    format!("loadgen-{role}-{}-{nanos}-{index}", std::process::id())
}

fn trim_base(url: &str) -> String {
    url.trim_end_matches('/').to_string()
}

fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        _ => "HTTP",
    }
}

/// What `GET /v1/health` says about readiness and load.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Health {
    pub role: String,
    /// `scheduler.jobs`: jobs the scheduler has loaded; `None` when health has no
    /// scheduler object (older servers).
    pub scheduler_jobs: Option<u64>,
    pub queued: Option<u64>,
    pub running: Option<u64>,
    pub fired_total: Option<u64>,
}

impl Health {
    pub fn from_json(v: &Value) -> Health {
        let sched = v.get("scheduler");
        let field = |name: &str| sched.and_then(|s| s.get(name)).and_then(Value::as_u64);
        Health {
            role: v
                .get("role")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_ascii_lowercase(),
            scheduler_jobs: field("jobs"),
            queued: field("queued"),
            running: field("running"),
            fired_total: field("fired_total"),
        }
    }

    pub fn is_leader(&self) -> bool {
        self.role == "leader"
    }
}

/// One simulated rota client: a connection, a client id and its request counter.
#[derive(Debug, Clone)]
pub struct RotaClient {
    http: reqwest::Client,
    base: String,
    client_id: String,
    seq: u64,
}

impl RotaClient {
    pub fn new(base: &str, client_id: String) -> Result<RotaClient, BenchError> {
        Ok(RotaClient {
            http: http_client()?,
            base: trim_base(base),
            client_id,
            seq: 0,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `PUT /v1/kv/{key}` with `{"value": value}`.
    pub async fn put_kv(&mut self, key: &str, value: &str) -> Result<(), BenchError> {
        let url = format!("{}/v1/kv/{key}", self.base);
        self.write(Method::PUT, url, Some(json!({ "value": value })), &[])
            .await
    }

    /// `GET /v1/kv/{key}`: linearizable by default (the leader confirms its
    /// leadership with a quorum before it answers). A missing key is an error: the
    /// read benchmark only reads keys it wrote.
    pub async fn get_kv(&self, key: &str) -> Result<(), BenchError> {
        let url = format!("{}/v1/kv/{key}", self.base);
        get_text(&self.http, &url).await.map(drop)
    }

    /// `PUT /v1/jobs/{name}` (create or replace).
    pub async fn put_job(&mut self, name: &str, spec: &Value) -> Result<(), BenchError> {
        let url = format!("{}/v1/jobs/{name}", self.base);
        self.write(Method::PUT, url, Some(spec.clone()), &[]).await
    }

    /// `DELETE /v1/jobs/{name}`; a job that is already gone counts as deleted.
    pub async fn delete_job(&mut self, name: &str) -> Result<(), BenchError> {
        let url = format!("{}/v1/jobs/{name}", self.base);
        self.write(Method::DELETE, url, None, &[StatusCode::NOT_FOUND])
            .await
    }

    /// A write with the session headers. Transient failures are retried with the
    /// same sequence number, which rota answers at most once.
    async fn write(
        &mut self,
        method: Method,
        url: String,
        body: Option<Value>,
        also_ok: &[StatusCode],
    ) -> Result<(), BenchError> {
        self.seq += 1;
        let mut attempt = 1;
        loop {
            let mut req = self
                .http
                .request(method.clone(), &url)
                .header("Rota-Client-Id", &self.client_id)
                .header("Rota-Request-Seq", self.seq);
            if let Some(body) = &body {
                req = req.json(body);
            }
            let result = match req.send().await {
                Err(source) => Err(BenchError::Request {
                    method: method_name(&method),
                    url: url.clone(),
                    source,
                }),
                Ok(resp) => {
                    let status = resp.status();
                    if status.is_success() || also_ok.contains(&status) {
                        // Drain the body so the connection goes back to the pool.
                        let _ = resp.bytes().await;
                        Ok(())
                    } else {
                        let body = resp.text().await.unwrap_or_default();
                        Err(BenchError::Status {
                            method: method_name(&method),
                            url: url.clone(),
                            status: status.as_u16(),
                            body: body.chars().take(300).collect(),
                        })
                    }
                }
            };
            match result {
                Err(err) if err.is_transient() && attempt < WRITE_ATTEMPTS => {
                    debug!(%url, attempt, error = %err, "retrying write");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// `GET /v1/health`.
    pub async fn health(&self) -> Result<Health, BenchError> {
        let url = format!("{}/v1/health", self.base);
        let v = get_json(&self.http, &url).await?;
        Ok(Health::from_json(&v))
    }

    /// `rota_fired_total` from `GET /metrics`, or `None` when the server does not
    /// export it.
    pub async fn fired_total(&self) -> Result<Option<u64>, BenchError> {
        let url = format!("{}/metrics", self.base);
        let text = get_text(&self.http, &url).await?;
        Ok(metric_value(&text, "rota_fired_total").map(|v| v as u64))
    }
}

pub(crate) async fn get_text(http: &reqwest::Client, url: &str) -> Result<String, BenchError> {
    let resp = http
        .get(url)
        .send()
        .await
        .map_err(|source| BenchError::Request {
            method: "GET",
            url: url.to_string(),
            source,
        })?;
    let status = resp.status();
    let text = resp.text().await.map_err(|source| BenchError::Request {
        method: "GET",
        url: url.to_string(),
        source,
    })?;
    if !status.is_success() {
        return Err(BenchError::Status {
            method: "GET",
            url: url.to_string(),
            status: status.as_u16(),
            body: text.chars().take(300).collect(),
        });
    }
    Ok(text)
}

pub(crate) async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, BenchError> {
    let text = get_text(http, url).await?;
    serde_json::from_str(&text).map_err(|source| BenchError::Decode {
        url: url.to_string(),
        source,
    })
}

/// The value of an unlabelled series in Prometheus text format.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let mut parts = l.split_whitespace();
            (parts.next() == Some(name)).then(|| parts.next())?
        })
        .and_then(|v| v.parse().ok())
}

/// One simulated etcd client, speaking the v3 JSON gateway of etcd 3.4.
#[derive(Debug, Clone)]
pub struct EtcdClient {
    http: reqwest::Client,
    base: String,
}

impl EtcdClient {
    pub fn new(base: &str) -> Result<EtcdClient, BenchError> {
        Ok(EtcdClient {
            http: http_client()?,
            base: trim_base(base),
        })
    }

    /// `POST /v3/kv/put` with base64 key and value; etcd answers only once the write
    /// is committed and fsynced, as rota does.
    pub async fn put(&self, key: &str, value: &str) -> Result<(), BenchError> {
        let url = format!("{}/v3/kv/put", self.base);
        let body = json!({
            "key": BASE64_STANDARD.encode(key),
            "value": BASE64_STANDARD.encode(value),
        });
        let resp = self
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .map_err(|source| BenchError::Request {
                method: "POST",
                url: url.clone(),
                source,
            })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(BenchError::Status {
                method: "POST",
                url,
                status: status.as_u16(),
                body: text.chars().take(300).collect(),
            });
        }
        // The gateway answers 200 with an error object for some failures.
        if text.contains("\"error\"") {
            return Err(BenchError::Status {
                method: "POST",
                url,
                status: status.as_u16(),
                body: text.chars().take(300).collect(),
            });
        }
        Ok(())
    }

    /// `POST /v3/kv/range` of one key, linearizable (etcd's default: a read index
    /// confirmed by the leader). A key that is not there is an error.
    pub async fn get(&self, key: &str) -> Result<(), BenchError> {
        let url = format!("{}/v3/kv/range", self.base);
        let body = json!({ "key": BASE64_STANDARD.encode(key) });
        let text = post_json_text(&self.http, &url, &body).await?;
        // A found key is listed under `kvs`; the gateway leaves out empty lists.
        if !text.contains("\"kvs\"") {
            return Err(BenchError::Status {
                method: "POST",
                url,
                status: 200,
                body: format!(
                    "key {key} not found: {}",
                    text.chars().take(300).collect::<String>()
                ),
            });
        }
        Ok(())
    }

    /// Whether `GET /health` answers `{"health": "true"}`.
    pub async fn healthy(&self) -> Result<bool, BenchError> {
        let url = format!("{}/health", self.base);
        let v = get_json(&self.http, &url).await?;
        Ok(v.get("health").and_then(Value::as_str) == Some("true"))
    }
}

/// The system a key/value benchmark drives.
#[derive(Debug, Clone)]
pub enum KvClient {
    Rota(RotaClient),
    Etcd(EtcdClient),
}

impl KvClient {
    pub async fn put(&mut self, key: &str, value: &str) -> Result<(), BenchError> {
        match self {
            KvClient::Rota(c) => c.put_kv(key, value).await,
            KvClient::Etcd(c) => c.put(key, value).await,
        }
    }

    pub async fn get(&self, key: &str) -> Result<(), BenchError> {
        match self {
            KvClient::Rota(c) => c.get_kv(key).await,
            KvClient::Etcd(c) => c.get(key).await,
        }
    }
}

/// POSTs `body` and answers the response's text; a non-2xx status, or a 2xx whose
/// body is the gateway's error object, is an error.
pub(crate) async fn post_json_text(
    http: &reqwest::Client,
    url: &str,
    body: &Value,
) -> Result<String, BenchError> {
    let resp = http
        .post(url)
        .json(body)
        .send()
        .await
        .map_err(|source| BenchError::Request {
            method: "POST",
            url: url.to_string(),
            source,
        })?;
    let status = resp.status();
    let text = resp.text().await.map_err(|source| BenchError::Request {
        method: "POST",
        url: url.to_string(),
        source,
    })?;
    if !status.is_success() || text.starts_with("{\"error\"") {
        return Err(BenchError::Status {
            method: "POST",
            url: url.to_string(),
            status: status.as_u16(),
            body: text.chars().take(300).collect(),
        });
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_value_reads_unlabelled_series() {
        let text = "# HELP rota_fired_total Runs fired.\n# TYPE rota_fired_total counter\n\
                    rota_fired_total 42\nrota_fired_total_other 7\nrota_jobs 5\n";
        assert_eq!(metric_value(text, "rota_fired_total"), Some(42.0));
        assert_eq!(metric_value(text, "rota_jobs"), Some(5.0));
        assert_eq!(metric_value(text, "rota_missing"), None);
    }

    #[test]
    fn health_reads_role_and_scheduler() {
        let v = json!({"status": "ok", "role": "Leader",
            "scheduler": {"jobs": 10, "running": 1, "queued": 2, "timers": 3, "fired_total": 4}});
        let h = Health::from_json(&v);
        assert!(h.is_leader());
        assert_eq!(h.scheduler_jobs, Some(10));
        assert_eq!(h.queued, Some(2));
        assert_eq!(h.running, Some(1));
        assert_eq!(h.fired_total, Some(4));
    }

    #[test]
    fn health_without_scheduler_object() {
        let h = Health::from_json(&json!({"role": "follower"}));
        assert!(!h.is_leader());
        assert_eq!(h.scheduler_jobs, None);
    }

    #[test]
    fn client_ids_differ_between_clients() {
        assert_ne!(unique_client_id("kv", 1), unique_client_id("kv", 2));
    }

    use std::sync::{Arc, Mutex};

    use axum::http::{HeaderMap, StatusCode as Status};
    use axum::routing::{post, put};
    use axum::Router;

    /// What a fake server saw: (path, client id, seq, body) per request.
    type Seen = Arc<Mutex<Vec<(String, String, String, String)>>>;

    fn header(h: &HeaderMap, name: &str) -> String {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }

    /// A server on a free loopback port that answers 503 to the first request and
    /// 201 afterwards.
    async fn flaky_server() -> (String, Seen) {
        let seen: Seen = Arc::default();
        let log = seen.clone();
        let handler = move |uri: axum::http::Uri, headers: HeaderMap, body: String| {
            let log = log.clone();
            async move {
                let mut log = log.lock().unwrap();
                log.push((
                    uri.path().to_string(),
                    header(&headers, "rota-client-id"),
                    header(&headers, "rota-request-seq"),
                    body,
                ));
                if log.len() == 1 {
                    Status::SERVICE_UNAVAILABLE
                } else {
                    Status::CREATED
                }
            }
        };
        let app = Router::new()
            .route("/v1/kv/{*key}", put(handler.clone()))
            .route("/v3/kv/put", post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    #[tokio::test]
    async fn rota_writes_carry_a_session_and_retry_with_the_same_seq() {
        let (url, seen) = flaky_server().await;
        let mut c = RotaClient::new(&url, "bench-7".into()).unwrap();
        c.put_kv("bench/0/1", "v").await.unwrap();
        c.put_kv("bench/0/2", "v").await.unwrap();
        let seen = seen.lock().unwrap().clone();
        let seqs: Vec<&str> = seen.iter().map(|s| s.2.as_str()).collect();
        // The 503 is retried as the same request; the next write is a new one.
        assert_eq!(seqs, ["1", "1", "2"]);
        assert!(seen.iter().all(|s| s.1 == "bench-7"));
        assert_eq!(seen[2].0, "/v1/kv/bench/0/2");
        assert_eq!(seen[0].3, r#"{"value":"v"}"#);
    }

    #[tokio::test]
    async fn etcd_puts_base64_and_reports_failures() {
        let (url, seen) = flaky_server().await;
        let c = EtcdClient::new(&url).unwrap();
        let err = c.put("k", "v").await.unwrap_err();
        assert!(
            matches!(err, BenchError::Status { status: 503, .. }),
            "{err}"
        );
        c.put("k", "v").await.unwrap();
        let seen = seen.lock().unwrap().clone();
        let body: Value = serde_json::from_str(&seen[1].3).unwrap();
        assert_eq!(body, json!({"key": "aw==", "value": "dg=="}));
    }

    #[test]
    fn transient_statuses() {
        let status = |status| BenchError::Status {
            method: "PUT",
            url: "u".into(),
            status,
            body: String::new(),
        };
        assert!(status(503).is_transient());
        assert!(!status(400).is_transient());
        assert!(!status(409).is_transient());
    }
}
