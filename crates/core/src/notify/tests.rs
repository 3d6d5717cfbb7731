use serde_json::json;

use super::*;
use crate::validate::parse_job_value;

fn job_error(notify: serde_json::Value) -> ValidationError {
    let doc = json!({
        "name": "build",
        "schedule": {"manual": true},
        "executor": {"type": "shell", "command": "true"},
        "notify": notify,
    });
    match parse_job_value(&doc) {
        Err(e) => e,
        Ok(spec) => spec
            .validate()
            .expect_err("the notify list should be refused"),
    }
}

#[test]
fn a_notify_entry_defaults_to_finished_and_round_trips() {
    let doc = json!({
        "name": "build",
        "schedule": {"manual": true},
        "executor": {"type": "shell", "command": "true"},
        "notify": [{"url": "http://127.0.0.1:9/hook"}],
    });
    let spec = parse_job_value(&doc).unwrap();
    spec.validate().unwrap();
    assert_eq!(spec.notify[0].on, vec![NotifyOn::Finished]);
    let back = serde_json::to_value(&spec).unwrap();
    assert_eq!(back["notify"][0]["on"], json!(["finished"]));
    // A job without notify serializes as before (no key).
    let mut plain = spec.clone();
    plain.notify.clear();
    assert!(serde_json::to_value(&plain)
        .unwrap()
        .get("notify")
        .is_none());
}

#[test]
fn bad_notify_entries_name_their_field() {
    let cases = [
        (json!([{"url": "ftp://x"}]), "notify[0].url"),
        (
            json!([{"url": "http://a"}, {"url": "http://"}]),
            "notify[1].url",
        ),
        (json!([{"url": "http://a", "on": []}]), "notify[0].on"),
        (
            json!([{"url": "http://a", "on": ["done"]}]),
            "notify[0].on[0]",
        ),
        (
            json!([{"url": "http://a", "headers": {"bad name": "x"}}]),
            "notify[0].headers",
        ),
        (
            json!([{"url": "http://a", "headers": {"X-A": "a\r\nb"}}]),
            "notify[0].headers.X-A",
        ),
        (
            json!([{"url": "http://a", "headers": {"Rota-Delivery-Id": "x"}}]),
            "notify[0].headers.Rota-Delivery-Id",
        ),
        (
            json!([{"url": "http://a", "when": "always"}]),
            "notify[0].when",
        ),
        (json!({"url": "http://a"}), "notify"),
    ];
    for (notify, field) in cases {
        let err = job_error(notify.clone());
        assert_eq!(err.field, field, "{notify}: {err}");
        assert!(!err.message.is_empty());
    }
    let many: Vec<_> = (0..=MAX_NOTIFY_TARGETS)
        .map(|_| json!({"url": "http://a"}))
        .collect();
    assert_eq!(job_error(json!(many)).field, "notify");
}

#[test]
fn webhooks_parse_validate_and_match() {
    let spec = parse_webhook_json(
        br#"{"url": "https://hooks.example/x", "on": ["started", "finished"], "jobs": ["build"]}"#,
    )
    .unwrap();
    spec.validate().unwrap();
    assert!(spec.matches("build", NotifyOn::Started));
    assert!(!spec.matches("deploy", NotifyOn::Finished));
    let all = parse_webhook_json(br#"{"url": "http://a"}"#).unwrap();
    assert!(all.matches("anything", NotifyOn::Finished));
    assert!(!all.matches("anything", NotifyOn::Started));

    for (body, field) in [
        (&br#"{"url": 5}"#[..], "url"),
        (br#"{"on": ["finished"]}"#, "url"),
        (br#"{"url": "http://a", "extra": 1}"#, "extra"),
        (br#"[1]"#, ""),
    ] {
        let err = parse_webhook_json(body).unwrap_err();
        assert_eq!(err.field, field, "{}: {err}", String::from_utf8_lossy(body));
    }
    for (body, field) in [
        (&br#"{"url": "mailto:x"}"#[..], "url"),
        (
            br#"{"url": "http://a", "jobs": ["ok", "Not OK"]}"#,
            "jobs[1]",
        ),
        (br#"{"url": "http://a", "on": []}"#, "on"),
        (
            br#"{"url": "http://a", "headers": {"Host": "x"}}"#,
            "headers.Host",
        ),
    ] {
        let err = parse_webhook_json(body).unwrap().validate().unwrap_err();
        assert_eq!(err.field, field, "{}: {err}", String::from_utf8_lossy(body));
    }
}

#[test]
fn delivery_ids_are_stable_and_carry_their_revision() {
    let exec = Ulid::from_parts(1, 2);
    let a = delivery_id(42, exec, 1, NotifyOn::Finished, "notify[0]");
    assert_eq!(a, delivery_id(42, exec, 1, NotifyOn::Finished, "notify[0]"));
    assert_ne!(a, delivery_id(42, exec, 1, NotifyOn::Finished, "ops"));
    assert_ne!(a, delivery_id(42, exec, 1, NotifyOn::Started, "notify[0]"));
    assert_eq!(delivery_id_revision(&a), Some(42));
    assert_eq!(delivery_id_revision("x-y"), None);
}

#[test]
fn long_errors_are_cut() {
    assert_eq!(truncate_error("short"), "short");
    let long = "é".repeat(MAX_DELIVERY_ERROR_CHARS * 2);
    let cut = truncate_error(&long);
    assert_eq!(cut.chars().count(), MAX_DELIVERY_ERROR_CHARS);
    assert!(cut.ends_with('…'));
}

#[test]
fn the_backoff_grows_and_is_bounded() {
    let policy = delivery_backoff();
    let full: Vec<u64> = (2..=DELIVERY_ATTEMPTS)
        .map(|a| {
            RetryPolicy {
                jitter: false,
                ..policy.clone()
            }
            .delay_before(a, 0)
            .as_secs()
        })
        .collect();
    assert_eq!(full, vec![1, 2, 4, 8]);
}
