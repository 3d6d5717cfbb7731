//! The engine's timers: one min-heap for schedule instants and retry due times.
//!
//! Entries are never removed in place. A job's entry carries the generation its
//! slot had when the timer was armed, a retry's entry the attempt it is for; the
//! engine checks them when an entry reaches the top and drops the stale ones
//! (lazy invalidation). That keeps arming and firing at O(log n) with a million
//! jobs, at the price of dead entries, which [`TimerHeap::retain`] compacts.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rota_core::Timestamp;
use ulid::Ulid;

/// What a timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TimerKey {
    /// The next instant of the job in `slot`, armed at generation `gen`.
    Job { slot: u32, gen: u32 },
    /// Attempt `attempt` of a queued execution becomes due. The id is kept as two
    /// halves: a `u128` would align every heap entry to 16 bytes.
    Retry { id: (u64, u64), attempt: u32 },
}

impl TimerKey {
    pub(super) fn retry(id: Ulid, attempt: u32) -> Self {
        TimerKey::Retry {
            id: ((id.0 >> 64) as u64, id.0 as u64),
            attempt,
        }
    }

    /// The execution of a retry timer.
    pub(super) fn retry_id(id: (u64, u64)) -> Ulid {
        Ulid((u128::from(id.0) << 64) | u128::from(id.1))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Timer {
    at: Timestamp,
    /// Arming order: breaks ties between equal instants first-armed-first.
    seq: u64,
    key: TimerKey,
}

impl Ord for Timer {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: `BinaryHeap` is a max-heap and the earliest timer must be on top.
        other.at.cmp(&self.at).then(other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for Timer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug, Default)]
pub(super) struct TimerHeap {
    heap: BinaryHeap<Timer>,
    seq: u64,
}

impl TimerHeap {
    /// Bytes one entry takes in the heap.
    #[cfg(test)]
    pub(super) const ENTRY_BYTES: usize = std::mem::size_of::<Timer>();

    pub(super) fn push(&mut self, at: Timestamp, key: TimerKey) {
        self.seq += 1;
        self.heap.push(Timer {
            at,
            seq: self.seq,
            key,
        });
    }

    pub(super) fn peek(&self) -> Option<(Timestamp, TimerKey)> {
        self.heap.peek().map(|t| (t.at, t.key))
    }

    pub(super) fn pop(&mut self) -> Option<(Timestamp, TimerKey)> {
        self.heap.pop().map(|t| (t.at, t.key))
    }

    /// Entries in the heap, stale ones included.
    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Drops every entry `keep` refuses, in one O(n) rebuild.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(Timestamp, TimerKey) -> bool) {
        self.heap.retain(|t| keep(t.at, t.key));
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(secs: i64) -> Timestamp {
        chrono::Utc.timestamp_opt(secs, 0).single().expect("valid")
    }

    #[test]
    fn pops_earliest_first_and_fifo_on_ties() {
        let mut heap = TimerHeap::default();
        heap.push(at(20), TimerKey::Job { slot: 0, gen: 0 });
        heap.push(at(10), TimerKey::Job { slot: 1, gen: 0 });
        heap.push(at(10), TimerKey::Job { slot: 2, gen: 0 });
        heap.push(at(5), TimerKey::Job { slot: 3, gen: 0 });
        let order: Vec<u32> = std::iter::from_fn(|| heap.pop())
            .map(|(_, k)| match k {
                TimerKey::Job { slot, .. } => slot,
                TimerKey::Retry { .. } => u32::MAX,
            })
            .collect();
        assert_eq!(order, vec![3, 1, 2, 0]);
    }

    #[test]
    fn retry_keys_keep_the_whole_id() {
        let id = Ulid(u128::MAX - 12345);
        let TimerKey::Retry {
            id: halves,
            attempt,
        } = TimerKey::retry(id, 3)
        else {
            panic!("a retry key");
        };
        assert_eq!((TimerKey::retry_id(halves), attempt), (id, 3));
        assert_eq!(TimerHeap::ENTRY_BYTES, 48);
    }

    #[test]
    fn retain_drops_refused_entries() {
        let mut heap = TimerHeap::default();
        for slot in 0..10 {
            heap.push(at(i64::from(slot)), TimerKey::Job { slot, gen: 0 });
        }
        heap.retain(|_, k| matches!(k, TimerKey::Job { slot, .. } if slot % 2 == 0));
        assert_eq!(heap.len(), 5);
        assert_eq!(heap.peek().map(|(t, _)| t), Some(at(0)));
    }
}
