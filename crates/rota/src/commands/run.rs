//! `rota run ...`: one workflow run with its jobs, cancelling it, and its
//! artifacts (listed, or downloaded file by file).

use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Map, Value};
use tokio::io::AsyncWriteExt;
use ulid::Ulid;

use super::Ctx;
use crate::cli::RunCommand;
use crate::output;

pub async fn run(ctx: &Ctx, cmd: RunCommand) -> anyhow::Result<()> {
    match cmd {
        RunCommand::Get { id } => show(ctx, id).await,
        RunCommand::Cancel { id } => cancel(ctx, id).await,
        RunCommand::Artifacts { id, download } => match download {
            None => artifacts(ctx, id).await,
            Some(dir) => download_all(ctx, id, &dir).await,
        },
    }
}

/// A run's jobs in the order they started (their execution ids are ULIDs, so
/// they sort by creation time), then those that never started, by name.
pub(super) fn in_start_order(jobs: &Map<String, Value>) -> Vec<(&str, &Value)> {
    let mut out: Vec<(&str, &Value)> = jobs.iter().map(|(k, v)| (k.as_str(), v)).collect();
    out.sort_by_key(|(name, job)| {
        let first = job["executions"][0].as_str().map(str::to_owned);
        (first.is_none(), first, name.to_string())
    });
    out
}

async fn show(ctx: &Ctx, id: Ulid) -> anyhow::Result<()> {
    let id = id.to_string();
    let answer = ctx
        .client
        .get(ctx.client.url(["v1", "runs", id.as_str()]))
        .await?;
    if ctx.machine() {
        return Ok(ctx.data(&answer.body)?);
    }
    output::line(&run_details(&answer.body))?;
    Ok(())
}

/// The run's status lines, then a table of its jobs.
pub(super) fn run_details(run: &Value) -> String {
    let t = output::text;
    let mut status = t(&run["status"]);
    if !run["ending"].is_null() {
        status.push_str(&format!(" (ending {})", t(&run["ending"])));
    }
    let mut rows = vec![
        ("run", t(&run["id"])),
        ("workflow", t(&run["workflow"])),
        ("status", status),
        ("trigger", t(&run["trigger"])),
        ("created", output::time(&run["created_at"])),
        ("started", output::time(&run["started_at"])),
        ("finished", output::time(&run["finished_at"])),
        ("duration", output::run_duration(run, chrono::Utc::now())),
    ];
    if !run["error"].is_null() {
        rows.push(("error", crate::error::one_line(&t(&run["error"]), 200)));
    }
    if let Some(artifacts) = run["artifacts"].as_array().filter(|a| !a.is_empty()) {
        rows.push(("artifacts", artifacts.len().to_string()));
    }
    let jobs = run["jobs"].as_object().cloned().unwrap_or_default();
    let table = in_start_order(&jobs)
        .into_iter()
        .map(|(name, job)| {
            let executions: Vec<String> = job["executions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(output::text)
                .collect();
            vec![
                name.to_string(),
                t(&job["status"]),
                if executions.is_empty() {
                    "-".to_string()
                } else {
                    executions.join(", ")
                },
                crate::error::one_line(&t(&job["error"]), 100),
            ]
        })
        .collect();
    format!(
        "{}\n\n{}",
        output::key_values(&rows),
        output::table(&["JOB", "STATUS", "EXECUTIONS", "ERROR"], table)
    )
}

async fn cancel(ctx: &Ctx, id: Ulid) -> anyhow::Result<()> {
    let id = id.to_string();
    let url = ctx.client.url(["v1", "runs", id.as_str(), "cancel"]);
    let answer = ctx.client.write(Method::POST, url, None).await?;
    if ctx.machine() {
        return Ok(ctx.data(&answer.body)?);
    }
    output::line(&cancel_line(&id, &answer.body))?;
    Ok(())
}

fn cancel_line(id: &str, run: &Value) -> String {
    let status = output::text(&run["status"]);
    match (status.as_str(), run["ending"].as_str()) {
        ("cancelled", _) if run["error"] == "cancelled by request" => {
            format!("run {id} cancelled")
        }
        (_, Some(ending)) => format!("run {id} {ending} once its running jobs have stopped"),
        _ => format!("run {id} had already ended ({status})"),
    }
}

async fn fetch_artifacts(ctx: &Ctx, id: &str) -> anyhow::Result<Value> {
    let url = ctx.client.url(["v1", "runs", id, "artifacts"]);
    Ok(ctx.client.get(url).await?.body)
}

async fn artifacts(ctx: &Ctx, id: Ulid) -> anyhow::Result<()> {
    let answer = fetch_artifacts(ctx, &id.to_string()).await?;
    if ctx.machine() {
        return Ok(ctx.data(&answer)?);
    }
    let rows = output::items(&answer)
        .iter()
        .map(|a| {
            vec![
                output::text(&a["name"]),
                output::text(&a["job"]),
                output::text(&a["node"]),
                a["files"].as_array().map_or(0, Vec::len).to_string(),
                output::bytes(&a["size"]),
            ]
        })
        .collect();
    output::line(&output::table(
        &["NAME", "JOB", "NODE", "FILES", "SIZE"],
        rows,
    ))?;
    Ok(())
}

/// `dir/artifact/path`, refusing anything that would land outside `dir`.
fn target_path(dir: &Path, artifact: &str, path: &str) -> anyhow::Result<PathBuf> {
    rota_core::validate_name("artifact", artifact)?;
    let relative = Path::new(path);
    let inside = !path.is_empty()
        && relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if !inside {
        bail!("artifact {artifact:?} lists {path:?}, which is not a relative path inside it; not downloaded");
    }
    Ok(dir.join(artifact).join(relative))
}

/// Downloads every file of every artifact into `dir/name/path`, checking each
/// file's size against the record.
async fn download_all(ctx: &Ctx, id: Ulid, dir: &Path) -> anyhow::Result<()> {
    let id = id.to_string();
    let answer = fetch_artifacts(ctx, &id).await?;
    let mut done = Vec::new();
    let mut total = 0u64;
    for artifact in output::items(&answer) {
        let name = output::text(&artifact["name"]);
        for file in artifact["files"].as_array().into_iter().flatten() {
            let path = output::text(&file["path"]);
            let target = target_path(dir, &name, &path)?;
            let segments = ["v1", "runs", id.as_str(), "artifacts", name.as_str()]
                .into_iter()
                .chain(path.split('/'));
            let url = ctx.client.url(segments);
            let size = save(ctx, url, &target)
                .await
                .with_context(|| format!("artifact {name:?}, file {path:?}"))?;
            if let Some(expected) = file["size"].as_u64().filter(|s| *s != size) {
                bail!("artifact {name:?}, file {path:?}: got {size} bytes, the run recorded {expected}");
            }
            total += size;
            done.push(json!({"artifact": name, "path": path, "size": size, "file": target}));
        }
    }
    if ctx.machine() {
        ctx.data(&Value::Array(done))?;
    } else {
        output::line(&format!(
            "downloaded {} files ({}) to {}",
            done.len(),
            output::bytes(&json!(total)),
            dir.display()
        ))?;
    }
    Ok(())
}

/// Streams `url` into `target` (directories created); the number of bytes.
async fn save(ctx: &Ctx, url: reqwest::Url, target: &Path) -> anyhow::Result<u64> {
    if let Some(parent) = target.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let response = ctx.client.get_stream(url, None).await?;
    let mut out = tokio::fs::File::create(target)
        .await
        .with_context(|| format!("cannot create {}", target.display()))?;
    let mut body = response.bytes_stream();
    let mut size = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ctx.client.transport(e))?;
        size += chunk.len() as u64;
        out.write_all(&chunk)
            .await
            .with_context(|| format!("cannot write {}", target.display()))?;
    }
    out.flush()
        .await
        .with_context(|| format!("cannot write {}", target.display()))?;
    Ok(size)
}

