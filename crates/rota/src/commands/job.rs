//! `rota job ...`: apply job files, list, inspect, run, pause, resume, delete and
//! show the history of jobs.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use reqwest::{Method, StatusCode};
use rota_core::job::APPLY_SET_KEY;
use rota_core::{ExecStatus, JobSpec};
use serde_json::{json, Value};

use super::Ctx;
use crate::cli::{FileFormat, JobCommand};
use crate::error::ClientError;
use crate::jobfile::{parse_job_file, strip_server_fields, JobFileFormat};
use crate::output;

/// How often `job run --wait` asks whether the run has ended. A person is waiting,
/// and one small GET per half second is nothing for the server.
const WAIT_POLL: Duration = Duration::from_millis(500);

pub async fn run(ctx: &Ctx, cmd: JobCommand) -> anyhow::Result<()> {
    match cmd {
        JobCommand::Apply {
            files,
            format,
            dry_run,
            apply_set,
            prune,
        } => {
            let set = apply_set
                .map(|name| -> anyhow::Result<ApplySet> {
                    rota_core::validate_name("--apply-set", &name)?;
                    Ok(ApplySet { name, prune })
                })
                .transpose()?;
            apply(ctx, &files, format, dry_run, set.as_ref()).await
        }
        JobCommand::Ls { prefix } => list(ctx, prefix.as_deref()).await,
        JobCommand::Get { name } => show(ctx, &name).await,
        JobCommand::Rm { name } => remove(ctx, &name).await,
        JobCommand::Run {
            name,
            wait,
            follow: false,
        } => run_now(ctx, &name, wait).await,
        JobCommand::Run {
            name, follow: true, ..
        } => run_followed(ctx, &name).await,
        JobCommand::Logs { name, follow } => latest_logs(ctx, &name, follow).await,
        JobCommand::Pause { name } => set_paused(ctx, &name, true).await,
        JobCommand::Resume { name } => set_paused(ctx, &name, false).await,
        JobCommand::History {
            name,
            limit,
            before,
        } => history(ctx, &name, limit, before).await,
    }
}

/// Rejects a bad name before it becomes part of a URL, with the rule it breaks. A
/// workflow's internal job (`ci:lint`, `ci:@trigger`) passes: the server shows it,
/// and explains why it refuses to change it.
fn check_name(name: &str) -> anyhow::Result<()> {
    if let Some((workflow, job)) = rota_core::workflow::split_job_name(name) {
        let job_ok = job == rota_core::workflow::TRIGGER_SUFFIX
            || rota_core::validate_name("name", job).is_ok();
        if rota_core::validate_name("name", workflow).is_ok() && job_ok {
            return Ok(());
        }
    }
    rota_core::validate_name("name", name)?;
    Ok(())
}

impl From<FileFormat> for JobFileFormat {
    fn from(f: FileFormat) -> Self {
        match f {
            FileFormat::Toml => JobFileFormat::Toml,
            FileFormat::Yaml => JobFileFormat::Yaml,
            FileFormat::Json => JobFileFormat::Json,
        }
    }
}

/// A file's origin (its path, or `<stdin>` for `-`), format and text. `-` may be
/// read once per command; `read_stdin` remembers whether it was.
pub(super) fn read_source(
    path: &Path,
    format: Option<FileFormat>,
    read_stdin: &mut bool,
    what: &str,
) -> anyhow::Result<(String, JobFileFormat, String)> {
    let stdin = path == Path::new("-");
    let origin = if stdin {
        "<stdin>".to_string()
    } else {
        path.display().to_string()
    };
    let format: JobFileFormat = match format {
        Some(f) => f.into(),
        None if stdin => {
            bail!("reading {what} from standard input needs --format toml|yaml|json")
        }
        None => JobFileFormat::from_path(path).ok_or_else(|| {
            anyhow!(
                "{origin}: cannot tell the format from the file name; \
                 name it .toml, .yaml, .yml or .json, or pass --format toml|yaml|json"
            )
        })?,
    };
    let text = if stdin {
        if *read_stdin {
            bail!("standard input (-) can be given only once");
        }
        *read_stdin = true;
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
        text
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {origin}"))?
    };
    Ok((origin, format, text))
}

