//! docs/JOBS.md must name every field of the job spec: a field added to the code
//! without documentation fails this test.

use rota_core::JobSpec;
use serde_json::Value;

const DOC: &str = include_str!("../../../docs/JOBS.md");

fn keys(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                // Free-form maps: their keys are user data, not fields.
                if !matches!(k.as_str(), "tags" | "metadata" | "env" | "headers" | "data") {
                    keys(v, out);
                }
                out.push(k.clone());
            }
        }
        Value::Array(items) => items.iter().for_each(|v| keys(v, out)),
        _ => {}
    }
}

fn full_specs() -> Vec<Value> {
    let base = serde_json::json!({
        "name": "n", "description": "d", "timeout": "1m", "priority": 1, "overlap": "skip",
        "misfire": "run_all", "catchup_window": "1h", "paused": true, "tags": {"a": "b"},
        "metadata": {"x": 1}, "history_limit": 5, "max_output_bytes": 10, "delete_after_run": true,
        "notify": [{"url": "http://127.0.0.1:9/hook", "on": ["started", "finished"], "headers": {"A": "b"}}],
        "retry": {"max_attempts": 2, "initial_delay": "1s", "max_delay": "2s", "multiplier": 2.0, "jitter": false},
    });
    let schedules = [
        serde_json::json!({"cron": "* * * * *", "timezone": "UTC"}),
        serde_json::json!({"every": "1m"}),
        serde_json::json!({"at": "2030-01-01T00:00:00Z"}),
        serde_json::json!({"after": "1m"}),
        serde_json::json!({"manual": true}),
        serde_json::json!({"on": {"event": "execution.finished", "job": "b", "status": "failed", "trigger": "manual", "node": "n", "data": {"x": 1}}}),
    ];
    let executors = [
        serde_json::json!({"type": "shell", "command": "true", "args": ["a"], "env": {"K": "V"}, "cwd": "/"}),
        serde_json::json!({"type": "http", "method": "POST", "url": "http://x/", "headers": {"h": "v"}, "body": "b", "expect_status": [200]}),
        serde_json::json!({"type": "record", "path": "/tmp/x"}),
        serde_json::json!({"type": "probe", "targets": "gw", "path": "/p", "scheme": "https", "method": "GET",
            "headers": {"h": "v"}, "forward_headers": ["Authorization"], "expect_status": [200], "retry_on": [401],
            "retry_delay": "1s", "max_retries": 2, "deadline": "5s", "min_targets": 2, "below_min": "synced"}),
        serde_json::json!({"type": "prow", "url": "https://prow.example/?job=*x*", "job": "*x*",
            "types": ["periodic"], "states": ["failure"], "sink": "ci", "timeout": "10s"}),
    ];
    let mut out = Vec::new();
    for (i, s) in schedules.iter().enumerate() {
        let mut v = base.clone();
        v["schedule"] = s.clone();
        v["executor"] = executors[i % executors.len()].clone();
        out.push(v);
    }
    // Every executor once, and the fan-out fields.
    for e in &executors {
        let mut v = base.clone();
        v["schedule"] = serde_json::json!({"manual": true});
        v["executor"] = e.clone();
        v["sink"] = serde_json::json!("ci");
        if e["type"] == "shell" {
            v["targets"] = serde_json::json!("gw");
            v["parallelism"] = serde_json::json!(4);
        }
        out.push(v);
    }
    out
}

#[test]
fn every_spec_field_is_documented() {
    let mut missing = Vec::new();
    for doc in full_specs() {
        // Round-trip through the type so only fields the code knows are checked.
        let spec: JobSpec = serde_json::from_value(doc).expect("full spec parses");
        let mut names = Vec::new();
        keys(&serde_json::to_value(&spec).unwrap(), &mut names);
        for name in names {
            if !DOC.contains(&format!("`{name}`")) && !missing.contains(&name) {
                missing.push(name);
            }
        }
    }
    for t in ["shell", "http", "record", "probe", "prow"] {
        if !DOC.contains(&format!("`{t}`")) {
            missing.push(format!("executor type {t}"));
        }
    }
    assert!(
        missing.is_empty(),
        "docs/JOBS.md does not document: {missing:?}"
    );
}
