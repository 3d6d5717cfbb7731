//! Upgrades with the real binary.
//!
//! A rolling upgrade: a three-node cluster of an earlier release (the binary named
//! by `ROTA_OLD_BIN`; `.ci/run` builds one from a pinned commit) runs jobs that
//! fire every second and holds KV data; one node at a time is stopped with SIGTERM
//! (it must exit 0) and started again with this build on the same data directory,
//! and must become ready. Afterwards every job fired each instant exactly once (none
//! missing: they catch up with `misfire: run_all`), no attempt ran twice, the KV
//! data is intact on every node, and the cluster has one leader. Without
//! `ROTA_OLD_BIN` it says it was skipped and passes.
//!
//! And a data directory of a newer format is refused with a message naming the
//! file, both versions and what to do, and left as it was.
//!
//! Every wait is on a condition with a deadline; nothing asserts on timing.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use common::{
    agreed_leader, eventually, instant, launch_member_bin, peers_arg, ports, runs_go_on,
    send_anywhere, settled_histories, sink_lines, Server, BIN,
};
use serde_json::{json, Value};

/// Generous bound for elections, restarts and catch-up on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(60);
const JOBS: [&str; 2] = ["tick-a", "tick-b"];
const KEYS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_upgrade_keeps_every_job_firing_once_and_the_data_intact() {
    let Some(old) = std::env::var_os("ROTA_OLD_BIN").map(PathBuf::from) else {
        eprintln!(
            "skipped: ROTA_OLD_BIN is not set (the path of an earlier release's rota binary; \
             .ci/run builds one)"
        );
        return;
    };
    assert!(
        old.is_file(),
        "ROTA_OLD_BIN {} is not a file",
        old.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let sink = tmp.path().join("sink.txt");
    let p = ports(3);
    let peers = peers_arg(&p);
    let mut servers: Vec<Server> = (0..3)
        .map(|i| launch_member_bin(&old, tmp.path(), i as u64 + 1, p[i], &peers, &[]))
        .collect();
    eventually(DEADLINE, "a first leader", || agreed_leader(&servers)).await;

    eprintln!("--- the old release runs jobs that fire every second, and holds KV data");
    let command = format!(
        "echo \"$ROTA_JOB $ROTA_SCHEDULED_AT $ROTA_ATTEMPT $ROTA_NODE\" >> '{}'",
        sink.display()
    );
    for job in JOBS {
        let spec = json!({
            "schedule": {"every": "1s"},
            "executor": {"type": "shell", "command": command},
            "misfire": "run_all",
            "catchup_window": "1h",
            "history_limit": 10_000,
        });
        send_anywhere(&servers, DEADLINE, "PUT", &format!("/v1/jobs/{job}"), spec).await;
    }
    let kv: BTreeMap<String, String> = (0..KEYS)
        .map(|i| (format!("upgrade/{i:03}"), format!("value-{i}")))
        .collect();
    for (key, value) in &kv {
        let body = json!({ "value": value });
        send_anywhere(&servers, DEADLINE, "PUT", &format!("/v1/kv/{key}"), body).await;
    }
    let mut seen = runs_go_on(&sink, 0, 6).await;

    for i in 0..servers.len() {
        let leader = eventually(DEADLINE, "a leader all agree on", || {
            agreed_leader(&servers)
        })
        .await;
        eprintln!(
            "--- node {} ({}): SIGTERM, then this build on the same data",
            i + 1,
            if i == leader {
                "the leader"
            } else {
                "a follower"
            }
        );
        servers[i].terminate();
        let exit = servers[i].wait_exit(DEADLINE).await;
        assert!(exit.success(), "exit {exit}:\n{}", servers[i].logs());
        servers[i].use_bin(Path::new(BIN));
        servers[i].respawn();
        servers[i].wait_readyz(DEADLINE).await;
        eventually(DEADLINE, "one leader", || agreed_leader(&servers)).await;
        seen = runs_go_on(&sink, seen, 4).await;
    }

    // While an older node was registered, every instant fired at its time; now
    // that every node says it can, runs are placed on their node ahead of time.
    eprintln!("--- every node runs this build: runs are placed ahead of their instant");
    let leader = eventually(DEADLINE, "one leader", || agreed_leader(&servers)).await;
    let placed = eventually(
        DEADLINE,
        "a run placed on its node ahead of its instant",
        || {
            let server = &servers[leader];
            async move {
                let (status, body) = server.get("/v1/jobs/tick-a/executions?limit=5").await;
                let items = match &body {
                    Value::Array(items) => items.clone(),
                    other => other["items"].as_array().cloned().unwrap_or_default(),
                };
                (status == 200)
                    .then(|| {
                        items.into_iter().find(|e| {
                            e["status"] == "queued"
                                && e["node"].is_string()
                                && e["started_at"].is_null()
                        })
                    })
                    .flatten()
            }
        },
    )
    .await;
    // Only a fire committed ahead records a queued run on a node.
    eprintln!("placed ahead: {placed}");

    eprintln!("--- pause the jobs and let every run end");
    for job in JOBS {
        let path = format!("/v1/jobs/{job}/pause");
        send_anywhere(&servers, DEADLINE, "POST", &path, json!({})).await;
    }
    let histories = settled_histories(&servers, &JOBS, DEADLINE).await;

    eprintln!("--- check: every instant fired exactly once, none ran twice");
    let lines = sink_lines(&sink);
    let mut runs: BTreeMap<(String, DateTime<Utc>, u32), Vec<String>> = BTreeMap::new();
    for (job, at, attempt, node) in &lines {
        runs.entry((job.clone(), instant(at), *attempt))
            .or_default()
            .push(node.clone());
    }
    let twice: Vec<_> = runs.iter().filter(|(_, nodes)| nodes.len() > 1).collect();
    assert!(twice.is_empty(), "attempts that ran twice: {twice:?}");
    let mut problems = Vec::new();
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
        let mut at = first;
        while at <= last {
            if !by_instant.contains_key(&at) {
                problems.push(format!("{job}: instant {at} never fired"));
            }
            at += TimeDelta::seconds(1);
        }
        for (at, es) in &by_instant {
            let status = es[0]["status"].as_str().unwrap_or_default();
            // A run cut off by the old release's stop is found lost (or, by this
            // build, cancelled with the reason); every other one succeeded.
            if !matches!(status, "succeeded" | "lost" | "cancelled") {
                problems.push(format!("{job} at {at}: {}", es[0]));
            }
        }
        eprintln!(
            "{job}: {} instants from {first} to {last}",
            by_instant.len()
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    eprintln!("--- check: the KV data is intact on every node, one leader");
    for server in &servers {
        for (key, value) in &kv {
            let (status, body) = server.get(&format!("/v1/kv/{key}")).await;
            assert_eq!(status, 200, "{key} on {}: {body}", server.url);
            assert_eq!(body["value"], value.as_str(), "{key} on {}", server.url);
        }
    }
    let leader = agreed_leader(&servers).await;
    assert!(leader.is_some(), "no single leader at the end");
    let leading: BTreeSet<u64> = {
        let mut leading = BTreeSet::new();
        for server in &servers {
            let health = server.health().await.expect("health");
            if health["role"] == "leader" {
                leading.insert(health["node_id"].as_u64().expect("node_id"));
            }
        }
        leading
    };
    assert_eq!(leading.len(), 1, "leaders: {leading:?}");

    eprintln!("--- check: each node's Raft log moved out of its redb file into segments");
    for server in &mut servers {
        server.terminate();
        let exit = server.wait_exit(DEADLINE).await;
        assert!(exit.success(), "exit {exit}:\n{}", server.logs());
        assert_eq!(
            former_log_entries(&server.data_dir),
            0,
            "entries left in the redb log of {}",
            server.data_dir.display()
        );
        let segments = std::fs::read_dir(server.data_dir.join("raft-log"))
            .expect("raft-log/")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "wal"))
            })
            .count();
        assert!(
            segments > 0,
            "no log segment in {}",
            server.data_dir.display()
        );
    }
}

