//! Several nodes in one process, each serving its peer routes on a loopback port:
//! bootstrap from a peers list, forwarding of writes and read barriers from a
//! follower, join (learner, catch-up through a snapshot, promotion) and leave,
//! and the cluster secret on the peer routes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rota_background::Runner;
use rota_core::Response;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::info;

use super::tests::kv_put;
use super::*;

const SECRET: &str = "in-process-secret";
const DEADLINE: Duration = Duration::from_secs(30);

/// A node serving its peer routes until the test ends.
struct Member {
    node: Arc<Node>,
    url: String,
    server: JoinHandle<()>,
}

async fn listen() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    (listener, url)
}

async fn member(
    dir: &Path,
    id: u64,
    listener: TcpListener,
    url: String,
    bootstrap: Bootstrap,
) -> Member {
    member_snapshotting_every(dir, id, listener, url, bootstrap, 10).await
}

async fn member_snapshotting_every(
    dir: &Path,
    id: u64,
    listener: TcpListener,
    url: String,
    bootstrap: Bootstrap,
    snapshot_every: u64,
) -> Member {
    let node = Node::start_with(
        NodeConfig {
            node_id: id,
            node_name: format!("n{id}"),
            data_dir: dir.join(format!("n{id}")),
            advertise_url: url.clone(),
            snapshot_every,
            watch_retention: rota_store::EventRetention::default(),
        },
        ClusterOptions {
            bootstrap,
            secret: Some(SECRET.into()),
            ..ClusterOptions::default()
        },
        &Runner::new(),
    )
    .await
    .expect("node starts");
    let app = node.peer_router();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Member { node, url, server }
}

async fn stop(members: Vec<Member>) {
    for m in &members {
        m.node.shutdown().await.expect("shutdown");
    }
    for m in members {
        m.server.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_forward_writes_and_reads_and_a_joined_node_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(listen().await);
    }
    let peers: BTreeMap<u64, String> = listeners
        .iter()
        .enumerate()
        .map(|(i, (_, url))| (i as u64 + 1, url.clone()))
        .collect();

    info!("--- three nodes from a peers list elect a leader");
    let mut members = Vec::new();
    for (i, (listener, url)) in listeners.into_iter().enumerate() {
        let bootstrap = Bootstrap::Peers(peers.clone());
        members.push(member(dir.path(), i as u64 + 1, listener, url, bootstrap).await);
    }
    let mut leaders = BTreeSet::new();
    for m in &members {
        leaders.insert(m.node.wait_for_leader(DEADLINE).await.expect("a leader"));
    }
    assert_eq!(leaders.len(), 1, "every node knows the same leader");
    let leader = *leaders.first().expect("leader");
    let follower = members
        .iter()
        .find(|m| m.node.config().node_id != leader)
        .expect("a follower");

    info!("--- a follower forwards a write and reads it back after a barrier");
    let (index, response) = follower.node.write(kv_put("k", "v")).await.unwrap();
    assert_eq!(
        response,
        Response::KvPut {
            key: "k".into(),
            revision: index
        }
    );
    for m in &members {
        m.node.read_barrier().await.unwrap();
        let entry = m.node.store().kv_get("k").unwrap().expect("replicated");
        assert_eq!(entry.mod_revision, index);
    }

    info!("--- enough writes for the leader to snapshot and purge its log");
    for i in 0..30 {
        follower
            .node
            .write(kv_put(&format!("bulk-{i:02}"), "x"))
            .await
            .unwrap();
    }
    let leader_node = &members[usize::try_from(leader - 1).unwrap()].node;
    leader_node
        .raft()
        .wait(Some(DEADLINE))
        .metrics(|m| m.purged.is_some(), "the leader purged its log")
        .await
        .expect("purged");

    info!("--- a fourth node joins through a follower and gets a snapshot");
    let (listener, url) = listen().await;
    let fourth = member(dir.path(), 4, listener, url.clone(), Bootstrap::Join).await;
    assert!(!fourth.node.is_member());
    follower.node.add_member(4, &url).await.unwrap();
    // Adding it again is a no-op.
    follower.node.add_member(4, &url).await.unwrap();
    let status = leader_node.cluster_status().await.unwrap();
    let joined = status.members.iter().find(|m| m.id == 4).expect("node 4");
    assert_eq!(joined.role, MemberRole::Voter);
    assert!(joined.matched_index.is_some(), "the leader tracks node 4");
    fourth.node.read_barrier().await.unwrap();
    assert_eq!(fourth.node.store().kv_list("bulk-").unwrap().len(), 30);
    assert!(
        fourth.node.status().snapshot_index.is_some(),
        "node 4 started from a snapshot"
    );
    assert!(fourth.node.is_member());

    info!("--- another id at a taken URL, and removals");
    let err = follower.node.add_member(4, "http://127.0.0.1:1").await;
    assert!(
        matches!(err, Err(MembershipError::InvalidMember { id: 4, .. })),
        "{err:?}"
    );
    follower.node.remove_member(4).await.unwrap();
    let err = follower.node.remove_member(4).await;
    assert!(
        matches!(err, Err(MembershipError::UnknownMember { id: 4 })),
        "{err:?}"
    );
    // The removal committed on the leader; the follower shows it once it has it.
    follower.node.read_barrier().await.unwrap();
    let status = follower.node.cluster_status().await.unwrap();
    assert_eq!(status.members.len(), 3);

    info!("--- peer routes refuse a missing or wrong secret");
    let http = reqwest::Client::new();
    for secret in [None, Some("wrong")] {
        let mut req = http
            .post(format!("{}/raft/read_index", follower.url))
            .json(&());
        if let Some(secret) = secret {
            req = req.header(CLUSTER_SECRET_HEADER, secret);
        }
        assert_eq!(req.send().await.unwrap().status().as_u16(), 401);
    }
    assert!(!follower.node.admits_peer(None, false));
    assert!(follower.node.admits_peer(Some(SECRET.as_bytes()), false));

    members.push(fourth);
    stop(members).await;
}

