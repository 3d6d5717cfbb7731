//! The dynamic, replicated settings: changed at run time for the whole cluster
//! (`PUT /v1/config/{key}`), kept in the replicated store, so that every member,
//! a restarted one and one that joins later, sees the same values.
//!
//! Each [`DynamicKey`] is declared once in [`DYNAMIC_KEYS`]: its name, what it
//! accepts and the check that turns a request's value into the stored, normalised
//! one. A value that does not pass is refused with what is accepted; nothing falls
//! back silently. A key without a dynamic value takes the node's static value
//! (flag, `ROTA_*` variable, `rota.toml`, default), where it has one.
//!
//! [`DynamicConfig`] is the typed view the scheduler, the state machine and the
//! node read.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{HumanDuration, RetryPolicy, Timestamp, ValidationError};

/// One dynamic value as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigEntry {
    pub key: String,
    /// The normalised value (see [`check_dynamic`]).
    pub value: Value,
    pub updated_at: Timestamp,
    /// The log index of the change.
    pub revision: u64,
}

/// A key that may be changed at run time.
#[derive(Debug)]
pub struct DynamicKey {
    pub name: &'static str,
    /// What the key does, for `GET /v1/config` readers and the docs.
    pub doc: &'static str,
    /// What a value may be, quoted in every refusal.
    pub accepts: &'static str,
    /// The value when neither a dynamic nor a static one is set, as JSON (`null`:
    /// no limit / none).
    pub default: fn() -> Value,
    check: fn(&Value) -> Result<Value, String>,
}

/// Bounds of `max_running` and `cluster_max_running`.
const SLOTS: std::ops::RangeInclusive<u64> = 1..=1_000_000;
/// Bounds of `default_history_limit`, as a job's `history_limit`.
const HISTORY: std::ops::RangeInclusive<u64> = 1..=10_000;
/// Bounds of `watch_retention`.
const RETENTION: std::ops::RangeInclusive<u64> = 1..=100_000_000;

/// Every dynamic key, in the order `GET /v1/config` lists them.
pub static DYNAMIC_KEYS: [DynamicKey; 8] = [
    DynamicKey {
        name: "max_running",
        doc: "most runs executing at once on each node; overrides every node's static max_running",
        accepts: "an integer 1-1000000",
        default: || Value::from(DEFAULT_MAX_RUNNING),
        check: |v| integer(v, SLOTS),
    },
    DynamicKey {
        name: "cluster_max_running",
        doc: "most runs executing at once in the whole cluster; further runs wait, by priority",
        accepts: "an integer 1-1000000 (no value: no cluster-wide limit)",
        default: || Value::Null,
        check: |v| integer(v, SLOTS),
    },
    DynamicKey {
        name: "default_retry",
        doc: "retry policy of jobs that set no retry of their own",
        accepts: "a retry policy object, e.g. {\"max_attempts\": 3, \"initial_delay\": \"1s\"} (no value: no retries)",
        default: || Value::Null,
        check: retry,
    },
    DynamicKey {
        name: "default_history_limit",
        doc: "finished executions kept per job that sets no history_limit of its own",
        accepts: "an integer 1-10000",
        default: || Value::from(DEFAULT_HISTORY_LIMIT),
        check: |v| integer(v, HISTORY),
    },
    DynamicKey {
        name: "log",
        doc: "log filter of every node: comma-separated LEVEL or TARGET=LEVEL directives",
        accepts: "directives LEVEL or TARGET=LEVEL separated by commas, LEVEL one of trace, debug, info, warn, error, off, TARGET letters, digits, '_' and '::'",
        default: || Value::from(DEFAULT_LOG),
        check: log_filter,
    },
    DynamicKey {
        name: "discovery_throttle",
        doc: "least time between two committed changes of one target set",
        accepts: "a duration 100ms-1h, e.g. \"5s\"",
        default: || duration_value(DEFAULT_DISCOVERY_THROTTLE),
        check: |v| duration(v, Duration::from_millis(100), Duration::from_secs(3600)),
    },
    DynamicKey {
        name: "watch_retention",
        doc: "events the watch log keeps at least",
        accepts: "an integer 1-100000000",
        default: || Value::from(DEFAULT_WATCH_RETENTION),
        check: |v| integer(v, RETENTION),
    },
    DynamicKey {
        name: "watch_retention_age",
        doc: "how long the watch log keeps every event, whatever their number",
        accepts: "a duration 1s-30d, e.g. \"24h\"",
        default: || duration_value(DEFAULT_WATCH_RETENTION_AGE),
        check: |v| duration(v, Duration::from_secs(1), Duration::from_secs(30 * 86_400)),
    },
];

/// A job's `history_limit` when neither it nor `default_history_limit` says.
pub const DEFAULT_HISTORY_LIMIT: u32 = 100;

