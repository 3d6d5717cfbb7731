//! Where a request goes: a write or read barrier is served here when this node
//! leads and forwarded to the leader otherwise, again after a "not the leader"
//! answer until a leader takes it or the leader wait ([`Node::leader_wait`]) runs
//! out.

use std::time::Duration;

use openraft::error::{CheckIsLeaderError, RaftError};
use openraft::ServerState;
use rota_core::{ClientRequest, Response};
use tokio::time::Instant;
use tracing::{debug, Instrument, Span};

use crate::network::{peer_failure, ForwardedWrite, WireError};
use crate::node::{leader_url, WRITE_TIMEOUT};
use crate::{trace, MembershipError, Node, WriteError};

/// Least time a request waits for a leader to be known (or reachable) before it
/// is answered `NotLeader`.
const LEADER_WAIT: Duration = Duration::from_secs(3);
/// The wait is at least this many shortest election timeouts: replacing a dead
/// leader takes 3 to 4 of them (the lease, then a follower's own timeout), and a
/// split vote costs up to 2 more per round, so one failover with a split vote
/// fits even when the timeouts are configured long.
const ELECTION_TIMEOUTS_WAITED: u32 = 10;
/// Pause before trying again after the leader refused or could not be reached,
/// so that a dead leader's refused connections do not spin the retry loop.
const LEADER_RETRY_PAUSE: Duration = Duration::from_millis(50);

impl Node {
    /// Commits a request through Raft (durable on a majority) and answers with the
    /// log index it got and the state machine's response. On a follower the request
    /// is forwarded to the leader; while no leader is known (an election) it waits
    /// up to [`Node::leader_wait`] for one, then answers [`WriteError::NotLeader`].
    pub async fn write(&self, req: ClientRequest) -> Result<(u64, Response), WriteError> {
        let span = trace::commit_span(&self.cfg.node_name, &req.command, None);
        let written = self.write_routed(req, &span).instrument(span.clone()).await;
        trace::record_outcome(&span, &written);
        written
    }

    /// [`Node::write`] inside its `raft.commit` span.
    async fn write_routed(
        &self,
        req: ClientRequest,
        span: &Span,
    ) -> Result<(u64, Response), WriteError> {
        let deadline = Instant::now() + WRITE_TIMEOUT;
        let req = &req;
        self.with_leader(|route| async move {
            span.record(
                "raft.forwarded_to_leader",
                matches!(route, Route::Leader(_)),
            );
            match route {
                Route::Here => self.write_here(req.clone(), deadline).await,
                Route::Leader(url) => {
                    let call = self.transport.call::<_, Result<ForwardedWrite, WireError>>(
                        &url,
                        "forward",
                        req,
                        left(deadline),
                    );
                    match self.unless_leader_moves(&url, call).await {
                        Ok(answer) => answer
                            .map_err(|e| peer_failure(e, &url))?
                            .map(|w| (w.index, w.response))
                            .map_err(WireError::into_write_error),
                        // A session makes a repeat harmless: go to the new leader.
                        Err(_) if req.session.is_some() => {
                            Err(WriteError::NotLeader { leader_url: None })
                        }
                        Err(leader_url) => Err(WriteError::LeaderMoved { leader_url }),
                    }
                }
            }
        })
        .await
    }

    /// Awaits `call`, a request forwarded to the leader at `url`, unless another
    /// node becomes the leader first: a leader frozen or cut off after it took the
    /// connection never answers, and waiting out the whole write timeout for it
    /// would hold the client long after a new leader took over. `Err` carries the
    /// new leader's URL.
    async fn unless_leader_moves<T>(
        &self,
        url: &str,
        call: impl std::future::Future<Output = T>,
    ) -> Result<T, Option<String>> {
        let mut metrics = self.raft.metrics();
        tokio::pin!(call);
        loop {
            let moved = {
                let m = metrics.borrow_and_update();
                let now = if m.state == ServerState::Leader {
                    Some(self.cfg.advertise_url.clone())
                } else {
                    m.current_leader
                        .and_then(|id| m.membership_config.membership().get_node(&id))
                        .map(|n| n.addr.clone())
                };
                now.filter(|now| now != url)
            };
            if let Some(new) = moved {
                debug!(old = %url, new = %new, "the leader moved while a forwarded write waited");
                return Err(Some(new));
            }
            tokio::select! {
                answer = &mut call => return Ok(answer),
                changed = metrics.changed() => {
                    if changed.is_err() {
                        return Ok(call.await);
                    }
                }
            }
        }
    }

