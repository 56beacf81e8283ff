//! Keeping a worker's CPU out of halt after work without holding it (`IdleMode::KeepWarm`):
//! the worker sleeps in poll(2) as soon as a round finds nothing, and a companion thread at
//! `SCHED_IDLE` on the worker's CPU polls the clock for `spin` after the worker's last work,
//! then parks. While it polls, the CPU has something to run, so it does not halt (on a VM a
//! halted vCPU takes tens of microseconds to wake) and the worker's next wakeup is a plain
//! preemption; yet every other task preempts it at once (a SCHED_IDLE task yields to any
//! waking normal or real-time task), so a pod that the worker just woke on the same CPU runs
//! at once, where a spinning real-time worker would hold it off for the whole spin.
//!
//! Invariants:
//! - The worker's side is one relaxed store per busy round and, only when the companion is
//!   parked, one unpark (a futex wake) on the first busy round after it parked.
//! - The companion follows the worker's CPU (read with getcpu after busy rounds) and pins
//!   itself there; it never touches packets, ports or tables.
//! - It never parks while the worker's last work is younger than `spin` (the parked flag is
//!   raised, then the clock re-read, so an unpark is never missed), and a park is bounded.
//! - Dropping the handle never waits for the companion (at SCHED_IDLE it may not run for a
//!   while on a busy CPU): it raises the stop flag, unparks it and lets it end by itself.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::thread::Thread;
use std::time::Duration;

use crate::io::thread::{
    SchedPolicy, ThreadScheduling, current_cpu, monotonic_ns, pin_current_thread, set_scheduling,
};

/// Longest park of an idle companion (it re-checks the stop flag after each).
const PARK_LIMIT: Duration = Duration::from_millis(100);

/// No CPU published yet.
const NO_CPU: u32 = u32::MAX;

struct Shared {
    last_work_ns: AtomicU64,
    cpu: AtomicU32,
    parked: AtomicBool,
    stop: AtomicBool,
    spin_ns: u64,
}

/// The class the companion takes: below every normal and real-time task.
const IDLE_CLASS: ThreadScheduling = ThreadScheduling {
    policy: SchedPolicy::Foreign(libc::SCHED_IDLE as u32),
    priority: 0,
    slice_ns: None,
};

/// The worker's handle on its companion; stops it when dropped.
pub struct KeepWarm {
    shared: Arc<Shared>,
    companion: Thread,
    /// The CPU last published (the worker's own copy, so it stores only on a change).
    cpu: u32,
}

impl KeepWarm {
    /// Starts the companion of worker `id`, polling for `spin` after each busy round.
    pub fn start(id: usize, spin: Duration) -> io::Result<KeepWarm> {
        Self::start_as(id, spin, Some(IDLE_CLASS))
    }

    /// `start` with the companion in `class` (`None`: the class it inherits).
    fn start_as(
        id: usize,
        spin: Duration,
        class: Option<ThreadScheduling>,
    ) -> io::Result<KeepWarm> {
        let shared = Arc::new(Shared {
            last_work_ns: AtomicU64::new(0),
            cpu: AtomicU32::new(NO_CPU),
            parked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            spin_ns: spin.as_nanos() as u64,
        });
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("fp-warm-{id}"))
            .spawn(move || companion(&theirs, class))?;
        Ok(KeepWarm {
            shared,
            companion: thread.thread().clone(),
            cpu: NO_CPU,
        })
    }

    /// The worker moved packets in the round that started at `now_ns`.
    pub fn worked(&mut self, now_ns: u64) {
        let cpu = current_cpu().map_or(NO_CPU, |c| c as u32);
        if cpu != self.cpu {
            self.cpu = cpu;
            self.shared.cpu.store(cpu, Ordering::Relaxed);
        }
        self.shared.last_work_ns.store(now_ns, Ordering::SeqCst);
        if self.shared.parked.load(Ordering::SeqCst) {
            self.shared.parked.store(false, Ordering::Relaxed);
            self.companion.unpark();
        }
    }
}

impl Drop for KeepWarm {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.companion.unpark();
    }
}

/// The companion's loop: poll while the worker's last work is recent, else park.
fn companion(shared: &Shared, class: Option<ThreadScheduling>) {
    // Without its class the companion would compete with the node's tasks: it then ends
    // (the worker still runs, only without the warm CPU).
    if let Some(class) = class
        && set_scheduling(&class).is_err()
    {
        return;
    }
    let mut pinned = NO_CPU;
    while !shared.stop.load(Ordering::Relaxed) {
        let cpu = shared.cpu.load(Ordering::Relaxed);
        if cpu != pinned && cpu != NO_CPU {
            pinned = if pin_current_thread(cpu as usize).is_ok() {
                cpu
            } else {
                NO_CPU
            };
        }
        if recent(shared) {
            for _ in 0..64 {
                std::hint::spin_loop();
            }
            continue;
        }
        shared.parked.store(true, Ordering::SeqCst);
        if recent(shared) {
            shared.parked.store(false, Ordering::Relaxed);
            continue;
        }
        std::thread::park_timeout(PARK_LIMIT);
        shared.parked.store(false, Ordering::Relaxed);
    }
}

/// Whether the worker's last work is younger than the spin.
fn recent(shared: &Shared) -> bool {
    let last = shared.last_work_ns.load(Ordering::SeqCst);
    monotonic_ns().saturating_sub(last) < shared.spin_ns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_companion_parks_when_idle_and_wakes_on_work() {
        // Inherited class: at SCHED_IDLE the companion may not run for seconds on a busy
        // test machine.
        let mut warm = KeepWarm::start_as(0, Duration::from_millis(20), None).expect("start");
        let parked = |warm: &KeepWarm| warm.shared.parked.load(Ordering::SeqCst);
        let wait_until = |warm: &KeepWarm, want: bool| {
            for _ in 0..2500 {
                if parked(warm) == want {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            false
        };
        assert!(wait_until(&warm, true), "no work yet: the companion parks");
        warm.worked(monotonic_ns());
        assert!(!parked(&warm), "work unparks it at once");
        assert!(
            warm.shared.cpu.load(Ordering::Relaxed) != NO_CPU,
            "the worker's CPU is published"
        );
        assert!(wait_until(&warm, true), "parked again after the spin");
        let shared = Arc::clone(&warm.shared);
        drop(warm);
        assert!(
            shared.stop.load(Ordering::Relaxed),
            "dropping the handle stops it"
        );
    }
}