/// Entries still in the `log` table of the Raft log's redb file (where releases
/// before the segment files kept them).
fn former_log_entries(data_dir: &Path) -> u64 {
    use redb::{ReadableDatabase, ReadableTableMetadata};
    let db = redb::Database::open(data_dir.join("raft-log.redb")).expect("open raft-log.redb");
    let txn = db.begin_read().expect("read");
    let log: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("log");
    txn.open_table(log).expect("log table").len().expect("len")
}

/// The format version of the state file in `data_dir` (the `format` key of its
/// `meta` table, a big-endian u32).
fn state_format(data_dir: &Path) -> u32 {
    use redb::ReadableDatabase;
    let db = redb::Database::open(data_dir.join("state.redb")).expect("open state.redb");
    let txn = db.begin_read().expect("read");
    let meta: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
    let table = txn.open_table(meta).expect("meta table");
    let bytes = table.get("format").expect("get").expect("a format version");
    u32::from_be_bytes(bytes.value().try_into().expect("4 bytes"))
}

fn set_state_format(data_dir: &Path, version: u32) {
    let db = redb::Database::open(data_dir.join("state.redb")).expect("open state.redb");
    let txn = db.begin_write().expect("write");
    {
        let meta: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
        let mut table = txn.open_table(meta).expect("meta table");
        table
            .insert("format", version.to_be_bytes().as_slice())
            .expect("insert");
    }
    txn.commit().expect("commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_of_a_newer_format_is_refused_with_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(tmp.path(), &[]).await;
    let (status, body) = server
        .send("PUT", "/v1/kv/kept", Some(json!({"value": "yes"})))
        .await;
    assert_eq!(status, 200, "{body}");
    server.terminate();
    let exit = server.wait_exit(DEADLINE).await;
    assert!(exit.success(), "exit {exit}:\n{}", server.logs());

    eprintln!("--- the state file says a later release wrote it");
    let data_dir = server.data_dir.clone();
    let supported = state_format(&data_dir);
    let newer = supported + 1;
    set_state_format(&data_dir, newer);

    server.respawn();
    let exit = server.wait_exit(DEADLINE).await;
    assert!(
        !exit.success(),
        "a newer format was accepted:\n{}",
        server.logs()
    );
    let logs = server.logs();
    let expected = format!(
        "the state file {} has format version {newer}; this release reads version {supported}: \
         it was written by a newer release of rota",
        data_dir.join("state.redb").display()
    );
    assert!(logs.contains(&expected), "{logs}");

    eprintln!("--- nothing was rewritten: back at its format, it opens as before");
    assert_eq!(
        state_format(&data_dir),
        newer,
        "the refused format was overwritten"
    );
    set_state_format(&data_dir, supported);
    server.respawn();
    server.wait_ready().await;
    let (status, body) = server.get("/v1/kv/kept").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["value"], "yes", "{body}");
}
