//! The runtime against a real single-member node in a temp dir: jobs fire, run on
//! executors and end up recorded in the store; a shutdown stops local runs, and the
//! next start records them as lost.
//!
//! Waits are on store events; the timeouts around them only turn a regression into a
//! failure instead of a hang.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rota_background::{Runner, WorkerState};
use rota_cluster::{Node, NodeConfig};
use rota_core::{ClientRequest, Command, EventKind, ExecStatus, Execution, JobSpec, Response};
use rota_engine::LOST_ERROR;
use rota_scheduler::{SchedulerConfig, SchedulerHandle};
use serde_json::json;
use tokio::sync::broadcast;

const GIVE_UP: Duration = Duration::from_secs(60);

async fn start_node(dir: &Path) -> Arc<Node> {
    Node::start(
        NodeConfig {
            node_id: 1,
            node_name: "n1".into(),
            data_dir: dir.to_path_buf(),
            advertise_url: "http://127.0.0.1:1".into(),
            snapshot_every: 10_000,
            watch_retention: rota_store::EventRetention::default(),
        },
        &Default::default(),
    )
    .await
    .expect("node starts")
}

fn start_scheduler(node: &Arc<Node>) -> (Arc<SchedulerHandle>, Runner) {
    start_scheduler_with(node, 4)
}

fn start_scheduler_with(node: &Arc<Node>, max_running: usize) -> (Arc<SchedulerHandle>, Runner) {
    let workers = Runner::new();
    let handle = SchedulerHandle::spawn(
        node.clone(),
        SchedulerConfig {
            node_name: "n1".into(),
            max_running,
            tags: Default::default(),
            sinks: None,
            telemetry: None,
            fire_ahead: rota_scheduler::DEFAULT_FIRE_AHEAD,
        },
        &workers,
    );
    (handle, workers)
}

async fn put_job(node: &Node, doc: serde_json::Value) {
    let spec: JobSpec = serde_json::from_value(doc).expect("job spec");
    spec.validate().expect("valid job");
    let (_, response) = node
        .write(ClientRequest {
            session: None,
            at: Utc::now(),
            command: Command::PutJob { spec },
        })
        .await
        .expect("job written");
    assert!(matches!(response, Response::JobPut { .. }), "{response:?}");
}

/// `jobs` one-shot `record` jobs all due at the same instant two seconds from now,
/// created in one log entry.
async fn put_burst(node: &Node, jobs: usize, record: &Path) {
    let due = (Utc::now() + chrono::TimeDelta::seconds(2)).to_rfc3339();
    let commands = (0..jobs)
        .map(|i| {
            let spec: JobSpec = serde_json::from_value(json!({
                "name": format!("burst-{i}"),
                "schedule": {"at": due},
                "executor": {"type": "record", "path": record.to_string_lossy()},
            }))
            .expect("job spec");
            Command::PutJob { spec }
        })
        .collect();
    node.write(ClientRequest {
        session: None,
        at: Utc::now(),
        command: Command::Batch { commands },
    })
    .await
    .expect("jobs written");
}

