//! End-to-end: webhooks on run finish, with the real binary and a local receiver.
//! A receiver that fails twice gets the finish on the third attempt and a global
//! webhook gets it too; a receiver that is down when the run finishes gets it once
//! it comes up; and a node killed between the finish and the delivery delivers it
//! after its restart (the cursor is replicated), with the same delivery id; in a
//! three-process cluster, a leader killed before delivering leaves the delivery
//! to its successor.
//!
//! Every wait is on a received request or a condition with a deadline; nothing
//! asserts on timing.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use common::{
    agreed_leader, eventually, free_port, launch_member, peers_arg, ports, send_anywhere, Server,
};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

/// Generous bound for retries and restarts on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(60);

/// One request the receiver got.
#[derive(Debug)]
struct Received {
    path: String,
    delivery_id: String,
    /// What the receiver answered.
    answered: u16,
    body: Value,
}

#[derive(Clone)]
struct Receiver {
    /// Per path: how many requests to answer 500 before answering 200.
    fail_first: Arc<HashMap<String, usize>>,
    seen: Arc<Mutex<HashMap<String, usize>>>,
    tx: mpsc::UnboundedSender<Received>,
}

async fn hook(
    State(r): State<Receiver>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let n = {
        let mut seen = r.seen.lock().unwrap();
        let n = seen.entry(path.clone()).or_default();
        *n += 1;
        *n
    };
    let fail = r.fail_first.get(&path).copied().unwrap_or(0);
    let status = if n <= fail {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    let _ = r.tx.send(Received {
        path,
        delivery_id: headers
            .get("rota-delivery-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        answered: status.as_u16(),
        body: serde_json::from_str(&body).unwrap_or(Value::Null),
    });
    status
}

/// Serves `POST /{path}` on `listener` until the test ends.
fn serve_receiver(
    listener: tokio::net::TcpListener,
    fail_first: &[(&str, usize)],
) -> mpsc::UnboundedReceiver<Received> {
    let (tx, rx) = mpsc::unbounded_channel();
    let state = Receiver {
        fail_first: Arc::new(
            fail_first
                .iter()
                .map(|(p, n)| (p.to_string(), *n))
                .collect(),
        ),
        seen: Arc::default(),
        tx,
    };
    let app = Router::new().route("/{path}", post(hook)).with_state(state);
    tokio::spawn(async move { axum::serve(listener, app).await });
    rx
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Received>) -> Received {
    tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .expect("a webhook request within the deadline")
        .expect("receiver running")
}

/// Accepts one connection on `listener`, reads the request head, and closes the
/// connection without answering (the receiver is down for that attempt). Answers
/// the `Rota-Delivery-Id` the request carried.
async fn refuse_one(listener: &tokio::net::TcpListener) -> String {
    let (mut socket, _) = tokio::time::timeout(DEADLINE, listener.accept())
        .await
        .expect("a delivery attempt within the deadline")
        .expect("accept");
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut buf).await.expect("read request");
        assert!(n > 0, "connection closed before the request head");
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("rota-delivery-id")
                .then(|| value.trim().to_string())
        })
        .expect("the request carries Rota-Delivery-Id")
}

async fn put_job(server: &Server, name: &str, notify_url: &str) {
    let body = json!({
        "schedule": {"manual": true},
        "executor": {"type": "shell", "command": "echo built"},
        "notify": [{"url": notify_url, "headers": {"Authorization": "Bearer t0ken"}}],
    });
    let (status, answer) = server
        .send("PUT", &format!("/v1/jobs/{name}"), Some(body))
        .await;
    assert_eq!(status, 201, "{answer}");
}

async fn run(server: &Server, job: &str) -> String {
    let (status, answer) = server
        .send("POST", &format!("/v1/jobs/{job}/run"), None)
        .await;
    assert_eq!(status, 202, "{answer}");
    answer["id"].as_str().expect("execution id").to_string()
}

