//! Points into InfluxDB 1.x, two ways, timed from the first point handed over to
//! the last one acknowledged: rota's [`rota_sink::Sink`] (points queued at once,
//! its writer task POSTs them in batches of `batch_size`), and a telegraf-style
//! loop (telegraf's output plugin writes as soon as `metric_batch_size` metrics
//! are buffered, one request at a time: here, sequential POSTs of `batch_size`
//! lines to `/write`). Both encode with [`rota_sink::Point::line`], so the
//! difference is the writer, not the encoder. Afterwards the database is asked
//! how many points it holds.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rota_core::sink::SinkSpec;
use rota_sink::{Point, Sink};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy)]
pub(crate) enum Writer {
    Rota,
    Telegraf,
}

impl Writer {
    fn name(self) -> &'static str {
        match self {
            Writer::Rota => "rota",
            Writer::Telegraf => "telegraf-style",
        }
    }
}

/// Series: 100 hosts × 4 regions is what one telegraf agent per host might send;
/// every point has its own timestamp, so none overwrites another.
fn points(n: usize) -> Vec<Point> {
    let base = 1_700_000_000_000_000_000i64;
    (0..n)
        .map(|i| {
            Point::new("bench", base + i as i64)
                .tag("host", format!("host-{}", i % 100))
                .tag("region", format!("region-{}", i % 4))
                .field("value", i as f64 * 0.5)
                .field("count", i as i64)
        })
        .collect()
}

/// One measured write of points.
pub(crate) struct SinkRun<'a> {
    pub(crate) influx: &'a str,
    pub(crate) writer: Writer,
    pub(crate) batch_size: usize,
    /// Points written.
    pub(crate) points: usize,
    pub(crate) database: &'a str,
    /// rota: points per `Sink::send` call.
    pub(crate) send_chunk: usize,
}

pub(crate) async fn run(run: SinkRun<'_>) -> anyhow::Result<()> {
    let SinkRun {
        influx,
        writer,
        batch_size,
        points: n,
        database,
        send_chunk,
    } = run;
    let influx = influx.trim_end_matches('/');
    let client = crate::client_builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    query(
        &client,
        influx,
        None,
        &format!("CREATE DATABASE \"{database}\""),
    )
    .await?;
    let points = points(n);
    // What the writers spend on the points themselves, measured apart (untimed
    // below): rota's validation, which the telegraf-style loop does not do, and
    // the line encoding both do.
    let clock = Instant::now();
    let invalid = points.iter().filter(|p| p.validate().is_err()).count();
    let validate_ms = clock.elapsed().as_secs_f64() * 1000.0;
    let clock = Instant::now();
    let encoded: usize = points.iter().map(|p| p.line().len() + 1).sum();
    let encode_ms = clock.elapsed().as_secs_f64() * 1000.0;
    if invalid > 0 {
        bail!("{invalid} of the generated points do not validate");
    }
    let started = Instant::now();
    let mut send_ms = None;
    let (written, dropped) = match writer {
        Writer::Rota => {
            let spec: SinkSpec = serde_json::from_value(json!({
                "type": "influxdb",
                "url": influx,
                "database": database,
                "batch_size": batch_size,
                "buffer_points": n.max(batch_size),
                "timeout": "60s",
            }))
            .context("the sink's spec")?;
            spec.validate().context("the sink's spec")?;
            let sink = Sink::start("bench", spec, client.clone());
            let mut queued = 0;
            let mut points = points.into_iter().peekable();
            while points.peek().is_some() {
                queued += sink.send(points.by_ref().take(send_chunk));
                // Let the writer task run between chunks, as it would between
                // the results of different jobs.
                tokio::task::yield_now().await;
            }
            // Validation and queueing happen in the caller; the writer task has
            // been writing batches meanwhile.
            send_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
            loop {
                let stats = sink.stats();
                if stats.written + stats.dropped >= n as u64 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let stats = sink.shutdown().await;
            if queued != n {
                eprintln!("{} of {n} points queued", queued);
            }
            (stats.written, stats.dropped)
        }
        Writer::Telegraf => {
            let url = format!("{influx}/write?db={database}&precision=ns");
            let mut written = 0u64;
            for batch in points.chunks(batch_size) {
                let body: String = batch.iter().map(|p| p.line() + "\n").collect();
                let response = client.post(&url).body(body).send().await?;
                if response.status().as_u16() != 204 {
                    let status = response.status();
                    bail!("POST {url} answered {status}: {}", response.text().await?);
                }
                written += batch.len() as u64;
            }
            (written, 0)
        }
    };
    let secs = started.elapsed().as_secs_f64();
    let answer = query(
        &client,
        influx,
        Some(database),
        "SELECT count(\"count\") FROM bench",
    )
    .await?;
    let stored = answer["results"][0]["series"][0]["values"][0][1].as_u64();
    let per_s = written as f64 / secs;
    eprintln!(
        "{} batch {batch_size}: {written} of {n} points in {secs:.3} s ({per_s:.0}/s), {dropped} dropped, {} stored",
        writer.name(),
        stored.map_or_else(|| "?".to_string(), |s| s.to_string())
    );
    let line = json!({
        "kind": "sink",
        "writer": writer.name(),
        "batch_size": batch_size,
        "send_chunk": matches!(writer, Writer::Rota).then_some(send_chunk),
        "points": n,
        "written": written,
        "dropped": dropped,
        "stored": stored,
        "secs": secs,
        "per_s": per_s,
        "send_ms": send_ms,
        "validate_ms": validate_ms,
        "encode_ms": encode_ms,
        "body_bytes": encoded,
    });
    println!("{line}");
    Ok(())
}

/// Runs an InfluxQL statement (`POST /query`) and answers the JSON.
async fn query(
    client: &reqwest::Client,
    influx: &str,
    database: Option<&str>,
    q: &str,
) -> anyhow::Result<Value> {
    let mut params = vec![("q", q)];
    if let Some(db) = database {
        params.push(("db", db));
    }
    let url = reqwest::Url::parse_with_params(&format!("{influx}/query"), &params)
        .with_context(|| format!("the query URL of {influx}"))?;
    let response = client
        .post(url.clone())
        .send()
        .await
        .with_context(|| format!("POST {url} ({q})"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .with_context(|| format!("{q}: the answer"))?;
    if !status.is_success() || !body["results"][0]["error"].is_null() {
        bail!("{q}: {status} {body}");
    }
    Ok(body)
}
