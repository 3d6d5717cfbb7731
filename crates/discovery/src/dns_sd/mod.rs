//! The `dns` provider: each name of the spec is a source, resolved again every
//! `refresh_interval`.
//!
//! `SRV` answers become `target:port` (the target without its trailing dot); `A`
//! and `AAAA` answers become `ip:port` with the spec's port (`[ip]:port` for IPv6).
//! Every target carries `__meta_dns_name` (the name as the spec gives it), and SRV
//! targets also `__meta_dns_srv_record_target` and `__meta_dns_srv_record_port`.
//!
//! A name that does not exist (NXDOMAIN), or exists without records of the type
//! asked, reports an empty list: DNS has answered, and its answer is that there
//! are no targets (as Prometheus' DNS discovery does; a service scaled to zero
//! often looks like this). Anything else that keeps an answer from coming (a
//! timeout, SERVFAIL, REFUSED, a broken reply) is an error update, so the manager
//! keeps the name's last good targets and shows why.
//!
//! The resolver's cache is emptied before every round, so each refresh asks the
//! name servers again whatever the TTLs say.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::future::{join_all, BoxFuture};
use futures_util::FutureExt;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use rota_core::error::chain;
use rota_core::targets::{normalize, DnsRecord, DnsSpec, Target};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::error::DiscoveryError;
use crate::{Provider, Update};

/// The label naming the DNS name a target was found under.
pub const META_DNS_NAME: &str = "__meta_dns_name";
/// The label of an SRV answer's target (without the trailing dot).
pub const META_SRV_TARGET: &str = "__meta_dns_srv_record_target";
/// The label of an SRV answer's port.
pub const META_SRV_PORT: &str = "__meta_dns_srv_record_port";

/// How long one query waits for an answer before it is tried again.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// How many times a query is sent before the name reports a timeout.
pub const DEFAULT_QUERY_ATTEMPTS: usize = 2;

/// Resolves DNS names at an interval and reports each name's targets.
#[derive(Debug, Clone)]
pub struct DnsProvider {
    names: Vec<String>,
    record: DnsRecord,
    port: u16,
    refresh: Duration,
    nameservers: Vec<SocketAddr>,
    timeout: Duration,
    attempts: usize,
}

impl DnsProvider {
    /// The provider of `spec` (checked by [`DnsSpec::validate`]; a name server that
    /// is not `ip:port` is left out).
    pub fn new(spec: &DnsSpec) -> Self {
        Self {
            names: spec.names.clone(),
            record: spec.record,
            port: spec.port.unwrap_or(0),
            refresh: spec.refresh_interval.as_duration(),
            nameservers: spec
                .nameservers
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect(),
            timeout: DEFAULT_QUERY_TIMEOUT,
            attempts: DEFAULT_QUERY_ATTEMPTS,
        }
    }

    /// The same provider resolving every `refresh` instead of the spec's interval.
    pub fn with_refresh_interval(mut self, refresh: Duration) -> Self {
        self.refresh = refresh;
        self
    }

    /// The same provider waiting `timeout` for each of `attempts` tries of a query.
    pub fn with_query_timeout(mut self, timeout: Duration, attempts: usize) -> Self {
        self.timeout = timeout;
        self.attempts = attempts.max(1);
        self
    }

