//! Waiting for the state directory's lock without polling: a contended flock is waited for by a
//! blocking `flock(2)` on a helper thread, so the waiter holds it as soon as the holder lets go
//! (a poll that sleeps between tries misses the short gaps between a busy writer's commits,
//! and a node's sync waiting on it is programming latency), bounded by the caller's timeout.
//!
//! Invariants: the helper locks a duplicate of the caller's descriptor (one open file
//! description, so the lock is the caller's); a lock granted after the caller gave up is
//! released at once, when the helper drops the last descriptor.

use std::fs::File;
use std::io;
use std::sync::mpsc;
use std::time::Duration;

/// How a wait ended short of the lock.
pub(super) enum WaitError {
    /// Still held by someone else after the timeout.
    TimedOut,
    /// Locking (or starting the helper) failed.
    Io(io::Error),
}

/// Waits at most `timeout` for `file`'s lock, shared or exclusive.
pub(super) fn wait(file: &File, exclusive: bool, timeout: Duration) -> Result<(), WaitError> {
    let helper_file = file.try_clone().map_err(WaitError::Io)?;
    let (done, result) = mpsc::channel();
    std::thread::Builder::new()
        .name("state-lock-wait".to_owned())
        .spawn(move || {
            let locked = if exclusive {
                helper_file.lock()
            } else {
                helper_file.lock_shared()
            };
            // The caller may have given up: then dropping `helper_file` (the last descriptor)
            // releases what was granted.
            let _ = done.send(locked);
        })
        .map_err(WaitError::Io)?;
    match result.recv_timeout(timeout) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(WaitError::Io(error)),
        Err(_) => Err(WaitError::TimedOut),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock_file(dir: &std::path::Path) -> File {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))
            .unwrap()
    }

    #[test]
    fn a_waiter_gets_the_lock_when_the_holder_lets_go_and_gives_up_at_its_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let holder = lock_file(dir.path());
        holder.lock().unwrap();
        let waiter = lock_file(dir.path());
        assert!(matches!(
            wait(&waiter, false, Duration::from_millis(50)),
            Err(WaitError::TimedOut)
        ));
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(holder);
        });
        assert!(wait(&waiter, false, Duration::from_secs(30)).is_ok());
        release.join().unwrap();
        // The waiter holds it now: an exclusive try from elsewhere fails.
        let other = lock_file(dir.path());
        assert!(other.try_lock().is_err());
        drop(waiter);
        assert!(other.try_lock().is_ok());
    }
}
