//! The job spec: the contract's `Job` document, field for field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{HumanDuration, Timestamp};

fn default_priority() -> i32 {
    0
}
fn default_max_output_bytes() -> u64 {
    1024 * 1024
}
pub(crate) fn default_catchup_window() -> HumanDuration {
    HumanDuration::from_secs(3600)
}
fn is_false(b: &bool) -> bool {
    !*b
}

/// A job as users write it (JSON, TOML or YAML) and as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// `[a-z0-9][a-z0-9_-]{0,62}`; unique.
    pub name: String,
    /// Free text for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// When the job fires.
    pub schedule: Schedule,
    /// What a run does.
    pub executor: ExecutorSpec,
    /// Longest a single attempt may run before it is killed and marked `timed_out`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// Retries of failed, timed-out or lost attempts; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Higher runs first when slots are scarce; FIFO within one priority.
    #[serde(default = "default_priority")]
    pub priority: i32,
    /// What happens when a run is due while the previous one still runs.
    #[serde(default)]
    pub overlap: Overlap,
    /// What happens to instants missed while no leader could fire them.
    #[serde(default)]
    pub misfire: Misfire,
    /// How far back missed instants are considered by `misfire`.
    #[serde(default = "default_catchup_window")]
    pub catchup_window: HumanDuration,
    /// A paused job keeps its history but does not fire on schedule.
    #[serde(default, skip_serializing_if = "is_false")]
    pub paused: bool,
    /// Placement: runs go to nodes whose tags include all of these.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Free-form data kept with the job.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Finished executions kept per job; older ones (and their output) are pruned.
    /// When absent, the cluster's `default_history_limit` setting (100 unless
    /// changed) applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_limit: Option<u32>,
    /// Output (stdout and stderr together) kept per execution; the rest is dropped
    /// and the execution is marked `output_truncated`.
    #[serde(default = "default_max_output_bytes")]
    pub max_output_bytes: u64,
    /// Only with `at` and `after`: once the run of the job's instant has ended for
    /// good (no retry pending, nothing else of it active), the job is deleted, its
    /// history with it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub delete_after_run: bool,
    /// Webhooks told when this job's runs start or finish (see [`crate::notify`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<crate::notify::NotifySpec>,
    /// A target set: the executor runs once per target of it, with
    /// `{{target.address}}` and `{{target.labels.NAME}}` substituted. Not with a
    /// `probe` executor, which names its set itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<String>,
    /// With `targets`: at most this many targets at once, 1-1024;
    /// [`DEFAULT_PARALLELISM`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u32>,
    /// A sink (`PUT /v1/sinks/{name}`) that gets an `execution` point for every
    /// attempt that ends, and a probe's `probe` points (a prow executor names its
    /// own sink, or uses this one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<String>,
}

/// Targets of a fan-out run at once when the job does not say.
pub const DEFAULT_PARALLELISM: u32 = 32;

/// The `metadata` key that names a job's apply set: the set of jobs one file
/// owns (`rota job apply --apply-set NAME`). `--prune` deletes only jobs of the
/// set it names, never a job created otherwise.
pub const APPLY_SET_KEY: &str = "rota/apply-set";

impl JobSpec {
    /// The apply set the job belongs to (see [`APPLY_SET_KEY`]), if any.
    pub fn apply_set(&self) -> Option<&str> {
        self.metadata.get(APPLY_SET_KEY).and_then(|v| v.as_str())
    }

    /// For a job that fans out (`targets` set): how many targets run at once.
    pub fn fan_out_parallelism(&self) -> Option<u32> {
        self.targets
            .as_ref()
            .map(|_| self.parallelism.unwrap_or(DEFAULT_PARALLELISM))
    }
}

/// When a job fires. Exactly one of the keys `cron`, `every`, `at`, `after`,
/// `manual`, `on`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawSchedule", into = "RawSchedule")]
pub enum Schedule {
    /// Cron expression (5 fields, or 6 with seconds first, or `@daily`-style) in a zone.
    Cron { cron: String, timezone: String },
    /// Every fixed interval, counted from the job's last change.
    Every(HumanDuration),
    /// Once, at this instant.
    At(Timestamp),
    /// Once, this long after the job was created.
    After(HumanDuration),
    /// Only when run by hand.
    Manual,
    /// On every matching event (see [`crate::trigger`]).
    On(EventTrigger),
}

/// An event filter for `{"on": {"event": TYPE, ...filters}}`; the filters each
/// event type accepts are in [`crate::trigger`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventTrigger {
    /// The event type, e.g. `execution.finished` or `deploy.finished`.
    pub event: String,
    /// Equality filters on the event's `data`.
    #[serde(flatten)]
    pub filters: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    every: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    manual: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    on: Option<EventTrigger>,
}

impl TryFrom<RawSchedule> for Schedule {
    type Error = String;

