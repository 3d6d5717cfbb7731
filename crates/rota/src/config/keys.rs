//! Every server setting, declared once.
//!
//! One entry of the [`server_settings!`] table below is a whole key: its doc (the
//! `--flag`'s help, first paragraph, and what the `rota.toml` key holds), its flag,
//! the form it takes in the file and the check both go through, the type and
//! default of its effective value, and, where the plain value would mislead, how
//! `rota server --print-config` prints it. From the table come the [`Settings`] layer (the
//! flags, the file, the environment: each key set or not), the file's key list
//! (`deny_unknown_fields`), the effective [`ServerConfig`], the flag > env > file >
//! default resolution with the source of each value, and the shown entries.
//!
//! An entry reads
//!
//! ```text
//! /// Help of the flag [default: ...].
//! ///
//! /// More about the key.
//! #[arg(long, value_name = "N", value_parser = flag(check_x))]
//! x: u64,                                   // the value of a layer
//!     file u64 => check_x,                  // as written in rota.toml, and its check
//!     value u64 = |v| v.unwrap_or(DEFAULT); // the effective value from the layers'
//! ```
//!
//! where `v` is the first layer's value that is set (`None` when none is); the
//! expression may use the keys declared before it and `?` on a [`ConfigError`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;

use super::checks::*;
use super::{advertise_for, LogFormat, Source};
use super::{
    DEFAULT_DATA_DIR, DEFAULT_DISCOVERY_THROTTLE, DEFAULT_ELECTION_TIMEOUT,
    DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_LISTEN, DEFAULT_LOG, DEFAULT_MAX_RUNNING, DEFAULT_NODE_ID,
    DEFAULT_NODE_TIMEOUT, DEFAULT_SNAPSHOT_EVERY, DEFAULT_WATCH_BUFFER, DEFAULT_WATCH_RETENTION,
    DEFAULT_WATCH_RETENTION_AGE,
};
use crate::error::ConfigError;

/// How `rota server --print-config` prints an effective value.
pub trait Shown {
    fn shown(&self) -> String;
}

