use std::collections::BTreeSet;

use chrono::Utc;
use rota_core::{ExecStatus, ExecutorSpec, RecordSpec};
use tokio_util::sync::CancellationToken;
use ulid::Ulid;

use super::{record_line, RecordExecutor};
use crate::{test_request, Executor, OutputBuffer, RunOutcome};

fn record_spec(path: &std::path::Path) -> ExecutorSpec {
    ExecutorSpec::Record(RecordSpec {
        path: path.to_string_lossy().into_owned(),
    })
}

#[tokio::test]
async fn appends_one_line_per_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("records");
    let output = OutputBuffer::new(1000);
    let mut req = test_request(record_spec(&path), None);
    req.attempt = 2;
    let before = Utc::now();
    let outcome = RecordExecutor
        .run(req.clone(), output.clone(), CancellationToken::new())
        .await;
    let after = Utc::now();
    assert_eq!(outcome, RunOutcome::succeeded());

    let text = std::fs::read_to_string(&path).expect("records");
    assert_eq!(String::from_utf8_lossy(&output.snapshot().0), text);
    let fields: Vec<&str> = text.trim_end_matches('\n').split(' ').collect();
    assert_eq!(fields.len(), 5, "{text:?}");
    assert_eq!(fields[0], "test-job");
    assert_eq!(fields[1], req.execution_id.to_string());
    assert_eq!(fields[2], "2");
    // 2026-11-22T10:00:01Z
    assert_eq!(fields[3], "1795341601000000000");
    let handed: i128 = fields[4].parse().expect("handed_at");
    let ns = |t: chrono::DateTime<Utc>| {
        i128::from(t.timestamp()) * 1_000_000_000 + i128::from(t.timestamp_subsec_nanos())
    };
    assert!(ns(before) <= handed && handed <= ns(after), "{text:?}");
}

#[test]
fn line_format() {
    let req = test_request(ExecutorSpec::Record(RecordSpec { path: "x".into() }), None);
    let handed = req.scheduled_at + chrono::Duration::nanoseconds(1_500);
    assert_eq!(
        record_line(&req, handed),
        format!(
            "test-job {} 1 1795341601000000000 1795341601000001500\n",
            req.execution_id
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_never_interleave() {
    const RUNS: u64 = 200;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("records");
    let runs: Vec<_> = (0..RUNS)
        .map(|i| {
            let mut req = test_request(record_spec(&path), None);
            req.execution_id = Ulid::from_parts(1_700_000_000_000, u128::from(i));
            // Names of varied length make a torn line visible.
            req.job = format!("job-{}", "x".repeat((i % 40) as usize));
            tokio::spawn(RecordExecutor.run(req, OutputBuffer::new(100), CancellationToken::new()))
        })
        .collect();
    for run in runs {
        assert_eq!(run.await.expect("run task"), RunOutcome::succeeded());
    }

    let text = std::fs::read_to_string(&path).expect("records");
    assert!(text.ends_with('\n'));
    let mut ids = BTreeSet::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields.len(), 5, "torn line {line:?}");
        let id: Ulid = fields[1].parse().expect("execution id");
        let i = u64::try_from(id.random()).expect("small");
        assert_eq!(fields[0], format!("job-{}", "x".repeat((i % 40) as usize)));
        assert_eq!(fields[2], "1");
        fields[3].parse::<i128>().expect("scheduled_at");
        fields[4].parse::<i128>().expect("handed_at");
        assert!(ids.insert(id), "duplicate line {line:?}");
    }
    assert_eq!(ids.len() as u64, RUNS);
}

#[tokio::test]
async fn unwritable_path_fails_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("missing-dir").join("records");
    let outcome = RecordExecutor
        .run(
            test_request(record_spec(&path), None),
            OutputBuffer::new(100),
            CancellationToken::new(),
        )
        .await;
    assert_eq!(outcome.status, ExecStatus::Failed);
    let error = outcome.error.unwrap_or_default();
    assert!(
        error.starts_with(&format!(
            "opening {:?} for appending: ",
            path.display().to_string()
        )),
        "{error}"
    );
    assert!(error.contains("os error 2"), "{error}");
}

#[tokio::test]
async fn cancelled_before_start_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("records");
    let cancel = CancellationToken::new();
    cancel.cancel();
    let outcome = RecordExecutor
        .run(
            test_request(record_spec(&path), None),
            OutputBuffer::new(100),
            cancel,
        )
        .await;
    assert_eq!(outcome, RunOutcome::cancelled());
    assert!(!path.exists());
}
