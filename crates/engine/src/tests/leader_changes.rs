//! Leader changes and node liveness: adoption, silent nodes, heartbeats.

use super::*;

fn finishes(actions: &[Action]) -> Vec<Finish> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Finish(f) => Some(f.clone()),
            _ => None,
        })
        .collect()
}

/// Completes every local run but `keep`, successfully.
fn complete_all_but(sim: &mut Sim, keep: &[Ulid]) {
    let ids: Vec<Ulid> = sim
        .running
        .keys()
        .copied()
        .filter(|id| !keep.contains(id))
        .collect();
    for id in ids {
        sim.complete(id, ExecStatus::Succeeded);
    }
}

/// A run recorded as running on `node` (another node than the engine's).
fn running_on(id: u128, job: &str, node: &str, at: Timestamp) -> Execution {
    let mut e = execution(Ulid(id), job, at, Trigger::Manual, ExecStatus::Running, 0);
    e.node = Some(node.into());
    e.started_at = Some(at);
    e
}

fn job_record(spec: JobSpec) -> JobRecord {
    JobRecord {
        spec,
        created_at: t0(0),
        updated_at: t0(0),
        revision: 1,
        last_scheduled_at: None,
        last_event_revision: None,
        last_event_seq: None,
    }
}

#[test]
fn a_leader_change_fires_each_instant_once_and_loses_the_dead_leaders_runs() {
    let mut sim = started_sim(100, t0(0));
    let no_retry = json!({"misfire": "run_all", "catchup_window": "1h"});
    sim.put(spec("all", with(every(1), no_retry)));
    sim.put(spec("once", with(every(1), json!({"misfire": "run_once"}))));
    sim.put(spec("skip", with(every(1), json!({"misfire": "skip"}))));
    sim.put(spec(
        "long",
        json!({"retry": {"max_attempts": 2, "initial_delay": "1s", "jitter": false}}),
    ));
    let long = sim.run_now("long");
    assert_eq!(sim.running.get(&long), Some(&1), "n1 runs the long job");
    for secs in 1..=3 {
        sim.advance(t0(secs));
        complete_all_but(&mut sim, &[long]);
    }
    // n1 fires instant 4 but dies before the batch is committed.
    let mut lost_batch = Vec::new();
    sim.engine.tick(t0(4), &mut lost_batch);
    assert_eq!(Sim::fires(&lost_batch).len(), 3, "{lost_batch:?}");

    // n2 is elected 16 s later and builds its engine from the replicated state.
    sim.take();
    sim.restart_as("n2", t0(20), &[]);
    let fired_by_b = Sim::fired_summary(&sim.take());
    let at = |job: &str| -> Vec<Timestamp> {
        fired_by_b
            .iter()
            .filter(|f| f.0 == job)
            .map(|f| f.1)
            .collect()
    };
    // run_all: every missed instant (4..=20) once; run_once: the latest only;
    // skip: only the one still on time.
    assert_eq!(at("all"), (4..=20).map(t0).collect::<Vec<_>>());
    assert_eq!(at("once"), vec![t0(20)]);
    assert_eq!(at("skip"), vec![t0(20)]);
    // The run of the dead leader is still trusted for a node timeout.
    assert_eq!(sim.execs[&long].status, ExecStatus::Running);
    assert!(
        !sim.running.contains_key(&long),
        "n1's run is not run on n2"
    );

    let mut lost = Vec::new();
    for secs in 21..=31 {
        sim.advance(t0(secs));
        lost.extend(
            finishes(&sim.take())
                .into_iter()
                .filter(|f| f.status == ExecStatus::Lost),
        );
        if secs < 30 {
            assert!(lost.is_empty(), "lost too early, at {secs}: {lost:?}");
        }
        complete_all_but(&mut sim, &[long]);
    }
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(lost[0].id, long);
    assert_eq!(lost[0].error.as_deref(), Some(NODE_DOWN_ERROR));
    assert_eq!(lost[0].retry_at, Some(t0(31)));
    // Retried once, on n2, as attempt 2 of the same execution.
    assert_eq!(sim.running.get(&long), Some(&2));
    sim.complete(long, ExecStatus::Failed);
    let e = &sim.execs[&long];
    assert_eq!(
        e.status,
        ExecStatus::Failed,
        "max_attempts 2: no third attempt"
    );
    // `attempts` keeps the earlier attempt; the last one is the execution itself.
    assert_eq!(e.attempts.len(), 1);
    assert_eq!(e.attempts[0].status, ExecStatus::Lost);
    assert_eq!(e.attempts[0].node.as_deref(), Some(NODE));
    assert_eq!(e.node.as_deref(), Some("n2"));

    // Across both leaders, no instant fired twice and none was left out.
    assert_eq!(sim.repeated_fires, 0);
    let mut count: BTreeMap<(String, Timestamp), usize> = BTreeMap::new();
    for f in Sim::fires(&sim.log) {
        *count.entry((f.job.clone(), f.scheduled_at)).or_default() += 1;
    }
    assert!(count.values().all(|n| *n == 1), "{count:?}");
    let instants = |job: &str| -> Vec<i64> {
        count
            .keys()
            .filter(|(j, _)| j == job)
            .map(|(_, at)| at.signed_duration_since(t0(0)).num_seconds())
            .collect()
    };
    assert_eq!(instants("all"), (1..=31).collect::<Vec<_>>());
    let expected: Vec<i64> = (1..=3).chain(20..=31).collect();
    assert_eq!(instants("once"), expected);
    assert_eq!(instants("skip"), expected);
}

