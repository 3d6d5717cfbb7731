//! Public events: what the watch API streams, what event triggers match, and what
//! the event log keeps.
//!
//! Every applied change that users can observe becomes one or more [`Event`]s whose
//! `revision` is the log index of the entry that made it (several events may share
//! one). Internal bookkeeping (heartbeats, node registration, fires that change
//! nothing visible) is not published. External events come in through
//! `POST /v1/events` (`Command::PublishEvent`) under their own type.

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// The public types rota itself publishes. External events use any other type that
/// is a valid [`check_event_type`].
pub mod types {
    pub const JOB_CREATED: &str = "job.created";
    pub const JOB_UPDATED: &str = "job.updated";
    pub const JOB_DELETED: &str = "job.deleted";
    pub const JOB_PAUSED: &str = "job.paused";
    pub const JOB_RESUMED: &str = "job.resumed";
    pub const EXECUTION_QUEUED: &str = "execution.queued";
    pub const EXECUTION_STARTED: &str = "execution.started";
    pub const EXECUTION_FINISHED: &str = "execution.finished";
    pub const KV_PUT: &str = "kv.put";
    pub const KV_DELETED: &str = "kv.deleted";
    pub const CONFIG_CHANGED: &str = "config.changed";
    pub const MEMBER_JOINED: &str = "member.joined";
    pub const MEMBER_LEFT: &str = "member.left";
    pub const WORKFLOW_RUN_STARTED: &str = "workflow_run.started";
    pub const WORKFLOW_RUN_FINISHED: &str = "workflow_run.finished";
    pub const WORKFLOW_CREATED: &str = "workflow.created";
    pub const WORKFLOW_UPDATED: &str = "workflow.updated";
    pub const WORKFLOW_DELETED: &str = "workflow.deleted";
    pub const TARGETS_CREATED: &str = "targets.created";
    pub const TARGETS_UPDATED: &str = "targets.updated";
    pub const TARGETS_DELETED: &str = "targets.deleted";
    /// Discovery committed a change of a set's targets (or of its error).
    pub const TARGETS_DISCOVERED: &str = "targets.discovered";
    pub const SINK_CREATED: &str = "sink.created";
    pub const SINK_UPDATED: &str = "sink.updated";
    pub const SINK_DELETED: &str = "sink.deleted";
    pub const TOKEN_CREATED: &str = "token.created";
    pub const TOKEN_REVOKED: &str = "token.revoked";

    /// Every type rota publishes itself; an external event may not use one.
    pub const BUILT_IN: [&str; 27] = [
        JOB_CREATED,
        JOB_UPDATED,
        JOB_DELETED,
        JOB_PAUSED,
        JOB_RESUMED,
        EXECUTION_QUEUED,
        EXECUTION_STARTED,
        EXECUTION_FINISHED,
        KV_PUT,
        KV_DELETED,
        CONFIG_CHANGED,
        MEMBER_JOINED,
        MEMBER_LEFT,
        WORKFLOW_RUN_STARTED,
        WORKFLOW_RUN_FINISHED,
        WORKFLOW_CREATED,
        WORKFLOW_UPDATED,
        WORKFLOW_DELETED,
        TARGETS_CREATED,
        TARGETS_UPDATED,
        TARGETS_DELETED,
        TARGETS_DISCOVERED,
        SINK_CREATED,
        SINK_UPDATED,
        SINK_DELETED,
        TOKEN_CREATED,
        TOKEN_REVOKED,
    ];
}

/// One public event: `{"revision", "type", "key", "at", "data"}`, plus `seq` when
/// it is not the first event of its entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The log index of the entry that produced it.
    pub revision: u64,
    /// Its place among the events of its entry (from 0): one entry may publish
    /// several (a batch of runs that ended together), and `(revision, seq)` tells
    /// them apart.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seq: u32,
    #[serde(rename = "type")]
    pub event_type: String,
    /// What it is about: a job name, an execution id, a KV key, ... (`prefix`
    /// filters match it).
    pub key: String,
    /// The proposer's clock of the entry (`ClientRequest.at`).
    pub at: Timestamp,
    pub data: serde_json::Value,
}

pub(crate) fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Event {
    /// Where it stands in the event log: events are ordered by this.
    pub fn position(&self) -> (u64, u32) {
        (self.revision, self.seq)
    }
}

/// Longest event type accepted.
pub const MAX_EVENT_TYPE_BYTES: usize = 128;

/// An event type is dot-separated words of `[a-z0-9_-]`, e.g. `deploy.finished`.
pub fn check_event_type(t: &str) -> Result<(), String> {
    let expected = "expected dot-separated words of a-z, 0-9, _ and -, e.g. deploy.finished";
    if t.is_empty() {
        return Err(format!("must not be empty; {expected}"));
    }
    if t.len() > MAX_EVENT_TYPE_BYTES {
        return Err(format!(
            "is {} bytes long; at most {MAX_EVENT_TYPE_BYTES} are accepted",
            t.len()
        ));
    }
    let word_ok = |w: &str| {
        !w.is_empty()
            && w.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    };
    if !t.split('.').all(word_ok) {
        return Err(format!("{t:?} is not an event type; {expected}"));
    }
    Ok(())
}

/// A `type` filter of the watch API: a comma list of types, each exact or ending in
/// `*` (a prefix: `execution.*`). Empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeFilter {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl TypeFilter {
    /// Parses `execution.*,kv.put`; an empty string matches every type.
    pub fn parse(list: &str) -> Result<TypeFilter, String> {
        let mut filter = TypeFilter::default();
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.strip_suffix('*') {
                Some(prefix) => {
                    if prefix.contains('*') {
                        return Err(format!(
                            "{part:?}: `*` may only end a type, e.g. execution.*"
                        ));
                    }
                    filter.prefixes.push(prefix.to_string());
                }
                None => {
                    check_event_type(part).map_err(|m| format!("{part:?}: {m}"))?;
                    filter.exact.push(part.to_string());
                }
            }
        }
        Ok(filter)
    }

    /// Whether every type matches.
    pub fn is_any(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }

    pub fn matches(&self, event_type: &str) -> bool {
        self.is_any()
            || self.exact.iter().any(|t| t == event_type)
            || self
                .prefixes
                .iter()
                .any(|p| event_type.starts_with(p.as_str()))
    }

    /// The exact types listed (for indexing watchers by type).
    pub fn exact_types(&self) -> &[String] {
        &self.exact
    }

    /// The prefixes listed (`execution.` for `execution.*`).
    pub fn prefixes(&self) -> &[String] {
        &self.prefixes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_are_dotted_words() {
        assert!(check_event_type("deploy.finished").is_ok());
        assert!(check_event_type("a-b_c.d1").is_ok());
        for bad in ["", "Deploy", "a..b", ".a", "a.", "a b", "a/b"] {
            assert!(check_event_type(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_event_type(&"a".repeat(MAX_EVENT_TYPE_BYTES + 1)).is_err());
    }

    #[test]
    fn type_filters_take_a_comma_list_and_trailing_stars() {
        let f = TypeFilter::parse("execution.*, kv.put").unwrap();
        assert!(f.matches("execution.finished"));
        assert!(f.matches("kv.put"));
        assert!(!f.matches("kv.deleted"));
        assert!(!f.matches("job.created"));
        assert!(TypeFilter::parse("").unwrap().matches("anything.at-all"));
        assert!(TypeFilter::parse("*").unwrap().matches("job.created"));
        assert!(TypeFilter::parse("a*b").is_err());
        assert!(TypeFilter::parse("Job").is_err());
    }
}
