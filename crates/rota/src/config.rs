//! The server's configuration: the `rota.toml` file, the `rota server` flags, and
//! how they combine.
//!
//! Every setting is resolved as flag > file > default, and the effective
//! [`ServerConfig`] remembers where each value came from (`rota config show` prints
//! it). Flags and file keys go through the same `check_*` functions, so both accept
//! exactly the same values; a rejected file value names its key and line. Only the
//! log filter has a fourth source: `RUST_LOG`, which wins over the file like a flag
//! would, because it is how a single run is made more verbose.
//!
//! This is the static, start-up configuration. The dynamic, replicated settings of
//! `GET /v1/config` are a separate, later concern.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};

use reqwest::Url;
use serde::{Deserialize, Serialize};

use crate::cli::ServerFlags;
use crate::error::ConfigError;

/// The config file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "rota.toml";
pub const DEFAULT_NODE_ID: u64 = 1;
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 7700));
pub const DEFAULT_DATA_DIR: &str = "rota-data";
pub const DEFAULT_MAX_RUNNING: usize = 64;
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 10_000;
pub const DEFAULT_NODE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
pub const DEFAULT_HEARTBEAT_INTERVAL: std::time::Duration =
    rota_cluster::DEFAULT_HEARTBEAT_INTERVAL;
pub const DEFAULT_ELECTION_TIMEOUT: std::time::Duration = rota_cluster::DEFAULT_ELECTION_TIMEOUT;
/// `info`, except openraft's own `info` lines, which narrate every election and
/// startup step in detail; `RUST_LOG=info` (or `log = "info"`) brings them back.
pub const DEFAULT_LOG: &str = "info,openraft=warn";

/// `rota.toml`. Every key is optional; a key that is absent takes its default, a
/// key that is present is overridden by the flag of the same name.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Raft node id, unique in the cluster, at least 1. Default 1.
    pub node_id: Option<u64>,
    /// Name of the node, recorded on executions (`ROTA_NODE`) and reported by
    /// health; `[a-z0-9][a-z0-9_-]{0,62}`. Default `n<node_id>`.
    pub node_name: Option<String>,
    /// IP address and port the API, web UI and peer traffic listen on, e.g.
    /// `127.0.0.1:7700` or `[::]:7700`. Default `127.0.0.1:7700`.
    pub listen: Option<String>,
    /// `http://` or `https://` URL peers and clients reach this node at. Default
    /// `http://` and the listen address (loopback when listening on all addresses).
    pub advertise: Option<String>,
    /// Directory of the Raft log, the state and snapshots; relative paths are
    /// relative to the working directory of `rota server`. Default `./rota-data`.
    pub data_dir: Option<PathBuf>,
    /// Most runs executing at once on this node (more wait, by priority), at
    /// least 1. Default 64.
    pub max_running: Option<u64>,
    /// Snapshot the state and trim the Raft log every this many log entries, at
    /// least 1. Default 10000.
    pub snapshot_every: Option<u64>,
    /// How long a node running attempts may stay silent before the leader presumes
    /// it dead and retries its runs, a duration from `1s` to `1h`. Default `10s`.
    pub node_timeout: Option<String>,
    /// How often the Raft leader sends heartbeats to the other members, a
    /// duration from `1ms` to `5s`; every member should use the same. Default `50ms`.
    pub heartbeat_interval: Option<String>,
    /// Shortest Raft election timeout (the longest is twice it), a duration from
    /// `10ms` to `1m` and at least three heartbeat intervals; every member should
    /// use the same. A dead leader is replaced 3 to 4 times this after its last
    /// heartbeat; a node stalled for that long loses its leadership. Default `150ms`.
    pub election_timeout: Option<String>,
    /// Log filter in `RUST_LOG` syntax, e.g. `info` or `info,rota_scheduler=debug`;
    /// the `RUST_LOG` environment variable overrides it. Default `info,openraft=warn`.
    pub log: Option<String>,
    /// Voters of a new cluster as `"ID=URL"` strings, this node among them, e.g.
    /// `["1=http://10.0.0.1:7700", "2=http://10.0.0.2:7700", "3=http://10.0.0.3:7700"]`;
    /// the lowest id initializes the cluster. Default: a one-node cluster.
    pub peers: Option<Vec<String>>,
    /// Shared secret of the peer traffic and of membership changes (also
    /// `ROTA_CLUSTER_SECRET`). Default: none, the peer routes are open.
    pub cluster_secret: Option<String>,
    /// Tags of this node, e.g. `{ region = "eu", gpu = "yes" }`: a job whose `tags`
    /// are all among them may run here (a job without tags runs on any node).
    /// Default: none.
    pub tags: Option<BTreeMap<String, String>>,
}

