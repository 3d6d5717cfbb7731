//! The schedule checker: three `rota server` processes run jobs that fire every
//! second and append `(job, scheduled_at, attempt, node)` to a sink file, while the
//! leader is `kill -9`ed and restarted twice, then frozen with SIGSTOP until
//! another leader is elected and several instants have passed, then continued: it
//! wakes believing it leads, and fencing must keep it from firing or starting
//! anything. Afterwards, every instant between the
//! first and the last one fired was fired exactly once (one execution per instant,
//! none missing: the jobs catch up with `misfire: run_all`), no attempt ran twice,
//! and every instant either ran or is recorded as `lost` (its node died under it).
//! One job's runs take most of a second and are retried once, and each kill lands
//! in the middle of one: that attempt is finished as `lost` and runs again as
//! attempt 2. In the first round the killed node comes back at once and reports its
//! own lost attempt; in the second it stays down until the new leader, hearing no
//! heartbeat for the node timeout, finishes the attempt as lost itself.
//!
//! `ROTA_FAILOVER_ROUNDS=N` (at least 3) runs a soak: after those three rounds,
//! rounds alternate between a `kill -9` of the leader (at any moment, restarted at
//! once) and a freeze. One summary line goes to stderr.
//!
//! Every wait is on a condition with a deadline; nothing asserts on timing.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use common::{
    agreed_leader, caught_up, eventually, instant, launch_member, peers_arg, ports, runs_go_on,
    send_anywhere, settled_histories, sink_lines, Server,
};
use serde_json::{json, Value};

/// Generous bound for elections, restarts and catch-up on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(30);
const JOBS: [&str; 3] = ["tick-a", "tick-b", "slow"];

/// The default rounds: two kills, one freeze.
const FIXED_ROUNDS: u32 = 3;

/// What a round does to the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// `kill -9` while it runs a slow attempt; restart at once.
    KillMidRun,
    /// `kill -9` while it runs a slow attempt; stay down until the new leader
    /// presumes the attempt lost.
    KillStayDown,
    /// `kill -9` at whatever moment; restart at once (soak rounds).
    Kill,
    /// SIGSTOP until another leader is elected and instants have passed; SIGCONT.
    Freeze,
}

fn fault_of(round: u32) -> Fault {
    match round {
        1 => Fault::KillMidRun,
        2 => Fault::KillStayDown,
        3 => Fault::Freeze,
        r if r % 2 == 0 => Fault::Kill,
        _ => Fault::Freeze,
    }
}

