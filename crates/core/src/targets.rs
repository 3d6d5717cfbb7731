//! Target sets: named, replicated lists of addresses that jobs fan out to.
//!
//! A set is written as its provider's spec (`PUT /v1/targets/{set}`):
//! `{"provider": "static", "groups": [...]}`, `{"provider": "file", ...}`,
//! `{"provider": "dns", ...}` or `{"provider": "kubernetes", ...}`. The leader runs
//! the provider (crate `rota-discovery`) and commits what it found as the set's
//! [`TargetSetState`], so every node answers the same targets.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{glob, validate_name, HumanDuration, Timestamp, ValidationError};

/// One address a job can run against, with its labels. Ordered by address, then
/// labels, which is the order a set's targets are kept in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// `host:port` (or whatever the jobs of the set expect).
    pub address: String,
    /// Labels, substituted as `{{target.labels.NAME}}`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Targets that share labels, as `static` specs and file_sd files write them:
/// `{"targets": ["host:port"], "labels": {}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// The addresses.
    pub targets: Vec<String>,
    /// Labels every target of the group gets.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Where a group is wrong, for the caller to place in its own error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupProblem {
    /// `targets[i]` is empty.
    EmptyAddress(usize),
    /// A label name that is not `[a-zA-Z_][a-zA-Z0-9_]*`.
    LabelName(String),
}

impl Group {
    /// The first thing wrong with this group, if any.
    pub fn problem(&self) -> Option<GroupProblem> {
        if let Some(i) = self.targets.iter().position(|t| t.trim().is_empty()) {
            return Some(GroupProblem::EmptyAddress(i));
        }
        self.labels
            .keys()
            .find(|name| !is_label_name(name))
            .map(|name| GroupProblem::LabelName(name.clone()))
    }

    /// The group's targets, each with the group's labels plus `extra`.
    pub fn expand(&self, extra: &[(&str, &str)]) -> Vec<Target> {
        let mut labels = self.labels.clone();
        for (k, v) in extra {
            labels.insert((*k).to_string(), (*v).to_string());
        }
        self.targets
            .iter()
            .map(|address| Target {
                address: address.clone(),
                labels: labels.clone(),
            })
            .collect()
    }
}

/// Whether `name` is a Prometheus label name, `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `targets` sorted and without duplicates (same address and labels).
pub fn normalize(mut targets: Vec<Target>) -> Vec<Target> {
    targets.sort();
    targets.dedup();
    targets
}

/// How often a `file` provider re-reads its files even when they look unchanged.
pub const DEFAULT_FILE_REFRESH: HumanDuration = HumanDuration::from_secs(300);
/// How often a `dns` provider asks again.
pub const DEFAULT_DNS_REFRESH: HumanDuration = HumanDuration::from_secs(30);
/// How often a `kubernetes` provider asks the API server again.
pub const DEFAULT_KUBERNETES_REFRESH: HumanDuration = HumanDuration::from_secs(10);

/// A target set's provider, selected by `"provider"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "provider", rename_all = "snake_case")]
pub enum ProviderSpec {
    /// Targets listed in the spec itself.
    Static(StaticSpec),
    /// Prometheus file_sd: JSON or YAML files of groups.
    File(FileSpec),
    /// DNS names resolved at an interval.
    Dns(DnsSpec),
    /// The pods of a Deployment's current revision.
    Kubernetes(KubernetesSpec),
}

/// `{"provider": "static", "groups": [{"targets": ["h:p"], "labels": {}}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticSpec {
    /// The groups; an empty list is a set with no targets.
    pub groups: Vec<Group>,
}

/// `{"provider": "file", "files": ["sd/*.json"], "refresh_interval": "5m"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// File paths (relative to the server's working directory, or absolute); the
    /// last component may be a glob (`*`, `?`, `[...]`). Names end in `.json`,
    /// `.yml` or `.yaml`, which says how the file is read.
    pub files: Vec<String>,
    /// How often every file is re-read even when it looks unchanged. Default `5m`.
    #[serde(default = "default_file_refresh")]
    pub refresh_interval: HumanDuration,
}

