//! Workflows: internal jobs, runs started by hand and by the trigger, needs and
//! conditions, artifacts, concurrency, cancel and timeout.

use rota_core::workflow::{
    parse_workflow_value, ArtifactFile, ArtifactRecord, RunStatus, WorkflowRun, WorkflowSpec,
};

use super::*;

fn ci(concurrency: &str) -> WorkflowSpec {
    let spec = parse_workflow_value(&serde_json::json!({
        "name": "ci",
        "schedule": {"manual": true},
        "concurrency": concurrency,
        "jobs": {
            "lint": {"executor": {"type": "shell", "command": "make lint"}},
            "test": {"needs": ["lint"], "executor": {"type": "shell", "command": "make test"}},
            "coverage": {"needs": ["test"], "if": "always",
                         "executor": {"type": "shell", "command": "make coverage"}},
            "deploy": {"needs": ["test"], "executor": {"type": "shell", "command": "make deploy"}}
        }
    }))
    .expect("parses");
    spec.validate().expect("valid");
    spec
}

fn run(h: &mut Harness, id: u128) -> WorkflowRun {
    match h.run(Command::RunWorkflow {
        id: Ulid(id),
        workflow: "ci".into(),
    }) {
        Response::Run { run } => *run,
        other => panic!("unexpected {other:?}"),
    }
}

fn stored(h: &Harness, id: u128) -> WorkflowRun {
    h.store.get_run(Ulid(id)).unwrap().expect("run stored")
}

fn exec_of(run: &WorkflowRun, job: &str) -> Ulid {
    *run.jobs[job].executions.last().expect("job started")
}

/// Starts and ends the current attempt of `id` with `status`.
fn end(h: &mut Harness, id: Ulid, status: ExecStatus, artifacts: Vec<ArtifactRecord>) {
    let exec = h.store.get_execution(id).unwrap().expect("execution");
    h.run(Command::Start {
        starts: vec![rota_core::Start {
            id,
            attempt: exec.attempt,
            node: "n1".into(),
            at: t(100),
        }],
    });
    let mut f = finish(id.0, exec.attempt, status, 101);
    f.artifacts = artifacts;
    h.run(Command::Finish { finishes: vec![f] });
}

fn statuses(run: &WorkflowRun) -> Vec<(String, RunStatus)> {
    run.jobs
        .iter()
        .map(|(n, j)| (n.clone(), j.status))
        .collect()
}

#[test]
fn a_workflow_is_stored_with_its_internal_jobs_and_replaced_cleanly() {
    let mut h = Harness::new();
    let r = h.run(Command::PutWorkflow { spec: ci("queue") });
    assert!(matches!(r, Response::WorkflowPut { created: true, .. }));
    let names: Vec<String> = h
        .store
        .list_jobs()
        .unwrap()
        .into_iter()
        .map(|j| j.spec.name)
        .collect();
    assert_eq!(
        names,
        [
            "ci:@trigger",
            "ci:coverage",
            "ci:deploy",
            "ci:lint",
            "ci:test"
        ]
    );
    let mut smaller = ci("queue");
    smaller.jobs.remove("deploy");
    h.run(Command::PutWorkflow { spec: smaller });
    assert!(h.store.get_job("ci:deploy").unwrap().is_none());
    run(&mut h, 1);
    assert!(matches!(
        h.run(Command::DeleteWorkflow { name: "ci".into() }),
        Response::WorkflowDeleted { existed: true }
    ));
    assert!(h.store.list_jobs().unwrap().is_empty());
    assert!(h.store.get_run(Ulid(1)).unwrap().is_none());
    assert!(h.store.active_executions().unwrap().is_empty());
}

