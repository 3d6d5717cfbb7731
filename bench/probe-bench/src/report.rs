//! Renders the JSON lines of one run (the measuring subcommands', the peers' and
//! the script's load records) as the markdown tables of `docs/PERFORMANCE.md`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use loadgen::stats::percentile;
use serde_json::Value;

pub(crate) fn render(input: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} holds a line that is not JSON", input.display()))?;
    let of = |kind: &str| -> Vec<&Value> { lines.iter().filter(|l| l["kind"] == kind).collect() };
    let mut out = String::new();
    fanout(&mut out, &of("fanout"));
    load(&mut out, &of("load"), "fanout");
    check(&mut out, &of("check"));
    load(&mut out, &of("load"), "check");
    sink(&mut out, &of("sink"));
    load(&mut out, &of("load"), "sink");
    print!("{out}");
    Ok(())
}

/// Median, min and max of a non-empty list.
fn spread(values: &[f64]) -> Option<(f64, f64, f64)> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    Some((
        percentile(&sorted, 50.0),
        sorted[0],
        sorted[sorted.len() - 1],
    ))
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_f64)
        .collect()
}

/// Three significant figures at most, thousands separated.
fn num(v: f64) -> String {
    if v >= 1000.0 {
        let rounded = v.round() as u64;
        let digits = rounded.to_string();
        let lead = match digits.len() % 3 {
            0 => 3,
            r => r,
        };
        let mut grouped = digits[..lead].to_string();
        for group in digits.as_bytes()[lead..].chunks(3) {
            grouped.push(',');
            grouped.push_str(std::str::from_utf8(group).unwrap_or_default());
        }
        grouped
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn fanout(out: &mut String, rows: &[&Value]) {
    if rows.is_empty() {
        return;
    }
    let targets = rows[0]["targets"].as_u64().unwrap_or(0);
    let _ = writeln!(out, "### Probe fan-out to {targets} local targets\n");
    let _ = writeln!(
        out,
        "| system | how | runs | wall median ms | min / max ms | requests/s | time vs rota (new connections) | CPU ms per check: rota / target server |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    let reference = rows
        .iter()
        .find(|r| r["system"] == "rota" && r["variant"].as_str().unwrap_or("").contains("new"))
        .and_then(|r| spread(&numbers(&r["walls_ms"])))
        .map(|(median, _, _)| median);
    for row in rows {
        let walls = numbers(&row["walls_ms"]);
        let Some((median, min, max)) = spread(&walls) else {
            continue;
        };
        let n = row["targets"].as_f64().unwrap_or(0.0);
        let ratio = reference.map_or_else(|| "–".to_string(), |r| format!("{:.2}×", median / r));
        let cpu = match (
            row["cpu_ms_per_request"].as_f64(),
            row["targets_cpu_ms_per_request"].as_f64(),
        ) {
            (Some(rota), Some(targets)) => format!("{} / {}", num(rota), num(targets)),
            (Some(rota), None) => num(rota),
            _ => "–".to_string(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} / {} | {} | {ratio} | {cpu} |",
            row["system"].as_str().unwrap_or("?"),
            row["variant"].as_str().unwrap_or("?"),
            walls.len(),
            num(median),
            num(min),
            num(max),
            num(n / (median / 1000.0)),
        );
    }
    for row in rows.iter().filter(|r| r["system"] == "rota") {
        if let Some((median, _, _)) = spread(&numbers(&row["target_p50_ms"])) {
            let _ = writeln!(
                out,
                "\nrota, {}: median over the runs of the per-target p50 duration rota reports: {} ms.",
                row["variant"].as_str().unwrap_or("?"),
                num(median)
            );
        }
    }
    out.push('\n');
}

fn check(out: &mut String, rows: &[&Value]) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "### Check endpoint under concurrent callers\n");
    let _ = writeln!(
        out,
        "| callers | seconds | checks | checks/s | p50 / p99 / max ms | errors | rota CPU % (of one core) |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for row in rows {
        let l = &row["latency_ms"];
        let ms = |k: &str| l[k].as_f64().map_or_else(|| "–".to_string(), num);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} / {} / {} | {} | {} |",
            row["callers"],
            row["secs"].as_f64().map_or_else(|| "?".to_string(), num),
            num(row["requests"].as_f64().unwrap_or(0.0)),
            row["per_s"].as_f64().map_or_else(|| "?".to_string(), num),
            ms("p50"),
            ms("p99"),
            ms("max"),
            row["errors"],
            row["cpu_pct"].as_f64().map_or_else(|| "–".to_string(), num),
        );
    }
    out.push('\n');
}

