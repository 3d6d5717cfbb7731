//! Tokens and roles with the real binary: a node without tokens refuses to serve
//! beyond loopback unless `--insecure`; a 3-node cluster started with a first
//! admin token requires tokens on every node, through follower forwarding and
//! the output proxy, with each role allowed what it may and refused the rest.
//!
//! Every wait is on a condition with a deadline; nothing asserts on timing.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    agreed_leader, client, client_with_token, eventually, free_port, launch_member, peers_arg,
    ports, stderr, stdout, Server, BIN,
};
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(60);
const ADMIN: &str = "admin-secret-for-the-auth-test";

#[test]
fn a_node_without_tokens_or_a_cluster_secret_serves_beyond_loopback_only_when_told_insecure() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    // `rota server` on every address with `extra`; its error (it must not start).
    let refused = |extra: &[&str]| {
        let out = Command::new(BIN)
            .args([
                "server",
                "--listen",
                &format!("0.0.0.0:{port}"),
                "--data-dir",
            ])
            .arg(tmp.path().join("data"))
            .args(extra)
            .env_remove("ROTA_AUTH_ADMIN_TOKEN")
            .env_remove("ROTA_INSECURE")
            .stdin(Stdio::null())
            .output()
            .expect("run rota server");
        assert!(!out.status.success(), "served on 0.0.0.0 with {extra:?}");
        stderr(&out)
    };
    let err = refused(&[]);
    assert!(
        err.contains("refusing to listen on 0.0.0.0")
            && err.contains("ROTA_CLUSTER_SECRET")
            && err.contains("--insecure"),
        "{err}"
    );
    // With a cluster secret, the API tokens are what is missing.
    let err = refused(&["--cluster-secret", "peer-secret"]);
    assert!(
        err.contains("refusing to listen on 0.0.0.0")
            && err.contains("ROTA_AUTH_ADMIN_TOKEN")
            && err.contains("--insecure"),
        "{err}"
    );
    // A bad admin token is refused at start, naming the setting.
    let out = Command::new(BIN)
        .args(["server", "--print-config", "--auth-admin-token", "short"])
        .output()
        .expect("run rota");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("auth-admin-token") && stderr(&out).contains("16-256"),
        "{}",
        stderr(&out)
    );
}

