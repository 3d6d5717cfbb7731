//! `GET /v1/watch` (Server-Sent Events; `ws`: its WebSocket form) and `POST /v1/events`.
//!
//! A watch replays what the log holds after `since` (or `Last-Event-ID`, which wins),
//! then sends `caught_up`, then follows live events from the node's [`WatchHub`].
//! No event is lost or sent twice between the two: the connection subscribes to the
//! hub before its last read of the log, and skips live events at or below the
//! revision that read went through (a read sees whole revisions, since an entry's
//! events commit together).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::Json;
use bytes::Bytes;
use futures_util::Stream;
use rota_core::event::{check_event_type, types, Event, TypeFilter};
use rota_core::{Command, Response};
use rota_store::Store;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::extract::{body_bytes, parse_json, Params, Session, MAX_KEY_BYTES};
use crate::AppState;

mod hub;
mod ws;

pub(crate) use hub::{Closed, Subscription, WatchFilter};
pub use hub::{WatchHub, DEFAULT_MAX_WATCHERS, DEFAULT_WATCH_BUFFER};
pub(crate) use ws::watch_ws;

/// Events read from the log per page of a replay.
const REPLAY_PAGE: usize = 1000;

/// Where a watch starts and what it wants, from the query and `Last-Event-ID`.
pub(crate) struct WatchRequest {
    pub after: u64,
    pub filter: WatchFilter,
}

impl WatchRequest {
    /// Checks `since`, `prefix`, `type` and `Last-Event-ID`; a start older than the
    /// log's window is a 410.
    pub fn parse(store: &Store, params: &Params, headers: &HeaderMap) -> Result<Self, ApiError> {
        params.only(&["since", "prefix", "type"])?;
        let since = params.u64("since")?;
        let last_id = match headers.get("last-event-id") {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "Last-Event-ID",
                            "must be a revision (a non-negative integer) from an earlier event's id",
                        )
                    })?,
            ),
        };
        let types = TypeFilter::parse(params.get("type").unwrap_or_default())
            .map_err(|m| ApiError::invalid("type", format!("{m}; accepted: a comma list of event types, each exact or ending in *, e.g. execution.*,kv.put")))?;
        let prefix = params.get("prefix").unwrap_or_default().to_string();
        if prefix.len() > MAX_KEY_BYTES {
            return Err(ApiError::invalid(
                "prefix",
                format!(
                    "is {} bytes long; at most {MAX_KEY_BYTES} are accepted",
                    prefix.len()
                ),
            ));
        }
        let after = last_id
            .or(since)
            .unwrap_or_else(|| store.last_applied_index());
        let compact = store.compact_revision()?;
        if after < compact {
            return Err(ApiError::Compacted {
                requested: after,
                compact_revision: compact,
            });
        }
        Ok(WatchRequest {
            after,
            filter: WatchFilter { types, prefix },
        })
    }
}

/// What a watch produces, in order: events, `caught_up` once, then an end reason.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Item {
    Event(Arc<Event>),
    CaughtUp(u64),
    Closed(Closed),
}

/// One watch: the replay from the log, then the live tail (shared by SSE and
/// WebSocket forms).
pub(crate) struct Watch {
    store: Arc<Store>,
    hub: Arc<WatchHub>,
    filter: Arc<WatchFilter>,
    /// Every event up to here was read (replay) or is skipped (live).
    through: u64,
    live: Option<Subscription>,
    out: VecDeque<Item>,
    done: bool,
    /// Counts this connection against the node's limit while the watch lives.
    _permit: hub::WatchPermit,
}

impl Watch {
    /// A watch, or 503 `too_many_watchers` when the node serves its most already.
    pub fn new(s: &AppState, req: WatchRequest) -> Result<Watch, ApiError> {
        Ok(Watch {
            _permit: s.watch.admit()?,
            store: s.node.store().clone(),
            hub: s.watch.clone(),
            filter: Arc::new(req.filter),
            through: req.after,
            live: None,
            out: VecDeque::new(),
            done: false,
        })
    }

    async fn read_page(&mut self) -> Result<bool, ApiError> {
        let store = self.store.clone();
        let filter = self.filter.clone();
        let after = self.through;
        let page = tokio::task::spawn_blocking(move || {
            store.events_after(after, &|e| filter.matches(e), REPLAY_PAGE)
        })
        .await
        .map_err(ApiError::TaskFailed)??;
        self.out
            .extend(page.events.into_iter().map(|e| Item::Event(Arc::new(e))));
        self.through = page.through;
        Ok(page.end)
    }

