//! Validation of job specs with the path of the offending field.
//!
//! Two steps, both answering a [`ValidationError`] whose `field` is a dotted path
//! (`retry.max_attempts`, `executor.expect_status[1]`, `tags.region`):
//! [`parse_job_value`] (and [`parse_job_json`]) turn a document into a [`JobSpec`]
//! and name the field whose type or name is wrong; [`JobSpec::validate`] checks the
//! values and compiles the schedule. Callers run both: the API on a request body,
//! the CLI on every job of a file, the store never (it only accepts validated jobs).

use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::job::default_catchup_window;
use crate::trigger::validate_trigger;
use crate::{
    validate_name, CompiledSchedule, ExecutorSpec, HttpSpec, JobSpec, Misfire, RecordSpec,
    RetryPolicy, Schedule, ShellSpec, ValidationError,
};

#[cfg(test)]
mod tests;

const MAX_DESCRIPTION_BYTES: usize = 4096;
const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 86_400);
const MAX_CATCHUP_WINDOW: Duration = Duration::from_secs(30 * 86_400);
const MAX_ATTEMPTS: u32 = 100;
const PRIORITIES: std::ops::RangeInclusive<i32> = -1000..=1000;
const HISTORY_LIMITS: std::ops::RangeInclusive<u32> = 1..=10_000;
const MAX_OUTPUT_BYTES: u64 = 64 * 1024 * 1024;
const MULTIPLIERS: std::ops::RangeInclusive<f64> = 1.0..=10.0;
const MAX_TAG_CHARS: usize = 63;
const PARALLELISMS: std::ops::RangeInclusive<u32> = 1..=1024;
pub(crate) const HTTP_METHODS: &[&str] =
    &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

fn error(field: impl Into<String>, message: impl Into<String>) -> ValidationError {
    ValidationError::new(field, message)
}

impl JobSpec {
    /// Checks every field; on success returns the compiled schedule.
    ///
    /// Fields are checked in document order and the first problem is reported.
    pub fn validate(&self) -> Result<CompiledSchedule, ValidationError> {
        validate_name("name", &self.name)?;
        if let Some(description) = &self.description {
            if description.len() > MAX_DESCRIPTION_BYTES {
                return Err(error(
                    "description",
                    format!(
                        "is {} bytes long; at most {MAX_DESCRIPTION_BYTES} are accepted",
                        description.len()
                    ),
                ));
            }
        }
        if let Schedule::On(trigger) = &self.schedule {
            validate_trigger(&self.name, trigger).map_err(|e| e.within("schedule.on"))?;
        }
        let compiled =
            CompiledSchedule::compile(&self.schedule).map_err(|e| e.within("schedule"))?;
        validate_executor(&self.executor).map_err(|e| e.within("executor"))?;
        if let Some(timeout) = self.timeout {
            if timeout.0.is_zero() {
                return Err(error("timeout", "must be more than 0s"));
            }
            if timeout.0 > MAX_TIMEOUT {
                return Err(error(
                    "timeout",
                    format!("{timeout} is longer than the maximum, 7d"),
                ));
            }
        }
        if let Some(retry) = &self.retry {
            validate_retry(retry).map_err(|e| e.within("retry"))?;
        }
        if !PRIORITIES.contains(&self.priority) {
            return Err(error(
                "priority",
                format!("{} is out of -1000..1000", self.priority),
            ));
        }
        if matches!(self.schedule, Schedule::On(_)) {
            // Missed events are never coalesced or dropped by a window: each
            // matching event fires once, however late a new leader finds it.
            let not_applicable = "does not apply to an `on` schedule (every matching event fires once, also those a new leader finds missed); leave it out";
            if self.misfire != Misfire::default() {
                return Err(error("misfire", not_applicable));
            }
            if self.catchup_window != default_catchup_window() {
                return Err(error("catchup_window", not_applicable));
            }
        }
        if self.catchup_window.0 > MAX_CATCHUP_WINDOW {
            return Err(error(
                "catchup_window",
                format!("{} is longer than the maximum, 30d", self.catchup_window),
            ));
        }
        validate_tags(&self.tags)?;
        if let Some(limit) = self.history_limit.filter(|l| !HISTORY_LIMITS.contains(l)) {
            return Err(error("history_limit", format!("{limit} is out of 1-10000")));
        }
        if self.max_output_bytes > MAX_OUTPUT_BYTES {
            return Err(error(
                "max_output_bytes",
                format!(
                    "{} is more than the maximum, {MAX_OUTPUT_BYTES} (64 MiB)",
                    self.max_output_bytes
                ),
            ));
        }
        if self.delete_after_run && !matches!(self.schedule, Schedule::At(_) | Schedule::After(_)) {
            return Err(error(
                "delete_after_run",
                format!(
                    "is only accepted with an `at` or `after` schedule (jobs that run once); this job's schedule is `{}`",
                    schedule_kind(&self.schedule)
                ),
            ));
        }
        crate::notify::validate_notify(&self.notify)?;
        self.validate_fan_out()?;
        if let Some(sink) = &self.sink {
            validate_name("sink", sink)?;
        }
        Ok(compiled)
    }
}

