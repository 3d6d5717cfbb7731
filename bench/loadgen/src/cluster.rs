//! Where a cluster stands: which node leads and whether every node caught up, read
//! from each node's own status (rota: `GET /v1/health`; etcd 3.4:
//! `POST /v3/maintenance/status` on the JSON gateway). The benchmark script waits
//! on [`wait_settled`] before each step and around each leader kill.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;
use tracing::debug;

use crate::client::{get_json, post_json_text};
use crate::error::BenchError;
use crate::kv::Target;

/// Longest a status request may take; a node that does not answer within it is
/// taken as down.
const STATUS_TIMEOUT: Duration = Duration::from_millis(500);
/// Pause between two rounds of status requests.
const POLL: Duration = Duration::from_millis(50);

/// What one node says about itself and the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// The node's own id (rota: `node_id`; etcd: `header.member_id`).
    pub id: String,
    /// The leader it follows, if it knows one.
    pub leader: Option<String>,
    /// The last log index it applied.
    pub applied: u64,
}

impl NodeView {
    /// From rota's `GET /v1/health`.
    pub fn from_rota(v: &Value) -> Option<NodeView> {
        Some(NodeView {
            id: v.get("node_id")?.as_u64()?.to_string(),
            leader: v
                .get("leader")
                .and_then(Value::as_u64)
                .map(|l| l.to_string()),
            applied: v.get("last_applied").and_then(Value::as_u64).unwrap_or(0),
        })
    }

    /// From etcd's `/v3/maintenance/status`. The gateway prints 64-bit integers as
    /// strings, and leader 0 means none.
    pub fn from_etcd(v: &Value) -> Option<NodeView> {
        let number = |v: Option<&Value>| -> Option<u64> {
            let v = v?;
            v.as_u64().or_else(|| v.as_str()?.parse().ok())
        };
        let id = number(v.get("header").and_then(|h| h.get("member_id")))?;
        let leader = number(v.get("leader")).filter(|l| *l != 0);
        let applied = number(v.get("raftAppliedIndex"))
            .or_else(|| number(v.get("raft_applied_index")))
            .or_else(|| number(v.get("raftIndex")))
            .or_else(|| number(v.get("raft_index")))
            .unwrap_or(0);
        Some(NodeView {
            id: id.to_string(),
            leader: leader.map(|l| l.to_string()),
            applied,
        })
    }
}

/// One node's status, or `None` when it is down or does not answer in time.
pub async fn node_view(http: &reqwest::Client, target: Target, url: &str) -> Option<NodeView> {
    let base = url.trim_end_matches('/');
    let answer = match target {
        Target::Rota => get_json(http, &format!("{base}/v1/health")).await,
        Target::Etcd => {
            let url = format!("{base}/v3/maintenance/status");
            post_json_text(http, &url, &json!({}))
                .await
                .and_then(|text| {
                    serde_json::from_str(&text).map_err(|source| BenchError::Decode { url, source })
                })
        }
    };
    match answer {
        Ok(v) => match target {
            Target::Rota => NodeView::from_rota(&v),
            Target::Etcd => NodeView::from_etcd(&v),
        },
        Err(err) => {
            debug!(%url, error = %err, "no status");
            None
        }
    }
}

/// The position in `views` of the leader every answering node agrees on, when a
/// majority of the `views.len()` nodes answers and the leader is one of them.
pub fn agreed_leader(views: &[Option<NodeView>]) -> Option<usize> {
    let up: Vec<&NodeView> = views.iter().flatten().collect();
    if up.len() * 2 <= views.len() {
        return None;
    }
    let leader = up.first()?.leader.clone()?;
    if up
        .iter()
        .any(|v| v.leader.as_deref() != Some(leader.as_str()))
    {
        return None;
    }
    views
        .iter()
        .position(|v| v.as_ref().is_some_and(|v| v.id == leader))
}

/// What [`wait_settled`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// A majority answers and agrees on a leader that is up.
    Leader,
    /// Every node answers, agrees on the leader, and has applied at least what the
    /// leader had applied when agreement was first seen (a restarted node caught up).
    All,
}

