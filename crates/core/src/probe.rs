//! Probes and fan-out results: the `probe` executor's spec ([`ProbeSpec`]) and what
//! a run over a target set found ([`RunResult`], one [`TargetResult`] per target).
//!
//! A probe asks every target of a set the same question (`GET /v1/synced`) and
//! sums the answers up as a [`ProbeStatus`]: every target answered an expected
//! status = `synced`, some = `partial`, none = `not_synced`, the deadline passed
//! before every target answered = `timeout`. A job with `targets` whose executor is
//! not a probe runs once per target, and its result says `succeeded`, `partial`,
//! `failed` or `no_targets`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::validate::{validate_headers, HTTP_METHODS};
use crate::{validate_name, ExecStatus, HumanDuration, ValidationError};

fn default_scheme() -> String {
    "http".to_string()
}
fn default_method() -> String {
    "GET".to_string()
}
fn default_expect_status() -> Vec<u16> {
    vec![200]
}
fn default_retry_delay() -> HumanDuration {
    HumanDuration::from_millis(200)
}
fn default_max_retries() -> u32 {
    5
}
fn default_deadline() -> HumanDuration {
    HumanDuration::from_secs(5)
}
fn default_min_targets() -> u32 {
    1
}
fn default_below_min() -> ProbeStatus {
    ProbeStatus::NotSynced
}

/// Most retries a probe may make per target.
pub const MAX_PROBE_RETRIES: u32 = 100;
/// Longest deadline a probe may have.
pub const MAX_PROBE_DEADLINE: Duration = Duration::from_secs(3600);

/// The `probe` executor: one request per target of a set, summed up as a
/// [`ProbeStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSpec {
    /// The target set asked (a set name).
    pub targets: String,
    /// Path (and query) asked of every target, starting with `/`.
    pub path: String,
    /// `http` or `https`.
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// HTTP method, `GET` when absent.
    #[serde(default = "default_method")]
    pub method: String,
    /// Headers sent with every request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Headers whose values are taken from the request that asked for the check
    /// (`GET /v1/jobs/{name}/check`) and passed on to every target.
    #[serde(default)]
    pub forward_headers: Vec<String>,
    /// Statuses that mean the target answered "synced"; `[200]` when absent.
    #[serde(default = "default_expect_status")]
    pub expect_status: Vec<u16>,
    /// Statuses asked again after `retry_delay` (e.g. 401 while credentials
    /// propagate), at most `max_retries` times and never past `deadline`.
    #[serde(default)]
    pub retry_on: Vec<u16>,
    /// Wait before asking a target again.
    #[serde(default = "default_retry_delay")]
    pub retry_delay: HumanDuration,
    /// Requests per target beyond the first, at most.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Bound of the whole probe; targets still pending then make it `timeout`.
    #[serde(default = "default_deadline")]
    pub deadline: HumanDuration,
    /// With fewer targets than this, nothing is asked and the result is `below_min`.
    #[serde(default = "default_min_targets")]
    pub min_targets: u32,
    /// The result when the set has fewer than `min_targets` targets.
    #[serde(default = "default_below_min")]
    pub below_min: ProbeStatus,
}

/// What a probe found, summed over its targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeStatus {
    /// Every target answered an expected status.
    Synced,
    /// Some did.
    Partial,
    /// None did.
    NotSynced,
    /// The deadline passed before every target had answered.
    Timeout,
}

impl ProbeStatus {
    pub fn as_str(self) -> &'static str {
        ResultStatus::from(self).as_str()
    }
}

/// The summary of a run over a target set: the four probe statuses, and for the
/// fan-out of other executors `succeeded`, `partial`, `failed` or `no_targets`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultStatus {
    /// Probe: every target answered an expected status.
    Synced,
    /// Some targets answered or succeeded, not all.
    Partial,
    /// Probe: no target answered an expected status.
    NotSynced,
    /// Probe: the deadline passed before every target had answered.
    Timeout,
    /// Fan-out: every target's run succeeded.
    Succeeded,
    /// Fan-out: no target's run succeeded.
    Failed,
    /// Fan-out: the set had no targets, so nothing ran (the run fails).
    NoTargets,
}

