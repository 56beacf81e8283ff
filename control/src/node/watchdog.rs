//! The control thread's eye on the workers: from their published reports, a worker that stops
//! completing rounds (stuck in a device call, or starved of its core) and an adaptive worker
//! that spins without progress (rounds without packets and without sleeping, or wakeups with
//! nothing to receive) are logged when they start and when they end.
//!
//! Invariants: reads published reports only (a worker is never touched); each condition is
//! said once when it starts and once when it ends, not every check; busy-poll workers are
//! never called spinning (that is their job).

use std::time::{Duration, Instant};

use dataplane::worker::{RoundStats, WorkerReport};

/// A worker whose round count has not moved for this long is stalled (an idle worker still
/// completes a round per sleep, every 10 ms).
pub const STALL_AFTER: Duration = Duration::from_secs(2);
/// Wakeups with nothing to receive, per second, above which a worker is spinning.
const EMPTY_WAKEUPS_PER_SEC: f64 = 1000.0;
/// How often `check` looks.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
struct Seen {
    at: Instant,
    rounds: RoundStats,
    /// When the round count last moved.
    progressed: Instant,
    stalled: bool,
    spinning: bool,
}

/// What the watchdog remembers of each worker between checks.
#[derive(Debug)]
pub struct Watchdog {
    busy_poll: bool,
    seen: Vec<Option<Seen>>,
}

impl Watchdog {
    pub fn new(busy_poll: bool) -> Self {
        Self {
            busy_poll,
            seen: Vec::new(),
        }
    }

    /// Compares `reports` with the last check; returns what started or ended (to log as a
    /// warning when `.0` is true, as information otherwise).
    pub fn check(&mut self, now: Instant, reports: &[WorkerReport]) -> Vec<(bool, String)> {
        let mut said = Vec::new();
        if self.seen.len() < reports.len() {
            self.seen.resize(reports.len(), None);
        }
        for (r, slot) in reports.iter().zip(self.seen.iter_mut()) {
            let Some(last) = slot else {
                *slot = Some(Seen {
                    at: now,
                    rounds: r.rounds,
                    progressed: now,
                    stalled: false,
                    spinning: false,
                });
                continue;
            };
            let d_rounds = r.rounds.rounds.saturating_sub(last.rounds.rounds);
            let d_idle = r.rounds.idle_rounds.saturating_sub(last.rounds.idle_rounds);
            let d_sleeps = r.rounds.sleeps.saturating_sub(last.rounds.sleeps);
            let d_empty = r
                .rounds
                .empty_wakeups
                .saturating_sub(last.rounds.empty_wakeups);
            let secs = now.saturating_duration_since(last.at).as_secs_f64();
            if d_rounds > 0 {
                last.progressed = now;
            }
            let stalled = now.saturating_duration_since(last.progressed) >= STALL_AFTER;
            if stalled != last.stalled {
                said.push(if stalled {
                    (
                        true,
                        format!(
                            "worker {} has completed no round for {:.1}s: stuck in a device \
                             call or starved of its core",
                            r.worker,
                            now.saturating_duration_since(last.progressed).as_secs_f64()
                        ),
                    )
                } else {
                    (false, format!("worker {} completes rounds again", r.worker))
                });
            }
            let no_packets = d_rounds > 0 && d_idle == d_rounds;
            let spinning = !self.busy_poll
                && secs > 0.0
                && no_packets
                && (d_sleeps == 0 || d_empty as f64 / secs > EMPTY_WAKEUPS_PER_SEC);
            if spinning != last.spinning {
                said.push(if spinning {
                    (
                        true,
                        format!(
                            "worker {} spins without progress: {d_rounds} rounds, no packet, \
                             {d_sleeps} sleeps, {d_empty} wakeups with nothing to receive in \
                             {secs:.1}s (a port's descriptor stays readable?)",
                            r.worker
                        ),
                    )
                } else {
                    (false, format!("worker {} no longer spins", r.worker))
                });
            }
            last.at = now;
            last.rounds = r.rounds;
            last.stalled = stalled;
            last.spinning = spinning;
        }
        said
    }
}

impl Watchdog {
    /// The workers stalled at the last check, one line each (for `/healthz`).
    pub fn stalled(&self, now: Instant) -> impl Iterator<Item = String> + '_ {
        self.seen
            .iter()
            .enumerate()
            .filter_map(move |(worker, seen)| {
                let seen = seen.as_ref().filter(|s| s.stalled)?;
                Some(format!(
                    "worker {worker} has completed no round for {:.1}s",
                    now.saturating_duration_since(seen.progressed).as_secs_f64()
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(rounds: u64, idle_rounds: u64, sleeps: u64, empty_wakeups: u64) -> WorkerReport {
        WorkerReport {
            worker: 0,
            rounds: RoundStats {
                rounds,
                idle_rounds,
                sleeps,
                empty_wakeups,
                ..RoundStats::default()
            },
            ..WorkerReport::default()
        }
    }

    #[test]
    fn a_worker_without_rounds_is_stalled_once_then_recovers() {
        let mut w = Watchdog::new(false);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(w.check(at(0), &[report(100, 90, 50, 0)]).is_empty());
        assert!(
            w.check(at(1), &[report(100, 90, 50, 0)]).is_empty(),
            "1s: not yet"
        );
        let said = w.check(at(2), &[report(100, 90, 50, 0)]);
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(
            said[0].0 && said[0].1.contains("no round for 2.0s"),
            "{said:?}"
        );
        assert!(
            w.check(at(3), &[report(100, 90, 50, 0)]).is_empty(),
            "said once"
        );
        assert_eq!(
            w.stalled(at(3)).collect::<Vec<_>>(),
            vec!["worker 0 has completed no round for 3.0s".to_owned()]
        );
        let said = w.check(at(4), &[report(200, 150, 60, 0)]);
        assert_eq!(
            said,
            vec![(false, "worker 0 completes rounds again".to_owned())]
        );
    }

    #[test]
    fn an_adaptive_worker_that_never_sleeps_without_packets_spins() {
        let mut w = Watchdog::new(false);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        w.check(at(0), &[report(0, 0, 0, 0)]);
        assert!(
            w.check(at(1), &[report(100, 100, 100, 0)]).is_empty(),
            "idle, sleeping"
        );
        assert!(
            w.check(at(2), &[report(5000, 1000, 100, 0)]).is_empty(),
            "busy"
        );
        let said = w.check(at(3), &[report(9000, 5000, 100, 0)]);
        assert!(
            said[0].0 && said[0].1.contains("spins without progress"),
            "{said:?}"
        );
        let said = w.check(at(4), &[report(99000, 95000, 90100, 90000)]);
        assert!(said.is_empty(), "still spinning (empty wakeups): {said:?}");
        let said = w.check(at(5), &[report(99100, 95100, 90200, 90000)]);
        assert_eq!(said, vec![(false, "worker 0 no longer spins".to_owned())]);
        let mut busy = Watchdog::new(true);
        busy.check(at(0), &[report(0, 0, 0, 0)]);
        assert!(busy.check(at(1), &[report(9000, 9000, 0, 0)]).is_empty());
    }
}
