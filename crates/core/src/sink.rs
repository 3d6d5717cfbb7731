//! Sinks: where jobs send what they measure (prow builds, probe results,
//! executions) as time series points.
//!
//! A sink is a replicated resource (`PUT /v1/sinks/{name}`) whose document is a
//! [`SinkSpec`], selected by `type`. The only type today is `influxdb`
//! ([`InfluxDbSpec`]), written either in its 1.x form (`url`, `database`, and
//! optionally `username` and `password`) or its 2.x form (`url`, `org`, `bucket`,
//! `token`), plus the batching settings both share. [`parse_sink_json`] names the
//! field whose type or name is wrong; [`SinkSpec::validate`] checks the values.

use serde::{Deserialize, Serialize};

use crate::validate::{check_http_url, deserialize_at};
use crate::{HumanDuration, ValidationError};

/// Accepted `batch_size` values.
pub const BATCH_SIZES: std::ops::RangeInclusive<u32> = 1..=100_000;
/// Most points a sink may buffer.
pub const MAX_BUFFER_POINTS: u32 = 10_000_000;
/// Longest accepted `flush_interval`.
pub const MAX_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);
/// Longest accepted `timeout`.
pub const MAX_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

const FORMS: &str = "accepted: {\"type\": \"influxdb\", \"url\", \"database\", \"username\"?, \"password\"?} (InfluxDB 1.x) or {\"type\": \"influxdb\", \"url\", \"org\", \"bucket\", \"token\"} (InfluxDB 2.x)";

/// A sink document. Selected by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SinkSpec {
    /// An InfluxDB server, 1.x or 2.x, written to in line protocol.
    #[serde(rename = "influxdb")]
    InfluxDb(InfluxDbSpec),
}

impl SinkSpec {
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkSpec::InfluxDb(_) => "influxdb",
        }
    }

    /// Checks every field (paths relative to the document).
    pub fn validate(&self) -> Result<(), ValidationError> {
        match self {
            SinkSpec::InfluxDb(spec) => spec.validate(),
        }
    }

    /// The batching settings every sink type shares.
    pub fn batching(&self) -> Batching {
        match self {
            SinkSpec::InfluxDb(spec) => Batching {
                batch_size: spec.batch_size,
                flush_interval: spec.flush_interval,
                buffer_points: spec.buffer_points,
                timeout: spec.timeout,
            },
        }
    }
}

fn default_batch_size() -> u32 {
    500
}
fn default_flush_interval() -> HumanDuration {
    HumanDuration::from_secs(1)
}
fn default_buffer_points() -> u32 {
    10_000
}
fn default_timeout() -> HumanDuration {
    HumanDuration::from_secs(5)
}

/// `{"type": "influxdb", ...}`: the 1.x form or the 2.x form (see
/// [`InfluxDbSpec::api`]), never a mix of both. Its `Debug` hides the password
/// and the token.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluxDbSpec {
    /// The server's base URL, `http://` or `https://` (e.g.
    /// `http://influxdb:8086`); `/write` or `/api/v2/write` is appended.
    pub url: String,
    /// 1.x: the database written to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// 1.x: user for basic authentication; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// 1.x: password of `username`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// 2.x: the organization (name or id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// 2.x: the bucket written to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// 2.x: an API token with write access to `bucket`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Most points per write request, 1-100000.
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// Longest a point waits in the buffer before it is written in a batch that is
    /// not full.
    #[serde(default = "default_flush_interval")]
    pub flush_interval: HumanDuration,
    /// Most points held while they wait to be written; when the buffer is full,
    /// newer points are dropped (and counted). At least `batch_size`.
    #[serde(default = "default_buffer_points")]
    pub buffer_points: u32,
    /// Longest one write request (connect, send, answer) may take.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
}

impl std::fmt::Debug for InfluxDbSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |secret: &Option<String>| secret.as_ref().map(|_| "<hidden>");
        f.debug_struct("InfluxDbSpec")
            .field("url", &self.url)
            .field("database", &self.database)
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .field("org", &self.org)
            .field("bucket", &self.bucket)
            .field("token", &hidden(&self.token))
            .field("batch_size", &self.batch_size)
            .field("flush_interval", &self.flush_interval)
            .field("buffer_points", &self.buffer_points)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Which InfluxDB API a spec writes to, with its credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InfluxApi<'a> {
    /// `POST {url}/write?db=DATABASE&precision=ns`, basic auth when `username`.
    V1 {
        database: &'a str,
        username: Option<&'a str>,
        password: Option<&'a str>,
    },
    /// `POST {url}/api/v2/write?org=ORG&bucket=BUCKET&precision=ns` with
    /// `Authorization: Token TOKEN`.
    V2 {
        org: &'a str,
        bucket: &'a str,
        token: &'a str,
    },
}

