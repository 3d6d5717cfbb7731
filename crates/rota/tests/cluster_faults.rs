//! Linearizability of the KV API under real-process faults: three `rota server`
//! processes on loopback, concurrent clients doing puts, linearizable gets,
//! deletes and compare-and-sets on a few keys, while the leader is `kill -9`ed and
//! restarted, then frozen with SIGSTOP for longer than an election and continued
//! (it wakes believing it leads, with requests queued on its sockets). Every
//! request and answer is recorded and the history is checked with
//! `rota-lincheck`; a violation, or a checker that gives up, fails the test.
//!
//! A write that errors or times out is retried with the same `Rota-Client-Id` and
//! `Rota-Request-Seq` (so it applies at most once) and recorded as one operation
//! from its first send to its final answer; one that never gets an answer stays
//! pending in the history (it may or may not have applied), unless no attempt ever
//! reached a server. A read without an answer is dropped: it changed nothing.
//!
//! The default run makes `DEFAULT_ROUNDS` rounds of one kill and one stop each;
//! `ROTA_FAULT_ROUNDS=N` runs N rounds for a soak, and `ROTA_FAULT_SERVER_ARGS`
//! adds `rota server` flags (e.g. `--election-timeout 300ms`). One summary line goes to stderr,
//! with the longest write gap each fault caused. Every wait is on a condition
//! with a deadline; nothing asserts on timing.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use common::{agreed_leader, caught_up, eventually, launch_member, peers_arg, ports, Server};
use rota_core::rng::Rng;
use rota_lincheck::{check, Budget, CheckResult, Input, Output, Recorder};
use serde_json::{json, Value};

/// Generous bound for elections, restarts and catch-up on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(30);
const DEFAULT_ROUNDS: u32 = 2;
const CLIENTS: u64 = 4;
const KEYS: [&str; 4] = ["lin-a", "lin-b", "lin-c", "lin-d"];
/// One HTTP attempt's limit for odd-numbered clients: longer than a freeze, so
/// they see what a frozen leader answers once it wakes.
const PATIENT_ATTEMPT: Duration = Duration::from_secs(6);
/// One HTTP attempt's limit for even-numbered clients: they give up on a frozen
/// node soon and retry elsewhere, so the write gap shows how soon the cluster
/// serves again.
const HASTY_ATTEMPT: Duration = Duration::from_secs(1);
/// How long a write is retried (same session sequence) before it is left pending.
const RETRY_FOR: Duration = Duration::from_secs(20);
/// Writes that must succeed after each fault (progress).
const PROGRESS: usize = 10;

/// What the clients share with the fault injector.
struct Shared {
    urls: Vec<String>,
    /// Nodes clients may pick for new requests (not killed or frozen). Requests
    /// already sent to a node stay in flight when it fails.
    available: Vec<AtomicBool>,
    stop: AtomicBool,
    /// When each answered write returned.
    writes: Mutex<Vec<Instant>>,
}

impl Shared {
    fn set_available(&self, node: usize, up: bool) {
        self.available[node].store(up, Ordering::SeqCst);
    }

    fn write_times(&self) -> Vec<Instant> {
        let mut times = self
            .writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        times.sort();
        times
    }

    fn writes_since(&self, t: Instant) -> usize {
        self.write_times().iter().filter(|w| **w > t).count()
    }

    /// The longest write gap a fault at `t` caused: the longest time without an
    /// answered write, from the last write answered before `t` to the
    /// [`PROGRESS`]th after it (writes in flight at `t` may still be answered
    /// right after it, before the outage shows).
    fn gap_at(&self, t: Instant) -> Option<Duration> {
        let times = self.write_times();
        let start = times.iter().rposition(|w| *w <= t)?;
        let end = (start + PROGRESS).min(times.len() - 1);
        times[start..=end].windows(2).map(|w| w[1] - w[0]).max()
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    answered: u64,
    pending: u64,
    discarded: u64,
    retries: u64,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Tally) {
        self.answered += o.answered;
        self.pending += o.pending;
        self.discarded += o.discarded;
        self.retries += o.retries;
    }
}

/// How one HTTP attempt ended.
enum Attempt {
    Answer(Output),
    /// The connection was refused: the request never reached a server.
    NotSent,
    /// Anything else: the request may or may not have applied.
    Unknown(String),
}

