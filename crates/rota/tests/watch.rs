//! End-to-end: the watch API of a real `rota server`: a watcher cut off in the
//! middle of a burst resumes with `Last-Event-ID` and sees every event once, in
//! order; a watcher that never reads is closed as a slow consumer while another
//! keeps receiving; a `since` below the retained window is answered 410;

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{stderr, stdout, Server};
use futures_util::StreamExt;
use serde_json::{json, Value};

/// Bound on waiting for a frame that must come; reaching it fails the test.
const FRAME_DEADLINE: Duration = Duration::from_secs(60);

/// A client without a whole-request time limit: a watch never ends by itself.
fn stream_client() -> reqwest::Client {
    let _ = common::client();
    reqwest::Client::new()
}

/// One SSE frame: `id`, `event`, `data`.
#[derive(Debug, Clone)]
struct Frame {
    id: Option<u64>,
    event: String,
    data: Value,
}

struct Frames {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    text: String,
}

impl Frames {
    async fn open(url: &str, last_event_id: Option<u64>) -> Frames {
        let mut req = stream_client().get(url);
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let resp = req.send().await.expect("watch request");
        assert_eq!(resp.status(), 200, "{url}");
        Frames {
            body: resp.bytes_stream().boxed(),
            text: String::new(),
        }
    }

    /// The next frame, `None` at the end of the stream.
    async fn next(&mut self) -> Option<Frame> {
        tokio::time::timeout(FRAME_DEADLINE, self.next_frame())
            .await
            .expect("a frame in time")
    }

    async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                let mut frame = Frame {
                    id: None,
                    event: String::new(),
                    data: Value::Null,
                };
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        frame.id = Some(v.parse().expect("id is a revision"));
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        frame.event = v.to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        frame.data = serde_json::from_str(v).expect("data is JSON");
                    }
                }
                if frame.event.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some(frame);
            }
            let chunk = self.body.next().await?;
            self.text
                .push_str(std::str::from_utf8(&chunk.expect("body chunk")).unwrap());
        }
    }
}

