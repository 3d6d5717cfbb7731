//! `GET /v1/watch/ws` against a real single node served on a loopback listener,
//! through a WebSocket client: replay, `caught_up`, live events, and commands with
//! their replies on the same socket.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::info;

use super::tests::kv_put;
use crate::tests::Harness;

/// Upper bound on waiting for a message that must come; reaching it fails the test.
const MESSAGE_DEADLINE: Duration = Duration::from_secs(30);

/// The harness's router served over real HTTP on a free loopback port.
struct Served {
    h: Harness,
    addr: std::net::SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Served {
    async fn start() -> Served {
        let h = Harness::start().await;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let app = h.app.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Served { h, addr, server }
    }

    async fn connect(&self, query: &str) -> Socket {
        let url = format!("ws://{}/v1/watch/ws{query}", self.addr);
        let (ws, resp) = tokio_tungstenite::connect_async(url)
            .await
            .expect("WebSocket handshake");
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        Socket { ws }
    }

    async fn stop(self) {
        self.server.abort();
        self.h.stop().await;
    }
}

struct Socket {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Socket {
    /// The next text message, as JSON.
    async fn next(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(MESSAGE_DEADLINE, self.ws.next())
                .await
                .expect("a message in time")
                .expect("the socket stays open")
                .expect("a readable message");
            match message {
                Message::Text(text) => return serde_json::from_str(&text).expect("JSON"),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected message {other:?}"),
            }
        }
    }

    /// Messages until `caught_up` (excluded), then its revision.
    async fn until_caught_up(&mut self) -> (Vec<Value>, u64) {
        let mut out = Vec::new();
        loop {
            let m = self.next().await;
            if let Some(revision) = m.get("caught_up") {
                return (out, revision.as_u64().expect("a revision"));
            }
            out.push(m);
        }
    }

    async fn send(&mut self, text: String) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send");
    }

    /// Sends `command` and waits for the message that replies to it (events in
    /// between are skipped).
    async fn command(&mut self, command: Value) -> Value {
        self.send(command.to_string()).await;
        self.reply().await
    }

    async fn reply(&mut self) -> Value {
        loop {
            let m = self.next().await;
            if m.get("reply").is_some() {
                return m;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_watch_replays_then_says_caught_up_then_follows() {
    let s = Served::start().await;
    let first = kv_put(&s.h, "app/a").await;
    let second = kv_put(&s.h, "app/b").await;
    kv_put(&s.h, "other/x").await;

    info!("--- replay from before the first put, under app/");
    let mut w = s
        .connect(&format!("?since={}&prefix=app/&type=kv.*", first - 1))
        .await;
    let (replayed, caught_up) = w.until_caught_up().await;
    assert_eq!(replayed.len(), 2, "{replayed:?}");
    assert_eq!(replayed[0]["revision"], first);
    assert_eq!(replayed[0]["type"], "kv.put");
    assert_eq!(replayed[0]["key"], "app/a");
    assert_eq!(replayed[0]["data"]["mod_revision"], first);
    assert!(replayed[0]["at"].is_string());
    assert_eq!(replayed[1]["revision"], second);
    assert!(caught_up >= second, "caught up at {caught_up}");

    info!("--- then live, filtered");
    kv_put(&s.h, "other/y").await;
    let third = kv_put(&s.h, "app/c").await;
    let live = w.next().await;
    assert_eq!(
        (live["type"].as_str(), live["revision"].as_u64()),
        (Some("kv.put"), Some(third))
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_on_the_socket_get_replies_and_the_watch_goes_on() {
    let s = Served::start().await;
    let job =
        json!({"schedule": {"manual": true}, "executor": {"type": "shell", "command": "sleep 30"}});
    let a = s.h.send(Method::PUT, "/v1/jobs/backup", Some(job)).await;
    assert!(a.status.is_success(), "{}", a.text);
    let mut w = s.connect("?type=kv.put").await;
    w.until_caught_up().await;

    info!("--- run an existing job: the execution");
    let r = w
        .command(json!({"op": "run", "job": "backup", "id": 7}))
        .await;
    assert_eq!(r["reply"], 7, "{r}");
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["result"]["job"], "backup", "{r}");
    let execution = r["result"]["id"]
        .as_str()
        .expect("an execution id")
        .to_string();
    let stored = s.h.get(&format!("/v1/executions/{execution}")).await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.text);

    info!("--- an unknown job: not_found, with the same id");
    let r = w
        .command(json!({"op": "run", "job": "nope", "id": 8}))
        .await;
    assert_eq!(r["reply"], 8, "{r}");
    assert_eq!(r["error"]["code"], "not_found", "{r}");
    assert!(r.get("ok").is_none(), "{r}");

    info!("--- pause and resume answer the job view");
    let r = w
        .command(json!({"op": "pause", "job": "backup", "id": 9}))
        .await;
    assert_eq!(
        (r["reply"].clone(), r["ok"].clone()),
        (json!(9), json!(true)),
        "{r}"
    );
    assert_eq!(r["result"]["paused"], true, "{r}");
    let r = w
        .command(json!({"op": "resume", "job": "backup", "id": 10}))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    // A running job's view leaves `paused` out.
    assert_ne!(r["result"]["paused"], true, "{r}");

    info!("--- cancel answers the execution");
    let r = w
        .command(json!({"op": "cancel", "execution": execution, "id": 11}))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["result"]["id"], execution.as_str(), "{r}");

    info!("--- malformed messages: an error reply each, the socket stays open");
    w.send("not json".into()).await;
    let r = w.reply().await;
    assert_eq!(r["reply"], Value::Null, "{r}");
    assert_eq!(r["error"]["code"], "invalid_json", "{r}");
    let r = w
        .command(json!({"op": "fly", "job": "backup", "id": 12}))
        .await;
    assert_eq!(r["reply"], 12, "{r}");
    assert_eq!(r["error"]["code"], "invalid", "{r}");
    assert_eq!(r["error"]["field"], "op", "{r}");
    let r = w
        .command(json!({"op": "cancel", "execution": "x", "id": 13}))
        .await;
    assert_eq!(r["error"]["field"], "execution", "{r}");
    let r = w.command(json!({"op": "run", "job": "backup"})).await;
    assert_eq!(r["reply"], Value::Null, "{r}");
    assert_eq!(r["error"]["field"], "id", "{r}");

    info!("--- the watch still delivers");
    let revision = kv_put(&s.h, "after/errors").await;
    let live = w.next().await;
    assert_eq!(live["revision"], revision, "{live}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_get_or_a_bad_filter_is_refused_before_any_upgrade() {
    let h = Harness::start().await;
    let a = h.get("/v1/watch/ws").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    assert_eq!(a.body["error"]["field"], "Upgrade", "{}", a.text);
    let a = h.get("/v1/watch/ws?since=abc").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    assert_eq!(a.body["error"]["field"], "since", "{}", a.text);
    h.stop().await;
}
