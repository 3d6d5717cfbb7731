//! The design's DST rule on real zones, the simple schedules, and properties of
//! `next_after` checked against a brute-force reading of the rule.

use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;

use super::*;
use crate::{EventTrigger, HumanDuration};

fn utc(s: &str) -> Timestamp {
    DateTime::parse_from_rfc3339(s)
        .expect(s)
        .with_timezone(&Utc)
}

fn cron(expr: &str, zone: &str) -> CompiledSchedule {
    CompiledSchedule::compile(&Schedule::Cron {
        cron: expr.to_string(),
        timezone: zone.to_string(),
    })
    .unwrap_or_else(|e| panic!("{expr} in {zone}: {e}"))
}

/// The fires of `schedule` strictly after `from`, up to and including `until`.
fn fires(schedule: &CompiledSchedule, from: &str, until: &str) -> Vec<String> {
    let (mut t, until) = (utc(from), utc(until));
    let anchor = t;
    let mut out = Vec::new();
    while let Some(next) = schedule.next_after(t, anchor) {
        if next > until {
            break;
        }
        assert!(next > t, "{next} is not after {t}");
        out.push(next.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        t = next;
    }
    out
}

#[test]
fn berlin_spring_forward_fires_a_skipped_time_at_the_end_of_the_gap() {
    // 2026-03-29: 02:00 CET becomes 03:00 CEST at 01:00Z.
    let s = cron("30 2 * * *", "Europe/Berlin");
    assert_eq!(
        fires(&s, "2026-03-28T00:00:00Z", "2026-03-30T23:00:00Z"),
        [
            "2026-03-28T01:30:00Z", // 02:30 CET
            "2026-03-29T01:00:00Z", // 02:30 skipped: 03:00 CEST
            "2026-03-30T00:30:00Z", // 02:30 CEST
        ]
    );
    // Several skipped times coalesce into one fire; the hour after is untouched.
    let s = cron("0,30 2,3 * * *", "Europe/Berlin");
    assert_eq!(
        fires(&s, "2026-03-29T00:00:00Z", "2026-03-29T02:00:00Z"),
        ["2026-03-29T01:00:00Z", "2026-03-29T01:30:00Z"]
    );
    // Every 15 minutes: 01:45 CET, then 03:00 CEST, on without a double fire.
    let s = cron("*/15 * * * *", "Europe/Berlin");
    assert_eq!(
        fires(&s, "2026-03-29T00:40:00Z", "2026-03-29T01:20:00Z"),
        [
            "2026-03-29T00:45:00Z",
            "2026-03-29T01:00:00Z",
            "2026-03-29T01:15:00Z"
        ]
    );
}

#[test]
fn berlin_fall_back_fires_a_fixed_time_once_and_a_wildcard_hour_in_both_hours() {
    // 2026-10-25: 03:00 CEST becomes 02:00 CET at 01:00Z; 02:xx happens twice.
    let s = cron("30 2 * * *", "Europe/Berlin");
    assert_eq!(
        fires(&s, "2026-10-24T12:00:00Z", "2026-10-26T12:00:00Z"),
        ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
    );
    // Asked from inside the second 02:xx, the fixed-time job waits for tomorrow.
    assert_eq!(
        s.next_after(utc("2026-10-25T01:10:00Z"), utc("2026-01-01T00:00:00Z")),
        Some(utc("2026-10-26T01:30:00Z"))
    );
    let s = cron("0 * * * *", "Europe/Berlin");
    assert_eq!(
        fires(&s, "2026-10-24T22:30:00Z", "2026-10-25T03:00:00Z"),
        [
            "2026-10-24T23:00:00Z", // 01:00 CEST
            "2026-10-25T00:00:00Z", // 02:00 CEST
            "2026-10-25T01:00:00Z", // 02:00 CET
            "2026-10-25T02:00:00Z", // 03:00 CET
            "2026-10-25T03:00:00Z",
        ]
    );
    let s = cron("*/15 * * * *", "Europe/Berlin");
    let quarter_hours: Vec<String> = (0..9)
        .map(|i| {
            (utc("2026-10-25T00:00:00Z") + TimeDelta::minutes(15 * i))
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string()
        })
        .collect();
    assert_eq!(
        fires(&s, "2026-10-24T23:50:00Z", "2026-10-25T02:00:00Z"),
        quarter_hours
    );
    // A fixed hour with a minute step: the first 02:xx only.
    let s = cron("*/15 2 * * *", "Europe/Berlin");
    assert_eq!(
        fires(&s, "2026-10-24T12:00:00Z", "2026-10-25T23:59:00Z"),
        [
            "2026-10-25T00:00:00Z",
            "2026-10-25T00:15:00Z",
            "2026-10-25T00:30:00Z",
            "2026-10-25T00:45:00Z"
        ]
    );
}

#[test]
fn new_york_transitions() {
    // 2026-03-08: 02:00 EST becomes 03:00 EDT at 07:00Z.
    let s = cron("30 2 * * *", "America/New_York");
    assert_eq!(
        fires(&s, "2026-03-07T00:00:00Z", "2026-03-09T23:00:00Z"),
        [
            "2026-03-07T07:30:00Z",
            "2026-03-08T07:00:00Z",
            "2026-03-09T06:30:00Z"
        ]
    );
    // 2026-11-01: 02:00 EDT becomes 01:00 EST at 06:00Z; 01:xx happens twice.
    let s = cron("30 1 * * *", "America/New_York");
    assert_eq!(
        fires(&s, "2026-10-31T12:00:00Z", "2026-11-02T12:00:00Z"),
        ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]
    );
    let s = cron("0 * * * *", "America/New_York");
    assert_eq!(
        fires(&s, "2026-11-01T04:30:00Z", "2026-11-01T07:00:00Z"),
        [
            "2026-11-01T05:00:00Z", // 01:00 EDT
            "2026-11-01T06:00:00Z", // 01:00 EST
            "2026-11-01T07:00:00Z", // 02:00 EST
        ]
    );
    let s = cron("*/20 * * * *", "America/New_York");
    assert_eq!(
        fires(&s, "2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z"),
        [
            "2026-11-01T05:40:00Z",
            "2026-11-01T06:00:00Z",
            "2026-11-01T06:20:00Z"
        ]
    );
}

