//! Job files: what `rota job apply -f FILE` and `rota server --demo` read. The
//! document readers (TOML, YAML, JSON into one `serde_json::Value`) also serve
//! workflow files ([`crate::docfile`]).
//!
//! A file holds one job or many, in TOML, YAML or JSON:
//!
//! - TOML: `[[job]]` tables, or the fields of a single job at the top level;
//! - YAML: a single job mapping, a sequence of jobs, or `jobs:` with a sequence;
//! - JSON: a job object, an array of jobs, or `{"jobs": [...]}`.
//!
//! Every format is first turned into a `serde_json::Value` and each job is read by
//! the same code the API uses ([`parse_job_value`]) and then validated, so a
//! mistake is reported with the same field path (`retry.max_attempts`) whatever the
//! format. Errors also name the job (its position and name) and, where the parser
//! knows it, the line: TOML for any field, YAML and JSON for syntax errors.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use rota_core::validate::parse_job_value;
use rota_core::{JobSpec, ValidationError};
use serde_json::{Map, Number, Value};

/// The language of a job file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobFileFormat {
    Toml,
    Yaml,
    Json,
}

impl JobFileFormat {
    /// By extension: `.toml`, `.yaml` or `.yml`, `.json` (in any case).
    pub fn from_path(path: &Path) -> Option<Self> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "toml" => Some(Self::Toml),
            "yaml" | "yml" => Some(Self::Yaml),
            "json" => Some(Self::Json),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Toml => "TOML",
            Self::Yaml => "YAML",
            Self::Json => "JSON",
        }
    }
}

impl fmt::Display for JobFileFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which job of a file an error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRef {
    /// 1-based position in the file.
    pub number: usize,
    /// The job's `name`, when it has one that is a string.
    pub name: Option<String>,
}

impl fmt::Display for JobRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "job #{}", self.number)?;
        if let Some(name) = &self.name {
            write!(f, " {name:?}")?;
        }
        Ok(())
    }
}

pub(crate) fn at_line(line: &Option<usize>) -> String {
    line.map(|l| format!(" (line {l})")).unwrap_or_default()
}

/// Why a job file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum JobFileError {
    /// The text is not valid TOML, YAML or JSON. `message` says where: it is the
    /// parser's own text (reworded to name line and column the same way for all
    /// three formats), kept as text because the three parsers' errors share no type.
    #[error("not valid {format}: {message}")]
    Syntax {
        format: JobFileFormat,
        line: Option<usize>,
        message: String,
    },
    /// The document is neither a job, nor a list of jobs, nor `jobs`/`job` holding
    /// them.
    #[error("{message}")]
    Layout { message: String },
    /// The document holds no job.
    #[error("the file holds no jobs; write one job, a list of jobs, or `jobs` (`[[job]]` tables in TOML)")]
    NoJobs,
    /// A job is malformed or invalid; `error.field` is the path inside the job. The
    /// validation error is what the user must fix, so it is part of this message
    /// (not a chained source).
    #[error("{job}{}: {error}", at_line(line))]
    Job {
        job: JobRef,
        line: Option<usize>,
        error: ValidationError,
    },
    /// Two jobs of the file share a name.
    #[error("job #{second} has the same name {name:?} as job #{first}; names are unique")]
    DuplicateName {
        name: String,
        first: usize,
        second: usize,
    },
}

