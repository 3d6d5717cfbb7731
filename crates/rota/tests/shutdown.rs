//! A node's graceful stop with the real binary: on SIGTERM a leader hands its
//! leadership over first, the node takes no new runs, its running ones may finish
//! within `--shutdown-grace` (their outcomes committed as usual), the rest are
//! cancelled with the reason and retried elsewhere when their job's policy allows,
//! and the process exits 0.
//!
//! Every wait is on a condition with a deadline; nothing asserts on timing.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{agreed_leader, eventually, launch_member, peers_arg, ports, send_anywhere, Server};
use serde_json::{json, Value};

/// Generous bound for elections, restarts and runs on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(60);

/// Lines `node attempt` the runs appended to `sink`.
fn sink_lines(sink: &Path) -> Vec<(String, u64)> {
    std::fs::read_to_string(sink)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (node, attempt) = line.split_once(' ')?;
            Some((node.to_string(), attempt.trim().parse().ok()?))
        })
        .collect()
}

/// Waits until `sink` shows attempt `attempt` running; answers its node.
async fn attempt_started(sink: &Path, attempt: u64) -> String {
    eventually(
        DEADLINE,
        &format!("attempt {attempt} to start"),
        || async move {
            sink_lines(sink)
                .into_iter()
                .find(|(_, a)| *a == attempt)
                .map(|(node, _)| node)
        },
    )
    .await
}

/// Starts a run of `job` by hand through `server`; answers the execution id.
async fn run_job(server: &Server, job: &str) -> String {
    let (status, exec) = server
        .send("POST", &format!("/v1/jobs/{job}/run"), None)
        .await;
    assert!((200..300).contains(&status), "run {job}: {status} {exec}");
    exec["id"].as_str().expect("execution id").to_string()
}

async fn execution(server: &Server, id: &str) -> Value {
    let (status, e) = server.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(status, 200, "{e}");
    e
}