// The built-in values of the keys that are also static settings: the binary's
// defaults, shown here for a key no node sets.
/// Runs executing at once on a node.
pub const DEFAULT_MAX_RUNNING: usize = 64;
/// The log filter: `info`, except openraft's own `info` lines.
pub const DEFAULT_LOG: &str = "info,openraft=warn";
/// Least time between two committed changes of one target set.
pub const DEFAULT_DISCOVERY_THROTTLE: Duration = Duration::from_secs(5);
/// Events the watch log keeps at least.
pub const DEFAULT_WATCH_RETENTION: u64 = 100_000;
/// How long the watch log keeps every event.
pub const DEFAULT_WATCH_RETENTION_AGE: Duration = Duration::from_secs(86_400);

fn duration_value(d: Duration) -> Value {
    Value::from(HumanDuration(d).to_string())
}

/// The dynamic key called `name`.
pub fn dynamic_key(name: &str) -> Option<&'static DynamicKey> {
    DYNAMIC_KEYS.iter().find(|k| k.name == name)
}

/// The stored form of `value` for `key`, or what is wrong: an unknown key (the
/// error lists the dynamic ones) or a value the key does not accept (the error
/// says what it does).
pub fn check_dynamic(key: &str, value: &Value) -> Result<Value, ValidationError> {
    let Some(k) = dynamic_key(key) else {
        let known: Vec<&str> = DYNAMIC_KEYS.iter().map(|k| k.name).collect();
        return Err(ValidationError::new(
            key,
            format!(
                "is not a dynamic setting; the dynamic settings are {}",
                known.join(", ")
            ),
        ));
    };
    (k.check)(value)
        .map_err(|problem| ValidationError::new(key, format!("{problem}; accepted: {}", k.accepts)))
}

fn integer(v: &Value, range: std::ops::RangeInclusive<u64>) -> Result<Value, String> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if range.contains(&n) => Ok(Value::from(n)),
        Some(n) => Err(format!("{n} is out of range")),
        None => Err(format!("{v} is not a whole number")),
    }
}

fn duration(v: &Value, min: Duration, max: Duration) -> Result<Value, String> {
    let Value::String(s) = v else {
        return Err(format!("{v} is not a duration string"));
    };
    let d: HumanDuration = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    if d.0 < min || d.0 > max {
        return Err(format!("{d} is out of range"));
    }
    Ok(Value::from(d.to_string()))
}

fn retry(v: &Value) -> Result<Value, String> {
    let policy: RetryPolicy =
        serde_json::from_value(v.clone()).map_err(|e| format!("not a retry policy: {e}"))?;
    crate::validate::validate_retry(&policy).map_err(|e| e.within("default_retry").to_string())?;
    serde_json::to_value(&policy).map_err(|e| e.to_string())
}

const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

fn log_filter(v: &Value) -> Result<Value, String> {
    let Value::String(s) = v else {
        return Err(format!("{v} is not a string"));
    };
    let s = s.trim();
    if s.is_empty() {
        return Err("the filter is empty".to_string());
    }
    for directive in s.split(',') {
        let directive = directive.trim();
        let (target, level) = match directive.split_once('=') {
            Some((t, l)) => (Some(t), l),
            None => (None, directive),
        };
        if let Some(target) = target {
            let ok = !target.is_empty()
                && target.split("::").all(|p| {
                    !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                });
            if !ok {
                return Err(format!("{directive:?} names the target {target:?}"));
            }
        }
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!("{directive:?} has the level {level:?}"));
        }
    }
    Ok(Value::from(s))
}

/// The dynamic values in force, typed; `None` where no dynamic value is set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DynamicConfig {
    pub max_running: Option<u32>,
    pub cluster_max_running: Option<u32>,
    pub default_retry: Option<RetryPolicy>,
    pub default_history_limit: Option<u32>,
    pub log: Option<String>,
    pub discovery_throttle: Option<Duration>,
    pub watch_retention: Option<u64>,
    pub watch_retention_age: Option<Duration>,
}