/// Reads and parses every file; the jobs in order, each with the file it came from.
/// Nothing is sent unless every file is valid.
fn read_job_files(
    files: &[PathBuf],
    format: Option<FileFormat>,
) -> anyhow::Result<Vec<(JobSpec, String)>> {
    read_documents(
        files,
        format,
        &JOB,
        |text, format| Ok(parse_job_file(text, format)?),
        |spec| &spec.name,
    )
}

/// The apply set of `job apply --apply-set NAME [--prune]`.
struct ApplySet {
    name: String,
    /// Delete the set's jobs the files no longer hold.
    prune: bool,
}

async fn apply(
    ctx: &Ctx,
    files: &[PathBuf],
    format: Option<FileFormat>,
    dry_run: bool,
    set: Option<&ApplySet>,
) -> anyhow::Result<()> {
    let mut jobs = read_job_files(files, format)?;
    if let Some(set) = set {
        // What the server stores, so that the dry run compares like with like.
        for (spec, _) in &mut jobs {
            spec.metadata
                .insert(APPLY_SET_KEY.to_string(), Value::String(set.name.clone()));
        }
    }
    if dry_run {
        return plan(ctx, &jobs, set.filter(|s| s.prune)).await;
    }
    // Every job of the files in one request, written as one log entry (with the
    // prune, if asked): all of it or, when the server refuses one job, none.
    let mut body = json!({ "jobs": jobs.iter().map(|(spec, _)| spec).collect::<Vec<_>>() });
    if let Some(set) = set {
        body["apply_set"] = json!(set.name);
        body["prune"] = json!(set.prune);
    }
    let answer = ctx
        .client
        .write(Method::POST, ctx.client.url(["v1", "jobs"]), Some(&body))
        .await
        .map_err(|err| match job_of_error(&err, &jobs) {
            Some(origin) => anyhow::Error::new(err).context(origin),
            None => anyhow::Error::new(err),
        })?;
    let items = output::items(&answer.body);
    let deleted = answer.body["deleted"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if ctx.machine() {
        let mut all = items.to_vec();
        all.extend(
            deleted
                .iter()
                .map(|name| json!({"name": name, "action": "deleted"})),
        );
        return Ok(ctx.data(&Value::Array(all))?);
    }
    for item in items {
        output::line(&format!(
            "job/{} {}",
            output::text(&item["name"]),
            output::text(&item["action"])
        ))?;
    }
    for name in &deleted {
        output::line(&format!("job/{} deleted", output::text(name)))?;
    }
    Ok(())
}

/// For an error naming `jobs[i]...`: the file and name of that job, to put in
/// front of the server's message.
fn job_of_error(err: &ClientError, jobs: &[(JobSpec, String)]) -> Option<String> {
    let ClientError::Api {
        field: Some(field), ..
    } = err
    else {
        return None;
    };
    let index: usize = field
        .strip_prefix("jobs[")?
        .split(']')
        .next()?
        .parse()
        .ok()?;
    let (spec, origin) = jobs.get(index)?;
    Some(format!("{origin}: job/{}", spec.name))
}

/// `job apply --dry-run`: reads each job from the server and says what applying
/// the file would do; writes nothing.
async fn plan(
    ctx: &Ctx,
    jobs: &[(JobSpec, String)],
    prune: Option<&ApplySet>,
) -> anyhow::Result<()> {
    let mut planned = Vec::new();
    for (spec, origin) in jobs {
        let url = ctx.client.url(["v1", "jobs", spec.name.as_str()]);
        let stored = match ctx.client.get(url).await {
            Ok(answer) => Some(answer.body),
            Err(ClientError::Api { status: 404, .. }) => None,
            Err(err) => return Err(err).with_context(|| format!("{origin}: job/{}", spec.name)),
        };
        let action = planned_action(spec, stored);
        if ctx.machine() {
            planned.push(json!({"name": spec.name, "action": action}));
        } else {
            output::line(&format!("job/{} {action} (dry run)", spec.name))?;
        }
    }
    if let Some(set) = prune {
        let kept: std::collections::BTreeSet<&str> =
            jobs.iter().map(|(spec, _)| spec.name.as_str()).collect();
        for job in super::list_all(ctx, "jobs", &[]).await? {
            let name = output::text(&job["name"]);
            if job["metadata"][APPLY_SET_KEY].as_str() != Some(set.name.as_str())
                || kept.contains(name.as_str())
            {
                continue;
            }
            if ctx.machine() {
                planned.push(json!({"name": name, "action": "deleted"}));
            } else {
                output::line(&format!("job/{name} deleted (dry run)"))?;
            }
        }
    }
    if ctx.machine() {
        ctx.data(&Value::Array(planned))?;
    }
    Ok(())
}

/// What applying `spec` does to the job the server shows as `stored` (`None`:
/// there is none): `created`, `updated` or `unchanged`.
fn planned_action(spec: &JobSpec, stored: Option<Value>) -> &'static str {
    let Some(mut stored) = stored else {
        return "created";
    };
    strip_server_fields(&mut stored);
    // A view this client cannot read as a spec (a newer server's fields) differs.
    match serde_json::from_value::<JobSpec>(stored) {
        Ok(current) if current == *spec => "unchanged",
        _ => "updated",
    }
}

