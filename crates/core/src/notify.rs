//! Notifications: webhooks that receive a JSON payload when runs start or finish.
//!
//! A job's own targets are its [`NotifySpec`]s (`"notify": [...]` in the job);
//! global targets are [`WebhookSpec`]s, a replicated resource of their own
//! (`PUT /v1/webhooks/{name}`). The leader's notifier reads the persisted event
//! log after a replicated cursor and records each final outcome as a [`Delivery`]
//! (`Command::RecordDeliveries`), so the delivery log reads the same on every node
//! and a new leader resumes where the last one stopped. What is fixed here (the
//! attempts, the backoff, the per-request timeout) is the policy every node uses.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::validate::{check_http_url, deserialize_at, validate_headers};
use crate::{validate_name, HumanDuration, RetryPolicy, Timestamp, ValidationError};

/// Most `notify` entries of one job.
pub const MAX_NOTIFY_TARGETS: usize = 16;
/// Most jobs a webhook may name.
pub const MAX_WEBHOOK_JOBS: usize = 1000;
/// Longest error text kept in a delivery record.
pub const MAX_DELIVERY_ERROR_CHARS: usize = 300;
/// Attempts per delivery, the first included.
pub const DELIVERY_ATTEMPTS: u32 = 5;
/// Longest one request (connect, send, answer) may take.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// The header that carries a delivery's stable id (the same on every repeat).
pub const DELIVERY_ID_HEADER: &str = "Rota-Delivery-Id";

/// The backoff between attempts of one delivery: 1 s, 2 s, 4 s, 8 s (each with
/// equal jitter, between half and all of it), capped at 30 s.
pub fn delivery_backoff() -> RetryPolicy {
    RetryPolicy {
        max_attempts: DELIVERY_ATTEMPTS,
        initial_delay: HumanDuration::from_secs(1),
        max_delay: HumanDuration::from_secs(30),
        multiplier: 2.0,
        jitter: true,
    }
}

/// Which execution events a target receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyOn {
    /// `execution.started`: an attempt began running.
    Started,
    /// `execution.finished`: the execution ended for good (retries are not finishes).
    Finished,
}

impl NotifyOn {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyOn::Started => "started",
            NotifyOn::Finished => "finished",
        }
    }

    /// The target kind of a public event type, if it is one a webhook can receive.
    pub fn of_event_type(event_type: &str) -> Option<NotifyOn> {
        match event_type {
            crate::event::types::EXECUTION_STARTED => Some(NotifyOn::Started),
            crate::event::types::EXECUTION_FINISHED => Some(NotifyOn::Finished),
            _ => None,
        }
    }
}

fn default_on() -> Vec<NotifyOn> {
    vec![NotifyOn::Finished]
}

/// One entry of a job's `notify` list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySpec {
    /// `http://` or `https://` URL the payload is POSTed to.
    pub url: String,
    /// The events it receives; `["finished"]` when absent.
    #[serde(default = "default_on")]
    pub on: Vec<NotifyOn>,
    /// Extra request headers (e.g. `Authorization`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// A global webhook (`PUT /v1/webhooks/{name}`): every matching job's runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    /// `http://` or `https://` URL the payload is POSTed to.
    pub url: String,
    /// The events it receives; `["finished"]` when absent.
    #[serde(default = "default_on")]
    pub on: Vec<NotifyOn>,
    /// The jobs whose runs it receives; every job's when empty or absent.
    #[serde(default)]
    pub jobs: Vec<String>,
    /// Extra request headers (e.g. `Authorization`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl WebhookSpec {
    /// Whether this webhook receives `kind` events of `job`.
    pub fn matches(&self, job: &str, kind: NotifyOn) -> bool {
        self.on.contains(&kind) && (self.jobs.is_empty() || self.jobs.iter().any(|j| j == job))
    }

    /// Checks every field (paths relative to the document).
    pub fn validate(&self) -> Result<(), ValidationError> {
        check_target(&self.url, &self.on, &self.headers)?;
        if self.jobs.len() > MAX_WEBHOOK_JOBS {
            return Err(ValidationError::new(
                "jobs",
                format!(
                    "names {} jobs; at most {MAX_WEBHOOK_JOBS} are accepted (leave it out for every job)",
                    self.jobs.len()
                ),
            ));
        }
        for (i, job) in self.jobs.iter().enumerate() {
            validate_name(&format!("jobs[{i}]"), job)?;
        }
        Ok(())
    }
}

