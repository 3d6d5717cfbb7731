//! `/v1/executions/{id}`: read, output (live or stored, optionally followed), cancel.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response as HttpResponse;
use axum::Json;
use bytes::Bytes;
use futures_util::StreamExt;
use rota_core::{Command, ExecStatus, Execution, Response, StoreEvent};
use rota_exec::OutputBuffer;
use serde_json::{json, Value};
use tokio::sync::broadcast;
use ulid::Ulid;

use crate::error::ApiError;
use crate::extract::{parse_ulid, ApiPath, Params, Session};
use crate::AppState;

/// Header telling whether output was dropped beyond the job's `max_output_bytes`.
pub(crate) const OUTPUT_TRUNCATED_HEADER: &str = "Rota-Output-Truncated";
/// Marks an output request one node passed to the worker running the attempt, so
/// that it is never passed on again.
pub(crate) const PROXIED_HEADER: &str = "Rota-Proxied";

/// The caller's own credentials, for a request passed on to another node's API:
/// that node checks them against the same replicated tokens.
pub(crate) fn caller_credentials(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        out.insert(header::AUTHORIZATION, auth.clone());
    }
    out
}

fn execution_not_found(id: Ulid) -> ApiError {
    ApiError::not_found(format!("execution {id}"))
}

impl AppState {
    /// The execution as of a read barrier (unless `?stale=true`).
    async fn execution(&self, id: Ulid, params: &Params) -> Result<Execution, ApiError> {
        self.read_barrier(params).await?;
        self.node
            .store()
            .get_execution(id)?
            .ok_or_else(|| execution_not_found(id))
    }
}

/// `GET /v1/executions?status=running|queued&limit=&after=`: the active executions
/// of every job, oldest first, as `{"items", "next"}`; `after` is an execution id
/// (the `next` of the previous page).
pub(crate) async fn list(
    State(s): State<AppState>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.only(&["status", "limit", "after", "stale"])?;
    let status = active_status(params.get("status"))?;
    // At most 1000, so the conversion cannot truncate.
    let limit = params.bounded("limit", 1, 1000, 100)? as usize;
    let after = params.ulid("after")?;
    s.read_barrier(&params).await?;
    let node = s.node.clone();
    super::blocking(move || {
        let (items, next) = node.store().active_executions_page(status, limit, after)?;
        let next = next.map(|id| id.to_string());
        Ok(Json(json!({ "items": items, "next": next })))
    })
    .await
}

/// The `status` filter of the execution list: only active statuses are listed.
fn active_status(status: Option<&str>) -> Result<Option<ExecStatus>, ApiError> {
    match status {
        None => Ok(None),
        Some("running") => Ok(Some(ExecStatus::Running)),
        Some("queued") => Ok(Some(ExecStatus::Queued)),
        Some(other) => Err(ApiError::invalid(
            "status",
            format!(
                "{other:?} is not listed here; accepted: running, queued (ended executions \
                 are in each job's history, /v1/jobs/{{name}}/executions)"
            ),
        )),
    }
}

/// `GET /v1/executions/{id}`.
pub(crate) async fn get(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.only(&["stale"])?;
    let id = parse_ulid("id", &id)?;
    Ok(Json(json!(s.execution(id, &params).await?)))
}

/// `POST /v1/executions/{id}/cancel`: 202 with the execution (a queued one is
/// cancelled at once; a running one is flagged and ended by its node).
pub(crate) async fn cancel(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
    session: Session,
    params: Params,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    params.only(&[])?;
    let id = parse_ulid("id", &id)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(cancel_execution(&s, &session, id).await?),
    ))
}

/// Cancels execution `id` (`POST /v1/executions/{id}/cancel`, and `cancel` on a
/// WebSocket watch): the execution.
pub(crate) async fn cancel_execution(
    s: &AppState,
    session: &Session,
    id: Ulid,
) -> Result<Value, ApiError> {
    match s.commit(session, Command::Cancel { id }).await? {
        Response::Cancelled { execution } => {
            tracing::info!(execution = %id, status = execution.status.as_str(), "cancel requested");
            Ok(json!(execution))
        }
        Response::NotFound { .. } => Err(execution_not_found(id)),
        other => Err(ApiError::from_refusal(
            "POST /v1/executions/{id}/cancel",
            session.seq(),
            other,
        )),
    }
}

