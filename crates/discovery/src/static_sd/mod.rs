//! The `static` provider: the targets written in the spec, reported once under the
//! source `static`.

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{Provider, Update};
use rota_core::targets::{normalize, Group};

/// The source name of a static provider's only update.
pub const SOURCE: &str = "static";

/// Reports its groups' targets once, then waits to be stopped.
#[derive(Debug, Clone)]
pub struct StaticProvider {
    groups: Vec<Group>,
}

impl StaticProvider {
    /// A provider of these groups (checked by [`rota_core::targets::StaticSpec::validate`]).
    pub fn new(groups: Vec<Group>) -> Self {
        Self { groups }
    }
}

impl Provider for StaticProvider {
    fn kind(&self) -> &'static str {
        "static"
    }

    fn run(
        self: Box<Self>,
        tx: mpsc::Sender<Update>,
        stop: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        async move {
            let targets = normalize(self.groups.iter().flat_map(|g| g.expand(&[])).collect());
            let update = Update {
                source: SOURCE.to_string(),
                targets: Ok(targets),
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                sent = tx.send(update) => if sent.is_err() { return },
            }
            // Holding `tx` until stopped tells the manager the set is still discovered.
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tx.closed() => {}
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests;
