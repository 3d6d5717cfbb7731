//! What the engine keeps per job, and the cache that lets a million jobs with the
//! same schedule share one compiled copy.
//!
//! Jobs live in a slab so that a timer can name its job by a `u32` slot plus the
//! slot's generation; removing or re-arming a job bumps the generation, which makes
//! every older timer of that slot stale without touching the heap. Executor specs,
//! tags and metadata are deliberately absent: the runtime reads the job from the
//! store when it dispatches, and the engine stays small: about 190 bytes per job
//! with its name, its slot in the name index and its timer (`engine-scale`).
//!
//! The name index holds only slot numbers and hashes each by its job's name in the
//! slab. A map keyed by the name would keep a second pointer to it per entry, and
//! its table (twice the jobs, to stay under its load factor) would take about 50
//! bytes per job instead of 10.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use rota_core::{
    CompiledSchedule, ExecutorSpec, JobSpec, Misfire, Overlap, RetryPolicy, Schedule, Timestamp,
    ValidationError,
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
    /// How its runs are judged and placed, shared with every job that has the same.
    pub(super) policy: Arc<Policy>,
    pub(super) paused: bool,
}

/// The settings a job's runs are judged and placed by. Most jobs share theirs with
/// many others, so each distinct one is kept once (see [`Shared`]).
#[derive(Debug, Clone)]
pub(super) struct Policy {
    pub(super) catchup_window: Duration,
    pub(super) retry: Option<RetryPolicy>,
    pub(super) priority: i32,
    /// Placement: the job runs on nodes with all of these tags (`None`: any node).
    pub(super) tags: Option<BTreeMap<String, String>>,
    pub(super) overlap: Overlap,
    pub(super) misfire: Misfire,
    /// Its instants may be committed ahead (not a workflow's job: a workflow
    /// trigger starts its run when the fire is applied).
    pub(super) ahead_ok: bool,
}

impl Policy {
    pub(super) fn of(spec: &JobSpec) -> Policy {
        Policy {
            catchup_window: spec.catchup_window.0,
            retry: spec.retry.clone(),
            priority: spec.priority,
            tags: (!spec.tags.is_empty()).then(|| spec.tags.clone()),
            overlap: spec.overlap,
            misfire: spec.misfire,
            ahead_ok: !matches!(spec.executor, ExecutorSpec::WorkflowJob(_)),
        }
    }

    /// Everything that tells two policies apart (the retry multiplier by its bits).
    #[allow(clippy::type_complexity)]
    fn key(
        &self,
    ) -> (
        Duration,
        Option<(u32, Duration, Duration, u64, bool)>,
        i32,
        &Option<BTreeMap<String, String>>,
        Overlap,
        Misfire,
        bool,
    ) {
        (
            self.catchup_window,
            self.retry.as_ref().map(|r| {
                (
                    r.max_attempts,
                    r.initial_delay.0,
                    r.max_delay.0,
                    r.multiplier.to_bits(),
                    r.jitter,
                )
            }),
            self.priority,
            &self.tags,
            self.overlap,
            self.misfire,
            self.ahead_ok,
        )
    }
}

impl PartialEq for Policy {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Policy {}

impl Hash for Policy {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
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
    /// Slots of live jobs, hashed by their job's name.
    by_name: hashbrown::HashTable<u32>,
    hasher: RandomState,
}

/// The name of the job in `slot` ("" for an empty slot, which the index never holds).
fn name_in(slots: &[Slot], slot: u32) -> &str {
    slots
        .get(slot as usize)
        .and_then(|s| s.job.as_ref())
        .map_or("", |j| &j.name)
}

impl Jobs {
    pub(super) fn len(&self) -> usize {
        self.by_name.len()
    }

    pub(super) fn slot_of(&self, name: &str) -> Option<u32> {
        let slots = &self.slots;
        self.by_name
            .find(self.hasher.hash_one(name), |&s| name_in(slots, s) == name)
            .copied()
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
        let hash = self.hasher.hash_one(&*entry.name);
        if let Some(old) = self.slot_of(&entry.name) {
            // Not expected (callers look the name up first); keep one slot per name.
            self.remove_slot(hash, old);
        }
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
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.by_name
            .insert_unique(hash, slot, |&s| hasher.hash_one(name_in(slots, s)));
        slot
    }

    /// Removes a job; its slot's timers become stale.
    pub(super) fn remove(&mut self, name: &str) -> Option<JobEntry> {
        let hash = self.hasher.hash_one(name);
        let slot = self.slot_of(name)?;
        self.remove_slot(hash, slot)
    }

    /// Takes `slot` (whose job's name hashes to `hash`) out of the index and the slab.
    fn remove_slot(&mut self, hash: u64, slot: u32) -> Option<JobEntry> {
        if let Ok(entry) = self.by_name.find_entry(hash, |&s| s == slot) {
            entry.remove();
        }
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

/// Values shared between jobs, made once per distinct key. Entries no job holds
/// any more are dropped as the cache grows.
#[derive(Debug)]
pub(super) struct Shared<K, V> {
    map: HashMap<K, Arc<V>>,
    /// Size at which entries no job uses any more are dropped.
    prune_at: usize,
}

impl<K, V> Default for Shared<K, V> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
            prune_at: 1024,
        }
    }
}

