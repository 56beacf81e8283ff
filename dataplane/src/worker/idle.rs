//! When a worker sleeps, and where its time went: the idle policy (`IdleMode`) and the
//! per-round accounting (`RoundClock`) behind `WorkerReport::rounds`.
//!
//! Invariants:
//! - One clock reading per round (taken by the caller) drives everything here: the time from
//!   one round's start to the next is busy if the first round moved a packet, idle otherwise
//!   (a sleep always follows an empty round, so it counts as idle). Nothing per packet.
//! - `Adaptive`: after the last packet the worker keeps polling for `spin`, then sleeps on its
//!   ports' descriptors; it never yields or counts rounds, so its wait is bounded in time
//!   (a real-time worker leaves the core within `spin` of its last packet). A zero `spin`
//!   sleeps after every empty round.
//! - `KeepWarm`: sleeps after every empty round; a `SCHED_IDLE` companion thread on the
//!   worker's CPU keeps it out of halt for `spin` after the last work (see `keep_warm`).
//! - `BusyPoll`: never sleeps (for a core dedicated to the worker).

use std::time::Duration;

/// What a worker does when a round finds nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdleMode {
    /// Poll for `spin` after the last packet, then sleep in poll(2) until a port is readable.
    Adaptive { spin: Duration },
    /// Sleep in poll(2) after every empty round, while a companion thread at SCHED_IDLE keeps
    /// the CPU from halting for `spin` after the last packet (it gives way to every other
    /// task, so a pod the worker just woke on its CPU runs at once).
    KeepWarm { spin: Duration },
    /// Poll forever: the core is the worker's alone.
    BusyPoll,
}

impl Default for IdleMode {
    fn default() -> Self {
        IdleMode::Adaptive { spin: DEFAULT_SPIN }
    }
}

/// How long an adaptive worker keeps polling after its last packet (VPP adaptive mode and
/// Snabb keep to tens of microseconds).
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);

/// A worker's rounds and time, as published in its report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoundStats {
    pub rounds: u64,
    /// Rounds that found no packet.
    pub idle_rounds: u64,
    /// Times the worker slept on its ports' descriptors.
    pub sleeps: u64,
    /// Sleeps that ended because a port turned readable (not by timeout).
    pub wakeups: u64,
    /// Wakeups whose next round found no packet (a descriptor readable with nothing to
    /// receive: a worker doing this at a high rate spins without progress).
    pub empty_wakeups: u64,
    /// Time in rounds that moved packets, and in empty rounds and sleeps.
    pub busy_ns: u64,
    pub idle_ns: u64,
}

/// The per-round bookkeeping of one worker.
#[derive(Debug)]
pub(super) struct RoundClock {
    mode: IdleMode,
    pub(super) stats: RoundStats,
    round_start: u64,
    last_round_busy: bool,
    last_work: u64,
    woke: bool,
}

impl RoundClock {
    pub(super) fn new(mode: IdleMode, now_ns: u64) -> Self {
        Self {
            mode,
            stats: RoundStats::default(),
            round_start: now_ns,
            last_round_busy: false,
            last_work: now_ns,
            woke: false,
        }
    }

    /// A round starts at `now_ns`: the previous round (and any sleep after it) is accounted.
    pub(super) fn start(&mut self, now_ns: u64) {
        let spent = now_ns.saturating_sub(self.round_start);
        if self.last_round_busy {
            self.stats.busy_ns += spent;
        } else {
            self.stats.idle_ns += spent;
        }
        self.round_start = now_ns;
        self.stats.rounds += 1;
    }

    /// The round moved `packets`; returns whether the worker should now sleep.
    pub(super) fn finish(&mut self, packets: usize) -> bool {
        self.last_round_busy = packets > 0;
        if packets > 0 {
            self.last_work = self.round_start;
            self.woke = false;
            return false;
        }
        self.stats.idle_rounds += 1;
        if self.woke {
            self.stats.empty_wakeups += 1;
            self.woke = false;
        }
        match self.mode {
            IdleMode::BusyPoll => false,
            IdleMode::KeepWarm { .. } => true,
            IdleMode::Adaptive { spin } => {
                self.round_start.saturating_sub(self.last_work) >= spin.as_nanos() as u64
            }
        }
    }

    /// The worker slept; `readable` descriptors woke it (0: the sleep timed out).
    pub(super) fn slept(&mut self, readable: usize) {
        self.stats.sleeps += 1;
        if readable > 0 {
            self.stats.wakeups += 1;
            self.woke = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: u64 = 1_000;

    #[test]
    fn an_adaptive_worker_spins_for_its_budget_after_work_then_sleeps() {
        let spin = Duration::from_micros(50);
        let mut clock = RoundClock::new(IdleMode::Adaptive { spin }, 0);
        clock.start(0);
        assert!(!clock.finish(3), "a busy round never sleeps");
        clock.start(10 * US);
        assert!(!clock.finish(0), "10 us after work: still spinning");
        clock.start(49 * US);
        assert!(!clock.finish(0));
        clock.start(60 * US);
        assert!(clock.finish(0), "past the spin budget: sleep");
        clock.slept(1);
        clock.start(1_000 * US);
        assert!(!clock.finish(1), "woken by a packet");
        clock.start(1_005 * US);
        assert!(!clock.finish(0), "a new spin after the new work");
        let s = clock.stats;
        assert_eq!((s.rounds, s.idle_rounds, s.sleeps, s.wakeups), (6, 4, 1, 1));
        assert_eq!(s.busy_ns, 10 * US + 5 * US, "round 1 and the woken round");
        assert_eq!(s.idle_ns, 1_000 * US - 10 * US, "spinning and the sleep");
        assert_eq!(s.empty_wakeups, 0);
    }

    #[test]
    fn a_wakeup_with_nothing_to_receive_is_counted() {
        let mut clock = RoundClock::new(
            IdleMode::Adaptive {
                spin: Duration::ZERO,
            },
            0,
        );
        for i in 0..3 {
            clock.start(i * US);
            assert!(clock.finish(0), "spin 0 sleeps after every empty round");
            clock.slept(1);
        }
        assert_eq!(
            clock.stats.empty_wakeups, 2,
            "the last wakeup has no round yet"
        );
        clock.start(10 * US);
        clock.finish(0);
        clock.slept(0);
        assert_eq!((clock.stats.empty_wakeups, clock.stats.wakeups), (3, 3));
    }

    #[test]
    fn a_keep_warm_worker_sleeps_after_every_empty_round() {
        let spin = Duration::from_micros(50);
        let mut clock = RoundClock::new(IdleMode::KeepWarm { spin }, 0);
        clock.start(0);
        assert!(!clock.finish(2), "a busy round never sleeps");
        clock.start(US);
        assert!(
            clock.finish(0),
            "1 us after work: the companion spins, not the worker"
        );
    }

    #[test]
    fn a_busy_polling_worker_never_sleeps() {
        let mut clock = RoundClock::new(IdleMode::BusyPoll, 0);
        for i in 0..1000 {
            clock.start(i * 1_000 * US);
            assert!(!clock.finish(0));
        }
        assert_eq!(clock.stats.idle_rounds, 1000);
    }
}
