//! What each client subcommand does: build the request, send it through
//! [`Client`], print the answer as a table or as JSON.
//!
//! `rota server` is not here: it is the server itself, in [`crate::server`].

pub mod cert;
mod cluster;
mod config;
mod exec;
mod follow;
mod job;
mod kv;
pub mod prow;
mod run;
mod targets;
mod token;
mod watch;
mod workflow;

use anyhow::Context;

use crate::cli::{Cli, Command, CompletionShell, OutputFormat};
use crate::client::Client;
use crate::config::ServerConfig;
use crate::output;

/// What every client subcommand needs.
pub struct Ctx {
    pub client: Client,
    pub output: OutputFormat,
}

impl Ctx {
    /// Whether the output is data for scripts (JSON or YAML) rather than tables.
    pub fn machine(&self) -> bool {
        self.output != OutputFormat::Table
    }

    /// Prints the server's data in the chosen format (JSON or YAML).
    pub fn data(&self, value: &serde_json::Value) -> std::io::Result<()> {
        output::data(self.output, value)
    }
}

/// Every item of the paged list `/v1/{collection}` (with the query `filters`),
/// page after page (`after` cursors).
pub(crate) async fn list_all(
    ctx: &Ctx,
    collection: &str,
    filters: &[(&str, String)],
) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut items = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut query = filters.to_vec();
        query.push(("limit", "1000".to_string()));
        if let Some(after) = &after {
            query.push(("after", after.clone()));
        }
        let url = ctx.client.url_with_query(["v1", collection], &query);
        let page = ctx.client.get(url).await?.body;
        items.extend(output::items(&page).iter().cloned());
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
    }
    Ok(items)
}

/// Runs the parsed command line to completion.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let client = || -> anyhow::Result<Ctx> {
        Ok(Ctx {
            client: Client::connect(&cli.server, cli.token.as_deref(), cli.ca_cert.as_deref())?,
            output: cli.output,
        })
    };
    match cli.command {
        Command::Server(args) if args.print_config => {
            let cfg = ServerConfig::load(&args.settings, std::env::var("RUST_LOG").ok())?;
            show_config(&cfg, cli.output)
        }
        Command::Server(args) => crate::server::run(args).await,
        Command::Job(cmd) => job::run(&client()?, cmd).await,
        Command::Exec(cmd) => exec::run(&client()?, cmd).await,
        Command::Workflow(cmd) => workflow::run(&client()?, cmd).await,
        Command::Run(cmd) => run::run(&client()?, cmd).await,
        Command::Kv(cmd) => kv::run(&client()?, cmd).await,
        Command::Targets(args) => targets::run(&client()?, args.command).await,
        Command::Cluster(cmd) => cluster::run(&client()?, cmd).await,
        Command::Watch(args) => watch::watch(&client()?, args).await,
        Command::Event(cmd) => watch::event(&client()?, cmd).await,
        Command::Prow(args) => prow::run(args, cli.output).await,
        Command::Cert(cmd) => cert::run(cmd),
        Command::Version => version(&client()?).await,
        Command::Completion { shell } => {
            let mut out = std::io::stdout().lock();
            completion(shell, &mut out).context("writing the completion script")
        }
        Command::Config(cmd) => config::run(&client()?, cmd).await,
        Command::Token(cmd) => token::run(&client()?, cmd).await,
    }
}

/// `rota version`: the client's version, and the server's as `/v1/health` says.
/// The client's is printed even when the server cannot be asked (then the command
/// fails, saying so).
async fn version(ctx: &Ctx) -> anyhow::Result<()> {
    let client = env!("CARGO_PKG_VERSION");
    let health = ctx.client.get(ctx.client.url(["v1", "health"])).await;
    let server = health
        .as_ref()
        .ok()
        .map(|answer| output::text(&answer.body["version"]));
    if ctx.machine() {
        ctx.data(&serde_json::json!({
            "client": client,
            "server": server,
            "server_url": ctx.client.server(),
        }))?;
    } else {
        output::line(&format!("client: {client}"))?;
        if let Some(server) = &server {
            output::line(&format!("server: {server} ({})", ctx.client.server()))?;
        }
    }
    match health {
        Ok(_) => Ok(()),
        Err(err) => {
            Err(anyhow::Error::from(err).context("the server's version could not be asked"))
        }
    }
}

/// Writes the completion script of `shell` for every subcommand and flag.
fn completion(shell: CompletionShell, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    use clap::CommandFactory;
    use clap_complete::Shell;
    let shell = match shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "rota", &mut script);
    out.write_all(&script)?;
    out.flush()
}

fn show_config(cfg: &ServerConfig, format: OutputFormat) -> anyhow::Result<()> {
    let entries = cfg.entries();
    match format {
        OutputFormat::Json | OutputFormat::Yaml => {
            let settings: serde_json::Map<String, serde_json::Value> = entries
                .iter()
                .map(|(key, value, source)| {
                    (
                        key.to_string(),
                        serde_json::json!({"value": value, "source": source}),
                    )
                })
                .collect();
            output::data(
                format,
                &serde_json::json!({
                    "config_file": cfg.config_file,
                    "settings": settings,
                }),
            )
        }
        OutputFormat::Table => {
            let rows = entries
                .into_iter()
                .map(|(key, value, source)| vec![key.to_string(), value, source.to_string()])
                .collect();
            let file = match &cfg.config_file {
                Some(path) => format!("config file: {}", path.display()),
                None => "config file: none".to_string(),
            };
            output::line(&file)?;
            output::line(&output::table(&["KEY", "VALUE", "SOURCE"], rows))
        }
    }
    .context("writing output")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_scripts_know_the_subcommands_and_flags() {
        for shell in [
            CompletionShell::Bash,
            CompletionShell::Zsh,
            CompletionShell::Fish,
        ] {
            let mut out = Vec::new();
            completion(shell, &mut out).unwrap();
            let script = String::from_utf8(out).unwrap();
            for word in ["rota", "apply", "logs", "follow", "completion", "yaml"] {
                assert!(script.contains(word), "{shell:?}: {word} missing");
            }
        }
    }
}