/// Jobs as documents of a file.
const JOB: DocumentKind = DocumentKind {
    one: "job",
    many: "jobs",
};

/// What [`read_documents`] and [`apply_documents`] handle: `one` names a
/// document in messages and output, `many` its collection (`/v1/{many}/{name}`).
pub(super) struct DocumentKind {
    pub one: &'static str,
    pub many: &'static str,
}

/// Reads and parses every file; the documents in order, each with the file it
/// came from. A name defined twice, or a file without documents, is an error.
pub(super) fn read_documents<T>(
    files: &[PathBuf],
    format: Option<FileFormat>,
    kind: &DocumentKind,
    parse: impl Fn(&str, JobFileFormat) -> anyhow::Result<Vec<T>>,
    name_of: impl Fn(&T) -> &str,
) -> anyhow::Result<Vec<(T, String)>> {
    let mut out = Vec::new();
    let mut origin_of: BTreeMap<String, String> = BTreeMap::new();
    let mut read_stdin = false;
    for path in files {
        let (origin, format, text) = read_source(path, format, &mut read_stdin, kind.many)?;
        let docs = parse(&text, format).with_context(|| origin.clone())?;
        if docs.is_empty() {
            bail!("{origin}: no {} found", kind.many);
        }
        for doc in docs {
            let name = name_of(&doc).to_string();
            if let Some(first) = origin_of.insert(name.clone(), origin.clone()) {
                bail!(
                    "{} {name:?} is defined twice ({first} and {origin}); names are unique",
                    kind.one
                );
            }
            out.push((doc, origin.clone()));
        }
    }
    Ok(out)
}

/// PUTs every document in order; says what was created or updated (with `-o json`,
/// also what was applied before a failure).
pub(super) async fn apply_documents<T: serde::Serialize>(
    ctx: &Ctx,
    kind: &DocumentKind,
    docs: &[(T, String)],
    name_of: impl Fn(&T) -> &str,
) -> anyhow::Result<()> {
    let mut applied = Vec::new();
    for (doc, origin) in docs {
        let name = name_of(doc);
        let url = ctx.client.url(["v1", kind.many, name]);
        let body =
            serde_json::to_value(doc).with_context(|| format!("encoding the {}", kind.one))?;
        let answer = match ctx.client.write(Method::PUT, url, Some(&body)).await {
            Ok(answer) => answer,
            Err(err) => {
                // Say what did get applied before the failure, in the chosen format.
                if ctx.machine() {
                    ctx.data(&Value::Array(applied))?;
                }
                return Err(err).with_context(|| format!("{origin}: {}/{name}", kind.one));
            }
        };
        let action = if answer.status == StatusCode::CREATED {
            "created"
        } else {
            "updated"
        };
        if ctx.machine() {
            applied.push(json!({"name": name, "action": action, kind.one: answer.body}));
        } else {
            output::line(&format!("{}/{name} {action}", kind.one))?;
        }
    }
    if ctx.machine() {
        ctx.data(&Value::Array(applied))?;
    }
    Ok(())
}

