//! `rota workflow ...`: apply workflow files, list, inspect, delete, run (and
//! follow a run to its end), and list a workflow's runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::anyhow;
use reqwest::Method;
use rota_core::workflow::WorkflowSpec;
use serde_json::{json, Value};

use super::follow::{follow, RunWatch};
use super::job::{apply_documents, read_documents, DocumentKind};
use super::run::check_succeeded;
use super::Ctx;
use crate::cli::{FileFormat, WorkflowCommand};
use crate::docfile::parse_workflow_file;
use crate::output;

pub async fn run(ctx: &Ctx, cmd: WorkflowCommand) -> anyhow::Result<()> {
    match cmd {
        WorkflowCommand::Apply { files, format } => apply(ctx, &files, format).await,
        WorkflowCommand::Ls => list(ctx).await,
        WorkflowCommand::Get { name } => show(ctx, &name).await,
        WorkflowCommand::Rm { name } => remove(ctx, &name).await,
        WorkflowCommand::Run { name, follow } => run_now(ctx, &name, follow).await,
        WorkflowCommand::Runs { name, limit } => runs(ctx, &name, limit).await,
    }
}

/// Rejects a bad name before it becomes part of a URL, with the rule it breaks.
fn check_name(name: &str) -> anyhow::Result<()> {
    rota_core::validate_name("name", name)?;
    Ok(())
}

/// Workflows as documents of a file.
const WORKFLOW: DocumentKind = DocumentKind {
    one: "workflow",
    many: "workflows",
};

/// Reads and validates every file; the workflows in order, each with the file it
/// came from. Nothing is sent unless every file is valid.
fn read_workflow_files(
    files: &[PathBuf],
    format: Option<FileFormat>,
) -> anyhow::Result<Vec<(WorkflowSpec, String)>> {
    read_documents(
        files,
        format,
        &WORKFLOW,
        |text, format| Ok(parse_workflow_file(text, format)?),
        |spec| &spec.name,
    )
}

async fn apply(ctx: &Ctx, files: &[PathBuf], format: Option<FileFormat>) -> anyhow::Result<()> {
    let workflows = read_workflow_files(files, format)?;
    apply_documents(ctx, &WORKFLOW, &workflows, |spec| &spec.name).await
}

/// Every workflow, page after page.
async fn list(ctx: &Ctx) -> anyhow::Result<()> {
    let items = super::list_all(ctx, "workflows", &[]).await?;
    if ctx.machine() {
        return Ok(ctx.data(&json!({ "items": items }))?);
    }
    let rows = items
        .iter()
        .map(|w| {
            vec![
                output::text(&w["name"]),
                output::schedule(&w["schedule"]),
                w["jobs"].as_object().map_or(0, |j| j.len()).to_string(),
                output::text(&w["concurrency"]),
                output::time(&w["next_run_at"]),
                output::yes_no(&w["paused"]),
            ]
        })
        .collect();
    output::line(&output::table(
        &[
            "NAME",
            "SCHEDULE",
            "JOBS",
            "CONCURRENCY",
            "NEXT RUN",
            "PAUSED",
        ],
        rows,
    ))?;
    Ok(())
}

async fn show(ctx: &Ctx, name: &str) -> anyhow::Result<()> {
    check_name(name)?;
    let answer = ctx
        .client
        .get(ctx.client.url(["v1", "workflows", name]))
        .await?;
    if ctx.machine() {
        return Ok(ctx.data(&answer.body)?);
    }
    output::line(&workflow_details(&answer.body))?;
    Ok(())
}

