//! What the sink tests share: an HTTP client, a real `influxd` of their own, and
//! a small server that records the requests it is sent.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// The client sinks are given, as the binary builds it (ring as TLS provider).
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().build().expect("http client")
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

/// An `influxd` (InfluxDB 1.x) of the test's own: a generated config in a temp
/// dir, loopback ports, no reporting. Killed on drop.
pub struct Influxd {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Influxd {
    /// Starts it and waits until `/ping` answers 204. Panics with what to install
    /// when there is no `influxd`: these tests must not pass without a server.
    pub async fn start() -> Influxd {
        let binary = std::env::var("ROTA_TEST_INFLUXD")
            .ok()
            .or_else(|| {
                std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                    .map(|dir| dir.join("influxd"))
                    .find(|p| p.is_file())
                    .map(|p| p.display().to_string())
            })
            .expect(
                "these tests need InfluxDB 1.x: install Debian's `influxdb` package \
                 (which puts influxd on the PATH), or set ROTA_TEST_INFLUXD to an influxd binary",
            );
        let dir = tempfile::tempdir().expect("temp dir");
        let (http, rpc) = (free_port(), free_port());
        let root = dir.path().display();
        let config = format!(
            r#"reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{root}/meta"
[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{http}"
  log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
"#
        );
        let config_path = dir.path().join("influxdb.conf");
        std::fs::write(&config_path, config).expect("write influxdb.conf");
        let log = std::fs::File::create(dir.path().join("influxd.log")).expect("log file");
        let child = Command::new(&binary)
            .arg("run")
            .arg("-config")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        let mut influxd = Influxd {
            child,
            url: format!("http://127.0.0.1:{http}"),
            _dir: dir,
        };
        influxd.wait_ready().await;
        influxd
    }

    async fn wait_ready(&mut self) {
        let client = client();
        let ping = format!("{}/ping", self.url);
        let give_up = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut pause = Duration::from_millis(20);
        loop {
            if let Ok(r) = client.get(&ping).send().await {
                if r.status() == StatusCode::NO_CONTENT {
                    return;
                }
            }
            if let Some(status) = self.child.try_wait().expect("influxd status") {
                let log = std::fs::read_to_string(self._dir.path().join("influxd.log"))
                    .unwrap_or_default();
                panic!("influxd exited with {status} before it answered /ping:\n{log}");
            }
            assert!(
                tokio::time::Instant::now() < give_up,
                "influxd did not answer {ping} within 30s"
            );
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// Runs an InfluxQL statement (`POST /query`), answers the JSON.
    pub async fn query(&self, db: Option<&str>, q: &str) -> serde_json::Value {
        let mut params = vec![("q", q), ("epoch", "ns")];
        if let Some(db) = db {
            params.push(("db", db));
        }
        let url = reqwest::Url::parse_with_params(&format!("{}/query", self.url), &params)
            .expect("query url");
        let response = client().post(url).send().await.expect("query influxd");
        assert!(response.status().is_success(), "{q}: {}", response.status());
        let body: serde_json::Value = response.json().await.expect("query answer");
        assert!(
            body["results"][0]["error"].is_null(),
            "{q}: {}",
            body["results"][0]["error"]
        );
        body
    }

    pub async fn create_database(&self, name: &str) {
        self.query(None, &format!("CREATE DATABASE \"{name}\""))
            .await;
    }

    /// The rows of `q` as objects keyed by column.
    pub async fn rows(&self, db: &str, q: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
        let answer = self.query(Some(db), q).await;
        let mut rows = Vec::new();
        for series in answer["results"][0]["series"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let columns: Vec<&str> = series["columns"]
                .as_array()
                .expect("columns")
                .iter()
                .map(|c| c.as_str().expect("column name"))
                .collect();
            for values in series["values"].as_array().expect("values") {
                let values = values.as_array().expect("row");
                rows.push(
                    columns
                        .iter()
                        .zip(values)
                        .map(|(c, v)| (c.to_string(), v.clone()))
                        .collect(),
                );
            }
        }
        rows
    }
}

impl Drop for Influxd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request as a [`Recorder`] saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub authorization: Option<String>,
    pub body: String,
}

impl Recorded {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct RecorderState {
    requests: Vec<Recorded>,
    /// Answers given before 204s, first first.
    script: Vec<(StatusCode, String)>,
}

/// A local HTTP server that records every request and answers from a script of
/// statuses, then 204.
#[derive(Clone)]
pub struct Recorder {
    pub url: String,
    state: Arc<Mutex<RecorderState>>,
}

impl Recorder {
    pub async fn start(script: Vec<(StatusCode, &str)>) -> Recorder {
        let state = Arc::new(Mutex::new(RecorderState {
            requests: Vec::new(),
            script: script
                .into_iter()
                .map(|(s, body)| (s, body.to_string()))
                .collect(),
        }));
        let app = axum::Router::new()
            .fallback(record)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Recorder {
            url: format!("http://{addr}"),
            state,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }
}

async fn record(State(state): State<Arc<Mutex<RecorderState>>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20).await.expect("body");
    let query = parts
        .uri
        .query()
        .map(|q| {
            reqwest::Url::parse(&format!("http://x/?{q}"))
                .expect("query")
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let mut state = state.lock().unwrap();
    state.requests.push(Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query,
        authorization: parts
            .headers
            .get("authorization")
            .map(|v| v.to_str().unwrap_or_default().to_string()),
        body: String::from_utf8(body.to_vec()).expect("utf-8 body"),
    });
    if state.script.is_empty() {
        StatusCode::NO_CONTENT.into_response()
    } else {
        let (status, body) = state.script.remove(0);
        (status, body).into_response()
    }
}
