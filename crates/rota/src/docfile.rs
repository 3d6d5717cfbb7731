//! Resource files other than job files: what `rota workflow apply -f FILE` and
//! `rota targets apply -f FILE` read.
//!
//! A file holds one document or many, in TOML, YAML or JSON:
//!
//! - TOML: the fields of one document at the top level, or `[[workflow]]` (`[[targets]]`) tables;
//! - YAML: one mapping, a sequence of them, or `workflows:` (`targets:`) with a sequence;
//! - JSON: an object, an array of them, or `{"workflows": [...]}`.
//!
//! As with job files, every format is first turned into a `serde_json::Value` (by
//! the readers of [`crate::jobfile`]) and each document is read and validated by
//! the same code the API uses, so a mistake is reported with the same field path
//! (`jobs.lint.needs`) whatever the format, after the document's position and name
//! and, for TOML, the line.

use std::collections::BTreeMap;
use std::fmt;

use rota_core::targets::{parse_target_set_value, TargetSetSpec};
use rota_core::workflow::{parse_workflow_value, WorkflowSpec};
use rota_core::ValidationError;
use serde_json::Value;

use crate::jobfile::{
    at_line, json_document, kind_of, toml_document, toml_line, yaml_document, JobFileError,
    JobFileFormat, Step,
};

/// A kind of document: how it is named, listed, read and told apart.
pub struct DocKind<T> {
    /// `workflow`: one of them, and the TOML table name (`[[workflow]]`).
    pub one: &'static str,
    /// `workflows`: the key that lists them.
    pub many: &'static str,
    /// Reads and validates one document.
    pub parse: fn(&Value) -> Result<T, ValidationError>,
    /// Its unique name.
    pub name: fn(&T) -> &str,
}

/// Workflows (`rota workflow apply`).
pub const WORKFLOWS: DocKind<WorkflowSpec> = DocKind {
    one: "workflow",
    many: "workflows",
    parse: |value| {
        let spec = parse_workflow_value(value)?;
        spec.validate()?;
        Ok(spec)
    },
    name: |spec| &spec.name,
};

/// Target sets (`rota targets apply`).
pub const TARGET_SETS: DocKind<TargetSetSpec> = DocKind {
    one: "target set",
    many: "targets",
    parse: parse_target_set_value,
    name: |spec| &spec.name,
};

/// Which document of a file an error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocRef {
    /// `workflow`, `target set`.
    pub kind: &'static str,
    /// 1-based position in the file.
    pub number: usize,
    /// The document's `name`, when it has one that is a string.
    pub name: Option<String>,
}

impl fmt::Display for DocRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} #{}", self.kind, self.number)?;
        if let Some(name) = &self.name {
            write!(f, " {name:?}")?;
        }
        Ok(())
    }
}

/// Why a file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum DocFileError {
    /// The text is not valid TOML, YAML or JSON (the reader's error says where).
    #[error(transparent)]
    Syntax(JobFileError),
    /// The document is neither one, nor a list of them, nor the list key holding them.
    #[error("{message}")]
    Layout { message: String },
    #[error("the file holds no {many}; write one {one}, a list of {many}, or `{many}` (`[[{one}]]` tables in TOML)")]
    Empty {
        one: &'static str,
        many: &'static str,
    },
    /// A document is malformed or invalid; `error.field` is the path inside it. The
    /// validation error is what the user must fix, so it is part of this message.
    #[error("{doc}{}: {error}", at_line(line))]
    Invalid {
        doc: DocRef,
        line: Option<usize>,
        error: ValidationError,
    },
    #[error("{kind} #{second} has the same name {name:?} as {kind} #{first}; names are unique")]
    DuplicateName {
        kind: &'static str,
        name: String,
        first: usize,
        second: usize,
    },
}

/// Reads every workflow of a file and validates each; the first problem is
/// reported.
pub fn parse_workflow_file(
    text: &str,
    format: JobFileFormat,
) -> Result<Vec<WorkflowSpec>, DocFileError> {
    parse_doc_file(text, format, &WORKFLOWS)
}

/// Reads every target set of a file and validates each.
pub fn parse_target_set_file(
    text: &str,
    format: JobFileFormat,
) -> Result<Vec<TargetSetSpec>, DocFileError> {
    parse_doc_file(text, format, &TARGET_SETS)
}