#[test]
fn a_silent_node_loses_its_runs_and_a_reporting_one_keeps_them() {
    let mut sim = Sim::new(10, t0(0));
    let retry = json!({"retry": {"max_attempts": 3, "initial_delay": "1s", "jitter": false}});
    sim.seed_job(job_record(spec("work", retry)));
    for e in [
        running_on(1, "work", "n2", t0(50)),
        running_on(2, "work", "n3", t0(50)),
    ] {
        sim.seed_execution(&e);
    }
    // n3 reported long before this engine started: that does not count against it.
    sim.input(Input::NodeAlive { node: "n3".into() });
    sim.restart(t0(100), &[]);
    let beat = |sim: &mut Sim| sim.input(Input::NodeAlive { node: "n2".into() });
    for secs in (101..=109).step_by(4) {
        beat(&mut sim);
        sim.advance(t0(secs));
    }
    assert!(finishes(&sim.take()).is_empty());
    beat(&mut sim);
    assert_eq!(sim.engine.next_wakeup(), Some(t0(110)), "n3's deadline");
    sim.advance(t0(110));
    let lost = finishes(&sim.take());
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!((lost[0].id, lost[0].status), (Ulid(2), ExecStatus::Lost));
    assert_eq!(lost[0].retry_at, Some(t0(111)));
    // The retry runs here; n2 keeps its run for as long as it reports.
    sim.advance(t0(111));
    assert_eq!(sim.running.get(&Ulid(2)), Some(&2));
    for secs in (115..=200).step_by(5) {
        sim.advance(t0(secs));
        beat(&mut sim);
    }
    let on_n2 = |sim: &Sim| {
        let e = &sim.execs[&Ulid(1)];
        (e.attempt, e.node.clone())
    };
    assert_eq!(on_n2(&sim), (1, Some("n2".to_string())));
    // It falls silent at 200 (its last report): lost 10 s later, not before.
    sim.advance(t0(209));
    assert_eq!(on_n2(&sim), (1, Some("n2".to_string())));
    sim.advance(t0(210));
    let e = &sim.execs[&Ulid(1)];
    assert_eq!((e.attempt, e.status), (2, ExecStatus::Queued));
    assert_eq!(e.attempts[0].status, ExecStatus::Lost);
    assert_eq!(e.attempts[0].error.as_deref(), Some(NODE_DOWN_ERROR));

    // A node that reported long ago and then gets a run is judged from then on.
    sim.advance(t0(300));
    let e = running_on(3, "work", "n3", t0(300));
    sim.seed_execution(&e);
    let stored = Arc::new(sim.execs[&e.id].clone());
    sim.input(Input::Execution(stored));
    assert_eq!(sim.engine.next_wakeup(), Some(t0(310)));
}

#[test]
fn overlap_holds_against_runs_of_the_previous_leader() {
    let mut sim = started_sim(10, t0(0));
    sim.put(spec("skip", with(every(10), json!({"overlap": "skip"}))));
    sim.put(spec(
        "cancel",
        with(every(10), json!({"overlap": "cancel_running"})),
    ));
    sim.advance(t0(10));
    let skip_run = sim.id_of("skip", t0(10));
    let cancel_run = sim.id_of("cancel", t0(10));
    assert_eq!(sim.running.len(), 2);

    // n2 takes over while n1's runs go on (n1 keeps reporting).
    sim.restart_as("n2", t0(15), &[]);
    sim.take();
    sim.input(Input::NodeAlive { node: NODE.into() });
    sim.advance(t0(20));
    let actions = sim.take();
    let fired = Sim::fired_summary(&actions);
    assert!(
        fired.contains(&("skip".into(), t0(20), Trigger::Schedule, false, true)),
        "skipped while n1's run is active: {fired:?}"
    );
    // cancel_running asks for the run on n1 to stop (committed as a Cancel).
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Cancel { id, attempt: 1 } if *id == cancel_run)),
        "{actions:?}"
    );
    // n1 reports the end of its skip run; the next instant runs on n2.
    let done = Finish {
        id: skip_run,
        attempt: 1,
        status: ExecStatus::Succeeded,
        at: t0(21),
        exit_code: Some(0),
        error: None,
        output: None,
        output_truncated: false,
        retry_at: None,
        artifacts: Vec::new(),
        result: None,
        started_at: None,
        usage: None,
    };
    sim.apply_and_feed(Command::Finish {
        finishes: vec![done],
    });
    sim.input(Input::NodeAlive { node: NODE.into() });
    sim.advance(t0(30));
    let fired = Sim::fired_summary(&sim.take());
    assert!(
        fired.contains(&("skip".into(), t0(30), Trigger::Schedule, true, false)),
        "{fired:?}"
    );
}
