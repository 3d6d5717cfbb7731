//! A single node on a temporary directory: write, read, restart, snapshot, purge,
//! recover from a crash image; and openraft's storage conformance suite.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rota_core::{ClientRequest, Command, Response, SessionKey};
use rota_store::Store;
use tracing::info;

use rota_background::Runner;

use super::*;
use crate::log_store::LogStore;

fn config(dir: &Path, snapshot_every: u64) -> NodeConfig {
    NodeConfig {
        node_id: 1,
        node_name: "n1".into(),
        data_dir: dir.to_path_buf(),
        advertise_url: "http://127.0.0.1:7700".into(),
        snapshot_every,
        watch_retention: rota_store::EventRetention::default(),
    }
}

/// A session-less KV put (also used by the cluster tests).
pub(crate) fn kv_put(key: &str, value: &str) -> ClientRequest {
    ClientRequest {
        session: None,
        at: Utc::now(),
        command: Command::KvPut {
            key: key.into(),
            value: value.into(),
            if_revision: None,
        },
    }
}

fn job(name: &str) -> rota_core::JobSpec {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "schedule": {"every": "1m"},
        "executor": {"type": "shell", "command": "true"},
    }))
    .expect("valid spec")
}

async fn restart(node: Arc<Node>, cfg: NodeConfig) -> Arc<Node> {
    node.shutdown().await.expect("shutdown");
    drop(node);
    Node::start(cfg, &Runner::new()).await.expect("restart")
}

/// Copies the node's files as they are on disk right now: what a `kill -9` at
/// this instant would leave behind.
fn crash_image(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("snapshots")).unwrap();
    for name in ["raft-log.redb", "state.redb"] {
        std::fs::copy(from.join(name), to.join(name)).unwrap();
    }
    std::fs::create_dir_all(to.join("raft-log")).unwrap();
    for segment in std::fs::read_dir(from.join("raft-log")).unwrap() {
        let segment = segment.unwrap().path();
        std::fs::copy(
            &segment,
            to.join("raft-log").join(segment.file_name().unwrap()),
        )
        .unwrap();
    }
    let current = from.join("snapshots").join("current.snap");
    if current.exists() {
        std::fs::copy(current, to.join("snapshots").join("current.snap")).unwrap();
    }
}