impl<K: Hash + Eq, V> Shared<K, V> {
    /// The shared value for `key`, made by `make` the first time.
    pub(super) fn get_or_make<E>(
        &mut self,
        key: K,
        make: impl FnOnce(&K) -> Result<V, E>,
    ) -> Result<Arc<V>, E> {
        if let Some(value) = self.map.get(&key) {
            return Ok(value.clone());
        }
        let value = Arc::new(make(&key)?);
        if self.map.len() >= self.prune_at {
            // Only the cache holds them: no job uses these any more.
            self.map.retain(|_, v| Arc::strong_count(v) > 1);
            self.prune_at = (self.map.len() * 2).max(1024);
        }
        self.map.insert(key, value.clone());
        Ok(value)
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }
}

/// Compiled schedules shared between jobs.
#[derive(Debug, Default)]
pub(super) struct ScheduleCache(Shared<ScheduleKey, CompiledSchedule>);

impl ScheduleCache {
    /// The compiled form of `schedule`, compiled once per distinct schedule.
    pub(super) fn get(
        &mut self,
        schedule: &Schedule,
    ) -> Result<Arc<CompiledSchedule>, ValidationError> {
        match ScheduleKey::of(schedule) {
            Some(key) => self
                .0
                .get_or_make(key, |_| CompiledSchedule::compile(schedule)),
            None => CompiledSchedule::compile(schedule).map(Arc::new),
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}

/// Policies shared between jobs.
#[derive(Debug, Default)]
pub(super) struct PolicyCache(Shared<Policy, Policy>);

impl PolicyCache {
    pub(super) fn get(&mut self, spec: &JobSpec) -> Arc<Policy> {
        let Ok(policy) = self.0.get_or_make(Policy::of(spec), |p| {
            Ok::<_, std::convert::Infallible>(p.clone())
        });
        policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, schedule: &Arc<CompiledSchedule>) -> JobEntry {
        JobEntry {
            name: name.into(),
            schedule: schedule.clone(),
            anchor: Timestamp::UNIX_EPOCH,
            high_water: None,
            next_at: None,
            policy: Arc::new(Policy {
                catchup_window: Duration::ZERO,
                retry: None,
                priority: 0,
                tags: None,
                overlap: Overlap::Allow,
                misfire: Misfire::Skip,
                ahead_ok: true,
            }),
            paused: false,
        }
    }

    #[test]
    fn the_name_index_follows_inserts_removals_and_reused_slots() {
        let schedule = Arc::new(CompiledSchedule::compile(&Schedule::Manual).expect("manual"));
        let mut jobs = Jobs::default();
        // Enough names for the index to grow several times.
        for i in 0..5_000 {
            jobs.insert(entry(&format!("job-{i}"), &schedule));
        }
        for i in (0..5_000).step_by(3) {
            let removed = jobs
                .remove(&format!("job-{i}"))
                .expect("a job that is there");
            assert_eq!(&*removed.name, format!("job-{i}"));
        }
        assert!(jobs.remove("job-0").is_none(), "a job is removed once");
        // New jobs take the freed slots.
        for i in 0..1_000 {
            jobs.insert(entry(&format!("new-{i}"), &schedule));
        }
        assert_eq!(jobs.len(), 5_000 - 1_667 + 1_000);
        assert!(jobs.slots.len() <= 5_000, "freed slots are reused");
        for i in 0..5_000 {
            let name = format!("job-{i}");
            match jobs.get(&name) {
                Some(job) => {
                    assert!(i % 3 != 0, "{name} was removed");
                    assert_eq!(&*job.name, name);
                }
                None => assert_eq!(i % 3, 0, "{name} is lost"),
            }
        }
        for i in 0..1_000 {
            let name = format!("new-{i}");
            let slot = jobs.slot_of(&name).expect("a new job is found");
            assert_eq!(jobs.at(slot).map(|j| &*j.name), Some(name.as_str()));
        }
        // Inserting a name again keeps one slot for it.
        let before = jobs.len();
        jobs.insert(entry("new-7", &schedule));
        assert_eq!(jobs.len(), before);
        assert!(jobs.get("new-7").is_some());
    }

    fn spec(json: serde_json::Value) -> JobSpec {
        let mut base = serde_json::json!({
            "name": "a",
            "schedule": {"cron": "* * * * *"},
            "executor": {"type": "shell", "command": "true"},
        });
        if let (Some(base), Some(extra)) = (base.as_object_mut(), json.as_object()) {
            base.extend(extra.clone());
        }
        serde_json::from_value(base).expect("a valid job spec")
    }

    #[test]
    fn jobs_with_the_same_settings_share_one_policy_and_any_difference_tells_them_apart() {
        let mut cache = PolicyCache::default();
        let plain = cache.get(&spec(serde_json::json!({})));
        let same = cache.get(&spec(serde_json::json!({"name": "b"})));
        assert!(
            Arc::ptr_eq(&plain, &same),
            "the name is not part of the policy"
        );
        let retry = |multiplier: f64| serde_json::json!({"retry": {"max_attempts": 3, "multiplier": multiplier}});
        let differing = [
            serde_json::json!({"priority": 5}),
            serde_json::json!({"overlap": "skip"}),
            serde_json::json!({"misfire": "run_all"}),
            serde_json::json!({"catchup_window": "5m"}),
            serde_json::json!({"tags": {"zone": "a"}}),
            retry(2.0),
            retry(2.5),
        ];
        let mut seen = vec![plain.clone()];
        for extra in differing {
            let policy = cache.get(&spec(extra.clone()));
            assert!(
                seen.iter().all(|p| !Arc::ptr_eq(p, &policy)),
                "{extra} has a policy of its own"
            );
            assert!(
                Arc::ptr_eq(&policy, &cache.get(&spec(extra))),
                "and shares it"
            );
            seen.push(policy);
        }
        assert_eq!(cache.0.len(), seen.len());
        assert_eq!(seen[7].retry.as_ref().map(|r| r.multiplier), Some(2.5));
    }
}
