//! The simulated network: RPCs are calls on the target's Raft handle, passed
//! through the router's faults the way a lossy network would pass them.
//!
//! One RPC goes: is the target reachable (same side, running)? wait the request
//! delay; is the request lost? is the target still reachable? deliver; is the
//! sender still reachable from the target (a reply to a node that was cut off
//! meanwhile is lost, as in labrpc)? is the reply lost? wait the reply delay;
//! answer. Delays are drawn per message, so messages overtake each other. The
//! whole RPC is bounded by openraft's time limit for it.

use std::future::Future;
use std::sync::Weak;

use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RPCTypes};

use super::Shared;
use crate::types::{Raft, TypeConfig};

/// How a message failed to arrive, as the sender sees it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NetFault {
    #[error("node {0} cannot be reached (down or on the other side of a partition)")]
    CutOff(u64),
    #[error("the request to node {0} was lost")]
    RequestLost(u64),
    #[error("the reply of node {0} was lost")]
    ReplyLost(u64),
}

/// The network factory of one simulated node.
pub(crate) struct SimNetwork {
    from: u64,
    /// Weak: the router holds the nodes, whose Raft holds this factory.
    shared: Weak<Shared>,
}

impl SimNetwork {
    pub fn new(from: u64, shared: Weak<Shared>) -> SimNetwork {
        SimNetwork { from, shared }
    }
}

impl RaftNetworkFactory<TypeConfig> for SimNetwork {
    type Network = SimClient;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> SimClient {
        SimClient {
            from: self.from,
            target,
            shared: self.shared.clone(),
        }
    }
}

/// The RPC client from one simulated node to another.
pub(crate) struct SimClient {
    from: u64,
    target: u64,
    shared: Weak<Shared>,
}

type RpcResult<T, E> = Result<T, RPCError<u64, BasicNode, RaftError<u64, E>>>;

impl SimClient {
    async fn deliver<Req, Resp, E, F, Fut>(
        &self,
        action: RPCTypes,
        option: &RPCOption,
        req: Req,
        call: F,
    ) -> RpcResult<Resp, E>
    where
        E: std::error::Error,
        F: FnOnce(Raft, Req) -> Fut,
        Fut: Future<Output = Result<Resp, RaftError<u64, E>>>,
    {
        let ttl = option.hard_ttl();
        match tokio::time::timeout(ttl, self.deliver_untimed(req, call)).await {
            Ok(result) => result,
            Err(_) => Err(RPCError::Timeout(Timeout {
                action,
                id: self.from,
                target: self.target,
                timeout: ttl,
            })),
        }
    }

    async fn deliver_untimed<Req, Resp, E, F, Fut>(&self, req: Req, call: F) -> RpcResult<Resp, E>
    where
        E: std::error::Error,
        F: FnOnce(Raft, Req) -> Fut,
        Fut: Future<Output = Result<Resp, RaftError<u64, E>>>,
    {
        let (from, to) = (self.from, self.target);
        let cut_off = || RPCError::Unreachable(Unreachable::new(&NetFault::CutOff(to)));
        let plan = {
            let shared = self.shared.upgrade().ok_or_else(cut_off)?;
            if !shared.reachable(from, to) {
                return Err(cut_off());
            }
            shared.plan()
        };
        tokio::time::sleep(plan.request_delay).await;
        if plan.drop_request {
            return Err(RPCError::Network(NetworkError::new(
                &NetFault::RequestLost(to),
            )));
        }
        // Faults may have changed while the request was on its way.
        let raft = self
            .shared
            .upgrade()
            .and_then(|shared| shared.target(from, to))
            .ok_or_else(cut_off)?;
        let result = call(raft, req).await;
        let reply_lost = || RPCError::Network(NetworkError::new(&NetFault::ReplyLost(to)));
        let back = self
            .shared
            .upgrade()
            .is_some_and(|shared| shared.reachable(to, from));
        if !back || plan.drop_reply {
            return Err(reply_lost());
        }
        tokio::time::sleep(plan.reply_delay).await;
        match result {
            Ok(resp) => Ok(resp),
            // The target shut down under the request: to the sender, a dead node.
            Err(RaftError::Fatal(Fatal::Stopped)) => Err(cut_off()),
            Err(e) => Err(RPCError::RemoteError(RemoteError::new(to, e))),
        }
    }
}

impl RaftNetwork<TypeConfig> for SimClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.deliver(
            RPCTypes::AppendEntries,
            &option,
            rpc,
            |raft, rpc| async move { raft.append_entries(rpc).await },
        )
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        self.deliver(
            RPCTypes::InstallSnapshot,
            &option,
            rpc,
            |raft, rpc| async move { raft.install_snapshot(rpc).await },
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.deliver(RPCTypes::Vote, &option, rpc, |raft, rpc| async move {
            raft.vote(rpc).await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use openraft::Vote;

    use super::*;
    use crate::sim::Router;

    /// A vote request from term 0: every node refuses it without changing anything.
    async fn probe(
        sim: &Router,
        from: u64,
        to: u64,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let mut factory = SimNetwork::new(from, sim.weak());
        let mut client = factory.new_client(to, &BasicNode::new("sim")).await;
        client
            .vote(
                VoteRequest::new(Vote::new(0, from), None),
                RPCOption::new(Duration::from_secs(5)),
            )
            .await
    }

    fn cut_off<T: std::fmt::Debug>(r: Result<T, RPCError<u64, BasicNode, RaftError<u64>>>) -> bool {
        matches!(r, Err(RPCError::Unreachable(_)))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn faults_decide_which_messages_arrive() {
        let sim = Router::start("network_faults", 3, 1000).await;
        sim.wait_for_leader(&sim.members(), Duration::from_secs(20))
            .await;
        let refused = probe(&sim, 1, 3).await.expect("delivered");
        assert!(!refused.vote_granted);

        sim.isolate(3);
        assert!(cut_off(probe(&sim, 1, 3).await));
        assert!(cut_off(probe(&sim, 3, 2).await));
        assert!(probe(&sim, 1, 2).await.is_ok());

        sim.reconnect(3);
        sim.partition(&[&[1], &[2, 3]]);
        assert!(cut_off(probe(&sim, 1, 2).await));
        assert!(cut_off(probe(&sim, 3, 1).await));
        assert!(probe(&sim, 2, 3).await.is_ok());

        sim.heal();
        sim.unreliable(1.0, Duration::ZERO);
        assert!(matches!(probe(&sim, 1, 2).await, Err(RPCError::Network(_))));
        sim.reliable();
        assert!(probe(&sim, 1, 2).await.is_ok());

        sim.crash(3).await;
        assert!(cut_off(probe(&sim, 1, 3).await));
        sim.restart(3).await;
        assert!(probe(&sim, 1, 3).await.is_ok());
        sim.shutdown().await;
    }
}