/// A one-node cluster with a job that appends `node attempt` to `sink`, then runs
/// `rest`.
async fn single_node_with_job(dir: &Path, grace: &str, rest: &str) -> (Server, String) {
    let server = Server::start(dir, &["--shutdown-grace", grace]).await;
    let sink = dir.join("sink.txt");
    let command = format!(
        "echo \"$ROTA_NODE $ROTA_ATTEMPT\" >> '{}'; {rest}",
        sink.display()
    );
    let (status, body) = server
        .send(
            "PUT",
            "/v1/jobs/work",
            Some(json!({
                "schedule": {"manual": true},
                "executor": {"type": "shell", "command": command},
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = run_job(&server, "work").await;
    attempt_started(&sink, 1).await;
    (server, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_ends_within_the_grace_is_recorded_as_it_ended() {
    let tmp = tempfile::tempdir().unwrap();
    let gate = tmp.path().join("gate");
    let command = format!(
        "while [ ! -e '{}' ]; do sleep 0.05; done; echo finished",
        gate.display()
    );
    let (mut server, id) = single_node_with_job(tmp.path(), "30s", &command).await;

    eprintln!("--- SIGTERM while the run waits: the node is no longer ready, the run may finish");
    server.terminate();
    eventually(DEADLINE, "/readyz to say the node is stopping", || async {
        let (code, body) = server.get("/readyz").await;
        (code == 503 && body["reason"].as_str()?.starts_with("stopping")).then_some(())
    })
    .await;
    std::fs::write(&gate, b"go").unwrap();
    let exit = server.wait_exit(DEADLINE).await;
    assert!(exit.success(), "exit {exit}:\n{}", server.logs());

    eprintln!("--- the outcome was committed before the exit");
    server.respawn();
    server.wait_ready().await;
    let e = execution(&server, &id).await;
    assert_eq!(e["status"], "succeeded", "{e}");
    assert_eq!(e["attempt"], 1, "{e}");
    let (_, output) = server
        .get_text(&format!("/v1/executions/{id}/output"))
        .await;
    assert!(output.contains("finished"), "{output}");
    let logs = server.logs();
    assert!(logs.contains("no runs left"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_longer_than_the_grace_is_cancelled_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut server, id) = single_node_with_job(tmp.path(), "1s", "exec sleep 600").await;

    eprintln!("--- SIGTERM while the run sleeps: the grace runs out first");
    server.terminate();
    let exit = server.wait_exit(DEADLINE).await;
    assert!(exit.success(), "exit {exit}:\n{}", server.logs());

    server.respawn();
    server.wait_ready().await;
    let e = execution(&server, &id).await;
    assert_eq!(e["status"], "cancelled", "{e}");
    assert_eq!(e["error"], "node shutting down (grace 1s ran out)", "{e}");
}

/// Nodes tagged with their own name, so a job can be pinned to one.
fn named_members(dir: &Path, grace: &str) -> Vec<Server> {
    named_members_with(dir, grace, &[])
}

/// [`named_members`] with more flags for every node.
fn named_members_with(dir: &Path, grace: &str, more: &[&str]) -> Vec<Server> {
    let p = ports(3);
    let peers = peers_arg(&p);
    (0..3)
        .map(|i| {
            let tag = format!("name=n{}", i + 1);
            let mut extra = vec!["--shutdown-grace", grace, "--tag", tag.as_str()];
            extra.extend_from_slice(more);
            launch_member(dir, i as u64 + 1, p[i], &peers, &extra)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_leader_hands_over_first_and_lets_its_run_finish() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = tmp.path().join("sink.txt");
    let release = tmp.path().join("release");
    let mut servers = named_members(tmp.path(), "1h");
    let leader = eventually(DEADLINE, "a first leader", || agreed_leader(&servers)).await;
    let name = format!("n{}", leader + 1);

    eprintln!("--- a run on the leader that ends when the test says so");
    let command = format!(
        "echo \"$ROTA_NODE $ROTA_ATTEMPT\" >> '{}'; while [ ! -e '{}' ]; do sleep 0.1; done",
        sink.display(),
        release.display()
    );
    let spec = json!({
        "schedule": {"manual": true},
        "tags": {"name": name},
        "executor": {"type": "shell", "command": command},
    });
    send_anywhere(&servers, DEADLINE, "PUT", "/v1/jobs/hold", spec).await;
    let id = run_job(&servers[leader], "hold").await;
    assert_eq!(attempt_started(&sink, 1).await, name);

    eprintln!("--- SIGTERM the leader: another node leads while it still runs");
    servers[leader].terminate();
    let now = eventually(DEADLINE, "another leader", || async {
        agreed_leader(&servers).await.filter(|l| *l != leader)
    })
    .await;
    assert!(
        servers[leader].is_running(),
        "the old leader exited before its run ended:\n{}",
        servers[leader].logs()
    );

    eprintln!("--- the cluster goes on: a KV write through the new leader");
    let (status, body) = servers[now]
        .send("PUT", "/v1/kv/during-grace", Some(json!({"value": "yes"})))
        .await;
    assert_eq!(status, 200, "{body}");

    eprintln!("--- the run ends: the stopping node commits it and exits 0");
    std::fs::write(&release, "").unwrap();
    let exit = servers[leader].wait_exit(DEADLINE).await;
    assert!(exit.success(), "exit {exit}:\n{}", servers[leader].logs());
    let e = eventually(DEADLINE, "the run's outcome", || async {
        let e = execution(&servers[now], &id).await;
        (e["status"] != "running").then_some(e)
    })
    .await;
    assert_eq!(e["status"], "succeeded", "{e}");
    assert_eq!(e["node"], name.as_str(), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cut_short_by_the_grace_is_cancelled_and_retried_on_another_node() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = tmp.path().join("sink.txt");
    let mut servers = named_members(tmp.path(), "1s");
    eventually(DEADLINE, "a first leader", || agreed_leader(&servers)).await;

    let command = format!(
        "echo \"$ROTA_NODE $ROTA_ATTEMPT\" >> '{}'; exec sleep 600",
        sink.display()
    );
    let spec = json!({
        "schedule": {"manual": true},
        "executor": {"type": "shell", "command": command},
        "retry": {"max_attempts": 2, "initial_delay": "1s", "jitter": false},
    });
    send_anywhere(&servers, DEADLINE, "PUT", "/v1/jobs/long", spec).await;
    let leader = eventually(DEADLINE, "a leader", || agreed_leader(&servers)).await;
    let id = run_job(&servers[leader], "long").await;
    let first = attempt_started(&sink, 1).await;
    let stopping: usize = first[1..].parse::<usize>().expect("node name n<id>") - 1;

    eprintln!("--- SIGTERM the node running the attempt ({first})");
    servers[stopping].terminate();
    let exit = servers[stopping].wait_exit(DEADLINE).await;
    assert!(exit.success(), "exit {exit}:\n{}", servers[stopping].logs());

    eprintln!("--- attempt 1 is cancelled with the reason; attempt 2 runs elsewhere");
    let second = attempt_started(&sink, 2).await;
    assert_ne!(second, first, "the retry ran on the stopped node");
    let survivor = (stopping + 1) % 3;
    let e = eventually(DEADLINE, "attempt 1 on record", || async {
        let e = execution(&servers[survivor], &id).await;
        (e["attempt"] == 2 && e["status"] == "running").then_some(e)
    })
    .await;
    let cut = &e["attempts"][0];
    assert_eq!(cut["attempt"], 1, "{e}");
    assert_eq!(cut["status"], "cancelled", "{e}");
    assert_eq!(cut["error"], "node shutting down (grace 1s ran out)", "{e}");
    assert_eq!(cut["node"], first.as_str(), "{e}");
    assert_eq!(e["node"], second.as_str(), "{e}");
}

/// The last node of a cluster going down has no quorum to tell the leader it
/// takes no new runs: with no run to wait for, it stops without waiting out its
/// (hour-long) grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_node_of_a_cluster_stops_without_waiting_out_the_grace() {
    let tmp = tempfile::tempdir().unwrap();
    let mut servers = named_members(tmp.path(), "1h");
    eventually(DEADLINE, "a first leader", || agreed_leader(&servers)).await;
    for (i, server) in servers.iter_mut().enumerate() {
        eprintln!("--- SIGTERM node {}", i + 1);
        server.terminate();
        let exit = server.wait_exit(DEADLINE).await;
        assert!(exit.success(), "exit {exit}:\n{}", server.logs());
    }
}

/// Regression: a run placed on a node ahead of its instant lost its record with its
/// job, yet stayed in the node's runs. On the leader it was stopped but never left
/// them, so a graceful stop waited out the whole grace for it; on a follower it was
/// not even stopped, and ran at its instant after its job was deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runs_placed_ahead_of_a_deleted_job_never_run_nor_hold_up_a_stop() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = tmp.path().join("sink.txt");
    // Runs are placed up to 10 s ahead; the instant is 8 s away, so both runs are
    // placed at once and the deletion comes well before it.
    let mut servers = named_members_with(tmp.path(), "1h", &["--fire-ahead", "10s"]);
    let leader = eventually(DEADLINE, "a first leader", || agreed_leader(&servers)).await;
    let follower = (leader + 1) % 3;
    let at = (chrono::Utc::now() + chrono::TimeDelta::seconds(8)).to_rfc3339();
    // (job, node it is pinned to)
    let jobs: Vec<(String, String)> = [leader, follower]
        .iter()
        .map(|i| (format!("ahead-n{}", i + 1), format!("n{}", i + 1)))
        .collect();
    for (job, node) in &jobs {
        let command = format!("echo \"$ROTA_NODE\" >> '{}'", sink.display());
        let spec = json!({
            "schedule": {"at": at},
            "tags": {"name": node},
            "executor": {"type": "shell", "command": command},
        });
        send_anywhere(&servers, DEADLINE, "PUT", &format!("/v1/jobs/{job}"), spec).await;
    }

    eprintln!("--- both runs are placed ahead: one on the leader, one on a follower");
    eventually(DEADLINE, "both runs placed ahead", || async {
        let (status, body) = servers[leader].get("/v1/executions?status=queued").await;
        assert_eq!(status, 200, "{body}");
        let placed = body["items"]
            .as_array()?
            .iter()
            .filter(|e| {
                jobs.iter()
                    .any(|(job, node)| e["job"] == job.as_str() && e["node"] == node.as_str())
            })
            .count();
        (placed == jobs.len()).then_some(())
    })
    .await;

    eprintln!("--- the jobs are deleted before their instant");
    for (job, _) in &jobs {
        send_anywhere(
            &servers,
            DEADLINE,
            "DELETE",
            &format!("/v1/jobs/{job}"),
            Value::Null,
        )
        .await;
    }

    eprintln!("--- SIGTERM the follower, then the leader: neither has a run to wait for");
    for i in [follower, leader] {
        servers[i].terminate();
        let exit = servers[i].wait_exit(DEADLINE).await;
        assert!(exit.success(), "exit {exit}:\n{}", servers[i].logs());
        let logs = servers[i].logs();
        assert!(logs.contains("no runs left"), "{logs}");
    }
    let ran = std::fs::read_to_string(&sink).unwrap_or_default();
    assert!(ran.is_empty(), "runs of deleted jobs ran on: {ran}");
}