/// How points are gathered into requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    pub batch_size: u32,
    pub flush_interval: HumanDuration,
    pub buffer_points: u32,
    pub timeout: HumanDuration,
}

impl InfluxDbSpec {
    /// The API this spec writes to. Meaningful once [`InfluxDbSpec::validate`]
    /// accepted it: a 2.x form is one with a `bucket`, every other one is 1.x.
    pub fn api(&self) -> InfluxApi<'_> {
        match &self.bucket {
            Some(bucket) => InfluxApi::V2 {
                org: self.org.as_deref().unwrap_or_default(),
                bucket,
                token: self.token.as_deref().unwrap_or_default(),
            },
            None => InfluxApi::V1 {
                database: self.database.as_deref().unwrap_or_default(),
                username: self.username.as_deref(),
                password: self.password.as_deref(),
            },
        }
    }

    /// Checks every field (paths relative to the document).
    pub fn validate(&self) -> Result<(), ValidationError> {
        check_http_url(&self.url).map_err(|message| ValidationError::new("url", message))?;
        if self.url.contains(['?', '#']) {
            return Err(ValidationError::new(
                "url",
                format!(
                    "{:?} has a query or fragment; accepted: the server's base URL, such as http://influxdb:8086",
                    self.url
                ),
            ));
        }
        let v1 = [
            ("database", &self.database),
            ("username", &self.username),
            ("password", &self.password),
        ];
        let v2 = [
            ("org", &self.org),
            ("bucket", &self.bucket),
            ("token", &self.token),
        ];
        let first_given = |fields: &[(&'static str, &Option<String>)]| {
            fields.iter().find(|(_, v)| v.is_some()).map(|(k, _)| *k)
        };
        match (first_given(&v1), first_given(&v2)) {
            (Some(one), Some(two)) => {
                return Err(ValidationError::new(
                    two,
                    format!("cannot be given together with {one} (an InfluxDB 1.x field); {FORMS}"),
                ));
            }
            (None, None) => {
                return Err(ValidationError::new(
                    "database",
                    format!("missing; {FORMS}"),
                ));
            }
            (Some(_), None) => {
                non_empty("database", &self.database)?;
                if self.username.is_some() {
                    non_empty("username", &self.username)?;
                }
                if self.password.is_some() && self.username.is_none() {
                    return Err(ValidationError::new(
                        "password",
                        "is only accepted together with username",
                    ));
                }
            }
            (None, Some(_)) => {
                non_empty("org", &self.org)?;
                non_empty("bucket", &self.bucket)?;
                non_empty("token", &self.token)?;
            }
        }
        if !BATCH_SIZES.contains(&self.batch_size) {
            return Err(ValidationError::new(
                "batch_size",
                format!("{} is out of 1-100000", self.batch_size),
            ));
        }
        check_duration(
            "flush_interval",
            self.flush_interval,
            MAX_FLUSH_INTERVAL,
            "1h",
        )?;
        if self.buffer_points < self.batch_size {
            return Err(ValidationError::new(
                "buffer_points",
                format!(
                    "{} is less than batch_size ({}); accepted: batch_size-{MAX_BUFFER_POINTS}",
                    self.buffer_points, self.batch_size
                ),
            ));
        }
        if self.buffer_points > MAX_BUFFER_POINTS {
            return Err(ValidationError::new(
                "buffer_points",
                format!(
                    "{} is more than the maximum, {MAX_BUFFER_POINTS}",
                    self.buffer_points
                ),
            ));
        }
        check_duration("timeout", self.timeout, MAX_TIMEOUT, "10m")
    }
}

