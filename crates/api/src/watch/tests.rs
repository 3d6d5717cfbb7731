//! `GET /v1/watch` and `POST /v1/events` against a real single node, through the
//! router: SSE framing, replay then `caught_up` then live, filters, 410 and 400s.

use std::time::Duration;

use axum::body::{Body, BodyDataStream};
use axum::http::{Method, Request, StatusCode};
use futures_util::StreamExt;
use rota_core::{ClientRequest, Command};
use serde_json::{json, Value};
use tower::ServiceExt;
use tracing::info;

use crate::tests::Harness;

/// Upper bound on waiting for a frame that must come; reaching it fails the test.
const FRAME_DEADLINE: Duration = Duration::from_secs(30);

/// One SSE frame: its `id`, `event` and `data` lines.
#[derive(Debug, Clone, PartialEq)]
struct Frame {
    id: Option<String>,
    event: String,
    data: Value,
}

/// Reads SSE frames off a response body, skipping keep-alive comments.
struct Frames {
    body: BodyDataStream,
    text: String,
}

impl Frames {
    async fn open(h: &Harness, uri: &str, headers: &[(&str, &str)]) -> Frames {
        let mut req = Request::builder().method(Method::GET).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = h
            .app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Frames {
            body: resp.into_body().into_data_stream(),
            text: String::new(),
        }
    }

    async fn next(&mut self) -> Frame {
        tokio::time::timeout(FRAME_DEADLINE, self.next_frame())
            .await
            .expect("a frame in time")
    }

    async fn next_frame(&mut self) -> Frame {
        loop {
            if let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                let mut frame = Frame {
                    id: None,
                    event: String::new(),
                    data: Value::Null,
                };
                let mut comment = true;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        frame.id = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        frame.event = v.to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        frame.data = serde_json::from_str(v).expect("data is JSON");
                    } else {
                        continue;
                    }
                    comment = false;
                }
                if !comment {
                    return frame;
                }
                continue;
            }
            let chunk = self
                .body
                .next()
                .await
                .expect("the stream goes on")
                .expect("body chunk");
            self.text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Frames until `caught_up` (excluded), then its revision.
    async fn until_caught_up(&mut self) -> (Vec<Frame>, u64) {
        let mut out = Vec::new();
        loop {
            let f = self.next().await;
            if f.event == "caught_up" {
                assert_eq!(f.id, None);
                return (out, f.data["revision"].as_u64().unwrap());
            }
            out.push(f);
        }
    }
}

