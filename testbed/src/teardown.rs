//! `testbed down`: ends every process inside the testbed's namespaces, deletes the namespaces
//! (their devices go with them), their `/etc/netns` entries and the run directory.
//!
//! Invariants: works from the namespaces alone (a killed run may have left no state file);
//! touches only namespaces this layout owns and only processes inside them; every wait is
//! bounded (SIGTERM, then SIGKILL after a grace period).

use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

use crate::error::{Result, context};
use crate::layout::Layout;
use crate::netns;
use crate::resolv;

const GRACE: Duration = Duration::from_secs(3);

/// What `down` removed.
#[derive(Debug, Default)]
pub struct Removed {
    pub namespaces: Vec<String>,
    pub processes: usize,
}

pub fn down(layout: &Layout) -> Result<Removed> {
    let namespaces: Vec<String> = netns::list()?
        .into_iter()
        .filter(|ns| layout.owns(ns))
        .collect();
    let mut pids = Vec::new();
    for ns in &namespaces {
        pids.extend(netns::pids(ns)?);
    }
    let processes = stop(&pids);
    for ns in &namespaces {
        netns::delete(ns)?;
    }
    resolv::remove_all(layout)?;
    let run_dir = layout.run_dir();
    if run_dir.exists() {
        std::fs::remove_dir_all(&run_dir).map_err(context(run_dir.display()))?;
    }
    Ok(Removed {
        namespaces,
        processes,
    })
}

/// SIGTERM to each process, SIGKILL to those still there after the grace period; returns
/// how many were signalled.
fn stop(pids: &[i32]) -> usize {
    let pids: Vec<Pid> = pids.iter().filter_map(|&p| Pid::from_raw(p)).collect();
    for &pid in &pids {
        let _ = kill_process(pid, Signal::TERM);
    }
    let deadline = Instant::now() + GRACE;
    while Instant::now() < deadline && pids.iter().any(|&p| alive(p)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for &pid in pids.iter().filter(|&&p| alive(p)) {
        let _ = kill_process(pid, Signal::KILL);
    }
    pids.len()
}

/// Whether `pid` still runs (a zombie counts as gone).
fn alive(pid: Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero())).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}
