//! One probe over a large set, timed from outside: `GET /v1/jobs/{job}/check`,
//! one call after another, each answer checked (every target listed and synced).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::proc::cpu_ms;

/// Processes whose CPU time per check is reported.
pub(crate) struct Pids {
    pub(crate) rota: Option<u32>,
    pub(crate) targets: Option<u32>,
}

pub(crate) async fn run(
    url: &str,
    job: &str,
    reps: usize,
    targets: usize,
    variant: &str,
    pids: Pids,
) -> anyhow::Result<()> {
    let client = crate::client_builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let check = format!("{}/v1/jobs/{job}/check", url.trim_end_matches('/'));
    let mut walls_ms = Vec::with_capacity(reps);
    let mut target_p50_ms = Vec::with_capacity(reps);
    let cpu_before = pids.rota.and_then(cpu_ms);
    let targets_cpu_before = pids.targets.and_then(cpu_ms);
    for rep in 0..reps {
        let started = Instant::now();
        let response = client
            .get(&check)
            .send()
            .await
            .with_context(|| format!("GET {check}"))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .with_context(|| format!("GET {check}: reading the answer"))?;
        let wall = started.elapsed().as_secs_f64() * 1000.0;
        if !status.is_success() {
            bail!("GET {check} answered {status}: {body}");
        }
        let listed = body["targets"].as_array().map_or(0, Vec::len);
        if body["status"] != "synced" || listed != targets {
            bail!(
                "GET {check} (rep {rep}): status {}, {listed} targets listed, {targets} expected",
                body["status"]
            );
        }
        // Per-target durations as rota measured them (whole milliseconds).
        let mut durations: Vec<f64> = body["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["duration_ms"].as_f64())
            .collect();
        durations.sort_by(f64::total_cmp);
        target_p50_ms.push(loadgen::stats::percentile(&durations, 50.0));
        walls_ms.push(wall);
        eprintln!("check {rep}: {wall:.1} ms");
    }
    let per_check = |before: Option<f64>, pid: Option<u32>| match (before, pid.and_then(cpu_ms)) {
        (Some(before), Some(after)) if reps > 0 => Some((after - before) / reps as f64),
        _ => None,
    };
    let cpu_ms_per_check = per_check(cpu_before, pids.rota);
    let targets_cpu_ms_per_check = per_check(targets_cpu_before, pids.targets);
    let line = json!({
        "kind": "fanout",
        "system": "rota",
        "variant": variant,
        "targets": targets,
        "walls_ms": walls_ms,
        "target_p50_ms": target_p50_ms,
        "cpu_ms_per_request": cpu_ms_per_check,
        "targets_cpu_ms_per_request": targets_cpu_ms_per_check,
    });
    println!("{line}");
    Ok(())
}
