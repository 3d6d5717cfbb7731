//! Durations as people write them: `500ms`, `30s`, `5m`, `1h30m`, `2d`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration that reads and writes as a string of `<number><unit>` parts, units
/// `ms`, `s`, `m`, `h`, `d`, largest first (`1h30m`, `1m30s`, `250ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

const UNITS: &str =
    "accepted: a number followed by a unit (ms, s, m, h, d), e.g. 500ms, 30s, 5m, 1h30m";

impl HumanDuration {
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    pub const fn from_millis(ms: u64) -> Self {
        Self(Duration::from_millis(ms))
    }

    pub fn as_duration(self) -> Duration {
        self.0
    }

    /// As a chrono duration, saturating at its range.
    pub fn to_chrono(self) -> chrono::Duration {
        chrono::Duration::from_std(self.0).unwrap_or(chrono::Duration::MAX)
    }
}

impl From<Duration> for HumanDuration {
    fn from(d: Duration) -> Self {
        Self(d)
    }
}

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(format!("empty duration; {UNITS}"));
        }
        let mut total: u128 = 0; // nanoseconds
        let mut rest = s;
        let mut last_rank = usize::MAX;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(format!("{s:?} is not a duration; {UNITS}"));
            }
            let number: u128 = rest[..digits]
                .parse()
                .map_err(|_| format!("{s:?} has a number too large"))?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let (rank, nanos) = match unit {
                "d" => (0, 86_400_000_000_000u128),
                "h" => (1, 3_600_000_000_000),
                "m" => (2, 60_000_000_000),
                "s" => (3, 1_000_000_000),
                "ms" => (4, 1_000_000),
                "" => return Err(format!("{s:?} is missing a unit; {UNITS}")),
                other => return Err(format!("{s:?} has unknown unit {other:?}; {UNITS}")),
            };
            if last_rank != usize::MAX && rank <= last_rank {
                return Err(format!(
                    "{s:?} repeats a unit or puts a smaller one first; {UNITS}"
                ));
            }
            last_rank = rank;
            total = total
                .checked_add(number.checked_mul(nanos).ok_or("duration too large")?)
                .ok_or("duration too large")?;
        }
        let secs = u64::try_from(total / 1_000_000_000).map_err(|_| "duration too large")?;
        Ok(Self(Duration::new(secs, (total % 1_000_000_000) as u32)))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total_ms = self.0.as_millis();
        if total_ms == 0 {
            return f.write_str("0s");
        }
        let mut ms = total_ms;
        for (unit, size) in [
            ("d", 86_400_000u128),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
            ("ms", 1),
        ] {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for (text, ms) in [
            ("500ms", 500),
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("1d", 86_400_000),
            ("1m30s250ms", 90_250),
        ] {
            let d: HumanDuration = text.parse().unwrap();
            assert_eq!(d.0.as_millis(), ms, "{text}");
            assert_eq!(d.to_string(), text);
        }
        assert_eq!("0s".parse::<HumanDuration>().unwrap().0, Duration::ZERO);
    }

    #[test]
    fn rejects_with_reason() {
        for bad in [
            "",
            "5",
            "5x",
            "m5",
            "30s1m",
            "1h1h",
            "-1s",
            "1.5s",
            "99999999999999999999999d",
        ] {
            let err = bad.parse::<HumanDuration>().unwrap_err();
            assert!(!err.is_empty(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn display_roundtrips(ms in 0u64..10_000_000_000) {
            let d = HumanDuration(Duration::from_millis(ms));
            let back: HumanDuration = d.to_string().parse().unwrap();
            proptest::prop_assert_eq!(back, d);
        }
    }
}
