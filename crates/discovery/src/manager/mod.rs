//! The manager of one target set: it keeps the last good targets of every source
//! a provider reports, merges them, and passes the merged set on only when it
//! really changed, at most once per throttle window.
//!
//! The first change goes out at once; a change inside the window waits for the
//! window's end and then goes out as the state at that moment (the latest, never
//! an intermediate one, and never lost). A source whose update is an error keeps
//! its last good targets, and its error shows in the set's `error` until it
//! reports targets again.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::Update;
use rota_core::targets::{normalize, Target, TargetSetState};

/// The least time between two states sent for one set (`discovery.throttle`).
pub const DEFAULT_THROTTLE: Duration = Duration::from_secs(5);

/// What a manager has done, for metrics.
#[derive(Debug, Default)]
pub struct ManagerStats {
    updates_received: AtomicU64,
    updates_emitted: AtomicU64,
}

impl ManagerStats {
    /// Updates received from the provider.
    pub fn updates_received(&self) -> u64 {
        self.updates_received.load(Ordering::Relaxed)
    }

    /// States sent on (each one a real change).
    pub fn updates_emitted(&self) -> u64 {
        self.updates_emitted.load(Ordering::Relaxed)
    }
}

/// The last word of one source.
#[derive(Debug, Default)]
struct Source {
    targets: Vec<Target>,
    error: Option<String>,
}

/// Merges one set's updates; see the module documentation.
#[derive(Debug)]
pub struct Manager {
    set: String,
    throttle: Duration,
    stats: Arc<ManagerStats>,
    sources: BTreeMap<String, Source>,
    last_sent: Option<TargetSetState>,
}

impl Manager {
    /// A manager for the set named `set`, sending at most once per `throttle`.
    pub fn new(set: impl Into<String>, throttle: Duration) -> Self {
        Self {
            set: set.into(),
            throttle,
            stats: Arc::new(ManagerStats::default()),
            sources: BTreeMap::new(),
            last_sent: None,
        }
    }

    /// The same manager, knowing the state already committed for the set (by an
    /// earlier leader, say): a state equal to it is not sent again, so a new leader
    /// that starts discovery commits only what differs from what it inherited.
    pub fn with_last_committed(mut self, committed: Option<TargetSetState>) -> Self {
        self.last_sent = committed.map(|state| TargetSetState {
            // What was committed is sorted already; normalizing again makes the
            // comparison independent of how the store kept it.
            targets: normalize(state.targets),
            error: state.error,
        });
        self
    }

    /// Its counters, shared: they keep counting while [`Manager::run`] goes.
    pub fn stats(&self) -> Arc<ManagerStats> {
        self.stats.clone()
    }

    /// Takes one update in.
    fn apply(&mut self, update: Update) {
        self.stats.updates_received.fetch_add(1, Ordering::Relaxed);
        match update.targets {
            // A source with no targets and no error adds nothing: forget it.
            Ok(targets) if targets.is_empty() => {
                self.sources.remove(&update.source);
            }
            Ok(targets) => {
                self.sources.insert(
                    update.source,
                    Source {
                        targets,
                        error: None,
                    },
                );
            }
            Err(error) => {
                self.sources.entry(update.source).or_default().error = Some(error);
            }
        }
    }

    /// The set as the sources make it now.
    fn merged(&self) -> TargetSetState {
        let targets = normalize(
            self.sources
                .values()
                .flat_map(|s| s.targets.iter().cloned())
                .collect(),
        );
        let errors: Vec<&str> = self
            .sources
            .values()
            .filter_map(|s| s.error.as_deref())
            .collect();
        TargetSetState {
            targets,
            error: (!errors.is_empty()).then(|| errors.join("; ")),
        }
    }

    /// Receives updates from `rx` and sends each real change to `out`, until
    /// `stop` fires or `out` is dropped. When every provider has hung up, what is
    /// pending is still sent at the window's end.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Update>,
        out: mpsc::Sender<TargetSetState>,
        stop: CancellationToken,
    ) {
        let mut input_open = true;
        // Changes received and not yet considered for sending.
        let mut pending = false;
        // Nothing may be sent before this instant.
        let mut window_end = Instant::now();
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                update = rx.recv(), if input_open => match update {
                    Some(update) => {
                        self.apply(update);
                        // Take in whatever else is already queued before deciding.
                        while let Ok(update) = rx.try_recv() {
                            self.apply(update);
                        }
                        pending = true;
                    }
                    None => input_open = false,
                },
                _ = tokio::time::sleep_until(window_end), if pending => {}
                _ = out.closed() => return,
            }
            if !pending || Instant::now() < window_end {
                continue;
            }
            pending = false;
            let state = self.merged();
            if self.last_sent.as_ref() == Some(&state) {
                continue;
            }
            debug!(
                set = %self.set,
                targets = state.targets.len(),
                error = state.error.as_deref().unwrap_or(""),
                "target set changed"
            );
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                sent = out.send(state.clone()) => if sent.is_err() { return },
            }
            self.stats.updates_emitted.fetch_add(1, Ordering::Relaxed);
            self.last_sent = Some(state);
            window_end = Instant::now() + self.throttle;
        }
    }
}

#[cfg(test)]
mod tests;
