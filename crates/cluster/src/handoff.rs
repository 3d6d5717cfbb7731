//! Stopping a node, and the graceful leader handoff a leader makes first.

use std::time::Duration;

use openraft::{BasicNode, ServerState};
use tracing::{info, warn};

use crate::network::{self, WireError};
use crate::node::RELEASE_TIMEOUT;
use crate::{ClusterError, Node, WriteError};

/// Longest a leader at shutdown waits for a successor to hold its whole log.
const HANDOFF_CATCH_UP: Duration = Duration::from_secs(2);
/// How often a stopping leader tries to hand over while Raft still runs.
const STEP_DOWN_TRIES: u32 = 3;
/// Longest the successor may take to answer the handoff call.
const HANDOFF_CALL_TIMEOUT: Duration = Duration::from_secs(1);

impl Node {
    /// Stops Raft and flushes storage. Once it returns and the last handle to the
    /// node and its store is dropped, the data directory can be opened again.
    ///
    /// A leader hands its leadership over first (openraft 0.9 has no leader
    /// transfer): with its writes held, it picks the voter whose log matches the
    /// most of its own (waiting briefly for one to hold all of it) and asks it to
    /// stand for election at once, while Raft still runs (`hand_over`).
    /// When that does not move leadership in time, it stops Raft and, once the
    /// other followers' leader lease has run out, asks that voter again. Either way
    /// the successor wins the first round, instead of the cluster waiting for an
    /// election timeout on top of the lease. When the handoff cannot be made, the
    /// followers elect a leader on their own as after a crash.
    pub async fn shutdown(&self) -> Result<(), ClusterError> {
        // First while Raft still runs: this node's vote lets the successor win at
        // once. When that does not happen in time, after stopping, by the lease.
        let (successor, handed) = match self.hand_over().await {
            Some((successor, handed)) => (Some(successor), handed),
            None => (None, false),
        };
        self.raft.shutdown().await?;
        if let (Some(successor), false) = (successor, handed) {
            self.hand_off(successor).await;
        }
        // Only now: the proposal queue serves writes until Raft has stopped, and the
        // leadership watcher reports the last change of leadership.
        self.workers.stop().await;
        {
            let mut released = self.released.lock().await;
            if tokio::time::timeout(RELEASE_TIMEOUT, released.recv())
                .await
                .is_err()
            {
                warn!("raft storage was not released in time after shutdown");
            }
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.flush()).await??;
        info!(node_id = self.cfg.node_id, "node stopped");
        Ok(())
    }
}

impl Node {
    /// The first step of a graceful stop, while Raft keeps running: this node stops
    /// standing for election (it stays a follower, voting and replicating, until it
    /// stops), and a leader hands its leadership over live as [`Node::shutdown`]
    /// does, so the cluster goes on scheduling while this node's runs finish.
    /// Answers whether this node still leads afterwards (a one-node cluster, or a
    /// handoff that did not happen in time: [`Node::shutdown`] tries again).
    pub async fn step_down(&self) -> bool {
        self.raft.runtime_config().elect(false);
        for _ in 0..STEP_DOWN_TRIES {
            match self.hand_over().await {
                None | Some((_, true)) => break,
                Some((_, false)) => {}
            }
        }
        self.is_leader()
    }

    /// When this node leads: picks a successor and hands leadership over live, with
    /// this node's writes held meanwhile (see [`crate::batcher::Proposals::hold`]).
    /// Writes that kept coming would grow the leader's log past the successor's
    /// between the pick and its vote request, and this node would refuse its vote
    /// (a candidate's log must be at least as long as the voter's) yet step down for
    /// the newer term: then nobody leads until an election timeout. Answers the
    /// successor and whether leadership moved; `None` when there is none.
    pub(crate) async fn hand_over(&self) -> Option<(Successor, bool)> {
        let voters = self.other_voters()?;
        // A leader refuses its vote to any candidate until its own lease, counted
        // from its election, has run out; asked before that, the successor would
        // lose, and this node step down for its term all the same.
        let since = *self.leading_since.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(since) = since {
            tokio::time::sleep_until(since + self.timing.leader_lease()).await;
        }
        let held = self.proposals.hold(HANDOFF_CATCH_UP).await;
        if held.is_none() {
            warn!("writes still on their way after {HANDOFF_CATCH_UP:?}; handing over without holding them");
        }
        let successor = self.pick_successor(voters).await?;
        let moved = self.hand_over_live(&successor).await;
        drop(held);
        Some((successor, moved))
    }

    fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// The other voters, when this node leads and they can form a quorum without it.
    fn other_voters(&self) -> Option<Vec<u64>> {
        let m = self.raft.metrics();
        let m = m.borrow();
        if m.state != ServerState::Leader {
            return None;
        }
        let voters: Vec<u64> = m
            .membership_config
            .membership()
            .voter_ids()
            .filter(|v| *v != self.cfg.node_id)
            .collect();
        // Without this node, n others are a majority of n + 1 voters only from 2 on.
        (voters.len() >= 2).then_some(voters)
    }
}