async fn wait_applied(node: &Node) {
    let last = node.status().last_log_index;
    node.raft()
        .wait(Some(Duration::from_secs(10)))
        .applied_index_at_least(Some(last), "everything appended is applied")
        .await
        .expect("applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_node_leads_takes_writes_and_keeps_them_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1000);
    let node = Node::start(cfg.clone(), &Runner::new()).await.unwrap();
    assert!(*node.leadership().borrow());
    let status = node.status();
    assert_eq!((status.role.as_str(), status.leader), ("leader", Some(1)));
    assert_eq!(status.leader_url.as_deref(), Some("http://127.0.0.1:7700"));

    info!("--- write a job and two keys");
    let (index, response) = node
        .write(ClientRequest {
            session: None,
            at: Utc::now(),
            command: Command::PutJob { spec: job("a") },
        })
        .await
        .unwrap();
    assert!(matches!(response, Response::JobPut { created: true, .. }));
    let (k1, _) = node.write(kv_put("k1", "v1")).await.unwrap();
    let (k2, response) = node.write(kv_put("k2", "v2")).await.unwrap();
    assert!(index < k1 && k1 < k2);
    assert_eq!(
        response,
        Response::KvPut {
            key: "k2".into(),
            revision: k2
        }
    );
    node.read_barrier().await.unwrap();
    assert_eq!(node.store().get_job("a").unwrap().unwrap().revision, index);
    assert_eq!(node.store().kv_get("k1").unwrap().unwrap().mod_revision, k1);
    assert_eq!(node.store().last_applied_index(), k2);

    info!("--- restart on the same directory");
    let node = restart(node, cfg.clone()).await;
    // A node that led before resumes leading in the same term: no new blank
    // entry, but its whole log is applied before `start` returns.
    assert_eq!(
        node.store().last_applied_index(),
        node.status().last_log_index
    );
    assert!(node.store().last_applied_index() >= k2);
    assert_eq!(node.store().kv_get("k2").unwrap().unwrap().value, "v2");
    assert_eq!(node.store().get_job("a").unwrap().unwrap().revision, index);
    let (k3, _) = node.write(kv_put("k3", "v3")).await.unwrap();
    assert!(k3 > k2);

    info!("--- after shutdown, writes are refused and leadership is gone");
    let mut leadership = node.leadership();
    node.shutdown().await.unwrap();
    leadership
        .wait_for(|leading| !*leading)
        .await
        .expect("leadership watch ends false");
    assert!(matches!(
        node.write(kv_put("k4", "v4")).await,
        Err(WriteError::ShuttingDown)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_retry_gets_the_first_answer_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1000);
    let node = Node::start(cfg.clone(), &Runner::new()).await.unwrap();
    let request = |value: &str| ClientRequest {
        session: Some(SessionKey {
            client_id: "cli".into(),
            seq: 7,
        }),
        at: Utc::now(),
        command: Command::KvPut {
            key: "k".into(),
            value: value.into(),
            if_revision: Some(0),
        },
    };
    let (_, first) = node.write(request("first")).await.unwrap();
    let node = restart(node, cfg).await;
    let (_, again) = node.write(request("second")).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(node.store().kv_get("k").unwrap().unwrap().value, "first");
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_purge_the_log_and_a_restart_recovers_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 20);
    let node = Node::start(cfg.clone(), &Runner::new()).await.unwrap();

    info!("--- write 200 entries");
    let mut last = 0;
    for i in 0..200 {
        last = node
            .write(kv_put(&format!("key-{i:03}"), &i.to_string()))
            .await
            .unwrap()
            .0;
    }
    let m = node
        .raft()
        .wait(Some(Duration::from_secs(10)))
        .metrics(
            |m| {
                m.snapshot.is_some_and(|s| s.index + 20 >= last)
                    && m.purged.is_some_and(|p| p.index > 100)
            },
            "a recent snapshot and a purged log",
        )
        .await
        .expect("snapshot and purge");
    let purged = m.purged.expect("purged").index;
    let first = node
        .first_log_index()
        .await
        .unwrap()
        .expect("log not empty");
    assert_eq!(first, purged + 1);
    assert!(dir.path().join("snapshots").join("current.snap").exists());
    let before = node.store().kv_list("").unwrap();
    assert_eq!(before.len(), 200);

    info!("--- restart after the purge");
    let node = restart(node, cfg.clone()).await;
    assert_eq!(node.store().kv_list("").unwrap(), before);
    assert!(node.status().snapshot_index.is_some());
    node.shutdown().await.unwrap();
}

/// What `kill -9` leaves: the log is fsynced at every append, the state machine
/// only now and then. The copy's state lags, and the log brings it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_image_recovers_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path(), 1000), &Runner::new())
        .await
        .unwrap();
    for i in 0..50 {
        node.write(kv_put(&format!("k{i}"), "v")).await.unwrap();
    }
    wait_applied(&node).await;
    let image = tempfile::tempdir().unwrap();
    crash_image(dir.path(), image.path());
    node.shutdown().await.unwrap();
    drop(node);

    {
        let lagging = Store::open(&image.path().join("state.redb")).unwrap();
        assert!(
            lagging.last_applied_index() < 50,
            "the state file on disk lags the log (applied {})",
            lagging.last_applied_index()
        );
    }
    let recovered = Node::start(config(image.path(), 1000), &Runner::new())
        .await
        .unwrap();
    assert_eq!(recovered.store().kv_list("").unwrap().len(), 50);
    recovered.shutdown().await.unwrap();
}

