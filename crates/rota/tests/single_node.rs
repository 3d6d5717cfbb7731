//! End-to-end: the real binary on one node, driven over HTTP and through the CLI.

mod common;

use std::time::Duration;

use common::{eventually, stderr, stdout, Server};
use serde_json::{json, Value};

fn statuses(history: &[Value]) -> Vec<String> {
    history
        .iter()
        .map(|e| e["status"].as_str().unwrap_or("?").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_from_a_toml_file_run_every_second_with_output_and_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), &[]).await;
    let marks = tmp.path().join("marks.txt");
    let file = tmp.path().join("jobs.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[[job]]
name = "tick"
schedule = {{ cron = "*/1 * * * * *" }}
executor = {{ type = "shell", command = "echo tick $ROTA_SCHEDULED_AT; echo \"$ROTA_SCHEDULED_AT\" >> {marks}" }}

[[job]]
name = "fails"
schedule = {{ manual = true }}
executor = {{ type = "shell", command = "echo to-stderr >&2; exit 3" }}
"#,
            marks = marks.display()
        ),
    )
    .unwrap();

    // --- apply through the CLI
    let out = server.cli(&["job", "apply", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "apply failed: {}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("tick") && text.contains("fails"), "{text}");

    // --- the every-second job runs, once per second, with successive instants
    let history = eventually(Duration::from_secs(20), "3 successful ticks", || async {
        let h = server.history("tick", 50).await;
        let ok: Vec<Value> = h
            .into_iter()
            .filter(|e| e["status"] == "succeeded")
            .collect();
        (ok.len() >= 3).then_some(ok)
    })
    .await;
    let mut instants: Vec<String> = history
        .iter()
        .map(|e| e["scheduled_at"].as_str().unwrap().to_string())
        .collect();
    instants.sort();
    let parsed: Vec<chrono::DateTime<chrono::Utc>> =
        instants.iter().map(|s| s.parse().unwrap()).collect();
    for pair in parsed.windows(2) {
        assert_eq!(
            (pair[1] - pair[0]).num_milliseconds() % 1000,
            0,
            "{instants:?}"
        );
        assert!(pair[1] > pair[0], "{instants:?}");
    }
    for e in &history {
        assert_eq!(e["exit_code"], 0, "{e}");
        assert_eq!(e["trigger"], "schedule", "{e}");
    }

    // --- output of a finished execution
    let id = history[0]["id"].as_str().unwrap().to_string();
    let (status, output) = server
        .get_text(&format!("/v1/executions/{id}/output"))
        .await;
    assert_eq!(status, 200);
    assert!(output.starts_with("tick "), "output was {output:?}");
    let out = server.cli(&["exec", "logs", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("tick "), "{}", stdout(&out));

    // --- a failing manual job: exit code and stderr captured
    let (status, exec) = server.send("POST", "/v1/jobs/fails/run", None).await;
    assert_eq!(status, 202, "{exec}");
    let id = exec["id"].as_str().unwrap().to_string();
    let done = eventually(Duration::from_secs(20), "manual run to fail", || async {
        let (_, e) = server.get(&format!("/v1/executions/{id}")).await;
        (e["status"] == "failed").then_some(e)
    })
    .await;
    assert_eq!(done["exit_code"], 3, "{done}");
    assert_eq!(done["trigger"], "manual", "{done}");
    let (_, output) = server
        .get_text(&format!("/v1/executions/{id}/output"))
        .await;
    assert!(output.contains("to-stderr"), "{output:?}");

    // --- /metrics counts what the records say. With `tick` paused the records stop
    // changing; the leader's telemetry worker counts from the store's events a
    // moment after they were applied, so wait until both agree exactly.
    let (status, _) = server.send("POST", "/v1/jobs/tick/pause", None).await;
    assert_eq!(status, 200);
    let metrics = eventually(
        Duration::from_secs(10),
        "metrics to match the records",
        || async {
            let (_, records) = server.get("/v1/jobs/tick/executions?limit=1000").await;
            let succeeded = records["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["status"] == "succeeded")
                .count();
            let (_, text) = server.get_text("/metrics").await;
            let want = [
                format!("rota_executions_total{{job=\"tick\",status=\"succeeded\"}} {succeeded}"),
                "rota_executions_total{job=\"fails\",status=\"failed\"} 1".to_string(),
            ];
            want.iter()
                .all(|line| text.lines().any(|l| l == line))
                .then_some(text)
        },
    )
    .await;
    let lag_count = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("rota_schedule_lag_seconds_count ")?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0);
    assert!(lag_count >= 3, "{metrics}");
    assert!(
        metrics.contains("rota_job_last_success_timestamp_seconds{job=\"tick\"}"),
        "{metrics}"
    );

    // --- the file the job wrote has one line per instant, no duplicates
    let lines = std::fs::read_to_string(&marks).unwrap();
    let mut seen = std::collections::HashSet::new();
    for line in lines.lines() {
        assert!(seen.insert(line.to_string()), "instant {line} ran twice");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_execution_can_be_followed_and_cancelled() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), &[]).await;
    let (status, body) = server
        .send(
            "PUT",
            "/v1/jobs/long",
            Some(json!({
                "schedule": {"manual": true},
                "executor": {"type": "shell", "command": "echo started; exec sleep 600"}
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    let out = server.cli(&["job", "run", "long"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, history) = server.get("/v1/jobs/long/executions").await;
    let history = history
        .as_array()
        .cloned()
        .unwrap_or_else(|| history["items"].as_array().cloned().unwrap());
    let id = history[0]["id"].as_str().unwrap().to_string();

    // --- live output while it runs
    eventually(
        Duration::from_secs(20),
        "output 'started' while running",
        || async {
            let (_, e) = server.get(&format!("/v1/executions/{id}")).await;
            let (_, out) = server
                .get_text(&format!("/v1/executions/{id}/output"))
                .await;
            (e["status"] == "running" && out.contains("started")).then_some(())
        },
    )
    .await;

    // --- a follower of the output sees the end when the run is cancelled
    let follow = {
        let url = format!("{}/v1/executions/{id}/output?follow=true", server.url);
        tokio::spawn(async move {
            let resp = common::client().get(url).send().await.unwrap();
            resp.text().await.unwrap()
        })
    };
    let out = server.cli(&["exec", "cancel", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let done = eventually(Duration::from_secs(20), "cancelled", || async {
        let (_, e) = server.get(&format!("/v1/executions/{id}")).await;
        e["status"]
            .as_str()
            .filter(|s| *s != "running")
            .map(|_| e.clone())
    })
    .await;
    assert_eq!(done["status"], "cancelled", "{done}");
    let followed = tokio::time::timeout(Duration::from_secs(20), follow)
        .await
        .expect("follow ends when the run ends")
        .unwrap();
    assert!(followed.contains("started"), "{followed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_specs_are_rejected_with_the_field_named() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), &[]).await;
    let cases = [
        (
            json!({"schedule": {"cron": "0 25 * * *"}, "executor": {"type": "shell", "command": "true"}}),
            "schedule.cron",
        ),
        (
            json!({"schedule": {"cron": "0 * * * *", "timezone": "Mars/Olympus"}, "executor": {"type": "shell", "command": "true"}}),
            "schedule.timezone",
        ),
        (
            json!({"schedule": {"every": "5 minutes"}, "executor": {"type": "shell", "command": "true"}}),
            "schedule.every",
        ),
        (
            json!({"schedule": {"every": "1m"}, "executor": {"type": "ftp", "command": "true"}}),
            "executor",
        ),
        (
            json!({"schedule": {"every": "1m"}, "executor": {"type": "shell", "command": "true"}, "retry": {"max_attempts": "three"}}),
            "retry.max_attempts",
        ),
        (
            json!({"schedule": {"every": "1m"}, "executor": {"type": "shell", "command": "true"}, "overlap": "sometimes"}),
            "overlap",
        ),
        (
            json!({"schedule": {"every": "1m"}, "executor": {"type": "shell", "command": "true"}, "colour": "blue"}),
            "colour",
        ),
    ];
    for (spec, field) in cases {
        let (status, body) = server.send("PUT", "/v1/jobs/bad", Some(spec.clone())).await;
        assert_eq!(status, 400, "{spec} -> {body}");
        let err = &body["error"];
        let named = err["field"].as_str().unwrap_or_default().to_string()
            + " "
            + err["message"].as_str().unwrap_or_default();
        assert!(named.contains(field), "{spec}: expected {field} in {body}");
    }
    // Nothing was stored.
    let (status, _) = server.get("/v1/jobs/bad").await;
    assert_eq!(status, 404);

    // Malformed JSON is a 400 too, not a crash.
    let resp = common::client()
        .put(format!("{}/v1/jobs/bad", server.url))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);

    // The CLI names the field and exits non-zero.
    let file = tmp.path().join("bad.yaml");
    std::fs::write(
        &file,
        "- name: ok-job\n  schedule: {every: 1m}\n  executor: {type: shell, command: 'true'}\n- name: bad-hour\n  schedule: {cron: '0 25 * * *'}\n  executor: {type: shell, command: 'true'}\n",
    )
    .unwrap();
    let out = server.cli(&["job", "apply", "-f", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("schedule.cron") && err.contains("bad-hour"),
        "{err}"
    );
    // The server is still healthy.
    let (status, health) = server.get("/v1/health").await;
    assert_eq!(status, 200, "{health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_revisions_cas_and_session_retries() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), &[]).await;

    let (status, put) = server
        .send("PUT", "/v1/kv/app/color", Some(json!({"value": "red"})))
        .await;
    assert_eq!(status, 200, "{put}");
    let rev1 = put["revision"].as_u64().unwrap();
    let (status, got) = server.get("/v1/kv/app/color").await;
    assert_eq!(status, 200);
    assert_eq!(got["value"], "red");
    assert_eq!(got["mod_revision"].as_u64(), Some(rev1));
    assert_eq!(got["create_revision"].as_u64(), Some(rev1));
    assert_eq!(got["version"], 1);

    // CAS with a stale revision fails and says the current one.
    let (status, err) = server
        .send(
            "PUT",
            &format!("/v1/kv/app/color?if_revision={}", rev1 + 100),
            Some(json!({"value": "blue"})),
        )
        .await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "revision_mismatch");
    // CAS with the right one succeeds.
    let (status, put2) = server
        .send(
            "PUT",
            &format!("/v1/kv/app/color?if_revision={rev1}"),
            Some(json!({"value": "blue"})),
        )
        .await;
    assert_eq!(status, 200, "{put2}");
    assert!(put2["revision"].as_u64().unwrap() > rev1);
    // if_revision=0: create only.
    let (status, _) = server
        .send(
            "PUT",
            "/v1/kv/app/color?if_revision=0",
            Some(json!({"value": "green"})),
        )
        .await;
    assert_eq!(status, 409);

    // A retried write with the same session applies once and answers the same.
    let http = common::client();
    let mut answers = Vec::new();
    for _ in 0..3 {
        let resp = http
            .put(format!("{}/v1/kv/counter", server.url))
            .header("Rota-Client-Id", "test-client")
            .header("Rota-Request-Seq", "7")
            .json(&json!({"value": "x"}))
            .send()
            .await
            .unwrap();
        answers.push((resp.status().as_u16(), resp.text().await.unwrap()));
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    let (_, counter) = server.get("/v1/kv/counter").await;
    assert_eq!(counter["version"], 1, "{counter}");

    // Through the CLI.
    let out = server.cli(&["kv", "put", "cli/key", "hello world"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = server.cli(&["kv", "get", "cli/key"]);
    assert_eq!(stdout(&out).trim(), "hello world");
    let out = server.cli(&["kv", "ls", "--prefix", "app/", "-o", "json"]);
    assert!(stdout(&out).contains("app/color"), "{}", stdout(&out));
    let (status, del) = server.send("DELETE", "/v1/kv/app/color", None).await;
    assert_eq!(status, 200);
    assert_eq!(del["deleted"], true);
    let (status, _) = server.get("/v1/kv/app/color").await;
    assert_eq!(status, 404);
    let out = server.cli(&["kv", "get", "app/color"]);
    assert!(!out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_graceful_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(tmp.path(), &[]).await;
    let (status, _) = server
        .send(
            "PUT",
            "/v1/jobs/keep",
            Some(json!({"schedule": {"every": "1h"}, "executor": {"type": "shell", "command": "true"}, "paused": true})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = server
        .send("PUT", "/v1/kv/k", Some(json!({"value": "v"})))
        .await;
    assert_eq!(status, 200);
    let exit = server.stop();
    assert!(exit.success(), "graceful stop exited with {exit}");
    server.restart().await;
    let (status, job) = server.get("/v1/jobs/keep").await;
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["paused"], true);
    let (_, kv) = server.get("/v1/kv/k").await;
    assert_eq!(kv["value"], "v");
    assert!(statuses(&server.history("keep", 10).await).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_a_line_and_runs_log_at_debug() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(tmp.path(), &["--log-format", "json"]).await;

    eprintln!("--- a run, whose per-run lines are debug (the server logs at info)");
    let (status, body) = server
        .send(
            "PUT",
            "/v1/jobs/hello",
            Some(json!({"schedule": {"manual": true}, "executor": {"type": "shell", "command": "echo hi"}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = server.send("POST", "/v1/jobs/hello/run", None).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().expect("id").to_string();
    let server_ref = &server;
    let done = eventually(Duration::from_secs(60), "the run ends", || async {
        let (_, e) = server_ref.get(&format!("/v1/executions/{id}")).await;
        (e["status"] == "succeeded").then_some(e)
    })
    .await;
    assert_eq!(done["exit_code"], 0, "{done}");

    eprintln!("--- a graceful stop, then every line of the log is a JSON object");
    let exit = server.stop();
    assert!(exit.success(), "graceful stop exited with {exit}");
    let logs = server.logs();
    let mut messages = Vec::new();
    for line in logs.lines().filter(|l| !l.starts_with("--- server start")) {
        let entry: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}\n{logs}"));
        let level = entry["level"].as_str().unwrap_or_default();
        assert!(
            ["ERROR", "WARN", "INFO"].contains(&level),
            "level {level:?} (the filter is info): {line}"
        );
        let message = entry["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no message: {line}"));
        assert!(entry["timestamp"].is_string(), "{line}");
        messages.push(message.to_string());
    }
    for lifecycle in ["starting rota", "rota stopped"] {
        assert!(
            messages.iter().any(|m| m == lifecycle),
            "{lifecycle:?} missing:\n{logs}"
        );
    }
    for per_run in [
        "run started",
        "process started",
        "process ended",
        "run ended",
    ] {
        assert!(
            !messages.iter().any(|m| m == per_run),
            "{per_run:?} logged at info:\n{logs}"
        );
    }
}
