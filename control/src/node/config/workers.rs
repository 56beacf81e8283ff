//! `workers.scheduling`, `workers.idle` and `workers.spin`: how worker threads hold their
//! cores, from the file and the `--worker-policy` / `--worker-priority` flags to
//! [`WorkerSchedule`].
//!
//! Invariants: a resolved fifo or rr class has a priority in 1..=99 and no slice; an other
//! class has priority 0 and a slice, if any, in 100us..=100ms; a spin is only given with idle
//! adaptive or keep-warm and is at most 10ms. `explicit` is true when the file or a flag named the class,
//! so a refused default may fall back while a refused choice stops the start.

use std::time::Duration;

use dataplane::io::thread::{SchedPolicy, ThreadScheduling};
use dataplane::worker::{DEFAULT_SPIN, IdleMode};
use serde::Deserialize;

use super::units::ConfigDuration;
use super::{ConfigError, Overrides};

/// `workers.scheduling.policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    /// SCHED_OTHER: share the core with every other task (EEVDF).
    Other,
    /// SCHED_FIFO: run as soon as a packet wakes the worker.
    Fifo,
    /// SCHED_RR: fifo with round-robin among equal priorities.
    Rr,
}

/// `workers.idle`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum IdleKind {
    /// Poll for `workers.spin` after the last packet, then sleep until a port is readable.
    #[default]
    #[serde(rename = "adaptive")]
    Adaptive,
    /// Sleep after every empty round while a SCHED_IDLE companion keeps the CPU out of halt
    /// for `workers.spin` (it gives way to every other task).
    #[serde(rename = "keep-warm", alias = "keep_warm")]
    KeepWarm,
    /// Never sleep: for cores dedicated to the workers.
    #[serde(rename = "busy-poll", alias = "busy_poll")]
    BusyPoll,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SchedulingFile {
    pub policy: PolicyKind,
    pub priority: Option<u32>,
    pub slice: Option<ConfigDuration>,
}

/// The class a worker takes when the node names none: SCHED_FIFO at the lowest real-time
/// priority wins the core when a packet arrives (see control/src/node/README.md for the
/// measurement that chose it).
pub const DEFAULT_CLASS: ThreadScheduling = ThreadScheduling {
    policy: SchedPolicy::Fifo,
    priority: 1,
    slice_ns: None,
};

/// What a default class that the machine refuses falls back to: SCHED_OTHER with a 100 us
/// EEVDF slice hint (a woken worker may preempt sooner than with the base slice).
pub const FALLBACK_CLASS: ThreadScheduling = ThreadScheduling {
    policy: SchedPolicy::Other,
    priority: 0,
    slice_ns: Some(100_000),
};

/// How the workers hold their cores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerSchedule {
    pub class: ThreadScheduling,
    /// Named in the file or by a flag (a refusal is an error, not a fallback).
    pub explicit: bool,
    pub idle: IdleMode,
}

fn err(field: &str, message: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("{field}: {message}"))
}

const SLICE_RANGE: (Duration, Duration) = (Duration::from_micros(100), Duration::from_millis(100));
const MAX_SPIN: Duration = Duration::from_millis(10);