impl DynamicConfig {
    /// The typed view of stored entries. A stored value that does not read (which
    /// [`check_dynamic`] prevents) is left out rather than guessed at.
    pub fn from_entries<'a>(entries: impl IntoIterator<Item = &'a ConfigEntry>) -> Self {
        let map: BTreeMap<&str, &Value> = entries
            .into_iter()
            .map(|e| (e.key.as_str(), &e.value))
            .collect();
        let int = |k: &str| map.get(k).and_then(|v| v.as_u64());
        let dur = |k: &str| {
            map.get(k)
                .and_then(|v| v.as_str())
                .and_then(|s| s.parse::<HumanDuration>().ok())
                .map(|d| d.0)
        };
        Self {
            max_running: int("max_running").and_then(|n| u32::try_from(n).ok()),
            cluster_max_running: int("cluster_max_running").and_then(|n| u32::try_from(n).ok()),
            default_retry: map
                .get("default_retry")
                .and_then(|v| serde_json::from_value((*v).clone()).ok()),
            default_history_limit: int("default_history_limit").and_then(|n| u32::try_from(n).ok()),
            log: map.get("log").and_then(|v| v.as_str()).map(str::to_string),
            discovery_throttle: dur("discovery_throttle"),
            watch_retention: int("watch_retention"),
            watch_retention_age: dur("watch_retention_age"),
        }
    }

    /// The history limit of a job that says `own` (its `history_limit`, if any).
    pub fn history_limit(&self, own: Option<u32>) -> u32 {
        own.or(self.default_history_limit)
            .unwrap_or(DEFAULT_HISTORY_LIMIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(key: &str, v: Value) -> Value {
        check_dynamic(key, &v).unwrap_or_else(|e| panic!("{key}={v}: {e}"))
    }

    fn refused(key: &str, v: Value) -> String {
        match check_dynamic(key, &v) {
            Ok(stored) => panic!("{key}={v} was accepted as {stored}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn values_are_normalised() {
        assert_eq!(ok("max_running", json!(8)), json!(8));
        assert_eq!(ok("max_running", json!("8")), json!(8));
        assert_eq!(ok("discovery_throttle", json!("1500ms")), json!("1s500ms"));
        assert_eq!(
            ok("log", json!(" info,rota_api=debug ")),
            json!("info,rota_api=debug")
        );
        let retry = ok("default_retry", json!({"max_attempts": 3}));
        assert_eq!(retry["max_attempts"], 3);
        assert!(retry.get("initial_delay").is_some(), "{retry}");
    }

    #[test]
    fn refusals_name_the_key_and_what_is_accepted() {
        let e = refused("max_running", json!(0));
        assert!(e.contains("max_running") && e.contains("1-1000000"), "{e}");
        let e = refused("max_running", json!(-3));
        assert!(e.contains("not a whole number"), "{e}");
        let e = refused("max_running", json!(2.5));
        assert!(e.contains("not a whole number"), "{e}");
        let e = refused("discovery_throttle", json!("10ms"));
        assert!(e.contains("100ms-1h"), "{e}");
        let e = refused("discovery_throttle", json!(5));
        assert!(e.contains("duration"), "{e}");
        let e = refused("log", json!("info,rota=loud"));
        assert!(e.contains("\"loud\"") && e.contains("trace, debug"), "{e}");
        let e = refused("log", json!("a b=info"));
        assert!(e.contains("target"), "{e}");
        let e = refused("default_retry", json!({"max_attempts": 0}));
        assert!(e.contains("max_attempts"), "{e}");
        let e = refused("default_retry", json!({"tries": 3}));
        assert!(e.contains("unknown field"), "{e}");
        let e = refused("node_id", json!(3));
        assert!(
            e.contains("not a dynamic setting") && e.contains("max_running"),
            "{e}"
        );
    }

    #[test]
    fn every_default_passes_its_own_check() {
        for key in &DYNAMIC_KEYS {
            let default = (key.default)();
            if !default.is_null() {
                assert_eq!(ok(key.name, default.clone()), default, "{}", key.name);
            }
        }
    }

    #[test]
    fn the_typed_view_reads_what_was_checked() {
        let entry = |key: &str, value: Value| ConfigEntry {
            key: key.to_string(),
            value: ok(key, value),
            updated_at: Timestamp::default(),
            revision: 1,
        };
        let entries = [
            entry("max_running", json!(3)),
            entry("cluster_max_running", json!(5)),
            entry("default_retry", json!({"max_attempts": 4})),
            entry("default_history_limit", json!(7)),
            entry("log", json!("debug")),
            entry("discovery_throttle", json!("2s")),
            entry("watch_retention", json!(10)),
            entry("watch_retention_age", json!("1h")),
        ];
        let cfg = DynamicConfig::from_entries(&entries);
        assert_eq!(cfg.max_running, Some(3));
        assert_eq!(cfg.cluster_max_running, Some(5));
        assert_eq!(cfg.default_retry.as_ref().map(|r| r.max_attempts), Some(4));
        assert_eq!(cfg.history_limit(None), 7);
        assert_eq!(cfg.history_limit(Some(2)), 2);
        assert_eq!(cfg.log.as_deref(), Some("debug"));
        assert_eq!(cfg.discovery_throttle, Some(Duration::from_secs(2)));
        assert_eq!(cfg.watch_retention, Some(10));
        assert_eq!(cfg.watch_retention_age, Some(Duration::from_secs(3600)));
        assert_eq!(DynamicConfig::default().history_limit(None), 100);
    }
}