/// The DNS record a `dns` provider asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DnsRecord {
    /// Service records: each answer's target and port.
    #[serde(rename = "SRV")]
    Srv,
    /// IPv4 addresses, with the spec's `port`.
    A,
    /// IPv6 addresses, with the spec's `port`.
    #[serde(rename = "AAAA")]
    Aaaa,
}

/// `{"provider": "dns", "names": ["_http._tcp.svc"], "record": "SRV", "port": 80}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSpec {
    /// The names to resolve; each is a source of its own.
    pub names: Vec<String>,
    /// `SRV` (default), `A` or `AAAA`.
    #[serde(default = "default_dns_record")]
    pub record: DnsRecord,
    /// The port of `A`/`AAAA` targets (required for them; `SRV` answers carry theirs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// How often the names are resolved again. Default `30s`.
    #[serde(default = "default_dns_refresh")]
    pub refresh_interval: HumanDuration,
    /// Name servers (`ip:port`) to ask instead of the system's `/etc/resolv.conf`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
}

/// `{"provider": "kubernetes", "namespace": "gw", "deployment": "api-gateway", "port": 8080}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSpec {
    /// The Deployment's namespace.
    pub namespace: String,
    /// The Deployment whose current revision's ready pods are the targets.
    pub deployment: String,
    /// The port every target address gets (`podIP:port`).
    pub port: u16,
    /// The API server's URL; with `token`/`token_file` it is used as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_server: Option<String>,
    /// A bearer token for `api_server`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// A file holding the bearer token (re-read on every refresh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    /// The CA bundle (PEM) that signs the API server's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// A kubeconfig file (its current context). Neither this nor `api_server`:
    /// the in-cluster service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<String>,
    /// How often the API server is asked again. Default `10s`.
    #[serde(default = "default_kubernetes_refresh")]
    pub refresh_interval: HumanDuration,
}

fn default_file_refresh() -> HumanDuration {
    DEFAULT_FILE_REFRESH
}
fn default_dns_refresh() -> HumanDuration {
    DEFAULT_DNS_REFRESH
}
fn default_kubernetes_refresh() -> HumanDuration {
    DEFAULT_KUBERNETES_REFRESH
}
fn default_dns_record() -> DnsRecord {
    DnsRecord::Srv
}

impl ProviderSpec {
    /// The provider's kind as written in `"provider"`.
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderSpec::Static(_) => "static",
            ProviderSpec::File(_) => "file",
            ProviderSpec::Dns(_) => "dns",
            ProviderSpec::Kubernetes(_) => "kubernetes",
        }
    }

    /// The first thing wrong with the spec, naming the field (`files[0]: ...`).
    pub fn validate(&self) -> Result<(), ValidationError> {
        match self {
            ProviderSpec::Static(spec) => spec.validate(),
            ProviderSpec::File(spec) => spec.validate(),
            ProviderSpec::Dns(spec) => spec.validate(),
            ProviderSpec::Kubernetes(spec) => spec.validate(),
        }
    }
}

impl StaticSpec {
    /// The first thing wrong with the groups, naming the field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        for (i, group) in self.groups.iter().enumerate() {
            match group.problem() {
                None => {}
                Some(GroupProblem::EmptyAddress(t)) => {
                    return Err(ValidationError::new(
                        format!("groups[{i}].targets[{t}]"),
                        "empty address; accepted: host:port",
                    ))
                }
                Some(GroupProblem::LabelName(name)) => {
                    return Err(ValidationError::new(
                        format!("groups[{i}].labels"),
                        format!("{name:?} is not a label name; accepted: [a-zA-Z_][a-zA-Z0-9_]*"),
                    ))
                }
            }
        }
        Ok(())
    }
}

fn check_interval(interval: HumanDuration) -> Result<(), ValidationError> {
    if interval.as_duration() < Duration::from_secs(1) {
        return Err(ValidationError::new(
            "refresh_interval",
            format!("{interval} is too short; accepted: 1s or more"),
        ));
    }
    Ok(())
}

impl FileSpec {
    /// The first thing wrong with the files or the interval, naming the field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.files.is_empty() {
            return Err(ValidationError::new(
                "files",
                "at least one file path (or glob) is needed",
            ));
        }
        for (i, file) in self.files.iter().enumerate() {
            check_file(file)
                .map_err(|message| ValidationError::new(format!("files[{i}]"), message))?;
        }
        check_interval(self.refresh_interval)
    }
}