fn non_empty(field: &str, value: &Option<String>) -> Result<(), ValidationError> {
    match value.as_deref() {
        None => Err(ValidationError::new(field, format!("missing; {FORMS}"))),
        Some("") => Err(ValidationError::new(field, "must not be empty")),
        Some(v) if v.chars().any(char::is_control) => Err(ValidationError::new(
            field,
            "must not contain control characters",
        )),
        Some(_) => Ok(()),
    }
}

fn check_duration(
    field: &str,
    value: HumanDuration,
    max: std::time::Duration,
    max_text: &str,
) -> Result<(), ValidationError> {
    if value.0.is_zero() {
        return Err(ValidationError::new(field, "must be more than 0s"));
    }
    if value.0 > max {
        return Err(ValidationError::new(
            field,
            format!("{value} is longer than the maximum, {max_text}"),
        ));
    }
    Ok(())
}

/// Reads a sink document, naming the field whose type or name is wrong. Does not
/// validate values: call [`SinkSpec::validate`] as well.
pub fn parse_sink_json(bytes: &[u8]) -> Result<SinkSpec, ValidationError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ValidationError::new("", format!("the document is not valid JSON: {e}")))?;
    // serde reads an internally tagged enum through a buffer that hides the path
    // of errors inside it: read the variant as its own type.
    match value.get("type") {
        Some(serde_json::Value::String(t)) if t == "influxdb" => {
            let mut fields = value.as_object().cloned().unwrap_or_default();
            fields.remove("type");
            deserialize_at(&serde_json::Value::Object(fields)).map(SinkSpec::InfluxDb)
        }
        Some(serde_json::Value::String(t)) => Err(ValidationError::new(
            "type",
            format!("unknown sink type {t:?}; accepted: influxdb"),
        )),
        _ if !value.is_object() => Err(ValidationError::new(
            "",
            format!("a sink is an object; {FORMS}"),
        )),
        _ => Err(ValidationError::new(
            "type",
            "missing or not a string; accepted: influxdb",
        )),
    }
}

/// A sink as stored (`PUT /v1/sinks/{name}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SinkRecord {
    /// `[a-z0-9][a-z0-9_-]{0,62}`; jobs name it in `sink`.
    pub name: String,
    /// Where and how points are written.
    pub spec: SinkSpec,
    pub created_at: crate::Timestamp,
    pub updated_at: crate::Timestamp,
    /// The log index of the last change.
    pub revision: u64,
}