impl JobSpec {
    fn validate_fan_out(&self) -> Result<(), ValidationError> {
        if let Some(set) = &self.targets {
            validate_name("targets", set)?;
            match &self.executor {
                ExecutorSpec::Probe(_) => {
                    return Err(error(
                        "targets",
                        "a probe job names its set in executor.targets; leave the job's targets out",
                    ))
                }
                ExecutorSpec::WorkflowJob(_) | ExecutorSpec::Prow(_) => {
                    return Err(error(
                        "targets",
                        format!("a {} executor cannot fan out; targets is accepted with shell, http and record", self.executor.type_name()),
                    ))
                }
                _ => {}
            }
        }
        if let Some(parallelism) = self.parallelism {
            if self.targets.is_none() {
                return Err(error(
                    "parallelism",
                    "only applies to a job with targets (it bounds how many targets run at once); set targets or leave parallelism out",
                ));
            }
            if !PARALLELISMS.contains(&parallelism) {
                return Err(error(
                    "parallelism",
                    format!("{parallelism} is out of 1-1024"),
                ));
            }
        }
        Ok(())
    }
}

fn schedule_kind(schedule: &Schedule) -> &'static str {
    match schedule {
        Schedule::Cron { .. } => "cron",
        Schedule::Every(_) => "every",
        Schedule::At(_) => "at",
        Schedule::After(_) => "after",
        Schedule::Manual => "manual",
        Schedule::On(_) => "on",
    }
}

fn no_nul(field: impl Into<String>, value: &str) -> Result<(), ValidationError> {
    if value.contains('\0') {
        return Err(error(field, "must not contain a NUL character"));
    }
    Ok(())
}

/// Field paths are relative to `executor`.
fn validate_executor(executor: &ExecutorSpec) -> Result<(), ValidationError> {
    match executor {
        ExecutorSpec::WorkflowJob(_) => Err(error(
            "type",
            "\"workflow_job\" is rota's own executor of workflow jobs; a job takes shell, http, record or probe",
        )),
        ExecutorSpec::Probe(probe) => probe.validate(),
        ExecutorSpec::Prow(prow) => prow.validate(),
        other => validate_executor_for_workflow(other),
    }
}

/// An executor of a workflow's job or step (field paths are relative to it).
pub(crate) fn validate_executor_for_workflow(
    executor: &ExecutorSpec,
) -> Result<(), ValidationError> {
    match executor {
        ExecutorSpec::Shell(shell) => validate_shell(shell),
        ExecutorSpec::Http(http) => validate_http(http),
        ExecutorSpec::Record(record) => validate_record(record),
        ExecutorSpec::WorkflowJob(_) | ExecutorSpec::Probe(_) | ExecutorSpec::Prow(_) => {
            Err(error(
                "type",
                format!(
                    "{:?} is not accepted here; accepted: shell, http, record",
                    executor.type_name()
                ),
            ))
        }
    }
}

fn validate_shell(shell: &ShellSpec) -> Result<(), ValidationError> {
    if shell.command.trim().is_empty() {
        return Err(error("command", "must not be empty"));
    }
    no_nul("command", &shell.command)?;
    for (i, arg) in shell.args.iter().flatten().enumerate() {
        no_nul(format!("args[{i}]"), arg)?;
    }
    for (name, value) in &shell.env {
        if name.is_empty() {
            return Err(error("env", "a variable name must not be empty"));
        }
        if name.contains('=') || name.contains('\0') {
            return Err(error(
                "env",
                format!("variable name {name:?} must not contain '=' or a NUL character"),
            ));
        }
        no_nul(format!("env.{name}"), value)?;
    }
    if let Some(cwd) = &shell.cwd {
        no_nul("cwd", cwd)?;
        if !Path::new(cwd).is_absolute() {
            return Err(error(
                "cwd",
                format!("{cwd:?} is not an absolute path; write it from the root, e.g. /srv/app"),
            ));
        }
    }
    Ok(())
}

