//! Cron expressions: the field-by-field check that explains what is wrong, and the
//! compact matcher that finds the next matching wall-clock time.
//!
//! Parsing goes in three steps. [`parse`] reads each field itself, so that a
//! mistake is reported in words (`hour 25 is out of 0-23`) rather than in croner's
//! terms, and writes the field back in plain numbers (names, `?`, `a/n` and the
//! `@daily`-style nicknames resolved). croner then parses that canonical text into
//! its bitfields — croner stays the authority on what `L`, `W` and `#` mean — and
//! [`CronFields`] copies those bits into a few machine words.
//!
//! The copy exists for size and speed: a parsed `croner::Cron` owns the pattern
//! text and a 5 000-entry year table (about 5 KiB per job), while the scheduler
//! keeps one schedule per job for up to a million jobs. [`CronFields`] is `Copy`,
//! under 50 bytes, and its search ([`CronFields::next_match_from`]) allocates
//! nothing. Its results are checked against croner's own search by a property test.
//!
//! Everything here is wall-clock (civil) time; time zones and the DST rule live in
//! the parent module.

use chrono::{Datelike, Days, NaiveDate, NaiveDateTime, Timelike};
use croner::parser::{CronParser, Seconds, Year};

use crate::ValidationError;

/// One field of a cron expression: its name in messages, its range, and which
/// extras it accepts.
struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    /// Names accepted in place of numbers (index + `min` is the value), if any.
    names: &'static [&'static str],
    /// Day of month: `?`, `L`, `LW`, `15W`.
    day_of_month: bool,
    /// Day of week: `?`, `5L`, `5#2`; `7` is Sunday like `0`.
    day_of_week: bool,
}

const MONTH_NAMES: &[&str] = &[
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAY_NAMES: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const SECOND: FieldSpec = FieldSpec {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
    day_of_month: false,
    day_of_week: false,
};
const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    ..SECOND
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    max: 23,
    ..SECOND
};
const DAY: FieldSpec = FieldSpec {
    name: "day",
    min: 1,
    max: 31,
    names: &[],
    day_of_month: true,
    day_of_week: false,
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: MONTH_NAMES,
    day_of_month: false,
    day_of_week: false,
};
const WEEKDAY: FieldSpec = FieldSpec {
    name: "weekday",
    min: 0,
    max: 7,
    names: WEEKDAY_NAMES,
    day_of_month: false,
    day_of_week: true,
};

