//! The `kubernetes` provider: the ready pods of a Deployment's current revision,
//! asked of the API server over plain HTTP every `refresh_interval`.
//!
//! One round: GET the Deployment and read its `deployment.kubernetes.io/revision`
//! annotation; list the ReplicaSets matching its selector and keep the one it owns
//! (owner reference kind `Deployment`, same uid) whose revision annotation is the
//! same; take that ReplicaSet's `pod-template-hash` label; list the pods matching
//! the selector plus that hash. The targets are the pods that are `Running`, have
//! a `podIP`, say `Ready=True` and are not being deleted, as `podIP:port`. So
//! during a rollout only the new revision's ready pods are targets, and after a
//! rollback (which gives the old ReplicaSet a new revision number) the old
//! template's pods are again.
//!
//! The whole Deployment is one source, `namespace/deployment`. Any failure (no
//! answer, an error status, JSON of the wrong shape, no ReplicaSet of the
//! revision yet) is an error update naming the URL or object, so the manager
//! keeps the last good targets.

mod api;
mod auth;

use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use rota_core::error::chain;
use rota_core::targets::{KubernetesSpec, Target};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

pub use api::{
    META_NAMESPACE, META_POD_LABEL_PREFIX, META_POD_NAME, META_POD_NODE_NAME, POD_TEMPLATE_HASH,
    REVISION_ANNOTATION,
};
pub use auth::SERVICE_ACCOUNT_DIR;

use crate::error::DiscoveryError;
use crate::{Provider, Update};
use api::{current_replica_set, Deployment, List, Pod, ReplicaSet, Status};
use auth::{connect, Connection, InCluster};

/// How long one API request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Asks the API server for a Deployment's current pods at an interval.
#[derive(Debug, Clone)]
pub struct KubernetesProvider {
    spec: KubernetesSpec,
    http: reqwest::Client,
    refresh: Duration,
    in_cluster: InCluster,
}

impl KubernetesProvider {
    /// The provider of `spec` (checked by [`KubernetesSpec::validate`]); `http` is
    /// the client used when the spec names no CA of its own.
    pub fn new(spec: &KubernetesSpec, http: reqwest::Client) -> Self {
        Self {
            spec: spec.clone(),
            http,
            refresh: spec.refresh_interval.as_duration(),
            in_cluster: InCluster::from_env(),
        }
    }

    /// The same provider asking every `refresh` instead of the spec's interval.
    pub fn with_refresh_interval(mut self, refresh: Duration) -> Self {
        self.refresh = refresh;
        self
    }

    /// The source name of its updates: `namespace/deployment`.
    pub fn source(&self) -> String {
        format!("{}/{}", self.spec.namespace, self.spec.deployment)
    }

    fn problem(&self, problem: String) -> DiscoveryError {
        DiscoveryError::Deployment {
            namespace: self.spec.namespace.clone(),
            deployment: self.spec.deployment.clone(),
            problem,
        }
    }

    /// One round: the targets now.
    async fn poll(&self, connection: &Connection) -> Result<Vec<Target>, DiscoveryError> {
        let token = connection.token.current()?;
        let token = token.as_deref();
        let namespace = &self.spec.namespace;
        let name = &self.spec.deployment;
        let deployment: Deployment = get(
            connection,
            &format!("/apis/apps/v1/namespaces/{namespace}/deployments/{name}"),
            None,
            token,
        )
        .await?;
        let revision = deployment
            .metadata
            .annotations
            .get(REVISION_ANNOTATION)
            .ok_or_else(|| {
                self.problem(format!("it has no {REVISION_ANNOTATION} annotation (yet)"))
            })?;
        let selector = deployment
            .spec
            .selector
            .to_query(&[])
            .map_err(|e| self.problem(e))?;
        if selector.is_empty() {
            return Err(self.problem("its selector is empty".to_string()));
        }
        let replica_sets: List<ReplicaSet> = get(
            connection,
            &format!("/apis/apps/v1/namespaces/{namespace}/replicasets"),
            Some(&selector),
            token,
        )
        .await?;
        let current =
            current_replica_set(&deployment, revision, &replica_sets.items).ok_or_else(|| {
                self.problem(format!(
                    "no ReplicaSet it owns has revision {revision} (yet)"
                ))
            })?;
        let hash = current
            .metadata
            .labels
            .get(POD_TEMPLATE_HASH)
            .ok_or_else(|| {
                self.problem(format!(
                    "its ReplicaSet {} has no {POD_TEMPLATE_HASH} label",
                    current.metadata.name
                ))
            })?;
        let pod_selector = deployment
            .spec
            .selector
            .to_query(&[(POD_TEMPLATE_HASH, hash)])
            .map_err(|e| self.problem(e))?;
        let pods: List<Pod> = get(
            connection,
            &format!("/api/v1/namespaces/{namespace}/pods"),
            Some(&pod_selector),
            token,
        )
        .await?;
        Ok(api::targets(namespace, &pods.items, self.spec.port))
    }
}

