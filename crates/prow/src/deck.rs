//! `prowjobs.js` into [`Build`] records.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Error;

/// One Prow job run as rota reports it (the DESIGN's build record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Build {
    /// `status.build_id`; empty while Prow has not assigned one.
    pub build_id: String,
    pub job: String,
    /// presubmit, postsubmit, periodic or batch.
    #[serde(rename = "type")]
    pub job_type: String,
    /// `status.state` as Prow says it, unknown states included.
    pub state: String,
    /// See [`state_int`].
    pub state_int: i64,
    pub org: Option<String>,
    pub repo: Option<String>,
    pub pull_request: Option<u64>,
    pub started_at: DateTime<Utc>,
    /// None while the job runs.
    pub finished_at: Option<DateTime<Utc>>,
    /// None while the job runs.
    pub duration_s: Option<f64>,
    /// `status.url`, the job's log page.
    pub log_url: Option<String>,
    /// `{deck}/prowjob?prowjob={metadata.name}`.
    pub prowjob_url: Option<String>,
}

impl Build {
    /// `started_at` in nanoseconds since the epoch, the timestamp of its point.
    /// [`parse_deck`] keeps only builds whose start fits (1677-2262); a build
    /// made otherwise with a later start gets `i64::MAX`.
    pub fn started_at_ns(&self) -> i64 {
        self.started_at.timestamp_nanos_opt().unwrap_or(i64::MAX)
    }
}

/// What a page held: the builds, and one warning per job that was skipped.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Parsed {
    pub builds: Vec<Build>,
    pub skipped: Vec<Skipped>,
}

/// A job of the page that could not be read; it shows as
/// `job #3 ("name"): missing status.startTime`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Its position in `items`, from 0.
    pub index: usize,
    /// `spec.job`, when it has one.
    pub job: Option<String>,
    /// What was wrong: the field and what it held.
    pub reason: String,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.job {
            Some(job) => write!(f, "job #{} ({job:?}): {}", self.index, self.reason),
            None => write!(f, "job #{}: {}", self.index, self.reason),
        }
    }
}

/// success 0, pending 1, failure 2, aborted 3, flake 4, anything else 10.
pub fn state_int(state: &str) -> i64 {
    match state {
        "success" => 0,
        "pending" => 1,
        "failure" => 2,
        "aborted" => 3,
        "flake" => 4,
        _ => 10,
    }
}

/// The JSON of a page: the whole text, or what `var NAME = ` ... `;` wraps.
fn document(text: &str) -> Result<&str, Error> {
    let text = text.trim();
    if text.starts_with('{') {
        return Ok(text);
    }
    let not_a_list = || Error::NotADeckDocument {
        found: format!(
            "it starts with {:?}",
            text.chars().take(40).collect::<String>()
        ),
    };
    let rest = text.strip_prefix("var").ok_or_else(not_a_list)?;
    if !rest.starts_with(char::is_whitespace) {
        return Err(not_a_list());
    }
    let rest = rest.trim_start();
    let name_len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$'))
        .unwrap_or(rest.len());
    if name_len == 0 {
        return Err(not_a_list());
    }
    let rest = rest[name_len..].trim_start();
    let json = rest.strip_prefix('=').ok_or_else(not_a_list)?.trim_start();
    let json = json.strip_suffix(';').unwrap_or(json).trim_end();
    Ok(json)
}

/// Reads `{"items": [...]}` or `var NAME = {"items": [...]};`. A page that is not
/// one of those (HTML, a truncated download) is an error; a job inside it that
/// lacks a required field or has one of the wrong type is skipped with a warning.
/// `deck_base` makes `prowjob_url`; `None` leaves it out.
pub fn parse_deck(text: &str, deck_base: Option<&str>) -> Result<Parsed, Error> {
    let json = document(text)?;
    let value: Value = serde_json::from_str(json).map_err(|source| Error::Json { source })?;
    let Some(items) = value.get("items").and_then(Value::as_array) else {
        return Err(Error::NotADeckDocument {
            found: "it has no \"items\" list".to_string(),
        });
    };
    let mut parsed = Parsed::default();
    for (index, item) in items.iter().enumerate() {
        match build(item, deck_base) {
            Ok(b) => parsed.builds.push(b),
            Err(reason) => {
                let skipped = Skipped {
                    index,
                    job: item
                        .pointer("/spec/job")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    reason,
                };
                tracing::debug!(%skipped, "deck job skipped");
                parsed.skipped.push(skipped);
            }
        }
    }
    Ok(parsed)
}

/// A string at `path` (`spec.job`); `Ok(None)` when absent or null.
fn opt_str<'a>(item: &'a Value, path: &str) -> Result<Option<&'a str>, String> {
    let pointer = format!("/{}", path.replace('.', "/"));
    match item.pointer(&pointer) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!("{path}: expected a string, found {other}")),
    }
}