async fn list(ctx: &Ctx, prefix: Option<&str>) -> anyhow::Result<()> {
    let mut query = vec![("last_execution", "true".to_string())];
    query.extend(prefix.map(|p| ("prefix", p.to_string())));
    let items = super::list_all(ctx, "jobs", &query).await?;
    if ctx.machine() {
        return Ok(ctx.data(&serde_json::json!({ "items": items }))?);
    }
    let rows = items
        .iter()
        .map(|job| {
            vec![
                output::text(&job["name"]),
                output::schedule(&job["schedule"]),
                output::text(&job["executor"]["type"]),
                output::time(&job["next_run_at"]),
                output::yes_no(&job["paused"]),
                output::text(&job["last_execution"]["status"]),
            ]
        })
        .collect();
    output::line(&output::table(
        &[
            "NAME",
            "SCHEDULE",
            "EXECUTOR",
            "NEXT RUN",
            "PAUSED",
            "LAST STATUS",
        ],
        rows,
    ))?;
    Ok(())
}

async fn show(ctx: &Ctx, name: &str) -> anyhow::Result<()> {
    check_name(name)?;
    let answer = ctx.client.get(ctx.client.url(["v1", "jobs", name])).await?;
    if ctx.machine() {
        return Ok(ctx.data(&answer.body)?);
    }
    output::line(&job_details(&answer.body))?;
    Ok(())
}

/// The key/value view of `job get`.
fn job_details(job: &Value) -> String {
    let t = output::text;
    let mut rows = vec![("name", t(&job["name"]))];
    if !job["description"].is_null() {
        rows.push(("description", t(&job["description"])));
    }
    rows.extend([
        ("schedule", output::schedule(&job["schedule"])),
        ("executor", output::executor(&job["executor"])),
        ("timeout", t(&job["timeout"])),
        ("retry", output::retry(&job["retry"])),
        ("priority", t(&job["priority"])),
        ("overlap", t(&job["overlap"])),
        (
            "misfire",
            format!(
                "{} (window {})",
                t(&job["misfire"]),
                t(&job["catchup_window"])
            ),
        ),
        ("paused", output::yes_no(&job["paused"])),
        ("tags", output::map(&job["tags"])),
        ("history limit", t(&job["history_limit"])),
        ("created", output::time(&job["created_at"])),
        ("updated", output::time(&job["updated_at"])),
        ("revision", t(&job["revision"])),
        ("next run", output::time(&job["next_run_at"])),
        (
            "last execution",
            output::execution_summary(&job["last_execution"]),
        ),
    ]);
    output::key_values(&rows)
}

async fn remove(ctx: &Ctx, name: &str) -> anyhow::Result<()> {
    check_name(name)?;
    ctx.client
        .write(Method::DELETE, ctx.client.url(["v1", "jobs", name]), None)
        .await?;
    if ctx.machine() {
        ctx.data(&json!({"name": name, "deleted": true}))?;
    } else {
        output::line(&format!("job/{name} deleted"))?;
    }
    Ok(())
}

async fn set_paused(ctx: &Ctx, name: &str, paused: bool) -> anyhow::Result<()> {
    check_name(name)?;
    let action = if paused { "pause" } else { "resume" };
    let answer = ctx
        .client
        .write(
            Method::POST,
            ctx.client.url(["v1", "jobs", name, action]),
            None,
        )
        .await?;
    if ctx.machine() {
        ctx.data(&answer.body)?;
    } else {
        output::line(&format!("job/{name} {action}d"))?;
    }
    Ok(())
}

