//! Tests against a real HTTP server on the loopback interface.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::{any, get, post};
use axum::Router;
use rota_core::{ExecStatus, ExecutorSpec, HttpSpec};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::HttpExecutor;
use crate::{test_request, Executor, OutputBuffer, RunOutcome};

/// A test server. `/hang` never answers: its handler waits on `never`, which nobody
/// notifies, after signalling `arrived`.
struct Server {
    addr: SocketAddr,
    arrived: Arc<Notify>,
    // Kept so that the handler's wait stays pending for the server's life.
    _never: Arc<Notify>,
}

async fn echo(method: Method, headers: HeaderMap, body: String) -> String {
    let header = headers
        .get("x-rota-test")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    format!("{method} {header} {body}")
}

async fn server() -> Server {
    let arrived = Arc::new(Notify::new());
    let never = Arc::new(Notify::new());
    let hang = {
        let (arrived, never) = (arrived.clone(), never.clone());
        move || async move {
            arrived.notify_one();
            never.notified().await;
            "unreachable"
        }
    };
    let app = Router::new()
        .route("/ok", get(|| async { "hello" }))
        .route("/created", post(|| async { (StatusCode::CREATED, "made") }))
        .route(
            "/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route("/big", get(|| async { "x".repeat(100_000) }))
        .route("/echo", any(echo))
        .route("/hang", get(hang));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    Server {
        addr,
        arrived,
        _never: never,
    }
}

fn spec(method: &str, url: String) -> HttpSpec {
    HttpSpec {
        method: method.to_string(),
        url,
        headers: BTreeMap::new(),
        body: None,
        expect_status: Vec::new(),
    }
}

async fn run_with(
    spec: HttpSpec,
    timeout: Option<Duration>,
    max_bytes: u64,
    cancel: CancellationToken,
) -> (RunOutcome, OutputBuffer) {
    let output = OutputBuffer::new(max_bytes);
    let req = test_request(ExecutorSpec::Http(spec), timeout);
    let outcome = HttpExecutor.run(req, output.clone(), cancel).await;
    (outcome, output)
}

async fn run(spec: HttpSpec) -> (RunOutcome, String) {
    let (outcome, output) = run_with(spec, None, 1 << 20, CancellationToken::new()).await;
    let text = String::from_utf8_lossy(&output.snapshot().0).into_owned();
    (outcome, text)
}

#[tokio::test]
async fn ok_answer_succeeds_with_status_line_and_body() {
    let server = server().await;
    let (outcome, out) = run(spec("GET", format!("http://{}/ok", server.addr))).await;
    assert_eq!(outcome, RunOutcome::succeeded());
    assert_eq!(out, "HTTP 200\nhello");
}

#[tokio::test]
async fn expected_status_list_decides() {
    let server = server().await;
    let mut created = spec("POST", format!("http://{}/created", server.addr));
    created.expect_status = vec![200, 201];
    let (outcome, out) = run(created.clone()).await;
    assert_eq!(outcome, RunOutcome::succeeded());
    assert_eq!(out, "HTTP 201\nmade");

    created.expect_status = vec![200, 204];
    let (outcome, _) = run(created).await;
    assert_eq!(
        outcome,
        RunOutcome::failed(None, "unexpected status 201 (expected 200, 204)")
    );
}

#[tokio::test]
async fn server_error_fails() {
    let server = server().await;
    let (outcome, out) = run(spec("GET", format!("http://{}/fail", server.addr))).await;
    assert_eq!(
        outcome,
        RunOutcome::failed(None, "unexpected status 500 (expected 2xx)")
    );
    assert_eq!(out, "HTTP 500\nboom");
}

#[tokio::test]
async fn sends_method_headers_and_body() {
    let server = server().await;
    let mut echo = spec("PUT", format!("http://{}/echo", server.addr));
    echo.headers.insert("X-Rota-Test".into(), "yes".into());
    echo.body = Some("payload".into());
    let (outcome, out) = run(echo).await;
    assert_eq!(outcome, RunOutcome::succeeded());
    assert_eq!(out, "HTTP 200\nPUT yes payload");
}

#[tokio::test]
async fn body_is_cut_at_the_limit() {
    let server = server().await;
    let (outcome, output) = run_with(
        spec("GET", format!("http://{}/big", server.addr)),
        None,
        50,
        CancellationToken::new(),
    )
    .await;
    assert_eq!(outcome, RunOutcome::succeeded());
    let (bytes, truncated) = output.snapshot();
    assert!(truncated);
    assert_eq!(bytes.len(), 50);
    assert!(bytes.starts_with(b"HTTP 200\nxxx"));
}

#[tokio::test]
async fn no_answer_times_out() {
    let server = server().await;
    let (outcome, _) = run_with(
        spec("GET", format!("http://{}/hang", server.addr)),
        Some(Duration::from_millis(200)),
        100,
        CancellationToken::new(),
    )
    .await;
    assert_eq!(outcome, RunOutcome::timed_out(Duration::from_millis(200)));
    assert_eq!(outcome.error.as_deref(), Some("timed out after 200ms"));
}

#[tokio::test]
async fn cancel_aborts_the_request() {
    let server = server().await;
    let cancel = CancellationToken::new();
    let req = test_request(
        ExecutorSpec::Http(spec("GET", format!("http://{}/hang", server.addr))),
        None,
    );
    let run = tokio::spawn(HttpExecutor.run(req, OutputBuffer::new(100), cancel.clone()));
    server.arrived.notified().await;
    cancel.cancel();
    assert_eq!(run.await.expect("run task"), RunOutcome::cancelled());
}

#[tokio::test]
async fn refused_connection_fails_with_the_cause() {
    // A port that was just free: nothing listens there any more.
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let (outcome, out) = run(spec("GET", format!("http://{addr}/"))).await;
    assert_eq!(outcome.status, ExecStatus::Failed);
    assert_eq!(outcome.exit_code, None);
    let error = outcome.error.unwrap_or_default();
    assert!(error.starts_with("request failed: "), "{error}");
    assert!(
        error.to_lowercase().contains("connection refused"),
        "{error}"
    );
    assert_eq!(out, "");
}

#[tokio::test]
async fn invalid_spec_parts_fail_naming_them() {
    let mut bad_method = spec("GE T", "http://127.0.0.1:1/".into());
    let (outcome, _) = run(bad_method.clone()).await;
    assert_eq!(
        outcome,
        RunOutcome::failed(None, "invalid HTTP method \"GE T\"")
    );

    bad_method.method = "GET".into();
    bad_method
        .headers
        .insert("bad header".into(), "value".into());
    let (outcome, _) = run(bad_method.clone()).await;
    assert_eq!(
        outcome,
        RunOutcome::failed(None, "invalid header name \"bad header\"")
    );

    bad_method.headers.clear();
    bad_method
        .headers
        .insert("x-ok".into(), "line\nbreak".into());
    let (outcome, _) = run(bad_method).await;
    assert_eq!(
        outcome,
        RunOutcome::failed(None, "invalid value for header \"x-ok\"")
    );
}