/// Puts `key` and answers the write's revision.
pub(super) async fn kv_put(h: &Harness, key: &str) -> u64 {
    let a = h
        .send(
            Method::PUT,
            &format!("/v1/kv/{key}"),
            Some(json!({"value": "v"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    a.body["revision"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_replays_then_says_caught_up_then_follows() {
    let h = Harness::start().await;
    let first = kv_put(&h, "app/a").await;
    let second = kv_put(&h, "app/b").await;

    info!("--- replay from before the first put");
    let mut w = Frames::open(&h, &format!("/v1/watch?since={}", first - 1), &[]).await;
    let (replayed, caught_up) = w.until_caught_up().await;
    assert_eq!(replayed.len(), 2, "{replayed:?}");
    assert_eq!(replayed[0].id.as_deref(), Some(first.to_string().as_str()));
    assert_eq!(replayed[0].event, "kv.put");
    assert_eq!(replayed[0].data["revision"], first);
    assert_eq!(replayed[0].data["type"], "kv.put");
    assert_eq!(replayed[0].data["key"], "app/a");
    assert_eq!(replayed[0].data["data"]["mod_revision"], first);
    assert!(replayed[0].data["at"].is_string());
    assert_eq!(replayed[1].data["revision"], second);
    // The replay went through everything applied when it read (the scheduler's
    // own bookkeeping may have been applied after the second put).
    assert!(caught_up >= second, "caught up at {caught_up}");
    assert!(caught_up <= h.node.store().last_applied_index());

    info!("--- then live");
    let third = kv_put(&h, "app/c").await;
    let live = w.next().await;
    assert_eq!(
        (live.event.as_str(), live.data["revision"].as_u64()),
        ("kv.put", Some(third))
    );

    info!("--- without since: only what comes next");
    let mut now = Frames::open(&h, "/v1/watch", &[]).await;
    let (replayed, at) = now.until_caught_up().await;
    assert!(replayed.is_empty(), "{replayed:?}");
    assert!(at <= h.node.store().last_applied_index());
    let fourth = kv_put(&h, "app/d").await;
    assert_eq!(now.next().await.data["revision"], fourth);

    info!("--- Last-Event-ID wins over since");
    let mut resumed = Frames::open(
        &h,
        "/v1/watch?since=0",
        &[("Last-Event-ID", &second.to_string())],
    )
    .await;
    let (replayed, _) = resumed.until_caught_up().await;
    let revisions: Vec<_> = replayed
        .iter()
        .map(|f| f.data["revision"].clone())
        .collect();
    assert_eq!(revisions, vec![json!(third), json!(fourth)]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_and_prefix_filter_replay_and_live_events() {
    let h = Harness::start().await;
    kv_put(&h, "app/a").await;
    kv_put(&h, "other/a").await;
    let a = h.send(Method::DELETE, "/v1/kv/app/a", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let mut w = Frames::open(
        &h,
        "/v1/watch?since=0&type=kv.deleted,job.*&prefix=app",
        &[],
    )
    .await;
    let (replayed, _) = w.until_caught_up().await;
    let seen: Vec<_> = replayed
        .iter()
        .map(|f| (f.event.clone(), f.data["key"].clone()))
        .collect();
    assert_eq!(seen, vec![("kv.deleted".to_string(), json!("app/a"))]);

    let a = h
        .send(
            Method::PUT,
            "/v1/jobs/app-job",
            Some(json!({"schedule": {"manual": true}, "executor": {"type": "shell", "command": "true"}})),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    kv_put(&h, "app/ignored").await; // kv.put: not asked for
    let a = h.send(Method::DELETE, "/v1/jobs/app-job", None).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text);
    assert_eq!(w.next().await.event, "job.created");
    assert_eq!(w.next().await.event, "job.deleted");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_events_are_answered_with_their_revision_and_watched() {
    let h = Harness::start().await;
    let a = h
        .send(
            Method::POST,
            "/v1/events",
            Some(json!({"type": "deploy.finished", "data": {"env": "prod"}})),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let revision = a.body["revision"].as_u64().unwrap();
    let mut w = Frames::open(
        &h,
        &format!("/v1/watch?since={}&type=deploy.*", revision - 1),
        &[],
    )
    .await;
    let (replayed, _) = w.until_caught_up().await;
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0].id, Some(revision.to_string()));
    assert_eq!(replayed[0].event, "deploy.finished");
    assert_eq!(replayed[0].data["key"], "deploy.finished");
    assert_eq!(replayed[0].data["data"], json!({"env": "prod"}));

    info!("--- a retry with the same session is answered with the first revision");
    let session = [("Rota-Client-Id", "c1"), ("Rota-Request-Seq", "1")];
    let body = Some(json!({"type": "build.done"}));
    let first = h
        .send_with(Method::POST, "/v1/events", &session, body.clone())
        .await;
    let again = h
        .send_with(Method::POST, "/v1/events", &session, body)
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text);
    assert_eq!(first.body, again.body);

    info!("--- refusals name the field");
    for (body, field) in [
        (json!({"type": "kv.put", "data": {}}), "type"),
        (json!({"type": "Deploy", "data": {}}), "type"),
        (json!({"type": "deploy.x", "data": [1]}), "data"),
        (json!({"type": "deploy.x", "data": "x"}), "data"),
    ] {
        let a = h.send(Method::POST, "/v1/events", Some(body.clone())).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}: {}", a.text);
        assert_eq!(a.body["error"]["field"], field, "{body}: {}", a.text);
    }
    let a = h
        .send(Method::POST, "/v1/events", Some(json!({"data": {}})))
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_watch_parameters_are_400s_naming_them() {
    let h = Harness::start().await;
    for (uri, field) in [
        ("/v1/watch?since=abc", "since"),
        ("/v1/watch?since=-1", "since"),
        ("/v1/watch?type=Job.created", "type"),
        ("/v1/watch?type=a*b", "type"),
        ("/v1/watch?limit=3", "limit"),
    ] {
        let a = h.get(uri).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri}: {}", a.text);
        assert_eq!(a.body["error"]["field"], field, "{uri}: {}", a.text);
        assert!(a.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    let a = h
        .call(
            Method::GET,
            "/v1/watch",
            &[("Last-Event-ID", "x")],
            Body::empty(),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    assert_eq!(a.body["error"]["field"], "Last-Event-ID");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_since_older_than_the_log_is_410_with_the_compact_revision() {
    let h = Harness::start_with(10).await;
    info!("--- entries stamped two days ago, until the retention sweep trims the log");
    let old = chrono::Utc::now() - chrono::TimeDelta::hours(48);
    // One at a time: a lone write is its own entry, stamped with its own time (a
    // batch entry carries the proposer's clock). The sweep judges age by the clock
    // of the entry it runs in, so the entry at the sweep index is stamped now.
    let mut written = 0;
    while h.node.store().compact_revision().unwrap() == 0 {
        assert!(written < 2100, "no sweep after {written} entries");
        let next = h.node.store().last_applied_index() + 1;
        let at = if next.is_multiple_of(1024) {
            chrono::Utc::now()
        } else {
            old
        };
        h.node
            .write(ClientRequest {
                session: None,
                at,
                command: Command::KvPut {
                    key: format!("k{written}"),
                    value: "v".into(),
                    if_revision: None,
                },
            })
            .await
            .expect("write");
        written += 1;
    }
    let compact = h.node.store().compact_revision().unwrap();
    let a = h.get(&format!("/v1/watch?since={}", compact - 1)).await;
    assert_eq!(a.status, StatusCode::GONE, "{}", a.text);
    assert_eq!(a.body["error"]["code"], "compacted");
    assert_eq!(a.body["error"]["compact_revision"], compact);
    assert!(a.body["error"]["message"].is_string());
    // The WebSocket form answers the same 410 before any upgrade.
    let a = h.get(&format!("/v1/watch/ws?since={}", compact - 1)).await;
    assert_eq!(a.status, StatusCode::GONE, "{}", a.text);
    assert_eq!(a.body["error"]["compact_revision"], compact);
    let a = h
        .call(
            Method::GET,
            "/v1/watch",
            &[("Last-Event-ID", "1")],
            Body::empty(),
        )
        .await;
    assert_eq!(a.status, StatusCode::GONE, "{}", a.text);

    info!("--- from the compact revision on, the log still answers");
    let mut w = Frames::open(&h, &format!("/v1/watch?since={compact}"), &[]).await;
    let (replayed, _) = w.until_caught_up().await;
    assert!(replayed.len() >= 10, "{} events", replayed.len());
    assert!(replayed
        .iter()
        .all(|f| f.data["revision"].as_u64().unwrap() > compact));
    h.stop().await;
}

/// The node's limit of watch connections: one more is 503 naming the limit, and a
/// connection that ends frees its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_connections_beyond_the_limit_are_refused_with_503_until_one_ends() {
    let h = Harness::start_with_max_watchers(2).await;
    let mut first = Frames::open(&h, "/v1/watch", &[]).await;
    assert_eq!(first.next().await.event, "caught_up");
    let second = Frames::open(&h, "/v1/watch?type=job.*", &[]).await;

    info!("--- a third SSE watch and a WebSocket one are refused");
    for uri in ["/v1/watch", "/v1/watch/ws"] {
        let r = h
            .call(
                Method::GET,
                uri,
                &[
                    ("connection", "upgrade"),
                    ("upgrade", "websocket"),
                    ("sec-websocket-version", "13"),
                    ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ],
                Body::empty(),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{uri}: {}",
            r.text
        );
        assert_eq!(r.body["error"]["code"], "too_many_watchers", "{}", r.text);
        assert_eq!(r.body["error"]["limit"], 2, "{}", r.text);
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("2 watch connections") && message.contains("watch_max_connections"),
            "{message}"
        );
    }

    info!("--- one ends: a new watch is served");
    drop(second);
    let mut third = Frames::open(&h, "/v1/watch", &[]).await;
    assert_eq!(third.next().await.event, "caught_up");
    drop(first);
    drop(third);
    h.stop().await;
}