/// Polls every node until the cluster is `settled`; answers the leader's position
/// in `urls`.
pub async fn wait_settled(
    target: Target,
    urls: &[String],
    settled: Settled,
    timeout: Duration,
) -> Result<usize, BenchError> {
    if urls.is_empty() {
        return Err(BenchError::NoEndpoint);
    }
    // reqwest refuses to build a client until a TLS provider is installed, even for
    // plain HTTP; installing twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .timeout(STATUS_TIMEOUT)
        .no_proxy()
        .build()
        .map_err(BenchError::ClientBuild)?;
    let deadline = Instant::now() + timeout;
    // The leader's applied index when agreement was first seen: the mark every
    // node must reach.
    let mut mark: Option<u64> = None;
    let mut last;
    loop {
        let views: Vec<Option<NodeView>> = all_views(&http, target, urls).await;
        match agreed_leader(&views) {
            Some(leader) => {
                let all_up = views.iter().all(Option::is_some);
                let applied: Vec<u64> = views.iter().flatten().map(|v| v.applied).collect();
                let leader_applied = views[leader].as_ref().map_or(0, |v| v.applied);
                let mark = *mark.get_or_insert(leader_applied);
                let caught_up = applied.iter().all(|a| *a >= mark);
                match settled {
                    Settled::Leader => return Ok(leader),
                    Settled::All if all_up && caught_up => return Ok(leader),
                    Settled::All => {
                        last = format!(
                            "leader is node {}; applied {applied:?}, waiting for {mark} on all {}",
                            leader + 1,
                            urls.len()
                        );
                    }
                }
            }
            None => {
                let summary: Vec<String> = views
                    .iter()
                    .map(|v| match v {
                        Some(v) => format!("{} follows {:?}", v.id, v.leader),
                        None => "down".to_string(),
                    })
                    .collect();
                last = format!("no agreed leader: {}", summary.join(", "));
            }
        }
        if Instant::now() >= deadline {
            return Err(BenchError::ClusterNotReady {
                urls: urls.join(","),
                waited_secs: timeout.as_secs(),
                last,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Every node's view, asked at the same time.
async fn all_views(
    http: &reqwest::Client,
    target: Target,
    urls: &[String],
) -> Vec<Option<NodeView>> {
    let tasks: Vec<_> = urls
        .iter()
        .map(|url| {
            let http = http.clone();
            let url = url.clone();
            tokio::spawn(async move { node_view(&http, target, &url).await })
        })
        .collect();
    let mut views = Vec::with_capacity(tasks.len());
    for task in tasks {
        views.push(task.await.ok().flatten());
    }
    views
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: &str, leader: Option<&str>) -> Option<NodeView> {
        Some(NodeView {
            id: id.to_string(),
            leader: leader.map(str::to_string),
            applied: 1,
        })
    }

    #[test]
    fn a_majority_that_agrees_names_the_leader() {
        let views = [view("1", Some("2")), view("2", Some("2")), None];
        assert_eq!(agreed_leader(&views), Some(1));
    }

    #[test]
    fn disagreement_minority_or_a_dead_leader_names_none() {
        assert_eq!(
            agreed_leader(&[
                view("1", Some("2")),
                view("2", Some("3")),
                view("3", Some("3"))
            ]),
            None
        );
        assert_eq!(agreed_leader(&[view("1", Some("1")), None, None]), None);
        // Both survivors still point at the killed leader.
        assert_eq!(
            agreed_leader(&[None, view("2", Some("1")), view("3", Some("1"))]),
            None
        );
        assert_eq!(
            agreed_leader(&[view("1", None), view("2", None), None]),
            None
        );
    }

    #[test]
    fn rota_health_is_read() {
        let v = json!({"node_id": 2, "role": "follower", "leader": 3, "last_applied": 17});
        assert_eq!(
            NodeView::from_rota(&v),
            Some(NodeView {
                id: "2".into(),
                leader: Some("3".into()),
                applied: 17
            })
        );
        let no_leader = json!({"node_id": 2, "leader": null, "last_applied": 0});
        assert_eq!(NodeView::from_rota(&no_leader).unwrap().leader, None);
    }

    #[test]
    fn etcd_status_is_read_with_string_integers() {
        let v = json!({"header": {"cluster_id": "1", "member_id": "1234567890123456789"},
            "leader": "1234567890123456789", "raftIndex": "40", "raftAppliedIndex": "39"});
        let view = NodeView::from_etcd(&v).unwrap();
        assert_eq!(view.id, "1234567890123456789");
        assert_eq!(view.leader.as_deref(), Some("1234567890123456789"));
        assert_eq!(view.applied, 39);
        let leaderless = json!({"header": {"member_id": "5"}, "leader": "0"});
        assert_eq!(NodeView::from_etcd(&leaderless).unwrap().leader, None);
    }
}
