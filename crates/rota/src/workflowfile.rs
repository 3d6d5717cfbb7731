//! Workflow files: what `rota workflow apply -f FILE` reads.
//!
//! A file holds one workflow or many, in TOML, YAML or JSON:
//!
//! - TOML: the fields of one workflow at the top level, or `[[workflow]]` tables;
//! - YAML: one workflow mapping, a sequence of them, or `workflows:` with a sequence;
//! - JSON: a workflow object, an array of them, or `{"workflows": [...]}`.
//!
//! As with job files, every format is first turned into a `serde_json::Value` (by
//! the readers of [`crate::jobfile`]) and each workflow is read and validated by
//! the same code the API uses, so a mistake is reported with the same field path
//! (`jobs.lint.needs`) whatever the format, after the workflow's position and name
//! and, for TOML, the line.

use std::collections::BTreeMap;
use std::fmt;

use rota_core::workflow::{parse_workflow_value, WorkflowSpec};
use rota_core::ValidationError;
use serde_json::Value;

use crate::jobfile::{
    at_line, json_document, kind_of, toml_document, toml_line, yaml_document, JobFileError,
    JobFileFormat, Step,
};

/// Which workflow of a file an error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowRef {
    /// 1-based position in the file.
    pub number: usize,
    /// The workflow's `name`, when it has one that is a string.
    pub name: Option<String>,
}

impl fmt::Display for WorkflowRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "workflow #{}", self.number)?;
        if let Some(name) = &self.name {
            write!(f, " {name:?}")?;
        }
        Ok(())
    }
}

/// Why a workflow file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowFileError {
    /// The text is not valid TOML, YAML or JSON (the reader's error says where).
    #[error(transparent)]
    Syntax(JobFileError),
    /// The document is neither a workflow, nor a list of them, nor `workflows`
    /// holding them.
    #[error("{message}")]
    Layout { message: String },
    #[error("the file holds no workflows; write one workflow, a list of workflows, or `workflows` (`[[workflow]]` tables in TOML)")]
    NoWorkflows,
    /// A workflow is malformed or invalid; `error.field` is the path inside it. The
    /// validation error is what the user must fix, so it is part of this message.
    #[error("{workflow}{}: {error}", at_line(line))]
    Workflow {
        workflow: WorkflowRef,
        line: Option<usize>,
        error: ValidationError,
    },
    #[error(
        "workflow #{second} has the same name {name:?} as workflow #{first}; names are unique"
    )]
    DuplicateName {
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
) -> Result<Vec<WorkflowSpec>, WorkflowFileError> {
    let document = match format {
        JobFileFormat::Toml => toml_document(text),
        JobFileFormat::Yaml => yaml_document(text),
        JobFileFormat::Json => json_document(text),
    }
    .map_err(WorkflowFileError::Syntax)?;
    let workflows = split_workflows(document)?;
    let mut specs = Vec::with_capacity(workflows.len());
    let mut numbers: BTreeMap<String, usize> = BTreeMap::new();
    for (i, (location, value)) in workflows.iter().enumerate() {
        let number = i + 1;
        let spec = parse_workflow_value(value)
            .and_then(|spec| spec.validate().map(|_| spec))
            .map_err(|error| WorkflowFileError::Workflow {
                workflow: WorkflowRef {
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
            return Err(WorkflowFileError::DuplicateName {
                name: spec.name,
                first,
                second: number,
            });
        }
        specs.push(spec);
    }
    tracing::debug!(%format, workflows = specs.len(), "workflow file read");
    Ok(specs)
}

const LIST_KEYS: [&str; 2] = ["workflows", "workflow"];

/// The workflows of a document, each with where it sits in the document. A
/// workflow's own `jobs` is a table, so only `workflows`/`workflow` list them.
fn split_workflows(document: Value) -> Result<Vec<(Vec<Step>, Value)>, WorkflowFileError> {
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
    let workflows = match document {
        Value::Null => Vec::new(),
        Value::Array(items) => listed(None, items),
        Value::Object(map) if LIST_KEYS.iter().any(|k| map.contains_key(*k)) => {
            let mut entries = map.into_iter();
            let Some((key, value)) = entries.next().filter(|_| entries.len() == 0) else {
                return Err(WorkflowFileError::Layout {
                    message: "a file that lists workflows under `workflows` (or `[[workflow]]` in TOML) takes no other top-level keys".to_owned(),
                });
            };
            match value {
                Value::Array(items) => listed(Some(&key), items),
                Value::Object(_) => vec![(vec![Step::Key(key)], value)],
                other => {
                    return Err(WorkflowFileError::Layout {
                        message: format!(
                            "`{key}` must be a list of workflows, not {}",
                            kind_of(&other)
                        ),
                    })
                }
            }
        }
        Value::Object(map) if map.is_empty() => Vec::new(),
        workflow @ Value::Object(_) => vec![(Vec::new(), workflow)],
        other => {
            return Err(WorkflowFileError::Layout {
                message: format!(
                    "expected a workflow, a list of workflows, or `workflows`; the file holds {}",
                    kind_of(&other)
                ),
            })
        }
    };
    if workflows.is_empty() {
        return Err(WorkflowFileError::NoWorkflows);
    }
    Ok(workflows)
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

    fn workflow_error(text: &str, format: JobFileFormat) -> (WorkflowRef, Option<usize>, String) {
        match parse_workflow_file(text, format) {
            Err(WorkflowFileError::Workflow {
                workflow,
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
    fn layout_and_duplicates() {
        assert!(matches!(
            parse_workflow_file("", JobFileFormat::Yaml),
            Err(WorkflowFileError::NoWorkflows)
        ));
        assert!(matches!(
            parse_workflow_file("5", JobFileFormat::Json),
            Err(WorkflowFileError::Layout { .. })
        ));
        assert!(matches!(
            parse_workflow_file("workflows: 3", JobFileFormat::Yaml),
            Err(WorkflowFileError::Layout { .. })
        ));
        assert!(matches!(
            parse_workflow_file("{nope", JobFileFormat::Json),
            Err(WorkflowFileError::Syntax(_))
        ));
        let twice = format!(
            "- {}\n- {}",
            CI_YAML.trim().replace('\n', "\n  "),
            CI_YAML.trim().replace('\n', "\n  ")
        );
        assert!(matches!(
            parse_workflow_file(&twice, JobFileFormat::Yaml),
            Err(WorkflowFileError::DuplicateName {
                first: 1,
                second: 2,
                ..
            })
        ));
    }
}
