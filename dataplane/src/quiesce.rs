//! Grace periods for snapshot readers: the control thread waits until every worker has left
//! the rounds it was in when a new snapshot was published, so that what it removes next
//! (stale flows) cannot be re-created by a worker still deciding on the old tables (security
//! review M4).
//!
//! Each worker owns one [`ReaderEpoch`]: a counter it bumps when it enters a round (odd: in
//! a round, holding a snapshot) and again when it leaves (even: between rounds, holding none;
//! a worker asleep in poll(2) is between rounds, hence quiescent). [`Readers::wait_quiescent`]
//! samples every epoch and waits, for a bounded time, until each odd one has changed. That
//! is a grace period (RCU): a round entered after the publication loads the new snapshot.
//! It depends on no generation numbers, so it also holds when a SIGHUP swaps in a whole new
//! snapshot cell whose generations start over.
//!
//! Invariants:
//! - Only the owning worker writes its epoch: two stores and one fence per round, nothing per
//!   packet.
//! - `enter` is ordered before the round's snapshot load, and the control thread's sample
//!   after its publication (SeqCst fences on both sides, Dekker style): either the control
//!   thread sees the worker in its round, or the worker's load sees the new snapshot.
//! - A worker that is gone (its epoch dropped) never holds up a grace period.

use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How long a flush waits for the workers before going ahead anyway (and saying so).
pub const DEFAULT_GRACE_TIMEOUT: Duration = Duration::from_secs(1);

/// One worker's round counter (see the module docs).
#[derive(Debug, Default)]
pub struct ReaderEpoch(AtomicU64);

impl ReaderEpoch {
    /// Marks the start of a round; call before loading the round's snapshot.
    #[inline]
    pub fn enter(&self) {
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v | 1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Marks the end of a round: the worker no longer uses its snapshot.
    #[inline]
    pub fn leave(&self) {
        let v = self.0.load(Ordering::Relaxed);
        if v & 1 == 1 {
            self.0.store(v.wrapping_add(1), Ordering::Release);
        }
    }

    /// Whether the owner is inside a round now.
    pub fn in_round(&self) -> bool {
        self.0.load(Ordering::SeqCst) & 1 == 1
    }
}

/// The outcome of a grace period.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Quiescence {
    /// Every worker left the rounds it was in.
    #[default]
    Quiet,
    /// `stuck` workers were still in the same round when the timeout ran out.
    TimedOut { stuck: usize },
}

/// The epochs of every worker that reads snapshots for one flow table.
#[derive(Debug, Default)]
pub struct Readers {
    epochs: Mutex<Vec<Weak<ReaderEpoch>>>,
}

impl Readers {
    /// A new epoch for a worker; the worker keeps the `Arc` (dropping it unregisters).
    pub fn register(&self) -> Arc<ReaderEpoch> {
        let epoch = Arc::new(ReaderEpoch::default());
        let mut epochs = self.epochs.lock().unwrap_or_else(|p| p.into_inner());
        epochs.retain(|e| e.strong_count() > 0);
        epochs.push(Arc::downgrade(&epoch));
        epoch
    }

    /// Live registered workers.
    pub fn len(&self) -> usize {
        self.live().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn live(&self) -> Vec<Arc<ReaderEpoch>> {
        let epochs = self.epochs.lock().unwrap_or_else(|p| p.into_inner());
        epochs.iter().filter_map(Weak::upgrade).collect()
    }

    /// Waits until every worker that is in a round now has left it, for at most `timeout`.
    /// Call after publishing a snapshot, before removing what the old one referenced.
    pub fn wait_quiescent(&self, timeout: Duration) -> Quiescence {
        fence(Ordering::SeqCst);
        let mut busy: Vec<(Arc<ReaderEpoch>, u64)> = self
            .live()
            .into_iter()
            .map(|e| {
                let v = e.0.load(Ordering::SeqCst);
                (e, v)
            })
            .filter(|(_, v)| v & 1 == 1)
            .collect();
        let started = Instant::now();
        let mut spins = 0u32;
        loop {
            busy.retain(|(e, v)| e.0.load(Ordering::Acquire) == *v);
            if busy.is_empty() {
                return Quiescence::Quiet;
            }
            if started.elapsed() >= timeout {
                return Quiescence::TimedOut { stuck: busy.len() };
            }
            spins += 1;
            if spins < 64 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::mpsc;

    use super::*;

    #[test]
    fn nobody_in_a_round_is_quiet_at_once() {
        let readers = Readers::default();
        let a = readers.register();
        let b = readers.register();
        a.enter();
        a.leave();
        assert!(!b.in_round());
        assert_eq!(readers.len(), 2);
        assert_eq!(readers.wait_quiescent(Duration::ZERO), Quiescence::Quiet);
    }

    #[test]
    fn waits_for_a_worker_to_leave_its_round() {
        let readers = Arc::new(Readers::default());
        let epoch = readers.register();
        let left = Arc::new(AtomicBool::new(false));
        let (entered_tx, entered) = mpsc::channel();
        let worker = {
            let left = Arc::clone(&left);
            std::thread::spawn(move || {
                epoch.enter();
                entered_tx.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(100));
                left.store(true, Ordering::SeqCst);
                epoch.leave();
                // Stays registered but between rounds (asleep) from here on.
                std::thread::sleep(Duration::from_millis(200));
                drop(epoch);
            })
        };
        entered.recv().unwrap();
        let started = Instant::now();
        assert_eq!(
            readers.wait_quiescent(Duration::from_secs(10)),
            Quiescence::Quiet
        );
        assert!(
            left.load(Ordering::SeqCst),
            "returned before the worker left"
        );
        assert!(started.elapsed() >= Duration::from_millis(50));
        worker.join().unwrap();
    }

    #[test]
    fn a_worker_stuck_in_a_round_times_out_and_is_reported() {
        let readers = Readers::default();
        let stuck = readers.register();
        let idle = readers.register();
        stuck.enter();
        idle.enter();
        idle.leave();
        let started = Instant::now();
        assert_eq!(
            readers.wait_quiescent(Duration::from_millis(30)),
            Quiescence::TimedOut { stuck: 1 }
        );
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert!(started.elapsed() < Duration::from_secs(5), "bounded");
        // A round entered before the next sample is waited for in turn.
        stuck.leave();
        stuck.enter();
        assert_eq!(
            readers.wait_quiescent(Duration::from_millis(30)),
            Quiescence::TimedOut { stuck: 1 }
        );
        stuck.leave();
        assert_eq!(readers.wait_quiescent(Duration::ZERO), Quiescence::Quiet);
    }

    #[test]
    fn a_dropped_worker_never_holds_up_a_grace_period() {
        let readers = Readers::default();
        let gone = readers.register();
        gone.enter();
        drop(gone);
        assert_eq!(readers.len(), 0);
        assert_eq!(readers.wait_quiescent(Duration::ZERO), Quiescence::Quiet);
    }
}
