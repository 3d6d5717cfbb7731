//! Scale measurement of the pure engine, run by hand in release mode:
//! `cargo run --release -p engine-scale [JOBS]` (default 1,000,000).
//!
//! Loads JOBS jobs on the same `*/10 * * * *` Europe/Berlin schedule into one engine,
//! then ticks once at the instant they are all due, and prints the load cost, the
//! resident memory per job and the cost of one tick firing all of them. It checks
//! only counts (every job fired once); the figures go to docs/PERFORMANCE.md.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use rota_core::{JobRecord, JobSpec, Timestamp};
use rota_engine::{Action, Engine, EngineConfig, Input};
use ulid::Ulid;

fn t0(secs: i64) -> Timestamp {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .expect("a valid origin")
        .with_timezone(&Utc)
        + TimeDelta::seconds(secs)
}

fn spec(name: &str) -> JobSpec {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "schedule": {"cron": "*/10 * * * *", "timezone": "Europe/Berlin"},
        "executor": {"type": "record", "path": "/dev/null"},
    }))
    .expect("a valid job spec")
}

/// Resident memory of this process (Linux; 0 elsewhere).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn main() {
    let jobs: usize = match std::env::args().nth(1) {
        None => 1_000_000,
        Some(arg) => arg.parse().unwrap_or_else(|_| {
            eprintln!("usage: engine-scale [JOBS]  (JOBS is a whole number, got {arg:?})");
            std::process::exit(2)
        }),
    };
    let mut next = 0u128;
    let ids = Box::new(move || {
        next += 1;
        Ulid(next)
    });
    let mut engine = Engine::new(EngineConfig::new("n1", 10_000), ids);
    let mut out = Vec::new();
    let rss_before = resident_bytes();
    let started = Instant::now();
    for i in 0..jobs {
        let record = JobRecord {
            spec: spec(&format!("job-{i}")),
            created_at: t0(0),
            updated_at: t0(0),
            revision: 1,
            last_scheduled_at: None,
            last_event_revision: None,
            last_event_seq: None,
        };
        engine.handle(Input::JobUpserted(Arc::new(record)), t0(0), &mut out);
    }
    let loaded = started.elapsed();
    let per_job = resident_bytes().saturating_sub(rss_before) / jobs.max(1) as u64;
    engine.start(t0(1), &mut out);
    assert!(out.is_empty(), "nothing is due at load");
    let fire_started = Instant::now();
    engine.tick(t0(600), &mut out);
    let fired = fire_started.elapsed();
    let fires = out.iter().filter(|a| matches!(a, Action::Fire(_))).count();
    assert_eq!(fires, jobs, "every job fires once at 00:10");
    let per = |d: std::time::Duration| d / jobs.max(1) as u32;
    println!(
        "{jobs} jobs: load {loaded:?} ({:?}/job, about {per_job} bytes/job resident), \
         one tick firing all {fired:?} ({:?}/fire); stats {:?}",
        per(loaded),
        per(fired),
        engine.stats()
    );
}