    /// The next item; `None` once the watch ended (the node stops, or after a
    /// `Closed`).
    pub async fn next(&mut self) -> Option<Item> {
        loop {
            if let Some(item) = self.out.pop_front() {
                return Some(item);
            }
            if self.done {
                return None;
            }
            let Some(live) = &mut self.live else {
                match self.read_page().await {
                    Ok(false) => {}
                    Ok(true) => {
                        // Subscribe, then read once more: whatever committed in
                        // between is in that read, and anything later is live.
                        self.live = Some(self.hub.subscribe((*self.filter).clone()));
                        let ended = loop {
                            match self.read_page().await {
                                Ok(true) => break None,
                                Ok(false) => {}
                                Err(e) => break Some(e),
                            }
                        };
                        if let Some(e) = ended {
                            tracing::warn!(error = %rota_core::error::chain(&e), "watch replay failed");
                            self.done = true;
                            continue;
                        }
                        self.out.push_back(Item::CaughtUp(self.through));
                    }
                    Err(e) => {
                        tracing::warn!(error = %rota_core::error::chain(&e), "watch replay failed");
                        self.done = true;
                    }
                }
                continue;
            };
            match live.events.recv().await {
                Some(event) if event.revision <= self.through => {}
                Some(event) => return Some(Item::Event(event)),
                None => {
                    self.done = true;
                    if let Some(reason) = live.closed() {
                        return Some(Item::Closed(reason));
                    }
                }
            }
        }
    }

    pub fn buffer(&self) -> usize {
        self.hub.buffer()
    }
}

fn sse_item(item: Item, buffer: usize) -> SseEvent {
    match item {
        Item::Event(event) => SseEvent::default()
            .id(event.revision.to_string())
            .event(event.event_type.as_str())
            .data(json!(event).to_string()),
        Item::CaughtUp(revision) => SseEvent::default()
            .event("caught_up")
            .data(json!({ "revision": revision }).to_string()),
        Item::Closed(reason) => SseEvent::default()
            .event("error")
            .data(json!({"code": reason.code(), "message": reason.message(buffer)}).to_string()),
    }
}

/// `GET /v1/watch?since=&prefix=&type=`: Server-Sent Events (see the module doc).
pub(crate) async fn watch(
    State(s): State<AppState>,
    headers: HeaderMap,
    params: Params,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let req = WatchRequest::parse(s.node.store(), &params, &headers)?;
    let watch = Watch::new(&s, req)?;
    let stream = futures_util::stream::unfold(watch, |mut watch| async move {
        let item = watch.next().await?;
        let buffer = watch.buffer();
        Some((Ok(sse_item(item, buffer)), watch))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// `POST /v1/events` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    data: Option<Value>,
}

/// `POST /v1/events` `{"type", "data"}`: 202 `{"revision"}` (the write's log index).
pub(crate) async fn publish(
    State(s): State<AppState>,
    session: Session,
    params: Params,
    body: Result<Bytes, BytesRejection>,
) -> Result<HttpResponse, ApiError> {
    params.only(&[])?;
    let PublishBody { event_type, data } = parse_json(&body_bytes(body)?)?;
    check_event_type(&event_type).map_err(|m| ApiError::invalid("type", m))?;
    if types::BUILT_IN.contains(&event_type.as_str()) {
        return Err(ApiError::invalid(
            "type",
            format!("{event_type:?} is published by rota itself; use a type of your own, e.g. deploy.finished"),
        ));
    }
    let data = match data {
        None => json!({}),
        Some(Value::Object(map)) => Value::Object(map),
        Some(_) => {
            return Err(ApiError::invalid(
                "data",
                "must be a JSON object, e.g. {\"env\": \"prod\"}",
            ))
        }
    };
    let command = Command::PublishEvent { event_type, data };
    match s.commit(&session, command).await? {
        Response::Published { revision } => {
            Ok((StatusCode::ACCEPTED, Json(json!({ "revision": revision }))).into_response())
        }
        other => Err(ApiError::from_refusal(
            "POST /v1/events",
            session.seq(),
            other,
        )),
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod ws_tests;