#[test]
fn a_run_follows_needs_and_conditions_to_its_end() {
    let mut h = Harness::new();
    h.run(Command::PutWorkflow { spec: ci("queue") });
    let r = run(&mut h, 1);
    assert_eq!(r.status, RunStatus::Running);
    assert_eq!(r.jobs["lint"].executions.len(), 1, "lint has no needs");
    assert!(r.jobs["test"].executions.is_empty());
    let lint = h.store.get_execution(exec_of(&r, "lint")).unwrap().unwrap();
    assert_eq!(
        (lint.job.as_str(), lint.trigger, lint.run),
        ("ci:lint", Trigger::Workflow, Some(Ulid(1)))
    );
    assert_eq!(lint.status, ExecStatus::Queued);

    end(&mut h, lint.id, ExecStatus::Succeeded, vec![]);
    let r = stored(&h, 1);
    assert_eq!(r.jobs["lint"].status, RunStatus::Succeeded);
    let test = exec_of(&r, "test");
    end(&mut h, test, ExecStatus::Failed, vec![]);
    let r = stored(&h, 1);
    assert_eq!(
        r.jobs["deploy"].status,
        RunStatus::Skipped,
        "deploy needs test to succeed"
    );
    assert!(r.jobs["deploy"]
        .error
        .as_deref()
        .unwrap_or("")
        .contains("test failed"));
    assert_eq!(
        r.jobs["coverage"].status,
        RunStatus::Queued,
        "coverage runs always"
    );
    let artifact = ArtifactRecord {
        name: "coverage".into(),
        job: "coverage".into(),
        node: "n1".into(),
        size: 3,
        files: vec![ArtifactFile {
            path: "index.html".into(),
            size: 3,
            sha256: "ab".into(),
        }],
    };
    end(
        &mut h,
        exec_of(&r, "coverage"),
        ExecStatus::Succeeded,
        vec![artifact.clone()],
    );
    let r = stored(&h, 1);
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(r.finished_at, Some(t(h.index as i64)));
    assert_eq!(r.artifacts, vec![artifact]);
    assert_eq!(
        statuses(&r),
        [
            ("coverage".to_string(), RunStatus::Succeeded),
            ("deploy".to_string(), RunStatus::Skipped),
            ("lint".to_string(), RunStatus::Succeeded),
            ("test".to_string(), RunStatus::Failed),
        ]
    );
    // Replaying the same run id changes nothing.
    assert_eq!(run(&mut h, 1), r);
}

#[test]
fn a_retried_job_stays_in_its_run_until_its_last_attempt() {
    let mut h = Harness::new();
    h.run(Command::PutWorkflow { spec: ci("queue") });
    let r = run(&mut h, 1);
    let lint = exec_of(&r, "lint");
    h.run(Command::Start {
        starts: vec![rota_core::Start {
            id: lint,
            attempt: 1,
            node: "n1".into(),
            at: t(5),
        }],
    });
    assert_eq!(stored(&h, 1).jobs["lint"].status, RunStatus::Running);
    let mut f = finish(lint.0, 1, ExecStatus::Failed, 6);
    f.retry_at = Some(t(7));
    h.run(Command::Finish { finishes: vec![f] });
    let r = stored(&h, 1);
    assert_eq!(r.jobs["lint"].status, RunStatus::Queued);
    assert!(
        r.jobs["test"].executions.is_empty(),
        "nothing moves on while a retry waits"
    );
    end(&mut h, lint, ExecStatus::Succeeded, vec![]);
    assert_eq!(stored(&h, 1).jobs["test"].executions.len(), 1);
}

#[test]
fn queued_runs_wait_for_the_active_one_and_skip_drops_them() {
    let mut h = Harness::new();
    h.run(Command::PutWorkflow { spec: ci("queue") });
    run(&mut h, 1);
    let second = run(&mut h, 2);
    assert_eq!(second.status, RunStatus::Queued);
    assert!(second.jobs.values().all(|j| j.executions.is_empty()));
    assert_eq!(
        run(&mut h, 4).status,
        RunStatus::Queued,
        "a second queued run"
    );
    let r = stored(&h, 1);
    end(&mut h, exec_of(&r, "lint"), ExecStatus::Failed, vec![]);
    // lint failed: test and deploy skipped, coverage waits for test, which was skipped.
    let r = stored(&h, 1);
    end(
        &mut h,
        exec_of(&r, "coverage"),
        ExecStatus::Succeeded,
        vec![],
    );
    assert_eq!(stored(&h, 1).status, RunStatus::Failed);
    let second = stored(&h, 2);
    assert_eq!(
        second.status,
        RunStatus::Running,
        "the queued run starts when the first ends"
    );
    assert_eq!(second.jobs["lint"].executions.len(), 1);
    assert_eq!(stored(&h, 4).status, RunStatus::Queued, "one run at a time");
    end(&mut h, exec_of(&second, "lint"), ExecStatus::Failed, vec![]);
    let coverage = exec_of(&stored(&h, 2), "coverage");
    end(&mut h, coverage, ExecStatus::Succeeded, vec![]);
    assert_eq!(stored(&h, 2).status, RunStatus::Failed);
    assert_eq!(
        stored(&h, 4).status,
        RunStatus::Running,
        "then the next one"
    );

    h.run(Command::PutWorkflow { spec: ci("skip") });
    let third = run(&mut h, 3);
    assert_eq!(third.status, RunStatus::Skipped);
    assert!(third
        .error
        .as_deref()
        .unwrap_or("")
        .contains("still active"));
}