async fn status(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method, url);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("request");
    let code = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_hold_on_every_node_through_forwarding_and_the_output_proxy() {
    let tmp = tempfile::tempdir().unwrap();
    let p = ports(3);
    let peers = peers_arg(&p);
    let mut servers: Vec<Server> = (0..3)
        .map(|i| {
            launch_member(
                tmp.path(),
                i as u64 + 1,
                p[i],
                &peers,
                &["--auth-admin-token", ADMIN, "--shutdown-grace", "0s"],
            )
        })
        .collect();
    for s in &mut servers {
        s.use_token(ADMIN);
    }
    let leader = eventually(DEADLINE, "a leader", || agreed_leader(&servers)).await;
    let follower = (leader + 1) % 3;

    // Nothing is open: not before the admin token is stored, not after.
    let anonymous = client();
    let (code, body) = status(
        &anonymous,
        reqwest::Method::GET,
        format!("{}/v1/jobs", servers[follower].url),
        None,
    )
    .await;
    assert_eq!(code, 401, "{body}");
    let (code, _) = status(
        &anonymous,
        reqwest::Method::GET,
        format!("{}/readyz", servers[follower].url),
        None,
    )
    .await;
    assert!(code == 200 || code == 503, "readyz needs no token: {code}");

    // Through a follower: the admin makes an operator and a viewer token.
    let make = |role: &str| {
        let out = servers[follower].cli(&[
            "token",
            "create",
            "--name",
            &format!("{role}-1"),
            "--role",
            role,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).trim().to_string()
    };
    let operator = make("operator");
    let viewer = make("viewer");
    let out = servers[follower].cli(&["token", "ls"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for name in ["admin", "operator-1", "viewer-1"] {
        assert!(stdout(&out).contains(name), "{}", stdout(&out));
    }
    assert!(!stdout(&out).contains(&operator), "a secret was listed");

    // The admin creates a job (through a follower); the operator may run it but
    // not change it; the viewer may only look.
    let job = json!({"schedule": {"manual": true}, "executor": {"type": "shell", "command": "echo hello-from-the-worker; sleep 300"}});
    let (code, body) = servers[follower]
        .send("PUT", "/v1/jobs/talk", Some(job.clone()))
        .await;
    assert_eq!(code, 201, "{body}");
    let as_operator = client_with_token(&operator);
    let as_viewer = client_with_token(&viewer);
    for s in &servers {
        let url = format!("{}/v1/jobs/talk", s.url);
        let (code, _) = status(
            &as_operator,
            reqwest::Method::PUT,
            url.clone(),
            Some(job.clone()),
        )
        .await;
        assert_eq!(code, 403, "operator changed a shell job on {}", s.url);
        let (code, _) = status(&as_viewer, reqwest::Method::GET, url.clone(), None).await;
        assert_eq!(code, 200, "viewer cannot read on {}", s.url);
        let (code, _) = status(
            &as_viewer,
            reqwest::Method::POST,
            format!("{url}/run"),
            None,
        )
        .await;
        assert_eq!(code, 403, "viewer ran a job on {}", s.url);
    }
    let (code, run) = status(
        &as_operator,
        reqwest::Method::POST,
        format!("{}/v1/jobs/talk/run", servers[follower].url),
        None,
    )
    .await;
    assert_eq!(code, 202, "{run}");
    let id = run["id"].as_str().expect("execution id").to_string();

    // While it runs, its output is read from each node with the viewer's token:
    // the node that does not run it passes the request on with the caller's
    // token, and the worker checks it.
    let worker = eventually(DEADLINE, "the run started", || {
        let url = format!("{}/v1/executions/{id}", servers[leader].url);
        let http = as_viewer.clone();
        async move {
            let (code, e) = status(&http, reqwest::Method::GET, url, None).await;
            (code == 200 && e["status"] == "running")
                .then(|| e["node"].as_str().unwrap_or_default().to_string())
        }
    })
    .await;
    for s in &servers {
        let url = format!("{}/v1/executions/{id}/output", s.url);
        let text = eventually(DEADLINE, "the output through every node", || {
            let (http, url) = (as_viewer.clone(), url.clone());
            async move {
                let resp = http.get(url).send().await.ok()?;
                let text = resp.text().await.ok()?;
                text.contains("hello-from-the-worker").then_some(text)
            }
        })
        .await;
        assert!(text.contains("hello-from-the-worker"));
        let (code, _) = status(&anonymous, reqwest::Method::GET, url, None).await;
        assert_eq!(
            code, 401,
            "output without a token on {} (worker {worker})",
            s.url
        );
    }

    // The operator cancels it; a revoked token stops working on every node.
    let (code, body) = status(
        &as_operator,
        reqwest::Method::POST,
        format!("{}/v1/executions/{id}/cancel", servers[follower].url),
        None,
    )
    .await;
    assert_eq!(code, 202, "{body}");
    let out = servers[leader].cli(&["token", "revoke", "operator-1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for s in &servers {
        let url = format!("{}/v1/jobs", s.url);
        eventually(DEADLINE, "the revocation to reach every node", || {
            let (http, url) = (as_operator.clone(), url.clone());
            async move { (status(&http, reqwest::Method::GET, url, None).await.0 == 401).then_some(()) }
        })
        .await;
    }
    let out = servers[follower].cli(&["token", "whoami"]);
    assert!(
        stdout(&out).contains("token admin with role admin"),
        "{}",
        stdout(&out)
    );
    for s in &mut servers {
        s.stop();
    }
}
