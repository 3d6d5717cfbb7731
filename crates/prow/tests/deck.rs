//! Recorded deck pages (tests/fixtures) through the public API: both wrappers,
//! a malformed job, a truncated page, filters, state ints and line protocol.

mod common;

use common::{expected_lines, parse_line, PLAIN, TRUNCATED, WRAPPED};
use rota_prow::{influx_lines, parse_deck, Error, Filter};

const BASE: &str = "https://prow.ci.openshift.org";

#[test]
fn both_wrappers_give_the_same_builds() {
    let plain = parse_deck(PLAIN, Some(BASE)).unwrap();
    let wrapped = parse_deck(WRAPPED, Some(BASE)).unwrap();
    assert_eq!(plain, wrapped);
    assert_eq!(plain.builds.len(), 5);
    let custom = format!("var  builds={}  ;  \n", PLAIN.trim());
    assert_eq!(parse_deck(&custom, Some(BASE)).unwrap(), plain);
}

#[test]
fn the_malformed_job_is_skipped_with_a_warning_and_the_rest_kept() {
    let parsed = parse_deck(PLAIN, Some(BASE)).unwrap();
    assert_eq!(
        parsed
            .skipped
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec![
            "job #4 (\"pull-ci-openshift-oadp-operator-oadp-dev-lint\"): missing status.startTime"
        ]
    );
    let jobs: Vec<&str> = parsed.builds.iter().map(|b| b.job.as_str()).collect();
    assert!(!jobs.contains(&"pull-ci-openshift-oadp-operator-oadp-dev-lint"));
}

#[test]
fn records_carry_the_design_fields() {
    let parsed = parse_deck(PLAIN, Some(BASE)).unwrap();
    let json = serde_json::to_value(&parsed.builds).unwrap();
    assert_eq!(
        json[0],
        serde_json::json!({
            "build_id": "1996178043851919360",
            "job": "pull-ci-openshift-oadp-operator-oadp-dev-4.20-e2e-test-aws",
            "type": "presubmit",
            "state": "success",
            "state_int": 0,
            "org": "openshift",
            "repo": "oadp-operator",
            "pull_request": 1842,
            "started_at": "2026-12-03T10:14:55Z",
            "finished_at": "2026-12-03T11:52:40Z",
            "duration_s": 5865.0,
            "log_url": "https://prow.ci.openshift.org/view/gs/test-platform-results/pr-logs/pull/openshift_oadp-operator/1842/pull-ci-openshift-oadp-operator-oadp-dev-4.20-e2e-test-aws/1996178043851919360",
            "prowjob_url": "https://prow.ci.openshift.org/prowjob?prowjob=3f1d7c2e-9a51-11f0-8a3c-0a580a8102b4",
        })
    );
    // A periodic's repository comes from extra_refs; it has no PR.
    assert_eq!(json[1]["org"], "openshift");
    assert_eq!(json[1]["repo"], "oadp-operator");
    assert_eq!(json[1]["pull_request"], serde_json::Value::Null);
    assert_eq!(json[1]["duration_s"], 9072.5);
    // A running job has no end and no duration.
    assert_eq!(json[2]["state"], "pending");
    assert_eq!(json[2]["finished_at"], serde_json::Value::Null);
    assert_eq!(json[2]["duration_s"], serde_json::Value::Null);
}

#[test]
fn state_ints_unknown_states_included() {
    let parsed = parse_deck(PLAIN, None).unwrap();
    let states: Vec<(&str, i64)> = parsed
        .builds
        .iter()
        .map(|b| (b.state.as_str(), b.state_int))
        .collect();
    assert_eq!(
        states,
        vec![
            ("success", 0),
            ("failure", 2),
            ("pending", 1),
            ("scheduling", 10),
            ("aborted", 3)
        ]
    );
    assert!(parsed.builds.iter().all(|b| b.prowjob_url.is_none()));
}

