//! Watch delivery: `watchers` concurrent watch streams on one key prefix, then
//! `writers` closed-loop clients PUT `events` distinct keys under it. Every
//! watcher must see every key; the step reports deliveries per second (all
//! watchers together, from the first write to the last delivery) and the lag of
//! each delivery: from the moment its write was sent to the moment the watcher read
//! the event, so it includes the write's commit.
//!
//! rota: `GET /v1/watch?type=kv.put&prefix=P` (Server-Sent Events); a watcher counts
//! as ready at its `caught_up` event. etcd 3.4: `POST /v3/watch` on the JSON gateway
//! (one JSON object a line) with a range covering the prefix; ready at `created`.
//! Both stream every committed put once; neither is asked for history.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::error::BenchError;
use crate::kv::{closed_loop, make_clients, Stop, Target};
use crate::result::{Measurement, Outcome, Probe};
use crate::stats::Summary;

/// Parameters of [`run_watch`].
#[derive(Debug, Clone)]
pub struct WatchRun {
    pub target: Target,
    pub url: String,
    pub watchers: usize,
    pub writers: usize,
    pub events: usize,
    pub value_bytes: usize,
    /// Keys are `{key_prefix}/{i}`.
    pub key_prefix: String,
    /// How long watchers may take to receive everything after the last write.
    pub drain: Duration,
}

/// What one watcher saw.
struct Seen {
    lags_ms: Vec<f64>,
    last_at: Option<Instant>,
    error: Option<String>,
}

/// The index `i` of a key `{prefix}/{i}`.
fn key_index(key: &str, prefix: &str) -> Option<usize> {
    key.strip_prefix(prefix)?.strip_prefix('/')?.parse().ok()
}

/// Keys named in one rota SSE frame's `data:` line, or in one etcd JSON line.
fn keys_of(target: Target, line: &str) -> Vec<String> {
    match target {
        Target::Rota => line
            .strip_prefix("data:")
            .and_then(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .and_then(|v| v.get("key").and_then(Value::as_str).map(str::to_string))
            .into_iter()
            .collect(),
        Target::Etcd => {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                return Vec::new();
            };
            v.pointer("/result/events")
                .and_then(Value::as_array)
                .map(|events| {
                    events
                        .iter()
                        .filter_map(|e| e.pointer("/kv/key").and_then(Value::as_str))
                        .filter_map(|k| base64::engine::general_purpose::STANDARD.decode(k).ok())
                        .filter_map(|k| String::from_utf8(k).ok())
                        .collect()
                })
                .unwrap_or_default()
        }
    }
}

/// Whether a line says the stream is established.
fn is_ready(target: Target, line: &str) -> bool {
    match target {
        Target::Rota => line.trim() == "event: caught_up",
        Target::Etcd => serde_json::from_str::<Value>(line)
            .ok()
            .and_then(|v| v.pointer("/result/created").and_then(Value::as_bool))
            .unwrap_or(false),
    }
}

async fn open(
    http: &reqwest::Client,
    target: Target,
    url: &str,
    prefix: &str,
) -> Result<reqwest::Response, BenchError> {
    let base = url.trim_end_matches('/');
    let request = match target {
        // Prefixes here are plain `[a-z0-9-]` words; nothing needs escaping.
        Target::Rota => http.get(format!("{base}/v1/watch?type=kv.put&prefix={prefix}/")),
        Target::Etcd => {
            let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
            // The range [P/, P0) holds every key under `P/`.
            let body = serde_json::json!({"create_request": {
                "key": b64(&format!("{prefix}/")),
                "range_end": b64(&format!("{prefix}0")),
            }});
            http.post(format!("{base}/v3/watch")).json(&body)
        }
    };
    let method = if target == Target::Rota {
        "GET"
    } else {
        "POST"
    };
    let url = format!(
        "{base}/{}",
        if target == Target::Rota {
            "v1/watch"
        } else {
            "v3/watch"
        }
    );
    let resp = request.send().await.map_err(|source| BenchError::Request {
        method,
        url: url.clone(),
        source,
    })?;
    if !resp.status().is_success() {
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        return Err(BenchError::Status {
            method,
            url,
            status,
            body,
        });
    }
    Ok(resp)
}

/// What every watcher shares: where to watch, and when each key was sent (ns after
/// `base`).
#[derive(Clone)]
struct Shared {
    target: Target,
    url: String,
    prefix: String,
    events: usize,
    sent_ns: Arc<Vec<AtomicU64>>,
    base: Instant,
}

