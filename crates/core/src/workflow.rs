//! Workflows: jobs chained by `needs`, with steps, services, environment and
//! artifacts, and the runs that carry them out.
//!
//! A workflow is stored as itself and, beside it, as jobs the scheduler already
//! knows how to fire, place, retry and cancel (see [`internal_jobs`]): one job per
//! workflow job, named `{workflow}:{job}`, whose executor is a [`WorkflowJobSpec`],
//! and one trigger job, `{workflow}:@trigger`, that carries the workflow's schedule.
//! Neither name can be a user's job name (`:` is not allowed in names), and both are
//! left out of job lists. A run's progress is decided by the state machine when an
//! execution of one of its jobs ends, so it survives any leader change.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use ulid::Ulid;

use crate::validate::{deserialize_at, validate_executor_for_workflow, validate_tags};
use crate::{
    validate_name, CompiledSchedule, ExecutorSpec, HumanDuration, JobSpec, RetryPolicy, Schedule,
    Timestamp, ValidationError,
};

/// Separates a workflow's name from its job's in the internal job's name.
pub const JOB_SEPARATOR: char = ':';
/// The suffix of a workflow's trigger job (`{workflow}:@trigger`).
pub const TRIGGER_SUFFIX: &str = "@trigger";
/// At most this many jobs in one workflow.
pub const MAX_JOBS: usize = 100;
/// At most this many steps, services or artifacts in one job.
pub const MAX_PARTS: usize = 50;
/// The longest stored error of a run, in bytes; longer ones are cut (on a
/// character boundary) and end with `…`.
pub const MAX_ERROR_BYTES: usize = 1024;

fn is_false(b: &bool) -> bool {
    !*b
}
fn default_history_limit() -> u32 {
    100
}

/// A workflow as users write it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// When a run starts; `{"manual": true}` for runs started by hand only.
    pub schedule: Schedule,
    /// Given to every process of every job; `${{ env.X }}` is substituted in
    /// commands, URLs, headers and bodies.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// What a new run does while another one is active.
    #[serde(default)]
    pub concurrency: Concurrency,
    /// Longest a run may take; what still runs then is cancelled and the run ends
    /// `timed_out`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub paused: bool,
    /// Finished runs kept; older ones are forgotten.
    #[serde(default = "default_history_limit")]
    pub history_limit: u32,
    pub jobs: BTreeMap<String, WorkflowJob>,
}

/// What a new run does while another run of the same workflow is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Concurrency {
    /// Waits, then starts when the active runs have ended (oldest first).
    #[default]
    Queue,
    /// Is recorded as `skipped`.
    Skip,
    /// Cancels the active runs and starts at once.
    CancelRunning,
}

/// When a job runs, given how its needs ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Every need succeeded.
    #[default]
    Success,
    /// Some need did not succeed.
    Failure,
    /// Whatever the needs did (once they ended).
    Always,
}

/// One job of a workflow: one `executor` or ordered `steps`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowJob {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<ExecutorSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
    #[serde(default, rename = "if")]
    pub condition: Condition,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<ArtifactSpec>,
    /// Added to (and over) the workflow's `env` for this job.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

/// One step of a job; the first that fails ends the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub name: String,
    pub executor: ExecutorSpec,
}

fn default_ready_timeout() -> HumanDuration {
    HumanDuration::from_secs(60)
}

/// A process started before a job's steps, waited for until `ready`, and stopped
/// (its whole process group) after them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub name: String,
    /// Run with `sh -c`, in the job's workspace, with the job's environment.
    pub command: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// How to tell that it is ready; when absent, started is ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<Readiness>,
    /// How long to wait for `ready` before the job fails.
    #[serde(default = "default_ready_timeout")]
    pub ready_timeout: HumanDuration,
}

/// A readiness check, tried every 100 ms. Exactly one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Readiness {
    /// A TCP connection to `host:port` is accepted.
    Tcp(String),
    /// A GET of this URL answers 2xx.
    Http(String),
    /// This command (`sh -c`) exits 0.
    Command(String),
}

/// A file or directory of the job's workspace kept after the job, under `name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactSpec {
    pub name: String,
    /// Relative to the workspace: a file, or a directory whose files are kept
    /// relative to it.
    pub path: String,
}

/// The executor of a workflow job's internal job (`type: workflow_job`): not
/// accepted in users' jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowJobSpec {
    pub workflow: String,
    pub job: String,
    /// The workflow's `env` overlaid with the job's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// A job with one `executor` has one step named after the job.
    pub steps: Vec<Step>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<ArtifactSpec>,
    /// The jobs whose artifacts this one receives.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
}

