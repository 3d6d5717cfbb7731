//! End-to-end: the request limits of a real `rota server`. Oversized heads are
//! refused with 431 (by rota's own check, or by hyper's beyond its read buffer),
//! watch connections beyond `--watch-max-connections` get 503, and the server keeps
//! serving after each.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::Server;
use serde_json::Value;

/// Guards a read that must end (the server answers, or closes); reaching it fails.
const READ_DEADLINE: Duration = Duration::from_secs(30);

/// Sends `head` (a request without a body) on a fresh connection and reads until
/// the server closes it or answers: the status line, or `None` when the server
/// closed the connection without one.
fn raw_request(port: u16, head: &[u8]) -> Option<String> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    conn.set_read_timeout(Some(READ_DEADLINE)).unwrap();
    // A server that refuses a head early may close before it was all written.
    let _ = conn.write_all(head);
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                panic!("no answer within {READ_DEADLINE:?}")
            }
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&answer);
    text.lines()
        .next()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
}

fn head_with(headers: &str) -> Vec<u8> {
    format!("GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Connection: close\r\n\r\n")
        .into_bytes()
}

async fn still_serves(server: &mut Server) {
    assert!(server.is_running(), "the server process ended");
    let (status, _) = server.get("/v1/health").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_are_refused_with_431_and_the_server_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(tmp.path(), &[]).await;

    // --- rota's own limit: a 100 KiB header gets the JSON error naming 65536
    let client = reqwest::Client::new();
    let resp = client
        .get(format!("{}/v1/health", server.url))
        .header("x-padding", "p".repeat(100 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 431);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "headers_too_large", "{body}");
    assert_eq!(body["error"]["limit"], 65536, "{body}");
    still_serves(&mut server).await;

    // --- hyper's limits, below rota's check: more than 100 headers...
    let many: String = (0..120).map(|i| format!("x-h{i}: v\r\n")).collect();
    let status = raw_request(server.port, &head_with(&many));
    assert_eq!(
        status.as_deref(),
        Some("HTTP/1.1 431 Request Header Fields Too Large")
    );
    still_serves(&mut server).await;

    // ...or a head beyond its read buffer: refused (431, or the connection closed
    // while it was still being sent), never a crash.
    let huge = format!("x-padding: {}\r\n", "p".repeat(1024 * 1024));
    let status = raw_request(server.port, &head_with(&huge));
    assert!(
        status.is_none() || status.as_deref().is_some_and(|s| s.contains(" 431 ")),
        "{status:?}"
    );
    still_serves(&mut server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_beyond_watch_max_connections_get_503_naming_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(tmp.path(), &["--watch-max-connections", "1"]).await;
    let client = reqwest::Client::new();
    let first = client
        .get(format!("{}/v1/watch", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status().as_u16(), 200);

    let (status, body) = server.get("/v1/watch").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "too_many_watchers", "{body}");
    assert_eq!(body["error"]["limit"], 1, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("watch_max_connections")),
        "{body}"
    );
    still_serves(&mut server).await;
    drop(first);
}

/// Regression: a job whose `metadata` nested 125 levels parsed and was committed,
/// but the records and log entries carrying it were deeper than the JSON reader's
/// limit of 128, so the node could not read them back. Bodies now nest at most 64
/// levels: deeper is a 400 naming the limit, and the node keeps serving, also
/// after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_nested_deeper_than_64_levels_is_refused_and_the_node_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(tmp.path(), &[]).await;
    let deep = |levels: usize| {
        (0..levels).fold(
            serde_json::json!(1),
            |inner, _| serde_json::json!({ "k": inner }),
        )
    };
    let job = |metadata: Value| {
        serde_json::json!({"schedule": {"manual": true},
                           "executor": {"type": "shell", "command": "true"},
                           "metadata": metadata})
    };
    let (status, body) = server
        .send("PUT", "/v1/jobs/deep", Some(job(deep(125))))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("64 levels")),
        "{body}"
    );
    // The job object and `metadata` are two levels: 62 more is the most.
    let (status, body) = server
        .send("PUT", "/v1/jobs/deep", Some(job(deep(62))))
        .await;
    assert_eq!(status, 201, "{body}");
    still_serves(&mut server).await;

    server.restart().await;
    let (status, body) = server.get("/v1/jobs/deep").await;
    assert_eq!(status, 200, "{body}");
}
