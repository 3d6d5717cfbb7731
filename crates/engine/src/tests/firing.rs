//! Firing on schedule: every, cron, DST, one-off schedules, dispatch.

use super::*;

#[test]
fn every_second_fires_each_second_and_dispatches() {
    let mut sim = started_sim(10, t0(0));
    sim.put(spec("tick", every(1)));
    assert_eq!(sim.engine.next_wakeup(), Some(t0(1)));
    sim.advance(t0(3));
    let actions = sim.take();
    let fired = Sim::fired_summary(&actions);
    assert_eq!(
        fired,
        (1..=3)
            .map(|s| ("tick".to_string(), t0(s), Trigger::Schedule, true, false))
            .collect::<Vec<_>>()
    );
    let dispatched: Vec<(Ulid, u32)> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Dispatch {
                id, attempt, job, ..
            } if job == "tick" => Some((*id, *attempt)),
            _ => None,
        })
        .collect();
    assert_eq!(dispatched.len(), 3);
    for (id, _) in dispatched {
        sim.complete(id, ExecStatus::Succeeded);
        assert_eq!(sim.execs[&id].status, ExecStatus::Succeeded);
    }
    assert_eq!(sim.engine.stats().running, 0);
    assert_eq!(sim.engine.stats().fired_total, 3);
    assert_eq!(sim.repeated_fires, 0);
}

#[test]
fn six_field_cron_fires_on_seconds() {
    let mut sim = started_sim(10, t0(0));
    sim.put(spec(
        "quarter",
        json!({"schedule": {"cron": "*/15 * * * * *", "timezone": "UTC"}}),
    ));
    sim.advance(t0(60));
    let fired: Vec<Timestamp> = Sim::fires(&sim.take())
        .iter()
        .map(|f| f.scheduled_at)
        .collect();
    assert_eq!(fired, vec![t0(15), t0(30), t0(45), t0(60)]);
}

#[test]
fn one_shot_at_fires_once_then_disarms() {
    let mut sim = started_sim(10, t0(0));
    sim.put(spec(
        "once",
        json!({"schedule": {"at": "2026-01-01T00:00:10Z"}}),
    ));
    sim.advance(t0(100));
    assert_eq!(Sim::fires(&sim.take()).len(), 1);
    assert_eq!(sim.engine.next_wakeup(), None);
    assert_eq!(sim.engine.stats().timers, 0);
}

#[test]
fn manual_and_paused_jobs_have_no_timers() {
    let mut sim = started_sim(10, t0(0));
    sim.put(spec("by-hand", json!({})));
    sim.put(spec("held", with(every(1), json!({"paused": true}))));
    assert_eq!(sim.engine.next_wakeup(), None);
    sim.advance(t0(10));
    assert!(Sim::fires(&sim.take()).is_empty());
    // Resuming does not catch up on what passed while paused.
    sim.put(spec("held", every(1)));
    assert_eq!(sim.engine.next_wakeup(), Some(t0(11)));
}

/// Runs a cron job through `[from, to]`, completing each run at once; answers the
/// fired instants.
fn cron_instants(expr: &str, zone: &str, from: &str, to: &str) -> Vec<Timestamp> {
    let mut sim = started_sim(4, ts(from));
    sim.put(spec(
        "dst",
        json!({"schedule": {"cron": expr, "timezone": zone}}),
    ));
    let end = ts(to);
    let mut instants = Vec::new();
    while let Some(wake) = sim.engine.next_wakeup().filter(|w| *w <= end) {
        sim.advance(wake);
        for f in Sim::fires(&sim.take()) {
            instants.push(f.scheduled_at);
        }
        let running: Vec<Ulid> = sim.running.keys().copied().collect();
        for id in running {
            sim.complete(id, ExecStatus::Succeeded);
        }
    }
    assert_eq!(sim.repeated_fires, 0);
    instants
}

#[test]
fn dst_berlin_spring_forward_fires_skipped_time_at_three() {
    let got = cron_instants(
        "30 2 * * *",
        "Europe/Berlin",
        "2026-03-27T12:00:00Z",
        "2026-03-30T12:00:00Z",
    );
    assert_eq!(
        got,
        vec![
            ts("2026-03-28T01:30:00Z"), // 02:30 CET
            ts("2026-03-29T01:00:00Z"), // 02:30 does not exist: 03:00 CEST
            ts("2026-03-30T00:30:00Z"), // 02:30 CEST
        ]
    );
}

#[test]
fn dst_berlin_fall_back_fires_repeated_time_once() {
    let got = cron_instants(
        "30 2 * * *",
        "Europe/Berlin",
        "2026-10-24T12:00:00Z",
        "2026-10-26T12:00:00Z",
    );
    assert_eq!(
        got,
        vec![
            ts("2026-10-25T00:30:00Z"), // first 02:30 (CEST); not again at 01:30Z (CET)
            ts("2026-10-26T01:30:00Z"),
        ]
    );
}

#[test]
fn dst_berlin_hourly_fires_in_both_fall_back_hours() {
    let got = cron_instants(
        "0 * * * *",
        "Europe/Berlin",
        "2026-10-24T22:30:00Z",
        "2026-10-25T02:30:00Z",
    );
    assert_eq!(
        got,
        vec![
            ts("2026-10-24T23:00:00Z"), // 01:00 CEST
            ts("2026-10-25T00:00:00Z"), // 02:00 CEST
            ts("2026-10-25T01:00:00Z"), // 02:00 CET
            ts("2026-10-25T02:00:00Z"), // 03:00 CET
        ]
    );
}

#[test]
fn dst_new_york_spring_forward_and_fall_back() {
    let spring = cron_instants(
        "30 2 * * *",
        "America/New_York",
        "2026-03-07T00:00:00Z",
        "2026-03-09T12:00:00Z",
    );
    assert_eq!(
        spring,
        vec![
            ts("2026-03-07T07:30:00Z"), // 02:30 EST
            ts("2026-03-08T07:00:00Z"), // 02:30 skipped: 03:00 EDT
            ts("2026-03-09T06:30:00Z"), // 02:30 EDT
        ]
    );
    let fall = cron_instants(
        "30 2 * * *",
        "America/New_York",
        "2026-10-31T12:00:00Z",
        "2026-11-02T12:00:00Z",
    );
    assert_eq!(
        fall,
        vec![
            // 02:30 comes after the 02:00 EDT -> 01:00 EST switch: once, in EST.
            ts("2026-11-01T07:30:00Z"),
            ts("2026-11-02T07:30:00Z"),
        ]
    );
    // The repeated hour in New York is 01:00-02:00.
    let repeated = cron_instants(
        "30 1 * * *",
        "America/New_York",
        "2026-11-01T00:00:00Z",
        "2026-11-01T12:00:00Z",
    );
    assert_eq!(repeated, vec![ts("2026-11-01T05:30:00Z")]); // first 01:30 (EDT) only
    let hourly = cron_instants(
        "0 * * * *",
        "America/New_York",
        "2026-11-01T04:30:00Z",
        "2026-11-01T07:30:00Z",
    );
    assert_eq!(
        hourly,
        vec![
            ts("2026-11-01T05:00:00Z"), // 01:00 EDT
            ts("2026-11-01T06:00:00Z"), // 01:00 EST
            ts("2026-11-01T07:00:00Z"), // 02:00 EST
        ]
    );
}
