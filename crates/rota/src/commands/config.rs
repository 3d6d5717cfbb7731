//! `rota config ...`: the settings of the server asked, and the cluster's dynamic
//! ones (`GET|PUT|DELETE /v1/config`).

use reqwest::Method;
use serde_json::{json, Value};

use super::Ctx;
use crate::cli::ConfigCommand;
use crate::output;

pub async fn run(ctx: &Ctx, cmd: ConfigCommand) -> anyhow::Result<()> {
    match cmd {
        ConfigCommand::Show => show(ctx).await,
        ConfigCommand::Set { key, value } => set(ctx, &key, &value).await,
        ConfigCommand::Reset { key: Some(key), .. } => reset_one(ctx, &key).await,
        ConfigCommand::Reset { key: None, .. } => reset_all(ctx).await,
    }
}

/// A value as typed: JSON when it reads as JSON (`8`, `{"max_attempts": 3}`),
/// else the text itself (`5s`, `info,rota_api=debug`); the server checks it.
fn value_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::from(text))
}

/// A value for a table cell: strings bare, the rest as JSON, null as `-`.
fn cell(value: &Value) -> String {
    match value {
        Value::Object(_) | Value::Array(_) => value.to_string(),
        other => output::text(other),
    }
}

async fn show(ctx: &Ctx) -> anyhow::Result<()> {
    let answer = ctx.client.get(ctx.client.url(["v1", "config"])).await?;
    if ctx.machine() {
        return Ok(ctx.data(&answer.body)?);
    }
    let rows = output::items(&answer.body)
        .iter()
        .map(|i| {
            vec![
                output::text(&i["key"]),
                cell(&i["value"]),
                output::text(&i["source"]),
                if i["dynamic"] == true { "yes" } else { "no" }.to_string(),
            ]
        })
        .collect();
    output::line(&format!("node: {}", output::text(&answer.body["node"])))?;
    output::line(&output::table(&["KEY", "VALUE", "SOURCE", "DYNAMIC"], rows))?;
    Ok(())
}

async fn set(ctx: &Ctx, key: &str, value: &str) -> anyhow::Result<()> {
    let url = ctx.client.url(["v1", "config", key]);
    let body = json!({ "value": value_of(value) });
    let answer = ctx.client.write(Method::PUT, url, Some(&body)).await?;
    if ctx.machine() {
        return Ok(ctx.data(&answer.body)?);
    }
    let previous = &answer.body["previous"];
    let was = if previous.is_null() {
        String::new()
    } else {
        format!(" (was {})", cell(previous))
    };
    output::line(&format!(
        "{key} = {} for the whole cluster{was}",
        cell(&answer.body["value"])
    ))?;
    Ok(())
}

async fn reset_one(ctx: &Ctx, key: &str) -> anyhow::Result<()> {
    let url = ctx.client.url(["v1", "config", key]);
    let answer = ctx.client.write(Method::DELETE, url, None).await?;
    if ctx.machine() {
        return Ok(ctx.data(&answer.body)?);
    }
    let what = if answer.body["reset"] == true {
        "reset"
    } else {
        "had no dynamic value"
    };
    output::line(&format!(
        "{key} {what}: {} ({})",
        cell(&answer.body["value"]),
        output::text(&answer.body["source"])
    ))?;
    Ok(())
}

async fn reset_all(ctx: &Ctx) -> anyhow::Result<()> {
    let url = ctx.client.url(["v1", "config", "reset"]);
    let answer = ctx.client.write(Method::POST, url, None).await?;
    if ctx.machine() {
        return Ok(ctx.data(&answer.body)?);
    }
    let keys: Vec<String> = answer.body["reset"]
        .as_array()
        .map(|a| a.iter().map(output::text).collect())
        .unwrap_or_default();
    if keys.is_empty() {
        output::line("no dynamic setting was set")?;
    } else {
        output::line(&format!("reset: {}", keys.join(", ")))?;
    }
    Ok(())
}
