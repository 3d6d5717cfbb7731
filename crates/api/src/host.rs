//! What `/v1/health` tells of the machine a node runs on: the load averages and
//! the memory, read from `/proc`. A figure that cannot be read (another OS, a
//! restricted `/proc`) is left out rather than reported as zero, so a dashboard
//! never mistakes "unknown" for "idle" or "empty".

use serde::Serialize;

/// The load averages of `/proc/loadavg`: runnable and uninterruptible tasks,
/// averaged over 1, 5 and 15 minutes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Load {
    #[serde(rename = "1m")]
    pub one: f64,
    #[serde(rename = "5m")]
    pub five: f64,
    #[serde(rename = "15m")]
    pub fifteen: f64,
}

/// This process's resident memory and the machine's memory, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct Memory {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
}

/// The load averages now, or `None` when `/proc/loadavg` cannot be read.
pub(crate) fn load() -> Option<Load> {
    parse_loadavg(&std::fs::read_to_string("/proc/loadavg").ok()?)
}

/// The memory figures now; each is `None` when its source cannot be read.
pub(crate) fn memory() -> Memory {
    let status = std::fs::read_to_string("/proc/self/status").ok();
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    Memory {
        rss_bytes: status.as_deref().and_then(|s| kib_field(s, "VmRSS")),
        total_bytes: meminfo.as_deref().and_then(|s| kib_field(s, "MemTotal")),
        available_bytes: meminfo
            .as_deref()
            .and_then(|s| kib_field(s, "MemAvailable")),
    }
}

/// `0.52 0.58 0.59 1/467 12345`: the first three fields.
fn parse_loadavg(text: &str) -> Option<Load> {
    let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().ok());
    Some(Load {
        one: fields.next()??,
        five: fields.next()??,
        fifteen: fields.next()??,
    })
}

/// A `Name:   1234 kB` line of `/proc/meminfo` or `/proc/self/status`, in bytes.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(':')?;
        let mut parts = rest.split_whitespace();
        let kib: u64 = parts.next()?.parse().ok()?;
        (parts.next() == Some("kB")).then_some(kib.checked_mul(1024)?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loadavg_takes_the_three_averages() {
        assert_eq!(
            parse_loadavg("0.52 1.58 10.00 1/467 12345\n"),
            Some(Load {
                one: 0.52,
                five: 1.58,
                fifteen: 10.0
            })
        );
        assert_eq!(parse_loadavg("0.52 1.58\n"), None);
        assert_eq!(parse_loadavg("x 1 2 1/4 5\n"), None);
    }

    #[test]
    fn kib_fields_are_read_by_exact_name() {
        let meminfo = "MemTotal:       24683772 kB\nMemFree:        14376128 kB\n\
                       MemAvailable:   22579880 kB\nHugePages_Total:       0\n";
        assert_eq!(kib_field(meminfo, "MemTotal"), Some(24_683_772 * 1024));
        assert_eq!(kib_field(meminfo, "MemAvailable"), Some(22_579_880 * 1024));
        // A name that is only the start of another is not a match.
        assert_eq!(kib_field(meminfo, "Mem"), None);
        // A figure without its unit is not taken for KiB.
        assert_eq!(kib_field(meminfo, "HugePages_Total"), None);
        assert_eq!(
            kib_field("VmRSS:\t   2048 kB\n", "VmRSS"),
            Some(2048 * 1024)
        );
    }

    #[test]
    fn unknown_figures_are_left_out() {
        let v = serde_json::to_value(Memory {
            rss_bytes: Some(1),
            ..Memory::default()
        })
        .expect("json");
        assert_eq!(v, serde_json::json!({"rss_bytes": 1}));
    }
}
