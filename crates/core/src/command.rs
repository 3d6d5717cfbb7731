//! What the replicated store accepts, answers and announces.
//!
//! Every state change in rota is a [`Command`] committed through Raft and applied by
//! one deterministic state machine. Commands therefore carry every time and id they
//! need (chosen by the proposer): the state machine reads no clock and draws no
//! random number.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::{ExecStatus, Execution, JobSpec, RetryPolicy, Timestamp, Trigger};

/// The session part of a write: a retried write with the same pair is answered with
/// the first answer and applied once.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionKey {
    pub client_id: String,
    pub seq: u64,
}

/// One entry of the Raft log (besides openraft's own blank and membership entries).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionKey>,
    /// When the proposer made the request; sessions expire by this clock.
    pub at: Timestamp,
    pub command: Command,
}

// Commands are short-lived (proposed, logged, applied once); boxing the job spec
// would only add an allocation to the common path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// Create or replace a job (validated before proposing).
    PutJob { spec: JobSpec },
    /// Delete a job together with its executions, outputs and index rows. With
    /// `if_revision`, only while the job's revision is that one (the scheduler's
    /// `delete_after_run`, which must not delete a job replaced meanwhile).
    DeleteJob {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        if_revision: Option<u64>,
    },
    /// Pause or resume.
    SetPaused { name: String, paused: bool },
    /// Deletes, like `DeleteJob`, every job of the apply set `apply_set` (whose
    /// `metadata` has [`crate::job::APPLY_SET_KEY`] = `apply_set`) that is not named
    /// in `keep`; workflows' internal jobs are never touched. `POST /v1/jobs` with
    /// `prune` puts it after the jobs it applies, in the same `Batch`, so the
    /// apply and the prune are one log entry: both or neither. Answered by
    /// `Response::JobsPruned`.
    PruneJobs {
        apply_set: String,
        keep: Vec<String>,
    },
    /// Record that instants fired, before anything runs. Idempotent per
    /// `(job, scheduled_at)` for `schedule` and `catchup` triggers, and per
    /// `(job, event_revision, event_seq)` for `event` triggers.
    Fire { fires: Vec<Fire> },
    /// Queued executions handed to a node.
    Start { starts: Vec<Start> },
    /// Attempts that ended.
    Finish { finishes: Vec<Finish> },
    /// Cancel an execution: a queued one ends at once, a running one is flagged
    /// and ended by its node.
    Cancel { id: Ulid },
    /// Linearizable KV put; `if_revision` is a CAS on the key's `mod_revision`
    /// (0 = the key must not exist).
    KvPut {
        key: String,
        value: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        if_revision: Option<u64>,
    },
    KvDelete {
        key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        if_revision: Option<u64>,
    },
    /// Several commands applied in order in one log entry (one fsync); answered by
    /// `Response::Batch` in the same order.
    Batch { commands: Vec<Command> },
    /// Requests of several clients that the leader proposed together in one log
    /// entry (one fsync for all of them), applied in order as if each were its own
    /// entry, each with its own session and clock; answered by `Response::Batch` in
    /// the same order. All of them share the entry's log index as revision, so the
    /// leader never puts two writes of one key into one entry.
    Requests { requests: Vec<ClientRequest> },
    /// A newly leading scheduler takes over: raises the store's scheduler epoch to
    /// `term` (the Raft term in which `node` leads) unless it is higher already, and
    /// answers the epoch now in force (`Response::SchedulerClaimed`). Scheduler
    /// commands fenced with another epoch no longer fire or start anything. A claim
    /// from a node that lost its leadership (forwarded to the new leader) carries an
    /// older term and changes nothing.
    ClaimScheduler { node: String, term: u64 },
    /// Commands of the scheduler engine of `epoch`, applied in order like a `Batch`
    /// (answered by `Response::Batch`). When `epoch` is not the store's current
    /// scheduler epoch, the `Fire`s inside are refused and the `Start`s ignored, so
    /// that a leader which lost its place cannot fire or start anything once its
    /// successor claimed the scheduler; `Finish` and `Cancel` apply regardless.
    Fenced { epoch: u64, commands: Vec<Command> },
    /// The scheduler runtime of `node` is alive and runs the attempts recorded on it.
    /// Changes nothing; announced as `EventKind::Heartbeat` for the leader's liveness
    /// check.
    Heartbeat { node: String },
    /// An external event for `on` triggers and watchers (`POST /v1/events`):
    /// published under its own type with `data`, keyed by its type. Answered by
    /// `Response::Published`.
    PublishEvent {
        event_type: String,
        data: serde_json::Value,
    },
    /// Create or replace a global webhook (validated before proposing); answered by
    /// `Response::WebhookPut`.
    PutWebhook {
        name: String,
        spec: crate::notify::WebhookSpec,
    },
    /// Delete a global webhook; answered by `Response::WebhookDeleted`.
    DeleteWebhook { name: String },
    /// The leader's notifier records final delivery outcomes and raises the
    /// notification cursor to `cursor` (never lowers it): every execution event at
    /// or below it has been handled. A delivery already recorded under the same id
    /// is replaced (a repeat after a leader change).
    RecordDeliveries {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        deliveries: Vec<crate::notify::Delivery>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<u64>,
    },
    /// Create or replace a workflow (validated before proposing) together with its
    /// internal jobs (see [`crate::workflow`]); answered by `Response::WorkflowPut`.
    PutWorkflow { spec: crate::workflow::WorkflowSpec },
    /// Delete a workflow, its internal jobs and its runs; answered by
    /// `Response::WorkflowDeleted`.
    DeleteWorkflow { name: String },
    /// Start a run of a workflow by hand (`id` chosen by the proposer; a replayed id
    /// creates nothing); answered by `Response::RunStarted`.
    RunWorkflow { id: Ulid, workflow: String },
    /// End a run: its queued jobs are cancelled, its running ones asked to stop,
    /// and it ends with `status` (`cancelled` or `timed_out`) once they have.
    /// Answered by `Response::RunStarted` with the run as it stands.
    CancelRun {
        id: Ulid,
        status: crate::workflow::RunStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Create or replace a target set's spec (validated before proposing). A new
    /// or changed spec starts a new generation: its targets are kept until
    /// discovery of the new spec reports. Answered by `Response::TargetSetPut`.
    PutTargetSet { spec: crate::targets::TargetSetSpec },
    /// Delete a target set and its targets; answered by `Response::TargetSetDeleted`.
    DeleteTargetSet { name: String },
    /// The leader's discovery of set `name` found `state` for the spec of
    /// `generation`. Refused (nothing changes) when the set is gone or its spec
    /// changed since; a state equal to the stored one changes nothing either, so a
    /// repeat after a leader change commits no second event. Answered by
    /// `Response::TargetsRecorded`.
    RecordTargets {
        name: String,
        generation: u64,
        state: crate::targets::TargetSetState,
    },
    /// Records a probe a node ran on request (`GET /v1/jobs/{name}/check?record=true`)
    /// as a finished execution of `job` (trigger `manual`): `succeeded` when the
    /// result is `synced`, else `failed` with `error`. Answered by `Response::Fired`
    /// with the one outcome, or `NotFound` when the job is gone.
    RecordCheck {
        id: Ulid,
        job: String,
        node: String,
        started_at: Timestamp,
        result: crate::probe::RunResult,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<String>,
        /// `output` was cut at the job's `max_output_bytes`.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        output_truncated: bool,
    },
    /// Create or replace a sink (validated before proposing); answered by
    /// `Response::SinkPut`.
    PutSink {
        name: String,
        spec: crate::sink::SinkSpec,
    },
    /// Delete a sink; answered by `Response::SinkDeleted`.
    DeleteSink { name: String },
    /// Set a dynamic setting cluster-wide (`value` already checked and normalised
    /// by [`crate::config::check_dynamic`]); answered by `Response::ConfigSet`.
    SetConfig {
        key: String,
        value: serde_json::Value,
    },
    /// Store a new API token (its hash; validated and hashed before proposing);
    /// refused with `Response::TokenExists` when the name is taken. With
    /// `only_if_none`, applied only while the store holds no token at all (the
    /// bootstrap admin token, which every node may propose), answered
    /// `Response::TokenPut { created: false }` otherwise.
    PutToken {
        record: crate::auth::TokenRecord,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        only_if_none: bool,
    },
    /// Revoke a token by name; answered by `Response::TokenRevoked`.
    RevokeToken { name: String },
    /// `command` made by a request with the API token `token`: applied as that
    /// command, its events name the token (`data.by`), the executions it creates
    /// record it (`triggered_by`), and a client session it opens belongs to it.
    Attributed {
        token: String,
        command: Box<Command>,
    },
    /// Remove dynamic values, so the keys take their static values again: `key`,
    /// or every key when `None`; answered by `Response::ConfigReset`.
    ResetConfig {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// A node's scheduler runtime announces itself as a worker, once per process
    /// start, before it runs anything: its tags (matched against jobs' `tags`) and
    /// how many attempts it runs at once. A new `incarnation` for a known node means
    /// the node restarted: every attempt still recorded as running on it belonged
    /// to its earlier life and is finished as `lost` (retried per its job's policy)
    /// in the same step, so that an attempt recorded on it afterwards is one the new
    /// process was given. Answered by `Response::NodeRegistered`.
    RegisterNode {
        node: String,
        incarnation: Ulid,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        tags: BTreeMap<String, String>,
        max_running: u32,
        /// Where the node's API answers (live output of its runs is read there).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        /// See `NodeRecord::fire_ahead`.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        fire_ahead: bool,
    },
}

/// A worker node as registered (`Command::RegisterNode`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node: String,
    pub incarnation: Ulid,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    pub max_running: u32,
    /// Where the node's API answers, if it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub registered_at: Timestamp,
    /// The log index of the registration.
    pub revision: u64,
    /// The node runs attempts committed ahead of their instant (`Fire::ahead`).
    /// Absent in the records of releases before it, which keeps a mixed cluster
    /// firing at the instant until every node is upgraded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fire_ahead: bool,
}

