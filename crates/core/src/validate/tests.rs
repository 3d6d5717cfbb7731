//! One test per rule: a valid job, changed in one place, must fail on that field.

use serde_json::{json, Value};

use super::*;

fn base() -> Value {
    json!({
        "name": "nightly-backup",
        "description": "dump the database",
        "schedule": {"cron": "0 30 2 * * *", "timezone": "Europe/Berlin"},
        "executor": {"type": "shell", "command": "pg_dump app > /backups/app.sql"},
        "timeout": "10m",
        "retry": {"max_attempts": 3, "initial_delay": "1s", "max_delay": "1m", "multiplier": 2.0, "jitter": true},
        "priority": 0,
        "overlap": "skip",
        "misfire": "run_once",
        "catchup_window": "1h",
        "paused": false,
        "tags": {"region": "eu"},
        "metadata": {},
        "history_limit": 100,
        "max_output_bytes": 1048576
    })
}

/// `base()` with the value at a dotted path replaced (or removed when `null` is
/// given for a key that `remove` names).
fn with(path: &str, value: Value) -> Value {
    let mut doc = base();
    let mut target = &mut doc;
    let keys: Vec<&str> = path.split('.').collect();
    for key in &keys[..keys.len() - 1] {
        target = &mut target[*key];
    }
    target[keys[keys.len() - 1]] = value;
    doc
}

fn parse_error(doc: &Value) -> ValidationError {
    parse_job_value(doc).expect_err("expected a parse error")
}

/// Parses (which must succeed) and validates (which must fail).
fn invalid(doc: &Value) -> ValidationError {
    let spec = parse_job_value(doc).unwrap_or_else(|e| panic!("parse: {e}"));
    spec.validate().expect_err("expected a validation error")
}

fn assert_field(err: &ValidationError, field: &str, words: &[&str]) {
    assert_eq!(err.field, field, "{err}");
    for word in words {
        assert!(err.message.contains(word), "{err:?} lacks {word:?}");
    }
}

#[test]
fn the_design_example_is_valid() {
    let spec = parse_job_value(&base()).unwrap();
    let schedule = spec.validate().unwrap();
    assert!(schedule.is_recurring());
    // And the same through the JSON entry point.
    let bytes = serde_json::to_vec(&base()).unwrap();
    assert_eq!(parse_job_json(&bytes).unwrap(), spec);
}

#[test]
fn minimal_job_gets_defaults() {
    let doc = json!({"name": "a", "schedule": {"manual": true}, "executor": {"type": "shell", "command": "true"}});
    let spec = parse_job_value(&doc).unwrap();
    assert!(!spec.validate().unwrap().fires_on_its_own());
    assert_eq!(spec.history_limit, None);
}

#[test]
fn name_and_description() {
    assert_field(
        &invalid(&with("name", json!("Nightly"))),
        "name",
        &["[a-z0-9]"],
    );
    assert_field(&invalid(&with("name", json!(""))), "name", &["empty"]);
    assert_field(
        &invalid(&with("description", json!("x".repeat(4097)))),
        "description",
        &["4097", "4096"],
    );
    assert!(
        parse_job_value(&with("description", json!("x".repeat(4096))))
            .unwrap()
            .validate()
            .is_ok()
    );
}

#[test]
fn schedule_fields() {
    let err = invalid(&with("schedule", json!({"cron": "0 25 * * *"})));
    assert_eq!(err.to_string(), "schedule.cron: hour 25 is out of 0-23");
    let err = invalid(&with("schedule", json!({"cron": "* * *"})));
    assert_eq!(
        err.to_string(),
        "schedule.cron: expected 5 fields (minute hour day month weekday) or 6 (second first), got 3"
    );
    assert_field(
        &invalid(&with(
            "schedule",
            json!({"cron": "@daily", "timezone": "Europe/Berln"}),
        )),
        "schedule.timezone",
        &["Europe/Berln", "IANA"],
    );
    assert_field(
        &invalid(&with("schedule", json!({"every": "500ms"}))),
        "schedule.every",
        &["1s"],
    );
    assert_field(
        &invalid(&with(
            "schedule",
            json!({"on": {"event": "deploy", "env": "prod"}}),
        )),
        "schedule.on.env",
        &["not a filter", "accepted: data"],
    );
    // A time in the past is accepted: it just never fires.
    let past = parse_job_value(&with("schedule", json!({"at": "2001-01-01T00:00:00Z"}))).unwrap();
    assert!(past.validate().is_ok());
    // `at` takes RFC 3339 only.
    assert_field(
        &parse_error(&with("schedule", json!({"at": "tomorrow"}))),
        "schedule.at",
        &["RFC 3339"],
    );
    assert_field(
        &parse_error(&with("schedule", json!({"every": "5 minutes"}))),
        "schedule.every",
        &["unit"],
    );
    assert_field(
        &parse_error(&with(
            "schedule",
            json!({"every": "1m", "cron": "* * * * *"}),
        )),
        "schedule",
        &["exactly one of"],
    );
}