#[tokio::test]
async fn a_peers_list_without_this_node_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = NodeConfig {
        node_id: 5,
        node_name: "n5".into(),
        data_dir: dir.path().to_path_buf(),
        advertise_url: "http://127.0.0.1:7705".into(),
        snapshot_every: 100,
        watch_retention: rota_store::EventRetention::default(),
    };
    for peers in [
        BTreeMap::from([(1, "http://127.0.0.1:7701".to_string())]),
        BTreeMap::from([(5, "127.0.0.1:7705".to_string())]),
    ] {
        let err = Node::start_with(
            cfg.clone(),
            ClusterOptions {
                bootstrap: Bootstrap::Peers(peers),
                secret: None,
                ..ClusterOptions::default()
            },
            &Runner::new(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ClusterError::InvalidPeers(_)), "{err}");
    }
}

/// Three nodes bootstrapped from one peers list.
async fn three_members(dir: &Path) -> Vec<Member> {
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(listen().await);
    }
    let peers: BTreeMap<u64, String> = listeners
        .iter()
        .enumerate()
        .map(|(i, (_, url))| (i as u64 + 1, url.clone()))
        .collect();
    let mut members = Vec::new();
    for (i, (listener, url)) in listeners.into_iter().enumerate() {
        let bootstrap = Bootstrap::Peers(peers.clone());
        members.push(member(dir, i as u64 + 1, listener, url, bootstrap).await);
    }
    members
}

