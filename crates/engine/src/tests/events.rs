//! Event triggers (`schedule.on`) and `delete_after_run`: an event fires each
//! matching job once (several events of one entry each), filters hold, a new
//! engine fires what no engine saw and nothing twice; a run-once job goes away when
//! its run ended for good.

use rota_core::event::Event;

use super::*;

fn on(name: &str, trigger: serde_json::Value) -> JobSpec {
    spec(name, json!({"schedule": {"on": trigger}}))
}

fn prod_deploys(name: &str) -> JobSpec {
    on(
        name,
        json!({"event": "deploy.finished", "data": {"env": "prod"}}),
    )
}

/// Publishes an external event through the store (`POST /v1/events`); answers its
/// revision.
fn publish(sim: &mut Sim, event_type: &str, data: serde_json::Value) -> u64 {
    let (_, inputs) = sim.apply(Command::PublishEvent {
        event_type: event_type.to_string(),
        data,
    });
    let revision = sim.index;
    for input in inputs {
        sim.input(input);
    }
    revision
}

/// Publishes without any engine hearing of it (no leader at the time).
fn publish_unheard(sim: &mut Sim, event_type: &str, data: serde_json::Value) -> u64 {
    let at = sim.now;
    sim.seed(
        at,
        Command::PublishEvent {
            event_type: event_type.to_string(),
            data,
        },
    );
    sim.index
}

/// `(job, event_revision, started)` of every event fire in `actions`.
fn event_fires(actions: &[Action]) -> Vec<(String, Option<u64>, bool)> {
    Sim::fires(actions)
        .into_iter()
        .map(|f| {
            assert_eq!(f.trigger, Trigger::Event, "{f:?}");
            (f.job.clone(), f.event_revision, f.start.is_some())
        })
        .collect()
}