#[test]
fn seconds_field() {
    let s = cron("*/1 * * * * *", "UTC");
    assert_eq!(
        fires(&s, "2026-01-01T00:00:00Z", "2026-01-01T00:00:03Z"),
        [
            "2026-01-01T00:00:01Z",
            "2026-01-01T00:00:02Z",
            "2026-01-01T00:00:03Z"
        ]
    );
    // A fraction of a second still leads to the next whole second.
    let anchor = utc("2026-01-01T00:00:00Z");
    assert_eq!(
        s.next_after(utc("2026-01-01T00:00:00.5Z"), anchor),
        Some(utc("2026-01-01T00:00:01Z"))
    );
    let s = cron("30 * * * * *", "UTC");
    assert_eq!(
        fires(&s, "2026-01-01T00:00:30Z", "2026-01-01T00:02:00Z"),
        ["2026-01-01T00:01:30Z"]
    );
    assert_eq!(
        s.next_after(utc("2026-01-01T00:00:29.999Z"), anchor),
        Some(utc("2026-01-01T00:00:30Z"))
    );
    // Every second through Berlin's gap: 01:59:59 CET, then 03:00:00 CEST.
    let s = cron("* * * * * *", "Europe/Berlin");
    assert_eq!(
        fires(&s, "2026-03-29T00:59:58Z", "2026-03-29T01:00:01Z"),
        [
            "2026-03-29T00:59:59Z",
            "2026-03-29T01:00:00Z",
            "2026-03-29T01:00:01Z"
        ]
    );
    // And through the repeated hour, every real second once.
    assert_eq!(
        fires(&s, "2026-10-25T00:59:58Z", "2026-10-25T01:00:01Z"),
        [
            "2026-10-25T00:59:59Z",
            "2026-10-25T01:00:00Z",
            "2026-10-25T01:00:01Z"
        ]
    );
}

