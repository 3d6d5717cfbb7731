//! What goes into the engine and what comes out: its settings, inputs, actions and
//! figures.

use super::*;

/// How an engine runs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This node's name: recorded on started executions; an execution `running` on
    /// it that this engine did not start is lost at [`Engine::start`].
    pub node: String,
    /// Most attempts running at once on this node.
    pub max_running: usize,
    /// This node's tags: jobs whose `tags` are all among them may run here.
    pub tags: BTreeMap<String, String>,
    /// How late an instant may fire and still count as on time.
    pub misfire_threshold: Duration,
    /// How long another node with runs on record may go without reporting
    /// ([`Input::NodeAlive`]) before its runs are lost.
    pub node_timeout: Duration,
    /// How long before its instant a scheduled run is committed and placed on its
    /// node, which hands it to its executor at the instant (zero: committed at the
    /// instant). Only used while every registered node can run such fires.
    pub fire_ahead: Duration,
}

impl EngineConfig {
    /// A config with the default misfire threshold.
    pub fn new(node: impl Into<String>, max_running: usize) -> Self {
        Self {
            node: node.into(),
            max_running,
            tags: BTreeMap::new(),
            misfire_threshold: DEFAULT_MISFIRE_THRESHOLD,
            node_timeout: DEFAULT_NODE_TIMEOUT,
            fire_ahead: Duration::ZERO,
        }
    }
}

/// Where new execution ids come from (`Ulid::generate` in the runtime, a counter in
/// tests).
pub type IdSource = Box<dyn FnMut() -> Ulid + Send>;

/// An attempt that ran on this node and ended (its outcome is not committed yet).
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub id: Ulid,
    pub attempt: u32,
    pub outcome: RunOutcome,
    /// What the attempt printed, already cut to the job's limit.
    pub output: String,
    pub output_truncated: bool,
    /// When the attempt was handed to its executor on its node (none when it
    /// never was): becomes the execution's `started_at`.
    pub started_at: Option<Timestamp>,
}

/// What the engine is told.
#[derive(Debug, Clone)]
pub enum Input {
    /// A job was created or changed (store event or initial load).
    JobUpserted(Arc<JobRecord>),
    /// A job was deleted.
    JobRemoved(String),
    /// An execution was created or changed (store event or initial load).
    Execution(Arc<Execution>),
    /// An attempt that ran on this node ended.
    Completed(Completion),
    /// A `Fire` this engine emitted created nothing (the instant had fired already,
    /// or the job was gone when it was applied).
    FireDropped { id: Ulid },
    /// Another node's scheduler reported that it is alive (a committed heartbeat):
    /// the runs recorded on it are going on.
    NodeAlive { node: String },
    /// A node registered as a worker (store event or initial load): runs may be
    /// placed on it while it reports.
    NodeRegistered(Arc<NodeRecord>),
    /// A public event was published (store event, or replayed from the event log
    /// after [`Engine::event_floor`] when an engine starts): fires the `on` jobs it
    /// matches, each once per event revision.
    Event(Arc<rota_core::event::Event>),
    /// The cluster's dynamic settings changed (or were loaded): run slots per node
    /// and for the cluster, and the retry policy of jobs without their own.
    Config(Arc<rota_core::config::DynamicConfig>),
}

/// What the engine asks for. `Fire`, `Start` and `Finish` are committed in the order
/// given (a `Start` may name an execution whose `Fire` comes earlier in the same
/// batch).
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Fire(Fire),
    Start(Start),
    Finish(Finish),
    /// Run this attempt on this node: the store shows it `running` here, started by
    /// this engine.
    Dispatch {
        id: Ulid,
        attempt: u32,
        job: String,
        scheduled_at: Timestamp,
        trigger: Trigger,
    },
    /// Stop this attempt: cancel the local run, or, when it runs on another node,
    /// commit `Command::Cancel`.
    Cancel {
        id: Ulid,
        attempt: u32,
    },
    /// Delete this `delete_after_run` job, its run having ended for good: commit
    /// `Command::DeleteJob` with `if_revision: revision`, so that a job replaced
    /// meanwhile stays.
    DeleteJob {
        job: String,
        revision: u64,
    },
}

impl Action {
    /// Whether the runtime commits this action through Raft.
    pub fn is_commit(&self) -> bool {
        matches!(
            self,
            Action::Fire(_) | Action::Start(_) | Action::Finish(_) | Action::DeleteJob { .. }
        )
    }
}

/// An attempt of this node that a new engine takes over from an earlier one (after
/// a rebuild or a leadership change), so that it is neither lost nor run twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAttempt {
    pub id: Ulid,
    pub attempt: u32,
    /// Handed to an executor already (otherwise only started: dispatch it once the
    /// store shows it running here).
    pub dispatched: bool,
}

/// Figures for health and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub jobs: usize,
    /// Slots in use on this node.
    pub running: usize,
    /// Executions waiting: for a slot, for their job's overlap rule, or for a retry.
    pub queued: usize,
    /// Armed timers (job instants and retries).
    pub timers: usize,
    pub fired_total: u64,
}
