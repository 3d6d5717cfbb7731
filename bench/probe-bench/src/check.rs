//! The check endpoint under concurrent callers: each caller has its own keep-alive
//! connection and calls `GET /v1/jobs/{job}/check` again as soon as it has its
//! answer, for a fixed time. An answer that is not a 200 with status `synced`
//! counts as an error.

use std::time::{Duration, Instant};

use anyhow::Context;
use loadgen::Summary;
use serde_json::{json, Value};

use crate::proc::cpu_ms;

struct CallerResult {
    latencies_ms: Vec<f64>,
    errors: u64,
    last_error: Option<String>,
}

pub(crate) async fn run(
    url: &str,
    job: &str,
    callers: usize,
    secs: u64,
    pid: Option<u32>,
) -> anyhow::Result<()> {
    let check = format!("{}/v1/jobs/{job}/check", url.trim_end_matches('/'));
    let cpu_before = pid.and_then(cpu_ms);
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let mut tasks = Vec::with_capacity(callers);
    for _ in 0..callers {
        let client = crate::client_builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1)
            .build()?;
        let check = check.clone();
        tasks.push(tokio::spawn(
            async move { caller(client, check, until).await },
        ));
    }
    let mut latencies = Vec::new();
    let (mut errors, mut last_error) = (0u64, None);
    for task in tasks {
        let result = task.await.context("a caller panicked")?;
        latencies.extend(result.latencies_ms);
        errors += result.errors;
        last_error = last_error.or(result.last_error);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_pct = match (cpu_before, pid.and_then(cpu_ms)) {
        (Some(before), Some(after)) => Some((after - before) / (elapsed * 1000.0) * 100.0),
        _ => None,
    };
    let ok = latencies.len();
    let summary = Summary::from_samples(latencies);
    let per_s = ok as f64 / elapsed;
    if let Some(s) = &summary {
        eprintln!(
            "{callers} callers, {secs} s: {ok} checks ({per_s:.0}/s), p50 {:.2} / p99 {:.2} / max {:.2} ms, {errors} errors",
            s.p50, s.p99, s.max
        );
    }
    if let Some(e) = &last_error {
        eprintln!("last error: {e}");
    }
    let line = json!({
        "kind": "check",
        "callers": callers,
        "secs": elapsed,
        "requests": ok,
        "errors": errors,
        "last_error": last_error,
        "per_s": per_s,
        "latency_ms": summary,
        "cpu_pct": cpu_pct,
    });
    println!("{line}");
    Ok(())
}

async fn caller(client: reqwest::Client, check: String, until: Instant) -> CallerResult {
    let mut result = CallerResult {
        latencies_ms: Vec::new(),
        errors: 0,
        last_error: None,
    };
    while Instant::now() < until {
        let sent = Instant::now();
        match answer(&client, &check).await {
            Ok(()) => result
                .latencies_ms
                .push(sent.elapsed().as_secs_f64() * 1000.0),
            Err(e) => {
                result.errors += 1;
                result.last_error = Some(format!("{e:#}"));
            }
        }
    }
    result
}

async fn answer(client: &reqwest::Client, check: &str) -> anyhow::Result<()> {
    let response = client.get(check).send().await?;
    let status = response.status();
    let body: Value = response.json().await?;
    anyhow::ensure!(
        status.is_success() && body["status"] == "synced",
        "answered {status}: {}",
        body["status"]
    );
    Ok(())
}