async fn attempt(
    http: &reqwest::Client,
    base: &str,
    input: &Input,
    session: &str,
    seq: u64,
    timeout: Duration,
) -> Attempt {
    let url = format!("{base}/v1/kv/{}", input.key());
    let request = match input {
        Input::Get { .. } => http.get(&url),
        Input::Put { value, .. } => http.put(&url).json(&json!({ "value": value })),
        Input::Cas {
            expected_revision,
            value,
            ..
        } => http
            .put(format!("{url}?if_revision={expected_revision}"))
            .json(&json!({ "value": value })),
        Input::Delete { .. } => http.delete(&url),
    };
    let request = match input {
        Input::Get { .. } => request,
        _ => request
            .header("Rota-Client-Id", session)
            .header("Rota-Request-Seq", seq.to_string()),
    };
    let response = match request.timeout(timeout).send().await {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Attempt::NotSent,
        Err(e) => return Attempt::Unknown(e.to_string()),
    };
    let status = response.status().as_u16();
    let body: Value = match response.json().await {
        Ok(body) => body,
        Err(e) => return Attempt::Unknown(format!("{status}: unreadable body: {e}")),
    };
    let revision = |field: &str| body[field].as_u64();
    let code = body["error"]["code"].as_str().unwrap_or_default();
    let output = match (input, status) {
        (Input::Get { .. }, 200) => body["value"].as_str().and_then(|value| {
            Some(Output::Found {
                value: value.to_string(),
                mod_revision: revision("mod_revision")?,
            })
        }),
        (Input::Get { .. }, 404) if code == "not_found" => Some(Output::NotFound),
        (Input::Put { .. }, 200 | 201) => {
            revision("revision").map(|revision| Output::Put { revision })
        }
        (Input::Cas { .. }, 200 | 201) => {
            revision("revision").map(|revision| Output::CasOk { revision })
        }
        (Input::Cas { .. }, 409) if code == "revision_mismatch" => body["error"]["mod_revision"]
            .as_u64()
            .map(|current| Output::Mismatch { current }),
        (Input::Delete { .. }, 200) => body["deleted"].as_bool().and_then(|deleted| {
            Some(Output::Deleted {
                deleted,
                revision: revision("revision")?,
            })
        }),
        _ => None,
    };
    match output {
        Some(output) => Attempt::Answer(output),
        None => Attempt::Unknown(format!("{status}: {body}")),
    }
}

fn pick(shared: &Shared, rng: &mut Rng) -> Option<usize> {
    let up: Vec<usize> = (0..shared.urls.len())
        .filter(|i| shared.available[*i].load(Ordering::SeqCst))
        .collect();
    let n = u64::try_from(up.len()).ok()?;
    up.get(usize::try_from(rng.below(n)).ok()?).copied()
}

async fn client(shared: Arc<Shared>, recorder: Recorder, id: u64, run: u64) -> Tally {
    let http = common::client();
    let session = format!("lincheck-{run}-{id}");
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15 ^ (run << 8) ^ id);
    let mut tally = Tally::default();
    // The last revision this client saw per key, to aim CAS at a plausible one.
    let mut seen = [0u64; KEYS.len()];
    let mut seq = 0u64;
    let timeout = if id % 2 == 1 {
        PATIENT_ATTEMPT
    } else {
        HASTY_ATTEMPT
    };
    while !shared.stop.load(Ordering::SeqCst) {
        let k = usize::try_from(rng.below(KEYS.len() as u64)).unwrap_or(0);
        let key = KEYS[k].to_string();
        let value = format!("c{id}.{}", seq + 1);
        let input = match rng.below(20) {
            0..=5 => Input::Get { key },
            6..=11 => Input::Put { key, value },
            12..=16 => Input::Cas {
                key,
                expected_revision: if rng.below(5) > 0 { seen[k] } else { 0 },
                value,
            },
            _ => Input::Delete { key },
        };
        let is_write = !matches!(input, Input::Get { .. });
        if is_write {
            seq += 1;
        }
        let token = recorder.begin(id, input.clone());
        let started = Instant::now();
        let mut maybe_sent = false;
        let mut answer = None;
        loop {
            let Some(node) = pick(&shared, &mut rng) else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            match attempt(&http, &shared.urls[node], &input, &session, seq, timeout).await {
                Attempt::Answer(output) => {
                    answer = Some(output);
                    break;
                }
                Attempt::NotSent => {}
                Attempt::Unknown(why) => {
                    maybe_sent = true;
                    note_failed_attempt(id, &input, &why);
                }
            }
            // A read is not retried: it changed nothing, so it is just dropped.
            if !is_write || started.elapsed() > RETRY_FOR {
                break;
            }
            tally.retries += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        match answer {
            Some(output) => {
                match &output {
                    Output::Put { revision } | Output::CasOk { revision } => seen[k] = *revision,
                    Output::Found { mod_revision, .. } => seen[k] = *mod_revision,
                    Output::Mismatch { current } => seen[k] = *current,
                    Output::Deleted { .. } | Output::NotFound => seen[k] = 0,
                }
                recorder.end(token, output);
                if is_write {
                    shared
                        .writes
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(Instant::now());
                }
                tally.answered += 1;
            }
            None if is_write && maybe_sent => {
                drop(token);
                tally.pending += 1;
            }
            None => {
                recorder.discard(token);
                tally.discarded += 1;
            }
        }
    }
    tally
}