/// The voter a leader hands its leadership to at shutdown.
#[derive(Debug)]
pub(crate) struct Successor {
    pub(crate) id: u64,
    url: String,
    /// The leader's term: the successor stands only if no election happened since.
    pub(crate) term: u64,
    /// How far its log matched the leader's when picked (for the log).
    matched: Option<u64>,
}

impl Node {
    /// The voter of `voters` (the others, see [`Node::other_voters`]) to hand
    /// leadership to, when this node still leads.
    async fn pick_successor(&self, voters: Vec<u64>) -> Option<Successor> {
        let (term, last) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            if m.state != ServerState::Leader {
                return None;
            }
            (m.current_term, m.last_log_index)
        };
        let matched_of = |m: &openraft::RaftMetrics<u64, BasicNode>, id: u64| {
            m.replication
                .as_ref()
                .and_then(|r| r.get(&id))
                .and_then(|l| l.map(|l| l.index))
        };
        // A successor with less log than another follower would be refused its
        // votes; one with all of this leader's log is refused by nobody.
        let waited = {
            let voters = voters.clone();
            self.raft
                .wait(Some(HANDOFF_CATCH_UP))
                .metrics(
                    move |m| {
                        m.state != ServerState::Leader
                            || voters.iter().any(|v| matched_of(m, *v) >= last)
                    },
                    "a voter holds the whole log",
                )
                .await
        };
        let m = match waited {
            Ok(m) => m,
            Err(openraft::metrics::WaitError::Timeout(..)) => self.raft.metrics().borrow().clone(),
            Err(openraft::metrics::WaitError::ShuttingDown) => return None,
        };
        if m.state != ServerState::Leader {
            return None;
        }
        let (id, matched) = voters
            .iter()
            .map(|v| (*v, matched_of(&m, *v)))
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))?;
        let url = m.membership_config.membership().get_node(&id)?.addr.clone();
        Some(Successor {
            id,
            url,
            term,
            matched,
        })
    }

    /// Asks `successor` to stand for election while this node still leads, and waits
    /// (a few election timeouts at most) until another node leads: the
    /// successor needs one more vote than its own, and this node gives it (openraft
    /// does not renew a leader's own lease, so a leader of longer than the lease
    /// votes for a newer term at once), while the other followers would still refuse
    /// it until their lease ran out. Answers whether leadership moved.
    async fn hand_over_live(&self, successor: &Successor) -> bool {
        info!(
            successor = successor.id,
            matched = ?successor.matched,
            term = successor.term,
            "handing leadership over"
        );
        if !self.ask_to_stand(successor).await {
            return false;
        }
        let mut metrics = self.raft.metrics();
        let moved = tokio::time::timeout(
            self.timing.leader_lease() * 2,
            // Another node leads: this one stepping down is not enough, as it also
            // does for a newer term whose candidate it refused.
            metrics.wait_for(|m| m.current_leader.is_some_and(|l| l != self.cfg.node_id)),
        )
        .await;
        let moved = matches!(moved, Ok(Ok(_)));
        if moved {
            info!(successor = successor.id, "leadership handed over");
        } else {
            info!(
                successor = successor.id,
                "the successor did not take over in time; handing over after the lease"
            );
        }
        moved
    }

    /// Calls the successor's `/raft/elect`; answers whether it stood.
    async fn ask_to_stand(&self, successor: &Successor) -> bool {
        let request = network::ElectRequest {
            from: self.cfg.node_id,
            term: successor.term,
        };
        match self
            .transport
            .call::<_, Result<bool, WireError>>(
                &successor.url,
                "elect",
                &request,
                HANDOFF_CALL_TIMEOUT,
            )
            .await
        {
            Ok(Ok(true)) => {
                info!(successor = successor.id, "successor stands for election");
                true
            }
            Ok(Ok(false)) => {
                info!(
                    successor = successor.id,
                    "successor saw a newer term; no handoff needed"
                );
                false
            }
            Ok(Err(e)) => {
                warn!(successor = successor.id, error = ?e, "handoff refused");
                false
            }
            Err(e) => {
                warn!(successor = successor.id, error = %rota_core::error::chain(&e), "handoff call failed");
                false
            }
        }
    }

    /// Asks `successor` to stand for election once the followers' leader lease
    /// (counted from the last heartbeat, which went out before Raft stopped) has
    /// run out: before that they would refuse to vote.
    async fn hand_off(&self, successor: Successor) {
        let wait = self.timing.leader_lease() + self.timing.heartbeat_interval;
        info!(
            successor = successor.id,
            matched = ?successor.matched,
            term = successor.term,
            after = ?wait,
            "handing leadership over"
        );
        tokio::time::sleep(wait).await;
        self.ask_to_stand(&successor).await;
    }

    /// The successor's side of [`Node::hand_off`]: stands for election at once,
    /// unless a newer term began since the leader's (someone else already stands
    /// or leads). Answers whether it stood.
    pub(crate) async fn elect_on_handoff(&self, from: u64, term: u64) -> Result<bool, WriteError> {
        let (current, leading) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            (m.current_term, m.state == ServerState::Leader)
        };
        if current != term || leading {
            return Ok(false);
        }
        info!(from, term, "standing for election: the leader handed over");
        self.raft.trigger().elect().await?;
        Ok(true)
    }
}
