//! Workflow and run routes against a real single-node cluster (see [`Harness`]).
//!
//! The jobs of these workflows carry a tag no node has, so their executions stay
//! queued: what a run shows does not depend on an executor, and a test can end a
//! job itself by committing its `Finish` (with artifacts) the way a node would.

use axum::http::{Method, StatusCode};
use rota_core::workflow::{ArtifactFile, ArtifactRecord};
use rota_core::{ClientRequest, Command, ExecStatus, Finish, Response};
use serde_json::{json, Value};
use tracing::info;
use ulid::Ulid;

use crate::tests::Harness;

/// `lint`, then `test` once lint succeeded; neither can be placed on any node.
fn ci(name: Option<&str>) -> Value {
    let mut doc = json!({
        "schedule": {"manual": true},
        "env": {"RAILS_ENV": "test"},
        "jobs": {
            "lint": {"executor": {"type": "shell", "command": "make lint"}, "tags": {"pool": "nowhere"}},
            "test": {"needs": ["lint"], "tags": {"pool": "nowhere"},
                     "steps": [{"name": "rspec", "executor": {"type": "shell", "command": "make test"}}]}
        }
    });
    if let Some(name) = name {
        doc["name"] = json!(name);
    }
    doc
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["name"].as_str().map(str::to_string))
        .collect()
}