/// Reads every job of a file and validates each; the first problem is reported.
pub fn parse_job_file(text: &str, format: JobFileFormat) -> Result<Vec<JobSpec>, JobFileError> {
    let document = match format {
        JobFileFormat::Toml => toml_document(text)?,
        JobFileFormat::Yaml => yaml_document(text)?,
        JobFileFormat::Json => json_document(text)?,
    };
    let jobs = split_jobs(document)?;
    let mut specs = Vec::with_capacity(jobs.len());
    let mut numbers: BTreeMap<String, usize> = BTreeMap::new();
    for (i, (location, mut value)) in jobs.into_iter().enumerate() {
        let number = i + 1;
        strip_server_fields(&mut value);
        let value = &value;
        let location = &location;
        let spec = parse_job_value(value)
            .and_then(|spec| spec.validate().map(|_| spec))
            .map_err(|error| JobFileError::Job {
                job: JobRef {
                    number,
                    name: value.get("name").and_then(Value::as_str).map(str::to_owned),
                },
                line: match format {
                    JobFileFormat::Toml => toml_line(text, location, &error.field),
                    JobFileFormat::Yaml | JobFileFormat::Json => None,
                },
                error,
            })?;
        if let Some(first) = numbers.insert(spec.name.clone(), number) {
            return Err(JobFileError::DuplicateName {
                name: spec.name,
                first,
                second: number,
            });
        }
        specs.push(spec);
    }
    tracing::debug!(%format, jobs = specs.len(), "job file read");
    Ok(specs)
}

/// The fields of a job as the server shows it (`job get -o json|yaml`) that only
/// the server sets. A file may carry them, so that a job read back applies as-is;
/// they are dropped before the job is read, never sent.
pub const SERVER_FIELDS: [&str; 6] = [
    "created_at",
    "updated_at",
    "revision",
    "next_run_at",
    "last_event_revision",
    "last_execution",
];

/// Drops the [`SERVER_FIELDS`] of a job document.
pub(crate) fn strip_server_fields(job: &mut Value) {
    if let Value::Object(map) = job {
        for field in SERVER_FIELDS {
            map.remove(field);
        }
    }
}

/// A step from the document root to a job: a key, or a position in a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Key(String),
    Index(usize),
}

const LIST_KEYS: [&str; 2] = ["jobs", "job"];

/// The jobs of a document, each with where it sits in the document.
fn split_jobs(document: Value) -> Result<Vec<(Vec<Step>, Value)>, JobFileError> {
    let listed = |key: Option<&str>, items: Vec<Value>| {
        items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                let mut at: Vec<Step> = key.map(|k| Step::Key(k.to_owned())).into_iter().collect();
                at.push(Step::Index(i));
                (at, item)
            })
            .collect::<Vec<_>>()
    };
    let jobs = match document {
        Value::Null => Vec::new(),
        Value::Array(items) => listed(None, items),
        Value::Object(map) if LIST_KEYS.iter().any(|k| map.contains_key(*k)) => {
            let mut entries = map.into_iter();
            let Some((key, value)) = entries.next().filter(|_| entries.len() == 0) else {
                return Err(JobFileError::Layout {
                    message: "a file that lists jobs under `jobs` (or `[[job]]` in TOML) takes no other top-level keys".to_owned(),
                });
            };
            match value {
                Value::Array(items) => listed(Some(&key), items),
                Value::Object(_) => vec![(vec![Step::Key(key)], value)],
                other => {
                    return Err(JobFileError::Layout {
                        message: format!("`{key}` must be a list of jobs, not {}", kind_of(&other)),
                    })
                }
            }
        }
        Value::Object(map) if map.is_empty() => Vec::new(),
        job @ Value::Object(_) => vec![(Vec::new(), job)],
        other => {
            return Err(JobFileError::Layout {
                message: format!(
                    "expected a job, a list of jobs, or `jobs`; the file holds {}",
                    kind_of(&other)
                ),
            })
        }
    };
    if jobs.is_empty() {
        return Err(JobFileError::NoJobs);
    }
    Ok(jobs)
}

pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a table",
    }
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

// ---- TOML ----------------------------------------------------------------------

pub(crate) fn toml_document(text: &str) -> Result<Value, JobFileError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        let position = e.span().map(|span| line_column(text, span.start));
        let message = e.message().trim().replace('\n', "; ");
        JobFileError::Syntax {
            format: JobFileFormat::Toml,
            line: position.map(|(line, _)| line),
            message: match position {
                Some((line, column)) => format!("{message} at line {line} column {column}"),
                None => message,
            },
        }
    })?;
    Ok(toml_to_json(toml::Value::Table(table)))
}