/// One watcher: opens its stream, says when it is ready, then reads until it saw
/// every key (or the stream ends, or `deadline` passes, which the caller sets).
async fn watcher(
    w: Shared,
    ready: oneshot::Sender<Result<(), String>>,
    deadline: Arc<tokio::sync::watch::Receiver<Option<Instant>>>,
) -> Seen {
    let Shared {
        target,
        url,
        prefix,
        events,
        sent_ns,
        base,
    } = w;
    let mut seen = Seen {
        lags_ms: Vec::with_capacity(events),
        last_at: None,
        error: None,
    };
    let http = match reqwest::Client::builder().tcp_nodelay(true).build() {
        Ok(h) => h,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return seen;
        }
    };
    let resp = match open(&http, target, &url, &prefix).await {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Err(crate::kv::error_chain(&e)));
            return seen;
        }
    };
    let mut ready = Some(ready);
    let mut got = HashSet::with_capacity(events);
    let mut buf: Vec<u8> = Vec::new();
    let mut stream = resp.bytes_stream();
    let mut deadline_rx = (*deadline).clone();
    while got.len() < events {
        let limit = *deadline_rx.borrow();
        let chunk = tokio::select! {
            c = stream.next() => c,
            _ = async {
                match limit {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            } => {
                seen.error = Some(format!("{} of {events} events by the deadline", got.len()));
                break;
            }
            _ = deadline_rx.changed() => continue,
        };
        let chunk = match chunk {
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                seen.error = Some(format!("stream failed: {e}"));
                break;
            }
            None => {
                seen.error = Some(format!("stream ended after {} events", got.len()));
                break;
            }
        };
        let now = Instant::now();
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end();
            if ready.is_some() && is_ready(target, line) {
                if let Some(r) = ready.take() {
                    let _ = r.send(Ok(()));
                }
                continue;
            }
            for key in keys_of(target, line) {
                let Some(i) = key_index(&key, &prefix) else {
                    continue;
                };
                if i >= events || !got.insert(i) {
                    continue;
                }
                let sent = sent_ns[i].load(Ordering::Acquire);
                let at = now.duration_since(base).as_nanos() as u64;
                seen.lags_ms.push(at.saturating_sub(sent) as f64 / 1e6);
                seen.last_at = Some(now);
            }
        }
    }
    if let Some(r) = ready.take() {
        let _ = r
            .send(Err(seen.error.clone().unwrap_or_else(|| {
                "the stream never said it was ready".into()
            })));
    }
    seen
}

/// Opens the watchers, writes the keys, and reports what every watcher received.
pub async fn run_watch(run: WatchRun) -> Result<Outcome, BenchError> {
    let events = run.events.max(1);
    let watchers = run.watchers.max(1);
    let base = Instant::now();
    let sent_ns: Arc<Vec<AtomicU64>> = Arc::new((0..events).map(|_| AtomicU64::new(0)).collect());
    let (deadline_tx, deadline_rx) = tokio::sync::watch::channel(None);
    let deadline_rx = Arc::new(deadline_rx);
    let mut tasks = Vec::with_capacity(watchers);
    let mut readies = Vec::with_capacity(watchers);
    for _ in 0..watchers {
        let (ready_tx, ready_rx) = oneshot::channel();
        readies.push(ready_rx);
        let shared = Shared {
            target: run.target,
            url: run.url.clone(),
            prefix: run.key_prefix.clone(),
            events,
            sent_ns: sent_ns.clone(),
            base,
        };
        tasks.push(tokio::spawn(watcher(shared, ready_tx, deadline_rx.clone())));
    }
    for ready in readies {
        match ready.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(BenchError::SetupFailed {
                    errors: 1,
                    first: e,
                })
            }
            Err(_) => {
                return Err(BenchError::SetupFailed {
                    errors: 1,
                    first: "a watcher ended before it was ready".into(),
                })
            }
        }
    }
    info!(
        system = run.target.system(),
        watchers, events, "watchers ready; writing"
    );

    let probe = Probe::start();
    let writers = make_clients(run.target, std::slice::from_ref(&run.url), run.writers)?;
    let value = Arc::new("v".repeat(run.value_bytes));
    let (prefix, stamps) = (Arc::new(run.key_prefix.clone()), sent_ns.clone());
    let first_write = Instant::now();
    let written = closed_loop(writers, Stop::Ops(events as u64), move |mut c, _, n| {
        let key = format!("{prefix}/{n}");
        let v = value.clone();
        let stamps = stamps.clone();
        async move {
            let at = Instant::now().duration_since(base).as_nanos() as u64;
            stamps[n as usize].store(at, Ordering::Release);
            let r = c.put(&key, &v).await;
            (c, r)
        }
    })
    .await?;
    if written.errors > 0 {
        warn!(errors = written.errors, first = ?written.first_error, "some writes failed");
    }
    let _ = deadline_tx.send(Some(Instant::now() + run.drain));

    let mut lags = Vec::with_capacity(events * watchers);
    let mut last = first_write;
    let mut short = 0usize;
    let mut first_error = None;
    for task in tasks {
        let seen = task.await.map_err(|e| BenchError::SetupFailed {
            errors: 1,
            first: format!("a watcher task failed: {e}"),
        })?;
        if seen.lags_ms.len() < events {
            short += 1;
        }
        if first_error.is_none() {
            first_error = seen.error.clone();
        }
        if let Some(at) = seen.last_at {
            last = last.max(at);
        }
        lags.extend(seen.lags_ms);
    }
    if let Some(e) = &first_error {
        warn!(watchers_short = short, first = %e, "not every watcher saw every event");
    }
    let delivered = lags.len() as u64;
    let secs = last.duration_since(first_write).as_secs_f64();
    Ok(Outcome::new(
        run.target.system(),
        &probe,
        Measurement::Watch {
            watchers,
            writers: run.writers.max(1),
            events,
            delivered,
            expected: (events * watchers) as u64,
            write_errors: written.errors,
            secs,
            deliveries_per_sec: delivered as f64 / secs.max(f64::EPSILON),
            lag_ms: Summary::from_samples(lags),
        },
    ))
}