impl NodeRecord {
    /// Whether a job with `tags` may run here: every one of them is among the
    /// node's (a job without tags runs anywhere).
    pub fn matches(&self, tags: &BTreeMap<String, String>) -> bool {
        tags_match(&self.tags, tags)
    }
}

/// Whether a node with `node_tags` may run a job with `job_tags`.
pub fn tags_match(
    node_tags: &BTreeMap<String, String>,
    job_tags: &BTreeMap<String, String>,
) -> bool {
    job_tags
        .iter()
        .all(|(k, v)| node_tags.get(k).is_some_and(|have| have == v))
}

/// One fired instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fire {
    /// Chosen by the proposer; kept only when this fire creates the execution.
    pub id: Ulid,
    pub job: String,
    pub scheduled_at: Timestamp,
    pub trigger: Trigger,
    /// When present, the execution starts running on that node right away
    /// (the common case: a slot was free), saving a second commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<StartInfo>,
    /// When present, the instant is recorded as `skipped` with this reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_reason: Option<String>,
    /// For `trigger: event`: the revision of the event it is for. The store fires
    /// each `(job, event_revision, event_seq)` once, and none at or below the
    /// job's mark ([`JobRecord::event_handled`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_revision: Option<u64>,
    /// For `trigger: event`: the event's place in its entry ([`crate::event::Event::seq`]).
    #[serde(default, skip_serializing_if = "crate::event::is_zero")]
    pub event_seq: u32,
    /// Committed ahead of its instant: with `start`, the execution is recorded
    /// `queued` and placed on `start.node`, which hands it to its executor at
    /// `scheduled_at` and then commits its `Start`. Only proposed while every
    /// registered node says it can (`NodeRecord::fire_ahead`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ahead: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartInfo {
    pub node: String,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Start {
    pub id: Ulid,
    /// The attempt being started; a start for another attempt is ignored.
    pub attempt: u32,
    pub node: String,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finish {
    pub id: Ulid,
    /// The attempt that ended; a finish for another attempt is ignored (stale report).
    pub attempt: u32,
    /// A terminal status.
    pub status: ExecStatus,
    pub at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Captured output (stdout and stderr interleaved), already cut to the job's limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(default)]
    pub output_truncated: bool,
    /// When present, the execution is queued again as attempt + 1, due at this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<Timestamp>,
    /// Artifacts a workflow job kept (recorded on its run when the attempt ends
    /// for good).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<crate::workflow::ArtifactRecord>,
    /// Per-target results of a probe or a fan-out (kept on the execution).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<crate::probe::RunResult>,
    /// When the attempt was really handed to its executor on its node, reported
    /// with its outcome; it replaces the `started_at` the start was recorded with
    /// (the leader's decision time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// CPU time and peak memory of the attempt's process (kept on the execution).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<crate::ResourceUsage>,
}

impl Finish {
    /// The finish of an attempt that nobody runs any more (`status: lost`, with
    /// `error`), retried per `retry` unless a cancel was asked for. The engine uses it
    /// for attempts of silent or restarted nodes, the store for those a node's new
    /// registration leaves behind.
    pub fn lost(
        id: Ulid,
        attempt: u32,
        retry: Option<&RetryPolicy>,
        cancel_requested: bool,
        error: &str,
        now: Timestamp,
    ) -> Finish {
        Finish {
            id,
            attempt,
            status: ExecStatus::Lost,
            at: now,
            exit_code: None,
            error: Some(error.to_string()),
            output: None,
            output_truncated: false,
            retry_at: crate::retry::retry_at(
                retry,
                id,
                attempt,
                ExecStatus::Lost,
                cancel_requested,
                now,
            ),
            artifacts: Vec::new(),
            result: None,
            started_at: None,
            usage: None,
        }
    }
}

impl Finish {
    /// The finish of an attempt its node cut short because it was shutting down
    /// (`status: cancelled`, with `reason`). The attempt did not fail on its own, so
    /// it is retried per `retry` like a lost one, unless a cancel was asked for.
    pub fn shut_down(
        id: Ulid,
        attempt: u32,
        retry: Option<&RetryPolicy>,
        cancel_requested: bool,
        reason: &str,
        now: Timestamp,
    ) -> Finish {
        Finish {
            status: ExecStatus::Cancelled,
            ..Finish::lost(id, attempt, retry, cancel_requested, reason, now)
        }
    }
}

/// A job as stored: the spec plus what the store knows about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub spec: JobSpec,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Log index of the last change.
    pub revision: u64,
    /// The latest instant fired on schedule (or by catch-up): the high-water mark
    /// below which no schedule instant fires again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scheduled_at: Option<Timestamp>,
    /// For `on` jobs: the revision of the latest event handled (fired for, or
    /// passed over while the job was created or resumed): the high-water mark at or
    /// below which no event fires the job again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_revision: Option<u64>,
    /// With `last_event_revision`: the `seq` of the latest event handled in that
    /// revision; absent when the whole revision was handled (passed over, or
    /// written by a release that fired once per revision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_seq: Option<u32>,
}

