//! Cancel requests and job changes (replace, pause, delete) while runs are active.

use super::*;

#[test]
fn cancel_requested_cancels_the_local_run() {
    let mut sim = started_sim(4, t0(0));
    sim.put(spec(
        "a",
        with(
            every(10),
            json!({"retry": {"max_attempts": 3, "jitter": false}}),
        ),
    ));
    sim.advance(t0(10));
    let id = sim.id_of("a", t0(10));
    sim.take();
    sim.request_cancel(id);
    assert_eq!(sim.take(), vec![Action::Cancel { id, attempt: 1 }]);
    sim.complete(id, ExecStatus::Cancelled);
    assert_eq!(sim.execs[&id].status, ExecStatus::Cancelled);
}

#[test]
fn a_failure_after_cancel_is_not_retried() {
    let mut sim = started_sim(4, t0(0));
    sim.put(spec(
        "a",
        with(
            every(10),
            json!({"retry": {"max_attempts": 3, "jitter": false}}),
        ),
    ));
    sim.advance(t0(10));
    let id = sim.id_of("a", t0(10));
    sim.request_cancel(id);
    sim.complete(id, ExecStatus::Failed);
    // Not retried; the store records a run whose cancel was requested as cancelled.
    assert_eq!(sim.execs[&id].status, ExecStatus::Cancelled);
    assert_eq!(sim.execs[&id].attempt, 1);
}

#[test]
fn removing_a_job_cancels_its_runs_and_drops_its_timers() {
    let mut sim = started_sim(1, t0(0));
    sim.put(spec("a", every(10)));
    sim.advance(t0(20)); // one running, one queued (a single slot)
    let running = sim.id_of("a", t0(10));
    assert_eq!(sim.engine.stats().queued, 1);
    sim.take();
    sim.remove("a");
    assert_eq!(
        sim.take(),
        vec![Action::Cancel {
            id: running,
            attempt: 1
        }]
    );
    assert_eq!(sim.engine.next_wakeup(), None);
    let stats = sim.engine.stats();
    assert_eq!((stats.jobs, stats.queued, stats.timers), (0, 0, 0));
    sim.complete(running, ExecStatus::Cancelled);
    assert_eq!(sim.engine.stats().running, 0);
}

#[test]
fn changing_a_job_rearms_from_its_new_schedule() {
    let mut sim = started_sim(4, t0(0));
    sim.put(spec("a", every(60)));
    assert_eq!(sim.engine.next_wakeup(), Some(t0(60)));
    sim.now = t0(30);
    sim.put(spec("a", every(10)));
    assert_eq!(sim.engine.next_wakeup(), Some(t0(40)));
    sim.advance(t0(40));
    assert_eq!(Sim::fires(&sim.take()).len(), 1);
    // A change that does not touch the timing keeps the timer.
    sim.input(Input::JobUpserted(Arc::new(sim.jobs["a"].clone())));
    assert_eq!(sim.engine.next_wakeup(), Some(t0(50)));
    assert_eq!(sim.engine.stats().timers, 1);
}

#[test]
fn an_invalid_schedule_is_ignored() {
    let mut sim = started_sim(4, t0(0));
    let mut bad = spec("bad", json!({}));
    bad.schedule = rota_core::Schedule::Cron {
        cron: "not a cron".into(),
        timezone: "UTC".into(),
    };
    sim.put(bad);
    assert_eq!(sim.engine.stats().jobs, 0);
}

#[test]
fn many_jobs_share_one_compiled_schedule_and_stay_compact() {
    let mut sim = started_sim(4, t0(0));
    for i in 0..100 {
        sim.put(spec(
            &format!("j{i}"),
            json!({"schedule": {"cron": "0 3 * * *", "timezone": "Europe/Berlin"}}),
        ));
    }
    assert_eq!(sim.engine.schedules.len(), 1);
    // Per job: the entry, plus a timer in the heap (a name-index row and the
    // name itself come on top, about 70 bytes for a short name).
    let per_job = std::mem::size_of::<jobs::JobEntry>() + timers::TimerHeap::ENTRY_BYTES;
    assert!(per_job <= 160, "a job takes {per_job} bytes");
}