/// `GET /v1/executions/{id}/output[?follow=true]`, as `text/plain`.
///
/// An attempt running on this node is served from its live buffer; with `follow`
/// the body streams what exists, then each new chunk, and ends when the attempt
/// ends. An attempt running on another node is read from that node's API (live,
/// followed or not) when it answers. Otherwise the stored output (empty while
/// queued). Following an execution that is still active but not (yet) running
/// anywhere reachable waits for a live buffer here or for its end, whichever comes
/// first. `Rota-Output-Truncated` is the state when the answer started.
pub(crate) async fn output(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    params: Params,
) -> Result<HttpResponse, ApiError> {
    params.only(&["follow", "stale"])?;
    let id = parse_ulid("id", &id)?;
    let follow = params.flag("follow")?;
    // Subscribed before the first look, so no change after it goes unseen.
    let events = follow.then(|| s.node.store().subscribe());
    let execution = s.execution(id, &params).await?;
    if let Some(buffer) = s.scheduler.live_output(id) {
        let (bytes, truncated) = buffer.snapshot();
        let body = if follow {
            Body::from_stream(follow_output(buffer))
        } else {
            Body::from(bytes)
        };
        return Ok(text_response(body, truncated));
    }
    if !headers.contains_key(PROXIED_HEADER) {
        if let Some(answer) = from_worker(&s, &execution, follow, &headers).await {
            return Ok(answer);
        }
    }
    if let (Some(events), true) = (events, execution.is_active()) {
        let body = Body::from_stream(follow_pending(s, id, events));
        return Ok(text_response(body, false));
    }
    let stored = s.node.store().get_output(id)?.unwrap_or_default();
    Ok(text_response(
        Body::from(stored),
        execution.output_truncated,
    ))
}

/// How often a follower of an active execution without a live buffer looks for
/// one. The buffer appears when the scheduler dispatches the attempt, which no
/// store event announces; store events (the execution ending) wake it sooner.
const LIVE_BUFFER_RECHECK: Duration = Duration::from_millis(50);

/// Follows an execution that has no live buffer on this node yet: waits for the
/// buffer (then streams it) or for the execution's end (then sends the stored
/// output).
fn follow_pending(
    s: AppState,
    id: Ulid,
    mut events: broadcast::Receiver<Arc<StoreEvent>>,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let wait = async move {
        loop {
            if let Some(buffer) = s.scheduler.live_output(id) {
                return follow_output(buffer).left_stream();
            }
            match s.node.store().get_execution(id) {
                Ok(Some(e)) if e.is_active() => {}
                Ok(Some(_)) => {
                    let stored = match s.node.store().get_output(id) {
                        Ok(out) => out.unwrap_or_default(),
                        Err(e) => {
                            tracing::error!(execution = %id, error = %e, "reading stored output failed");
                            String::new()
                        }
                    };
                    return futures_util::stream::iter([Ok(Bytes::from(stored))]).right_stream();
                }
                // Deleted with its job, or unreadable: nothing more will come.
                Ok(None) => return futures_util::stream::iter([Ok(Bytes::new())]).right_stream(),
                Err(e) => {
                    tracing::error!(execution = %id, error = %e, "reading execution failed");
                    return futures_util::stream::iter([Ok(Bytes::new())]).right_stream();
                }
            }
            tokio::select! {
                ev = events.recv() => {
                    if let Err(broadcast::error::RecvError::Closed) = ev {
                        return futures_util::stream::iter([Ok(Bytes::new())]).right_stream();
                    }
                }
                _ = tokio::time::sleep(LIVE_BUFFER_RECHECK) => {}
            }
        }
    };
    futures_util::stream::once(wait).flatten()
}

