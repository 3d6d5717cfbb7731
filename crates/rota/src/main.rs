//! `rota`: the server (`rota server`) and the command-line client in one binary.
//!
//! `main` only sets the process up (TLS provider, arguments, runtime) and maps the
//! outcome to an exit code, in this one place: 0 on success; 1 with a one-line
//! `error: ...` on stderr when the command failed; 2 for usage errors (clap's own).
//! Everything else lives in the modules: [`cli`] (arguments), [`commands`] (client
//! subcommands), [`client`] (HTTP), [`output`] (tables, JSON), [`server`] (wiring
//! of `rota server`), [`config`] (`rota.toml`), [`jobfile`] (job files), [`docfile`]
//! (workflow files).

mod cli;
mod client;
mod commands;
mod config;
mod docfile;
mod error;
mod jobfile;
mod log_filter;
mod otlp;
mod output;
mod server;
mod tls;

#[cfg(test)]
mod docs_tests;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // reqwest is built without a TLS provider of its own; this must precede any
    // client. An error only means one was installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Exits with 2 on a usage error, 0 for --help and --version.
    let cli = cli::Cli::parse();
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(commands::run(cli)));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        // Output cut short by a closed pipe (`rota job ls | head`) is not a failure.
        Err(err) if error::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