/// Resolves the class (flags > file > default) and the idle mode.
pub fn resolve_schedule(
    file: Option<SchedulingFile>,
    idle: Option<IdleKind>,
    spin: Option<ConfigDuration>,
    flags: &Overrides,
) -> Result<WorkerSchedule, ConfigError> {
    let (file_policy, file_priority, slice) = match file {
        Some(f) => (Some(f.policy), f.priority, f.slice.map(|d| d.0)),
        None => (None, None, None),
    };
    let policy = flags.worker_policy.or(file_policy);
    let priority = flags.worker_priority.or(file_priority);
    let explicit = policy.is_some() || priority.is_some();
    let class = match policy {
        None if priority.is_none() => DEFAULT_CLASS,
        None => {
            return Err(err(
                "workers.scheduling.policy",
                "required with a priority (fifo or rr)",
            ));
        }
        Some(PolicyKind::Other) => {
            if priority.is_some_and(|p| p != 0) {
                return Err(err(
                    "workers.scheduling.priority",
                    "only fifo and rr take a priority (other has none)",
                ));
            }
            if let Some(slice) = slice
                && !(SLICE_RANGE.0..=SLICE_RANGE.1).contains(&slice)
            {
                return Err(err(
                    "workers.scheduling.slice",
                    format!("{slice:?} is outside 100us..=100ms"),
                ));
            }
            ThreadScheduling {
                policy: SchedPolicy::Other,
                priority: 0,
                slice_ns: slice.map(|s| s.as_nanos() as u64),
            }
        }
        Some(kind @ (PolicyKind::Fifo | PolicyKind::Rr)) => {
            let priority = priority.unwrap_or(1);
            if !(1..=99).contains(&priority) {
                return Err(err(
                    "workers.scheduling.priority",
                    format!("{priority} is outside 1..=99"),
                ));
            }
            if slice.is_some() {
                return Err(err(
                    "workers.scheduling.slice",
                    "only for policy other (a real-time worker runs until it sleeps)",
                ));
            }
            ThreadScheduling {
                policy: if kind == PolicyKind::Fifo {
                    SchedPolicy::Fifo
                } else {
                    SchedPolicy::Rr
                },
                priority,
                slice_ns: None,
            }
        }
    };
    let idle = match idle.unwrap_or_default() {
        kind @ (IdleKind::Adaptive | IdleKind::KeepWarm) => {
            let spin = spin.map_or(DEFAULT_SPIN, |d| d.0);
            if spin > MAX_SPIN {
                return Err(err(
                    "workers.spin",
                    format!("{spin:?} is longer than 10ms (an idle worker would hold its core)"),
                ));
            }
            if kind == IdleKind::Adaptive {
                IdleMode::Adaptive { spin }
            } else {
                IdleMode::KeepWarm { spin }
            }
        }
        IdleKind::BusyPoll => {
            if spin.is_some() {
                return Err(err(
                    "workers.spin",
                    "only for workers.idle adaptive (busy-poll never sleeps)",
                ));
            }
            IdleMode::BusyPoll
        }
    };
    Ok(WorkerSchedule {
        class,
        explicit,
        idle,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::super::{NodeSettings, parse, resolve};
    use super::*;

    fn resolved(workers: &str, flags: &Overrides) -> Result<NodeSettings, ConfigError> {
        let text = format!("nodeName: n1\nports:\n  uplink:\n    interface: eth0\n{workers}");
        resolve(parse(&text)?, flags)
    }

    fn schedule(workers: &str) -> Result<WorkerSchedule, ConfigError> {
        resolved(workers, &Overrides::default()).map(|s| s.schedule)
    }

    #[test]
    fn the_default_is_fifo_1_adaptive_and_not_explicit() {
        let s = schedule("").unwrap();
        assert_eq!(s.class, DEFAULT_CLASS);
        assert!(!s.explicit);
        assert_eq!(s.idle, IdleMode::Adaptive { spin: DEFAULT_SPIN });
        let example = resolve(
            parse(include_str!("../../../examples/node.yaml")).unwrap(),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(example.schedule.class, DEFAULT_CLASS);
        assert!(example.schedule.explicit, "the example names its class");
    }

    #[test]
    fn each_policy_resolves_with_its_settings() {
        let rr = schedule("workers:\n  scheduling:\n    policy: rr\n    priority: 20\n").unwrap();
        assert_eq!(rr.class.policy, SchedPolicy::Rr);
        assert_eq!(rr.class.priority, 20);
        assert!(rr.explicit);
        let other =
            schedule("workers:\n  scheduling:\n    policy: other\n    slice: 100us\n").unwrap();
        assert_eq!(other.class, FALLBACK_CLASS);
        let busy = schedule("workers:\n  idle: busy-poll\n").unwrap();
        assert_eq!(busy.idle, IdleMode::BusyPoll);
        let warm = schedule("workers:\n  idle: keep-warm\n  spin: 80us\n").unwrap();
        assert_eq!(
            warm.idle,
            IdleMode::KeepWarm {
                spin: Duration::from_micros(80)
            }
        );
        let spin = schedule("workers:\n  idle: adaptive\n  spin: 20us\n").unwrap();
        assert_eq!(
            spin.idle,
            IdleMode::Adaptive {
                spin: Duration::from_micros(20)
            }
        );
    }

    #[test]
    fn flags_override_the_file_class() {
        let flags = Overrides {
            worker_policy: Some(PolicyKind::Other),
            ..Overrides::default()
        };
        let s = resolved("workers:\n  scheduling:\n    policy: fifo\n", &flags).unwrap();
        assert_eq!(s.schedule.class.policy, SchedPolicy::Other);
        let flags = Overrides {
            worker_priority: Some(42),
            ..Overrides::default()
        };
        let s = resolved("workers:\n  scheduling:\n    policy: fifo\n", &flags).unwrap();
        assert_eq!(s.schedule.class.priority, 42);
        let flags = Overrides {
            worker_priority: Some(100),
            ..Overrides::default()
        };
        let e = resolved("", &flags).unwrap_err();
        assert!(e.0.starts_with("workers.scheduling.policy:"), "{e}");
    }

    #[test]
    fn bad_settings_name_their_field() {
        for (workers, field) in [
            (
                "workers:\n  scheduling:\n    policy: fifo\n    priority: 100\n",
                "workers.scheduling.priority: 100 is outside 1..=99",
            ),
            (
                "workers:\n  scheduling:\n    policy: rr\n    priority: 0\n",
                "workers.scheduling.priority:",
            ),
            (
                "workers:\n  scheduling:\n    policy: other\n    priority: 5\n",
                "workers.scheduling.priority:",
            ),
            (
                "workers:\n  scheduling:\n    policy: deadline\n",
                "workers.scheduling.policy:",
            ),
            (
                "workers:\n  scheduling:\n    priority: 5\n",
                "workers.scheduling:",
            ),
            (
                "workers:\n  scheduling:\n    policy: fifo\n    nice: 5\n",
                "workers.scheduling.nice:",
            ),
            (
                "workers:\n  scheduling:\n    policy: other\n    slice: 10us\n",
                "workers.scheduling.slice:",
            ),
            (
                "workers:\n  scheduling:\n    policy: fifo\n    slice: 1ms\n",
                "workers.scheduling.slice:",
            ),
            ("workers:\n  idle: sometimes\n", "workers.idle:"),
            ("workers:\n  spin: 1s\n", "workers.spin:"),
            (
                "workers:\n  idle: busy-poll\n  spin: 20us\n",
                "workers.spin:",
            ),
        ] {
            let e = schedule(workers).unwrap_err();
            assert!(
                e.0.starts_with(field),
                "{workers:?}: {e} does not name {field}"
            );
        }
    }
}
