//! Target sets, discovery, fan-out and the probe with a real `rota server`:
//! file_sd discovery committed by the leader, a probe over local HTTP replicas
//! (synced after retries, partial, timeout), the check endpoint with forwarded
//! headers, and its recording; in a three-node cluster, a leader killed while a
//! throttled change is pending.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use common::{
    agreed_leader, eventually, launch_member, peers_arg, ports, send_anywhere, stderr, stdout,
    Server,
};
use serde_json::{json, Value};

/// How each replica answers `GET /v1/synced/{token}`.
#[derive(Clone, Copy)]
enum Behaviour {
    /// 200 at once.
    Ready,
    /// 401 for the first `n` requests, then 200.
    LearnsAfter(u32),
    /// 401 always.
    Never,
    /// Never answers.
    Hangs,
}

/// A request a replica saw: the token asked about and the Authorization header.
type Request = (String, Option<String>);

#[derive(Clone, Default)]
struct Seen {
    requests: Arc<Mutex<Vec<Request>>>,
}

/// Starts a replica on a free loopback port; answers its address.
async fn replica(behaviour: Behaviour, seen: Seen) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let count = Arc::new(Mutex::new(0u32));
    let app = Router::new()
        .route(
            "/v1/synced/{token}",
            get(
                move |State((seen, count)): State<(Seen, Arc<Mutex<u32>>)>,
                      Path(token): Path<String>,
                      headers: HeaderMap| async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    seen.requests.lock().unwrap().push((token, auth));
                    let n = {
                        let mut c = count.lock().unwrap();
                        *c += 1;
                        *c
                    };
                    match behaviour {
                        Behaviour::Ready => StatusCode::OK,
                        Behaviour::LearnsAfter(k) if n > k => StatusCode::OK,
                        Behaviour::LearnsAfter(_) | Behaviour::Never => StatusCode::UNAUTHORIZED,
                        Behaviour::Hangs => {
                            std::future::pending::<()>().await;
                            StatusCode::OK
                        }
                    }
                },
            ),
        )
        .with_state((seen, count));
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