/// The same after snapshots purged the log: the state that covers the purge point
/// was made durable before the purge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_image_after_purge_recovers_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path(), 20), &Runner::new())
        .await
        .unwrap();
    let mut last = 0;
    for i in 0..120 {
        last = node
            .write(kv_put(&format!("k{i:03}"), "v"))
            .await
            .unwrap()
            .0;
    }
    node.raft()
        .wait(Some(Duration::from_secs(10)))
        .metrics(
            |m| m.snapshot.is_some_and(|s| s.index + 20 >= last) && m.purged.is_some(),
            "snapshot and purge",
        )
        .await
        .expect("snapshot and purge");
    wait_applied(&node).await;
    let image = tempfile::tempdir().unwrap();
    crash_image(dir.path(), image.path());
    node.shutdown().await.unwrap();
    drop(node);

    let recovered = Node::start(config(image.path(), 20), &Runner::new())
        .await
        .unwrap();
    let keys = recovered.store().kv_list("").unwrap();
    assert_eq!(keys.len(), 120);
    recovered.shutdown().await.unwrap();
}

#[tokio::test]
async fn invalid_configs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 0);
    assert!(matches!(
        Node::start(cfg.clone(), &Runner::new()).await,
        Err(ClusterError::InvalidConfig {
            field: "snapshot_every",
            ..
        })
    ));
    cfg.snapshot_every = 10;
    cfg.advertise_url = "127.0.0.1:7700".into();
    assert!(matches!(
        Node::start(cfg, &Runner::new()).await,
        Err(ClusterError::InvalidConfig {
            field: "advertise_url",
            ..
        })
    ));
}

mod conformance {
    use openraft::testing::{StoreBuilder, Suite};

    use super::*;
    use crate::node::open_storage;
    use crate::state_machine::StateMachine;
    use crate::types::{StorageError, TypeConfig};

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
            let dir = tempfile::tempdir().expect("tempdir");
            let storage = open_storage(
                dir.path().to_path_buf(),
                rota_store::EventRetention::default(),
            )
            .await
            .expect("open storage");
            Ok((dir, storage.log, storage.state_machine))
        }
    }

    /// openraft's own checks of a log store and state machine.
    #[test]
    fn storage_passes_the_openraft_suite() {
        Suite::test_all(Builder).expect("conformance suite");
    }
}

/// Many concurrent writes: each is answered with its own response, writes of one
/// key never share a log entry (a key's revisions strictly grow in the order they
/// were applied), and a restart reads back every acknowledged value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_entries_but_never_a_keys_revision() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 10_000);
    let node = Node::start(cfg.clone(), &Runner::new())
        .await
        .expect("start");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..400u32 {
        let node = node.clone();
        tasks.spawn(async move {
            let key = format!("k{}", i % 10);
            let value = format!("v{i}");
            let (index, response) = node.write(kv_put(&key, &value)).await.expect("write");
            (key, value, index, response)
        });
    }
    let mut by_key: std::collections::BTreeMap<String, Vec<(u64, String)>> = Default::default();
    let mut entries = std::collections::BTreeSet::new();
    while let Some(done) = tasks.join_next().await {
        let (key, value, index, response) = done.expect("task");
        match response {
            Response::KvPut { key: k, revision } => {
                assert_eq!((k.as_str(), revision), (key.as_str(), index));
            }
            other => panic!("unexpected answer {other:?}"),
        }
        entries.insert(index);
        by_key.entry(key).or_default().push((index, value));
    }
    info!(writes = 400, entries = entries.len(), "log entries used");
    // Two proposals are in flight at a time: the rest queue and go out together.
    assert!(entries.len() < 400, "no two writes shared an entry");
    for (key, writes) in &mut by_key {
        writes.sort();
        let mut revisions: Vec<u64> = writes.iter().map(|w| w.0).collect();
        revisions.dedup();
        assert_eq!(
            revisions.len(),
            writes.len(),
            "{key}: two writes share a revision"
        );
    }
    let node = restart(node, cfg).await;
    for (key, writes) in &by_key {
        let (rev, value) = writes.last().expect("a write");
        let stored = node.store().kv_get(key).unwrap().expect("stored");
        assert_eq!((&stored.value, stored.mod_revision), (value, *rev), "{key}");
    }
    node.shutdown().await.unwrap();
}