const NICKNAMES: &[(&str, &str)] = &[
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

const FIELD_COUNT: &str = "expected 5 fields (minute hour day month weekday) or 6 (second first)";

impl FieldSpec {
    fn range_text(&self) -> String {
        match self.names.first().zip(self.names.last()) {
            Some((first, last)) => format!("{}-{} (or {first}-{last})", self.min, self.max),
            None => format!("{}-{}", self.min, self.max),
        }
    }

    /// The largest step that still means something: one full turn of the field.
    fn max_step(&self) -> u32 {
        if self.day_of_week {
            7
        } else {
            self.max - self.min + 1
        }
    }

    fn accepted(&self) -> String {
        let mut text = format!(
            "accepted: *, a number {}, a range a-b, a step */n or a-b/n, and lists of these separated by commas",
            self.range_text()
        );
        if self.day_of_month {
            text.push_str(
                "; also ? (any), L (last day), LW (last weekday), 15W (weekday nearest the 15th)",
            );
        }
        if self.day_of_week {
            text.push_str("; also ? (any), 5L (last Friday of the month), 5#2 (second Friday)");
        }
        text
    }

    fn error(&self, message: impl std::fmt::Display) -> ValidationError {
        ValidationError::new("cron", format!("{} {message}", self.name))
    }

    fn not_understood(&self, item: &str) -> ValidationError {
        self.error(format!("{item:?} is not understood; {}", self.accepted()))
    }

    /// A number or (where the field has them) a name, checked against the range.
    fn value(&self, text: &str, item: &str) -> Result<u32, ValidationError> {
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            let n: u32 = text
                .parse()
                .map_err(|_| self.error(format!("{text} is out of {}", self.range_text())))?;
            if n < self.min || n > self.max {
                return Err(self.error(format!("{n} is out of {}", self.range_text())));
            }
            return Ok(n);
        }
        if let Some(i) = self
            .names
            .iter()
            .position(|name| name.eq_ignore_ascii_case(text))
        {
            return Ok(i as u32 + self.min);
        }
        if text.is_empty() {
            return Err(self.not_understood(item));
        }
        Err(self.error(format!(
            "{text:?} is not a number{}; {}",
            if self.names.is_empty() {
                String::new()
            } else {
                format!(" or a name ({})", self.names.join(" "))
            },
            self.accepted()
        )))
    }

    fn step(&self, text: &str, item: &str) -> Result<u32, ValidationError> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.not_understood(item));
        }
        let max = self.max_step();
        match text.parse::<u32>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(self.error(format!("step {text} is out of 1-{max}"))),
        }
    }

    /// Checks one field and writes it back in the plain numeric form croner reads.
    fn canonical(&self, field: &str) -> Result<String, ValidationError> {
        if field == "*" || (field == "?" && (self.day_of_month || self.day_of_week)) {
            return Ok("*".to_string());
        }
        let mut out = Vec::new();
        for item in field.split(',') {
            if item.is_empty() {
                return Err(self.error(format!(
                    "list {field:?} has an empty entry; separate values with single commas"
                )));
            }
            out.push(self.canonical_item(item)?);
        }
        Ok(out.join(","))
    }

    fn canonical_item(&self, item: &str) -> Result<String, ValidationError> {
        if item == "*" || (item == "?" && (self.day_of_month || self.day_of_week)) {
            return Err(self.error(format!(
                "{item} must stand alone, not in a list; {}",
                self.accepted()
            )));
        }
        if self.day_of_month {
            if item.eq_ignore_ascii_case("L") || item.eq_ignore_ascii_case("LW") {
                return Ok(item.to_ascii_uppercase());
            }
            if let Some(day) = strip_suffix_ignore_case(item, 'W') {
                let day = self.value(day, item)?;
                return Ok(format!("{day}W"));
            }
        }
        if self.day_of_week {
            if let Some((day, nth)) = item.split_once('#') {
                let day = self.value(day, item)?;
                return match nth.parse::<u32>() {
                    Ok(n) if (1..=5).contains(&n) => Ok(format!("{day}#{n}")),
                    _ => Err(self.error(format!(
                        "{item:?}: the occurrence after # must be 1-5, e.g. 5#2 for the second Friday"
                    ))),
                };
            }
            if item.eq_ignore_ascii_case("L") {
                return Err(self.error(
                    "L needs a weekday before it, e.g. 5L for the last Friday of the month",
                ));
            }
            if let Some(day) = strip_suffix_ignore_case(item, 'L') {
                let day = self.value(day, item)?;
                return Ok(format!("{day}L"));
            }
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(self.step(step, item)?)),
            None => (item, None),
        };
        let (low, high) = if range == "*" {
            if step.is_none() {
                return Err(self.not_understood(item));
            }
            (self.min, self.max)
        } else if let Some((low, high)) = range.split_once('-') {
            let low = self.value(low, item)?;
            // `FRI-SUN` means Friday to Sunday: Sunday closes a range as 7.
            let high = if self.day_of_week && high.eq_ignore_ascii_case("SUN") {
                7
            } else {
                self.value(high, item)?
            };
            if low > high {
                return Err(self.error(format!(
                    "range {low}-{high} runs backwards; write the lower value first"
                )));
            }
            (low, high)
        } else {
            let value = self.value(range, item)?;
            match step {
                // `5/15` is Quartz shorthand for `5-59/15`; Sunday-as-7 is left out so
                // that a weekday step does not fire on Sunday twice.
                Some(_) if self.day_of_week => (value, 6.max(value)),
                Some(_) => (value, self.max),
                None => return Ok(value.to_string()),
            }
        };
        Ok(match step {
            Some(step) if range == "*" => format!("*/{step}"),
            Some(step) => format!("{low}-{high}/{step}"),
            None => format!("{low}-{high}"),
        })
    }
}

/// `text` without a final `suffix` (either case), if it ends in one.
fn strip_suffix_ignore_case(text: &str, suffix: char) -> Option<&str> {
    text.strip_suffix(suffix.to_ascii_uppercase())
        .or_else(|| text.strip_suffix(suffix.to_ascii_lowercase()))
}

