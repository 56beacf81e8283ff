//! `--worker-sched`: the scheduling policy of ferroplane's workers, written into the node
//! configuration the harness generates as `workers.scheduling: {policy, priority}`.
//!
//! Invariants: the harness writes the keys only when asked (no option: the node's default,
//! nothing written); `other` carries no priority, `fifo`/`rr` a priority of 1 to 99 (what
//! Linux accepts for real-time policies); the rest of the configuration is kept line for line.

use std::fmt;
use std::str::FromStr;

use testbed::error::Error;

use super::Result;

/// One scheduling policy for the workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerSched {
    Other,
    Fifo(u8),
    Rr(u8),
}

impl FromStr for WorkerSched {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<WorkerSched, String> {
        let (policy, priority) = match text.split_once(':') {
            Some((policy, priority)) => (policy, Some(priority)),
            None => (text, None),
        };
        let real_time = |make: fn(u8) -> WorkerSched| -> std::result::Result<WorkerSched, String> {
            let priority = priority.ok_or_else(|| format!("{text:?}: {policy} needs :PRIORITY"))?;
            match priority.parse::<u8>() {
                Ok(p @ 1..=99) => Ok(make(p)),
                _ => Err(format!("{text:?}: the priority must be 1 to 99")),
            }
        };
        match policy {
            "other" if priority.is_none() => Ok(WorkerSched::Other),
            "other" => Err(format!("{text:?}: other takes no priority")),
            "fifo" => real_time(WorkerSched::Fifo),
            "rr" => real_time(WorkerSched::Rr),
            _ => Err(format!(
                "{text:?}: expected other, fifo:PRIORITY or rr:PRIORITY"
            )),
        }
    }
}

impl fmt::Display for WorkerSched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkerSched::Other => f.write_str("other"),
            WorkerSched::Fifo(p) => write!(f, "fifo:{p}"),
            WorkerSched::Rr(p) => write!(f, "rr:{p}"),
        }
    }
}

impl WorkerSched {
    /// The `scheduling:` value as a YAML flow mapping.
    pub fn yaml(self) -> String {
        match self {
            WorkerSched::Other => "{policy: other}".to_owned(),
            WorkerSched::Fifo(p) => format!("{{policy: fifo, priority: {p}}}"),
            WorkerSched::Rr(p) => format!("{{policy: rr, priority: {p}}}"),
        }
    }
}

/// `config` (a testbed `node.yaml`) with `workers.scheduling` set to `sched` (replacing any
/// earlier value).
pub fn with_worker_scheduling(config: &str, sched: WorkerSched) -> Result<String> {
    with_worker_keys(config, &["scheduling"], &[("scheduling", sched.yaml())])
}

/// `config` with the `workers:` keys named in `replace` removed and `keys` written, in order,
/// first under `workers:`.
pub fn with_worker_keys(config: &str, replace: &[&str], keys: &[(&str, String)]) -> Result<String> {
    let mut out = Vec::new();
    let mut in_workers = false;
    let mut written = false;
    for line in config.lines() {
        let indented = line.starts_with(' ');
        let earlier = line
            .trim_start()
            .split_once(':')
            .is_some_and(|(key, _)| replace.contains(&key));
        if in_workers && indented && earlier {
            continue; // an earlier value: replaced below
        }
        if !indented {
            in_workers = line.trim_end() == "workers:";
        }
        out.push(line.to_owned());
        if in_workers && !written {
            out.extend(keys.iter().map(|(key, value)| format!("  {key}: {value}")));
            written = true;
        }
    }
    if !written {
        return Err(Error("node.yaml has no workers: section".to_owned()));
    }
    Ok(out.join("\n") + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_with_their_priority() {
        assert_eq!("other".parse(), Ok(WorkerSched::Other));
        assert_eq!("fifo:10".parse(), Ok(WorkerSched::Fifo(10)));
        assert_eq!("rr:99".parse(), Ok(WorkerSched::Rr(99)));
        for bad in ["fifo", "fifo:0", "fifo:100", "rr:x", "other:3", "idle", ""] {
            assert!(bad.parse::<WorkerSched>().is_err(), "{bad}");
        }
        assert_eq!(WorkerSched::Fifo(10).to_string(), "fifo:10");
    }

    #[test]
    fn the_scheduling_key_goes_under_workers_once() {
        let config = "nodeName: n\nworkers:\n  count: 1\noverlay: vxlan\n";
        let fifo = with_worker_scheduling(config, WorkerSched::Fifo(10)).unwrap();
        assert_eq!(
            fifo,
            "nodeName: n\nworkers:\n  scheduling: {policy: fifo, priority: 10}\n  count: 1\noverlay: vxlan\n"
        );
        let other = with_worker_scheduling(&fifo, WorkerSched::Other).unwrap();
        assert_eq!(
            other,
            "nodeName: n\nworkers:\n  scheduling: {policy: other}\n  count: 1\noverlay: vxlan\n"
        );
        assert!(with_worker_scheduling("nodeName: n\n", WorkerSched::Other).is_err());
    }
}
