//! The node's sinks: one running [`Sink`] writer per sink stored in the cluster,
//! kept in step with the store by the worker `sinks`. Runs on this node send
//! their records through [`SinkRegistry::send`]; when the worker stops (shutdown)
//! every sink flushes what it holds, within [`rota_sink::SHUTDOWN_DEADLINE`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rota_background::Runner;
use rota_cluster::Node;
use rota_core::EventKind;
use rota_sink::{Point, Sink};
use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, info, warn};

use crate::telemetry::Telemetry;

/// How often the written/dropped counters are brought up to date.
const SYNC: Duration = Duration::from_secs(1);

struct Entry {
    revision: u64,
    sink: Sink,
    /// Written and dropped points already counted in the telemetry.
    counted: (u64, u64),
}

/// The sinks this node writes to, by name.
#[derive(Default)]
pub struct SinkRegistry {
    sinks: Mutex<BTreeMap<String, Entry>>,
}

impl std::fmt::Debug for SinkRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.lock().keys()).finish()
    }
}

/// One sink of a registry, as a run sends to it.
#[derive(Debug)]
pub struct NamedSink {
    registry: Arc<SinkRegistry>,
    name: String,
}

impl rota_exec::RecordSink for NamedSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn send(&self, points: Vec<Point>) -> usize {
        match self.registry.send(&self.name, points) {
            Ok(queued) => queued,
            Err(why) => {
                warn!(sink = %self.name, "{why}: records dropped");
                0
            }
        }
    }
}

impl SinkRegistry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        self.sinks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `points` on sink `name` without waiting; `Err` says why nothing
    /// was queued (no such sink).
    pub fn send(&self, name: &str, points: Vec<Point>) -> Result<usize, String> {
        let sinks = self.lock();
        let entry = sinks
            .get(name)
            .ok_or_else(|| format!("sink {name:?} does not exist"))?;
        Ok(entry.sink.send(points))
    }

    /// Starts the writer of `record` unless one runs already (a run may come
    /// before the worker saw the sink), and answers the sink as a run sends to it.
    pub fn start(
        self: &Arc<Self>,
        record: &rota_core::sink::SinkRecord,
    ) -> Arc<dyn rota_exec::RecordSink> {
        self.lock().entry(record.name.clone()).or_insert_with(|| {
            info!(sink = %record.name, kind = record.spec.type_name(), "sink writer started");
            Entry {
                revision: record.revision,
                sink: Sink::start(
                    record.name.clone(),
                    record.spec.clone(),
                    rota_exec::http::shared_client(),
                ),
                counted: (0, 0),
            }
        });
        Arc::new(NamedSink {
            registry: self.clone(),
            name: record.name.clone(),
        })
    }

    /// Sink `name` as a run sends to it, when it is known here.
    pub fn handle(self: &Arc<Self>, name: &str) -> Option<Arc<dyn rota_exec::RecordSink>> {
        self.lock().contains_key(name).then(|| {
            Arc::new(NamedSink {
                registry: self.clone(),
                name: name.to_string(),
            }) as Arc<dyn rota_exec::RecordSink>
        })
    }
}

/// Starts the worker `sinks`: keeps `registry` in step with the stored sinks and
/// flushes them when it stops.
pub fn spawn(
    node: Arc<Node>,
    registry: Arc<SinkRegistry>,
    telemetry: Arc<Telemetry>,
    workers: &Runner,
) {
    workers.spawn("sinks", move |ctx| async move {
        let mut events = node.store().subscribe_without_kv();
        let http = rota_exec::http::shared_client();
        let mut sync = tokio::time::interval(SYNC);
        loop {
            reconcile(&node, &registry, &http);
            count(&registry, &telemetry);
            ctx.set_detail(format!("writing to {} sinks", registry.lock().len()));
            let more = loop {
                tokio::select! {
                    () = ctx.stopping() => break false,
                    event = events.recv() => match event {
                        Ok(e) => match &e.kind {
                            EventKind::Published(p) if p.event_type.starts_with("sink.") => break true,
                            EventKind::Reset => break true,
                            _ => {}
                        },
                        Err(RecvError::Lagged(_)) => break true,
                        Err(RecvError::Closed) => break false,
                    },
                    _ = sync.tick() => count(&registry, &telemetry),
                }
            };
            if !more {
                break;
            }
        }
        let all: Vec<(String, Entry)> = std::mem::take(&mut *registry.lock()).into_iter().collect();
        for (name, entry) in all {
            let stats = entry.sink.shutdown().await;
            telemetry.sink_points(
                &name,
                stats.written.saturating_sub(entry.counted.0),
                stats.dropped.saturating_sub(entry.counted.1),
            );
            debug!(sink = %name, written = stats.written, dropped = stats.dropped, "sink flushed");
        }
        Ok(())
    });
}

/// Starts writers for new and changed sinks; stops those of deleted ones.
fn reconcile(node: &Node, registry: &SinkRegistry, http: &reqwest::Client) {
    let stored = match node.store().sinks() {
        Ok(stored) => stored,
        Err(err) => {
            warn!(error = %rota_core::error::chain(&err), "cannot read the sinks");
            return;
        }
    };
    let mut sinks = registry.lock();
    let gone: Vec<String> = sinks
        .iter()
        .filter(|(name, entry)| {
            !stored
                .iter()
                .any(|s| s.name == **name && s.revision == entry.revision)
        })
        .map(|(name, _)| name.clone())
        .collect();
    for name in gone {
        if let Some(entry) = sinks.remove(&name) {
            // What the old writer holds still goes out, in the background.
            info!(sink = %name, "sink changed or deleted: its writer flushes and stops");
            tokio::spawn(entry.sink.shutdown());
        }
    }
    for record in stored {
        if sinks.contains_key(&record.name) {
            continue;
        }
        let sink = Sink::start(record.name.clone(), record.spec.clone(), http.clone());
        info!(sink = %record.name, kind = record.spec.type_name(), "sink writer started");
        sinks.insert(
            record.name.clone(),
            Entry {
                revision: record.revision,
                sink,
                counted: (0, 0),
            },
        );
    }
}

/// Brings the written/dropped counters of every sink up to date.
fn count(registry: &SinkRegistry, telemetry: &Telemetry) {
    for (name, entry) in registry.lock().iter_mut() {
        let stats = entry.sink.stats();
        telemetry.sink_points(
            name,
            stats.written.saturating_sub(entry.counted.0),
            stats.dropped.saturating_sub(entry.counted.1),
        );
        entry.counted = (stats.written, stats.dropped);
    }
}