/// The markdown section of the watch steps: one row per watcher count, rota and etcd
/// side by side.
pub fn watch_section(of: &[&Outcome], cores: usize) -> String {
    use std::collections::BTreeMap;
    use std::fmt::Write as _;

    use crate::report::{dist, latest_of, load_cell, rate, ratio};
    use crate::result::{ETCD, ROTA};

    let mut rows: BTreeMap<usize, Vec<&Outcome>> = BTreeMap::new();
    for o in of {
        if let Measurement::Watch { watchers, .. } = o.measurement {
            rows.entry(watchers).or_default().push(o);
        }
    }
    let mut out = String::from(
        "## Watch delivery: rota vs etcd\n\n\
         W watchers follow one key prefix (rota `GET /v1/watch?type=kv.put&prefix=P`, \
         Server-Sent Events; etcd 3.4 `POST /v3/watch` on its JSON gateway), each on its \
         own connection; then writers PUT distinct keys under the prefix in a closed loop. \
         Deliveries/s = deliveries over all watchers from the first write to the last \
         delivery. Lag = from a write's send to its delivery at a watcher, so it includes \
         the write's commit (fsync). `rota / etcd` above 1 means rota delivers more; for \
         the lag, below 1 means rota is faster.\n\n\
         | watchers | writers | events | rota delivered | etcd delivered | rota deliveries/s | etcd deliveries/s | rota / etcd | rota lag p50 / p99 / max ms | etcd lag p50 / p99 / max ms | lag p99 rota / etcd | others' CPU |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for (watchers, runs) in rows {
        let (r, e) = (latest_of(&runs, ROTA), latest_of(&runs, ETCD));
        let get = |o: Option<&Outcome>| match o.map(|o| &o.measurement) {
            Some(Measurement::Watch {
                writers,
                events,
                delivered,
                expected,
                deliveries_per_sec,
                lag_ms,
                ..
            }) => Some((
                *writers,
                *events,
                format!("{delivered}/{expected}"),
                *deliveries_per_sec,
                *lag_ms,
            )),
            _ => None,
        };
        let (rv, ev) = (get(r), get(e));
        let (writers, events) = rv.as_ref().or(ev.as_ref()).map_or((0, 0), |v| (v.0, v.1));
        let cell = |v: &Option<(usize, usize, String, f64, Option<Summary>)>, f: usize| {
            v.as_ref().map_or("–".to_string(), |v| match f {
                0 => v.2.clone(),
                1 => rate(v.3),
                _ => dist(&v.4),
            })
        };
        let p99 = |v: &Option<(usize, usize, String, f64, Option<Summary>)>| {
            v.as_ref().and_then(|v| v.4.as_ref().map(|s| s.p99))
        };
        let present: Vec<&Outcome> = [r, e].into_iter().flatten().collect();
        let _ = writeln!(
            out,
            "| {watchers} | {writers} | {events} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cell(&rv, 0),
            cell(&ev, 0),
            cell(&rv, 1),
            cell(&ev, 1),
            ratio(rv.as_ref().map(|v| v.3), ev.as_ref().map(|v| v.3)),
            cell(&rv, 2),
            cell(&ev, 2),
            ratio(p99(&rv), p99(&ev)),
            load_cell(&present, cores),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_from_rota_frames_and_etcd_lines() {
        let rota = r#"data: {"revision":7,"type":"kv.put","key":"w/3","at":"2026-01-01T00:00:00Z","data":{}}"#;
        assert_eq!(keys_of(Target::Rota, rota), vec!["w/3".to_string()]);
        assert!(keys_of(Target::Rota, "id: 7").is_empty());
        let etcd = r#"{"result":{"header":{},"events":[{"kv":{"key":"dy8x","value":"dg=="}},{"kv":{"key":"dy8y"}}]}}"#;
        assert_eq!(
            keys_of(Target::Etcd, etcd),
            vec!["w/1".to_string(), "w/2".to_string()]
        );
        assert_eq!(key_index("w/12", "w"), Some(12));
        assert_eq!(key_index("w2/12", "w"), None);
    }

    #[test]
    fn readiness_is_caught_up_or_created() {
        assert!(is_ready(Target::Rota, "event: caught_up"));
        assert!(!is_ready(Target::Rota, "event: kv.put"));
        assert!(is_ready(
            Target::Etcd,
            r#"{"result":{"header":{},"created":true}}"#
        ));
        assert!(!is_ready(Target::Etcd, r#"{"result":{"events":[]}}"#));
    }
}