fn check_file(file: &str) -> Result<(), String> {
    if file.trim().is_empty() {
        return Err("empty path".to_string());
    }
    let path = Path::new(file);
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Err(format!("{file:?} does not end in a file name"));
    };
    if let Some(dir) = path.parent() {
        if glob::has_glob(&dir.to_string_lossy()) {
            return Err(format!(
                "{file:?}: glob only in the last path component (e.g. sd/*.json)"
            ));
        }
    }
    glob::check(name)?;
    if ![".json", ".yml", ".yaml"]
        .iter()
        .any(|ext| name.ends_with(ext))
    {
        return Err(format!(
            "{file:?}: the file name must end in .json, .yml or .yaml (it says how the file is read)"
        ));
    }
    Ok(())
}

impl DnsSpec {
    /// The first thing wrong with the names, port or interval, naming the field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.names.is_empty() {
            return Err(ValidationError::new("names", "at least one name is needed"));
        }
        for (i, name) in self.names.iter().enumerate() {
            let ok = !name.is_empty()
                && name.len() <= 253
                && name.trim_end_matches('.').split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                });
            if !ok {
                return Err(ValidationError::new(
                    format!("names[{i}]"),
                    format!("{name:?} is not a DNS name; accepted: labels of letters, digits, '-' and '_' joined by '.'"),
                ));
            }
        }
        match (self.record, self.port) {
            (DnsRecord::A | DnsRecord::Aaaa, None) => {
                return Err(ValidationError::new(
                    "port",
                    "required for A and AAAA records (SRV answers carry their own port)",
                ))
            }
            (_, Some(0)) => {
                return Err(ValidationError::new(
                    "port",
                    "0 is not a port; accepted: 1-65535",
                ))
            }
            _ => {}
        }
        for (i, server) in self.nameservers.iter().enumerate() {
            if server.parse::<std::net::SocketAddr>().is_err() {
                return Err(ValidationError::new(
                    format!("nameservers[{i}]"),
                    format!("{server:?} is not an address; accepted: ip:port (e.g. 10.0.0.2:53)"),
                ));
            }
        }
        check_interval(self.refresh_interval)
    }
}

impl KubernetesSpec {
    /// The first thing wrong with the spec, naming the field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        for (field, value) in [
            ("namespace", &self.namespace),
            ("deployment", &self.deployment),
        ] {
            let ok = !value.is_empty()
                && value.len() <= 253
                && value.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                })
                && value.as_bytes()[0].is_ascii_alphanumeric();
            if !ok {
                return Err(ValidationError::new(
                    field,
                    format!("{value:?} is not a Kubernetes name; accepted: lower-case letters, digits, '-' and '.'"),
                ));
            }
        }
        if self.port == 0 {
            return Err(ValidationError::new(
                "port",
                "0 is not a port; accepted: 1-65535",
            ));
        }
        if let Some(url) = &self.api_server {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ValidationError::new(
                    "api_server",
                    format!("{url:?} is not a URL; accepted: http:// or https://"),
                ));
            }
            if self.kubeconfig.is_some() {
                return Err(ValidationError::new(
                    "kubeconfig",
                    "give either api_server (with token or token_file) or kubeconfig, not both",
                ));
            }
        }
        if self.token.is_some() && self.token_file.is_some() {
            return Err(ValidationError::new(
                "token_file",
                "give either token or token_file, not both",
            ));
        }
        if self.api_server.is_none() && (self.token.is_some() || self.token_file.is_some()) {
            return Err(ValidationError::new(
                "api_server",
                "required when token or token_file is given",
            ));
        }
        check_interval(self.refresh_interval)
    }
}

/// What `PUT /v1/targets/{set}` takes: the name and the provider spec, flattened
/// (`{"name": "gw", "provider": "static", "groups": [...]}`; the name may also
/// come from the path).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSetSpec {
    /// `[a-z0-9][a-z0-9_-]{0,62}`; unique among target sets.
    pub name: String,
    /// Where the targets come from.
    #[serde(flatten)]
    pub provider: ProviderSpec,
}

