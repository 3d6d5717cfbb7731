//! The sink's request shapes, retries and drop accounting, against a local
//! server that records requests (and a port nobody listens on).

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::{client, free_port, Recorder};
use rota_core::sink::{parse_sink_json, SinkSpec};
use rota_sink::{Backoff, Point, Sink};
use serde_json::json;

fn spec(doc: serde_json::Value) -> SinkSpec {
    let spec = parse_sink_json(doc.to_string().as_bytes()).unwrap();
    spec.validate().unwrap();
    spec
}

fn points(n: i64) -> Vec<Point> {
    (0..n)
        .map(|i| {
            Point::new("execution", 1_700_000_000_000_000_000 + i)
                .tag("job", "nightly")
                .field("attempt", i)
        })
        .collect()
}

fn quick() -> Backoff {
    Backoff {
        initial: Duration::from_millis(1),
        max: Duration::from_millis(4),
        attempts: 4,
    }
}

#[tokio::test]
async fn influxdb_2x_requests_carry_token_org_and_bucket() {
    let server = Recorder::start(vec![]).await;
    let sink = Sink::start(
        "v2",
        spec(
            json!({"type": "influxdb", "url": format!("{}/", server.url),
                    "org": "rota ci", "bucket": "builds", "token": "s3cr3t",
                    "batch_size": 2, "flush_interval": "1h"}),
        ),
        client(),
    );
    let sent = points(3);
    sink.send(sent.clone());
    let stats = sink.shutdown().await;
    assert_eq!((stats.written, stats.dropped), (3, 0), "{stats:?}");

    let requests = server.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    for r in &requests {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/api/v2/write");
        assert_eq!(r.param("org"), Some("rota ci"));
        assert_eq!(r.param("bucket"), Some("builds"));
        assert_eq!(r.param("precision"), Some("ns"));
        assert_eq!(r.param("db"), None);
        assert_eq!(r.authorization.as_deref(), Some("Token s3cr3t"));
    }
    let lines: Vec<String> = requests
        .iter()
        .flat_map(|r| r.body.lines().map(str::to_string).collect::<Vec<_>>())
        .collect();
    let expected: Vec<String> = sent.iter().map(Point::line).collect();
    assert_eq!(lines, expected);
    assert_eq!(requests[0].body.lines().count(), 2);
}

#[tokio::test]
async fn influxdb_1x_requests_use_db_and_basic_auth() {
    let server = Recorder::start(vec![]).await;
    let sink = Sink::start(
        "v1",
        spec(
            json!({"type": "influxdb", "url": server.url, "database": "ci",
                    "username": "rota", "password": "pw", "flush_interval": "1h"}),
        ),
        client(),
    );
    sink.send(points(1));
    assert_eq!(sink.shutdown().await.written, 1);
    let r = &server.requests()[0];
    assert_eq!(r.path, "/write");
    assert_eq!(r.param("db"), Some("ci"));
    assert_eq!(r.param("precision"), Some("ns"));
    // base64("rota:pw")
    assert_eq!(r.authorization.as_deref(), Some("Basic cm90YTpwdw=="));
}

