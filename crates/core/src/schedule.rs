//! When a schedule fires: cron in IANA zones with the design's DST rule, `every`,
//! `at`, `after`, `manual`.
//!
//! A cron expression matches wall-clock (civil) times in its zone; this module turns
//! them into instants. Most civil times are one instant. Around a DST change two
//! cases need a rule, and the design fixes it:
//!
//! - a civil time skipped by a spring-forward jump fires once, at the first real
//!   instant after the jump (Berlin `30 2 * * *` fires at 03:00 on the day the clock
//!   jumps from 02:00 to 03:00); several skipped times coalesce into that instant;
//! - a civil time that occurs twice fires once, at its first occurrence — unless
//!   the hour field is `*` or a step, in which case it fires in both real hours
//!   (`*/15 * * * *` keeps firing every 15 minutes through the repeated hour).
//!
//! croner has a DST policy of its own that differs in the details (it calls a
//! schedule "fixed" only when second, minute and hour are all single values, and
//! it drops skipped times of other schedules), so the search over civil times is
//! done here, on a compact copy of croner's parse (see the `cron` submodule).

mod cron;
#[cfg(test)]
mod tests;

use chrono::{
    DateTime, Datelike, LocalResult, NaiveDateTime, Offset, TimeDelta, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;

use crate::{Schedule, Timestamp, ValidationError};

/// The shortest `every` accepted.
const MIN_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Instants past this year are not computed (chrono's calendar ends not far beyond,
/// and no schedule needs them): `next_after` answers `None` there.
const LAST_YEAR: i32 = 9999;

const NANOS_PER_SEC: i128 = 1_000_000_000;

/// A schedule checked and prepared for fast `next_after` queries.
///
/// Small (64 bytes) and allocation-free: the scheduler keeps one per job, and a
/// query costs well under a microsecond.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledSchedule {
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Cron(CronSchedule),
    /// In nanoseconds, at least [`MIN_EVERY`].
    Every(i128),
    At(Timestamp),
    After(TimeDelta),
    Manual,
    /// Event triggers fire on events, never on their own.
    OnEvent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CronSchedule {
    fields: cron::CronFields,
    zone: Tz,
}

impl CompiledSchedule {
    /// Checks and prepares a schedule. Errors name the field relative to the
    /// schedule (`cron`, `timezone`, `every`, ...); callers prefix `schedule.`.
    pub fn compile(schedule: &Schedule) -> Result<Self, ValidationError> {
        let kind = match schedule {
            Schedule::Cron { cron, timezone } => {
                let zone: Tz = timezone.parse().map_err(|_| {
                    ValidationError::new(
                        "timezone",
                        format!(
                            "unknown time zone {timezone:?}; accepted: IANA names such as UTC, Europe/Berlin, America/New_York"
                        ),
                    )
                })?;
                Kind::Cron(CronSchedule {
                    fields: cron::parse(cron)?,
                    zone,
                })
            }
            Schedule::Every(every) => {
                if every.0 < MIN_EVERY {
                    return Err(ValidationError::new(
                        "every",
                        format!("{every} is too short; the minimum is 1s"),
                    ));
                }
                Kind::Every(every.0.as_nanos() as i128)
            }
            Schedule::At(at) => Kind::At(*at),
            Schedule::After(after) => {
                if after.0.is_zero() {
                    return Err(ValidationError::new(
                        "after",
                        "must be more than 0s; to run a job at once, run it by hand",
                    ));
                }
                Kind::After(after.to_chrono())
            }
            Schedule::Manual => Kind::Manual,
            Schedule::On(_) => Kind::OnEvent,
        };
        Ok(Self { kind })
    }

    /// The first instant strictly after `after`, or `None` when the schedule will
    /// not fire again. `anchor` is the job's last change (`updated_at`): the phase
    /// origin of `every` and the start of `after`.
    pub fn next_after(&self, after: Timestamp, anchor: Timestamp) -> Option<Timestamp> {
        match &self.kind {
            Kind::Cron(cron) => cron.next_after(after),
            Kind::Every(every) => next_every(after, anchor, *every),
            Kind::At(at) => (after < *at).then_some(*at),
            Kind::After(delay) => anchor
                .checked_add_signed(*delay)
                .filter(|fire| after < *fire),
            Kind::Manual | Kind::OnEvent => None,
        }
    }

    /// Whether the schedule fires by itself more than once (cron, every).
    pub fn is_recurring(&self) -> bool {
        matches!(self.kind, Kind::Cron(_) | Kind::Every(_))
    }

    /// Whether the schedule fires by itself at all (not `manual`, not `on`).
    pub fn fires_on_its_own(&self) -> bool {
        !matches!(self.kind, Kind::Manual | Kind::OnEvent)
    }
}

/// `anchor + k * every` for the least `k >= 1` that lands strictly after `after`.
fn next_every(after: Timestamp, anchor: Timestamp, every: i128) -> Option<Timestamp> {
    let nanos = |t: Timestamp| {
        i128::from(t.timestamp()) * NANOS_PER_SEC + i128::from(t.timestamp_subsec_nanos())
    };
    let elapsed = nanos(after) - nanos(anchor);
    let k = if elapsed < 0 { 1 } else { elapsed / every + 1 };
    let fire = nanos(anchor).checked_add(k.checked_mul(every)?)?;
    let secs = i64::try_from(fire.div_euclid(NANOS_PER_SEC)).ok()?;
    DateTime::from_timestamp(secs, fire.rem_euclid(NANOS_PER_SEC) as u32)
}

fn one_second() -> TimeDelta {
    TimeDelta::seconds(1)
}

/// The wall clock shown at `t` in `zone`; `None` past the calendar's end.
fn civil(zone: Tz, t: Timestamp) -> Option<NaiveDateTime> {
    let offset = zone.offset_from_utc_datetime(&t.naive_utc()).fix();
    t.naive_utc().checked_add_offset(offset)
}

/// The whole second after `t`'s second: the first candidate strictly after `t`.
fn next_whole_second(t: NaiveDateTime) -> Option<NaiveDateTime> {
    t.with_nanosecond(0)?.checked_add_signed(one_second())
}

/// A repeated stretch of wall clock: civil times in `[start, end)` occur twice,
/// once before the clock goes back and once after.
struct Fold {
    start: NaiveDateTime,
    end: NaiveDateTime,
}

impl Fold {
    /// The fold containing a civil time whose two instants are `earlier` and `later`.
    fn around(zone: Tz, earlier: DateTime<Tz>, later: DateTime<Tz>) -> Option<Self> {
        let old = earlier.offset().fix();
        let new = later.offset().fix();
        // Bisect for the instant of the change: offsets switch exactly once between
        // the two instants, and zone changes fall on whole seconds.
        let (mut lo, mut hi) = (earlier.timestamp(), later.timestamp());
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            let at = DateTime::from_timestamp(mid, 0)?;
            if zone.offset_from_utc_datetime(&at.naive_utc()).fix() == old {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let change = DateTime::from_timestamp(hi, 0)?;
        let start = change.naive_utc().checked_add_offset(new)?;
        let length = i64::from(old.local_minus_utc() - new.local_minus_utc());
        Some(Self {
            start,
            end: start.checked_add_signed(TimeDelta::seconds(length))?,
        })
    }
}

/// For a civil time inside a spring-forward gap: the first real instant after the
/// gap, and its civil time (where the wall clock resumes).
fn after_gap(zone: Tz, skipped: NaiveDateTime) -> Option<(Timestamp, NaiveDateTime)> {
    let resolves = |t: NaiveDateTime| !matches!(zone.from_local_datetime(&t), LocalResult::None);
    // Gallop forward to a civil time that exists, then bisect for the first one.
    // Gaps are an hour or less in practice, a day at most (Samoa, 2011).
    let mut invalid = 0i64;
    let mut step = 1i64;
    let valid = loop {
        let probe = skipped.checked_add_signed(TimeDelta::seconds(step))?;
        if resolves(probe) {
            break step;
        }
        if step > 4 * 86_400 {
            return None;
        }
        invalid = step;
        step *= 2;
    };
    let (mut lo, mut hi) = (invalid, valid);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if resolves(skipped.checked_add_signed(TimeDelta::seconds(mid))?) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    let resumed = skipped.checked_add_signed(TimeDelta::seconds(hi))?;
    let instant = zone.from_local_datetime(&resumed).earliest()?;
    Some((instant.with_timezone(&Utc), resumed))
}

impl CronSchedule {
    fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        if after.year() >= LAST_YEAR {
            return None;
        }
        if self.zone == Tz::UTC {
            let from = next_whole_second(after.naive_utc())?;
            return self.fields.next_match_from(from).map(|c| c.and_utc());
        }
        let local = civil(self.zone, after)?;
        let first = self.first_occurrence_after(after, local);
        if !self.fields.every_real_hour() {
            return first;
        }
        match (first, self.second_occurrence_after(after, local)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The first instant after `after` at which a matching civil time occurs for the
    /// first time (or, if skipped, the end of its gap). These instants rise with
    /// the civil times, so the search walks civil time from `after`'s clock on.
    fn first_occurrence_after(&self, after: Timestamp, local: NaiveDateTime) -> Option<Timestamp> {
        let mut from = next_whole_second(local)?;
        loop {
            let candidate = self.fields.next_match_from(from)?;
            match self.zone.from_local_datetime(&candidate) {
                LocalResult::Single(t) => {
                    let t = t.with_timezone(&Utc);
                    if t > after {
                        return Some(t);
                    }
                    from = candidate.checked_add_signed(one_second())?;
                }
                LocalResult::Ambiguous(earlier, later) => {
                    let t = earlier.with_timezone(&Utc);
                    if t > after {
                        return Some(t);
                    }
                    // `after` lies in the second pass through this fold, so no first
                    // occurrence inside it is still ahead: resume past its end.
                    from = Fold::around(self.zone, earlier, later)?
                        .end
                        .max(candidate.checked_add_signed(one_second())?);
                }
                LocalResult::None => {
                    let (t, resumed) = after_gap(self.zone, candidate)?;
                    if t > after {
                        return Some(t);
                    }
                    from = resumed.max(candidate.checked_add_signed(one_second())?);
                }
            }
        }
    }

    /// For schedules that fire in both real hours of a repeated hour: the first
    /// second occurrence of a matching civil time after `after`. Only one fold can
    /// hold it — the one `after` is in — since any later fold's first pass comes
    /// earlier and is found by [`Self::first_occurrence_after`].
    fn second_occurrence_after(&self, after: Timestamp, local: NaiveDateTime) -> Option<Timestamp> {
        let whole = local.with_nanosecond(0)?;
        let LocalResult::Ambiguous(earlier, later) = self.zone.from_local_datetime(&whole) else {
            return None;
        };
        let fold = Fold::around(self.zone, earlier, later)?;
        // In the first pass every second occurrence is ahead; in the second pass,
        // those after `after`'s own clock.
        let from = if after < later.with_timezone(&Utc) {
            fold.start
        } else {
            next_whole_second(local)?
        };
        let candidate = self.fields.next_match_from(from)?;
        if candidate >= fold.end {
            return None;
        }
        let t = self.zone.from_local_datetime(&candidate).latest()?;
        Some(t.with_timezone(&Utc)).filter(|t| *t > after)
    }
}