/// Execution events until `done` says enough.
async fn until(
    events: &mut broadcast::Receiver<Arc<rota_core::StoreEvent>>,
    mut done: impl FnMut(&Execution) -> bool,
) {
    tokio::time::timeout(GIVE_UP, async {
        loop {
            match events.recv().await {
                Ok(event) => {
                    if let EventKind::Execution(e) = &event.kind {
                        if done(e) {
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("event stream closed"),
            }
        }
    })
    .await
    .expect("the expected executions came");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_every_second_job_runs_and_is_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_node(&dir.path().join("data")).await;
    let (scheduler, workers) = start_scheduler(&node);
    let mut events = node.store().subscribe();
    let record = dir.path().join("record.txt");
    put_job(
        &node,
        json!({
            "name": "tick",
            "schedule": {"every": "1s"},
            "executor": {"type": "record", "path": record.to_string_lossy()},
        }),
    )
    .await;

    let mut succeeded = Vec::new();
    until(&mut events, |e| {
        if e.job == "tick" && e.status == ExecStatus::Succeeded {
            succeeded.push(e.clone());
        }
        succeeded.len() >= 3
    })
    .await;

    for e in &succeeded {
        assert_eq!(e.node.as_deref(), Some("n1"));
        assert_eq!(e.attempt, 1);
        let stored = node
            .store()
            .get_execution(e.id)
            .expect("read")
            .expect("stored");
        assert_eq!(stored.status, ExecStatus::Succeeded);
        let output = node
            .store()
            .get_output(e.id)
            .expect("read")
            .unwrap_or_default();
        assert!(
            output.starts_with(&format!("tick {} 1 ", e.id)),
            "{output:?}"
        );
        // The run was committed ahead of its instant (`execution.queued`, placed on
        // this node), handed to its executor at the instant, not before, and its
        // start committed after that: `started_at` is the hand-over, no later than
        // the moment the record executor noted.
        let id = e.id.to_string();
        let first_event = |kind: &str| {
            let page = node
                .store()
                .events_after(
                    0,
                    &|ev: &rota_core::event::Event| ev.event_type == kind && ev.key == id,
                    10_000,
                )
                .expect("event log");
            page.events.first().map(|ev| ev.at)
        };
        let queued_event = first_event("execution.queued").expect("execution.queued");
        let started_event = first_event("execution.started").expect("execution.started");
        let started_at = stored.started_at.expect("started_at");
        assert!(
            queued_event < e.scheduled_at,
            "committed at {queued_event}, due at {}",
            e.scheduled_at
        );
        assert!(
            started_at >= e.scheduled_at,
            "handed over at {started_at}, due at {}",
            e.scheduled_at
        );
        assert!(
            started_event >= started_at,
            "{started_at} vs {started_event}"
        );
        let handed_ns: i64 = output
            .split_whitespace()
            .nth(4)
            .and_then(|n| n.parse().ok())
            .expect("the record's hand-over time");
        assert!(
            started_at.timestamp_nanos_opt().unwrap() <= handed_ns,
            "{output}"
        );
    }
    let lines = std::fs::read_to_string(&record).expect("record file");
    assert!(lines.lines().count() >= 3, "{lines}");
    // Each scheduled instant ran once.
    let mut instants: Vec<_> = succeeded.iter().map(|e| e.scheduled_at).collect();
    instants.dedup();
    assert_eq!(instants.len(), succeeded.len());

    let stats = scheduler.stats();
    assert!(stats.leading);
    assert_eq!(stats.jobs, 1);
    assert!(stats.fired_total >= 3, "{stats:?}");
    assert!(stats.dispatch_lag.count >= 3, "{stats:?}");
    let status = workers
        .statuses()
        .into_iter()
        .find(|s| s.name == "scheduler");
    let status = status.expect("the runtime runs as the worker `scheduler`");
    assert_eq!(status.state, WorkerState::Running);
    let detail = status.detail.unwrap_or_default();
    assert!(detail.starts_with("leading (term "), "{detail:?}");

    tokio::time::timeout(GIVE_UP, workers.stop())
        .await
        .expect("scheduler stops");
    let states: Vec<_> = workers.statuses().into_iter().map(|s| s.state).collect();
    assert_eq!(states, vec![WorkerState::Stopped]);
    node.shutdown().await.expect("node stops");
}

/// A job record that does not decode (damaged, or written by a newer release
/// during a rolling upgrade) is left out when the scheduler loads the store; every
/// other job is still scheduled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_record_that_does_not_decode_keeps_no_other_job_from_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let record = dir.path().join("record.txt");
    {
        let node = start_node(&data).await;
        for name in ["good", "unreadable"] {
            put_job(
                &node,
                json!({
                    "name": name,
                    "schedule": {"every": "1s"},
                    "executor": {"type": "record", "path": record.to_string_lossy()},
                }),
            )
            .await;
        }
        node.shutdown().await.expect("node stops");
    }
    // A record version no release reads yet, as a newer node would write.
    {
        let db = redb::Database::open(data.join("state.redb")).expect("state file");
        let txn = db.begin_write().expect("write transaction");
        {
            let mut jobs = txn
                .open_table(redb::TableDefinition::<&str, &[u8]>::new("jobs"))
                .expect("jobs table");
            let old = jobs
                .insert("unreadable", [99u8, b'{', b'}'].as_slice())
                .expect("record replaced");
            assert!(old.is_some(), "the job was stored");
        }
        txn.commit().expect("commit");
    }

    let node = start_node(&data).await;
    let mut events = node.store().subscribe();
    let (scheduler, workers) = start_scheduler(&node);
    until(&mut events, |e| {
        e.job == "good" && e.status == ExecStatus::Succeeded
    })
    .await;
    let stats = scheduler.stats();
    assert_eq!(stats.jobs, 1, "{stats:?}");
    tokio::time::timeout(GIVE_UP, workers.stop())
        .await
        .expect("scheduler stops");
    node.shutdown().await.expect("node stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cut_by_shutdown_is_lost_at_the_next_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let id = {
        let node = start_node(&data).await;
        let (scheduler, workers) = start_scheduler(&node);
        let mut events = node.store().subscribe();
        put_job(
            &node,
            json!({
                "name": "long",
                "schedule": {"at": (Utc::now() + chrono::TimeDelta::seconds(1)).to_rfc3339()},
                "executor": {"type": "shell", "command": "sleep 600"},
            }),
        )
        .await;
        let mut running = None;
        until(&mut events, |e| {
            if e.job == "long" && e.status == ExecStatus::Running {
                running = Some(e.id);
            }
            running.is_some()
        })
        .await;
        let id = running.expect("a running execution");
        // Whether or not the executor got it yet, the shutdown leaves it `running`
        // on record.
        tokio::time::timeout(GIVE_UP, workers.stop())
            .await
            .expect("scheduler stops without waiting for the run");
        let buffer = scheduler.live_output(id);
        assert!(buffer.is_none_or(|b| b.is_closed()));
        node.shutdown().await.expect("node stops");
        id
    };

    let node = start_node(&data).await;
    let mut events = node.store().subscribe();
    let before = node
        .store()
        .get_execution(id)
        .expect("read")
        .expect("stored");
    assert_eq!(
        before.status,
        ExecStatus::Running,
        "not finished by the shutdown"
    );
    let (_, workers) = start_scheduler(&node);
    until(&mut events, |e| e.id == id && e.status == ExecStatus::Lost).await;
    let lost = node
        .store()
        .get_execution(id)
        .expect("read")
        .expect("stored");
    assert_eq!(lost.error.as_deref(), Some(LOST_ERROR));
    workers.stop().await;
    node.shutdown().await.expect("node stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_due_together_is_fired_in_one_entry_and_drains_through_the_slots() {
    const JOBS: usize = 200;
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_node(&dir.path().join("data")).await;
    let (scheduler, workers) = start_scheduler(&node);
    let mut events = node.store().subscribe();
    let record = dir.path().join("record.txt");
    put_burst(&node, JOBS, &record).await;

    // Revision of the first event of each execution: the one that created it.
    let mut created = std::collections::HashMap::new();
    let mut succeeded = 0;
    tokio::time::timeout(GIVE_UP, async {
        while succeeded < JOBS {
            let event = events.recv().await.expect("event");
            if let EventKind::Execution(e) = &event.kind {
                created.entry(e.id).or_insert(event.revision);
                if e.status == ExecStatus::Succeeded {
                    succeeded += 1;
                }
            }
        }
    })
    .await
    .expect("every run finished");

    let mut revisions: Vec<u64> = created.values().copied().collect();
    revisions.sort_unstable();
    revisions.dedup();
    assert_eq!(created.len(), JOBS);
    assert_eq!(
        revisions.len(),
        1,
        "all fires in one log entry: {revisions:?}"
    );
    let lines = std::fs::read_to_string(&record).expect("record file");
    assert_eq!(lines.lines().count(), JOBS);
    let stats = scheduler.stats();
    assert_eq!(stats.dispatch_lag.count, JOBS as u64);
    assert_eq!((stats.running, stats.queued), (0, 0));

    workers.stop().await;
    node.shutdown().await.expect("node stops");
}

/// Regression: the runtime takes at most 4,096 store events per turn, and once
/// dropped the event it had pulled past that bound, so one of 4,097 runs due
/// together (4,097 execution events from one log entry) was never dispatched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_runs_due_together_than_one_turn_takes_all_run_once() {
    const JOBS: usize = 4_097;
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_node(&dir.path().join("data")).await;
    let (_, workers) = start_scheduler_with(&node, 2 * JOBS);
    let mut events = node.store().subscribe();
    let record = dir.path().join("record.txt");
    put_burst(&node, JOBS, &record).await;

    let ran = || {
        std::fs::read_to_string(&record)
            .map(|text| text.lines().count())
            .unwrap_or(0)
    };
    tokio::time::timeout(GIVE_UP, async {
        loop {
            match events.recv().await {
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("event stream closed"),
            }
            // Count only once the backlog is drained: the record file is the truth.
            if events.is_empty() && ran() >= JOBS {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} of {JOBS} runs happened", ran()));

    let text = std::fs::read_to_string(&record).expect("record file");
    let mut jobs: Vec<&str> = text
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or_default())
        .collect();
    jobs.sort_unstable();
    jobs.dedup();
    assert_eq!(jobs.len(), JOBS, "every job ran, none twice");
    assert_eq!(text.lines().count(), JOBS);

    workers.stop().await;
    node.shutdown().await.expect("node stops");
}

async fn publish(node: &Node, event_type: &str, data: serde_json::Value) -> u64 {
    let (revision, response) = node
        .write(ClientRequest {
            session: None,
            at: Utc::now(),
            command: Command::PublishEvent {
                event_type: event_type.into(),
                data,
            },
        })
        .await
        .expect("event published");
    assert_eq!(response, Response::Published { revision });
    revision
}

/// Event revisions of the executions of `job`, in revision order (executions of
/// one turn get ids in no particular order).
fn fired_revisions(node: &Node, job: &str) -> Vec<Option<u64>> {
    let execs = node
        .store()
        .list_executions(job, 100, None)
        .expect("executions");
    let mut revisions: Vec<Option<u64>> = execs.iter().map(|e| e.event_revision).collect();
    revisions.sort();
    revisions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_while_no_scheduler_ran_fire_once_when_one_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_node(&dir.path().join("data")).await;
    let record = dir.path().join("record.txt");
    put_job(
        &node,
        json!({
            "name": "deployed",
            "schedule": {"on": {"event": "deploy.finished", "data": {"env": "prod"}}},
            "executor": {"type": "record", "path": record.to_string_lossy()},
        }),
    )
    .await;
    // No scheduler runs yet: these wait in the event log.
    let first = publish(&node, "deploy.finished", json!({"env": "prod"})).await;
    publish(&node, "deploy.finished", json!({"env": "dev"})).await;
    let second = publish(&node, "deploy.finished", json!({"env": "prod"})).await;

    let mut events = node.store().subscribe();
    let (_scheduler, workers) = start_scheduler(&node);
    let mut done = 0;
    until(&mut events, |e| {
        if e.job == "deployed" && e.status == ExecStatus::Succeeded {
            done += 1;
        }
        done == 2
    })
    .await;
    assert_eq!(
        fired_revisions(&node, "deployed"),
        vec![Some(first), Some(second)]
    );
    tokio::time::timeout(GIVE_UP, workers.stop())
        .await
        .expect("scheduler stops");

    // A new engine starts from the job's mark: the handled events do not fire again,
    // a new one fires once.
    let (_scheduler, workers) = start_scheduler(&node);
    let third = publish(&node, "deploy.finished", json!({"env": "prod"})).await;
    until(&mut events, |e| {
        e.job == "deployed" && e.status == ExecStatus::Succeeded && e.event_revision == Some(third)
    })
    .await;
    assert_eq!(
        fired_revisions(&node, "deployed"),
        vec![Some(first), Some(second), Some(third)]
    );
    tokio::time::timeout(GIVE_UP, workers.stop())
        .await
        .expect("scheduler stops");
}

async fn commit(node: &Node, command: Command) -> Response {
    node.write(ClientRequest {
        session: None,
        at: Utc::now(),
        command,
    })
    .await
    .expect("written")
    .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_over_target_sets_run_once_per_discovered_target_and_fail_without_a_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_node(&dir.path().join("data")).await;
    let (_scheduler, workers) = start_scheduler(&node);
    let mut events = node.store().subscribe();
    let record = dir.path().join("record.txt");
    // A fan-out job and a probe job over a set that does not exist yet.
    put_job(
        &node,
        json!({
            "name": "fan",
            "schedule": {"manual": true},
            "targets": "gw",
            "executor": {"type": "record", "path": format!("{}.{{{{target.labels.zone}}}}", record.display())},
        }),
    )
    .await;
    put_job(
        &node,
        json!({
            "name": "sync-check",
            "schedule": {"manual": true},
            "executor": {"type": "probe", "targets": "gw", "path": "/v1/synced"},
        }),
    )
    .await;
    let run = |job: &'static str| {
        let node = node.clone();
        async move {
            commit(
                &node,
                Command::Fire {
                    fires: vec![rota_core::Fire {
                        ahead: false,
                        id: ulid::Ulid::generate(),
                        job: job.to_string(),
                        scheduled_at: Utc::now(),
                        trigger: rota_core::Trigger::Manual,
                        start: None,
                        skip_reason: None,
                        event_revision: None,
                        event_seq: 0,
                    }],
                },
            )
            .await
        }
    };
    run("fan").await;
    run("sync-check").await;
    let mut errors = std::collections::BTreeMap::new();
    until(&mut events, |e| {
        if e.status == ExecStatus::Failed {
            errors.insert(e.job.clone(), e.error.clone().unwrap_or_default());
        }
        errors.len() == 2
    })
    .await;
    assert_eq!(errors["fan"], "target set \"gw\" does not exist");
    assert_eq!(errors["sync-check"], "target set \"gw\" does not exist");

    // The set exists but discovery has not reported: still no run.
    let spec: rota_core::targets::TargetSetSpec = serde_json::from_value(json!(
        {"name": "gw", "provider": "static", "groups": [{"targets": ["a:1", "b:2"]}]}
    ))
    .expect("set");
    let Response::TargetSetPut { set, .. } = commit(&node, Command::PutTargetSet { spec }).await
    else {
        panic!("set not stored")
    };
    run("fan").await;
    until(&mut events, |e| {
        e.job == "fan"
            && e.status == ExecStatus::Failed
            && e.error.as_deref() == Some("target set \"gw\" has not been discovered yet")
    })
    .await;

    // Discovered: one run per target, each with its own labels.
    let target = |address: &str, zone: &str| rota_core::targets::Target {
        address: address.into(),
        labels: [("zone".to_string(), zone.to_string())].into(),
    };
    commit(
        &node,
        Command::RecordTargets {
            name: "gw".into(),
            generation: set.generation,
            state: rota_core::targets::TargetSetState {
                targets: vec![target("a:1", "x"), target("b:2", "y")],
                error: None,
            },
        },
    )
    .await;
    run("fan").await;
    let mut done = None;
    until(&mut events, |e| {
        if e.job == "fan" && e.status == ExecStatus::Succeeded {
            done = Some(e.clone());
        }
        done.is_some()
    })
    .await;
    let done = done.expect("succeeded");
    let result = done.result.expect("per-target results are recorded");
    assert_eq!(result.status, rota_core::probe::ResultStatus::Succeeded);
    let addresses: Vec<&str> = result.targets.iter().map(|t| t.address.as_str()).collect();
    assert_eq!(addresses, ["a:1", "b:2"]);
    for zone in ["x", "y"] {
        let path = format!("{}.{zone}", record.display());
        let lines = std::fs::read_to_string(&path).expect("one record per target");
        assert_eq!(lines.lines().count(), 1, "{path}: {lines}");
    }
    // Stored as well, for the API.
    let stored = node
        .store()
        .get_execution(done.id)
        .expect("read")
        .expect("stored");
    assert_eq!(stored.result.map(|r| r.targets.len()), Some(2));

    tokio::time::timeout(GIVE_UP, workers.stop())
        .await
        .expect("scheduler stops");
    node.shutdown().await.expect("node stops");
}
