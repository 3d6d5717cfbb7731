//! `rota cluster ...`: the members and leader (`status`), adding a node (`join`)
//! and removing one (`leave`).
//!
//! Membership changes go straight through reqwest rather than [`Client::write`]:
//! they carry the cluster secret instead of session headers, and they are sent
//! once (they are idempotent, but a person should see a refusal, not a retry loop).

use std::time::Duration;

use anyhow::Context;
use reqwest::{Method, Url};
use rota_cluster::CLUSTER_SECRET_HEADER;
use serde_json::{json, Value};

use super::Ctx;
use crate::cli::ClusterCommand;
use crate::client::Answer;
use crate::error::ClientError;
use crate::output;

/// A join waits on the server until the new node has caught up with the log.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(90);

pub async fn run(ctx: &Ctx, cmd: ClusterCommand) -> anyhow::Result<()> {
    match cmd {
        ClusterCommand::Status => {
            let answer = ctx.client.get(ctx.client.url(["v1", "cluster"])).await?;
            show(ctx, &answer.body)
        }
        ClusterCommand::Join { url, id, secret } => {
            let id = match id {
                Some(id) => id,
                None => node_id_of(&url).await?,
            };
            let body = json!({ "id": id, "url": url.as_str().trim_end_matches('/') });
            let target = ctx.client.url(["v1", "cluster", "members"]);
            let answer =
                change(ctx, Method::POST, target, Some(body), secret.cluster_secret).await?;
            if !ctx.machine() {
                output::line(&format!("node {id} ({url}) joined as voter"))?;
            }
            show(ctx, &answer.body)
        }
        ClusterCommand::Leave { id, secret } => {
            let id_text = id.to_string();
            let target = ctx.client.url(["v1", "cluster", "members", &id_text]);
            let answer = change(ctx, Method::DELETE, target, None, secret.cluster_secret).await?;
            if !ctx.machine() {
                output::line(&format!("node {id} removed"))?;
            }
            show(ctx, &answer.body)
        }
    }
}

/// Asks the node at `url` for its id (`GET /v1/health`).
async fn node_id_of(url: &Url) -> anyhow::Result<u64> {
    let health = format!("{}/v1/health", url.as_str().trim_end_matches('/'));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("building an HTTP client")?;
    let body: Value = http
        .get(&health)
        .send()
        .await
        .with_context(|| format!("cannot ask {url} for its node id; pass --id"))?
        .json()
        .await
        .with_context(|| format!("{health} did not answer JSON; pass --id"))?;
    body["node_id"]
        .as_u64()
        .with_context(|| format!("{health} names no node_id; pass --id"))
}

async fn change(
    ctx: &Ctx,
    method: Method,
    url: Url,
    body: Option<Value>,
    secret: Option<String>,
) -> anyhow::Result<Answer> {
    let http = reqwest::Client::builder()
        .timeout(CHANGE_TIMEOUT)
        .build()
        .context("building an HTTP client")?;
    let mut request = http.request(method, url);
    if let Some(body) = &body {
        request = request.json(body);
    }
    if let Some(secret) = &secret {
        request = request.header(CLUSTER_SECRET_HEADER, secret);
    }
    let response = request.send().await.map_err(|e| ctx.client.transport(e))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(ClientError::from_response(status.as_u16(), &text).into());
    }
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(Answer { status, body })
}

fn show(ctx: &Ctx, status: &Value) -> anyhow::Result<()> {
    if ctx.machine() {
        return Ok(ctx.data(status)?);
    }
    let leader = status["leader"].as_u64();
    let rows = status["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let id = m["id"].as_u64();
            vec![
                output::text(&m["id"]),
                output::text(&m["url"]),
                output::text(&m["role"]),
                if id.is_some() && id == leader {
                    "yes".to_string()
                } else {
                    String::new()
                },
                output::text(&m["matched_index"]),
            ]
        })
        .collect();
    output::line(&output::table(
        &["ID", "URL", "ROLE", "LEADER", "MATCHED"],
        rows,
    ))?;
    output::line(&output::key_values(&[
        ("cluster", output::text(&status["cluster_id"])),
        ("term", output::text(&status["term"])),
        ("commit_index", output::text(&status["commit_index"])),
        (
            "last_applied",
            format!(
                "{} (on node {})",
                output::text(&status["last_applied"]),
                output::text(&status["node_id"])
            ),
        ),
    ]))?;
    let workers: Vec<Vec<String>> = status["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| {
            let tags = w["tags"]
                .as_object()
                .map(|t| {
                    t.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            vec![
                output::text(&w["node"]),
                tags,
                output::text(&w["max_running"]),
                output::text(&w["registered_at"]),
            ]
        })
        .collect();
    if !workers.is_empty() {
        output::line("")?;
        output::line(&output::table(
            &["WORKER", "TAGS", "MAX RUNNING", "REGISTERED"],
            workers,
        ))?;
    }
    Ok(())
}