impl JobRecord {
    /// The job's event high-water mark as a position in the event log
    /// ([`crate::event::Event::position`]): a whole revision is every `seq` of it.
    pub fn event_mark(&self) -> Option<(u64, u32)> {
        self.last_event_revision
            .map(|r| (r, self.last_event_seq.unwrap_or(u32::MAX)))
    }

    /// Whether the event at `position` is at or below the job's mark: handled
    /// already, or published before the trigger was set.
    pub fn event_handled(&self, position: (u64, u32)) -> bool {
        self.event_mark().is_some_and(|mark| position <= mark)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    pub key: String,
    pub value: String,
    pub mod_revision: u64,
    pub create_revision: u64,
    /// Number of writes since the key was (re)created, 1 for the first.
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FireOutcome {
    pub id: Ulid,
    pub job: String,
    /// False when the instant had fired already (the id is the existing one) or
    /// was refused (unknown job, or below the job's high-water mark).
    pub created: bool,
}

/// The state machine's answer to one command. Refusals are answers, not errors:
/// the state machine must apply every committed entry the same way on every node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Response {
    Ok,
    JobPut {
        created: bool,
        job: Box<JobRecord>,
    },
    JobDeleted {
        existed: bool,
    },
    NotFound {
        what: String,
    },
    Fired {
        outcomes: Vec<FireOutcome>,
    },
    Cancelled {
        execution: Box<Execution>,
    },
    /// The execution had already ended; nothing changed.
    AlreadyFinished {
        execution: Box<Execution>,
    },
    KvPut {
        key: String,
        revision: u64,
    },
    KvDeleted {
        key: String,
        revision: u64,
        deleted: bool,
    },
    RevisionMismatch {
        key: String,
        current: u64,
    },
    /// An external event was published (`Command::PublishEvent`) at `revision`.
    Published {
        revision: u64,
    },
    /// A session write older than the last one seen from that client.
    StaleSession {
        client_id: String,
        last_seq: u64,
    },
    Batch {
        responses: Vec<Response>,
    },
    /// The jobs `PruneJobs` deleted, by name.
    JobsPruned {
        deleted: Vec<String>,
    },
    /// The scheduler epoch in force after a `ClaimScheduler`.
    SchedulerClaimed {
        epoch: u64,
    },
    /// A webhook as stored by `PutWebhook`.
    WebhookPut {
        created: bool,
        webhook: Box<crate::notify::WebhookRecord>,
    },
    WebhookDeleted {
        existed: bool,
    },
    /// A target set as stored by `PutTargetSet`.
    TargetSetPut {
        created: bool,
        set: Box<crate::targets::TargetSet>,
    },
    TargetSetDeleted {
        existed: bool,
    },
    SinkPut {
        created: bool,
        sink: Box<crate::sink::SinkRecord>,
    },
    SinkDeleted {
        existed: bool,
    },
    /// What `SetConfig` stored, and the dynamic value it replaced (if any).
    ConfigSet {
        entry: Box<crate::config::ConfigEntry>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous: Option<serde_json::Value>,
    },
    TokenPut {
        created: bool,
    },
    /// `PutToken` of a name that exists.
    TokenExists {
        name: String,
    },
    TokenRevoked {
        existed: bool,
    },
    /// A request whose client session was opened by another token (or none).
    SessionNotYours {
        client_id: String,
    },
    /// The keys `ResetConfig` removed a dynamic value of.
    ConfigReset {
        keys: Vec<String>,
    },
    /// What `RecordTargets` did: `changed` when the set's targets or error changed.
    TargetsRecorded {
        changed: bool,
    },
    WorkflowPut {
        created: bool,
        workflow: Box<crate::workflow::WorkflowRecord>,
    },
    WorkflowDeleted {
        existed: bool,
    },
    /// A run as it stands after `RunWorkflow` or `CancelRun` (for a run that had
    /// already ended: unchanged).
    Run {
        run: Box<crate::workflow::WorkflowRun>,
    },
    /// A node's registration; `lost` are the attempts of its earlier life that it
    /// finished as lost.
    NodeRegistered {
        record: Box<NodeRecord>,
        lost: Vec<Ulid>,
    },
}

/// Something that changed, published after it was applied. `revision` is the log
/// index of the entry that made the change.
#[derive(Debug, Clone)]
pub struct StoreEvent {
    pub revision: u64,
    pub kind: EventKind,
}

#[derive(Debug, Clone)]
pub enum EventKind {
    JobPut(Arc<JobRecord>),
    JobDeleted {
        name: String,
    },
    Execution(Arc<Execution>),
    KvPut(Arc<KvEntry>),
    KvDeleted {
        key: String,
    },
    /// The whole state was replaced (snapshot installed): readers must reload.
    Reset,
    /// A node's scheduler runtime reported that it is alive (`Command::Heartbeat`);
    /// `at` is the proposer's clock.
    Heartbeat {
        node: String,
        at: Timestamp,
    },
    /// A node registered as a worker (`Command::RegisterNode`).
    NodeRegistered(Arc<NodeRecord>),
    /// A public event (watch API, event triggers); its revision is the entry's.
    Published(Arc<crate::event::Event>),
    /// A workflow run started or ended.
    Run(Arc<crate::workflow::WorkflowRun>),
}
