//! Slots and placement: the ready queue, best priority first, goes to the
//! least-loaded live node whose tags match, this node winning a tie.

use super::*;

impl Engine {
    /// Starts queued executions while slots are free, best priority first, each on
    /// the least-loaded live node whose tags match its job's (this node on a tie).
    /// An execution no such node has room for stays in the queue without holding
    /// back the ones behind it that can run elsewhere.
    pub(crate) fn fill_slots(&mut self, now: Timestamp, out: &mut Vec<Action>) {
        let mut after: Option<ReadyKey> = None;
        while self.any_free_slot(now) {
            let next = match after {
                None => self.ready.iter().next(),
                Some(k) => self
                    .ready
                    .range((std::ops::Bound::Excluded(k), std::ops::Bound::Unbounded))
                    .next(),
            };
            let Some((key, id)) = next.map(|(k, id)| (*k, *id)) else {
                break;
            };
            after = Some(key);
            let Some(t) = self.execs.get(&id) else {
                self.ready.remove(&key);
                continue;
            };
            if t.phase != Phase::Ready(key) {
                self.ready.remove(&key);
                continue;
            }
            let attempt = t.attempt;
            let scheduled_at = t.scheduled_at;
            let ahead = executions::on_schedule(t.trigger) && scheduled_at > now;
            if ahead && !self.turn_index.contains_key(&id) {
                // Fired ahead in an earlier turn without a slot: placed at its instant.
                self.set_phase(id, Phase::RetryWait(scheduled_at));
                continue;
            }
            if self.must_wait(t) {
                self.set_phase(id, Phase::Blocked(key));
                continue;
            }
            let tags = self.jobs.get(&t.job).and_then(|j| j.policy.tags.as_ref());
            let Some(node) = self.place(tags, now) else {
                continue;
            };
            let here = node.is_none();
            let node = node.unwrap_or_else(|| Arc::from(self.cfg.node.as_str()));
            if let Some(t) = self.execs.get_mut(&id) {
                t.node = Some(node.clone());
            }
            self.set_phase(id, Phase::Starting { here });
            let start = StartInfo {
                node: node.to_string(),
                at: now.max(scheduled_at),
            };
            match self
                .turn_index
                .get(&id)
                .and_then(|i| self.turn_fires.get_mut(*i))
            {
                Some(fire) => {
                    fire.start = Some(start);
                    fire.ahead = ahead;
                }
                None => out.push(Action::Start(Start {
                    id,
                    attempt,
                    node: start.node,
                    at: start.at,
                })),
            }
        }
    }

    /// Whether another node reported within the node timeout.
    pub(crate) fn is_up(&self, node: &str, now: Timestamp) -> bool {
        let timeout = TimeDelta::from_std(self.cfg.node_timeout).unwrap_or(TimeDelta::MAX);
        self.remote.get(node).is_some_and(|r| {
            r.last_seen
                .checked_add_signed(timeout)
                .is_none_or(|deadline| deadline > now)
        })
    }

    pub(crate) fn remote_load(&self, node: &str) -> usize {
        self.remote.get(node).map_or(0, |r| r.running.len())
    }

    /// How many attempts this node runs at once: the dynamic `max_running` when
    /// set, else this node's own; none while it stops (registered without
    /// capacity), whatever the setting.
    pub(crate) fn local_cap(&self) -> usize {
        cap(self.cfg.max_running, self.dynamic.max_running)
    }

    /// How many attempts another node runs at once: the dynamic `max_running` when
    /// set, else what the node registered; none while it stops.
    fn worker_cap(&self, w: &Worker) -> usize {
        cap(w.max_running, self.dynamic.max_running)
    }

    /// Whether the cluster-wide limit (`cluster_max_running`) is reached.
    fn cluster_full(&self) -> bool {
        self.dynamic.cluster_max_running.is_some_and(|cap| {
            let running =
                self.running_here + self.remote.values().map(|r| r.running.len()).sum::<usize>();
            running >= cap as usize
        })
    }

    /// Whether any live node (whatever its tags) has a free slot, and the cluster
    /// as a whole has room.
    pub(crate) fn any_free_slot(&self, now: Timestamp) -> bool {
        if self.cluster_full() {
            return false;
        }
        self.running_here < self.local_cap()
            || self.workers.iter().any(|(name, w)| {
                self.remote_load(name) < self.worker_cap(w) && self.is_up(name, now)
            })
    }

    /// Where a run of a job with `tags` goes: `Some(None)` here, `Some(Some(node))`
    /// on another node, `None` when no matching live node has a free slot. Least
    /// loaded (running over capacity) first; this node wins a tie (its runs need no
    /// replication to start), then names in order.
    #[allow(clippy::option_option)]
    pub(crate) fn place(
        &self,
        tags: Option<&BTreeMap<String, String>>,
        now: Timestamp,
    ) -> Option<Option<Arc<str>>> {
        let fits = |have: &BTreeMap<String, String>| tags.is_none_or(|t| tags_match(have, t));
        let mut best: Option<(Option<&Arc<str>>, usize, usize)> = None;
        let local_cap = self.local_cap();
        if self.running_here < local_cap && fits(&self.cfg.tags) {
            best = Some((None, self.running_here, local_cap));
        }
        for (name, w) in &self.workers {
            let load = self.remote_load(name);
            let cap = self.worker_cap(w);
            if load >= cap || !fits(&w.tags) || !self.is_up(name, now) {
                continue;
            }
            // load / max < best_load / best_max, without division (u128: capacities
            // come from configuration and may be huge).
            let better = best.is_none_or(|(_, bl, bm)| {
                (load as u128) * (bm as u128) < (bl as u128) * (cap as u128)
            });
            if better {
                best = Some((Some(name), load, cap));
            }
        }
        best.map(|(node, _, _)| node.cloned())
    }
}

/// A node's capacity: `registered`, or the dynamic setting in its place, except
/// that a node registered without capacity (stopping) gets none.
fn cap(registered: usize, dynamic: Option<u32>) -> usize {
    match dynamic {
        Some(n) if registered > 0 => n as usize,
        _ => registered,
    }
}
