//! The kubernetes provider against a local HTTP server that answers like an API
//! server, from recorded-style objects in `fixtures/` (a steady Deployment, a
//! rollout in progress, a rollback, unhealthy pods, API error bodies). The server
//! filters lists by `labelSelector` as the real one does, so the selector the
//! provider sends decides what it gets.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rota_core::targets::TargetSetState;
use rota_core::HumanDuration;
use tokio::task::JoinHandle;

use super::*;
use crate::Manager;

const WAIT: Duration = Duration::from_secs(10);
const REFRESH: Duration = Duration::from_millis(50);
const DEPLOYMENT_PATH: &str = "/apis/apps/v1/namespaces/gw/deployments/api-gateway";

/// What the fake API server answers.
#[derive(Debug, Clone)]
enum Mode {
    /// The objects of a scenario in `fixtures/`.
    Scenario(&'static str),
    /// This status and body, whatever is asked.
    Fail(StatusCode, &'static str),
}

#[derive(Debug)]
struct Seen {
    path: String,
    authorization: Option<String>,
    label_selector: Option<String>,
}

#[derive(Debug)]
struct ApiState {
    mode: Mode,
    /// When set, a request without `Authorization: Bearer <this>` gets 401.
    token: Option<String>,
    seen: Vec<Seen>,
}

#[derive(Clone)]
struct FakeApi {
    addr: SocketAddr,
    tls: bool,
    state: Arc<Mutex<ApiState>>,
    task: Arc<JoinHandle<()>>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

fn fixture(scenario: &str, kind: &str) -> &'static str {
    match (scenario, kind) {
        ("steady" | "unhealthy", "deployment") => include_str!("fixtures/steady/deployment.json"),
        ("steady" | "unhealthy", "replicasets") => {
            include_str!("fixtures/steady/replicasets.json")
        }
        ("steady", "pods") => include_str!("fixtures/steady/pods.json"),
        ("unhealthy", "pods") => include_str!("fixtures/unhealthy/pods.json"),
        ("rollout", "deployment") => include_str!("fixtures/rollout/deployment.json"),
        ("rollout", "replicasets") => include_str!("fixtures/rollout/replicasets.json"),
        ("rollout", "pods") => include_str!("fixtures/rollout/pods.json"),
        ("rollback", "deployment") => include_str!("fixtures/rollback/deployment.json"),
        ("rollback", "replicasets") => include_str!("fixtures/rollback/replicasets.json"),
        ("rollback", "pods") => include_str!("fixtures/rollback/pods.json"),
        _ => panic!("no fixture {scenario}/{kind}"),
    }
}

const FORBIDDEN: &str = include_str!("fixtures/errors/forbidden.json");
const NOT_FOUND: &str = include_str!("fixtures/errors/not-found.json");

/// The items of a list whose labels match an equality-only `selector`.
fn select(list: &str, selector: &str) -> String {
    let wanted: Vec<(&str, &str)> = selector
        .split(',')
        .map(|term| {
            term.split_once('=')
                .unwrap_or_else(|| panic!("the fake API knows only k=v selectors: {term}"))
        })
        .collect();
    let mut list: serde_json::Value = serde_json::from_str(list).unwrap();
    let items = list["items"].as_array_mut().unwrap();
    items.retain(|item| {
        wanted
            .iter()
            .all(|(k, v)| item["metadata"]["labels"][*k].as_str() == Some(*v))
    });
    list.to_string()
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [("content-type", "application/json")], body).into_response()
}

async fn answer(state: Arc<Mutex<ApiState>>, uri: Uri, headers: HeaderMap) -> Response {
    let url = reqwest::Url::parse(&format!("http://api{uri}")).unwrap();
    let label_selector = url
        .query_pairs()
        .find(|(k, _)| k == "labelSelector")
        .map(|(_, v)| v.into_owned());
    let authorization = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_string());
    let mut state = state.lock().unwrap();
    state.seen.push(Seen {
        path: url.path().to_string(),
        authorization: authorization.clone(),
        label_selector: label_selector.clone(),
    });
    if let Some(token) = &state.token {
        if authorization.as_deref() != Some(&format!("Bearer {token}")) {
            return json(
                StatusCode::UNAUTHORIZED,
                r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#.to_string(),
            );
        }
    }
    let scenario = match &state.mode {
        Mode::Fail(status, body) => return json(*status, body.to_string()),
        Mode::Scenario(scenario) => *scenario,
    };
    let list = |kind| {
        select(
            fixture(scenario, kind),
            label_selector.as_deref().unwrap_or(""),
        )
    };
    match url.path() {
        DEPLOYMENT_PATH => json(StatusCode::OK, fixture(scenario, "deployment").to_string()),
        "/apis/apps/v1/namespaces/gw/replicasets" => json(StatusCode::OK, list("replicasets")),
        "/api/v1/namespaces/gw/pods" => json(StatusCode::OK, list("pods")),
        _ => json(StatusCode::NOT_FOUND, NOT_FOUND.to_string()),
    }
}