impl SinkRecord {
    /// The record as the API shows it: the spec's fields beside the record's, with
    /// secrets (`password`, `token`) replaced by `"***"`.
    pub fn redacted_view(&self) -> serde_json::Value {
        let mut view = serde_json::to_value(&self.spec).unwrap_or_default();
        if let Some(obj) = view.as_object_mut() {
            for secret in ["password", "token"] {
                if obj.contains_key(secret) {
                    obj.insert(secret.into(), serde_json::Value::String("***".into()));
                }
            }
            obj.insert("name".into(), serde_json::json!(self.name));
            obj.insert("created_at".into(), serde_json::json!(self.created_at));
            obj.insert("updated_at".into(), serde_json::json!(self.updated_at));
            obj.insert("revision".into(), serde_json::json!(self.revision));
        }
        view
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn parse(json: &str) -> Result<SinkSpec, ValidationError> {
        let spec = parse_sink_json(json.as_bytes())?;
        spec.validate()?;
        Ok(spec)
    }

    fn rejected(json: &str) -> (String, String) {
        let e = parse(json).expect_err(json);
        (e.field, e.message)
    }

    #[test]
    fn the_1x_form_with_defaults() {
        let spec = parse(r#"{"type": "influxdb", "url": "http://influx:8086", "database": "ci"}"#)
            .unwrap();
        let SinkSpec::InfluxDb(influx) = &spec;
        assert_eq!(
            influx.api(),
            InfluxApi::V1 {
                database: "ci",
                username: None,
                password: None
            }
        );
        assert_eq!(
            spec.batching(),
            Batching {
                batch_size: 500,
                flush_interval: HumanDuration(Duration::from_secs(1)),
                buffer_points: 10_000,
                timeout: HumanDuration(Duration::from_secs(5)),
            }
        );
        // What is written reads back the same.
        let again = parse_sink_json(&serde_json::to_vec(&spec).unwrap()).unwrap();
        assert_eq!(again, spec);
    }

    #[test]
    fn the_2x_form_and_settings() {
        let spec = parse(
            r#"{"type": "influxdb", "url": "https://influx.example/", "org": "ci",
                "bucket": "builds", "token": "t0k", "batch_size": 10,
                "flush_interval": "250ms", "buffer_points": 10, "timeout": "2s"}"#,
        )
        .unwrap();
        let SinkSpec::InfluxDb(influx) = &spec;
        assert_eq!(
            influx.api(),
            InfluxApi::V2 {
                org: "ci",
                bucket: "builds",
                token: "t0k"
            }
        );
        assert_eq!(spec.batching().flush_interval.0, Duration::from_millis(250));
        assert_eq!(spec.batching().batch_size, 10);
        let debug = format!("{spec:?}");
        assert!(
            !debug.contains("t0k") && debug.contains("token: Some(\"<hidden>\")"),
            "{debug}"
        );
    }

    #[test]
    fn mixed_missing_and_out_of_range_values_name_the_field() {
        let base = r#""type": "influxdb", "url": "http://i:8086""#;
        let cases = [
            (
                format!(r#"{{{base}, "database": "a", "bucket": "b"}}"#),
                "bucket",
                "cannot be given together with database",
            ),
            (
                format!(r#"{{{base}, "username": "u", "token": "t"}}"#),
                "token",
                "cannot be given together with username",
            ),
            (
                format!(r#"{{{base}}}"#),
                "database",
                "missing; accepted: {\"type\": \"influxdb\"",
            ),
            (
                format!(r#"{{{base}, "org": "o", "bucket": "b"}}"#),
                "token",
                "missing",
            ),
            (
                format!(r#"{{{base}, "database": ""}}"#),
                "database",
                "must not be empty",
            ),
            (
                format!(r#"{{{base}, "database": "d", "password": "p"}}"#),
                "password",
                "only accepted together with username",
            ),
            (
                format!(r#"{{{base}, "database": "d", "batch_size": 0}}"#),
                "batch_size",
                "0 is out of 1-100000",
            ),
            (
                format!(r#"{{{base}, "database": "d", "batch_size": 100001}}"#),
                "batch_size",
                "out of 1-100000",
            ),
            (
                format!(r#"{{{base}, "database": "d", "batch_size": 600, "buffer_points": 599}}"#),
                "buffer_points",
                "599 is less than batch_size (600)",
            ),
            (
                format!(r#"{{{base}, "database": "d", "flush_interval": "0s"}}"#),
                "flush_interval",
                "more than 0s",
            ),
            (
                format!(r#"{{{base}, "database": "d", "timeout": "1h"}}"#),
                "timeout",
                "longer than the maximum, 10m",
            ),
            (
                r#"{"type": "influxdb", "url": "ftp://i", "database": "d"}"#.to_string(),
                "url",
                "must start with http:// or https://",
            ),
            (
                r#"{"type": "influxdb", "url": "http://i:8086/?db=x", "database": "d"}"#
                    .to_string(),
                "url",
                "has a query",
            ),
        ];
        for (json, field, message) in cases {
            let (f, m) = rejected(&json);
            assert_eq!(f, field, "{json}: {m}");
            assert!(m.contains(message), "{json}: {m}");
        }
    }

    #[test]
    fn unknown_fields_and_types_are_refused() {
        let (f, m) =
            rejected(r#"{"type": "influxdb", "url": "http://i", "database": "d", "db": "x"}"#);
        assert!(f == "db" || m.contains("db"), "{f}: {m}");
        let (f, m) = rejected(r#"{"type": "graphite", "url": "http://i"}"#);
        assert_eq!(f, "type");
        assert!(m.contains("accepted: influxdb"), "{m}");
        let (f, _) = rejected(r#"{"url": "http://i", "database": "d"}"#);
        assert_eq!(f, "type");
        let (f, m) = rejected(
            r#"{"type": "influxdb", "url": "http://i", "database": "d", "batch_size": "many"}"#,
        );
        assert_eq!(f, "batch_size", "{m}");
        let (f, m) = rejected(
            r#"{"type": "influxdb", "url": "http://i", "database": "d", "flush_interval": "soon"}"#,
        );
        assert_eq!(f, "flush_interval", "{m}");
        let (f, _) = rejected("[1]");
        assert_eq!(f, "");
    }
}
