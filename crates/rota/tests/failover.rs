//! The schedule checker: three `rota server` processes run jobs that fire every
//! second and append `(job, scheduled_at, attempt, node)` to a sink file, while the
//! leader is `kill -9`ed and restarted twice. Afterwards, every instant between the
//! first and the last one fired was fired exactly once (one execution per instant,
//! none missing: the jobs catch up with `misfire: run_all`), no attempt ran twice,
//! and every instant either ran or is recorded as `lost` (its node died under it).
//! One job's runs take most of a second and are retried once, and each kill lands
//! in the middle of one: that attempt is finished as `lost` and runs again as
//! attempt 2. In the first round the killed node comes back at once and reports its
//! own lost attempt; in the second it stays down until the new leader, hearing no
//! heartbeat for the node timeout, finishes the attempt as lost itself.
//!
//! Every wait is on a condition with a deadline; nothing asserts on timing.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use common::{eventually, free_port, Server};
use serde_json::{json, Value};

/// Generous bound for elections, restarts and catch-up on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(30);
const JOBS: [&str; 3] = ["tick-a", "tick-b", "slow"];

fn ports(n: usize) -> Vec<u16> {
    let mut seen = BTreeSet::new();
    while seen.len() < n {
        seen.insert(free_port());
    }
    seen.into_iter().collect()
}

fn launch(dir: &Path, id: u64, port: u16, peers: &str) -> Server {
    let id = id.to_string();
    Server::launch(
        &dir.join(format!("n{id}")),
        port,
        &["--node-id", &id, "--peers", peers],
    )
}

/// The leader every running node agrees on (and that calls itself leader).
async fn agreed_leader(servers: &[Server]) -> Option<usize> {
    let mut leaders = BTreeSet::new();
    let mut leading = Vec::new();
    for s in servers.iter().filter(|s| s.is_launched()) {
        let health = s.health().await?;
        leaders.insert(health["leader"].as_u64()?);
        if health["role"] == "leader" {
            leading.push(health["node_id"].as_u64()?);
        }
    }
    match (leaders.len(), leading.as_slice()) {
        (1, [one]) if leaders.contains(one) => usize::try_from(one - 1).ok(),
        _ => None,
    }
}

async fn wait_for_leader(servers: &[Server], what: &str) -> usize {
    eventually(DEADLINE, what, || agreed_leader(servers)).await
}

/// Sends through whichever launched node answers 2xx (a follower forwards).
async fn send_anywhere(servers: &[Server], method: &str, path: &str, body: Value) -> Value {
    let mut turn = 0usize;
    eventually(DEADLINE, &format!("{method} {path}"), || {
        turn += 1;
        let server = &servers[turn % servers.len()];
        let body = body.clone();
        async move {
            if !server.is_launched() {
                return None;
            }
            let (status, answer) = server.send(method, path, Some(body)).await;
            (200..300).contains(&status).then_some(answer)
        }
    })
    .await
}

/// Lines of the sink: `(job, scheduled_at, attempt, node)`.
fn sink_lines(path: &Path) -> Vec<(String, String, u32, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let job = parts.next()?.to_string();
            let at = parts.next()?.to_string();
            let attempt = parts.next()?.parse().ok()?;
            let node = parts.next()?.to_string();
            Some((job, at, attempt, node))
        })
        .collect()
}

fn instant(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .with_timezone(&Utc)
}

/// Waits until the sink holds `more` lines beyond `after`.
async fn runs_go_on(sink: &Path, after: usize, more: usize) -> usize {
    eventually(DEADLINE, "runs to go on", || async move {
        let n = sink_lines(sink).len();
        (n >= after + more).then_some(n)
    })
    .await
}

