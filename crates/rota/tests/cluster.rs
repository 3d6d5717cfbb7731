//! A real cluster: three `rota server` processes on loopback, bootstrapped with
//! `--peers` and a cluster secret. They elect one leader; a write sent to a
//! follower is read back linearizably through every node; after `kill -9` of the
//! leader another is elected and writes continue; the old leader restarts and
//! catches up; a fourth node joins with `--join`, receiving a snapshot because the
//! log it needs was purged, and leaves again through the CLI; without a quorum a
//! write is refused with 503 instead of hanging.
//!
//! Before its peers run, the first node is alive (`/healthz`) but not ready
//! (`/readyz`: no leader known); once a leader is elected every node is ready.
//!
//! Every wait is on a condition with a deadline; nothing asserts on timing.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::{eventually, ports, stderr, stdout, Server};
use serde_json::{json, Value};

const SECRET: &str = "cluster-test-secret";
/// Generous bound for elections, restarts and catch-up on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(60);

fn launch(dir: &Path, id: u64, port: u16, cluster: &[&str]) -> Server {
    let id = id.to_string();
    let mut args = vec![
        "--node-id",
        &id,
        "--snapshot-every",
        "10",
        "--cluster-secret",
        SECRET,
    ];
    args.extend_from_slice(cluster);
    Server::launch(&dir.join(format!("n{id}")), port, &args)
}

/// The leader every running node agrees on (and that calls itself leader).
async fn agreed_leader(servers: &[Server]) -> Option<u64> {
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
        (1, [one]) if leaders.contains(one) => Some(*one),
        _ => None,
    }
}

fn index_of(servers: &[Server], id: u64) -> usize {
    usize::try_from(id - 1)
        .expect("small id")
        .min(servers.len() - 1)
}

async fn put(
    server: &Server,
    key: &str,
    value: &str,
    session: Option<(&str, u64)>,
) -> (u16, Value) {
    let http = common::client();
    let mut req = http
        .put(format!("{}/v1/kv/{key}", server.url))
        .json(&json!({ "value": value }));
    if let Some((client, seq)) = session {
        req = req
            .header("Rota-Client-Id", client)
            .header("Rota-Request-Seq", seq.to_string());
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            (status, resp.json().await.unwrap_or(Value::Null))
        }
        Err(e) => (0, json!(e.to_string())),
    }
}