#[test]
fn daily_in_a_zone() {
    let s = cron("@daily", "Europe/Berlin");
    assert_eq!(
        fires(&s, "2026-06-01T12:00:00Z", "2026-06-03T12:00:00Z"),
        ["2026-06-01T22:00:00Z", "2026-06-02T22:00:00Z"]
    );
    // Sao Paulo skipped midnight on 2018-11-04 (00:00 -03 became 01:00 -02):
    // that day's run is at 01:00 local.
    let s = cron("@daily", "America/Sao_Paulo");
    assert_eq!(
        fires(&s, "2018-11-03T12:00:00Z", "2018-11-05T12:00:00Z"),
        ["2018-11-04T03:00:00Z", "2018-11-05T02:00:00Z"]
    );
    // Samoa skipped all of 2011-12-30: that day's noon runs when the clock resumes.
    let s = cron("0 12 * * *", "Pacific/Apia");
    assert_eq!(
        fires(&s, "2011-12-29T00:00:00Z", "2011-12-31T12:00:00Z"),
        [
            "2011-12-29T22:00:00Z",
            "2011-12-30T10:00:00Z",
            "2011-12-30T22:00:00Z"
        ]
    );
}

#[test]
fn unknown_zone_and_bad_cron_name_their_field() {
    let err = CompiledSchedule::compile(&Schedule::Cron {
        cron: "0 * * * *".into(),
        timezone: "Mars/Olympus".into(),
    })
    .unwrap_err();
    assert_eq!(err.field, "timezone");
    assert!(err.message.contains("\"Mars/Olympus\""), "{err}");
    let err = CompiledSchedule::compile(&Schedule::Cron {
        cron: "0 25 * * *".into(),
        timezone: "UTC".into(),
    })
    .unwrap_err();
    assert_eq!(err.to_string(), "cron: hour 25 is out of 0-23");
}

#[test]
fn every_counts_from_the_anchor() {
    let s = CompiledSchedule::compile(&Schedule::Every(HumanDuration::from_secs(10))).unwrap();
    assert!(s.is_recurring() && s.fires_on_its_own());
    let anchor = utc("2026-01-01T00:00:00Z");
    let at = |secs: i64| anchor + TimeDelta::seconds(secs);
    assert_eq!(s.next_after(anchor, anchor), Some(at(10)));
    assert_eq!(s.next_after(at(25), anchor), Some(at(30)));
    assert_eq!(s.next_after(at(30), anchor), Some(at(40)));
    assert_eq!(s.next_after(at(-3600), anchor), Some(at(10)));
    let s = CompiledSchedule::compile(&Schedule::Every(HumanDuration::from_millis(1500))).unwrap();
    assert_eq!(
        s.next_after(at(2), anchor),
        Some(anchor + TimeDelta::milliseconds(3000))
    );
    // Far out, the answer is None rather than a panic.
    let s = CompiledSchedule::compile(&Schedule::Every(HumanDuration(Duration::from_secs(
        u64::MAX / 4,
    ))))
    .unwrap();
    assert_eq!(s.next_after(anchor, anchor), None);
}

#[test]
fn every_below_one_second_is_rejected() {
    let err =
        CompiledSchedule::compile(&Schedule::Every(HumanDuration::from_millis(500))).unwrap_err();
    assert_eq!(err.field, "every");
    assert!(
        err.message.contains("500ms") && err.message.contains("1s"),
        "{err}"
    );
}

#[test]
fn at_and_after_fire_once() {
    let anchor = utc("2026-01-01T00:00:00Z");
    let at = utc("2026-02-01T00:00:00Z");
    let s = CompiledSchedule::compile(&Schedule::At(at)).unwrap();
    assert!(!s.is_recurring() && s.fires_on_its_own());
    assert_eq!(s.next_after(anchor, anchor), Some(at));
    assert_eq!(s.next_after(at, anchor), None);
    assert_eq!(s.next_after(at + TimeDelta::days(1), anchor), None);

    let s = CompiledSchedule::compile(&Schedule::After(HumanDuration::from_secs(90))).unwrap();
    assert!(!s.is_recurring() && s.fires_on_its_own());
    let fire = anchor + TimeDelta::seconds(90);
    assert_eq!(s.next_after(anchor, anchor), Some(fire));
    assert_eq!(s.next_after(fire, anchor), None);
    let err = CompiledSchedule::compile(&Schedule::After(HumanDuration::from_secs(0))).unwrap_err();
    assert_eq!(err.field, "after");
}

