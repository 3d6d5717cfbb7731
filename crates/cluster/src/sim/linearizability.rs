//! Concurrent KV clients against the simulated cluster while a nemesis partitions,
//! isolates, crashes and restarts nodes over a lossy network; their history is
//! checked for linearizability (as in the MIT 6.5840 KV lab, with a checker in
//! place of the lab's porcupine).
//!
//! Writes go to the newest node that believes it leads and are recorded with the
//! state machine's answer. Reads go to any such node, deposed ones included, and
//! are ReadIndex reads (`ensure_linearizable` on that node, then its store,
//! provided the store applied at least the read index). A write
//! without a clear answer (timeout, crash, a "not leader" that may come after the
//! entry was appended) stays pending: it may or may not have happened. A read
//! without an answer, or a write refused before it was proposed, is discarded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use rota_core::rng::Rng;
use rota_core::{Command, Response};
use rota_lincheck::{check, Budget, CheckResult, Input, Output, Recorder};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::info;

use super::{soak, Router, WriteFailure};

const NODES: u64 = 5;
const CLIENTS: u64 = 6;
const KEYS: [&str; 4] = ["lin/a", "lin/b", "lin/c", "lin/d"];
/// How long a client waits for one answer before leaving the operation pending.
const OP_TIMEOUT: Duration = Duration::from_millis(500);
const WAIT: Duration = Duration::from_secs(20);

/// What one client did, for the run's summary.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    answered: u64,
    pending: u64,
    discarded: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.answered += other.answered;
        self.pending += other.pending;
        self.discarded += other.discarded;
    }
}

/// A node that believes it leads (waits a little for one): the one of the newest
/// term when `newest`, as a client following "not leader" hints would end up
/// with, otherwise any of them, deposed leaders included.
async fn some_leader(sim: &Router, rng: &mut Rng, newest: bool) -> Option<u64> {
    let leaders = sim
        .try_wait_for(OP_TIMEOUT, &mut |view| {
            let mut leaders: Vec<(u64, u64)> = view
                .iter()
                .filter(|(_, m)| m.state == ServerState::Leader)
                .map(|(id, m)| (m.current_term, *id))
                .collect();
            leaders.sort_unstable();
            (!leaders.is_empty()).then_some(leaders)
        })
        .await?;
    if newest {
        leaders.last().map(|(_, id)| *id)
    } else {
        rng.pick(&leaders).map(|(_, id)| id)
    }
}

/// A linearizable read of `key` on `node`: `None` when it could not be served.
async fn read(sim: &Router, node: u64, key: &str) -> Option<Output> {
    let raft = sim.raft(node)?;
    let read_index = tokio::time::timeout(OP_TIMEOUT, raft.ensure_linearizable())
        .await
        .ok()?
        .ok()?
        .map_or(0, |l| l.index);
    // A node restarted since the barrier may not have applied that far yet.
    sim.with_store(node, |store| {
        if store.last_applied_index() < read_index {
            return None;
        }
        let entry = store.kv_get(key).expect("the store reads");
        Some(match entry {
            Some(e) => Output::Found {
                value: e.value,
                mod_revision: e.mod_revision,
            },
            None => Output::NotFound,
        })
    })
    .flatten()
}

fn output_of(input: &Input, response: Response) -> Output {
    match (input, response) {
        (Input::Put { .. }, Response::KvPut { revision, .. }) => Output::Put { revision },
        (Input::Cas { .. }, Response::KvPut { revision, .. }) => Output::CasOk { revision },
        (Input::Cas { .. }, Response::RevisionMismatch { current, .. }) => {
            Output::Mismatch { current }
        }
        (
            Input::Delete { .. },
            Response::KvDeleted {
                revision, deleted, ..
            },
        ) => Output::Deleted { deleted, revision },
        (input, response) => panic!("{input:?} answered {response:?}"),
    }
}

fn command_of(input: &Input) -> Command {
    match input.clone() {
        Input::Put { key, value } => Command::KvPut {
            key,
            value,
            if_revision: None,
        },
        Input::Cas {
            key,
            expected_revision,
            value,
        } => Command::KvPut {
            key,
            value,
            if_revision: Some(expected_revision),
        },
        Input::Delete { key } => Command::KvDelete {
            key,
            if_revision: None,
        },
        Input::Get { .. } => unreachable!("a get is not a command"),
    }
}

