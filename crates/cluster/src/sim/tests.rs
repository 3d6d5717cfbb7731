//! Raft scenarios on the simulated cluster, after the MIT 6.5840 Raft lab (3A
//! elections, 3B agreement, 3C persistence and Figure 8, 3D snapshots). Each test
//! prints its seed; `ROTA_SIM_SEED` replays the fault plan and `ROTA_SOAK=N`
//! multiplies the iterations of the randomized ones.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::ServerState;
use rota_core::{Command, EventKind, JobSpec};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::{kv_put, soak, Router, WriteFailure};

/// Generous bound for anything that needs an election or two on a busy machine.
const WAIT: Duration = Duration::from_secs(20);
/// Long enough for several election timeouts (300-600 ms) to pass.
const SEVERAL_ELECTION_TIMEOUTS: Duration = Duration::from_millis(1500);

fn job(name: &str) -> JobSpec {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "schedule": {"every": "1m"},
        "executor": {"type": "shell", "command": "true"},
    }))
    .expect("a valid job spec")
}

/// Asserts that node `id` holds `key` = `value`, written at log index `revision`.
fn assert_key(sim: &Router, id: u64, key: &str, value: &str, revision: u64) {
    let entry = sim
        .with_store(id, |s| s.kv_get(key).expect("the store reads"))
        .flatten()
        .unwrap_or_else(|| panic!("n{id} lacks {key:?} (seed {})", sim.seed()));
    assert_eq!(
        (entry.value.as_str(), entry.mod_revision),
        (value, revision),
        "n{id}: {key:?} (seed {})",
        sim.seed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_election() {
    let sim = Router::start("initial_election", 3, 1000).await;
    let all = sim.members();

    info!("--- exactly one leader is elected and every node follows it in its term");
    let leader = sim.wait_for_leader(&all, WAIT).await;
    let term = sim.view()[&leader].current_term;
    assert!(term >= 1);

    info!("--- with no failure, leadership stays put");
    tokio::time::sleep(SEVERAL_ELECTION_TIMEOUTS).await;
    let again = sim.wait_for_leader(&all, WAIT).await;
    let term_now = sim.view()[&again].current_term;
    if (again, term_now) != (leader, term) {
        // As in the lab: a warning, since a slow machine may delay heartbeats.
        warn!(
            leader,
            term, again, term_now, "leadership changed without failures"
        );
    }

    info!("--- the leader commits, and all nodes apply");
    let (index, _) = sim.write_committed(kv_put("k", "v"), WAIT).await;
    sim.wait_applied(&all, index, WAIT).await;
    for id in &all {
        assert_key(&sim, *id, "k", "v", index);
    }
    sim.report_leaders_per_term();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reelection() {
    let sim = Router::start("reelection", 3, 1000).await;
    let all = sim.members();
    let leader1 = sim.wait_for_leader(&all, WAIT).await;

    info!("--- disconnect the leader: the others elect a new one");
    sim.isolate(leader1);
    let rest: Vec<u64> = all.iter().copied().filter(|id| *id != leader1).collect();
    let leader2 = sim.wait_for_leader(&rest, WAIT).await;
    assert_ne!(leader2, leader1);

    info!("--- the old leader rejoins: one leader for all");
    sim.reconnect(leader1);
    let leader3 = sim.wait_for_leader(&all, WAIT).await;

    info!("--- two of three disconnected: no leader without a majority");
    let other = *rest
        .iter()
        .chain(std::iter::once(&leader1))
        .find(|id| **id != leader3)
        .expect("another node");
    let lone = *all
        .iter()
        .find(|id| **id != leader3 && **id != other)
        .expect("a third node");
    let before = sim.leaders_by_term();
    sim.isolate(leader3);
    sim.isolate(other);
    tokio::time::sleep(SEVERAL_ELECTION_TIMEOUTS).await;
    let lone_led: Vec<u64> = sim
        .leaders_by_term()
        .into_iter()
        .filter(|(term, ids)| ids.contains(&lone) && !before.contains_key(term))
        .map(|(term, _)| term)
        .collect();
    assert!(
        lone_led.is_empty(),
        "n{lone} led alone in terms {lone_led:?} (seed {})",
        sim.seed()
    );
    assert_ne!(sim.view()[&lone].state, ServerState::Leader);

    info!("--- a majority again: a leader");
    sim.reconnect(other);
    sim.wait_for_leader(&[lone, other], WAIT).await;

    info!("--- everyone back: one leader");
    sim.reconnect(leader3);
    let leader = sim.wait_for_leader(&all, WAIT).await;
    let (index, _) = sim.write_committed(kv_put("after", "x"), WAIT).await;
    sim.wait_applied(&all, index, WAIT).await;
    assert_key(&sim, leader, "after", "x", index);
    sim.report_leaders_per_term();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_elections() {
    let sim = Router::start("many_elections", 7, 1000).await;
    let all = sim.members();
    sim.wait_for_leader(&all, WAIT).await;

    for round in 0..4 * soak() {
        info!(
            round,
            "--- disconnect three random nodes: the other four elect or keep a leader"
        );
        let mut order = all.clone();
        sim.rng(|rng| rng.shuffle(&mut order));
        let (cut, majority) = order.split_at(3);
        for id in cut {
            sim.isolate(*id);
        }
        let leader = sim.wait_for_leader(majority, WAIT).await;
        assert!(majority.contains(&leader));
        for id in cut {
            sim.reconnect(*id);
        }
    }

    info!("--- all connected: one leader, and never two in one term");
    sim.wait_for_leader(&all, WAIT).await;
    sim.report_leaders_per_term();
    let terms = sim.leaders_by_term();
    info!(elected_terms = terms.len(), "elections seen");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agreement() {
    let sim = Router::start("agreement", 3, 1000).await;
    let all = sim.members();
    sim.wait_for_leader(&all, WAIT).await;

    info!("--- writes through the leader apply identically everywhere, in order");
    let mut last = 0;
    for n in 0..5 {
        let (key, value) = (format!("k{n}"), format!("v{n}"));
        let (index, response) = sim.write_committed(kv_put(&key, &value), WAIT).await;
        assert_eq!(
            response,
            rota_core::Response::KvPut {
                key: key.clone(),
                revision: index
            }
        );
        assert!(index > last, "index {index} after {last}");
        last = index;
        sim.wait_applied(&all, index, WAIT).await;
        for id in &all {
            assert_key(&sim, *id, &key, &value, index);
        }
    }

    info!("--- a job too");
    let (index, _) = sim
        .write_committed(
            Command::PutJob {
                spec: job("nightly"),
            },
            WAIT,
        )
        .await;
    sim.wait_applied(&all, index, WAIT).await;
    let state = sim.assert_same_state();
    assert_eq!(state.jobs.len(), 1);
    assert_eq!(state.jobs[0].revision, index);
    assert_eq!(state.kv.len(), 5);
    sim.report_leaders_per_term();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agreement_despite_follower_failure() {
    let sim = Router::start("follower_failure", 3, 1000).await;
    let all = sim.members();
    let leader = sim.wait_for_leader(&all, WAIT).await;
    let (first, _) = sim.write_committed(kv_put("a", "1"), WAIT).await;
    sim.wait_applied(&all, first, WAIT).await;

    info!("--- disconnect a follower: the other two still commit");
    let follower = *all.iter().find(|id| **id != leader).expect("a follower");
    sim.isolate(follower);
    let majority: Vec<u64> = all.iter().copied().filter(|id| *id != follower).collect();
    let mut written = Vec::new();
    for n in 0..3 {
        let (key, value) = (format!("b{n}"), format!("{n}"));
        let (index, _) = sim.write_committed(kv_put(&key, &value), WAIT).await;
        written.push((key, value, index));
    }
    let last = written.last().map_or(first, |w| w.2);
    sim.wait_applied(&majority, last, WAIT).await;
    for (key, value, index) in &written {
        for id in &majority {
            assert_key(&sim, *id, key, value, *index);
        }
        let seen = sim
            .with_store(follower, |s| s.kv_get(key).expect("the store reads"))
            .flatten();
        assert!(seen.is_none(), "the cut-off n{follower} applied {key:?}");
    }

    info!("--- reconnect it: it catches up");
    sim.reconnect(follower);
    let (index, _) = sim.write_committed(kv_put("c", "after"), WAIT).await;
    sim.wait_applied(&all, index, WAIT).await;
    for (key, value, at) in &written {
        assert_key(&sim, follower, key, value, *at);
    }
    sim.assert_same_state();

    info!("--- crash a follower, write, restart it on its files: it catches up");
    let leader = sim.wait_for_leader(&all, WAIT).await;
    let victim = *all.iter().find(|id| **id != leader).expect("a follower");
    sim.crash(victim).await;
    let (index, _) = sim.write_committed(kv_put("d", "while down"), WAIT).await;
    sim.restart(victim).await;
    sim.wait_applied(&all, index, WAIT).await;
    assert_key(&sim, victim, "d", "while down", index);
    sim.assert_same_state();
    sim.report_leaders_per_term();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_agreement_without_majority() {
    let sim = Router::start("no_majority", 5, 1000).await;
    let all = sim.members();
    let leader = sim.wait_for_leader(&all, WAIT).await;
    let (first, _) = sim.write_committed(kv_put("a", "1"), WAIT).await;
    sim.wait_applied(&all, first, WAIT).await;

    info!("--- three of five followers disconnected: the leader's write does not commit");
    let followers: Vec<u64> = all.iter().copied().filter(|id| *id != leader).collect();
    let cut = &followers[..3];
    for id in cut {
        sim.isolate(*id);
    }
    let outcome = sim
        .write(leader, kv_put("minority", "x"), SEVERAL_ELECTION_TIMEOUTS)
        .await;
    assert!(
        matches!(
            outcome,
            Err(WriteFailure::Timeout | WriteFailure::NotLeader)
        ),
        "a write without a majority answered {outcome:?} (seed {})",
        sim.seed()
    );
    let m = sim.view()[&leader].clone();
    let applied = m.last_applied.map_or(0, |l| l.index);
    assert!(
        m.last_log_index.unwrap_or(0) > applied,
        "the leader appended the write but must not apply it: {m:?}"
    );
    for id in sim.side_of(leader) {
        let seen = sim
            .with_store(id, |s| s.kv_get("minority").expect("the store reads"))
            .flatten();
        assert!(seen.is_none(), "n{id} applied an uncommitted write");
    }

    info!("--- reconnect: a leader commits again, and the logs agree");
    for id in cut {
        sim.reconnect(*id);
    }
    sim.wait_for_leader(&all, WAIT).await;
    let (index, _) = sim.write_committed(kv_put("b", "2"), WAIT).await;
    assert!(index > first);
    sim.converge(WAIT).await;
    let state = sim.assert_same_state();
    let kept = state.kv.iter().any(|e| e.key == "minority");
    info!(
        kept,
        "the minority's write was kept or dropped, the same on every node"
    );
    sim.report_leaders_per_term();
    sim.shutdown().await;
}

/// How a Figure 8 iteration took a node out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Out {
    Crashed,
    Isolated,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figure8_unreliable() {
    let sim = Router::start("figure8_unreliable", 5, 20).await;
    let all = sim.members();
    sim.wait_for_leader(&all, WAIT).await;
    sim.write_committed(kv_put("f8/start", "x"), WAIT).await;

    info!("--- unreliable network; leaders crash or get cut off while writes are in flight");
    sim.unreliable(0.1, Duration::from_millis(20));
    let acked: Arc<Mutex<Vec<(String, String, u64)>>> = Arc::default();
    let mut writes = JoinSet::new();
    let mut out: BTreeMap<u64, Out> = BTreeMap::new();
    for iter in 0..20 * soak() {
        // Give the nodes that are up a chance to elect a leader (they are a
        // majority), so that most iterations have one to crash or cut off.
        let up: Vec<u64> = all
            .iter()
            .copied()
            .filter(|id| !out.contains_key(id))
            .collect();
        let _ = sim
            .try_wait_for(SEVERAL_ELECTION_TIMEOUTS, &mut |view| {
                up.iter()
                    .find(|id| view.get(id).is_some_and(|m| m.state == ServerState::Leader))
                    .copied()
            })
            .await;
        // Offer a write to every node that thinks it leads, as the lab does.
        let view = sim.view();
        let mut leader = None;
        for (id, m) in &view {
            if m.state != ServerState::Leader {
                continue;
            }
            if !out.contains_key(id) {
                leader = Some(*id);
            }
            for n in 0..3 {
                let (sim, acked, id) = (sim.clone(), acked.clone(), *id);
                let (key, value) = (format!("f8/{iter}/{id}/{n}"), format!("{iter}"));
                writes.spawn(async move {
                    let written = sim
                        .write(id, kv_put(&key, &value), Duration::from_secs(5))
                        .await;
                    if let Ok((index, _)) = written {
                        acked
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((key, value, index));
                    }
                });
            }
        }
        let pause = sim.rng(|rng| {
            if rng.chance(0.3) {
                rng.up_to(Duration::from_millis(300))
            } else {
                rng.up_to(Duration::from_millis(13))
            }
        });
        tokio::time::sleep(pause).await;

        if let Some(leader) = leader {
            if sim.rng(|rng| rng.chance(0.5)) {
                if sim.rng(|rng| rng.chance(0.5)) {
                    sim.crash(leader).await;
                    out.insert(leader, Out::Crashed);
                } else {
                    sim.isolate(leader);
                    out.insert(leader, Out::Isolated);
                }
            }
        }
        if all.len() - out.len() < 3 {
            let candidates: Vec<u64> = out.keys().copied().collect();
            if let Some(back) = sim.rng(|rng| rng.pick(&candidates)) {
                match out.remove(&back) {
                    Some(Out::Crashed) => sim.restart(back).await,
                    Some(Out::Isolated) => sim.reconnect(back),
                    None => {}
                }
            }
        }
    }

    info!("--- everything back and reliable: every acknowledged write is everywhere");
    sim.converge(WAIT).await;
    while writes.join_next().await.is_some() {}
    let acked = acked.lock().unwrap_or_else(|e| e.into_inner()).clone();
    info!(
        acknowledged = acked.len(),
        "writes acknowledged during the faults"
    );
    let state = sim.assert_same_state();
    let kv: BTreeMap<&str, (&str, u64)> = state
        .kv
        .iter()
        .map(|e| (e.key.as_str(), (e.value.as_str(), e.mod_revision)))
        .collect();
    for (key, value, index) in &acked {
        assert_eq!(
            kv.get(key.as_str()),
            Some(&(value.as_str(), *index)),
            "acknowledged write {key:?} at {index} (seed {})",
            sim.seed()
        );
    }
    // Each index holds one entry: two acknowledged writes cannot share one.
    let indexes: BTreeSet<u64> = acked.iter().map(|a| a.2).collect();
    assert_eq!(indexes.len(), acked.len());
    sim.report_leaders_per_term();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_install() {
    const EVERY: u64 = 10;
    let sim = Router::start("snapshot_install", 3, EVERY).await;
    let all = sim.members();
    let leader = sim.wait_for_leader(&all, WAIT).await;
    let (index, _) = sim.write_committed(kv_put("early", "1"), WAIT).await;
    sim.wait_applied(&all, index, WAIT).await;

    info!("--- a follower is cut off while the others write past several snapshots");
    let lagging = *all.iter().find(|id| **id != leader).expect("a follower");
    sim.isolate(lagging);
    let lagging_last = sim.view()[&lagging].last_log_index.unwrap_or(0);
    let mut written = Vec::new();
    for n in 0..5 * EVERY {
        let (key, value) = (format!("s{n:03}"), format!("{n}"));
        let (index, _) = sim.write_committed(kv_put(&key, &value), WAIT).await;
        written.push((key, value, index));
    }
    // With a margin: an append in flight when the follower was cut off may still
    // have reached it.
    info!("--- the leader purged the entries the follower lacks");
    sim.wait_for(
        "a leader that purged past the lagging node's log",
        WAIT,
        |view| {
            view.iter()
                .find(|(id, m)| {
                    **id != lagging
                        && m.state == ServerState::Leader
                        && m.purged.is_some_and(|p| p.index > lagging_last + EVERY)
                })
                .map(|_| ())
        },
    )
    .await;

    info!("--- reconnect it: it receives a snapshot and catches up");
    let mut events = sim
        .with_store(lagging, |s| s.subscribe())
        .expect("the lagging node runs");
    sim.reconnect(lagging);
    let installed = tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Ok(event) if matches!(event.kind, EventKind::Reset) => return Some(event.revision),
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return None,
            }
        }
    })
    .await;
    let Ok(Some(installed_at)) = installed else {
        panic!(
            "n{lagging} installed no snapshot (seed {})\n{}",
            sim.seed(),
            sim.describe()
        );
    };
    assert!(installed_at > lagging_last);
    let last = written.last().map_or(index, |w| w.2);
    sim.wait_applied(&[lagging], last, WAIT).await;
    for (key, value, index) in &written {
        assert_key(&sim, lagging, key, value, *index);
    }
    assert_key(&sim, lagging, "early", "1", index);

    info!("--- it takes part again, and survives a restart from its installed snapshot");
    let (after, _) = sim.write_committed(kv_put("after", "x"), WAIT).await;
    sim.wait_applied(&all, after, WAIT).await;
    sim.assert_same_state();
    sim.crash(lagging).await;
    sim.restart(lagging).await;
    sim.wait_applied(&[lagging], after, WAIT).await;
    assert_key(&sim, lagging, "after", "x", after);
    sim.assert_same_state();
    sim.report_leaders_per_term();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_of_all_nodes() {
    let sim = Router::start("restart_all", 3, 8).await;
    let all = sim.members();
    sim.wait_for_leader(&all, WAIT).await;

    info!("--- write keys and a job (past a snapshot or two)");
    let mut written = Vec::new();
    for n in 0..20 {
        let (key, value) = (format!("r{n:02}"), format!("{n}"));
        let (index, _) = sim.write_committed(kv_put(&key, &value), WAIT).await;
        written.push((key, value, index));
    }
    let (job_index, _) = sim
        .write_committed(
            Command::PutJob {
                spec: job("survivor"),
            },
            WAIT,
        )
        .await;

    for round in 0..soak() {
        info!(
            round,
            "--- crash every node, then restart them all on their files"
        );
        let mut order = all.clone();
        sim.rng(|rng| rng.shuffle(&mut order));
        for id in &order {
            sim.crash(*id).await;
        }
        sim.rng(|rng| rng.shuffle(&mut order));
        for id in &order {
            sim.restart(*id).await;
        }
        sim.wait_for_leader(&all, WAIT).await;
        sim.wait_applied(&all, job_index, WAIT).await;
        for id in &all {
            for (key, value, index) in &written {
                assert_key(&sim, *id, key, value, *index);
            }
            let job = sim
                .with_store(*id, |s| s.get_job("survivor").expect("the store reads"))
                .flatten();
            assert_eq!(job.map(|j| j.revision), Some(job_index), "n{id}");
        }
    }

    info!("--- the restarted cluster takes writes");
    let (index, _) = sim.write_committed(kv_put("new", "y"), WAIT).await;
    assert!(index > job_index);
    sim.wait_applied(&all, index, WAIT).await;
    sim.assert_same_state();
    sim.report_leaders_per_term();
    sim.shutdown().await;
}