impl ResultStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ResultStatus::Synced => "synced",
            ResultStatus::Partial => "partial",
            ResultStatus::NotSynced => "not_synced",
            ResultStatus::Timeout => "timeout",
            ResultStatus::Succeeded => "succeeded",
            ResultStatus::Failed => "failed",
            ResultStatus::NoTargets => "no_targets",
        }
    }
}

impl From<ProbeStatus> for ResultStatus {
    fn from(status: ProbeStatus) -> Self {
        match status {
            ProbeStatus::Synced => ResultStatus::Synced,
            ProbeStatus::Partial => ResultStatus::Partial,
            ProbeStatus::NotSynced => ResultStatus::NotSynced,
            ProbeStatus::Timeout => ResultStatus::Timeout,
        }
    }
}

/// An execution's `result`: its summary and what happened at each target, in the
/// order of the set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunResult {
    pub status: ResultStatus,
    pub targets: Vec<TargetResult>,
}

/// What one target of a run answered or did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetResult {
    /// The target's address.
    pub address: String,
    /// The last HTTP status it answered, or its process's exit code; `null` when
    /// there was none (no answer, killed process).
    pub code: Option<i64>,
    /// `succeeded` when it answered as expected (or its run succeeded); `failed`,
    /// `timed_out`, `cancelled`, or `skipped` when it was not asked.
    pub status: ExecStatus,
    /// Requests sent (a probe's retries count), or runs started (0 or 1).
    pub attempts: u32,
    /// From its first request (or start) to its last answer (or end).
    pub duration_ms: u64,
    /// Why it did not succeed.
    pub error: Option<String>,
}

impl ProbeSpec {
    /// Checks every field; field paths are relative to the executor.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_name("targets", &self.targets)?;
        if !self.path.starts_with('/') {
            return Err(error(
                "path",
                format!("{:?} must start with /, e.g. /v1/synced", self.path),
            ));
        }
        if self
            .path
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(error(
                "path",
                format!(
                    "{:?} must not contain spaces or control characters (percent-encode them)",
                    self.path
                ),
            ));
        }
        if self.scheme != "http" && self.scheme != "https" {
            return Err(error(
                "scheme",
                format!("{:?} is not accepted; accepted: http, https", self.scheme),
            ));
        }
        if !HTTP_METHODS.contains(&self.method.as_str()) {
            return Err(error(
                "method",
                format!(
                    "{:?} is not accepted; accepted: {}",
                    self.method,
                    HTTP_METHODS.join(" ")
                ),
            ));
        }
        validate_headers(&self.headers)?;
        for (i, name) in self.forward_headers.iter().enumerate() {
            let one = BTreeMap::from([(name.clone(), String::new())]);
            validate_headers(&one)
                .map_err(|e| error(format!("forward_headers[{i}]"), e.message))?;
        }
        if self.expect_status.is_empty() {
            return Err(error(
                "expect_status",
                "must list at least one status, e.g. [200]",
            ));
        }
        check_statuses("expect_status", &self.expect_status)?;
        check_statuses("retry_on", &self.retry_on)?;
        if let Some((i, status)) = self
            .retry_on
            .iter()
            .enumerate()
            .find(|(_, s)| self.expect_status.contains(s))
        {
            return Err(error(
                format!("retry_on[{i}]"),
                format!(
                    "{status} is also in expect_status; a status is either expected or retried"
                ),
            ));
        }
        if self.max_retries > MAX_PROBE_RETRIES {
            return Err(error(
                "max_retries",
                format!("{} is out of 0-{MAX_PROBE_RETRIES}", self.max_retries),
            ));
        }
        if self.deadline.0.is_zero() {
            return Err(error("deadline", "must be more than 0s"));
        }
        if self.deadline.0 > MAX_PROBE_DEADLINE {
            return Err(error(
                "deadline",
                format!("{} is longer than the maximum, 1h", self.deadline),
            ));
        }
        Ok(())
    }
}

fn error(field: impl Into<String>, message: impl Into<String>) -> ValidationError {
    ValidationError::new(field, message)
}

