//! Hostile JSON bodies thrown at the real router of a real single node: valid
//! documents (job, batch apply, workflow, target set, sink, webhook, KV value,
//! event) with one node of their tree replaced by an arbitrary value (wrong type,
//! huge or negative number, odd string, nested junk), removed, or joined by an
//! unknown key; and raw bodies (arbitrary bytes, invalid UTF-8, bad escapes, deep
//! nesting, numbers beyond every range). Every answer must be a success or a 4xx
//! in the contract's error shape with a message, never a 5xx or a panic, and the
//! store must read back consistent afterwards (every stored job, workflow, target
//! set, sink and webhook lists and validates).
//!
//! `cargo test -p rota-api --lib fuzz` runs a few dozen cases per property; for a
//! long run: `PROPTEST_CASES=20000 cargo test --release -p rota-api --lib fuzz`.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Map, Value};

use crate::tests::Harness;

/// Cases per property: `PROPTEST_CASES`, else few enough for the normal test run.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48)
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Strings that parsers trip on: empty, huge, control characters, look-alikes of
/// durations, names, URLs and globs.
fn odd_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("0s".to_string()),
        Just("-1s".to_string()),
        Just("99999999999999999999h".to_string()),
        Just("1e400".to_string()),
        Just("\u{0}".to_string()),
        Just("\u{feff}x".to_string()),
        Just("../../etc/passwd".to_string()),
        Just("*".to_string()),
        Just("@every 0s".to_string()),
        Just("http://".to_string()),
        Just("x".repeat(70)),
        Just("é".repeat(3000)),
        ".{0,16}",
        "[a-z0-9:/._*-]{0,24}",
    ]
}

/// Any JSON value, nested a little, with numbers at and beyond every range.
fn hostile_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(-1)),
        Just(json!(0)),
        Just(json!(1e308)),
        Just(json!(-0.0)),
        any::<f64>().prop_map(|f| json!(f)),
        odd_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("type".to_string()),
                    Just("name".to_string()),
                    Just("command".to_string()),
                    Just("every".to_string()),
                    Just("cron".to_string()),
                    "[a-z_]{1,10}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A route that reads a JSON body, and a valid body for it. Every job is paused
/// and manual (and a mutation changes one node only), so nothing accepted runs.
#[derive(Debug, Clone)]
struct Target {
    method: Method,
    path: &'static str,
    doc: Value,
}

fn paused_job() -> Value {
    json!({
        "schedule": {"manual": true},
        "paused": true,
        "description": "fuzz",
        "executor": {"type": "shell", "command": "true", "args": ["a"], "env": {"A": "b"}, "cwd": "/tmp"},
        "timeout": "10s",
        "retry": {"max_attempts": 3, "initial_delay": "1s", "max_delay": "1m", "multiplier": 2.0, "jitter": true},
        "priority": 5,
        "overlap": "skip",
        "misfire": "run_once",
        "catchup_window": "1h",
        "tags": {"region": "eu"},
        "metadata": {"owner": "fuzz", "n": [1, 2]},
        "history_limit": 10,
        "max_output_bytes": 1024,
        "notify": [{"url": "http://127.0.0.1:9/hook", "on": ["finished"]}],
    })
}

