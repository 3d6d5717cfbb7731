//! Membership changes (a node joins as a learner and is promoted once caught up;
//! a member leaves) and the cluster as one node sees it.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, ServerState};
use rota_core::validate::check_http_url;
use tokio::time::Instant;
use tracing::info;

use crate::network::{peer_failure, MemberChange, WireError};
use crate::node::leader_url;
use crate::routing::{left, Route};
use crate::{check_node_id, MembershipError, Node, WriteError};

/// Longest the leader waits for a new learner to catch up before promoting it.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest one membership change (a joint and a uniform entry) may take to commit.
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(10);

/// Membership, leader and indexes as one node sees them (see [`Node::readiness`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    /// This node is a voter or a learner of the effective membership.
    pub member: bool,
    pub leader: Option<u64>,
    /// The highest index this node knows to be committed.
    pub commit_index: u64,
    pub last_applied: u64,
}

impl Node {
    /// Adds a node to the cluster: as a learner first, promoted to voter once it
    /// has caught up with the leader's log (a new node gets a snapshot when the log
    /// it needs was purged). Idempotent: adding a voter again does nothing.
    pub async fn add_member(&self, id: u64, url: &str) -> Result<(), MembershipError> {
        let url = url.trim().trim_end_matches('/').to_string();
        self.change_members(MemberChange::Add { id, url }).await
    }

    /// Removes a voter or learner from the cluster.
    pub async fn remove_member(&self, id: u64) -> Result<(), MembershipError> {
        self.change_members(MemberChange::Remove { id }).await
    }

    async fn change_members(&self, change: MemberChange) -> Result<(), MembershipError> {
        let deadline = Instant::now() + CATCH_UP_TIMEOUT + 2 * MEMBERSHIP_TIMEOUT;
        let change = &change;
        self.with_leader(|route| async move {
            match route {
                Route::Here => match change {
                    MemberChange::Add { id, url } => self.add_member_local(*id, url).await,
                    MemberChange::Remove { id } => self.remove_member_local(*id).await,
                },
                Route::Leader(url) => self
                    .transport
                    .call::<_, Result<(), WireError>>(&url, "members", change, left(deadline))
                    .await
                    .map_err(|e| MembershipError::from(peer_failure(e, &url)))?
                    .map_err(MembershipError::from),
            }
        })
        .await
    }

    pub(crate) async fn add_member_local(&self, id: u64, url: &str) -> Result<(), MembershipError> {
        let invalid = |message: String| MembershipError::InvalidMember { id, message };
        check_node_id(id).map_err(invalid)?;
        check_http_url(url).map_err(invalid)?;
        let (voter, known) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            if m.state != ServerState::Leader {
                return Err(WriteError::NotLeader {
                    leader_url: leader_url(&self.raft, m.current_leader, None),
                }
                .into());
            }
            let membership = m.membership_config.membership();
            let voter = membership.voter_ids().any(|v| v == id);
            (voter, membership.get_node(&id).map(|n| n.addr.clone()))
        };
        if let Some(addr) = &known {
            if addr != url {
                return Err(invalid(format!(
                    "id {id} belongs to the member at {addr}; remove it first"
                )));
            }
        }
        if voter {
            return Ok(());
        }
        if known.is_none() {
            info!(id, url, "adding a learner");
            let added = tokio::time::timeout(
                MEMBERSHIP_TIMEOUT,
                self.raft.add_learner(id, BasicNode::new(url), false),
            )
            .await;
            membership_outcome(id, added)?;
        }

        let target = self.raft.metrics().borrow().last_log_index;
        info!(id, ?target, "waiting for the learner to catch up");
        let caught_up = self
            .raft
            .wait(Some(CATCH_UP_TIMEOUT))
            .metrics(
                move |m| {
                    // Leadership lost: stop waiting, the check below reports it.
                    m.state != ServerState::Leader
                        || m.replication
                            .as_ref()
                            .and_then(|r| r.get(&id))
                            .and_then(|matched| matched.map(|l| l.index))
                            >= target
                },
                "the learner caught up",
            )
            .await;
        match caught_up {
            Ok(m) if m.state != ServerState::Leader => {
                return Err(WriteError::NotLeader {
                    leader_url: leader_url(&self.raft, m.current_leader, None),
                }
                .into())
            }
            Ok(_) => {}
            Err(openraft::metrics::WaitError::Timeout(..)) => {
                return Err(MembershipError::CatchUpTimeout {
                    id,
                    timeout: CATCH_UP_TIMEOUT,
                })
            }
            Err(openraft::metrics::WaitError::ShuttingDown) => {
                return Err(WriteError::ShuttingDown.into())
            }
        }

