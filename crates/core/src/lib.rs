//! rota's data model, shared by every other crate.
//!
//! It holds what a job *is* ([`JobSpec`] and its [`Schedule`], [`ExecutorSpec`],
//! [`RetryPolicy`]), what a run *is* ([`Execution`]), and what the replicated store
//! *accepts* ([`Command`], answered by a [`Response`], announced as a [`StoreEvent`]).
//! It also holds the pure math the scheduler needs: when a schedule fires next
//! (cron with IANA time zones and the DST rule of the design), how long a retry
//! waits, and the validation that names the offending field.
//!
//! Nothing here does I/O, reads a clock or knows about tokio: every function takes
//! the time it needs as an argument, which keeps the scheduler engine testable with
//! a fake clock.

pub mod auth;
pub mod command;
pub mod config;
pub mod duration;
pub mod error;
pub mod event;
pub mod execution;
pub mod glob;
pub mod job;
pub mod name;
pub mod notify;
pub mod probe;
pub mod prow;
pub mod retry;
pub mod rng;
pub mod schedule;
pub mod sink;
pub mod targets;
pub mod trace;
pub mod trigger;
pub mod validate;
pub mod workflow;

pub use command::{
    ClientRequest, Command, EventKind, Finish, Fire, FireOutcome, JobRecord, KvEntry, NodeRecord,
    Response, SessionKey, Start, StartInfo, StoreEvent,
};
pub use duration::HumanDuration;
pub use error::ValidationError;
pub use execution::{AttemptRecord, ExecStatus, Execution, ResourceUsage, RunOutcome, Trigger};
pub use job::{
    EventTrigger, ExecutorSpec, HttpSpec, JobSpec, Misfire, Overlap, RecordSpec, RetryPolicy,
    Schedule, ShellSpec,
};
pub use name::validate_name;
pub use probe::{ProbeSpec, ProbeStatus, ResultStatus, RunResult, TargetResult};
pub use schedule::CompiledSchedule;
pub use trace::TRACE_TARGET;

/// Re-exported so that dependants name one time type.
pub type Timestamp = chrono::DateTime<chrono::Utc>;
