//! Target set routes against a real single-node cluster (see [`Harness`]). The
//! server here runs no discovery: a test records what discovery found by
//! committing `RecordTargets` itself, as the leader's discovery would.

use axum::http::{Method, StatusCode};
use rota_core::targets::{Target, TargetSetState};
use rota_core::{ClientRequest, Command, Response};
use serde_json::{json, Value};

use crate::tests::Harness;

async fn commit(h: &Harness, command: Command) -> Response {
    let req = ClientRequest {
        session: None,
        at: chrono::Utc::now(),
        command,
    };
    h.node.write(req).await.expect("committed").1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_set_crud_pages_and_shows_what_discovery_recorded() {
    let h = Harness::start().await;
    let spec = json!({"provider": "static", "groups": [{"targets": ["a:1", "b:2"], "labels": {"zone": "x"}}]});
    let a = h
        .send(Method::PUT, "/v1/targets/gw", Some(spec.clone()))
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    assert_eq!(a.body["name"], "gw");
    assert_eq!(a.body["provider"], "static");
    assert_eq!(a.body["targets"], json!([]));
    assert!(a.body["refreshed_at"].is_null());
    let generation = a.body["generation"].as_u64().expect("generation");

    let same = h.send(Method::PUT, "/v1/targets/gw", Some(spec)).await;
    assert_eq!(same.status, StatusCode::OK, "{}", same.text);
    assert_eq!(same.body["generation"].as_u64(), Some(generation));

    let recorded = commit(
        &h,
        Command::RecordTargets {
            name: "gw".into(),
            generation,
            state: TargetSetState {
                targets: vec![Target {
                    address: "a:1".into(),
                    labels: [("zone".to_string(), "x".to_string())].into(),
                }],
                error: None,
            },
        },
    )
    .await;
    assert!(matches!(
        recorded,
        Response::TargetsRecorded { changed: true }
    ));
    let got = h.send(Method::GET, "/v1/targets/gw", None).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(
        got.body["targets"],
        json!([{"address": "a:1", "labels": {"zone": "x"}}])
    );
    assert!(got.body["refreshed_at"].is_string());

    for name in ["gx", "gy"] {
        let r = h
            .send(
                Method::PUT,
                &format!("/v1/targets/{name}"),
                Some(json!({"provider": "file", "files": ["sd/*.json"]})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let page = h.send(Method::GET, "/v1/targets?limit=2", None).await;
    assert_eq!(page.body["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(page.body["next"], "gx");
    let rest = h
        .send(Method::GET, "/v1/targets?limit=2&after=gx", None)
        .await;
    assert_eq!(rest.body["items"][0]["name"], "gy");
    assert!(rest.body["next"].is_null());

    let del = h.send(Method::DELETE, "/v1/targets/gw", None).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    let gone = h.send(Method::GET, "/v1/targets/gw", None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let again = h.send(Method::DELETE, "/v1/targets/gw", None).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_token_is_kept_but_never_read_back() {
    let h = Harness::start().await;
    let spec = json!({"provider": "kubernetes", "namespace": "gw", "deployment": "api",
                      "port": 8080, "api_server": "https://127.0.0.1:1", "token": "s3cret"});
    let r = h.send(Method::PUT, "/v1/targets/k8s", Some(spec)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["token"], "***");
    for path in ["/v1/targets/k8s", "/v1/targets"] {
        let r = h.send(Method::GET, path, None).await;
        assert!(!r.text.contains("s3cret"), "{path}: {}", r.text);
    }
    let stored = h
        .node
        .store()
        .get_target_set("k8s")
        .unwrap()
        .expect("stored");
    let rota_core::targets::ProviderSpec::Kubernetes(k) = &stored.spec.provider else {
        panic!("{stored:?}")
    };
    assert_eq!(k.token.as_deref(), Some("s3cret"), "kept for discovery");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_target_sets_are_400_naming_the_field() {
    let h = Harness::start().await;
    for (body, field) in [
        (json!({"groups": []}), "provider"),
        (json!({"provider": "ftp"}), "provider"),
        (
            json!({"provider": "static", "groups": [{"targets": ["a:1", ""]}]}),
            "groups[0].targets[1]",
        ),
        (
            json!({"provider": "static", "groups": [{"targets": [], "lables": {}}]}),
            "groups[0].lables",
        ),
        (
            json!({"provider": "dns", "names": ["gw"], "record": "A"}),
            "port",
        ),
        (
            json!({"provider": "file", "files": ["a/*/b.json"]}),
            "files[0]",
        ),
        (
            json!({"name": "other", "provider": "static", "groups": []}),
            "name",
        ),
    ] {
        let r = h
            .send(Method::PUT, "/v1/targets/gw", Some(body.clone()))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert_eq!(r.body["error"]["field"], field, "{body}: {}", r.text);
    }
    let list = h.send(Method::GET, "/v1/targets", None).await;
    assert_eq!(list.body["items"], json!([]), "nothing was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_are_stored_with_secrets_hidden_and_bad_ones_refused() {
    let h = Harness::start().await;
    let v2 = json!({"type": "influxdb", "url": "http://127.0.0.1:8086", "org": "o", "bucket": "ci", "token": "s3cret"});
    let a = h.send(Method::PUT, "/v1/sinks/ci", Some(v2)).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    assert_eq!(a.body["token"], "***");
    assert_eq!(a.body["bucket"], "ci");
    assert!(!a.text.contains("s3cret"), "{}", a.text);
    let stored = h.node.store().get_sink("ci").unwrap().expect("stored");
    let rota_core::sink::SinkSpec::InfluxDb(spec) = &stored.spec;
    assert_eq!(spec.token.as_deref(), Some("s3cret"), "kept for writing");
    let list = h.send(Method::GET, "/v1/sinks", None).await;
    assert_eq!(list.body["items"][0]["name"], "ci");
    assert_eq!(list.body["next"], Value::Null);
    assert!(!list.text.contains("s3cret"));

    // The list pages by name like every other.
    for name in ["a", "b"] {
        let body = json!({"type": "influxdb", "url": "http://127.0.0.1:8086", "database": name});
        let r = h
            .send(Method::PUT, &format!("/v1/sinks/{name}"), Some(body))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let names = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect()
    };
    let first = h.send(Method::GET, "/v1/sinks?limit=2", None).await;
    assert_eq!(names(&first.body), ["a", "b"], "{}", first.text);
    assert_eq!(first.body["next"], "b");
    let second = h.send(Method::GET, "/v1/sinks?limit=2&after=b", None).await;
    assert_eq!(names(&second.body), ["ci"], "{}", second.text);
    assert_eq!(second.body["next"], Value::Null);
    let bad = h.send(Method::GET, "/v1/sinks?limit=0", None).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
    assert_eq!(bad.body["error"]["field"], "limit", "{}", bad.text);
    for name in ["a", "b"] {
        let r = h
            .send(Method::DELETE, &format!("/v1/sinks/{name}"), None)
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
    }

    for (body, field) in [
        (
            json!({"type": "influxdb", "url": "ftp://x", "database": "d"}),
            "url",
        ),
        (json!({"type": "kafka"}), "type"),
        (
            json!({"type": "influxdb", "url": "http://x", "database": "d", "bucket": "b"}),
            "bucket",
        ),
        (
            json!({"type": "influxdb", "url": "http://x", "database": "d", "batchsize": 5}),
            "batchsize",
        ),
    ] {
        let r = h
            .send(Method::PUT, "/v1/sinks/bad", Some(body.clone()))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert_eq!(r.body["error"]["field"], field, "{body}: {}", r.text);
    }
    let del = h.send(Method::DELETE, "/v1/sinks/ci", None).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    let gone = h.send(Method::GET, "/v1/sinks/ci", None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jobs_and_kv_lists_page_with_limit_and_after() {
    let h = Harness::start().await;
    for name in ["a1", "a2", "a3", "b1"] {
        let job =
            json!({"schedule": {"manual": true}, "executor": {"type": "shell", "command": "true"}});
        let r = h
            .send(Method::PUT, &format!("/v1/jobs/{name}"), Some(job))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let r = h
            .send(
                Method::PUT,
                &format!("/v1/kv/k/{name}"),
                Some(json!({"value": name})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    let names = |v: &serde_json::Value, field: &str| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i[field].as_str().unwrap().to_string())
            .collect()
    };
    let page = h.send(Method::GET, "/v1/jobs?limit=2", None).await;
    assert_eq!(names(&page.body, "name"), ["a1", "a2"]);
    assert_eq!(page.body["next"], "a2");
    let page = h.send(Method::GET, "/v1/jobs?limit=2&after=a2", None).await;
    assert_eq!(names(&page.body, "name"), ["a3", "b1"]);
    assert!(page.body["next"].is_null(), "{}", page.text);
    let page = h
        .send(Method::GET, "/v1/jobs?prefix=a&limit=2&after=a1", None)
        .await;
    assert_eq!(names(&page.body, "name"), ["a2", "a3"]);
    assert!(page.body["next"].is_null(), "{}", page.text);
    let all = h.send(Method::GET, "/v1/jobs", None).await;
    assert_eq!(names(&all.body, "name").len(), 4);

    let page = h.send(Method::GET, "/v1/kv?prefix=k/&limit=3", None).await;
    assert_eq!(names(&page.body, "key"), ["k/a1", "k/a2", "k/a3"]);
    assert_eq!(page.body["next"], "k/a3");
    let page = h
        .send(Method::GET, "/v1/kv?prefix=k/&limit=3&after=k/a3", None)
        .await;
    assert_eq!(names(&page.body, "key"), ["k/b1"]);
    assert!(page.body["next"].is_null());
    let bad = h.send(Method::GET, "/v1/kv?limit=0", None).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["error"]["field"], "limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_jobs_applies_in_one_entry_or_not_at_all() {
    let h = Harness::start().await;
    let job = |name: &str, command: &str| {
        json!({"name": name, "schedule": {"manual": true},
               "executor": {"type": "shell", "command": command}})
    };
    // One bad job: nothing is written, and the error names it.
    let bad = json!({"jobs": [job("a", "true"), {"name": "b", "schedule": {"cron": "nope"},
                     "executor": {"type": "shell", "command": "true"}}]});
    let r = h.send(Method::POST, "/v1/jobs", Some(bad)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(
        r.body["error"]["field"], "jobs[1].schedule.cron",
        "{}",
        r.text
    );
    let list = h.send(Method::GET, "/v1/jobs", None).await;
    assert_eq!(list.body["items"], json!([]), "nothing was written");

    let r = h
        .send(
            Method::POST,
            "/v1/jobs",
            Some(json!({"jobs": [job("a", "true"), job("b", "true")]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let actions: Vec<&str> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["created", "created"]);
    let revision = r.body["revision"].as_u64().unwrap();
    for item in r.body["items"].as_array().unwrap() {
        assert_eq!(
            item["job"]["revision"].as_u64(),
            Some(revision),
            "one entry"
        );
    }

    let r = h
        .send(
            Method::POST,
            "/v1/jobs",
            Some(json!({"jobs": [job("a", "true"), job("b", "false")]})),
        )
        .await;
    let actions: Vec<&str> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["unchanged", "updated"]);
    assert_eq!(
        r.body["items"][0]["job"]["revision"].as_u64(),
        Some(revision)
    );

    for (body, field) in [
        (json!({"jobs": []}), "jobs"),
        // A misspelt key is named, not ignored.
        (json!({"job": [job("a", "true")]}), "job"),
        (json!({}), "jobs"),
        (
            json!({"jobs": [job("a", "true"), job("a", "true")]}),
            "jobs[1].name",
        ),
    ] {
        let r = h.send(Method::POST, "/v1/jobs", Some(body.clone())).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert_eq!(r.body["error"]["field"], field, "{body}: {}", r.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_prune_deletes_only_the_left_out_jobs_of_its_apply_set() {
    let h = Harness::start().await;
    let job = |name: &str| {
        json!({"name": name, "schedule": {"manual": true},
               "executor": {"type": "shell", "command": "true"}})
    };
    let names = |body: &serde_json::Value| -> Vec<String> {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_string())
            .collect()
    };
    // A job made by hand, and one of another set: prune must leave both.
    let r = h
        .send(Method::PUT, "/v1/jobs/by-hand", Some(job("by-hand")))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = h
        .send(
            Method::POST,
            "/v1/jobs",
            Some(json!({"jobs": [job("other")], "apply_set": "staging"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = h
        .send(
            Method::POST,
            "/v1/jobs",
            Some(
                json!({"jobs": [job("a"), job("b"), job("c")], "apply_set": "prod", "prune": true}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["deleted"], json!([]));
    assert_eq!(
        r.body["items"][0]["job"]["metadata"]["rota/apply-set"], "prod",
        "each job is marked as one of its set"
    );

    // The file loses b and c and gains d: one entry writes d and deletes b and c.
    let r = h
        .send(
            Method::POST,
            "/v1/jobs",
            Some(json!({"jobs": [job("a"), job("d")], "apply_set": "prod", "prune": true})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["deleted"], json!(["b", "c"]));
    let actions: Vec<&str> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["unchanged", "created"]);
    let list = h.send(Method::GET, "/v1/jobs", None).await;
    assert_eq!(names(&list.body), ["a", "by-hand", "d", "other"]);

    // A refused request prunes nothing either.
    let r = h
        .send(
            Method::POST,
            "/v1/jobs",
            Some(
                json!({"jobs": [{"name": "bad", "schedule": {"cron": "nope"},
                        "executor": {"type": "shell", "command": "true"}}],
                        "apply_set": "prod", "prune": true}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let list = h.send(Method::GET, "/v1/jobs", None).await;
    assert_eq!(names(&list.body), ["a", "by-hand", "d", "other"]);

    // An empty list with prune empties the set.
    let r = h
        .send(
            Method::POST,
            "/v1/jobs",
            Some(json!({"jobs": [], "apply_set": "prod", "prune": true})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["deleted"], json!(["a", "d"]));

    for (body, field) in [
        (json!({"jobs": [job("a")], "prune": true}), "prune"),
        (
            json!({"jobs": [job("a")], "apply_set": "Prod!"}),
            "apply_set",
        ),
        (json!({"jobs": [job("a")], "apply_set": 5}), "apply_set"),
        (
            json!({"jobs": [job("a")], "apply_set": "p", "prune": "yes"}),
            "prune",
        ),
        (json!({"jobs": [job("a")], "purne": true}), "purne"),
    ] {
        let r = h.send(Method::POST, "/v1/jobs", Some(body.clone())).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert_eq!(r.body["error"]["field"], field, "{body}: {}", r.text);
    }
    let list = h.send(Method::GET, "/v1/jobs", None).await;
    assert_eq!(names(&list.body), ["by-hand", "other"]);
}
