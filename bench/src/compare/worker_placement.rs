//! `--testbed-workers`: where the testbed nodes' workers run, written into each node's
//! configuration the way a user would: `default` leaves the testbed's own (one worker, not
//! pinned), `per-cpu` sets `workers.perCpu: true` (a worker pinned on each CPU, every port
//! steering frames to the worker on the sending CPU) and drops `workers.count`/`cores`.
//!
//! Invariants: `default` writes nothing; the rest of the configuration is kept line for line.

use std::fmt;
use std::str::FromStr;

use super::Result;
use super::worker_sched::with_worker_keys;

/// Where the workers of the testbed's nodes run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Placement {
    /// As the testbed configures them (one worker, default affinity).
    #[default]
    Default,
    /// `workers.perCpu: true`.
    PerCpu,
}

impl FromStr for Placement {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Placement, String> {
        match text {
            "default" => Ok(Placement::Default),
            "per-cpu" => Ok(Placement::PerCpu),
            _ => Err(format!("{text:?}: expected default or per-cpu")),
        }
    }
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Placement::Default => "one worker",
            Placement::PerCpu => "a worker per CPU",
        })
    }
}

impl Placement {
    /// Column-key suffix: empty, or `-percpu`.
    pub fn key_suffix(self) -> &'static str {
        match self {
            Placement::Default => "",
            Placement::PerCpu => "-percpu",
        }
    }
}

/// `config` (a testbed `node.yaml`) with the workers placed as `placement` says.
pub fn with_placement(config: &str, placement: Placement) -> Result<String> {
    match placement {
        Placement::Default => Ok(config.to_owned()),
        Placement::PerCpu => with_worker_keys(
            config,
            &["count", "cores", "perCpu"],
            &[("perCpu", "true".to_owned())],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_cpu_replaces_the_count_and_default_changes_nothing() {
        let config = "nodeName: n\nworkers:\n  count: 1\n  idle: keep-warm\noverlay: vxlan\n";
        assert_eq!(
            with_placement(config, Placement::PerCpu).unwrap(),
            "nodeName: n\nworkers:\n  perCpu: true\n  idle: keep-warm\noverlay: vxlan\n"
        );
        assert_eq!(with_placement(config, Placement::Default).unwrap(), config);
        assert_eq!("per-cpu".parse(), Ok(Placement::PerCpu));
        assert!("percpu".parse::<Placement>().is_err());
    }
}
