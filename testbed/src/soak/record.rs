//! The soak's book: every request counted per minute and kind of traffic, every failure with
//! its time and kind, every change with its window, every long-lived connection's fate, and
//! the intruder's attempts. Shared by the load, change and sampler threads.
//!
//! Invariants: times are milliseconds since the soak's start (one clock for everything); each
//! request is counted exactly once, as a success or as one failure.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

/// A kind of traffic of the load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Traffic {
    /// A new TCP connection per request to the churned Service.
    NewTcp,
    /// A new UDP socket per request to the churned Service.
    Udp,
    /// An A lookup through kube-dns.
    Dns,
    /// A request on a long-lived connection.
    Held,
    /// The intruder's connection, allowed or denied by the policy.
    Intruder,
}

impl Traffic {
    pub const ALL: [Traffic; 5] = [
        Traffic::NewTcp,
        Traffic::Udp,
        Traffic::Dns,
        Traffic::Held,
        Traffic::Intruder,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Traffic::NewTcp => "new-tcp",
            Traffic::Udp => "udp",
            Traffic::Dns => "dns",
            Traffic::Held => "held",
            Traffic::Intruder => "intruder",
        }
    }
}

/// A request that did not get its answer.
#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    pub at_ms: u64,
    pub took_ms: u64,
    pub traffic: Traffic,
    pub client: String,
    /// refused, timeout, no-answer, wrong-answer, ...
    pub kind: String,
    /// The disruptive change whose window it falls in, if any (filled in by the verdict).
    pub window: Option<String>,
}

/// One change to the cluster and when it ran.
#[derive(Clone, Debug, Serialize)]
pub struct Window {
    pub change: String,
    pub start_ms: u64,
    pub end_ms: u64,
    pub disruptive: bool,
    /// Why the change itself failed, if it did (the soak stops then).
    pub error: Option<String>,
}

/// One long-lived connection, from its client to the end of the soak.
#[derive(Clone, Debug, Serialize)]
pub struct HeldConnection {
    pub client: String,
    pub backend: Option<String>,
    pub requests: u64,
    /// Answers slower than the stall threshold (e.g. while its node restarted).
    pub stalls: u64,
    pub longest_wait_ms: u64,
    pub lost_at_ms: Option<u64>,
    pub error: Option<String>,
}

/// One attempt of the intruder, judged later against the policy's windows.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Attempt {
    pub at_ms: u64,
    pub took_ms: u64,
    pub connected: bool,
    /// How it failed when it did (timeout, refused, no-answer).
    pub failure: Option<&'static str>,
}

#[derive(Default)]
struct Book {
    /// minute -> traffic -> requests.
    requests: BTreeMap<u64, BTreeMap<Traffic, u64>>,
    failures: Vec<Failure>,
    windows: Vec<Window>,
    held: Vec<HeldConnection>,
    intruder: Vec<Attempt>,
}

/// What the book holds at the end.
pub struct Recorded {
    pub requests: BTreeMap<u64, BTreeMap<Traffic, u64>>,
    pub failures: Vec<Failure>,
    pub windows: Vec<Window>,
    pub held: Vec<HeldConnection>,
    pub intruder: Vec<Attempt>,
}

pub struct Recorder {
    started: Instant,
    deadline: Duration,
    stop: std::sync::Arc<AtomicBool>,
    book: Mutex<Book>,
}

impl Recorder {
    /// A book for a soak of `duration` from now; `stop` ends it early (a signal).
    pub fn new(duration: Duration, stop: std::sync::Arc<AtomicBool>) -> Recorder {
        Recorder {
            started: Instant::now(),
            deadline: duration,
            stop,
            book: Mutex::new(Book::default()),
        }
    }

    /// Milliseconds since the start.
    pub fn now_ms(&self) -> u64 {
        millis(self.started.elapsed())
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Whether the soak is over (its duration passed, or it was stopped).
    pub fn over(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.started.elapsed() >= self.deadline
    }

    /// Ends the soak early (a change failed).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    pub fn stopped_early(&self) -> bool {
        self.stop.load(Ordering::Relaxed) && self.started.elapsed() < self.deadline
    }

    /// Sleeps until `at` (since the start), waking early when the soak ends.
    pub fn sleep_until(&self, at: Duration) {
        while !self.over() {
            let Some(left) = at.checked_sub(self.started.elapsed()) else {
                return;
            };
            std::thread::sleep(left.min(Duration::from_millis(200)));
        }
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one request started at `at_ms`; `failed` says how it failed, if it did.
    pub fn request(&self, traffic: Traffic, client: &str, at_ms: u64, failed: Option<&str>) {
        let took_ms = self.now_ms().saturating_sub(at_ms);
        let mut book = self.book();
        *book
            .requests
            .entry(at_ms / 60_000)
            .or_default()
            .entry(traffic)
            .or_default() += 1;
        if let Some(kind) = failed {
            book.failures.push(Failure {
                at_ms,
                took_ms,
                traffic,
                client: client.to_owned(),
                kind: kind.to_owned(),
                window: None,
            });
        }
    }

    pub fn window(&self, window: Window) {
        self.book().windows.push(window);
    }

    pub fn held(&self, held: HeldConnection) {
        self.book().held.push(held);
    }

    pub fn intruder(&self, attempt: Attempt) {
        self.book().intruder.push(attempt);
    }

    pub fn into_recorded(self) -> Recorded {
        let book = self
            .book
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        Recorded {
            requests: book.requests,
            failures: book.failures,
            windows: book.windows,
            held: book.held,
            intruder: book.intruder,
        }
    }
}

pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