/// A parsed cron expression, reduced to bit masks. Bit `n` of a mask stands for the
/// value `n` (days of the month and months count from 1, weekdays from Sunday = 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CronFields {
    seconds: u64,
    minutes: u64,
    hours: u32,
    days: u32,
    /// Days written `15W`: the weekday nearest to them.
    nearest_weekday: u32,
    /// `L` in the day-of-month field.
    last_day: bool,
    /// `LW` in the day-of-month field.
    last_weekday: bool,
    months: u16,
    weekdays: u8,
    /// `5#2`: `nth_weekday[1]` has bit 5 set.
    nth_weekday: [u8; 5],
    /// `5L`.
    last_of_weekday: u8,
    star_days: bool,
    star_weekdays: bool,
    both_days: bool,
    /// The hour field is `*` or a step: in a repeated hour such a schedule fires in
    /// both real hours, where any other fires in the first only.
    every_real_hour: bool,
}

/// croner's component flags (its `component` module is private; these values are
/// part of its 4.x data layout).
mod bit {
    pub(super) const ALL: u8 = 1;
    pub(super) const NTH: [u8; 5] = [1 << 1, 1 << 2, 1 << 3, 1 << 4, 1 << 5];
    pub(super) const LAST: u8 = 1 << 6;
    pub(super) const CLOSEST_WEEKDAY: u8 = 1 << 7;
}

/// Checks a cron expression and reduces it to [`CronFields`]. Errors name the field
/// `cron` and say which part of the expression is wrong.
pub(crate) fn parse(expression: &str) -> Result<CronFields, ValidationError> {
    let trimmed = expression.trim();
    let expanded = if trimmed.starts_with('@') {
        NICKNAMES
            .iter()
            .find(|(nick, _)| nick.eq_ignore_ascii_case(trimmed))
            .map(|(_, pattern)| *pattern)
            .ok_or_else(|| {
                let names: Vec<&str> = NICKNAMES.iter().map(|(nick, _)| *nick).collect();
                ValidationError::new(
                    "cron",
                    format!(
                        "unknown shorthand {trimmed:?}; accepted: {}",
                        names.join(", ")
                    ),
                )
            })?
    } else {
        trimmed
    };
    let fields: Vec<&str> = expanded.split_whitespace().collect();
    let (second, rest) = match fields.len() {
        5 => ("0", &fields[..]),
        6 => (fields[0], &fields[1..]),
        0 => {
            return Err(ValidationError::new(
                "cron",
                format!("must not be empty; {FIELD_COUNT}, or @hourly, @daily, ..."),
            ))
        }
        n => {
            let year = if n == 7 {
                "; a year field is not accepted"
            } else {
                ""
            };
            return Err(ValidationError::new(
                "cron",
                format!("{FIELD_COUNT}, got {n}{year}"),
            ));
        }
    };
    let canonical = [
        SECOND.canonical(second)?,
        MINUTE.canonical(rest[0])?,
        HOUR.canonical(rest[1])?,
        DAY.canonical(rest[2])?,
        MONTH.canonical(rest[3])?,
        WEEKDAY.canonical(rest[4])?,
    ];
    let every_real_hour = canonical[2] == "*" || canonical[2].contains('/');
    let text = canonical.join(" ");
    let cron = CronParser::builder()
        .seconds(Seconds::Required)
        .year(Year::Disallowed)
        .build()
        .parse(&text)
        // The checks above accept only what croner parses; this is a safety net.
        .map_err(|e| ValidationError::new("cron", format!("{expression:?}: {e}")))?;
    let fields = CronFields::from_croner(&cron.pattern, every_real_hour);
    if fields.next_match_from(reference_start()).is_none() {
        return Err(ValidationError::new(
            "cron",
            format!(
                "{expression:?} never fires: no date has this day of the month in these months (e.g. 30 2 is February 30)"
            ),
        ));
    }
    Ok(fields)
}

fn reference_start() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2000, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default()
}

fn mask(component: &croner::CronComponent, values: std::ops::RangeInclusive<u16>, flag: u8) -> u64 {
    values
        .filter(|v| component.is_bit_set(*v, flag).unwrap_or(false))
        .fold(0u64, |acc, v| acc | (1 << v))
}

