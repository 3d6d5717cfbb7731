//! Event triggers (`"schedule": {"on": {"event": TYPE, ...filters}}`): which filters
//! an event type takes, their checks, and whether an event matches.
//!
//! A filter is equality on a field of the event's `data`. The events rota
//! publishes about executions (`execution.queued|started|finished`) take their
//! fields directly (`"job": "build", "status": "succeeded"`); every event, built-in
//! or external, takes `"data": {"field": value, ...}`. An event matches when every
//! listed field is present in its `data` with an equal JSON value.

use serde_json::Value;

use crate::event::{check_event_type, types, Event};
use crate::{validate_name, EventTrigger, ExecStatus, Trigger, ValidationError};

/// The filter that every event type takes: equality on the listed `data` fields.
pub const DATA_FILTER: &str = "data";

/// The fields of `execution.*` events that a trigger may name directly.
pub const EXECUTION_FILTERS: [&str; 4] = ["job", "status", "trigger", "node"];

const STATUSES: [ExecStatus; 8] = [
    ExecStatus::Queued,
    ExecStatus::Running,
    ExecStatus::Succeeded,
    ExecStatus::Failed,
    ExecStatus::TimedOut,
    ExecStatus::Cancelled,
    ExecStatus::Skipped,
    ExecStatus::Lost,
];

const TRIGGERS: [Trigger; 6] = [
    Trigger::Schedule,
    Trigger::Manual,
    Trigger::Retry,
    Trigger::Event,
    Trigger::Catchup,
    Trigger::Workflow,
];

fn is_execution_event(event_type: &str) -> bool {
    matches!(
        event_type,
        types::EXECUTION_QUEUED | types::EXECUTION_STARTED | types::EXECUTION_FINISHED
    )
}

/// The filter keys `event_type` accepts.
pub fn accepted_filters(event_type: &str) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if is_execution_event(event_type) {
        keys.extend(EXECUTION_FILTERS);
    }
    keys.push(DATA_FILTER);
    keys
}

/// Checks a trigger of job `job`; field paths are relative to `schedule.on`.
pub fn validate_trigger(job: &str, trigger: &EventTrigger) -> Result<(), ValidationError> {
    check_event_type(&trigger.event).map_err(|m| ValidationError::new("event", m))?;
    let accepted = accepted_filters(&trigger.event);
    for (key, value) in &trigger.filters {
        if !accepted.contains(&key.as_str()) {
            return Err(ValidationError::new(
                key.as_str(),
                format!(
                    "is not a filter of {} events; accepted: {}",
                    trigger.event,
                    accepted.join(", ")
                ),
            ));
        }
        check_filter(job, key, value)?;
    }
    Ok(())
}

fn check_filter(job: &str, key: &str, value: &Value) -> Result<(), ValidationError> {
    let text = |what: &str| {
        value.as_str().ok_or_else(|| {
            ValidationError::new(key, format!("expected a string ({what}), got {value}"))
        })
    };
    match key {
        "job" => {
            let name = text("a job name")?;
            validate_name("", name).map_err(|e| ValidationError::new(key, e.message))?;
            if name == job {
                return Err(ValidationError::new(
                    key,
                    format!("{name:?} is this job itself; a job may not trigger on its own runs"),
                ));
            }
        }
        "status" => {
            let accepted: Vec<&str> = STATUSES.iter().map(|s| s.as_str()).collect();
            let status = text("an execution status")?;
            if !accepted.contains(&status) {
                return Err(ValidationError::new(
                    key,
                    format!(
                        "{status:?} is not an execution status; accepted: {}",
                        accepted.join(", ")
                    ),
                ));
            }
        }
        "trigger" => {
            let accepted: Vec<&str> = TRIGGERS.iter().map(|t| t.as_str()).collect();
            let trigger = text("an execution trigger")?;
            if !accepted.contains(&trigger) {
                return Err(ValidationError::new(
                    key,
                    format!(
                        "{trigger:?} is not an execution trigger; accepted: {}",
                        accepted.join(", ")
                    ),
                ));
            }
        }
        "node" => {
            text("a node name")?;
        }
        DATA_FILTER => {
            let Value::Object(fields) = value else {
                return Err(ValidationError::new(
                    key,
                    format!("expected an object of field names and the values they must equal, e.g. {{\"env\": \"prod\"}}; got {value}"),
                ));
            };
            if fields.is_empty() {
                return Err(ValidationError::new(
                    key,
                    "must list at least one field; leave `data` out to match every event of the type",
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

impl EventTrigger {
    /// Whether `event` is of the trigger's type and every filter holds.
    pub fn matches(&self, event: &Event) -> bool {
        event.event_type == self.event
            && self.filters.iter().all(|(key, want)| {
                if key == DATA_FILTER {
                    match want {
                        Value::Object(fields) => fields
                            .iter()
                            .all(|(field, want)| event.data.get(field) == Some(want)),
                        _ => false,
                    }
                } else {
                    event.data.get(key) == Some(want)
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn trigger(doc: Value) -> EventTrigger {
        serde_json::from_value(doc).unwrap()
    }

    fn event(event_type: &str, data: Value) -> Event {
        Event {
            revision: 7,
            seq: 0,
            event_type: event_type.to_string(),
            key: event_type.to_string(),
            at: chrono::DateTime::UNIX_EPOCH,
            data,
        }
    }

    #[test]
    fn execution_filters_match_data_fields() {
        let t =
            trigger(json!({"event": "execution.finished", "job": "build", "status": "succeeded"}));
        validate_trigger("deploy", &t).unwrap();
        let ok = json!({"job": "build", "status": "succeeded", "attempt": 1});
        assert!(t.matches(&event("execution.finished", ok.clone())));
        assert!(!t.matches(&event("execution.started", ok)));
        assert!(!t.matches(&event(
            "execution.finished",
            json!({"job": "build", "status": "failed"})
        )));
        assert!(!t.matches(&event("execution.finished", json!({"job": "build"}))));
    }

    #[test]
    fn data_filters_match_listed_fields_only() {
        let t = trigger(json!({"event": "deploy.finished", "data": {"env": "prod"}}));
        validate_trigger("smoke", &t).unwrap();
        assert!(t.matches(&event(
            "deploy.finished",
            json!({"env": "prod", "version": "1.2"})
        )));
        assert!(!t.matches(&event("deploy.finished", json!({"env": "staging"}))));
        assert!(!t.matches(&event("deploy.finished", json!(null))));
        let any = trigger(json!({"event": "deploy.finished"}));
        assert!(any.matches(&event("deploy.finished", json!(null))));
    }

    #[test]
    fn bad_filters_name_their_field() {
        let err = |doc: Value| validate_trigger("self", &trigger(doc)).unwrap_err();
        let e = err(json!({"event": "deploy.finished", "env": "prod"}));
        assert_eq!(e.field, "env");
        assert!(e.message.contains("accepted: data"), "{e}");
        let e = err(json!({"event": "execution.finished", "status": "done"}));
        assert_eq!(e.field, "status");
        assert!(e.message.contains("succeeded"), "{e}");
        let e = err(json!({"event": "execution.finished", "job": "Build"}));
        assert_eq!(e.field, "job");
        let e = err(json!({"event": "execution.finished", "job": "self"}));
        assert!(e.message.contains("its own runs"), "{e}");
        let e = err(json!({"event": "Deploy"}));
        assert_eq!(e.field, "event");
        let e = err(json!({"event": "deploy.finished", "data": ["env"]}));
        assert_eq!(e.field, "data");
        let e = err(json!({"event": "execution.finished", "trigger": "cron"}));
        assert_eq!(e.field, "trigger");
    }
}
