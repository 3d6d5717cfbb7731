//! How results are shown: tables and key/value listings for people, the server's
//! JSON (pretty) or YAML for scripts.
//!
//! Renderers read the server's JSON as `serde_json::Value` rather than typed
//! structs, so that a newer server adding fields never breaks an older CLI; a
//! missing value shows as `-`. Tables have no borders (they are meant for `grep`
//! and `awk` too); the header is bold only when stdout is a terminal.

use std::io::{self, Write};

use chrono::{DateTime, SecondsFormat, Utc};
use comfy_table::{presets, Attribute, Cell, Table};
use serde_json::Value;

use crate::cli::OutputFormat;

/// Writes `text` and a newline to stdout. Errors (a closed pipe) are returned, not
/// panicked on as `println!` would.
pub fn line(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

/// The server's data for scripts on stdout: pretty JSON, or YAML. (A table
/// format prints JSON: commands draw their tables themselves.)
pub fn data(format: OutputFormat, value: &Value) -> io::Result<()> {
    line(&render(format, value)?)
}

fn render(format: OutputFormat, value: &Value) -> io::Result<String> {
    match format {
        OutputFormat::Yaml => {
            let text = serde_yaml_ng::to_string(value).map_err(io::Error::other)?;
            Ok(text.strip_suffix('\n').unwrap_or(&text).to_string())
        }
        OutputFormat::Json | OutputFormat::Table => {
            serde_json::to_string_pretty(value).map_err(io::Error::other)
        }
    }
}

/// A borderless table with a header row.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    table.set_header(
        header
            .iter()
            .map(|h| Cell::new(h).add_attribute(Attribute::Bold)),
    );
    for row in rows {
        table.add_row(row);
    }
    pad_right(&mut table, 2);
    table.trim_fmt()
}

/// `key: value` lines, values aligned.
pub fn key_values(rows: &[(&str, String)]) -> String {
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    for (key, value) in rows {
        table.add_row(vec![format!("{key}:"), value.clone()]);
    }
    pad_right(&mut table, 1);
    table.trim_fmt()
}

/// Lines start at the margin; columns are `gap` spaces apart.
fn pad_right(table: &mut Table, gap: u16) {
    for column in table.column_iter_mut() {
        column.set_padding((0, gap));
    }
}

/// The list in an answer that is either a JSON array or `{"items": [...]}`.
pub fn items(answer: &Value) -> &[Value] {
    match answer {
        Value::Array(items) => items,
        other => other["items"].as_array().map(Vec::as_slice).unwrap_or(&[]),
    }
}

/// A scalar as text; `-` for null or absent.
pub fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(s) if s.is_empty() => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn timestamp(value: &Value) -> Option<DateTime<Utc>> {
    value
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// An RFC 3339 time shortened to seconds in UTC; `-` when absent.
pub fn time(value: &Value) -> String {
    match timestamp(value) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Secs, true),
        None => text(value),
    }
}

/// How long an execution ran (or has run so far, when it has not finished).
pub fn run_duration(exec: &Value, now: DateTime<Utc>) -> String {
    match (
        timestamp(&exec["started_at"]),
        timestamp(&exec["finished_at"]),
    ) {
        (Some(start), Some(end)) => duration(end - start),
        (Some(start), None) => format!("{}…", duration(now - start)),
        _ => "-".to_string(),
    }
}

/// A byte count in binary units: `812 B`, `1.5 KiB`, `3.0 MiB`; `-` when not a
/// number.
pub fn bytes(value: &Value) -> String {
    let Some(n) = value.as_u64() else {
        return text(value);
    };
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut size = n as f64 / 1024.0;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < UNITS.len() {
        size /= 1024.0;
        unit += 1;
    }
    format!("{size:.1} {}", UNITS[unit])
}

