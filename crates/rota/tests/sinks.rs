//! Sinks with a real InfluxDB 1.x (`influxd`, started here on free loopback
//! ports) and a real `rota server`: a `prow` job reads a recorded deck served
//! locally and its builds become `build` points; the job's own `execution` points
//! too; what the sink still holds is flushed when the server stops.

mod common;

#[path = "../../sink/tests/common/mod.rs"]
mod influx;

use std::collections::BTreeSet;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use common::{eventually, Server};
use serde_json::{json, Value};

const DECK: &str = include_str!("../../prow/tests/fixtures/prowjobs.json");

/// Serves the recorded deck at `/prowjobs.js`; answers the deck's base URL.
async fn deck() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().route("/prowjobs.js", get(|| async { DECK }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// The build ids of the fixture's jobs whose name contains `part` and that carry
/// what a build record needs (the malformed ones are skipped by the reader).
/// Distinct in the fixture, so their number is the number of builds.
fn fixture_build_ids(part: &str) -> BTreeSet<String> {
    let doc: Value = serde_json::from_str(DECK).unwrap();
    doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|item| {
            item["spec"]["job"]
                .as_str()
                .is_some_and(|j| j.contains(part))
                && item["spec"]["type"].is_string()
                && item["status"]["state"].is_string()
                && item["status"]["startTime"]
                    .as_str()
                    .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok())
        })
        // A job Prow has not given a build id yet is a build with an empty one.
        .map(|item| {
            item["status"]["build_id"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prow_builds_and_executions_reach_influxdb_and_the_rest_is_flushed_at_shutdown() {
    let influxd = influx::Influxd::start().await;
    influxd.create_database("ci").await;
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(tmp.path(), &[]).await;
    let deck = deck().await;

    // A sink that writes only when its (large) batch is full or at shutdown: what
    // reaches InfluxDB afterwards was flushed by the stopping server.
    let (status, sink) = server
        .send(
            "PUT",
            "/v1/sinks/ci",
            Some(
                json!({"type": "influxdb", "url": influxd.url, "database": "ci",
                        "batch_size": 10000, "buffer_points": 10000, "flush_interval": "1h"}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{sink}");

    // A job whose sink does not exist cannot run.
    let (status, _) = server
        .send(
            "PUT",
            "/v1/jobs/nowhere",
            Some(json!({"schedule": {"manual": true},
                        "executor": {"type": "prow", "url": format!("{deck}/prowjobs.js"), "sink": "missing"}})),
        )
        .await;
    assert_eq!(status, 201);
    let (_, exec) = server.send("POST", "/v1/jobs/nowhere/run", None).await;
    let id = exec["id"].as_str().unwrap().to_string();
    let failed = eventually(
        Duration::from_secs(20),
        "the sinkless run to fail",
        || async {
            let (_, e) = server.get(&format!("/v1/executions/{id}")).await;
            (e["status"] == "failed").then_some(e)
        },
    )
    .await;
    assert_eq!(
        failed["error"], "sink \"missing\" does not exist",
        "{failed}"
    );

    // The deck UI URL carries the job glob.
    let (status, job) = server
        .send(
            "PUT",
            "/v1/jobs/oadp-builds",
            Some(json!({"schedule": {"manual": true}, "sink": "ci",
                        "executor": {"type": "prow", "url": format!("{deck}/?job=*oadp*")}})),
        )
        .await;
    assert_eq!(status, 201, "{job}");
    let (_, exec) = server.send("POST", "/v1/jobs/oadp-builds/run", None).await;
    let id = exec["id"].as_str().unwrap().to_string();
    eventually(
        Duration::from_secs(20),
        "the prow run to succeed",
        || async {
            let (_, e) = server.get(&format!("/v1/executions/{id}")).await;
            (e["status"] == "succeeded").then_some(e)
        },
    )
    .await;
    let (_, output) = server
        .get_text(&format!("/v1/executions/{id}/output"))
        .await;
    let expected = fixture_build_ids("oadp");
    assert!(!expected.is_empty());
    assert!(
        output.contains(&format!("==> {} builds", expected.len())),
        "{output}"
    );
    assert!(output.contains("points queued on sink ci"), "{output}");
    assert!(
        influxd.rows("ci", "SELECT * FROM build").await.is_empty(),
        "nothing is written before the batch fills or the server stops"
    );

    // A graceful stop flushes the sink.
    let exit = server.stop();
    assert!(exit.success(), "{exit}");
    let rows = influxd.rows("ci", "SELECT * FROM build").await;
    let ids: BTreeSet<String> = rows
        .iter()
        .filter_map(|r| r["build_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(ids, expected);
    for row in &rows {
        let job = row["job_name"].as_str().unwrap();
        assert!(job.contains("oadp"), "{row:?}");
        assert!(row["state_int"].is_i64(), "{row:?}");
    }
    let executions = influxd
        .rows("ci", "SELECT * FROM execution WHERE job = 'oadp-builds'")
        .await;
    assert_eq!(executions.len(), 1, "{executions:?}");
    assert_eq!(executions[0]["status"], "succeeded");
    assert_eq!(executions[0]["attempt"], 1);
    assert!(executions[0]["duration_s"].as_f64().unwrap() >= 0.0);
}