/// Lowest set bit at or above `from`.
fn next_bit(mask: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let rest = mask & (u64::MAX << from);
    (rest != 0).then(|| rest.trailing_zeros())
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    NaiveDate::from_ymd_opt(next_year, next_month, 1)
        .and_then(|d| d.pred_opt())
        .map_or(28, |d| d.day())
}

impl CronFields {
    fn from_croner(p: &croner::CronPattern, every_real_hour: bool) -> Self {
        let weekday = |flag| mask(&p.days_of_week, 0..=6, flag) as u8;
        Self {
            seconds: mask(&p.seconds, 0..=59, bit::ALL),
            minutes: mask(&p.minutes, 0..=59, bit::ALL),
            hours: mask(&p.hours, 0..=23, bit::ALL) as u32,
            days: mask(&p.days, 1..=31, bit::ALL) as u32,
            nearest_weekday: mask(&p.days, 1..=31, bit::CLOSEST_WEEKDAY) as u32,
            last_day: p.days.is_feature_enabled(bit::LAST)
                && !p.days.is_feature_enabled(bit::CLOSEST_WEEKDAY),
            last_weekday: p.days.is_feature_enabled(bit::LAST)
                && p.days.is_feature_enabled(bit::CLOSEST_WEEKDAY),
            months: mask(&p.months, 1..=12, bit::ALL) as u16,
            weekdays: weekday(bit::ALL),
            nth_weekday: bit::NTH.map(weekday),
            last_of_weekday: weekday(bit::LAST),
            star_days: p.is_dom_wildcard(),
            star_weekdays: p.is_dow_wildcard(),
            both_days: p.matches_dom_and_dow(),
            every_real_hour,
        }
    }

    pub(crate) fn every_real_hour(&self) -> bool {
        self.every_real_hour
    }

    /// Whether a wall-clock second matches every field (the tests' reference).
    #[cfg(test)]
    pub(crate) fn matches(&self, t: NaiveDateTime) -> bool {
        self.seconds & (1 << t.second()) != 0
            && self.minutes & (1 << t.minute()) != 0
            && self.hours & (1 << t.hour()) != 0
            && self.months & (1 << t.month()) != 0
            && self.day_matches(t.date())
    }

    /// The day rule of croner (and Vixie cron): day of month and weekday are
    /// alternatives unless one of them is `*`.
    fn day_matches(&self, date: NaiveDate) -> bool {
        let day = date.day();
        let length = days_in_month(date.year(), date.month());
        let weekday = date.weekday().num_days_from_sunday();
        let mut dom = self.days & (1 << day) != 0;
        if !dom && self.last_weekday {
            let last_weekday_of_month = match (weekday + length - day) % 7 {
                6 => length - 1, // the last day is a Saturday
                0 => length - 2, // a Sunday
                _ => length,
            };
            dom = day == last_weekday_of_month;
        } else if !dom && self.last_day {
            dom = day == length;
        }
        if !dom && self.nearest_weekday != 0 {
            dom = self.is_nearest_weekday(day, weekday, length);
        }
        let weekday_bit = 1u8 << weekday;
        let mut dow = self.weekdays & weekday_bit != 0;
        if let Some(nth) = self.nth_weekday.get(((day - 1) / 7) as usize) {
            dow |= nth & weekday_bit != 0;
        }
        dow |= self.last_of_weekday & weekday_bit != 0 && day + 7 > length;
        if (dom && self.star_weekdays) || (dow && self.star_days) {
            true
        } else if !self.star_days && !self.star_weekdays {
            if self.both_days {
                dom && dow
            } else {
                dom || dow
            }
        } else {
            false
        }
    }

    /// Whether some `nW` of the pattern resolves to `day`: `n` itself when it is a
    /// weekday, else the nearest weekday in the same month.
    fn is_nearest_weekday(&self, day: u32, weekday: u32, length: u32) -> bool {
        let first = day.saturating_sub(2).max(1);
        let last = (day + 2).min(length);
        (first..=last).any(|n| {
            if self.nearest_weekday & (1 << n) == 0 {
                return false;
            }
            let n_weekday = (weekday + 7 + n - day) % 7;
            let target = match n_weekday {
                6 if n > 1 => n - 1,
                6 => n + 2,
                0 if n < length => n + 1,
                0 => n - 2,
                _ => n,
            };
            target == day
        })
    }

