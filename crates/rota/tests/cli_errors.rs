//! The one-line reasons the CLI prints for common failures, pinned whole: each
//! names what was wrong once, with no part of the error chain repeated.

mod common;

use std::process::{Command, Output};

use common::{free_port, stderr, Server, BIN};

fn rota(dir: &std::path::Path, server: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("ROTA_SERVER", server)
        .env_remove("RUST_LOG")
        .current_dir(dir)
        .output()
        .expect("run rota")
}

fn failed_with(out: &Output, line: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    assert_eq!(stderr(out), format!("error: {line}\n"));
}

#[test]
fn an_unreachable_server_is_named_once() {
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}", free_port());
    let out = rota(tmp.path(), &url, &["job", "ls"]);
    failed_with(
        &out,
        &format!("cannot reach rota at {url} (is the server running?)"),
    );
}

#[test]
fn config_file_errors_name_the_file_and_the_cause_once() {
    let tmp = tempfile::tempdir().unwrap();
    let url = "http://127.0.0.1:1";
    let out = rota(
        tmp.path(),
        url,
        &["server", "--print-config", "--config", "missing.toml"],
    );
    failed_with(
        &out,
        "cannot read config file missing.toml: No such file or directory (os error 2)",
    );

    std::fs::write(
        tmp.path().join("bad.toml"),
        "node_id = 2\nmax_running = 0\n",
    )
    .unwrap();
    let out = rota(
        tmp.path(),
        url,
        &["server", "--print-config", "--config", "bad.toml"],
    );
    failed_with(
        &out,
        "config file bad.toml, line 2, key max_running: must be at least 1",
    );
}

#[test]
fn rota_variables_are_settings_and_a_bad_one_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("rota.toml"), "max_running = 4\n").unwrap();
    let show = |vars: &[(&str, &str)]| {
        let mut cmd = Command::new(BIN);
        cmd.args(["server", "--print-config", "-o", "json"])
            .env_remove("RUST_LOG")
            .current_dir(tmp.path());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd.output().expect("run rota")
    };
    let out = show(&[("ROTA_MAX_RUNNING", "9")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["settings"]["max_running"]["value"], "9", "{shown}");
    assert_eq!(shown["settings"]["max_running"]["source"], "env", "{shown}");
    // Without the variable, the file's value.
    let out = show(&[]);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        shown["settings"]["max_running"]["source"], "file",
        "{shown}"
    );
    let out = show(&[("ROTA_MAX_RUNNING", "0")]);
    failed_with(
        &out,
        "ROTA_MAX_RUNNING (setting max_running): must be at least 1",
    );
}

#[test]
fn an_invalid_job_file_names_the_file_job_line_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("jobs.toml"),
        "[[job]]\nname = \"x\"\nschedule = { cron = \"0 25 * * *\" }\n\
         executor = { type = \"shell\", command = \"true\" }\n",
    )
    .unwrap();
    let out = rota(
        tmp.path(),
        "http://127.0.0.1:1",
        &["job", "apply", "-f", "jobs.toml"],
    );
    failed_with(
        &out,
        "jobs.toml: job #1 \"x\" (line 3): schedule.cron: hour 25 is out of 0-23",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_job_is_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), &[]).await;
    let out = server.cli(&["job", "get", "nope"]);
    failed_with(&out, "job \"nope\" not found");
    let out = server.cli(&["job", "run", "nope"]);
    failed_with(&out, "job \"nope\" not found");
}

#[test]
fn a_bad_server_url_says_what_is_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let out = rota(tmp.path(), "ftp://x", &["job", "ls"]);
    failed_with(
        &out,
        "--server \"ftp://x\" must start with http:// or https://",
    );
}

#[test]
fn version_prints_the_client_s_even_without_a_server() {
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}", free_port());
    let out = rota(tmp.path(), &url, &["version"]);
    assert_eq!(
        common::stdout(&out),
        format!("client: {}\n", env!("CARGO_PKG_VERSION"))
    );
    failed_with(
        &out,
        &format!(
            "the server's version could not be asked: cannot reach rota at {url} \
             (is the server running?)"
        ),
    );
}
