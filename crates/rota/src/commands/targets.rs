//! `rota targets ...`: apply target set files, list sets with their targets,
//! inspect one, delete one.

use std::path::PathBuf;

use rota_core::targets::TargetSetSpec;
use serde_json::{json, Value};

use super::job::{apply_documents, read_documents, DocumentKind};
use super::Ctx;
use crate::cli::{FileFormat, TargetsCommand};
use crate::docfile::parse_target_set_file;
use crate::output;

pub async fn run(ctx: &Ctx, cmd: Option<TargetsCommand>) -> anyhow::Result<()> {
    match cmd.unwrap_or(TargetsCommand::Ls) {
        TargetsCommand::Apply { files, format } => apply(ctx, &files, format).await,
        TargetsCommand::Ls => list(ctx).await,
        TargetsCommand::Get { name } => show(ctx, &name).await,
        TargetsCommand::Rm { name } => remove(ctx, &name).await,
    }
}

const TARGET_SET: DocumentKind = DocumentKind {
    one: "target set",
    many: "targets",
};

async fn apply(ctx: &Ctx, files: &[PathBuf], format: Option<FileFormat>) -> anyhow::Result<()> {
    let sets: Vec<(TargetSetSpec, String)> = read_documents(
        files,
        format,
        &TARGET_SET,
        |text, format| Ok(parse_target_set_file(text, format)?),
        |spec| &spec.name,
    )?;
    apply_documents(ctx, &TARGET_SET, &sets, |spec| &spec.name).await
}

/// Every target set, page after page.
async fn list(ctx: &Ctx) -> anyhow::Result<()> {
    let items = super::list_all(ctx, "targets", &[]).await?;
    if ctx.machine() {
        return Ok(ctx.data(&json!({ "items": items }))?);
    }
    let rows = items
        .iter()
        .map(|s| {
            vec![
                output::text(&s["name"]),
                output::text(&s["provider"]),
                s["targets"].as_array().map_or(0, Vec::len).to_string(),
                output::time(&s["refreshed_at"]),
                output::text(&s["error"]),
            ]
        })
        .collect();
    output::line(&output::table(
        &["NAME", "PROVIDER", "TARGETS", "REFRESHED", "ERROR"],
        rows,
    ))?;
    Ok(())
}

async fn show(ctx: &Ctx, name: &str) -> anyhow::Result<()> {
    rota_core::validate_name("name", name)?;
    let answer = ctx
        .client
        .get(ctx.client.url(["v1", "targets", name]))
        .await?;
    if ctx.machine() {
        return Ok(ctx.data(&answer.body)?);
    }
    output::line(&set_details(&answer.body))?;
    Ok(())
}

/// The key/value view of `targets get`, then a table of the targets.
fn set_details(s: &Value) -> String {
    let t = output::text;
    let rows = [
        ("name", t(&s["name"])),
        ("provider", t(&s["provider"])),
        ("generation", t(&s["generation"])),
        ("refreshed", output::time(&s["refreshed_at"])),
        ("error", t(&s["error"])),
    ];
    let targets = s["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|target| vec![t(&target["address"]), output::map(&target["labels"])])
        .collect();
    format!(
        "{}\n\n{}",
        output::key_values(&rows),
        output::table(&["ADDRESS", "LABELS"], targets)
    )
}

async fn remove(ctx: &Ctx, name: &str) -> anyhow::Result<()> {
    rota_core::validate_name("name", name)?;
    ctx.client
        .write(
            reqwest::Method::DELETE,
            ctx.client.url(["v1", "targets", name]),
            None,
        )
        .await?;
    if ctx.machine() {
        ctx.data(&json!({"name": name, "deleted": true}))?;
    } else {
        output::line(&format!("targets/{name} deleted"))?;
    }
    Ok(())
}
