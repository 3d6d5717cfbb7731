//! The cluster steps driven against stand-ins for three nodes: one that is down,
//! one that answers 503 `not_leader`, one that accepts writes. It checks the
//! harness (moving to the next node, retrying with the same session, logging
//! acknowledgements, one result per recorded kill, finding the leader), not any
//! figure.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, put};
use axum::{Json, Router};
use loadgen::cluster::{wait_settled, Settled};
use loadgen::failover::{run_failover, FailoverRun};
use loadgen::kv::Target;
use loadgen::Measurement;
use serde_json::json;

/// `Rota-Request-Seq` of every write a stand-in saw.
type Seen = Arc<Mutex<Vec<u64>>>;

fn seq(headers: &HeaderMap) -> u64 {
    headers
        .get("rota-request-seq")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A node: its writes answer `status`, its health names node `id` and leader 3.
async fn node(id: u64, status: StatusCode) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let app = Router::new()
        .route(
            "/v1/kv/{*key}",
            put(move |headers: HeaderMap| {
                let log = log.clone();
                async move {
                    log.lock().unwrap().push(seq(&headers));
                    (status, Json(json!({"key": "k", "revision": 1})))
                }
            }),
        )
        .route(
            "/v1/health",
            get(move || async move {
                let role = if id == 3 { "leader" } else { "follower" };
                Json(json!({"node_id": id, "role": role, "leader": 3, "last_applied": 10}))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

/// The URL of a loopback port nobody listens on.
async fn down() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn the_writer_moves_on_retries_the_same_write_and_reports_each_kill() {
    let dir = tempfile::tempdir().unwrap();
    let (acks, kills, stop) = (
        dir.path().join("acks"),
        dir.path().join("kills"),
        dir.path().join("stop"),
    );
    let (not_leader, refused) = node(2, StatusCode::SERVICE_UNAVAILABLE).await;
    let (leader, accepted) = node(3, StatusCode::CREATED).await;
    let urls = vec![down().await, not_leader, leader];
    let start_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let writer = tokio::spawn(run_failover(FailoverRun {
        target: Target::Rota,
        urls: urls.clone(),
        acks: acks.clone(),
        kills: kills.clone(),
        stop_file: stop.clone(),
        request_timeout: Duration::from_secs(2),
        max_duration: Duration::from_secs(60),
    }));

    // Wait (bounded) until a few writes were acknowledged, then end the series.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while lines(&acks).len() < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no acknowledgements"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let end_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    // A second "kill" an hour ahead: no write can be acknowledged after it.
    let later = end_ns + 3_600_000_000_000;
    std::fs::write(
        &kills,
        format!("1 1 {start_ns} {end_ns}\n2 3 {later} {later}\n"),
    )
    .unwrap();
    std::fs::write(&stop, "").unwrap();
    let outcomes = writer.await.unwrap().unwrap();

    // The first write failed on the node that is down and on the one that is not
    // the leader, then went through with the same sequence number.
    assert_eq!(refused.lock().unwrap().first(), Some(&1));
    let accepted = accepted.lock().unwrap().clone();
    assert_eq!(accepted.first(), Some(&1));
    // Once a node answers, the writer stays with it: every later write is new.
    assert!(
        accepted.windows(2).all(|w| w[1] == w[0] + 1),
        "{accepted:?}"
    );
    assert!(lines(&acks).iter().all(|l| l.ends_with(" 3")));

    assert_eq!(outcomes.len(), 2);
    assert_eq!(outcomes[0].nodes, Some(3));
    let Measurement::Failover {
        rep,
        killed,
        gap_ms,
        acked,
        failed,
        ..
    } = outcomes[0].measurement
    else {
        panic!("not a failover result: {:?}", outcomes[0]);
    };
    assert_eq!((rep, killed), (1, 1));
    assert!(gap_ms.is_some());
    assert!(acked >= 5, "{acked}");
    assert_eq!(failed, 2);
    // Nothing was acknowledged after the second "kill".
    assert!(matches!(
        outcomes[1].measurement,
        Measurement::Failover { gap_ms: None, .. }
    ));
}

#[tokio::test]
async fn the_leader_is_found_by_its_position_and_a_majority_suffices() {
    let (n2, _) = node(2, StatusCode::CREATED).await;
    let (n3, _) = node(3, StatusCode::CREATED).await;
    let urls = vec![down().await, n2, n3];
    let wait = Duration::from_secs(10);
    let leader = wait_settled(Target::Rota, &urls, Settled::Leader, wait).await;
    assert_eq!(leader.unwrap(), 2);
    // Every node must answer for `All`: with one down it gives up at the deadline.
    let all = wait_settled(
        Target::Rota,
        &urls,
        Settled::All,
        Duration::from_millis(300),
    )
    .await;
    let err = all.unwrap_err().to_string();
    assert!(err.contains("did not settle"), "{err}");
}

#[tokio::test]
async fn a_missing_kills_record_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let stop = dir.path().join("stop");
    std::fs::write(&stop, "").unwrap();
    let kills = dir.path().join("kills");
    std::fs::write(&kills, "# nothing\n").unwrap();
    let (leader, _) = node(3, StatusCode::CREATED).await;
    let result = run_failover(FailoverRun {
        target: Target::Rota,
        urls: vec![leader],
        acks: dir.path().join("acks"),
        kills,
        stop_file: stop,
        request_timeout: Duration::from_secs(1),
        max_duration: Duration::from_secs(10),
    })
    .await;
    let err = result.unwrap_err().to_string();
    assert!(err.contains("records no kill"), "{err}");
}
