//! Where the API server is and how to talk to it: the spec's `api_server` (with
//! `token` or `token_file`, and `ca_file`), a kubeconfig's current context, or
//! the pod's own service account.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use rota_core::targets::KubernetesSpec;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::error::DiscoveryError;

/// Where a pod finds its service account's token and CA.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The bearer token, as given or as a file re-read on every refresh (service
/// account tokens are rotated in place).
#[derive(Debug, Clone)]
pub enum Token {
    None,
    Static(String),
    File(PathBuf),
}

impl Token {
    /// The token to send now, if any.
    pub fn current(&self) -> Result<Option<String>, DiscoveryError> {
        match self {
            Token::None => Ok(None),
            Token::Static(token) => Ok(Some(token.clone())),
            Token::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| {
                    DiscoveryError::CredentialFile {
                        what: "token file",
                        path: path.display().to_string(),
                        source,
                    }
                })?;
                let token = text.trim();
                if token.is_empty() {
                    return Err(DiscoveryError::EmptyToken {
                        path: path.display().to_string(),
                    });
                }
                Ok(Some(token.to_string()))
            }
        }
    }
}

/// An API server to ask: its URL (without a trailing `/`), a client that trusts
/// its certificate, and the token.
#[derive(Debug, Clone)]
pub struct Connection {
    pub base: String,
    pub client: reqwest::Client,
    pub token: Token,
}

/// What in-cluster configuration the process sees (the environment and the
/// service account directory), so tests can give their own.
#[derive(Debug, Clone)]
pub struct InCluster {
    pub host: Option<String>,
    pub port: Option<String>,
    pub dir: PathBuf,
}

impl InCluster {
    /// What this process sees.
    pub fn from_env() -> Self {
        Self {
            host: std::env::var("KUBERNETES_SERVICE_HOST").ok(),
            port: std::env::var("KUBERNETES_SERVICE_PORT").ok(),
            dir: PathBuf::from(SERVICE_ACCOUNT_DIR),
        }
    }
}

