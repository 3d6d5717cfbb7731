//! End-to-end: workflow runs with the real binary.
//!
//! - The CI pipeline of `examples/ci-workflow.yaml`: `lint` passes, `test` runs
//!   against a real PostgreSQL started as its service and fails on purpose,
//!   `coverage` (`if: always`) still runs and keeps an artifact that `report`
//!   downloads; the run ends `failed` with every job's status right.
//! - Coordination holds no run slot: many runs on a node with one slot all end.
//! - In a three-process cluster whose leader is killed, every run an event started
//!   ends once, and no job of it runs as a second execution.
//!
//! Every wait is on a condition with a deadline; nothing asserts on timing.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{
    agreed_leader, caught_up, eventually, free_port, launch_member, peers_arg, ports,
    send_anywhere, stderr, stdout, Server,
};
use serde_json::{json, Value};

/// Generous bound for elections, restarts and a PostgreSQL start on a loaded
/// 2-core machine.
const DEADLINE: Duration = Duration::from_secs(90);

/// The run once it has ended; `None` while it is active or the node does not answer.
async fn ended_run(server: &Server, id: &str) -> Option<Value> {
    let (status, run) = server.get(&format!("/v1/runs/{id}")).await;
    let state = run["status"].as_str()?;
    (status == 200 && !matches!(state, "queued" | "running")).then_some(run)
}

