//! Crash test: `kill -9` the server at random moments while a job fires every second
//! and a client writes KV pairs. Afterwards no scheduled instant produced two
//! executions, every instant is there (misfire `run_all`), and every acknowledged KV
//! write survived.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{eventually, Server};
use rota_core::rng::Rng;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_neither_duplicates_nor_loses_runs_or_acknowledged_writes() {
    let kills: u32 = std::env::var("ROTA_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let seed = std::env::var("ROTA_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| Utc::now().timestamp_nanos_opt().unwrap_or(1) as u64 | 1);
    eprintln!("crash test: {kills} kills, seed {seed}");
    // Seeded from the clock, and printed so that a failure can be replayed.
    let mut rng = Rng::new(seed);

    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(tmp.path(), &[]).await;
    let marks = tmp.path().join("marks.txt");
    let (status, body) = server
        .send(
            "PUT",
            "/v1/jobs/every-second",
            Some(json!({
                "schedule": {"cron": "*/1 * * * * *"},
                "executor": {"type": "shell", "command": format!(
                    "echo \"$ROTA_SCHEDULED_AT $ROTA_EXECUTION_ID $ROTA_ATTEMPT\" >> {}; sleep 0.4", marks.display())},
                "misfire": "run_all",
                "catchup_window": "1h",
                "retry": {"max_attempts": 10, "initial_delay": "500ms", "max_delay": "1s", "jitter": false},
                "history_limit": 10000
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // --- a client writing KV pairs throughout; it remembers what was acknowledged
    let acked: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop, url) = (acked.clone(), stop.clone(), server.url.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let (key, value) = (format!("crash/{i:06}"), format!("value-{i}"));
                let sent = http
                    .put(format!("{url}/v1/kv/{key}"))
                    .header("Rota-Client-Id", "crash-writer")
                    .header("Rota-Request-Seq", i.to_string())
                    .json(&json!({ "value": value }))
                    .send()
                    .await;
                match sent {
                    Ok(resp) if resp.status().is_success() => {
                        acked.lock().unwrap().insert(key, value);
                    }
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        })
    };

    // --- kill -9 at random moments, restart after a random outage; one outage is
    // longer than the scheduler's on-time tolerance, so its instants must come back
    // through the misfire policy (trigger `catchup`). The instants of the last
    // `fire_ahead` window before the kill were already fired, so the first one
    // missed is that much younger than the outage: the long outage exceeds the
    // tolerance by the window and then some.
    let tolerance = rota_engine::DEFAULT_MISFIRE_THRESHOLD + rota_scheduler::DEFAULT_FIRE_AHEAD;
    let long_outage = u64::try_from((tolerance + Duration::from_secs(2)).as_millis()).unwrap();
    for round in 1..=kills {
        tokio::time::sleep(Duration::from_millis(rng.between(300, 2500))).await;
        let outage = if round == 2 {
            long_outage
        } else {
            rng.between(0, 1500)
        };
        eprintln!("--- round {round}: kill -9, {outage} ms down");
        server.kill9();
        tokio::time::sleep(Duration::from_millis(outage)).await;
        server.restart().await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let horizon = Utc::now() - chrono::Duration::seconds(2);

    // --- wait until every instant up to the horizon has finished
    let history = eventually(
        Duration::from_secs(60),
        "all instants to finish",
        || async {
            let h = server.history("every-second", 1000).await;
            let first = h
                .iter()
                .filter_map(|e| e["scheduled_at"].as_str())
                .min()?
                .to_string();
            let first: DateTime<Utc> = first.parse().ok()?;
            let done: BTreeSet<DateTime<Utc>> = h
                .iter()
                .filter(|e| e["status"] == "succeeded")
                .filter_map(|e| e["scheduled_at"].as_str()?.parse().ok())
                .collect();
            let mut t = first;
            while t <= horizon {
                if !done.contains(&t) {
                    return None;
                }
                t += chrono::Duration::seconds(1);
            }
            Some(h)
        },
    )
    .await;

    // --- the store: exactly one execution per instant
    let mut per_instant: HashMap<DateTime<Utc>, Vec<String>> = HashMap::new();
    for e in &history {
        let at: DateTime<Utc> = e["scheduled_at"].as_str().unwrap().parse().unwrap();
        per_instant
            .entry(at)
            .or_default()
            .push(e["id"].as_str().unwrap().to_string());
    }
    for (at, ids) in &per_instant {
        assert_eq!(
            ids.len(),
            1,
            "instant {at} has executions {ids:?}\n{}",
            server.logs()
        );
    }
    let catchups = history.iter().filter(|e| e["trigger"] == "catchup").count();
    let retried = history
        .iter()
        .filter(|e| e["attempt"].as_u64().unwrap_or(1) > 1)
        .count();
    eprintln!(
        "{} instants, {catchups} fired by catch-up, {retried} retried after a lost attempt",
        per_instant.len()
    );
    if kills >= 2 {
        assert!(catchups > 0, "the long outage left no catch-up run");
    }

    // --- the processes: every line of an instant carries the same execution id
    let text = std::fs::read_to_string(&marks).unwrap();
    let mut ids_by_instant: HashMap<DateTime<Utc>, BTreeSet<String>> = HashMap::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(at), Some(id), Some(attempt)) = (parts.next(), parts.next(), parts.next()) else {
            panic!("malformed line {line:?}");
        };
        assert!(attempt.parse::<u32>().is_ok(), "{line}");
        let at: DateTime<Utc> = at.parse().unwrap();
        ids_by_instant.entry(at).or_default().insert(id.to_string());
    }
    for (at, ids) in &ids_by_instant {
        assert_eq!(ids.len(), 1, "instant {at} ran as {ids:?}");
        let stored = &per_instant[at];
        assert!(
            ids.contains(&stored[0]),
            "instant {at}: file {ids:?}, store {stored:?}"
        );
    }
    for at in per_instant.keys().filter(|at| **at <= horizon) {
        assert!(
            ids_by_instant.contains_key(at),
            "instant {at} succeeded but never ran"
        );
    }

    // --- every acknowledged KV write survived
    let acked = acked.lock().unwrap().clone();
    assert!(!acked.is_empty(), "no KV write was acknowledged");
    for (key, value) in &acked {
        let (status, got) = server.get(&format!("/v1/kv/{key}")).await;
        assert_eq!(status, 200, "acknowledged {key} is gone");
        assert_eq!(got["value"], value.as_str(), "{key}");
    }
    eprintln!(
        "{} acknowledged KV writes survived {kills} kills",
        acked.len()
    );
}

/// Whether process `pid` runs (a zombie waiting for its parent does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(')')?.1.split_whitespace().next()?;
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

/// Kills a process the test could not see stopped.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if alive(self.0) {
            let _ = std::process::Command::new("kill")
                .args(["-9", &self.0.to_string()])
                .status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_left_running_by_a_crash_is_stopped_when_the_node_restarts() {
    const DEADLINE: Duration = Duration::from_secs(30);
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(tmp.path(), &[]).await;
    let pid_file = tmp.path().join("pid");
    // `exec`: the shell turns into `sleep`, which leads the run's group throughout.
    let command = format!("echo $$ > {}; exec sleep 300", pid_file.display());
    let (status, body) = server
        .send(
            "PUT",
            "/v1/jobs/long",
            Some(json!({"schedule": {"manual": true}, "executor": {"type": "shell", "command": command}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = server.send("POST", "/v1/jobs/long/run", None).await;
    assert_eq!(status, 202, "{body}");
    let pid: u32 = eventually(DEADLINE, "the run's process", || async {
        std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
    })
    .await;
    let _cleanup = KillOnDrop(pid);
    assert!(alive(pid));

    // A crash stops nothing: the run goes on without its server.
    server.kill9();
    assert!(alive(pid), "the run ended with its server");

    // The restarted node stops it before it runs anything, and says the attempt was
    // lost.
    server.relaunch();
    server.wait_ready().await;
    eventually(DEADLINE, "the orphaned run to be stopped", || async {
        (!alive(pid)).then_some(())
    })
    .await;
    eventually(DEADLINE, "the attempt recorded as lost", || async {
        let runs = server.history("long", 10).await;
        (runs.len() == 1 && runs[0]["status"] == "lost").then_some(())
    })
    .await;
}