    fn first_time(&self) -> (u32, u32, u32) {
        (
            self.hours.trailing_zeros(),
            self.minutes.trailing_zeros(),
            self.seconds.trailing_zeros(),
        )
    }

    /// The first matching time of day at or after `h:m:s`, on a day that matches.
    fn time_at_or_after(&self, h: u32, m: u32, s: u32) -> Option<(u32, u32, u32)> {
        let (_, first_minute, first_second) = self.first_time();
        let hour = next_bit(u64::from(self.hours), h)?;
        if hour > h {
            return Some((hour, first_minute, first_second));
        }
        if let Some(minute) = next_bit(self.minutes, m) {
            if minute > m {
                return Some((hour, minute, first_second));
            }
            if let Some(second) = next_bit(self.seconds, s) {
                return Some((hour, minute, second));
            }
            if let Some(minute) = next_bit(self.minutes, m + 1) {
                return Some((hour, minute, first_second));
            }
        }
        let hour = next_bit(u64::from(self.hours), h + 1)?;
        Some((hour, first_minute, first_second))
    }

    /// The first matching wall-clock second at or after `from` (whose fraction of a
    /// second is ignored), or `None` when there is none within 400 years (the
    /// Gregorian calendar repeats every 400 years, so then there is none at all) or
    /// before the end of chrono's calendar.
    pub(crate) fn next_match_from(&self, from: NaiveDateTime) -> Option<NaiveDateTime> {
        let mut date = from.date();
        let horizon = date.checked_add_days(Days::new(146_097 + 366));
        let mut time = Some((from.hour(), from.minute(), from.second()));
        loop {
            if horizon.is_some_and(|h| date > h) {
                return None;
            }
            if self.months & (1 << date.month()) == 0 {
                date = self.first_day_of_next_month(date)?;
                time = None;
                continue;
            }
            if self.day_matches(date) {
                let found = match time {
                    Some((h, m, s)) => self.time_at_or_after(h, m, s),
                    None => Some(self.first_time()),
                };
                if let Some((h, m, s)) = found {
                    return date.and_hms_opt(h, m, s);
                }
            }
            date = date.succ_opt()?;
            time = None;
        }
    }

