//! How often and how much a worker ages its flow table between rounds: the conntrack sweep
//! is paced by the clock, not by rounds.
//!
//! A busy or spinning worker runs hundreds of thousands of rounds a second, most of them
//! moving one super-packet or nothing; a fixed number of buckets per round made the sweep
//! walk the whole table thousands of times a second there (8% of a bulk TCP profile), and an
//! idle worker, which wakes every `sleep_ms`, walk it only every few seconds.
//!
//! Invariants:
//! - At most one sweep per `MIN_INTERVAL_NS` of the worker's round clock; nothing else is
//!   read (no extra clock read, no syscall).
//! - A sweep visits the share of the table that the time since the last one is of `period`
//!   (at least one bucket, at most the table), so the whole table is visited about once
//!   per `period` whatever the round rate; the conntrack sweep's own bound (`budget`
//!   buckets per call) still holds.
//! - Expiry itself does not wait for the sweep: lookups treat expired flows as gone; the
//!   sweep only gives their slots back.

use std::time::Duration;

/// The shortest time between two sweeps.
pub const MIN_INTERVAL_NS: u64 = 1_000_000;

/// How long one pass over the whole flow table takes by default.
pub const DEFAULT_SWEEP_PERIOD: Duration = Duration::from_secs(1);

/// When the next sweep is due and how many buckets it visits.
#[derive(Debug)]
pub(super) struct SweepPace {
    period_ns: u64,
    last_ns: u64,
}

impl SweepPace {
    pub(super) fn new(period: Duration, now_ns: u64) -> Self {
        Self {
            period_ns: u64::try_from(period.as_nanos())
                .unwrap_or(u64::MAX)
                .max(MIN_INTERVAL_NS),
            last_ns: now_ns,
        }
    }

    /// The buckets to sweep at `now_ns` in a table of `buckets` buckets; 0 when no sweep is
    /// due yet.
    pub(super) fn due(&mut self, now_ns: u64, buckets: usize) -> usize {
        let elapsed = now_ns.saturating_sub(self.last_ns);
        if elapsed < MIN_INTERVAL_NS {
            return 0;
        }
        self.last_ns = now_ns;
        let elapsed = elapsed.min(self.period_ns);
        let share = (buckets as u128 * u128::from(elapsed)).div_ceil(u128::from(self.period_ns));
        usize::try_from(share)
            .unwrap_or(buckets)
            .clamp(1, buckets.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_due_within_the_interval() {
        let mut pace = SweepPace::new(Duration::from_secs(1), 0);
        assert_eq!(pace.due(MIN_INTERVAL_NS - 1, 1024), 0);
        assert_eq!(pace.due(MIN_INTERVAL_NS, 1024), 2);
        assert_eq!(pace.due(MIN_INTERVAL_NS + 10, 1024), 0);
    }

    #[test]
    fn the_table_is_covered_once_per_period_at_any_round_rate() {
        for step in [1_000, 250_000, 1_000_000, 3_000_000, 10_000_000] {
            let mut pace = SweepPace::new(Duration::from_secs(1), 0);
            let mut visited = 0;
            let mut now = 0;
            while now < 1_000_000_000 {
                now += step;
                visited += pace.due(now, 16_384);
            }
            assert!(
                (16_384..16_384 + 1_100).contains(&visited),
                "step {step} ns: visited {visited}"
            );
        }
    }

    #[test]
    fn a_long_sleep_visits_the_table_at_most_once() {
        let mut pace = SweepPace::new(Duration::from_secs(1), 0);
        assert_eq!(pace.due(60_000_000_000, 1024), 1024);
        assert_eq!(pace.due(60_002_000_000, 1), 1);
        assert_eq!(pace.due(60_004_000_000, 0), 1);
    }
}
