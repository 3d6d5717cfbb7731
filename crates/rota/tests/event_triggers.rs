//! End-to-end: event triggers fire once per matching event, on one node and in a
//! three-process cluster whose leader is killed; external events posted to a
//! follower are forwarded and trigger once.
//!
//! Every wait is on a condition with a deadline; nothing asserts on timing.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{
    agreed_leader, caught_up, eventually, launch_member, peers_arg, ports, send_anywhere, Server,
};
use serde_json::{json, Value};

/// Generous bound for elections, restarts and catch-up on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(30);

fn shell(command: &str) -> Value {
    json!({"type": "shell", "command": command})
}

/// The event (`event_revision`, `event_seq`) of every execution of `job`, with its
/// status, once every one of them ended; `None` while one is still active or the
/// node does not answer.
async fn finished_runs(server: &Server, job: &str) -> Option<Vec<((u64, u64), String)>> {
    let (status, page) = server
        .get(&format!("/v1/jobs/{job}/executions?limit=1000"))
        .await;
    if status != 200 {
        return None;
    }
    let mut runs = Vec::new();
    for e in page["items"].as_array()? {
        let status = e["status"].as_str()?.to_string();
        if matches!(status.as_str(), "queued" | "running") {
            return None;
        }
        // `event_seq` is left out when 0: the event was its entry's first.
        let event = (
            e["event_revision"].as_u64()?,
            e["event_seq"].as_u64().unwrap_or(0),
        );
        runs.push((event, status));
    }
    runs.sort();
    Some(runs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_on_execution_finished_runs_once_per_matching_run() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), &[]).await;
    for (name, command) in [("build", "true"), ("flaky", "false")] {
        let body = json!({"schedule": {"manual": true}, "executor": shell(command)});
        let (status, answer) = server
            .send("PUT", &format!("/v1/jobs/{name}"), Some(body))
            .await;
        assert_eq!(status, 201, "{answer}");
    }
    for (name, job) in [("after-build", "build"), ("after-flaky", "flaky")] {
        let body = json!({
            "schedule": {"on": {"event": "execution.finished", "job": job, "status": "succeeded"}},
            "executor": shell("true"),
        });
        let (status, answer) = server
            .send("PUT", &format!("/v1/jobs/{name}"), Some(body))
            .await;
        assert_eq!(status, 201, "{answer}");
    }

    // The failing run ends first; the engine handles events in order, so once the
    // builds' followers ran, flaky's end was seen and matched nothing.
    let (status, answer) = server.send("POST", "/v1/jobs/flaky/run", None).await;
    assert_eq!(status, 202, "{answer}");
    eventually(DEADLINE, "flaky to fail", || async {
        let runs = server.history("flaky", 10).await;
        (runs.len() == 1 && runs[0]["status"] == "failed").then_some(())
    })
    .await;
    // Both builds may end in one log entry (their finishes committed together):
    // its two events share a revision and still fire a run each.
    for _ in 0..2 {
        let (status, answer) = server.send("POST", "/v1/jobs/build/run", None).await;
        assert_eq!(status, 202, "{answer}");
    }
    let runs = eventually(DEADLINE, "two runs of after-build", || async {
        finished_runs(&server, "after-build")
            .await
            .filter(|r| r.len() >= 2)
    })
    .await;
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_ne!(runs[0].0, runs[1].0, "one run per build's event: {runs:?}");
    assert!(runs.iter().all(|(_, s)| s == "succeeded"), "{runs:?}");
    assert_eq!(
        finished_runs(&server, "after-flaky").await,
        Some(Vec::new()),
        "a failed run does not match status succeeded"
    );
    // The triggered runs say what fired them.
    let history = server.history("after-build", 10).await;
    assert!(
        history.iter().all(|e| e["trigger"] == "event"),
        "{history:?}"
    );
}

/// Posts `{"type": "deploy.finished", "data": {"env": env}}` to `server`; the
/// revision on 202, `None` on any other answer.
async fn post_deploy(server: &Server, env: &str) -> Option<u64> {
    let body = json!({"type": "deploy.finished", "data": {"env": env}});
    let (status, answer) = server.send("POST", "/v1/events", Some(body)).await;
    (status == 202)
        .then(|| answer["revision"].as_u64())
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_events_trigger_once_through_a_follower_and_across_a_leader_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let ports = ports(3);
    let peers = peers_arg(&ports);
    let mut servers: Vec<Server> = (0..3)
        .map(|i| launch_member(tmp.path(), i as u64 + 1, ports[i], &peers, &[]))
        .collect();
    let leader = eventually(DEADLINE, "a leader", || agreed_leader(&servers)).await;
    send_anywhere(
        &servers,
        DEADLINE,
        "PUT",
        "/v1/jobs/on-deploy",
        // A run placed on the node about to be killed is lost with it; the retry
        // runs it again as the same execution.
        json!({
            "schedule": {"on": {"event": "deploy.finished", "data": {"env": "prod"}}},
            "executor": shell("true"),
            "retry": {"max_attempts": 3, "initial_delay": "100ms"},
        }),
    )
    .await;

    // Posted to a follower: forwarded to the leader, fired once. The non-matching
    // event goes first: events are handled in order, so once the matching one has
    // run, the other was seen and fired nothing.
    let follower = (leader + 1) % 3;
    post_deploy(&servers[follower], "dev")
        .await
        .expect("a follower takes the event");
    let mut acked = Vec::new();
    acked.push(
        post_deploy(&servers[follower], "prod")
            .await
            .expect("a follower takes the event"),
    );
    let runs = eventually(DEADLINE, "the first triggered run", || async {
        finished_runs(&servers[leader], "on-deploy")
            .await
            .filter(|r| !r.is_empty())
    })
    .await;
    assert_eq!(runs, vec![((acked[0], 0), "succeeded".to_string())]);

    // Kill the leader and post right away to the survivors: the events commit once
    // a new leader exists, and each fires once whichever engine sees it.
    servers[leader].kill9();
    let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    for round in 0..3 {
        let target = &servers[survivors[round % 2]];
        let revision = eventually(DEADLINE, "an event taken after the kill", || {
            post_deploy(target, "prod")
        })
        .await;
        acked.push(revision);
    }
    servers[leader].relaunch();
    let new_leader = eventually(DEADLINE, "a leader after the kill", || {
        agreed_leader(&servers)
    })
    .await;
    for i in 0..3 {
        caught_up(&servers, DEADLINE, i, new_leader).await;
    }

    // Exactly one run per acknowledged matching event, on every node. A retried
    // post (no session) may have added an event of its own: it fires once too, so
    // every event that fired fired once, and every acknowledged one fired.
    for server in &servers {
        let runs = eventually(DEADLINE, "every acknowledged event to fire", || async {
            finished_runs(server, "on-deploy")
                .await
                .filter(|r| acked.iter().all(|a| r.iter().any(|((rev, _), _)| rev == a)))
        })
        .await;
        let mut per_event: BTreeMap<(u64, u64), usize> = BTreeMap::new();
        for (event, status) in &runs {
            assert_eq!(status, "succeeded", "{runs:?}");
            *per_event.entry(*event).or_default() += 1;
        }
        assert!(
            per_event.values().all(|&n| n == 1),
            "an event fired twice: {runs:?}"
        );
    }
}