async fn wait_for_leader(servers: &[Server], what: &str) -> usize {
    eventually(DEADLINE, what, || agreed_leader(servers)).await
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
async fn every_instant_fires_once_while_the_leader_is_killed_and_frozen() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = tmp.path().join("sink.txt");
    let rounds = std::env::var("ROTA_FAILOVER_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(FIXED_ROUNDS)
        .max(FIXED_ROUNDS);
    let p = ports(3);
    let peers = peers_arg(&p);
    let mut servers: Vec<Server> = (0..3)
        .map(|i| launch_member(tmp.path(), i as u64 + 1, p[i], &peers, &[]))
        .collect();
    wait_for_leader(&servers, "a first leader").await;

    eprintln!("--- three jobs fire every second, catching up whatever they miss");
    let command = format!(
        // The wall time and the execution id only serve a diagnosis.
        "echo \"$ROTA_JOB $ROTA_SCHEDULED_AT $ROTA_ATTEMPT $ROTA_NODE $(date +%H:%M:%S.%N) $ROTA_EXECUTION_ID\" >> '{}'",
        sink.display()
    );
    for job in JOBS {
        let mut spec = json!({
            "schedule": {"every": "1s"},
            "executor": {"type": "shell", "command": command},
            "misfire": "run_all",
            "catchup_window": "1h",
            "history_limit": 10_000,
        });
        if job == "slow" {
            spec["executor"]["command"] = json!(format!("sleep 0.7; {command}"));
            spec["retry"] = json!({"max_attempts": 2, "initial_delay": "1s", "jitter": false});
        }
        send_anywhere(&servers, DEADLINE, "PUT", &format!("/v1/jobs/{job}"), spec).await;
    }
    let mut seen = runs_go_on(&sink, 0, 6).await;

    let (mut kills, mut freezes) = (0u32, 0u32);
    for round in 1..=rounds {
        let fault = fault_of(round);
        // Leadership may have moved since the last round: aim at today's leader.
        let mut leader = wait_for_leader(&servers, "a leader all agree on").await;
        if fault == Fault::Freeze {
            eprintln!(
                "--- round {round}: SIGSTOP the leader (node {}) until another leads and instants pass",
                leader + 1
            );
            freezes += 1;
            servers[leader].pause();
            let frozen = leader;
            leader = wait_for_leader(&servers, "a leader while the old one is frozen").await;
            assert_ne!(leader, frozen, "a frozen node cannot lead");
            seen = runs_go_on(&sink, seen, 6).await;

            eprintln!("--- round {round}: SIGCONT: the old leader wakes believing it leads");
            servers[frozen].resume();
            leader = wait_for_leader(&servers, "every node to agree on one leader").await;
            caught_up(&servers, DEADLINE, frozen, leader).await;
            seen = runs_go_on(&sink, seen, 4).await;
            continue;
        }
        kills += 1;
        let caught = if fault == Fault::Kill {
            eprintln!(
                "--- round {round}: kill -9 the leader (node {})",
                leader + 1
            );
            None
        } else {
            eprintln!(
                "--- round {round}: kill -9 the leader (node {}) while it runs a slow attempt",
                leader + 1
            );
            Some(slow_run_starting_on(&servers[leader], &format!("n{}", leader + 1)).await)
        };
        servers[leader].kill9();
        let killed = leader;
        leader = wait_for_leader(&servers, "a new leader among the survivors").await;
        assert_ne!(leader, killed, "a killed node cannot lead");
        seen = runs_go_on(&sink, seen, 6).await;
        if let (Fault::KillStayDown, Some(caught)) = (fault, &caught) {
            eprintln!("--- round 2: the silent node's attempt is lost by the leader's timeout");
            let error = lost_attempt(&servers[leader], caught).await;
            assert_eq!(error, "the node running the attempt stopped reporting");
        }

        eprintln!("--- round {round}: the killed node restarts and catches up");
        servers[killed].relaunch();
        caught_up(&servers, DEADLINE, killed, leader).await;
        seen = runs_go_on(&sink, seen, 4).await;
    }

    eprintln!("--- pause the jobs and let every run end");
    for job in JOBS {
        send_anywhere(
            &servers,
            DEADLINE,
            "POST",
            &format!("/v1/jobs/{job}/pause"),
            json!({}),
        )
        .await;
    }
    let histories = settled_histories(&servers, &JOBS, DEADLINE).await;
    for s in servers.iter_mut() {
        assert!(s.is_running(), "a server exited:\n{}", s.logs());
    }
    // Every replica applied the same log: each node's own copy of the histories
    // (a read on a node answers from its replica once it applied what the
    // leader had committed) equals what the leader's says.
    let diverged = replicas_disagree(&servers, &histories).await;

    eprintln!("--- check: every instant fired exactly once, none ran twice");
    let lines = sink_lines(&sink);
    let mut runs: BTreeMap<(String, String, u32), Vec<String>> = BTreeMap::new();
    for (job, at, attempt, node) in &lines {
        runs.entry((job.clone(), instant(at).to_rfc3339(), *attempt))
            .or_default()
            .push(node.clone());
    }
    let twice: Vec<_> = runs.iter().filter(|(_, nodes)| nodes.len() > 1).collect();
    let nodes: BTreeSet<&str> = lines.iter().map(|l| l.3.as_str()).collect();

    // Counted first and asserted after the summary line, so a failing soak still
    // reports its figures.
    let mut problems = Vec::new();
    let (mut instants, mut repeated_total, mut missing_total) = (0, 0, 0);
    let (mut lost_total, mut retried_total) = (0, 0);
    for (job, history) in &histories {
        let mut by_instant: BTreeMap<DateTime<Utc>, Vec<&Value>> = BTreeMap::new();
        for e in history {
            let at = instant(e["scheduled_at"].as_str().expect("scheduled_at"));
            by_instant.entry(at).or_default().push(e);
        }
        let repeated: Vec<_> = by_instant.iter().filter(|(_, es)| es.len() > 1).collect();
        if !repeated.is_empty() {
            problems.push(format!("{job}: instants fired twice: {repeated:?}"));
        }
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
        if !missing.is_empty() {
            problems.push(format!("{job}: instants never fired: {missing:?}"));
        }
        for (at, es) in &by_instant {
            let e = es[0];
            let status = e["status"].as_str().unwrap_or_default();
            let ran = runs
                .keys()
                .any(|(j, when, _)| j == job && instant(when) == *at);
            if !(status == "succeeded" || status == "lost") {
                problems.push(format!("{job} at {at}: {e}"));
            }
            if !(ran || status == "lost") {
                problems.push(format!(
                    "{job} at {at} neither ran nor was recorded lost: {e}"
                ));
            }
        }
        let lost_attempts = history
            .iter()
            .filter_map(|e| e["attempts"].as_array())
            .flatten()
            .filter(|a| a["status"] == "lost")
            .count();
        let retried_after_loss = history
            .iter()
            .filter(|e| {
                e["attempt"].as_u64().is_some_and(|a| a >= 2)
                    && e["attempts"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|a| a["status"] == "lost"))
            })
            .count();
        eprintln!(
            "{job}: {} instants from {first} to {last}; {lost_attempts} attempts lost, {retried_after_loss} runs retried after a loss",
            by_instant.len()
        );
        if *job == "slow" && retried_after_loss < 2 {
            // Each of the first two kills caught a slow attempt: lost, then run again.
            problems.push(format!(
                "{job}: fewer than 2 runs retried after a loss: {history:?}"
            ));
        }
        instants += by_instant.len();
        repeated_total += repeated.len();
        missing_total += missing.len();
        lost_total += lost_attempts;
        retried_total += retried_after_loss;
    }
    report_slow_registrations(&servers, &histories);
    eprintln!(
        "schedule checker: rounds={rounds} kills={kills} freezes={freezes} instants={instants} \
         duplicates={repeated_total} missing={missing_total} attempts_twice={} lost={lost_total} \
         retried_after_loss={retried_total} nodes={}",
        twice.len(),
        nodes.len()
    );
    if !twice.is_empty() {
        // What it takes to tell why: the execution's record and every node's log
        // lines that name it (the servers' directories go with the test).
        for ((job, at, _), _) in &twice {
            let record = histories
                .iter()
                .filter(|(j, _)| **j == job.as_str())
                .flat_map(|(_, history)| history)
                .find(|e| e["scheduled_at"].as_str().map(instant) == Some(instant(at)));
            eprintln!("--- {job} at {at}: {record:?}");
            let Some(id) = record.and_then(|e| e["id"].as_str()) else {
                continue;
            };
            // Each node's own replica of the record: a replica that applied
            // something else than the others would show it here.
            for (i, server) in servers.iter().enumerate() {
                let (_, own) = server.get(&format!("/v1/executions/{id}?stale=true")).await;
                eprintln!("n{} replica: {own}", i + 1);
            }
            let raw = std::fs::read_to_string(&sink).unwrap_or_default();
            for line in raw.lines().filter(|l| l.contains(id)) {
                eprintln!("sink: {line}");
            }
            // The node's lives, leaderships and engines say when it could run what.
            let context = [
                id,
                "server start",
                "registered as a worker",
                "scheduler claimed",
                "no longer leading",
                "leading:",
                "rebuilding",
                "attempts of its earlier life lost",
            ];
            for (i, server) in servers.iter().enumerate() {
                for line in server
                    .logs()
                    .lines()
                    .filter(|l| context.iter().any(|c| l.contains(c)))
                {
                    eprintln!("n{}: {line}", i + 1);
                }
            }
        }
    }
    assert!(diverged.is_empty(), "replicas disagree: {diverged:#?}");
    assert!(twice.is_empty(), "attempts that ran twice: {twice:?}");
    assert!(nodes.len() >= 2, "runs moved with the leader: {nodes:?}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A write sent to a follower right after the leader froze is forwarded to the
/// frozen leader, which never answers. Once another node leads, the follower
/// gives up on the old one and the write (carrying a client session, so a repeat
/// is harmless) goes to the new leader: it succeeds while the old leader is still
/// frozen, instead of failing when the write timeout runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_forwarded_to_a_frozen_leader_goes_to_the_new_one() {
    let tmp = tempfile::tempdir().unwrap();
    let ports = ports(3);
    let peers = peers_arg(&ports);
    // An election takes at least half a second: the write, sent at once, reaches
    // the frozen leader before another one exists. Replacing it takes 1.5-2 s
    // (the lease, then a follower's own timeout) and more after a split vote,
    // within the 5 s (ten election timeouts) a write waits for a leader.
    let timing = [
        "--heartbeat-interval",
        "50ms",
        "--election-timeout",
        "500ms",
    ];
    let mut servers: Vec<Server> = (0..3)
        .map(|i| launch_member(tmp.path(), i as u64 + 1, ports[i], &peers, &timing))
        .collect();
    let leader = eventually(DEADLINE, "a leader", || agreed_leader(&servers)).await;
    let follower = (leader + 1) % 3;
    servers[leader].pause();
    let sent = std::time::Instant::now();
    let answer = common::client()
        .put(format!("{}/v1/kv/after-freeze", servers[follower].url))
        .header("Rota-Client-Id", "freeze-test")
        .header("Rota-Request-Seq", "1")
        .json(&json!({"value": "x"}))
        .send()
        .await
        .expect("an answer");
    let status = answer.status().as_u16();
    let body: Value = answer.json().await.unwrap_or(Value::Null);
    eprintln!("answered {status} after {:?}", sent.elapsed());
    assert!(servers[leader].is_paused(), "the old leader stayed frozen");
    assert_eq!(status, 200, "{body}");
    let now = eventually(DEADLINE, "the new leader", || agreed_leader(&servers)).await;
    assert_ne!(now, leader);
    let (_, read) = servers[now].get("/v1/kv/after-freeze").await;
    assert_eq!(read["value"], "x", "{read}");
    servers[leader].resume();
}

/// Diagnosis: how long each server start took to register as a worker (its
/// earlier life's attempts stay open until then), and how long lost attempts
/// stayed open; the log of a start that took more than 5 s is printed.
fn report_slow_registrations(servers: &[Server], histories: &BTreeMap<&str, Vec<Value>>) {
    let stamp = |line: &str| {
        line.split_whitespace()
            .next()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let mut longest = 0.0f64;
    for (i, server) in servers.iter().enumerate() {
        let logs = server.logs();
        for (start, section) in logs.split("--- server start ").skip(1).enumerate() {
            let first = section.lines().find_map(stamp);
            let registered = section
                .lines()
                .find(|l| l.contains("registered as a worker"))
                .and_then(stamp);
            let Some(first) = first else { continue };
            let took = registered.map(|r| (r - first).as_seconds_f64());
            longest = longest.max(took.unwrap_or(f64::INFINITY));
            if took.is_none_or(|t| t > 5.0) {
                eprintln!(
                    "--- n{} start {}: registered after {took:?} s",
                    i + 1,
                    start + 1
                );
                for line in section.lines().take(400) {
                    eprintln!("n{}: {line}", i + 1);
                }
            }
        }
    }
    let mut open_longest = 0.0f64;
    for history in histories.values() {
        for e in history {
            for a in e["attempts"].as_array().into_iter().flatten() {
                if a["status"] != "lost" {
                    continue;
                }
                let from = a["started_at"]
                    .as_str()
                    .or(e["scheduled_at"].as_str())
                    .map(instant);
                let to = a["finished_at"].as_str().map(instant);
                if let (Some(from), Some(to)) = (from, to) {
                    open_longest = open_longest.max((to - from).as_seconds_f64());
                }
            }
        }
    }
    eprintln!(
        "diagnosis: longest registration after a start {longest:.1} s, longest open lost attempt {open_longest:.1} s"
    );
}

/// The executions on which a node's replica and the histories read from the
/// leader differ: (node, the leader's record, the node's), by job.
async fn replicas_disagree(
    servers: &[Server],
    histories: &BTreeMap<&str, Vec<Value>>,
) -> Vec<(usize, Value, Option<Value>)> {
    let mut diverged = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        for (job, history) in histories {
            let own = common::full_history(server, job)
                .await
                .unwrap_or_else(|| panic!("n{}: the history of {job}", i + 1));
            let by_id: BTreeMap<&str, &Value> = own
                .iter()
                .filter_map(|e| Some((e["id"].as_str()?, e)))
                .collect();
            for e in history {
                let theirs = e["id"].as_str().and_then(|id| by_id.get(id));
                if theirs != Some(&e) {
                    diverged.push((i + 1, e.clone(), theirs.map(|v| (*v).clone())));
                }
            }
            if own.len() != history.len() {
                diverged.push((
                    i + 1,
                    json!({"job": job, "count": history.len()}),
                    Some(json!({"count": own.len()})),
                ));
            }
        }
    }
    eprintln!("replicas compared: {} records differ", diverged.len());
    diverged
}

/// A follower frozen (SIGSTOP) right after a run was placed on it ahead of its
/// instant, for longer than the node timeout: the leader finishes that attempt as
/// lost and retries it. The follower wakes after the instant, when its launch
/// timer has already fired and before it heard of the loss: it must not run the
/// lost attempt (out of touch that long, it confirms the start with the leader
/// first, which refuses it), only the retry placed on it afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_frozen_past_the_node_timeout_does_not_run_the_attempt_it_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = tmp.path().join("sink");
    let p = ports(3);
    let peers = peers_arg(&p);
    let mut servers: Vec<Server> = (0..3)
        .map(|i| {
            let tag = format!("node=n{}", i + 1);
            let extra = ["--node-timeout", "2s", "--fire-ahead", "5s", "--tag", &tag];
            launch_member(tmp.path(), i as u64 + 1, p[i], &peers, &extra)
        })
        .collect();
    let leader = wait_for_leader(&servers, "a first leader").await;
    let follower = (leader + 1) % 3;
    let name = format!("n{}", follower + 1);
    // Every run goes to the follower; each is placed there 5 s ahead.
    let command = format!(
        "echo \"$ROTA_EXECUTION_ID $ROTA_ATTEMPT $ROTA_NODE\" >> '{}'",
        sink.display()
    );
    let spec = json!({
        "schedule": {"every": "10s"},
        "executor": {"type": "shell", "command": command},
        "tags": {"node": name},
        "retry": {"max_attempts": 2, "initial_delay": "1s", "jitter": false},
    });
    send_anywhere(&servers, DEADLINE, "PUT", "/v1/jobs/placed", spec).await;

    let (id, at) = eventually(DEADLINE, "a run placed ahead on the follower", || async {
        let (_, page) = servers[leader]
            .get("/v1/jobs/placed/executions?limit=5")
            .await;
        let e = page["items"].as_array()?.iter().find(|e| {
            e["status"] == "queued"
                && e["node"] == json!(name)
                && e["scheduled_at"]
                    .as_str()
                    .is_some_and(|at| instant(at) > Utc::now() + TimeDelta::seconds(2))
        })?;
        Some((
            e["id"].as_str()?.to_string(),
            instant(e["scheduled_at"].as_str()?),
        ))
    })
    .await;
    servers[follower].pause();
    eventually(
        DEADLINE,
        "the frozen node's attempt to be lost, after its instant",
        || async {
            let (_, e) = servers[leader].get(&format!("/v1/executions/{id}")).await;
            let lost = e["attempts"][0]["status"] == "lost";
            (lost && Utc::now() > at + TimeDelta::milliseconds(500)).then_some(())
        },
    )
    .await;
    servers[follower].resume();

    // The retry (the only matching node is the follower) runs once it is back.
    let record = eventually(DEADLINE, "the execution to end", || async {
        let (_, e) = servers[leader].get(&format!("/v1/executions/{id}")).await;
        (!["queued", "running"].contains(&e["status"].as_str()?)).then_some(e)
    })
    .await;
    assert_eq!(record["status"], "succeeded", "{record}");
    assert_eq!(record["attempt"], 2, "{record}");
    assert_eq!(record["node"], json!(name), "{record}");
    assert!(record["attempts"][0]["started_at"].is_null(), "{record}");
    let ran: Vec<String> = std::fs::read_to_string(&sink)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(&id))
        .map(str::to_string)
        .collect();
    assert_eq!(ran, [format!("{id} 2 {name}")], "{record}");
}
