//! The soak's verdict: each rule stated, checked against the book and the samples, with what
//! was seen. The soak passes only when every rule holds.
//!
//! Rules: every change ran and the soak ran its whole duration; no long-lived connection was
//! lost; every failed request overlaps the window of a disruptive change (a node restart or
//! crash, a crashed backend) plus [`Bounds::grace`]; the intruder never got an answer while
//! the policy was in force (and, like any request, failed only inside a window while it was
//! not); after warm-up, no node process grew its anonymous RSS, open fds or threads past the
//! bounds; the flow table never refused a new flow for being full.

use std::collections::BTreeMap;

use serde::Serialize;

use super::plan::POLICY;
use super::record::{Attempt, Failure, Recorded, Traffic, Window};
use super::sample::Sample;

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Bounds {
    /// Failures up to this long after a disruptive change ended are still its own.
    pub grace_ms: u64,
    /// How long after the policy changes before the intruder's outcome must follow it.
    pub policy_grace_ms: u64,
    /// Samples taken this early in the soak, or in a process's life, are warm-up.
    pub warm_up_ms: u64,
    /// A process is judged for growth only over at least this span after its warm-up.
    pub min_span_ms: u64,
    pub rss_anon_growth_kib: u64,
    pub fd_growth: u64,
    pub thread_growth: u64,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            grace_ms: 5_000,
            policy_grace_ms: 3_000,
            warm_up_ms: 30_000,
            min_span_ms: 60_000,
            rss_anon_growth_kib: 32 * 1024,
            fd_growth: 16,
            thread_growth: 4,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Rule {
    pub rule: String,
    pub pass: bool,
    pub seen: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub pass: bool,
    pub rules: Vec<Rule>,
}

/// Growth of one process over its judged span.
#[derive(Clone, Debug, Serialize)]
pub struct Growth {
    pub node: String,
    pub pid: u32,
    pub from_ms: u64,
    pub to_ms: u64,
    pub rss_anon_kib: i64,
    pub rss_kib: i64,
    pub fds: i64,
    pub threads: i64,
}

/// Whether the policy was in force at `at_ms` beyond doubt, not in force beyond doubt, or
/// changing (within the grace of a change).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PolicyState {
    On,
    Off,
    Changing,
}

fn policy_state(windows: &[Window], attempt: &Attempt, grace_ms: u64) -> PolicyState {
    let mut on = false;
    for w in windows
        .iter()
        .filter(|w| w.change.starts_with(&format!("policy {POLICY}")))
    {
        let end = w.end_ms + grace_ms;
        if attempt.at_ms + attempt.took_ms >= w.start_ms && attempt.at_ms <= end {
            return PolicyState::Changing;
        }
        if w.end_ms <= attempt.at_ms {
            on = w.change.ends_with(" on");
        }
    }
    if on {
        PolicyState::On
    } else {
        PolicyState::Off
    }
}

/// Adds the intruder's unexpected denials to the failures; returns the attempts that got an
/// answer while the policy was in force, and how many were denied as expected.
pub fn judge_intruder(recorded: &mut Recorded, bounds: &Bounds) -> (Vec<Attempt>, usize) {
    let mut leaks = Vec::new();
    let mut denied = 0;
    for attempt in &recorded.intruder {
        match (
            policy_state(&recorded.windows, attempt, bounds.policy_grace_ms),
            attempt.connected,
        ) {
            (PolicyState::On, true) => leaks.push(*attempt),
            (PolicyState::On, false) => denied += 1,
            (PolicyState::Off, false) => recorded.failures.push(Failure {
                at_ms: attempt.at_ms,
                took_ms: attempt.took_ms,
                traffic: Traffic::Intruder,
                client: super::plan::INTRUDER.to_owned(),
                kind: format!(
                    "denied-without-policy ({})",
                    attempt.failure.unwrap_or("unknown")
                ),
                window: None,
            }),
            _ => {}
        }
    }
    (leaks, denied)
}

/// Names the disruptive window each failure falls in.
pub fn place_failures(recorded: &mut Recorded, bounds: &Bounds) {
    let windows: Vec<&Window> = recorded.windows.iter().filter(|w| w.disruptive).collect();
    for failure in &mut recorded.failures {
        failure.window = windows
            .iter()
            .find(|w| {
                failure.at_ms <= w.end_ms + bounds.grace_ms
                    && failure.at_ms + failure.took_ms >= w.start_ms
            })
            .map(|w| w.change.clone());
    }
}

