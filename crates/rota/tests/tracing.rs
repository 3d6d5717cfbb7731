//! OpenTelemetry traces: a real server with `--otlp-endpoint` sends its spans, as
//! OTLP/HTTP JSON, to a small receiver this test runs, and a bad endpoint is
//! refused at start.

mod common;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{json, Value};

use common::{eventually, stderr, Server, BIN};

/// What the receiver was sent: each request's headers and body.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(HeaderMap, Value)>>>);

impl Received {
    /// Every span received so far.
    fn spans(&self) -> Vec<Value> {
        let requests = self.0.lock().unwrap();
        let mut spans = Vec::new();
        for (_, body) in requests.iter() {
            for resource in body["resourceSpans"].as_array().into_iter().flatten() {
                for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                    spans.extend(scope["spans"].as_array().into_iter().flatten().cloned());
                }
            }
        }
        spans
    }

    fn first_request(&self) -> Option<(HeaderMap, Value)> {
        self.0.lock().unwrap().first().cloned()
    }
}

/// An OTLP/HTTP receiver on a free loopback port: answers `POST /v1/traces` with
/// 200 and records what it got. Answers its base URL.
async fn start_receiver(received: Received) -> String {
    async fn traces(
        State(received): State<Received>,
        headers: HeaderMap,
        body: String,
    ) -> (StatusCode, &'static str) {
        let Ok(body) = serde_json::from_str::<Value>(&body) else {
            return (StatusCode::BAD_REQUEST, "not JSON");
        };
        received.0.lock().unwrap().push((headers, body));
        (StatusCode::OK, "{}")
    }
    let app = axum::Router::new()
        .route("/v1/traces", post(traces))
        .with_state(received);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// The value of a span's attribute `key`, whatever its type, as JSON.
fn attr(span: &Value, key: &str) -> Option<Value> {
    let attrs = span["attributes"].as_array()?;
    let value = &attrs.iter().find(|a| a["key"] == key)?["value"];
    ["stringValue", "intValue", "boolValue", "doubleValue"]
        .iter()
        .find_map(|t| value.get(*t).cloned())
}

fn find(spans: &[Value], pred: impl Fn(&Value) -> bool) -> Option<&Value> {
    spans.iter().find(|s| pred(s))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_commits_and_executions_are_sent_as_otlp_spans() {
    let received = Received::default();
    let endpoint = start_receiver(received.clone()).await;
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        tmp.path(),
        &[
            "--otlp-endpoint",
            &endpoint,
            "--otlp-header",
            "Authorization=Bearer t0ken",
        ],
    )
    .await;

    eprintln!("--- create a job and run it");
    let (status, body) = server
        .send(
            "PUT",
            "/v1/jobs/traced",
            Some(json!({"schedule": {"manual": true}, "executor": {"type": "shell", "command": "echo hi"}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = server.send("POST", "/v1/jobs/traced/run", None).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().expect("execution id").to_string();
    eventually(Duration::from_secs(60), "the run succeeds", || async {
        let (_, e) = server.get(&format!("/v1/executions/{id}")).await;
        (e["status"] == "succeeded").then_some(())
    })
    .await;

    eprintln!("--- the receiver gets the request, its commit and the execution");
    let (put, commit, execution) = eventually(Duration::from_secs(30), "the spans", || {
        let spans = received.spans();
        let id = id.clone();
        async move {
            let put = find(&spans, |s| s["name"] == "HTTP PUT /v1/jobs/{name}")?.clone();
            let commit = find(&spans, |s| {
                s["name"] == "raft.commit" && s["parentSpanId"] == put["spanId"]
            })?
            .clone();
            let execution = find(&spans, |s| {
                s["name"] == "execution" && attr(s, "execution.id") == Some(json!(id))
            })?
            .clone();
            Some((put, commit, execution))
        }
    })
    .await;

    let (headers, body) = received.first_request().expect("a request");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["authorization"], "Bearer t0ken");
    let resource = &body["resourceSpans"][0]["resource"];
    let service = resource["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == "service.name")
        .expect("service.name");
    assert_eq!(service["value"]["stringValue"], "rota");

    // The request span: server kind, the route template, the answer.
    assert_eq!(put["kind"], 2, "{put}");
    assert_eq!(attr(&put, "http.request.method"), Some(json!("PUT")));
    assert_eq!(attr(&put, "http.route"), Some(json!("/v1/jobs/{name}")));
    assert_eq!(attr(&put, "http.response.status_code"), Some(json!("201")));
    assert_eq!(attr(&put, "node"), Some(json!("n1")));
    let trace_id = put["traceId"].as_str().unwrap();
    assert_eq!(trace_id.len(), 32, "{put}");
    assert!(trace_id.chars().all(|c| c.is_ascii_hexdigit()), "{put}");
    assert_eq!(put["spanId"].as_str().unwrap().len(), 16, "{put}");
    assert!(put.get("parentSpanId").is_none(), "{put}");

    // Its commit: a child in the same trace, with the command and the log index.
    assert_eq!(commit["traceId"], put["traceId"], "{commit}");
    assert_eq!(attr(&commit, "raft.command"), Some(json!("put_job")));
    let index = attr(&commit, "raft.log_index").expect("a log index");
    assert!(
        index.as_str().unwrap().parse::<u64>().unwrap() > 0,
        "{commit}"
    );
    let start = |s: &Value| {
        s["startTimeUnixNano"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let end = |s: &Value| {
        s["endTimeUnixNano"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    assert!(start(&put) <= start(&commit) && end(&commit) <= end(&put));

    // The execution: its job, attempt and outcome.
    assert_eq!(attr(&execution, "job"), Some(json!("traced")));
    assert_eq!(attr(&execution, "attempt"), Some(json!("1")));
    assert_eq!(attr(&execution, "status"), Some(json!("succeeded")));
    assert_eq!(attr(&execution, "trigger"), Some(json!("manual")));
    assert_eq!(execution["status"]["code"], 0, "{execution}");

    eprintln!("--- a request just before a graceful stop is sent before the process exits");
    let (status, body) = server.get("/v1/jobs/traced/executions").await;
    assert_eq!(status, 200, "{body}");
    let exit = tokio::task::block_in_place(|| server.stop());
    assert!(exit.success(), "graceful stop exited with {exit}");
    let spans = received.spans();
    let last = find(&spans, |s| {
        s["name"] == "HTTP GET /v1/jobs/{name}/executions"
    });
    assert!(last.is_some(), "{}", server.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_a_follower_forwards_continues_its_trace_on_the_leader() {
    let received = Received::default();
    let endpoint = start_receiver(received.clone()).await;
    let tmp = tempfile::tempdir().unwrap();
    let ports = common::ports(3);
    let peers = common::peers_arg(&ports);
    let servers: Vec<Server> = (0..3)
        .map(|i| {
            common::launch_member(
                tmp.path(),
                i as u64 + 1,
                ports[i],
                &peers,
                &["--otlp-endpoint", &endpoint],
            )
        })
        .collect();
    let leader = eventually(Duration::from_secs(60), "a leader", || {
        common::agreed_leader(&servers)
    })
    .await;
    let follower = (leader + 1) % servers.len();
    let (leader_name, follower_name) = (format!("n{}", leader + 1), format!("n{}", follower + 1));

    eprintln!("--- a write through the follower {follower_name}");
    let (status, body) = servers[follower]
        .send(
            "PUT",
            "/v1/jobs/forwarded",
            Some(json!({"schedule": {"manual": true}, "executor": {"type": "shell", "command": "true"}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    eprintln!("--- the leader's commit span is the child of the follower's");
    let (put, sent, applied) = eventually(Duration::from_secs(30), "the spans", || {
        let spans = received.spans();
        let follower_name = json!(follower_name);
        async move {
            let put = find(&spans, |s| {
                s["name"] == "HTTP PUT /v1/jobs/{name}"
                    && attr(s, "node") == Some(follower_name.clone())
            })?
            .clone();
            let sent = find(&spans, |s| s["parentSpanId"] == put["spanId"])?.clone();
            let applied = find(&spans, |s| s["parentSpanId"] == sent["spanId"])?.clone();
            Some((put, sent, applied))
        }
    })
    .await;
    assert_eq!(sent["name"], "raft.commit");
    assert_eq!(
        attr(&sent, "raft.forwarded_to_leader"),
        Some(json!(true)),
        "{sent}"
    );
    assert_eq!(attr(&sent, "node"), Some(json!(follower_name)));
    assert_eq!(applied["name"], "raft.commit");
    assert_eq!(applied["traceId"], put["traceId"], "{applied}");
    assert_eq!(
        attr(&applied, "raft.forwarded_from_follower"),
        Some(json!(true)),
        "{applied}"
    );
    assert_eq!(attr(&applied, "raft.command"), Some(json!("put_job")));
    assert_eq!(attr(&applied, "node"), Some(json!(leader_name)));
    assert_eq!(
        attr(&applied, "raft.log_index"),
        attr(&sent, "raft.log_index")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_receiver_costs_a_warning_not_the_service() {
    let tmp = tempfile::tempdir().unwrap();
    let nobody = format!("http://127.0.0.1:{}", common::free_port());
    let mut server = Server::start(tmp.path(), &["--otlp-endpoint", &nobody]).await;
    let (status, body) = server
        .send(
            "PUT",
            "/v1/jobs/untraced",
            Some(json!({"schedule": {"manual": true}, "executor": {"type": "shell", "command": "true"}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let exit = tokio::task::block_in_place(|| server.stop());
    assert!(exit.success(), "graceful stop exited with {exit}");
    let logs = server.logs();
    assert_eq!(
        logs.matches("cannot send traces").count(),
        1,
        "one warning while failures last:\n{logs}"
    );
}

#[test]
fn a_bad_endpoint_is_refused_at_start_with_the_key_named() {
    let tmp = tempfile::tempdir().unwrap();
    let server = |args: &[&str]| {
        Command::new(BIN)
            .arg("server")
            .arg("--data-dir")
            .arg(tmp.path().join("data"))
            .arg("--listen")
            .arg("127.0.0.1:0")
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("ROTA_OTLP_ENDPOINT")
            .current_dir(tmp.path())
            .output()
            .expect("run rota server")
    };

    // A flag: clap's usage error names the flag and what is accepted.
    let out = server(&["--otlp-endpoint", "localhost:4318"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("--otlp-endpoint"), "{err}");
    assert!(err.contains("http:// or https://"), "{err}");

    // The config file: the key and its line.
    let config = tmp.path().join("rota.toml");
    std::fs::write(&config, "otlp_endpoint = \"grpc://collector:4317\"\n").unwrap();
    let out = server(&["--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("otlp_endpoint"), "{err}");
    assert!(err.contains("OTLP/HTTP receiver"), "{err}");
    assert!(
        !tmp.path().join("data").exists(),
        "nothing is started with a bad setting"
    );
}
