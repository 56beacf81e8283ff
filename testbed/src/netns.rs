//! Commands on the host and inside named network namespaces, and entering a namespace from a
//! short-lived thread.
//!
//! Invariants: a failing command's error carries its command line and stderr; a thread that
//! entered a namespace ends with the closure given to [`within`] (the caller's own threads
//! never change namespace).

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

use crate::error::{Error, Result, context};

/// Runs `program args`; returns its output whatever its exit status.
pub fn output(program: &str, args: &[&str]) -> Result<Output> {
    Command::new(program)
        .args(args)
        .output()
        .map_err(context(format!("running {program}")))
}

/// Runs `program args`, which must succeed; returns its standard output.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = output(program, args)?;
    if !out.status.success() {
        return Err(Error(format!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip -n NS args`, which must succeed.
pub fn ip(ns: &str, args: &[&str]) -> Result<String> {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    run("ip", &all)
}

/// Runs `args` inside `ns`; it must succeed.
pub fn exec(ns: &str, args: &[&str]) -> Result<String> {
    let mut all = vec!["netns", "exec", ns];
    all.extend_from_slice(args);
    run("ip", &all)
}

/// The named network namespaces (`ip netns list`).
pub fn list() -> Result<Vec<String>> {
    Ok(run("ip", &["netns", "list"])?
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect())
}

/// Creates `ns` with its loopback up and IPv6 off (a dual-stack testbed turns it back on
/// where it uses it: `fabric6::enable_ipv6`).
pub fn add(ns: &str) -> Result<()> {
    run("ip", &["netns", "add", ns])?;
    ip(ns, &["link", "set", "lo", "up"])?;
    sysctl(ns, "net/ipv6/conf/all/disable_ipv6", "1")?;
    sysctl(ns, "net/ipv6/conf/default/disable_ipv6", "1")
}

/// Deletes `ns` (its devices go with it).
pub fn delete(ns: &str) -> Result<()> {
    run("ip", &["netns", "del", ns]).map(|_| ())
}

/// Processes whose network namespace is `ns`.
pub fn pids(ns: &str) -> Result<Vec<i32>> {
    Ok(run("ip", &["netns", "pids", ns])?
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect())
}

/// Writes `/proc/sys/<key>` as seen from inside `ns`.
pub fn sysctl(ns: &str, key: &str, value: &str) -> Result<()> {
    let path = format!("/proc/sys/{key}");
    within(ns, || {
        std::fs::write(&path, value).map_err(context(format!("writing {path} in {ns}")))
    })
}

/// Runs `f` on a thread that entered network namespace `ns`; sockets it opens stay there.
pub fn within<T: Send>(ns: &str, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let path = format!("/run/netns/{ns}");
    let file = File::open(&path).map_err(context(format!("opening {path}")))?;
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                move_into_link_name_space(
                    std::os::fd::AsFd::as_fd(&file),
                    Some(LinkNameSpaceType::Network),
                )
                .map_err(context(format!("entering {ns}")))?;
                f()
            })
            .join()
            .map_err(|_| Error(format!("the thread inside {ns} panicked")))?
    })
}

/// Starts `command` inside `ns` in a process group of its own (so it outlives the testbed
/// command), stdout and stderr to `log`, and waits (at most `within`) until a line of the log
/// starts with `ready_line`; returns its pid. If it exits first, the error quotes its log.
pub fn spawn_until_ready(
    ns: &str,
    command: &Command,
    log: &Path,
    ready_line: &str,
    within: Duration,
) -> Result<u32> {
    let file = File::create(log).map_err(context(log.display()))?;
    let program = command.get_program();
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(program)
        .args(command.get_args())
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .process_group(0)
        .spawn()
        .map_err(context(format!("starting {program:?} in {ns}")))?;
    let started = Instant::now();
    while started.elapsed() < within {
        if let Some(status) = child.try_wait()? {
            return Err(Error(format!(
                "{program:?} in {ns} exited ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            )));
        }
        if std::fs::read_to_string(log).is_ok_and(|t| t.lines().any(|l| l.starts_with(ready_line)))
        {
            return Ok(child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(Error(format!(
        "{program:?} in {ns} was not ready within {within:?}; log: {}",
        log.display()
    )))
}

/// Waits (at most `limit`) until device `name` exists in `ns`.
pub fn wait_for_link(ns: &str, name: &str, limit: std::time::Duration) -> Result<()> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if output("ip", &["-n", ns, "link", "show", name])?
            .status
            .success()
        {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(Error(format!("no device {name} in {ns} after {limit:?}")));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
