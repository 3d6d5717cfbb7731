//! End-to-end: workflows through the CLI against the real binary on one node.
//!
//! Tests marked "needs the workflow job executor" run workflow jobs to success;
//! the others hold either on failing jobs or on jobs that no node can take (a tag
//! no node has), so they do not depend on what the executor does.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{eventually, stderr, stdout, Server, BIN};
use serde_json::Value;

/// `a`, then `b` once `a` succeeded.
const CHAIN: &str = "\
name: ci
schedule: {manual: true}
jobs:
  a:
    executor: {type: shell, command: 'true'}
  b:
    needs: [a]
    executor: {type: shell, command: echo hi}
";

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path.display().to_string()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

fn json_of(out: &Output) -> Value {
    serde_json::from_str(&ok(out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

/// The run id of `workflow run --follow`'s first line (`run ID`).
fn run_id(text: &str) -> String {
    text.lines()
        .next()
        .and_then(|l| l.strip_prefix("run "))
        .unwrap_or_else(|| panic!("no run line in {text:?}"))
        .to_string()
}

fn job_statuses(run: &Value) -> Vec<(String, String)> {
    run["jobs"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, j)| {
            (
                name.clone(),
                j["status"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Needs the workflow job executor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_followed_to_its_end_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), &[]).await;
    let file = write(tmp.path(), "ci.yaml", CHAIN);
    let text = ok(&server.cli(&["workflow", "apply", "-f", &file]));
    assert_eq!(text, "workflow/ci created\n");

    let out = server.cli(&["workflow", "run", "ci", "--follow"]);
    let text = ok(&out);
    let id = run_id(&text);
    assert!(text.contains("\na  succeeded\n"), "{text}");
    assert!(text.contains("\nb  succeeded\n"), "{text}");
    assert!(text.contains(&format!("run {id} succeeded in ")), "{text}");

    let run = json_of(&server.cli(&["run", "get", &id, "-o", "json"]));
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        job_statuses(&run),
        pairs(&[("a", "succeeded"), ("b", "succeeded")])
    );
    let exec = run["jobs"]["b"]["executions"][0].as_str().expect("b ran");
    let (_, output) = server
        .get_text(&format!("/v1/executions/{exec}/output"))
        .await;
    assert!(output.contains("hi"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_first_job_fails_the_run_and_skips_the_second() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), &[]).await;
    let failing = CHAIN.replace("command: 'true'", "command: 'exit 3'");
    let file = write(tmp.path(), "ci.yaml", &failing);
    ok(&server.cli(&["workflow", "apply", "-f", &file]));

    let out = server.cli(&["workflow", "run", "ci", "--follow"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let id = run_id(&stdout(&out));
    assert_eq!(
        stderr(&out),
        format!("error: run {id} failed: jobs did not succeed: a failed\n")
    );
    let text = stdout(&out);
    assert!(text.contains("\na  failed"), "{text}");
    assert!(
        text.contains("\nb  skipped: needs did not succeed (a failed)\n"),
        "{text}"
    );

    let run = json_of(&server.cli(&["run", "get", &id, "-o", "json"]));
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(
        job_statuses(&run),
        pairs(&[("a", "failed"), ("b", "skipped")])
    );
    let text = ok(&server.cli(&["run", "get", &id]));
    assert!(text.contains("jobs did not succeed: a failed"), "{text}");
    let runs = ok(&server.cli(&["workflow", "runs", "ci"]));
    assert!(
        runs.contains(&id) && runs.contains("1 failed, 1 skipped"),
        "{runs}"
    );
}

#[test]
fn a_cyclic_or_dangling_workflow_file_is_refused_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let cyclic = CHAIN.replace(
        "executor: {type: shell, command: 'true'}",
        "needs: [b]\n    executor: {type: shell, command: 'true'}",
    );
    let dangling = CHAIN.replace("needs: [a]", "needs: [z]");
    for (name, text, line) in [
        (
            "cycle.yaml",
            cyclic,
            "cycle.yaml: workflow #1 \"ci\": jobs.a.needs: jobs depend on each other in a cycle: a → b → a",
        ),
        (
            "dangling.yaml",
            dangling,
            "dangling.yaml: workflow #1 \"ci\": jobs.b.needs[0]: job \"b\" needs \"z\", which is not a job of this workflow (jobs: a, b)",
        ),
    ] {
        write(tmp.path(), name, &text);
        // Nothing listens there: the file is refused before any request.
        let out = Command::new(BIN)
            .args(["workflow", "apply", "-f", name])
            .env("ROTA_SERVER", "http://127.0.0.1:1")
            .env_remove("RUST_LOG")
            .current_dir(tmp.path())
            .output()
            .expect("run rota");
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert_eq!(stderr(&out), format!("error: {line}\n"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_are_listed_shown_and_removed_and_own_their_jobs() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), &[]).await;
    let file = write(
        tmp.path(),
        "flows.json",
        r#"{"workflows": [
            {"name": "ci", "schedule": {"manual": true},
             "jobs": {"lint": {"executor": {"type": "shell", "command": "make lint"}},
                      "test": {"needs": ["lint"], "steps": [{"name": "unit", "executor": {"type": "shell", "command": "make test"}}],
                               "artifacts": [{"name": "coverage", "path": "cov/"}]}}},
            {"name": "nightly", "schedule": {"every": "1h"}, "concurrency": "skip",
             "jobs": {"backup": {"executor": {"type": "shell", "command": "true"}}}}]}"#,
    );
    let text = ok(&server.cli(&["workflow", "apply", "-f", &file]));
    assert_eq!(text, "workflow/ci created\nworkflow/nightly created\n");
    let text = ok(&server.cli(&["workflow", "apply", "-f", &file]));
    assert_eq!(text, "workflow/ci updated\nworkflow/nightly updated\n");

    let text = ok(&server.cli(&["workflow", "ls"]));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[1].starts_with("ci ") && lines[1].contains("manual"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("nightly ") && lines[2].contains("every 1h"),
        "{text}"
    );
    let list = json_of(&server.cli(&["workflow", "ls", "-o", "json"]));
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2), "{list}");

    let text = ok(&server.cli(&["workflow", "get", "ci"]));
    assert!(
        text.contains("steps: unit") && text.contains("coverage"),
        "{text}"
    );
    assert!(text.find("\nlint ") < text.find("\ntest "), "{text}");

    // The internal jobs are the workflow's: not listed, not removable as jobs.
    let text = ok(&server.cli(&["job", "ls"]));
    assert!(!text.contains("ci:"), "{text}");
    let out = server.cli(&["job", "rm", "ci:lint"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error: name: job \"ci:lint\" belongs to workflow \"ci\""),
        "{}",
        stderr(&out)
    );
    ok(&server.cli(&["job", "get", "ci:lint"]));

    let text = ok(&server.cli(&["workflow", "rm", "ci"]));
    assert_eq!(text, "workflow/ci deleted\n");
    let out = server.cli(&["workflow", "get", "ci"]);
    assert_eq!(stderr(&out), "error: workflow \"ci\" not found\n");
    let out = server.cli(&["workflow", "run", "ci"]);
    assert_eq!(stderr(&out), "error: workflow \"ci\" not found\n");
}

/// A workflow whose job no node can take: its run waits until cancelled.
const WAITING: &str = "\
name: ci
schedule: {manual: true}
jobs:
  a:
    executor: {type: shell, command: 'true'}
    tags: {pool: nowhere}
  b:
    needs: [a]
    executor: {type: shell, command: 'true'}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_run_that_is_cancelled_ends_non_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), &[]).await;
    let file = write(tmp.path(), "ci.yaml", WAITING);
    ok(&server.cli(&["workflow", "apply", "-f", &file]));

    let follower = Command::new(BIN)
        .args(["workflow", "run", "ci", "--follow"])
        .env("ROTA_SERVER", &server.url)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rota");
    let id = eventually(Duration::from_secs(20), "the followed run", || async {
        let (_, runs) = server.get("/v1/workflows/ci/runs").await;
        runs["items"][0]["id"].as_str().map(str::to_string)
    })
    .await;
    let run = json_of(&server.cli(&["run", "get", &id, "-o", "json"]));
    assert_eq!(run["status"], "running", "{run}");
    assert_eq!(
        job_statuses(&run),
        pairs(&[("a", "queued"), ("b", "queued")])
    );
    assert_eq!(
        run["jobs"]["a"]["executions"].as_array().map(Vec::len),
        Some(1)
    );
    let text = ok(&server.cli(&["run", "get", &id]));
    assert!(
        text.contains("status:") && text.contains("running"),
        "{text}"
    );

    let text = ok(&server.cli(&["run", "cancel", &id]));
    assert_eq!(text, format!("run {id} cancelled\n"));
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::task::spawn_blocking(move || follower.wait_with_output()),
    )
    .await
    .expect("the follower ends with the run")
    .expect("join")
    .expect("wait");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!("error: run {id} cancelled: cancelled by request\n")
    );
    let text = stdout(&out);
    assert!(text.starts_with(&format!("run {id}\n")), "{text}");
    assert!(
        text.contains("\na  queued\n") && text.contains("\na  cancelled"),
        "{text}"
    );

    let run = json_of(&server.cli(&["run", "get", &id, "-o", "json"]));
    assert_eq!(run["status"], "cancelled", "{run}");
    let text = ok(&server.cli(&["run", "cancel", &id]));
    assert_eq!(text, format!("run {id} cancelled\n"));
    let text = ok(&server.cli(&["run", "artifacts", &id]));
    assert_eq!(text.trim(), "NAME  JOB  NODE  FILES  SIZE", "{text}");
    let out = server.cli(&["run", "get", "01ARZ3NDEKTSV4RRFFQ69G5FAV"]);
    assert_eq!(
        stderr(&out),
        "error: run 01ARZ3NDEKTSV4RRFFQ69G5FAV not found\n"
    );
}

/// Needs the workflow job executor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_are_listed_and_downloaded() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), &[]).await;
    let file = write(
        tmp.path(),
        "ci.yaml",
        "\
name: ci
schedule: {manual: true}
jobs:
  build:
    executor: {type: shell, command: 'mkdir -p out/sub && echo hi > out/a.txt && echo deep > out/sub/b.txt'}
    artifacts: [{name: out, path: out}]
",
    );
    ok(&server.cli(&["workflow", "apply", "-f", &file]));
    let id = run_id(&ok(&server.cli(&["workflow", "run", "ci", "--follow"])));

    let text = ok(&server.cli(&["run", "artifacts", &id]));
    let row = text.lines().nth(1).unwrap_or_default();
    assert!(row.starts_with("out ") && row.contains("build"), "{text}");
    let dir = tmp.path().join("download");
    let text = ok(&server.cli(&["run", "artifacts", &id, "--download", dir.to_str().unwrap()]));
    assert!(text.starts_with("downloaded 2 files"), "{text}");
    assert_eq!(
        std::fs::read_to_string(dir.join("out/a.txt")).unwrap(),
        "hi\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("out/sub/b.txt")).unwrap(),
        "deep\n"
    );
}
