//! `GET /v1/watch/ws`: the watch as a WebSocket, with commands on the same socket.
//!
//! The server sends text messages: each event as its JSON, `{"caught_up": N}` once
//! the replay is done, and `{"error": {...}}` before it closes a watch the hub
//! dropped (the close frame's reason starts with the error code, e.g.
//! `slow_consumer`). A `since` older than the log's window is answered with HTTP
//! 410 before the upgrade, as on `GET /v1/watch`.
//!
//! The client may send `{"op": "run"|"pause"|"resume", "job": NAME, "id": N}` or
//! `{"op": "cancel", "execution": ID, "id": N}`; the answer is
//! `{"reply": N, "ok": true, "result": ...}` (what the HTTP route answers) or
//! `{"reply": N, "error": {...}}` (the HTTP route's error). A message that cannot
//! be read gets an error reply (`reply` null unless its `id` was readable) and the
//! watch goes on.

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response as HttpResponse;
use futures_util::StreamExt;
use serde_json::{json, Map, Value};

use super::{Closed, Item, Watch, WatchRequest};
use crate::error::ApiError;
use crate::extract::{parse_ulid, Params, Session};
use crate::handlers::{executions, jobs};
use crate::AppState;

/// The largest message a client may send; commands are small.
pub(crate) const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

/// Close code for a watch the hub dropped (1013: try again later).
const CLOSE_TRY_AGAIN: u16 = 1013;
/// Close code when the node stops (1001: going away).
const CLOSE_GOING_AWAY: u16 = 1001;
/// A close frame's reason is at most 123 bytes.
const MAX_CLOSE_REASON: usize = 123;

/// `GET /v1/watch/ws?since=&prefix=&type=` (see the module doc).
pub(crate) async fn watch_ws(
    State(s): State<AppState>,
    axum::Extension(caller): axum::Extension<crate::auth::Caller>,
    headers: HeaderMap,
    params: Params,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<HttpResponse, ApiError> {
    let req = WatchRequest::parse(s.node.store(), &params, &headers)?;
    let watch = Watch::new(&s, req)?;
    let upgrade = upgrade.map_err(|rejection| {
        ApiError::invalid(
            "Upgrade",
            format!(
                "{}; this route answers only a WebSocket handshake (GET with Connection: Upgrade, Upgrade: websocket); GET /v1/watch is the Server-Sent Events form",
                rejection.body_text()
            ),
        )
    })?;
    Ok(upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| serve(s, caller, watch, socket)))
}

