//! Fan-out of shell and http runs over targets, with real processes and a real
//! HTTP server that observes how many targets run at once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use rota_core::probe::ResultStatus;
use rota_core::targets::Target;
use rota_core::{ExecStatus, ExecutorSpec, HttpSpec, ShellSpec};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{run_attempt, test_request, OutputBuffer, RunOutcome};

fn target(address: &str, zone: Option<&str>) -> Target {
    Target {
        address: address.to_string(),
        labels: zone
            .map(|z| BTreeMap::from([("zone".to_string(), z.to_string())]))
            .unwrap_or_default(),
    }
}

fn sh(command: &str) -> ExecutorSpec {
    ExecutorSpec::Shell(ShellSpec {
        command: command.to_string(),
        args: None,
        env: BTreeMap::new(),
        cwd: None,
    })
}

async fn fan_out(
    spec: ExecutorSpec,
    targets: Vec<Target>,
    parallelism: u32,
    timeout: Option<Duration>,
) -> (RunOutcome, String) {
    let mut req = test_request(spec, timeout);
    req.targets = Some(targets);
    req.parallelism = parallelism;
    let output = OutputBuffer::new(1 << 20);
    let outcome = run_attempt(req, output.clone(), CancellationToken::new()).await;
    let text = String::from_utf8_lossy(&output.snapshot().0).into_owned();
    (outcome, text)
}

#[tokio::test]
async fn a_shell_job_runs_once_per_target_with_its_address_and_labels() {
    let targets = vec![
        target("10.0.0.1:80", Some("eu-1")),
        target("10.0.0.2:80", Some("eu-2")),
        target("10.0.0.3:80", Some("us-1")),
    ];
    let (outcome, text) = fan_out(
        sh("echo {{target.address}} {{ target.labels.zone }}"),
        targets.clone(),
        3,
        None,
    )
    .await;
    assert_eq!(outcome.status, ExecStatus::Succeeded, "{outcome:?}");
    let result = outcome.result.expect("a result");
    assert_eq!(result.status, ResultStatus::Succeeded);
    for (t, got) in targets.iter().zip(&result.targets) {
        assert_eq!(got.address, t.address);
        assert_eq!(
            (got.code, got.status, got.attempts, got.error.as_deref()),
            (Some(0), ExecStatus::Succeeded, 1, None)
        );
        let block = format!(
            "==> {}: succeeded\n{} {}\n",
            t.address, t.address, t.labels["zone"]
        );
        assert!(text.contains(&block), "{block:?} not in {text:?}");
    }
    // Three blocks, nothing else.
    assert_eq!(text.lines().count(), 6, "{text}");
}

#[tokio::test]
async fn an_unknown_label_fails_that_target_alone() {
    let targets = vec![target("a:1", Some("eu-1")), target("b:1", None)];
    let (outcome, text) = fan_out(sh("echo {{target.labels.zone}}"), targets, 2, None).await;
    assert_eq!(outcome.status, ExecStatus::Failed);
    let result = outcome.result.expect("a result");
    assert_eq!(result.status, ResultStatus::Partial);
    assert_eq!(result.targets[0].status, ExecStatus::Succeeded);
    let b = &result.targets[1];
    assert_eq!(
        (b.status, b.attempts, b.code),
        (ExecStatus::Failed, 0, None)
    );
    let why = "{{target.labels.zone}}: target b:1 has no label \"zone\" (it has no labels)";
    assert_eq!(b.error.as_deref(), Some(why));
    assert_eq!(
        outcome.error.as_deref(),
        Some(format!("partial: 1 of 2 targets succeeded; b:1: {why}").as_str())
    );
    assert!(
        text.contains(&format!("==> b:1: failed\n{why}\n")),
        "{text}"
    );
}

#[tokio::test]
async fn failing_targets_report_their_exit_codes() {
    let targets = vec![target("a:1", None), target("b:1", None)];
    let (outcome, _) = fan_out(sh("exit 3"), targets, 2, None).await;
    assert_eq!(outcome.status, ExecStatus::Failed);
    let result = outcome.result.expect("a result");
    assert_eq!(result.status, ResultStatus::Failed);
    assert!(result.targets.iter().all(|t| t.code == Some(3)));
}

#[tokio::test]
async fn an_empty_set_fails_with_no_targets() {
    let (outcome, text) = fan_out(sh("true"), Vec::new(), 3, None).await;
    assert_eq!(outcome.status, ExecStatus::Failed);
    assert_eq!(outcome.error.as_deref(), Some("target set has no targets"));
    let result = outcome.result.expect("a result");
    assert_eq!(result.status, ResultStatus::NoTargets);
    assert!(result.targets.is_empty());
    assert_eq!(text, "target set has no targets\n");
}