/// Writes through whichever running node accepts it, retrying with the same
/// session so that a write whose answer was lost applies once.
async fn put_retrying(servers: &[Server], key: &str, value: &str, seq: u64) -> u64 {
    let mut turn = 0usize;
    eventually(DEADLINE, &format!("write of {key}"), || {
        turn += 1;
        let server = &servers[turn % servers.len()];
        async move {
            if !server.is_launched() {
                return None;
            }
            let (status, body) = put(server, key, value, Some(("cluster-test", seq))).await;
            (status == 200).then(|| body["revision"].as_u64()).flatten()
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_elect_replicate_fail_over_catch_up_and_grow() {
    let tmp = tempfile::tempdir().unwrap();
    let p = ports(4);
    let peers = (0..3)
        .map(|i| format!("{}=http://127.0.0.1:{}", i + 1, p[i]))
        .collect::<Vec<_>>()
        .join(",");
    let mut servers = vec![launch(tmp.path(), 1, p[0], &["--peers", &peers])];

    eprintln!("--- alone, the first node is a member without a leader: alive, not ready");
    let first = &servers[0];
    let (status, body) = eventually(DEADLINE, "the first node serves /readyz", || {
        answer(first, "/readyz")
    })
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not_ready", "{body}");
    assert_eq!(body["reason"], "no leader known", "{body}");
    assert_eq!(first.get("/healthz").await, (200, json!({"status": "ok"})));
    servers.extend((1..3).map(|i| launch(tmp.path(), i as u64 + 1, p[i], &["--peers", &peers])));

    eprintln!("--- one leader is elected and every node knows it");
    let leader = {
        let servers = &servers;
        eventually(DEADLINE, "a leader all nodes agree on", || {
            agreed_leader(servers)
        })
        .await
    };
    for s in servers.iter_mut() {
        assert!(s.is_running(), "a server exited:\n{}", s.logs());
    }
    let l = index_of(&servers, leader);
    let f = (l + 1) % 3;
    let (status, cluster) = servers[f].get("/v1/cluster").await;
    assert_eq!(status, 200, "{cluster}");
    assert_eq!(cluster["leader"], leader, "{cluster}");
    let voters: Vec<u64> = cluster["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter(|m| m["role"] == "voter")
        .filter_map(|m| m["id"].as_u64())
        .collect();
    assert_eq!(voters, [1, 2, 3], "{cluster}");
    for s in &servers {
        let body = eventually(DEADLINE, "every node is ready", || async {
            let (status, body) = s.get("/readyz").await;
            (status == 200).then_some(body)
        })
        .await;
        assert_eq!(body["status"], "ready", "{}: {body}", s.url);
    }

    eprintln!("--- peer routes and membership changes need the cluster secret");
    let http = common::client();
    for secret in [None, Some("wrong")] {
        let mut req = http
            .post(format!("{}/raft/vote", servers[f].url))
            .json(&json!({}));
        if let Some(secret) = secret {
            req = req.header("Rota-Cluster-Secret", secret);
        }
        assert_eq!(req.send().await.unwrap().status().as_u16(), 401);
    }
    let (status, body) = servers[f]
        .send(
            "POST",
            "/v1/cluster/members",
            Some(json!({"id": 9, "url": "http://127.0.0.1:1"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (401, json!("unauthorized"))
    );

    eprintln!("--- a write through a follower is read back linearizably on every node");
    let (status, body) = put(&servers[f], "greeting", "hello", None).await;
    assert_eq!(status, 200, "{body}");
    let revision = body["revision"].as_u64().expect("revision");
    for s in &servers {
        let (status, body) = s.get("/v1/kv/greeting").await;
        assert_eq!(status, 200, "{}: {body}", s.url);
        assert_eq!(body["value"], "hello", "{}", s.url);
        assert_eq!(body["mod_revision"], revision, "{}", s.url);
    }

    eprintln!("--- kill -9 the leader: another is elected and writes continue");
    servers[l].kill9();
    let mut last = 0;
    for i in 1..=40u64 {
        last = put_retrying(&servers, &format!("after/{i:03}"), &format!("v{i}"), i).await;
    }
    let new_leader = {
        let servers = &servers;
        eventually(DEADLINE, "the survivors agree on a leader", || {
            agreed_leader(servers)
        })
        .await
    };
    assert_ne!(new_leader, leader, "the killed node cannot lead");
    let (status, body) = servers[f].get("/v1/kv/after/040").await;
    assert_eq!(
        (status, body["mod_revision"].as_u64()),
        (200, Some(last)),
        "{body}"
    );

    eprintln!("--- the old leader restarts and catches up");
    servers[l].relaunch();
    {
        let old = &servers[l];
        eventually(
            DEADLINE,
            "the restarted node has the new writes",
            || async move {
                let health = old.health().await?;
                if health["last_applied"].as_u64()? < last {
                    return None;
                }
                let (status, body) = old.get("/v1/kv/after/040?stale=true").await;
                (status == 200 && body["value"] == "v40").then_some(())
            },
        )
        .await;
    }

    eprintln!("--- a fourth node joins through a follower and gets a snapshot");
    let via = servers[(index_of(&servers, new_leader) + 1) % 3]
        .url
        .clone();
    let mut fourth = launch(tmp.path(), 4, p[3], &["--join", &via]);
    {
        let leader_node = &servers[index_of(&servers, new_leader)];
        eventually(DEADLINE, "node 4 is a voter", || async move {
            let (status, cluster) = leader_node.get("/v1/cluster").await;
            let members = cluster["members"].as_array()?;
            (status == 200 && members.iter().any(|m| m["id"] == 4 && m["role"] == "voter"))
                .then_some(())
        })
        .await;
    }
    assert!(fourth.is_running(), "node 4 exited:\n{}", fourth.logs());
    let logs = fourth.logs();
    assert!(
        logs.contains("snapshot from the leader installed"),
        "node 4 caught up without a snapshot:\n{logs}"
    );
    let (status, body) = fourth.get("/v1/kv/after/040").await;
    assert_eq!(
        (status, body["value"].clone()),
        (200, json!("v40")),
        "{body}"
    );
    let (status, body) = fourth.get("/v1/kv/greeting").await;
    assert_eq!(
        (status, body["value"].clone()),
        (200, json!("hello")),
        "{body}"
    );

    eprintln!("--- the CLI shows the cluster and removes node 4");
    let out = fourth.cli(&["cluster", "status", "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown: Value = serde_json::from_str(&stdout(&out)).expect("json status");
    assert_eq!(
        shown["members"].as_array().map(Vec::len),
        Some(4),
        "{shown}"
    );
    // The joined node took the cluster's id (the one the `--peers` nodes derived),
    // and keeps it in its data directory.
    let (_, first) = servers[f].get("/v1/cluster").await;
    let cluster_id = first["cluster_id"]
        .as_str()
        .expect("a cluster id")
        .to_string();
    assert!(cluster_id.starts_with("peers-"), "{first}");
    assert_eq!(shown["cluster_id"], json!(cluster_id), "{shown}");
    let kept = std::fs::read_to_string(fourth.data_dir.join("cluster-id")).expect("kept");
    assert_eq!(kept.trim(), cluster_id);
    let out = servers[f].cli(&["cluster", "leave", "4", "--cluster-secret", SECRET]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, cluster) = servers[f].get("/v1/cluster").await;
    let ids: Vec<u64> = cluster["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["id"].as_u64())
        .collect();
    assert_eq!(ids, [1, 2, 3], "{cluster}");
    fourth.kill9();

    eprintln!("--- the join and the leave are events in the log");
    let replay = replay_until_caught_up(&servers[f], "/v1/watch?since=0&type=member.*").await;
    let joined = replay.find("event: member.joined").expect(&replay);
    let left = replay.find("event: member.left").expect(&replay);
    assert!(joined < left, "{replay}");
    assert!(replay.contains(r#""id":4"#), "{replay}");
    assert_eq!(replay.matches("event: member.").count(), 2, "{replay}");

    eprintln!("--- without a quorum, a write is refused instead of hanging");
    let survivor = l;
    for (i, s) in servers.iter_mut().enumerate() {
        if i != survivor {
            s.kill9();
        }
    }
    let (status, body) = put(&servers[survivor], "lonely", "x", None).await;
    assert_eq!(status, 503, "{body}");
    let code = body["error"]["code"].as_str().unwrap_or_default();
    assert!(code == "not_leader" || code == "timeout", "{body}");
}

/// Status and body of `GET path`, or `None` while the server does not answer.
async fn answer(server: &Server, path: &str) -> Option<(u16, Value)> {
    let resp = common::client()
        .get(format!("{}{path}", server.url))
        .send()
        .await
        .ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.json().await.ok()?))
}

/// The text of a watch stream from its start through its `caught_up` event.
async fn replay_until_caught_up(server: &Server, path: &str) -> String {
    use futures_util::StreamExt;
    let resp = common::client()
        .get(format!("{}{path}", server.url))
        .send()
        .await
        .expect("watch");
    assert_eq!(resp.status().as_u16(), 200);
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    while !text.contains("event: caught_up") {
        let chunk = tokio::time::timeout(DEADLINE, body.next())
            .await
            .expect("the replay ends with caught_up")
            .expect("the stream stays open")
            .expect("a chunk");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text
}