/// The delivery log's items for `query` once there are `n`.
async fn deliveries(server: &Server, query: &str, n: usize) -> Vec<Value> {
    eventually(DEADLINE, &format!("{n} deliveries for {query}"), || async {
        let (status, page) = server.get(&format!("/v1/deliveries?{query}")).await;
        let items = page["items"].as_array()?.clone();
        (status == 200 && items.len() == n).then_some(items)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finish_is_delivered_after_retries_and_to_a_global_webhook() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut rx = serve_receiver(listener, &[("flaky", 2)]);
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), &[]).await;

    let hook = json!({"url": format!("{base}/global"), "jobs": ["build"]});
    let (status, answer) = server.send("PUT", "/v1/webhooks/ops", Some(hook)).await;
    assert_eq!(status, 201, "{answer}");
    put_job(&server, "build", &format!("{base}/flaky")).await;
    let execution = run(&server, "build").await;

    // --- the job's own target: 500, 500, then 200; the global webhook: one 200
    let mut flaky = Vec::new();
    let mut global = Vec::new();
    while flaky.len() < 3 || global.is_empty() {
        let r = next(&mut rx).await;
        match r.path.as_str() {
            "flaky" => flaky.push(r),
            "global" => global.push(r),
            other => panic!("unexpected path {other}"),
        }
    }
    let answered: Vec<u16> = flaky.iter().map(|r| r.answered).collect();
    assert_eq!(answered, [500, 500, 200]);
    assert!(
        flaky.iter().all(|r| r.delivery_id == flaky[0].delivery_id),
        "every attempt carries the same delivery id"
    );
    let body = &flaky[2].body;
    assert_eq!(body["delivery_id"], flaky[0].delivery_id.as_str());
    assert_eq!(body["job"], "build");
    assert_eq!(body["event"]["type"], "execution.finished");
    assert_eq!(body["event"]["key"], execution.as_str());
    assert_eq!(body["execution"]["id"], execution.as_str());
    assert_eq!(body["execution"]["status"], "succeeded");
    assert_eq!(global[0].body["event"]["type"], "execution.finished");
    assert_ne!(global[0].delivery_id, flaky[0].delivery_id);

    // --- the delivery log shows both, the same on a read of any node
    let items = deliveries(&server, "job=build&status=delivered", 2).await;
    let own = items
        .iter()
        .find(|d| d["target"] == "notify[0]")
        .expect("the job's own delivery");
    assert_eq!(own["attempts"], 3);
    assert_eq!(own["code"], 200);
    assert_eq!(own["status"], "delivered");
    assert_eq!(own["id"], flaky[0].delivery_id.as_str());
    assert_eq!(own["execution"], execution.as_str());
    assert!(own["delivered_at"].is_string());
    let items = deliveries(&server, "webhook=ops", 1).await;
    assert_eq!(items[0]["attempts"], 1);
    assert_eq!(items[0]["url"], format!("{base}/global"));
    let (_, failed) = server.get("/v1/deliveries?status=failed").await;
    assert_eq!(failed["items"], json!([]));
    // No started notifications were asked for.
    assert!(rx.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_at_the_finish_gets_it_when_it_comes_up() {
    let port = free_port();
    let down = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), &[]).await;
    put_job(&server, "build", &format!("http://127.0.0.1:{port}/hook")).await;
    run(&server, "build").await;

    // --- the first attempt finds the receiver down
    let id = refuse_one(&down).await;
    drop(down);
    // --- it comes up; a retry delivers
    let up = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let mut rx = serve_receiver(up, &[]);
    let r = next(&mut rx).await;
    assert_eq!(r.delivery_id, id);
    assert_eq!(r.answered, 200);
    let items = deliveries(&server, "job=build&status=delivered", 1).await;
    assert!(items[0]["attempts"].as_u64().unwrap() >= 2, "{}", items[0]);
    assert_eq!(items[0]["id"], id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_before_delivering_delivers_after_its_restart() {
    let port = free_port();
    let down = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(tmp.path(), &[]).await;
    put_job(&server, "build", &format!("http://127.0.0.1:{port}/hook")).await;
    run(&server, "build").await;

    // --- the run finished and an attempt failed; the node dies before any outcome
    let id = refuse_one(&down).await;
    server.kill9();
    drop(down);
    let up = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let mut rx = serve_receiver(up, &[]);

    // --- the restarted node resumes from the replicated cursor
    server.restart().await;
    let r = next(&mut rx).await;
    assert_eq!(r.delivery_id, id, "the repeat carries the same delivery id");
    assert_eq!(r.body["event"]["type"], "execution.finished");
    let items = deliveries(&server, "status=delivered", 1).await;
    assert_eq!(items[0]["id"], id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_before_delivering_leaves_the_delivery_to_the_next_leader() {
    let port = free_port();
    let down = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ports = ports(3);
    let peers = peers_arg(&ports);
    let mut servers: Vec<Server> = (0..3)
        .map(|i| launch_member(tmp.path(), i as u64 + 1, ports[i], &peers, &[]))
        .collect();
    let leader = eventually(DEADLINE, "a leader", || agreed_leader(&servers)).await;
    send_anywhere(
        &servers,
        DEADLINE,
        "PUT",
        "/v1/jobs/build",
        json!({
            "schedule": {"manual": true},
            "executor": {"type": "shell", "command": "echo built"},
            "notify": [{"url": format!("http://127.0.0.1:{port}/hook")}],
        }),
    )
    .await;
    run(&servers[leader], "build").await;

    // --- the leader's notifier tried once; the leader dies before any outcome
    let id = refuse_one(&down).await;
    servers[leader].kill9();
    drop(down);
    let up = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let mut rx = serve_receiver(up, &[]);

    // --- the next leader resumes from the replicated cursor
    let r = next(&mut rx).await;
    assert_eq!(r.delivery_id, id, "the repeat carries the same delivery id");
    assert_eq!(r.body["event"]["type"], "execution.finished");
    let survivor = (leader + 1) % 3;
    let items = deliveries(&servers[survivor], "status=delivered", 1).await;
    assert_eq!(items[0]["id"], id.as_str());
    // Nothing else arrives: one delivery, recorded once.
    servers[leader].relaunch();
    let new_leader = eventually(DEADLINE, "a leader after the restart", || {
        agreed_leader(&servers)
    })
    .await;
    let items = deliveries(&servers[new_leader], "", 1).await;
    assert_eq!(items[0]["id"], id.as_str());
    assert!(rx.try_recv().is_err(), "a second request came");
}
