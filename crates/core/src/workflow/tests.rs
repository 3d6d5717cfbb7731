use serde_json::json;

use super::*;

fn ci() -> Value {
    json!({
        "name": "ci",
        "schedule": {"manual": true},
        "env": {"RAILS_ENV": "test"},
        "jobs": {
            "lint": {"executor": {"type": "shell", "command": "make lint"}},
            "test": {"needs": ["lint"],
                     "services": [{"name": "db", "command": "pg_ctl start", "ready": {"tcp": "127.0.0.1:5432"}}],
                     "steps": [{"name": "migrate", "executor": {"type": "shell", "command": "make migrate"}},
                               {"name": "rspec", "executor": {"type": "shell", "command": "make test"}}]},
            "coverage": {"needs": ["test"], "if": "always",
                         "executor": {"type": "shell", "command": "make coverage"},
                         "artifacts": [{"name": "coverage", "path": "coverage/"}]}
        }
    })
}

fn parse(v: &Value) -> Result<WorkflowSpec, ValidationError> {
    let spec = parse_workflow_value(v)?;
    spec.validate()?;
    Ok(spec)
}

fn error_of(mut v: Value, edit: impl FnOnce(&mut Value)) -> ValidationError {
    edit(&mut v);
    parse(&v).expect_err("refused")
}

#[test]
fn the_design_example_is_accepted_and_ordered() {
    let spec = parse(&ci()).expect("valid");
    assert_eq!(spec.topological_order(), ["lint", "test", "coverage"]);
    assert_eq!(spec.concurrency, Concurrency::Queue);
    let jobs = spec.internal_jobs();
    let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["ci:@trigger", "ci:coverage", "ci:lint", "ci:test"]);
    let ExecutorSpec::WorkflowJob(test) = &jobs[3].executor else {
        panic!("workflow_job executor expected");
    };
    assert_eq!(test.steps.len(), 2);
    assert_eq!(test.env.get("RAILS_ENV").map(String::as_str), Some("test"));
    assert_eq!(split_job_name("ci:test"), Some(("ci", "test")));
    assert_eq!(split_job_name("plain"), None);
}

#[test]
fn unknown_needs_and_cycles_name_the_job() {
    let err = error_of(ci(), |v| v["jobs"]["test"]["needs"] = json!(["nope"]));
    assert_eq!(err.field, "jobs.test.needs[0]");
    assert!(err.message.contains("\"nope\""), "{err}");
    let err = error_of(ci(), |v| v["jobs"]["lint"]["needs"] = json!(["coverage"]));
    assert_eq!(err.field, "jobs.coverage.needs");
    assert!(err.message.contains("cycle"), "{err}");
    assert!(err.message.contains("lint"), "{err}");
    let err = error_of(ci(), |v| v["jobs"]["lint"]["needs"] = json!(["lint"]));
    assert!(err.field.starts_with("jobs.lint"), "{err}");
}

#[test]
fn a_job_takes_an_executor_or_steps() {
    let err = error_of(ci(), |v| {
        v["jobs"]["test"]["executor"] = json!({"type": "shell", "command": "x"})
    });
    assert_eq!(err.field, "jobs.test.steps");
    let err = error_of(ci(), |v| v["jobs"]["lint"] = json!({}));
    assert_eq!(err.field, "jobs.lint.executor");
    let err =
        error_of(
            ci(),
            |v| {
                v["jobs"]["lint"]["executor"] =
                    json!({"type": "workflow_job", "workflow": "x", "job": "y", "steps": []})
            },
        );
    assert_eq!(err.field, "jobs.lint.executor.type");
}

