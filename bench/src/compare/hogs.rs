//! Background load for the latency runs: CPU-bound processes ("hogs") pinned to given CPUs at
//! a given nice value, as an application sharing the dataplane's cores would be. Each hog is
//! this executable run as `<exe> hog --cpu N --nice N --seconds S --parent PID`: it pins
//! itself (`sched_setaffinity`), sets its nice value (absolute, `setpriority`) and spins.
//!
//! Invariants: a hog is bounded three ways: [`Hogs`] kills and reaps every hog it started when
//! dropped (end of the workload, error and panic alike), a hog exits by itself after its
//! `--seconds`, and it exits as soon as its parent is gone (the harness killed outright); a
//! hog that cannot pin itself or set its nice value exits with an error instead of spinning
//! anywhere else.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use testbed::error::{Error, context};

use super::Result;

/// Background load of one latency run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Load {
    Idle,
    /// [`PER_CPU`] hogs on each loaded CPU at this nice value.
    Hogs {
        nice: i32,
    },
}

impl Load {
    /// The loads every latency workload runs under, in order.
    pub const ALL: [Load; 3] = [Load::Idle, Load::Hogs { nice: 0 }, Load::Hogs { nice: 19 }];

    /// Key fragment: `idle`, `nice0`, `nice19`.
    pub fn key(self) -> String {
        match self {
            Load::Idle => "idle".to_owned(),
            Load::Hogs { nice } => format!("nice{nice}"),
        }
    }

    pub fn label(self) -> String {
        match self {
            Load::Idle => "idle".to_owned(),
            Load::Hogs { nice } => format!("{PER_CPU} busy loops at nice {nice}"),
        }
    }
}

/// Hogs per loaded CPU.
pub const PER_CPU: usize = 2;
/// How long a hog spins at most, whatever happens to its parent.
pub const HOG_LIMIT: Duration = Duration::from_secs(300);
/// How often a hog looks at the clock and its parent (in loop iterations).
const CHECK_EVERY: u64 = 1 << 16;

/// Running hogs; dropping this kills them.
pub struct Hogs {
    children: Vec<Child>,
}

/// The arguments of one hog's command line after the program.
pub fn hog_args(cpu: usize, nice: i32, limit: Duration, parent: u32) -> Vec<String> {
    vec![
        "hog".to_owned(),
        "--cpu".to_owned(),
        cpu.to_string(),
        "--nice".to_owned(),
        nice.to_string(),
        "--seconds".to_owned(),
        limit.as_secs().max(1).to_string(),
        "--parent".to_owned(),
        parent.to_string(),
    ]
}

impl Hogs {
    /// No hogs for [`Load::Idle`]; else [`PER_CPU`] hogs on each of `cpus`, started by running
    /// `program` (an executable that serves `hog`, see [`spin`]).
    pub fn start(program: &Path, load: Load, cpus: &[usize]) -> Result<Hogs> {
        let mut hogs = Hogs {
            children: Vec::new(),
        };
        let Load::Hogs { nice } = load else {
            return Ok(hogs);
        };
        for &cpu in cpus {
            for _ in 0..PER_CPU {
                let child = Command::new(program)
                    .args(hog_args(cpu, nice, HOG_LIMIT, std::process::id()))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .spawn()
                    .map_err(context(format!("starting a hog ({})", program.display())))?;
                // Pushed at once: an error below still kills what started.
                hogs.children.push(child);
            }
        }
        // A hog that cannot pin itself exits at once: see that before measuring.
        std::thread::sleep(Duration::from_millis(100));
        for child in &mut hogs.children {
            if let Some(status) = child.try_wait()? {
                return Err(Error(format!("a hog exited at start ({status})")));
            }
        }
        Ok(hogs)
    }

    /// The process ids of the running hogs.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The hog itself: pins to `cpu`, takes nice value `nice`, and spins until `limit` passed or
/// its parent is no longer `parent`.
pub fn spin(cpu: usize, nice: i32, limit: Duration, parent: u32) -> Result<()> {
    dataplane::io::thread::pin_current_thread(cpu)
        .map_err(|e| Error(format!("hog: pinning to cpu {cpu}: {e}")))?;
    rustix::process::setpriority_process(None, nice)
        .map_err(|e| Error(format!("hog: nice {nice}: {e}")))?;
    let started = Instant::now();
    let mut counter: u64 = 0;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
        if counter.is_multiple_of(CHECK_EVERY) {
            let orphaned = rustix::process::getppid()
                .is_none_or(|p| u32::try_from(p.as_raw_nonzero().get()).ok() != Some(parent));
            if orphaned || started.elapsed() >= limit {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hog_command_lines_name_cpu_nice_bound_and_parent() {
        assert_eq!(
            hog_args(1, 19, Duration::from_secs(300), 42).join(" "),
            "hog --cpu 1 --nice 19 --seconds 300 --parent 42"
        );
        assert_eq!(hog_args(0, 0, Duration::ZERO, 7)[6], "1");
        assert_eq!(Load::ALL.map(Load::key), ["idle", "nice0", "nice19"]);
    }

    #[test]
    fn a_hog_whose_parent_is_another_process_stops_at_once() {
        let cpu = dataplane::io::thread::allowed_cpus().unwrap()[0];
        let current = rustix::process::getpriority_process(None).unwrap();
        // Not our parent: the first check ends the loop (our own nice value is kept).
        let started = Instant::now();
        let other = std::process::id();
        std::thread::spawn(move || spin(cpu, current, Duration::from_secs(60), other))
            .join()
            .unwrap()
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