/// The connection `spec` describes; `http` is used when no CA of its own is named.
pub fn connect(
    spec: &KubernetesSpec,
    http: &reqwest::Client,
    in_cluster: &InCluster,
) -> Result<Connection, DiscoveryError> {
    if let Some(server) = &spec.api_server {
        let token = match (&spec.token, &spec.token_file) {
            (Some(token), _) => Token::Static(token.clone()),
            (None, Some(file)) => Token::File(PathBuf::from(file)),
            (None, None) => Token::None,
        };
        let client = match &spec.ca_file {
            Some(file) => {
                let pem = read_ca_file(Path::new(file))?;
                client_with_ca(&pem, &format!("CA file {file}"), server)?
            }
            None => http.clone(),
        };
        return Ok(Connection {
            base: server.trim_end_matches('/').to_string(),
            client,
            token,
        });
    }
    if let Some(path) = &spec.kubeconfig {
        return from_kubeconfig(Path::new(path), http);
    }
    let (Some(host), Some(port)) = (&in_cluster.host, &in_cluster.port) else {
        return Err(DiscoveryError::NotInCluster);
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    let server = format!("https://{host}:{port}");
    let ca = in_cluster.dir.join("ca.crt");
    let pem = read_ca_file(&ca)?;
    let client = client_with_ca(&pem, &format!("CA file {}", ca.display()), &server)?;
    Ok(Connection {
        base: server,
        client,
        token: Token::File(in_cluster.dir.join("token")),
    })
}

fn read_ca_file(path: &Path) -> Result<Vec<u8>, DiscoveryError> {
    std::fs::read(path).map_err(|source| DiscoveryError::CredentialFile {
        what: "CA file",
        path: path.display().to_string(),
        source,
    })
}

/// A client that trusts only the certificates of the PEM bundle `pem` (read from
/// `origin`), with rustls on ring: it needs no process-wide crypto provider.
fn client_with_ca(
    pem: &[u8],
    origin: &str,
    server: &str,
) -> Result<reqwest::Client, DiscoveryError> {
    let bundle_error = |problem: String| DiscoveryError::CaBundle {
        origin: origin.to_string(),
        problem,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| bundle_error(format!("not a PEM bundle: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| bundle_error(format!("a certificate cannot be used: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bundle_error(
            "no certificate in it; accepted: PEM (-----BEGIN CERTIFICATE-----)".to_string(),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bundle_error(format!("no TLS version to use: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .build()
        .map_err(|source| DiscoveryError::HttpClient {
            server: server.to_string(),
            source,
        })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Kubeconfig {
    #[serde(default)]
    current_context: String,
    #[serde(default)]
    contexts: Vec<NamedContext>,
    #[serde(default)]
    clusters: Vec<NamedCluster>,
    #[serde(default)]
    users: Vec<NamedUser>,
}

#[derive(Debug, Deserialize)]
struct NamedContext {
    name: String,
    context: Context,
}

#[derive(Debug, Deserialize)]
struct Context {
    cluster: String,
    #[serde(default)]
    user: String,
}

#[derive(Debug, Deserialize)]
struct NamedCluster {
    name: String,
    cluster: Cluster,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Cluster {
    server: String,
    #[serde(default)]
    certificate_authority: Option<String>,
    #[serde(default)]
    certificate_authority_data: Option<String>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
}

#[derive(Debug, Deserialize)]
struct NamedUser {
    name: String,
    #[serde(default)]
    user: User,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct User {
    #[serde(default)]
    token: Option<String>,
    #[serde(default, rename = "tokenFile")]
    token_file: Option<String>,
    #[serde(default)]
    client_certificate: Option<IgnoredAny>,
    #[serde(default)]
    client_certificate_data: Option<IgnoredAny>,
    #[serde(default)]
    exec: Option<IgnoredAny>,
    #[serde(default)]
    auth_provider: Option<IgnoredAny>,
    #[serde(default)]
    username: Option<IgnoredAny>,
}

/// The connection of the kubeconfig's current context.
fn from_kubeconfig(path: &Path, http: &reqwest::Client) -> Result<Connection, DiscoveryError> {
    let shown = path.display().to_string();
    let problem = |problem: String| DiscoveryError::Kubeconfig {
        path: shown.clone(),
        problem,
    };
    let text = std::fs::read(path).map_err(|source| DiscoveryError::KubeconfigRead {
        path: shown.clone(),
        source,
    })?;
    let config: Kubeconfig =
        serde_yaml_ng::from_slice(&text).map_err(|source| DiscoveryError::KubeconfigParse {
            path: shown.clone(),
            source,
        })?;
    if config.current_context.is_empty() {
        return Err(problem("no current-context".to_string()));
    }
    let context = config
        .contexts
        .iter()
        .find(|c| c.name == config.current_context)
        .ok_or_else(|| {
            problem(format!(
                "current-context {:?} is not among its contexts",
                config.current_context
            ))
        })?;
    let cluster = config
        .clusters
        .iter()
        .find(|c| c.name == context.context.cluster)
        .ok_or_else(|| {
            problem(format!(
                "cluster {:?} of context {:?} is not among its clusters",
                context.context.cluster, context.name
            ))
        })?;
    let server = cluster.cluster.server.trim_end_matches('/').to_string();
    if !(server.starts_with("https://") || server.starts_with("http://")) {
        return Err(problem(format!(
            "server {server:?} of cluster {:?} is not a URL; accepted: https:// or http://",
            cluster.name
        )));
    }
    if cluster.cluster.insecure_skip_tls_verify {
        return Err(problem(format!(
            "cluster {:?}: insecure-skip-tls-verify is not supported; give certificate-authority or certificate-authority-data",
            cluster.name
        )));
    }
    // Relative paths in a kubeconfig are relative to the file itself.
    let dir = path.parent().unwrap_or(Path::new(""));
    let origin = format!("kubeconfig {shown}: cluster {:?}", cluster.name);
    let client = match (
        &cluster.cluster.certificate_authority_data,
        &cluster.cluster.certificate_authority,
    ) {
        (Some(data), _) => {
            let pem = base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|e| {
                    problem(format!(
                        "cluster {:?}: certificate-authority-data is not base64: {e}",
                        cluster.name
                    ))
                })?;
            client_with_ca(&pem, &origin, &server)?
        }
        (None, Some(file)) => {
            let pem = read_ca_file(&dir.join(file))?;
            client_with_ca(&pem, &origin, &server)?
        }
        (None, None) => http.clone(),
    };
    let token = if context.context.user.is_empty() {
        Token::None
    } else {
        let user = config
            .users
            .iter()
            .find(|u| u.name == context.context.user)
            .ok_or_else(|| {
                problem(format!(
                    "user {:?} of context {:?} is not among its users",
                    context.context.user, context.name
                ))
            })?;
        let unsupported = if user.user.client_certificate.is_some()
            || user.user.client_certificate_data.is_some()
        {
            Some("client certificates")
        } else if user.user.exec.is_some() {
            Some("exec credential plugins")
        } else if user.user.auth_provider.is_some() {
            Some("auth-provider plugins")
        } else if user.user.username.is_some() {
            Some("basic auth (username/password)")
        } else {
            None
        };
        match (&user.user.token, &user.user.token_file, unsupported) {
            (Some(token), _, _) => Token::Static(token.clone()),
            (None, Some(file), _) => Token::File(dir.join(file)),
            (None, None, Some(what)) => {
                return Err(problem(format!(
                    "user {:?} uses {what}, which are not supported; accepted: token or tokenFile",
                    user.name
                )))
            }
            (None, None, None) => Token::None,
        }
    };
    Ok(Connection {
        base: server,
        client,
        token,
    })
}
