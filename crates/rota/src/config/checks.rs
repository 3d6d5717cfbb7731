//! The checks a setting's value goes through, whether it came from a flag or from
//! the config file. Each takes the value as the file writes it (text, a number, a
//! list, a table) and answers the typed value or what is accepted, without the
//! key's name: the caller knows whether it was a flag or a file key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use rota_core::HumanDuration;

use super::LogFormat;

/// A flag's text as the raw value its key's check takes.
pub trait FromFlag: Sized {
    fn from_flag(text: &str) -> Result<Self, String>;
}

impl FromFlag for u64 {
    fn from_flag(text: &str) -> Result<u64, String> {
        text.trim()
            .parse()
            .map_err(|_| format!("{text:?} is not a whole number"))
    }
}

impl FromFlag for String {
    fn from_flag(text: &str) -> Result<String, String> {
        Ok(text.to_string())
    }
}

impl FromFlag for PathBuf {
    fn from_flag(text: &str) -> Result<PathBuf, String> {
        Ok(PathBuf::from(text))
    }
}

/// A comma list, as `ROTA_PEERS=1=http://a:7700,2=http://b:7700` gives it.
impl FromFlag for Vec<String> {
    fn from_flag(text: &str) -> Result<Vec<String>, String> {
        Ok(text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect())
    }
}

/// `K=V` pairs joined by commas, as `ROTA_TAGS=zone=a,disk=ssd` gives them.
impl FromFlag for BTreeMap<String, String> {
    fn from_flag(text: &str) -> Result<BTreeMap<String, String>, String> {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|pair| match pair.split_once('=') {
                Some((k, v)) => Ok((k.trim().to_string(), v.trim().to_string())),
                None => Err(format!(
                    "{pair:?} is not KEY=VALUE; accepted: key=value pairs joined by commas"
                )),
            })
            .collect()
    }
}

/// A clap value parser made of a key's check, so that a flag and a file key accept
/// exactly the same values.
pub fn flag<R: FromFlag + 'static, T: 'static>(
    check: fn(R) -> Result<T, String>,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static {
    move |text| check(R::from_flag(text)?)
}

pub fn check_node_id(id: u64) -> Result<u64, String> {
    rota_cluster::check_node_id(id).map(|()| id)
}

pub fn check_node_name(name: String) -> Result<String, String> {
    rota_core::validate_name("node_name", &name).map_err(|e| e.message)?;
    Ok(name)
}

pub fn check_listen(addr: String) -> Result<SocketAddr, String> {
    addr.trim().parse().map_err(|_| {
        format!("{addr:?} is not an address to listen on; expected IP:PORT, e.g. 127.0.0.1:7700 or [::]:7700")
    })
}

/// An `http://` or `https://` URL with a host, e.g. `http://10.0.0.5:7700`.
pub fn check_advertise(url: String) -> Result<Url, String> {
    let expected = "expected e.g. http://10.0.0.5:7700";
    rota_core::validate::check_http_url(url.trim()).map_err(|m| format!("{m}; {expected}"))?;
    Url::parse(url.trim()).map_err(|e| format!("{url:?} is not a URL ({e}); {expected}"))
}

/// An `http://` or `https://` URL with a host: an OTLP/HTTP receiver.
pub fn check_otlp_endpoint(url: String) -> Result<Url, String> {
    let expected =
        "expected the http:// or https:// URL of an OTLP/HTTP receiver, e.g. http://127.0.0.1:4318";
    rota_core::validate::check_http_url(url.trim()).map_err(|m| format!("{m}; {expected}"))?;
    Url::parse(url.trim()).map_err(|e| format!("{url:?} is not a URL ({e}); {expected}"))
}

/// Headers of the requests to the OTLP receiver: HTTP header names, values of
/// visible ASCII.
pub fn check_otlp_headers(
    headers: BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let name = name.trim().to_ascii_lowercase();
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(format!(
                "{name:?} is not an HTTP header name; accepted: letters, digits and !#$%&'*+-.^_`|~"
            ));
        }
        let value = value.trim().to_string();
        if value.is_empty() || !value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
            return Err(format!(
                "the value of header {name:?} must be non-empty, printable ASCII"
            ));
        }
        out.push((name, value));
    }
    Ok(out)
}

/// One `--otlp-header NAME=VALUE`.
pub fn check_otlp_header(header: String) -> Result<(String, String), String> {
    let (name, value) = header
        .split_once('=')
        .ok_or_else(|| format!("{header:?} is not NAME=VALUE, e.g. authorization=Bearer abc"))?;
    let mut checked = check_otlp_headers(BTreeMap::from([(name.to_string(), value.to_string())]))?;
    Ok(checked.remove(0))
}

pub fn check_data_dir(dir: PathBuf) -> Result<PathBuf, String> {
    if dir.as_os_str().is_empty() {
        return Err("must not be empty".to_string());
    }
    Ok(dir)
}

/// A TLS file setting: a path, read at start.
pub fn check_tls_file(path: PathBuf) -> Result<PathBuf, String> {
    if path.as_os_str().is_empty() {
        return Err("must be the path of a PEM file".to_string());
    }
    Ok(path)
}

pub fn check_max_running(n: u64) -> Result<usize, String> {
    match usize::try_from(n) {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{n} is too large")),
    }
}

pub fn check_snapshot_every(n: u64) -> Result<u64, String> {
    if n == 0 {
        return Err("must be at least 1".to_string());
    }
    Ok(n)
}

pub fn check_watch_retention(n: u64) -> Result<u64, String> {
    if n == 0 {
        return Err("must be at least 1".to_string());
    }
    Ok(n)
}