#[tokio::test]
async fn a_full_batch_is_written_without_waiting_for_the_flush_interval() {
    let server = Recorder::start(vec![]).await;
    let sink = Sink::start(
        "v1",
        spec(
            json!({"type": "influxdb", "url": server.url, "database": "ci",
                    "batch_size": 3, "flush_interval": "1h"}),
        ),
        client(),
    );
    sink.send(points(3));
    // The flush interval is an hour away: only a full batch can be written now.
    // Awaiting the count (not sleeping a guessed time): it changes once.
    tokio::time::timeout(Duration::from_secs(10), async {
        while sink.stats().written < 3 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("a full batch is written at once");
    assert_eq!(server.requests().len(), 1);
    sink.shutdown().await;
}

#[tokio::test]
async fn unavailable_answers_are_retried_then_written() {
    let server = Recorder::start(vec![
        (StatusCode::SERVICE_UNAVAILABLE, "{\"error\": \"busy\"}"),
        (StatusCode::TOO_MANY_REQUESTS, ""),
    ])
    .await;
    let sink = Sink::start_with(
        "v1",
        spec(
            json!({"type": "influxdb", "url": server.url, "database": "ci",
                    "flush_interval": "1h"}),
        ),
        client(),
        quick(),
    );
    sink.send(points(2));
    let stats = sink.shutdown().await;
    assert_eq!(
        (stats.written, stats.dropped, stats.retries),
        (2, 0, 2),
        "{stats:?}"
    );
    assert!(stats.last_error.unwrap().contains("429"));
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert!(requests.iter().all(|r| r.body == requests[0].body));
}

#[tokio::test]
async fn a_4xx_drops_the_batch_without_retrying() {
    let server = Recorder::start(vec![(
        StatusCode::BAD_REQUEST,
        "{\"error\":\"unable to parse 'x': bad timestamp\"}",
    )])
    .await;
    let sink = Sink::start_with(
        "v1",
        spec(
            json!({"type": "influxdb", "url": server.url, "database": "ci",
                    "batch_size": 2, "flush_interval": "1h"}),
        ),
        client(),
        quick(),
    );
    sink.send(points(4));
    let stats = sink.shutdown().await;
    // The first batch was refused, the second written.
    assert_eq!(
        (stats.written, stats.dropped, stats.retries),
        (2, 2, 0),
        "{stats:?}"
    );
    assert_eq!(server.requests().len(), 2);
    assert!(stats
        .last_error
        .unwrap()
        .ends_with("refused the batch with 400: unable to parse 'x': bad timestamp"));
}

#[tokio::test]
async fn a_server_that_is_down_is_retried_then_the_points_dropped() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let sink = Sink::start_with(
        "down",
        spec(json!({"type": "influxdb", "url": url, "database": "ci",
                    "flush_interval": "1h"})),
        client(),
        quick(),
    );
    sink.send(points(3));
    let stats = sink.shutdown().await;
    assert_eq!(
        (stats.written, stats.dropped, stats.retries, stats.buffered),
        (0, 3, 3, 0),
        "{stats:?}"
    );
    let error = stats.last_error.unwrap();
    assert!(
        error.starts_with(&format!("cannot reach {url}/write?db=ci")),
        "{error}"
    );
}

#[tokio::test]
async fn a_full_buffer_drops_the_newest_points_and_counts_them() {
    let server = Recorder::start(vec![]).await;
    let sink = Sink::start(
        "small",
        spec(
            json!({"type": "influxdb", "url": server.url, "database": "ci",
                    "batch_size": 4, "buffer_points": 4, "flush_interval": "1h"}),
        ),
        client(),
    );
    let sent = points(7);
    assert_eq!(sink.send(sent.clone()), 4);
    assert_eq!(sink.stats().dropped, 3);
    let stats = sink.shutdown().await;
    assert_eq!((stats.written, stats.dropped), (4, 3), "{stats:?}");
    let written: Vec<String> = server
        .requests()
        .iter()
        .flat_map(|r| r.body.lines().map(str::to_string).collect::<Vec<_>>())
        .collect();
    let oldest: Vec<String> = sent[..4].iter().map(Point::line).collect();
    assert_eq!(written, oldest);
}

#[tokio::test]
async fn points_line_protocol_cannot_carry_are_dropped_at_send() {
    let server = Recorder::start(vec![]).await;
    let sink = Sink::start(
        "v1",
        spec(json!({"type": "influxdb", "url": server.url, "database": "ci"})),
        client(),
    );
    let no_fields = Point::new("build", 1);
    let nan = Point::new("build", 2).field("duration_s", f64::NAN);
    assert_eq!(sink.send([no_fields, nan, points(1).remove(0)]), 1);
    let stats = sink.shutdown().await;
    assert_eq!((stats.written, stats.dropped), (1, 2), "{stats:?}");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn the_flush_interval_writes_a_partial_batch() {
    let server = Recorder::start(vec![]).await;
    let sink = Sink::start(
        "v1",
        spec(
            json!({"type": "influxdb", "url": server.url, "database": "ci",
                    "batch_size": 100, "flush_interval": "50ms"}),
        ),
        client(),
    );
    sink.send(points(2));
    tokio::time::timeout(Duration::from_secs(10), async {
        while sink.stats().written < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the partial batch is written at the flush interval");
    assert_eq!(sink.stats().buffered, 0);
    sink.shutdown().await;
}

#[tokio::test]
async fn a_shutdown_bounds_the_retries_of_a_batch() {
    let server = Recorder::start(vec![(StatusCode::SERVICE_UNAVAILABLE, "busy"); 100]).await;
    let sink = Sink::start_with(
        "busy",
        spec(
            json!({"type": "influxdb", "url": server.url, "database": "ci",
                    "batch_size": 1, "flush_interval": "1h"}),
        ),
        client(),
        Backoff {
            initial: Duration::from_secs(30),
            max: Duration::from_secs(30),
            attempts: 10,
        },
    );
    sink.send(points(1));
    // The first attempt failed and the writer waits 30 s before the next one.
    tokio::time::timeout(Duration::from_secs(10), async {
        while sink.stats().retries == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the first attempt fails");
    let started = std::time::Instant::now();
    let stats = sink.shutdown_within(Duration::from_millis(200)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        (stats.written, stats.dropped, stats.retries, stats.buffered),
        (0, 1, 1, 0),
        "{stats:?}"
    );
    assert_eq!(server.requests().len(), 1);
}
