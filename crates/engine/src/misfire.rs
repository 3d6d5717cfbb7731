//! Finding the instants a misfire policy has to consider: the newest few in a
//! range, without walking a range that may hold millions of them (a one-second
//! schedule left alone for a week).

use std::collections::VecDeque;

use chrono::TimeDelta;
use rota_core::{CompiledSchedule, Timestamp};

/// Walks at most this many instants per limit before switching to the backward search.
const FORWARD_SCAN_FACTOR: usize = 4;
/// A walk never takes more steps than this, whatever the schedule.
const MAX_WALK: usize = 1_000_000;

/// The newest `limit` instants of `schedule` in `(lo, hi]`, oldest first.
pub(super) fn latest_instants(
    schedule: &CompiledSchedule,
    anchor: Timestamp,
    lo: Timestamp,
    hi: Timestamp,
    limit: usize,
) -> Vec<Timestamp> {
    if limit == 0 || hi <= lo {
        return Vec::new();
    }
    // Common case: few instants in the range; one forward walk answers exactly.
    let scan = limit.saturating_mul(FORWARD_SCAN_FACTOR).max(64);
    let (found, complete) = walk(schedule, anchor, lo, hi, limit, scan);
    if complete {
        return found.into();
    }
    // Too many: widen a window back from `hi` until it holds more than `limit`
    // instants (or reaches `lo`); the newest `limit` all lie in that window.
    let mut span = TimeDelta::seconds(1);
    let start = loop {
        let start = hi.checked_sub_signed(span).map_or(lo, |s| s.max(lo));
        let (in_window, complete) = walk(schedule, anchor, start, hi, limit + 1, limit + 1);
        if start == lo || in_window.len() > limit || !complete {
            break start;
        }
        span = match span.checked_mul(2) {
            Some(wider) => wider,
            None => break lo,
        };
    };
    walk(schedule, anchor, start, hi, limit, MAX_WALK).0.into()
}

/// Instants in `(lo, hi]` from the oldest, keeping the newest `keep`, for at most
/// `steps` instants; the flag tells whether the walk reached `hi`.
fn walk(
    schedule: &CompiledSchedule,
    anchor: Timestamp,
    lo: Timestamp,
    hi: Timestamp,
    keep: usize,
    steps: usize,
) -> (VecDeque<Timestamp>, bool) {
    let mut found = VecDeque::with_capacity(keep.min(64));
    let mut cursor = lo;
    for _ in 0..steps {
        match schedule.next_after(cursor, anchor) {
            // A schedule that does not move forward would loop forever: treat it as ended.
            Some(next) if next > cursor && next <= hi => {
                if found.len() == keep {
                    found.pop_front();
                }
                found.push_back(next);
                cursor = next;
            }
            _ => return (found, true),
        }
    }
    // Out of steps: complete only if nothing is left before `hi`.
    let done = !matches!(schedule.next_after(cursor, anchor), Some(n) if n > cursor && n <= hi);
    (found, done)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use rota_core::{HumanDuration, Schedule};

    use super::*;

    fn at(secs: i64) -> Timestamp {
        chrono::Utc.timestamp_opt(secs, 0).single().expect("valid")
    }

    fn every(secs: u64) -> CompiledSchedule {
        CompiledSchedule::compile(&Schedule::Every(HumanDuration::from_secs(secs)))
            .expect("every compiles")
    }

    #[test]
    fn few_instants_are_found_by_the_forward_walk() {
        let s = every(10);
        let got = latest_instants(&s, at(0), at(5), at(45), 10);
        assert_eq!(got, vec![at(10), at(20), at(30), at(40)]);
        assert_eq!(
            latest_instants(&s, at(0), at(5), at(45), 2),
            vec![at(30), at(40)]
        );
        assert_eq!(
            latest_instants(&s, at(0), at(40), at(45), 2),
            Vec::<Timestamp>::new()
        );
    }

    #[test]
    fn range_bounds_are_exclusive_then_inclusive() {
        let s = every(10);
        assert_eq!(
            latest_instants(&s, at(0), at(10), at(30), 5),
            vec![at(20), at(30)]
        );
    }

    #[test]
    fn a_huge_range_answers_the_newest_without_walking_it_all() {
        // A week of one-second instants: far beyond the forward scan.
        let s = every(1);
        let week = 7 * 86_400;
        let got = latest_instants(&s, at(0), at(0), at(week), 3);
        assert_eq!(got, vec![at(week - 2), at(week - 1), at(week)]);
        let got = latest_instants(&s, at(0), at(0), at(week), 1000);
        assert_eq!(got.len(), 1000);
        assert_eq!(got.first(), Some(&at(week - 999)));
        assert_eq!(got.last(), Some(&at(week)));
    }
}
