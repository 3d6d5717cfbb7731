//! Handler tests against a real single-node cluster in a temp dir, driven through
//! the router with `tower::ServiceExt::oneshot` (no sockets).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use futures_util::StreamExt;
use rota_background::Runner;
use rota_cluster::{Bootstrap, ClusterOptions, Node, NodeConfig};
use rota_core::{EventKind, ExecStatus, Execution};
use rota_scheduler::{SchedulerConfig, SchedulerHandle};
use serde_json::{json, Value};
use tokio::sync::broadcast;
use tower::ServiceExt;
use tracing::info;

use crate::{router, ApiState, BODY_LIMIT};

/// Upper bound on waiting for an event that must come; reaching it fails the test.
const EVENT_DEADLINE: Duration = Duration::from_secs(30);

pub(crate) struct Harness {
    pub app: Router,
    pub node: Arc<Node>,
    workers: Runner,
    _dir: tempfile::TempDir,
}

pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with(rota_store::DEFAULT_EVENT_RETENTION).await
    }

    /// A node whose event log keeps at least `watch_retention` events.
    pub async fn start_with(watch_retention: u64) -> Harness {
        Harness::start_node(watch_retention, ClusterOptions::default()).await
    }

    /// A node started with `options` (e.g. waiting to join, or one of several
    /// voters whose peers never come up).
    pub async fn start_node(watch_retention: u64, options: ClusterOptions) -> Harness {
        Harness::start_full(watch_retention, options, crate::DEFAULT_MAX_WATCHERS).await
    }

    /// A node that serves at most `max_watchers` watch connections at once.
    pub async fn start_with_max_watchers(max_watchers: usize) -> Harness {
        Harness::start_full(
            rota_store::DEFAULT_EVENT_RETENTION,
            ClusterOptions::default(),
            max_watchers,
        )
        .await
    }

    async fn start_full(
        watch_retention: u64,
        options: ClusterOptions,
        max_watchers: usize,
    ) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let node = Node::start_with(
            NodeConfig {
                node_id: 1,
                node_name: "n1".into(),
                data_dir: dir.path().join("data"),
                advertise_url: "http://127.0.0.1:7700".into(),
                snapshot_every: 10_000,
                watch_retention: rota_store::EventRetention::events(watch_retention),
            },
            options,
            &Default::default(),
        )
        .await
        .expect("node starts");
        let workers = Runner::new();
        let scheduler = SchedulerHandle::spawn(
            node.clone(),
            SchedulerConfig {
                node_name: "n1".into(),
                max_running: 4,
                tags: Default::default(),
                sinks: None,
                telemetry: None,
                fire_ahead: rota_scheduler::DEFAULT_FIRE_AHEAD,
            },
            &workers,
        );
        let watch =
            crate::WatchHub::with_max_connections(crate::DEFAULT_WATCH_BUFFER, max_watchers);
        watch.spawn_worker(node.store().clone(), &workers);
        let app = router(ApiState {
            node: node.clone(),
            scheduler,
            started_at: chrono::Utc::now(),
            workers: workers.clone(),
            watch,
            telemetry: rota_scheduler::telemetry::Telemetry::new(),
            settings: vec![
                crate::StaticSetting {
                    key: "node_id",
                    value: "1".into(),
                    source: "default",
                },
                crate::StaticSetting {
                    key: "max_running",
                    value: "8".into(),
                    source: "flag",
                },
                crate::StaticSetting {
                    key: "discovery_throttle",
                    value: "5s".into(),
                    source: "default",
                },
            ],
            admin_token_hash: None,
        });
        Harness {
            app,
            node,
            workers,
            _dir: dir,
        }
    }

    pub async fn stop(self) {
        self.workers.stop().await;
        self.node.shutdown().await.expect("node shuts down");
    }

    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .app
            .clone()
            .oneshot(req.body(body).expect("request"))
            .await
            .expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn get(&self, uri: &str) -> Answer {
        self.call(Method::GET, uri, &[], Body::empty()).await
    }

    pub async fn send(&self, method: Method, uri: &str, body: Option<Value>) -> Answer {
        self.send_with(method, uri, &[], body).await
    }

    pub async fn send_with(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Answer {
        let body = body.map_or_else(Body::empty, |v| Body::from(v.to_string()));
        self.call(method, uri, headers, body).await
    }
}