#[test]
fn shell_executor() {
    assert_field(
        &invalid(&with("executor.command", json!("  "))),
        "executor.command",
        &["empty"],
    );
    assert_field(
        &invalid(&with("executor.cwd", json!("relative/dir"))),
        "executor.cwd",
        &["absolute"],
    );
    assert_field(
        &invalid(&with("executor.env", json!({"A=B": "1"}))),
        "executor.env",
        &["A=B", "'='"],
    );
    assert_field(
        &invalid(&with("executor.env", json!({"": "1"}))),
        "executor.env",
        &["empty"],
    );
    assert_field(
        &invalid(&with("executor.env", json!({"A": "x\u{0}y"}))),
        "executor.env.A",
        &["NUL"],
    );
    assert_field(
        &invalid(&with("executor.args", json!(["ok", "b\u{0}d"]))),
        "executor.args[1]",
        &["NUL"],
    );
    let ok = with(
        "executor",
        json!({"type": "shell", "command": "/bin/echo", "args": ["hi"], "env": {"GREETING": "hi"}, "cwd": "/tmp"}),
    );
    assert!(parse_job_value(&ok).unwrap().validate().is_ok());
}

fn http(fields: Value) -> Value {
    let mut executor = json!({"type": "http", "url": "https://example.com/health"});
    for (key, value) in fields.as_object().unwrap() {
        executor[key] = value.clone();
    }
    with("executor", executor)
}

#[test]
fn http_executor() {
    assert!(parse_job_value(&http(
        json!({"method": "POST", "expect_status": [200, 204]})
    ))
    .unwrap()
    .validate()
    .is_ok());
    assert_field(
        &invalid(&http(json!({"method": "FETCH"}))),
        "executor.method",
        &["FETCH", "GET HEAD POST PUT PATCH DELETE OPTIONS"],
    );
    for (url, word) in [
        ("ftp://example.com", "http://"),
        ("example.com", "http://"),
        ("http://", "no host"),
        ("https:///path", "no host"),
        ("http://user@:80/", "no host"),
        ("http://exa mple.com", "spaces"),
        ("http://example.com:99999/", "port"),
        ("http://[::1/", "unclosed"),
    ] {
        assert_field(
            &invalid(&http(json!({"url": url}))),
            "executor.url",
            &[word],
        );
    }
    for url in [
        "HTTP://EXAMPLE.COM",
        "http://10.0.0.1:8080/x?y#z",
        "http://[::1]:80/",
        "https://user:pw@host",
    ] {
        assert!(
            parse_job_value(&http(json!({"url": url})))
                .unwrap()
                .validate()
                .is_ok(),
            "{url}"
        );
    }
    assert_field(
        &invalid(&http(json!({"expect_status": [200, 600]}))),
        "executor.expect_status[1]",
        &["600", "100-599"],
    );
    assert_field(
        &invalid(&http(json!({"expect_status": 99}))),
        "executor.expect_status[0]",
        &["99"],
    );
    assert_field(
        &invalid(&http(json!({"headers": {"Bad Header": "x"}}))),
        "executor.headers",
        &["Bad Header"],
    );
    assert_field(
        &invalid(&http(json!({"headers": {"X-Ok": "a\r\nb"}}))),
        "executor.headers.X-Ok",
        &["line breaks"],
    );
}

#[test]
fn record_executor() {
    assert_field(
        &invalid(&with("executor", json!({"type": "record", "path": ""}))),
        "executor.path",
        &["empty"],
    );
}

