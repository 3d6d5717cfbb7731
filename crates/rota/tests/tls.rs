//! TLS on the API and between peers: certificates from `rota cert`, a three-node
//! cluster serving HTTPS only that survives a `kill -9` of its leader, a fourth
//! node whose certificates come from another CA that cannot join, plain HTTP
//! refused, peer routes that take a client certificate of the cluster's CA in
//! place of the cluster secret (and refuse one of another CA), and a CLI without
//! the CA that says the certificate is the problem.
//!
//! Every wait is on a condition with a deadline; nothing asserts on timing.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{agreed_leader, eventually, launch_member, ports, stderr, stdout, Server, BIN};
use tracing::info;

/// Generous bound for elections and restarts on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(60);

/// Runs `rota cert ARGS`, which must succeed.
fn cert(args: &[&str]) {
    let out = std::process::Command::new(BIN)
        .arg("cert")
        .args(args)
        .output()
        .expect("run rota cert");
    assert!(
        out.status.success(),
        "rota cert {args:?} failed: {}",
        stderr(&out)
    );
}

/// The server flags of node `name` whose files `rota cert` wrote in `dir`.
fn tls_flags(dir: &Path, name: &str) -> Vec<String> {
    let file = |f: String| dir.join(f).display().to_string();
    vec![
        "--tls-cert".into(),
        file(format!("{name}.pem")),
        "--tls-key".into(),
        file(format!("{name}-key.pem")),
        "--tls-ca".into(),
        file("ca.pem".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_survives_a_leader_kill_and_refuses_a_stranger() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    let pki = pki.as_path();
    let p = ports(4);

    info!("--- certificates from `rota cert`");
    cert(&["ca", "--dir", pki.to_str().unwrap()]);
    for n in 1..=3 {
        cert(&[
            "node",
            "--dir",
            pki.to_str().unwrap(),
            "--name",
            &format!("n{n}"),
        ]);
    }
    let ca = pki.join("ca.pem");

    info!("--- three nodes serving HTTPS only, peers over https");
    let peers = (0..3)
        .map(|i| format!("{}=https://127.0.0.1:{}", i + 1, p[i]))
        .collect::<Vec<_>>()
        .join(",");
    let mut servers: Vec<Server> = (0..3)
        .map(|i| {
            let flags = tls_flags(pki, &format!("n{}", i + 1));
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            let mut server = launch_member(tmp.path(), i as u64 + 1, p[i], &peers, &flags);
            server.use_tls(&ca);
            server
        })
        .collect();
    let leader = eventually(DEADLINE, "a leader all agree on", || {
        agreed_leader(&servers)
    })
    .await;

    info!("--- writes and reads through the CLI with --ca-cert");
    let out = servers[leader].cli(&["kv", "put", "tls/one", "1"]);
    assert!(out.status.success(), "kv put: {}", stderr(&out));
    let follower = (leader + 1) % 3;
    let out = servers[follower].cli(&["kv", "get", "tls/one"]);
    assert!(out.status.success(), "kv get: {}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "1");

    info!("--- kill -9 the leader: another is elected over TLS and writes go on");
    servers[leader].kill9();
    let new_leader = eventually(DEADLINE, "a new leader", || agreed_leader(&servers)).await;
    assert_ne!(new_leader, leader);
    let out = servers[new_leader].cli(&["kv", "put", "tls/two", "2"]);
    assert!(
        out.status.success(),
        "kv put after the kill: {}",
        stderr(&out)
    );
    let other = (0..3).find(|&i| i != leader && i != new_leader).unwrap();
    let out = servers[other].cli(&["kv", "get", "tls/two"]);
    assert!(
        out.status.success(),
        "kv get after the kill: {}",
        stderr(&out)
    );
    assert_eq!(stdout(&out).trim(), "2");

    info!("--- a node with certificates of another CA cannot join");
    let strangers = tmp.path().join("other-pki");
    cert(&["ca", "--dir", strangers.to_str().unwrap()]);
    cert(&["node", "--dir", strangers.to_str().unwrap(), "--name", "n4"]);
    let mut flags = vec!["--node-id".to_string(), "4".into(), "--join".into()];
    flags.push(servers[new_leader].url.clone());
    flags.extend(tls_flags(&strangers, "n4"));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let stranger = Server::launch(&tmp.path().join("n4"), p[3], &flags);
    eventually(DEADLINE, "node 4 to log the refused certificate", || {
        let logs = stranger.logs();
        async move { logs.contains("invalid peer certificate").then_some(()) }
    })
    .await;
    let (status, cluster) = servers[new_leader].get("/v1/cluster").await;
    assert_eq!(status, 200);
    let members = cluster["members"].as_array().expect("members");
    assert!(
        members.iter().all(|m| m["id"] != 4),
        "node 4 became a member: {cluster}"
    );

    info!("--- plain HTTP to a TLS node fails");
    let plain = common::client()
        .get(format!("http://127.0.0.1:{}/v1/health", p[new_leader]))
        .send()
        .await;
    assert!(
        plain.is_err() || !plain.as_ref().unwrap().status().is_success(),
        "plain HTTP was served: {plain:?}"
    );

    info!("--- peer routes take a certificate of the cluster's CA in place of the secret");
    let vote = |identity: Option<(&Path, &str)>| {
        let mut builder =
            reqwest::Client::builder()
                .tls_certs_only([
                    reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap()
                ]);
        if let Some((dir, name)) = identity {
            let mut pem = std::fs::read(dir.join(format!("{name}.pem"))).unwrap();
            pem.extend(std::fs::read(dir.join(format!("{name}-key.pem"))).unwrap());
            builder = builder.identity(reqwest::Identity::from_pem(&pem).unwrap());
        }
        let client = builder.build().unwrap();
        let url = format!("{}/raft/vote", servers[new_leader].url);
        async move { client.post(url).json(&serde_json::json!({})).send().await }
    };
    let anonymous = vote(None)
        .await
        .expect("served without a client certificate");
    assert_eq!(
        anonymous.status(),
        401,
        "a peer route without certificate or secret"
    );
    let member = vote(Some((pki, "n1")))
        .await
        .expect("served with n1's certificate");
    assert_ne!(
        member.status(),
        401,
        "n1's certificate was not taken as a peer's"
    );
    let stranger_call = vote(Some((&strangers, "n4"))).await;
    assert!(
        stranger_call.is_err(),
        "a certificate of another CA was accepted: {stranger_call:?}"
    );

    info!("--- the CLI without the CA says the certificate is the problem");
    let out = std::process::Command::new(BIN)
        .args(["kv", "get", "tls/one"])
        .env("ROTA_SERVER", &servers[new_leader].url)
        .env_remove("ROTA_CA_CERT")
        .env_remove("ROTA_TOKEN")
        .output()
        .expect("run rota cli");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("certificate") && err.contains("--ca-cert"),
        "unexpected error: {err}"
    );
}

/// Kills the server it holds when dropped, also when the test fails.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_certificates_stand_in_for_the_cluster_secret_beyond_loopback() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    cert(&["ca", "--dir", pki.to_str().unwrap()]);
    cert(&["node", "--dir", pki.to_str().unwrap(), "--name", "n1"]);
    let port = common::free_port();
    let server = |data: &str, flags: &[String]| {
        let mut cmd = std::process::Command::new(BIN);
        cmd.args([
            "server",
            "--listen",
            &format!("0.0.0.0:{port}"),
            "--data-dir",
        ])
        .arg(tmp.path().join(data))
        .args(flags)
        .env("ROTA_AUTH_ADMIN_TOKEN", "an-admin-token-of-some-length")
        .env_remove("ROTA_CLUSTER_SECRET")
        .current_dir(tmp.path());
        cmd
    };

    info!("--- HTTPS without peer certificates and without a secret: refused beyond loopback");
    let mut flags = tls_flags(&pki, "n1");
    flags.truncate(4);
    let out = server("plain", &flags).output().expect("run rota server");
    assert!(!out.status.success(), "it started: {}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("cluster secret") && err.contains("tls_ca"),
        "unexpected error: {err}"
    );

    info!("--- with tls_ca too (peer mTLS): it serves");
    let log = std::fs::File::create(tmp.path().join("mtls.log")).unwrap();
    let _child = Child(
        server("mtls", &tls_flags(&pki, "n1"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn rota server"),
    );
    let http = common::client_with(None, Some(&pki.join("ca.pem")));
    let url = format!("https://127.0.0.1:{port}/healthz");
    eventually(DEADLINE, "the mTLS node to serve beyond loopback", || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let answer = http.get(url).send().await.ok()?;
            answer.status().is_success().then_some(())
        }
    })
    .await;
}