macro_rules! shown_by_display {
    ($($t:ty),*) => {$(
        impl Shown for $t {
            fn shown(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
shown_by_display!(u64, usize, String, SocketAddr);

impl Shown for PathBuf {
    fn shown(&self) -> String {
        self.display().to_string()
    }
}

impl Shown for LogFormat {
    fn shown(&self) -> String {
        self.as_str().to_string()
    }
}

impl Shown for Duration {
    fn shown(&self) -> String {
        rota_core::HumanDuration(*self).to_string()
    }
}

/// `K=V` pairs joined by commas: how the flags take them.
impl<K: std::fmt::Display, V: std::fmt::Display> Shown for BTreeMap<K, V> {
    fn shown(&self) -> String {
        self.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The environment variable of a key: `ROTA_` and the key upper-cased
/// (`max_running` → `ROTA_MAX_RUNNING`).
pub fn env_var(key: &str) -> String {
    format!("ROTA_{}", key.to_ascii_uppercase().replace(['.', '-'], "_"))
}

/// The shown form of one key: the entry's own, else [`Shown`].
macro_rules! shown {
    ($cfg:ident, $key:ident, |$c:ident| $show:expr) => {{
        let $c = $cfg;
        $show
    }};
    ($cfg:ident, $key:ident) => {
        Shown::shown(&$cfg.$key)
    };
}

macro_rules! server_settings {
    ($(
        $(#[$attr:meta])*
        $key:ident: $layer:ty,
            file $raw:ty => $check:expr,
            value $value:ty = |$v:ident| $resolve:expr
            $(, show |$c:ident| $show:expr)?;
    )*) => {
        /// One layer of the server settings (the flags, the config file, the
        /// environment): each key set or not.
        #[derive(Debug, Clone, Default, PartialEq, clap::Args)]
        pub struct Settings {
            $(
                $(#[$attr])*
                pub $key: Option<$layer>,
            )*
        }

        /// The keys of `rota.toml` as written, each with where it stands in the text.
        #[derive(Debug, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(super) struct FileKeys {
            $(
                #[serde(default)]
                $key: Option<toml::Spanned<$raw>>,
            )*
        }

        impl FileKeys {
            /// Puts every key through its check; `bad` names the key and the span.
            pub(super) fn check(
                self,
                bad: impl Fn(&'static str, String, std::ops::Range<usize>) -> ConfigError,
            ) -> Result<Settings, ConfigError> {
                Ok(Settings {
                    $(
                        $key: match self.$key {
                            Some(raw) => {
                                let span = raw.span();
                                Some(($check)(raw.into_inner())
                                    .map_err(|m| bad(stringify!($key), m, span))?)
                            }
                            None => None,
                        },
                    )*
                })
            }
        }

        impl Settings {
            /// The layer of `ROTA_*` variables in `vars` (`ROTA_MAX_RUNNING` for
            /// `max_running`), each read as its flag is and put through its key's
            /// check; an error names the variable and the key.
            pub(super) fn from_env(
                vars: &BTreeMap<String, String>,
            ) -> Result<Settings, ConfigError> {
                Ok(Settings {
                    $(
                        $key: match vars.get(&env_var(stringify!($key))) {
                            Some(text) => Some(flag($check)(text).map_err(|message| {
                                ConfigError::EnvVar {
                                    var: env_var(stringify!($key)),
                                    key: stringify!($key),
                                    message,
                                }
                            })?),
                            None => None,
                        },
                    )*
                })
            }
        }

        /// The effective configuration of `rota server`.
        #[derive(Debug, Clone, PartialEq)]
        pub struct ServerConfig {
            $(
                pub $key: $value,
            )*
            /// The config file that was read, if any.
            pub config_file: Option<PathBuf>,
            /// Where each key's value came from.
            pub sources: BTreeMap<&'static str, Source>,
        }

        impl ServerConfig {
            /// Each key from the first layer that sets it, else its default.
            pub(super) fn from_layers(
                layers: &[(Source, &Settings)],
                config_file: Option<PathBuf>,
            ) -> Result<ServerConfig, ConfigError> {
                let mut sources = BTreeMap::new();
                $(
                    let (set, source) = layers
                        .iter()
                        .find_map(|(source, layer)| layer.$key.clone().map(|v| (Some(v), *source)))
                        .unwrap_or((None, Source::Default));
                    sources.insert(stringify!($key), source);
                    let $key: $value = {
                        let $v: Option<$layer> = set;
                        $resolve
                    };
                )*
                Ok(ServerConfig {
                    $($key,)*
                    config_file,
                    sources,
                })
            }

            /// Key, value and source of every setting, in table order (for
            /// `server --print-config`).
            pub fn entries(&self) -> Vec<(&'static str, String, Source)> {
                let cfg = self;
                let source = |key: &str| cfg.sources.get(key).copied().unwrap_or(Source::Default);
                vec![$(
                    (
                        stringify!($key),
                        shown!(cfg, $key $(, |$c| $show)?),
                        source(stringify!($key)),
                    ),
                )*]
            }
        }
    };
}

server_settings! {
    /// Raft node id, unique in the cluster [default: 1].
    ///
    /// At least 1.
    #[arg(long, value_name = "N", value_parser = flag(check_node_id))]
    node_id: u64,
        file u64 => check_node_id,
        value u64 = |v| v.unwrap_or(DEFAULT_NODE_ID);

    /// Name of the node in executions and health [default: n<node-id>].
    ///
    /// Recorded on executions (`ROTA_NODE`); `[a-z0-9][a-z0-9_-]{0,62}`.
    #[arg(long, value_name = "NAME", value_parser = flag(check_node_name))]
    node_name: String,
        file String => check_node_name,
        value String = |v| v.unwrap_or_else(|| format!("n{node_id}"));

    /// Address the API, web UI and peer traffic listen on [default: 127.0.0.1:7700].
    ///
    /// An IP address and a port, e.g. `127.0.0.1:7700` or `[::]:7700`.
    #[arg(long, value_name = "ADDR", value_parser = flag(check_listen))]
    listen: SocketAddr,
        file String => check_listen,
        value SocketAddr = |v| v.unwrap_or(DEFAULT_LISTEN);

    /// URL peers and clients reach this node at [default: http://<listen>].
    ///
    /// An `http://` or `https://` URL; by default the listen address, with loopback
    /// for an address that listens on all interfaces.
    #[arg(long, value_name = "URL", value_parser = flag(check_advertise))]
    advertise: Url,
        file String => check_advertise,
        // `None`: derived from the address actually bound (see `advertise_url`).
        value Option<Url> = |v| v,
        show |c| c.advertise_url(c.listen);

    /// Directory of the Raft log, the state and snapshots [default: ./rota-data].
    ///
    /// A relative path is relative to the working directory of `rota server`.
    #[arg(long, value_name = "DIR", value_parser = flag(check_data_dir))]
    data_dir: PathBuf,
        file PathBuf => check_data_dir,
        value PathBuf = |v| v.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));

    /// Most runs executing at once on this node [default: 64].
    ///
    /// At least 1; more runs wait, by priority.
    #[arg(long, value_name = "N", value_parser = flag(check_max_running))]
    max_running: usize,
        file u64 => check_max_running,
        value usize = |v| v.unwrap_or(DEFAULT_MAX_RUNNING);

    /// Snapshot the state (and trim the log) every this many log entries [default: 10000].
    ///
    /// At least 1.
    #[arg(long, value_name = "N", value_parser = flag(check_snapshot_every))]
    snapshot_every: u64,
        file u64 => check_snapshot_every,
        value u64 = |v| v.unwrap_or(DEFAULT_SNAPSHOT_EVERY);

    /// Events the watch log keeps at least (it also keeps every event younger
    /// than `watch_retention_age`); every member must use the same [default: 100000].
    ///
    /// At least 1. It decides what the replicated state machine deletes, so members
    /// with different values would hold different logs.
    #[arg(long, value_name = "N", value_parser = flag(check_watch_retention))]
    watch_retention: u64,
        file u64 => check_watch_retention,
        value u64 = |v| v.unwrap_or(DEFAULT_WATCH_RETENTION);

    /// How long the watch log keeps every event, whatever their number, 1s-30d;
    /// every member must use the same [default: 24h].
    ///
    /// Events beyond both `watch_retention` and this age are dropped; a watch from
    /// a revision before them gets 410 `compacted`.
    #[arg(long, value_name = "DURATION", value_parser = flag(check_watch_retention_age))]
    watch_retention_age: Duration,
        file String => check_watch_retention_age,
        value Duration = |v| v.unwrap_or(DEFAULT_WATCH_RETENTION_AGE);

    /// Events a watcher may have waiting before it is closed as a slow consumer
    /// [default: 4096].
    ///
    /// At least 1. A watcher that reads slower than events arrive is closed with an
    /// `error` event (`slow_consumer`) and may resume with `Last-Event-ID`.
    #[arg(long, value_name = "N", value_parser = flag(check_watch_buffer))]
    watch_buffer: usize,
        file u64 => check_watch_buffer,
        value usize = |v| v.unwrap_or(DEFAULT_WATCH_BUFFER);

    /// Watch connections (SSE and WebSocket) this node serves at once, 1-100000
    /// [default: 1024].
    ///
    /// One more is answered 503 `too_many_watchers` naming this limit; each open
    /// watch holds a connection and up to `watch_buffer` events.
    #[arg(long, value_name = "N", value_parser = flag(check_watch_max_connections))]
    watch_max_connections: usize,
        file u64 => check_watch_max_connections,
        value usize = |v| v.unwrap_or(super::DEFAULT_WATCH_MAX_CONNECTIONS);

    /// Least time between two committed changes of one target set, 100ms-1h
    /// [default: 5s].
    ///
    /// Discovery on the leader passes a set's change on at once, then at most once
    /// per this window (the latest state, never an intermediate one), so a chatty
    /// provider cannot flood the log.
    #[arg(long, value_name = "DURATION", value_parser = flag(check_discovery_throttle))]
    discovery_throttle: Duration,
        file String => check_discovery_throttle,
        value Duration = |v| v.unwrap_or(DEFAULT_DISCOVERY_THROTTLE);

    /// How long a node running attempts may stay silent before the leader presumes
    /// it dead and retries its runs, 1s-1h [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = flag(check_node_timeout))]
    node_timeout: Duration,
        file String => check_node_timeout,
        value Duration = |v| v.unwrap_or(DEFAULT_NODE_TIMEOUT);

    /// How long before its instant a scheduled run is committed, 0s-10s
    /// [default: 1500ms].
    ///
    /// While this node leads, runs due within this window are recorded and placed
    /// on their node ahead of time; that node hands each to its executor at its
    /// instant, so the commit is not part of the scheduling lag. 0s commits every
    /// run at its instant. A whole number of seconds makes the next second's runs
    /// be committed while this second's are handed over, which delays them.
    #[arg(long, value_name = "DURATION", value_parser = flag(check_fire_ahead))]
    fire_ahead: Duration,
        file String => check_fire_ahead,
        value Duration = |v| v.unwrap_or(rota_scheduler::DEFAULT_FIRE_AHEAD);

    /// How long runs of a stopping node may go on to finish, 0s-1h [default: 30s].
    ///
    /// On SIGTERM or SIGINT the node hands its leadership over and takes no new
    /// runs; runs still going when this runs out are cancelled (and retried on
    /// another node when their job's retry policy allows).
    #[arg(long, value_name = "DURATION", value_parser = flag(check_shutdown_grace))]
    shutdown_grace: Duration,
        file String => check_shutdown_grace,
        value Duration = |v| v.unwrap_or(super::DEFAULT_SHUTDOWN_GRACE);

    /// How often the Raft leader sends heartbeats, 1ms-5s; every member should use
    /// the same [default: 50ms].
    #[arg(long, value_name = "DURATION", value_parser = flag(check_heartbeat_interval))]
    heartbeat_interval: Duration,
        file String => check_heartbeat_interval,
        value Duration = |v| v.unwrap_or(DEFAULT_HEARTBEAT_INTERVAL);

    /// Shortest Raft election timeout (the longest is twice it), 10ms-1m and at
    /// least three heartbeat intervals; every member should use the same
    /// [default: 150ms].
    ///
    /// A dead leader is replaced 3 to 4 times this after its last heartbeat; a node
    /// stalled for that long loses its leadership.
    #[arg(long, value_name = "DURATION", value_parser = flag(check_election_timeout))]
    election_timeout: Duration,
        file String => check_election_timeout,
        value Duration = |v| {
            let timeout = v.unwrap_or(DEFAULT_ELECTION_TIMEOUT);
            check_raft_timing(heartbeat_interval, timeout).map_err(|message| {
                ConfigError::Conflict { key: "election_timeout", message }
            })?;
            timeout
        };

    /// A tag of this node as KEY=VALUE (repeatable): jobs whose `tags` are all
    /// among this node's may run here [default: none].
    ///
    /// In rota.toml a table, e.g. `tags = { region = "eu", gpu = "yes" }`. A job
    /// without tags runs on any node.
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = flag(check_tag))]
    tags: Vec<(String, String)>,
        file BTreeMap<String, String> => check_tags,
        value BTreeMap<String, String> = |v| v.unwrap_or_default().into_iter().collect();

    /// Log filter in `RUST_LOG` syntax, e.g. `info` or `info,rota_scheduler=debug`
    /// [default: info,openraft=warn]. Only in rota.toml; the `RUST_LOG` environment
    /// variable overrides it.
    #[arg(skip)]
    log: String,
        file String => check_log,
        value String = |v| v.unwrap_or_else(|| DEFAULT_LOG.to_string());

    /// How log lines are written to stderr: `text`, or `json` with one object
    /// a line [default: text].
    ///
    /// A JSON line holds `timestamp`, `level`, `message`, the event's own fields,
    /// `target` and the enclosing `span` (its name and fields).
    #[arg(long, value_name = "FORMAT", value_parser = flag(check_log_format))]
    log_format: LogFormat,
        file String => check_log_format,
        value LogFormat = |v| v.unwrap_or_default();

    /// Voters of a new cluster as ID=URL pairs, this node among them, e.g.
    /// 1=http://10.0.0.1:7700,2=http://10.0.0.2:7700,3=http://10.0.0.3:7700; the
    /// lowest id initializes the cluster [default: a one-node cluster].
    ///
    /// In rota.toml a list of "ID=URL" strings.
    #[arg(long, value_name = "ID=URL", num_args = 1.., value_delimiter = ',',
          value_parser = flag(check_peer))]
    peers: Vec<(u64, Url)>,
        file Vec<String> => check_peers,
        // Initial voters (id -> URL without a trailing slash); empty: a one-node cluster.
        value BTreeMap<u64, String> = |v| peer_map(node_id, v.unwrap_or_default())?;

    /// Shared secret of the peer traffic and of membership changes [default: none].
    ///
    /// Printable ASCII without spaces. Without it the peer routes are open.
    #[arg(long, value_name = "SECRET",
          value_parser = flag(check_cluster_secret))]
    cluster_secret: String,
        file String => check_cluster_secret,
        value Option<String> = |v| v,
        // Never printed: `--print-config` output ends up in tickets and logs.
        show |c| if c.cluster_secret.is_some() { "(set)".to_string() } else { String::new() };

    /// PEM file of this node's certificate (its chain, leaf first); with
    /// `tls_key`, the node serves HTTPS only [default: none, plain HTTP].
    ///
    /// Read at start. The default advertise URL becomes `https://`. `rota cert
    /// node` writes one for a test cluster.
    #[arg(long, value_name = "FILE", value_parser = flag(check_tls_file))]
    tls_cert: PathBuf,
        file PathBuf => check_tls_file,
        value Option<PathBuf> = |v| v,
        show |c| c.tls_cert.as_ref().map(|p| p.display().to_string()).unwrap_or_default();

    /// PEM file of the private key of `tls_cert` [default: none].
    ///
    /// Given with `tls_cert` or not at all.
    #[arg(long, value_name = "FILE", value_parser = flag(check_tls_file))]
    tls_key: PathBuf,
        file PathBuf => check_tls_file,
        value Option<PathBuf> = |v| {
            if v.is_some() != tls_cert.is_some() {
                Err(ConfigError::Conflict {
                    key: "tls_key",
                    message: "tls_cert and tls_key go together: set both (HTTPS) or neither \
                              (plain HTTP)"
                        .to_string(),
                })?;
            }
            v
        },
        show |c| c.tls_key.as_ref().map(|p| p.display().to_string()).unwrap_or_default();

    /// PEM file of the CA that peers' certificates chain to: this node trusts it
    /// (and only it) when it calls peers or joins [default: none, the system's roots].
    ///
    /// Read at start. With `tls_cert` and `tls_key` too (peer mTLS): the node
    /// presents its certificate to peers, and takes a client certificate of this
    /// CA in place of the cluster secret on the peer routes, which then need one
    /// or the other.
    #[arg(long, value_name = "FILE", value_parser = flag(check_tls_file))]
    tls_ca: PathBuf,
        file PathBuf => check_tls_file,
        value Option<PathBuf> = |v| v,
        show |c| c.tls_ca.as_ref().map(|p| p.display().to_string()).unwrap_or_default();

    /// The first admin token: stored as the token `admin` when the cluster holds
    /// no token yet (`ROTA_AUTH_ADMIN_TOKEN`) [default: none].
    ///
    /// 16-256 printable ASCII characters without spaces. Until it is stored, this
    /// node accepts it as admin.
    #[arg(long, value_name = "TOKEN", value_parser = flag(check_admin_token))]
    auth_admin_token: String,
        file String => check_admin_token,
        value Option<String> = |v| v,
        show |c| if c.auth_admin_token.is_some() { "(set)".to_string() } else { String::new() };

    /// Send OpenTelemetry traces to this OTLP/HTTP receiver, e.g.
    /// http://127.0.0.1:4318 [default: none, no traces].
    ///
    /// An `http://` or `https://` URL; spans are posted as JSON to its `/v1/traces`
    /// path (a URL that ends in `/v1/traces` is used as it is). One span per API
    /// request, per Raft commit and per execution attempt.
    #[arg(long, value_name = "URL", value_parser = flag(check_otlp_endpoint))]
    otlp_endpoint: Url,
        file String => check_otlp_endpoint,
        value Option<Url> = |v| v,
        show |c| c.otlp_endpoint.as_ref().map(Url::to_string).unwrap_or_default();

    /// A header of every request to `otlp_endpoint` as NAME=VALUE (repeatable),
    /// e.g. authorization=Bearer abc [default: none].
    ///
    /// In rota.toml a table, e.g. `otlp_headers = { authorization = "Bearer abc" }`.
    /// `--print-config` prints the names only: values are often credentials.
    #[arg(long = "otlp-header", value_name = "NAME=VALUE",
          value_parser = flag(check_otlp_header))]
    otlp_headers: Vec<(String, String)>,
        file BTreeMap<String, String> => check_otlp_headers,
        value BTreeMap<String, String> = |v| v.unwrap_or_default().into_iter().collect(),
        show |c| c.otlp_headers.keys().map(|k| format!("{k}=(set)")).collect::<Vec<_>>().join(",");
}

/// The voters by id, URLs without a trailing slash; this node must be one of them.
fn peer_map(node_id: u64, list: Vec<(u64, Url)>) -> Result<BTreeMap<u64, String>, ConfigError> {
    let mut peers = BTreeMap::new();
    for (id, url) in list {
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
    Ok(peers)
}

impl ServerConfig {
    /// The URL this node announces: `advertise` if set, else derived from `bound`
    /// (the address actually listened on, which differs from `listen` for port 0).
    pub fn advertise_url(&self, bound: SocketAddr) -> String {
        match &self.advertise {
            Some(url) => url.as_str().trim_end_matches('/').to_string(),
            None if self.tls_cert.is_some() => advertise_for(bound).replacen("http", "https", 1),
            None => advertise_for(bound),
        }
    }
}
