//! The `prow` executor's spec: read a Prow deck's job list and send its builds to
//! a sink (`{"type": "prow", "url", "job", "types", "states", "sink"}`).

use serde::{Deserialize, Serialize};

use crate::validate::check_http_url;
use crate::{validate_name, HumanDuration, ValidationError};

/// Prow's job types.
pub const JOB_TYPES: [&str; 4] = ["presubmit", "postsubmit", "periodic", "batch"];

/// `{"type": "prow", "url": DECK_OR_PROWJOBS_URL, "job": "*oadp*", ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProwSpec {
    /// A deck UI URL (`https://prow.example/?job=*oadp*`) or its `/prowjobs.js` URL.
    pub url: String,
    /// Only jobs whose name matches this glob (`*`, `?`); the URL's `job`
    /// parameter, else every job, when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Only jobs of these types (presubmit, postsubmit, periodic, batch).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    /// Only jobs in these states (Prow's own, e.g. success, failure, pending).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub states: Vec<String>,
    /// The sink the builds are sent to as `build` points; without one the run
    /// only prints them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<String>,
    /// Longest the deck may take to send the whole job list. Default `30s`.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
}

fn default_timeout() -> HumanDuration {
    HumanDuration::from_secs(30)
}

impl ProwSpec {
    /// The first thing wrong, naming the field (relative to the executor).
    pub fn validate(&self) -> Result<(), ValidationError> {
        check_http_url(&self.url).map_err(|m| ValidationError::new("url", m))?;
        if let Some(glob) = &self.job {
            if glob.is_empty() {
                return Err(ValidationError::new(
                    "job",
                    "must not be empty; leave it out to keep every job",
                ));
            }
        }
        for (i, t) in self.types.iter().enumerate() {
            if !JOB_TYPES.contains(&t.as_str()) {
                return Err(ValidationError::new(
                    format!("types[{i}]"),
                    format!(
                        "{t:?} is not a Prow job type; accepted: {}",
                        JOB_TYPES.join(", ")
                    ),
                ));
            }
        }
        for (i, s) in self.states.iter().enumerate() {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_lowercase()) {
                return Err(ValidationError::new(
                    format!("states[{i}]"),
                    format!("{s:?} is not a Prow state; accepted: lower-case words such as success, failure, pending"),
                ));
            }
        }
        if let Some(sink) = &self.sink {
            validate_name("sink", sink)?;
        }
        let t = self.timeout.as_duration();
        if t.is_zero() || t > std::time::Duration::from_secs(3600) {
            return Err(ValidationError::new(
                "timeout",
                format!("{} is out of range; accepted: 1ms to 1h", self.timeout),
            ));
        }
        Ok(())
    }
}
