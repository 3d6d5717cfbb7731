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
    assert_eq!(
        answer[0]["job"]["revision"], created["revision"],
        "{answer}"
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_run_can_be_followed_and_its_latest_logs_read() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), &[]).await;
    let file = tmp.path().join("jobs.toml");
    std::fs::write(
        &file,
        "[[job]]\nname = \"ok\"\nschedule = { manual = true }\n\
         executor = { type = \"shell\", command = \"echo hello from ok\" }\n\
         [[job]]\nname = \"bad\"\nschedule = { manual = true }\n\
         executor = { type = \"shell\", command = \"echo about to fail; exit 3\" }\n\
         [[job]]\nname = \"gated\"\nschedule = { manual = true }\n\
         executor = { type = \"shell\", command = \"echo started; while [ ! -f go ]; do sleep 0.05; done; echo finished\" }\n",
    )
    .unwrap();
    let out = server.cli(&["job", "apply", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));

    // --- nothing to show before the first run
    let out = server.cli(&["job", "logs", "ok"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "error: job \"ok\" has not run yet\n");

    // --- a followed run prints its output and exits 0 iff it succeeded
    let out = server.cli(&["job", "run", "ok", "--follow"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello from ok\n");
    let out = server.cli(&["job", "run", "bad", "--follow"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stdout(&out), "about to fail\n");
    let reason = stderr(&out);
    let last = reason.lines().last().unwrap();
    assert!(
        last.starts_with("error: execution ") && last.contains(" failed (exit 3)"),
        "{reason}"
    );

    // --- with -o json, stdout is the ended execution
    let out = server.cli(&["job", "run", "ok", "--follow", "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ended: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(ended["status"], "succeeded", "{ended}");
    assert!(stderr(&out).contains("hello from ok"), "{}", stderr(&out));

    // --- history pages back with --before: "ok" ran twice
    let out = server.cli(&["job", "history", "ok", "--limit", "1", "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let newest: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let newest_id = newest["items"][0]["id"].as_str().unwrap().to_string();
    let out = server.cli(&[
        "job", "history", "ok", "--limit", "5", "--before", &newest_id, "-o", "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let older: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let older_ids: Vec<&str> = older["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(older_ids.len(), 1, "{older}");
    assert!(older_ids[0] < newest_id.as_str(), "{older}");
    let out = server.cli(&["job", "history", "ok", "--before", "nonsense"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // --- job logs: the latest execution's output
    let out = server.cli(&["job", "logs", "bad"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "about to fail\n");

    // --- job logs -f follows a running execution to its end
    let out = server.cli(&["job", "run", "gated"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // --- exec ls: the running execution, across jobs
    let running = eventually(Duration::from_secs(30), "gated to run", || async {
        let out = server.cli(&["exec", "ls", "--status", "running", "-o", "json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let page: Value = serde_json::from_str(&stdout(&out)).unwrap();
        let items = page["items"].as_array().cloned().unwrap_or_default();
        (!items.is_empty()).then_some(items)
    })
    .await;
    assert_eq!(running.len(), 1, "{running:?}");
    assert_eq!(running[0]["job"], "gated");
    let out = server.cli(&["exec", "ls"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    for column in ["ID", "JOB", "STATUS", "NODE", "ATTEMPT", "STARTED"] {
        assert!(lines[0].contains(column), "{table}");
    }
    assert!(
        lines[1].contains("gated") && lines[1].contains("running"),
        "{table}"
    );
    let (status, page) = server.get("/v1/executions?status=queued").await;
    assert_eq!(
        (status, page["items"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{page}"
    );
    assert_eq!(page["next"], Value::Null);
    let (status, body) = server.get("/v1/executions?status=failed").await;
    assert_eq!(
        (status, &body["error"]["field"]),
        (400, &Value::from("status")),
        "{body}"
    );

    let mut follower = std::process::Command::new(common::BIN)
        .args(["job", "logs", "gated", "-f"])
        .env("ROTA_SERVER", &server.url)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = follower.stdout.take().unwrap();
    let gate = tmp.path().join("go");
    let read = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(lines).lines() {
            let line = line.unwrap();
            if line == "started" {
                // The follower has shown the first line: only now may the run end.
                std::fs::write(&gate, "").unwrap();
            }
            seen.push(line);
        }
        seen
    });
    let seen = tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the follower ends when the run ends")
        .unwrap();
    assert!(follower.wait().unwrap().success());
    assert_eq!(seen, ["started", "finished"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_names_the_client_s_and_the_server_s() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), &[]).await;
    let version = env!("CARGO_PKG_VERSION");
    let (_, health) = server.get("/v1/health").await;
    assert_eq!(health["version"], version, "{health}");

    let out = server.cli(&["version"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("client: {version}\nserver: {version} ({})\n", server.url)
    );
    let out = server.cli(&["version", "-o", "json"]);
    let both: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        (&both["client"], &both["server"]),
        (&Value::from(version), &Value::from(version))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_read_back_as_yaml_or_json_applies_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), &[]).await;
    let file = tmp.path().join("nightly.toml");
    std::fs::write(
        &file,
        "[[job]]\nname = \"nightly\"\ndescription = \"backs up\"\n\
         schedule = { cron = \"0 30 2 * * *\", timezone = \"Europe/Berlin\" }\n\
         executor = { type = \"shell\", command = \"echo backup\", env = { A = \"1\" } }\n\
         timeout = \"10m\"\npriority = 5\n\
         retry = { max_attempts = 3, initial_delay = \"1s\", max_delay = \"1m\", multiplier = 2.0, jitter = true }\n",
    )
    .unwrap();
    let out = server.cli(&["job", "apply", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Ran once, so that the view carries a last execution too.
    let out = server.cli(&["job", "run", "nightly", "--wait"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, before) = server.get("/v1/jobs/nightly").await;
    assert!(before["last_execution"].is_object(), "{before}");

    for format in ["yaml", "json"] {
        let out = server.cli(&["job", "get", "nightly", "-o", format]);
        assert!(out.status.success(), "{}", stderr(&out));
        let shown = tmp.path().join(format!("shown.{format}"));
        std::fs::write(&shown, stdout(&out)).unwrap();
        let out = server.cli(&["job", "apply", "--dry-run", "-f", shown.to_str().unwrap()]);
        assert_eq!(
            (stdout(&out).as_str(), out.status.success()),
            ("job/nightly unchanged (dry run)\n", true),
            "{}",
            stderr(&out)
        );
        let out = server.cli(&["job", "apply", "-f", shown.to_str().unwrap(), "-o", "json"]);
        assert!(out.status.success(), "{format}: {}", stderr(&out));
        let (_, after) = server.get("/v1/jobs/nightly").await;
        assert_eq!(
            (&after["revision"], &after["updated_at"]),
            (&before["revision"], &before["updated_at"]),
            "{format}: {after}"
        );
    }

    // --- a dry run of a new job and a changed one sends nothing
    let other = tmp.path().join("other.yaml");
    std::fs::write(
        &other,
        "- name: other\n  schedule: {manual: true}\n  executor: {type: shell, command: 'true'}\n\
         - name: nightly\n  schedule: {manual: true}\n  executor: {type: shell, command: 'true'}\n",
    )
    .unwrap();
    let out = server.cli(&["job", "apply", "--dry-run", "-f", other.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "job/other created (dry run)\njob/nightly updated (dry run)\n"
    );
    let (status, _) = server.get("/v1/jobs/other").await;
    assert_eq!(status, 404);
    let (_, after) = server.get("/v1/jobs/nightly").await;
    assert_eq!(after["revision"], before["revision"]);

    // --- job ls --prefix
    let out = server.cli(&["job", "apply", "-f", other.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = server.cli(&["job", "ls", "--prefix", "oth", "-o", "json"]);
    let listed: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let names: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|j| j["name"].as_str())
        .collect();
    assert_eq!(names, ["other"]);
    let out = server.cli(&["job", "ls", "--prefix", "night"]);
    let table = stdout(&out);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[0].trim_end().ends_with("LAST STATUS"), "{table}");
    assert!(
        lines[1].starts_with("nightly ") && lines[1].trim_end().ends_with("succeeded"),
        "{table}"
    );
}

/// `job apply --apply-set --prune`: the set's jobs a file no longer holds are
/// deleted with the apply; jobs of other sets and jobs made without one stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_with_prune_deletes_only_the_jobs_its_set_no_longer_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), &[]).await;
    let jobs_file = |file: &str, names: &[&str]| {
        let path = tmp.path().join(file);
        let text: String = names
            .iter()
            .map(|n| {
                format!(
                    "[[job]]\nname = \"{n}\"\nschedule = {{ manual = true }}\n\
                     executor = {{ type = \"shell\", command = \"true\" }}\n"
                )
            })
            .collect();
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let names = |answer: &Value| -> Vec<String> {
        answer["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["name"].as_str().unwrap().to_string())
            .collect()
    };
    let by_hand = jobs_file("by-hand.toml", &["by-hand"]);
    let out = server.cli(&["job", "apply", "-f", &by_hand]);
    assert!(out.status.success(), "{}", stderr(&out));
    let staging = jobs_file("staging.toml", &["other"]);
    let out = server.cli(&["job", "apply", "-f", &staging, "--apply-set", "staging"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let prod = jobs_file("prod.toml", &["a", "b", "c"]);
    let out = server.cli(&[
        "job",
        "apply",
        "-f",
        &prod,
        "--apply-set",
        "prod",
        "--prune",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    // --- the file drops b and c and gains d: the dry run says so and changes nothing
    let prod = jobs_file("prod.toml", &["a", "d"]);
    let args = [
        "job",
        "apply",
        "-f",
        &prod,
        "--apply-set",
        "prod",
        "--prune",
    ];
    let out = server.cli(&[&args[..], &["--dry-run", "-o", "json"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let planned: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        planned,
        serde_json::json!([
            {"name": "a", "action": "unchanged"},
            {"name": "d", "action": "created"},
            {"name": "b", "action": "deleted"},
            {"name": "c", "action": "deleted"},
        ])
    );
    let (_, list) = server.get("/v1/jobs").await;
    assert_eq!(names(&list), ["a", "b", "by-hand", "c", "other"]);

    // --- the apply writes d and deletes b and c, and says so
    let out = server.cli(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "job/a unchanged\njob/d created\njob/b deleted\njob/c deleted\n"
    );
    let (_, list) = server.get("/v1/jobs").await;
    assert_eq!(names(&list), ["a", "by-hand", "d", "other"]);

    // --- a file with a bad job changes nothing, prune included
    std::fs::write(
        tmp.path().join("prod.toml"),
        "[[job]]\nname = \"a\"\nschedule = { manual = true }\n\
         executor = { type = \"shell\", command = \"true\" }\n\
         [[job]]\nname = \"e\"\nschedule = { cron = \"61 * * * *\" }\n\
         executor = { type = \"shell\", command = \"true\" }\n",
    )
    .unwrap();
    let out = server.cli(&args);
    assert!(!out.status.success());
    let (_, list) = server.get("/v1/jobs").await;
    assert_eq!(names(&list), ["a", "by-hand", "d", "other"]);

    // --- --prune without a set is refused before anything is sent
    let out = server.cli(&["job", "apply", "-f", &staging, "--prune"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--apply-set"), "{}", stderr(&out));
}
