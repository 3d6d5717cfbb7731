//! Probes against real HTTP servers on the loopback interface, one server per
//! replica, so that each target is its own address.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use rota_core::probe::{ProbeSpec, ProbeStatus, ResultStatus, RunResult, TargetResult};
use rota_core::targets::Target;
use rota_core::{ExecStatus, ExecutorSpec, HumanDuration};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{run_probe, ProbeExecutor, DEADLINE_PASSED};
use crate::{test_request, Executor, OutputBuffer};

/// How a replica answers `/v1/synced`.
#[derive(Clone, Copy)]
enum Behaviour {
    /// `status` for the first `times` requests, then 200.
    FirstThen { status: u16, times: u32 },
    /// Always `status`.
    Always(u16),
    /// Never answers.
    Hang,
}

/// A replica: counts requests, keeps the headers of the last one, and tells
/// `arrived` of each.
struct Replica {
    addr: SocketAddr,
    requests: Arc<AtomicU32>,
    headers: Arc<Mutex<Option<HeaderMap>>>,
    arrived: Arc<Notify>,
}

impl Replica {
    fn target(&self) -> Target {
        Target {
            address: self.addr.to_string(),
            labels: BTreeMap::new(),
        }
    }

    fn requests(&self) -> u32 {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn replica(behaviour: Behaviour) -> Replica {
    let requests = Arc::new(AtomicU32::new(0));
    let headers = Arc::new(Mutex::new(None));
    let arrived = Arc::new(Notify::new());
    let handler = {
        let (requests, headers, arrived) = (requests.clone(), headers.clone(), arrived.clone());
        move |got: HeaderMap| async move {
            let n = requests.fetch_add(1, Ordering::SeqCst) + 1;
            *headers.lock().unwrap() = Some(got);
            arrived.notify_one();
            let status = match behaviour {
                Behaviour::FirstThen { status, times } if n <= times => status,
                Behaviour::FirstThen { .. } => 200,
                Behaviour::Always(status) => status,
                Behaviour::Hang => std::future::pending().await,
            };
            StatusCode::from_u16(status).unwrap()
        }
    };
    let app = Router::new().route("/v1/synced", get(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Replica {
        addr,
        requests,
        headers,
        arrived,
    }
}

/// The design's example, with short delays: retry 401 every 10ms, 5 times, within
/// 10s.
fn spec() -> ProbeSpec {
    serde_json::from_value(serde_json::json!({
        "targets": "gw", "path": "/v1/synced", "retry_on": [401],
        "retry_delay": "10ms", "max_retries": 5, "deadline": "10s"
    }))
    .unwrap()
}

async fn probe(spec: &ProbeSpec, replicas: &[&Replica]) -> RunResult {
    let targets: Vec<Target> = replicas.iter().map(|r| r.target()).collect();
    run_probe(spec, &targets, &BTreeMap::new(), &CancellationToken::new()).await
}

fn by_address<'a>(result: &'a RunResult, replica: &Replica) -> &'a TargetResult {
    let address = replica.addr.to_string();
    result
        .targets
        .iter()
        .find(|t| t.address == address)
        .unwrap_or_else(|| panic!("{address} not in {result:?}"))
}

#[tokio::test]
async fn replicas_that_answer_401_for_a_while_end_synced_after_retries() {
    let ready = replica(Behaviour::Always(200)).await;
    let late = replica(Behaviour::FirstThen {
        status: 401,
        times: 2,
    })
    .await;
    let later = replica(Behaviour::FirstThen {
        status: 401,
        times: 4,
    })
    .await;
    let result = probe(&spec(), &[&ready, &late, &later]).await;
    assert_eq!(result.status, ResultStatus::Synced, "{result:?}");
    for (replica, attempts) in [(&ready, 1), (&late, 3), (&later, 5)] {
        let t = by_address(&result, replica);
        assert_eq!(
            (t.code, t.status, t.attempts, t.error.as_deref()),
            (Some(200), ExecStatus::Succeeded, attempts, None)
        );
        assert_eq!(replica.requests(), attempts);
    }
    // The set's order is kept.
    let order: Vec<&str> = result.targets.iter().map(|t| t.address.as_str()).collect();
    let expected = [ready.addr, late.addr, later.addr].map(|a| a.to_string());
    assert_eq!(order, expected);
}

#[tokio::test]
async fn a_replica_that_always_answers_401_makes_it_partial() {
    let ready = replica(Behaviour::Always(200)).await;
    let stuck = replica(Behaviour::Always(401)).await;
    let spec = spec();
    let result = probe(&spec, &[&ready, &stuck]).await;
    assert_eq!(result.status, ResultStatus::Partial);
    let t = by_address(&result, &stuck);
    assert_eq!(t.code, Some(401));
    assert_eq!(t.status, ExecStatus::Failed);
    assert_eq!(t.attempts, spec.max_retries + 1);
    assert_eq!(t.error.as_deref(), Some("401 after 6 attempts"));
    assert_eq!(stuck.requests(), 6);

    // Through the executor: failed, naming the target, with the result attached
    // and one line per target in the output.
    let mut req = test_request(ExecutorSpec::Probe(spec), None);
    req.targets = Some(vec![ready.target(), stuck.target()]);
    let output = OutputBuffer::new(1 << 20);
    let outcome = ProbeExecutor
        .run(req, output.clone(), CancellationToken::new())
        .await;
    assert_eq!(outcome.status, ExecStatus::Failed);
    assert_eq!(
        outcome.error.as_deref(),
        Some(
            format!(
                "partial: 1 of 2 targets synced; {}: 401 after 6 attempts",
                stuck.addr
            )
            .as_str()
        )
    );
    assert_eq!(
        outcome.result.as_ref().map(|r| r.status),
        Some(ResultStatus::Partial)
    );
    let text = String::from_utf8_lossy(&output.snapshot().0).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with(&format!(
            "{}: synced, status 200, 1 attempt in ",
            ready.addr
        )),
        "{text}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{}: not synced, status 401, 6 attempts in ",
            stuck.addr
        )) && lines[1].ends_with(": 401 after 6 attempts"),
        "{text}"
    );
    assert_eq!(lines[2], "probe partial: 1 of 2 targets synced");
}

