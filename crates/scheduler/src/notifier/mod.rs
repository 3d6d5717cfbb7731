//! The notifier: the worker (`notifier`) that sends webhooks for `execution.started`
//! and `execution.finished` while its node leads.
//!
//! It reads the persisted event log after the store's replicated notification
//! cursor, so a new leader resumes where the last one stopped: nothing is lost
//! across a leader change or a restart (within the event log's retention). For each
//! event it resolves the targets (the job's `notify` entries and the matching
//! global webhooks), skips those whose outcome is already recorded, and delivers
//! the rest: per receiver (URL) one delivery at a time, in event order, with up to
//! [`MAX_RECEIVERS_IN_FLIGHT`] receivers at once, so a slow or dead receiver holds
//! back only its own queue. Final outcomes are committed in batches
//! (`Command::RecordDeliveries`) together with the cursor, which only passes an
//! event once every delivery of it is recorded. A delivery in flight when the
//! leader changes is sent again by the successor (at-least-once, with the same
//! `Rota-Delivery-Id`).

mod deliver;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rota_background::{Runner, WorkerContext};
use rota_cluster::Node;
use rota_core::event::Event;
use rota_core::notify::{delivery_id, job_target, Delivery, NotifyOn};
use rota_core::{ClientRequest, Command, EventKind, StoreEvent};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};
use ulid::Ulid;

use crate::SchedulerError;
use deliver::{Pending, Sender};

/// Most receivers (distinct URLs) being delivered to at once.
pub const MAX_RECEIVERS_IN_FLIGHT: usize = 16;
/// Deliveries read ahead of the cursor before reading the log pauses.
const MAX_PENDING: usize = 1000;
/// Events of the log looked at per read.
const PAGE: usize = 256;
/// How often outcomes are committed, at most.
const COMMIT_EVERY: Duration = Duration::from_millis(200);
/// A cursor that moved without any delivery is committed at most this often.
const CURSOR_EVERY: Duration = Duration::from_secs(5);
/// Wait after a failed read or commit before trying again.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// Wait after this node's leadership could not be confirmed before asking again.
const CONFIRM_PAUSE: Duration = Duration::from_millis(100);

/// Whether a store event is one that webhooks or a job's `notify` may be sent for.
fn notifies(event: &StoreEvent) -> bool {
    matches!(&event.kind, EventKind::Published(p) if NotifyOn::of_event_type(&p.event_type).is_some())
}