/// Reads every document of a file and validates each; the first problem is
/// reported.
pub fn parse_doc_file<T>(
    text: &str,
    format: JobFileFormat,
    kind: &DocKind<T>,
) -> Result<Vec<T>, DocFileError> {
    let document = match format {
        JobFileFormat::Toml => toml_document(text),
        JobFileFormat::Yaml => yaml_document(text),
        JobFileFormat::Json => json_document(text),
    }
    .map_err(DocFileError::Syntax)?;
    let docs = split_documents(document, kind)?;
    let mut specs = Vec::with_capacity(docs.len());
    let mut numbers: BTreeMap<String, usize> = BTreeMap::new();
    for (i, (location, value)) in docs.iter().enumerate() {
        let number = i + 1;
        let spec = (kind.parse)(value).map_err(|error| DocFileError::Invalid {
            doc: DocRef {
                kind: kind.one,
                number,
                name: value.get("name").and_then(Value::as_str).map(str::to_owned),
            },
            line: match format {
                JobFileFormat::Toml => toml_line(text, location, &error.field),
                JobFileFormat::Yaml | JobFileFormat::Json => None,
            },
            error,
        })?;
        if let Some(first) = numbers.insert((kind.name)(&spec).to_owned(), number) {
            return Err(DocFileError::DuplicateName {
                kind: kind.one,
                name: (kind.name)(&spec).to_owned(),
                first,
                second: number,
            });
        }
        specs.push(spec);
    }
    tracing::debug!(%format, kind = kind.many, documents = specs.len(), "file read");
    Ok(specs)
}

