//! `rota exec ...`: the active executions, one execution's details, its output
//! (followed live with `-f`), and cancelling it.

use std::io::Write;

use anyhow::Context;
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::Value;
use ulid::Ulid;

use super::Ctx;
use crate::cli::{ActiveStatus, ExecCommand};
use crate::output;

/// Bound on fetching the output of a finished execution (it is at most the job's
/// `max_output_bytes`); a followed output has none.
const OUTPUT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

pub async fn run(ctx: &Ctx, cmd: ExecCommand) -> anyhow::Result<()> {
    match cmd {
        ExecCommand::Ls { status } => list(ctx, status).await,
        ExecCommand::Get { id } => show(ctx, id).await,
        ExecCommand::Logs { id, follow } => logs(ctx, id, follow).await,
        ExecCommand::Cancel { id } => cancel(ctx, id).await,
    }
}

/// Every queued or running execution (`GET /v1/executions`), page after page.
async fn list(ctx: &Ctx, status: Option<ActiveStatus>) -> anyhow::Result<()> {
    let filters: Vec<(&str, String)> = match status {
        None => Vec::new(),
        Some(ActiveStatus::Running) => vec![("status", "running".to_string())],
        Some(ActiveStatus::Queued) => vec![("status", "queued".to_string())],
    };
    let items = super::list_all(ctx, "executions", &filters).await?;
    if ctx.machine() {
        return Ok(ctx.data(&serde_json::json!({ "items": items }))?);
    }
    output::line(&active_table(&items))?;
    Ok(())
}

/// The table of `exec ls`.
fn active_table(items: &[Value]) -> String {
    let rows = items
        .iter()
        .map(|e| {
            vec![
                output::text(&e["id"]),
                output::text(&e["job"]),
                output::text(&e["status"]),
                output::text(&e["node"]),
                output::text(&e["attempt"]),
                output::time(&e["started_at"]),
            ]
        })
        .collect();
    output::table(&["ID", "JOB", "STATUS", "NODE", "ATTEMPT", "STARTED"], rows)
}

async fn show(ctx: &Ctx, id: Ulid) -> anyhow::Result<()> {
    let id = id.to_string();
    let answer = ctx
        .client
        .get(ctx.client.url(["v1", "executions", id.as_str()]))
        .await?;
    if ctx.machine() {
        return Ok(ctx.data(&answer.body)?);
    }
    output::line(&execution_details(&answer.body))?;
    Ok(())
}

/// The key/value view of `exec get`.
fn execution_details(e: &Value) -> String {
    let t = output::text;
    let mut rows = vec![
        ("id", t(&e["id"])),
        ("job", t(&e["job"])),
        ("status", t(&e["status"])),
        ("trigger", t(&e["trigger"])),
        ("attempt", t(&e["attempt"])),
        ("node", t(&e["node"])),
        ("scheduled", output::time(&e["scheduled_at"])),
        ("started", output::time(&e["started_at"])),
        ("finished", output::time(&e["finished_at"])),
        ("duration", output::run_duration(e, chrono::Utc::now())),
        ("exit code", t(&e["exit_code"])),
        ("error", t(&e["error"])),
        ("output truncated", output::yes_no(&e["output_truncated"])),
    ];
    if !e["next_attempt_at"].is_null() {
        rows.push(("next attempt", output::time(&e["next_attempt_at"])));
    }
    if e["cancel_requested"] == Value::Bool(true) {
        rows.push(("cancel requested", "yes".to_string()));
    }
    if let Some(usage) = e.get("usage").filter(|u| u.is_object()) {
        rows.push(("cpu", cpu_time(usage)));
        rows.push(("max memory", max_memory(&usage["max_rss_kib"])));
    }
    let details = output::key_values(&rows);
    // A probe or a fan-out: its aggregate and one row per target.
    let Some(targets) = e["result"]["targets"].as_array() else {
        return details;
    };
    let table = targets
        .iter()
        .map(|r| {
            vec![
                t(&r["address"]),
                t(&r["status"]),
                t(&r["code"]),
                t(&r["attempts"]),
                format!("{}ms", t(&r["duration_ms"])),
                t(&r["error"]),
            ]
        })
        .collect();
    format!(
        "{details}\nresult: {}\n\n{}",
        t(&e["result"]["status"]),
        output::table(
            &["TARGET", "STATUS", "CODE", "ATTEMPTS", "DURATION", "ERROR"],
            table
        )
    )
}

/// `0.31s user, 0.02s system`.
fn cpu_time(usage: &Value) -> String {
    let secs = |v: &Value| match v.as_u64() {
        Some(ms) => format!("{}.{:02}s", ms / 1000, (ms % 1000) / 10),
        None => "?".to_string(),
    };
    format!(
        "{} user, {} system",
        secs(&usage["cpu_user_ms"]),
        secs(&usage["cpu_system_ms"])
    )
}

/// KiB as the largest whole unit that keeps one decimal: `48.9 MiB`.
fn max_memory(kib: &Value) -> String {
    // Left out by the server when it cannot be told apart from its own memory.
    let Some(kib) = kib.as_u64() else {
        return "no more than the server's own".to_string();
    };
    let (value, unit) = if kib >= 1024 * 1024 {
        (kib as f64 / (1024.0 * 1024.0), "GiB")
    } else if kib >= 1024 {
        (kib as f64 / 1024.0, "MiB")
    } else {
        return format!("{kib} KiB");
    };
    format!("{value:.1} {unit}")
}

