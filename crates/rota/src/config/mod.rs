//! The server's configuration: the `rota.toml` file, the `rota server` flags, and
//! how they combine.
//!
//! Every setting is declared once, in the table of [`keys`]: its flag, its file key,
//! the check both go through, its default and its doc. It is resolved as flag >
//! file > default, and the effective [`ServerConfig`] remembers where each value
//! came from (`rota server --print-config` prints it). A rejected file value names its key
//! and line. Only the log filter has another source: `RUST_LOG`, which wins over
//! the file like a flag would, because it is how a single run is made more verbose.
//!
//! This is the static, start-up configuration. The dynamic, replicated settings of
//! `GET /v1/config` are a separate, later concern.

mod checks;
mod file;
mod keys;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;

use serde::Serialize;

use crate::cli::ServerFlags;
use crate::error::ConfigError;

pub use checks::*;
pub use keys::{ServerConfig, Settings};
use rota_engine::DEFAULT_NODE_TIMEOUT;

/// The config file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "rota.toml";
pub const DEFAULT_NODE_ID: u64 = 1;
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 7700));
pub const DEFAULT_DATA_DIR: &str = "rota-data";
pub const DEFAULT_MAX_RUNNING: usize = rota_core::config::DEFAULT_MAX_RUNNING;
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 10_000;
/// The default of `watch_retention`: the event log keeps at least this many events.
pub const DEFAULT_WATCH_RETENTION: u64 = rota_core::config::DEFAULT_WATCH_RETENTION;
/// The default of `watch_retention_age`: the event log keeps every event this young.
pub const DEFAULT_WATCH_RETENTION_AGE: std::time::Duration =
    rota_core::config::DEFAULT_WATCH_RETENTION_AGE;
/// The default of `discovery_throttle`.
pub const DEFAULT_DISCOVERY_THROTTLE: std::time::Duration =
    rota_core::config::DEFAULT_DISCOVERY_THROTTLE;
/// How long runs of a stopping node may go on by default.
pub const DEFAULT_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);
/// The default of `watch_buffer`: events a watcher may have waiting.
pub const DEFAULT_WATCH_BUFFER: usize = rota_api::DEFAULT_WATCH_BUFFER;
/// The default of `watch_max_connections`: watch connections one node serves at once.
pub const DEFAULT_WATCH_MAX_CONNECTIONS: usize = rota_api::DEFAULT_MAX_WATCHERS;
pub const DEFAULT_HEARTBEAT_INTERVAL: std::time::Duration =
    rota_cluster::DEFAULT_HEARTBEAT_INTERVAL;
pub const DEFAULT_ELECTION_TIMEOUT: std::time::Duration = rota_cluster::DEFAULT_ELECTION_TIMEOUT;
/// `info`, except openraft's own `info` lines, which narrate every election and
/// startup step in detail; `RUST_LOG=info` (or `log = "info"`) brings them back.
pub const DEFAULT_LOG: &str = rota_core::config::DEFAULT_LOG;

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `message`, the event's
    /// own fields, `target`, `span`), for log collectors.
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// Where an effective value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Default,
    File,
    Flag,
    Env,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Default => "default",
            Source::File => "file",
            Source::Flag => "flag",
            Source::Env => "env",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ServerConfig {
    /// Finds and reads the config file (`--config`, or `rota.toml` in the working
    /// directory when it exists), then resolves flags over it. `rust_log` is the
    /// value of `RUST_LOG`, passed in so that tests do not depend on the environment.
    pub fn load(flags: &ServerFlags, rust_log: Option<String>) -> Result<Self, ConfigError> {
        let vars: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("ROTA_"))
            .collect();
        let path = match &flags.config {
            Some(path) => Some(path.clone()),
            None => config_file_candidates(std::env::var_os("XDG_CONFIG_HOME"))
                .into_iter()
                .find(|p| p.is_file()),
        };
        let file = match path {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                let file = Settings::from_file(&text, &path)?;
                Some((path, file))
            }
            None => None,
        };
        Self::resolve_with_env(&flags.keys, file, rust_log, &vars)
    }

    /// Applies flag > file > default (and `RUST_LOG` > file > default for `log`).
    #[cfg(test)]
    pub fn resolve(
        flags: &Settings,
        file: Option<(PathBuf, Settings)>,
        rust_log: Option<String>,
    ) -> Result<Self, ConfigError> {
        Self::resolve_with_env(flags, file, rust_log, &BTreeMap::new())
    }

    /// Applies flag > `ROTA_*` variables of `vars` > `RUST_LOG` (for `log`) >
    /// file > default.
    pub fn resolve_with_env(
        flags: &Settings,
        file: Option<(PathBuf, Settings)>,
        rust_log: Option<String>,
        vars: &BTreeMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let (path, file) = match file {
            Some((path, file)) => (Some(path), file),
            None => (None, Settings::default()),
        };
        let env = Settings {
            log: match rust_log.filter(|s| !s.trim().is_empty()) {
                Some(filter) => Some(check_log(filter).map_err(|message| ConfigError::Env {
                    var: "RUST_LOG",
                    message,
                })?),
                None => None,
            },
            ..Settings::default()
        };
        let rota_env = Settings::from_env(vars)?;
        let layers = [
            (Source::Flag, flags),
            (Source::Env, &rota_env),
            (Source::Env, &env),
            (Source::File, &file),
        ];
        Self::from_layers(&layers, path)
    }
}

/// Where `rota server` looks for `rota.toml` without `--config`, in order: the
/// working directory, `$XDG_CONFIG_HOME/rota/` (else `~/.config/rota/`), `/etc/rota/`.
pub fn config_file_candidates(xdg_config_home: Option<std::ffi::OsString>) -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from(DEFAULT_CONFIG_FILE)];
    let xdg = xdg_config_home
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    if let Some(dir) = xdg {
        out.push(dir.join("rota").join(DEFAULT_CONFIG_FILE));
    }
    out.push(PathBuf::from("/etc/rota").join(DEFAULT_CONFIG_FILE));
    out
}

/// `http://<addr>`, with an unspecified address (`0.0.0.0`, `::`) replaced by
/// loopback: "all addresses" is not an address anyone can connect to.
pub fn advertise_for(bound: SocketAddr) -> String {
    let mut addr = bound;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{addr}")
}