#[test]
fn timeout_retry_and_limits() {
    assert_field(&invalid(&with("timeout", json!("0s"))), "timeout", &["0s"]);
    assert_field(&invalid(&with("timeout", json!("8d"))), "timeout", &["7d"]);
    assert!(parse_job_value(&with("timeout", json!("7d")))
        .unwrap()
        .validate()
        .is_ok());
    assert_field(
        &invalid(&with("retry.max_attempts", json!(0))),
        "retry.max_attempts",
        &["1-100"],
    );
    assert_field(
        &invalid(&with("retry.max_attempts", json!(101))),
        "retry.max_attempts",
        &["101"],
    );
    assert_field(
        &invalid(&with("retry.initial_delay", json!("0s"))),
        "retry.initial_delay",
        &["0s"],
    );
    assert_field(
        &invalid(&with("retry.max_delay", json!("500ms"))),
        "retry.max_delay",
        &["initial_delay"],
    );
    for bad in [0.5, 10.5] {
        assert_field(
            &invalid(&with("retry.multiplier", json!(bad))),
            "retry.multiplier",
            &["1.0-10.0"],
        );
    }
    assert_field(
        &invalid(&with("priority", json!(1001))),
        "priority",
        &["1001"],
    );
    assert_field(
        &invalid(&with("priority", json!(-1001))),
        "priority",
        &["-1000"],
    );
    assert_field(
        &invalid(&with("catchup_window", json!("31d"))),
        "catchup_window",
        &["30d"],
    );
    assert_field(
        &invalid(&with("history_limit", json!(0))),
        "history_limit",
        &["1-10000"],
    );
    assert_field(
        &invalid(&with("history_limit", json!(10_001))),
        "history_limit",
        &["10001"],
    );
    assert_field(
        &invalid(&with("max_output_bytes", json!(64 * 1024 * 1024 + 1))),
        "max_output_bytes",
        &["64 MiB"],
    );
    assert!(parse_job_value(&with("max_output_bytes", json!(0)))
        .unwrap()
        .validate()
        .is_ok());
}

#[test]
fn non_finite_multiplier_is_rejected() {
    // JSON cannot spell NaN, but a spec built in code (or from TOML) can.
    let mut spec = parse_job_value(&base()).unwrap();
    if let Some(retry) = spec.retry.as_mut() {
        retry.multiplier = f64::NAN;
    }
    assert_field(&spec.validate().unwrap_err(), "retry.multiplier", &["NaN"]);
}

#[test]
fn tags() {
    assert_field(
        &invalid(&with("tags", json!({"": "x"}))),
        "tags",
        &["empty"],
    );
    assert_field(
        &invalid(&with("tags", json!({"k".repeat(64): "x"}))),
        "tags",
        &["64", "63"],
    );
    assert_field(
        &invalid(&with("tags", json!({"region": ""}))),
        "tags.region",
        &["empty"],
    );
    assert_field(
        &invalid(&with("tags", json!({"region": "v".repeat(64)}))),
        "tags.region",
        &["63"],
    );
    assert!(
        parse_job_value(&with("tags", json!({"k".repeat(63): "v".repeat(63)})))
            .unwrap()
            .validate()
            .is_ok()
    );
}

#[test]
fn type_errors_name_their_path() {
    let err = parse_error(&with("retry.max_attempts", json!("x")));
    assert_eq!(
        err.to_string(),
        "retry.max_attempts: invalid type: string \"x\", expected u32"
    );
    assert_field(
        &parse_error(&with("priority", json!(1.5))),
        "priority",
        &["i32"],
    );
    assert_field(
        &parse_error(&with("overlap", json!("sometimes"))),
        "overlap",
        &["sometimes", "buffer_one"],
    );
    assert_field(
        &parse_error(&with("retry", json!("often"))),
        "retry",
        &["expected an object"],
    );
    assert_field(
        &parse_error(&json!([1, 2])),
        "",
        &["a job is an object", "a list"],
    );
}

#[test]
fn unknown_and_missing_fields_are_named() {
    let err = parse_error(&with("retries", json!(3)));
    assert_field(&err, "retries", &["unknown field `retries`", "`retry`"]);
    let err = parse_error(&with("retry.attempts", json!(3)));
    assert_field(&err, "retry.attempts", &["max_attempts"]);
    let err = parse_error(&with("schedule.cronn", json!("x")));
    assert_field(&err, "schedule.cronn", &["unknown field"]);
    let mut doc = base();
    doc.as_object_mut().unwrap().remove("schedule");
    assert_field(
        &parse_error(&doc),
        "schedule",
        &["missing field `schedule`"],
    );
}