/// The documents of a file, each with where it sits in the file. A document's own
/// tables (a workflow's `jobs`) are not lists of documents; only the list keys
/// (`workflows`/`workflow`) list them.
fn split_documents<T>(
    document: Value,
    kind: &DocKind<T>,
) -> Result<Vec<(Vec<Step>, Value)>, DocFileError> {
    let (one, many) = (kind.one, kind.many);
    let toml_key = one.replace(' ', "_");
    let list_keys = [many, one, toml_key.as_str()];
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
    let docs = match document {
        Value::Null => Vec::new(),
        Value::Array(items) => listed(None, items),
        Value::Object(map) if list_keys.iter().any(|k| map.contains_key(*k)) => {
            let mut entries = map.into_iter();
            let Some((key, value)) = entries.next().filter(|_| entries.len() == 0) else {
                return Err(DocFileError::Layout {
                    message: format!("a file that lists {many} under `{many}` (or `[[{toml_key}]]` in TOML) takes no other top-level keys"),
                });
            };
            match value {
                Value::Array(items) => listed(Some(&key), items),
                Value::Object(_) => vec![(vec![Step::Key(key)], value)],
                other => {
                    return Err(DocFileError::Layout {
                        message: format!(
                            "`{key}` must be a list of {many}, not {}",
                            kind_of(&other)
                        ),
                    })
                }
            }
        }
        Value::Object(map) if map.is_empty() => Vec::new(),
        doc @ Value::Object(_) => vec![(Vec::new(), doc)],
        other => {
            return Err(DocFileError::Layout {
                message: format!(
                    "expected a {one}, a list of {many}, or `{many}`; the file holds {}",
                    kind_of(&other)
                ),
            })
        }
    };
    if docs.is_empty() {
        return Err(DocFileError::Empty { one, many });
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CI_YAML: &str = "
name: ci
schedule: {manual: true}
jobs:
  a:
    executor: {type: shell, command: 'true'}
  b:
    needs: [a]
    executor: {type: shell, command: echo hi}
";

    fn names(specs: &[WorkflowSpec]) -> Vec<&str> {
        specs.iter().map(|s| s.name.as_str()).collect()
    }

    fn workflow_error(text: &str, format: JobFileFormat) -> (DocRef, Option<usize>, String) {
        match parse_workflow_file(text, format) {
            Err(DocFileError::Invalid {
                doc: workflow,
                line,
                error,
            }) => (workflow, line, error.field),
            other => panic!("expected a workflow error, got {other:?}"),
        }
    }

    #[test]
    fn the_example_workflow_parses_and_validates() {
        let text = include_str!("../../../examples/workflow.yaml");
        let specs = parse_workflow_file(text, JobFileFormat::Yaml).expect("examples/workflow.yaml");
        assert_eq!(names(&specs), ["ci"]);
        assert_eq!(specs[0].topological_order(), ["lint", "test", "summary"]);
    }

    #[test]
    fn yaml_one_many_and_workflows_key() {
        let specs = parse_workflow_file(CI_YAML, JobFileFormat::Yaml).unwrap();
        assert_eq!(names(&specs), ["ci"]);
        assert_eq!(specs[0].jobs["b"].needs, ["a"]);
        let many = format!("workflows:\n- {}", CI_YAML.trim().replace('\n', "\n  "));
        let specs = parse_workflow_file(&many, JobFileFormat::Yaml).unwrap();
        assert_eq!(names(&specs), ["ci"]);
    }

    #[test]
    fn toml_tables_and_lines() {
        let text = r#"
[[workflow]]
name = "ci"
schedule = { manual = true }

[workflow.jobs.a]
executor = { type = "shell", command = "true" }
needs = ["b"]

[workflow.jobs.b]
executor = { type = "shell", command = "true" }
needs = ["a"]
"#;
        let (workflow, line, field) = workflow_error(text, JobFileFormat::Toml);
        assert_eq!(workflow.name.as_deref(), Some("ci"));
        assert_eq!(field, "jobs.a.needs");
        assert_eq!(line, Some(8));
    }

    #[test]
    fn json_cycles_and_unknown_needs_name_the_job() {
        let text = r#"[{"name": "ci", "schedule": {"manual": true}, "jobs": {
            "a": {"executor": {"type": "shell", "command": "true"}, "needs": ["zz"]}}}]"#;
        let (_, _, field) = workflow_error(text, JobFileFormat::Json);
        assert_eq!(field, "jobs.a.needs[0]");
        let err = parse_workflow_file(text, JobFileFormat::Json)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("workflow #1 \"ci\": jobs.a.needs[0]: "),
            "{err}"
        );
    }

    #[test]
    fn the_example_target_sets_parse_and_validate() {
        let text = include_str!("../../../examples/targets.yaml");
        let sets = parse_target_set_file(text, JobFileFormat::Yaml).expect("examples/targets.yaml");
        assert_eq!(
            sets.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["gateways", "batch-hosts"]
        );
    }

    #[test]
    fn target_set_files_in_every_format() {
        let yaml = "targets:\n- name: gw\n  provider: static\n  groups: [{targets: ['a:1']}]\n- name: files\n  provider: file\n  files: [sd/*.json]\n";
        let sets = parse_target_set_file(yaml, JobFileFormat::Yaml).unwrap();
        assert_eq!(
            sets.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["gw", "files"]
        );
        let toml = "[[target_set]]\nname = \"gw\"\nprovider = \"dns\"\nnames = [\"gw.local\"]\nrecord = \"A\"\n";
        let err = parse_target_set_file(toml, JobFileFormat::Toml)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("target set #1 \"gw\" (line 1): port: required for A"),
            "{err}"
        );
        let json = r#"{"name": "gw", "provider": "static", "groups": [{"targets": ["a:1"], "lables": {}}]}"#;
        let err = parse_target_set_file(json, JobFileFormat::Json)
            .unwrap_err()
            .to_string();
        assert!(err.contains("groups[0]") && err.contains("lables"), "{err}");
    }

    #[test]
    fn layout_and_duplicates() {
        assert!(matches!(
            parse_workflow_file("", JobFileFormat::Yaml),
            Err(DocFileError::Empty { .. })
        ));
        assert!(matches!(
            parse_workflow_file("5", JobFileFormat::Json),
            Err(DocFileError::Layout { .. })
        ));
        assert!(matches!(
            parse_workflow_file("workflows: 3", JobFileFormat::Yaml),
            Err(DocFileError::Layout { .. })
        ));
        assert!(matches!(
            parse_workflow_file("{nope", JobFileFormat::Json),
            Err(DocFileError::Syntax(_))
        ));
        let twice = format!(
            "- {}\n- {}",
            CI_YAML.trim().replace('\n', "\n  "),
            CI_YAML.trim().replace('\n', "\n  ")
        );
        assert!(matches!(
            parse_workflow_file(&twice, JobFileFormat::Yaml),
            Err(DocFileError::DuplicateName {
                first: 1,
                second: 2,
                ..
            })
        ));
    }
}