fn targets() -> Vec<Target> {
    let mut http_job = paused_job();
    http_job["executor"] = json!({"type": "http", "method": "POST", "url": "http://127.0.0.1:9/x",
                                  "headers": {"a": "b"}, "body": "{}", "expect_status": [200, 204]});
    let mut on_job = paused_job();
    on_job["schedule"] = json!({"on": {"event": "deploy.finished", "data": {"env": "prod"}}});
    on_job["misfire"] = json!("skip");
    on_job.as_object_mut().unwrap().remove("catchup_window");
    on_job.as_object_mut().unwrap().remove("misfire");
    let mut fan_out = paused_job();
    fan_out["targets"] = json!("fleet");
    fan_out["parallelism"] = json!(4);
    let mut named = paused_job();
    named["name"] = json!("batch-a");
    let mut named_b = on_job.clone();
    named_b["name"] = json!("batch-b");
    vec![
        Target {
            method: Method::PUT,
            path: "/v1/jobs/fuzz-job",
            doc: paused_job(),
        },
        Target {
            method: Method::PUT,
            path: "/v1/jobs/fuzz-http",
            doc: http_job,
        },
        Target {
            method: Method::PUT,
            path: "/v1/jobs/fuzz-on",
            doc: on_job,
        },
        Target {
            method: Method::PUT,
            path: "/v1/jobs/fuzz-fan",
            doc: fan_out,
        },
        Target {
            method: Method::POST,
            path: "/v1/jobs",
            doc: json!({"jobs": [named, named_b], "apply_set": "fuzz", "prune": true}),
        },
        Target {
            method: Method::PUT,
            path: "/v1/workflows/fuzz-flow",
            doc: json!({
                "schedule": {"manual": true},
                "paused": true,
                "env": {"RAILS_ENV": "test"},
                "timeout": "1h",
                "concurrency": "skip",
                "jobs": {
                    "lint": {"executor": {"type": "shell", "command": "true"}, "tags": {"pool": "nowhere"}},
                    "test": {"needs": ["lint"], "tags": {"pool": "nowhere"},
                             "steps": [{"name": "rspec", "executor": {"type": "shell", "command": "true"}}]}
                }
            }),
        },
        Target {
            method: Method::PUT,
            path: "/v1/targets/fleet",
            doc: json!({"provider": "static", "groups": [{"targets": ["a:1", "b:2"], "labels": {"zone": "x"}}]}),
        },
        Target {
            method: Method::PUT,
            path: "/v1/targets/files",
            doc: json!({"provider": "file", "files": ["sd/*.json"], "refresh_interval": "30s"}),
        },
        Target {
            method: Method::PUT,
            path: "/v1/sinks/influx",
            doc: json!({"type": "influxdb", "url": "http://127.0.0.1:9", "org": "o", "bucket": "ci", "token": "t"}),
        },
        Target {
            method: Method::PUT,
            path: "/v1/webhooks/hook",
            doc: json!({"url": "http://127.0.0.1:9/hook", "on": ["started", "finished"], "jobs": ["fuzz-job"], "headers": {"Authorization": "x"}}),
        },
        Target {
            method: Method::PUT,
            path: "/v1/kv/fuzz/key",
            doc: json!({"value": "v"}),
        },
        Target {
            method: Method::POST,
            path: "/v1/events",
            doc: json!({"type": "deploy.finished", "data": {"env": "prod", "n": 1}}),
        },
        Target {
            method: Method::PUT,
            path: "/v1/config/max_running",
            doc: json!({"value": 8}),
        },
        Target {
            method: Method::PUT,
            path: "/v1/config/default_retry",
            doc: json!({"value": {"max_attempts": 3, "initial_delay": "1s", "max_delay": "1m", "multiplier": 2.0, "jitter": false}}),
        },
        Target {
            method: Method::PUT,
            path: "/v1/config/log",
            doc: json!({"value": "info,rota_api=debug"}),
        },
    ]
}

