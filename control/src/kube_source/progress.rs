//! What the watchers have done so far, shared between the watcher thread (which records) and
//! the sync loop (which reads and waits): the change generation, the kinds whose initial list
//! is complete, and the watch errors seen.
//!
//! Invariants: the generation only grows, and it is bumped only after the reflector store has
//! applied the event it counts (the watcher task records an event after the store saw it), so
//! a reader that reads the generation *before* the stores never labels older contents with a
//! newer generation. A kind, once listed, stays listed: a later re-list swaps its store in one
//! step on `InitDone`, so the stores never show a half-listed kind again.

use std::collections::BTreeSet;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::model::Kind;

use super::WATCHED_KINDS;

/// Where the source stands, as [`super::KubeSource::status`] reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceStatus {
    /// Bumped on every watcher event that changes what the stores show.
    pub generation: u64,
    /// The kinds whose initial list has completed.
    pub listed: BTreeSet<Kind>,
    /// Failed list or watch requests and API error events, all kinds together. The watchers
    /// retry each of them with backoff.
    pub watch_errors: u64,
    /// The latest of those errors, naming its kind.
    pub last_error: Option<String>,
}

impl SourceStatus {
    /// Every watched kind has been listed completely at least once.
    pub fn is_ready(&self) -> bool {
        WATCHED_KINDS.iter().all(|kind| self.listed.contains(kind))
    }
}

/// The shared record, behind one lock with a condition variable for waiters.
#[derive(Debug, Default)]
pub(super) struct Progress {
    status: Mutex<SourceStatus>,
    changed: Condvar,
}

impl Progress {
    /// The record, even if a panicking thread left the lock poisoned (every update is a single
    /// assignment or increment, so the record is never half-written).
    fn lock(&self) -> MutexGuard<'_, SourceStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn status(&self) -> SourceStatus {
        self.lock().clone()
    }

    pub(super) fn generation(&self) -> u64 {
        self.lock().generation
    }

    pub(super) fn is_ready(&self) -> bool {
        self.lock().is_ready()
    }

    /// An object of some kind was added, modified or deleted.
    pub(super) fn record_change(&self) {
        self.lock().generation += 1;
        self.changed.notify_all();
    }

    /// A (re-)list of `kind` completed and its store now shows the listed objects.
    pub(super) fn record_listed(&self, kind: Kind) {
        {
            let mut status = self.lock();
            status.listed.insert(kind);
            status.generation += 1;
        }
        self.changed.notify_all();
    }

    pub(super) fn record_error(&self, kind: Kind, error: &dyn std::fmt::Display) {
        let mut status = self.lock();
        status.watch_errors += 1;
        status.last_error = Some(format!("{}: {error}", kind.plural()));
    }

    /// Blocks until the generation is above `seen` or `timeout` passes; returns the generation.
    pub(super) fn wait_for_change(&self, seen: u64, timeout: Duration) -> u64 {
        let status = self.lock();
        let (status, _) = self
            .changed
            .wait_timeout_while(status, timeout, |status| status.generation <= seen)
            .unwrap_or_else(PoisonError::into_inner);
        status.generation
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::thread;

    use super::*;

    #[test]
    fn ready_only_when_every_watched_kind_is_listed() {
        let progress = Progress::default();
        for kind in &WATCHED_KINDS[1..] {
            progress.record_listed(*kind);
        }
        assert!(!progress.is_ready());
        progress.record_listed(WATCHED_KINDS[0]);
        assert!(progress.is_ready());
        assert_eq!(progress.generation(), WATCHED_KINDS.len() as u64);
    }

    #[test]
    fn errors_do_not_move_the_generation() {
        let progress = Progress::default();
        progress.record_error(Kind::Pod, &"connection refused");
        let status = progress.status();
        assert_eq!(status.generation, 0);
        assert_eq!(status.watch_errors, 1);
        assert_eq!(
            status.last_error.as_deref(),
            Some("pods: connection refused")
        );
    }

    #[test]
    fn a_waiter_wakes_on_change_and_times_out_without_one() {
        let progress = Arc::new(Progress::default());
        assert_eq!(progress.wait_for_change(0, Duration::from_millis(10)), 0);
        let recorder = Arc::clone(&progress);
        let handle = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            recorder.record_change();
        });
        assert_eq!(progress.wait_for_change(0, Duration::from_secs(10)), 1);
        handle.join().unwrap();
    }
}
