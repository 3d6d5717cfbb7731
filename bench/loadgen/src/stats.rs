//! Order statistics over raw samples. Every sample of a run is kept and sorted once:
//! runs are at most a few million samples, and exact percentiles are easier to
//! trust and compare across systems than a histogram's buckets.

use serde::{Deserialize, Serialize};

/// Distribution of a set of samples (milliseconds throughout the suite).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: usize,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    /// Summarises `samples`; `None` when there are none (or none that is a number).
    pub fn from_samples(mut samples: Vec<f64>) -> Option<Summary> {
        samples.retain(|s| s.is_finite());
        if samples.is_empty() {
            return None;
        }
        samples.sort_by(f64::total_cmp);
        let count = samples.len();
        let mean = samples.iter().sum::<f64>() / count as f64;
        Some(Summary {
            count,
            min: samples[0],
            mean,
            p50: percentile(&samples, 50.0),
            p99: percentile(&samples, 99.0),
            max: samples[count - 1],
        })
    }
}

/// Nearest-rank percentile of sorted, non-empty `sorted`: the smallest sample that at
/// least `pct` percent of the samples do not exceed. Nearest rank never invents a
/// value that was not measured, which matters for small runs (one job, one sample).
pub fn percentile(sorted: &[f64], pct: f64) -> f64 {
    debug_assert!(!sorted.is_empty());
    let n = sorted.len();
    let rank = ((pct / 100.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

/// Converts a signed nanosecond difference to milliseconds.
pub fn nanos_to_ms(nanos: i128) -> f64 {
    nanos as f64 / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_has_no_summary() {
        assert_eq!(Summary::from_samples(vec![]), None);
        assert_eq!(Summary::from_samples(vec![f64::NAN]), None);
    }

    #[test]
    fn single_sample_is_every_percentile() {
        let s = Summary::from_samples(vec![7.5]).unwrap();
        assert_eq!(
            (s.count, s.min, s.p50, s.p99, s.max),
            (1, 7.5, 7.5, 7.5, 7.5)
        );
    }

    #[test]
    fn nearest_rank_on_one_to_hundred() {
        // Shuffled on purpose: the summary must sort.
        let samples: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let s = Summary::from_samples(samples).unwrap();
        assert_eq!(s.count, 100);
        assert_eq!(s.min, 1.0);
        assert_eq!(s.p50, 50.0);
        assert_eq!(s.p99, 99.0);
        assert_eq!(s.max, 100.0);
        assert_eq!(s.mean, 50.5);
    }

    #[test]
    fn p99_of_small_runs_is_the_maximum() {
        let s = Summary::from_samples(vec![3.0, 1.0, 2.0]).unwrap();
        assert_eq!(s.p50, 2.0);
        assert_eq!(s.p99, 3.0);
    }

    #[test]
    fn negative_samples_are_kept() {
        let s = Summary::from_samples(vec![-2.0, 4.0]).unwrap();
        assert_eq!(s.min, -2.0);
        assert_eq!(s.p50, -2.0);
    }

    #[test]
    fn nanos_convert_to_millis() {
        assert_eq!(nanos_to_ms(1_500_000), 1.5);
        assert_eq!(nanos_to_ms(-3_000_000), -3.0);
    }
}