/// Failed attempts are expected during faults; they are worth a line only when
/// the test is run verbosely.
fn note_failed_attempt(id: u64, input: &Input, why: &str) {
    if std::env::var_os("ROTA_FAULT_VERBOSE").is_some() {
        eprintln!("client {id}: {input:?}: {why}");
    }
}

async fn wait_for_leader(servers: &[Server], what: &str) -> usize {
    eventually(DEADLINE, what, || agreed_leader(servers)).await
}

async fn progress_since(shared: &Shared, t: Instant, what: &str) {
    eventually(DEADLINE, what, || async move {
        (shared.writes_since(t) >= PROGRESS).then_some(())
    })
    .await
}

fn millis(d: Option<Duration>) -> String {
    d.map_or_else(|| "?".into(), |d| d.as_millis().to_string())
}

fn env_rounds(var: &str, default: u32) -> u32 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Three servers and the KV clients recording against them.
struct Run {
    _tmp: tempfile::TempDir,
    servers: Vec<Server>,
    shared: Arc<Shared>,
    recorder: Recorder,
    clients: Vec<tokio::task::JoinHandle<Tally>>,
    id: u64,
}

impl Run {
    /// Starts three servers (with `ROTA_FAULT_SERVER_ARGS` as extra flags, e.g. to
    /// compare Raft timings) and the clients; returns once writes succeed.
    async fn start() -> Run {
        let tmp = tempfile::tempdir().unwrap();
        let p = ports(3);
        let peers = peers_arg(&p);
        let extra = std::env::var("ROTA_FAULT_SERVER_ARGS").unwrap_or_default();
        let extra: Vec<&str> = extra.split_whitespace().collect();
        let servers: Vec<Server> = (0..3)
            .map(|i| launch_member(tmp.path(), i as u64 + 1, p[i], &peers, &extra))
            .collect();
        wait_for_leader(&servers, "a first leader").await;

        eprintln!("--- {CLIENTS} clients on {} keys", KEYS.len());
        let shared = Arc::new(Shared {
            urls: servers.iter().map(|s| s.url.clone()).collect(),
            available: (0..servers.len()).map(|_| AtomicBool::new(true)).collect(),
            stop: AtomicBool::new(false),
            writes: Mutex::new(Vec::new()),
        });
        let recorder = Recorder::new();
        let id = u64::from(std::process::id()) << 16 | u64::from(p[0]);
        let clients = (1..=CLIENTS)
            .map(|c| tokio::spawn(client(shared.clone(), recorder.clone(), c, id)))
            .collect();
        progress_since(&shared, Instant::now(), "first writes").await;
        Run {
            _tmp: tmp,
            servers,
            shared,
            recorder,
            clients,
            id,
        }
    }

    /// Stops the clients, checks the history and prints `summary` with the
    /// figures; panics on a violation or when the checker gives up.
    async fn finish(mut self, summary: &str) {
        eprintln!("--- stop the clients and check the history");
        self.shared.stop.store(true, Ordering::SeqCst);
        let mut tally = Tally::default();
        for c in self.clients.drain(..) {
            tally += c.await.expect("client task");
        }
        for s in self.servers.iter_mut().filter(|s| s.is_launched()) {
            assert!(s.is_running(), "a server exited:\n{}", s.logs());
        }
        let history = self.recorder.history();
        let result = check(
            &history,
            Budget {
                max_steps: 20_000_000,
                max_time: Some(Duration::from_secs(60)),
            },
        )
        .expect("a well-formed history");
        let verdict = match &result {
            CheckResult::Ok => "linearizable".to_string(),
            CheckResult::Violation(v) => format!("VIOLATION on {:?}", v.key),
            CheckResult::GaveUp { key, steps } => {
                format!("GAVE UP on {key:?} after {steps} steps")
            }
        };
        eprintln!(
            "{summary} ops={} answered={} pending={} discarded={} retries={} check={verdict}",
            history.ops.len(),
            tally.answered,
            tally.pending,
            tally.discarded,
            tally.retries,
        );
        match result {
            CheckResult::Ok => {}
            CheckResult::Violation(v) => {
                let saved = std::env::temp_dir().join(format!("rota-lincheck-{}.json", self.id));
                let kept = history
                    .to_json()
                    .ok()
                    .and_then(|json| std::fs::write(&saved, json).ok())
                    .map_or_else(String::new, |_| {
                        format!(" (history saved to {})", saved.display())
                    });
                panic!("not linearizable{kept}:\n{}", v.describe(&history));
            }
            CheckResult::GaveUp { key, steps } => {
                panic!("the checker gave up on key {key:?} after {steps} steps: nothing was proven")
            }
        }
    }
}