fn check_statuses(field: &str, statuses: &[u16]) -> Result<(), ValidationError> {
    for (i, status) in statuses.iter().enumerate() {
        if !(100..=599).contains(status) {
            return Err(ValidationError::new(
                format!("{field}[{i}]"),
                format!("{status} is out of 100-599"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(doc: serde_json::Value) -> ProbeSpec {
        serde_json::from_value(doc).unwrap()
    }

    #[test]
    fn the_design_example_reads_and_round_trips() {
        let doc = json!({"targets": "gw", "path": "/v1/synced", "scheme": "http",
            "method": "GET", "headers": {}, "forward_headers": ["Authorization"],
            "expect_status": [200], "retry_on": [401], "retry_delay": "200ms",
            "max_retries": 5, "deadline": "5s", "min_targets": 2, "below_min": "synced"});
        let probe = spec(doc.clone());
        probe.validate().unwrap();
        assert_eq!(probe.below_min, ProbeStatus::Synced);
        assert_eq!(probe.min_targets, 2);
        assert_eq!(serde_json::to_value(&probe).unwrap(), doc);
    }

    #[test]
    fn defaults() {
        let probe = spec(json!({"targets": "gw", "path": "/"}));
        probe.validate().unwrap();
        assert_eq!(probe.scheme, "http");
        assert_eq!(probe.method, "GET");
        assert_eq!(probe.expect_status, vec![200]);
        assert!(probe.retry_on.is_empty());
        assert_eq!(probe.retry_delay, HumanDuration::from_millis(200));
        assert_eq!(probe.max_retries, 5);
        assert_eq!(probe.deadline, HumanDuration::from_secs(5));
        assert_eq!(probe.min_targets, 1);
        assert_eq!(probe.below_min, ProbeStatus::NotSynced);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_value::<ProbeSpec>(
            json!({"targets": "gw", "path": "/", "timeout": "1s"}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `timeout`"), "{err}");
    }

    #[test]
    fn each_rule_names_its_field() {
        let base = json!({"targets": "gw", "path": "/v1/synced", "retry_on": [401]});
        for (key, value, field) in [
            ("targets", json!("Gw"), "targets"),
            ("path", json!("v1/synced"), "path"),
            ("path", json!("/a b"), "path"),
            ("scheme", json!("ftp"), "scheme"),
            ("method", json!("get"), "method"),
            ("headers", json!({"bad name": "x"}), "headers"),
            ("headers", json!({"X-A": "a\nb"}), "headers.X-A"),
            (
                "forward_headers",
                json!(["Authorization", "a:b"]),
                "forward_headers[1]",
            ),
            ("expect_status", json!([]), "expect_status"),
            ("expect_status", json!([200, 600]), "expect_status[1]"),
            ("retry_on", json!([99]), "retry_on[0]"),
            ("retry_on", json!([401, 200]), "retry_on[1]"),
            ("max_retries", json!(101), "max_retries"),
            ("deadline", json!("0s"), "deadline"),
            ("deadline", json!("2h"), "deadline"),
        ] {
            let mut doc = base.clone();
            doc[key] = value;
            let err = spec(doc).validate().unwrap_err();
            assert_eq!(err.field, field, "{key}: {err}");
        }
    }

    #[test]
    fn results_serialize_absent_code_and_error_as_null() {
        let result = RunResult {
            status: ResultStatus::Timeout,
            targets: vec![TargetResult {
                address: "10.0.0.3:8080".into(),
                code: None,
                status: ExecStatus::TimedOut,
                attempts: 2,
                duration_ms: 5000,
                error: None,
            }],
        };
        let value = serde_json::to_value(&result).unwrap();
        assert_eq!(
            value,
            json!({"status": "timeout", "targets": [{"address": "10.0.0.3:8080",
                "code": null, "status": "timed_out", "attempts": 2, "duration_ms": 5000,
                "error": null}]})
        );
        assert_eq!(serde_json::from_value::<RunResult>(value).unwrap(), result);
        for (status, text) in [
            (ResultStatus::NotSynced, "not_synced"),
            (ResultStatus::NoTargets, "no_targets"),
        ] {
            assert_eq!(serde_json::to_value(status).unwrap(), json!(text));
            assert_eq!(status.as_str(), text);
        }
    }
}