    /// A write proposed by this node only (a forwarded one: forwarding again could
    /// loop between two nodes that each believe the other leads).
    /// `traceparent`: the forwarding node's commit span.
    pub(crate) async fn write_local(
        &self,
        req: ClientRequest,
        traceparent: Option<&str>,
    ) -> Result<(u64, Response), WriteError> {
        let span = trace::commit_span(&self.cfg.node_name, &req.command, Some(traceparent));
        let written = self
            .write_here(req, Instant::now() + WRITE_TIMEOUT)
            .instrument(span.clone())
            .await;
        trace::record_outcome(&span, &written);
        written
    }

    async fn write_here(
        &self,
        req: ClientRequest,
        deadline: Instant,
    ) -> Result<(u64, Response), WriteError> {
        match tokio::time::timeout_at(deadline, self.proposals.propose(req)).await {
            Err(_) => Err(WriteError::Timeout(WRITE_TIMEOUT)),
            Ok(result) => result,
        }
    }

    /// Returns once the local state machine reflects every write committed before
    /// the call: the leader confirms its leadership with a quorum and names its
    /// commit index (ReadIndex), then this node waits until it applied that index.
    /// A follower asks the leader over the peer transport.
    pub async fn read_barrier(&self) -> Result<(), WriteError> {
        let deadline = Instant::now() + WRITE_TIMEOUT;
        let index = self
            .with_leader(|route| async move {
                match route {
                    Route::Here => self.read_index_here(deadline).await,
                    Route::Leader(url) => self
                        .transport
                        .call::<_, Result<u64, WireError>>(&url, "read_index", &(), left(deadline))
                        .await
                        .map_err(|e| peer_failure(e, &url))?
                        .map_err(WireError::into_write_error),
                }
            })
            .await?;
        if index == 0 {
            return Ok(());
        }
        match self
            .raft
            .wait(Some(left(deadline)))
            .applied_index_at_least(Some(index), "the read index is applied")
            .await
        {
            Ok(_) => Ok(()),
            Err(openraft::metrics::WaitError::Timeout(..)) => {
                Err(WriteError::Timeout(WRITE_TIMEOUT))
            }
            Err(openraft::metrics::WaitError::ShuttingDown) => Err(WriteError::ShuttingDown),
        }
    }

    /// Returns once this node's state machine applied log index `index` (a write
    /// this node forwarded is committed by the leader before a follower applies
    /// it): a reader of the local store after a write then sees the write.
    pub async fn wait_applied(&self, index: u64) -> Result<(), WriteError> {
        if self.store.last_applied_index() >= index {
            return Ok(());
        }
        match self
            .raft
            .wait(Some(WRITE_TIMEOUT))
            .applied_index_at_least(Some(index), "the write is applied here")
            .await
        {
            Ok(_) => Ok(()),
            Err(openraft::metrics::WaitError::Timeout(..)) => {
                Err(WriteError::Timeout(WRITE_TIMEOUT))
            }
            Err(openraft::metrics::WaitError::ShuttingDown) => Err(WriteError::ShuttingDown),
        }
    }

    /// Confirms that this node leads now, as a quorum of the voters sees it
    /// (ReadIndex), and waits until it applied everything committed before that:
    /// what a leader-only worker whose side effects are not in the log (webhooks)
    /// waits for before it acts on the store. The leadership watch alone is not
    /// enough for that: a node that restarts as the leader of its old term
    /// (openraft restores that role from its vote), or a leader cut off from the
    /// others, believes it leads until a peer answers with a newer term. Answers
    /// `NotLeader` (or a timeout) for those.
    pub async fn confirm_leadership(&self) -> Result<(), WriteError> {
        let index = self.read_index_local().await?;
        self.wait_applied(index).await
    }

