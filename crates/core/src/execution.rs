//! One run of a job, across its attempts.

use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::{HumanDuration, Timestamp};

/// Error of an attempt that was running on a node when that node restarted.
pub const NODE_RESTARTED: &str = "node restarted while the attempt ran";

/// The contract's `Execution`. A retry keeps the id and raises `attempt`; what the
/// earlier attempts did is kept in `attempts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    pub id: Ulid,
    pub job: String,
    /// The instant this run is for (for manual runs: when it was asked for).
    pub scheduled_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Node running (or that ran) the current attempt.
    pub node: Option<String>,
    pub trigger: Trigger,
    pub status: ExecStatus,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub output_truncated: bool,
    /// Copied from the job when fired; orders the wait for a slot.
    #[serde(default)]
    pub priority: i32,
    /// When a queued retry becomes due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Timestamp>,
    /// A cancel was asked for while the attempt was running.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel_requested: bool,
    /// Earlier attempts, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<AttemptRecord>,
    /// For `trigger: event`: the revision of the event that fired it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_revision: Option<u64>,
    /// For `trigger: event`: that event's `seq` in its revision (absent for 0).
    #[serde(default, skip_serializing_if = "crate::event::is_zero")]
    pub event_seq: u32,
    /// For `trigger: workflow`: the workflow run it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<Ulid>,
    /// Of the final (or latest) attempt of a probe or a fan-out over a target set:
    /// the aggregate status and each target's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<crate::probe::RunResult>,
    /// What the final (or latest) attempt's process used, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<ResourceUsage>,
    /// The API token whose request created it (a manual run, an event it was
    /// fired by); `None` for the scheduler's own and while no token exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggered_by: Option<String>,
}

/// The resources an attempt's process used: its own and those of the descendants
/// it waited for (a shell's commands), as the kernel accounts them when it exits.
/// Processes it left behind, killed with its group, are not counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceUsage {
    /// CPU time spent in user mode, in milliseconds.
    pub cpu_user_ms: u64,
    /// CPU time spent in the kernel on its behalf, in milliseconds.
    pub cpu_system_ms: u64,
    /// The largest peak resident set of any one of the processes, in KiB; `None`
    /// when it was no larger than the server's own peak. The kernel charges a
    /// process started by the server with the server's resident memory at that
    /// moment, so a smaller peak cannot be told apart from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rss_kib: Option<u64>,
}

impl ResourceUsage {
    /// The usage of two processes run one after the other (a workflow job's
    /// steps): CPU times add up, the peak is the larger one.
    pub fn then(self, next: ResourceUsage) -> ResourceUsage {
        ResourceUsage {
            cpu_user_ms: self.cpu_user_ms.saturating_add(next.cpu_user_ms),
            cpu_system_ms: self.cpu_system_ms.saturating_add(next.cpu_system_ms),
            max_rss_kib: self.max_rss_kib.max(next.max_rss_kib),
        }
    }
}

impl Execution {
    pub fn is_active(&self) -> bool {
        matches!(self.status, ExecStatus::Queued | ExecStatus::Running)
    }

    /// The node this attempt is given to: the one it runs on, or, for a run
    /// committed ahead of its instant ([`crate::Fire::ahead`]), the one it is
    /// placed on and that hands it to its executor at its instant (the record stays
    /// `queued` until that node reports the start).
    pub fn placed_on(&self) -> Option<&str> {
        match self.status {
            ExecStatus::Running | ExecStatus::Queued => self.node.as_deref(),
            _ => None,
        }
    }

    /// Whether the record is a run committed ahead and placed on a node, not
    /// started yet.
    pub fn is_placed_ahead(&self) -> bool {
        self.status == ExecStatus::Queued && self.node.is_some()
    }
}

/// What an earlier attempt of an execution did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub node: Option<String>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub status: ExecStatus,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Schedule,
    Manual,
    Retry,
    Event,
    Catchup,
    Workflow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
    Skipped,
    Lost,
}

impl ExecStatus {
    pub fn is_terminal(self) -> bool {
        !matches!(self, ExecStatus::Queued | ExecStatus::Running)
    }