/// The key/value view of `workflow get`, then a table of its jobs (each after its
/// needs).
fn workflow_details(w: &Value) -> String {
    let t = output::text;
    let mut rows = vec![("name", t(&w["name"]))];
    if !w["description"].is_null() {
        rows.push(("description", t(&w["description"])));
    }
    rows.extend([
        ("schedule", output::schedule(&w["schedule"])),
        ("concurrency", t(&w["concurrency"])),
        ("timeout", t(&w["timeout"])),
        ("paused", output::yes_no(&w["paused"])),
        ("env", output::map(&w["env"])),
        ("history limit", t(&w["history_limit"])),
        ("created", output::time(&w["created_at"])),
        ("updated", output::time(&w["updated_at"])),
        ("revision", t(&w["revision"])),
        ("next run", output::time(&w["next_run_at"])),
    ]);
    let jobs = w["jobs"].as_object().cloned().unwrap_or_default();
    let table = needs_order(&jobs)
        .into_iter()
        .map(|name| {
            let job = &jobs[name.as_str()];
            let needs: Vec<String> = job["needs"]
                .as_array()
                .into_iter()
                .flatten()
                .map(t)
                .collect();
            let runs = if job["executor"].is_null() {
                let steps: Vec<String> = job["steps"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| t(&s["name"]))
                    .collect();
                format!("steps: {}", steps.join(", "))
            } else {
                output::executor(&job["executor"])
            };
            let artifacts: Vec<String> = job["artifacts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| t(&a["name"]))
                .collect();
            let list = |v: Vec<String>| {
                if v.is_empty() {
                    "-".into()
                } else {
                    v.join(", ")
                }
            };
            vec![
                name,
                list(needs),
                job["if"].as_str().unwrap_or("success").to_string(),
                runs,
                list(artifacts),
            ]
        })
        .collect();
    format!(
        "{}\n\n{}",
        output::key_values(&rows),
        output::table(&["JOB", "NEEDS", "IF", "RUNS", "ARTIFACTS"], table)
    )
}

/// Job names with each after its needs (ties by name); whatever a cycle leaves
/// (the server refuses cycles) comes last.
fn needs_order(jobs: &serde_json::Map<String, Value>) -> Vec<String> {
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut order = Vec::with_capacity(jobs.len());
    while order.len() < jobs.len() {
        let before = order.len();
        for (name, job) in jobs {
            let ready = job["needs"]
                .as_array()
                .into_iter()
                .flatten()
                .all(|n| n.as_str().is_some_and(|n| done.contains(n)));
            if !done.contains(name.as_str()) && ready {
                done.insert(name);
                order.push(name.clone());
            }
        }
        if order.len() == before {
            order.extend(jobs.keys().filter(|k| !done.contains(k.as_str())).cloned());
            break;
        }
    }
    order
}

async fn remove(ctx: &Ctx, name: &str) -> anyhow::Result<()> {
    check_name(name)?;
    ctx.client
        .write(
            Method::DELETE,
            ctx.client.url(["v1", "workflows", name]),
            None,
        )
        .await?;
    if ctx.machine() {
        ctx.data(&json!({"name": name, "deleted": true}))?;
    } else {
        output::line(&format!("workflow/{name} deleted"))?;
    }
    Ok(())
}

async fn run_now(ctx: &Ctx, name: &str, follow_run: bool) -> anyhow::Result<()> {
    check_name(name)?;
    // Opened before the run exists, so that none of its changes goes unseen.
    let watch = match follow_run {
        true => Some(RunWatch::open(ctx).await?),
        false => None,
    };
    let url = ctx.client.url(["v1", "workflows", name, "run"]);
    let answer = ctx.client.write(Method::POST, url, None).await?;
    let id = answer.body["id"]
        .as_str()
        .ok_or_else(|| anyhow!("the server's answer has no run id: {}", answer.body))?
        .to_string();
    let Some(watch) = watch else {
        if ctx.machine() {
            ctx.data(&answer.body)?;
        } else {
            output::line(&id)?;
        }
        return Ok(());
    };
    if !ctx.machine() {
        output::line(&format!("run {id}"))?;
    }
    let done = follow(ctx, watch, name, answer.body).await?;
    if ctx.machine() {
        ctx.data(&done)?;
    } else {
        let took = output::run_duration(&done, chrono::Utc::now());
        output::line(&format!(
            "run {id} {} in {took}",
            output::text(&done["status"])
        ))?;
    }
    check_succeeded(&done)
}

async fn runs(ctx: &Ctx, name: &str, limit: u32) -> anyhow::Result<()> {
    check_name(name)?;
    let url = ctx.client.url_with_query(
        ["v1", "workflows", name, "runs"],
        &[("limit", limit.to_string())],
    );
    let answer = ctx.client.get(url).await?;
    if ctx.machine() {
        return Ok(ctx.data(&answer.body)?);
    }
    let now = chrono::Utc::now();
    let rows = output::items(&answer.body)
        .iter()
        .map(|r| {
            vec![
                output::text(&r["id"]),
                output::text(&r["status"]),
                output::text(&r["trigger"]),
                output::time(&r["created_at"]),
                output::run_duration(r, now),
                job_counts(&r["jobs"]),
            ]
        })
        .collect();
    output::line(&output::table(
        &["ID", "STATUS", "TRIGGER", "CREATED", "DURATION", "JOBS"],
        rows,
    ))?;
    Ok(())
}

/// `2 succeeded, 1 skipped`: how many jobs of a run are in each status.
fn job_counts(jobs: &Value) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for job in jobs.as_object().into_iter().flat_map(|j| j.values()) {
        *counts.entry(output::text(&job["status"])).or_default() += 1;
    }
    if counts.is_empty() {
        return "-".to_string();
    }
    counts
        .iter()
        .map(|(status, n)| format!("{n} {status}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_are_shown_after_their_needs() {
        let w = json!({
            "name": "ci", "schedule": {"manual": true}, "concurrency": "queue",
            "jobs": {
                "a-deploy": {"needs": ["test"], "if": "always", "executor": {"type": "shell", "command": "make deploy"}},
                "lint": {"executor": {"type": "shell", "command": "make lint"}},
                "test": {"needs": ["lint"], "steps": [{"name": "unit", "executor": {"type": "shell", "command": "x"}}],
                         "artifacts": [{"name": "coverage", "path": "cov/"}]},
            }
        });
        let text = workflow_details(&w);
        let at = |s: &str| {
            text.find(s)
                .unwrap_or_else(|| panic!("{s} missing in\n{text}"))
        };
        assert!(
            at("\nlint ") < at("\ntest ") && at("\ntest ") < at("\na-deploy "),
            "{text}"
        );
        assert!(text.contains("steps: unit"), "{text}");
        assert!(text.contains("coverage"), "{text}");
        assert!(text.contains("shell: make deploy"), "{text}");
    }

    #[test]
    fn run_jobs_are_counted_by_status() {
        let jobs = json!({"a": {"status": "succeeded"}, "b": {"status": "succeeded"}, "c": {"status": "skipped"}});
        assert_eq!(job_counts(&jobs), "1 skipped, 2 succeeded");
        assert_eq!(job_counts(&json!({})), "-");
    }

    #[test]
    fn files_are_read_and_duplicates_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let text = "name: ci\nschedule: {manual: true}\njobs:\n  a: {executor: {type: shell, command: 'true'}}\n";
        let a = dir.path().join("a.yaml");
        let b = dir.path().join("b.yml");
        std::fs::write(&a, text).unwrap();
        std::fs::write(&b, text).unwrap();
        let read = read_workflow_files(std::slice::from_ref(&a), None).unwrap();
        assert_eq!(read[0].0.name, "ci");
        let err = read_workflow_files(&[a, b], None).unwrap_err().to_string();
        assert!(err.contains("defined twice"), "{err}");
    }
}
