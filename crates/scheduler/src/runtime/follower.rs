//! The follower phase: while another node (or none) leads, run the attempts the
//! leader placed here, commit their outcomes, heartbeat, and stop a run whose record
//! moved on.

use std::collections::HashSet;

use chrono::Utc;
use rota_core::{ClientRequest, Command, EventKind, Execution, Finish};
use rota_engine::{finish_for, Completion};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use ulid::Ulid;

use super::{lock, Runtime};

/// Why an attempt placed on a stopping node did not run there.
const NOT_STARTED_SHUTTING_DOWN: &str = "node shutting down: the attempt was not started there";

impl Runtime {
    /// Finishes local runs while another node (or none) leads; answers true when
    /// this node leads again, false on shutdown.
    pub(super) async fn follow(
        &mut self,
        leadership: &mut watch::Receiver<bool>,
        open: &mut bool,
    ) -> bool {
        self.ctx.set_detail("following");
        let mut events = self.node.store().subscribe_without_kv();
        let mut events_open = true;
        // Runs that ended while leading but whose outcome did not commit.
        let ended: Vec<Completion> = lock(&self.shared.live)
            .values()
            .filter_map(|r| r.completion.clone())
            .collect();
        self.finish_as_follower(ended);
        self.reconcile_all();
        let mut beat = tokio::time::interval(self.liveness.heartbeat_interval);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.publish_stats(None);
            let next_launch = self.next_launch();
            tokio::select! {
                () = self.ctx.stopping() => return false,
                event = events.recv(), if events_open => match event {
                    Ok(event) => match &event.kind {
                        EventKind::Execution(e) => self.reconcile(e),
                        EventKind::JobDeleted { name } => self.job_deleted(name),
                        EventKind::Reset => self.reconcile_all(),
                        _ => {}
                    },
                    Err(RecvError::Lagged(missed)) => {
                        debug!(missed, "fell behind the store's events: reconciling local runs");
                        self.reconcile_all();
                    }
                    Err(RecvError::Closed) => events_open = false,
                },
                _ = beat.tick() => {
                    self.heartbeat();
                    self.retry_finishes();
                    self.retry_starts();
                }
                Some(_) = self.heartbeats.join_next() => {}
                changed = leadership.changed(), if *open => {
                    if changed.is_err() {
                        *open = false;
                    } else if *leadership.borrow_and_update() {
                        return true;
                    }
                }
                Some(c) = self.completions.recv() => {
                    tokio::task::yield_now().await;
                    let mut ended = vec![c];
                    while let Ok(c) = self.completions.try_recv() {
                        ended.push(c);
                    }
                    ended.retain(|c| !self.completed(c));
                    self.finish_as_follower(ended);
                }
                Some(handed) = self.handed.recv() => self.handed_over(handed),
                () = super::sleep_until_opt(self.handed_flush) => self.flush_handed(),
                () = super::sleep_until(next_launch) => self.launch_due(),
                Some(done) = self.commits.join_next() => {
                    if let Ok(done) = done {
                        self.committed(done, None, &mut Vec::new());
                    }
                }
                Some(joined) = self.runs.join_next_with_id() => self.reaped(joined),
            }
        }
    }

    /// Holds a local run, an expected start or an attempt of this node's earlier life
    /// against its record (while not leading).
    fn reconcile(&mut self, e: &Execution) {
        let me = self.cfg.node_name.as_str();
        // Running here, or placed here ahead of its instant.
        let on_me = e.placed_on() == Some(me);
        let live = lock(&self.shared.live)
            .get(&e.id)
            .map(|r| (r.attempt, r.cancel.clone(), r.completion.is_some()));
        if let Some((attempt, token, ended)) = live {
            if e.attempt < attempt {
                return; // an event from before this run started
            }
            let stopped = ended || token.is_cancelled();
            if e.attempt == attempt {
                if stopped {
                    return;
                }
                if on_me {
                    if e.cancel_requested {
                        info!(execution = %e.id, attempt, "cancelling a local run");
                        token.cancel();
                    }
                    return;
                }
            }
            if !stopped {
                // Judged lost by the leader (this node looked dead), or ended:
                // another attempt may run elsewhere, so this one stops.
                warn!(execution = %e.id, attempt, status = e.status.as_str(), "the record of a local run moved on: stopping it");
                token.cancel();
            }
            if !(on_me && e.attempt > attempt) {
                return;
            }
            // The retry of the attempt lost here was placed here too: it runs (its
            // run takes the execution's place in the live map; the stopped one's
            // outcome is stale and its finish ignored).
        }
        if self.ended.contains_key(&(e.id, e.attempt)) {
            return; // ran here; the replica has not applied its finish yet
        }
        if let Some(attempt) = self.expected.get(&e.id).copied() {
            if on_me && e.attempt == attempt {
                self.expected.remove(&e.id);
                if self.shared.is_draining() {
                    return self.refuse(e);
                }
                info!(execution = %e.id, attempt, "dispatching a run started before leadership was lost");
                self.dispatch(e.id, attempt, e.job.clone(), e.scheduled_at, e.trigger);
                if e.cancel_requested {
                    if let Some(r) = lock(&self.shared.live).get(&e.id) {
                        r.cancel.cancel();
                    }
                }
                return;
            }
            if e.status.is_terminal() || e.attempt > attempt {
                self.expected.remove(&e.id);
            }
            return;
        }
        if on_me {
            self.run_assigned(e);
        }
    }

    /// An attempt recorded as running here that this process does not run. Once this
    /// process's registration is applied, such a record was made for it (the
    /// registration lost everything of the node's earlier life): a leader placed the
    /// attempt here, and it runs. An event from before the registration may still
    /// show an attempt of the earlier life; the record as it is now decides.
    fn run_assigned(&mut self, e: &Execution) {
        let store = self.node.store();
        if store.last_applied_index() < self.registered {
            return; // the registration will lose it
        }
        let current = match store.get_execution(e.id) {
            Ok(Some(current)) => current,
            Ok(None) => return,
            Err(err) => {
                warn!(execution = %e.id, error = %err, "reading an execution failed");
                return;
            }
        };
        let me = self.cfg.node_name.as_str();
        if current.placed_on() != Some(me) || current.attempt != e.attempt {
            return;
        }
        if self.shared.is_draining() {
            return self.refuse(&current);
        }
        debug!(job = %current.job, execution = %current.id, attempt = current.attempt, "running an attempt placed on this node");
        self.dispatch(
            current.id,
            current.attempt,
            current.job.clone(),
            current.scheduled_at,
            current.trigger,
        );
        if current.cancel_requested {
            if let Some(r) = lock(&self.shared.live).get(&current.id) {
                r.cancel.cancel();
            }
        }
    }

    /// An attempt placed here after this node stopped taking runs (the leader had
    /// not seen it yet): not started, recorded `cancelled` and retried elsewhere per
    /// its job's policy.
    fn refuse(&mut self, e: &Execution) {
        let store = self.node.store();
        let retry = store
            .get_job(&e.job)
            .ok()
            .flatten()
            .and_then(|j| j.spec.retry);
        let finish = Finish::shut_down(
            e.id,
            e.attempt,
            retry.as_ref(),
            e.cancel_requested,
            NOT_STARTED_SHUTTING_DOWN,
            Utc::now(),
        );
        info!(job = %e.job, execution = %e.id, attempt = e.attempt, retried = finish.retry_at.is_some(), "not starting a run: this node is shutting down");
        self.commit_unfenced(Command::Finish {
            finishes: vec![finish],
        });
    }

    /// Reconciles every active record and every local run (on entering the follower
    /// phase, after a snapshot install or a lag).
    fn reconcile_all(&mut self) {
        let store = self.node.store().clone();
        let active = match store.active_executions_skipping(&mut super::unreadable("execution")) {
            Ok(active) => active,
            Err(err) => {
                warn!(error = %err, "reading active executions failed");
                return;
            }
        };
        let active_ids: HashSet<Ulid> = active.iter().map(|e| e.id).collect();
        for e in &active {
            self.reconcile(e);
        }
        let ended_on_record: Vec<(Ulid, CancellationToken)> = lock(&self.shared.live)
            .iter()
            .filter(|(id, r)| r.completion.is_none() && !active_ids.contains(id))
            .map(|(id, r)| (*id, r.cancel.clone()))
            .collect();
        for (id, token) in ended_on_record {
            match store.get_execution(id) {
                Ok(Some(e)) => self.reconcile(&e),
                Ok(None) => {
                    warn!(execution = %id, "the record of a local run is gone: stopping it");
                    token.cancel();
                }
                Err(err) => warn!(execution = %id, error = %err, "reading an execution failed"),
            }
        }
    }

    /// Tells the leader this node is alive (at most one heartbeat in flight): it
    /// vouches for the runs recorded here, and keeps the node among those runs are
    /// placed on.
    fn heartbeat(&mut self) {
        // A node removed from the cluster no longer sees the log: keeping silent
        // lets the leader stop placing runs on it (and lose what it had).
        if !self.heartbeats.is_empty() || !self.node.is_member() {
            return;
        }
        let node = self.node.clone();
        let name = self.cfg.node_name.clone();
        let contact = self.contact.clone();
        self.heartbeats.spawn(async move {
            let at = Utc::now();
            let request = ClientRequest {
                session: None,
                at,
                command: Command::Heartbeat { node: name },
            };
            match node.write(request).await {
                Ok(_) => contact.committed(at),
                Err(err) => debug!(error = %err, "heartbeat not committed"),
            }
        });
    }

    /// Outcomes whose commit failed (no leader for a while) are sent again, one round
    /// at a time; a repeat of an applied one is ignored by the store.
    fn retry_finishes(&mut self) {
        if !self.commits.is_empty() {
            return;
        }
        let ended: Vec<Completion> = lock(&self.shared.live)
            .values()
            .filter_map(|r| r.completion.clone())
            .collect();
        if !ended.is_empty() {
            debug!(runs = ended.len(), "committing run outcomes again");
        }
        self.finish_as_follower(ended);
    }

    /// Commits runs' outcomes without an engine, in one command, reading each job's
    /// retry policy and each execution's cancel flag from the store. A failure is
    /// tried again at the next heartbeat tick (or by the next engine of this node).
    fn finish_as_follower(&mut self, ended: Vec<Completion>) {
        if ended.is_empty() {
            return;
        }
        let store = self.node.store().clone();
        let now = Utc::now();
        let finishes = ended
            .into_iter()
            .map(|c| {
                let exec = store.get_execution(c.id).ok().flatten();
                let job = exec
                    .as_ref()
                    .and_then(|e| store.get_job(&e.job).ok().flatten());
                let cancel_requested = exec.as_ref().is_some_and(|e| e.cancel_requested);
                finish_for(
                    c,
                    job.as_ref().and_then(|j| j.spec.retry.as_ref()),
                    cancel_requested,
                    now,
                )
            })
            .collect();
        self.commit_unfenced(Command::Finish { finishes });
    }
}