async fn commit(h: &Harness, command: Command) -> Response {
    let req = ClientRequest {
        session: None,
        at: chrono::Utc::now(),
        command,
    };
    h.node.write(req).await.expect("committed").1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_crud_answers_201_200_204_404_and_hides_internal_jobs() {
    let h = Harness::start().await;

    info!("--- create (name from the path), then replace");
    let a = h
        .send(Method::PUT, "/v1/workflows/ci", Some(ci(None)))
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    assert_eq!(a.body["name"], "ci");
    assert_eq!(a.body["concurrency"], "queue");
    assert_eq!(a.body["jobs"]["test"]["needs"], json!(["lint"]));
    assert_eq!(a.body["next_run_at"], Value::Null, "{}", a.text);
    let created_at = a.body["created_at"].clone();
    let first_revision = a.body["revision"].as_u64().expect("revision");
    let mut replaced = ci(Some("ci"));
    replaced["concurrency"] = json!("skip");
    let a = h
        .send(Method::PUT, "/v1/workflows/ci", Some(replaced))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["concurrency"], "skip");
    assert_eq!(a.body["created_at"], created_at);
    assert!(
        a.body["revision"].as_u64() > Some(first_revision),
        "{}",
        a.text
    );

    info!("--- read and list, one page at a time");
    let a = h.get("/v1/workflows/ci").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["env"]["RAILS_ENV"], "test");
    let mut nightly = ci(None);
    nightly["schedule"] = json!({"every": "1h"});
    let a = h
        .send(Method::PUT, "/v1/workflows/nightly", Some(nightly))
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    assert!(a.body["next_run_at"].is_string(), "{}", a.text);
    let a = h.get("/v1/workflows").await;
    assert_eq!(names(&a.body), ["ci", "nightly"], "{}", a.text);
    assert_eq!(a.body["next"], Value::Null);
    let a = h.get("/v1/workflows?limit=1").await;
    assert_eq!(names(&a.body), ["ci"], "{}", a.text);
    assert_eq!(a.body["next"], "ci");
    let a = h.get("/v1/workflows?limit=1&after=ci").await;
    assert_eq!(names(&a.body), ["nightly"], "{}", a.text);
    assert_eq!(a.body["next"], Value::Null);

    info!("--- internal jobs stay out of the job list and cannot be changed");
    let job =
        json!({"schedule": {"manual": true}, "executor": {"type": "shell", "command": "true"}});
    h.send(Method::PUT, "/v1/jobs/backup", Some(job.clone()))
        .await;
    let a = h.get("/v1/jobs").await;
    assert_eq!(names(&a.body), ["backup"], "{}", a.text);
    let a = h.get("/v1/jobs/ci:lint").await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "reading one still works: {}",
        a.text
    );
    let a = h.get("/v1/jobs/ci:lint/executions").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    for (method, uri, body) in [
        (Method::DELETE, "/v1/jobs/ci:lint", None),
        (Method::PUT, "/v1/jobs/ci:lint", Some(job)),
        (Method::POST, "/v1/jobs/ci:lint/pause", None),
        (Method::POST, "/v1/jobs/ci:lint/resume", None),
        (Method::POST, "/v1/jobs/ci:lint/run", None),
        (Method::DELETE, "/v1/jobs/ci:@trigger", None),
    ] {
        let a = h.send(method.clone(), uri, body).await;
        assert_eq!(
            a.status,
            StatusCode::BAD_REQUEST,
            "{method} {uri}: {}",
            a.text
        );
        assert_eq!(a.body["error"]["field"], "name", "{}", a.text);
        let message = a.body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("belongs to workflow \"ci\""),
            "{method} {uri}: {message}"
        );
    }
    assert_eq!(h.get("/v1/jobs/ci:lint").await.status, StatusCode::OK);

    info!("--- delete takes the internal jobs along");
    let a = h.send(Method::DELETE, "/v1/workflows/ci", None).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text);
    let a = h.send(Method::DELETE, "/v1/workflows/ci", None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.text);
    assert_eq!(a.body["error"]["code"], "not_found");
    assert_eq!(
        h.get("/v1/workflows/ci").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.get("/v1/jobs/ci:lint").await.status,
        StatusCode::NOT_FOUND
    );

    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_workflows_are_400_naming_the_field() {
    let h = Harness::start().await;
    let mut cycle = ci(None);
    cycle["jobs"]["lint"]["needs"] = json!(["test"]);
    let mut unknown = ci(None);
    unknown["jobs"]["test"]["needs"] = json!(["lnit"]);
    let mut no_executor = ci(None);
    no_executor["jobs"]["lint"]["executor"] = json!({"type": "shell"});
    let mut at = ci(None);
    at["schedule"] = json!({"after": "1m"});
    let cases = [
        ("/v1/workflows/ci", cycle, "jobs.lint.needs", "cycle"),
        ("/v1/workflows/ci", unknown, "jobs.test.needs[0]", "lnit"),
        (
            "/v1/workflows/ci",
            no_executor,
            "jobs.lint.executor.command",
            "",
        ),
        ("/v1/workflows/ci", at, "schedule", ""),
        ("/v1/workflows/ci", ci(Some("other")), "name", "other"),
        ("/v1/workflows/Bad", ci(None), "name", ""),
        ("/v1/workflows/ci", json!({"jobs": {}}), "schedule", ""),
    ];
    for (uri, doc, field, mentions) in cases {
        let a = h.send(Method::PUT, uri, Some(doc.clone())).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{doc} -> {}", a.text);
        assert_eq!(a.body["error"]["code"], "invalid", "{}", a.text);
        assert_eq!(a.body["error"]["field"], field, "{doc} -> {}", a.text);
        let message = a.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(mentions), "{message}");
    }
    assert_eq!(
        h.get("/v1/workflows/ci").await.status,
        StatusCode::NOT_FOUND
    );
    let a = h
        .call(
            Method::PUT,
            "/v1/workflows/ci",
            &[],
            axum::body::Body::from("{nope"),
        )
        .await;
    assert_eq!(a.body["error"]["code"], "invalid_json", "{}", a.text);

    for (uri, field) in [
        ("/v1/workflows?limit=0", "limit"),
        ("/v1/workflows?page=2", "page"),
        ("/v1/workflows/ci/runs?before=zz", "before"),
        ("/v1/runs/not-a-ulid", "id"),
        ("/v1/runs/not-a-ulid/artifacts", "id"),
    ] {
        let a = h.get(uri).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri} -> {}", a.text);
        assert_eq!(a.body["error"]["field"], field, "{uri} -> {}", a.text);
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_start_list_and_end_cancelled() {
    let h = Harness::start().await;
    let a = h
        .send(Method::PUT, "/v1/workflows/ci", Some(ci(None)))
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);

    info!("--- a run is 202 with its id and its first job's execution");
    let a = h.send(Method::POST, "/v1/workflows/ci/run", None).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let first = a.body["id"].as_str().expect("id").to_string();
    let a = h.get(&format!("/v1/runs/{first}")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["workflow"], "ci");
    assert_eq!(a.body["status"], "running", "{}", a.text);
    assert_eq!(a.body["trigger"], "manual");
    assert!(a.body["started_at"].is_string(), "{}", a.text);
    assert_eq!(a.body["finished_at"], Value::Null);
    assert_eq!(a.body["error"], Value::Null);
    assert_eq!(a.body["artifacts"], json!([]));
    let lint = &a.body["jobs"]["lint"];
    assert_eq!(lint["status"], "queued", "{}", a.text);
    assert_eq!(lint["executions"].as_array().map(Vec::len), Some(1));
    assert_eq!(a.body["jobs"]["test"]["executions"], json!([]));
    let exec = lint["executions"][0].as_str().expect("execution id");
    let a = h.get(&format!("/v1/executions/{exec}")).await;
    assert_eq!(a.body["job"], "ci:lint", "{}", a.text);
    assert_eq!(a.body["trigger"], "workflow");
    assert_eq!(a.body["run"], first.as_str(), "{}", a.text);

    info!("--- a second run waits (concurrency: queue); runs list newest first");
    let a = h.send(Method::POST, "/v1/workflows/ci/run", None).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    assert_eq!(a.body["status"], "queued", "{}", a.text);
    let second = a.body["id"].as_str().expect("id").to_string();
    let a = h.get("/v1/workflows/ci/runs").await;
    let ids: Vec<&str> = a.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, [second.as_str(), first.as_str()], "{}", a.text);
    assert_eq!(a.body["next"], Value::Null);
    let a = h.get("/v1/workflows/ci/runs?limit=1").await;
    assert_eq!(a.body["items"][0]["id"], second.as_str());
    assert_eq!(a.body["next"], second.as_str(), "{}", a.text);
    for cursor in ["before", "after"] {
        let a = h
            .get(&format!("/v1/workflows/ci/runs?limit=1&{cursor}={second}"))
            .await;
        assert_eq!(a.body["items"][0]["id"], first.as_str(), "{}", a.text);
        assert_eq!(a.body["next"], Value::Null, "{}", a.text);
    }

    info!("--- cancelling ends the run; its waiting jobs are cancelled");
    let a = h
        .send(Method::POST, &format!("/v1/runs/{first}/cancel"), None)
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["status"], "cancelled", "{}", a.text);
    assert_eq!(a.body["error"], "cancelled by request");
    assert_eq!(a.body["jobs"]["lint"]["status"], "cancelled");
    assert_eq!(a.body["jobs"]["test"]["status"], "cancelled");
    assert!(a.body["finished_at"].is_string(), "{}", a.text);
    let a = h.get(&format!("/v1/executions/{exec}")).await;
    assert_eq!(a.body["status"], "cancelled", "{}", a.text);
    // The queued run went next.
    let a = h.get(&format!("/v1/runs/{second}")).await;
    assert_eq!(a.body["status"], "running", "{}", a.text);
    let a = h
        .send(Method::POST, &format!("/v1/runs/{second}/cancel"), None)
        .await;
    assert_eq!(a.body["status"], "cancelled", "{}", a.text);
    let a = h
        .send(Method::POST, &format!("/v1/runs/{first}/cancel"), None)
        .await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "an ended run is answered as it is"
    );
    assert_eq!(a.body["status"], "cancelled");

    info!("--- unknown workflows and runs are 404");
    let ghost = Ulid::generate();
    for (method, uri) in [
        (Method::POST, "/v1/workflows/ghost/run".to_string()),
        (Method::GET, "/v1/workflows/ghost/runs".to_string()),
        (Method::GET, format!("/v1/runs/{ghost}")),
        (Method::POST, format!("/v1/runs/{ghost}/cancel")),
        (Method::GET, format!("/v1/runs/{ghost}/artifacts")),
        (Method::GET, format!("/v1/runs/{ghost}/artifacts/a/b.txt")),
    ] {
        let a = h.send(method.clone(), &uri, None).await;
        assert_eq!(
            a.status,
            StatusCode::NOT_FOUND,
            "{method} {uri}: {}",
            a.text
        );
        assert_eq!(a.body["error"]["code"], "not_found");
    }
    h.stop().await;
}