/// Starts the notifier as the worker `notifier` of `workers`; it delivers while
/// `node` leads and stops with that scope.
pub fn spawn(node: Arc<Node>, workers: &Runner) {
    workers.spawn("notifier", move |ctx| async move {
        let sender = Sender::new().map_err(SchedulerError::WebhookClient)?;
        let mut leadership = node.leadership();
        loop {
            ctx.set_detail("following");
            if *leadership.borrow_and_update() {
                let mut notifier = Notifier::new(node.clone(), sender.clone(), &ctx);
                notifier.lead(&mut leadership).await;
            }
            tokio::select! {
                () = ctx.stopping() => return Ok(()),
                changed = leadership.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    });
}

/// What one leadership of the notifier keeps.
struct Notifier<'a> {
    node: Arc<Node>,
    sender: Sender,
    ctx: &'a WorkerContext,
    /// Every event up to this revision has been turned into pending deliveries.
    scanned: u64,
    /// The cursor as last committed.
    committed_cursor: u64,
    /// Unfinished deliveries per event revision.
    open: BTreeMap<u64, usize>,
    /// Queued deliveries per receiver URL, in event order.
    lanes: HashMap<String, VecDeque<Pending>>,
    /// Receivers with a delivery in flight.
    busy: HashSet<String>,
    in_flight: JoinSet<(String, Delivery)>,
    /// Final outcomes not committed yet.
    outcomes: Vec<Delivery>,
    commit: JoinSet<Result<(), (Vec<Delivery>, String)>>,
    last_commit: tokio::time::Instant,
}

impl<'a> Notifier<'a> {
    fn new(node: Arc<Node>, sender: Sender, ctx: &'a WorkerContext) -> Self {
        Notifier {
            node,
            sender,
            ctx,
            scanned: 0,
            committed_cursor: 0,
            open: BTreeMap::new(),
            lanes: HashMap::new(),
            busy: HashSet::new(),
            in_flight: JoinSet::new(),
            outcomes: Vec::new(),
            commit: JoinSet::new(),
            last_commit: tokio::time::Instant::now(),
        }
    }

    fn pending(&self) -> usize {
        self.open.values().sum()
    }

    /// Delivers until leadership ends or the worker stops; deliveries in flight are
    /// dropped (the next leader sends them again).
    async fn lead(&mut self, leadership: &mut watch::Receiver<bool>) {
        let mut events = self.node.store().subscribe_without_kv();
        // Nothing goes out before a quorum confirmed this leadership and the store
        // applied what was committed before it: a node restarting as the leader of
        // its old term would otherwise send again, from its stale cursor, what the
        // leader of the next term already delivered. Then the cursor is read.
        loop {
            let confirmed = tokio::select! {
                () = self.ctx.stopping() => return,
                _ = leadership.changed() => return,
                confirmed = self.node.confirm_leadership() => confirmed,
            };
            let pause = match confirmed.map(|()| self.start_cursor()) {
                Ok(Ok(())) => break,
                Ok(Err(err)) => {
                    warn!(error = %rota_core::error::chain(&err), "notifier cannot read its cursor");
                    RETRY_PAUSE
                }
                Err(err) => {
                    debug!(error = %rota_core::error::chain(&err), "notifier waits for its leadership to be confirmed");
                    CONFIRM_PAUSE
                }
            };
            tokio::select! {
                () = self.ctx.stopping() => return,
                _ = leadership.changed() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
        info!(cursor = self.scanned, "notifier leading");
        let mut tick = tokio::time::interval(COMMIT_EVERY);
        let mut read_more = true;
        loop {
            if read_more {
                read_more = false;
                if let Err(err) = self.read_log() {
                    warn!(error = %rota_core::error::chain(&err), "notifier cannot read the event log");
                }
            }
            self.start_deliveries();
            self.ctx.set_detail(format!(
                "leading: cursor {}, read through {}, {} pending",
                self.committed_cursor,
                self.scanned,
                self.pending()
            ));
            tokio::select! {
                () = self.ctx.stopping() => return,
                changed = leadership.changed() => {
                    if changed.is_err() || !*leadership.borrow_and_update() {
                        info!("notifier stops: this node no longer leads");
                        return;
                    }
                }
                event = events.recv() => {
                    match event {
                        Ok(e) => read_more |= notifies(&e),
                        Err(RecvError::Lagged(_)) => read_more = true,
                        Err(RecvError::Closed) => return,
                    }
                    // The rest of a burst, without a wake-up each: the log is read
                    // only when one of them can be notified (most are KV writes).
                    loop {
                        match events.try_recv() {
                            Ok(e) => read_more |= notifies(&e),
                            Err(TryRecvError::Lagged(_)) => read_more = true,
                            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                        }
                    }
                }
                Some(done) = self.in_flight.join_next() => {
                    if let Ok((receiver, delivery)) = done {
                        self.delivered(receiver, delivery);
                        // Room to read further may have opened.
                        read_more = true;
                    }
                }
                Some(done) = self.commit.join_next() => {
                    match done {
                        Ok(Ok(())) => {}
                        Ok(Err((back, why))) => {
                            warn!(error = %why, records = back.len(), "recording deliveries failed; trying again");
                            self.outcomes.extend(back);
                            self.last_commit = tokio::time::Instant::now() + RETRY_PAUSE;
                        }
                        Err(err) => warn!(error = %err, "delivery commit task failed"),
                    }
                }
                _ = tick.tick() => self.maybe_commit(),
            }
        }
    }

    /// Starts after the committed cursor; events the log's retention dropped
    /// before they were notified are skipped with a warning.
    fn start_cursor(&mut self) -> Result<(), rota_store::StoreError> {
        let store = self.node.store();
        let cursor = store.notify_cursor()?;
        let compact = store.compact_revision()?;
        if compact > cursor {
            warn!(
                cursor,
                compact_revision = compact,
                "the event log dropped events before they were notified; their webhooks are not sent"
            );
        }
        self.scanned = cursor.max(compact);
        self.committed_cursor = cursor;
        Ok(())
    }

    /// Reads the log after `scanned` into pending deliveries, up to [`MAX_PENDING`].
    fn read_log(&mut self) -> Result<(), rota_store::StoreError> {
        let store = self.node.store().clone();
        let filter = |e: &Event| NotifyOn::of_event_type(&e.event_type).is_some();
        while self.pending() < MAX_PENDING {
            let page = store.events_after(self.scanned, &filter, PAGE)?;
            if page.through <= self.scanned {
                break;
            }
            let webhooks = store.webhooks()?;
            for event in page.events {
                self.plan(&store, &webhooks, event)?;
            }
            self.scanned = page.through;
        }
        Ok(())
    }

    /// Queues the deliveries of one event that are not recorded yet.
    fn plan(
        &mut self,
        store: &rota_store::Store,
        webhooks: &[rota_core::notify::WebhookRecord],
        event: Event,
    ) -> Result<(), rota_store::StoreError> {
        let Some(kind) = NotifyOn::of_event_type(&event.event_type) else {
            return Ok(());
        };
        let Ok(execution_id) = event.key.parse::<Ulid>() else {
            return Ok(());
        };
        let Some(job) = event
            .data
            .get("job")
            .and_then(|j| j.as_str())
            .map(str::to_owned)
        else {
            return Ok(());
        };
        let attempt = event
            .data
            .get("attempt")
            .and_then(|a| a.as_u64())
            .and_then(|a| u32::try_from(a).ok())
            .unwrap_or(1);
        let mut targets = Vec::new();
        if let Some(record) = store.get_job(&job)? {
            for (i, entry) in record.spec.notify.iter().enumerate() {
                if entry.on.contains(&kind) {
                    targets.push((job_target(i), entry.url.clone(), entry.headers.clone()));
                }
            }
        }
        for webhook in webhooks {
            if webhook.spec.matches(&job, kind) {
                targets.push((
                    webhook.name.clone(),
                    webhook.spec.url.clone(),
                    webhook.spec.headers.clone(),
                ));
            }
        }
        if targets.is_empty() {
            return Ok(());
        }
        let execution = store.get_execution(execution_id)?;
        let event = Arc::new(event);
        for (target, url, headers) in targets {
            let id = delivery_id(event.revision, execution_id, attempt, kind, &target);
            if store.has_delivery(event.revision, &id)? {
                continue;
            }
            let body = serde_json::json!({
                "delivery_id": id,
                "event": *event,
                "job": job,
                "execution": execution,
            });
            let pending = Pending {
                id,
                target,
                url: url.clone(),
                headers,
                event: event.clone(),
                job: job.clone(),
                execution: execution_id,
                body: body.to_string(),
            };
            *self.open.entry(event.revision).or_default() += 1;
            self.lanes.entry(url).or_default().push_back(pending);
        }
        Ok(())
    }

    /// Starts the next delivery of every idle receiver, within the bound.
    fn start_deliveries(&mut self) {
        if self.busy.len() >= MAX_RECEIVERS_IN_FLIGHT {
            return;
        }
        let idle: Vec<String> = self
            .lanes
            .iter()
            .filter(|(url, queue)| !queue.is_empty() && !self.busy.contains(*url))
            .map(|(url, _)| url.clone())
            .collect();
        for url in idle {
            if self.busy.len() >= MAX_RECEIVERS_IN_FLIGHT {
                break;
            }
            let Some(pending) = self.lanes.get_mut(&url).and_then(VecDeque::pop_front) else {
                continue;
            };
            self.busy.insert(url.clone());
            let sender = self.sender.clone();
            self.in_flight
                .spawn(async move { (url, sender.deliver(pending).await) });
        }
        self.lanes.retain(|_, queue| !queue.is_empty());
    }

    fn delivered(&mut self, receiver: String, delivery: Delivery) {
        self.busy.remove(&receiver);
        if let Some(count) = self.open.get_mut(&delivery.event_revision) {
            *count -= 1;
            if *count == 0 {
                self.open.remove(&delivery.event_revision);
            }
        }
        debug!(id = %delivery.id, status = delivery.status.as_str(), attempts = delivery.attempts, "delivery ended");
        self.outcomes.push(delivery);
    }

    /// Every event at or below this revision has its outcomes recorded or in
    /// `outcomes`.
    fn safe_cursor(&self) -> u64 {
        match self.open.keys().next() {
            Some(first) => first.saturating_sub(1).max(self.committed_cursor),
            None => self.scanned,
        }
    }

    /// Commits the outcomes gathered so far and the cursor, one commit at a time.
    fn maybe_commit(&mut self) {
        if !self.commit.is_empty() || tokio::time::Instant::now() < self.last_commit {
            return;
        }
        let cursor = self.safe_cursor();
        let cursor_moved = cursor > self.committed_cursor;
        let cursor_due = self.last_commit.elapsed() >= CURSOR_EVERY;
        if self.outcomes.is_empty() && !(cursor_moved && cursor_due) {
            return;
        }
        let deliveries = std::mem::take(&mut self.outcomes);
        let node = self.node.clone();
        self.last_commit = tokio::time::Instant::now();
        // The committed cursor is only raised: a failed commit leaves the store's
        // lower, which is safe (events are read again, recorded ones skipped).
        let before = self.committed_cursor;
        self.committed_cursor = cursor.max(before);
        let count = deliveries.len();
        self.commit.spawn(async move {
            let request = ClientRequest {
                session: None,
                at: Utc::now(),
                command: Command::RecordDeliveries {
                    deliveries: deliveries.clone(),
                    cursor: Some(cursor),
                },
            };
            // A repeat of a write that did apply after all replaces the same rows.
            match node.write(request).await {
                Ok(_) => {
                    debug!(records = count, cursor, "deliveries recorded");
                    Ok(())
                }
                Err(err) => Err((deliveries, rota_core::error::chain(&err))),
            }
        });
    }
}
