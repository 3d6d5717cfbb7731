//! A leader's lone write goes to the followers while the leader's own append is
//! being synced, not after.
//!
//! openraft 0.9 replicates an entry only once the leader's append of it is flushed,
//! so the leader's fsync and a follower's fsync add up on every write. Raft does not
//! require that order: a leader may send the entries of its log before they are on
//! its own disk (etcd does; openraft 0.10 can). Here the log store, on the leader,
//! hands a lone write's entries to [`EarlySend`] before it syncs them, and
//! `EarlySend` sends each follower an ordinary AppendEntries with them: the leader's
//! vote, the log id before them and no commit index. The follower appends and
//! syncs them as it would any AppendEntries of this leader, and its answer is
//! dropped. When openraft's own replication then sends the same entries, the
//! follower already holds them and answers at once (a follower's Raft core runs one
//! request at a time, so that answer comes after its sync of the early copy ended).
//!
//! Nothing about commitment changes: the leader counts a follower only from
//! openraft's own replication, and itself only once its append is flushed, so an
//! entry is committed only when a majority has it on disk. An early copy that
//! arrives out of order, or at a follower that moved to a newer term, is refused
//! by the follower like any stale AppendEntries.
//!
//! Only entries this node made as the leader of the term it leads in go early, and
//! only a light entry while the node's writes are quiet (a lone client's write):
//! under load the batches already share one round, and sending every entry twice
//! would cost CPU that the load needs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::RaftError;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
use openraft::{BasicNode, RaftMetrics};
use tokio::sync::watch;
use tracing::debug;

use crate::network::Transport;
use crate::types::{Entry, LogId, TypeConfig};

/// An early copy that is not answered by then is of no use any more.
const EARLY_TIMEOUT: Duration = Duration::from_secs(1);

/// Sends a leader's newest entries to its followers ahead of openraft's own
/// replication. Set on the log store once the node's Raft runs.
pub(crate) struct EarlySend {
    me: u64,
    metrics: watch::Receiver<RaftMetrics<u64, BasicNode>>,
    transport: Transport,
    counts: Arc<Counts>,
}

/// Early copies sent, and those a follower accepted.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub sent: AtomicU64,
    pub accepted: AtomicU64,
    /// Woken whenever a copy is accepted.
    pub on_accept: tokio::sync::Notify,
}

impl EarlySend {
    pub(crate) fn new(
        me: u64,
        metrics: watch::Receiver<RaftMetrics<u64, BasicNode>>,
        transport: Transport,
    ) -> EarlySend {
        EarlySend {
            me,
            metrics,
            transport,
            counts: Arc::default(),
        }
    }

    #[cfg(test)]
    pub(crate) fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Sends `entries` (following `prev` in the log, not synced yet) to every other
    /// member, when this node made them as the leader of the term it leads in;
    /// answers whether they went. Returns at once: the calls run on their own tasks.
    pub(crate) fn send(&self, prev: Option<LogId>, entries: &[Entry]) -> bool {
        let Some(first) = entries.first() else {
            return false;
        };
        let made_by = first.log_id.leader_id;
        if made_by.node_id != self.me || entries.iter().any(|e| e.log_id.leader_id != made_by) {
            return false;
        }
        let (vote, targets) = {
            let m = self.metrics.borrow();
            let leads = m.current_leader == Some(self.me)
                && m.vote.is_committed()
                && *m.vote.leader_id() == made_by;
            if !leads {
                return false;
            }
            let targets: Vec<(u64, String)> = m
                .membership_config
                .membership()
                .nodes()
                .filter(|(id, _)| **id != self.me)
                .map(|(id, node)| (*id, node.addr.clone()))
                .collect();
            (m.vote, targets)
        };
        if targets.is_empty() {
            return false;
        }
        let request = Arc::new(AppendEntriesRequest::<TypeConfig> {
            vote,
            prev_log_id: prev,
            entries: entries.to_vec(),
            leader_commit: None,
        });
        for (target, url) in targets {
            let (transport, request) = (self.transport.clone(), request.clone());
            let counts = self.counts.clone();
            counts.sent.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let answer = transport
                    .call_node::<_, Result<AppendEntriesResponse<u64>, RaftError<u64>>>(
                        &url,
                        Some(target),
                        "append",
                        &*request,
                        EARLY_TIMEOUT,
                    )
                    .await;
                match answer {
                    Ok(answer) => {
                        if matches!(answer, Ok(AppendEntriesResponse::Success)) {
                            counts.accepted.fetch_add(1, Ordering::Relaxed);
                            counts.on_accept.notify_waiters();
                        }
                        debug!(%url, ?answer, "early copy of new entries answered");
                    }
                    Err(err) => {
                        debug!(%url, error = %err, "an early copy of new entries was not delivered")
                    }
                }
            });
        }
        true
    }
}