#[tokio::test]
async fn a_replica_that_hangs_makes_it_timeout() {
    let ready = replica(Behaviour::Always(200)).await;
    let hung = replica(Behaviour::Hang).await;
    let mut spec = spec();
    spec.deadline = HumanDuration::from_millis(300);
    let result = probe(&spec, &[&ready, &hung]).await;
    assert_eq!(result.status, ResultStatus::Timeout);
    let t = by_address(&result, &hung);
    assert_eq!(
        (t.code, t.status, t.attempts, t.error.as_deref()),
        (None, ExecStatus::TimedOut, 1, Some(DEADLINE_PASSED))
    );
    assert_eq!(hung.requests(), 1);
    assert_eq!(by_address(&result, &ready).status, ExecStatus::Succeeded);
}

#[tokio::test]
async fn a_replica_still_retrying_at_the_deadline_is_pending_not_failed() {
    let stuck = replica(Behaviour::Always(401)).await;
    let mut spec = spec();
    spec.retry_delay = HumanDuration::from_secs(60);
    spec.deadline = HumanDuration::from_millis(200);
    let result = probe(&spec, &[&stuck]).await;
    assert_eq!(result.status, ResultStatus::Timeout);
    let t = &result.targets[0];
    assert_eq!(
        (t.code, t.attempts, t.error.as_deref()),
        (Some(401), 1, Some(DEADLINE_PASSED))
    );
}

#[tokio::test]
async fn all_500_is_not_synced_without_retries() {
    let a = replica(Behaviour::Always(500)).await;
    let b = replica(Behaviour::Always(500)).await;
    let result = probe(&spec(), &[&a, &b]).await;
    assert_eq!(result.status, ResultStatus::NotSynced);
    for replica in [&a, &b] {
        let t = by_address(&result, replica);
        assert_eq!(
            (t.code, t.status, t.attempts, t.error.as_deref()),
            (
                Some(500),
                ExecStatus::Failed,
                1,
                Some("unexpected status 500 (expected 200)")
            )
        );
    }
}

#[tokio::test]
async fn connection_errors_are_retried_until_max_retries() {
    // A port nobody listens on any more.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);
    let mut spec = spec();
    spec.max_retries = 2;
    let targets = [Target {
        address,
        labels: BTreeMap::new(),
    }];
    let result = run_probe(&spec, &targets, &BTreeMap::new(), &CancellationToken::new()).await;
    assert_eq!(result.status, ResultStatus::NotSynced);
    let t = &result.targets[0];
    assert_eq!((t.code, t.attempts), (None, 3));
    let error = t.error.as_deref().unwrap_or_default();
    assert!(
        error.starts_with("request failed") && error.ends_with("(after 3 attempts)"),
        "{error}"
    );
}

