//! Linearizable read throughput and latency: `keys` keys are written first (not
//! measured), then `clients` simulated clients, each on its own keep-alive
//! connection, read them back in a closed loop until a count or a duration is
//! reached. rota answers `GET /v1/kv/{key}` after the leader confirmed its
//! leadership with a quorum (read index); etcd answers `POST /v3/kv/range` the same
//! way by default. Neither is a stale or serializable read.

use std::sync::Arc;

use tracing::info;

use crate::error::BenchError;
use crate::kv::{closed_loop, kv_outcome, make_clients, Stop, Target};
use crate::result::{KvOp, Outcome, Probe};

/// Clients that write the keys before the measured reads.
const SETUP_CLIENTS: usize = 16;

/// Parameters of [`run_get`].
#[derive(Debug, Clone)]
pub struct GetRun {
    pub target: Target,
    /// Endpoints; client `i` talks to `urls[i % urls.len()]`.
    pub urls: Vec<String>,
    /// Voters of the set-up (for the report).
    pub nodes: usize,
    pub clients: usize,
    pub stop: Stop,
    /// How many distinct keys are written and then read.
    pub keys: usize,
    pub value_bytes: usize,
    /// Keys are `{key_prefix}/{i}`.
    pub key_prefix: String,
}

/// The key client `client` reads on its `n`-th request. Clients start at
/// different offsets so that they do not all read the same key at once.
pub fn key_index(client: usize, n: u64, keys: usize) -> usize {
    let keys = keys.max(1) as u64;
    let start = (client as u64).wrapping_mul(7919);
    (start.wrapping_add(n) % keys) as usize
}

/// Writes the keys, then drives the reads and reports them.
pub async fn run_get(run: GetRun) -> Result<Outcome, BenchError> {
    let keys = run.keys.max(1);
    let value = Arc::new("v".repeat(run.value_bytes));
    let prefix = Arc::new(run.key_prefix.clone());

    info!(
        system = run.target.system(),
        keys, "writing the keys to read"
    );
    let writers = make_clients(run.target, &run.urls, SETUP_CLIENTS.min(keys))?;
    let (p, v) = (prefix.clone(), value.clone());
    let setup = closed_loop(writers, Stop::Ops(keys as u64), move |mut c, _, n| {
        let key = format!("{p}/{n}");
        let v = v.clone();
        async move {
            let r = c.put(&key, &v).await;
            (c, r)
        }
    })
    .await?;
    if setup.errors > 0 {
        return Err(BenchError::SetupFailed {
            errors: setup.errors,
            first: setup.first_error.unwrap_or_default(),
        });
    }

    let probe = Probe::start();
    let readers = make_clients(run.target, &run.urls, run.clients)?;
    info!(system = run.target.system(), clients = readers.len(), stop = ?run.stop, "get run");
    let result = closed_loop(readers, run.stop, move |c, index, n| {
        let key = format!("{prefix}/{}", key_index(index, n, keys));
        async move {
            let r = c.get(&key).await;
            (c, r)
        }
    })
    .await?;
    kv_outcome(
        run.target,
        &probe,
        KvOp::Get,
        run.clients,
        run.value_bytes,
        result,
    )
    .map(|o| o.on_nodes(run.nodes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_read_stays_in_range_and_clients_start_apart() {
        for client in 0..64 {
            for n in 0..100 {
                assert!(key_index(client, n, 1000) < 1000);
            }
        }
        assert_ne!(key_index(0, 0, 1000), key_index(1, 0, 1000));
        // One client walks through every key before it repeats one.
        let mut seen: Vec<usize> = (0..10).map(|n| key_index(3, n, 10)).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn zero_keys_reads_the_one_written() {
        assert_eq!(key_index(5, 9, 0), 0);
    }
}
