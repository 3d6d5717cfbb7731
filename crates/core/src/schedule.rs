//! When a schedule fires: cron in IANA zones with the design's DST rule, `every`,
//! `at`, `after`, `manual`.

use crate::{Schedule, Timestamp, ValidationError};

/// A schedule checked and prepared for fast `next_after` queries.
#[derive(Debug, Clone)]
pub struct CompiledSchedule {
    _todo: (),
}

impl CompiledSchedule {
    /// Checks and prepares a schedule. Errors name the field relative to the
    /// schedule (`cron`, `timezone`, `every`, ...); callers prefix `schedule.`.
    pub fn compile(schedule: &Schedule) -> Result<Self, ValidationError> {
        let _ = schedule;
        todo!()
    }

    /// The first instant strictly after `after`, or `None` when the schedule will
    /// not fire again. `anchor` is the job's last change (`updated_at`): the phase
    /// origin of `every` and the start of `after`.
    pub fn next_after(&self, after: Timestamp, anchor: Timestamp) -> Option<Timestamp> {
        let _ = (after, anchor);
        todo!()
    }

    /// Whether the schedule fires by itself more than once (cron, every).
    pub fn is_recurring(&self) -> bool {
        todo!()
    }

    /// Whether the schedule fires by itself at all (not `manual`).
    pub fn fires_on_its_own(&self) -> bool {
        todo!()
    }
}