fn delta(to: Option<u64>, from: Option<u64>) -> Option<i64> {
    Some(i64::try_from(to?).ok()? - i64::try_from(from?).ok()?)
}

/// The growth of every process that lived long enough past its warm-up to be judged.
pub fn growth(samples: &[Sample], bounds: &Bounds) -> Vec<Growth> {
    let mut by_process: BTreeMap<(String, u32), Vec<&Sample>> = BTreeMap::new();
    for s in samples
        .iter()
        .filter(|s| s.rss_anon_kib.is_some() && s.fds.is_some())
    {
        by_process
            .entry((s.node.clone(), s.pid))
            .or_default()
            .push(s);
    }
    let mut grown = Vec::new();
    for ((node, pid), samples) in by_process {
        let Some(born) = samples.first().map(|s| s.at_ms) else {
            continue;
        };
        let judged: Vec<&&Sample> = samples
            .iter()
            .filter(|s| s.at_ms >= bounds.warm_up_ms && s.at_ms >= born + bounds.warm_up_ms)
            .collect();
        let (Some(first), Some(last)) = (judged.first(), judged.last()) else {
            continue;
        };
        if last.at_ms - first.at_ms < bounds.min_span_ms {
            continue;
        }
        grown.push(Growth {
            node,
            pid,
            from_ms: first.at_ms,
            to_ms: last.at_ms,
            rss_anon_kib: delta(last.rss_anon_kib, first.rss_anon_kib).unwrap_or(0),
            rss_kib: delta(last.rss_kib, first.rss_kib).unwrap_or(0),
            fds: delta(last.fds, first.fds).unwrap_or(0),
            threads: delta(last.threads, first.threads).unwrap_or(0),
        });
    }
    grown
}

pub struct Judged<'a> {
    pub recorded: &'a Recorded,
    pub samples: &'a [Sample],
    pub growth: &'a [Growth],
    pub leaks: &'a [Attempt],
    pub denied: usize,
    pub stopped_early: bool,
}