async fn client(
    sim: Router,
    recorder: Recorder,
    id: u64,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> Tally {
    let mut rng = Rng::new(seed);
    let mut tally = Tally::default();
    // The last revision this client saw per key, to aim CAS at a plausible one.
    let mut seen = [0u64; KEYS.len()];
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let k = usize::try_from(rng.below(KEYS.len() as u64)).unwrap_or(0);
        let key = KEYS[k].to_string();
        let input = match rng.below(10) {
            0..=2 => Input::Get { key },
            3..=5 => Input::Put {
                key,
                value: format!("c{id}.{n}"),
            },
            6..=8 => Input::Cas {
                key,
                expected_revision: if rng.chance(0.8) { seen[k] } else { 0 },
                value: format!("c{id}.{n}"),
            },
            _ => Input::Delete { key },
        };
        // Reads go to any node that believes it leads, so a deposed leader's
        // ReadIndex is put to the test; writes go to the newest leader, since each
        // write left pending on a deposed one makes the check costlier.
        let newest = !matches!(input, Input::Get { .. });
        let Some(node) = some_leader(&sim, &mut rng, newest).await else {
            continue;
        };
        let token = recorder.begin(id, input.clone());
        if let Input::Get { key } = &input {
            match read(&sim, node, key).await {
                Some(output) => {
                    seen[k] = match &output {
                        Output::Found { mod_revision, .. } => *mod_revision,
                        _ => 0,
                    };
                    recorder.end(token, output);
                    tally.answered += 1;
                }
                None => {
                    // A read changes nothing: without an answer it is simply dropped.
                    recorder.discard(token);
                    tally.discarded += 1;
                }
            }
            continue;
        }
        match sim.write(node, command_of(&input), OP_TIMEOUT).await {
            Ok((_, response)) => {
                let output = output_of(&input, response);
                match &output {
                    Output::Put { revision } | Output::CasOk { revision } => seen[k] = *revision,
                    Output::Mismatch { current } => seen[k] = *current,
                    Output::Deleted { .. } => seen[k] = 0,
                    _ => {}
                }
                recorder.end(token, output);
                tally.answered += 1;
            }
            Err(WriteFailure::Down) => {
                // The node was gone before anything was proposed.
                recorder.discard(token);
                tally.discarded += 1;
            }
            Err(WriteFailure::NotLeader | WriteFailure::Timeout | WriteFailure::Stopped) => {
                drop(token);
                tally.pending += 1;
            }
        }
    }
    tally
}

/// Partitions, isolations, crashes and restarts until `until`, keeping at most
/// two nodes crashed so that a majority can exist whenever the network allows.
async fn nemesis(sim: Router, until: Instant) {
    let all = sim.members();
    let mut crashed: Vec<u64> = Vec::new();
    while Instant::now() < until {
        match sim.rng(|rng| rng.below(20)) {
            0..=5 => {
                let mut order = all.clone();
                sim.rng(|rng| rng.shuffle(&mut order));
                let (majority, minority) = order.split_at(3);
                sim.partition(&[majority, minority]);
            }
            6..=10 => {
                let leader = sim
                    .view()
                    .iter()
                    .find(|(_, m)| m.state == ServerState::Leader)
                    .map(|(id, _)| *id);
                if let Some(leader) = leader {
                    sim.isolate(leader);
                }
            }
            11..=13 if crashed.len() < 2 => {
                let running = sim.running();
                if let Some(victim) = sim.rng(|rng| rng.pick(&running)) {
                    sim.crash(victim).await;
                    crashed.push(victim);
                }
            }
            14..=15 if !crashed.is_empty() => {
                let back = crashed.remove(0);
                sim.restart(back).await;
            }
            _ => sim.heal(),
        }
        let pause =
            sim.rng(|rng| Duration::from_millis(1000) + rng.up_to(Duration::from_millis(1500)));
        tokio::time::sleep(pause).await;
    }
    info!("--- nemesis done: heal and restart everything");
    sim.heal();
    for id in crashed {
        sim.restart(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_is_linearizable_under_partitions_crashes_and_drops() {
    let sim = Router::start("linearizability", NODES, 50).await;
    sim.wait_for_leader(&sim.members(), WAIT).await;
    let recorder = Recorder::new();
    let stop = Arc::new(AtomicBool::new(false));

    info!("--- clients run while the nemesis works on a lossy network");
    sim.unreliable(0.05, Duration::from_millis(10));
    let faults_for = Duration::from_secs(6 * soak());
    let mut clients = JoinSet::new();
    for id in 1..=CLIENTS {
        let seed = sim.rng(|rng| rng.next_u64());
        clients.spawn(client(
            sim.clone(),
            recorder.clone(),
            id,
            seed,
            stop.clone(),
        ));
    }
    nemesis(sim.clone(), Instant::now() + faults_for).await;

    info!("--- a healed, reliable cluster serves the clients a little longer");
    sim.reliable();
    sim.wait_for_leader(&sim.members(), WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut tally = Tally::default();
    while let Some(done) = clients.join_next().await {
        tally.add(done.expect("a client does not panic"));
    }
    info!(?tally, "clients done");

    info!("--- the history is linearizable");
    let history = recorder.history();
    let reads = history
        .ops
        .iter()
        .filter(|op| matches!(op.input, Input::Get { .. }) && !op.is_pending())
        .count();
    let writes = history
        .ops
        .iter()
        .filter(|op| !matches!(op.input, Input::Get { .. }) && !op.is_pending())
        .count();
    assert!(
        reads > 0 && writes > 0,
        "nothing to check: {reads} reads and {writes} writes answered (seed {})",
        sim.seed()
    );
    let started = std::time::Instant::now();
    let result = check(&history, Budget::default()).expect("the recorded history is well formed");
    info!(
        ops = history.ops.len(),
        reads,
        writes,
        checked_in = ?started.elapsed(),
        "history checked"
    );
    if result != CheckResult::Ok {
        let saved = std::env::temp_dir().join(format!("rota-sim-history-{}.json", sim.seed()));
        if let Ok(json) = history.to_json() {
            let _ = std::fs::write(&saved, json);
        }
        let account = match &result {
            CheckResult::Violation(v) => v.describe(&history),
            other => format!("{other:?}"),
        };
        panic!(
            "not proven linearizable (seed {}; history saved to {}):\n{account}",
            sim.seed(),
            saved.display()
        );
    }

    info!("--- and the replicas agree");
    sim.converge(WAIT).await;
    sim.assert_same_state();
    sim.report_leaders_per_term();
    sim.shutdown().await;
}