    fn first_day_of_next_month(&self, date: NaiveDate) -> Option<NaiveDate> {
        match next_bit(u64::from(self.months), date.month() + 1) {
            Some(month) => NaiveDate::from_ymd_opt(date.year(), month, 1),
            None => NaiveDate::from_ymd_opt(
                date.year().checked_add(1)?,
                self.months.trailing_zeros(),
                1,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn err(expression: &str) -> String {
        let e = parse(expression).expect_err(expression);
        assert_eq!(e.field, "cron", "{expression}");
        e.message
    }

    fn civil(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").expect(s)
    }

    #[test]
    fn explains_what_is_wrong() {
        assert_eq!(err("0 25 * * *"), "hour 25 is out of 0-23");
        assert_eq!(
            err("* * *"),
            "expected 5 fields (minute hour day month weekday) or 6 (second first), got 3"
        );
        assert!(err("0 0 0 1 1 * 2030").contains("year field is not accepted"));
        assert!(err("").contains("must not be empty"));
        assert_eq!(err("60 * * * *"), "minute 60 is out of 0-59");
        assert_eq!(err("61 * * * * *"), "second 61 is out of 0-59");
        assert_eq!(err("0 0 0 * *"), "day 0 is out of 1-31");
        assert_eq!(err("0 0 * 13 *"), "month 13 is out of 1-12 (or JAN-DEC)");
        assert_eq!(err("0 0 * * 8"), "weekday 8 is out of 0-7 (or SUN-SAT)");
        assert!(err("0 0 * * MOO").starts_with("weekday \"MOO\" is not a number or a name"));
        assert!(err("0 0 * MON *").starts_with("month \"MON\" is not a number or a name"));
        assert!(err("x * * * *").starts_with("minute \"x\" is not a number;"));
        assert!(err("*/0 * * * *").contains("minute step 0 is out of 1-60"));
        assert!(err("0 5-2 * * *").contains("hour range 5-2 runs backwards"));
        assert!(err("1,,2 * * * *").contains("list \"1,,2\" has an empty entry"));
        assert!(err("*,5 * * * *").contains("must stand alone"));
        assert!(err("0 ? * * *").starts_with("hour \"?\" is not a number;"));
        assert!(err("0 0 * * 5#6").contains("must be 1-5"));
        assert!(err("0 0 * * L").contains("L needs a weekday"));
        assert!(err("0 0 L * MON#x").contains("must be 1-5"));
        assert!(err("0 0 32W * *").contains("day 32 is out of 1-31"));
        assert!(err("@often").contains("unknown shorthand \"@often\"; accepted: @yearly"));
        assert!(err("0 0 30 2 *").contains("never fires"));
        assert!(err("0 0 31 4,6,9,11 *").contains("never fires"));
        // Names belong to their own field only.
        assert!(parse("0 0 * JAN-MAR MON-FRI").is_ok());
        assert!(parse("0 0 * * sat,sun").is_ok());
    }

    #[test]
    fn accepts_the_documented_forms() {
        for ok in [
            "* * * * *",
            "*/15 9-17 * * MON-FRI",
            "0 30 2 * * *",
            "*/1 * * * * *",
            "5/15 * * * *",
            "0 0 L * *",
            "0 0 LW * *",
            "0 0 15W * *",
            "0 0 * * 5L",
            "0 0 * * FRI#2",
            "0 0 ? * 1",
            "0 0 ? * *",
            "0 0 lw * *",
            "0 0 * * fri#2",
            "0 0 29 2 *",
            "@yearly",
            "@annually",
            "@monthly",
            "@weekly",
            "@daily",
            "@midnight",
            "@HOURLY",
            "  0  0  * * *  ",
        ] {
            assert!(parse(ok).is_ok(), "{ok}: {:?}", parse(ok));
        }
    }

    #[test]
    fn nicknames_and_shorthands_mean_what_they_say() {
        let midnight = parse("0 0 * * *").unwrap();
        assert_eq!(parse("@daily").unwrap(), midnight);
        assert_eq!(parse("@midnight").unwrap(), midnight);
        assert_eq!(parse("0 0 0 * * *").unwrap(), midnight);
        assert_eq!(
            parse("5/15 * * * *").unwrap(),
            parse("5,20,35,50 * * * *").unwrap()
        );
        assert_eq!(parse("0 0 * * 7").unwrap(), parse("0 0 * * SUN").unwrap());
        assert_eq!(
            parse("0 0 * * FRI-SUN").unwrap(),
            parse("0 0 * * 0,5,6").unwrap()
        );
        assert!(parse("@hourly").unwrap().every_real_hour());
        assert!(parse("0 */2 * * *").unwrap().every_real_hour());
        assert!(!parse("*/15 2 * * *").unwrap().every_real_hour());
        assert!(!parse("0 1-3 * * *").unwrap().every_real_hour());
    }

    #[test]
    fn finds_calendar_edge_cases() {
        let next = |expr: &str, from: &str| parse(expr).unwrap().next_match_from(civil(from));
        // Leap day: the next one after 2097 is 2104 (2100 is not a leap year).
        assert_eq!(
            next("0 0 29 2 *", "2097-01-01 00:00:00"),
            Some(civil("2104-02-29 00:00:00"))
        );
        // Last day, last weekday, nearest weekday, nth and last weekday of month.
        assert_eq!(
            next("0 0 L * *", "2026-02-01 00:00:00"),
            Some(civil("2026-02-28 00:00:00"))
        );
        // 2026-05-31 is a Sunday: the last weekday of May is Friday the 29th.
        assert_eq!(
            next("0 0 LW * *", "2026-05-01 00:00:00"),
            Some(civil("2026-05-29 00:00:00"))
        );
        // 2026-08-01 is a Saturday: 1W is Monday the 3rd.
        assert_eq!(
            next("0 0 1W * *", "2026-07-31 00:00:00"),
            Some(civil("2026-08-03 00:00:00"))
        );
        assert_eq!(
            next("0 0 * * FRI#2", "2026-03-01 00:00:00"),
            Some(civil("2026-03-13 00:00:00"))
        );
        assert_eq!(
            next("0 0 * * 5L", "2026-03-01 00:00:00"),
            Some(civil("2026-03-27 00:00:00"))
        );
        // Inclusive of `from`, which is read to the second.
        assert_eq!(
            next("30 * * * * *", "2026-01-01 10:00:30"),
            Some(civil("2026-01-01 10:00:30"))
        );
        assert_eq!(
            next("30 * * * * *", "2026-01-01 10:00:31"),
            Some(civil("2026-01-01 10:01:30"))
        );
        // Rolls over the end of a day, a month and a year.
        assert_eq!(
            next("0 0 * * *", "2026-12-31 23:59:59"),
            Some(civil("2027-01-01 00:00:00"))
        );
    }

    /// Expressions built from the parts croner and the checks above both accept.
    fn expression() -> impl Strategy<Value = String> {
        let time = |max: u32| {
            prop_oneof![
                Just("*".to_string()),
                (0..=max).prop_map(|n| n.to_string()),
                (1..=max).prop_map(|n| format!("*/{n}")),
                (0..=max, 0..=max).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
                (0..=max, 0..=max, 1..=max).prop_map(|(a, b, s)| format!(
                    "{}-{}/{s}",
                    a.min(b),
                    a.max(b)
                )),
                (0..=max, 0..=max).prop_map(|(a, b)| format!("{a},{b}")),
            ]
        };
        let day = prop_oneof![
            4 => Just("*".to_string()),
            1 => Just("?".to_string()),
            2 => (1..=31u32).prop_map(|n| n.to_string()),
            1 => (1..=31u32, 1..=31u32).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
            1 => (1..=28u32).prop_map(|n| format!("{n}W")),
            1 => Just("L".to_string()),
            1 => Just("LW".to_string()),
            1 => (1..=31u32, 1..=31u32).prop_map(|(a, b)| format!("{a},{b}W")),
        ];
        let month = prop_oneof![
            3 => Just("*".to_string()),
            1 => (1..=12u32).prop_map(|n| n.to_string()),
            1 => (1..=12u32, 1..=12u32).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
            1 => (1..=6u32).prop_map(|n| format!("*/{n}")),
        ];
        let weekday = prop_oneof![
            4 => Just("*".to_string()),
            1 => (0..=7u32).prop_map(|n| n.to_string()),
            1 => (0..=7u32, 0..=7u32).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
            1 => (0..=6u32, 1..=5u32).prop_map(|(d, n)| format!("{d}#{n}")),
            1 => (0..=6u32).prop_map(|d| format!("{d}L")),
            1 => (0..=6u32, 0..=6u32).prop_map(|(a, b)| format!("{a},{b}L")),
        ];
        (time(59), time(59), time(23), day, month, weekday)
            .prop_map(|(s, m, h, d, mo, w)| format!("{s} {m} {h} {d} {mo} {w}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The compact matcher finds exactly what croner finds, and what it finds
        /// matches; the seconds in between do not.
        #[test]
        fn agrees_with_croner(
            expr in expression(),
            secs in 946_684_800i64..4_102_444_800, // 2000-2100
        ) {
            let from = chrono::DateTime::from_timestamp(secs, 0).unwrap().naive_utc();
            let ours = match parse(&expr) {
                Ok(fields) => fields,
                // Combinations such as `30 2` never fire; croner agrees there is no match.
                Err(e) => {
                    prop_assert!(e.message.contains("never fires"), "{expr}: {e}");
                    return Ok(());
                }
            };
            let reference = croner::Cron::from_str(&expr).unwrap();
            let theirs = reference.find_next_occurrence(&from, true).ok();
            let found = ours.next_match_from(from);
            prop_assert_eq!(found, theirs, "{}", expr);
            if let Some(found) = found {
                prop_assert!(ours.matches(found));
                prop_assert!(reference.is_time_matching(&found).unwrap());
                if found > from {
                    let before = found - chrono::Duration::seconds(1);
                    prop_assert_eq!(ours.matches(before), reference.is_time_matching(&before).unwrap());
                }
            }
        }
    }
}