/// `350ms`, `12.3s`, `4m05s`, `2h03m`.
pub fn duration(d: chrono::TimeDelta) -> String {
    let ms = d.num_milliseconds().max(0);
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

/// A schedule object in a few words: `*/5 * * * * (Europe/Berlin)`, `every 5m`, ...
pub fn schedule(s: &Value) -> String {
    if let Some(cron) = s["cron"].as_str() {
        return match s["timezone"].as_str() {
            Some(tz) if tz != "UTC" => format!("{cron} ({tz})"),
            _ => cron.to_string(),
        };
    }
    if let Some(every) = s["every"].as_str() {
        return format!("every {every}");
    }
    if !s["at"].is_null() {
        return format!("at {}", time(&s["at"]));
    }
    if let Some(after) = s["after"].as_str() {
        return format!("after {after}");
    }
    if s["manual"] == Value::Bool(true) {
        return "manual".to_string();
    }
    if let Some(event) = s["on"]["event"].as_str() {
        return format!("on {event}");
    }
    text(s)
}

/// An executor in one line: `shell: pg_dump app`, `http: GET https://...`.
pub fn executor(e: &Value) -> String {
    let kind = text(&e["type"]);
    let detail = match kind.as_str() {
        "shell" => {
            let mut cmd = text(&e["command"]);
            for arg in e["args"].as_array().into_iter().flatten() {
                cmd.push(' ');
                cmd.push_str(&text(arg));
            }
            cmd
        }
        "http" => format!("{} {}", text(&e["method"]), text(&e["url"])),
        "record" => text(&e["path"]),
        _ => return kind,
    };
    format!("{kind}: {}", crate::error::one_line(&detail, 80))
}

/// A retry policy in one line: `3 attempts, 1s doubling up to 1m, jitter`.
pub fn retry(r: &Value) -> String {
    if r.is_null() {
        return "none".to_string();
    }
    let mut out = format!(
        "{} attempts, {} x{} up to {}",
        text(&r["max_attempts"]),
        text(&r["initial_delay"]),
        text(&r["multiplier"]),
        text(&r["max_delay"]),
    );
    if r["jitter"] == Value::Bool(true) {
        out.push_str(", jitter");
    }
    out
}

/// `a=1, b=2` for a JSON object; `-` when empty.
pub fn map(m: &Value) -> String {
    match m.as_object() {
        Some(obj) if !obj.is_empty() => obj
            .iter()
            .map(|(k, v)| format!("{k}={}", text(v)))
            .collect::<Vec<_>>()
            .join(", "),
        _ => "-".to_string(),
    }
}

pub fn yes_no(v: &Value) -> String {
    if v.as_bool().unwrap_or(false) {
        "yes"
    } else {
        "no"
    }
    .to_string()
}

/// One execution as `STATUS (exit N) at TIME, id ID`, for `job get`.
pub fn execution_summary(e: &Value) -> String {
    if e.is_null() {
        return "-".to_string();
    }
    let mut out = text(&e["status"]);
    if !e["exit_code"].is_null() {
        out.push_str(&format!(" (exit {})", text(&e["exit_code"])));
    }
    out.push_str(&format!(
        ", scheduled {}, id {}",
        time(&e["scheduled_at"]),
        text(&e["id"])
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_are_borderless_and_aligned() {
        let t = table(
            &["NAME", "PAUSED"],
            vec![
                vec!["a".into(), "no".into()],
                vec!["longer-name".into(), "yes".into()],
            ],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].starts_with("NAME "), "{t}");
        assert!(lines[2].starts_with("longer-name "), "{t}");
        let col = lines[0].find("PAUSED").unwrap();
        assert_eq!(lines[1].find("no"), Some(col), "{t}");
        assert!(lines.iter().all(|l| !l.ends_with(' ')), "{t:?}");
        assert!(
            !t.contains('|') && !t.contains('+') && !t.contains('\u{1b}'),
            "{t}"
        );
    }

    #[test]
    fn data_is_pretty_json_or_yaml() {
        let value = json!({"name": "a", "tags": {"x": "1"}, "n": 2});
        assert_eq!(
            render(OutputFormat::Json, &value).unwrap(),
            "{\n  \"n\": 2,\n  \"name\": \"a\",\n  \"tags\": {\n    \"x\": \"1\"\n  }\n}"
        );
        let yaml = render(OutputFormat::Yaml, &value).unwrap();
        assert_eq!(yaml, "n: 2\nname: a\ntags:\n  x: '1'");
        let back: Value = serde_yaml_ng::from_str(&yaml).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn key_values_align() {
        let t = key_values(&[("name", "x".into()), ("next run", "-".into())]);
        assert_eq!(t, "name:     x\nnext run: -");
    }

    #[test]
    fn items_accepts_arrays_and_item_objects() {
        assert_eq!(items(&json!([1, 2])).len(), 2);
        assert_eq!(items(&json!({"items": [1]})).len(), 1);
        assert!(items(&json!({"other": 1})).is_empty());
    }

    #[test]
    fn schedules_read_naturally() {
        assert_eq!(
            schedule(&json!({"cron": "0 * * * *", "timezone": "UTC"})),
            "0 * * * *"
        );
        assert_eq!(
            schedule(&json!({"cron": "0 2 * * *", "timezone": "Europe/Berlin"})),
            "0 2 * * * (Europe/Berlin)"
        );
        assert_eq!(schedule(&json!({"every": "5m"})), "every 5m");
        assert_eq!(schedule(&json!({"after": "1h"})), "after 1h");
        assert_eq!(schedule(&json!({"manual": true})), "manual");
        assert_eq!(
            schedule(&json!({"at": "2030-01-02T03:04:05.678Z"})),
            "at 2030-01-02T03:04:05Z"
        );
        assert_eq!(schedule(&json!({"on": {"event": "deploy"}})), "on deploy");
    }

    #[test]
    fn executors_read_naturally() {
        assert_eq!(
            executor(&json!({"type": "shell", "command": "echo", "args": ["a", "b"]})),
            "shell: echo a b"
        );
        assert_eq!(
            executor(&json!({"type": "http", "method": "GET", "url": "http://x"})),
            "http: GET http://x"
        );
        assert_eq!(executor(&json!({"type": "prow"})), "prow");
    }

    #[test]
    fn durations_and_times() {
        assert_eq!(duration(chrono::TimeDelta::milliseconds(350)), "350ms");
        assert_eq!(duration(chrono::TimeDelta::milliseconds(12_340)), "12.3s");
        assert_eq!(duration(chrono::TimeDelta::seconds(245)), "4m05s");
        assert_eq!(duration(chrono::TimeDelta::seconds(7380)), "2h03m");
        assert_eq!(duration(chrono::TimeDelta::seconds(-5)), "0ms");
        let e =
            json!({"started_at": "2030-01-01T00:00:00Z", "finished_at": "2030-01-01T00:00:01.5Z"});
        assert_eq!(run_duration(&e, Utc::now()), "1.5s");
        let now: DateTime<Utc> = "2030-01-01T00:00:02Z".parse().unwrap();
        let e = json!({"started_at": "2030-01-01T00:00:00Z", "finished_at": null});
        assert_eq!(run_duration(&e, now), "2.0s…");
        assert_eq!(run_duration(&json!({}), now), "-");
        assert_eq!(time(&Value::Null), "-");
        assert_eq!(
            time(&json!("2030-01-01T01:00:00+01:00")),
            "2030-01-01T00:00:00Z"
        );
    }

    #[test]
    fn byte_counts() {
        assert_eq!(bytes(&json!(812)), "812 B");
        assert_eq!(bytes(&json!(1536)), "1.5 KiB");
        assert_eq!(bytes(&json!(3 * 1024 * 1024)), "3.0 MiB");
        assert_eq!(bytes(&Value::Null), "-");
    }

    #[test]
    fn scalars_and_maps() {
        assert_eq!(text(&json!(null)), "-");
        assert_eq!(text(&json!(3)), "3");
        assert_eq!(text(&json!("s")), "s");
        assert_eq!(map(&json!({"a": "1", "b": 2})), "a=1, b=2");
        assert_eq!(map(&json!({})), "-");
        assert_eq!(yes_no(&json!(true)), "yes");
        assert_eq!(yes_no(&Value::Null), "no");
        assert_eq!(retry(&Value::Null), "none");
        assert_eq!(
            retry(
                &json!({"max_attempts": 3, "initial_delay": "1s", "max_delay": "1m", "multiplier": 2.0, "jitter": true})
            ),
            "3 attempts, 1s x2.0 up to 1m, jitter"
        );
    }
}