    fn try_from(raw: RawSchedule) -> Result<Self, String> {
        const ONE_OF: &str = "a schedule takes exactly one of: cron (with optional timezone), every, at, after, manual, on";
        let count = [
            raw.cron.is_some(),
            raw.every.is_some(),
            raw.at.is_some(),
            raw.after.is_some(),
            raw.manual.is_some(),
            raw.on.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if count != 1 {
            return Err(ONE_OF.to_string());
        }
        if raw.timezone.is_some() && raw.cron.is_none() {
            return Err("timezone is only accepted together with cron".to_string());
        }
        Ok(if let Some(cron) = raw.cron {
            Schedule::Cron {
                cron,
                timezone: raw.timezone.unwrap_or_else(|| "UTC".to_string()),
            }
        } else if let Some(d) = raw.every {
            Schedule::Every(d)
        } else if let Some(t) = raw.at {
            Schedule::At(t)
        } else if let Some(d) = raw.after {
            Schedule::After(d)
        } else if let Some(m) = raw.manual {
            if !m {
                return Err(
                    "manual only accepts true; to stop a job from firing, pause it".to_string(),
                );
            }
            Schedule::Manual
        } else {
            Schedule::On(raw.on.expect("counted above"))
        })
    }
}

impl From<Schedule> for RawSchedule {
    fn from(s: Schedule) -> Self {
        let mut raw = RawSchedule::default();
        match s {
            Schedule::Cron { cron, timezone } => {
                raw.cron = Some(cron);
                raw.timezone = Some(timezone);
            }
            Schedule::Every(d) => raw.every = Some(d),
            Schedule::At(t) => raw.at = Some(t),
            Schedule::After(d) => raw.after = Some(d),
            Schedule::Manual => raw.manual = Some(true),
            Schedule::On(e) => raw.on = Some(e),
        }
        raw
    }
}

/// What a run does. Selected by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExecutorSpec {
    /// A process: `sh -c command`, or `command` executed with `args`.
    Shell(ShellSpec),
    /// An HTTP request whose answer status decides success.
    Http(HttpSpec),
    /// Records the instant a run was handed to it (for benchmarks and tests): appends
    /// `<job> <execution> <attempt> <scheduled_at ns> <handed_at ns>` to `path`.
    Record(RecordSpec),
    /// rota's own executor of a workflow job (see [`crate::workflow`]); not
    /// accepted in users' jobs.
    WorkflowJob(Box<crate::workflow::WorkflowJobSpec>),
    /// One request per target of a set, summed up as synced, partial, not synced or
    /// timeout (see [`crate::probe`]).
    Probe(crate::probe::ProbeSpec),
    /// Reads a Prow deck's builds and sends them to a sink (see [`crate::prow`]).
    Prow(crate::prow::ProwSpec),
}

impl ExecutorSpec {
    pub fn type_name(&self) -> &'static str {
        match self {
            ExecutorSpec::Shell(_) => "shell",
            ExecutorSpec::Http(_) => "http",
            ExecutorSpec::Record(_) => "record",
            ExecutorSpec::WorkflowJob(_) => "workflow_job",
            ExecutorSpec::Probe(_) => "probe",
            ExecutorSpec::Prow(_) => "prow",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShellSpec {
    /// Shell command line (run with `sh -c`), or the program when `args` is given.
    pub command: String,
    /// When present, `command` is executed directly with these arguments, no shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Working directory; the server's own when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
}

fn default_method() -> String {
    "GET".to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    /// HTTP method, `GET` when absent.
    #[serde(default = "default_method")]
    pub method: String,
    /// `http://` or `https://` URL.
    pub url: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Statuses that count as success; any 2xx when empty.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "one_or_many"
    )]
    pub expect_status: Vec<u16>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u16>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(u16),
        Many(Vec<u16>),
    }
    match OneOrMany::deserialize(d).map_err(|_| {
        serde::de::Error::custom("expected a status code (100-599) or a list of them")
    })? {
        OneOrMany::One(s) => Ok(vec![s]),
        OneOrMany::Many(v) => Ok(v),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordSpec {
    /// File the records are appended to.
    pub path: String,
}

fn default_max_attempts() -> u32 {
    3
}
fn default_initial_delay() -> HumanDuration {
    HumanDuration::from_secs(1)
}
fn default_max_delay() -> HumanDuration {
    HumanDuration::from_secs(60)
}
fn default_multiplier() -> f64 {
    2.0
}
fn default_true() -> bool {
    true
}

/// Exponential backoff: attempt `n` (n >= 2) waits
/// `min(max_delay, initial_delay * multiplier^(n-2))`, with full jitter when `jitter`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Total attempts including the first, 1-100.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_initial_delay")]
    pub initial_delay: HumanDuration,
    #[serde(default = "default_max_delay")]
    pub max_delay: HumanDuration,
    /// 1.0-10.0.
    #[serde(default = "default_multiplier")]
    pub multiplier: f64,
    #[serde(default = "default_true")]
    pub jitter: bool,
}

/// What happens when a run is due while the previous one of the same job still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Start it anyway.
    #[default]
    Allow,
    /// Record it as `skipped`.
    Skip,
    /// Keep at most one waiting; it starts when the running one finishes.
    BufferOne,
    /// Cancel the running one, then start the new one.
    CancelRunning,
}

/// What happens to instants missed while no leader could fire them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Misfire {
    /// Forget them; wait for the next instant.
    Skip,
    /// Fire once for all of them (the latest), trigger `catchup`.
    #[default]
    RunOnce,
    /// Fire each of them, oldest first, trigger `catchup`.
    RunAll,
}