/// One step into a JSON tree.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// Every node of `doc` (the root first) by its path.
fn paths(doc: &Value) -> Vec<Vec<Step>> {
    let mut out = vec![Vec::new()];
    let mut i = 0;
    while i < out.len() {
        let path = out[i].clone();
        let node = get(doc, &path).expect("a listed path exists");
        match node {
            Value::Object(map) => {
                for key in map.keys() {
                    let mut p = path.clone();
                    p.push(Step::Key(key.clone()));
                    out.push(p);
                }
            }
            Value::Array(items) => {
                for index in 0..items.len() {
                    let mut p = path.clone();
                    p.push(Step::Index(index));
                    out.push(p);
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

fn get<'a>(doc: &'a Value, path: &[Step]) -> Option<&'a Value> {
    path.iter().try_fold(doc, |node, step| match step {
        Step::Key(k) => node.get(k),
        Step::Index(i) => node.get(i),
    })
}

fn get_mut<'a>(doc: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    path.iter().try_fold(doc, |node, step| match step {
        Step::Key(k) => node.get_mut(k),
        Step::Index(i) => node.get_mut(*i),
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    /// The node becomes this value (the root included).
    Replace(Value),
    /// The node leaves its object or array.
    Remove,
    /// The node, if an object, gains a key it does not know.
    AddKey(String, Value),
}

/// Valid JSON nested `depth` levels deep: arrays, or objects under `k`.
fn deep(depth: usize, arrays: bool) -> Value {
    (0..depth).fold(json!(1), |inner, _| {
        if arrays {
            json!([inner])
        } else {
            json!({ "k": inner })
        }
    })
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        6 => hostile_json().prop_map(Mutation::Replace),
        // Nesting close to the parser's depth limit, so that the document parses
        // but what it is stored in (a record, a log entry) is deeper still.
        2 => (100usize..=130, any::<bool>()).prop_map(|(d, arrays)| Mutation::Replace(deep(d, arrays))),
        2 => Just(Mutation::Remove),
        1 => ("[a-z_]{1,12}", hostile_json()).prop_map(|(k, v)| Mutation::AddKey(k, v)),
    ]
}

fn mutate(doc: &mut Value, path: &[Step], m: Mutation) {
    match m {
        Mutation::Replace(v) => {
            if let Some(node) = get_mut(doc, path) {
                *node = v;
            }
        }
        Mutation::Remove => {
            let Some((last, parent)) = path.split_last() else {
                *doc = Value::Null;
                return;
            };
            match (get_mut(doc, parent), last) {
                (Some(Value::Object(map)), Step::Key(k)) => {
                    map.remove(k);
                }
                (Some(Value::Array(items)), Step::Index(i)) if *i < items.len() => {
                    items.remove(*i);
                }
                _ => {}
            }
        }
        Mutation::AddKey(k, v) => {
            if let Some(Value::Object(map)) = get_mut(doc, path) {
                map.insert(k, v);
            }
        }
    }
}

/// A body that is not a well-formed document of any kind.
fn raw_body() -> impl Strategy<Value = Vec<u8>> {
    let nested = |open: &'static str, close: &'static str| {
        (1usize..20_000)
            .prop_map(move |n| format!("{}{}", open.repeat(n), close.repeat(n)).into_bytes())
    };
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        // Invalid UTF-8 inside a string, and escapes that decode to nothing valid.
        prop::collection::vec(0x80u8..=0xff, 1..8).prop_map(|bad| {
            let mut b = br#"{"name": "x"#.to_vec();
            b.extend(bad);
            b.extend_from_slice(br#"", "value": "v"}"#);
            b
        }),
        prop::sample::select(vec![
            r#"{"value": "\ud800"}"#,
            r#"{"value": "\udc00\ud800"}"#,
            r#"{"value": "\uZZZZ"}"#,
            r#"{"value": "\x41"}"#,
            r#"{"value": "a"#,
            r#"{"jobs": [{"name": "a\u0000b"}]}"#,
            r#"{"max_output_bytes": 1e400}"#,
            r#"{"priority": 123456789012345678901234567890}"#,
            r#"{"history_limit": -0}"#,
            r#"{"jobs": 1e-400}"#,
            r#"{"type": "deploy.finished", "data": NaN}"#,
            r#"{"value": "v"} trailing"#,
            "\u{feff}{\"value\": \"v\"}",
            "",
            "null",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        nested("[", "]"),
        nested("{\"a\":", "}").prop_map(|mut b| {
            // `{"a":{"a":...}}` needs a value at the bottom.
            let mid = b.len() - b.iter().rev().take_while(|c| **c == b'}').count();
            b.splice(mid..mid, b"1".iter().copied());
            b
        }),
    ]
}

/// How many answers had each status (shown with `--nocapture`).
#[derive(Default)]
struct Tally(std::sync::Mutex<std::collections::BTreeMap<u16, usize>>);

impl Tally {
    fn count(&self, status: StatusCode) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(status.as_u16()).or_default() += 1;
    }

    fn show(&self, what: &str) {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        eprintln!("{what}: answers by status {map:?}");
    }
}

/// The answer is a success or a 4xx with the contract's error body.
async fn check(
    tally: &Tally,
    h: &Harness,
    method: Method,
    path: &str,
    body: Vec<u8>,
) -> Result<(), TestCaseError> {
    let shown = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    let a = h
        .call(
            method.clone(),
            path,
            &[("content-type", "application/json")],
            Body::from(body),
        )
        .await;
    tally.count(a.status);
    prop_assert!(
        a.status.is_success() || a.status.is_client_error(),
        "{method} {path} {shown} -> {} {}",
        a.status,
        a.text
    );
    if !a.status.is_success() {
        let code = a.body["error"]["code"].as_str();
        let message = a.body["error"]["message"].as_str();
        prop_assert!(
            code.is_some_and(|c| !c.is_empty()) && message.is_some_and(|m| !m.is_empty()),
            "{method} {path} {shown} -> {} without the error shape: {}",
            a.status,
            a.text
        );
    }
    Ok(())
}

/// After the storm: every list answers, and every stored record reads back and
/// validates as it did when it was accepted.
async fn assert_consistent(h: &Harness) {
    let config = h.get("/v1/config").await;
    assert_eq!(config.status, StatusCode::OK, "/v1/config: {}", config.text);
    for list in [
        "/v1/jobs",
        "/v1/workflows",
        "/v1/targets",
        "/v1/sinks",
        "/v1/webhooks",
        "/v1/kv",
    ] {
        let a = h.get(list).await;
        assert_eq!(a.status, StatusCode::OK, "{list}: {}", a.text);
        for item in a.body["items"].as_array().expect("items") {
            let name = item["name"].as_str().or(item["key"].as_str());
            let name = name.unwrap_or_else(|| panic!("{list}: an item without a name: {item}"));
            let one = h.get(&format!("{list}/{name}")).await;
            assert_eq!(one.status, StatusCode::OK, "{list}/{name}: {}", one.text);
        }
    }
    let mut jobs = Vec::new();
    h.node
        .store()
        .for_each_job(&mut |job| jobs.push(job))
        .expect("every job decodes");
    for job in jobs {
        // A workflow's internal jobs are its own (read back through its route above).
        if rota_core::workflow::split_job_name(&job.spec.name).is_some() {
            continue;
        }
        job.spec
            .validate()
            .unwrap_or_else(|e| panic!("stored job {} no longer validates: {e}", job.spec.name));
    }
}

#[test]
fn mutated_documents_get_a_success_or_a_4xx_with_the_error_shape() {
    let rt = runtime();
    let h = rt.block_on(Harness::start());
    let tally = Tally::default();
    let targets = targets();
    // Each valid document is accepted as it is: the mutations start from a yes.
    for t in &targets {
        let a = rt.block_on(h.send(t.method.clone(), t.path, Some(t.doc.clone())));
        assert!(a.status.is_success(), "{} {}: {}", t.method, t.path, a.text);
    }
    let strategy = (
        prop::sample::select(targets),
        any::<prop::sample::Index>(),
        mutation(),
    );
    runner()
        .run(&strategy, |(t, at, m)| {
            let mut doc = t.doc.clone();
            let all = paths(&doc);
            mutate(&mut doc, &all[at.index(all.len())], m);
            let body = serde_json::to_vec(&doc).expect("a Value serializes");
            rt.block_on(check(&tally, &h, t.method.clone(), t.path, body))
        })
        .unwrap();
    tally.show("mutated documents");
    rt.block_on(assert_consistent(&h));
    rt.block_on(h.stop());
}

#[test]
fn raw_bodies_get_a_4xx_with_the_error_shape() {
    let rt = runtime();
    let h = rt.block_on(Harness::start());
    let tally = Tally::default();
    let strategy = (prop::sample::select(targets()), raw_body());
    runner()
        .run(&strategy, |(t, body)| {
            rt.block_on(check(&tally, &h, t.method.clone(), t.path, body))
        })
        .unwrap();
    tally.show("raw bodies");
    rt.block_on(assert_consistent(&h));
    rt.block_on(h.stop());
}

/// Objects of arbitrary values (not derived from a valid document) on every route.
#[test]
fn arbitrary_objects_get_a_success_or_a_4xx_with_the_error_shape() {
    let rt = runtime();
    let h = rt.block_on(Harness::start());
    let tally = Tally::default();
    let strategy = (
        prop::sample::select(targets()),
        prop::collection::btree_map("[a-z_]{1,12}", hostile_json(), 0..6),
    );
    runner()
        .run(&strategy, |(t, fields)| {
            let body =
                serde_json::to_vec(&Value::Object(fields.into_iter().collect::<Map<_, _>>()))
                    .expect("a Value serializes");
            rt.block_on(check(&tally, &h, t.method.clone(), t.path, body))
        })
        .unwrap();
    tally.show("arbitrary objects");
    rt.block_on(assert_consistent(&h));
    rt.block_on(h.stop());
}

/// Regression (found by the deep mutation above): a job whose `metadata` nested
/// 125 levels parsed, was committed and answered 201, but its stored record, two
/// levels deeper, was past serde_json's limit of 128, so every later read of it
/// answered 500 (and the log entry carrying it was as deep). Bodies now nest at
/// most `MAX_JSON_DEPTH` levels; beyond, a 400 names the limit.
#[test]
fn deeply_nested_fields_are_refused_or_read_back() {
    let rt = runtime();
    let h = rt.block_on(Harness::start());
    for depth in (55..=70).chain(120..=130) {
        for arrays in [false, true] {
            let mut job = paused_job();
            job["metadata"] = json!({ "deep": deep(depth, arrays) });
            let a = rt.block_on(h.send(Method::PUT, "/v1/jobs/deep", Some(job)));
            assert!(
                a.status.is_success() || a.status == StatusCode::BAD_REQUEST,
                "depth {depth}: {} {}",
                a.status,
                a.text
            );
            if a.status.is_success() {
                let back = rt.block_on(h.get("/v1/jobs/deep"));
                assert_eq!(back.status, StatusCode::OK, "depth {depth}: {}", back.text);
            } else {
                let message = a.body["error"]["message"].as_str().unwrap_or_default();
                assert!(message.contains("64 levels"), "{}", a.text);
            }
        }
    }
    rt.block_on(assert_consistent(&h));
    rt.block_on(h.stop());
}