pub(crate) fn shell_job(command: &str) -> Value {
    json!({"schedule": {"manual": true}, "executor": {"type": "shell", "command": command}})
}

/// Waits for the execution's next store event matching `pred` (the receiver must
/// have been subscribed before the change could happen).
pub(crate) async fn wait_for_execution(
    events: &mut broadcast::Receiver<Arc<rota_core::StoreEvent>>,
    id: &str,
    what: &str,
    pred: impl Fn(&Execution) -> bool,
) -> Execution {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(ev) => {
                    if let EventKind::Execution(e) = &ev.kind {
                        if e.id.to_string() == id && pred(e) {
                            return (**e).clone();
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => panic!("store closed"),
            }
        }
    };
    tokio::time::timeout(EVENT_DEADLINE, wait)
        .await
        .unwrap_or_else(|_| panic!("execution {id} never became {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_crud_answers_201_200_204_404() {
    let h = Harness::start().await;

    info!("--- create, then replace");
    let spec =
        json!({"schedule": {"every": "1h"}, "executor": {"type": "shell", "command": "true"}});
    let a = h
        .send(Method::PUT, "/v1/jobs/backup", Some(spec.clone()))
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    assert_eq!(a.body["name"], "backup");
    assert_eq!(a.body["schedule"]["every"], "1h");
    assert!(
        a.body["revision"].as_u64().is_some_and(|r| r > 0),
        "{}",
        a.text
    );
    assert!(a.body["next_run_at"].is_string(), "{}", a.text);
    assert_eq!(a.body["last_execution"], Value::Null, "{}", a.text);
    let created_at = a.body["created_at"].clone();

    let mut replaced = spec.clone();
    replaced["name"] = json!("backup");
    replaced["priority"] = json!(5);
    let a = h.send(Method::PUT, "/v1/jobs/backup", Some(replaced)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["priority"], 5);
    assert_eq!(a.body["created_at"], created_at);

    info!("--- read and list");
    let a = h.get("/v1/jobs/backup").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["priority"], 5);
    h.send(Method::PUT, "/v1/jobs/other", Some(spec)).await;
    let a = h.get("/v1/jobs").await;
    let names: Vec<&str> = a.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|j| j["name"].as_str())
        .collect();
    assert_eq!(names, ["backup", "other"]);
    let a = h.get("/v1/jobs?prefix=ot").await;
    assert_eq!(
        a.body["items"].as_array().map(Vec::len),
        Some(1),
        "{}",
        a.text
    );

    info!("--- pause and resume");
    let a = h.send(Method::POST, "/v1/jobs/backup/pause", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["paused"], true);
    assert_eq!(a.body["next_run_at"], Value::Null);
    let a = h.send(Method::POST, "/v1/jobs/backup/resume", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert!(a.body["next_run_at"].is_string(), "{}", a.text);
    let a = h.send(Method::POST, "/v1/jobs/nope/pause", None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.text);

    info!("--- delete");
    let a = h.send(Method::DELETE, "/v1/jobs/backup", None).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text);
    assert!(a.text.is_empty());
    let a = h.send(Method::DELETE, "/v1/jobs/backup", None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.text);
    assert_eq!(a.body["error"]["code"], "not_found");
    let a = h.get("/v1/jobs/backup").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = h.get("/v1/jobs/backup/executions").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);

    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_400_with_the_field_named() {
    let h = Harness::start().await;

    let cases = [
        (
            "/v1/jobs/bad",
            json!({"schedule": {"cron": "0 25 * * *"}, "executor": {"type": "shell", "command": "true"}}),
            "schedule.cron",
        ),
        (
            "/v1/jobs/bad",
            json!({"schedule": {"every": "1m"}, "executor": {"type": "shell", "command": "true"}, "retry": {"max_attempts": "three"}}),
            "retry.max_attempts",
        ),
        (
            "/v1/jobs/bad",
            json!({"name": "other", "schedule": {"every": "1m"}, "executor": {"type": "shell", "command": "true"}}),
            "name",
        ),
        ("/v1/jobs/Bad%20Name", shell_job("true"), "name"),
    ];
    for (uri, spec, field) in cases {
        let a = h.send(Method::PUT, uri, Some(spec.clone())).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{spec} -> {}", a.text);
        assert_eq!(a.body["error"]["code"], "invalid", "{}", a.text);
        assert_eq!(a.body["error"]["field"], field, "{spec} -> {}", a.text);
    }
    assert_eq!(h.get("/v1/jobs/bad").await.status, StatusCode::NOT_FOUND);

    let a = h
        .call(Method::PUT, "/v1/jobs/bad", &[], Body::from("{not json"))
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    assert_eq!(a.body["error"]["code"], "invalid_json", "{}", a.text);

    let huge = format!("{{\"value\": \"{}\"}}", "x".repeat(BODY_LIMIT));
    let a = h
        .call(Method::PUT, "/v1/kv/big", &[], Body::from(huge))
        .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.text);
    assert_eq!(a.body["error"]["code"], "payload_too_large");

    for (uri, field) in [
        ("/v1/executions/not-a-ulid", "id"),
        ("/v1/jobs/x/executions?limit=0", "limit"),
        ("/v1/jobs/x/executions?limit=1001", "limit"),
        ("/v1/jobs/x/executions?before=zz", "before"),
        ("/v1/jobs?limt=5", "limt"),
    ] {
        let a = h.get(uri).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri} -> {}", a.text);
        assert_eq!(a.body["error"]["field"], field, "{uri} -> {}", a.text);
    }

    let a = h.get("/v1/nothing/here").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.body["error"]["code"], "not_found");
    let a = h.send(Method::PATCH, "/v1/jobs", None).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED, "{}", a.text);
    assert_eq!(a.body["error"]["code"], "method_not_allowed");

    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_put_get_cas_and_delete() {
    let h = Harness::start().await;

    let a = h
        .send(
            Method::PUT,
            "/v1/kv/app/color",
            Some(json!({"value": "red"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["key"], "app/color");
    let rev1 = a.body["revision"].as_u64().expect("revision");

    let a = h.get("/v1/kv/app/color").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(
        a.body,
        json!({"key": "app/color", "value": "red", "mod_revision": rev1, "create_revision": rev1, "version": 1})
    );
    let a = h.get("/v1/kv/app/color?stale=true").await;
    assert_eq!(a.body["value"], "red", "{}", a.text);

    info!("--- compare-and-set");
    let stale = rev1 + 100;
    let a = h
        .send(
            Method::PUT,
            &format!("/v1/kv/app/color?if_revision={stale}"),
            Some(json!({"value": "blue"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);
    assert_eq!(a.body["error"]["code"], "revision_mismatch");
    assert_eq!(a.body["error"]["mod_revision"], rev1);
    let a = h
        .send(
            Method::PUT,
            &format!("/v1/kv/app/color?if_revision={rev1}"),
            Some(json!({"value": "blue"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let rev2 = a.body["revision"].as_u64().expect("revision");
    assert!(rev2 > rev1);
    let a = h
        .send(
            Method::PUT,
            "/v1/kv/app/color?if_revision=0",
            Some(json!({"value": "green"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);
    assert_eq!(a.body["error"]["mod_revision"], rev2);
    let a = h
        .send(
            Method::PUT,
            "/v1/kv/app/size?if_revision=0",
            Some(json!({"value": "L"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);

    let a = h.get("/v1/kv/app/color").await;
    assert_eq!(
        (a.body["value"].clone(), a.body["version"].clone()),
        (json!("blue"), json!(2))
    );

    info!("--- list");
    h.send(Method::PUT, "/v1/kv/zzz", Some(json!({"value": "z"})))
        .await;
    let a = h.get("/v1/kv?prefix=app/").await;
    let keys: Vec<&str> = a.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["key"].as_str())
        .collect();
    assert_eq!(keys, ["app/color", "app/size"], "{}", a.text);

    info!("--- bad bodies");
    let a = h
        .send(Method::PUT, "/v1/kv/k", Some(json!({"value": 5})))
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    let a = h
        .send(Method::PUT, "/v1/kv/k", Some(json!({"valeu": "x"})))
        .await;
    assert_eq!(a.body["error"]["field"], "valeu", "{}", a.text);

    info!("--- delete");
    let a = h
        .send(Method::DELETE, "/v1/kv/app/color?if_revision=1", None)
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);
    let a = h.send(Method::DELETE, "/v1/kv/app/color", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["deleted"], true);
    assert!(a.body["revision"].as_u64().is_some_and(|r| r > rev2));
    let a = h.send(Method::DELETE, "/v1/kv/app/color", None).await;
    assert_eq!(a.body["deleted"], false, "{}", a.text);
    let a = h.get("/v1/kv/app/color").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.body["error"]["code"], "not_found");

    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_write_answers_the_same_and_applies_once() {
    let h = Harness::start().await;
    let session = [("Rota-Client-Id", "test-client"), ("Rota-Request-Seq", "7")];

    let mut answers = Vec::new();
    for _ in 0..3 {
        let a = h
            .send_with(
                Method::PUT,
                "/v1/kv/counter",
                &session,
                Some(json!({"value": "x"})),
            )
            .await;
        answers.push((a.status, a.text));
    }
    assert_eq!(answers[0].0, StatusCode::OK, "{answers:?}");
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    let a = h.get("/v1/kv/counter").await;
    assert_eq!(a.body["version"], 1, "{}", a.text);

    info!("--- a job PUT retried is still 201 and stored once");
    let job_session = [("Rota-Client-Id", "test-client"), ("Rota-Request-Seq", "8")];
    let first = h
        .send_with(
            Method::PUT,
            "/v1/jobs/once",
            &job_session,
            Some(shell_job("true")),
        )
        .await;
    let again = h
        .send_with(
            Method::PUT,
            "/v1/jobs/once",
            &job_session,
            Some(shell_job("true")),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.text);
    assert_eq!(first.body["revision"], again.body["revision"]);

    info!("--- an older sequence number is refused");
    let old = [("Rota-Client-Id", "test-client"), ("Rota-Request-Seq", "3")];
    let a = h
        .send_with(
            Method::PUT,
            "/v1/kv/counter",
            &old,
            Some(json!({"value": "y"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);
    assert_eq!(a.body["error"]["code"], "stale_request");
    assert_eq!(h.get("/v1/kv/counter").await.body["value"], "x");

    info!("--- half a session is refused");
    let a = h
        .send_with(
            Method::PUT,
            "/v1/kv/counter",
            &[("Rota-Request-Seq", "9")],
            Some(json!({"value": "y"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    assert_eq!(a.body["error"]["field"], "Rota-Client-Id");

    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_run_records_its_cpu_time_and_peak_memory() {
    let h = Harness::start().await;
    let mut events = h.node.store().subscribe();

    // CPU in the shell's own busy loop; memory in a child that fills a buffer well
    // above this process's own peak (the kernel charges every child with that
    // peak, so the executor reports only what exceeds it).
    let peak_kib: u64 = std::fs::read_to_string("/proc/self/status")
        .expect("/proc/self/status")
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmHWM:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .expect("VmHWM");
    let bytes = (2 * peak_kib + 64 * 1024) * 1024;
    let burn = format!(
        "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; \
         dd if=/dev/zero of=/dev/null bs={bytes} count=1 2>/dev/null"
    );
    let a = h
        .send(Method::PUT, "/v1/jobs/burn", Some(shell_job(&burn)))
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let a = h.send(Method::POST, "/v1/jobs/burn/run", None).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    assert!(
        a.body.get("usage").is_none(),
        "not known before it ran: {}",
        a.text
    );
    let id = a.body["id"].as_str().expect("id").to_string();
    let done = wait_for_execution(&mut events, &id, "finished", |e| e.status.is_terminal()).await;
    assert_eq!(done.status, ExecStatus::Succeeded, "{done:?}");

    let a = h.get(&format!("/v1/executions/{id}")).await;
    let usage = &a.body["usage"];
    assert!(
        usage["cpu_user_ms"].as_u64().is_some_and(|ms| ms > 0),
        "{}",
        a.text
    );
    assert!(usage["cpu_system_ms"].as_u64().is_some(), "{}", a.text);
    assert!(
        usage["max_rss_kib"]
            .as_u64()
            .is_some_and(|kib| kib >= bytes / 1024),
        "{} after filling {bytes} bytes",
        a.text
    );

    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_runs_output_follow_and_cancel() {
    let h = Harness::start().await;
    let mut events = h.node.store().subscribe();

    info!("--- a finished run serves its stored output");
    let a = h
        .send(Method::PUT, "/v1/jobs/hello", Some(shell_job("echo hello")))
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let a = h.send(Method::POST, "/v1/jobs/hello/run", None).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    assert_eq!(a.body["trigger"], "manual");
    let id = a.body["id"].as_str().expect("id").to_string();
    let done = wait_for_execution(&mut events, &id, "finished", |e| e.status.is_terminal()).await;
    assert_eq!(done.status, ExecStatus::Succeeded, "{done:?}");
    let a = h.get(&format!("/v1/executions/{id}/output")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.text, "hello\n");
    assert_eq!(
        a.headers.get("rota-output-truncated").map(|v| v.as_bytes()),
        Some(&b"false"[..])
    );
    let a = h.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(a.body["status"], "succeeded", "{}", a.text);
    let a = h.get("/v1/jobs/hello").await;
    assert_eq!(a.body["last_execution"]["id"], id.as_str(), "{}", a.text);
    let a = h.get("/v1/jobs/hello/executions?limit=1").await;
    assert_eq!(a.body["items"][0]["id"], id.as_str(), "{}", a.text);
    assert_eq!(a.body["next_before"], id.as_str(), "{}", a.text);
    let a = h
        .get(&format!("/v1/jobs/hello/executions?before={id}"))
        .await;
    assert_eq!(a.body["items"], json!([]), "{}", a.text);

    info!("--- cancelling a finished run is a conflict");
    let a = h
        .send(Method::POST, &format!("/v1/executions/{id}/cancel"), None)
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);
    assert_eq!(a.body["error"]["code"], "already_finished");

    info!("--- a running run is followed until it is cancelled");
    h.send(
        Method::PUT,
        "/v1/jobs/long",
        Some(shell_job("echo started; exec sleep 600")),
    )
    .await;
    let a = h.send(Method::POST, "/v1/jobs/long/run", None).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let id = a.body["id"].as_str().expect("id").to_string();
    wait_for_execution(&mut events, &id, "running", |e| {
        e.status == ExecStatus::Running
    })
    .await;
    // Follow first, and cancel only once the run's first line has arrived through
    // the stream: the follower sees live output, then the end.
    let req = Request::get(format!("/v1/executions/{id}/output?follow=true"))
        .body(Body::empty())
        .expect("request");
    let resp = h.app.clone().oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut stream = resp.into_body().into_data_stream();
    let mut followed = Vec::new();
    let first_line = async {
        while !followed.starts_with(b"started\n") {
            match stream.next().await {
                Some(chunk) => followed.extend_from_slice(&chunk.expect("chunk")),
                None => panic!("output ended before the first line: {followed:?}"),
            }
        }
    };
    tokio::time::timeout(EVENT_DEADLINE, first_line)
        .await
        .expect("the first line is streamed while the run goes on");
    let a = h
        .send(Method::POST, &format!("/v1/executions/{id}/cancel"), None)
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let rest = async {
        while let Some(chunk) = stream.next().await {
            followed.extend_from_slice(&chunk.expect("chunk"));
        }
    };
    tokio::time::timeout(EVENT_DEADLINE, rest)
        .await
        .expect("the followed output ends when the run ends");
    assert_eq!(String::from_utf8_lossy(&followed), "started\n");
    let done = wait_for_execution(&mut events, &id, "finished", |e| e.status.is_terminal()).await;
    assert_eq!(done.status, ExecStatus::Cancelled, "{done:?}");

    info!("--- unknown jobs cannot run");
    let a = h.send(Method::POST, "/v1/jobs/ghost/run", None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.text);
    let a = h
        .send(
            Method::POST,
            &format!("/v1/executions/{}/cancel", ulid::Ulid::generate()),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.text);

    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_openapi_and_index() {
    let h = Harness::start().await;

    let a = h.get("/v1/health").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["status"], "ok");
    assert_eq!(a.body["role"], "leader");
    assert_eq!(a.body["node"], "n1");
    assert_eq!(a.body["node_id"], 1);
    assert!(a.body["term"].as_u64().is_some(), "{}", a.text);
    assert!(a.body["last_applied"].as_u64().is_some(), "{}", a.text);
    assert!(a.body["scheduler"]["jobs"].as_u64().is_some(), "{}", a.text);
    // The machine's figures, read from /proc (this runs on Linux).
    for window in ["1m", "5m", "15m"] {
        let avg = a.body["load"][window].as_f64();
        assert!(avg.is_some_and(|v| v >= 0.0), "load {window}: {}", a.text);
    }
    let mem = &a.body["memory"];
    let (rss, total, available) = (
        mem["rss_bytes"].as_u64().unwrap_or(0),
        mem["total_bytes"].as_u64().unwrap_or(0),
        mem["available_bytes"].as_u64().unwrap_or(0),
    );
    assert!(rss > 0, "{}", a.text);
    assert!(total > available && available > 0, "{}", a.text);
    assert!(rss < total, "{}", a.text);

    let a = h.get("/healthz").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body, json!({"status": "ok"}));

    // A one-node cluster leads itself and has applied what it committed.
    let a = h.get("/readyz").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["status"], "ready", "{}", a.text);
    assert_eq!(a.body["leader"], 1, "{}", a.text);
    assert!(a.body.get("reason").is_none(), "{}", a.text);
    let (commit, applied) = (
        a.body["commit_index"].as_u64().expect("commit_index"),
        a.body["last_applied"].as_u64().expect("last_applied"),
    );
    assert!(applied > 0 && commit >= applied, "{}", a.text);

    let a = h.get("/metrics").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.text.contains("\nrota_raft_is_leader 1\n"), "{}", a.text);
    // The health request above was counted under its route template.
    assert!(
        a.text.contains(
            "rota_http_requests_total{method=\"GET\",route=\"/v1/health\",status=\"200\"} 1"
        ),
        "{}",
        a.text
    );

    let a = h.get("/v1/openapi.json").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["openapi"], "3.1.0");

    let a = h.get("/").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.text.contains("/v1/openapi.json"));

    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_why_a_node_is_not_ready() {
    info!("--- a node waiting to be added to a cluster");
    let h = Harness::start_node(
        rota_store::DEFAULT_EVENT_RETENTION,
        ClusterOptions {
            bootstrap: Bootstrap::Join,
            ..Default::default()
        },
    )
    .await;
    let a = h.get("/readyz").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text);
    assert_eq!(a.body["status"], "not_ready", "{}", a.text);
    assert_eq!(a.body["reason"], "not a cluster member", "{}", a.text);
    // Alive all the same.
    let a = h.get("/healthz").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    h.stop().await;

    info!("--- one of two voters whose peer never comes up: no quorum, no leader");
    let h = Harness::start_node(
        rota_store::DEFAULT_EVENT_RETENTION,
        ClusterOptions {
            bootstrap: Bootstrap::Peers(
                [
                    (1, "http://127.0.0.1:7700".to_string()),
                    (2, format!("http://127.0.0.1:{}", closed_port())),
                ]
                .into(),
            ),
            ..Default::default()
        },
    )
    .await;
    let a = h.get("/readyz").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text);
    assert_eq!(a.body["reason"], "no leader known", "{}", a.text);
    assert!(a.body["leader"].is_null(), "{}", a.text);
    h.stop().await;
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_list_the_workers() {
    let h = Harness::start().await;
    let (detail_set, sweeping) = tokio::sync::oneshot::channel();
    h.workers.spawn("sweeper", |ctx| async move {
        ctx.set_detail("sweeping");
        let _ = detail_set.send(());
        ctx.stopping().await;
        Ok(())
    });
    // The failing worker in a scope of its own, so the test can wait for its end.
    let failing = h.workers.scope();
    failing.spawn("broken", |_| async { Err("disk on fire".into()) });

    info!("--- a running worker and a failed one");
    tokio::time::timeout(EVENT_DEADLINE, async {
        sweeping.await.expect("the sweeper set its detail");
        failing.join().await;
    })
    .await
    .expect("the workers settled");
    let a = h.get("/v1/health").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let workers = a.body["workers"].as_array().cloned().unwrap_or_default();
    let sweeper = workers.iter().find(|w| w["name"] == "sweeper").unwrap();
    assert_eq!(sweeper["state"], "running");
    assert_eq!(sweeper["detail"], "sweeping");
    assert!(sweeper["started_at"].as_str().is_some(), "{sweeper}");
    assert!(sweeper["stopped_at"].is_null(), "{sweeper}");
    let broken = workers.iter().find(|w| w["name"] == "broken").unwrap();
    assert_eq!(broken["state"], "failed");
    assert_eq!(broken["detail"], "disk on fire");
    assert!(broken["stopped_at"].as_str().is_some(), "{broken}");

    let a = h.get("/metrics").await;
    assert!(
        a.text.contains("\nrota_worker_up{worker=\"sweeper\"} 1\n"),
        "{}",
        a.text
    );
    assert!(
        a.text.contains("\nrota_worker_up{worker=\"broken\"} 0\n"),
        "{}",
        a.text
    );

    h.stop().await;
}

#[tokio::test]
async fn webhooks_crud_and_delivery_log_queries() {
    let h = Harness::start().await;
    let hook =
        json!({"url": "http://127.0.0.1:9/hook", "on": ["started", "finished"], "jobs": ["build"]});
    let a = h
        .send(Method::PUT, "/v1/webhooks/ops", Some(hook.clone()))
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    assert_eq!(a.body["name"], "ops");
    assert_eq!(a.body["on"], json!(["started", "finished"]));
    let a = h.send(Method::PUT, "/v1/webhooks/ops", Some(hook)).await;
    assert_eq!(a.status, StatusCode::OK);
    let a = h.get("/v1/webhooks/ops").await;
    assert_eq!(a.body["jobs"], json!(["build"]));
    let a = h.get("/v1/webhooks").await;
    assert_eq!(a.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(a.body["next"], Value::Null);

    for (uri, body, field) in [
        ("/v1/webhooks/ops", json!({"url": "ftp://x"}), "url"),
        (
            "/v1/webhooks/ops",
            json!({"url": "http://a", "on": ["done"]}),
            "on[0]",
        ),
        (
            "/v1/webhooks/ops",
            json!({"url": "http://a", "jobs": ["Bad"]}),
            "jobs[0]",
        ),
        ("/v1/webhooks/Bad", json!({"url": "http://a"}), "name"),
    ] {
        let a = h.send(Method::PUT, uri, Some(body)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
        assert_eq!(a.body["error"]["field"], field, "{}", a.text);
    }
    let a = h
        .send(
            Method::PUT,
            "/v1/jobs/build",
            Some(json!({"schedule": {"manual": true}, "executor": {"type": "shell", "command": "true"},
                "notify": [{"url": "http://a"}, {"url": "nope"}]})),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.body["error"]["field"], "notify[1].url");

    let a = h.get("/v1/deliveries?status=delivered&job=build").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, json!({"items": [], "next": null}));
    for (uri, field) in [
        ("/v1/deliveries?status=sent", "status"),
        ("/v1/deliveries?after=nope", "after"),
        ("/v1/deliveries?limit=0", "limit"),
    ] {
        let a = h.get(uri).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(a.body["error"]["field"], field, "{uri}");
    }

    let a = h.send(Method::DELETE, "/v1/webhooks/ops", None).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let a = h.send(Method::DELETE, "/v1/webhooks/ops", None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(
        h.get("/v1/webhooks/ops").await.status,
        StatusCode::NOT_FOUND
    );
    h.stop().await;
}