/// Reads a webhook document (`{"url", "on", "jobs", "headers"}`), naming the field
/// whose type or name is wrong. Does not validate values: call
/// [`WebhookSpec::validate`] as well.
pub fn parse_webhook_json(bytes: &[u8]) -> Result<WebhookSpec, ValidationError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ValidationError::new("", format!("the document is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ValidationError::new(
            "",
            "a webhook is an object such as {\"url\": \"https://...\", \"on\": [\"finished\"]}",
        ));
    }
    deserialize_at(&value)
}

/// A webhook as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookRecord {
    pub name: String,
    #[serde(flatten)]
    pub spec: WebhookSpec,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Log index of the last change.
    pub revision: u64,
}

/// Checks a job's `notify` list (paths relative to the job: `notify[0].url`).
pub fn validate_notify(entries: &[NotifySpec]) -> Result<(), ValidationError> {
    if entries.len() > MAX_NOTIFY_TARGETS {
        return Err(ValidationError::new(
            "notify",
            format!(
                "has {} entries; at most {MAX_NOTIFY_TARGETS} are accepted (use a webhook for more)",
                entries.len()
            ),
        ));
    }
    for (i, entry) in entries.iter().enumerate() {
        check_target(&entry.url, &entry.on, &entry.headers)
            .map_err(|e| e.within(&format!("notify[{i}]")))?;
    }
    Ok(())
}

fn check_target(
    url: &str,
    on: &[NotifyOn],
    headers: &BTreeMap<String, String>,
) -> Result<(), ValidationError> {
    check_http_url(url).map_err(|message| ValidationError::new("url", message))?;
    if on.is_empty() {
        return Err(ValidationError::new(
            "on",
            "must name at least one of: started, finished (or be left out for [\"finished\"])",
        ));
    }
    validate_headers(headers)?;
    for name in headers.keys() {
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("rota-")
            || ["content-type", "content-length", "host"].contains(&lower.as_str())
        {
            return Err(ValidationError::new(
                format!("headers.{name}"),
                "is set by rota itself; accepted: any other header, such as Authorization",
            ));
        }
    }
    Ok(())
}

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// The receiver answered 2xx.
    Delivered,
    /// A 4xx other than 429, or every attempt failed.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }
}

/// The final outcome of sending one event to one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// Stable across repeats: see [`delivery_id`].
    pub id: String,
    /// `notify[N]` (the job's own entry N) or a webhook's name.
    pub target: String,
    pub url: String,
    pub event_revision: u64,
    pub event_type: String,
    pub job: String,
    pub execution: Ulid,
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// The last answer's status, if any came.
    pub code: Option<u16>,
    /// Why the last attempt failed (cut to [`MAX_DELIVERY_ERROR_CHARS`]).
    pub error: Option<String>,
    pub first_attempt_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
}

/// The target name of a job's own `notify` entry `index`.
pub fn job_target(index: usize) -> String {
    format!("notify[{index}]")
}

/// The id of the delivery of `kind` of attempt `attempt` of `execution`, published
/// at `revision`, to `target`: `{revision}-{execution}-{attempt}-{kind}-{target}`.
/// A repeat of the same delivery (after a leader change) has the same id.
pub fn delivery_id(
    revision: u64,
    execution: Ulid,
    attempt: u32,
    kind: NotifyOn,
    target: &str,
) -> String {
    format!(
        "{revision}-{execution}-{attempt}-{}-{target}",
        kind.as_str()
    )
}

/// The event revision a delivery id starts with.
pub fn delivery_id_revision(id: &str) -> Option<u64> {
    id.split('-').next()?.parse().ok()
}

/// `text` cut to [`MAX_DELIVERY_ERROR_CHARS`] characters, marked when cut.
pub fn truncate_error(text: &str) -> String {
    if text.chars().count() <= MAX_DELIVERY_ERROR_CHARS {
        return text.to_string();
    }
    let mut out: String = text.chars().take(MAX_DELIVERY_ERROR_CHARS - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests;