#[test]
fn manual_and_events_never_fire_on_their_own() {
    let anchor = utc("2026-01-01T00:00:00Z");
    for schedule in [
        Schedule::Manual,
        Schedule::On(EventTrigger {
            event: "deploy".into(),
            filters: Default::default(),
        }),
    ] {
        let s = CompiledSchedule::compile(&schedule).unwrap();
        assert!(!s.is_recurring() && !s.fires_on_its_own());
        assert_eq!(s.next_after(anchor, anchor), None);
    }
}

#[test]
fn stays_small() {
    assert!(std::mem::size_of::<CompiledSchedule>() <= 64);
}

// ---- properties ---------------------------------------------------------------

const PATTERNS: &[&str] = &[
    "30 2 * * *",
    "0 * * * *",
    "*/15 * * * *",
    "*/15 2 * * *",
    "0,30 1-3 * * *",
    "15 2,3 * * *",
    "0 */2 * * *",
    "@daily",
    "45 23 * * *",
    "* * * * * *",
    "30 * * * * *",
    "0 30 * * * *",
    "*/7 */3 * * * *",
    "0 0 1 * *",
];

/// Zones with their DST changes (and Samoa's skipped day) in the years given.
const ZONES: &[(&str, i32)] = &[
    ("Europe/Berlin", 2026),
    ("America/New_York", 2026),
    ("Australia/Lord_Howe", 2026), // 30-minute changes
    ("America/Sao_Paulo", 2018),   // changes at midnight
    ("America/Santiago", 2026),
    ("Pacific/Apia", 2011), // skipped a whole day
    ("Asia/Kolkata", 2026), // no DST
    ("UTC", 2026),
];

/// Offset changes of each zone of [`ZONES`] in its year, found by scanning hours
/// and bisecting.
fn transitions() -> &'static Vec<Vec<Timestamp>> {
    static CACHE: OnceLock<Vec<Vec<Timestamp>>> = OnceLock::new();
    CACHE.get_or_init(|| {
        ZONES
            .iter()
            .map(|(name, year)| {
                let zone: Tz = name.parse().unwrap();
                let offset = |secs: i64| {
                    let t = DateTime::from_timestamp(secs, 0).unwrap().naive_utc();
                    zone.offset_from_utc_datetime(&t).fix()
                };
                let start = Utc
                    .with_ymd_and_hms(*year, 1, 1, 0, 0, 0)
                    .unwrap()
                    .timestamp();
                let mut found = Vec::new();
                for hour in 0..366 * 24 {
                    let (mut lo, mut hi) = (start + hour * 3600, start + (hour + 1) * 3600);
                    if offset(lo) == offset(hi) {
                        continue;
                    }
                    while hi - lo > 1 {
                        let mid = (lo + hi) / 2;
                        if offset(mid) == offset(lo) {
                            lo = mid;
                        } else {
                            hi = mid;
                        }
                    }
                    found.push(DateTime::from_timestamp(hi, 0).unwrap());
                }
                found
            })
            .collect()
    })
}

/// The design's rule read literally, second by second: every matching civil time
/// fires at its instant; a repeated one at its first instant (and its second too
/// when the hour field is `*` or a step); a skipped one at the first instant the
/// clock shows again.
fn brute_force(s: &CronSchedule, from: Timestamp, until: Timestamp) -> Vec<Timestamp> {
    let margin = TimeDelta::hours(26);
    let mut c = (from.with_timezone(&s.zone).naive_local() - margin)
        .with_nanosecond(0)
        .unwrap();
    let end = until.with_timezone(&s.zone).naive_local() + margin;
    let mut out = Vec::new();
    let mut skipped_match = false;
    while c <= end {
        let matches = s.fields.matches(c);
        if matches || skipped_match {
            match s.zone.from_local_datetime(&c) {
                LocalResult::Single(t) => {
                    out.push(t.with_timezone(&Utc));
                    skipped_match = false;
                }
                LocalResult::Ambiguous(first, second) => {
                    out.push(first.with_timezone(&Utc));
                    if matches && s.fields.every_real_hour() {
                        out.push(second.with_timezone(&Utc));
                    }
                    skipped_match = false;
                }
                LocalResult::None => skipped_match = true,
            }
        }
        c += TimeDelta::seconds(1);
    }
    out.sort();
    out.dedup();
    out.retain(|t| *t > from && *t <= until);
    out
}

