//! `rota prow` end to end: the real binary against a local deck serving recorded
//! pages, in each output format, and its one-line errors.

#[path = "../../prow/tests/common/mod.rs"]
mod deck;

use std::process::Output;

use deck::{expected_lines, parse_line, Deck, PLAIN};
use serde_json::Value;

async fn rota(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_rota"))
        .args(args)
        .env_remove("ROTA_SERVER")
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("run rota")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8 stdout")
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("utf-8 stderr")
}

const SKIPPED: &str = "warning: skipped job #4 (\"pull-ci-openshift-oadp-operator-oadp-dev-lint\"): missing status.startTime\n";

/// The recorded jobs the `*oadp*` glob keeps, as the fixture names them.
fn oadp_jobs() -> Vec<String> {
    expected_lines(PLAIN, |j| j.contains("oadp"))
        .into_iter()
        .map(|l| l.tags["job_name"].clone())
        .collect()
}

#[tokio::test]
async fn human_output_is_a_table_of_the_jobs_the_urls_glob_keeps() {
    let deck = Deck::start().await;
    let out = rota(&["prow", "--url", &format!("{}/?job=*oadp*", deck.url)]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), SKIPPED);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("JOB"), "{text}");
    let jobs: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(jobs, oadp_jobs());
    assert!(lines[1].contains("openshift/oadp-operator#1842"), "{text}");
}

#[tokio::test]
async fn json_output_is_the_build_records() {
    let deck = Deck::start().await;
    let url = format!("{}/prowjobs.js?var=allBuilds", deck.url);
    let by_flag = rota(&["prow", "--url", &url, "--job", "*oadp*", "--format", "json"]).await;
    let by_output = rota(&["prow", "--url", &url, "--job", "*oadp*", "-o", "json"]).await;
    assert!(by_flag.status.success(), "{}", stderr(&by_flag));
    assert_eq!(stdout(&by_flag), stdout(&by_output));
    assert_eq!(stderr(&by_flag), SKIPPED);

    let doc: Value = serde_json::from_str(&stdout(&by_flag)).expect("JSON");
    let items = doc["items"].as_array().expect("items");
    let jobs: Vec<&str> = items.iter().map(|b| b["job"].as_str().unwrap()).collect();
    assert_eq!(jobs, oadp_jobs());
    let fixture: Value = serde_json::from_str(PLAIN).unwrap();
    for item in items {
        let keys: Vec<&str> = item
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut want = vec![
            "build_id",
            "job",
            "type",
            "state",
            "state_int",
            "org",
            "repo",
            "pull_request",
            "started_at",
            "finished_at",
            "duration_s",
            "log_url",
            "prowjob_url",
        ];
        want.sort();
        let mut keys = keys;
        keys.sort();
        assert_eq!(keys, want);
        let job = fixture["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["spec"]["job"] == item["job"])
            .unwrap();
        assert_eq!(item["type"], job["spec"]["type"]);
        assert_eq!(item["state"], job["status"]["state"]);
        assert_eq!(item["log_url"], job["status"]["url"]);
        assert_eq!(
            item["prowjob_url"],
            format!(
                "{}/prowjob?prowjob={}",
                deck.url,
                job["metadata"]["name"].as_str().unwrap()
            )
        );
        // A running job has neither end nor duration.
        if job["status"]["completionTime"].is_null() {
            assert_eq!(
                (&item["finished_at"], &item["duration_s"]),
                (&Value::Null, &Value::Null)
            );
        }
    }
}

#[tokio::test]
async fn influx_output_parses_line_by_line_into_the_build_points() {
    let deck = Deck::start().await;
    let out = rota(&[
        "prow",
        "--url",
        &format!("{}/?job=*oadp*", deck.url),
        "--format",
        "influx",
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<_> = stdout(&out)
        .lines()
        .map(|l| parse_line(l).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    assert_eq!(lines, expected_lines(PLAIN, |j| j.contains("oadp")));
}

#[tokio::test]
async fn types_and_states_filter() {
    let deck = Deck::start().await;
    let out = rota(&[
        "prow",
        "--url",
        &format!("{}/prowjobs.js", deck.url),
        "--type",
        "periodic,presubmit",
        "--state",
        "failure",
        "--state",
        "aborted",
        "--format",
        "influx",
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let jobs: Vec<String> = stdout(&out)
        .lines()
        .map(|l| parse_line(l).unwrap().tags["job_name"].clone())
        .collect();
    assert_eq!(
        jobs,
        [
            "periodic-ci-openshift-oadp-operator-oadp-1.4-4.16-e2e-test-kubevirt-aws-periodic",
            "pull-ci-openshift-origin-main-e2e-aws-ovn"
        ]
    );
    // No glob: the malformed job might have been one of these.
    assert_eq!(stderr(&out), SKIPPED);
}

#[tokio::test]
async fn a_malformed_job_the_glob_would_not_keep_is_not_warned_about() {
    let deck = Deck::start().await;
    let out = rota(&[
        "prow",
        "--url",
        &format!("{}/prowjobs.js", deck.url),
        "--job",
        "*origin*",
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    assert_eq!(stdout(&out).lines().count(), 2, "{}", stdout(&out));
}

#[tokio::test]
async fn a_page_that_is_not_a_job_list_fails_with_one_line() {
    let deck = Deck::start().await;
    let url = format!("{}/login/prowjobs.js", deck.url);
    let out = rota(&["prow", "--url", &url]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).is_empty());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "error: deck {url}: not a deck job list: it starts with \"<!DOCTYPE html>"
        )),
        "{err}"
    );
}

#[tokio::test]
async fn a_deck_that_does_not_answer_fails_after_the_timeout() {
    let deck = Deck::start().await;
    let url = format!("{}/silent/prowjobs.js", deck.url);
    let out = rota(&["prow", "--url", &url, "--timeout", "300ms"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!("error: deck {url} did not answer within 300ms\n")
    );
}

#[tokio::test]
async fn a_bad_url_is_refused_with_what_is_accepted() {
    let out = rota(&["prow", "--url", "ftp://prow.example/"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("scheme ftp is not http or https"), "{err}");
    assert!(err.contains("accepted: a deck URL"), "{err}");
}
