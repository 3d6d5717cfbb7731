//! The fan-out of live events: one `watch` worker per node follows the store's
//! event broadcast and hands each public event to the watchers whose filter
//! matches, through a bounded buffer per watcher.
//!
//! Watchers are indexed so an event only visits the ones that may want it: by exact
//! type (a watcher whose `type` lists only exact types), by type prefix (`execution.*`),
//! or else by key prefix (`prefix=`, the empty prefix for "everything"). A watcher
//! whose buffer is full is closed as a slow consumer (its connection ends with the
//! reason once it has read what was buffered); nobody else waits for it. When the
//! worker itself falls behind the broadcast, or a snapshot replaces the state, it
//! reads what it missed from the persisted event log instead of dropping it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use rota_background::{Runner, WorkerContext, WorkerError};
use rota_core::event::{Event, TypeFilter};
use rota_core::EventKind;
use rota_store::Store;
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, info, warn};

/// Events a watcher may have waiting before it is closed as a slow consumer,
/// unless the server says otherwise.
pub const DEFAULT_WATCH_BUFFER: usize = 4096;
/// Watch connections (SSE and WebSocket together) one node serves at once,
/// unless the server says otherwise; one more is answered 503 `too_many_watchers`.
pub const DEFAULT_MAX_WATCHERS: usize = 1024;
/// Events read from the log per page while the worker recovers.
const RECOVERY_PAGE: usize = 4096;

/// What a watcher asked for.
#[derive(Debug, Clone, Default)]
pub(crate) struct WatchFilter {
    pub types: TypeFilter,
    /// Matches events whose key starts with it.
    pub prefix: String,
}

impl WatchFilter {
    pub fn matches(&self, event: &Event) -> bool {
        event.key.starts_with(&self.prefix) && self.types.matches(&event.event_type)
    }
}

/// Why the hub closed a watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    /// Its buffer was full.
    SlowConsumer,
    /// The events it still needed were dropped from the log before the worker
    /// could read them.
    Compacted,
}

impl Closed {
    pub fn code(self) -> &'static str {
        match self {
            Closed::SlowConsumer => "slow_consumer",
            Closed::Compacted => "compacted",
        }
    }

    pub fn message(self, buffer: usize) -> String {
        match self {
            Closed::SlowConsumer => format!(
                "the watcher fell {buffer} events behind and was closed; \
                 reconnect with Last-Event-ID to resume"
            ),
            Closed::Compacted => "events this watcher still needed were dropped from the \
                                  event log; start again from a newer revision"
                .to_string(),
        }
    }
}

/// A watcher's end of the hub: live events, and why the hub closed it if it did.
pub(crate) struct Subscription {
    pub events: mpsc::Receiver<Arc<Event>>,
    closed: Arc<OnceLock<Closed>>,
    id: u64,
    hub: Weak<WatchHub>,
}

impl Subscription {
    /// Why the hub closed this watcher (`None`: it did not, e.g. the node stops).
    pub fn closed(&self) -> Option<Closed> {
        self.closed.get().copied()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.remove(self.id);
        }
    }
}

struct Watcher {
    filter: WatchFilter,
    tx: mpsc::Sender<Arc<Event>>,
    closed: Arc<OnceLock<Closed>>,
}

/// Which index a watcher is in (see the module doc).
#[derive(Clone, Copy)]
enum Bucket {
    Type,
    TypePrefix,
    KeyPrefix,
}

/// The index entries of a watcher with `filter`.
fn entries(filter: &WatchFilter) -> (Bucket, Vec<String>) {
    let types = &filter.types;
    if types.is_any() {
        (Bucket::KeyPrefix, vec![filter.prefix.clone()])
    } else if types.prefixes().is_empty() {
        (Bucket::Type, types.exact_types().to_vec())
    } else {
        // A mixed list (`kv.put,execution.*`): the exact types are indexed as
        // prefixes too; the full filter is checked before delivery.
        let mut keys = types.prefixes().to_vec();
        keys.extend(types.exact_types().iter().cloned());
        (Bucket::TypePrefix, keys)
    }
}