fn deletes(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::DeleteJob { job, .. } => Some(job.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_matching_event_fires_once_and_its_run_records_the_revision() {
    let mut sim = started_sim(4, t0(0));
    sim.put(prod_deploys("smoke"));
    sim.put(spec("unrelated", every(3600)));
    sim.take();

    let revision = publish(&mut sim, "deploy.finished", json!({"env": "prod", "v": 2}));
    let fired = event_fires(&sim.take());
    assert_eq!(fired, vec![("smoke".to_string(), Some(revision), true)]);
    let exec = sim
        .execs
        .values()
        .find(|e| e.job == "smoke")
        .expect("the run");
    assert_eq!(
        (exec.trigger, exec.event_revision, exec.status),
        (Trigger::Event, Some(revision), ExecStatus::Running)
    );
    assert_eq!(exec.scheduled_at, sim.now, "a run is for the event's time");
    assert_eq!(
        sim.store
            .get_job("smoke")
            .unwrap()
            .unwrap()
            .last_event_revision,
        Some(revision)
    );

    // The same event again (a replay) fires nothing, in the engine or the store.
    let event = sim.published.last().cloned().expect("published");
    sim.input(Input::Event(event));
    assert!(Sim::fires(&sim.take()).is_empty());
    assert_eq!(sim.repeated_fires, 0);

    // Another event of the type: another run.
    let second = publish(&mut sim, "deploy.finished", json!({"env": "prod"}));
    assert_eq!(
        event_fires(&sim.take()),
        vec![("smoke".to_string(), Some(second), true)]
    );
}

#[test]
fn filters_and_types_decide_which_jobs_fire() {
    let mut sim = started_sim(10, t0(0));
    sim.put(prod_deploys("prod-smoke"));
    sim.put(on("any-deploy", json!({"event": "deploy.finished"})));
    sim.put(on(
        "after-build",
        json!({"event": "execution.finished", "job": "build", "status": "succeeded"}),
    ));
    sim.take();

    let staging = publish(&mut sim, "deploy.finished", json!({"env": "staging"}));
    assert_eq!(
        event_fires(&sim.take()),
        vec![("any-deploy".to_string(), Some(staging), true)]
    );
    publish(&mut sim, "deploy.started", json!({"env": "prod"}));
    assert!(Sim::fires(&sim.take()).is_empty());

    // Executions' own events (published by the store on finish), fed as they come.
    let finished = |revision: u64, job: &str, status: &str| {
        Input::Event(Arc::new(Event {
            revision,
            seq: 0,
            event_type: "execution.finished".into(),
            key: "01J".into(),
            at: t0(1),
            data: json!({"job": job, "status": status, "attempt": 1, "trigger": "manual"}),
        }))
    };
    let base = sim.index;
    sim.input(finished(base + 1, "build", "failed"));
    sim.input(finished(base + 2, "test", "succeeded"));
    assert!(Sim::fires(&sim.take()).is_empty());
    sim.input(finished(base + 3, "build", "succeeded"));
    assert_eq!(
        event_fires(&sim.take()),
        vec![("after-build".to_string(), Some(base + 3), true)]
    );
}

/// `(event_revision, event_seq)` of every run of `job`, in order.
fn runs_by_event(sim: &Sim, job: &str) -> Vec<(Option<u64>, u32)> {
    let mut runs: Vec<_> = sim
        .execs
        .values()
        .filter(|e| e.job == job)
        .map(|e| (e.event_revision, e.event_seq))
        .collect();
    runs.sort();
    runs
}

/// A job that follows `build`'s successful runs, and two runs of `build` running
/// on this node.
fn two_builds_and_a_follower() -> (Sim, [Ulid; 2]) {
    let mut sim = started_sim(4, t0(0));
    sim.put(spec("build", json!({})));
    sim.put(on(
        "after-build",
        json!({"event": "execution.finished", "job": "build", "status": "succeeded"}),
    ));
    let builds = [sim.run_now("build"), sim.run_now("build")];
    assert!(builds.iter().all(|id| sim.running.contains_key(id)));
    sim.take();
    (sim, builds)
}

#[test]
fn two_runs_ending_in_one_entry_fire_their_follower_once_each() {
    let (mut sim, builds) = two_builds_and_a_follower();
    // Both end in the same turn: their finishes are one log entry, whose two
    // `execution.finished` events share its revision.
    let mut out = Vec::new();
    for id in builds {
        let attempt = sim.running.remove(&id).expect("running here");
        let completion = Completion {
            id,
            attempt,
            outcome: RunOutcome::succeeded(),
            output: String::new(),
            output_truncated: false,
            started_at: None,
        };
        sim.engine
            .handle(Input::Completed(completion), sim.now, &mut out);
    }
    sim.process(out);
    let ends: Vec<(u64, u32)> = sim
        .published
        .iter()
        .filter(|e| e.event_type == "execution.finished" && e.data["job"] == "build")
        .map(|e| e.position())
        .collect();
    assert_eq!(ends.len(), 2);
    assert_eq!(ends[0].0, ends[1].0, "one entry: {ends:?}");
    let revision = ends[0].0;
    assert_eq!(
        event_fires(&sim.take()),
        vec![
            ("after-build".to_string(), Some(revision), true),
            ("after-build".to_string(), Some(revision), true),
        ]
    );
    let runs = runs_by_event(&sim, "after-build");
    let expected: Vec<_> = ends.iter().map(|&(r, seq)| (Some(r), seq)).collect();
    assert_eq!(runs, expected, "one run per event");

    // The events again (a replay), or a new engine: nothing fires twice.
    for event in sim.published.clone() {
        sim.input(Input::Event(event));
    }
    assert!(Sim::fires(&sim.take()).is_empty());
    sim.restart_as("n2", t0(5), &[]);
    assert!(Sim::fires(&sim.take()).is_empty());
    assert_eq!(runs_by_event(&sim, "after-build"), runs);
    assert_eq!(sim.repeated_fires, 0);
}

#[test]
fn a_new_leader_fires_the_rest_of_an_entry_whose_first_event_was_handled() {
    let (mut sim, builds) = two_builds_and_a_follower();
    // The leader dies right after both builds ended in one entry and its engine
    // fired the first event only (its batch landed, the second fire never came).
    let finishes = builds
        .iter()
        .map(|&id| {
            let attempt = sim.running.remove(&id).expect("running here");
            finish(id, attempt, ExecStatus::Succeeded, t0(1))
        })
        .collect();
    sim.seed(t0(1), Command::Finish { finishes });
    let first = sim
        .published
        .iter()
        .find(|e| e.event_type == "execution.finished")
        .cloned()
        .expect("the first build's end");
    let mut lost = Vec::new();
    sim.engine
        .handle(Input::Event(first.clone()), t0(1), &mut lost);
    let fire = Sim::fires(&lost).into_iter().cloned().collect();
    let (answer, _) = sim.apply(Command::Fire { fires: fire });
    assert!(
        matches!(&answer, Response::Fired { outcomes } if outcomes[0].created),
        "{answer:?}"
    );
    let handled = runs_by_event(&sim, "after-build");
    assert_eq!(handled, vec![(Some(first.revision), first.seq)]);

    sim.restart_as("n2", t0(2), &[]);
    let fired = Sim::fires(&sim.take())
        .into_iter()
        .map(|f| (f.event_revision, f.event_seq))
        .collect::<Vec<_>>();
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].0, Some(first.revision), "the same entry");
    assert!(fired[0].1 > first.seq, "its other event: {fired:?}");
    assert_eq!(runs_by_event(&sim, "after-build").len(), 2);
    assert_eq!(sim.repeated_fires, 0);
}

