//! CPU time over a trial, per CPU: the elapsed time less the time the CPU was idle or
//! waiting for I/O (`/proc/stat`). On a tickless kernel that idle time is kept exactly (from
//! the idle entry and exit times), unlike busy time, which is sampled at ticks and misses
//! short softirq bursts on an otherwise idle CPU — the kernel path's whole work. It counts
//! everything that ran on the CPU, other processes on a shared machine included.
//!
//! Also where the load threads (the pods' client and servers) run: `pin`, off with
//! `--pods-cpu any`.
//!
//! Invariants: busy time is never negative nor longer than the elapsed time; times are in
//! seconds (the kernel reports clock ticks).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use testbed::error::{Error, context};

use super::Result;

/// Idle + iowait clock ticks per CPU at one instant, indexed by CPU number.
#[derive(Clone, Debug)]
pub struct CpuSample {
    at: Instant,
    idle: Vec<u64>,
}

/// Busy seconds per CPU between two samples, indexed by CPU number.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CpuUse(pub Vec<f64>);

impl CpuUse {
    pub fn total(&self) -> f64 {
        self.0.iter().sum()
    }

    /// Busy seconds of `cpu` (0 for a CPU not listed).
    pub fn on(&self, cpu: usize) -> f64 {
        self.0.get(cpu).copied().unwrap_or(0.0)
    }
}

pub fn sample() -> Result<CpuSample> {
    let text = std::fs::read_to_string("/proc/stat").map_err(context("/proc/stat"))?;
    Ok(CpuSample {
        at: Instant::now(),
        idle: idle_ticks(&text)?,
    })
}

/// Idle + iowait ticks of each `cpuN` line of a `/proc/stat` text.
pub fn idle_ticks(stat: &str) -> Result<Vec<u64>> {
    let mut idle = Vec::new();
    for line in stat.lines() {
        let mut fields = line.split_whitespace();
        let Some(cpu) = fields
            .next()
            .and_then(|name| name.strip_prefix("cpu"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue; // the `cpu` total line and every other line
        };
        // user nice system idle iowait ...
        let values: Vec<u64> = fields.take(5).filter_map(|f| f.parse().ok()).collect();
        let [_, _, _, idle_ticks, iowait] = values[..] else {
            return Err(Error(format!("/proc/stat: short line {line:?}")));
        };
        if idle.len() <= cpu {
            idle.resize(cpu + 1, 0);
        }
        idle[cpu] = idle_ticks + iowait;
    }
    if idle.is_empty() {
        return Err(Error("/proc/stat lists no CPU".to_owned()));
    }
    Ok(idle)
}

/// Busy seconds per CPU from `before` to `after`.
pub fn between(before: &CpuSample, after: &CpuSample) -> CpuUse {
    let elapsed = after.at.saturating_duration_since(before.at).as_secs_f64();
    CpuUse(busy(&before.idle, &after.idle, elapsed))
}

/// Per CPU, `elapsed` less the idle ticks that passed, within 0..=elapsed.
fn busy(before: &[u64], after: &[u64], elapsed: f64) -> Vec<f64> {
    let hz = rustix::param::clock_ticks_per_second() as f64;
    after
        .iter()
        .enumerate()
        .map(|(cpu, &ticks)| {
            let idle = ticks.saturating_sub(before.get(cpu).copied().unwrap_or(ticks)) as f64 / hz;
            (elapsed - idle).clamp(0.0, elapsed)
        })
        .collect()
}

/// Pins the calling thread to `cpu`.
pub fn pin(cpu: usize) -> Result<()> {
    if !PIN_PODS.load(Ordering::Relaxed) {
        return Ok(());
    }
    dataplane::io::thread::pin_current_thread(cpu)
        .map_err(|e| Error(format!("pinning a load thread to cpu {cpu}: {e}")))
}

/// `--pods-cpu`: whether the client and servers in the pods are pinned to the load CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PodsCpu {
    /// On the load CPU (the default).
    Pinned,
    /// Wherever the scheduler puts them (the process's affinity), as an unpinned pod runs.
    Any,
}

static PIN_PODS: AtomicBool = AtomicBool::new(true);

/// Makes `pin` pin (or leave alone) every load thread started from now on; set once at
/// start.
pub fn set_pods_cpu(pods: PodsCpu) {
    PIN_PODS.store(pods == PodsCpu::Pinned, Ordering::Relaxed);
}

/// Whether the load threads are pinned (`--pods-cpu`).
pub fn pods_pinned() -> bool {
    PIN_PODS.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_and_iowait_come_from_each_cpu_line() {
        let text = "cpu  10 0 10 500 5 3 4 0 0 0\n\
                    cpu0 1 2 3 100 50 4 5 6 0 0\n\
                    cpu1 10 0 0 900 1 0 1 0 0 0\n\
                    intr 1 2 3\n";
        assert_eq!(idle_ticks(text).unwrap(), vec![150, 901]);
        assert!(idle_ticks("intr 1\n").is_err());
        assert!(idle_ticks("cpu0 1 2 3\n").is_err());
    }

    #[test]
    fn busy_time_is_elapsed_less_idle_and_stays_in_range() {
        let hz = rustix::param::clock_ticks_per_second();
        // cpu0 idle for a quarter of 2 s, cpu1 idle all along, cpu2's counter went back.
        let before = [0, 0, 50];
        let after = [hz / 2, 2 * hz, 10];
        assert_eq!(busy(&before, &after, 2.0), vec![1.5, 0.0, 2.0]);
        // More idle than elapsed (tick rounding) is clamped to no busy time.
        assert_eq!(busy(&[0], &[3 * hz], 2.0), vec![0.0]);
        let used = CpuUse(vec![1.5, 0.5]);
        assert_eq!((used.total(), used.on(1), used.on(9)), (2.0, 0.5, 0.0));
    }
}