#[derive(Default)]
struct Registry {
    watchers: HashMap<u64, Watcher>,
    by_type: HashMap<String, Vec<u64>>,
    by_type_prefix: HashMap<String, Vec<u64>>,
    by_key_prefix: HashMap<String, Vec<u64>>,
}

impl Registry {
    fn bucket(&mut self, bucket: Bucket) -> &mut HashMap<String, Vec<u64>> {
        match bucket {
            Bucket::Type => &mut self.by_type,
            Bucket::TypePrefix => &mut self.by_type_prefix,
            Bucket::KeyPrefix => &mut self.by_key_prefix,
        }
    }

    fn insert(&mut self, id: u64, watcher: Watcher) {
        let (bucket, keys) = entries(&watcher.filter);
        let map = self.bucket(bucket);
        for key in keys {
            map.entry(key).or_default().push(id);
        }
        self.watchers.insert(id, watcher);
    }

    fn remove(&mut self, id: u64) -> Option<Watcher> {
        let watcher = self.watchers.remove(&id)?;
        let (bucket, keys) = entries(&watcher.filter);
        let map = self.bucket(bucket);
        for key in keys {
            if let Some(ids) = map.get_mut(&key) {
                ids.retain(|w| *w != id);
                if ids.is_empty() {
                    map.remove(&key);
                }
            }
        }
        Some(watcher)
    }