#[test]
fn a_paused_job_ignores_events_and_does_not_catch_up_the_pause() {
    let mut sim = started_sim(4, t0(0));
    sim.put(prod_deploys("smoke"));
    sim.apply_and_feed(Command::SetPaused {
        name: "smoke".into(),
        paused: true,
    });
    publish(&mut sim, "deploy.finished", json!({"env": "prod"}));
    sim.apply_and_feed(Command::SetPaused {
        name: "smoke".into(),
        paused: false,
    });
    assert!(Sim::fires(&sim.take()).is_empty());
    // Nor does a new engine replay the pause.
    sim.restart_as("n2", t0(5), &[]);
    assert!(Sim::fires(&sim.take()).is_empty());
    let after = publish(&mut sim, "deploy.finished", json!({"env": "prod"}));
    assert_eq!(
        event_fires(&sim.take()),
        vec![("smoke".to_string(), Some(after), true)]
    );
}

#[test]
fn a_new_leader_fires_missed_events_once_and_not_the_handled_ones() {
    let mut sim = started_sim(10, t0(0));
    sim.put(prod_deploys("smoke"));
    sim.put(on("any", json!({"event": "deploy.finished"})));
    // Events before a job existed never fire it.
    sim.take();
    let handled = publish(&mut sim, "deploy.finished", json!({"env": "prod"}));
    assert_eq!(event_fires(&sim.take()).len(), 2);

    // The leader dies; events are published while no engine runs.
    let missed_prod = publish_unheard(&mut sim, "deploy.finished", json!({"env": "prod"}));
    let missed_dev = publish_unheard(&mut sim, "deploy.finished", json!({"env": "dev"}));
    publish_unheard(&mut sim, "other.event", json!({"env": "prod"}));

    sim.restart_as("n2", t0(30), &[]);
    let mut fired = event_fires(&sim.take());
    fired.sort();
    assert_eq!(
        fired,
        vec![
            ("any".to_string(), Some(missed_prod), true),
            ("any".to_string(), Some(missed_dev), true),
            ("smoke".to_string(), Some(missed_prod), true),
        ]
    );
    assert!(fired.iter().all(|f| f.1 != Some(handled)));

    // A third engine finds everything handled.
    sim.restart_as("n3", t0(40), &[]);
    assert!(Sim::fires(&sim.take()).is_empty());
    // Each (job, revision) ran once.
    let mut runs: Vec<(String, Option<u64>)> = sim
        .execs
        .values()
        .map(|e| (e.job.clone(), e.event_revision))
        .collect();
    let total = runs.len();
    runs.sort();
    runs.dedup();
    assert_eq!(runs.len(), total, "{runs:?}");
    assert_eq!(total, 5);
    assert_eq!(sim.repeated_fires, 0);
}