async fn applied(server: &Server) -> u64 {
    let (status, health) = server.get("/v1/health").await;
    assert_eq!(status, 200);
    health["last_applied"].as_u64().expect("last_applied")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_cut_off_in_a_burst_resumes_and_sees_every_event_once_in_order() {
    const WRITERS: usize = 16;
    const PER_WRITER: usize = 625; // 10,000 puts in all
    const CUT_AFTER: usize = 3_000;
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), &[]).await;
    let since = applied(&server).await;
    let watch_url = format!("{}/v1/watch?type=kv.put&prefix=burst/", server.url);

    // --- subscribe, then start the burst from concurrent writers
    let mut frames = Frames::open(&format!("{watch_url}&since={since}"), None).await;
    let caught_up = frames.next().await.expect("caught_up");
    assert_eq!(caught_up.event, "caught_up");
    let http = common::client();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let http = http.clone();
        let url = server.url.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..PER_WRITER {
                let resp = http
                    .put(format!("{url}/v1/kv/burst/{w}/{i}"))
                    .json(&json!({"value": "v"}))
                    .send()
                    .await
                    .expect("put");
                assert_eq!(resp.status(), 200);
            }
        }));
    }

    // --- read part of it, then cut the connection mid-burst
    let mut seen: Vec<(u64, String)> = Vec::new();
    while seen.len() < CUT_AFTER {
        let f = frames.next().await.expect("the stream goes on");
        assert_eq!(f.event, "kv.put", "{f:?}");
        assert_eq!(f.id, f.data["revision"].as_u64());
        seen.push((f.id.unwrap(), f.data["key"].as_str().unwrap().to_string()));
    }
    drop(frames);

    // --- resume: after the revision before the last one seen, skipping the events
    // of the last revision already seen (several events may share a revision)
    let (last, _) = seen.last().cloned().unwrap();
    let mut skip = seen.iter().filter(|(r, _)| *r == last).count();
    let mut frames = Frames::open(&watch_url, Some(last - 1)).await;
    let total = WRITERS * PER_WRITER;
    let mut replayed_to = None;
    while seen.len() < total {
        let f = frames.next().await.expect("the stream goes on");
        if f.event == "caught_up" {
            replayed_to = f.data["revision"].as_u64();
            continue;
        }
        assert_eq!(f.event, "kv.put", "{f:?}");
        let revision = f.id.unwrap();
        if revision == last && skip > 0 {
            skip -= 1;
            continue;
        }
        seen.push((revision, f.data["key"].as_str().unwrap().to_string()));
    }
    for w in writers {
        w.await.unwrap();
    }
    assert!(replayed_to.is_some(), "the resumed watch said caught_up");

    // --- every put exactly once, in revision order
    let keys: HashSet<&str> = seen.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(keys.len(), total, "an event was seen twice");
    for w in 0..WRITERS {
        for i in 0..PER_WRITER {
            assert!(
                keys.contains(format!("burst/{w}/{i}").as_str()),
                "burst/{w}/{i} missing"
            );
        }
    }
    assert!(
        seen.windows(2).all(|p| p[0].0 <= p[1].0),
        "events out of revision order"
    );
    // Nothing more arrives than was written: the next event is a later write's.
    let (status, _) = server
        .send("PUT", "/v1/kv/burst/end", Some(json!({"value": "v"})))
        .await;
    assert_eq!(status, 200);
    let f = frames.next().await.expect("the stream goes on");
    assert_eq!(f.data["key"], "burst/end", "{f:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_never_reads_is_closed_as_slow_while_another_keeps_up() {
    const EVENTS: usize = 300;
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), &["--watch-buffer", "16"]).await;
    let url = format!("{}/v1/watch?type=load.*", server.url);

    // --- one watcher never reads its body; the other reads everything
    let mut stalled = Frames::open(&url, None).await;
    let mut reader = Frames::open(&url, None).await;
    assert_eq!(reader.next().await.unwrap().event, "caught_up");

    // 64 KiB of data per event: far more than the socket buffers and the watcher's
    // 16 buffered events hold.
    let blob = "x".repeat(64 * 1024);
    let http = common::client();
    let mut received = 0;
    for i in 0..EVENTS {
        let resp = http
            .post(format!("{}/v1/events", server.url))
            .json(&json!({"type": "load.tick", "data": {"i": i, "blob": blob}}))
            .send()
            .await
            .expect("publish");
        assert_eq!(resp.status(), 202);
        let f = reader.next().await.expect("the reader keeps receiving");
        assert_eq!(
            (f.event.as_str(), f.data["data"]["i"].as_u64()),
            ("load.tick", Some(i as u64))
        );
        received += 1;
    }
    assert_eq!(received, EVENTS);

    // --- the stalled watcher finds, after what was buffered, why it was closed
    let mut last = None;
    let mut delivered = 0;
    while let Some(f) = stalled.next().await {
        if f.event == "load.tick" {
            delivered += 1;
        }
        last = Some(f);
    }
    let last = last.expect("some frames");
    assert_eq!(last.event, "error", "{last:?}");
    assert_eq!(last.data["code"], "slow_consumer", "{last:?}");
    assert!(last.data["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(
        delivered < EVENTS,
        "the stalled watcher got all {delivered} events"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rota_watch_prints_events_and_rota_event_publish_publishes() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), &[]).await;
    let since = applied(&server).await;

    // --- publish through the CLI
    let out = server.cli(&[
        "event",
        "publish",
        "deploy.finished",
        "--data",
        r#"{"env": "prod"}"#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("deploy.finished published at revision"));
    let out = server.cli(&["event", "publish", "kv.put"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("type"), "{}", stderr(&out));
    let (status, _) = server
        .send("PUT", "/v1/kv/app/x", Some(json!({"value": "1"})))
        .await;
    assert_eq!(status, 200);

    // --- `rota watch -o json` replays them (it follows forever: read two lines)
    let mut child = tokio::process::Command::new(common::BIN)
        .args([
            "watch",
            "--since",
            &since.to_string(),
            "-o",
            "json",
            "--type",
            "deploy.*,kv.*",
        ])
        .env("ROTA_SERVER", &server.url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("rota watch");
    let out = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(out));
    let mut events = Vec::new();
    while events.len() < 2 {
        let line = tokio::time::timeout(FRAME_DEADLINE, lines.next_line())
            .await
            .expect("a line in time")
            .unwrap()
            .expect("rota watch goes on");
        events.push(serde_json::from_str::<Value>(&line).expect("one JSON object per line"));
    }
    assert_eq!(events[0]["type"], "deploy.finished");
    assert_eq!(events[0]["data"], json!({"env": "prod"}));
    assert_eq!(events[1]["type"], "kv.put");
    assert_eq!(events[1]["key"], "app/x");
    child.kill().await.unwrap();

    // --- a bad type is refused with a one-line reason
    let out = server.cli(&["watch", "--type", "Bad"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("type"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_since_below_the_retained_window_is_answered_410_with_the_compact_revision() {
    let tmp = tempfile::tempdir().unwrap();
    // Keep at least 10 events, and only those of the last second beyond that.
    let server = Server::start(
        tmp.path(),
        &["--watch-retention", "10", "--watch-retention-age", "1s"],
    )
    .await;
    let (status, first) = server
        .send("PUT", "/v1/kv/old", Some(json!({"value": "x"})))
        .await;
    assert_eq!(status, 200, "{first}");
    let first = first["revision"].as_u64().expect("revision");
    // The log is trimmed every 1,024 entries, of events older than the age: keep
    // writing until the first write's event is gone.
    let mut written = 0u32;
    let body = common::eventually(FRAME_DEADLINE, "the first event to be compacted", || {
        let server = &server;
        let n = written;
        written += 1;
        async move {
            for i in 0..256 {
                let (status, _) = server
                    .send(
                        "PUT",
                        &format!("/v1/kv/k{n}-{i}"),
                        Some(json!({"value": "v"})),
                    )
                    .await;
                assert_eq!(status, 200);
            }
            // Only the status and, on 410, the body: a 200 streams for ever.
            let resp = common::client()
                .get(format!("{}/v1/watch?since={first}", server.url))
                .send()
                .await
                .expect("watch request");
            if resp.status().as_u16() != 410 {
                return None;
            }
            resp.json::<Value>().await.ok()
        }
    })
    .await;
    assert_eq!(body["error"]["code"], "compacted", "{body}");
    let compact = body["error"]["compact_revision"]
        .as_u64()
        .expect("compact_revision");
    assert!(compact >= first, "{body}");
    // From the compact revision on, the watch answers; the CLI says why it cannot.
    let mut frames = Frames::open(&format!("{}/v1/watch?since={compact}", server.url), None).await;
    assert!(
        frames.next().await.is_some(),
        "a watch from the window streams"
    );
    let out = server.cli(&["watch", "--since", &first.to_string()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no longer kept"), "{}", stderr(&out));
}
