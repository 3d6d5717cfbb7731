//! Every documented request limit, against a real single node: each refusal is a
//! 4xx in the contract's error shape whose message names the limit and its value,
//! and the node keeps serving afterwards.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use rota_core::ExecStatus;
use serde_json::{json, Value};
use tracing::info;

use crate::tests::{shell_job, wait_for_execution, Answer, Harness};
use crate::{BODY_LIMIT, MAX_HEADER_BYTES};

fn assert_error(a: &Answer, status: StatusCode, code: &str, names: &[&str]) {
    assert_eq!(a.status, status, "{}", a.text);
    assert_eq!(a.body["error"]["code"], code, "{}", a.text);
    let message = a.body["error"]["message"].as_str().expect("a message");
    for name in names {
        assert!(message.contains(name), "{message:?} does not name {name:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_413_naming_it_on_every_route_that_reads_one() {
    let h = Harness::start().await;
    // Valid JSON, one byte over: the limit is on bytes, whatever they hold.
    let padding = BODY_LIMIT - r#"{"x":""}"#.len() + 1;
    let huge = format!(r#"{{"x":"{}"}}"#, "a".repeat(padding));
    assert_eq!(huge.len(), BODY_LIMIT + 1);
    for (method, uri) in [
        (Method::POST, "/v1/jobs"),
        (Method::PUT, "/v1/jobs/big"),
        (Method::PUT, "/v1/kv/big"),
        (Method::POST, "/v1/events"),
        (Method::PUT, "/v1/workflows/big"),
        (Method::PUT, "/v1/targets/big"),
        (Method::PUT, "/v1/sinks/big"),
        (Method::PUT, "/v1/webhooks/big"),
    ] {
        let a = h
            .call(method.clone(), uri, &[], Body::from(huge.clone()))
            .await;
        assert_error(
            &a,
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            &[&BODY_LIMIT.to_string()],
        );
        assert_eq!(a.body["error"]["limit"], BODY_LIMIT, "{method} {uri}");
    }
    // At the limit exactly, the body is read (and then judged on its content).
    let at_limit = format!(r#"{{"value":"{}"}}"#, "a".repeat(BODY_LIMIT - 12));
    assert_eq!(at_limit.len(), BODY_LIMIT);
    let a = h
        .call(Method::PUT, "/v1/kv/at-limit", &[], Body::from(at_limit))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(h.get("/v1/kv/big").await.status, StatusCode::NOT_FOUND);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_of_more_than_1000_jobs_is_400_naming_jobs_and_the_limit() {
    let h = Harness::start().await;
    let job = |i: usize| {
        json!({"name": format!("j{i}"), "schedule": {"manual": true},
               "executor": {"type": "shell", "command": "true"}})
    };
    let over: Vec<Value> = (0..1001).map(job).collect();
    let a = h
        .send(Method::POST, "/v1/jobs", Some(json!({ "jobs": over })))
        .await;
    assert_error(&a, StatusCode::BAD_REQUEST, "invalid", &["1001", "1000"]);
    assert_eq!(a.body["error"]["field"], "jobs");
    let list = h.get("/v1/jobs?limit=1").await;
    assert_eq!(list.body["items"], json!([]), "nothing was written");

    let at: Vec<Value> = (0..1000).map(job).collect();
    let a = h
        .send(Method::POST, "/v1/jobs", Some(json!({ "jobs": at })))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["items"].as_array().map(Vec::len), Some(1000));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_over_the_limit_are_431_naming_it() {
    let h = Harness::start().await;
    let big = "h".repeat(MAX_HEADER_BYTES);
    let a = h
        .call(
            Method::GET,
            "/v1/health",
            &[("x-padding", &big)],
            Body::empty(),
        )
        .await;
    assert_error(
        &a,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers_too_large",
        &[&MAX_HEADER_BYTES.to_string()],
    );
    assert_eq!(a.body["error"]["limit"], MAX_HEADER_BYTES);
    // Under the limit, the same request is served.
    let fits = "h".repeat(MAX_HEADER_BYTES / 2);
    let a = h
        .call(
            Method::GET,
            "/v1/health",
            &[("x-padding", &fits)],
            Body::empty(),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_keeps_at_most_max_output_bytes_of_output_and_says_it_cut() {
    let h = Harness::start().await;
    let mut events = h.node.store().subscribe();

    info!("--- the job's limit is itself limited, and named when exceeded");
    let mut spec = shell_job("printf 0123456789abcdef");
    spec["max_output_bytes"] = json!(64 * 1024 * 1024 + 1);
    let a = h
        .send(Method::PUT, "/v1/jobs/chatty", Some(spec.clone()))
        .await;
    assert_error(&a, StatusCode::BAD_REQUEST, "invalid", &["67108864"]);
    assert_eq!(a.body["error"]["field"], "max_output_bytes");

    info!("--- a run writing 16 bytes under a 10-byte limit keeps 10");
    spec["max_output_bytes"] = json!(10);
    let a = h.send(Method::PUT, "/v1/jobs/chatty", Some(spec)).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let a = h.send(Method::POST, "/v1/jobs/chatty/run", None).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let id = a.body["id"].as_str().expect("id").to_string();
    let done = wait_for_execution(&mut events, &id, "finished", |e| e.status.is_terminal()).await;
    assert_eq!(done.status, ExecStatus::Succeeded, "{done:?}");
    assert!(done.output_truncated, "{done:?}");
    let a = h.get(&format!("/v1/executions/{id}/output")).await;
    assert_eq!(a.text, "0123456789");
    assert_eq!(
        a.headers.get("rota-output-truncated").map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    h.stop().await;
}