async fn serve(s: AppState, caller: crate::auth::Caller, watch: Watch, mut socket: WebSocket) {
    let buffer = watch.buffer();
    // A stream keeps the watch's pending step across `select!` rounds, so a client
    // message arriving mid-replay does not cut a read short.
    let mut items = Box::pin(futures_util::stream::unfold(watch, |mut w| async move {
        let item = w.next().await?;
        Some((item, w))
    }));
    loop {
        tokio::select! {
            item = items.next() => {
                let Some(item) = item else {
                    close(&mut socket, CLOSE_GOING_AWAY, "the node is stopping").await;
                    return;
                };
                let (text, end) = match item {
                    Item::Event(event) => (json!(event).to_string(), None),
                    Item::CaughtUp(revision) => (json!({ "caught_up": revision }).to_string(), None),
                    Item::Closed(reason) => (closed_message(&s, reason, buffer), Some(reason)),
                };
                if socket.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
                if let Some(reason) = end {
                    let why = format!("{}: {}", reason.code(), reason.message(buffer));
                    close(&mut socket, CLOSE_TRY_AGAIN, &why).await;
                    return;
                }
            }
            message = socket.recv() => {
                let reply = match message {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Text(text))) => command(&s, &caller, text.as_str()).await,
                    Some(Ok(Message::Binary(_))) => {
                        let e = ApiError::invalid("message", "binary messages are not accepted; send a text message with a JSON command");
                        json!({"reply": null, "error": e.body()["error"]})
                    }
                };
                if socket.send(Message::Text(reply.to_string().into())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The `{"error"}` message sent before a watch the hub dropped is closed.
fn closed_message(s: &AppState, reason: Closed, buffer: usize) -> String {
    let mut error = Map::new();
    error.insert("code".into(), json!(reason.code()));
    error.insert("message".into(), json!(reason.message(buffer)));
    if reason == Closed::Compacted {
        if let Ok(compact) = s.node.store().compact_revision() {
            error.insert("compact_revision".into(), json!(compact));
        }
    }
    json!({ "error": error }).to_string()
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let frame = CloseFrame {
        code,
        reason: reason[..end].into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

/// What a command asks for, once read.
enum Op {
    Run(String),
    SetPaused(String, bool),
    Cancel(ulid::Ulid),
}

/// Answers one client message (see the module doc).
async fn command(s: &AppState, caller: &crate::auth::Caller, text: &str) -> Value {
    let message: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let e = ApiError::InvalidJson(e);
            return json!({"reply": null, "error": e.body()["error"]});
        }
    };
    let id = message.get("id").and_then(Value::as_u64);
    // Watching takes a viewer; acting on jobs and runs an operator, as the
    // matching HTTP routes do.
    let reply = match read_command(&message) {
        Ok(op) => match caller.may(rota_core::auth::Role::Operator) {
            Ok(()) => run(s, caller, op).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    match reply {
        Ok(result) => json!({"reply": id, "ok": true, "result": result}),
        Err(e) => {
            if e.status().is_server_error() {
                tracing::error!(code = e.code(), error = %rota_core::error::chain(&e), "watch command failed");
            }
            json!({"reply": id, "error": e.body()["error"]})
        }
    }
}

const ACCEPTED: &str = "accepted: {\"op\": \"run\"|\"pause\"|\"resume\", \"job\": NAME, \"id\": N} or {\"op\": \"cancel\", \"execution\": ID, \"id\": N}";

fn read_command(message: &Value) -> Result<Op, ApiError> {
    let Some(fields) = message.as_object() else {
        return Err(ApiError::invalid(
            "message",
            format!("must be a JSON object; {ACCEPTED}"),
        ));
    };
    match fields.get("id") {
        Some(v) if v.is_u64() => {}
        _ => {
            return Err(ApiError::invalid(
                "id",
                "must be a non-negative integer the reply repeats",
            ))
        }
    }
    let op = fields.get("op").and_then(Value::as_str).unwrap_or_default();
    let target = match op {
        "run" | "pause" | "resume" => "job",
        "cancel" => "execution",
        _ => {
            return Err(ApiError::invalid(
                "op",
                format!("must be one of run, pause, resume, cancel; {ACCEPTED}"),
            ))
        }
    };
    if let Some(other) = fields
        .keys()
        .find(|k| !["op", "id", target].contains(&k.as_str()))
    {
        return Err(ApiError::invalid(
            other.as_str(),
            format!("is not a field of {op:?}; {ACCEPTED}"),
        ));
    }
    let Some(value) = fields.get(target).and_then(Value::as_str) else {
        return Err(ApiError::invalid(
            target,
            format!("must be a string; {ACCEPTED}"),
        ));
    };
    Ok(match op {
        "run" => Op::Run(value.to_string()),
        "pause" => Op::SetPaused(value.to_string(), true),
        "resume" => Op::SetPaused(value.to_string(), false),
        _ => Op::Cancel(parse_ulid("execution", value)?),
    })
}

async fn run(s: &AppState, caller: &crate::auth::Caller, op: Op) -> Result<Value, ApiError> {
    let session = Session(None, caller.token.clone());
    match op {
        Op::Run(job) => jobs::run_job(s, &session, &job).await,
        Op::SetPaused(job, paused) => jobs::set_job_paused(s, &session, &job, paused).await,
        Op::Cancel(id) => executions::cancel_execution(s, &session, id).await,
    }
}
