//! A member's address outlives the member: while node 3 of a cluster is down,
//! another process may listen on its port, here a node of another cluster with the
//! same id, then a new single node. Neither may take part: the cluster's leader
//! must not count their answers as node 3's (it would call entries committed that
//! only it holds), and they must not take the cluster's log (nor crash on it).
//! When the real node 3 starts, it joins in at once.
//!
//! Every wait is on a condition with a deadline; nothing asserts on timing.

mod common;

use std::time::Duration;

use common::{agreed_leader, eventually, launch_member, peers_arg, ports, Server};
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(60);

/// Node 3 as the leader's replication sees it (`matched_index`: null until node 3
/// acknowledged an entry).
async fn node_3_matched(leader: &Server) -> Value {
    let (status, cluster) = leader.get("/v1/cluster").await;
    assert_eq!(status, 200, "{cluster}");
    cluster["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["id"] == 3))
        .map(|m| m["matched_index"].clone())
        .unwrap_or_else(|| panic!("node 3 is a member: {cluster}"))
}

/// Waits until the cluster's calls reached `stranger` (it refused one, or the
/// leader counted it as node 3, or it died of them), then checks that the leader
/// did not count it as node 3 and that the stranger still runs.
async fn refused_and_ignored(stranger: &mut Server, leader: &Server, what: &str) {
    eventually(
        DEADLINE,
        &format!("the cluster's calls to reach {what}"),
        || {
            let refused = stranger.logs().contains("peer call refused");
            let running = stranger.is_running();
            async move {
                let counted = !node_3_matched(leader).await.is_null();
                (refused || counted || !running).then_some(())
            }
        },
    )
    .await;
    // A write the leader commits meanwhile reaches node 3's address too.
    let (status, body) = leader
        .send(
            "PUT",
            "/v1/kv/while-a-stranger-listens",
            Some(json!({"value": what})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        node_3_matched(leader).await.is_null(),
        "the leader counted {what} as node 3"
    );
    assert!(
        stranger.is_running(),
        "{what} stopped:\n{}",
        stranger.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_at_a_members_address_takes_no_part_in_the_cluster() {
    let tmp = tempfile::tempdir().unwrap();
    let p = ports(5);
    let peers = peers_arg(&p[..3]);
    // Nodes 1 and 2 of the cluster; node 3 is down.
    let members: Vec<Server> = (0..2)
        .map(|i| launch_member(tmp.path(), i as u64 + 1, p[i], &peers, &[]))
        .collect();
    let leader = eventually(DEADLINE, "a leader of nodes 1 and 2", || {
        agreed_leader(&members)
    })
    .await;
    let leader = &members[leader];
    let (status, body) = leader
        .send("PUT", "/v1/kv/before", Some(json!({"value": "v"})))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(node_3_matched(leader).await.is_null());

    // Node 3 of another cluster (another peer map), at node 3's address.
    let other = peers_arg(&[p[3], p[4], p[2]]);
    let mut stranger = launch_member(&tmp.path().join("other"), 3, p[2], &other, &[]);
    refused_and_ignored(&mut stranger, leader, "node 3 of another cluster").await;
    stranger.kill9();

    // A new single node (node 1 of its own cluster) at the same address.
    let mut single = Server::launch(&tmp.path().join("single"), p[2], &[]);
    refused_and_ignored(&mut single, leader, "a single node").await;
    single.kill9();

    // The real node 3: taken in, and it has what was written.
    let node3 = launch_member(tmp.path(), 3, p[2], &peers, &[]);
    eventually(DEADLINE, "node 3 to be replicated to", || async {
        node_3_matched(leader).await.as_u64()
    })
    .await;
    let (status, read) = node3.get("/v1/kv/while-a-stranger-listens").await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["value"], "a single node", "{read}");
}