    /// Whether the retry policy applies to an attempt that ended so.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ExecStatus::Failed | ExecStatus::TimedOut | ExecStatus::Lost
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExecStatus::Queued => "queued",
            ExecStatus::Running => "running",
            ExecStatus::Succeeded => "succeeded",
            ExecStatus::Failed => "failed",
            ExecStatus::TimedOut => "timed_out",
            ExecStatus::Cancelled => "cancelled",
            ExecStatus::Skipped => "skipped",
            ExecStatus::Lost => "lost",
        }
    }
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::Retry => "retry",
            Trigger::Event => "event",
            Trigger::Catchup => "catchup",
            Trigger::Workflow => "workflow",
        }
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    /// `succeeded`, `failed`, `timed_out` or `cancelled`.
    pub status: ExecStatus,
    /// The process's exit code, when a process exited by itself.
    pub exit_code: Option<i32>,
    /// Why the attempt did not succeed, for people.
    pub error: Option<String>,
    /// What a workflow job kept of its workspace (its files stay on this node).
    pub artifacts: Vec<crate::workflow::ArtifactRecord>,
    /// For a probe or a fan-out over a target set: what each target did.
    pub result: Option<crate::probe::RunResult>,
    /// For a process: the CPU time and peak memory it used.
    pub usage: Option<ResourceUsage>,
}

impl RunOutcome {
    /// The attempt did its work.
    pub fn succeeded() -> Self {
        Self {
            status: ExecStatus::Succeeded,
            exit_code: None,
            error: None,
            artifacts: Vec::new(),
            result: None,
            usage: None,
        }
    }

    /// The attempt ran but failed, for the reason given.
    pub fn failed(exit_code: Option<i32>, error: impl Into<String>) -> Self {
        Self {
            status: ExecStatus::Failed,
            exit_code,
            error: Some(error.into()),
            artifacts: Vec::new(),
            result: None,
            usage: None,
        }
    }

    /// The attempt was stopped when its timeout ran out.
    pub fn timed_out(after: std::time::Duration) -> Self {
        Self {
            status: ExecStatus::TimedOut,
            exit_code: None,
            error: Some(format!("timed out after {}", HumanDuration(after))),
            artifacts: Vec::new(),
            result: None,
            usage: None,
        }
    }

    /// This outcome with a target set's result attached.
    pub fn with_result(mut self, result: crate::probe::RunResult) -> Self {
        self.result = Some(result);
        self
    }

    /// This outcome with the process's resource usage attached.
    pub fn with_usage(mut self, usage: Option<ResourceUsage>) -> Self {
        self.usage = usage;
        self
    }

    /// The attempt was stopped by its cancellation token.
    pub fn cancelled() -> Self {
        Self {
            status: ExecStatus::Cancelled,
            exit_code: None,
            error: None,
            artifacts: Vec::new(),
            result: None,
            usage: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_texts() {
        assert_eq!(
            RunOutcome::timed_out(std::time::Duration::from_secs(5))
                .error
                .as_deref(),
            Some("timed out after 5s")
        );
        assert_eq!(RunOutcome::succeeded().status, ExecStatus::Succeeded);
        assert_eq!(RunOutcome::succeeded().exit_code, None);
        assert_eq!(RunOutcome::cancelled().status, ExecStatus::Cancelled);
    }

    #[test]
    fn usage_of_steps_adds_cpu_and_keeps_the_highest_peak() {
        let a = ResourceUsage {
            cpu_user_ms: 10,
            cpu_system_ms: 1,
            max_rss_kib: Some(5000),
        };
        let b = ResourceUsage {
            cpu_user_ms: 20,
            cpu_system_ms: 2,
            max_rss_kib: None,
        };
        let both = ResourceUsage {
            cpu_user_ms: 30,
            cpu_system_ms: 3,
            max_rss_kib: Some(5000),
        };
        assert_eq!(a.then(b), both);
        assert_eq!(b.then(a), both);
        let unknown = ResourceUsage {
            max_rss_kib: None,
            ..a
        };
        assert_eq!(unknown.then(unknown).max_rss_kib, None);
    }

    #[test]
    fn usage_is_absent_from_the_json_when_unknown() {
        let finish = |usage| crate::Finish {
            usage,
            ..crate::Finish::lost(Ulid::nil(), 1, None, false, "gone", chrono::Utc::now())
        };
        let v = serde_json::to_value(finish(None)).expect("json");
        assert!(v.get("usage").is_none(), "{v}");
        let usage = ResourceUsage {
            cpu_user_ms: 1,
            cpu_system_ms: 2,
            max_rss_kib: Some(3),
        };
        let v = serde_json::to_value(finish(Some(usage))).expect("json");
        assert_eq!(
            v["usage"],
            serde_json::json!({"cpu_user_ms": 1, "cpu_system_ms": 2, "max_rss_kib": 3})
        );
    }
}