/// Reads a target set document (`{"name", "provider", ...}`), naming the field of
/// the first type error, and checks it.
pub fn parse_target_set_value(value: &serde_json::Value) -> Result<TargetSetSpec, ValidationError> {
    if !value.is_object() {
        return Err(ValidationError::new(
            "",
            "a target set is an object with name and provider, e.g. {\"provider\": \"static\", \"groups\": [...]}",
        ));
    }
    // Read field by field rather than through serde's tagged, flattened enum,
    // which buffers the document and loses the path of an error inside it.
    let mut rest = value.as_object().cloned().unwrap_or_default();
    let name = match rest.remove("name") {
        Some(serde_json::Value::String(name)) => name,
        Some(_) => return Err(ValidationError::new("name", "must be a string")),
        None => return Err(ValidationError::new("name", "missing field `name`")),
    };
    let kind = match rest.remove("provider") {
        Some(serde_json::Value::String(kind)) => kind,
        Some(_) | None => {
            return Err(ValidationError::new(
                "provider",
                "missing or not a string; accepted: static, file, dns, kubernetes",
            ))
        }
    };
    let rest = serde_json::Value::Object(rest);
    let provider = match kind.as_str() {
        "static" => ProviderSpec::Static(crate::validate::deserialize_at(&rest)?),
        "file" => ProviderSpec::File(crate::validate::deserialize_at(&rest)?),
        "dns" => ProviderSpec::Dns(crate::validate::deserialize_at(&rest)?),
        "kubernetes" => ProviderSpec::Kubernetes(crate::validate::deserialize_at(&rest)?),
        other => {
            return Err(ValidationError::new(
                "provider",
                format!("{other:?} is not a provider; accepted: static, file, dns, kubernetes"),
            ))
        }
    };
    let spec = TargetSetSpec { name, provider };
    spec.validate()?;
    Ok(spec)
}

impl TargetSetSpec {
    /// The first thing wrong, naming the field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_name("name", &self.name)?;
        self.provider.validate()
    }
}

/// What discovery last found for a set: what the leader commits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSetState {
    /// Every source's last good targets, sorted, without duplicates.
    pub targets: Vec<Target>,
    /// Why some source failed now (its last good targets are kept), if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A target set as stored and served: its spec, and what discovery found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSet {
    /// The spec as last put.
    #[serde(flatten)]
    pub spec: TargetSetSpec,
    /// The log index of the last `PUT` of the spec: discovery results for an
    /// older spec are refused.
    pub generation: u64,
    /// The targets found, sorted.
    pub targets: Vec<Target>,
    /// When discovery last committed a change (`null` until it reported once).
    pub refreshed_at: Option<Timestamp>,
    /// Why a source of the set fails now (the last good targets are kept).
    pub error: Option<String>,
}