/// `POST /v1/jobs/{name}/run`: the new execution and its id.
async fn start_run(ctx: &Ctx, name: &str) -> anyhow::Result<(Value, String)> {
    check_name(name)?;
    let answer = ctx
        .client
        .write(
            Method::POST,
            ctx.client.url(["v1", "jobs", name, "run"]),
            None,
        )
        .await?;
    let id = answer.body["id"]
        .as_str()
        .ok_or_else(|| anyhow!("the server's answer has no execution id: {}", answer.body))?
        .to_string();
    Ok((answer.body, id))
}

async fn run_now(ctx: &Ctx, name: &str, wait: bool) -> anyhow::Result<()> {
    let (execution, id) = start_run(ctx, name).await?;
    if !wait {
        if ctx.machine() {
            ctx.data(&execution)?;
        } else {
            output::line(&id)?;
        }
        return Ok(());
    }
    if !ctx.machine() {
        output::line(&id)?;
    }
    let done = wait_for_end(ctx, &id).await?;
    if ctx.machine() {
        ctx.data(&done)?;
    } else {
        output::line(&end_line(&done))?;
    }
    check_succeeded(&done)
}

/// Polls the execution until it reaches a terminal status (retries included).
async fn wait_for_end(ctx: &Ctx, id: &str) -> anyhow::Result<Value> {
    wait_until(ctx, id, |_, _| false).await
}

