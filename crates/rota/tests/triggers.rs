//! End-to-end: event triggers (`schedule.on`) and `delete_after_run`, on the real
//! binary over HTTP.

mod common;

use std::time::Duration;

use common::{eventually, Server};
use serde_json::{json, Value};

fn shell(command: &str) -> Value {
    json!({"type": "shell", "command": command})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_trigger_specs_answer_400_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), &[]).await;
    let cases = [
        (
            json!({"schedule": {"on": {"event": "execution.finished", "job": "build", "status": "done"}}}),
            "schedule.on.status",
            "succeeded",
        ),
        (
            json!({"schedule": {"on": {"event": "deploy.finished", "env": "prod"}}}),
            "schedule.on.env",
            "accepted: data",
        ),
        (
            json!({"schedule": {"on": {"event": "Deploy!"}}}),
            "schedule.on.event",
            "dot-separated",
        ),
        (
            json!({"schedule": {"on": {"event": "deploy.finished"}}, "misfire": "run_all"}),
            "misfire",
            "does not apply",
        ),
        (
            json!({"schedule": {"every": "1m"}, "delete_after_run": true}),
            "delete_after_run",
            "`at` or `after`",
        ),
    ];
    for (fields, field, words) in cases {
        let mut body = fields.clone();
        body["executor"] = shell("true");
        let (status, answer) = server.send("PUT", "/v1/jobs/bad", Some(body)).await;
        assert_eq!(status, 400, "{fields}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(words), "{answer}");
    }
    let (status, _) = server.get("/v1/jobs/bad").await;
    assert_eq!(status, 404, "nothing was stored");

    // A good trigger is stored as written, with its event high-water mark.
    let body = json!({
        "schedule": {"on": {"event": "execution.finished", "job": "build", "status": "succeeded"}},
        "executor": shell("true"),
    });
    let (status, answer) = server.send("PUT", "/v1/jobs/after-build", Some(body)).await;
    assert_eq!(status, 201, "{answer}");
    let (_, job) = server.get("/v1/jobs/after-build").await;
    assert_eq!(job["schedule"]["on"]["status"], "succeeded", "{job}");
    assert!(job["last_event_revision"].as_u64().is_some(), "{job}");
    assert_eq!(job["next_run_at"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_after_run_job_runs_once_then_is_gone_with_its_history() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), &[]).await;
    let marks = tmp.path().join("marks.txt");
    let command = format!("echo \"$ROTA_EXECUTION_ID\" >> {}", marks.display());
    for (name, delete) in [("once", true), ("kept", false)] {
        let body = json!({
            "schedule": {"after": "1s"},
            "executor": shell(&command),
            "delete_after_run": delete,
        });
        let (status, answer) = server
            .send("PUT", &format!("/v1/jobs/{name}"), Some(body))
            .await;
        assert_eq!(status, 201, "{answer}");
    }

    // --- the kept job's run ends: its history shows it
    let kept = eventually(Duration::from_secs(20), "the kept job's run", || async {
        let h = server.history("kept", 10).await;
        h.first()
            .filter(|e| e["status"] == "succeeded")
            .map(|e| e["id"].as_str().unwrap_or_default().to_string())
    })
    .await;

    // --- the other one is deleted once its run ended
    eventually(Duration::from_secs(20), "the job to be deleted", || async {
        let (status, _) = server.get("/v1/jobs/once").await;
        (status == 404).then_some(())
    })
    .await;
    let text = std::fs::read_to_string(&marks).unwrap();
    let runs: Vec<&str> = text.lines().collect();
    assert_eq!(runs.len(), 2, "each job ran once: {runs:?}");
    let deleted_run = runs
        .iter()
        .find(|id| **id != kept)
        .expect("the deleted job's run");
    let (status, _) = server.get(&format!("/v1/executions/{deleted_run}")).await;
    assert_eq!(status, 404, "the history went with the job");
    let (status, job) = server.get("/v1/jobs/kept").await;
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["last_execution"]["id"], kept.as_str());
}
