//! Jobs that fire on events (`schedule.on`) and jobs that go away after their run
//! (`delete_after_run`).
//!
//! `on` jobs are indexed by event type, so a published event costs a hash lookup
//! plus the jobs of its type. Each keeps the log position `(revision, seq)` of the
//! last event it handled (its high-water mark, from the store's
//! [`JobRecord::event_mark`], raised here when it fires): an event at or below it
//! never fires the job again, which makes replaying events after a leader change
//! harmless. The store enforces the same mark, and fires each
//! `(job, revision, seq)` once: two matching events of one entry (two runs that
//! ended in one batch) fire the job twice.

use std::collections::{BTreeSet, HashMap};

use rota_core::event::Event;
use rota_core::{EventTrigger, Schedule};

use super::*;

#[derive(Debug)]
struct EventJob {
    trigger: Arc<EventTrigger>,
    /// The log position of the last event handled.
    mark: (u64, u32),
    paused: bool,
}

/// The `on` jobs, by name and by event type.
#[derive(Debug, Default)]
pub(super) struct EventJobs {
    jobs: HashMap<Arc<str>, EventJob>,
    /// Event type → the jobs triggered by it (in name order, so that the fires of
    /// one event come out the same way every time).
    by_type: HashMap<String, BTreeSet<Arc<str>>>,
}

impl EventJobs {
    /// Follows a job's record: indexed while its schedule is `on`.
    pub(super) fn upsert(&mut self, name: &Arc<str>, record: &JobRecord) {
        let Schedule::On(trigger) = &record.spec.schedule else {
            self.remove(name);
            return;
        };
        let stored = record.event_mark().unwrap_or((record.revision, u32::MAX));
        let mark = match self.jobs.get(name) {
            // The store restarts the mark when the trigger changes; while it stays,
            // this engine's own fires may be ahead of the record it reads.
            Some(old) if *old.trigger == *trigger => old.mark.max(stored),
            _ => stored,
        };
        self.remove(name);
        self.by_type
            .entry(trigger.event.clone())
            .or_default()
            .insert(name.clone());
        self.jobs.insert(
            name.clone(),
            EventJob {
                trigger: Arc::new(trigger.clone()),
                mark,
                paused: record.spec.paused,
            },
        );
    }

    pub(super) fn remove(&mut self, name: &str) {
        let Some(old) = self.jobs.remove(name) else {
            return;
        };
        if let Some(names) = self.by_type.get_mut(&old.trigger.event) {
            names.remove(name);
            if names.is_empty() {
                self.by_type.remove(&old.trigger.event);
            }
        }
    }

    /// The jobs `event` fires: of its type, not paused, not past it yet, and whose
    /// filters hold. Their marks move to the event.
    pub(super) fn matching(&mut self, event: &Event) -> Vec<Arc<str>> {
        let Some(names) = self.by_type.get(&event.event_type) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for name in names {
            let Some(job) = self.jobs.get_mut(name) else {
                continue;
            };
            if job.paused || event.position() <= job.mark || !job.trigger.matches(event) {
                continue;
            }
            job.mark = event.position();
            out.push(name.clone());
        }
        out
    }

    /// The revision after which a new engine must look at the events: below the
    /// lowest mark of the jobs that can fire, or at it when that mark covers its
    /// whole revision.
    pub(super) fn floor(&self) -> Option<u64> {
        self.jobs
            .values()
            .filter(|j| !j.paused)
            .map(|j| match j.mark {
                (revision, u32::MAX) => revision,
                (revision, _) => revision.saturating_sub(1),
            })
            .min()
    }

    pub(super) fn len(&self) -> usize {
        self.jobs.len()
    }
}

impl Engine {
    /// A published event: fires every `on` job it matches, once.
    pub(crate) fn on_event(&mut self, event: &Event, out: &mut Vec<Action>) {
        for name in self.event_jobs.matching(event) {
            let Some(slot) = self.jobs.slot_of(&name) else {
                continue;
            };
            debug!(job = %name, event = %event.event_type, revision = event.revision, "event trigger fired");
            self.fire_run(slot, event.at, Trigger::Event, Some(event.position()), out);
        }
    }

    /// The revision after which a new engine must be fed the events it may have
    /// missed ([`Input::Event`], oldest first): the lowest high-water mark of the
    /// `on` jobs that can fire. `None` when no job fires on events.
    pub fn event_floor(&self) -> Option<u64> {
        self.event_jobs.floor()
    }

    /// Deletes a `delete_after_run` job once its instant fired and nothing of it is
    /// active any more (its run ended for good: no retry pending).
    pub(crate) fn delete_if_done(&mut self, name: &str, out: &mut Vec<Action>) {
        let Some(&revision) = self.delete_after_run.get(name) else {
            return;
        };
        // Fired, and it will not fire again by itself (a job put again with a later
        // instant waits for that one; a paused job waits to be resumed).
        let done = self
            .jobs
            .get(name)
            .is_some_and(|j| j.high_water.is_some() && j.next_at.is_none() && !j.paused);
        let active = self.activity.contains_key(name);
        let pending = self.turn_fires.iter().any(|f| f.job == name);
        if !self.started || !done || active || pending {
            return;
        }
        self.delete_after_run.remove(name);
        info!(job = %name, "run ended: deleting the job (delete_after_run)");
        out.push(Action::DeleteJob {
            job: name.to_string(),
            revision,
        });
    }
}
