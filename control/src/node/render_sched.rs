//! How the workers hold their cores, as `/metrics` and `/stats` show it: each worker's
//! scheduling class, its busy and idle time, rounds, sleeps and wakeups.
//!
//! Invariants: reads published worker reports only; a worker whose class could not be read
//! shows policy `unknown`; times are seconds in metrics and nanoseconds in `/stats`.

use std::fmt::Write as _;

use dataplane::worker::WorkerReport;
use serde_json::{Value, json};

fn policy_and_priority(r: &WorkerReport) -> (&'static str, u32) {
    r.scheduling
        .map_or(("unknown", 0), |s| (s.policy.name(), s.priority))
}

/// Busy and idle seconds and the scheduling class of every worker.
pub fn worker_time_metrics(out: &mut String, reports: &[WorkerReport]) {
    for (name, help, pick) in [
        (
            "ferroplane_worker_busy_seconds_total",
            "Time a worker spent in rounds that moved packets.",
            (|r| r.rounds.busy_ns) as fn(&WorkerReport) -> u64,
        ),
        (
            "ferroplane_worker_idle_seconds_total",
            "Time a worker spent in empty rounds and asleep.",
            |r| r.rounds.idle_ns,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        for r in reports {
            let _ = writeln!(
                out,
                "{name}{{worker=\"{}\"}} {:.6}",
                r.worker,
                pick(r) as f64 / 1e9
            );
        }
    }
    let name = "ferroplane_worker_scheduling_info";
    let _ = writeln!(
        out,
        "# HELP {name} A worker's scheduling class (policy, real-time priority); always 1."
    );
    let _ = writeln!(out, "# TYPE {name} gauge");
    for r in reports {
        let (policy, priority) = policy_and_priority(r);
        let _ = writeln!(
            out,
            "{name}{{worker=\"{}\",policy=\"{policy}\",priority=\"{priority}\"}} 1",
            r.worker
        );
    }
}

/// A worker's class and time for `/stats`.
pub fn scheduling_json(r: &WorkerReport) -> Value {
    let (policy, priority) = policy_and_priority(r);
    let rounds = &r.rounds;
    json!({
        "policy": policy,
        "priority": priority,
        "slice_ns": r.scheduling.and_then(|s| s.slice_ns),
        "rounds": rounds.rounds,
        "idle_rounds": rounds.idle_rounds,
        "sleeps": rounds.sleeps,
        "wakeups": rounds.wakeups,
        "empty_wakeups": rounds.empty_wakeups,
        "busy_ns": rounds.busy_ns,
        "idle_ns": rounds.idle_ns,
    })
}

#[cfg(test)]
mod tests {
    use dataplane::io::thread::{SchedPolicy, ThreadScheduling};
    use dataplane::worker::RoundStats;

    use super::*;

    fn report() -> WorkerReport {
        WorkerReport {
            worker: 1,
            rounds: RoundStats {
                rounds: 10,
                wakeups: 3,
                busy_ns: 1_500_000_000,
                idle_ns: 250_000,
                ..RoundStats::default()
            },
            scheduling: Some(ThreadScheduling {
                policy: SchedPolicy::Fifo,
                priority: 7,
                slice_ns: None,
            }),
            ..WorkerReport::default()
        }
    }

    #[test]
    fn metrics_show_class_and_seconds() {
        let mut out = String::new();
        worker_time_metrics(&mut out, &[report(), WorkerReport::default()]);
        assert!(out.contains("ferroplane_worker_busy_seconds_total{worker=\"1\"} 1.500000"));
        assert!(out.contains("ferroplane_worker_idle_seconds_total{worker=\"1\"} 0.000250"));
        assert!(out.contains(
            "ferroplane_worker_scheduling_info{worker=\"1\",policy=\"fifo\",priority=\"7\"} 1"
        ));
        assert!(out.contains(
            "ferroplane_worker_scheduling_info{worker=\"0\",policy=\"unknown\",priority=\"0\"} 1"
        ));
    }

    #[test]
    fn stats_show_class_and_counters() {
        let v = scheduling_json(&report());
        assert_eq!(v["policy"], "fifo");
        assert_eq!(v["priority"], 7);
        assert_eq!(v["wakeups"], 3);
        assert_eq!(v["busy_ns"], 1_500_000_000u64);
        assert!(v["slice_ns"].is_null());
    }
}