fn validate_http(http: &HttpSpec) -> Result<(), ValidationError> {
    if !HTTP_METHODS.contains(&http.method.as_str()) {
        return Err(error(
            "method",
            format!(
                "{:?} is not accepted; accepted: {}",
                http.method,
                HTTP_METHODS.join(" ")
            ),
        ));
    }
    check_http_url(&http.url).map_err(|message| error("url", message))?;
    validate_headers(&http.headers)?;
    for (i, status) in http.expect_status.iter().enumerate() {
        if !(100..=599).contains(status) {
            return Err(error(
                format!("expect_status[{i}]"),
                format!("{status} is out of 100-599"),
            ));
        }
    }
    Ok(())
}

/// Header names are HTTP tokens; values carry no line break or NUL (field paths
/// are relative to the object holding `headers`).
pub(crate) fn validate_headers(
    headers: &std::collections::BTreeMap<String, String>,
) -> Result<(), ValidationError> {
    for (name, value) in headers {
        let is_token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !is_token {
            return Err(error(
                "headers",
                format!(
                    "{name:?} is not a valid header name (letters, digits and !#$%&'*+-.^_`|~)"
                ),
            ));
        }
        if value.contains(['\r', '\n', '\0']) {
            return Err(error(
                format!("headers.{name}"),
                "must not contain line breaks or NUL characters",
            ));
        }
    }
    Ok(())
}

/// An `http://` or `https://` URL with a host; what lies after the host is left to
/// the HTTP client.
pub fn check_http_url(url: &str) -> Result<(), String> {
    let scheme_end = url.find("://").map(|i| i + 3).unwrap_or(0);
    let scheme = url[..scheme_end].to_ascii_lowercase();
    if scheme != "http://" && scheme != "https://" {
        return Err(format!("{url:?} must start with http:// or https://"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{url:?} must not contain spaces or control characters (percent-encode them)"
        ));
    }
    let rest = &url[scheme_end..];
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        match v6.split_once(']') {
            Some((host, rest)) => (host, rest.strip_prefix(':')),
            None => return Err(format!("{url:?} has an unclosed [ in its host")),
        }
    } else {
        match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    if let Some(port) = port {
        if !port.is_empty() && !matches!(port.parse::<u16>(), Ok(p) if p > 0) {
            return Err(format!("{url:?} has port {port:?}; ports are 1-65535"));
        }
    }
    Ok(())
}

fn validate_record(record: &RecordSpec) -> Result<(), ValidationError> {
    if record.path.is_empty() {
        return Err(error("path", "must not be empty"));
    }
    no_nul("path", &record.path)
}

/// Field paths are relative to `retry`.
pub(crate) fn validate_retry(retry: &RetryPolicy) -> Result<(), ValidationError> {
    if !(1..=MAX_ATTEMPTS).contains(&retry.max_attempts) {
        return Err(error(
            "max_attempts",
            format!("{} is out of 1-{MAX_ATTEMPTS}", retry.max_attempts),
        ));
    }
    if retry.initial_delay.0.is_zero() {
        return Err(error("initial_delay", "must be more than 0s"));
    }
    if retry.max_delay < retry.initial_delay {
        return Err(error(
            "max_delay",
            format!(
                "{} is shorter than initial_delay ({})",
                retry.max_delay, retry.initial_delay
            ),
        ));
    }
    if !retry.multiplier.is_finite() || !MULTIPLIERS.contains(&retry.multiplier) {
        return Err(error(
            "multiplier",
            format!("{} is out of 1.0-10.0", retry.multiplier),
        ));
    }
    Ok(())
}