#[test]
fn a_fire_of_a_deposed_engine_does_not_repeat_an_event() {
    let mut sim = started_sim(10, t0(0));
    sim.put(prod_deploys("smoke"));
    sim.take();
    // The old engine fired the event but its batch never landed; the new one fires
    // it, then the old batch arrives late: the store names the first run.
    let revision = publish_unheard(&mut sim, "deploy.finished", json!({"env": "prod"}));
    let event = sim.published.last().cloned().expect("published");
    let mut lost_batch = Vec::new();
    sim.engine
        .handle(Input::Event(event), t0(1), &mut lost_batch);
    assert_eq!(event_fires(&lost_batch).len(), 1);
    sim.restart_as("n2", t0(2), &[]);
    assert_eq!(
        event_fires(&sim.take()),
        vec![("smoke".to_string(), Some(revision), true)]
    );
    let late = Command::Fire {
        fires: Sim::fires(&lost_batch).into_iter().cloned().collect(),
    };
    let (answer, _) = sim.apply(late);
    let Response::Fired { outcomes } = answer else {
        panic!("{answer:?}");
    };
    assert!(!outcomes[0].created);
    assert_eq!(sim.execs.len(), 1);
}

#[test]
fn delete_after_run_deletes_the_job_once_its_run_ended_for_good() {
    let mut sim = started_sim(4, t0(0));
    sim.put(spec(
        "once",
        json!({
            "schedule": {"at": "2026-01-01T00:00:10Z"},
            "delete_after_run": true,
            "retry": {"max_attempts": 2, "initial_delay": "5s", "jitter": false},
        }),
    ));
    sim.put(spec(
        "kept",
        json!({"schedule": {"at": "2026-01-01T00:00:10Z"}}),
    ));
    // A manual run before the instant does not delete the job.
    let manual = sim.run_now("once");
    sim.complete(manual, ExecStatus::Succeeded);
    assert!(deletes(&sim.take()).is_empty());

    sim.advance(t0(10));
    let id = sim.id_of("once", t0(10));
    let kept = sim.id_of("kept", t0(10));
    sim.complete(kept, ExecStatus::Succeeded);
    // The first attempt fails: a retry is pending, the job stays.
    sim.complete(id, ExecStatus::Failed);
    assert!(deletes(&sim.take()).is_empty());
    assert!(sim.jobs.contains_key("once"));
    sim.advance(t0(15));
    sim.complete(id, ExecStatus::Failed);
    assert_eq!(deletes(&sim.take()), vec!["once".to_string()]);
    assert!(!sim.jobs.contains_key("once"), "deleted with its history");
    assert!(sim.store.get_execution(id).unwrap().is_none());
    assert!(sim.jobs.contains_key("kept"));
    assert_eq!(sim.engine.stats().jobs, 1);
}

#[test]
fn a_run_that_ended_while_no_engine_ran_deletes_its_job_at_the_next_start() {
    let mut sim = started_sim(4, t0(0));
    sim.put(spec(
        "once",
        json!({"schedule": {"after": "10s"}, "delete_after_run": true}),
    ));
    sim.advance(t0(10));
    let id = sim.id_of("once", t0(10));
    // The leader dies; the run's outcome is committed through another node.
    let attempt = sim.running.remove(&id).expect("running here");
    let finish = Finish {
        exit_code: Some(0),
        ..finish(id, attempt, ExecStatus::Succeeded, t0(11))
    };
    sim.seed(
        t0(11),
        Command::Finish {
            finishes: vec![finish],
        },
    );
    assert!(sim.jobs.contains_key("once"));
    sim.restart_as("n2", t0(20), &[]);
    assert_eq!(deletes(&sim.take()), vec!["once".to_string()]);
    assert!(!sim.jobs.contains_key("once"));
}

#[test]
fn a_replaced_job_is_not_deleted_by_the_delete_of_its_earlier_version() {
    let mut sim = started_sim(4, t0(0));
    sim.put(spec(
        "once",
        json!({"schedule": {"at": "2026-01-01T00:00:10Z"}, "delete_after_run": true}),
    ));
    sim.advance(t0(10));
    let id = sim.id_of("once", t0(10));
    // The job is put again for a later instant while its run goes on.
    sim.put(spec(
        "once",
        json!({"schedule": {"at": "2026-01-01T00:01:00Z"}, "delete_after_run": true}),
    ));
    sim.complete(id, ExecStatus::Succeeded);
    assert!(deletes(&sim.take()).is_empty(), "its next instant is ahead");
    assert!(sim.jobs.contains_key("once"));
    sim.advance(t0(60));
    let next = sim.id_of("once", t0(60));
    sim.complete(next, ExecStatus::Succeeded);
    assert_eq!(deletes(&sim.take()), vec!["once".to_string()]);
    assert!(!sim.jobs.contains_key("once"));
}