/// How long a node waits for the worker of an attempt to accept an output request.
const WORKER_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The output of an attempt running on another node, read from that node's API;
/// `None` when it runs here or nowhere known, or the worker does not answer (the
/// caller then answers from this node's state).
async fn from_worker(
    s: &AppState,
    e: &Execution,
    follow: bool,
    headers: &HeaderMap,
) -> Option<HttpResponse> {
    if e.status != ExecStatus::Running {
        return None;
    }
    let node = e.node.as_deref()?;
    if node == s.node.config().node_name {
        return None;
    }
    let url = s
        .node
        .store()
        .nodes()
        .ok()?
        .into_iter()
        .find(|n| n.node == node)?
        .url?;
    let target = format!(
        "{}/v1/executions/{}/output{}",
        url.trim_end_matches('/'),
        e.id,
        if follow { "?follow=true" } else { "" }
    );
    let request = s
        .node
        .peer_http()?
        .get(&target)
        .header(PROXIED_HEADER, "1")
        .headers(caller_credentials(headers));
    let response = match tokio::time::timeout(WORKER_CONNECT_TIMEOUT, request.send()).await {
        Ok(Ok(response)) if response.status().is_success() => response,
        Ok(Ok(response)) => {
            tracing::debug!(execution = %e.id, node, status = %response.status(), "the worker refused an output request");
            return None;
        }
        Ok(Err(err)) => {
            tracing::debug!(execution = %e.id, node, error = %err, "the worker of an attempt is unreachable");
            return None;
        }
        Err(_) => {
            tracing::debug!(execution = %e.id, node, "the worker of an attempt did not answer in time");
            return None;
        }
    };
    let truncated = response
        .headers()
        .get(OUTPUT_TRUNCATED_HEADER)
        .is_some_and(|v| v.as_bytes() == b"true");
    Some(text_response(
        Body::from_stream(response.bytes_stream()),
        truncated,
    ))
}

fn text_response(body: Body, truncated: bool) -> HttpResponse {
    let mut resp = HttpResponse::new(body);
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        OUTPUT_TRUNCATED_HEADER,
        HeaderValue::from_static(if truncated { "true" } else { "false" }),
    );
    // Proxies must not buffer a followed output.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The buffer from offset 0 as a stream of chunks, ending when it is closed and
/// drained. Each step waits on the buffer itself (no polling).
fn follow_output(
    buffer: OutputBuffer,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    // `None` once the buffer was seen closed and everything in it was sent.
    futures_util::stream::unfold(Some((buffer, 0usize)), |state| async move {
        let (buffer, offset) = state?;
        loop {
            let (chunk, closed) = buffer.read_from(offset).await;
            if !chunk.is_empty() {
                let next = offset + chunk.len();
                let state = (!closed).then_some((buffer, next));
                return Some((Ok(chunk), state));
            }
            if closed {
                return None;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn next_chunk<S>(stream: &mut S) -> Option<Bytes>
    where
        S: futures_util::Stream<Item = Result<Bytes, Infallible>> + Unpin,
    {
        stream.next().await.map(|r| match r {
            Ok(b) => b,
            Err(never) => match never {},
        })
    }

    #[tokio::test]
    async fn a_followed_output_sends_what_exists_then_each_chunk_then_ends() {
        let buffer = OutputBuffer::new(1024);
        buffer.push(b"first\n");
        let mut stream = Box::pin(follow_output(buffer.clone()));
        assert_eq!(
            next_chunk(&mut stream).await.as_deref(),
            Some(&b"first\n"[..])
        );

        // The next chunk is awaited, not polled for: push it from another task.
        let writer = buffer.clone();
        let pushed = tokio::spawn(async move {
            writer.push(b"second\n");
        });
        assert_eq!(
            next_chunk(&mut stream).await.as_deref(),
            Some(&b"second\n"[..])
        );
        pushed.await.expect("writer");

        buffer.push(b"last\n");
        buffer.close();
        assert_eq!(
            next_chunk(&mut stream).await.as_deref(),
            Some(&b"last\n"[..])
        );
        assert_eq!(next_chunk(&mut stream).await, None);
    }

    #[tokio::test]
    async fn a_closed_empty_output_ends_at_once() {
        let buffer = OutputBuffer::new(16);
        buffer.close();
        let mut stream = Box::pin(follow_output(buffer));
        assert_eq!(next_chunk(&mut stream).await, None);
    }

    #[test]
    fn text_answers_say_whether_output_was_truncated() {
        let resp = text_response(Body::empty(), true);
        assert_eq!(
            resp.headers()
                .get(OUTPUT_TRUNCATED_HEADER)
                .map(|v| v.as_bytes()),
            Some(&b"true"[..])
        );
        assert_eq!(
            resp.headers()
                .get(header::CONTENT_TYPE)
                .map(|v| v.as_bytes()),
            Some(&b"text/plain; charset=utf-8"[..])
        );
    }
}