#[test]
fn executor_errors_name_the_field_inside_the_executor() {
    assert_field(
        &parse_error(&with("executor", json!({"type": "ssh", "command": "x"}))),
        "executor.type",
        &["ssh", "shell"],
    );
    assert_field(
        &parse_error(&with("executor", json!({"command": "x"}))),
        "executor.type",
        &["missing"],
    );
    assert_field(
        &parse_error(&with("executor", json!({"type": 7, "command": "x"}))),
        "executor.type",
        &["string"],
    );
    assert_field(
        &parse_error(&with("executor.command", json!(42))),
        "executor.command",
        &["invalid type: integer `42`"],
    );
    assert_field(
        &parse_error(&with("executor.commnd", json!("x"))),
        "executor.commnd",
        &["unknown field", "`command`"],
    );
    assert_field(
        &parse_error(&http(json!({"expect_status": "ok"}))),
        "executor.expect_status",
        &["100-599"],
    );
    assert_field(
        &parse_error(&http(json!({"headers": {"X": 1}}))),
        "executor.headers.X",
        &["invalid type"],
    );
}

#[test]
fn json_entry_point_reports_syntax_errors() {
    let err = parse_job_json(b"{\"name\": ").unwrap_err();
    assert_field(&err, "", &["not valid JSON", "line 1"]);
    let err = parse_job_json(br#"{"name": "a", "schedule": {"manual": true}, "executor": {"type": "shell", "command": "x"}, "timeout": 5}"#).unwrap_err();
    assert_field(&err, "timeout", &["invalid type"]);
}

#[test]
fn plain_message_rewrites_rust_type_names() {
    assert_eq!(
        plain_message("invalid type: string \"x\", expected struct RetryPolicy"),
        "invalid type: string \"x\", expected an object"
    );
    assert_eq!(plain_message("no structs here"), "no structs here");
}

/// An `on` job as the design writes it: no misfire or catch-up window of its own.
fn on_job(on: Value) -> Value {
    let mut doc = with("schedule", json!({"on": on}));
    let map = doc.as_object_mut().unwrap();
    map.remove("misfire");
    map.remove("catchup_window");
    doc
}

#[test]
fn event_triggers() {
    for good in [
        json!({"event": "execution.finished", "job": "build", "status": "succeeded"}),
        json!({"event": "execution.finished", "trigger": "schedule", "data": {"attempt": 1}}),
        json!({"event": "deploy.finished", "data": {"env": "prod"}}),
        json!({"event": "deploy.finished"}),
    ] {
        let spec = parse_job_value(&on_job(good.clone())).unwrap();
        let compiled = spec.validate().unwrap_or_else(|e| panic!("{good}: {e}"));
        assert!(!compiled.fires_on_its_own());
        // The trigger reads back as it was written.
        let back = serde_json::to_value(&spec).unwrap();
        assert_eq!(back["schedule"]["on"], good);
    }
    let bad = |on: Value| invalid(&on_job(on));
    assert_field(
        &bad(json!({"event": "execution.finished", "job": "build", "status": "ok"})),
        "schedule.on.status",
        &["\"ok\"", "succeeded", "timed_out"],
    );
    assert_field(
        &bad(json!({"event": "execution.finished", "job": "Build!"})),
        "schedule.on.job",
        &["[a-z0-9]"],
    );
    assert_field(
        &bad(json!({"event": "execution.finished", "job": "nightly-backup"})),
        "schedule.on.job",
        &["own runs"],
    );
    assert_field(
        &bad(json!({"event": "execution.finished", "jobs": "build"})),
        "schedule.on.jobs",
        &["job, status, trigger, node, data"],
    );
    assert_field(
        &bad(json!({"event": "deploy.finished", "env": "prod"})),
        "schedule.on.env",
        &["accepted: data"],
    );
    assert_field(
        &bad(json!({"event": "deploy finished"})),
        "schedule.on.event",
        &["dot-separated"],
    );
    assert_field(
        &bad(json!({"event": "deploy.finished", "data": "prod"})),
        "schedule.on.data",
        &["object"],
    );
    // Misfire handling is about time instants; an `on` job does not take it.
    let mut doc = on_job(json!({"event": "deploy.finished"}));
    doc["misfire"] = json!("skip");
    assert_field(&invalid(&doc), "misfire", &["does not apply", "`on`"]);
    let mut doc = on_job(json!({"event": "deploy.finished"}));
    doc["catchup_window"] = json!("5m");
    assert_field(&invalid(&doc), "catchup_window", &["does not apply"]);
    // An `on` without its event type names the missing key.
    let err = parse_error(&on_job(json!({"job": "build"})));
    assert!(err.field.starts_with("schedule"), "{err}");
    assert!(err.message.contains("event"), "{err}");
}

#[test]
fn delete_after_run_only_on_jobs_that_run_once() {
    for schedule in [
        json!({"at": "2030-01-01T00:00:00Z"}),
        json!({"after": "5m"}),
    ] {
        let mut doc = with("schedule", schedule);
        doc["delete_after_run"] = json!(true);
        let spec = parse_job_value(&doc).unwrap();
        assert!(spec.delete_after_run);
        spec.validate().unwrap();
    }
    let mut doc = base();
    doc["delete_after_run"] = json!(true);
    assert_field(
        &invalid(&doc),
        "delete_after_run",
        &["`at` or `after`", "`cron`"],
    );
    let mut doc = with("schedule", json!({"manual": true}));
    doc["delete_after_run"] = json!(true);
    assert_field(&invalid(&doc), "delete_after_run", &["`manual`"]);
    // Absent means false, and false is not written back.
    let spec = parse_job_value(&base()).unwrap();
    assert!(!spec.delete_after_run);
    assert!(serde_json::to_value(&spec)
        .unwrap()
        .get("delete_after_run")
        .is_none());
}

#[test]
fn fan_out_targets_and_parallelism() {
    let mut doc = base();
    doc["targets"] = json!("gw");
    let spec = parse_job_value(&doc).unwrap();
    spec.validate().unwrap();
    assert_eq!(spec.fan_out_parallelism(), Some(32));
    // Written back as given, and absent when not given.
    assert_eq!(serde_json::to_value(&spec).unwrap()["targets"], json!("gw"));
    let plain = parse_job_value(&base()).unwrap();
    assert_eq!(plain.fan_out_parallelism(), None);
    let value = serde_json::to_value(&plain).unwrap();
    assert!(value.get("targets").is_none() && value.get("parallelism").is_none());

    doc["parallelism"] = json!(3);
    let spec = parse_job_value(&doc).unwrap();
    spec.validate().unwrap();
    assert_eq!(spec.fan_out_parallelism(), Some(3));
    let back: JobSpec = serde_json::from_value(serde_json::to_value(&spec).unwrap()).unwrap();
    assert_eq!(back, spec);

    for bad in [0, 1025] {
        doc["parallelism"] = json!(bad);
        assert_field(&invalid(&doc), "parallelism", &["1-1024"]);
    }
    doc["targets"] = json!("Gw");
    doc["parallelism"] = json!(2);
    assert_field(&invalid(&doc), "targets", &["[a-z0-9]"]);

    let mut doc = base();
    doc["parallelism"] = json!(4);
    assert_field(&invalid(&doc), "parallelism", &["only applies", "targets"]);
}

#[test]
fn probe_executor() {
    let probe = json!({"type": "probe", "targets": "gw", "path": "/v1/synced",
        "forward_headers": ["Authorization"], "retry_on": [401], "min_targets": 2,
        "below_min": "synced"});
    let spec = parse_job_value(&with("executor", probe.clone())).unwrap();
    spec.validate().unwrap();
    assert_eq!(spec.executor.type_name(), "probe");
    let back: JobSpec = serde_json::from_value(serde_json::to_value(&spec).unwrap()).unwrap();
    assert_eq!(back, spec);

    // Its fields are checked under `executor`.
    let mut bad = probe.clone();
    bad["retry_on"] = json!([200]);
    assert_field(
        &invalid(&with("executor", bad)),
        "executor.retry_on[0]",
        &["expect_status"],
    );
    let mut bad = probe.clone();
    bad["path"] = json!("synced");
    assert_field(&invalid(&with("executor", bad)), "executor.path", &["/"]);
    // A wrong type inside names the field, as for the other executors.
    let mut bad = probe.clone();
    bad["max_retries"] = json!("five");
    assert_field(
        &parse_error(&with("executor", bad)),
        "executor.max_retries",
        &[],
    );
    let mut bad = probe.clone();
    bad["retries"] = json!(1);
    assert_field(
        &parse_error(&with("executor", bad)),
        "executor.retries",
        &[],
    );

    // A probe names its set itself.
    let mut doc = with("executor", probe);
    doc["targets"] = json!("gw");
    assert_field(&invalid(&doc), "targets", &["executor.targets"]);
}
