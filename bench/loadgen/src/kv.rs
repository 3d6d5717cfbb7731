//! Key/value write throughput and latency: `clients` simulated clients, each on its
//! own keep-alive connection, PUT distinct keys with small values, one request
//! outstanding per client (closed loop), until a total count or a duration is
//! reached. Against a cluster, clients are spread over the given endpoints in
//! turn.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::info;

use crate::client::{unique_client_id, EtcdClient, KvClient, RotaClient};
use crate::error::BenchError;
use crate::result::{KvOp, Measurement, Outcome, Probe, ETCD, ROTA};
use crate::stats::Summary;

/// Which server a KV run drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Rota,
    Etcd,
}

impl Target {
    pub fn system(self) -> &'static str {
        match self {
            Target::Rota => ROTA,
            Target::Etcd => ETCD,
        }
    }

    /// A fresh client (own connection, own session) for simulated client `index`.
    pub fn client(self, url: &str, index: usize) -> Result<KvClient, BenchError> {
        Ok(match self {
            Target::Rota => KvClient::Rota(RotaClient::new(url, unique_client_id("kv", index))?),
            Target::Etcd => KvClient::Etcd(EtcdClient::new(url)?),
        })
    }
}

/// When a closed-loop run stops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// After this many requests in total.
    Ops(u64),
    /// After this long (requests in flight finish).
    Duration(Duration),
}

/// Parameters of [`run_kv`].
#[derive(Debug, Clone)]
pub struct KvRun {
    pub target: Target,
    /// Endpoints; client `i` talks to `urls[i % urls.len()]`.
    pub urls: Vec<String>,
    /// Voters of the set-up (for the report).
    pub nodes: usize,
    pub clients: usize,
    pub stop: Stop,
    pub value_bytes: usize,
    /// Keys are `{key_prefix}/{client}/{i}`.
    pub key_prefix: String,
}

/// What the clients of a closed-loop run measured together.
#[derive(Debug, Default)]
pub struct ClosedLoop {
    pub latencies_ms: Vec<f64>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub secs: f64,
}

/// Drives the run and reports it.
pub async fn run_kv(run: KvRun) -> Result<Outcome, BenchError> {
    let probe = Probe::start();
    let value = "v".repeat(run.value_bytes);
    let clients = make_clients(run.target, &run.urls, run.clients)?;
    info!(system = run.target.system(), clients = clients.len(), stop = ?run.stop, "kv run");
    let prefix = run.key_prefix.clone();
    let result = closed_loop(clients, run.stop, move |mut client, index, i| {
        let key = format!("{prefix}/{index}/{i}");
        let value = value.clone();
        async move {
            let r = client.put(&key, &value).await;
            (client, r)
        }
    })
    .await?;
    kv_outcome(
        run.target,
        &probe,
        KvOp::Put,
        run.clients,
        run.value_bytes,
        result,
    )
    .map(|o| o.on_nodes(run.nodes))
}

/// One client per simulated client, spread over `urls` in turn.
pub fn make_clients(
    target: Target,
    urls: &[String],
    clients: usize,
) -> Result<Vec<KvClient>, BenchError> {
    if urls.is_empty() {
        return Err(BenchError::NoEndpoint);
    }
    (0..clients.max(1))
        .map(|i| target.client(&urls[i % urls.len()], i))
        .collect()
}

/// The outcome of a closed-loop key/value run; a run in which nothing succeeded
/// is an error, not a row of zeros.
pub fn kv_outcome(
    target: Target,
    probe: &Probe,
    op: KvOp,
    clients: usize,
    value_bytes: usize,
    result: ClosedLoop,
) -> Result<Outcome, BenchError> {
    if result.latencies_ms.is_empty() {
        return Err(BenchError::NothingSucceeded {
            first: result.first_error.unwrap_or_default(),
        });
    }
    if let Some(first) = &result.first_error {
        tracing::warn!(errors = result.errors, %first, "some requests failed");
    }
    let ops = result.latencies_ms.len() as u64;
    Ok(Outcome::new(
        target.system(),
        probe,
        Measurement::Kv {
            op,
            clients: clients.max(1),
            value_bytes,
            ops,
            errors: result.errors,
            secs: result.secs,
            ops_per_sec: ops as f64 / result.secs.max(f64::EPSILON),
            latency_ms: Summary::from_samples(result.latencies_ms),
        },
    ))
}