/// From 1 to 1,000,000 events.
pub fn check_watch_buffer(n: u64) -> Result<usize, String> {
    match usize::try_from(n) {
        Ok(n @ 1..=1_000_000) => Ok(n),
        _ => Err(format!("{n} is out of range; accepted: 1 to 1000000")),
    }
}

/// From 1 to 100,000 connections.
pub fn check_watch_max_connections(n: u64) -> Result<usize, String> {
    match usize::try_from(n) {
        Ok(n @ 1..=100_000) => Ok(n),
        _ => Err(format!("{n} is out of range; accepted: 1 to 100000")),
    }
}

/// A duration such as `10s` or `1m`, from `min` to `max`.
fn duration_within(text: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let d: HumanDuration = text.parse()?;
    if d.0 < min || d.0 > max {
        return Err(format!(
            "{text} is out of range; accepted: {} to {}",
            HumanDuration(min),
            HumanDuration(max)
        ));
    }
    Ok(d.0)
}

/// From 1 s to 30 d.
pub fn check_watch_retention_age(text: String) -> Result<Duration, String> {
    duration_within(
        &text,
        Duration::from_secs(1),
        Duration::from_secs(30 * 86_400),
    )
}

/// From 100 ms to 1 h.
pub fn check_discovery_throttle(text: String) -> Result<Duration, String> {
    duration_within(&text, Duration::from_millis(100), Duration::from_secs(3600))
}

/// From 1 s to 1 h.
pub fn check_node_timeout(text: String) -> Result<Duration, String> {
    duration_within(&text, Duration::from_secs(1), Duration::from_secs(3600))
}

/// From 0 s (commit at the instant) to 10 s.
pub fn check_fire_ahead(text: String) -> Result<Duration, String> {
    duration_within(&text, Duration::ZERO, rota_scheduler::MAX_FIRE_AHEAD)
}

/// From 0 s (cancel at once) to 1 h.
pub fn check_shutdown_grace(text: String) -> Result<Duration, String> {
    duration_within(&text, Duration::ZERO, Duration::from_secs(3600))
}

/// From 1 ms to 5 s.
pub fn check_heartbeat_interval(text: String) -> Result<Duration, String> {
    duration_within(&text, Duration::from_millis(1), Duration::from_secs(5))
}

/// From 10 ms to 1 m.
pub fn check_election_timeout(text: String) -> Result<Duration, String> {
    duration_within(&text, Duration::from_millis(10), Duration::from_secs(60))
}

/// The election timeout must leave room for a few heartbeats, or one late
/// heartbeat would depose a healthy leader.
pub fn check_raft_timing(
    heartbeat_interval: Duration,
    election_timeout: Duration,
) -> Result<(), String> {
    let timing = rota_cluster::RaftTiming {
        heartbeat_interval,
        election_timeout,
    };
    timing.validate().map_err(|_| {
        format!(
            "{} is shorter than {} heartbeat intervals of {}; raise election_timeout or lower heartbeat_interval",
            HumanDuration(election_timeout),
            rota_cluster::RaftTiming::MIN_HEARTBEATS_PER_ELECTION,
            HumanDuration(heartbeat_interval),
        )
    })
}

/// Node tags: names and values non-empty, at most 64 characters each.
pub fn check_tags(tags: BTreeMap<String, String>) -> Result<Vec<(String, String)>, String> {
    rota_core::validate::validate_tags(&tags).map_err(|e| {
        if e.field.is_empty() || e.field == "tags" {
            e.message
        } else {
            format!("{}: {}", e.field, e.message)
        }
    })?;
    Ok(tags.into_iter().collect())
}

/// One `--tag KEY=VALUE`.
pub fn check_tag(tag: String) -> Result<(String, String), String> {
    let (key, value) = tag
        .split_once('=')
        .ok_or_else(|| format!("{tag:?} is not KEY=VALUE, e.g. region=eu"))?;
    let pair = (key.trim().to_string(), value.trim().to_string());
    check_tags(BTreeMap::from([pair.clone()]))?;
    Ok(pair)
}

/// `ID=URL`, e.g. `2=http://10.0.0.2:7700`.
pub fn check_peer(peer: String) -> Result<(u64, Url), String> {
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
    let url = check_advertise(url.to_string()).map_err(|m| format!("{peer:?}: {m}"))?;
    Ok((id, url))
}

/// The file's list of peers.
pub fn check_peers(peers: Vec<String>) -> Result<Vec<(u64, Url)>, String> {
    peers.into_iter().map(check_peer).collect()
}

pub fn check_cluster_secret(secret: String) -> Result<String, String> {
    if secret.is_empty() {
        return Err("must not be empty".to_string());
    }
    if !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(
            "must be printable ASCII without spaces (it travels in an HTTP header)".to_string(),
        );
    }
    Ok(secret)
}

pub fn check_admin_token(token: String) -> Result<String, String> {
    if !(16..=256).contains(&token.len()) {
        return Err(format!(
            "is {} characters long; a token has 16-256 (e.g. 32 random bytes in hex)",
            token.len()
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(
            "must be printable ASCII without spaces (it travels in an HTTP header)".to_string(),
        );
    }
    Ok(token)
}

pub fn check_log(filter: String) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(&filter).map_err(|e| {
        format!(
            "{filter:?} is not a log filter ({e}); expected e.g. info or info,rota_scheduler=debug"
        )
    })?;
    Ok(filter)
}

pub fn check_log_format(format: String) -> Result<LogFormat, String> {
    match format.trim() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!(
            "{format:?} is not a log format; expected text or json"
        )),
    }
}
