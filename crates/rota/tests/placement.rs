//! Runs on other nodes: three `rota server` processes, two of them tagged
//! `zone=x` and one of those also `pin=only`. A job's `tags` decide where its runs
//! go, whichever node leads: a pinned job runs on its one node, and its output is
//! readable through every node. A zoned run whose node is `kill -9`ed under it is
//! finished as `lost` once the node stays silent for the node timeout, and its retry
//! runs on the other zoned node; the killed node, restarted, registers anew and
//! takes runs again.
//!
//! Every wait is on a condition with a deadline; nothing asserts on timing.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{eventually, launch_member, peers_arg, ports, send_anywhere, Server};
use serde_json::{json, Value};

/// Generous bound for elections, restarts and node timeouts on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(60);

fn launch(dir: &Path, id: u64, port: u16, peers: &str, tags: &[&str]) -> Server {
    let mut args = vec!["--node-timeout", "2s"];
    for tag in tags {
        args.extend_from_slice(&["--tag", tag]);
    }
    launch_member(dir, id, port, peers, &args)
}

/// The execution as any answering node reports it (stale reads are fine here:
/// the waits below re-read until the condition holds).
async fn execution(servers: &[Server], id: &str) -> Option<Value> {
    for server in servers.iter().filter(|s| s.is_launched()) {
        if server.health().await.is_none() {
            continue;
        }
        let (status, body) = server.get(&format!("/v1/executions/{id}")).await;
        if status == 200 {
            return Some(body);
        }
    }
    None
}

async fn wait_execution(
    servers: &[Server],
    id: &str,
    what: &str,
    cond: impl Fn(&Value) -> bool,
) -> Value {
    eventually(DEADLINE, what, || async {
        let e = execution(servers, id).await?;
        cond(&e).then_some(e)
    })
    .await
}

/// The worker incarnation of `node` as a node with a leader reports it.
async fn incarnation(servers: &[Server], node: &str) -> String {
    eventually(DEADLINE, &format!("the incarnation of {node}"), || async {
        for server in servers.iter().filter(|s| s.is_launched()) {
            if server.health().await.is_none() {
                continue;
            }
            let (status, view) = server.get("/v1/cluster").await;
            if status != 200 {
                continue;
            }
            let found = view["workers"]
                .as_array()?
                .iter()
                .find(|w| w["node"] == node)?["incarnation"]
                .as_str()?
                .to_string();
            return Some(found);
        }
        None
    })
    .await
}