/// Runs one task per client; each issues `op(client, client_index, n)` back to back
/// until `stop`. `n` is the run-wide request number with [`Stop::Ops`] (so that bulk
/// operations can index a list, each item exactly once) and the client's own count
/// with [`Stop::Duration`]. Only successful requests contribute latency samples.
pub async fn closed_loop<C, F, Fut>(
    clients: Vec<C>,
    stop: Stop,
    op: F,
) -> Result<ClosedLoop, BenchError>
where
    C: Send + 'static,
    F: Fn(C, usize, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = (C, Result<(), BenchError>)> + Send,
{
    let issued = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = match stop {
        Stop::Duration(d) => Some(start + d),
        Stop::Ops(_) => None,
    };
    let mut tasks = Vec::with_capacity(clients.len());
    for (index, client) in clients.into_iter().enumerate() {
        let issued = issued.clone();
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut part = ClosedLoop::default();
            let mut client = Some(client);
            let mut i = 0u64;
            loop {
                let n = match stop {
                    Stop::Ops(total) => {
                        let n = issued.fetch_add(1, Ordering::Relaxed);
                        if n >= total {
                            break;
                        }
                        n
                    }
                    Stop::Duration(_) => {
                        if deadline.is_some_and(|d| Instant::now() >= d) {
                            break;
                        }
                        i
                    }
                };
                let Some(c) = client.take() else { break };
                let sent = Instant::now();
                let (c, result) = op(c, index, n).await;
                client = Some(c);
                i += 1;
                match result {
                    Ok(()) => part.latencies_ms.push(sent.elapsed().as_secs_f64() * 1e3),
                    Err(err) => {
                        part.errors += 1;
                        if part.first_error.is_none() {
                            part.first_error = Some(error_chain(&err));
                        }
                    }
                }
            }
            part
        }));
    }
    let mut all = ClosedLoop::default();
    for task in tasks {
        let part = task.await.map_err(BenchError::Task)?;
        all.latencies_ms.extend(part.latencies_ms);
        all.errors += part.errors;
        if all.first_error.is_none() {
            all.first_error = part.first_error;
        }
    }
    all.secs = start.elapsed().as_secs_f64();
    Ok(all)
}

/// An error with its sources, on one line.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ops_stop_issues_exactly_the_total_across_clients() {
        let result = closed_loop(vec![(), (), ()], Stop::Ops(10), |c, _, _| async move {
            (c, Ok(()))
        })
        .await
        .unwrap();
        assert_eq!(result.latencies_ms.len(), 10);
        assert_eq!(result.errors, 0);
    }

    #[tokio::test]
    async fn ops_stop_hands_out_each_index_once() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        closed_loop(vec![(), ()], Stop::Ops(50), move |c, _, n| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push(n);
                (c, Ok(()))
            }
        })
        .await
        .unwrap();
        let mut seen = seen.lock().unwrap().clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..50).collect::<Vec<u64>>());
    }

    #[tokio::test]
    async fn failures_are_counted_not_sampled() {
        let result = closed_loop(vec![()], Stop::Ops(4), |c, _, i| async move {
            let r = if i % 2 == 0 {
                Ok(())
            } else {
                Err(BenchError::NothingSucceeded {
                    first: format!("request {i}"),
                })
            };
            (c, r)
        })
        .await
        .unwrap();
        assert_eq!(result.latencies_ms.len(), 2);
        assert_eq!(result.errors, 2);
        assert!(result.first_error.unwrap().contains("request 1"));
    }

    #[tokio::test]
    async fn duration_stop_ends_the_run() {
        let result = closed_loop(
            vec![()],
            Stop::Duration(Duration::ZERO),
            |c, _, _| async move { (c, Ok(())) },
        )
        .await
        .unwrap();
        assert!(result.latencies_ms.is_empty());
    }
}