/// Waits until the leader runs a `slow` attempt that started moments ago, so that a
/// kill now lands in the middle of it; answers its execution id and attempt.
async fn slow_run_starting_on(server: &Server, node: &str) -> (String, u64) {
    let what = "a slow run starting on the leader";
    eventually(DEADLINE, what, || async move {
        let (status, body) = server.get("/v1/jobs/slow/executions?limit=5").await;
        let items = match &body {
            Value::Array(items) => items.clone(),
            other => other["items"].as_array().cloned().unwrap_or_default(),
        };
        let fresh = items.iter().find(|e| {
            // A first attempt: a retry caught here would not be retried again.
            e["status"] == "running"
                && e["attempt"] == 1
                && e["node"] == node
                && e["started_at"]
                    .as_str()
                    .map(instant)
                    .is_some_and(|at| Utc::now() - at < TimeDelta::milliseconds(300))
        })?;
        let id = fresh["id"].as_str()?.to_string();
        (status == 200).then_some((id, fresh["attempt"].as_u64()?))
    })
    .await
}

/// Waits until attempt `attempt` of execution `id` is recorded as lost (an earlier
/// attempt may have been lost in an earlier round); answers its error.
async fn lost_attempt(server: &Server, (id, attempt): &(String, u64)) -> String {
    let what = "the killed node's attempt to be lost";
    eventually(DEADLINE, what, || async move {
        let (status, e) = server.get(&format!("/v1/executions/{id}")).await;
        let record = e["attempts"]
            .as_array()?
            .iter()
            .find(|a| a["attempt"].as_u64() == Some(*attempt))?
            .clone();
        (status == 200 && record["status"] == "lost")
            .then(|| record["error"].as_str().map(str::to_string))?
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instant_fires_once_while_the_leader_is_killed_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = tmp.path().join("sink.txt");
    let p = ports(3);
    let peers = (0..3)
        .map(|i| format!("{}=http://127.0.0.1:{}", i + 1, p[i]))
        .collect::<Vec<_>>()
        .join(",");
    let mut servers: Vec<Server> = (0..3)
        .map(|i| launch(tmp.path(), i as u64 + 1, p[i], &peers))
        .collect();
    let mut leader = wait_for_leader(&servers, "a first leader").await;

    eprintln!("--- three jobs fire every second, catching up whatever they miss");
    let command = format!(
        "echo \"$ROTA_JOB $ROTA_SCHEDULED_AT $ROTA_ATTEMPT $ROTA_NODE\" >> '{}'",
        sink.display()
    );
    for job in JOBS {
        let mut spec = json!({
            "schedule": {"every": "1s"},
            "executor": {"type": "shell", "command": command},
            "misfire": "run_all",
            "catchup_window": "1h",
            "history_limit": 1000,
        });
        if job == "slow" {
            spec["executor"]["command"] = json!(format!("sleep 0.7; {command}"));
            spec["retry"] = json!({"max_attempts": 2, "initial_delay": "1s", "jitter": false});
        }
        send_anywhere(&servers, "PUT", &format!("/v1/jobs/{job}"), spec).await;
    }
    let mut seen = runs_go_on(&sink, 0, 6).await;

    for round in 1..=2 {
        eprintln!(
            "--- round {round}: kill -9 the leader (node {}) while it runs a slow attempt",
            leader + 1
        );
        let caught = slow_run_starting_on(&servers[leader], &format!("n{}", leader + 1)).await;
        servers[leader].kill9();
        let killed = leader;
        leader = wait_for_leader(&servers, "a new leader among the survivors").await;
        assert_ne!(leader, killed, "a killed node cannot lead");
        seen = runs_go_on(&sink, seen, 6).await;
        if round == 2 {
            eprintln!("--- round 2: the silent node's attempt is lost by the leader's timeout");
            let error = lost_attempt(&servers[leader], &caught).await;
            assert_eq!(error, "the node running the attempt stopped reporting");
        }

        eprintln!("--- round {round}: the killed node restarts and catches up");
        servers[killed].relaunch();
        {
            let restarted = &servers[killed];
            let target = servers[leader]
                .health()
                .await
                .and_then(|h| h["last_applied"].as_u64())
                .unwrap_or(0);
            eventually(DEADLINE, "the restarted node to catch up", || async move {
                let applied = restarted.health().await?["last_applied"].as_u64()?;
                (applied >= target).then_some(())
            })
            .await;
        }
        seen = runs_go_on(&sink, seen, 4).await;
    }

    eprintln!("--- pause the jobs and let every run end");
    for job in JOBS {
        send_anywhere(
            &servers,
            "POST",
            &format!("/v1/jobs/{job}/pause"),
            json!({}),
        )
        .await;
    }
    let histories: BTreeMap<&str, Vec<Value>> = {
        let servers = &servers;
        eventually(DEADLINE, "no active execution left", || async move {
            let leader = agreed_leader(servers).await?;
            let mut all = BTreeMap::new();
            for job in JOBS {
                let history = servers[leader].history(job, 1000).await;
                let active = history
                    .iter()
                    .any(|e| e["status"] == "queued" || e["status"] == "running");
                if active {
                    return None;
                }
                all.insert(job, history);
            }
            Some(all)
        })
        .await
    };
    for s in servers.iter_mut() {
        assert!(s.is_running(), "a server exited:\n{}", s.logs());
    }

    eprintln!("--- check: every instant fired exactly once, none ran twice");
    let lines = sink_lines(&sink);
    let mut runs: BTreeMap<(String, String, u32), Vec<String>> = BTreeMap::new();
    for (job, at, attempt, node) in &lines {
        runs.entry((job.clone(), instant(at).to_rfc3339(), *attempt))
            .or_default()
            .push(node.clone());
    }
    let twice: Vec<_> = runs.iter().filter(|(_, nodes)| nodes.len() > 1).collect();
    assert!(twice.is_empty(), "attempts that ran twice: {twice:?}");
    let nodes: BTreeSet<&str> = lines.iter().map(|l| l.3.as_str()).collect();
    assert!(nodes.len() >= 2, "runs moved with the leader: {nodes:?}");

    for (job, history) in &histories {
        let mut by_instant: BTreeMap<DateTime<Utc>, Vec<&Value>> = BTreeMap::new();
        for e in history {
            let at = instant(e["scheduled_at"].as_str().expect("scheduled_at"));
            by_instant.entry(at).or_default().push(e);
        }
        let repeated: Vec<_> = by_instant.iter().filter(|(_, es)| es.len() > 1).collect();
        assert!(
            repeated.is_empty(),
            "{job}: instants fired twice: {repeated:?}"
        );
        let (first, last) = match (by_instant.keys().next(), by_instant.keys().last()) {
            (Some(first), Some(last)) => (*first, *last),
            _ => panic!("{job} never fired"),
        };
        let mut missing = Vec::new();
        let mut at = first;
        while at <= last {
            if !by_instant.contains_key(&at) {
                missing.push(at);
            }
            at += TimeDelta::seconds(1);
        }
        assert!(
            missing.is_empty(),
            "{job}: instants never fired: {missing:?}"
        );
        for (at, es) in &by_instant {
            let e = es[0];
            let status = e["status"].as_str().unwrap_or_default();
            let ran = runs
                .keys()
                .any(|(j, when, _)| j == job && instant(when) == *at);
            assert!(
                status == "succeeded" || status == "lost",
                "{job} at {at}: {e}"
            );
            assert!(
                ran || status == "lost",
                "{job} at {at} neither ran nor was recorded lost: {e}"
            );
        }
        let retried_after_loss = history
            .iter()
            .filter(|e| {
                e["attempt"] == 2
                    && e["attempts"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|a| a["status"] == "lost"))
            })
            .count();
        eprintln!(
            "{job}: {} instants from {first} to {last}, each fired once; {retried_after_loss} retried after a loss",
            by_instant.len()
        );
        if *job == "slow" {
            // Each kill caught a slow attempt: lost, then run again.
            assert!(retried_after_loss >= 2, "{job}: {history:?}");
        }
    }
}
