//! Why a source's targets could not be found. A provider reports these (as text,
//! with their causes) in the `Err` of an [`crate::Update`]; the manager keeps the
//! source's last good targets meanwhile.

use std::io;

/// A failure to read the targets of one source, named by its cause.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The file could not be read (permissions, a directory, an I/O error).
    #[error("cannot read {path}")]
    Read {
        /// The file as the provider names it.
        path: String,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The directory a glob looks into could not be listed.
    #[error("cannot list {dir}")]
    ListDir {
        /// The directory.
        dir: String,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The file is not a JSON list of groups (syntax, an unknown field, a wrong type).
    #[error("{path} is not a file_sd JSON list of {{\"targets\": [...], \"labels\": {{...}}}}")]
    Json {
        /// The file.
        path: String,
        /// Where and what, as the parser says it.
        #[source]
        source: serde_json::Error,
    },
    /// The file is not a YAML list of groups (syntax, an unknown field, a wrong type).
    #[error("{path} is not a file_sd YAML list of {{targets: [...], labels: {{...}}}}")]
    Yaml {
        /// The file.
        path: String,
        /// Where and what, as the parser says it.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// The file is empty (perhaps being written): `[]` is a file with no targets.
    #[error("{path} is empty; accepted: a list of groups, [] for none")]
    Empty {
        /// The file.
        path: String,
    },
    /// An item of the list is `null`.
    #[error("{path}: item {index} is null (items are counted from 0)")]
    NullItem {
        /// The file.
        path: String,
        /// The item's position, from 0.
        index: usize,
    },
    /// A group lists an empty target address.
    #[error("{path}: item {index}: targets[{target}] is empty; accepted: host:port")]
    EmptyAddress {
        /// The file.
        path: String,
        /// The group's position, from 0.
        index: usize,
        /// The target's position in the group, from 0.
        target: usize,
    },
    /// A group's label name is not a Prometheus label name.
    #[error("{path}: item {index}: label {name:?} is not a label name; accepted: [a-zA-Z_][a-zA-Z0-9_]*")]
    LabelName {
        /// The file.
        path: String,
        /// The group's position, from 0.
        index: usize,
        /// The rejected name.
        name: String,
    },
    /// The file's name ends in neither `.json`, `.yml` nor `.yaml`.
    #[error("{path}: unknown format; accepted: a name ending in .json, .yml or .yaml")]
    UnknownFormat {
        /// The file.
        path: String,
    },
    /// The system's resolver configuration (`/etc/resolv.conf`) could not be read
    /// (give `nameservers` in the spec to do without it).
    #[error("dns: cannot read the system's resolver configuration")]
    DnsConfig {
        /// What the resolver said.
        #[source]
        source: Box<hickory_resolver::net::NetError>,
    },
    /// A DNS name could not be resolved (a timeout, SERVFAIL, REFUSED, ...); a name
    /// that does not exist or has no such records is no error, it has no targets.
    #[error("dns: resolving {record} {name}")]
    Dns {
        /// `SRV`, `A` or `AAAA`.
        record: &'static str,
        /// The name as the spec gives it.
        name: String,
        /// What the resolver said.
        #[source]
        source: Box<hickory_resolver::net::NetError>,
    },
    /// Neither `api_server` nor `kubeconfig` is given and this process does not
    /// run in a Kubernetes pod.
    #[error("kubernetes: not running in a cluster (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set); give api_server or kubeconfig")]
    NotInCluster,
    /// The kubeconfig file could not be read.
    #[error("kubernetes: cannot read kubeconfig {path}")]
    KubeconfigRead {
        /// The file.
        path: String,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The kubeconfig file is not YAML of the kubeconfig shape.
    #[error("kubernetes: kubeconfig {path} is not a kubeconfig")]
    KubeconfigParse {
        /// The file.
        path: String,
        /// Where and what, as the parser says it.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// The kubeconfig names something it does not define, or asks for what is not
    /// supported (client certificates, exec plugins).
    #[error("kubernetes: kubeconfig {path}: {problem}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// What is wrong and what is accepted.
        problem: String,
    },
    /// A token file (or a CA file) could not be read.
    #[error("kubernetes: cannot read {what} {path}")]
    CredentialFile {
        /// `token file` or `CA file`.
        what: &'static str,
        /// The file.
        path: String,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// A token file holds nothing but white space.
    #[error("kubernetes: token file {path} is empty")]
    EmptyToken {
        /// The file.
        path: String,
    },
    /// A CA bundle holds no usable certificate.
    #[error("kubernetes: {origin}: {problem}")]
    CaBundle {
        /// Where the bundle came from (`CA file /x`, `kubeconfig /x: cluster "c"`).
        origin: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The HTTP client for the API server could not be built.
    #[error("kubernetes: cannot build the HTTP client for {server}")]
    HttpClient {
        /// The API server.
        server: String,
        /// What reqwest said.
        #[source]
        source: reqwest::Error,
    },
    /// The API server's URL and a path do not make a URL.
    #[error("kubernetes: {url:?} is not a URL: {problem}")]
    BadUrl {
        /// The URL as joined.
        url: String,
        /// What the parser said.
        problem: String,
    },
    /// The request got no answer (connection refused, TLS, timeout).
    #[error("kubernetes: GET {url}")]
    Request {
        /// The URL asked.
        url: String,
        /// What reqwest said.
        #[source]
        source: reqwest::Error,
    },
    /// The API server answered with an error status.
    #[error("kubernetes: GET {url}: {status}: {message}")]
    Status {
        /// The URL asked.
        url: String,
        /// The HTTP status, with its reason (`403 Forbidden`).
        status: String,
        /// The API's message (its `Status` object's), or the start of the body.
        message: String,
    },
    /// The answer is not the JSON object expected.
    #[error("kubernetes: GET {url}: the answer is not the expected JSON")]
    ApiJson {
        /// The URL asked.
        url: String,
        /// Where and what, as the parser says it.
        #[source]
        source: serde_json::Error,
    },
    /// The Deployment's objects do not lead to a current revision's pods.
    #[error("kubernetes: deployment {namespace}/{deployment}: {problem}")]
    Deployment {
        /// The namespace.
        namespace: String,
        /// The Deployment.
        deployment: String,
        /// What is missing.
        problem: String,
    },
}