/// Replaces `path` whole: written beside it, then renamed over it.
fn replace(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn put_set(server: &Server, name: &str, body: Value) -> Value {
    let (status, set) = server
        .send("PUT", &format!("/v1/targets/{name}"), Some(body))
        .await;
    assert!(status == 201 || status == 200, "{status}: {set}");
    set
}

/// Waits until discovery committed `addresses` (sorted) for `set`.
async fn discovered(server: &Server, set: &str, addresses: &[&str]) -> Value {
    let mut want: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
    want.sort();
    eventually(
        Duration::from_secs(20),
        &format!("set {set} to hold {want:?}"),
        || async {
            let (_, s) = server.get(&format!("/v1/targets/{set}")).await;
            let got: Vec<String> = s["targets"]
                .as_array()?
                .iter()
                .filter_map(|t| t["address"].as_str().map(str::to_string))
                .collect();
            (got == want).then_some(s)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sd_discovery_is_committed_by_the_leader_and_keeps_the_last_good_targets() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), &["--discovery-throttle", "100ms"]).await;
    let sd = tmp.path().join("sd");
    std::fs::create_dir(&sd).unwrap();
    std::fs::write(
        sd.join("a.json"),
        r#"[{"targets": ["10.0.0.1:80", "10.0.0.2:80"], "labels": {"zone": "a"}}]"#,
    )
    .unwrap();
    std::fs::write(sd.join("b.yaml"), "- targets: ['10.0.0.3:80']\n").unwrap();
    let pattern = format!("{}/*.*", sd.display());
    // `*.*` is not a file name the spec accepts: the extension says the format.
    let (status, err) = server
        .send(
            "PUT",
            "/v1/targets/files",
            Some(json!({"provider": "file", "files": [pattern]})),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["field"], "files[0]");

    let set = put_set(
        &server,
        "files",
        json!({"provider": "file", "files": [format!("{}/*.json", sd.display()), format!("{}/*.yaml", sd.display())]}),
    )
    .await;
    assert!(set["refreshed_at"].is_null(), "{set}");
    let set = discovered(
        &server,
        "files",
        &["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"],
    )
    .await;
    assert!(set["error"].is_null(), "{set}");
    let a = set["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["address"] == "10.0.0.1:80")
        .unwrap();
    assert_eq!(a["labels"]["zone"], "a");
    assert!(a["labels"]["__meta_filepath"]
        .as_str()
        .unwrap()
        .ends_with("a.json"));

    // The file shrinks: its targets go with it. (Files are replaced whole, by
    // rename, as a deploy tool would: a reader never sees one half written.)
    replace(&sd.join("a.json"), r#"[{"targets": ["10.0.0.1:80"]}]"#);
    discovered(&server, "files", &["10.0.0.1:80", "10.0.0.3:80"]).await;

    // A null item makes the file an error: its last good targets stay, `error` says why.
    std::fs::write(sd.join("a.json"), r#"[null, {"targets": ["10.0.0.9:80"]}]"#).unwrap();
    let set = eventually(Duration::from_secs(20), "the file's error", || async {
        let (_, s) = server.get("/v1/targets/files").await;
        s["error"].is_string().then_some(s)
    })
    .await;
    let error = set["error"].as_str().unwrap();
    assert!(
        error.contains("a.json") && error.contains("null"),
        "{error}"
    );
    let addresses: Vec<&str> = set["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["address"].as_str().unwrap())
        .collect();
    assert_eq!(addresses, ["10.0.0.1:80", "10.0.0.3:80"]);

    // Each of the three changes was committed once (the counter is raised just
    // after the commit returns, so it may trail the set by a moment).
    let committed = |metrics: &str| {
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix("rota_discovery_updates_total{set=\"files\",stage=\"committed\"} ")
            })
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let metrics = eventually(Duration::from_secs(10), "3 committed changes", || async {
        let (_, text) = server.get_text("/metrics").await;
        (committed(&text) >= 3).then_some(text)
    })
    .await;
    assert_eq!(committed(&metrics), 3, "{metrics}");
    assert!(
        metrics.contains("rota_targets{set=\"files\"} 2"),
        "{metrics}"
    );
    let (_, events) = server.get("/v1/targets/files").await;
    assert!(events["refreshed_at"].is_string());

    // The CLI shows the set; deleting it stops its discovery.
    let out = server.cli(&["targets", "ls"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("files"), "{}", stdout(&out));
    let out = server.cli(&["targets", "rm", "files"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (status, _) = server.get("/v1/targets/files").await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_answers_synced_partial_and_timeout_and_the_check_endpoint_forwards_headers() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), &["--discovery-throttle", "100ms"]).await;
    let seen = Seen::default();
    let ready = replica(Behaviour::Ready, seen.clone()).await;
    let learning = replica(Behaviour::LearnsAfter(2), seen.clone()).await;
    let never = replica(Behaviour::Never, seen.clone()).await;
    let hangs = replica(Behaviour::Hangs, seen.clone()).await;

    // Applied from a file, the way operators keep them.
    let file = tmp.path().join("targets.yaml");
    std::fs::write(
        &file,
        format!(
            "targets:\n- name: gw\n  provider: static\n  groups: [{{targets: ['{ready}', '{learning}']}}]\n"
        ),
    )
    .unwrap();
    let out = server.cli(&["targets", "apply", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    discovered(&server, "gw", &[&ready, &learning]).await;

    let job = json!({
        "schedule": {"manual": true},
        "executor": {
            "type": "probe", "targets": "gw", "path": "/v1/synced/tok-1",
            "forward_headers": ["Authorization"], "expect_status": [200],
            "retry_on": [401], "retry_delay": "50ms", "max_retries": 5, "deadline": "3s"
        }
    });
    let (status, body) = server.send("PUT", "/v1/jobs/token-synced", Some(job)).await;
    assert_eq!(status, 201, "{body}");

    // --- synced after retries, with the caller's Authorization sent on
    let client = common::client();
    let answer: Value = client
        .get(format!("{}/v1/jobs/token-synced/check", server.url))
        .header("Authorization", "Bearer abc")
        .header("X-Not-Listed", "no")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["status"], "synced", "{answer}");
    let by_address: BTreeMap<String, Value> = answer["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["address"].as_str().unwrap().to_string(), t.clone()))
        .collect();
    assert_eq!(by_address[&ready]["attempts"], 1, "{answer}");
    assert_eq!(by_address[&learning]["attempts"], 3, "{answer}");
    assert_eq!(by_address[&learning]["code"], 200, "{answer}");
    {
        let requests = seen.requests.lock().unwrap();
        assert_eq!(requests.len(), 4);
        for (token, auth) in requests.iter() {
            assert_eq!(token, "tok-1");
            assert_eq!(auth.as_deref(), Some("Bearer abc"));
        }
    }
    // Nothing was recorded: the job has no executions.
    let (_, history) = server.get("/v1/jobs/token-synced/executions").await;
    assert_eq!(history["items"], json!([]), "{history}");

    // --- one replica never learns the token: partial
    put_set(
        &server,
        "gw",
        json!({"provider": "static", "groups": [{"targets": [ready.clone(), never.clone()]}]}),
    )
    .await;
    discovered(&server, "gw", &[&ready, &never]).await;
    let (status, answer) = server.get("/v1/jobs/token-synced/check?record=true").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "partial", "{answer}");
    let never_result = answer["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["address"] == never.as_str())
        .unwrap()
        .clone();
    assert_eq!(never_result["code"], 401, "{answer}");
    assert_eq!(never_result["attempts"], 6, "{answer}");
    // Recorded: a failed execution holding the same result.
    let id = answer["execution"].as_str().expect("recorded").to_string();
    let (_, exec) = server.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(exec["status"], "failed", "{exec}");
    assert_eq!(exec["trigger"], "manual", "{exec}");
    assert_eq!(exec["result"]["status"], "partial", "{exec}");
    assert!(
        exec["error"].as_str().unwrap().starts_with("partial"),
        "{exec}"
    );

    // --- one replica hangs: the deadline answers timeout
    put_set(
        &server,
        "gw",
        json!({"provider": "static", "groups": [{"targets": [ready.clone(), hangs.clone()]}]}),
    )
    .await;
    discovered(&server, "gw", &[&ready, &hangs]).await;
    let (_, answer) = server.get("/v1/jobs/token-synced/check").await;
    assert_eq!(answer["status"], "timeout", "{answer}");
    let hung = answer["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["address"] == hangs.as_str())
        .unwrap()
        .clone();
    assert_eq!(hung["error"], "deadline passed", "{answer}");

    // --- a scheduled (manual) run of the same probe records its result too
    let (status, exec) = server.send("POST", "/v1/jobs/token-synced/run", None).await;
    assert_eq!(status, 202, "{exec}");
    let id = exec["id"].as_str().unwrap().to_string();
    let done = eventually(Duration::from_secs(20), "the probe run to end", || async {
        let (_, e) = server.get(&format!("/v1/executions/{id}")).await;
        (e["status"] == "failed").then_some(e)
    })
    .await;
    assert_eq!(done["result"]["status"], "timeout", "{done}");
    let (_, metrics) = server.get_text("/metrics").await;
    assert!(
        metrics.contains("rota_probe_results_total{job=\"token-synced\",status=\"synced\"} 1"),
        "{metrics}"
    );
    // The check that timed out and the scheduled run that did.
    assert!(
        metrics.contains("rota_probe_results_total{job=\"token-synced\",status=\"timeout\"} 2"),
        "{metrics}"
    );

    // --- a job that is not a probe cannot be checked; an unknown one is 404
    let (status, _) = server
        .send(
            "PUT",
            "/v1/jobs/plain",
            Some(json!({"schedule": {"manual": true}, "executor": {"type": "shell", "command": "true"}})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, err) = server.get("/v1/jobs/plain/check").await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["field"], "executor.type");
    let (status, _) = server.get("/v1/jobs/nope/check").await;
    assert_eq!(status, 404);
}

/// The `targets.discovered` events of `set` in the log, replayed from the start
/// of the watch until `caught_up`: their `targets` counts, in order.
async fn discovered_events(server: &Server, set: &str) -> Vec<u64> {
    use futures_util::StreamExt;
    let resp = common::client()
        .get(format!(
            "{}/v1/watch?since=0&type=targets.discovered&prefix={set}",
            server.url
        ))
        .send()
        .await
        .expect("watch");
    assert_eq!(resp.status().as_u16(), 200);
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    while !text.contains("event: caught_up") {
        let chunk = tokio::time::timeout(Duration::from_secs(20), body.next())
            .await
            .expect("the replay ends with caught_up")
            .expect("the stream stays open")
            .expect("a chunk");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|e| e["type"] == "targets.discovered" && e["key"] == set)
        .filter_map(|e| e["data"]["targets"].as_u64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_with_a_throttled_change_pending_leaves_it_to_the_next_leader_once() {
    let tmp = tempfile::tempdir().unwrap();
    let sd = tmp.path().join("sd");
    std::fs::create_dir(&sd).unwrap();
    let file = sd.join("gw.json");
    std::fs::write(&file, r#"[{"targets": ["10.0.0.1:80"]}]"#).unwrap();
    let ports = ports(3);
    let peers = peers_arg(&ports);
    // A long throttle: a change right after the first commit waits for the window.
    let extra = ["--discovery-throttle", "30s"];
    let mut servers: Vec<Server> = (0..3)
        .map(|i| launch_member(tmp.path(), i as u64 + 1, ports[i], &peers, &extra))
        .collect();
    let deadline = Duration::from_secs(30);
    let leader = eventually(deadline, "a leader", || agreed_leader(&servers)).await;
    send_anywhere(
        &servers,
        deadline,
        "PUT",
        "/v1/targets/gw",
        json!({"provider": "file", "files": [file.display().to_string()]}),
    )
    .await;
    discovered(&servers[leader], "gw", &["10.0.0.1:80"]).await;

    // The file grows; the leader's discovery receives it and holds it for the window.
    let received = |text: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix("rota_discovery_updates_total{set=\"gw\",stage=\"received\"} ")
            })
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (_, before) = servers[leader].get_text("/metrics").await;
    replace(&file, r#"[{"targets": ["10.0.0.1:80", "10.0.0.2:80"]}]"#);
    eventually(deadline, "the leader to receive the change", || async {
        let (_, text) = servers[leader].get_text("/metrics").await;
        (received(&text) > received(&before)).then_some(())
    })
    .await;
    let (_, set) = servers[leader].get("/v1/targets/gw").await;
    assert_eq!(
        set["targets"].as_array().map(Vec::len),
        Some(1),
        "still throttled: {set}"
    );

    // The leader dies with the change pending; the next one finds and commits it.
    servers[leader].kill9();
    let survivor = (leader + 1) % 3;
    discovered(&servers[survivor], "gw", &["10.0.0.1:80", "10.0.0.2:80"]).await;
    // Back to full strength, every node has the same two commits, none twice.
    servers[leader].relaunch();
    eventually(deadline, "a leader after the restart", || {
        agreed_leader(&servers)
    })
    .await;
    discovered(&servers[leader], "gw", &["10.0.0.1:80", "10.0.0.2:80"]).await;
    for server in &servers {
        assert_eq!(discovered_events(server, "gw").await, [1, 2]);
    }
}