    /// The watchers that may want `event` (each once), before their full filter.
    fn candidates(&self, event: &Event) -> Vec<u64> {
        let mut ids: Vec<u64> = Vec::new();
        if let Some(found) = self.by_type.get(&event.event_type) {
            ids.extend(found);
        }
        if !self.by_type_prefix.is_empty() {
            for (end, _) in event
                .event_type
                .char_indices()
                .chain(std::iter::once((event.event_type.len(), ' ')))
            {
                if let Some(found) = self.by_type_prefix.get(&event.event_type[..end]) {
                    ids.extend(found);
                }
            }
        }
        if !self.by_key_prefix.is_empty() {
            for (end, _) in event
                .key
                .char_indices()
                .chain(std::iter::once((event.key.len(), ' ')))
            {
                if let Some(found) = self.by_key_prefix.get(&event.key[..end]) {
                    ids.extend(found);
                }
            }
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// The node's live watchers; [`WatchHub::spawn_worker`] feeds them.
pub struct WatchHub {
    registry: Mutex<Registry>,
    next_id: AtomicU64,
    buffer: usize,
    /// Watch connections open now (each holds a [`WatchPermit`]), and the most.
    connections: AtomicUsize,
    max_connections: usize,
}

/// One open watch connection, counted until it is dropped (the connection ends).
#[derive(Debug)]
pub(crate) struct WatchPermit {
    hub: Arc<WatchHub>,
}

impl Drop for WatchPermit {
    fn drop(&mut self) {
        self.hub.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for WatchHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchHub")
            .field("watchers", &self.watchers())
            .field("buffer", &self.buffer)
            .field("connections", &self.connections())
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

impl WatchHub {
    /// A hub whose watchers may each have `buffer` events waiting, with at most
    /// [`DEFAULT_MAX_WATCHERS`] connections.
    pub fn new(buffer: usize) -> Arc<WatchHub> {
        WatchHub::with_max_connections(buffer, DEFAULT_MAX_WATCHERS)
    }

    /// A hub whose watchers may each have `buffer` events waiting, serving at most
    /// `max_connections` watch connections at once.
    pub fn with_max_connections(buffer: usize, max_connections: usize) -> Arc<WatchHub> {
        Arc::new(WatchHub {
            registry: Mutex::default(),
            next_id: AtomicU64::new(1),
            buffer: buffer.max(1),
            connections: AtomicUsize::new(0),
            max_connections,
        })
    }

    /// Counts one more watch connection, or refuses it when `max_connections` are
    /// open (the caller answers 503 naming the limit).
    pub(crate) fn admit(self: &Arc<Self>) -> Result<WatchPermit, crate::ApiError> {
        self.connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max_connections).then_some(open + 1)
            })
            .map_err(|_| crate::ApiError::TooManyWatchers {
                limit: self.max_connections,
            })?;
        Ok(WatchPermit { hub: self.clone() })
    }

    /// Watch connections open now.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// How many events a watcher may have waiting.
    pub fn buffer(&self) -> usize {
        self.buffer
    }

    /// Watchers connected now.
    pub fn watchers(&self) -> usize {
        self.lock().watchers.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        // Every change to the registry completes under the lock; a panic elsewhere
        // cannot leave it half-done.
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a watcher: live events matching `filter` from now on.
    pub(crate) fn subscribe(self: &Arc<Self>, filter: WatchFilter) -> Subscription {
        let (tx, events) = mpsc::channel(self.buffer);
        let closed = Arc::new(OnceLock::new());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(
            id,
            Watcher {
                filter,
                tx,
                closed: closed.clone(),
            },
        );
        Subscription {
            events,
            closed,
            id,
            hub: Arc::downgrade(self),
        }
    }

    fn remove(&self, id: u64) {
        self.lock().remove(id);
    }

    /// Hands `event` to every watcher that matches; closes the ones that cannot
    /// take it.
    fn deliver(&self, event: &Arc<Event>) {
        let mut registry = self.lock();
        let mut dropped = Vec::new();
        for id in registry.candidates(event) {
            let Some(watcher) = registry.watchers.get(&id) else {
                continue;
            };
            if !watcher.filter.matches(event) {
                continue;
            }
            match watcher.tx.try_send(event.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    let _ = watcher.closed.set(Closed::SlowConsumer);
                    info!(
                        watcher = id,
                        revision = event.revision,
                        "slow watcher closed"
                    );
                    dropped.push(id);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => dropped.push(id),
            }
        }
        for id in dropped {
            registry.remove(id);
        }
    }

    /// Closes every watcher with `reason` (`None`: the node stops).
    fn close_all(&self, reason: Option<Closed>) {
        let mut registry = self.lock();
        for watcher in registry.watchers.values() {
            if let Some(reason) = reason {
                let _ = watcher.closed.set(reason);
            }
        }
        *registry = Registry::default();
    }

    /// Starts the `watch` worker on `runner`: it follows `store`'s events until the
    /// runner stops, then closes every watcher.
    pub fn spawn_worker(self: &Arc<Self>, store: Arc<Store>, runner: &Runner) {
        let hub = self.clone();
        let events = store.subscribe();
        runner.spawn("watch", move |ctx| async move {
            let result = hub.follow(&store, events, &ctx).await;
            hub.close_all(None);
            result
        });
    }

    async fn follow(
        &self,
        store: &Arc<Store>,
        mut events: broadcast::Receiver<Arc<rota_core::StoreEvent>>,
        ctx: &WorkerContext,
    ) -> Result<(), WorkerError> {
        ctx.set_detail("following the store's events");
        // The revision of the last event handed out and how many of its events were;
        // after a recovery from the log every event up to `skip_through` was.
        let mut last = (store.last_applied_index(), 0usize);
        let mut skip_through = 0u64;
        loop {
            let received = tokio::select! {
                _ = ctx.stopping() => return Ok(()),
                received = events.recv() => received,
            };
            match received {
                Ok(e) => match &e.kind {
                    EventKind::Published(event) => {
                        if event.revision <= skip_through {
                            continue;
                        }
                        if event.revision == last.0 {
                            last.1 += 1;
                        } else {
                            last = (event.revision, 1);
                        }
                        self.deliver(event);
                    }
                    EventKind::Reset => {
                        info!(
                            revision = e.revision,
                            "snapshot installed: watchers resume from the event log"
                        );
                        skip_through = self.recover(store, &mut last).await?;
                    }
                    _ => {}
                },
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    warn!(
                        missed,
                        "the watch worker fell behind: reading from the event log"
                    );
                    skip_through = self.recover(store, &mut last).await?;
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            }
        }
    }

    /// Hands out every logged event after `last` (the events of `last.0` already
    /// handed out are skipped); answers the revision read through.
    async fn recover(
        &self,
        store: &Arc<Store>,
        last: &mut (u64, usize),
    ) -> Result<u64, WorkerError> {
        let (revision, seen) = *last;
        let mut after = revision.saturating_sub(1);
        let mut skip = seen;
        loop {
            let s = store.clone();
            let compact = s.compact_revision()?;
            if compact > after {
                warn!(
                    compact,
                    after, "events still to hand out were compacted; closing watchers"
                );
                self.close_all(Some(Closed::Compacted));
                *last = (s.last_applied_index(), 0);
                return Ok(s.last_applied_index());
            }
            let page = tokio::task::spawn_blocking(move || {
                s.events_after(after, &|_| true, RECOVERY_PAGE)
            })
            .await??;
            for event in page.events {
                if event.revision == revision && skip > 0 {
                    skip -= 1;
                    continue;
                }
                if event.revision == last.0 {
                    last.1 += 1;
                } else {
                    *last = (event.revision, 1);
                }
                self.deliver(&Arc::new(event));
            }
            after = page.through;
            if page.end {
                debug!(through = after, "watch worker recovered from the event log");
                return Ok(after);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(revision: u64, event_type: &str, key: &str) -> Arc<Event> {
        Arc::new(Event {
            revision,
            seq: 0,
            event_type: event_type.into(),
            key: key.into(),
            at: chrono::DateTime::UNIX_EPOCH,
            data: serde_json::json!({}),
        })
    }

    fn filter(types: &str, prefix: &str) -> WatchFilter {
        WatchFilter {
            types: TypeFilter::parse(types).unwrap(),
            prefix: prefix.into(),
        }
    }

    #[test]
    fn events_reach_only_the_watchers_whose_filter_matches() {
        let hub = WatchHub::new(16);
        let mut all = hub.subscribe(filter("", ""));
        let mut kv = hub.subscribe(filter("kv.put", "app/"));
        let mut execs = hub.subscribe(filter("execution.*,job.created", ""));
        for e in [
            event(1, "kv.put", "app/x"),
            event(2, "kv.put", "other"),
            event(3, "execution.started", "01H"),
            event(4, "job.created", "nightly"),
            event(5, "job.deleted", "nightly"),
        ] {
            hub.deliver(&e);
        }
        let drain = |s: &mut Subscription| {
            let mut out = Vec::new();
            while let Ok(e) = s.events.try_recv() {
                out.push(e.revision);
            }
            out
        };
        assert_eq!(drain(&mut all), vec![1, 2, 3, 4, 5]);
        assert_eq!(drain(&mut kv), vec![1]);
        assert_eq!(drain(&mut execs), vec![3, 4]);
        // The index holds each watcher under its own keys only.
        let registry = hub.lock();
        assert_eq!(registry.candidates(&event(6, "kv.put", "zzz")).len(), 2);
        assert_eq!(registry.candidates(&event(6, "job.paused", "zzz")).len(), 1);
    }

    #[test]
    fn a_full_watcher_is_closed_as_slow_while_the_others_keep_receiving() {
        let hub = WatchHub::new(2);
        let slow = hub.subscribe(filter("", ""));
        let mut reader = hub.subscribe(filter("", ""));
        for revision in 1..=5 {
            hub.deliver(&event(revision, "kv.put", "k"));
            assert_eq!(reader.events.try_recv().unwrap().revision, revision);
        }
        assert_eq!(slow.closed(), Some(Closed::SlowConsumer));
        assert_eq!(reader.closed(), None);
        assert_eq!(hub.watchers(), 1);
        let mut slow = slow;
        // What was buffered is still read, then the channel ends.
        assert_eq!(slow.events.try_recv().unwrap().revision, 1);
        assert_eq!(slow.events.try_recv().unwrap().revision, 2);
        assert!(matches!(
            slow.events.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        drop(reader);
        assert_eq!(hub.watchers(), 0, "a dropped subscription leaves the hub");
    }
}