impl FileConfig {
    /// Parses the text of a config file; `origin` (its path) only names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<FileConfig, ConfigError> {
        let fail = |key: String, message: String, span: Option<std::ops::Range<usize>>| {
            ConfigError::File {
                path: origin.to_path_buf(),
                key,
                line: span.map(|s| line_of(text, s.start)),
                message,
            }
        };
        let de = toml::Deserializer::parse(text)
            .map_err(|e| fail(String::new(), e.message().to_string(), e.span()))?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            // An unknown key is reported at the top level ("."), its name is in the message.
            let key = if key == "." { String::new() } else { key };
            fail(key, inner.message().to_string(), inner.span())
        })
    }
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
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

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Default => "default",
            Source::File => "file",
            Source::Flag => "flag",
            Source::Env => "env",
        })
    }
}

/// The effective configuration of `rota server`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub node_id: u64,
    pub node_name: String,
    pub listen: SocketAddr,
    /// `None`: derived from the address actually bound (see [`advertise_for`]).
    pub advertise: Option<Url>,
    pub data_dir: PathBuf,
    pub max_running: usize,
    pub snapshot_every: u64,
    pub node_timeout: std::time::Duration,
    pub heartbeat_interval: std::time::Duration,
    pub election_timeout: std::time::Duration,
    pub log: String,
    /// Initial voters (id -> URL without a trailing slash); empty: a one-node cluster.
    pub peers: BTreeMap<u64, String>,
    pub cluster_secret: Option<String>,
    /// This node's tags (matched against jobs' `tags`).
    pub tags: BTreeMap<String, String>,
    /// The config file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// Where each key's value came from.
    pub sources: BTreeMap<&'static str, Source>,
}