fn artifact(name: &str, node: &str, files: &[(&str, &[u8])]) -> ArtifactRecord {
    let files: Vec<ArtifactFile> = files
        .iter()
        .map(|(path, bytes)| ArtifactFile {
            path: path.to_string(),
            size: bytes.len() as u64,
            sha256: format!("{:064x}", bytes.len()),
        })
        .collect();
    ArtifactRecord {
        name: name.into(),
        job: "lint".into(),
        node: node.into(),
        size: files.iter().map(|f| f.size).sum(),
        files,
    }
}

/// A stand-in for another node's API: answers artifact files with their path,
/// and says whether the request was marked as passed on.
async fn fake_peer() -> String {
    use axum::extract::Path;
    use axum::http::HeaderMap;
    let app = axum::Router::new().route(
        "/v1/runs/{id}/artifacts/{name}/{*path}",
        axum::routing::get(
            |Path((_, name, path)): Path<(String, String, String)>, headers: HeaderMap| async move {
                let proxied = headers.contains_key("rota-proxied");
                format!("{name}/{path} proxied={proxied}")
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_are_listed_and_served_from_the_node_that_keeps_them() {
    let h = Harness::start().await;
    h.send(Method::PUT, "/v1/workflows/ci", Some(ci(None)))
        .await;
    let a = h.send(Method::POST, "/v1/workflows/ci/run", None).await;
    let run: Ulid = a.body["id"].as_str().expect("id").parse().expect("ulid");
    let lint: Ulid = a.body["jobs"]["lint"]["executions"][0]
        .as_str()
        .expect("execution")
        .parse()
        .expect("ulid");

    info!("--- lint ends with artifacts here, on a peer, on a dead node, on an unknown one");
    let dir = rota_scheduler::artifacts_dir(&h.node.config().data_dir, run).join("report");
    std::fs::create_dir_all(dir.join("html")).expect("artifact dir");
    std::fs::write(dir.join("html/index.html"), b"<h1>ok</h1>\n").expect("file");
    let peer = fake_peer().await;
    let dead = format!("http://127.0.0.1:{}", {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    });
    for (node, url) in [("n2", peer), ("n3", dead)] {
        let registered = commit(
            &h,
            Command::RegisterNode {
                fire_ahead: false,
                node: node.into(),
                incarnation: Ulid::generate(),
                tags: Default::default(),
                max_running: 1,
                url: Some(url),
            },
        )
        .await;
        assert!(matches!(registered, Response::NodeRegistered { .. }));
    }
    let records = vec![
        artifact(
            "report",
            "n1",
            &[("html/index.html", b"<h1>ok</h1>\n"), ("gone.txt", b"x")],
        ),
        artifact("coverage", "n2", &[("lcov info.txt", b"...")]),
        artifact("logs", "n3", &[("a.log", b"...")]),
        artifact("bins", "n9", &[("a.bin", b"...")]),
    ];
    let finish = Finish {
        id: lint,
        attempt: 1,
        status: ExecStatus::Succeeded,
        at: chrono::Utc::now(),
        exit_code: Some(0),
        error: None,
        output: None,
        output_truncated: false,
        retry_at: None,
        artifacts: records.clone(),
        result: None,
        started_at: None,
        usage: None,
    };
    commit(
        &h,
        Command::Finish {
            finishes: vec![finish],
        },
    )
    .await;
    let a = h.get(&format!("/v1/runs/{run}")).await;
    assert_eq!(a.body["jobs"]["lint"]["status"], "succeeded", "{}", a.text);
    assert_eq!(a.body["artifacts"].as_array().map(Vec::len), Some(4));

    let a = h.get(&format!("/v1/runs/{run}/artifacts")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["items"], json!(records), "{}", a.text);

    info!("--- a file kept here");
    let a = h
        .get(&format!("/v1/runs/{run}/artifacts/report/html/index.html"))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.text, "<h1>ok</h1>\n");
    let header = |name: &str| a.headers.get(name).and_then(|v| v.to_str().ok());
    assert_eq!(header("content-type"), Some("application/octet-stream"));
    assert_eq!(header("content-length"), Some("12"));
    let etag = format!("\"{}\"", records[0].files[0].sha256);
    assert_eq!(header("etag"), Some(etag.as_str()));

    info!("--- only recorded files, never another path");
    for (uri, status) in [
        ("artifacts/report/html/other.html", StatusCode::NOT_FOUND),
        ("artifacts/nope/html/index.html", StatusCode::NOT_FOUND),
        ("artifacts/report/gone.txt", StatusCode::NOT_FOUND),
        ("artifacts/report/%2e%2e/%2e%2e/x", StatusCode::BAD_REQUEST),
        (
            "artifacts/report/html/../index.html",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let a = h.get(&format!("/v1/runs/{run}/{uri}")).await;
        assert_eq!(a.status, status, "{uri}: {}", a.text);
    }

    info!("--- a peer's file is passed on, once");
    let a = h
        .get(&format!(
            "/v1/runs/{run}/artifacts/coverage/lcov%20info.txt"
        ))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.text, "coverage/lcov info.txt proxied=true");
    let a = h
        .call(
            Method::GET,
            &format!("/v1/runs/{run}/artifacts/coverage/lcov%20info.txt"),
            &[("Rota-Proxied", "1")],
            axum::body::Body::empty(),
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.text);

    info!("--- a dead node is 502, an unknown one 503, each named");
    let a = h.get(&format!("/v1/runs/{run}/artifacts/logs/a.log")).await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY, "{}", a.text);
    assert_eq!(a.body["error"]["code"], "node_unreachable");
    let message = a.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("\"n3\""), "{message}");
    let a = h.get(&format!("/v1/runs/{run}/artifacts/bins/a.bin")).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text);
    assert_eq!(a.body["error"]["code"], "node_unknown");
    let message = a.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("\"n9\""), "{message}");

    h.stop().await;
}
