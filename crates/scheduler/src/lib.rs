//! The scheduler: a pure [`engine`] (events and the time in, actions out; no I/O,
//! no clock, no tokio) and a [`runtime`] that feeds it the store's events and the
//! time, commits what it decides through Raft, and hands runs to executors.

use std::sync::Arc;

use rota_exec::OutputBuffer;
use ulid::Ulid;

/// Settings of the scheduler runtime.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Name of this node (recorded on executions, `ROTA_NODE`).
    pub node_name: String,
    /// Most attempts running at once on this node; more wait in priority order.
    pub max_running: usize,
}

/// Counters for health and metrics.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SchedulerStats {
    pub jobs: usize,
    pub running: usize,
    pub queued: usize,
    pub timers: usize,
    pub fired_total: u64,
}

/// Handle to the running scheduler.
pub struct SchedulerHandle {
    _todo: (),
}

impl SchedulerHandle {
    /// Starts the runtime on this node: it schedules while the node leads.
    pub fn spawn(
        node: Arc<rota_cluster::Node>,
        cfg: SchedulerConfig,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Arc<SchedulerHandle> {
        let _ = (node, cfg, shutdown);
        todo!()
    }

    /// Live output of an attempt running on this node.
    pub fn live_output(&self, id: Ulid) -> Option<OutputBuffer> {
        let _ = id;
        todo!()
    }

    pub fn stats(&self) -> SchedulerStats {
        todo!()
    }

    /// Waits until the runtime has stopped (after the shutdown token fired).
    pub async fn stopped(&self) {
        todo!()
    }
}