impl ServerConfig {
    /// Finds and reads the config file (`--config`, or `rota.toml` in the working
    /// directory when it exists), then resolves flags over it. `rust_log` is the
    /// value of `RUST_LOG`, passed in so that tests do not depend on the environment.
    pub fn load(flags: &ServerFlags, rust_log: Option<String>) -> Result<Self, ConfigError> {
        let path = match &flags.config {
            Some(path) => Some(path.clone()),
            None => {
                let default = PathBuf::from(DEFAULT_CONFIG_FILE);
                default.is_file().then_some(default)
            }
        };
        let file = match path {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                let file = FileConfig::parse(&text, &path)?;
                Some((path, file))
            }
            None => None,
        };
        Self::resolve(flags, file, rust_log)
    }

    /// Applies flag > file > default (and `RUST_LOG` > file > default for `log`).
    pub fn resolve(
        flags: &ServerFlags,
        file: Option<(PathBuf, FileConfig)>,
        rust_log: Option<String>,
    ) -> Result<Self, ConfigError> {
        let (path, file) = match file {
            Some((path, file)) => (Some(path), file),
            None => (None, FileConfig::default()),
        };
        let mut sources = BTreeMap::new();
        // A bad file value names the file and the key.
        let bad = |key: &'static str, message: String| ConfigError::File {
            path: path.clone().unwrap_or_default(),
            key: key.to_string(),
            line: None,
            message,
        };

        let node_id = pick(
            &mut sources,
            "node_id",
            flags.node_id,
            file.node_id
                .map(check_node_id)
                .transpose()
                .map_err(|m| bad("node_id", m))?,
            DEFAULT_NODE_ID,
        );
        let node_name = pick(
            &mut sources,
            "node_name",
            flags.node_name.clone(),
            file.node_name
                .as_deref()
                .map(check_node_name)
                .transpose()
                .map_err(|m| bad("node_name", m))?,
            format!("n{node_id}"),
        );
        let listen = pick(
            &mut sources,
            "listen",
            flags.listen,
            file.listen
                .as_deref()
                .map(check_listen)
                .transpose()
                .map_err(|m| bad("listen", m))?,
            DEFAULT_LISTEN,
        );
        let advertise = pick(
            &mut sources,
            "advertise",
            flags.advertise.clone().map(Some),
            file.advertise
                .as_deref()
                .map(check_advertise)
                .transpose()
                .map_err(|m| bad("advertise", m))?
                .map(Some),
            None,
        );
        let data_dir = pick(
            &mut sources,
            "data_dir",
            flags.data_dir.clone(),
            file.data_dir
                .map(|d| check_data_dir(d).map_err(|m| bad("data_dir", m)))
                .transpose()?,
            PathBuf::from(DEFAULT_DATA_DIR),
        );
        let max_running = pick(
            &mut sources,
            "max_running",
            flags.max_running,
            file.max_running
                .map(check_max_running)
                .transpose()
                .map_err(|m| bad("max_running", m))?,
            DEFAULT_MAX_RUNNING,
        );
        let snapshot_every = pick(
            &mut sources,
            "snapshot_every",
            flags.snapshot_every,
            file.snapshot_every
                .map(check_snapshot_every)
                .transpose()
                .map_err(|m| bad("snapshot_every", m))?,
            DEFAULT_SNAPSHOT_EVERY,
        );
        let node_timeout = pick(
            &mut sources,
            "node_timeout",
            flags.node_timeout,
            file.node_timeout
                .as_deref()
                .map(check_node_timeout)
                .transpose()
                .map_err(|m| bad("node_timeout", m))?,
            DEFAULT_NODE_TIMEOUT,
        );
        let heartbeat_interval = pick(
            &mut sources,
            "heartbeat_interval",
            flags.heartbeat_interval,
            file.heartbeat_interval
                .as_deref()
                .map(check_heartbeat_interval)
                .transpose()
                .map_err(|m| bad("heartbeat_interval", m))?,
            DEFAULT_HEARTBEAT_INTERVAL,
        );
        let election_timeout = pick(
            &mut sources,
            "election_timeout",
            flags.election_timeout,
            file.election_timeout
                .as_deref()
                .map(check_election_timeout)
                .transpose()
                .map_err(|m| bad("election_timeout", m))?,
            DEFAULT_ELECTION_TIMEOUT,
        );
        check_raft_timing(heartbeat_interval, election_timeout).map_err(|message| {
            ConfigError::Conflict {
                key: "election_timeout",
                message,
            }
        })?;
        let file_peers = match &file.peers {
            Some(list) => Some(
                list.iter()
                    .map(|p| check_peer(p))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|m| bad("peers", m))?,
            ),
            None => None,
        };
        let file_tags = file
            .tags
            .clone()
            .map(|tags| check_tags(&tags).map(|()| tags))
            .transpose()
            .map_err(|m| bad("tags", m))?;
        let flag_tags = (!flags.tags.is_empty()).then(|| flags.tags.iter().cloned().collect());
        let tags = pick(&mut sources, "tags", flag_tags, file_tags, BTreeMap::new());
        let flag_peers = (!flags.peers.is_empty()).then(|| flags.peers.clone());
        let peer_list = pick(&mut sources, "peers", flag_peers, file_peers, Vec::new());
        let mut peers = BTreeMap::new();
        for (id, url) in peer_list {
            let url = url.as_str().trim_end_matches('/').to_string();
            if let Some(other) = peers.insert(id, url.clone()) {
                if other != url {
                    return Err(ConfigError::Peers(format!(
                        "node {id} is given twice, as {other} and {url}"
                    )));
                }
            }
        }
        if !peers.is_empty() && !peers.contains_key(&node_id) {
            return Err(ConfigError::Peers(format!(
                "this node's id {node_id} is not among the peers ({}); set node_id",
                peers
                    .keys()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let cluster_secret = pick(
            &mut sources,
            "cluster_secret",
            flags.cluster_secret.clone().map(Some),
            file.cluster_secret
                .as_deref()
                .map(check_cluster_secret)
                .transpose()
                .map_err(|m| bad("cluster_secret", m))?
                .map(Some),
            None,
        );
        let file_log = file
            .log
            .as_deref()
            .map(check_log)
            .transpose()
            .map_err(|m| bad("log", m))?;
        let env_log = match rust_log.filter(|s| !s.trim().is_empty()) {
            Some(s) => Some(check_log(&s).map_err(|message| ConfigError::Env {
                var: "RUST_LOG",
                message,
            })?),
            None => None,
        };
        let (log, log_source) = match (env_log, file_log) {
            (Some(filter), _) => (filter, Source::Env),
            (None, Some(filter)) => (filter, Source::File),
            (None, None) => (DEFAULT_LOG.to_string(), Source::Default),
        };
        sources.insert("log", log_source);

        Ok(ServerConfig {
            node_id,
            node_name,
            listen,
            advertise,
            data_dir,
            max_running,
            snapshot_every,
            node_timeout,
            heartbeat_interval,
            election_timeout,
            log,
            peers,
            cluster_secret,
            tags,
            config_file: path,
            sources,
        })
    }

    /// The URL this node announces: `advertise` if set, else derived from `bound`
    /// (the address actually listened on, which differs from `listen` for port 0).
    pub fn advertise_url(&self, bound: SocketAddr) -> String {
        match &self.advertise {
            Some(url) => url.as_str().trim_end_matches('/').to_string(),
            None => advertise_for(bound),
        }
    }

    /// Key, value and source of every setting, in file-key order (for `config show`).
    pub fn entries(&self) -> Vec<(&'static str, String, Source)> {
        let source = |key: &str| self.sources.get(key).copied().unwrap_or(Source::Default);
        vec![
            ("node_id", self.node_id.to_string(), source("node_id")),
            ("node_name", self.node_name.clone(), source("node_name")),
            ("listen", self.listen.to_string(), source("listen")),
            (
                "advertise",
                self.advertise_url(self.listen),
                source("advertise"),
            ),
            (
                "data_dir",
                self.data_dir.display().to_string(),
                source("data_dir"),
            ),
            (
                "max_running",
                self.max_running.to_string(),
                source("max_running"),
            ),
            (
                "snapshot_every",
                self.snapshot_every.to_string(),
                source("snapshot_every"),
            ),
            (
                "node_timeout",
                rota_core::HumanDuration(self.node_timeout).to_string(),
                source("node_timeout"),
            ),
            (
                "heartbeat_interval",
                rota_core::HumanDuration(self.heartbeat_interval).to_string(),
                source("heartbeat_interval"),
            ),
            (
                "election_timeout",
                rota_core::HumanDuration(self.election_timeout).to_string(),
                source("election_timeout"),
            ),
            (
                "tags",
                self.tags
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
                source("tags"),
            ),
            ("log", self.log.clone(), source("log")),
            (
                "peers",
                self.peers
                    .iter()
                    .map(|(id, url)| format!("{id}={url}"))
                    .collect::<Vec<_>>()
                    .join(","),
                source("peers"),
            ),
            (
                "cluster_secret",
                // Never printed: `config show` output ends up in tickets and logs.
                if self.cluster_secret.is_some() {
                    "(set)".to_string()
                } else {
                    String::new()
                },
                source("cluster_secret"),
            ),
        ]
    }
}

/// Records where a value came from and returns it.
fn pick<T>(
    sources: &mut BTreeMap<&'static str, Source>,
    key: &'static str,
    flag: Option<T>,
    file: Option<T>,
    default: T,
) -> T {
    let (value, source) = match (flag, file) {
        (Some(v), _) => (v, Source::Flag),
        (None, Some(v)) => (v, Source::File),
        (None, None) => (default, Source::Default),
    };
    sources.insert(key, source);
    value
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

// Checks shared by flags and file keys. They answer what is accepted, without the
// key's name: the caller knows whether it was a flag or a file key.

pub fn check_node_id(id: u64) -> Result<u64, String> {
    if id == 0 {
        return Err("must be at least 1".to_string());
    }
    Ok(id)
}

pub fn check_node_name(name: &str) -> Result<String, String> {
    rota_core::validate_name("node_name", name).map_err(|e| e.message)?;
    Ok(name.to_string())
}

pub fn check_listen(addr: &str) -> Result<SocketAddr, String> {
    addr.trim().parse().map_err(|_| {
        format!("{addr:?} is not an address to listen on; expected IP:PORT, e.g. 127.0.0.1:7700 or [::]:7700")
    })
}

pub fn check_advertise(url: &str) -> Result<Url, String> {
    let parsed = Url::parse(url.trim())
        .map_err(|e| format!("{url:?} is not a URL ({e}); expected e.g. http://10.0.0.5:7700"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(format!(
            "{url:?} is not an http:// or https:// URL with a host, e.g. http://10.0.0.5:7700"
        ));
    }
    Ok(parsed)
}

pub fn check_data_dir(dir: PathBuf) -> Result<PathBuf, String> {
    if dir.as_os_str().is_empty() {
        return Err("must not be empty".to_string());
    }
    Ok(dir)
}

pub fn check_max_running(n: u64) -> Result<usize, String> {
    match usize::try_from(n) {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{n} is too large")),
    }
}

/// A duration such as `10s` or `1m`, from 1 s to 1 h.
pub fn check_node_timeout(text: &str) -> Result<std::time::Duration, String> {
    let d: rota_core::HumanDuration = text.parse()?;
    if d.0 < std::time::Duration::from_secs(1) || d.0 > std::time::Duration::from_secs(3600) {
        return Err(format!("{text} is out of range; accepted: 1s to 1h"));
    }
    Ok(d.0)
}

/// A duration such as `50ms`, from 1 ms to 5 s.
pub fn check_heartbeat_interval(text: &str) -> Result<std::time::Duration, String> {
    let d: rota_core::HumanDuration = text.parse()?;
    if d.0 < std::time::Duration::from_millis(1) || d.0 > std::time::Duration::from_secs(5) {
        return Err(format!("{text} is out of range; accepted: 1ms to 5s"));
    }
    Ok(d.0)
}

/// A duration such as `200ms`, from 10 ms to 1 m.
pub fn check_election_timeout(text: &str) -> Result<std::time::Duration, String> {
    let d: rota_core::HumanDuration = text.parse()?;
    if d.0 < std::time::Duration::from_millis(10) || d.0 > std::time::Duration::from_secs(60) {
        return Err(format!("{text} is out of range; accepted: 10ms to 1m"));
    }
    Ok(d.0)
}

/// The election timeout must leave room for a few heartbeats, or one late
/// heartbeat would depose a healthy leader.
pub fn check_raft_timing(
    heartbeat_interval: std::time::Duration,
    election_timeout: std::time::Duration,
) -> Result<(), String> {
    let timing = rota_cluster::RaftTiming {
        heartbeat_interval,
        election_timeout,
    };
    timing.validate().map_err(|_| {
        format!(
            "{} is shorter than {} heartbeat intervals of {}; raise election_timeout or lower heartbeat_interval",
            rota_core::HumanDuration(election_timeout),
            rota_cluster::RaftTiming::MIN_HEARTBEATS_PER_ELECTION,
            rota_core::HumanDuration(heartbeat_interval),
        )
    })
}

pub fn check_snapshot_every(n: u64) -> Result<u64, String> {
    if n == 0 {
        return Err("must be at least 1".to_string());
    }
    Ok(n)
}

/// Node tags: names and values non-empty, at most 64 characters each.
pub fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), String> {
    rota_core::validate::validate_tags(tags).map_err(|e| {
        if e.field.is_empty() || e.field == "tags" {
            e.message
        } else {
            format!("{}: {}", e.field, e.message)
        }
    })
}

/// One `--tag KEY=VALUE`.
pub fn check_tag(tag: &str) -> Result<(String, String), String> {
    let (key, value) = tag
        .split_once('=')
        .ok_or_else(|| format!("{tag:?} is not KEY=VALUE, e.g. region=eu"))?;
    let pair = (key.trim().to_string(), value.trim().to_string());
    check_tags(&BTreeMap::from([pair.clone()]))?;
    Ok(pair)
}

/// `ID=URL`, e.g. `2=http://10.0.0.2:7700`.
pub fn check_peer(peer: &str) -> Result<(u64, Url), String> {
    let expected = "expected ID=URL, e.g. 2=http://10.0.0.2:7700";
    let (id, url) = peer
        .trim()
        .split_once('=')
        .ok_or_else(|| format!("{peer:?} is not a peer; {expected}"))?;
    let id = id
        .trim()
        .parse::<u64>()
        .map_err(|_| format!("{peer:?}: {id:?} is not a node id; {expected}"))
        .and_then(|id| check_node_id(id).map_err(|m| format!("{peer:?}: node id {m}")))?;
    let url = check_advertise(url).map_err(|m| format!("{peer:?}: {m}"))?;
    Ok((id, url))
}

pub fn check_cluster_secret(secret: &str) -> Result<String, String> {
    if secret.is_empty() {
        return Err("must not be empty".to_string());
    }
    if !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(
            "must be printable ASCII without spaces (it travels in an HTTP header)".to_string(),
        );
    }
    Ok(secret.to_string())
}

pub fn check_log(filter: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(filter).map_err(|e| {
        format!(
            "{filter:?} is not a log filter ({e}); expected e.g. info or info,rota_scheduler=debug"
        )
    })?;
    Ok(filter.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Result<FileConfig, ConfigError> {
        FileConfig::parse(text, Path::new("rota.toml"))
    }

    fn with_file(flags: &ServerFlags, text: &str) -> Result<ServerConfig, ConfigError> {
        ServerConfig::resolve(flags, Some(("rota.toml".into(), file(text)?)), None)
    }

    #[test]
    fn defaults_without_file_or_flags() {
        let cfg = ServerConfig::resolve(&ServerFlags::default(), None, None).unwrap();
        assert_eq!(cfg.node_id, 1);
        assert_eq!(cfg.node_name, "n1");
        assert_eq!(cfg.listen, "127.0.0.1:7700".parse().unwrap());
        assert_eq!(cfg.advertise, None);
        assert_eq!(cfg.advertise_url(cfg.listen), "http://127.0.0.1:7700");
        assert_eq!(cfg.data_dir, PathBuf::from("rota-data"));
        assert_eq!(cfg.max_running, 64);
        assert_eq!(cfg.snapshot_every, 10_000);
        assert_eq!(cfg.log, DEFAULT_LOG);
        assert!(cfg.sources.values().all(|s| *s == Source::Default));
        assert_eq!(cfg.sources.len(), cfg.entries().len());
    }

    #[test]
    fn flag_beats_file_beats_default() {
        let text = r#"
            node_id = 4
            listen = "0.0.0.0:9000"
            data_dir = "/var/lib/rota"
            max_running = 10
            log = "debug"
        "#;
        let flags = ServerFlags {
            listen: Some("127.0.0.1:9100".parse().unwrap()),
            max_running: Some(2),
            ..Default::default()
        };
        let cfg = with_file(&flags, text).unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:9100".parse().unwrap());
        assert_eq!(cfg.sources["listen"], Source::Flag);
        assert_eq!(cfg.max_running, 2);
        assert_eq!(cfg.node_id, 4);
        assert_eq!(cfg.sources["node_id"], Source::File);
        assert_eq!(
            cfg.node_name, "n4",
            "the default name follows the effective id"
        );
        assert_eq!(cfg.sources["node_name"], Source::Default);
        assert_eq!(cfg.data_dir, PathBuf::from("/var/lib/rota"));
        assert_eq!(cfg.snapshot_every, DEFAULT_SNAPSHOT_EVERY);
        assert_eq!(cfg.sources["snapshot_every"], Source::Default);
        assert_eq!(cfg.log, "debug");
        assert_eq!(cfg.config_file, Some(PathBuf::from("rota.toml")));
    }

    #[test]
    fn rust_log_beats_the_file() {
        let f = file("log = \"debug\"").unwrap();
        let cfg = ServerConfig::resolve(
            &ServerFlags::default(),
            Some(("rota.toml".into(), f.clone())),
            Some("warn".into()),
        )
        .unwrap();
        assert_eq!(cfg.log, "warn");
        assert_eq!(cfg.sources["log"], Source::Env);
        let cfg = ServerConfig::resolve(
            &ServerFlags::default(),
            Some(("rota.toml".into(), f)),
            Some("  ".into()),
        )
        .unwrap();
        assert_eq!(cfg.log, "debug", "an empty RUST_LOG does not count");
    }

    #[test]
    fn unknown_key_is_rejected_with_its_name() {
        let err = file("node_id = 2\nlisten_addr = \"127.0.0.1:1\"\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("listen_addr"), "{text}");
        assert!(text.contains("rota.toml"), "{text}");
        assert!(text.contains("line 2"), "{text}");
    }

    #[test]
    fn wrong_type_names_the_key_and_line() {
        let err = file("\nmax_running = \"many\"\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("max_running"), "{text}");
        assert!(text.contains("line 2"), "{text}");
    }

    #[test]
    fn bad_listen_address_is_rejected() {
        for bad in ["localhost", "127.0.0.1", "1.2.3.4:99999", ""] {
            let err = with_file(&ServerFlags::default(), &format!("listen = {bad:?}")).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("listen"), "{text}");
            assert!(text.contains("IP:PORT"), "{text}");
        }
        assert!(check_listen("[::1]:7700").is_ok());
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("node_id = 0", "node_id"),
            ("node_name = \"Not OK\"", "node_name"),
            ("advertise = \"10.0.0.1:7700\"", "advertise"),
            ("advertise = \"ftp://x\"", "advertise"),
            ("data_dir = \"\"", "data_dir"),
            ("max_running = 0", "max_running"),
            ("snapshot_every = 0", "snapshot_every"),
            ("node_timeout = \"500ms\"", "node_timeout"),
            ("node_timeout = \"2h\"", "node_timeout"),
            ("node_timeout = \"soon\"", "node_timeout"),
            ("log = \"info,[\"", "log"),
            ("node_id = -3", "node_id"),
        ] {
            let err = with_file(&ServerFlags::default(), text)
                .expect_err(&format!("{text} should be rejected"));
            let shown = err.to_string();
            assert!(shown.contains(key), "{text}: {shown}");
        }
        let err =
            ServerConfig::resolve(&ServerFlags::default(), None, Some("[".into())).unwrap_err();
        assert!(err.to_string().contains("RUST_LOG"), "{err}");
    }

    #[test]
    fn raft_timing_from_the_file_and_the_flags_is_checked_together() {
        use std::time::Duration;
        let cfg = with_file(&ServerFlags::default(), "").unwrap();
        assert_eq!(cfg.heartbeat_interval, DEFAULT_HEARTBEAT_INTERVAL);
        assert_eq!(cfg.election_timeout, DEFAULT_ELECTION_TIMEOUT);
        assert_eq!(cfg.sources["election_timeout"], Source::Default);

        let text = "heartbeat_interval = \"100ms\"\nelection_timeout = \"1s\"";
        let cfg = with_file(&ServerFlags::default(), text).unwrap();
        assert_eq!(cfg.heartbeat_interval, Duration::from_millis(100));
        assert_eq!(cfg.election_timeout, Duration::from_secs(1));
        assert_eq!(cfg.sources["heartbeat_interval"], Source::File);
        let shown: Vec<_> = cfg.entries().into_iter().map(|(k, v, _)| (k, v)).collect();
        assert!(
            shown.contains(&("election_timeout", "1s".to_string())),
            "{shown:?}"
        );

        let flags = ServerFlags {
            election_timeout: Some(Duration::from_millis(400)),
            ..ServerFlags::default()
        };
        let cfg = with_file(&flags, text).unwrap();
        assert_eq!(cfg.election_timeout, Duration::from_millis(400));
        assert_eq!(cfg.sources["election_timeout"], Source::Flag);

        // Each valid alone, together too tight: the error names the key to change.
        let flags = ServerFlags {
            election_timeout: Some(Duration::from_millis(250)),
            ..ServerFlags::default()
        };
        let err = with_file(&flags, text).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Conflict {
                    key: "election_timeout",
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().starts_with("election_timeout: 250ms"),
            "{err}"
        );

        for (text, key) in [
            ("heartbeat_interval = \"0s\"", "heartbeat_interval"),
            ("heartbeat_interval = \"fast\"", "heartbeat_interval"),
            ("election_timeout = \"5ms\"", "election_timeout"),
            ("election_timeout = \"2m\"", "election_timeout"),
        ] {
            let err = with_file(&ServerFlags::default(), text).unwrap_err();
            assert!(
                err.to_string().contains(&format!("key {key}")),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn node_timeout_from_the_file_and_the_flag() {
        let cfg = with_file(&ServerFlags::default(), "node_timeout = \"30s\"").unwrap();
        assert_eq!(cfg.node_timeout, std::time::Duration::from_secs(30));
        assert_eq!(cfg.sources["node_timeout"], Source::File);
        let flags = ServerFlags {
            node_timeout: Some(std::time::Duration::from_secs(5)),
            ..ServerFlags::default()
        };
        let cfg = with_file(&flags, "node_timeout = \"30s\"").unwrap();
        assert_eq!(cfg.node_timeout, std::time::Duration::from_secs(5));
        let cfg = with_file(&ServerFlags::default(), "").unwrap();
        assert_eq!(cfg.node_timeout, DEFAULT_NODE_TIMEOUT);
    }

    #[test]
    fn peers_and_secret_from_the_file() {
        let text = r#"
            node_id = 2
            peers = ["1=http://a:7700", "2=http://b:7700/", "3=http://c:7700"]
            cluster_secret = "s3cret"
        "#;
        let cfg = with_file(&ServerFlags::default(), text).unwrap();
        assert_eq!(cfg.peers.len(), 3);
        assert_eq!(cfg.peers[&2], "http://b:7700");
        assert_eq!(cfg.sources["peers"], Source::File);
        assert_eq!(cfg.cluster_secret.as_deref(), Some("s3cret"));
        let shown = cfg.entries();
        let secret = shown
            .iter()
            .find(|(k, _, _)| *k == "cluster_secret")
            .unwrap();
        assert_eq!(secret.1, "(set)", "the secret is never shown");

        let err = with_file(&ServerFlags::default(), "peers = [\"2=http://b:1\"]").unwrap_err();
        assert!(err.to_string().contains("not among the peers"), "{err}");
        let err = with_file(&ServerFlags::default(), "peers = [\"x\"]").unwrap_err();
        assert!(err.to_string().contains("peers"), "{err}");
        let err = with_file(
            &ServerFlags::default(),
            "peers = [\"1=http://a:1\", \"1=http://b:1\"]",
        )
        .unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
        let err = with_file(&ServerFlags::default(), "cluster_secret = \"a b\"").unwrap_err();
        assert!(err.to_string().contains("cluster_secret"), "{err}");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = file("node_id = 1\nlisten = \n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn advertise_is_derived_from_the_bound_address() {
        assert_eq!(
            advertise_for("0.0.0.0:7700".parse().unwrap()),
            "http://127.0.0.1:7700"
        );
        assert_eq!(advertise_for("[::]:80".parse().unwrap()), "http://[::1]:80");
        assert_eq!(
            advertise_for("10.1.2.3:7700".parse().unwrap()),
            "http://10.1.2.3:7700"
        );
        let cfg = with_file(
            &ServerFlags::default(),
            "advertise = \"http://rota.example:7700/\"",
        )
        .unwrap();
        assert_eq!(
            cfg.advertise_url("127.0.0.1:1".parse().unwrap()),
            "http://rota.example:7700"
        );
    }

    #[test]
    fn load_reads_an_explicit_file_and_fails_when_it_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("custom.toml");
        std::fs::write(&path, "node_id = 7\n").unwrap();
        let flags = ServerFlags {
            config: Some(path.clone()),
            ..Default::default()
        };
        let cfg = ServerConfig::load(&flags, None).unwrap();
        assert_eq!(cfg.node_id, 7);
        assert_eq!(cfg.config_file, Some(path));

        let flags = ServerFlags {
            config: Some(dir.path().join("missing.toml")),
            ..Default::default()
        };
        let err = ServerConfig::load(&flags, None).unwrap_err();
        assert!(err.to_string().contains("missing.toml"), "{err}");
    }
}