#[test]
fn cancel_running_and_cancel_stop_what_runs_and_end_the_run() {
    let mut h = Harness::new();
    h.run(Command::PutWorkflow {
        spec: ci("cancel_running"),
    });
    let first = run(&mut h, 1);
    let lint = exec_of(&first, "lint");
    h.run(Command::Start {
        starts: vec![rota_core::Start {
            id: lint,
            attempt: 1,
            node: "n1".into(),
            at: t(5),
        }],
    });
    let second = run(&mut h, 2);
    assert_eq!(second.status, RunStatus::Running);
    let first = stored(&h, 1);
    assert_eq!(
        first.status,
        RunStatus::Running,
        "ends once its running job has stopped"
    );
    assert_eq!(first.ending, Some(RunStatus::Cancelled));
    assert!(
        h.store
            .get_execution(lint)
            .unwrap()
            .unwrap()
            .cancel_requested
    );
    h.run(Command::Finish {
        finishes: vec![finish(lint.0, 1, ExecStatus::Cancelled, 9)],
    });
    let first = stored(&h, 1);
    assert_eq!(first.status, RunStatus::Cancelled);
    assert!(
        first
            .jobs
            .values()
            .all(|j| j.status == RunStatus::Cancelled),
        "{first:?}"
    );

    // A queued execution is cancelled at once, and the run ends with the reason.
    let r = h.run(Command::CancelRun {
        id: Ulid(2),
        status: RunStatus::TimedOut,
        reason: Some("the run timed out after 30m".into()),
    });
    let Response::Run { run: second } = r else {
        panic!("{r:?}")
    };
    assert_eq!(second.status, RunStatus::TimedOut);
    assert_eq!(second.error.as_deref(), Some("the run timed out after 30m"));
    let lint2 = h
        .store
        .get_execution(exec_of(&second, "lint"))
        .unwrap()
        .unwrap();
    assert_eq!(lint2.status, ExecStatus::Cancelled);
    assert!(matches!(
        h.run(Command::CancelRun {
            id: Ulid(99),
            status: RunStatus::Cancelled,
            reason: None
        }),
        Response::NotFound { .. }
    ));
}

#[test]
fn the_trigger_job_starts_a_run_once_per_instant() {
    let mut h = Harness::new();
    let mut spec = ci("queue");
    spec.schedule = serde_json::from_value(serde_json::json!({"every": "1m"})).unwrap();
    h.run(Command::PutWorkflow { spec });
    for _ in 0..2 {
        h.run(Command::Fire {
            fires: vec![fire(7, "ci:@trigger", 60, Trigger::Schedule)],
        });
    }
    let trigger = h.store.get_execution(Ulid(7)).unwrap().unwrap();
    assert_eq!(
        trigger.status,
        ExecStatus::Succeeded,
        "the trigger itself does not run"
    );
    let runs = h.store.list_runs("ci", 10, None).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].id, runs[0].trigger), (Ulid(7), Trigger::Schedule));
}

#[test]
fn workflows_and_runs_survive_a_snapshot() {
    let mut source = Harness::new();
    source.run(Command::PutWorkflow { spec: ci("queue") });
    run(&mut source, 1);
    let mut bytes = Vec::new();
    source.store.export_snapshot(&mut bytes).unwrap();
    let target = Harness::new();
    target.store.import_snapshot(&mut bytes.as_slice()).unwrap();
    assert_eq!(
        target.store.workflows().unwrap(),
        source.store.workflows().unwrap()
    );
    assert_eq!(
        target.store.list_runs("ci", 10, None).unwrap(),
        source.store.list_runs("ci", 10, None).unwrap()
    );
    assert_eq!(target.store.active_runs().unwrap().len(), 1);
}

#[test]
fn a_job_removed_while_a_run_is_active_does_not_hold_the_run() {
    let mut h = Harness::new();
    h.run(Command::PutWorkflow { spec: ci("queue") });
    let r = run(&mut h, 1);
    let mut smaller = ci("queue");
    smaller.jobs.remove("deploy");
    h.run(Command::PutWorkflow { spec: smaller });
    let r2 = stored(&h, 1);
    assert_eq!(r2.jobs["deploy"].status, RunStatus::Skipped);
    assert!(r2.jobs["deploy"]
        .error
        .as_deref()
        .unwrap_or("")
        .contains("removed"));
    end(&mut h, exec_of(&r, "lint"), ExecStatus::Succeeded, vec![]);
    let test = exec_of(&stored(&h, 1), "test");
    end(&mut h, test, ExecStatus::Succeeded, vec![]);
    let coverage = exec_of(&stored(&h, 1), "coverage");
    end(&mut h, coverage, ExecStatus::Succeeded, vec![]);
    let done = stored(&h, 1);
    assert_eq!(
        done.status,
        RunStatus::Succeeded,
        "a removed job is skipped: {done:?}"
    );
}