    fn resolver(&self) -> Result<TokioResolver, DiscoveryError> {
        let mut builder = if self.nameservers.is_empty() {
            TokioResolver::builder_tokio().map_err(|source| DiscoveryError::DnsConfig {
                source: Box::new(source),
            })?
        } else {
            let servers = self
                .nameservers
                .iter()
                .map(|addr| {
                    let mut server = NameServerConfig::udp_and_tcp(addr.ip());
                    for connection in &mut server.connections {
                        connection.port = addr.port();
                    }
                    server
                })
                .collect();
            let mut builder = Resolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            );
            // Name servers given in the spec are the whole truth: no hosts file.
            builder.options_mut().use_hosts_file = ResolveHosts::Never;
            builder
        };
        let options = builder.options_mut();
        options.timeout = self.timeout;
        options.attempts = self.attempts;
        builder.build().map_err(|source| DiscoveryError::DnsConfig {
            source: Box::new(source),
        })
    }

    /// One round: every name's update, in the order of the spec.
    async fn round(&self, resolver: &Result<TokioResolver, DiscoveryError>) -> Vec<Update> {
        let resolver = match resolver {
            Ok(resolver) => resolver,
            Err(e) => {
                let error = chain(e);
                return self
                    .names
                    .iter()
                    .map(|name| Update {
                        source: name.clone(),
                        targets: Err(error.clone()),
                    })
                    .collect();
            }
        };
        resolver.clear_cache();
        let lookups = self.names.iter().map(|name| async move {
            Update {
                source: name.clone(),
                targets: resolve(resolver, name, self.record, self.port)
                    .await
                    .map_err(|e| chain(&e)),
            }
        });
        join_all(lookups).await
    }
}

impl Provider for DnsProvider {
    fn kind(&self) -> &'static str {
        "dns"
    }

    fn run(
        self: Box<Self>,
        tx: mpsc::Sender<Update>,
        stop: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        async move {
            let mut resolver = self.resolver();
            loop {
                if resolver.is_err() {
                    // The system configuration may have been fixed since.
                    resolver = self.resolver();
                }
                let updates = tokio::select! {
                    _ = stop.cancelled() => return,
                    updates = self.round(&resolver) => updates,
                };
                for update in &updates {
                    debug!(source = %update.source, ok = update.targets.is_ok(), "dns update");
                }
                if !crate::send_all(&tx, updates, &stop).await {
                    return;
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

fn record_name(record: DnsRecord) -> &'static str {
    match record {
        DnsRecord::Srv => "SRV",
        DnsRecord::A => "A",
        DnsRecord::Aaaa => "AAAA",
    }
}

/// The targets of `name` now.
async fn resolve(
    resolver: &TokioResolver,
    name: &str,
    record: DnsRecord,
    port: u16,
) -> Result<Vec<Target>, DiscoveryError> {
    let record_type = match record {
        DnsRecord::Srv => RecordType::SRV,
        DnsRecord::A => RecordType::A,
        DnsRecord::Aaaa => RecordType::AAAA,
    };
    let lookup = match resolver.lookup(name, record_type).await {
        Ok(lookup) => lookup,
        // NXDOMAIN, or the name has no records of this type: no targets.
        Err(e) if e.is_no_records_found() => return Ok(Vec::new()),
        Err(source) => {
            return Err(DiscoveryError::Dns {
                record: record_name(record),
                name: name.to_string(),
                source: Box::new(source),
            })
        }
    };
    let mut targets = Vec::new();
    // Answers may also hold the CNAMEs that led here: only the asked type counts.
    for answer in lookup.answers() {
        let mut labels = BTreeMap::from([(META_DNS_NAME.to_string(), name.to_string())]);
        let address = match &answer.data {
            RData::SRV(srv) if record == DnsRecord::Srv => {
                // A target of "." says the service is not offered here (RFC 2782).
                if srv.target.is_root() {
                    continue;
                }
                let host = srv.target.to_ascii();
                let host = host.trim_end_matches('.');
                labels.insert(META_SRV_TARGET.to_string(), host.to_string());
                labels.insert(META_SRV_PORT.to_string(), srv.port.to_string());
                format!("{host}:{}", srv.port)
            }
            RData::A(a) if record == DnsRecord::A => {
                SocketAddr::new(IpAddr::V4(a.0), port).to_string()
            }
            RData::AAAA(aaaa) if record == DnsRecord::Aaaa => {
                SocketAddr::new(IpAddr::V6(aaaa.0), port).to_string()
            }
            _ => continue,
        };
        targets.push(Target { address, labels });
    }
    Ok(normalize(targets))
}

#[cfg(test)]
mod tests;
