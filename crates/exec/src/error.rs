//! Why an attempt could not do its work. Executors turn these into the `error` text
//! of a failed [`crate::RunOutcome`], with the whole chain of causes.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// A failure inside an executor, named by its cause.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The executor was handed a spec of another kind.
    #[error("the {executor} executor cannot run a {spec} spec")]
    SpecMismatch {
        /// The executor's kind.
        executor: &'static str,
        /// The kind of the spec it was handed.
        spec: &'static str,
    },
    /// The working directory given in the spec cannot be entered.
    #[error("working directory {cwd:?} is not usable")]
    WorkingDirectory {
        /// The directory as the spec names it.
        cwd: String,
        /// Why it cannot be entered.
        #[source]
        source: io::Error,
    },
    /// The process could not be started (no such program, not executable, ...).
    #[error("cannot start {program:?}")]
    Spawn {
        /// The program that was to run (`sh` for a command line).
        program: String,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// Waiting for the process to end failed.
    #[error("waiting for the process")]
    Wait(#[source] io::Error),
    /// The directory that records this node's running process groups cannot be
    /// read or written ([`crate::ledger`]).
    #[error("process group records in {path:?}")]
    Ledger {
        /// The directory, or the record in it.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The shared HTTP client could not be built (TLS set-up).
    #[error("building the HTTP client")]
    HttpClient(#[source] Arc<reqwest::Error>),
    /// The spec's method is not a valid HTTP method.
    #[error("invalid HTTP method {0:?}")]
    InvalidMethod(String),
    /// A header name in the spec is not a valid HTTP header name.
    #[error("invalid header name {0:?}")]
    InvalidHeaderName(String),
    /// A header value in the spec is not a valid HTTP header value.
    #[error("invalid value for header {0:?}")]
    InvalidHeaderValue(String),
    /// The request could not be sent or no answer came (connection refused, DNS,
    /// TLS, bad URL, ...).
    #[error("request failed")]
    Request(#[source] reqwest::Error),
    /// The answer's body broke off.
    #[error("reading the response body")]
    ResponseBody(#[source] reqwest::Error),
    /// The answer's status is not one the spec accepts.
    #[error("unexpected status {status} (expected {expected})")]
    UnexpectedStatus {
        /// The status received.
        status: u16,
        /// The statuses accepted, as people read them (`2xx`, or `200, 204`).
        expected: String,
    },
    /// The record file could not be opened for appending.
    #[error("opening {path:?} for appending")]
    RecordOpen {
        /// The record file.
        path: String,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// Appending the record line failed.
    #[error("appending to {path:?}")]
    RecordWrite {
        /// The record file.
        path: String,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The record line was not written in one piece.
    #[error("short write to {path:?}: {written} of {len} bytes")]
    ShortWrite {
        /// The record file.
        path: String,
        /// Bytes the write took.
        written: usize,
        /// Bytes of the line.
        len: usize,
    },
    /// A `workflow_job` run came without its [`crate::WorkflowContext`].
    #[error("the workflow context is missing: a workflow job needs its workspace and artifact directories")]
    WorkflowContextMissing,
    /// A workflow's trigger job was handed to the executor; it only starts runs.
    #[error("the trigger of workflow {workflow} does not run as a job")]
    TriggerJob {
        /// The workflow.
        workflow: String,
    },
    /// A workflow job without steps.
    #[error("job has no steps")]
    NoSteps,
    /// A directory of the attempt (workspace, inputs) could not be created.
    #[error("creating directory {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// `${{ env.NAME }}` names a variable the job does not set.
    #[error("${{{{ env.{name} }}}} is not set ({})", set_names(set))]
    UnsetVariable {
        /// The variable.
        name: String,
        /// The variables that are set, sorted.
        set: Vec<String>,
    },
    /// `${{ ... }}` holds something other than `env.NAME`.
    #[error("${{{{ {expression} }}}} is not understood; only ${{{{ env.NAME }}}} is substituted")]
    UnknownExpression {
        /// What stood between the braces, trimmed.
        expression: String,
    },
    /// `${{` without a closing `}}`.
    #[error("\"${{{{\" without a closing \"}}}}\" in {text:?}")]
    UnclosedExpression {
        /// The text holding it.
        text: String,
    },
    /// Something wrong with one step, before or around its run.
    #[error("step {step}")]
    Step {
        /// The step's name.
        step: String,
        /// What was wrong.
        #[source]
        source: Box<ExecError>,
    },
    /// Something wrong with one service: its command, its start.
    #[error("service {service}")]
    Service {
        /// The service's name.
        service: String,
        /// What was wrong.
        #[source]
        source: Box<ExecError>,
    },
    /// A service's readiness check did not pass within its `ready_timeout`.
    #[error("service {service} was not ready after {after}")]
    ServiceNotReady {
        /// The service's name.
        service: String,
        /// Its `ready_timeout`.
        after: rota_core::HumanDuration,
    },
    /// A service's process ended before its readiness check passed.
    #[error("service {service} {how} before it was ready")]
    ServiceExited {
        /// The service's name.
        service: String,
        /// How it ended: `exited with status 1`, `was killed by signal 9`.
        how: String,
    },
    /// An artifact's name could not be a directory name (validation keeps such
    /// names out of workflows).
    #[error("artifact name {artifact:?} is not a valid name ([a-z0-9][a-z0-9_-]{{0,62}})")]
    ArtifactNameInvalid {
        /// The name.
        artifact: String,
    },
    /// A file path of a received artifact would land outside its directory.
    #[error("artifact {artifact}: file path {path:?} is not a relative path inside the artifact (no leading /, no empty, . or .. parts)")]
    InputPath {
        /// The artifact's name.
        artifact: String,
        /// The file's path as recorded.
        path: String,
    },
    /// The base URL of a received artifact cannot take file paths.
    #[error("artifact {artifact}: {base_url:?} is not a URL files can be fetched under")]
    InputUrl {
        /// The artifact's name.
        artifact: String,
        /// Its base URL.
        base_url: String,
    },
    /// Fetching a file of a received artifact failed (connection, body).
    #[error("artifact {artifact}: fetching file {path}")]
    InputFetch {
        /// The artifact's name.
        artifact: String,
        /// The file's path.
        path: String,
        /// What the client said.
        #[source]
        source: reqwest::Error,
    },
    /// The node serving a received artifact's file answered with an error status.
    #[error("artifact {artifact}: file {path}: GET {url} answered {status}")]
    InputStatus {
        /// The artifact's name.
        artifact: String,
        /// The file's path.
        path: String,
        /// The URL fetched.
        url: String,
        /// The status received.
        status: u16,
    },
    /// A received file's size is not the recorded one.
    #[error("artifact {artifact}: file {path}: {got} bytes received, {expected} recorded")]
    InputSize {
        /// The artifact's name.
        artifact: String,
        /// The file's path.
        path: String,
        /// The recorded size.
        expected: u64,
        /// The bytes received (a transfer that goes beyond the recorded size is
        /// stopped there).
        got: u64,
    },
    /// A received file's sha256 is not the recorded one.
    #[error("artifact {artifact}: file {path}: sha256 is {got}, {expected} recorded")]
    InputDigest {
        /// The artifact's name.
        artifact: String,
        /// The file's path.
        path: String,
        /// The recorded digest.
        expected: String,
        /// The digest of what was received.
        got: String,
    },
    /// Writing a received file failed.
    #[error("artifact {artifact}: writing {}", path.display())]
    InputWrite {
        /// The artifact's name.
        artifact: String,
        /// The file written.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// An artifact's path would leave the workspace.
    #[error(
        "artifact {artifact}: {path:?} is not a relative path inside the workspace, without .."
    )]
    ArtifactPath {
        /// The artifact's name.
        artifact: String,
        /// Its path as the spec gives it.
        path: String,
    },
    /// An artifact's path is not in the workspace.
    #[error("artifact {artifact}: {path} does not exist in the workspace")]
    ArtifactMissing {
        /// The artifact's name.
        artifact: String,
        /// Its path as the spec gives it.
        path: String,
    },
    /// An artifact's path is neither a file nor a directory.
    #[error("artifact {artifact}: {path} is a {kind}; an artifact is a file or a directory")]
    ArtifactKind {
        /// The artifact's name.
        artifact: String,
        /// Its path as the spec gives it.
        path: String,
        /// What it is (`symbolic link`, `socket`, ...).
        kind: &'static str,
    },
    /// A file name under an artifact's directory is not UTF-8, so it has no path
    /// a record can hold.
    #[error("artifact {artifact}: {} is not a UTF-8 name; rename it", path.display())]
    ArtifactName {
        /// The artifact's name.
        artifact: String,
        /// The file.
        path: PathBuf,
    },
    /// Reading an artifact's file or directory failed.
    #[error("artifact {artifact}: reading {}", path.display())]
    ArtifactRead {
        /// The artifact's name.
        artifact: String,
        /// What was read.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// Writing a kept copy failed.
    #[error("artifact {artifact}: writing {}", path.display())]
    ArtifactWrite {
        /// The artifact's name.
        artifact: String,
        /// What was written.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The blocking task that copies artifacts died.
    #[error("the artifact copy task failed")]
    ArtifactTask(#[source] tokio::task::JoinError),
    /// A probe run came without the targets of its set.
    #[error("the targets of set {set:?} were not resolved for this run; a probe needs them")]
    TargetsNotResolved {
        /// The probe's set.
        set: String,
    },
    /// A fan-out over a set that has no targets.
    #[error("target set has no targets")]
    NoTargets,
    /// An executor that cannot run once per target was handed targets.
    #[error("a {spec} executor cannot fan out over targets")]
    CannotFanOut {
        /// The executor's kind.
        spec: &'static str,
    },
    /// `{{target.labels.NAME}}` names a label the target does not have.
    #[error(
        "{{{{target.labels.{label}}}}}: target {address} has no label {label:?} ({})",
        label_names(labels)
    )]
    UnknownLabel {
        /// The label asked for.
        label: String,
        /// The target.
        address: String,
        /// The labels it has, sorted.
        labels: Vec<String>,
    },
    /// `{{target.X}}` with X other than `address` or `labels.NAME`.
    #[error("{{{{{expression}}}}} is not understood; accepted: {{{{target.address}}}}, {{{{target.labels.NAME}}}}")]
    UnknownTargetField {
        /// What stood between the braces, trimmed.
        expression: String,
    },
}

/// `labels: a, b`, or that there are none.
fn label_names(labels: &[String]) -> String {
    if labels.is_empty() {
        "it has no labels".to_string()
    } else {
        format!("labels: {}", labels.join(", "))
    }
}

/// `set: A, B`, or that nothing is set.
fn set_names(set: &[String]) -> String {
    if set.is_empty() {
        "no variable is set".to_string()
    } else {
        format!("set: {}", set.join(", "))
    }
}

impl ExecError {
    /// The message with every cause after it, `outer: inner: innermost`.
    pub fn chain(&self) -> String {
        rota_core::error::chain(self)
    }

    /// The `failed` outcome of an attempt that ended with this error.
    pub fn outcome(&self) -> rota_core::RunOutcome {
        rota_core::RunOutcome::failed(None, self.chain())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_lists_the_causes() {
        let err = ExecError::Spawn {
            program: "nope".into(),
            source: io::Error::from_raw_os_error(libc::ENOENT),
        };
        let text = err.chain();
        assert!(text.starts_with("cannot start \"nope\": "), "{text}");
        assert!(text.contains("os error 2"), "{text}");
    }
}
