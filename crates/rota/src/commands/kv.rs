//! `rota kv ...`: the linearizable key/value space.

use anyhow::bail;
use reqwest::{Method, Url};
use serde_json::{json, Value};

use super::Ctx;
use crate::cli::KvCommand;
use crate::client::Client;
use crate::output;

pub async fn run(ctx: &Ctx, cmd: KvCommand) -> anyhow::Result<()> {
    match cmd {
        KvCommand::Get { key } => get(ctx, &key).await,
        KvCommand::Put {
            key,
            value,
            if_revision,
        } => put(ctx, &key, &value, if_revision).await,
        KvCommand::Del { key, if_revision } => delete(ctx, &key, if_revision).await,
        KvCommand::Ls { prefix } => list(ctx, &prefix).await,
    }
}

/// The URL of a key. Slashes stay path separators where the URL keeps each part
/// intact; a key with empty, `.` or `..` parts (which URLs collapse) is sent as one
/// segment with its slashes encoded, which the server decodes to the same key.
fn key_url(client: &Client, key: &str, query: &[(&str, String)]) -> anyhow::Result<Url> {
    if key.is_empty() {
        bail!("key: must not be empty");
    }
    if key == "." || key == ".." {
        bail!("key: {key:?} cannot be addressed in a URL; choose another key");
    }
    let parts: Vec<&str> = key.split('/').collect();
    let literal = parts
        .iter()
        .all(|p| !p.is_empty() && *p != "." && *p != "..");
    let segments = if literal { parts } else { vec![key] };
    Ok(client.url_with_query(["v1", "kv"].into_iter().chain(segments), query))
}

fn revision_query(if_revision: Option<u64>) -> Vec<(&'static str, String)> {
    if_revision
        .map(|rev| ("if_revision", rev.to_string()))
        .into_iter()
        .collect()
}

async fn get(ctx: &Ctx, key: &str) -> anyhow::Result<()> {
    let answer = ctx.client.get(key_url(&ctx.client, key, &[])?).await?;
    if ctx.machine() {
        return Ok(ctx.data(&answer.body)?);
    }
    let value = answer.body["value"].as_str().unwrap_or_default();
    // The value exactly, with one line end so that shells print it cleanly.
    output::line(value.strip_suffix('\n').unwrap_or(value))?;
    Ok(())
}

async fn put(ctx: &Ctx, key: &str, value: &str, if_revision: Option<u64>) -> anyhow::Result<()> {
    let url = key_url(&ctx.client, key, &revision_query(if_revision))?;
    let answer = ctx
        .client
        .write(Method::PUT, url, Some(&json!({ "value": value })))
        .await?;
    if ctx.machine() {
        return Ok(ctx.data(&answer.body)?);
    }
    output::line(&format!(
        "{key} written at revision {}",
        output::text(&answer.body["revision"])
    ))?;
    Ok(())
}

async fn delete(ctx: &Ctx, key: &str, if_revision: Option<u64>) -> anyhow::Result<()> {
    let url = key_url(&ctx.client, key, &revision_query(if_revision))?;
    let answer = ctx.client.write(Method::DELETE, url, None).await?;
    if ctx.machine() {
        return Ok(ctx.data(&answer.body)?);
    }
    output::line(&delete_line(key, &answer.body))?;
    Ok(())
}

fn delete_line(key: &str, answer: &Value) -> String {
    if answer["deleted"] == Value::Bool(true) {
        format!(
            "{key} deleted at revision {}",
            output::text(&answer["revision"])
        )
    } else {
        format!("{key} did not exist")
    }
}

async fn list(ctx: &Ctx, prefix: &str) -> anyhow::Result<()> {
    let items = super::list_all(ctx, "kv", &[("prefix", prefix.to_string())]).await?;
    if ctx.machine() {
        return Ok(ctx.data(&serde_json::json!({ "items": items }))?);
    }
    let rows = items
        .iter()
        .map(|e| {
            vec![
                output::text(&e["key"]),
                crate::error::one_line(e["value"].as_str().unwrap_or_default(), 60),
                output::text(&e["mod_revision"]),
                output::text(&e["version"]),
            ]
        })
        .collect();
    output::line(&output::table(
        &["KEY", "VALUE", "REVISION", "VERSION"],
        rows,
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_their_slashes_when_the_url_can() {
        let c = Client::new("http://h:1").unwrap();
        let url = |k: &str| key_url(&c, k, &[]).map(|u| u.to_string());
        assert_eq!(url("app/color").unwrap(), "http://h:1/v1/kv/app/color");
        assert_eq!(url("a b").unwrap(), "http://h:1/v1/kv/a%20b");
        assert_eq!(url("a/../b").unwrap(), "http://h:1/v1/kv/a%2F..%2Fb");
        assert_eq!(url("/lead").unwrap(), "http://h:1/v1/kv/%2Flead");
        assert_eq!(url("trail/").unwrap(), "http://h:1/v1/kv/trail%2F");
        assert!(url("").is_err());
        assert!(url("..").is_err());
        let u = key_url(&c, "k", &revision_query(Some(0))).unwrap();
        assert_eq!(u.as_str(), "http://h:1/v1/kv/k?if_revision=0");
    }

    #[test]
    fn delete_says_whether_the_key_existed() {
        assert_eq!(
            delete_line("k", &json!({"key": "k", "revision": 9, "deleted": true})),
            "k deleted at revision 9"
        );
        assert_eq!(
            delete_line("k", &json!({"key": "k", "revision": 9, "deleted": false})),
            "k did not exist"
        );
    }
}