        info!(id, "promoting the learner to voter");
        let promoted = tokio::time::timeout(
            MEMBERSHIP_TIMEOUT,
            self.raft
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), true),
        )
        .await;
        membership_outcome(id, promoted)?;
        info!(id, url, "node joined as voter");
        Ok(())
    }

    pub(crate) async fn remove_member_local(&self, id: u64) -> Result<(), MembershipError> {
        let (voters, learner) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let membership = m.membership_config.membership();
            let voters: BTreeSet<u64> = membership.voter_ids().collect();
            let learner = membership.learner_ids().any(|l| l == id);
            (voters, learner)
        };
        let change = if voters.contains(&id) {
            if voters.len() == 1 {
                return Err(MembershipError::LastVoter { id });
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else if learner {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        } else {
            return Err(MembershipError::UnknownMember { id });
        };
        info!(id, "removing a member");
        let removed = tokio::time::timeout(
            MEMBERSHIP_TIMEOUT,
            self.raft.change_membership(change, false),
        )
        .await;
        membership_outcome(id, removed)?;
        info!(id, "member removed");
        Ok(())
    }

    /// The highest log index this node knows to be committed (0 before any).
    pub async fn commit_index(&self) -> Result<u64, WriteError> {
        self.raft
            .with_raft_state(|st| st.committed.map_or(0, |id| id.index))
            .await
            .map_err(WriteError::from)
    }

    /// What decides whether this node is ready to serve (`/readyz`): membership and
    /// the commit index come from the Raft core itself, since the metrics may not
    /// show a membership just initialized yet.
    pub async fn readiness(&self) -> Result<Readiness, WriteError> {
        let id = self.cfg.node_id;
        let (member, commit_index) = self
            .raft
            .with_raft_state(move |st| {
                let member = st.membership_state.effective().get_node(&id).is_some();
                (member, st.committed.map_or(0, |c| c.index))
            })
            .await
            .map_err(WriteError::from)?;
        // Read after the commit index, the applied index may have passed it (a write
        // committed and applied in between); what is applied was committed.
        let status = self.status();
        Ok(Readiness {
            member,
            leader: status.leader,
            commit_index: commit_index.max(status.last_applied),
            last_applied: status.last_applied,
        })
    }

    /// Members, leader, term and indexes, as this node knows them. `matched_index`
    /// (how far a member's log matches the leader's) is only known by the leader.
    pub async fn cluster_status(&self) -> Result<ClusterStatus, WriteError> {
        let commit_index = self.commit_index().await?;
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let leading = m.state == ServerState::Leader;
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let matched_index = if !leading {
                    None
                } else if *id == self.cfg.node_id {
                    m.last_log_index
                } else {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(id))
                        .and_then(|l| l.map(|l| l.index))
                };
                MemberStatus {
                    id: *id,
                    url: node.addr.clone(),
                    role: if voters.contains(id) {
                        MemberRole::Voter
                    } else {
                        MemberRole::Learner
                    },
                    matched_index,
                }
            })
            .collect();
        Ok(ClusterStatus {
            node_id: self.cfg.node_id,
            leader: m.current_leader,
            leader_url: m
                .current_leader
                .and_then(|id| membership.get_node(&id).map(|n| n.addr.clone())),
            term: m.current_term,
            members,
            commit_index,
            last_applied: m.last_applied.map_or(0, |id| id.index),
            cluster_id: self.transport.cluster_id().map(str::to_string),
        })
    }
}

/// A member as `GET /v1/cluster` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemberStatus {
    pub id: u64,
    pub url: String,
    pub role: MemberRole,
    pub matched_index: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    Voter,
    Learner,
}

/// The cluster as one node sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterStatus {
    /// The node that answered.
    pub node_id: u64,
    pub leader: Option<u64>,
    pub leader_url: Option<String>,
    pub term: u64,
    pub members: Vec<MemberStatus>,
    pub commit_index: u64,
    pub last_applied: u64,
    /// The cluster this node belongs to (see the `identity` module); absent while
    /// a node started with `--join` has not been added yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
}

/// What openraft answers a membership change with.
type ChangeResult<T> = Result<T, RaftError<u64, ClientWriteError<u64, BasicNode>>>;

/// Maps the outcome of a membership change (or its time limit).
fn membership_outcome<T>(
    id: u64,
    outcome: Result<ChangeResult<T>, tokio::time::error::Elapsed>,
) -> Result<(), MembershipError> {
    match outcome {
        Err(_) => Err(WriteError::Timeout(MEMBERSHIP_TIMEOUT).into()),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
            Err(WriteError::NotLeader {
                leader_url: f.leader_node.map(|n| n.addr),
            }
            .into())
        }
        Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => match e {
            ChangeMembershipError::InProgress(_) => Err(MembershipError::InProgress),
            ChangeMembershipError::LearnerNotFound(l) => {
                Err(MembershipError::UnknownMember { id: l.node_id })
            }
            ChangeMembershipError::EmptyMembership(_) => Err(MembershipError::LastVoter { id }),
        },
        Ok(Err(RaftError::Fatal(e))) => Err(WriteError::from(e).into()),
    }
}