#[test]
fn a_truncated_or_foreign_page_is_an_error_not_partial_data() {
    let err = parse_deck(TRUNCATED, None).unwrap_err();
    assert!(matches!(err, Error::Json { .. }), "{err:?}");
    let wrapped_truncated = &WRAPPED[..WRAPPED.len() / 2];
    assert!(matches!(
        parse_deck(wrapped_truncated, None),
        Err(Error::Json { .. })
    ));
    let err = parse_deck("<!DOCTYPE html><html>deck</html>", None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "not a deck job list: it starts with \"<!DOCTYPE html><html>deck</html>\"; \
         expected {\"items\": [...]} or var allBuilds = {...};"
    );
    let err = parse_deck("{\"jobs\": []}", None).unwrap_err();
    assert!(err.to_string().contains("no \"items\" list"), "{err}");
    assert!(parse_deck("{\"items\": null}", None).is_err());
    assert!(parse_deck("", None).is_err());
}

#[test]
fn filters() {
    let builds = parse_deck(PLAIN, None).unwrap().builds;
    let jobs = |f: &Filter| -> Vec<String> {
        f.apply(builds.clone()).into_iter().map(|b| b.job).collect()
    };
    let oadp = Filter {
        job_glob: Some("*oadp*".into()),
        ..Filter::default()
    };
    assert_eq!(jobs(&oadp).len(), 4);
    let presubmits = Filter {
        types: vec!["presubmit".into()],
        ..oadp.clone()
    };
    assert_eq!(
        jobs(&presubmits),
        vec![
            "pull-ci-openshift-oadp-operator-oadp-dev-4.20-e2e-test-aws",
            "pull-ci-openshift-velero-oadp-1.5-unit-test"
        ]
    );
    let done = Filter {
        states: vec!["success".into(), "aborted".into(), "failure".into()],
        types: vec!["presubmit".into(), "periodic".into()],
        job_glob: None,
    };
    assert_eq!(
        jobs(&done),
        vec![
            "pull-ci-openshift-oadp-operator-oadp-dev-4.20-e2e-test-aws",
            "periodic-ci-openshift-oadp-operator-oadp-1.4-4.16-e2e-test-kubevirt-aws-periodic",
            "pull-ci-openshift-origin-main-e2e-aws-ovn"
        ]
    );
    assert_eq!(jobs(&Filter::default()).len(), 5);
}

#[test]
fn influx_lines_carry_what_the_recorded_jobs_say() {
    let builds = parse_deck(PLAIN, None).unwrap().builds;
    let oadp = Filter {
        job_glob: Some("*oadp*".into()),
        ..Filter::default()
    };
    let text = influx_lines(&oadp.apply(builds));
    assert!(text.ends_with('\n'));
    let lines: Vec<_> = text
        .lines()
        .map(|l| parse_line(l).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let expected = expected_lines(PLAIN, |job| job.contains("oadp"));
    assert_eq!(expected.len(), 4);
    assert_eq!(lines, expected);
}

/// deploy/grafana/ci-builds.json is a Grafana dashboard whose `build` queries
/// name only the tags and fields a build point has.
#[test]
fn the_ci_dashboard_asks_only_for_what_build_points_hold() {
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../../deploy/grafana/ci-builds.json"))
            .expect("valid JSON");
    assert!(dashboard["title"].is_string() && dashboard["schemaVersion"].is_u64());
    let parsed = parse_deck(PLAIN, Some(BASE)).unwrap();
    // A finished pull-request build has every field.
    let full = parsed
        .builds
        .iter()
        .find(|b| b.pull_request.is_some() && b.duration_s.is_some() && b.log_url.is_some())
        .expect("a finished PR build in the fixture");
    let point = rota_prow::build_point(full);
    let mut known: std::collections::BTreeSet<String> = point.tags.keys().cloned().collect();
    known.extend(point.fields.iter().map(|(k, _)| k.clone()));
    known.insert("build".into());
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let query = target["query"].as_str().expect("query");
            if !query.contains("FROM \"build\"") {
                continue;
            }
            // Double quotes hold identifiers in InfluxQL; single quotes hold values.
            for (i, ident) in query.split('"').enumerate() {
                if i % 2 == 1 {
                    assert!(
                        known.contains(ident),
                        "{ident:?} in {query:?} is not in a build point"
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 4, "the dashboard's build panels were read");
}
