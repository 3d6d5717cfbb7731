//! Fetching from a local deck: the deck UI URL and the prowjobs.js URL in both
//! shapes, and every way a deck fails (login page, 502, a truncated page, a
//! connection cut midway, no answer, an answer that stalls, nobody listening).

mod common;

use std::time::{Duration, Instant};

use common::{expected_lines, parse_line, Deck};
use rota_prow::{deck_url, fetch, influx_lines, read_deck, Error, Filter};

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().build().expect("http client")
}

const TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_deck_ui_url_fetches_its_job_list_and_keeps_the_rest_when_one_job_is_malformed() {
    let deck = Deck::start().await;
    let url = deck_url(&format!("{}/?job=*oadp*", deck.url)).unwrap();
    assert_eq!(url.job.as_deref(), Some("*oadp*"));

    let parsed = read_deck(&client(), &url, TIMEOUT).await.unwrap();
    // The UI URL asks for the list without the bulky fields.
    assert_eq!(
        deck.requests(),
        vec!["/prowjobs.js?omit=annotations,labels,decoration_config,pod_spec"]
    );
    assert_eq!(parsed.builds.len(), 5);
    assert_eq!(parsed.skipped.len(), 1);
    assert_eq!(
        parsed.skipped[0].job.as_deref(),
        Some("pull-ci-openshift-oadp-operator-oadp-dev-lint")
    );
    assert_eq!(parsed.skipped[0].reason, "missing status.startTime");
    // Links to the deck the list came from.
    assert_eq!(
        parsed.builds[0].prowjob_url.as_deref(),
        Some(
            format!(
                "{}/prowjob?prowjob=3f1d7c2e-9a51-11f0-8a3c-0a580a8102b4",
                deck.url
            )
            .as_str()
        )
    );

    let filter = Filter {
        job_glob: url.job.clone(),
        ..Filter::default()
    };
    let text = influx_lines(&filter.apply(parsed.builds));
    let lines: Vec<_> = text.lines().map(|l| parse_line(l).unwrap()).collect();
    assert_eq!(lines, expected_lines(common::PLAIN, |j| j.contains("oadp")));
}

#[tokio::test]
async fn a_prowjobs_url_with_var_reads_the_same_builds_as_without() {
    let deck = Deck::start().await;
    let plain = deck_url(&format!("{}/prowjobs.js", deck.url)).unwrap();
    let wrapped = deck_url(&format!(
        "{}/prowjobs.js?var=allBuilds&omit=annotations,labels,decoration_config,pod_spec",
        deck.url
    ))
    .unwrap();
    let a = read_deck(&client(), &plain, TIMEOUT).await.unwrap();
    let b = read_deck(&client(), &wrapped, TIMEOUT).await.unwrap();
    assert_eq!(a, b);
    assert_eq!(a.builds.len(), 5);
    assert_eq!(
        deck.requests()[1],
        "/prowjobs.js?var=allBuilds&omit=annotations,labels,decoration_config,pod_spec"
    );
    // A running job has neither end nor duration; an unknown state is 10.
    let running = a.builds.iter().find(|b| b.state == "pending").unwrap();
    assert_eq!((running.finished_at, running.duration_s), (None, None));
    let scheduling = a.builds.iter().find(|b| b.state == "scheduling").unwrap();
    assert_eq!(scheduling.state_int, 10);
}

async fn failure(deck: &Deck, path: &str, timeout: Duration) -> (String, Error) {
    let url = deck_url(&format!("{}/{path}/prowjobs.js", deck.url)).unwrap();
    let err = read_deck(&client(), &url, timeout).await.unwrap_err();
    (url.prowjobs_url, err)
}

fn chain(err: &Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[tokio::test]
async fn an_html_page_is_an_error_naming_the_url() {
    let deck = Deck::start().await;
    let (url, err) = failure(&deck, "login", TIMEOUT).await;
    assert!(
        matches!(&err, Error::Page { source, .. } if matches!(**source, Error::NotADeckDocument { .. })),
        "{err:?}"
    );
    let text = chain(&err);
    assert!(
        text.starts_with(&format!(
            "deck {url}: not a deck job list: it starts with \"<!DOCTYPE html>"
        )),
        "{text}"
    );

    let (url, err) = failure(&deck, "down", TIMEOUT).await;
    assert_eq!(
        err.to_string(),
        format!("deck {url} answered 502 Bad Gateway")
    );
}

#[tokio::test]
async fn a_truncated_page_is_an_error_not_partial_data() {
    let deck = Deck::start().await;
    let (url, err) = failure(&deck, "truncated", TIMEOUT).await;
    assert!(
        matches!(&err, Error::Page { source, .. } if matches!(**source, Error::Json { .. })),
        "{err:?}"
    );
    assert!(
        chain(&err).starts_with(&format!("deck {url}: deck job list is not valid JSON: EOF")),
        "{}",
        chain(&err)
    );

    // The connection breaks off midway through a chunked answer.
    let (url, err) = failure(&deck, "cut", TIMEOUT).await;
    assert!(matches!(err, Error::Body { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("reading the answer of deck {url}"));

    // The answer ends before its Content-Length.
    let url = format!("{}/prowjobs.js", deck.short_url);
    let err = fetch(&client(), &url, TIMEOUT).await.unwrap_err();
    assert!(matches!(err, Error::Body { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("reading the answer of deck {url}"));
}

#[tokio::test]
async fn a_deck_that_does_not_answer_times_out_naming_the_url() {
    let deck = Deck::start().await;
    for path in ["silent", "stalled"] {
        let started = Instant::now();
        let (url, err) = failure(&deck, path, Duration::from_millis(300)).await;
        assert!(matches!(err, Error::Timeout { .. }), "{path}: {err:?}");
        assert_eq!(
            err.to_string(),
            format!("deck {url} did not answer within 300ms")
        );
        assert!(started.elapsed() >= Duration::from_millis(300));
    }
}

#[tokio::test]
async fn nobody_listening_is_an_error_naming_the_url() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/prowjobs.js");
    let err = fetch(&client(), &url, TIMEOUT).await.unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("cannot reach deck {url}"));
}