#[tokio::test]
async fn the_timeout_stops_every_target() {
    let targets = vec![
        target("a:1", None),
        target("b:1", None),
        target("c:1", None),
    ];
    let (outcome, _) = fan_out(sh("sleep 30"), targets, 2, Some(Duration::from_millis(300))).await;
    assert_eq!(outcome.status, ExecStatus::TimedOut);
    let result = outcome.result.expect("a result");
    assert_eq!(result.status, ResultStatus::Failed);
    let statuses: Vec<(ExecStatus, u32)> = result
        .targets
        .iter()
        .map(|t| (t.status, t.attempts))
        .collect();
    // Two had started, the third waited for a slot.
    assert_eq!(
        statuses,
        [
            (ExecStatus::TimedOut, 1),
            (ExecStatus::TimedOut, 1),
            (ExecStatus::TimedOut, 0)
        ]
    );
}

/// A server that counts requests in flight, keeps the most seen at once, and
/// holds each request until `hold_until` have been in flight at once (a latch:
/// once reached, every held request goes), or, when that never happens, until
/// `give_up` passes: a correct run at parallelism 1 never sends a second request
/// while the first is held, so that wait is its only way out.
#[derive(Clone)]
struct Gate {
    in_flight: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    released: Arc<watch::Sender<bool>>,
    hold_until: usize,
    give_up: Duration,
}

async fn gated(State(gate): State<Gate>) -> &'static str {
    let now = gate.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    gate.most.fetch_max(now, Ordering::SeqCst);
    if now >= gate.hold_until {
        gate.released.send_replace(true);
    }
    let mut released = gate.released.subscribe();
    let _ = tokio::time::timeout(gate.give_up, released.wait_for(|r| *r)).await;
    gate.in_flight.fetch_sub(1, Ordering::SeqCst);
    "ok"
}

async fn gate_server(hold_until: usize, give_up: Duration) -> (SocketAddr, Gate) {
    let gate = Gate {
        in_flight: Arc::default(),
        most: Arc::default(),
        released: Arc::new(watch::channel(false).0),
        hold_until,
        give_up,
    };
    let app = Router::new()
        .route("/t/{name}", get(gated))
        .with_state(gate.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, gate)
}

fn http_get(url: String) -> ExecutorSpec {
    ExecutorSpec::Http(HttpSpec {
        method: "GET".into(),
        url,
        headers: BTreeMap::new(),
        body: None,
        expect_status: vec![],
    })
}

fn named_targets() -> Vec<Target> {
    ["a", "b", "c"]
        .iter()
        .map(|name| Target {
            address: format!("{name}:1"),
            labels: BTreeMap::from([("name".to_string(), name.to_string())]),
        })
        .collect()
}

#[tokio::test]
async fn parallelism_3_runs_all_three_at_once() {
    // Each request is held until all three are in flight: only a run that really
    // has them at once gets through before its timeout.
    let (addr, gate) = gate_server(3, Duration::from_secs(60)).await;
    let spec = http_get(format!("http://{addr}/t/{{{{target.labels.name}}}}"));
    let (outcome, text) = fan_out(spec, named_targets(), 3, Some(Duration::from_secs(20))).await;
    assert_eq!(outcome.status, ExecStatus::Succeeded, "{outcome:?}\n{text}");
    assert_eq!(gate.most.load(Ordering::SeqCst), 3);
    let result = outcome.result.expect("a result");
    assert!(
        result.targets.iter().all(|t| t.code == Some(200)),
        "{result:?}"
    );
    assert!(
        text.contains("==> a:1: succeeded\nHTTP 200\nok\n"),
        "{text}"
    );
}

#[tokio::test]
async fn parallelism_1_runs_one_at_a_time() {
    // Each request is held until a second one arrives beside it, which a correct
    // run never sends; the hold then ends after a moment.
    let (addr, gate) = gate_server(2, Duration::from_millis(100)).await;
    let spec = http_get(format!("http://{addr}/t/{{{{target.labels.name}}}}"));
    let (outcome, text) = fan_out(spec, named_targets(), 1, Some(Duration::from_secs(20))).await;
    assert_eq!(outcome.status, ExecStatus::Succeeded, "{outcome:?}\n{text}");
    assert_eq!(gate.most.load(Ordering::SeqCst), 1);
    // One after the other, in the set's order.
    let a = text.find("==> a:1").unwrap();
    let b = text.find("==> b:1").unwrap();
    let c = text.find("==> c:1").unwrap();
    assert!(a < b && b < c, "{text}");
}

#[tokio::test]
async fn workflow_jobs_and_probes_are_not_fanned_out_by_it() {
    let mut req = test_request(
        ExecutorSpec::WorkflowJob(Box::new(rota_core::workflow::WorkflowJobSpec {
            workflow: "w".into(),
            job: "j".into(),
            needs: vec![],
            env: BTreeMap::new(),
            services: vec![],
            steps: vec![],
            artifacts: vec![],
        })),
        None,
    );
    req.targets = Some(vec![target("a:1", None)]);
    let outcome = super::run_fan_out(req, OutputBuffer::new(1024), CancellationToken::new()).await;
    assert_eq!(
        outcome.error.as_deref(),
        Some("a workflow_job executor cannot fan out over targets")
    );
}