fn near_a_transition() -> impl Strategy<Value = (usize, CompiledSchedule, Timestamp)> {
    (
        0..ZONES.len(),
        0..PATTERNS.len(),
        any::<prop::sample::Index>(),
        -5400i64..5400,
    )
        .prop_map(|(z, p, which, shift)| {
            let (zone, year) = ZONES[z];
            let list = &transitions()[z];
            let base = if list.is_empty() {
                Utc.with_ymd_and_hms(year, 6, 1, 0, 0, 0).unwrap()
            } else {
                list[which.index(list.len())]
            };
            (z, cron(PATTERNS[p], zone), base + TimeDelta::seconds(shift))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Near DST changes, iterating `next_after` yields exactly the instants of the
    /// rule, each strictly after the one before.
    #[test]
    fn matches_the_rule_read_literally((_zone, schedule, from) in near_a_transition()) {
        let Kind::Cron(cron) = &schedule.kind else { unreachable!() };
        let until = from + TimeDelta::hours(3);
        let mut got = Vec::new();
        let mut t = from;
        while let Some(next) = schedule.next_after(t, from) {
            prop_assert!(next > t, "{} is not after {}", next, t);
            if next > until {
                break;
            }
            got.push(next);
            t = next;
        }
        prop_assert_eq!(got, brute_force(cron, from, until));
    }

    /// Anywhere in 2000-2100, in any of the zones: strictly after the input,
    /// strictly increasing, never the same instant twice.
    #[test]
    fn strictly_increasing(
        z in 0..ZONES.len(),
        p in 0..PATTERNS.len(),
        secs in 946_684_800i64..4_102_444_800,
        nanos in 0u32..1_000_000_000,
    ) {
        let s = cron(PATTERNS[p], ZONES[z].0);
        let mut t = DateTime::from_timestamp(secs, nanos).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..20 {
            let next = s.next_after(t, t).expect("cron fires again");
            prop_assert!(next > t);
            prop_assert!(seen.insert(next));
            t = next;
        }
    }

    #[test]
    fn every_is_the_first_multiple_after(
        every_ms in 1000u64..10_000_000,
        anchor in 0i64..4_000_000_000,
        offset_ms in -10_000_000i64..100_000_000_000,
    ) {
        let s = CompiledSchedule::compile(&Schedule::Every(HumanDuration::from_millis(every_ms))).unwrap();
        let anchor = DateTime::from_timestamp(anchor, 0).unwrap();
        let after = anchor + TimeDelta::milliseconds(offset_ms);
        let next = s.next_after(after, anchor).unwrap();
        let step = TimeDelta::milliseconds(every_ms as i64);
        prop_assert!(next > after);
        prop_assert!(next - step <= after || next - step == anchor);
        prop_assert_eq!((next - anchor).num_milliseconds() % every_ms as i64, 0);
        prop_assert!(next - anchor >= step);
    }
}

#[test]
fn brute_force_reference_is_not_trivial() {
    // The reference itself must see DST: in Berlin's fall-back hour `0 * * * *`
    // fires twice, `30 2 * * *` once.
    let hourly = cron("0 * * * *", "Europe/Berlin");
    let Kind::Cron(c) = &hourly.kind else {
        unreachable!()
    };
    let from = utc("2026-10-24T23:30:00Z");
    let until = utc("2026-10-25T01:30:00Z");
    assert_eq!(brute_force(c, from, until).len(), 2);
    let fixed = cron("30 2 * * *", "Europe/Berlin");
    let Kind::Cron(c) = &fixed.kind else {
        unreachable!()
    };
    assert_eq!(brute_force(c, from, until), [utc("2026-10-25T00:30:00Z")]);
    let _: NaiveDateTime = c.fields.next_match_from(from.naive_utc()).unwrap();
}
