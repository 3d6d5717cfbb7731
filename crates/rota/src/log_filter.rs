//! The node's log filter, and the worker that keeps it on the cluster's dynamic
//! `log` setting: a dynamic value (`rota config set log debug`) wins on every
//! node at once; without one, the node's static filter (`rota.toml`, `RUST_LOG`)
//! is in force.

use std::sync::Arc;

use anyhow::Context;
use rota_cluster::Node;
use rota_core::event::types;
use rota_core::EventKind;
use tokio::sync::broadcast::error::RecvError;
use tracing::{info, warn};
use tracing_subscriber::reload;
use tracing_subscriber::{EnvFilter, Registry};

/// Swaps the filter of the running subscriber.
pub type LogReload = reload::Handle<EnvFilter, Registry>;

/// Starts the worker `log-filter`, which sets the filter to the dynamic `log`
/// value whenever it changes, and back to `static_filter` when it is reset.
pub fn spawn(
    node: Arc<Node>,
    static_filter: String,
    reload: LogReload,
    workers: &rota_background::Runner,
) {
    workers.spawn("log-filter", move |ctx| async move {
        let mut events = node.store().subscribe_without_kv();
        let mut in_force = static_filter.clone();
        loop {
            let wanted = match node.store().dynamic_config() {
                Ok(config) => config.log.unwrap_or_else(|| static_filter.clone()),
                Err(err) => {
                    warn!(error = %rota_core::error::chain(&err), "cannot read the dynamic log setting");
                    in_force.clone()
                }
            };
            if wanted != in_force {
                match set(&reload, &wanted) {
                    Ok(()) => {
                        info!(filter = %wanted, "log filter changed");
                        in_force = wanted;
                    }
                    Err(err) => warn!(filter = %wanted, error = %format!("{err:#}"), "log filter not changed"),
                }
            }
            ctx.set_detail(format!("log filter {in_force}"));
            // Until the setting may have changed.
            loop {
                tokio::select! {
                    () = ctx.stopping() => return Ok(()),
                    event = events.recv() => match event {
                        Ok(e) => match &e.kind {
                            EventKind::Published(p)
                                if p.event_type == types::CONFIG_CHANGED && p.key == "log" => break,
                            EventKind::Reset => break,
                            _ => {}
                        },
                        Err(RecvError::Lagged(_)) => break,
                        Err(RecvError::Closed) => return Ok(()),
                    },
                }
            }
        }
    });
}

/// The log filter `filter` says, without the spans exported as traces.
pub fn build(filter: &str) -> anyhow::Result<EnvFilter> {
    Ok(EnvFilter::try_new(filter)
        .with_context(|| format!("log filter {filter:?}"))?
        .add_directive(crate::otlp::not_logged()))
}

fn set(reload: &LogReload, filter: &str) -> anyhow::Result<()> {
    reload
        .reload(build(filter)?)
        .context("the subscriber is gone")
}