/// One file of an artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactFile {
    /// Relative, `/`-separated.
    pub path: String,
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
}

/// An artifact as recorded through Raft: its files stay on `node`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    pub name: String,
    /// The workflow job that produced it.
    pub job: String,
    pub node: String,
    /// Sum of the files' sizes.
    pub size: u64,
    pub files: Vec<ArtifactFile>,
}

/// A workflow as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowRecord {
    pub spec: WorkflowSpec,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub revision: u64,
}

/// Status of a run or of one of its jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
    Skipped,
}

impl RunStatus {
    pub fn is_terminal(self) -> bool {
        !matches!(self, RunStatus::Queued | RunStatus::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::TimedOut => "timed_out",
            RunStatus::Skipped => "skipped",
        }
    }
}

/// One job within a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunJob {
    pub status: RunStatus,
    /// Its execution (one; retries are attempts of it), when it was started.
    #[serde(default)]
    pub executions: Vec<Ulid>,
    /// Why it was skipped, failed or cancelled, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A run of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowRun {
    pub id: Ulid,
    pub workflow: String,
    /// The workflow's revision when the run was created.
    pub workflow_revision: u64,
    pub status: RunStatus,
    /// What started it: `schedule`, `manual`, `event`, `catchup`.
    pub trigger: crate::Trigger,
    /// When the run was asked for.
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// When the run times out (its start plus the workflow's `timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_revision: Option<u64>,
    /// Cancelled (or timed out) while jobs still ran: it ends with this status once
    /// they have stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ending: Option<RunStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub jobs: BTreeMap<String, RunJob>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<ArtifactRecord>,
}

/// The name of the internal job of workflow job `job`.
pub fn job_name(workflow: &str, job: &str) -> String {
    format!("{workflow}{JOB_SEPARATOR}{job}")
}

/// The name of a workflow's trigger job.
pub fn trigger_name(workflow: &str) -> String {
    format!("{workflow}{JOB_SEPARATOR}{TRIGGER_SUFFIX}")
}

/// `(workflow, job)` of an internal job's name (`job` is `@trigger` for the trigger
/// job); `None` for a user's job.
pub fn split_job_name(name: &str) -> Option<(&str, &str)> {
    name.split_once(JOB_SEPARATOR)
}

