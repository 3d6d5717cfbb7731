//! `rota token ...`: API tokens (`/v1/tokens`, `/v1/whoami`).

use reqwest::Method;
use serde_json::json;

use super::Ctx;
use crate::cli::TokenCommand;
use crate::output;

pub async fn run(ctx: &Ctx, cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create { name, role } => {
            let body = json!({"name": name, "role": role});
            let url = ctx.client.url(["v1", "tokens"]);
            let answer = ctx.client.write(Method::POST, url, Some(&body)).await?;
            if ctx.machine() {
                return Ok(ctx.data(&answer.body)?);
            }
            // The secret alone on stdout (for `$(rota token create ...)`); what it
            // is on stderr, so a script capturing stdout gets only the token.
            eprintln!(
                "token {} ({}) created; it is shown only now:",
                output::text(&answer.body["name"]),
                output::text(&answer.body["role"])
            );
            output::line(&output::text(&answer.body["token"]))?;
            Ok(())
        }
        TokenCommand::Ls => {
            // Every token, page after page.
            let items = super::list_all(ctx, "tokens", &[]).await?;
            if ctx.machine() {
                return Ok(ctx.data(&serde_json::json!({ "items": items }))?);
            }
            let rows = items
                .iter()
                .map(|t| {
                    vec![
                        output::text(&t["name"]),
                        output::text(&t["role"]),
                        output::time(&t["created_at"]),
                        output::text(&t["created_by"]),
                    ]
                })
                .collect();
            output::line(&output::table(
                &["NAME", "ROLE", "CREATED", "CREATED BY"],
                rows,
            ))?;
            Ok(())
        }
        TokenCommand::Revoke { name } => {
            let url = ctx.client.url(["v1", "tokens", name.as_str()]);
            ctx.client.write(Method::DELETE, url, None).await?;
            if ctx.machine() {
                return Ok(ctx.data(&json!({ "revoked": name }))?);
            }
            output::line(&format!("token {name} revoked"))?;
            Ok(())
        }
        TokenCommand::Whoami => {
            let answer = ctx.client.get(ctx.client.url(["v1", "whoami"])).await?;
            if ctx.machine() {
                return Ok(ctx.data(&answer.body)?);
            }
            if answer.body["auth"] == true {
                output::line(&format!(
                    "token {} with role {}",
                    output::text(&answer.body["token"]),
                    output::text(&answer.body["role"])
                ))?;
            } else {
                output::line(
                    "the server holds no token: every request acts as admin (loopback only)",
                )?;
            }
            Ok(())
        }
    }
}