fn toml_to_json(value: toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        // JSON has no NaN or infinity; as text they still fail with their own name.
        toml::Value::Float(f) => {
            Number::from_f64(f).map_or_else(|| Value::String(f.to_string()), Value::Number)
        }
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(table) => Value::Object(
            table
                .into_iter()
                .map(|(k, v)| (k, toml_to_json(v)))
                .collect(),
        ),
    }
}

/// The line of a field of a job in a TOML file: as deep along `field` (a dotted path
/// with `[n]` indexes) as the document goes, so that a missing field points at its
/// job. Parsing a second time, with spans, is only paid for on an error.
pub(crate) fn toml_line(text: &str, job: &[Step], field: &str) -> Option<usize> {
    let document = toml::de::DeTable::parse(text).ok()?;
    let mut steps = job.to_vec();
    for part in field.split('.').filter(|p| !p.is_empty()) {
        let (key, indexes) = part
            .split_once('[')
            .map_or((part, ""), |(k, rest)| (k, rest));
        if !key.is_empty() {
            steps.push(Step::Key(key.to_owned()));
        }
        for index in indexes.split('[') {
            if let Ok(i) = index.trim_end_matches(']').parse() {
                steps.push(Step::Index(i));
            }
        }
    }
    let mut span = None;
    let mut table = Some(document.get_ref());
    let mut array: Option<&[toml::Spanned<toml::de::DeValue<'_>>]> = None;
    for step in &steps {
        let next = match (step, table, array) {
            (Step::Key(key), Some(t), _) => t
                .iter()
                .find(|(k, _)| k.get_ref().as_ref() == key.as_str())
                .map(|(_, v)| v),
            (Step::Index(i), _, Some(a)) => a.get(*i),
            _ => None,
        };
        let Some(next) = next else { break };
        span = Some(next.span());
        table = next.get_ref().as_table();
        array = next.get_ref().as_array().map(|a| &a[..]);
    }
    span.map(|s| line_column(text, s.start).0)
}

// ---- YAML ----------------------------------------------------------------------

fn yaml_syntax(message: String, line: Option<usize>) -> JobFileError {
    JobFileError::Syntax {
        format: JobFileFormat::Yaml,
        line,
        message,
    }
}

pub(crate) fn yaml_document(text: &str) -> Result<Value, JobFileError> {
    let mut value: serde_yaml_ng::Value = serde_yaml_ng::from_str(text)
        .map_err(|e| yaml_syntax(e.to_string(), e.location().map(|l| l.line())))?;
    // `<<: *defaults` merges, so that jobs can share settings.
    value
        .apply_merge()
        .map_err(|e| yaml_syntax(e.to_string(), e.location().map(|l| l.line())))?;
    yaml_to_json(value).map_err(|message| yaml_syntax(message, None))
}

fn yaml_to_json(value: serde_yaml_ng::Value) -> Result<Value, String> {
    use serde_yaml_ng::Value as Y;
    Ok(match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                Number::from_f64(f).map_or_else(|| Value::String(f.to_string()), Value::Number)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(yaml_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(mapping) => {
            let mut map = Map::new();
            for (key, value) in mapping {
                let key = match key {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    other => return Err(format!("mapping keys must be strings; found {other:?}")),
                };
                map.insert(key, yaml_to_json(value)?);
            }
            Value::Object(map)
        }
        Y::Tagged(tagged) => {
            return Err(format!(
                "YAML tags such as {} are not accepted in job or workflow files",
                tagged.tag
            ))
        }
    })
}

// ---- JSON ----------------------------------------------------------------------

pub(crate) fn json_document(text: &str) -> Result<Value, JobFileError> {
    serde_json::from_str(text).map_err(|e| JobFileError::Syntax {
        format: JobFileFormat::Json,
        line: Some(e.line()).filter(|l| *l > 0),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEMO: &str = include_str!("../../../examples/demo.toml");

    fn job_error(text: &str, format: JobFileFormat) -> (JobRef, Option<usize>, ValidationError) {
        match parse_job_file(text, format) {
            Err(JobFileError::Job { job, line, error }) => (job, line, error),
            other => panic!("expected a job error, got {other:?}"),
        }
    }

    fn names(specs: &[JobSpec]) -> Vec<&str> {
        specs.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn the_example_job_file_of_the_readme_parses_and_validates() {
        let text = include_str!("../../../examples/jobs.toml");
        let specs = parse_job_file(text, JobFileFormat::Toml).expect("examples/jobs.toml");
        assert_eq!(names(&specs), ["nightly-backup", "ping-api", "report-once"]);
    }

    #[test]
    fn the_probe_example_parses_and_validates() {
        let text = include_str!("../../../examples/probe.yaml");
        let specs = parse_job_file(text, JobFileFormat::Yaml).expect("examples/probe.yaml");
        assert_eq!(names(&specs), ["token-synced", "gateway-logs"]);
        assert_eq!(specs[1].targets.as_deref(), Some("gateways"));
    }

    #[test]
    fn the_event_trigger_example_parses_and_validates() {
        let text = include_str!("../../../examples/events.toml");
        let specs = parse_job_file(text, JobFileFormat::Toml).expect("examples/events.toml");
        assert_eq!(
            names(&specs),
            ["build", "package", "smoke-prod", "cleanup-once"]
        );
        assert!(matches!(specs[1].schedule, rota_core::Schedule::On(_)));
        assert!(specs[3].delete_after_run);
    }

    #[test]
    fn format_from_extension() {
        for (path, format) in [
            ("jobs.toml", Some(JobFileFormat::Toml)),
            ("a/b/jobs.yaml", Some(JobFileFormat::Yaml)),
            ("jobs.YML", Some(JobFileFormat::Yaml)),
            ("jobs.json", Some(JobFileFormat::Json)),
            ("jobs.txt", None),
            ("jobs", None),
        ] {
            assert_eq!(JobFileFormat::from_path(Path::new(path)), format, "{path}");
        }
    }

    #[test]
    fn demo_jobs_parse_and_validate() {
        let specs = parse_job_file(DEMO, JobFileFormat::Toml).unwrap();
        assert_eq!(
            names(&specs),
            ["heartbeat", "disk-usage", "flaky", "manual-report"]
        );
        for spec in &specs {
            spec.validate().unwrap();
        }
        assert!(specs[2].retry.is_some());
    }

    // ---- TOML

    #[test]
    fn toml_one_job_at_the_top_level() {
        let text = r#"
name = "backup"
schedule = { cron = "0 30 2 * * *", timezone = "Europe/Berlin" }
executor = { type = "shell", command = "true" }
retry = { max_attempts = 3 }
"#;
        let specs = parse_job_file(text, JobFileFormat::Toml).unwrap();
        assert_eq!(names(&specs), ["backup"]);
        assert_eq!(specs[0].retry.as_ref().unwrap().max_attempts, 3);
    }

    #[test]
    fn toml_many_jobs() {
        let text = r#"
[[job]]
name = "a"
schedule = { every = "1m" }
executor = { type = "shell", command = "true" }

[[job]]
name = "b"
schedule = { at = 2030-01-01T00:00:00Z }
[job.executor]
type = "http"
url = "http://127.0.0.1:9/health"
expect_status = [200, 204]
"#;
        let specs = parse_job_file(text, JobFileFormat::Toml).unwrap();
        assert_eq!(names(&specs), ["a", "b"]);
        // A native TOML datetime reads as the RFC 3339 time it is.
        assert_eq!(
            specs[1].schedule,
            rota_core::Schedule::At("2030-01-01T00:00:00Z".parse().unwrap())
        );
    }

    #[test]
    fn toml_bad_field_names_job_field_and_line() {
        let text = r#"[[job]]
name = "a"
schedule = { every = "1m" }
executor = { type = "shell", command = "true" }

[[job]]
name = "b"
schedule = { every = "1m" }
executor = { type = "shell", command = "true" }
retry = { max_attempts = "x" }
"#;
        let (job, line, source) = job_error(text, JobFileFormat::Toml);
        assert_eq!(
            job,
            JobRef {
                number: 2,
                name: Some("b".into())
            }
        );
        assert_eq!(source.field, "retry.max_attempts");
        assert!(source.message.contains("invalid type"), "{source}");
        assert_eq!(line, Some(10));
        let err = parse_job_file(text, JobFileFormat::Toml).unwrap_err();
        assert_eq!(
            err.to_string(),
            "job #2 \"b\" (line 10): retry.max_attempts: invalid type: string \"x\", expected u32"
        );

        // A value that parses but does not validate, in a sub-table.
        let text = "[[job]]\nname = \"c\"\nexecutor = { type = \"shell\", command = \"true\" }\n\n[job.schedule]\ncron = \"0 25 * * *\"\n";
        let (job, line, source) = job_error(text, JobFileFormat::Toml);
        assert_eq!(job.number, 1);
        assert_eq!(source.to_string(), "schedule.cron: hour 25 is out of 0-23");
        assert_eq!(line, Some(6));
    }

    #[test]
    fn toml_unknown_field_and_missing_field() {
        let text = "[[job]]\nname = \"a\"\nschedule = { every = \"1m\" }\nexecutor = { type = \"shell\", command = \"true\" }\nretries = 3\n";
        let (_, line, source) = job_error(text, JobFileFormat::Toml);
        assert_eq!(source.field, "retries");
        assert!(
            source.message.contains("unknown field `retries`"),
            "{source}"
        );
        assert!(source.message.contains("`retry`"), "{source}");
        assert_eq!(line, Some(5));
        // A missing field points at its job.
        let text = "[[job]]\nname = \"a\"\nschedule = { every = \"1m\" }\nexecutor = { type = \"shell\", command = \"true\" }\n\n[[job]]\nname = \"b\"\nschedule = { every = \"1m\" }\n";
        let (job, line, source) = job_error(text, JobFileFormat::Toml);
        assert_eq!(job.number, 2);
        assert_eq!(source.field, "executor");
        assert_eq!(line, Some(6), "the job's own table");
    }

    #[test]
    fn toml_syntax_error_has_a_line() {
        let err = parse_job_file("[[job]]\nname = \"a\nx = 1\n", JobFileFormat::Toml).unwrap_err();
        let JobFileError::Syntax {
            line, ref message, ..
        } = err
        else {
            panic!("{err:?}")
        };
        assert_eq!(line, Some(2));
        assert!(!message.contains('\n'), "{message}");
        assert!(err.to_string().starts_with("not valid TOML: "), "{err}");
    }

    // ---- YAML

    #[test]
    fn yaml_one_many_and_jobs_key() {
        let one = "name: a\nschedule: {every: 1m}\nexecutor: {type: shell, command: 'true'}\n";
        assert_eq!(
            names(&parse_job_file(one, JobFileFormat::Yaml).unwrap()),
            ["a"]
        );
        let many = "- name: a\n  schedule: {every: 1m}\n  executor: {type: shell, command: 'true'}\n- name: b\n  schedule: {manual: true}\n  executor: {type: shell, command: 'true'}\n";
        assert_eq!(
            names(&parse_job_file(many, JobFileFormat::Yaml).unwrap()),
            ["a", "b"]
        );
        let keyed = "jobs:\n  - name: a\n    schedule: {cron: '*/5 * * * *'}\n    executor: {type: shell, command: 'true'}\n    tags: {region: eu}\n";
        let specs = parse_job_file(keyed, JobFileFormat::Yaml).unwrap();
        assert_eq!(names(&specs), ["a"]);
        assert_eq!(specs[0].tags["region"], "eu");
    }

    #[test]
    fn yaml_merge_keys_share_settings() {
        let text = "defaults: &defaults\n  schedule: {every: 1m}\n  executor: {type: shell, command: 'true'}\n";
        // `defaults` is not a job field, so anchors go inside the list instead.
        assert!(parse_job_file(text, JobFileFormat::Yaml).is_err());
        let text = "- &a\n  name: a\n  schedule: {every: 1m}\n  executor: {type: shell, command: 'true'}\n- <<: *a\n  name: b\n";
        let specs = parse_job_file(text, JobFileFormat::Yaml).unwrap();
        assert_eq!(names(&specs), ["a", "b"]);
        assert_eq!(specs[1].executor, specs[0].executor);
    }

    #[test]
    fn yaml_bad_and_unknown_fields() {
        let text = "jobs:\n  - name: a\n    schedule: {every: 1m}\n    executor: {type: http, url: 'http://x', expect_status: [200, 700]}\n";
        let (job, _, source) = job_error(text, JobFileFormat::Yaml);
        assert_eq!(
            job,
            JobRef {
                number: 1,
                name: Some("a".into())
            }
        );
        assert_eq!(source.field, "executor.expect_status[1]");
        let text = "- name: a\n  schedule: {every: 1m}\n  executor: {type: shell, command: 'true', shell: bash}\n";
        let (_, _, source) = job_error(text, JobFileFormat::Yaml);
        assert_eq!(source.field, "executor.shell");
        assert!(source.message.contains("unknown field `shell`"), "{source}");
    }

    #[test]
    fn yaml_syntax_error_has_a_line() {
        let err =
            parse_job_file("jobs:\n  - name: a\n   bad: [\n", JobFileFormat::Yaml).unwrap_err();
        let JobFileError::Syntax { line, .. } = err else {
            panic!("{err:?}")
        };
        assert!(line.is_some_and(|l| l >= 2), "{line:?}");
        let err = parse_job_file("!job\nname: a\n", JobFileFormat::Yaml).unwrap_err();
        assert!(err.to_string().contains("tags"), "{err}");
    }

    // ---- JSON

    #[test]
    fn json_object_array_and_jobs_key() {
        let job = r#"{"name": "a", "schedule": {"every": "1m"}, "executor": {"type": "shell", "command": "true"}}"#;
        assert_eq!(
            names(&parse_job_file(job, JobFileFormat::Json).unwrap()),
            ["a"]
        );
        let array = format!("[{job}, {}]", job.replace("\"a\"", "\"b\""));
        assert_eq!(
            names(&parse_job_file(&array, JobFileFormat::Json).unwrap()),
            ["a", "b"]
        );
        let keyed = format!("{{\"jobs\": [{job}]}}");
        assert_eq!(
            names(&parse_job_file(&keyed, JobFileFormat::Json).unwrap()),
            ["a"]
        );
    }

    #[test]
    fn json_bad_and_unknown_fields() {
        let text = r#"[{"name": "a", "schedule": {"every": "1m"}, "executor": {"type": "shell", "command": "true"}},
                       {"name": "b", "schedule": {"every": "100ms"}, "executor": {"type": "shell", "command": "true"}}]"#;
        let err = parse_job_file(text, JobFileFormat::Json).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("job #2 \"b\": schedule.every: "),
            "{err}"
        );
        let text = r#"{"name": "a", "schedule": {"every": "1m"}, "executor": {"type": "shel", "command": "true"}}"#;
        let (_, _, source) = job_error(text, JobFileFormat::Json);
        assert_eq!(source.field, "executor.type");
        let text = r#"{"name": "a", "schedule": {"every": "1m"}, "executor": {"type": "shell", "command": "true"}, "colour": "red"}"#;
        let (_, _, source) = job_error(text, JobFileFormat::Json);
        assert_eq!(source.field, "colour");
    }

    #[test]
    fn json_syntax_error_has_a_line() {
        let err = parse_job_file("{\n\"name\": \n", JobFileFormat::Json).unwrap_err();
        let JobFileError::Syntax { line, .. } = err else {
            panic!("{err:?}")
        };
        assert_eq!(line, Some(3));
    }

    // ---- all formats

    #[test]
    fn same_path_in_every_format() {
        let toml = "name = \"a\"\nschedule = { every = \"1m\" }\nexecutor = { type = \"shell\", command = \"true\" }\nretry = { multiplier = 20.0 }\n";
        let yaml = "name: a\nschedule: {every: 1m}\nexecutor: {type: shell, command: 'true'}\nretry: {multiplier: 20.0}\n";
        let json = r#"{"name": "a", "schedule": {"every": "1m"}, "executor": {"type": "shell", "command": "true"}, "retry": {"multiplier": 20.0}}"#;
        let errors: Vec<ValidationError> = [
            (toml, JobFileFormat::Toml),
            (yaml, JobFileFormat::Yaml),
            (json, JobFileFormat::Json),
        ]
        .into_iter()
        .map(|(text, format)| job_error(text, format).2)
        .collect();
        assert_eq!(errors[0].field, "retry.multiplier");
        assert_eq!(errors[0], errors[1]);
        assert_eq!(errors[1], errors[2]);
    }

    #[test]
    fn layout_errors() {
        for (text, format) in [
            ("", JobFileFormat::Toml),
            ("", JobFileFormat::Yaml),
            ("jobs: []\n", JobFileFormat::Yaml),
            ("[]", JobFileFormat::Json),
        ] {
            assert!(
                matches!(parse_job_file(text, format), Err(JobFileError::NoJobs)),
                "{text:?} as {format}"
            );
        }
        let err = parse_job_file("\"a job\"", JobFileFormat::Json).unwrap_err();
        assert!(matches!(err, JobFileError::Layout { .. }), "{err:?}");
        let err = parse_job_file("jobs: 3\n", JobFileFormat::Yaml).unwrap_err();
        assert!(err.to_string().contains("`jobs` must be a list"), "{err}");
        let err = parse_job_file("jobs: []\nname: a\n", JobFileFormat::Yaml).unwrap_err();
        assert!(err.to_string().contains("no other top-level keys"), "{err}");
    }

    #[test]
    fn a_job_as_the_server_shows_it_reads_as_its_spec() {
        let spec = "name: a\nschedule: {every: 5m}\nexecutor: {type: shell, command: 'true'}\n";
        let shown = format!(
            "{spec}created_at: 2030-01-01T00:00:00Z\nupdated_at: 2030-01-01T00:00:00Z\n\
             revision: 7\nnext_run_at: null\nlast_event_revision: 3\n\
             last_execution: {{id: x, status: failed}}\n"
        );
        assert_eq!(
            parse_job_file(&shown, JobFileFormat::Yaml).unwrap(),
            parse_job_file(spec, JobFileFormat::Yaml).unwrap()
        );
        // Only those: any other unknown field is still an error.
        let err = parse_job_file(&format!("{spec}revison: 7\n"), JobFileFormat::Yaml)
            .unwrap_err()
            .to_string();
        assert!(err.contains("revison"), "{err}");
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let text = "- name: a\n  schedule: {every: 1m}\n  executor: {type: shell, command: 'true'}\n- name: a\n  schedule: {manual: true}\n  executor: {type: shell, command: 'true'}\n";
        let err = parse_job_file(text, JobFileFormat::Yaml).unwrap_err();
        assert!(
            matches!(
                err,
                JobFileError::DuplicateName {
                    first: 1,
                    second: 2,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