/// GET `path` of the API server as JSON of type `T`.
async fn get<T: DeserializeOwned>(
    connection: &Connection,
    path: &str,
    label_selector: Option<&str>,
    token: Option<&str>,
) -> Result<T, DiscoveryError> {
    let joined = format!("{}{path}", connection.base);
    let mut url = reqwest::Url::parse(&joined).map_err(|e| DiscoveryError::BadUrl {
        url: joined.clone(),
        problem: e.to_string(),
    })?;
    if let Some(selector) = label_selector {
        url.query_pairs_mut().append_pair("labelSelector", selector);
    }
    let mut request = connection
        .client
        .get(url.clone())
        .timeout(REQUEST_TIMEOUT)
        .header(reqwest::header::ACCEPT, "application/json");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let request_error = |source: reqwest::Error| DiscoveryError::Request {
        url: url.to_string(),
        source: source.without_url(),
    };
    let response = request.send().await.map_err(request_error)?;
    let status = response.status();
    let body = response.bytes().await.map_err(request_error)?;
    if !status.is_success() {
        let message = serde_json::from_slice::<Status>(&body)
            .ok()
            .map(|s| s.message)
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| excerpt(&body));
        return Err(DiscoveryError::Status {
            url: url.to_string(),
            status: status.to_string(),
            message,
        });
    }
    serde_json::from_slice(&body).map_err(|source| DiscoveryError::ApiJson {
        url: url.to_string(),
        source,
    })
}

/// The start of a body that is not an API `Status`, on one line.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.is_empty() {
        return "(empty body)".to_string();
    }
    match line.char_indices().nth(200) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line,
    }
}

impl Provider for KubernetesProvider {
    fn kind(&self) -> &'static str {
        "kubernetes"
    }

    fn run(
        self: Box<Self>,
        tx: mpsc::Sender<Update>,
        stop: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        async move {
            let source = self.source();
            // Built once it works; until then tried again every round (a
            // kubeconfig or CA file may appear later).
            let mut connection: Option<Connection> = None;
            loop {
                if connection.is_none() {
                    match connect(&self.spec, &self.http, &self.in_cluster) {
                        Ok(c) => connection = Some(c),
                        Err(e) => {
                            let update = Update {
                                source: source.clone(),
                                targets: Err(chain(&e)),
                            };
                            tokio::select! {
                                _ = stop.cancelled() => return,
                                sent = tx.send(update) => if sent.is_err() { return },
                            }
                        }
                    }
                }
                if let Some(c) = &connection {
                    let targets = tokio::select! {
                        _ = stop.cancelled() => return,
                        targets = self.poll(c) => targets.map_err(|e| chain(&e)),
                    };
                    debug!(source = %source, ok = targets.is_ok(), "kubernetes update");
                    let update = Update {
                        source: source.clone(),
                        targets,
                    };
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        sent = tx.send(update) => if sent.is_err() { return },
                    }
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(self.refresh) => {}
                }
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests;
