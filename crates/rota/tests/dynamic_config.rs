//! Dynamic settings with the real binary: a fresh node shows its static values and
//! the defaults; `rota config set` changes the cluster's value (and what the node
//! does: run slots, the log filter); a restarted node keeps what was set; a reset
//! gives the static values back; a node that joins later sees the cluster's
//! dynamic values (through a snapshot); bad keys and values are refused naming
//! the key and what is accepted.
//!
//! Every wait is on a condition with a deadline; nothing asserts on timing.

mod common;

use std::time::Duration;

use common::{eventually, free_port, stderr, stdout, Server};
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(60);

fn shown(server: &Server) -> Value {
    let out = server.cli(&["config", "show", "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("json")
}

fn item(config: &Value, key: &str) -> (Value, String) {
    let item = config["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["key"] == key)
        .unwrap_or_else(|| panic!("{key} missing from {config}"));
    (
        item["value"].clone(),
        item["source"].as_str().unwrap_or_default().to_string(),
    )
}

async fn count(server: &Server, status: &str) -> usize {
    let (code, body) = server
        .get(&format!("/v1/executions?status={status}&limit=1000"))
        .await;
    assert_eq!(code, 200, "{body}");
    body["items"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_settings_apply_survive_a_restart_and_reset_to_the_static_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        tmp.path(),
        &["--max-running", "4", "--shutdown-grace", "0s"],
    )
    .await;

    // A fresh node: its static values, the defaults of the dynamic-only keys.
    let fresh = shown(&server);
    assert_eq!(item(&fresh, "max_running"), (json!(4), "flag".into()));
    assert_eq!(
        item(&fresh, "cluster_max_running"),
        (Value::Null, "default".into())
    );
    assert_eq!(
        item(&fresh, "default_history_limit"),
        (json!(100), "default".into())
    );
    assert_eq!(item(&fresh, "log"), (json!("info"), "env".into()));

    // Refused, naming the key and what is accepted; nothing changes.
    for (args, says) in [
        (["config", "set", "max_running", "0"], "1-1000000"),
        (["config", "set", "log", "verbose"], "trace, debug"),
        (["config", "set", "node_id", "3"], "static setting"),
        (["config", "set", "nope", "3"], "not a setting"),
    ] {
        let out = server.cli(&args);
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = stderr(&out);
        assert!(
            err.contains(args[2]) && err.contains(says),
            "{args:?}: {err}"
        );
    }
    assert_eq!(
        item(&shown(&server), "max_running"),
        (json!(4), "flag".into())
    );

    let out = server.cli(&["config", "set", "max_running", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("max_running = 2"), "{}", stdout(&out));
    let (code, body) = server
        .send(
            "PUT",
            "/v1/jobs/long",
            Some(json!({"schedule": {"manual": true}, "executor": {"type": "shell", "command": "sleep 300"}})),
        )
        .await;
    assert_eq!(code, 201, "{body}");

    // The log filter follows the dynamic `log` at once.
    let out = server.cli(&["config", "set", "log", "info,rota_api=debug"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (code, _) = server
        .send("PUT", "/v1/kv/probe", Some(json!({"value": "x"})))
        .await;
    assert_eq!(code, 200);
    eventually(DEADLINE, "debug lines of rota_api in the log", || async {
        let logs = server.logs();
        (logs.contains("log filter changed") && logs.contains("DEBUG rota_api")).then_some(())
    })
    .await;

    // Restarted: the dynamic values are still in force, and acted on: two slots,
    // so of three long runs two run and one waits.
    server.restart().await;
    let after = shown(&server);
    assert_eq!(item(&after, "max_running"), (json!(2), "dynamic".into()));
    assert_eq!(
        item(&after, "log"),
        (json!("info,rota_api=debug"), "dynamic".into())
    );
    for _ in 0..3 {
        let (code, body) = server.send("POST", "/v1/jobs/long/run", None).await;
        assert_eq!(code, 202, "{body}");
    }
    eventually(DEADLINE, "two running, one queued", || async {
        (count(&server, "running").await == 2 && count(&server, "queued").await == 1).then_some(())
    })
    .await;

    // Reset: each key is back to this node's static value.
    let out = server.cli(&["config", "reset", "--all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("log, max_running"),
        "{}",
        stdout(&out)
    );
    let reset = shown(&server);
    assert_eq!(item(&reset, "max_running"), (json!(4), "flag".into()));
    assert_eq!(item(&reset, "log"), (json!("info"), "env".into()));
    // Four slots again: the waiting run starts.
    eventually(DEADLINE, "three running", || async {
        (count(&server, "running").await == 3).then_some(())
    })
    .await;
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_joins_later_sees_the_clusters_dynamic_values() {
    let tmp = tempfile::tempdir().unwrap();
    let mut first = Server::start(&tmp.path().join("n1"), &["--snapshot-every", "3"]).await;
    for (key, value) in [("default_history_limit", "7"), ("cluster_max_running", "5")] {
        let out = first.cli(&["config", "set", key, value]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // Enough entries that the joiner gets a snapshot, not the log.
    for i in 0..8 {
        let (code, _) = first
            .send("PUT", &format!("/v1/kv/k{i}"), Some(json!({"value": "v"})))
            .await;
        assert_eq!(code, 200);
    }
    let mut second = Server::launch(
        &tmp.path().join("n2"),
        free_port(),
        &["--node-id", "2", "--join", &first.url],
    );
    let seen = eventually(DEADLINE, "node 2 serves the cluster's settings", || async {
        second.health().await?;
        let (code, body) = second.get("/v1/config?stale=true").await;
        (code == 200 && item(&body, "cluster_max_running").1 == "dynamic").then_some(body)
    })
    .await;
    assert_eq!(
        item(&seen, "cluster_max_running"),
        (json!(5), "dynamic".into())
    );
    assert_eq!(
        item(&seen, "default_history_limit"),
        (json!(7), "dynamic".into())
    );
    // Its own static values stay its own.
    assert_eq!(item(&seen, "node_id"), (json!("2"), "flag".into()));
    // The node logs the install once it finished it, which can be just after the
    // installed state is served.
    eventually(
        DEADLINE,
        "node 2 logs the snapshot it installed",
        || async {
            second
                .logs()
                .contains("snapshot from the leader installed")
                .then_some(())
        },
    )
    .await;
    second.stop();
    first.stop();
}
