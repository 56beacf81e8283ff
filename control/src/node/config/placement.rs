//! `workers.count`, `workers.cores` and `workers.perCpu`: how many workers run and where.
//!
//! Also the idle mode a node gets when `workers.idle` is not given: `keep-warm` for per-CPU
//! workers (each sleeps at once beside the pods it serves, so a pod it has just woken runs
//! at once), `adaptive` otherwise (see control/src/node/README.md for the measurements).
//!
//! Invariants: `cores` is empty (workers not pinned) or lists one CPU per worker; with
//! `perCpu` it is every CPU the process may run on, in ascending order, one worker each, and
//! neither a count nor a core list may be given beside it (they would contradict it).

use dataplane::io::thread::allowed_cpus;
use dataplane::worker::IdleMode;

use super::ConfigError;

/// Where the workers run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub workers: usize,
    /// One per worker, or empty (not pinned).
    pub cores: Vec<usize>,
    /// A worker per CPU, and every port steering frames to the worker on the CPU they came
    /// from (`dataplane::io::cpu_steering`).
    pub per_cpu: bool,
}

fn err(field: &str, message: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("{field}: {message}"))
}

/// Resolves the placement; `allowed` reads the CPUs the process may run on (for `perCpu`).
pub fn resolve_placement(
    count: Option<usize>,
    cores: Vec<usize>,
    per_cpu: bool,
    flag_workers: Option<usize>,
    allowed: impl FnOnce() -> std::io::Result<Vec<usize>>,
) -> Result<Placement, ConfigError> {
    if per_cpu {
        if count.is_some() || flag_workers.is_some() || !cores.is_empty() {
            return Err(err(
                "workers.perCpu",
                "runs one worker on each CPU of the process: leave out workers.count, \
                 workers.cores and --workers",
            ));
        }
        let mut cores = allowed()
            .map_err(|e| err("workers.perCpu", format!("reading the CPU affinity: {e}")))?;
        cores.sort_unstable();
        if cores.is_empty() {
            return Err(err("workers.perCpu", "the process may run on no CPU"));
        }
        return Ok(Placement {
            workers: cores.len(),
            cores,
            per_cpu,
        });
    }
    let workers = flag_workers.or(count).unwrap_or(cores.len().max(1));
    if workers == 0 {
        return Err(err("workers.count", "must be at least 1"));
    }
    if !cores.is_empty() && cores.len() != workers {
        return Err(err(
            "workers.cores",
            format!(
                "lists {} cores for {workers} workers (give one core per worker)",
                cores.len()
            ),
        ));
    }
    Ok(Placement {
        workers,
        cores,
        per_cpu,
    })
}

/// The idle mode when `workers.idle` is not named: `default` (adaptive, with its spin)
/// becomes keep-warm with the same spin for per-CPU workers.
pub fn default_idle(per_cpu: bool, default: IdleMode) -> IdleMode {
    match default {
        IdleMode::Adaptive { spin } if per_cpu => IdleMode::KeepWarm { spin },
        other => other,
    }
}

/// `resolve_placement` with the process's own affinity.
pub fn resolve(
    count: Option<usize>,
    cores: Vec<usize>,
    per_cpu: bool,
    flag_workers: Option<usize>,
) -> Result<Placement, ConfigError> {
    resolve_placement(count, cores, per_cpu, flag_workers, allowed_cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpus() -> std::io::Result<Vec<usize>> {
        Ok(vec![3, 1, 2])
    }

    #[test]
    fn per_cpu_takes_every_allowed_cpu_in_order() {
        let p = resolve_placement(None, vec![], true, None, cpus).unwrap();
        assert_eq!(
            p,
            Placement {
                workers: 3,
                cores: vec![1, 2, 3],
                per_cpu: true
            }
        );
    }

    #[test]
    fn per_cpu_refuses_a_count_cores_or_flag_beside_it() {
        for (count, cores, flag) in [
            (Some(2), vec![], None),
            (None, vec![1], None),
            (None, vec![], Some(2)),
        ] {
            let e = resolve_placement(count, cores, true, flag, cpus).unwrap_err();
            assert!(e.0.starts_with("workers.perCpu:"), "{}", e.0);
        }
        let e = resolve_placement(None, vec![], true, None, || Ok(vec![])).unwrap_err();
        assert!(e.0.contains("no CPU"), "{}", e.0);
    }

    #[test]
    fn per_cpu_workers_keep_warm_unless_told_otherwise() {
        let spin = std::time::Duration::from_micros(30);
        assert_eq!(
            default_idle(true, IdleMode::Adaptive { spin }),
            IdleMode::KeepWarm { spin }
        );
        assert_eq!(
            default_idle(false, IdleMode::Adaptive { spin }),
            IdleMode::Adaptive { spin }
        );
        assert_eq!(default_idle(true, IdleMode::BusyPoll), IdleMode::BusyPoll);
    }

    #[test]
    fn without_per_cpu_the_count_and_cores_decide() {
        let p = resolve_placement(Some(2), vec![0, 1], false, None, cpus).unwrap();
        assert_eq!((p.workers, p.cores, p.per_cpu), (2, vec![0, 1], false));
        let p = resolve_placement(None, vec![], false, None, cpus).unwrap();
        assert_eq!(p.workers, 1, "unpinned, one worker by default");
        assert!(resolve_placement(Some(3), vec![1], false, None, cpus).is_err());
        assert!(resolve_placement(Some(0), vec![], false, None, cpus).is_err());
    }
}