    /// The read index of this node as leader (for a follower's read barrier).
    pub(crate) async fn read_index_local(&self) -> Result<u64, WriteError> {
        self.read_index_here(Instant::now() + WRITE_TIMEOUT).await
    }

    async fn read_index_here(&self, deadline: Instant) -> Result<u64, WriteError> {
        match tokio::time::timeout_at(deadline, self.raft.get_read_log_id()).await {
            Err(_) => Err(WriteError::Timeout(WRITE_TIMEOUT)),
            Ok(Ok((read, _applied))) => Ok(read.map_or(0, |id| id.index)),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                Err(WriteError::NotLeader {
                    leader_url: leader_url(&self.raft, f.leader_id, f.leader_node),
                })
            }
            // Leadership could not be confirmed: another leader may exist.
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_)))) => {
                Err(WriteError::NotLeader { leader_url: None })
            }
            Ok(Err(RaftError::Fatal(e))) => Err(e.into()),
        }
    }

    /// Where a request should go now: here when this node leads, else the known
    /// leader. Waits until `until` for a leader to be known.
    async fn route(&self, until: Instant) -> Result<Route, WriteError> {
        let mut metrics = self.raft.metrics();
        loop {
            {
                let m = metrics.borrow_and_update();
                if m.state == ServerState::Shutdown {
                    return Err(WriteError::ShuttingDown);
                }
                if m.state == ServerState::Leader || m.current_leader == Some(self.cfg.node_id) {
                    return Ok(Route::Here);
                }
                if let Some(node) = m
                    .current_leader
                    .and_then(|id| m.membership_config.membership().get_node(&id))
                {
                    return Ok(Route::Leader(node.addr.clone()));
                }
            }
            match tokio::time::timeout_at(until, metrics.changed()).await {
                Err(_) => return Err(WriteError::NotLeader { leader_url: None }),
                Ok(Err(_)) => return Err(WriteError::ShuttingDown),
                Ok(Ok(())) => {}
            }
        }
    }

    /// How long a request waits for a leader: [`LEADER_WAIT`], or longer when the
    /// configured election timeout makes one failover take longer than that.
    pub(crate) fn leader_wait(&self) -> Duration {
        LEADER_WAIT.max(self.timing.election_timeout * ELECTION_TIMEOUTS_WAITED)
    }

    /// Runs `attempt` against the leader, again each time it answers "not the
    /// leader" (which guarantees nothing was applied), for up to
    /// [`Node::leader_wait`]: long enough to ride out one election, short enough
    /// to answer in time.
    pub(crate) async fn with_leader<T, E, F, Fut>(&self, mut attempt: F) -> Result<T, E>
    where
        F: FnMut(Route) -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
        E: From<WriteError> + NotLeader,
    {
        let until = Instant::now() + self.leader_wait();
        let mut tried: Vec<Route> = Vec::new();
        let mut route = self.route(until).await?;
        loop {
            if !tried.contains(&route) {
                tried.push(route.clone());
            }
            match attempt(route).await {
                Err(e) if e.not_leader() && Instant::now() + LEADER_RETRY_PAUSE < until => {
                    debug!(
                        node_id = self.cfg.node_id,
                        "leader refused or unreachable; retrying"
                    );
                    // A leader this request has not tried yet is known by now (the
                    // usual case once a new leader took over): go there at once.
                    // Otherwise pause, so that a dead leader's refused connections,
                    // or two nodes that each name the other, do not spin the loop.
                    route = self.route(until).await?;
                    if tried.contains(&route) {
                        tokio::time::sleep(LEADER_RETRY_PAUSE).await;
                        route = self.route(until).await?;
                    }
                }
                done => return done,
            }
        }
    }
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    Here,
    Leader(String),
}

/// Errors that can mean "not applied, another node leads".
pub(crate) trait NotLeader {
    fn not_leader(&self) -> bool;
}

impl NotLeader for WriteError {
    fn not_leader(&self) -> bool {
        matches!(self, WriteError::NotLeader { .. })
    }
}

impl NotLeader for MembershipError {
    fn not_leader(&self) -> bool {
        matches!(self, MembershipError::Write(WriteError::NotLeader { .. }))
    }
}

/// What is left until `deadline` (zero when it passed).
pub(crate) fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}
