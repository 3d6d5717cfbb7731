//! `rota workflow run --follow`: each job's status as it changes, until the run
//! ends.
//!
//! The event stream (`GET /v1/watch?type=workflow_run.*,execution.*`) is opened,
//! and read up to `caught_up`, before the run is asked for, so no change of the
//! run can happen unseen. Events only say that something changed: the run's
//! executions are not keyed by run, and several runs of a workflow may be active.
//! So every event about the run, or about an execution of one of the workflow's
//! jobs, is answered by reading the run (`GET /v1/runs/{id}`) and printing what
//! changed since the last read. No polling: nothing is read without an event.

use anyhow::{anyhow, Context};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use reqwest::Url;
use serde_json::Value;
use std::collections::BTreeMap;

use super::watch::parse_frame;
use super::Ctx;
use crate::output;

const EVENT_TYPES: &str = "workflow_run.*,execution.*";

/// The open event stream.
pub(super) struct RunWatch {
    url: Url,
    body: BoxStream<'static, reqwest::Result<Vec<u8>>>,
    buffer: Vec<u8>,
    /// The newest revision seen (from `caught_up` or an event).
    revision: u64,
}

impl RunWatch {
    /// Opens the stream and reads it up to `caught_up`.
    pub async fn open(ctx: &Ctx) -> anyhow::Result<RunWatch> {
        let url = ctx
            .client
            .url_with_query(["v1", "watch"], &[("type", EVENT_TYPES.to_string())]);
        let response = ctx.client.get_events(url.clone(), None).await?;
        let mut watch = RunWatch {
            url,
            body: response
                .bytes_stream()
                .map(|r| r.map(|b| b.to_vec()))
                .boxed(),
            buffer: Vec::new(),
            revision: 0,
        };
        loop {
            match watch.next_frame(ctx).await? {
                Some((event, data)) if event == "caught_up" => {
                    watch.revision = data["revision"].as_u64().unwrap_or_default();
                    return Ok(watch);
                }
                Some(_) => {}
                None => return Err(anyhow!("the event stream ended before it caught up")),
            }
        }
    }

    /// The next frame (`event`, parsed `data`); `None` when the stream ended.
    async fn next_frame(&mut self, ctx: &Ctx) -> anyhow::Result<Option<(String, Value)>> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                match parse_frame(&String::from_utf8_lossy(&block)) {
                    Some(frame) => return Ok(Some(frame)),
                    None => continue,
                }
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
                Some(Err(e)) => return Err(ctx.client.transport(e).into()),
                None => return Ok(None),
            }
        }
    }

    /// Opens the stream again after the revision before the last one seen (events
    /// seen twice only cause one more read of the run).
    async fn reconnect(&mut self, ctx: &Ctx) -> anyhow::Result<()> {
        let after = self.revision.saturating_sub(1);
        let response = ctx.client.get_events(self.url.clone(), Some(after)).await?;
        self.body = response
            .bytes_stream()
            .map(|r| r.map(|b| b.to_vec()))
            .boxed();
        self.buffer.clear();
        Ok(())
    }
}

/// Follows run `run` (as the server answered its creation) of `workflow` until it
/// ends, printing each job's status change; answers the ended run.
pub(super) async fn follow(
    ctx: &Ctx,
    mut watch: RunWatch,
    workflow: &str,
    run: Value,
) -> anyhow::Result<Value> {
    let id = output::text(&run["id"]);
    let url = ctx.client.url(["v1", "runs", id.as_str()]);
    let job_prefix = format!("{workflow}:");
    let mut shown = Shown::default();
    let mut run = run;
    loop {
        shown.print_changes(ctx, &run)?;
        if is_ended(&run) {
            return Ok(run);
        }
        // Wait for an event about this run or one of the workflow's executions.
        loop {
            match watch.next_frame(ctx).await {
                Ok(Some((event, data))) => {
                    if let Some(revision) = data["revision"].as_u64() {
                        watch.revision = watch.revision.max(revision);
                    }
                    if event == "error" {
                        // The server closed a slow watcher: resume.
                        watch.reconnect(ctx).await?;
                        break;
                    }
                    let about_run = event.starts_with("workflow_run.") && data["key"] == *id;
                    let about_job = event.starts_with("execution.")
                        && data["data"]["job"]
                            .as_str()
                            .is_some_and(|j| j.starts_with(&job_prefix));
                    if about_run || about_job {
                        break;
                    }
                }
                Ok(None) | Err(_) => {
                    if !ctx.machine() {
                        eprintln!("-- the event stream was cut; reconnecting");
                    }
                    watch.reconnect(ctx).await.context("following the run")?;
                    break;
                }
            }
        }
        run = ctx.client.get(url.clone()).await?.body;
    }
}

fn is_ended(run: &Value) -> bool {
    !matches!(run["status"].as_str(), Some("queued" | "running") | None)
}

/// What has been printed of each job.
#[derive(Default)]
struct Shown {
    jobs: BTreeMap<String, String>,
    width: usize,
}

impl Shown {
    fn print_changes(&mut self, ctx: &Ctx, run: &Value) -> anyhow::Result<()> {
        let Some(jobs) = run["jobs"].as_object() else {
            return Ok(());
        };
        self.width = jobs.keys().map(String::len).max().unwrap_or(0);
        for (name, job) in super::run::in_start_order(jobs) {
            let status = output::text(&job["status"]);
            if self.jobs.get(name) == Some(&status) {
                continue;
            }
            self.jobs.insert(name.to_string(), status.clone());
            if !ctx.machine() {
                output::line(&job_line(name, self.width, &status, &job["error"]))?;
            }
        }
        Ok(())
    }
}

/// `lint  failed: exit status 2`.
fn job_line(name: &str, width: usize, status: &str, error: &Value) -> String {
    let mut line = format!("{name:<width$}  {status}");
    if let Some(error) = error.as_str().filter(|e| !e.is_empty()) {
        if status != "succeeded" {
            // The store words a skip as `skipped: why`; say `skipped` once.
            let error = error.strip_prefix(&format!("{status}: ")).unwrap_or(error);
            line.push_str(&format!(": {}", crate::error::one_line(error, 120)));
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn job_lines_align_and_carry_the_reason() {
        assert_eq!(job_line("a", 4, "running", &Value::Null), "a     running");
        assert_eq!(
            job_line(
                "test",
                4,
                "skipped",
                &json!("skipped: needs did not succeed (a failed)")
            ),
            "test  skipped: needs did not succeed (a failed)"
        );
    }

    #[test]
    fn only_queued_and_running_go_on() {
        assert!(!is_ended(&json!({"status": "running"})));
        assert!(!is_ended(&json!({"status": "queued"})));
        for end in ["succeeded", "failed", "cancelled", "timed_out", "skipped"] {
            assert!(is_ended(&json!({ "status": end })), "{end}");
        }
    }
}