#[tokio::test]
async fn below_min_targets_nothing_is_asked() {
    let one = replica(Behaviour::Always(200)).await;
    let mut spec = spec();
    spec.min_targets = 2;
    spec.below_min = ProbeStatus::Synced;
    let result = probe(&spec, &[&one]).await;
    assert_eq!(result.status, ResultStatus::Synced);
    assert_eq!(one.requests(), 0);
    assert_eq!(result.targets[0].status, ExecStatus::Skipped);
    assert_eq!(result.targets[0].attempts, 0);

    // With the default below_min and no targets at all.
    let spec = self::spec();
    let result = probe(&spec, &[]).await;
    assert_eq!(result.status, ResultStatus::NotSynced);
    assert!(result.targets.is_empty());
    let mut req = test_request(ExecutorSpec::Probe(spec), None);
    req.targets = Some(Vec::new());
    let outcome = ProbeExecutor
        .run(req, OutputBuffer::new(1024), CancellationToken::new())
        .await;
    assert_eq!(outcome.status, ExecStatus::Failed);
    assert_eq!(
        outcome.error.as_deref(),
        Some("not_synced: the set has 0 target(s), fewer than min_targets 1")
    );

    // Enough targets: asked.
    let mut spec = self::spec();
    spec.min_targets = 1;
    let result = probe(&spec, &[&one]).await;
    assert_eq!(result.status, ResultStatus::Synced);
    assert_eq!(one.requests(), 1);
}

#[tokio::test]
async fn forwarded_headers_reach_the_targets() {
    let one = replica(Behaviour::Always(200)).await;
    let mut spec = spec();
    spec.headers = BTreeMap::from([
        ("X-Static".to_string(), "1".to_string()),
        ("Authorization".to_string(), "Bearer spec".to_string()),
    ]);
    spec.forward_headers = vec!["Authorization".to_string(), "X-Missing".to_string()];
    // Header names as the check endpoint saw them (any case).
    let forwarded = BTreeMap::from([
        ("authorization".to_string(), "Bearer caller".to_string()),
        ("x-not-listed".to_string(), "no".to_string()),
    ]);
    let result = run_probe(
        &spec,
        &[one.target()],
        &forwarded,
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(result.status, ResultStatus::Synced);
    let headers = one.headers.lock().unwrap().clone().expect("a request came");
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(get("authorization").as_deref(), Some("Bearer caller"));
    assert_eq!(get("x-static").as_deref(), Some("1"));
    assert_eq!(get("x-not-listed"), None);
    assert_eq!(get("x-missing"), None);
}

#[tokio::test]
async fn a_cancel_stops_pending_targets() {
    let hung = replica(Behaviour::Hang).await;
    let spec = spec();
    let cancel = CancellationToken::new();
    let targets = [hung.target()];
    let forwarded = BTreeMap::new();
    let probe = run_probe(&spec, &targets, &forwarded, &cancel);
    let arrived = hung.arrived.clone();
    let cancel_when_asked = async {
        arrived.notified().await;
        cancel.cancel();
    };
    let (result, ()) = tokio::join!(probe, cancel_when_asked);
    assert_eq!(result.status, ResultStatus::NotSynced);
    assert_eq!(result.targets[0].status, ExecStatus::Cancelled);
}

#[tokio::test]
async fn the_executor_needs_resolved_targets() {
    let req = test_request(ExecutorSpec::Probe(spec()), None);
    let outcome = ProbeExecutor
        .run(req, OutputBuffer::new(1024), CancellationToken::new())
        .await;
    assert_eq!(outcome.status, ExecStatus::Failed);
    assert_eq!(
        outcome.error.as_deref(),
        Some("the targets of set \"gw\" were not resolved for this run; a probe needs them")
    );
}

#[tokio::test]
async fn a_synced_probe_succeeds_through_run_attempt() {
    let a = replica(Behaviour::Always(200)).await;
    let mut req = test_request(ExecutorSpec::Probe(spec()), Some(Duration::from_secs(30)));
    req.targets = Some(vec![a.target()]);
    let outcome = crate::run_attempt(req, OutputBuffer::new(1024), CancellationToken::new()).await;
    assert_eq!(outcome.status, ExecStatus::Succeeded, "{outcome:?}");
    assert_eq!(outcome.result.map(|r| r.status), Some(ResultStatus::Synced));
}
