//! Reaching devices in other network namespaces: a TAP that the CNI moved into a pod keeps
//! living there across restarts of ferroplane, and a new queue can only be attached from inside
//! that namespace (the TAP driver resolves the name in the opener's namespace).
//!
//! Invariants: only a short-lived thread started here ever enters another namespace; the
//! calling thread and every other thread stay where they are. Descriptors opened inside keep
//! working after that thread ends.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use dataplane::io::netdev;
use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

/// Runs `f` on a new thread inside the network namespace bound at `netns`.
pub fn run_in<T: Send>(netns: &Path, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let file = File::open(netns)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", netns.display())))?;
                move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network))
                    .map_err(|e| io::Error::other(format!("entering {}: {e}", netns.display())))?;
                f()
            })
            .join()
            .map_err(|_| io::Error::other("namespace thread panicked"))?
    })
}

/// A pod interface to look for: by the name ferroplane gave it, or by the pod's MAC (a CNI
/// may rename the interface, e.g. to `eth0`, but must give it the pod's MAC).
pub struct Wanted {
    pub name: String,
    pub mac: [u8; 6],
}

/// The interfaces of the calling thread's network namespace (`/proc/thread-self/net/dev`
/// shows the thread's namespace, unlike `/proc/self/net`).
fn thread_interfaces() -> io::Result<Vec<String>> {
    let text = std::fs::read_to_string("/proc/thread-self/net/dev")?;
    Ok(text
        .lines()
        .skip(2)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, _)| name.trim().to_owned())
        .collect())
}

/// For each wanted interface found in a namespace under `dir` (e.g. `/run/netns`): its index
/// in `wanted`, the namespace and the interface's current name. One thread per namespace,
/// whatever the number of interfaces looked for.
pub fn locate(dir: &Path, wanted: &[Wanted]) -> Vec<(usize, PathBuf, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let here = run_in(&path, || {
            let mut here = Vec::new();
            for name in thread_interfaces()? {
                let mac = netdev::mac_address(&name).ok();
                if let Some(index) = wanted
                    .iter()
                    .position(|w| w.name == name || Some(w.mac) == mac)
                {
                    here.push((index, name));
                }
            }
            Ok(here)
        });
        found.extend(
            here.unwrap_or_default()
                .into_iter()
                .map(|(index, name)| (index, path.clone(), name)),
        );
    }
    found
}
