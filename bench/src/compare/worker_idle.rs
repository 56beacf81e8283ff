//! `--worker-idle`: what ferroplane's workers do between packets, written into the node
//! configuration the harness generates as `workers.idle` (and `workers.spin`).
//!
//! Invariants: the harness writes the keys only when asked (no option: the node's default,
//! nothing written); `busy-poll` writes no spin (the node refuses one), `spin:N` writes
//! `idle: adaptive` with a spin of N microseconds, 0 to 10,000 (the node's own bound), and
//! `keep-warm:N` `idle: keep-warm` with that spin; the rest of the configuration is kept line
//! for line.

use std::fmt;
use std::str::FromStr;

use super::Result;
use super::worker_sched::with_worker_keys;

/// The longest spin the node accepts (`workers.spin`), in microseconds.
const MAX_SPIN_US: u32 = 10_000;

/// One idle mode for the workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerIdle {
    /// Never sleep.
    BusyPoll,
    /// Poll this many microseconds after the last packet, then sleep on the ports.
    Spin(u32),
    /// Sleep at once; a SCHED_IDLE companion keeps the CPU warm this many microseconds.
    KeepWarm(u32),
}

impl FromStr for WorkerIdle {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<WorkerIdle, String> {
        if text == "busy-poll" {
            return Ok(WorkerIdle::BusyPoll);
        }
        let (make, micros): (fn(u32) -> WorkerIdle, &str) =
            if let Some(micros) = text.strip_prefix("spin:") {
                (WorkerIdle::Spin, micros)
            } else if let Some(micros) = text.strip_prefix("keep-warm:") {
                (WorkerIdle::KeepWarm, micros)
            } else {
                return Err(format!(
                    "{text:?}: expected busy-poll, spin:MICROSECONDS or keep-warm:MICROSECONDS"
                ));
            };
        let micros = micros.strip_suffix("us").unwrap_or(micros);
        match micros.parse::<u32>() {
            Ok(us) if us <= MAX_SPIN_US => Ok(make(us)),
            _ => Err(format!(
                "{text:?}: the spin must be 0 to {MAX_SPIN_US} microseconds"
            )),
        }
    }
}

impl fmt::Display for WorkerIdle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkerIdle::BusyPoll => f.write_str("busy-poll"),
            WorkerIdle::Spin(us) => write!(f, "spin {us}us"),
            WorkerIdle::KeepWarm(us) => write!(f, "keep-warm {us}us"),
        }
    }
}

impl WorkerIdle {
    /// Column-key fragment: `busypoll`, `spin200us`.
    pub fn key(self) -> String {
        match self {
            WorkerIdle::BusyPoll => "busypoll".to_owned(),
            WorkerIdle::Spin(us) => format!("spin{us}us"),
            WorkerIdle::KeepWarm(us) => format!("keepwarm{us}us"),
        }
    }

    /// The `workers:` keys, in order.
    fn keys(self) -> Vec<(&'static str, String)> {
        match self {
            WorkerIdle::BusyPoll => vec![("idle", "busy-poll".to_owned())],
            WorkerIdle::Spin(us) => {
                vec![("idle", "adaptive".to_owned()), ("spin", format!("{us}us"))]
            }
            WorkerIdle::KeepWarm(us) => {
                vec![
                    ("idle", "keep-warm".to_owned()),
                    ("spin", format!("{us}us")),
                ]
            }
        }
    }
}

/// `config` (a testbed `node.yaml`) with `workers.idle` (and `workers.spin`) set to `idle`,
/// replacing any earlier values of both.
pub fn with_worker_idle(config: &str, idle: WorkerIdle) -> Result<String> {
    with_worker_keys(config, &["idle", "spin"], &idle.keys())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_modes_parse_within_the_nodes_bounds() {
        assert_eq!("busy-poll".parse(), Ok(WorkerIdle::BusyPoll));
        assert_eq!("spin:200".parse(), Ok(WorkerIdle::Spin(200)));
        assert_eq!("spin:1000us".parse(), Ok(WorkerIdle::Spin(1000)));
        assert_eq!("keep-warm:50".parse(), Ok(WorkerIdle::KeepWarm(50)));
        for bad in [
            "busy",
            "spin",
            "spin:",
            "spin:10001",
            "spin:-1",
            "spin:5ms",
            "keep-warm:10001",
            "warm:50",
            "",
        ] {
            assert!(bad.parse::<WorkerIdle>().is_err(), "{bad}");
        }
        assert_eq!(WorkerIdle::Spin(50).key(), "spin50us");
        assert_eq!(WorkerIdle::BusyPoll.to_string(), "busy-poll");
    }

    #[test]
    fn the_idle_keys_replace_earlier_ones_under_workers() {
        let config = "nodeName: n\nworkers:\n  count: 1\n  spin: 50us\noverlay: vxlan\n";
        let spin = with_worker_idle(config, WorkerIdle::Spin(1000)).unwrap();
        assert_eq!(
            spin,
            "nodeName: n\nworkers:\n  idle: adaptive\n  spin: 1000us\n  count: 1\noverlay: vxlan\n"
        );
        let busy = with_worker_idle(&spin, WorkerIdle::BusyPoll).unwrap();
        assert_eq!(
            busy,
            "nodeName: n\nworkers:\n  idle: busy-poll\n  count: 1\noverlay: vxlan\n"
        );
        let warm = with_worker_idle(&busy, WorkerIdle::KeepWarm(50)).unwrap();
        assert_eq!(
            warm,
            "nodeName: n\nworkers:\n  idle: keep-warm\n  spin: 50us\n  count: 1\noverlay: vxlan\n"
        );
        assert!(with_worker_idle("nodeName: n\n", WorkerIdle::BusyPoll).is_err());
    }
}
