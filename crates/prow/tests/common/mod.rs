//! What the deck tests share (the `rota prow` end-to-end test includes this file
//! too): the recorded deck pages, a local deck serving them and the ways a deck
//! fails, and a line protocol reader that knows nothing of rota's encoder.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// `{"items": [...]}` as a deck answers `/prowjobs.js`: six jobs, one of them
/// (#4) without a start time.
pub const PLAIN: &str = include_str!("../fixtures/prowjobs.json");
/// The same list as `/prowjobs.js?var=allBuilds` answers it.
pub const WRAPPED: &str = include_str!("../fixtures/prowjobs.js");
/// A download cut short.
pub const TRUNCATED: &str = include_str!("../fixtures/truncated.json");
/// What an authenticating proxy in front of a deck answers.
pub const LOGIN_PAGE: &str = "<!DOCTYPE html>\n<html><head><title>Log in</title></head>\
<body><form action=\"/oauth/start\">Sign in with GitHub</form></body></html>\n";

/// A local deck on 127.0.0.1:0.
///
/// - `/prowjobs.js`: [`PLAIN`], or `var NAME = ...;` when asked with `?var=NAME`
/// - `/login/prowjobs.js`: 200 with [`LOGIN_PAGE`]
/// - `/down/prowjobs.js`: 502 with an HTML error page
/// - `/truncated/prowjobs.js`: 200 with [`TRUNCATED`]
/// - `/cut/prowjobs.js`: half the page, then the connection breaks off
/// - `/silent/prowjobs.js`: never answers
/// - `/stalled/prowjobs.js`: headers and half the page, then nothing
///
/// `short_url` is another deck, on a socket of its own, whose `/prowjobs.js`
/// announces the whole page's length, sends half of it and closes.
pub struct Deck {
    pub url: String,
    pub short_url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Deck {
    pub async fn start() -> Deck {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route("/prowjobs.js", get(prowjobs))
            .route(
                "/login/prowjobs.js",
                get(|| async { html(StatusCode::OK, LOGIN_PAGE) }),
            )
            .route(
                "/down/prowjobs.js",
                get(|| async {
                    html(
                        StatusCode::BAD_GATEWAY,
                        "<html><body><h1>502 Bad Gateway</h1></body></html>",
                    )
                }),
            )
            .route("/truncated/prowjobs.js", get(|| async { TRUNCATED }))
            .route("/cut/prowjobs.js", get(cut))
            .route("/silent/prowjobs.js", get(silent))
            .route("/stalled/prowjobs.js", get(stalled))
            .layer(axum::middleware::from_fn_with_state(
                requests.clone(),
                remember,
            ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Deck {
            url: format!("http://{addr}"),
            short_url: short_deck().await,
            requests,
        }
    }

    /// Path and query of every request so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// Answers every connection with a 200 whose body stops halfway through its
/// Content-Length.
async fn short_deck() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/javascript\r\nContent-Length: {}\r\n\r\n",
                    PLAIN.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&PLAIN.as_bytes()[..PLAIN.len() / 2]).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

async fn remember(
    State(requests): State<Arc<Mutex<Vec<String>>>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let uri = request
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    requests.lock().unwrap().push(uri);
    next.run(request).await
}

fn html(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/html")], body).into_response()
}

async fn prowjobs(Query(query): Query<BTreeMap<String, String>>) -> Response {
    let body = match query.get("var") {
        Some(var) => format!("var {var} = {};\n", PLAIN.trim()),
        None => PLAIN.to_string(),
    };
    ([(header::CONTENT_TYPE, "text/javascript")], body).into_response()
}

/// A chunked body whose stream fails midway: the server drops the connection
/// without the final chunk.
async fn cut() -> Response {
    let half = PLAIN[..PLAIN.len() / 2].to_string();
    let chunks = futures_util::stream::iter(vec![
        Ok::<_, std::io::Error>(bytes::Bytes::from(half)),
        Err(std::io::Error::other("deck pod restarted")),
    ]);
    axum::body::Body::from_stream(chunks).into_response()
}

async fn silent() -> Response {
    std::future::pending::<()>().await;
    unreachable!()
}

async fn stalled() -> Response {
    let half = PLAIN[..PLAIN.len() / 2].to_string();
    let first = futures_util::stream::iter(vec![Ok::<_, Infallible>(bytes::Bytes::from(half))]);
    let rest = futures_util::stream::pending::<Result<bytes::Bytes, Infallible>>();
    axum::body::Body::from_stream(futures_util::StreamExt::chain(first, rest)).into_response()
}

/// A field value as line protocol types it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Float(f64),
    Int(i64),
    UInt(u64),
    Bool(bool),
    Str(String),
}

/// One line of line protocol, unescaped.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub measurement: String,
    pub tags: BTreeMap<String, String>,
    pub fields: BTreeMap<String, Value>,
    pub time_ns: Option<i64>,
}

/// Reads a line as the line protocol reference describes it: `measurement`,
/// `,tag=value` pairs, a space, `field=value` pairs, optionally a space and a
/// timestamp. Escapes: `\,` and `\ ` in measurements; `\,` `\=` `\ ` in keys and
/// tag values; `\"` and `\\` in string values.
pub fn parse_line(line: &str) -> Result<Line, String> {
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    // An unquoted token up to one of `stops`, unescaping `escapable`.
    let token = |i: &mut usize, stops: &[char], escapable: &[char]| -> String {
        let mut out = String::new();
        while *i < chars.len() && !stops.contains(&chars[*i]) {
            if chars[*i] == '\\' && *i + 1 < chars.len() && escapable.contains(&chars[*i + 1]) {
                out.push(chars[*i + 1]);
                *i += 2;
            } else {
                out.push(chars[*i]);
                *i += 1;
            }
        }
        out
    };
    let measurement = token(&mut i, &[',', ' '], &[',', ' ']);
    if measurement.is_empty() {
        return Err(format!("no measurement in {line:?}"));
    }
    let mut tags = BTreeMap::new();
    while i < chars.len() && chars[i] == ',' {
        i += 1;
        let key = token(&mut i, &['=', ',', ' '], &[',', '=', ' ']);
        if chars.get(i) != Some(&'=') {
            return Err(format!("tag {key:?} without a value in {line:?}"));
        }
        i += 1;
        let value = token(&mut i, &[',', ' '], &[',', '=', ' ']);
        if key.is_empty() || value.is_empty() {
            return Err(format!("empty tag key or value in {line:?}"));
        }
        tags.insert(key, value);
    }
    if chars.get(i) != Some(&' ') {
        return Err(format!("no fields in {line:?}"));
    }
    i += 1;
    let mut fields = BTreeMap::new();
    loop {
        let key = token(&mut i, &['=', ',', ' '], &[',', '=', ' ']);
        if chars.get(i) != Some(&'=') || key.is_empty() {
            return Err(format!("field {key:?} without a value in {line:?}"));
        }
        i += 1;
        let value = if chars.get(i) == Some(&'"') {
            i += 1;
            let mut s = String::new();
            loop {
                match chars.get(i) {
                    None => return Err(format!("unclosed string in {line:?}")),
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some('\\') if matches!(chars.get(i + 1), Some('"' | '\\')) => {
                        s.push(chars[i + 1]);
                        i += 2;
                    }
                    Some(&c) => {
                        s.push(c);
                        i += 1;
                    }
                }
            }
            Value::Str(s)
        } else {
            let raw = token(&mut i, &[',', ' '], &[]);
            if let Some(n) = raw.strip_suffix('i') {
                Value::Int(n.parse().map_err(|e| format!("{raw}: {e}"))?)
            } else if let Some(n) = raw.strip_suffix('u') {
                Value::UInt(n.parse().map_err(|e| format!("{raw}: {e}"))?)
            } else if matches!(raw.as_str(), "t" | "T" | "true" | "True" | "TRUE") {
                Value::Bool(true)
            } else if matches!(raw.as_str(), "f" | "F" | "false" | "False" | "FALSE") {
                Value::Bool(false)
            } else {
                Value::Float(raw.parse().map_err(|e| format!("{raw}: {e}"))?)
            }
        };
        fields.insert(key, value);
        match chars.get(i) {
            Some(',') => i += 1,
            _ => break,
        }
    }
    let time_ns = match chars.get(i) {
        None => None,
        Some(' ') => {
            let rest: String = chars[i + 1..].iter().collect();
            Some(
                rest.parse()
                    .map_err(|e| format!("timestamp {rest:?}: {e}"))?,
            )
        }
        Some(c) => return Err(format!("unexpected {c:?} in {line:?}")),
    };
    Ok(Line {
        measurement,
        tags,
        fields,
        time_ns,
    })
}

/// The line each recorded job should become, worked out from the fixture's JSON
/// directly (not through rota's parser): jobs whose name matches `keep`, without
/// the one that has no start time.
pub fn expected_lines(page: &str, keep: impl Fn(&str) -> bool) -> Vec<Line> {
    let doc: serde_json::Value = serde_json::from_str(page).expect("fixture is JSON");
    let time = |s: &str| chrono::DateTime::parse_from_rfc3339(s).expect("fixture time");
    let mut lines = Vec::new();
    for job in doc["items"].as_array().expect("items") {
        let name = job["spec"]["job"].as_str().expect("job name");
        let Some(start) = job["status"]["startTime"].as_str() else {
            continue;
        };
        if !keep(name) {
            continue;
        }
        let state = job["status"]["state"].as_str().expect("state");
        let mut fields = BTreeMap::new();
        fields.insert(
            "build_id".to_string(),
            Value::Str(job["status"]["build_id"].as_str().unwrap_or("").to_string()),
        );
        if let Some(n) = job["spec"]["refs"]["pulls"][0]["number"].as_i64() {
            fields.insert("pull_request".to_string(), Value::Int(n));
        }
        if let Some(end) = job["status"]["completionTime"].as_str() {
            let ms = (time(end) - time(start)).num_milliseconds();
            fields.insert("duration_s".to_string(), Value::Float(ms as f64 / 1000.0));
        }
        let state_int = match state {
            "success" => 0,
            "pending" => 1,
            "failure" => 2,
            "aborted" => 3,
            "flake" => 4,
            _ => 10,
        };
        fields.insert("state_int".to_string(), Value::Int(state_int));
        if let Some(url) = job["status"]["url"].as_str() {
            fields.insert("log_url".to_string(), Value::Str(url.to_string()));
        }
        lines.push(Line {
            measurement: "build".to_string(),
            tags: [
                ("job_name", name),
                ("job_type", job["spec"]["type"].as_str().expect("type")),
                ("state", state),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            fields,
            time_ns: time(start).timestamp_nanos_opt(),
        });
    }
    lines
}
