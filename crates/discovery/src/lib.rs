//! Target discovery: where the targets of a target set come from.
//!
//! A target set names one [`ProviderSpec`] (`static` groups, Prometheus `file_sd`
//! files, DNS names, or the pods of a Kubernetes Deployment). [`build`] checks it
//! and turns it into a [`Provider`], a long-running task that reports [`Update`]s,
//! one per *source* (`static`, one file path, one DNS name, one Deployment). The
//! [`Manager`] of the set keeps the last good targets of every source, merges them
//! (sorted, deduplicated) and sends a [`TargetSetState`] only when the set really
//! changed, at most once per throttle window. [`discover`] runs a provider and its
//! manager together until stopped.
//!
//! Nothing here writes anywhere: the leader commits each state it receives through
//! Raft, so every node answers the same.

pub mod dns_sd;
pub mod error;
pub mod file_sd;
pub mod kubernetes_sd;
pub mod manager;
pub mod static_sd;

use futures_util::future::BoxFuture;
use rota_core::targets::{ProviderSpec, Target, TargetSetState};
use rota_core::ValidationError;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use dns_sd::DnsProvider;
pub use error::DiscoveryError;
pub use file_sd::FileProvider;
pub use kubernetes_sd::KubernetesProvider;
pub use manager::{Manager, ManagerStats, DEFAULT_THROTTLE};
pub use static_sd::StaticProvider;

/// What a provider says about one of its sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// Which part of the provider this is about: `static`, a file path, a DNS
    /// name, `namespace/deployment`.
    pub source: String,
    /// The targets of that source now (an empty list: it has none, e.g. its file
    /// was deleted), or why they could not be read: the manager then keeps the
    /// source's last good targets and shows this error.
    pub targets: Result<Vec<Target>, String>,
}

/// A source of targets, run as one long-lived task per target set.
///
/// `run` reports on `tx` until `stop` fires (or nobody listens any more), then
/// returns. A provider whose sources never change still waits for `stop`, so its
/// channel stays open for as long as the set is discovered.
pub trait Provider: Send {
    /// The provider's kind as specs name it (`static`, `file`, `dns`, `kubernetes`).
    fn kind(&self) -> &'static str;

    /// Reports updates until stopped.
    fn run(
        self: Box<Self>,
        tx: mpsc::Sender<Update>,
        stop: CancellationToken,
    ) -> BoxFuture<'static, ()>;
}

/// Checks `spec` ([`ProviderSpec::validate`]) and makes the provider that runs it.
/// `http` is the client the `kubernetes` provider starts from when the spec names
/// no CA of its own (one with a custom CA is built from the spec).
pub fn build(
    spec: &ProviderSpec,
    http: reqwest::Client,
) -> Result<Box<dyn Provider>, ValidationError> {
    spec.validate()?;
    Ok(match spec {
        ProviderSpec::Static(spec) => Box::new(StaticProvider::new(spec.groups.clone())),
        ProviderSpec::File(spec) => Box::new(FileProvider::new(
            spec.files.clone(),
            spec.refresh_interval.as_duration(),
        )),
        ProviderSpec::Dns(spec) => Box::new(DnsProvider::new(spec)),
        ProviderSpec::Kubernetes(spec) => Box::new(KubernetesProvider::new(spec, http)),
    })
}

/// Sends one round of a provider's updates as a burst: the channel slots are
/// reserved first and then filled without awaiting in between, so the manager
/// (which takes in everything already queued before it decides) sees the round
/// whole rather than its first source alone. Returns `false` when the provider
/// should end (`stop` fired or nobody listens).
pub(crate) async fn send_all(
    tx: &mpsc::Sender<Update>,
    mut updates: Vec<Update>,
    stop: &CancellationToken,
) -> bool {
    while !updates.is_empty() {
        let n = updates.len().min(tx.max_capacity());
        let permits = tokio::select! {
            _ = stop.cancelled() => return false,
            permits = tx.reserve_many(n) => match permits {
                Ok(permits) => permits,
                Err(_) => return false,
            },
        };
        for (permit, update) in permits.zip(updates.drain(..n)) {
            permit.send(update);
        }
    }
    true
}

/// Runs `provider` and `manager` together until `stop` fires, sending every
/// changed state of the set to `out`. Neither is spawned: both end before this
/// returns.
pub async fn discover(
    provider: Box<dyn Provider>,
    manager: Manager,
    out: mpsc::Sender<TargetSetState>,
    stop: CancellationToken,
) {
    let (tx, rx) = mpsc::channel(64);
    tokio::join!(
        provider.run(tx, stop.clone()),
        manager.run(rx, out, stop.clone())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> ProviderSpec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn build_checks_the_spec_then_makes_its_provider() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::new();
        for (json, kind) in [
            (
                r#"{"provider": "static", "groups": [{"targets": ["a:1"]}]}"#,
                "static",
            ),
            (r#"{"provider": "file", "files": ["sd/*.json"]}"#, "file"),
            (
                r#"{"provider": "dns", "names": ["_http._tcp.gw"], "nameservers": ["127.0.0.1:53"]}"#,
                "dns",
            ),
            (
                r#"{"provider": "kubernetes", "namespace": "gw", "deployment": "api", "port": 80}"#,
                "kubernetes",
            ),
        ] {
            let provider = build(&spec(json), http.clone()).unwrap();
            assert_eq!(provider.kind(), kind);
        }
        let err = build(
            &spec(r#"{"provider": "dns", "names": ["gw"], "record": "A"}"#),
            http,
        )
        .err()
        .unwrap();
        assert!(err.to_string().starts_with("port: required"), "{err}");
    }
}