impl TargetSet {
    /// The state discovery last committed.
    pub fn state(&self) -> TargetSetState {
        TargetSetState {
            targets: self.targets.clone(),
            error: self.error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<ProviderSpec, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    fn invalid(json: &str) -> String {
        parse(json).unwrap().validate().unwrap_err().to_string()
    }

    #[test]
    fn reads_every_provider_with_defaults() {
        let spec = parse(r#"{"provider": "file", "files": ["sd/*.json"]}"#).unwrap();
        assert_eq!(
            spec,
            ProviderSpec::File(FileSpec {
                files: vec!["sd/*.json".into()],
                refresh_interval: HumanDuration::from_secs(300),
            })
        );
        assert!(spec.validate().is_ok());
        let spec = parse(r#"{"provider": "dns", "names": ["_http._tcp.gw.local"]}"#).unwrap();
        let ProviderSpec::Dns(dns) = &spec else {
            panic!("{spec:?}")
        };
        assert_eq!(dns.record, DnsRecord::Srv);
        assert_eq!(dns.refresh_interval, HumanDuration::from_secs(30));
        assert!(spec.validate().is_ok());
        let spec = parse(
            r#"{"provider": "kubernetes", "namespace": "gw", "deployment": "api-gateway", "port": 8080}"#,
        )
        .unwrap();
        assert_eq!(spec.kind(), "kubernetes");
        assert!(spec.validate().is_ok());
        let set: TargetSetSpec = serde_json::from_str(
            r#"{"name": "gw", "provider": "static", "groups": [{"targets": ["a:1"], "labels": {"env": "x"}}]}"#,
        )
        .unwrap();
        assert!(set.validate().is_ok());
        let back: TargetSetSpec =
            serde_json::from_str(&serde_json::to_string(&set).unwrap()).unwrap();
        assert_eq!(back, set);
    }

    #[test]
    fn unknown_fields_and_providers_are_rejected() {
        assert!(
            parse(r#"{"provider": "file", "files": ["a.json"], "fils": []}"#)
                .unwrap_err()
                .contains("unknown field `fils`")
        );
        assert!(
            parse(r#"{"provider": "static", "groups": [{"targets": [], "label": {}}]}"#)
                .unwrap_err()
                .contains("unknown field `label`")
        );
        assert!(parse(r#"{"provider": "ftp"}"#)
            .unwrap_err()
            .contains("unknown variant"));
        assert!(
            parse(r#"{"provider": "dns", "names": ["a"], "record": "MX"}"#)
                .unwrap_err()
                .contains("unknown variant `MX`")
        );
    }

    #[test]
    fn validation_names_the_field() {
        for (json, expected) in [
            (
                r#"{"provider": "file", "files": []}"#,
                "files: at least one",
            ),
            (
                r#"{"provider": "file", "files": ["sd/*/a.json"]}"#,
                "files[0]: \"sd/*/a.json\": glob only in the last path component",
            ),
            (
                r#"{"provider": "file", "files": ["sd/[ab.json"]}"#,
                "files[0]: unclosed [",
            ),
            (
                r#"{"provider": "file", "files": ["sd/*.txt"]}"#,
                "files[0]: \"sd/*.txt\": the file name must end in .json, .yml or .yaml",
            ),
            (
                r#"{"provider": "file", "files": ["a.yml"], "refresh_interval": "500ms"}"#,
                "refresh_interval: 500ms is too short",
            ),
            (
                r#"{"provider": "static", "groups": [{"targets": ["a:1", ""]}]}"#,
                "groups[0].targets[1]: empty address",
            ),
            (
                r#"{"provider": "static", "groups": [{"targets": [], "labels": {"a-b": "x"}}]}"#,
                "groups[0].labels: \"a-b\" is not a label name",
            ),
            (r#"{"provider": "dns", "names": []}"#, "names: at least one"),
            (
                r#"{"provider": "dns", "names": ["a b"]}"#,
                "names[0]: \"a b\" is not a DNS name",
            ),
            (
                r#"{"provider": "dns", "names": ["gw"], "record": "A"}"#,
                "port: required for A and AAAA",
            ),
            (
                r#"{"provider": "dns", "names": ["gw"], "nameservers": ["localhost"]}"#,
                "nameservers[0]: \"localhost\" is not an address",
            ),
            (
                r#"{"provider": "kubernetes", "namespace": "GW", "deployment": "d", "port": 1}"#,
                "namespace: \"GW\" is not a Kubernetes name",
            ),
            (
                r#"{"provider": "kubernetes", "namespace": "gw", "deployment": "d", "port": 0}"#,
                "port: 0 is not a port",
            ),
            (
                r#"{"provider": "kubernetes", "namespace": "gw", "deployment": "d", "port": 1, "token": "t"}"#,
                "api_server: required when token",
            ),
            (
                r#"{"provider": "kubernetes", "namespace": "gw", "deployment": "d", "port": 1, "api_server": "k8s:6443"}"#,
                "api_server: \"k8s:6443\" is not a URL",
            ),
        ] {
            let err = invalid(json);
            assert!(err.starts_with(expected), "{json}: {err}");
        }
    }

    #[test]
    fn label_names_and_normalize() {
        for good in ["a", "_x", "job_name", "__meta_filepath", "A9"] {
            assert!(is_label_name(good), "{good}");
        }
        for bad in ["", "9a", "a-b", "a.b", "é"] {
            assert!(!is_label_name(bad), "{bad}");
        }
        let t = |a: &str, l: &str| Target {
            address: a.into(),
            labels: BTreeMap::from([("l".to_string(), l.to_string())]),
        };
        let merged = normalize(vec![
            t("b:1", "x"),
            t("a:1", "x"),
            t("b:1", "x"),
            t("b:1", "y"),
        ]);
        assert_eq!(merged, vec![t("a:1", "x"), t("b:1", "x"), t("b:1", "y")]);
    }
}
