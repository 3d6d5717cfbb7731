//! What the engine keeps per job, and the cache that lets a million jobs with the
//! same schedule share one compiled copy.
//!
//! Jobs live in a slab so that a timer can name its job by a `u32` slot plus the
//! slot's generation; removing or re-arming a job bumps the generation, which makes
//! every older timer of that slot stale without touching the heap. Executor specs,
//! tags and metadata are deliberately absent: the runtime reads the job from the
//! store when it dispatches, and the engine stays small (about 150 bytes per job,
//! see the `job_entry_is_compact` test).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rota_core::{
    CompiledSchedule, Misfire, Overlap, RetryPolicy, Schedule, Timestamp, ValidationError,
};

/// The engine's view of one job.
#[derive(Debug)]
pub(super) struct JobEntry {
    pub(super) name: Arc<str>,
    pub(super) schedule: Arc<CompiledSchedule>,
    /// The job's last change: phase origin of `every`, start of `after`.
    pub(super) anchor: Timestamp,
    /// The latest instant fired on schedule or by catch-up; nothing at or below it
    /// fires again.
    pub(super) high_water: Option<Timestamp>,
    /// The instant currently armed in the timer heap.
    pub(super) next_at: Option<Timestamp>,
    pub(super) catchup_window: Duration,
    /// Boxed: most jobs have none, and the policy is four times the pointer.
    pub(super) retry: Option<Box<RetryPolicy>>,
    pub(super) priority: i32,
    /// Placement: the job runs on nodes with all of these tags (shared: most jobs
    /// have none).
    pub(super) tags: Option<Arc<BTreeMap<String, String>>>,
    pub(super) overlap: Overlap,
    pub(super) misfire: Misfire,
    pub(super) paused: bool,
    /// Its instants may be committed ahead (not a workflow's job: a workflow
    /// trigger starts its run when the fire is applied).
    pub(super) ahead_ok: bool,
}

#[derive(Debug)]
struct Slot {
    /// Bumped whenever the slot's timer is re-armed or its job removed.
    gen: u32,
    job: Option<JobEntry>,
}

/// The job slab with its name index.
#[derive(Debug, Default)]
pub(super) struct Jobs {
    slots: Vec<Slot>,
    free: Vec<u32>,
    by_name: HashMap<Arc<str>, u32>,
}

impl Jobs {
    pub(super) fn len(&self) -> usize {
        self.by_name.len()
    }

    pub(super) fn slot_of(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }

    pub(super) fn get(&self, name: &str) -> Option<&JobEntry> {
        self.slot_of(name).and_then(|slot| self.at(slot))
    }

    pub(super) fn at(&self, slot: u32) -> Option<&JobEntry> {
        self.slots.get(slot as usize).and_then(|s| s.job.as_ref())
    }

    pub(super) fn at_mut(&mut self, slot: u32) -> Option<&mut JobEntry> {
        self.slots
            .get_mut(slot as usize)
            .and_then(|s| s.job.as_mut())
    }

    pub(super) fn gen(&self, slot: u32) -> Option<u32> {
        self.slots.get(slot as usize).map(|s| s.gen)
    }

    /// Makes every timer armed so far for `slot` stale; answers the new generation.
    pub(super) fn bump(&mut self, slot: u32) -> u32 {
        match self.slots.get_mut(slot as usize) {
            Some(s) => {
                s.gen = s.gen.wrapping_add(1);
                s.gen
            }
            None => 0,
        }
    }

    /// Adds a job whose name is not known yet; answers its slot.
    pub(super) fn insert(&mut self, entry: JobEntry) -> u32 {
        let name = entry.name.clone();
        let slot = match self.free.pop() {
            Some(slot) => {
                if let Some(s) = self.slots.get_mut(slot as usize) {
                    s.job = Some(entry);
                }
                slot
            }
            None => {
                // More than u32::MAX jobs cannot be held in memory anyway.
                let slot = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
                self.slots.push(Slot {
                    gen: 0,
                    job: Some(entry),
                });
                slot
            }
        };
        self.by_name.insert(name, slot);
        slot
    }

    /// Removes a job; its slot's timers become stale.
    pub(super) fn remove(&mut self, name: &str) -> Option<JobEntry> {
        let slot = self.by_name.remove(name)?;
        let s = self.slots.get_mut(slot as usize)?;
        s.gen = s.gen.wrapping_add(1);
        let job = s.job.take();
        self.free.push(slot);
        job
    }
}

/// What makes two schedules compile to the same thing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ScheduleKey {
    Cron(String, String),
    Every(Duration),
    At(Timestamp),
    After(Duration),
    Manual,
}

impl ScheduleKey {
    fn of(schedule: &Schedule) -> Option<Self> {
        Some(match schedule {
            Schedule::Cron { cron, timezone } => ScheduleKey::Cron(cron.clone(), timezone.clone()),
            Schedule::Every(d) => ScheduleKey::Every(d.0),
            Schedule::At(t) => ScheduleKey::At(*t),
            Schedule::After(d) => ScheduleKey::After(d.0),
            Schedule::Manual => ScheduleKey::Manual,
            Schedule::On(_) => return None,
        })
    }
}

/// Compiled schedules shared between jobs.
#[derive(Debug)]
pub(super) struct ScheduleCache {
    map: HashMap<ScheduleKey, Arc<CompiledSchedule>>,
    /// Size at which entries no job uses any more are dropped.
    prune_at: usize,
}

impl Default for ScheduleCache {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
            prune_at: 1024,
        }
    }
}

impl ScheduleCache {
    /// The compiled form of `schedule`, compiled once per distinct schedule.
    pub(super) fn get(
        &mut self,
        schedule: &Schedule,
    ) -> Result<Arc<CompiledSchedule>, ValidationError> {
        let Some(key) = ScheduleKey::of(schedule) else {
            return CompiledSchedule::compile(schedule).map(Arc::new);
        };
        if let Some(compiled) = self.map.get(&key) {
            return Ok(compiled.clone());
        }
        let compiled = Arc::new(CompiledSchedule::compile(schedule)?);
        if self.map.len() >= self.prune_at {
            // Only the cache holds them: no job uses these schedules any more.
            self.map.retain(|_, c| Arc::strong_count(c) > 1);
            self.prune_at = (self.map.len() * 2).max(1024);
        }
        self.map.insert(key, compiled.clone());
        Ok(compiled)
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }
}