#[test]
fn bad_fields_are_named() {
    let err = error_of(ci(), |v| {
        v["jobs"]["coverage"]["artifacts"][0]["path"] = json!("../x")
    });
    assert_eq!(err.field, "jobs.coverage.artifacts[0].path");
    let err = error_of(ci(), |v| {
        v["jobs"]["test"]["services"][0]["ready"] = json!({"tcp": "nope"})
    });
    assert_eq!(err.field, "jobs.test.services[0].ready.tcp");
    let err = error_of(ci(), |v| v["env"] = json!({"1X": "y"}));
    assert_eq!(err.field, "env");
    let err = error_of(ci(), |v| v["jobs"]["lint"]["if"] = json!("always"));
    assert_eq!(err.field, "jobs.lint.if");
    let err = error_of(ci(), |v| v["jobs"] = json!({}));
    assert_eq!(err.field, "jobs");
    let err = error_of(ci(), |v| v["schedule"] = json!({"after": "1m"}));
    assert_eq!(err.field, "schedule");
    let err = error_of(ci(), |v| v["concurrency"] = json!("sometimes"));
    assert_eq!(err.field, "concurrency");
    let err = error_of(ci(), |v| {
        v["jobs"]["lint"]["artifacts"] = json!([{"name": "coverage", "path": "x"}])
    });
    assert_eq!(err.field, "jobs.lint.artifacts[0].name");
    let err = error_of(ci(), |v| v["jobs"]["lint"]["bogus"] = json!(1));
    assert!(err.field.starts_with("jobs.lint"), "{err}");
}

fn run_with(statuses: &[(&str, RunStatus, bool)]) -> WorkflowRun {
    WorkflowRun {
        id: Ulid::from_parts(1, 1),
        workflow: "ci".into(),
        workflow_revision: 1,
        status: RunStatus::Running,
        trigger: crate::Trigger::Manual,
        created_at: chrono::DateTime::UNIX_EPOCH,
        started_at: None,
        finished_at: None,
        deadline: None,
        event_revision: None,
        ending: None,
        error: None,
        jobs: statuses
            .iter()
            .map(|(name, status, started)| {
                let executions = if *started {
                    vec![Ulid::from_parts(2, 2)]
                } else {
                    vec![]
                };
                (
                    name.to_string(),
                    RunJob {
                        status: *status,
                        executions,
                        error: None,
                    },
                )
            })
            .collect(),
        artifacts: vec![],
    }
}

#[test]
fn ready_jobs_follow_needs_and_conditions() {
    let spec = parse(&ci()).expect("valid");
    use RunStatus::*;
    let run = run_with(&[
        ("lint", Queued, false),
        ("test", Queued, false),
        ("coverage", Queued, false),
    ]);
    assert_eq!(ready_jobs(&spec, &run), (vec!["lint".to_string()], vec![]));
    // lint failed: test is skipped; coverage waits for test to end.
    let run = run_with(&[
        ("lint", Failed, true),
        ("test", Queued, false),
        ("coverage", Queued, false),
    ]);
    let (start, skip) = ready_jobs(&spec, &run);
    assert!(start.is_empty());
    assert_eq!(skip.len(), 1);
    assert_eq!(skip[0].0, "test");
    assert!(skip[0].1.contains("lint failed"), "{}", skip[0].1);
    // test ended skipped: coverage (always) runs.
    let run = run_with(&[
        ("lint", Failed, true),
        ("test", Skipped, false),
        ("coverage", Queued, false),
    ]);
    assert_eq!(
        ready_jobs(&spec, &run),
        (vec!["coverage".to_string()], vec![])
    );
    let run = run_with(&[
        ("lint", Succeeded, true),
        ("test", Failed, true),
        ("coverage", Succeeded, true),
    ]);
    assert_eq!(final_status(&run), Failed);
    let run = run_with(&[("lint", Succeeded, true), ("test", Skipped, false)]);
    assert_eq!(final_status(&run), Succeeded);
}

#[test]
fn long_errors_are_cut_on_a_character_boundary() {
    let long = "é".repeat(MAX_ERROR_BYTES);
    let cut = truncate_error(&long);
    assert!(cut.len() <= MAX_ERROR_BYTES);
    assert!(cut.ends_with('…'));
    assert_eq!(truncate_error("short"), "short");
}
