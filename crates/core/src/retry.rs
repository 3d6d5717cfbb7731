//! Retry backoff math. Deterministic: jitter comes from a seed (the execution id and
//! attempt), so the engine stays pure and every replica computes the same delay.

use std::time::Duration;

use chrono::TimeDelta;
use ulid::Ulid;

use crate::rng::Rng;
use crate::{ExecStatus, RetryPolicy, Timestamp};

impl RetryPolicy {
    /// Whether an attempt numbered `next_attempt` (2 for the first retry) may run.
    pub fn allows(&self, next_attempt: u32) -> bool {
        next_attempt <= self.max_attempts
    }

    /// The wait before attempt `next_attempt` (>= 2):
    /// `min(max_delay, initial_delay * multiplier^(next_attempt - 2))`; with `jitter`,
    /// a value drawn from `[d/2, d]` by `seed` ("equal jitter": spreads retries of
    /// many failed runs without ever retrying at once).
    pub fn delay_before(&self, next_attempt: u32, seed: u64) -> Duration {
        let exp = next_attempt.saturating_sub(2).min(1000) as i32;
        let initial = self.initial_delay.0.as_secs_f64();
        let max = self.max_delay.0.as_secs_f64();
        let raw = initial * self.multiplier.powi(exp);
        let capped = if raw.is_finite() { raw.min(max) } else { max };
        let secs = if self.jitter {
            let unit = Rng::new(seed).next_f64();
            capped / 2.0 + unit * capped / 2.0
        } else {
            capped
        };
        Duration::from_secs_f64(secs.max(0.0))
    }
}

/// When attempt `attempt` of execution `id`, ended with `status` at `now`, runs
/// again under `policy`: `None` when it does not (no policy, attempts used up, a
/// status that is not retried, or a cancel was asked for). The engine, the store
/// (for attempts it finds lost) and a node finishing runs all use this one rule.
pub fn retry_at(
    policy: Option<&RetryPolicy>,
    id: Ulid,
    attempt: u32,
    status: ExecStatus,
    cancelled: bool,
    now: Timestamp,
) -> Option<Timestamp> {
    if cancelled || !status.is_retryable() {
        return None;
    }
    let next = attempt.checked_add(1)?;
    let policy = policy.filter(|p| p.allows(next))?;
    let delay = policy.delay_before(next, jitter_seed(id, next));
    now.checked_add_signed(TimeDelta::from_std(delay).ok()?)
}

/// The jitter seed of an attempt of an execution.
pub fn jitter_seed(id: Ulid, attempt: u32) -> u64 {
    let v = id.0;
    ((v >> 64) as u64) ^ (v as u64) ^ (u64::from(attempt)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HumanDuration;

    fn policy(jitter: bool) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            initial_delay: HumanDuration::from_secs(1),
            max_delay: HumanDuration::from_secs(10),
            multiplier: 3.0,
            jitter,
        }
    }

    #[test]
    fn exponential_with_cap() {
        let p = policy(false);
        let secs: Vec<f64> = (2..=6)
            .map(|a| p.delay_before(a, 7).as_secs_f64())
            .collect();
        assert_eq!(secs, vec![1.0, 3.0, 9.0, 10.0, 10.0]);
        assert!(p.allows(5));
        assert!(!p.allows(6));
    }

    #[test]
    fn an_attempt_cut_short_by_shutdown_is_cancelled_and_retried_per_policy() {
        let now = chrono::Utc::now();
        let id = Ulid::from_parts(1, 2);
        let p = policy(false);
        let f = crate::Finish::shut_down(id, 1, Some(&p), false, "node shutting down", now);
        assert_eq!(f.status, ExecStatus::Cancelled);
        assert_eq!(f.error.as_deref(), Some("node shutting down"));
        assert_eq!(f.retry_at, Some(now + TimeDelta::seconds(1)));
        // Not without a policy, not past its attempts, not when a cancel was asked.
        assert_eq!(
            crate::Finish::shut_down(id, 1, None, false, "x", now).retry_at,
            None
        );
        assert_eq!(
            crate::Finish::shut_down(id, 5, Some(&p), false, "x", now).retry_at,
            None
        );
        assert_eq!(
            crate::Finish::shut_down(id, 1, Some(&p), true, "x", now).retry_at,
            None
        );
    }

    proptest::proptest! {
        #[test]
        fn jitter_stays_within_half_and_full(seed: u64, attempt in 2u32..20) {
            let full = policy(false).delay_before(attempt, seed);
            let jittered = policy(true).delay_before(attempt, seed);
            proptest::prop_assert!(jittered <= full);
            proptest::prop_assert!(jittered.as_secs_f64() >= full.as_secs_f64() / 2.0 - 1e-9);
            // Deterministic: the same seed gives the same delay.
            proptest::prop_assert_eq!(jittered, policy(true).delay_before(attempt, seed));
        }
    }
}
