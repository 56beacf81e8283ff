//! Throw-away network namespaces for the I/O benchmark, and the root check it needs.
//!
//! Invariants:
//! - Every namespace is named `fpb-<pid>-<n>` and is deleted when its `Netns` is dropped, on
//!   success, error and panic alike; namespaces whose process is gone (a killed run) are
//!   deleted before the first new one is made. Nothing else is ever deleted.
//! - The caller's namespace is never changed: links are made with `ip -n`, and a namespace is
//!   entered only by a thread started for that purpose (`run`) or by a benchmark thread that
//!   exists only to work there.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

/// The prefix of every namespace the benchmark makes.
pub const PREFIX: &str = "fpb-";

/// Fails unless the process runs as root: namespaces, links and raw sockets need it.
pub fn require_root() -> io::Result<()> {
    if rustix::process::geteuid().is_root() {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::PermissionDenied,
        "io_bench needs root (CAP_SYS_ADMIN for network namespaces, CAP_NET_ADMIN and \
         CAP_NET_RAW for links and packet sockets, CAP_BPF for AF_XDP): run it with sudo",
    ))
}

/// Runs `ip args`, turning a failure into an error that carries the command and its stderr.
pub fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("running `ip` (iproute2): {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// The names of the namespaces `ip netns list` shows.
fn namespace_names() -> io::Result<Vec<String>> {
    let out = Command::new("ip").args(["netns", "list"]).output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// The process id a benchmark namespace name carries, if `name` is one.
fn owner_pid(name: &str) -> Option<u32> {
    name.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
}

/// Deletes the `fpb-<pid>-*` namespaces left by runs that no longer exist: those whose
/// process is gone, and those carrying this process's id (a dead run that had the same pid;
/// called before this process makes any).
fn delete_stale() -> io::Result<()> {
    for name in namespace_names()? {
        let Some(pid) = owner_pid(&name) else {
            continue;
        };
        let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
        if pid == std::process::id() || !alive {
            ip(&["netns", "del", &name])?;
        }
    }
    Ok(())
}

/// A network namespace that exists while this value lives.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Makes a new namespace with IPv6 off (no router solicitations, DAD or MLD frames on
    /// the links), after deleting stale ones once per process.
    pub fn create() -> io::Result<Self> {
        static STALE: Once = Once::new();
        let mut stale = Ok(());
        STALE.call_once(|| stale = delete_stale());
        stale?;
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name])?;
        let ns = Self { name };
        ns.run(|| {
            for knob in ["all", "default"] {
                let path = format!("/proc/sys/net/ipv6/conf/{knob}/disable_ipv6");
                // A kernel without IPv6 has no such knob and no IPv6 chatter either.
                if std::path::Path::new(&path).exists() {
                    std::fs::write(&path, "1")?;
                }
            }
            Ok(())
        })?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <ns> args`.
    pub fn ip(&self, args: &[&str]) -> io::Result<()> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Writes `value` to the sysfs file `path` as this namespace sees it. sysfs shows the
    /// namespace of whoever mounted it, so this goes through `ip netns exec`, which mounts a
    /// fresh one in a private mount namespace.
    pub fn write_sysfs(&self, path: &str, value: &str) -> io::Result<()> {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.name,
                "sh",
                "-c",
                r#"echo "$1" > "$2""#,
                "sh",
            ])
            .args([value, path])
            .output()?;
        if out.status.success() {
            return Ok(());
        }
        Err(io::Error::other(format!(
            "writing {value} to {path} in {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }

    /// Moves the calling thread into this namespace. Only for threads that exist to work
    /// there: the thread stays in it until it ends.
    pub fn enter_current_thread(&self) -> io::Result<()> {
        let path = format!("/run/netns/{}", self.name);
        let file =
            File::open(&path).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))?;
        move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network))
            .map_err(|e| io::Error::other(format!("entering namespace {}: {e}", self.name)))
    }

    /// Runs `body` on a new thread inside this namespace; a panic in `body` is re-raised here.
    pub fn run<T: Send>(&self, body: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    self.enter_current_thread()?;
                    body()
                })
                .join()
        })
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(err) = ip(&["netns", "del", &self.name]) {
            eprintln!("warning: could not delete namespace {}: {err}", self.name);
        }
    }
}