/// Accepts TLS connections for the fake API (a failed handshake, from a client
/// that does not trust the certificate, is dropped).
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(stream).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// The test CA, and the server certificate it signed for 127.0.0.1 (test-only
/// keys, valid until 2126).
const CA_PEM: &str = include_str!("fixtures/tls/ca.pem");
const OTHER_CA_PEM: &str = include_str!("fixtures/tls/other-ca.pem");

fn server_tls() -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(include_bytes!("fixtures/tls/server.pem"))
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_slice(include_bytes!("fixtures/tls/server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config))
}

impl FakeApi {
    async fn start(mode: Mode) -> FakeApi {
        FakeApi::start_on(mode, false).await
    }

    /// The fake API over HTTPS, with the certificate the test CA signed.
    async fn start_tls(mode: Mode) -> FakeApi {
        FakeApi::start_on(mode, true).await
    }

    async fn start_on(mode: Mode, tls: bool) -> FakeApi {
        let state = Arc::new(Mutex::new(ApiState {
            mode,
            token: None,
            seen: Vec::new(),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = state.clone();
        let app = axum::Router::new()
            .fallback(move |uri: Uri, headers: HeaderMap| answer(shared.clone(), uri, headers));
        let task = if tls {
            let listener = TlsListener {
                tcp: listener,
                acceptor: server_tls(),
            };
            tokio::spawn(async move {
                axum::serve(listener, app).await.unwrap();
            })
        } else {
            tokio::spawn(async move {
                axum::serve(listener, app).await.unwrap();
            })
        };
        FakeApi {
            addr,
            tls,
            state,
            task: Arc::new(task),
        }
    }

    fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    fn set(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }

    fn require_token(&self, token: &str) {
        self.state.lock().unwrap().token = Some(token.to_string());
    }

    fn take_seen(&self) -> Vec<Seen> {
        std::mem::take(&mut self.state.lock().unwrap().seen)
    }
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

fn spec() -> KubernetesSpec {
    KubernetesSpec {
        namespace: "gw".into(),
        deployment: "api-gateway".into(),
        port: 8080,
        api_server: None,
        token: None,
        token_file: None,
        ca_file: None,
        kubeconfig: None,
        refresh_interval: HumanDuration::from_secs(10),
    }
}

fn spec_for(api: &FakeApi, token: &str) -> KubernetesSpec {
    KubernetesSpec {
        api_server: Some(api.url()),
        token: Some(token.into()),
        ..spec()
    }
}

struct Running {
    rx: mpsc::Receiver<Update>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

fn start(spec: &KubernetesSpec) -> Running {
    let provider = KubernetesProvider::new(spec, http()).with_refresh_interval(REFRESH);
    let (tx, rx) = mpsc::channel(64);
    let stop = CancellationToken::new();
    let task = tokio::spawn(Box::new(provider).run(tx, stop.clone()));
    Running { rx, stop, task }
}

impl Running {
    async fn next(&mut self) -> Result<Vec<Target>, String> {
        let update = tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no update within {WAIT:?}"))
            .expect("the provider ended");
        assert_eq!(update.source, "gw/api-gateway");
        update.targets
    }

    /// The first update that satisfies `want`.
    async fn until(
        &mut self,
        want: impl Fn(&Result<Vec<Target>, String>) -> bool,
    ) -> Result<Vec<Target>, String> {
        tokio::time::timeout(WAIT, async {
            loop {
                let targets = self.next().await;
                if want(&targets) {
                    return targets;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no update as wanted within {WAIT:?}"))
    }

    /// The first targets (not an error) with these addresses.
    async fn until_addresses(&mut self, want: &[&str]) -> Vec<Target> {
        self.until(|t| t.as_ref().is_ok_and(|t| addresses(t) == want))
            .await
            .unwrap()
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}

fn addresses(targets: &[Target]) -> Vec<&str> {
    targets.iter().map(|t| t.address.as_str()).collect()
}

const STEADY: [&str; 3] = ["10.244.1.17:8080", "10.244.2.23:8080", "10.244.3.9:8080"];

#[tokio::test]
async fn steady_state_the_current_revision_s_ready_pods_with_their_labels() {
    let api = FakeApi::start(Mode::Scenario("steady")).await;
    api.require_token("t0ken");
    let mut p = start(&spec_for(&api, "t0ken"));
    let targets = p.next().await.unwrap();
    // Not the billing pod (other selector), nor the pod of the ReplicaSet with the
    // same revision that another Deployment owns.
    assert_eq!(addresses(&targets), STEADY);
    let labels = &targets[0].labels;
    let expected: BTreeMap<String, String> = [
        ("__meta_kubernetes_namespace", "gw"),
        ("__meta_kubernetes_pod_name", "api-gateway-7d4b9c8f6d-x7k2p"),
        ("__meta_kubernetes_pod_node_name", "node-1"),
        ("__meta_kubernetes_pod_label_app", "api-gateway"),
        (
            "__meta_kubernetes_pod_label_app_kubernetes_io_part_of",
            "edge",
        ),
        (
            "__meta_kubernetes_pod_label_pod_template_hash",
            "7d4b9c8f6d",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(labels, &expected);
    p.stop().await;

    let seen = api.take_seen();
    let asked: Vec<(&str, Option<&str>)> = seen
        .iter()
        .take(3)
        .map(|s| (s.path.as_str(), s.label_selector.as_deref()))
        .collect();
    assert_eq!(
        asked,
        [
            (DEPLOYMENT_PATH, None),
            (
                "/apis/apps/v1/namespaces/gw/replicasets",
                Some("app=api-gateway")
            ),
            (
                "/api/v1/namespaces/gw/pods",
                Some("app=api-gateway,pod-template-hash=7d4b9c8f6d")
            ),
        ]
    );
    assert!(seen
        .iter()
        .all(|s| s.authorization.as_deref() == Some("Bearer t0ken")));
}

#[tokio::test]
async fn a_rollout_then_a_rollback_follow_the_deployment_s_revision() {
    let api = FakeApi::start(Mode::Scenario("steady")).await;
    let mut p = start(&spec_for(&api, "t"));
    assert_eq!(addresses(&p.next().await.unwrap()), STEADY);

    // Revision 4 is rolling out: its one ready pod is the only target, though
    // two old pods still serve and a new one is not ready yet.
    api.set(Mode::Scenario("rollout"));
    p.until_addresses(&["10.244.1.41:8080"]).await;

    // Rolled back: the old template's ReplicaSet is now revision 5.
    api.set(Mode::Scenario("rollback"));
    let targets = p
        .until_addresses(&["10.244.1.17:8080", "10.244.2.51:8080"])
        .await;
    assert_eq!(
        targets[1].labels["__meta_kubernetes_pod_label_pod_template_hash"],
        "7d4b9c8f6d"
    );
    p.stop().await;
}

#[tokio::test]
async fn pods_that_are_not_ready_pending_without_ip_or_terminating_are_not_targets() {
    let api = FakeApi::start(Mode::Scenario("unhealthy")).await;
    let mut p = start(&spec_for(&api, "t"));
    assert_eq!(addresses(&p.next().await.unwrap()), ["10.244.1.17:8080"]);
    p.stop().await;
}

#[tokio::test]
async fn api_errors_are_error_updates_and_the_last_good_targets_stay() {
    let api = FakeApi::start(Mode::Scenario("steady")).await;
    let provider =
        KubernetesProvider::new(&spec_for(&api, "t"), http()).with_refresh_interval(REFRESH);
    let (out_tx, mut out) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let task = tokio::spawn(crate::discover(
        Box::new(provider),
        Manager::new("gw", Duration::ZERO),
        out_tx,
        stop.clone(),
    ));
    let state = until(&mut out, |s| addresses(&s.targets) == STEADY).await;
    assert_eq!(state.error, None);

    let get = format!("kubernetes: GET {}{DEPLOYMENT_PATH}: ", api.url());
    for (mode, expected) in [
        (
            Mode::Fail(StatusCode::FORBIDDEN, FORBIDDEN),
            "403 Forbidden: deployments.apps \"api-gateway\" is forbidden: User \"system:serviceaccount:rota:rota\" cannot get resource",
        ),
        (
            Mode::Fail(StatusCode::NOT_FOUND, NOT_FOUND),
            "404 Not Found: deployments.apps \"api-gateway\" not found",
        ),
        (
            Mode::Fail(StatusCode::INTERNAL_SERVER_ERROR, "etcdserver: request timed out\n"),
            "500 Internal Server Error: etcdserver: request timed out",
        ),
        (
            Mode::Fail(StatusCode::OK, r#"{"kind": "Deployment", "metadata": "#),
            "the answer is not the expected JSON: EOF while parsing",
        ),
        (
            Mode::Fail(StatusCode::OK, r#"{"kind": "Status", "items": []}"#),
            "the answer is not the expected JSON: missing field `metadata`",
        ),
    ] {
        api.set(mode);
        let state = until(&mut out, |s| {
            s.error.as_deref().is_some_and(|e| e.contains(expected))
        })
        .await;
        assert_eq!(addresses(&state.targets), STEADY, "the last good targets stay");
        let error = state.error.unwrap();
        assert!(error.starts_with(&get), "{error}");
        assert!(!error.contains('\n'), "one line: {error}");
    }

    api.set(Mode::Scenario("rollout"));
    let state = until(&mut out, |s| s.error.is_none()).await;
    assert_eq!(addresses(&state.targets), ["10.244.1.41:8080"]);
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_server_that_is_not_there_is_an_error_naming_the_url() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let spec = KubernetesSpec {
        api_server: Some(format!("http://{addr}")),
        ..spec()
    };
    let mut p = start(&spec);
    let err = p.next().await.unwrap_err();
    assert!(
        err.starts_with(&format!("kubernetes: GET http://{addr}{DEPLOYMENT_PATH}: ")),
        "{err}"
    );
    assert!(err.to_lowercase().contains("connect"), "{err}");
    p.stop().await;
}

#[tokio::test]
async fn the_token_file_is_read_again_every_refresh() {
    let api = FakeApi::start(Mode::Scenario("steady")).await;
    api.require_token("second");
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "first\n").unwrap();
    let spec = KubernetesSpec {
        api_server: Some(api.url()),
        token_file: Some(token_file.display().to_string()),
        ..spec()
    };
    let mut p = start(&spec);
    let err = p.next().await.unwrap_err();
    assert!(err.ends_with(": 401 Unauthorized: Unauthorized"), "{err}");
    assert_eq!(
        api.take_seen()[0].authorization.as_deref(),
        Some("Bearer first"),
        "trimmed"
    );

    std::fs::write(&token_file, "second").unwrap();
    p.until_addresses(&STEADY).await;

    std::fs::write(&token_file, " \n").unwrap();
    let err = p.until(Result::is_err).await.unwrap_err();
    assert_eq!(
        err,
        format!("kubernetes: token file {} is empty", token_file.display())
    );
    p.stop().await;
}

fn write_kubeconfig(dir: &Path, text: &str) -> String {
    let path = dir.join("config");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn a_kubeconfig_s_current_context_says_where_and_which_token() {
    let api = FakeApi::start(Mode::Scenario("steady")).await;
    api.require_token("kube-t0ken");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lab-token"), "kube-t0ken\n").unwrap();
    let kubeconfig = write_kubeconfig(
        dir.path(),
        &format!(
            r#"apiVersion: v1
kind: Config
preferences: {{}}
current-context: lab
clusters:
- name: prod
  cluster:
    server: https://prod.invalid:6443
    certificate-authority-data: bm90IHVzZWQ=
- name: lab
  cluster:
    server: {server}/
contexts:
- name: prod
  context:
    cluster: prod
    user: admin
    namespace: default
- name: lab
  context:
    cluster: lab
    user: rota
users:
- name: admin
  user:
    client-certificate-data: bm90IHVzZWQ=
    client-key-data: bm90IHVzZWQ=
- name: rota
  user:
    tokenFile: lab-token
"#,
            server = api.url()
        ),
    );
    let spec = KubernetesSpec {
        kubeconfig: Some(kubeconfig),
        ..spec()
    };
    let mut p = start(&spec);
    assert_eq!(addresses(&p.next().await.unwrap()), STEADY);
    p.stop().await;
    assert_eq!(
        api.take_seen()[0].authorization.as_deref(),
        Some("Bearer kube-t0ken"),
        "the token file is relative to the kubeconfig"
    );
}

#[test]
fn kubeconfig_and_credential_mistakes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope").display().to_string();
    let in_cluster = InCluster {
        host: None,
        port: None,
        dir: dir.path().to_path_buf(),
    };
    let connect_with = |kubeconfig: Option<String>, ca_file: Option<String>| {
        let spec = KubernetesSpec {
            api_server: ca_file
                .as_ref()
                .map(|_| "https://k8s.invalid:6443".to_string()),
            ca_file,
            kubeconfig,
            ..spec()
        };
        chain(&connect(&spec, &http(), &in_cluster).unwrap_err())
    };
    let kubeconfig = |text: &str| Some(write_kubeconfig(dir.path(), text));
    let path = dir.path().join("config").display().to_string();
    let cluster = "clusters:\n- name: c\n  cluster:\n    server: https://k8s.invalid:6443\n";
    let context = "contexts:\n- name: x\n  context: {cluster: c, user: u}\n";
    for (config, expected) in [
        (
            format!("current-context: x\n{cluster}{context}users:\n- name: u\n  user:\n    client-certificate: c.pem\n    client-key: k.pem\n"),
            format!("kubernetes: kubeconfig {path}: user \"u\" uses client certificates, which are not supported; accepted: token or tokenFile"),
        ),
        (
            format!("current-context: x\n{cluster}{context}users:\n- name: u\n  user:\n    exec: {{command: aws}}\n"),
            format!("kubernetes: kubeconfig {path}: user \"u\" uses exec credential plugins, which are not supported"),
        ),
        (
            format!("current-context: y\n{cluster}{context}"),
            format!("kubernetes: kubeconfig {path}: current-context \"y\" is not among its contexts"),
        ),
        (
            format!("{cluster}{context}"),
            format!("kubernetes: kubeconfig {path}: no current-context"),
        ),
        (
            format!("current-context: x\n{cluster}{context}"),
            format!("kubernetes: kubeconfig {path}: user \"u\" of context \"x\" is not among its users"),
        ),
        (
            format!("current-context: x\n{context}"),
            format!("kubernetes: kubeconfig {path}: cluster \"c\" of context \"x\" is not among its clusters"),
        ),
        (
            format!("current-context: x\n{cluster}    certificate-authority-data: '%%%'\n{context}"),
            format!("kubernetes: kubeconfig {path}: cluster \"c\": certificate-authority-data is not base64"),
        ),
        (
            format!("current-context: x\n{cluster}    certificate-authority-data: bm90IGEgY2VydA==\n{context}"),
            format!("kubernetes: kubeconfig {path}: cluster \"c\": no certificate in it; accepted: PEM"),
        ),
        (
            format!("current-context: x\n{cluster}    certificate-authority: ca.pem\n{context}"),
            format!("kubernetes: cannot read CA file {}: ", dir.path().join("ca.pem").display()),
        ),
        (
            "- just\n- a list\n".to_string(),
            format!("kubernetes: kubeconfig {path} is not a kubeconfig: "),
        ),
    ] {
        let err = connect_with(kubeconfig(&config), None);
        assert!(err.starts_with(&expected), "{config}\n{err}");
    }
    let err = connect_with(Some(missing.clone()), None);
    assert!(
        err.starts_with(&format!("kubernetes: cannot read kubeconfig {missing}: ")),
        "{err}"
    );
    let err = connect_with(None, Some(missing.clone()));
    assert!(
        err.starts_with(&format!("kubernetes: cannot read CA file {missing}: ")),
        "{err}"
    );
    let err = connect_with(None, None);
    assert!(
        err.starts_with("kubernetes: not running in a cluster"),
        "{err}"
    );
}

#[tokio::test]
async fn over_https_the_ca_file_is_trusted_and_no_other() {
    let api = FakeApi::start_tls(Mode::Scenario("steady")).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, CA_PEM).unwrap();
    let spec = KubernetesSpec {
        ca_file: Some(ca.display().to_string()),
        ..spec_for(&api, "t")
    };
    let mut p = start(&spec);
    assert_eq!(addresses(&p.next().await.unwrap()), STEADY);
    p.stop().await;

    // The same server, trusting a CA that did not sign its certificate.
    std::fs::write(&ca, OTHER_CA_PEM).unwrap();
    let mut p = start(&spec);
    let err = p.next().await.unwrap_err();
    assert!(
        err.starts_with(&format!("kubernetes: GET {}{DEPLOYMENT_PATH}: ", api.url())),
        "{err}"
    );
    assert!(err.contains("certificate"), "{err}");
    p.stop().await;
}

#[tokio::test]
async fn a_kubeconfig_s_certificate_authority_data_is_trusted() {
    use base64::Engine;
    let api = FakeApi::start_tls(Mode::Scenario("steady")).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = base64::engine::general_purpose::STANDARD.encode(CA_PEM);
    let kubeconfig = write_kubeconfig(
        dir.path(),
        &format!(
            "current-context: lab\nclusters:\n- name: lab\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\ncontexts:\n- name: lab\n  context: {{cluster: lab, user: rota}}\nusers:\n- name: rota\n  user: {{token: kube-t0ken}}\n",
            api.url()
        ),
    );
    let spec = KubernetesSpec {
        kubeconfig: Some(kubeconfig),
        ..spec()
    };
    let mut p = start(&spec);
    assert_eq!(addresses(&p.next().await.unwrap()), STEADY);
    p.stop().await;
    assert_eq!(
        api.take_seen()[0].authorization.as_deref(),
        Some("Bearer kube-t0ken")
    );
}

#[tokio::test]
async fn in_cluster_the_service_account_s_token_and_ca_are_used() {
    let api = FakeApi::start_tls(Mode::Scenario("steady")).await;
    api.require_token("sa-t0ken");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), CA_PEM).unwrap();
    std::fs::write(dir.path().join("token"), "sa-t0ken").unwrap();
    let mut provider = KubernetesProvider::new(&spec(), http()).with_refresh_interval(REFRESH);
    provider.in_cluster = InCluster {
        host: Some("127.0.0.1".into()),
        port: Some(api.addr.port().to_string()),
        dir: dir.path().to_path_buf(),
    };
    let (tx, mut rx) = mpsc::channel(4);
    let stop = CancellationToken::new();
    let task = tokio::spawn(Box::new(provider).run(tx, stop.clone()));
    let update = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(addresses(&update.targets.unwrap()), STEADY);
    stop.cancel();
    task.await.unwrap();
}

/// The first state from `out` that satisfies `want`.
async fn until(
    out: &mut mpsc::Receiver<TargetSetState>,
    want: impl Fn(&TargetSetState) -> bool,
) -> TargetSetState {
    tokio::time::timeout(WAIT, async {
        loop {
            let state = out.recv().await.expect("the manager ended");
            if want(&state) {
                return state;
            }
        }
    })
    .await
    .expect("the state within the wait")
}
