//! The scheduling steps driven end to end against a stand-in for rota: an HTTP
//! server with the job routes of the contract whose "scheduler" appends `record`
//! lines at each job's instants. It checks the harness (create, wait, read, delete,
//! report), not any figure: the stand-in's lag is whatever its timers give.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use chrono::{DateTime, TimeDelta, Utc};
use loadgen::fires::{run_fires, FiresRun};
use loadgen::lag::{run_lag, LagRun};
use loadgen::stamps::StampFormat;
use loadgen::Measurement;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

#[derive(Default)]
struct Fake {
    jobs: HashMap<String, JoinHandle<()>>,
    fired: u64,
    created: u64,
    deleted: u64,
}

type Shared = Arc<Mutex<Fake>>;

fn ns(t: DateTime<Utc>) -> i128 {
    i128::from(t.timestamp()) * 1_000_000_000 + i128::from(t.timestamp_subsec_nanos())
}

fn append(path: &str, line: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(line.as_bytes()).unwrap();
}

async fn fire_at(state: Shared, name: String, path: String, at: DateTime<Utc>) {
    if let Ok(d) = (at - Utc::now()).to_std() {
        tokio::time::sleep(d).await;
    }
    let handed = Utc::now();
    append(
        &path,
        &format!("{name} 01FAKE 1 {} {}\n", ns(at), ns(handed)),
    );
    state.lock().unwrap().fired += 1;
}

async fn put_job(
    State(state): State<Shared>,
    Path(name): Path<String>,
    Json(doc): Json<Value>,
) -> StatusCode {
    let path = doc["executor"]["path"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let schedule = &doc["schedule"];
    let task = if let Some(at) = schedule["at"].as_str() {
        let at = DateTime::parse_from_rfc3339(at)
            .unwrap()
            .with_timezone(&Utc);
        tokio::spawn(fire_at(state.clone(), name.clone(), path, at))
    } else {
        // Any cron stands for "every second" here.
        let (state2, name2) = (state.clone(), name.clone());
        tokio::spawn(async move {
            let mut next = loadgen::lag::next_whole_second(Utc::now());
            loop {
                fire_at(state2.clone(), name2.clone(), path.clone(), next).await;
                next += TimeDelta::seconds(1);
            }
        })
    };
    let mut s = state.lock().unwrap();
    s.created += 1;
    if let Some(old) = s.jobs.insert(name, task) {
        old.abort();
    }
    StatusCode::CREATED
}

async fn delete_job(State(state): State<Shared>, Path(name): Path<String>) -> StatusCode {
    let mut s = state.lock().unwrap();
    match s.jobs.remove(&name) {
        Some(task) => {
            task.abort();
            s.deleted += 1;
            StatusCode::NO_CONTENT
        }
        None => StatusCode::NOT_FOUND,
    }
}

async fn health(State(state): State<Shared>) -> Json<Value> {
    let s = state.lock().unwrap();
    Json(json!({"status": "ok", "role": "leader",
        "scheduler": {"jobs": s.jobs.len(), "queued": 0, "running": 0, "fired_total": s.fired}}))
}

async fn start() -> (String, Shared) {
    let state: Shared = Arc::default();
    let app = Router::new()
        .route("/v1/jobs/{name}", put(put_job).delete(delete_job))
        .route("/v1/health", get(health))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, state)
}

#[tokio::test]
async fn lag_creates_waits_for_every_run_and_cleans_up() {
    let (url, state) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let outcome = run_lag(LagRun {
        url,
        jobs: 5,
        executor: StampFormat::Record,
        clients: 2,
        dir: dir.path().to_path_buf(),
        lead_secs: Some(1.0),
        wait_secs: 30,
    })
    .await
    .unwrap();
    let Measurement::Lag {
        executor,
        jobs,
        observed,
        lag_ms,
    } = outcome.measurement
    else {
        panic!("not a lag result: {outcome:?}");
    };
    assert_eq!((executor.as_str(), jobs, observed), ("record", 5, 5));
    assert_eq!(lag_ms.unwrap().count, 5);
    let s = state.lock().unwrap();
    assert_eq!((s.created, s.deleted, s.jobs.len()), (5, 5, 0));
}

#[tokio::test]
async fn fires_counts_the_window_from_the_record_file() {
    let (url, state) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let outcome = run_fires(FiresRun {
        url,
        jobs: 3,
        executor: StampFormat::Record,
        clients: 2,
        dir: dir.path().to_path_buf(),
        window_secs: 2,
        warmup_secs: 0,
        fire_ahead: std::time::Duration::ZERO,
    })
    .await
    .unwrap();
    let Measurement::Fires {
        expected,
        fired,
        counted_by,
        max_queued,
        ..
    } = outcome.measurement
    else {
        panic!("not a fires result: {outcome:?}");
    };
    assert_eq!(expected, 6);
    assert_eq!(fired, 6);
    assert_eq!(counted_by, "record file");
    assert_eq!(max_queued, Some(0));
    assert!(state.lock().unwrap().jobs.is_empty(), "jobs were deleted");
}