fn req_str<'a>(item: &'a Value, path: &str) -> Result<&'a str, String> {
    opt_str(item, path)?.ok_or_else(|| format!("missing {path}"))
}

fn opt_time(item: &Value, path: &str) -> Result<Option<DateTime<Utc>>, String> {
    opt_str(item, path)?
        .map(|s| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    format!("{path}: {s:?} is not an RFC 3339 time such as 2026-12-03T10:14:55Z")
                })
        })
        .transpose()
}

fn build(item: &Value, deck_base: Option<&str>) -> Result<Build, String> {
    let job = req_str(item, "spec.job")?;
    let job_type = req_str(item, "spec.type")?;
    let state = req_str(item, "status.state")?;
    let started_at = opt_time(item, "status.startTime")?
        .ok_or_else(|| "missing status.startTime".to_string())?;
    if started_at.timestamp_nanos_opt().is_none() {
        return Err(format!(
            "status.startTime: {} is outside 1677-2262, the range of nanosecond timestamps",
            started_at.to_rfc3339()
        ));
    }
    let finished_at = opt_time(item, "status.completionTime")?;
    // Periodics have no `refs`; their repository is the first of `extra_refs`.
    let refs = if item.pointer("/spec/refs").is_some_and(|r| !r.is_null()) {
        "spec.refs"
    } else {
        "spec.extra_refs.0"
    };
    let pull_request = match item.pointer(&format!("/{}/pulls/0/number", refs.replace('.', "/"))) {
        None | Some(Value::Null) => None,
        Some(n) => Some(
            n.as_u64()
                .ok_or_else(|| format!("{refs}.pulls[0].number: expected a number, found {n}"))?,
        ),
    };
    let build_id = match item.pointer("/status/build_id") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => return Err(format!("status.build_id: expected a string, found {other}")),
    };
    let name = opt_str(item, "metadata.name")?;
    Ok(Build {
        build_id,
        job: job.to_string(),
        job_type: job_type.to_string(),
        state: state.to_string(),
        state_int: state_int(state),
        org: opt_str(item, &format!("{refs}.org"))?.map(str::to_string),
        repo: opt_str(item, &format!("{refs}.repo"))?.map(str::to_string),
        pull_request,
        started_at,
        finished_at,
        duration_s: finished_at
            .map(|end| (end - started_at).num_milliseconds().max(0) as f64 / 1000.0),
        log_url: opt_str(item, "status.url")?.map(str::to_string),
        prowjob_url: match (deck_base, name) {
            (Some(base), Some(name)) => Some(format!("{base}/prowjob?prowjob={name}")),
            _ => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrappers_are_recognised() {
        assert_eq!(document(" {\"items\":[]} \n").unwrap(), "{\"items\":[]}");
        assert_eq!(
            document("var allBuilds = {\"a\":1};\n").unwrap(),
            "{\"a\":1}"
        );
        assert_eq!(document("var\tx={\"a\":1}").unwrap(), "{\"a\":1}");
        assert!(document("<html>").is_err());
        assert!(document("variable = {}").is_err());
        assert!(document("var = {}").is_err());
        assert!(document("var x {}").is_err());
    }

    #[test]
    fn bad_types_skip_the_job_and_say_why() {
        let page = r#"{"items": [
            {"spec": {"job": "a", "type": "presubmit", "refs": {"pulls": [{"number": "7"}]}},
             "status": {"state": "success", "startTime": "2026-01-01T00:00:00Z"}},
            {"spec": {"job": "b", "type": 3},
             "status": {"state": "success", "startTime": "2026-01-01T00:00:00Z"}},
            {"spec": {"job": "c", "type": "periodic"},
             "status": {"state": "success", "startTime": "yesterday"}},
            {"spec": {"type": "periodic"}, "status": {}},
            {"spec": {"job": "d", "type": "periodic"},
             "status": {"state": "success", "startTime": "2263-01-01T00:00:00Z"}}
        ]}"#;
        let parsed = parse_deck(page, None).unwrap();
        assert!(parsed.builds.is_empty());
        assert_eq!(
            parsed.skipped.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec![
                "job #0 (\"a\"): spec.refs.pulls[0].number: expected a number, found \"7\"",
                "job #1 (\"b\"): spec.type: expected a string, found 3",
                "job #2 (\"c\"): status.startTime: \"yesterday\" is not an RFC 3339 time such as 2026-12-03T10:14:55Z",
                "job #3: missing spec.job",
                "job #4 (\"d\"): status.startTime: 2263-01-01T00:00:00+00:00 is outside 1677-2262, the range of nanosecond timestamps",
            ]
        );
    }

    #[test]
    fn state_ints() {
        let states = [
            "success",
            "pending",
            "failure",
            "aborted",
            "flake",
            "error",
            "triggered",
            "scheduling",
            "new",
        ];
        let ints: Vec<i64> = states.iter().map(|s| state_int(s)).collect();
        assert_eq!(ints, vec![0, 1, 2, 3, 4, 10, 10, 10, 10]);
    }
}