fn job_statuses(run: &Value) -> BTreeMap<String, String> {
    run["jobs"]
        .as_object()
        .map(|jobs| {
            jobs.iter()
                .map(|(name, j)| (name.clone(), j["status"].as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// The output of the single execution of `job` in `run`.
async fn job_output(server: &Server, run: &Value, job: &str) -> String {
    let executions = run["jobs"][job]["executions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(executions.len(), 1, "{job}: {run}");
    let id = executions[0].as_str().expect("execution id");
    let (status, text) = server
        .get_text(&format!("/v1/executions/{id}/output"))
        .await;
    assert_eq!(status, 200, "{text}");
    text
}

fn postgres_installed() -> bool {
    std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| {
            dirs.flatten()
                .any(|d| d.path().join("bin/postgres").exists())
        })
        .unwrap_or(false)
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ci_example_runs_tests_against_postgres_and_keeps_coverage_when_they_fail() {
    assert!(
        postgres_installed(),
        "this test needs PostgreSQL's server binaries (Debian's `postgresql` package; .ci/run installs it)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), &[]).await;
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let src = examples
        .join("ci-app")
        .canonicalize()
        .expect("examples/ci-app");
    let pg_port = free_port();
    // The example as shipped, pointed at this checkout and a free port, with a
    // test expectation that fails on purpose (the schema seeds two users).
    let text = std::fs::read_to_string(examples.join("ci-workflow.yaml")).expect("example");
    let edited = text
        .replace(
            "/srv/rota/examples/ci-app",
            src.to_str().expect("utf-8 path"),
        )
        .replace("PGPORT: \"55432\"", &format!("PGPORT: \"{pg_port}\""))
        .replace("EXPECTED_USERS: \"2\"", "EXPECTED_USERS: \"3\"");
    assert_ne!(edited, text);
    let file = tmp.path().join("ci.yaml");
    std::fs::write(&file, edited).unwrap();
    let out = server.cli(&["workflow", "apply", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));

    let (status, started) = server.send("POST", "/v1/workflows/ci/run", None).await;
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().expect("run id").to_string();
    let run = eventually(DEADLINE, "the CI run to end", || ended_run(&server, &id)).await;

    assert_eq!(run["status"], "failed", "{run}");
    let expected: BTreeMap<String, String> = [
        ("lint", "succeeded"),
        ("test", "failed"),
        ("coverage", "succeeded"),
        ("report", "succeeded"),
    ]
    .into_iter()
    .map(|(j, s)| (j.to_string(), s.to_string()))
    .collect();
    assert_eq!(job_statuses(&run), expected, "{run}");
    assert!(
        run["jobs"]["test"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("step tests"),
        "the failing step is named: {run}"
    );

    // The tests really ran against the service's database.
    let test_output = job_output(&server, &run, "test").await;
    assert!(
        test_output.contains("==> service db ready"),
        "{test_output}"
    );
    assert!(
        test_output.contains("users in the database: 2 (expected 3)"),
        "{test_output}"
    );
    assert!(
        !port_open(pg_port),
        "the database service was stopped after the job"
    );

    // Coverage was kept, listed and served, and `report` read it.
    let (status, artifacts) = server.get(&format!("/v1/runs/{id}/artifacts")).await;
    assert_eq!(status, 200, "{artifacts}");
    let items = artifacts["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "{artifacts}");
    assert_eq!(items[0]["name"], "coverage");
    let mut files: Vec<&str> = items[0]["files"]
        .as_array()
        .map(|f| f.iter().filter_map(|f| f["path"].as_str()).collect())
        .unwrap_or_default();
    files.sort();
    assert_eq!(files, ["index.html", "summary.txt"]);
    let (status, summary) = server
        .get_text(&format!("/v1/runs/{id}/artifacts/coverage/summary.txt"))
        .await;
    assert_eq!((status, summary.as_str()), (200, "lines: 87.5%\n"));
    let report = job_output(&server, &run, "report").await;
    assert!(report.contains("lines: 87.5%"), "{report}");

    // The CLI shows the same run.
    let out = server.cli(&["run", "get", &id, "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown: Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(job_statuses(&shown), expected);
}

fn chain(first: &str, second: &str) -> Value {
    json!({
        "schedule": {"manual": true},
        "jobs": {
            "a": {"executor": {"type": "shell", "command": first}},
            "b": {"needs": ["a"], "executor": {"type": "shell", "command": second}},
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_runs_end_on_a_node_with_one_slot() {
    // If waiting for its jobs took a slot, five runs on one slot would wait on each
    // other for ever; coordination happens in the state machine instead.
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), &["--max-running", "1"]).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let name = format!("chain-{i}");
        let (status, body) = server
            .send(
                "PUT",
                &format!("/v1/workflows/{name}"),
                Some(chain("true", "true")),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let (status, started) = server
            .send("POST", &format!("/v1/workflows/{name}/run"), None)
            .await;
        assert_eq!(status, 202, "{started}");
        ids.push(started["id"].as_str().expect("id").to_string());
    }
    for id in &ids {
        let run = eventually(DEADLINE, "every run to end", || ended_run(&server, id)).await;
        assert_eq!(run["status"], "succeeded", "{run}");
        assert!(
            job_statuses(&run).values().all(|s| s == "succeeded"),
            "{run}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_started_by_events_end_once_across_a_leader_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let ports = ports(3);
    let peers = peers_arg(&ports);
    let mut servers: Vec<Server> = (0..3)
        .map(|i| launch_member(tmp.path(), i as u64 + 1, ports[i], &peers, &[]))
        .collect();
    let leader = eventually(DEADLINE, "a leader", || agreed_leader(&servers)).await;
    // A job placed on the node about to be killed is lost with it; its retry runs
    // it again as the same execution, so a job never has a second execution.
    let retry = json!({"max_attempts": 5, "initial_delay": "100ms"});
    send_anywhere(
        &servers,
        DEADLINE,
        "PUT",
        "/v1/workflows/on-deploy",
        json!({
            "schedule": {"on": {"event": "deploy.finished"}},
            "concurrency": "queue",
            "jobs": {
                "build": {"executor": {"type": "shell", "command": "sleep 1"}, "retry": retry},
                "ship": {"needs": ["build"], "executor": {"type": "shell", "command": "true"}, "retry": retry},
            }
        }),
    )
    .await;
    let deploy = || json!({"type": "deploy.finished", "data": {}});
    let follower = (leader + 1) % 3;
    let (status, _) = servers[follower]
        .send("POST", "/v1/events", Some(deploy()))
        .await;
    assert_eq!(status, 202);
    let (status, _) = servers[follower]
        .send("POST", "/v1/events", Some(deploy()))
        .await;
    assert_eq!(status, 202);
    // Kill the leader while the first run is under way.
    eventually(DEADLINE, "a run to start", || async {
        let (_, runs) = servers[follower].get("/v1/workflows/on-deploy/runs").await;
        runs["items"]
            .as_array()
            .filter(|r| r.iter().any(|r| r["status"] == "running"))
            .map(|_| ())
    })
    .await;
    servers[leader].kill9();
    let survivor = (leader + 2) % 3;
    eventually(DEADLINE, "an event taken after the kill", || async {
        let (status, _) = servers[survivor]
            .send("POST", "/v1/events", Some(deploy()))
            .await;
        (status == 202).then_some(())
    })
    .await;
    servers[leader].relaunch();
    let new_leader = eventually(DEADLINE, "a leader after the kill", || {
        agreed_leader(&servers)
    })
    .await;
    for i in 0..3 {
        caught_up(&servers, DEADLINE, i, new_leader).await;
    }
    for server in &servers {
        let runs = eventually(DEADLINE, "every run to end", || async {
            let (status, body) = server.get("/v1/workflows/on-deploy/runs?limit=100").await;
            let runs = body["items"].as_array()?.clone();
            let ended = runs
                .iter()
                .all(|r| !matches!(r["status"].as_str(), Some("queued" | "running")));
            (status == 200 && runs.len() >= 3 && ended).then_some(runs)
        })
        .await;
        let mut per_event: BTreeMap<u64, usize> = BTreeMap::new();
        for run in &runs {
            assert_eq!(run["status"], "succeeded", "{run}");
            for (job, state) in run["jobs"].as_object().expect("jobs") {
                let executions = state["executions"].as_array().map_or(0, Vec::len);
                assert_eq!(
                    executions, 1,
                    "job {job} ran as more than one execution: {run}"
                );
            }
            let revision = run["event_revision"].as_u64().expect("event revision");
            *per_event.entry(revision).or_default() += 1;
        }
        assert!(
            per_event.values().all(|&n| n == 1),
            "an event started two runs: {runs:?}"
        );
    }
}
