//! `testbed load`: steady client load from inside a pod while the cluster changes. One thread
//! opens a new TCP connection per request at a fixed interval (each one request, like an HTTP
//! client without keep-alive) and records every outcome; `hold` more threads each keep one
//! connection open and send a request on it every [`HELD_INTERVAL`], recording the backend it
//! stays on and whether, and when, it was cut.
//!
//! Invariants: the run ends after `duration` (plus at most one timeout); every wait is bounded
//! by the timeout; the report counts every request exactly once.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::netexec::parse_answer;
use crate::probe::{Outcome, Protocol, probe};

const HELD_INTERVAL: Duration = Duration::from_millis(100);

pub struct LoadOptions {
    pub target: SocketAddr,
    pub duration: Duration,
    pub interval: Duration,
    pub timeout: Duration,
    pub hold: usize,
}

/// A new-connection request that did not get its answer.
#[derive(Debug, Serialize)]
pub struct Failure {
    /// Milliseconds since the start of the run.
    pub at_ms: u64,
    pub result: Outcome,
    /// How long the failed attempt took (a refusal is immediate, a timeout is not).
    pub took_ms: u64,
}

/// One long-lived connection.
#[derive(Debug, Serialize)]
pub struct Held {
    /// The pod that answered its first request (every later answer is checked against it).
    pub backend: Option<String>,
    pub requests: usize,
    /// When it stopped working, if it did (milliseconds since the start of the run).
    pub cut_at_ms: Option<u64>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct LoadReport {
    /// When the run started (milliseconds since the Unix epoch), to align `at_ms` with
    /// other clocks.
    pub started_unix_ms: u64,
    pub requests: usize,
    pub connected: usize,
    pub refused: usize,
    pub timeout: usize,
    pub answered_by: BTreeMap<String, usize>,
    pub failures: Vec<Failure>,
    pub held: Vec<Held>,
}

/// Runs the load; must run inside the client pod's namespace.
pub fn run(options: &LoadOptions) -> LoadReport {
    let started = Instant::now();
    std::thread::scope(|scope| {
        let held: Vec<_> = (0..options.hold)
            .map(|_| scope.spawn(|| hold(options, started)))
            .collect();
        let mut report = new_connections(options, started);
        report.held = held.into_iter().filter_map(|h| h.join().ok()).collect();
        report
    })
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn new_connections(options: &LoadOptions, started: Instant) -> LoadReport {
    let mut report = LoadReport {
        started_unix_ms: unix_ms(),
        requests: 0,
        connected: 0,
        refused: 0,
        timeout: 0,
        answered_by: BTreeMap::new(),
        failures: Vec::new(),
        held: Vec::new(),
    };
    let mut next = Instant::now();
    while started.elapsed() < options.duration {
        let at_ms = millis(started);
        let attempt = Instant::now();
        let result = probe(options.target, Protocol::Tcp, options.timeout, 1);
        report.requests += 1;
        match (result.result, result.answered_by) {
            (Outcome::Connected, Some(pod)) => {
                report.connected += 1;
                *report.answered_by.entry(pod).or_default() += 1;
            }
            (outcome, _) => {
                match outcome {
                    Outcome::Refused => report.refused += 1,
                    // Connected without an answer counts as a timeout of the request.
                    Outcome::Timeout | Outcome::Connected => report.timeout += 1,
                }
                report.failures.push(Failure {
                    at_ms,
                    result: outcome,
                    took_ms: millis(attempt),
                });
            }
        }
        next += options.interval;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        } else {
            next = Instant::now();
        }
    }
    report
}

fn hold(options: &LoadOptions, started: Instant) -> Held {
    let mut held = Held {
        backend: None,
        requests: 0,
        cut_at_ms: None,
        error: None,
    };
    let result = (|| -> std::io::Result<()> {
        let stream = TcpStream::connect_timeout(&options.target, options.timeout)?;
        stream.set_read_timeout(Some(options.timeout))?;
        let mut writer = stream.try_clone()?;
        let mut reader = BufReader::new(stream);
        while started.elapsed() < options.duration {
            writer.write_all(b"held\n")?;
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let pod = parse_answer(&line).map(|(pod, _)| pod);
            match (&held.backend, pod) {
                (None, pod) => held.backend = pod,
                (Some(first), Some(pod)) if *first == pod => {}
                (Some(first), other) => {
                    return Err(std::io::Error::other(format!(
                        "answered by {other:?}, not {first}"
                    )));
                }
            }
            held.requests += 1;
            std::thread::sleep(HELD_INTERVAL);
        }
        Ok(())
    })();
    if let Err(e) = result {
        held.cut_at_ms = Some(millis(started));
        held.error = Some(e.to_string());
    }
    held
}
