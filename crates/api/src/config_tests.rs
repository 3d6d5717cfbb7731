//! `/v1/config` against a real single-node cluster (see [`Harness`]): the node's
//! static settings come from the harness (`max_running` 8 by flag), the dynamic
//! ones from the replicated store.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::tests::Harness;

fn find<'a>(list: &'a Value, key: &str) -> &'a Value {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["key"] == key)
        .unwrap_or_else(|| panic!("{key} not listed: {list}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_list_their_source_and_dynamic_values_win_until_reset() {
    let h = Harness::start().await;
    let list = h.get("/v1/config").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    // Static, with the typed value of a key that is also dynamic.
    assert_eq!(
        find(&list.body, "max_running"),
        &json!({"key": "max_running", "value": 8, "source": "flag", "dynamic": true})
    );
    assert_eq!(find(&list.body, "node_id")["dynamic"], false);
    assert_eq!(find(&list.body, "node_id")["value"], "1");
    // Dynamic-only keys show their defaults.
    assert_eq!(
        find(&list.body, "cluster_max_running"),
        &json!({"key": "cluster_max_running", "value": null, "source": "default", "dynamic": true})
    );
    assert_eq!(find(&list.body, "default_history_limit")["value"], 100);

    let put = h
        .send(
            Method::PUT,
            "/v1/config/max_running",
            Some(json!({"value": 3})),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text);
    assert_eq!(put.body["source"], "dynamic");
    assert_eq!(put.body["value"], 3);
    assert_eq!(put.body["previous"], Value::Null);
    let put = h
        .send(
            Method::PUT,
            "/v1/config/max_running",
            Some(json!({"value": "5"})),
        )
        .await;
    assert_eq!(
        (put.body["value"].clone(), put.body["previous"].clone()),
        (json!(5), json!(3))
    );
    let one = h.get("/v1/config/max_running").await;
    assert_eq!(
        (one.body["value"].clone(), one.body["source"].clone()),
        (json!(5), json!("dynamic"))
    );
    assert_eq!(
        h.node.store().dynamic_config().unwrap().max_running,
        Some(5)
    );

    let retry = h
        .send(
            Method::PUT,
            "/v1/config/default_retry",
            Some(json!({"value": {"max_attempts": 2}})),
        )
        .await;
    assert_eq!(retry.status, StatusCode::OK, "{}", retry.text);
    assert_eq!(retry.body["value"]["max_attempts"], 2);

    // DELETE hands the key back to its static value.
    let del = h.send(Method::DELETE, "/v1/config/max_running", None).await;
    assert_eq!(del.status, StatusCode::OK, "{}", del.text);
    assert_eq!(
        (del.body["value"].clone(), del.body["source"].clone()),
        (json!(8), json!("flag"))
    );
    assert_eq!(del.body["reset"], true);
    let again = h.send(Method::DELETE, "/v1/config/max_running", None).await;
    assert_eq!(again.body["reset"], false);

    let reset = h.send(Method::POST, "/v1/config/reset", None).await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.text);
    assert_eq!(reset.body["reset"], json!(["default_retry"]));
    assert_eq!(
        find(&h.get("/v1/config").await.body, "default_retry")["source"],
        "default"
    );
    assert!(h.node.store().config_entries().unwrap().is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_keys_and_values_are_refused_naming_the_key_and_what_is_accepted() {
    let h = Harness::start().await;
    let cases = [
        ("max_running", json!({"value": 0}), "1-1000000"),
        (
            "max_running",
            json!({"value": "many"}),
            "not a whole number",
        ),
        ("discovery_throttle", json!({"value": "1ms"}), "100ms-1h"),
        ("log", json!({"value": "info,rota=chatty"}), "trace, debug"),
        (
            "default_retry",
            json!({"value": {"max_attempts": 500}}),
            "max_attempts",
        ),
        ("node_id", json!({"value": 2}), "static setting"),
        ("no_such_key", json!({"value": 2}), "not a setting"),
        ("max_running", json!({"val": 2}), "value"),
    ];
    for (key, body, says) in cases {
        let a = h
            .send(
                Method::PUT,
                &format!("/v1/config/{key}"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(
            a.status,
            StatusCode::BAD_REQUEST,
            "{key} {body}: {}",
            a.text
        );
        let message = a.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{key} {body}: {}", a.text);
    }
    let a = h.send(Method::DELETE, "/v1/config/node_id", None).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    assert_eq!(h.get("/v1/config/nope").await.status, StatusCode::NOT_FOUND);
    // Nothing was stored by any of them.
    assert!(h.node.store().config_entries().unwrap().is_empty());
    h.stop().await;
}