/// Polls the execution until it reaches a terminal status or `also` holds.
async fn wait_until(
    ctx: &Ctx,
    id: &str,
    also: impl Fn(&Value, ExecStatus) -> bool,
) -> anyhow::Result<Value> {
    let url = ctx.client.url(["v1", "executions", id]);
    loop {
        let exec = ctx.client.get(url.clone()).await?.body;
        let status: ExecStatus = serde_json::from_value(exec["status"].clone())
            .map_err(|_| anyhow!("execution {id} has an unknown status {}", exec["status"]))?;
        if status.is_terminal() || also(&exec, status) {
            return Ok(exec);
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}

/// `job run --follow`: starts a run and copies the output of each of its attempts
/// as it arrives (to stdout; to stderr with `-o json`, whose stdout is the ended
/// execution), then answers whether it succeeded.
async fn run_followed(ctx: &Ctx, name: &str) -> anyhow::Result<()> {
    let (_, id) = start_run(ctx, name).await?;
    let ulid: ulid::Ulid = id
        .parse()
        .map_err(|_| anyhow!("the server answered a malformed execution id {id:?}"))?;
    eprintln!("-- execution {id} of job {name}");
    let mut attempt = 1;
    let done = loop {
        if ctx.machine() {
            super::exec::copy_output(ctx, ulid, true, &mut std::io::stderr().lock()).await?;
        } else {
            super::exec::copy_output(ctx, ulid, true, &mut std::io::stdout().lock()).await?;
        }
        // The output ends with the attempt; its end is committed just after.
        let exec = wait_until(ctx, &id, |e, status| {
            status == ExecStatus::Queued && e["attempt"].as_u64().is_some_and(|a| a > attempt)
        })
        .await?;
        if exec["status"] != "queued" {
            break exec;
        }
        eprintln!("-- {}", retry_line(&exec, attempt));
        attempt = exec["attempt"].as_u64().unwrap_or(attempt + 1);
    };
    if ctx.machine() {
        ctx.data(&done)?;
    } else if done["status"] == "succeeded" {
        eprintln!("-- {}", end_line(&done));
    }
    check_succeeded(&done)
}

/// `attempt 1 failed (exit 2); attempt 2 at TIME`, from the execution queued for
/// its next attempt.
fn retry_line(exec: &Value, attempt: u64) -> String {
    let previous = exec["attempts"].as_array().and_then(|a| {
        a.iter()
            .rev()
            .find(|r| r["attempt"].as_u64() == Some(attempt))
    });
    let mut line = format!("attempt {attempt}");
    if let Some(previous) = previous {
        line.push_str(&format!(" {}", output::text(&previous["status"])));
        if !previous["exit_code"].is_null() {
            line.push_str(&format!(" (exit {})", output::text(&previous["exit_code"])));
        }
    } else {
        line.push_str(" ended");
    }
    line.push_str(&format!(
        "; attempt {} at {}",
        output::text(&exec["attempt"]),
        output::time(&exec["next_attempt_at"])
    ));
    line
}

/// `job logs`: the output of the job's newest execution, followed with `follow`.
async fn latest_logs(ctx: &Ctx, name: &str, follow: bool) -> anyhow::Result<()> {
    check_name(name)?;
    let url = ctx.client.url_with_query(
        ["v1", "jobs", name, "executions"],
        &[("limit", "1".to_string())],
    );
    let answer = ctx.client.get(url).await?;
    let Some(latest) = output::items(&answer.body).first() else {
        bail!("job {name:?} has not run yet");
    };
    let id = output::text(&latest["id"]);
    let id: ulid::Ulid = id
        .parse()
        .map_err(|_| anyhow!("the server answered a malformed execution id {id:?}"))?;
    super::exec::logs(ctx, id, follow).await
}

/// `execution <id> succeeded (exit 0) in 1.2s`.
fn end_line(exec: &Value) -> String {
    let mut line = format!(
        "execution {} {}",
        output::text(&exec["id"]),
        output::text(&exec["status"])
    );
    if !exec["exit_code"].is_null() {
        line.push_str(&format!(" (exit {})", output::text(&exec["exit_code"])));
    }
    let took = output::run_duration(exec, chrono::Utc::now());
    if took != "-" {
        line.push_str(&format!(" in {took}"));
    }
    line
}

/// An error unless the execution succeeded; the reason is the end line plus the
/// execution's error message.
fn check_succeeded(exec: &Value) -> anyhow::Result<()> {
    if exec["status"] == "succeeded" {
        return Ok(());
    }
    let mut reason = end_line(exec);
    if let Some(error) = exec["error"].as_str().filter(|e| !e.is_empty()) {
        reason.push_str(&format!(": {}", crate::error::one_line(error, 200)));
    }
    Err(anyhow!(reason))
}

async fn history(
    ctx: &Ctx,
    name: &str,
    limit: u32,
    before: Option<ulid::Ulid>,
) -> anyhow::Result<()> {
    check_name(name)?;
    let mut query = vec![("limit", limit.to_string())];
    query.extend(before.map(|id| ("before", id.to_string())));
    let url = ctx
        .client
        .url_with_query(["v1", "jobs", name, "executions"], &query);
    let answer = ctx.client.get(url).await?;
    if ctx.machine() {
        return Ok(ctx.data(&answer.body)?);
    }
    let now = chrono::Utc::now();
    let rows = output::items(&answer.body)
        .iter()
        .map(|e| {
            vec![
                output::text(&e["id"]),
                output::text(&e["status"]),
                output::text(&e["trigger"]),
                output::time(&e["scheduled_at"]),
                output::time(&e["started_at"]),
                output::run_duration(e, now),
                output::text(&e["attempt"]),
                output::text(&e["exit_code"]),
            ]
        })
        .collect();
    output::line(&output::table(
        &[
            "ID",
            "STATUS",
            "TRIGGER",
            "SCHEDULED",
            "STARTED",
            "DURATION",
            "ATTEMPT",
            "EXIT",
        ],
        rows,
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    const ONE: &str = "[[job]]\nname = \"a\"\nschedule = { manual = true }\nexecutor = { type = \"shell\", command = \"true\" }\n";

    #[test]
    fn files_are_read_by_extension_and_duplicates_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.toml", ONE);
        let jobs = read_job_files(std::slice::from_ref(&a), None).unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].0.name, "a");

        let b = write(dir.path(), "b.toml", ONE);
        let err = read_job_files(&[a, b], None).unwrap_err().to_string();
        assert!(err.contains("defined twice"), "{err}");
    }

    #[test]
    fn unknown_extensions_need_a_format() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), "jobs.txt", ONE);
        let err = read_job_files(std::slice::from_ref(&f), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--format"), "{err}");
        let jobs = read_job_files(&[f], Some(FileFormat::Toml)).unwrap();
        assert_eq!(jobs.len(), 1);
        let err = read_job_files(&[PathBuf::from("-")], None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--format"), "{err}");
    }

    #[test]
    fn missing_files_are_named() {
        let err = read_job_files(&[PathBuf::from("/nonexistent/jobs.toml")], None).unwrap_err();
        assert!(
            format!("{err:#}").contains("/nonexistent/jobs.toml"),
            "{err:#}"
        );
    }

    #[test]
    fn bad_job_names_are_refused_before_any_request() {
        assert!(check_name("nightly-backup").is_ok());
        assert!(check_name("ci:lint").is_ok());
        assert!(check_name("ci:@trigger").is_ok());
        assert!(check_name("ci:../x").is_err());
        let err = check_name("../etc").unwrap_err().to_string();
        assert!(err.starts_with("name: "), "{err}");
    }

    #[test]
    fn job_details_show_next_run_and_last_execution() {
        let job = json!({
            "name": "backup",
            "schedule": {"cron": "0 2 * * *", "timezone": "UTC"},
            "executor": {"type": "shell", "command": "pg_dump"},
            "next_run_at": "2030-01-01T02:00:00Z",
            "last_execution": {"id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "status": "failed", "exit_code": 2,
                               "scheduled_at": "2029-12-31T02:00:00Z"},
            "paused": false,
        });
        let text = job_details(&job);
        assert!(text.contains("next run:"), "{text}");
        assert!(text.contains("2030-01-01T02:00:00Z"), "{text}");
        assert!(text.contains("failed (exit 2)"), "{text}");
        assert!(text.contains("shell: pg_dump"), "{text}");
    }

    #[test]
    fn a_retry_names_the_attempt_that_ended_and_the_next() {
        let exec = json!({"id": "x", "status": "queued", "attempt": 2,
            "next_attempt_at": "2030-01-01T00:00:05Z",
            "attempts": [{"attempt": 1, "status": "failed", "exit_code": 3}]});
        assert_eq!(
            retry_line(&exec, 1),
            "attempt 1 failed (exit 3); attempt 2 at 2030-01-01T00:00:05Z"
        );
    }

    #[test]
    fn a_dry_run_compares_the_spec_without_the_server_s_fields() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "a.toml", ONE);
        let spec = read_job_files(&[file], None).unwrap().remove(0).0;
        assert_eq!(planned_action(&spec, None), "created");
        let mut shown = serde_json::to_value(&spec).unwrap();
        shown["revision"] = json!(4);
        shown["next_run_at"] = Value::Null;
        shown["last_execution"] = json!({"id": "x"});
        assert_eq!(planned_action(&spec, Some(shown.clone())), "unchanged");
        shown["priority"] = json!(9);
        assert_eq!(planned_action(&spec, Some(shown)), "updated");
    }

    #[test]
    fn only_success_passes_a_wait() {
        let ok = json!({"id": "x", "status": "succeeded", "exit_code": 0});
        assert!(check_succeeded(&ok).is_ok());
        let failed =
            json!({"id": "x", "status": "failed", "exit_code": 3, "error": "exit status 3"});
        let err = check_succeeded(&failed).unwrap_err().to_string();
        assert_eq!(err, "execution x failed (exit 3): exit status 3");
        let cancelled = json!({"id": "x", "status": "cancelled"});
        assert_eq!(
            check_succeeded(&cancelled).unwrap_err().to_string(),
            "execution x cancelled"
        );
    }
}
