//! End-to-end: the everyday CLI and API on one node (re-applying jobs, a job's
//! logs, following a run, active executions, versions, output formats).

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{eventually, stderr, stdout, Server};
use serde_json::Value;

fn at(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .unwrap_or_else(|| panic!("not a time: {value}"))
        .with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reapplying_an_unchanged_after_job_keeps_its_instant() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), &[]).await;
    let file = tmp.path().join("once.toml");
    std::fs::write(
        &file,
        "[[job]]\nname = \"once\"\nschedule = { after = \"3s\" }\n\
         executor = { type = \"shell\", command = \"echo once\" }\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();

    let out = server.cli(&["job", "apply", "-f", file]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, created) = server.get("/v1/jobs/once").await;

    // --- a second apply of the same file, a second later, changes nothing
    tokio::time::sleep(Duration::from_secs(1)).await;
    let out = server.cli(&["job", "apply", "-f", file, "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let answer: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(answer[0]["job"]["revision"], created["revision"], "{answer}");
    assert_eq!(
        answer[0]["job"]["updated_at"], created["updated_at"],
        "{answer}"
    );

    // --- and the job fires at the instant of its creation plus 3s
    let run = eventually(Duration::from_secs(30), "the after job to fire", || async {
        server.history("once", 1).await.into_iter().next()
    })
    .await;
    assert_eq!(
        at(&run["scheduled_at"]),
        at(&created["created_at"]) + chrono::TimeDelta::seconds(3),
        "{run}\n{created}"
    );
}