/// Copies the output to stdout as it arrives: bytes, not text, so that partial
/// UTF-8 sequences and binary output pass through untouched.
pub(super) async fn logs(ctx: &Ctx, id: Ulid, follow: bool) -> anyhow::Result<()> {
    copy_output(ctx, id, follow, &mut std::io::stdout().lock()).await
}

/// Copies execution `id`'s output to `out`: what there is, or with `follow`
/// everything of the current attempt until it ends (waiting for a queued one to
/// start).
pub(super) async fn copy_output(
    ctx: &Ctx,
    id: Ulid,
    follow: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let id = id.to_string();
    let query: Vec<(&str, String)> = if follow {
        vec![("follow", "true".to_string())]
    } else {
        Vec::new()
    };
    let url = ctx
        .client
        .url_with_query(["v1", "executions", id.as_str(), "output"], &query);
    let timeout = (!follow).then_some(OUTPUT_TIMEOUT);
    let response = ctx.client.get_stream(url, timeout).await?;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ctx.client.transport(e))?;
        out.write_all(&chunk).context("writing output")?;
        out.flush().context("writing output")?;
    }
    Ok(())
}

async fn cancel(ctx: &Ctx, id: Ulid) -> anyhow::Result<()> {
    let id = id.to_string();
    let url = ctx.client.url(["v1", "executions", id.as_str(), "cancel"]);
    let answer = ctx.client.write(Method::POST, url, None).await?;
    if ctx.machine() {
        return Ok(ctx.data(&answer.body)?);
    }
    output::line(&cancel_line(&id, &answer.body))?;
    Ok(())
}

fn cancel_line(id: &str, exec: &Value) -> String {
    if exec["status"] == "cancelled" {
        format!("execution {id} cancelled")
    } else {
        // A running attempt is ended by the node running it, shortly after.
        format!(
            "execution {id} cancel requested ({} on {})",
            output::text(&exec["status"]),
            output::text(&exec["node"])
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn details_list_every_field_people_look_for() {
        let e = json!({
            "id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "job": "backup", "status": "failed",
            "trigger": "schedule", "attempt": 2, "node": "n1",
            "scheduled_at": "2030-01-01T00:00:00Z", "started_at": "2030-01-01T00:00:00Z",
            "finished_at": "2030-01-01T00:00:03Z", "exit_code": 1, "error": "exit status 1",
            "output_truncated": false
        });
        let text = execution_details(&e);
        for want in [
            "job:",
            "backup",
            "attempt:",
            "3.0s",
            "exit code:",
            "exit status 1",
        ] {
            assert!(text.contains(want), "{want} missing in\n{text}");
        }
        assert!(!text.contains("next attempt"), "{text}");
        assert!(!text.contains("cpu"), "no usage, no cpu line:\n{text}");
    }

    #[test]
    fn details_show_the_resources_a_process_used() {
        let e = json!({
            "id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "job": "backup", "status": "succeeded",
            "usage": {"cpu_user_ms": 1234, "cpu_system_ms": 56, "max_rss_kib": 50_000}
        });
        let text = execution_details(&e);
        let line = |key: &str| {
            text.lines()
                .find(|l| l.starts_with(key))
                .unwrap_or_else(|| panic!("no {key} line in\n{text}"))
                .to_string()
        };
        assert!(line("cpu:").contains("1.23s user, 0.05s system"), "{text}");
        assert!(line("max memory:").contains("48.8 MiB"), "{text}");
        assert_eq!(max_memory(&json!(900)), "900 KiB");
        assert_eq!(max_memory(&json!(3 * 1024 * 1024)), "3.0 GiB");
        assert_eq!(max_memory(&Value::Null), "no more than the server's own");
    }

    #[test]
    fn a_probe_shows_its_result_per_target() {
        let e = json!({
            "id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "job": "synced", "status": "failed",
            "result": {"status": "partial", "targets": [
                {"address": "10.0.0.1:80", "code": 200, "status": "succeeded", "attempts": 1, "duration_ms": 3, "error": null},
                {"address": "10.0.0.2:80", "code": 401, "status": "failed", "attempts": 6, "duration_ms": 1012, "error": "401 after 6 attempts"}
            ]}
        });
        let text = execution_details(&e);
        assert!(text.contains("result: partial"), "{text}");
        let row = text
            .lines()
            .find(|l| l.starts_with("10.0.0.2:80"))
            .expect(&text);
        for want in ["failed", "401", "6", "1012ms", "401 after 6 attempts"] {
            assert!(row.contains(want), "{want} missing in {row}");
        }
        assert!(!execution_details(&json!({"id": "x"})).contains("result"));
    }

    #[test]
    fn active_executions_show_where_and_since_when() {
        let table = active_table(&[json!({
            "id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "job": "backup", "status": "running",
            "node": "n1", "attempt": 2, "started_at": "2030-01-01T00:00:00.123Z"
        })]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("ID"), "{table}");
        let row: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            row,
            [
                "01ARZ3NDEKTSV4RRFFQ69G5FAV",
                "backup",
                "running",
                "n1",
                "2",
                "2030-01-01T00:00:00Z"
            ]
        );
    }

    #[test]
    fn cancel_says_whether_it_is_done() {
        assert_eq!(
            cancel_line("x", &json!({"status": "cancelled"})),
            "execution x cancelled"
        );
        assert_eq!(
            cancel_line(
                "x",
                &json!({"status": "running", "node": "n1", "cancel_requested": true})
            ),
            "execution x cancel requested (running on n1)"
        );
    }
}