/// The id and node of the leader the members agree on.
async fn the_leader(members: &[Member]) -> (u64, Arc<Node>) {
    let leader = members[0]
        .node
        .wait_for_leader(DEADLINE)
        .await
        .expect("a leader");
    (
        leader,
        members[usize::try_from(leader - 1).unwrap()].node.clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stepping_down_leader_hands_over_live_and_goes_on_as_a_follower() {
    let dir = tempfile::tempdir().unwrap();
    let members = three_members(dir.path()).await;
    let (leader, old) = the_leader(&members).await;

    info!("--- the leader steps down while Raft runs on");
    assert!(!old.step_down().await, "node {leader} still leads");
    for m in &members {
        m.node
            .raft()
            .wait(Some(DEADLINE))
            .metrics(
                |m| m.current_leader.is_some_and(|l| l != leader),
                "another leader",
            )
            .await
            .expect("another leader");
    }

    info!("--- it goes on as a follower: a write through it is forwarded");
    let (index, _) = old.write(kv_put("after-step-down", "x")).await.unwrap();
    old.read_barrier().await.unwrap();
    let entry = old
        .store()
        .kv_get("after-step-down")
        .unwrap()
        .expect("applied");
    assert_eq!(entry.mod_revision, index);
    stop(members).await;
}

/// A handoff right after the leader's election (while its own lease would refuse
/// the successor its vote) and under a stream of writes (which would grow the
/// leader's log past the successor's between the pick and the vote): the
/// successor it picked wins the very next term, with no election timeout and no
/// other candidate, and the writes go on at the new leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_hands_over_to_its_successor_in_the_next_term_even_just_elected_and_under_writes()
{
    let dir = tempfile::tempdir().unwrap();
    let members = three_members(dir.path()).await;
    let (leader, old) = the_leader(&members).await;

    info!("--- writes stream through the leader while it hands over");
    let stop_writing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (node, stop_writing) = (old.clone(), stop_writing.clone());
        tokio::spawn(async move {
            let mut written = 0u32;
            while !stop_writing.load(std::sync::atomic::Ordering::SeqCst) {
                let key = format!("during-handoff-{written}");
                node.write(kv_put(&key, "x")).await.expect("a write");
                written += 1;
            }
            written
        })
    };
    let (successor, moved) = old.hand_over().await.expect("a leader has a successor");
    stop_writing.store(true, std::sync::atomic::Ordering::SeqCst);
    let written = writer.await.unwrap();
    assert_ne!(successor.id, leader, "a leader cannot succeed itself");
    assert!(moved, "leadership did not move to node {}", successor.id);
    assert!(written > 0, "no write went through");
    for m in &members {
        let metrics = m
            .node
            .raft()
            .wait(Some(DEADLINE))
            .metrics(|m| m.current_leader.is_some(), "a leader")
            .await
            .expect("a leader");
        assert_eq!(
            (metrics.current_leader, metrics.current_term),
            (Some(successor.id), successor.term + 1),
            "node {} follows another leader or term than the successor's first",
            m.node.cfg.node_id
        );
    }
    stop(members).await;
}

/// A lone write on the leader is sent to both followers while the leader syncs it
/// (see `crate::early`), and they accept the copy; followers send nothing early,
/// and every node ends up with the writes applied as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaders_lone_writes_go_to_the_followers_before_its_own_sync() {
    use std::sync::atomic::Ordering;

    let dir = tempfile::tempdir().unwrap();
    let members = three_members(dir.path()).await;
    let (_, leader) = the_leader(&members).await;
    let counts = |node: &Node| {
        let c = node.log.early_counts().expect("the early sender is set");
        (
            c.sent.load(Ordering::Relaxed),
            c.accepted.load(Ordering::Relaxed),
        )
    };
    let (sent_before, _) = counts(&leader);
    const WRITES: u64 = 5;
    let mut last = 0;
    for i in 0..WRITES {
        let (index, _) = leader
            .write(kv_put(&format!("early-{i}"), "x"))
            .await
            .unwrap();
        last = index;
    }
    let (sent, _) = counts(&leader);
    assert!(
        sent - sent_before >= 2 * WRITES,
        "each lone write went to both followers: {sent_before} then {sent}"
    );
    let early = leader.log.early_counts().expect("the early sender is set");
    tokio::time::timeout(DEADLINE, async {
        loop {
            // Made before looking, so an acceptance in between counts.
            let accepted = early.on_accept.notified();
            if counts(&leader).1 >= 2 * WRITES {
                return;
            }
            accepted.await;
        }
    })
    .await
    .expect("the followers accepted the early copies");
    for m in &members {
        m.node
            .raft()
            .wait(Some(DEADLINE))
            .applied_index_at_least(Some(last), "the writes applied")
            .await
            .expect("applied");
        assert!(m.node.store().kv_get("early-4").unwrap().is_some());
        if !Arc::ptr_eq(&m.node, &leader) {
            assert_eq!(counts(&m.node).0, 0, "a follower sent nothing early");
        }
    }
    stop(members).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_catching_up_on_large_entries_gets_them_in_calls_of_bounded_size() {
    let dir = tempfile::tempdir().unwrap();
    // No snapshot: the node that joins gets the whole log through AppendEntries.
    const NO_SNAPSHOT: u64 = 100_000;
    let (listener, url) = listen().await;
    let peers = BTreeMap::from([(1, url.clone())]);
    let first = member_snapshotting_every(
        dir.path(),
        1,
        listener,
        url,
        Bootstrap::Peers(peers),
        NO_SNAPSHOT,
    )
    .await;
    first
        .node
        .wait_for_leader(DEADLINE)
        .await
        .expect("a leader");

    info!("--- six writes of 400 KiB each: more than one call may carry");
    let value = "x".repeat(400 * 1024);
    for i in 0..6 {
        first
            .node
            .write(kv_put(&format!("big-{i}"), &value))
            .await
            .unwrap();
    }
    assert_eq!(first.node.transport.split_appends(), 0);

    info!("--- a second node joins and catches up from the log");
    let (listener, url) = listen().await;
    let second = member_snapshotting_every(
        dir.path(),
        2,
        listener,
        url.clone(),
        Bootstrap::Join,
        NO_SNAPSHOT,
    )
    .await;
    first.node.add_member(2, &url).await.unwrap();
    second.node.read_barrier().await.unwrap();
    let keys = second.node.store().kv_list("big-").unwrap();
    assert_eq!(keys.len(), 6);
    assert!(keys.iter().all(|e| e.value.len() == value.len()));
    assert!(
        second.node.status().snapshot_index.is_none(),
        "node 2 caught up from the log, not a snapshot"
    );
    assert!(
        first.node.transport.split_appends() > 0,
        "the leader sent the six entries in more than one call"
    );
    stop(vec![first, second]).await;
}

/// A leader cut off from the other voters still believes it leads (openraft keeps
/// the role until a peer answers with a newer term), as does a node restarting as
/// the leader of its old term; `confirm_leadership` answers for both what a quorum
/// says, not what the node believes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_voters_cannot_confirm_its_leadership() {
    let dir = tempfile::tempdir().unwrap();
    let mut members = three_members(dir.path()).await;
    let (leader, node) = the_leader(&members).await;
    node.confirm_leadership()
        .await
        .expect("a leader with a quorum");
    let follower = members
        .iter()
        .find(|m| m.node.config().node_id != leader)
        .expect("a follower");
    assert!(
        follower.node.confirm_leadership().await.is_err(),
        "a follower does not lead"
    );

    info!("--- both followers stop: the leader is alone");
    let followers: Vec<Member> = {
        let (kept, gone): (Vec<Member>, Vec<Member>) = members
            .drain(..)
            .partition(|m| m.node.config().node_id == leader);
        members = kept;
        gone
    };
    stop(followers).await;
    assert!(
        *node.leadership().borrow(),
        "the lone node still believes it leads"
    );
    let refused = node.confirm_leadership().await;
    assert!(refused.is_err(), "confirmed without a quorum: {refused:?}");
    stop(members).await;
}