/// `text` cut to [`MAX_ERROR_BYTES`] on a character boundary.
pub fn truncate_error(text: &str) -> String {
    if text.len() <= MAX_ERROR_BYTES {
        return text.to_string();
    }
    let mut end = MAX_ERROR_BYTES - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

impl WorkflowSpec {
    /// The jobs the scheduler runs for this workflow: the trigger job first, then
    /// one per workflow job.
    pub fn internal_jobs(&self) -> Vec<JobSpec> {
        let mut jobs = Vec::with_capacity(self.jobs.len() + 1);
        jobs.push(JobSpec {
            name: trigger_name(&self.name),
            description: Some(format!("starts runs of workflow {}", self.name)),
            schedule: self.schedule.clone(),
            executor: ExecutorSpec::WorkflowJob(Box::new(WorkflowJobSpec {
                workflow: self.name.clone(),
                job: TRIGGER_SUFFIX.to_string(),
                env: BTreeMap::new(),
                steps: Vec::new(),
                services: Vec::new(),
                artifacts: Vec::new(),
                needs: Vec::new(),
            })),
            timeout: None,
            retry: None,
            priority: 0,
            overlap: crate::Overlap::Allow,
            misfire: crate::Misfire::default(),
            catchup_window: crate::job::default_catchup_window(),
            paused: self.paused,
            tags: BTreeMap::new(),
            metadata: serde_json::Map::new(),
            history_limit: Some(self.history_limit),
            max_output_bytes: 0,
            delete_after_run: false,
            notify: Vec::new(),
            targets: None,
            parallelism: None,
            sink: None,
        });
        for (name, job) in &self.jobs {
            let mut env = self.env.clone();
            env.extend(job.env.clone());
            let steps = match &job.executor {
                Some(executor) => vec![Step {
                    name: name.clone(),
                    executor: executor.clone(),
                }],
                None => job.steps.clone(),
            };
            jobs.push(JobSpec {
                name: job_name(&self.name, name),
                description: None,
                schedule: Schedule::Manual,
                executor: ExecutorSpec::WorkflowJob(Box::new(WorkflowJobSpec {
                    workflow: self.name.clone(),
                    job: name.clone(),
                    env,
                    steps,
                    services: job.services.clone(),
                    artifacts: job.artifacts.clone(),
                    needs: job.needs.clone(),
                })),
                timeout: job.timeout,
                retry: job.retry.clone(),
                priority: 0,
                overlap: crate::Overlap::Allow,
                misfire: crate::Misfire::default(),
                catchup_window: crate::job::default_catchup_window(),
                paused: false,
                tags: job.tags.clone(),
                metadata: serde_json::Map::new(),
                history_limit: Some(self.history_limit),
                max_output_bytes: 1024 * 1024,
                delete_after_run: false,
                notify: Vec::new(),
                targets: None,
                parallelism: None,
                sink: None,
            });
        }
        jobs
    }

    /// The jobs in an order where each comes after its needs (ties by name).
    /// Only for validated specs (no cycles).
    pub fn topological_order(&self) -> Vec<String> {
        let mut done: BTreeSet<&str> = BTreeSet::new();
        let mut order = Vec::with_capacity(self.jobs.len());
        while order.len() < self.jobs.len() {
            let before = order.len();
            for (name, job) in &self.jobs {
                if !done.contains(name.as_str())
                    && job.needs.iter().all(|n| done.contains(n.as_str()))
                {
                    done.insert(name);
                    order.push(name.clone());
                }
            }
            if order.len() == before {
                break; // a cycle: validation refuses it
            }
        }
        order
    }

    /// Checks every field; on success returns the compiled schedule.
    pub fn validate(&self) -> Result<CompiledSchedule, ValidationError> {
        validate_name("name", &self.name)?;
        // The internal jobs' checks cover the schedule and the trigger.
        let trigger_probe = JobSpec {
            name: self.name.clone(),
            executor: ExecutorSpec::Shell(crate::ShellSpec {
                command: "true".into(),
                args: None,
                env: BTreeMap::new(),
                cwd: None,
            }),
            ..self.internal_jobs().swap_remove(0)
        };
        if matches!(self.schedule, Schedule::At(_) | Schedule::After(_)) {
            return Err(ValidationError::new(
                "schedule",
                "a workflow takes cron, every, manual or on; at and after are for jobs",
            ));
        }
        let compiled = trigger_probe.validate()?;
        validate_env("env", &self.env)?;
        if let Some(timeout) = self.timeout {
            if timeout.0.is_zero() {
                return Err(ValidationError::new("timeout", "must be more than 0s"));
            }
        }
        if !(1..=10_000).contains(&self.history_limit) {
            return Err(ValidationError::new(
                "history_limit",
                format!("{} is out of 1-10000", self.history_limit),
            ));
        }
        if self.jobs.is_empty() {
            return Err(ValidationError::new(
                "jobs",
                "a workflow needs at least one job",
            ));
        }
        if self.jobs.len() > MAX_JOBS {
            return Err(ValidationError::new(
                "jobs",
                format!(
                    "has {} jobs; at most {MAX_JOBS} are accepted",
                    self.jobs.len()
                ),
            ));
        }
        let mut artifact_of: BTreeMap<&str, &str> = BTreeMap::new();
        for (name, job) in &self.jobs {
            validate_job(&self.jobs, name, job).map_err(|e| e.within(&format!("jobs.{name}")))?;
            // A run keeps its artifacts by name: one name, one job.
            for (i, artifact) in job.artifacts.iter().enumerate() {
                if let Some(other) = artifact_of.insert(&artifact.name, name) {
                    return Err(ValidationError::new(
                        format!("jobs.{name}.artifacts[{i}].name"),
                        format!(
                            "{:?} is also an artifact of job {other:?}; artifact names are unique within a workflow",
                            artifact.name
                        ),
                    ));
                }
            }
        }
        if let Some(cycle) = find_cycle(&self.jobs) {
            return Err(ValidationError::new(
                format!("jobs.{}.needs", cycle[0]),
                format!(
                    "jobs depend on each other in a cycle: {}",
                    cycle.join(" → ")
                ),
            ));
        }
        Ok(compiled)
    }
}

fn validate_env(field: &str, env: &BTreeMap<String, String>) -> Result<(), ValidationError> {
    for (name, value) in env {
        let ok = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ok {
            return Err(ValidationError::new(
                field,
                format!("{name:?} is not a variable name (letters, digits and _, not starting with a digit)"),
            ));
        }
        if value.contains('\0') {
            return Err(ValidationError::new(
                format!("{field}.{name}"),
                "must not contain a NUL character",
            ));
        }
    }
    Ok(())
}

fn check_parts_len(field: &str, len: usize) -> Result<(), ValidationError> {
    if len > MAX_PARTS {
        return Err(ValidationError::new(
            field,
            format!("has {len} entries; at most {MAX_PARTS} are accepted"),
        ));
    }
    Ok(())
}

fn unique_name(
    field: &str,
    seen: &mut BTreeSet<String>,
    name: &str,
) -> Result<(), ValidationError> {
    validate_name(field, name)?;
    if !seen.insert(name.to_string()) {
        return Err(ValidationError::new(
            field,
            format!("{name:?} is used twice; names must be unique within the job"),
        ));
    }
    Ok(())
}

/// Field paths are relative to the job.
fn validate_job(
    jobs: &BTreeMap<String, WorkflowJob>,
    name: &str,
    job: &WorkflowJob,
) -> Result<(), ValidationError> {
    validate_name("", name)?;
    match (&job.executor, job.steps.is_empty()) {
        (Some(_), false) => {
            return Err(ValidationError::new(
                "steps",
                "a job has either one executor or steps, not both",
            ))
        }
        (None, true) => {
            return Err(ValidationError::new(
                "executor",
                "a job needs an executor or steps",
            ))
        }
        _ => {}
    }
    if let Some(executor) = &job.executor {
        validate_executor_for_workflow(executor).map_err(|e| e.within("executor"))?;
    }
    check_parts_len("steps", job.steps.len())?;
    let mut seen = BTreeSet::new();
    for (i, step) in job.steps.iter().enumerate() {
        unique_name(&format!("steps[{i}].name"), &mut seen, &step.name)?;
        validate_executor_for_workflow(&step.executor)
            .map_err(|e| e.within(&format!("steps[{i}].executor")))?;
    }
    check_parts_len("services", job.services.len())?;
    let mut seen = BTreeSet::new();
    for (i, service) in job.services.iter().enumerate() {
        let field = format!("services[{i}]");
        unique_name(&format!("{field}.name"), &mut seen, &service.name)?;
        if service.command.trim().is_empty() {
            return Err(ValidationError::new(
                format!("{field}.command"),
                "must not be empty",
            ));
        }
        validate_env(&format!("{field}.env"), &service.env)?;
        match &service.ready {
            Some(Readiness::Tcp(addr)) => {
                let ok = addr.rsplit_once(':').is_some_and(|(host, port)| {
                    !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
                });
                if !ok {
                    return Err(ValidationError::new(
                        format!("{field}.ready.tcp"),
                        format!("{addr:?} is not host:port, e.g. 127.0.0.1:5432"),
                    ));
                }
            }
            Some(Readiness::Http(url)) => crate::validate::check_http_url(url)
                .map_err(|m| ValidationError::new(format!("{field}.ready.http"), m))?,
            Some(Readiness::Command(cmd)) if cmd.trim().is_empty() => {
                return Err(ValidationError::new(
                    format!("{field}.ready.command"),
                    "must not be empty",
                ))
            }
            _ => {}
        }
        if service.ready_timeout.0.is_zero() {
            return Err(ValidationError::new(
                format!("{field}.ready_timeout"),
                "must be more than 0s",
            ));
        }
    }
    let mut seen = BTreeSet::new();
    for (i, need) in job.needs.iter().enumerate() {
        if !jobs.contains_key(need) {
            return Err(ValidationError::new(
                format!("needs[{i}]"),
                format!(
                    "job {name:?} needs {need:?}, which is not a job of this workflow (jobs: {})",
                    jobs.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        if need == name {
            return Err(ValidationError::new(
                format!("needs[{i}]"),
                format!("job {name:?} cannot need itself"),
            ));
        }
        if !seen.insert(need) {
            return Err(ValidationError::new(
                format!("needs[{i}]"),
                format!("{need:?} is listed twice"),
            ));
        }
    }
    if job.condition != Condition::Success && job.needs.is_empty() {
        return Err(ValidationError::new(
            "if",
            "only applies to a job with needs; leave it out",
        ));
    }
    if let Some(timeout) = job.timeout {
        if timeout.0.is_zero() {
            return Err(ValidationError::new("timeout", "must be more than 0s"));
        }
    }
    validate_tags(&job.tags)?;
    check_parts_len("artifacts", job.artifacts.len())?;
    let mut seen = BTreeSet::new();
    for (i, artifact) in job.artifacts.iter().enumerate() {
        unique_name(&format!("artifacts[{i}].name"), &mut seen, &artifact.name)?;
        let path = Path::new(&artifact.path);
        let escapes = path.is_absolute()
            || artifact.path.is_empty()
            || path
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir));
        if escapes {
            return Err(ValidationError::new(
                format!("artifacts[{i}].path"),
                format!(
                    "{:?} must be a relative path inside the job's workspace, without ..",
                    artifact.path
                ),
            ));
        }
    }
    validate_env("env", &job.env)?;
    if let Some(retry) = &job.retry {
        crate::validate::validate_retry(retry).map_err(|e| e.within("retry"))?;
    }
    Ok(())
}

/// A cycle of needs, as the job names along it (first repeated at the end).
fn find_cycle(jobs: &BTreeMap<String, WorkflowJob>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit<'a>(
        jobs: &'a BTreeMap<String, WorkflowJob>,
        name: &'a str,
        marks: &mut BTreeMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match marks.get(name) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let from = path.iter().position(|n| *n == name).unwrap_or(0);
                let mut cycle: Vec<String> = path[from..].iter().map(|s| s.to_string()).collect();
                cycle.push(name.to_string());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(name, Mark::Open);
        path.push(name);
        for need in jobs
            .get(name)
            .map(|j| j.needs.as_slice())
            .unwrap_or_default()
        {
            if let Some(cycle) = visit(jobs, need, marks, path) {
                return Some(cycle);
            }
        }
        path.pop();
        marks.insert(name, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for name in jobs.keys() {
        let mut path = Vec::new();
        if let Some(cycle) = visit(jobs, name, &mut marks, &mut path) {
            return Some(cycle);
        }
    }
    None
}

/// Reads a workflow from a JSON value (the common form of JSON, YAML and TOML),
/// naming the field on a type error. Does not validate values.
pub fn parse_workflow_value(value: &Value) -> Result<WorkflowSpec, ValidationError> {
    if !value.is_object() {
        return Err(ValidationError::new(
            "",
            "a workflow is an object with name, schedule and jobs",
        ));
    }
    deserialize_at::<WorkflowSpec>(value)
}

/// How each job of a run should go on, given the statuses of the others: the jobs
/// to start now and the jobs to skip (with why). Jobs whose needs have not all
/// ended are left alone.
pub fn ready_jobs(spec: &WorkflowSpec, run: &WorkflowRun) -> (Vec<String>, Vec<(String, String)>) {
    let mut start = Vec::new();
    let mut skip = Vec::new();
    for name in spec.topological_order() {
        let Some(state) = run.jobs.get(&name) else {
            continue;
        };
        if state.status != RunStatus::Queued || !state.executions.is_empty() {
            continue;
        }
        let Some(job) = spec.jobs.get(&name) else {
            continue;
        };
        let needs: Vec<(&String, RunStatus)> = job
            .needs
            .iter()
            .map(|n| (n, run.jobs.get(n).map_or(RunStatus::Skipped, |j| j.status)))
            .collect();
        if needs.iter().any(|(_, s)| !s.is_terminal()) {
            continue;
        }
        let all_succeeded = needs.iter().all(|(_, s)| *s == RunStatus::Succeeded);
        let go = match job.condition {
            Condition::Success => all_succeeded,
            Condition::Failure => !all_succeeded,
            Condition::Always => true,
        };
        if go {
            start.push(name);
        } else {
            let why = match job.condition {
                Condition::Success => {
                    let failed: Vec<String> = needs
                        .iter()
                        .filter(|(_, s)| *s != RunStatus::Succeeded)
                        .map(|(n, s)| format!("{n} {}", s.as_str()))
                        .collect();
                    format!("skipped: needs did not succeed ({})", failed.join(", "))
                }
                _ => "skipped: every need succeeded (if: failure)".to_string(),
            };
            skip.push((name, why));
        }
    }
    (start, skip)
}

/// The status a run ends with once all its jobs have ended.
pub fn final_status(run: &WorkflowRun) -> RunStatus {
    if let Some(ending) = run.ending {
        return ending;
    }
    let statuses: Vec<RunStatus> = run.jobs.values().map(|j| j.status).collect();
    if statuses
        .iter()
        .any(|s| matches!(s, RunStatus::Failed | RunStatus::TimedOut))
    {
        RunStatus::Failed
    } else if statuses.contains(&RunStatus::Cancelled) {
        RunStatus::Cancelled
    } else {
        RunStatus::Succeeded
    }
}

/// How a job's execution status maps to the job's status within its run.
pub fn job_status(exec: crate::ExecStatus) -> RunStatus {
    use crate::ExecStatus as E;
    match exec {
        E::Queued => RunStatus::Queued,
        E::Running => RunStatus::Running,
        E::Succeeded => RunStatus::Succeeded,
        E::Failed | E::Lost => RunStatus::Failed,
        E::TimedOut => RunStatus::TimedOut,
        E::Cancelled => RunStatus::Cancelled,
        E::Skipped => RunStatus::Skipped,
    }
}

#[cfg(test)]
mod tests;