/// Checks tag names and values (of a job, or of a node): non-empty and at most
/// `MAX_TAG_CHARS` characters each.
pub fn validate_tags(
    tags: &std::collections::BTreeMap<String, String>,
) -> Result<(), ValidationError> {
    for (name, value) in tags {
        if name.is_empty() {
            return Err(error("tags", "a tag name must not be empty"));
        }
        let name_chars = name.chars().count();
        if name_chars > MAX_TAG_CHARS {
            return Err(error(
                "tags",
                format!("tag name {name:?} is {name_chars} characters long; at most {MAX_TAG_CHARS} are accepted"),
            ));
        }
        if value.is_empty() {
            return Err(error(format!("tags.{name}"), "must not be empty"));
        }
        let value_chars = value.chars().count();
        if value_chars > MAX_TAG_CHARS {
            return Err(error(
                format!("tags.{name}"),
                format!("is {value_chars} characters long; at most {MAX_TAG_CHARS} are accepted"),
            ));
        }
    }
    Ok(())
}

/// Parses a JSON job document, naming the field path on a type error
/// (e.g. `retry.max_attempts: invalid type: string "x", expected u32`).
///
/// Does not validate values: call [`JobSpec::validate`] as well.
pub fn parse_job_json(bytes: &[u8]) -> Result<JobSpec, ValidationError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| error("", format!("the document is not valid JSON: {e}")))?;
    parse_job_value(&value)
}

/// Reads a job from a JSON value: the common form of JSON, YAML and TOML job
/// files, so that every format reports the same field paths.
///
/// Does not validate values: call [`JobSpec::validate`] as well.
pub fn parse_job_value(value: &Value) -> Result<JobSpec, ValidationError> {
    if !value.is_object() {
        return Err(error(
            "",
            format!(
                "a job is an object with name, schedule and executor; got {}",
                kind_of(value)
            ),
        ));
    }
    let err = match deserialize_at::<JobSpec>(value) {
        Ok(spec) => return Ok(spec),
        Err(err) => err,
    };
    match err.field.as_str() {
        "executor" | "executor.type" => Err(explain_executor(value.get("executor"), err)),
        // chrono's own words ("input contains invalid characters") do not say what
        // a time looks like.
        "schedule.at" => Err(error(
            err.field,
            format!(
                "{}; accepted: an RFC 3339 time such as 2026-03-29T02:30:00Z",
                err.message
            ),
        )),
        _ => Err(err),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Deserializes `T`, turning serde's error into a [`ValidationError`] at its path.
pub(crate) fn deserialize_at<T: DeserializeOwned>(value: &Value) -> Result<T, ValidationError> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|err| {
        let path = err.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = plain_message(&err.inner().to_string());
        // Name a missing key itself, not the object that lacks it (an unknown key
        // is already on the path).
        let key = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned);
        match key {
            Some(key) if path.is_empty() => error(key, message),
            Some(key) => error(format!("{path}.{key}"), message),
            None => error(path, message),
        }
    })
}

/// serde names Rust types in its messages (`expected struct RetryPolicy`); users
/// wrote an object.
fn plain_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find("struct ") {
        out.push_str(&rest[..i]);
        let after = &rest[i + "struct ".len()..];
        let name_len = after
            .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .unwrap_or(after.len());
        if name_len == 0 {
            out.push_str("struct ");
        } else {
            out.push_str("an object");
        }
        rest = &after[name_len..];
    }
    out.push_str(rest);
    out
}

/// serde reads an internally tagged enum through a buffer that hides the path of
/// errors inside it; re-read the executor as its own type to find the field.
fn explain_executor(executor: Option<&Value>, original: ValidationError) -> ValidationError {
    if original.message.starts_with("unknown variant") {
        return error("executor.type", original.message);
    }
    if original.message.contains("missing field `type`") {
        return error(
            "executor.type",
            "is missing; every executor names its type, e.g. \"type\": \"shell\"",
        );
    }
    let Some(Value::Object(map)) = executor else {
        return original;
    };
    let mut fields = map.clone();
    let kind = fields.remove("type");
    let fields = Value::Object(fields);
    let found = match kind {
        Some(Value::String(kind)) => match kind.as_str() {
            "shell" => deserialize_at::<ShellSpec>(&fields).err(),
            "http" => deserialize_at::<HttpSpec>(&fields).err(),
            "record" => deserialize_at::<RecordSpec>(&fields).err(),
            "probe" => deserialize_at::<crate::ProbeSpec>(&fields).err(),
            "prow" => deserialize_at::<crate::prow::ProwSpec>(&fields).err(),
            // A type this function does not know yet: serde's own message stands.
            _ => None,
        },
        Some(other) => {
            return error(
                "executor.type",
                format!("expected a string such as \"shell\", got {other}"),
            )
        }
        None => None,
    };
    found.map_or(original, |e| e.within("executor"))
}