fn gaps(g: &[Option<Duration>]) -> String {
    g.iter().map(|d| millis(*d)).collect::<Vec<_>>().join(",")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_stays_linearizable_while_the_leader_is_killed_and_frozen() {
    let rounds = env_rounds("ROTA_FAULT_ROUNDS", DEFAULT_ROUNDS);
    let mut run = Run::start().await;
    let (servers, shared) = (&mut run.servers, run.shared.clone());

    let (mut kill_gaps, mut stop_gaps) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        // Leadership may have moved since the last round (the woken node may
        // have stood for election): aim at the leader of now.
        let mut leader = wait_for_leader(servers, "a leader all agree on").await;
        eprintln!(
            "--- round {round}: kill -9 the leader (node {})",
            leader + 1
        );
        shared.set_available(leader, false);
        let t = Instant::now();
        servers[leader].kill9();
        let killed = leader;
        leader = wait_for_leader(servers, "a new leader among the survivors").await;
        assert_ne!(leader, killed, "a killed node cannot lead");
        progress_since(&shared, t, "writes after the kill").await;
        kill_gaps.push(shared.gap_at(t));

        eprintln!("--- round {round}: the killed node restarts and catches up");
        servers[killed].relaunch();
        caught_up(servers, DEADLINE, killed, leader).await;
        shared.set_available(killed, true);
        leader = wait_for_leader(servers, "a leader all agree on").await;

        eprintln!(
            "--- round {round}: SIGSTOP the leader (node {}) until another is elected",
            leader + 1
        );
        shared.set_available(leader, false);
        let t = Instant::now();
        servers[leader].pause();
        let frozen = leader;
        leader = wait_for_leader(servers, "a leader while the old one is frozen").await;
        assert_ne!(leader, frozen, "a frozen node cannot lead");
        progress_since(&shared, t, "writes while the old leader is frozen").await;
        stop_gaps.push(shared.gap_at(t));

        eprintln!("--- round {round}: SIGCONT: the old leader wakes and must step down");
        let t = Instant::now();
        servers[frozen].resume();
        leader = wait_for_leader(servers, "every node to agree on one leader").await;
        caught_up(servers, DEADLINE, frozen, leader).await;
        shared.set_available(frozen, true);
        progress_since(&shared, t, "writes after the old leader woke").await;
    }
    let summary = format!(
        "cluster faults: rounds={rounds} kills={rounds} freezes={rounds} write_gap_ms kill=[{}] freeze=[{}]",
        gaps(&kill_gaps),
        gaps(&stop_gaps)
    );
    run.finish(&summary).await;
}

/// SIGTERM of the leader: it hands leadership to the most caught-up voter, a new
/// leader is elected and writes go on (`ROTA_HANDOFF_ROUNDS=N` repeats it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gracefully_stopped_leader_hands_over_and_writes_go_on() {
    let rounds = env_rounds("ROTA_HANDOFF_ROUNDS", 1);
    let mut run = Run::start().await;
    let (servers, shared) = (&mut run.servers, run.shared.clone());

    let mut handoff_gaps = Vec::new();
    for round in 1..=rounds {
        let mut leader = wait_for_leader(servers, "a leader all agree on").await;
        eprintln!(
            "--- round {round}: SIGTERM the leader (node {})",
            leader + 1
        );
        shared.set_available(leader, false);
        let t = Instant::now();
        let status = tokio::task::block_in_place(|| servers[leader].stop());
        assert!(status.success(), "{status}:\n{}", servers[leader].logs());
        let stopped = leader;
        assert!(
            servers[stopped].logs().contains("handing leadership over"),
            "the leader did not pick a successor:\n{}",
            servers[stopped].logs()
        );
        leader = wait_for_leader(servers, "a new leader among the others").await;
        assert_ne!(leader, stopped, "a stopped node cannot lead");
        progress_since(&shared, t, "writes after the handoff").await;
        handoff_gaps.push(shared.gap_at(t));

        eprintln!("--- round {round}: the stopped node starts again and catches up");
        servers[stopped].relaunch();
        caught_up(servers, DEADLINE, stopped, leader).await;
        shared.set_available(stopped, true);
    }
    let summary = format!(
        "leader handoff: rounds={rounds} write_gap_ms sigterm=[{}]",
        gaps(&handoff_gaps)
    );
    run.finish(&summary).await;
}