fn node_index(name: &str) -> usize {
    name.trim_start_matches('n')
        .parse::<usize>()
        .expect("node name n<id>")
        - 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_follow_job_tags_and_a_dead_workers_run_is_retried_elsewhere() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = ports(3);
    let peers = peers_arg(&p);
    let mut servers = vec![
        launch(tmp.path(), 1, p[0], &peers, &[]),
        launch(tmp.path(), 2, p[1], &peers, &["zone=x", "pin=only"]),
        launch(tmp.path(), 3, p[2], &peers, &["zone=x"]),
    ];

    // A pinned job runs on n2, whoever leads, as often as it is asked to.
    send_anywhere(
        &servers,
        DEADLINE,
        "PUT",
        "/v1/jobs/pinned",
        json!({
            "name": "pinned",
            "schedule": {"manual": true},
            "tags": {"pin": "only"},
            "executor": {"type": "shell", "command": "echo ran on $ROTA_NODE"},
        }),
    )
    .await;
    for round in 0..3 {
        let run = send_anywhere(&servers, DEADLINE, "POST", "/v1/jobs/pinned/run", json!({})).await;
        let id = run["id"].as_str().expect("execution id").to_string();
        let done = wait_execution(&servers, &id, "pinned run succeeded", |e| {
            e["status"] == "succeeded"
        })
        .await;
        assert_eq!(done["node"], "n2", "round {round}: {done}");
        for server in &servers {
            let (status, output) = server
                .get_text(&format!("/v1/executions/{id}/output"))
                .await;
            assert_eq!(status, 200, "output through {}", server.url);
            assert_eq!(output.trim(), "ran on n2", "output through {}", server.url);
        }
    }

    // The CLI lists the workers with their tags.
    let listed = eventually(DEADLINE, "n2 listed as a worker with its tags", || async {
        let out = servers[0].cli(&["cluster", "status"]);
        let text = common::stdout(&out);
        (out.status.success()
            && text.contains("WORKER")
            && text
                .lines()
                .any(|l| l.starts_with("n2") && l.contains("pin=only,zone=x")))
        .then_some(text)
    })
    .await;
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("n3") || l.starts_with("n1")),
        "{listed}"
    );

    // Its live output streams through a node that does not run it: the run prints,
    // then waits for a gate the test opens only after reading that first line.
    let gate = tmp.path().join("gate");
    send_anywhere(
        &servers,
        DEADLINE,
        "PUT",
        "/v1/jobs/gated",
        json!({
            "name": "gated",
            "schedule": {"manual": true},
            "tags": {"pin": "only"},
            "executor": {"type": "shell", "command": format!(
                "echo first; while [ ! -e '{}' ]; do sleep 0.05; done; echo second",
                gate.display()
            )},
        }),
    )
    .await;
    let run = send_anywhere(&servers, DEADLINE, "POST", "/v1/jobs/gated/run", json!({})).await;
    let id = run["id"].as_str().expect("execution id").to_string();
    wait_execution(&servers, &id, "gated run running", |e| {
        e["status"] == "running"
    })
    .await;
    let mut follow = common::client()
        .get(format!(
            "{}/v1/executions/{id}/output?follow=true",
            servers[0].url
        ))
        .send()
        .await
        .expect("follow through n1");
    assert_eq!(follow.status(), 200);
    let mut seen = String::new();
    while !seen.contains("first") {
        let chunk = tokio::time::timeout(DEADLINE, follow.chunk())
            .await
            .expect("output in time")
            .expect("chunk")
            .expect("the stream ended before the first line");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let still = execution(&servers, &id).await.expect("execution");
    assert_eq!(
        still["status"], "running",
        "the gate holds the run: {still}"
    );
    std::fs::write(&gate, b"open").expect("open the gate");
    while let Some(chunk) = tokio::time::timeout(DEADLINE, follow.chunk())
        .await
        .expect("output in time")
        .expect("chunk")
    {
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert_eq!(seen, "first\nsecond\n", "followed through n1");

    // A zoned run: the first attempt hangs on whichever zoned node got it; that node
    // is killed; the retry runs on the other zoned node.
    send_anywhere(
        &servers,
        DEADLINE,
        "PUT",
        "/v1/jobs/zoned",
        json!({
            "name": "zoned",
            "schedule": {"manual": true},
            "tags": {"zone": "x"},
            "retry": {"max_attempts": 2, "initial_delay": "100ms", "jitter": false},
            "executor": {
                "type": "shell",
                "command": "if [ \"$ROTA_ATTEMPT\" = 1 ]; then sleep 300; fi; echo attempt $ROTA_ATTEMPT on $ROTA_NODE",
            },
        }),
    )
    .await;
    let run = send_anywhere(&servers, DEADLINE, "POST", "/v1/jobs/zoned/run", json!({})).await;
    let id = run["id"].as_str().expect("execution id").to_string();
    let first = wait_execution(&servers, &id, "first zoned attempt running", |e| {
        e["status"] == "running" && e["attempt"] == 1
    })
    .await;
    let first_node = first["node"].as_str().expect("node").to_string();
    assert!(
        first_node == "n2" || first_node == "n3",
        "a zoned run went to {first_node}"
    );
    let victim = node_index(&first_node);
    let before = incarnation(&servers, &first_node).await;
    servers[victim].kill9();

    let done = wait_execution(&servers, &id, "zoned run retried and succeeded", |e| {
        e["status"] == "succeeded"
    })
    .await;
    let second_node = done["node"].as_str().expect("node").to_string();
    assert_eq!(done["attempt"], 2, "{done}");
    assert_ne!(
        second_node, first_node,
        "the retry went to the dead node: {done}"
    );
    assert!(second_node == "n2" || second_node == "n3", "{done}");
    let attempts = done["attempts"].as_array().expect("attempts");
    assert_eq!(attempts[0]["status"], "lost", "{done}");
    assert_eq!(attempts[0]["node"], first_node.as_str(), "{done}");

    // The killed node comes back, registers anew, and is given runs again.
    servers[victim].relaunch();
    eventually(DEADLINE, "the restarted node registered anew", || async {
        let now = incarnation(&servers, &first_node).await;
        (now != before).then_some(())
    })
    .await;
    if first_node == "n2" {
        let run = send_anywhere(&servers, DEADLINE, "POST", "/v1/jobs/pinned/run", json!({})).await;
        let id = run["id"].as_str().expect("execution id").to_string();
        let done = wait_execution(&servers, &id, "pinned run after the restart", |e| {
            e["status"] == "succeeded"
        })
        .await;
        assert_eq!(done["node"], "n2", "{done}");
    } else {
        // n3 only shares `zone=x` with n2: fill n2 with a long zoned run so the next
        // one has to go to n3 (least loaded).
        let busy = send_anywhere(&servers, DEADLINE, "POST", "/v1/jobs/zoned/run", json!({})).await;
        let busy_id = busy["id"].as_str().expect("execution id").to_string();
        let busy_run = wait_execution(&servers, &busy_id, "a zoned run started", |e| {
            e["status"] == "running"
        })
        .await;
        let other = if busy_run["node"] == "n2" { "n3" } else { "n2" };
        let next = send_anywhere(&servers, DEADLINE, "POST", "/v1/jobs/zoned/run", json!({})).await;
        let next_id = next["id"].as_str().expect("execution id").to_string();
        let next_run = wait_execution(&servers, &next_id, "a second zoned run started", |e| {
            e["status"] == "running"
        })
        .await;
        assert_eq!(next_run["node"], other, "{next_run}");
        for id in [busy_id, next_id] {
            send_anywhere(
                &servers,
                DEADLINE,
                "POST",
                &format!("/v1/executions/{id}/cancel"),
                json!({}),
            )
            .await;
        }
    }
    for server in &mut servers {
        server.stop();
    }
}