pub fn verdict(judged: &Judged<'_>, bounds: &Bounds) -> Verdict {
    let recorded = judged.recorded;
    let mut rules = Vec::new();
    let mut rule = |rule: String, pass: bool, seen: String| rules.push(Rule { rule, pass, seen });

    let errors: Vec<String> = recorded
        .windows
        .iter()
        .filter_map(|w| Some(format!("{}: {}", w.change, w.error.as_ref()?)))
        .collect();
    rule(
        "every change succeeds and the soak runs its whole duration".to_owned(),
        errors.is_empty() && !judged.stopped_early,
        format!(
            "{} changes{}{}",
            recorded.windows.len(),
            if judged.stopped_early {
                ", stopped early"
            } else {
                ""
            },
            if errors.is_empty() {
                String::new()
            } else {
                format!(", failed: {}", errors.join("; "))
            }
        ),
    );

    let lost: Vec<String> = recorded
        .held
        .iter()
        .filter_map(|h| {
            Some(format!(
                "{} -> {} at {} ms: {}",
                h.client,
                h.backend.as_deref().unwrap_or("?"),
                h.lost_at_ms?,
                h.error.as_deref().unwrap_or("?")
            ))
        })
        .collect();
    let stalls: u64 = recorded.held.iter().map(|h| h.stalls).sum();
    let longest = recorded
        .held
        .iter()
        .map(|h| h.longest_wait_ms)
        .max()
        .unwrap_or(0);
    rule(
        "no long-lived connection is lost (node restarts and crashes included)".to_owned(),
        lost.is_empty() && !recorded.held.is_empty(),
        format!(
            "{} of {} lost; {stalls} stalled answers, longest wait {longest} ms{}",
            lost.len(),
            recorded.held.len(),
            if lost.is_empty() {
                String::new()
            } else {
                format!(": {}", lost.join("; "))
            }
        ),
    );

    let outside: Vec<&Failure> = recorded
        .failures
        .iter()
        .filter(|f| f.window.is_none())
        .collect();
    rule(
        format!(
            "requests fail only inside the window of a node restart or a crashed backend (+{} ms)",
            bounds.grace_ms
        ),
        outside.is_empty(),
        format!(
            "{} failed, {} outside a window{}",
            recorded.failures.len(),
            outside.len(),
            outside
                .iter()
                .take(5)
                .map(|f| format!(
                    "; {} {} {} at {} ms",
                    f.client,
                    f.traffic.name(),
                    f.kind,
                    f.at_ms
                ))
                .collect::<String>()
        ),
    );

    rule(
        format!(
            "the intruder never gets an answer while {POLICY} is in force (+{} ms to take effect)",
            bounds.policy_grace_ms
        ),
        judged.leaks.is_empty() && judged.denied > 0,
        format!(
            "{} denied as expected, {} answered{}",
            judged.denied,
            judged.leaks.len(),
            judged
                .leaks
                .first()
                .map(|a| format!(", first at {} ms", a.at_ms))
                .unwrap_or_default()
        ),
    );

    let too_much: Vec<String> = judged
        .growth
        .iter()
        .filter(|g| {
            g.rss_anon_kib > i64::try_from(bounds.rss_anon_growth_kib).unwrap_or(i64::MAX)
                || g.fds > i64::try_from(bounds.fd_growth).unwrap_or(i64::MAX)
                || g.threads > i64::try_from(bounds.thread_growth).unwrap_or(i64::MAX)
        })
        .map(|g| format!("{} pid {}", g.node, g.pid))
        .collect();
    rule(
        format!(
            "after warm-up ({} s), no node process grows anonymous RSS by more than {} MiB, fds by more than {} or threads by more than {} (each process judged over at least {} s)",
            bounds.warm_up_ms / 1000,
            bounds.rss_anon_growth_kib / 1024,
            bounds.fd_growth,
            bounds.thread_growth,
            bounds.min_span_ms / 1000
        ),
        too_much.is_empty(),
        if judged.growth.is_empty() {
            "no process lived long enough to be judged".to_owned()
        } else {
            judged
                .growth
                .iter()
                .map(|g| {
                    format!(
                        "{} pid {} over {} s: anon RSS {:+} KiB, fds {:+}, threads {:+}",
                        g.node,
                        g.pid,
                        (g.to_ms - g.from_ms) / 1000,
                        g.rss_anon_kib,
                        g.fds,
                        g.threads
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        },
    );

    let full = judged
        .samples
        .iter()
        .filter_map(|s| s.flow_insert_failed)
        .max()
        .unwrap_or(0);
    let peak = judged
        .samples
        .iter()
        .filter_map(|s| s.flows)
        .max()
        .unwrap_or(0);
    rule(
        "the flow table never refuses a new flow for being full".to_owned(),
        full == 0,
        format!("{full} refused; peak {peak} entries"),
    );

    Verdict {
        pass: rules.iter().all(|r| r.pass),
        rules,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::soak::record::HeldConnection;

    fn window(change: &str, start_ms: u64, end_ms: u64, disruptive: bool) -> Window {
        Window {
            change: change.to_owned(),
            start_ms,
            end_ms,
            disruptive,
            error: None,
        }
    }

    fn failure(at_ms: u64, took_ms: u64) -> Failure {
        Failure {
            at_ms,
            took_ms,
            traffic: Traffic::NewTcp,
            client: "store-fe".to_owned(),
            kind: "timeout".to_owned(),
            window: None,
        }
    }

    fn attempt(at_ms: u64, connected: bool) -> Attempt {
        Attempt {
            at_ms,
            took_ms: 10,
            connected,
            failure: (!connected).then_some("timeout"),
        }
    }

    fn recorded(windows: Vec<Window>, failures: Vec<Failure>, intruder: Vec<Attempt>) -> Recorded {
        Recorded {
            requests: BTreeMap::new(),
            failures,
            windows,
            held: vec![HeldConnection {
                client: "store-fe".to_owned(),
                backend: Some("soak-held-1".to_owned()),
                requests: 10,
                stalls: 0,
                longest_wait_ms: 5,
                lost_at_ms: None,
                error: None,
            }],
            intruder,
        }
    }

    #[test]
    fn a_failure_belongs_to_a_disruptive_window_it_overlaps_within_the_grace() {
        let bounds = Bounds::default();
        let mut book = recorded(
            vec![
                window("restart-node node-1", 10_000, 11_000, true),
                window("scale up", 20_000, 21_000, false),
            ],
            vec![
                // Started before the restart, still waiting when it began.
                failure(9_000, 1_500),
                // Within the grace after it.
                failure(11_000 + bounds.grace_ms, 100),
                // After the grace.
                failure(11_001 + bounds.grace_ms, 100),
                // Ended before it began.
                failure(8_000, 1_000),
                // Inside a change that must not fail anything.
                failure(20_500, 100),
            ],
            Vec::new(),
        );
        place_failures(&mut book, &bounds);
        let placed: Vec<bool> = book.failures.iter().map(|f| f.window.is_some()).collect();
        assert_eq!(placed, [true, true, false, false, false]);
        assert_eq!(
            book.failures[0].window.as_deref(),
            Some("restart-node node-1")
        );
    }

    #[test]
    fn the_intruder_is_judged_by_the_policy_in_force_outside_its_grace() {
        let bounds = Bounds::default();
        let grace = bounds.policy_grace_ms;
        let on = format!("policy {POLICY} on");
        let off = format!("policy {POLICY} off");
        let mut book = recorded(
            vec![
                window(&on, 10_000, 10_500, false),
                window(&off, 30_000, 30_500, false),
            ],
            Vec::new(),
            vec![
                attempt(5_000, true),               // before: answered, fine
                attempt(5_500, false),              // before: denied without a policy
                attempt(10_600, true),              // taking effect: not judged
                attempt(10_500 + grace + 1, false), // in force: denied
                attempt(20_000, true),              // in force: a leak
                attempt(30_500 + grace + 1, true),  // lifted: answered
            ],
        );
        let (leaks, denied) = judge_intruder(&mut book, &bounds);
        assert_eq!(denied, 1);
        assert_eq!(leaks.len(), 1);
        assert_eq!(leaks[0].at_ms, 20_000);
        assert_eq!(book.failures.len(), 1);
        assert_eq!(book.failures[0].kind, "denied-without-policy (timeout)");
        assert_eq!(book.failures[0].at_ms, 5_500);
    }

    fn sample(at_ms: u64, pid: u32, rss_anon_kib: u64, fds: u64) -> Sample {
        Sample {
            at_ms,
            node: "node-1".to_owned(),
            pid,
            rss_kib: Some(rss_anon_kib + 40_000),
            rss_anon_kib: Some(rss_anon_kib),
            fds: Some(fds),
            threads: Some(5),
            flows: Some(100),
            flow_capacity: Some(16_384),
            flow_insert_failed: Some(0),
        }
    }

    #[test]
    fn growth_is_measured_per_process_after_its_warm_up() {
        let bounds = Bounds::default();
        let warm = bounds.warm_up_ms;
        let mut samples: Vec<Sample> = (0..=40)
            .map(|i| sample(i * 5_000, 1, 15_000 + i * 2_000, 17 + i))
            .collect();
        // A second process that lives too briefly past its warm-up to be judged.
        samples.extend((0..10).map(|i| sample(300_000 + i * 5_000, 2, 90_000, 30)));
        let grown = growth(&samples, &bounds);
        assert_eq!(grown.len(), 1);
        let g = &grown[0];
        assert_eq!((g.pid, g.from_ms, g.to_ms), (1, warm, 200_000));
        let first = warm / 5_000;
        assert_eq!(g.rss_anon_kib, i64::try_from((40 - first) * 2_000).unwrap());
        assert_eq!(g.fds, i64::try_from(40 - first).unwrap());
        let book = recorded(Vec::new(), Vec::new(), vec![attempt(1, false)]);
        let judged = Judged {
            recorded: &book,
            samples: &samples,
            growth: &grown,
            leaks: &[],
            denied: 1,
            stopped_early: false,
        };
        let verdict = verdict(&judged, &bounds);
        let failed: Vec<&str> = verdict
            .rules
            .iter()
            .filter(|r| !r.pass)
            .map(|r| r.rule.as_str())
            .collect();
        assert!(!verdict.pass);
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert!(failed[0].contains("anonymous RSS"), "{failed:?}");
    }
}