fn sink(out: &mut String, rows: &[&Value]) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "### InfluxDB sink\n");
    let _ = writeln!(
        out,
        "| writer | batch | points | runs | points/s median | min / max | vs telegraf-style | written / stored (every run) | rota's `send()` of all points, median ms |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    // One row per writer, batch size and send chunk, in the order they first ran.
    let mut groups: Vec<(String, u64, Vec<&Value>)> = Vec::new();
    for row in rows {
        let mut writer = row["writer"].as_str().unwrap_or("?").to_string();
        match row["send_chunk"].as_u64() {
            Some(chunk) if Some(chunk) == row["points"].as_u64() => {
                writer.push_str(", all points in one `send`");
            }
            Some(chunk) => writer.push_str(&format!(
                ", `send` of {} points at a time",
                num(chunk as f64)
            )),
            None => {}
        }
        let batch = row["batch_size"].as_u64().unwrap_or(0);
        match groups
            .iter_mut()
            .find(|(w, b, _)| *w == writer && *b == batch)
        {
            Some((_, _, runs)) => runs.push(row),
            None => groups.push((writer, batch, vec![row])),
        }
    }
    let median_of = |runs: &[&Value]| {
        let rates: Vec<f64> = runs.iter().filter_map(|r| r["per_s"].as_f64()).collect();
        spread(&rates)
    };
    let reference = groups
        .iter()
        .find(|(w, _, _)| w == "telegraf-style")
        .and_then(|(_, _, runs)| median_of(runs))
        .map(|(m, _, _)| m);
    for (writer, batch, runs) in &groups {
        let Some((median, min, max)) = median_of(runs) else {
            continue;
        };
        let complete = runs.iter().all(|r| {
            r["written"] == r["points"] && r["stored"] == r["points"] && r["dropped"] == 0
        });
        let ratio = reference.map_or_else(|| "–".to_string(), |r| format!("{:.2}×", median / r));
        let sends: Vec<f64> = runs.iter().filter_map(|r| r["send_ms"].as_f64()).collect();
        let send = spread(&sends).map_or_else(|| "–".to_string(), |(m, _, _)| num(m));
        let _ = writeln!(
            out,
            "| {writer} | {batch} | {} | {} | {} | {} / {} | {ratio} | {} | {send} |",
            num(runs[0]["points"].as_f64().unwrap_or(0.0)),
            runs.len(),
            num(median),
            num(min),
            num(max),
            if complete { "all" } else { "**not all**" },
        );
    }
    let first = |k: &str| groups.first().and_then(|(_, _, runs)| runs[0][k].as_f64());
    if let (Some(validate), Some(encode), Some(bytes)) = (
        first("validate_ms"),
        first("encode_ms"),
        first("body_bytes"),
    ) {
        let _ = writeln!(
            out,
            "\nMeasured apart, once, on the same points: `Point::validate` of all of them {} ms, \
             their line protocol ({} MiB) {} ms.",
            num(validate),
            num(bytes / 1_048_576.0),
            num(encode)
        );
    }
    out.push('\n');
}

fn load(out: &mut String, rows: &[&Value], step: &str) {
    for row in rows.iter().filter(|r| r["step"] == step) {
        let _ = writeln!(
            out,
            "Load average (1, 5, 15 min) before / after this step: {} / {}.\n",
            row["before"].as_str().unwrap_or("?"),
            row["after"].as_str().unwrap_or("?")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(num(999.4), "999");
        assert_eq!(num(1000.0), "1,000");
        assert_eq!(num(12_345.6), "12,346");
        assert_eq!(num(200_000.0), "200,000");
        assert_eq!(num(1_234_567.0), "1,234,567");
    }

    #[test]
    fn small_numbers_keep_three_figures() {
        assert_eq!(num(66.24), "66.2");
        assert_eq!(num(1.567), "1.57");
    }

    #[test]
    fn spread_is_median_min_max() {
        assert_eq!(spread(&[3.0, 1.0, 2.0]), Some((2.0, 1.0, 3.0)));
        assert_eq!(spread(&[]), None);
    }
}