/// Why a followed or waited-for run did not succeed: `run ID failed: why`.
pub(super) fn check_succeeded(run: &Value) -> anyhow::Result<()> {
    let status = output::text(&run["status"]);
    if status == "succeeded" {
        return Ok(());
    }
    let mut reason = format!("run {} {status}", output::text(&run["id"]));
    if let Some(error) = run["error"].as_str().filter(|e| !e.is_empty()) {
        reason.push_str(&format!(": {}", crate::error::one_line(error, 200)));
    }
    Err(anyhow!(reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "01ARZ3NDEKTSV4RRFFQ69G5FAV";

    fn run() -> Value {
        json!({
            "id": ID, "workflow": "ci", "status": "failed", "ending": null, "trigger": "manual",
            "created_at": "2030-01-01T00:00:00Z", "started_at": "2030-01-01T00:00:00Z",
            "finished_at": "2030-01-01T00:00:02Z", "error": "jobs did not succeed: a failed",
            "jobs": {
                "b": {"status": "skipped", "executions": [], "error": "skipped: needs did not succeed (a failed)"},
                "a": {"status": "failed", "executions": ["01ARZ3NDEKTSV4RRFFQ69G5FAW"], "error": "exit status 1"},
            },
            "artifacts": [],
        })
    }

    #[test]
    fn details_show_the_run_then_its_jobs_in_start_order() {
        let text = run_details(&run());
        assert!(text.contains("2.0s"), "{text}");
        assert!(text.contains("jobs did not succeed: a failed"), "{text}");
        let a = text.find("\na ").expect("job a");
        let b = text.find("\nb ").expect("job b");
        assert!(a < b, "a started, b never did:\n{text}");
        assert!(text.contains("01ARZ3NDEKTSV4RRFFQ69G5FAW"), "{text}");
    }

    #[test]
    fn only_success_passes() {
        assert_eq!(
            check_succeeded(&run()).unwrap_err().to_string(),
            format!("run {ID} failed: jobs did not succeed: a failed")
        );
        assert!(check_succeeded(&json!({"id": ID, "status": "succeeded"})).is_ok());
    }

    #[test]
    fn cancel_says_what_happened() {
        let cancelled = json!({"status": "cancelled", "error": "cancelled by request"});
        assert_eq!(cancel_line("x", &cancelled), "run x cancelled");
        let ending = json!({"status": "running", "ending": "cancelled"});
        assert_eq!(
            cancel_line("x", &ending),
            "run x cancelled once its running jobs have stopped"
        );
        let ended = json!({"status": "succeeded"});
        assert_eq!(
            cancel_line("x", &ended),
            "run x had already ended (succeeded)"
        );
    }

    #[test]
    fn downloads_stay_inside_the_directory() {
        let dir = Path::new("/tmp/out");
        assert_eq!(
            target_path(dir, "report", "html/index.html").unwrap(),
            PathBuf::from("/tmp/out/report/html/index.html")
        );
        for (artifact, path) in [
            ("report", "../x"),
            ("report", "/etc/passwd"),
            ("..", "x"),
            ("report", ""),
        ] {
            assert!(
                target_path(dir, artifact, path).is_err(),
                "{artifact} {path}"
            );
        }
    }
}
