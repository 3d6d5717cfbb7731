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

/// jemalloc rather than the system allocator: with 1,000,000 jobs created through
/// the API, glibc's malloc kept about twice the resident memory after the burst
/// (docs/PERFORMANCE.md, "Memory and restart with many jobs").
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read once at start-up (its `MALLOC_CONF`, under the prefixed
/// name of tikv-jemallocator's build; the `_RJEM_MALLOC_CONF` environment variable
/// still overrides them): background threads purge freed pages after about a second
/// instead of waiting for the next allocations to do it, so the memory of a burst
/// of requests goes back to the system once it is over.
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

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
