//! Throw-away network namespaces and the commands the tests run in them.
//!
//! Invariants: every namespace is `fpn4-<pid>-<n>-<role>` and deleted when dropped (also on
//! panic); namespaces of runs whose process is gone are deleted before the first new one; the
//! tests need root and fail with a clear message otherwise.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Once;

/// Fails the test unless it runs as root.
pub fn require_root() {
    let out = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "the node process tests create network namespaces, TAPs and veths: run them as root"
    );
}

pub fn sh(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"))
}

/// Runs a command that must succeed.
pub fn must(program: &str, args: &[&str]) -> String {
    let out = sh(program, args);
    assert!(
        out.status.success(),
        "{program} {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const PREFIX: &str = "fpn4-";

fn delete_stale_namespaces() {
    let listing = must("ip", &["netns", "list"]);
    for name in listing.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or_default();
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = sh("ip", &["netns", "del", name]);
        }
    }
}

/// A network namespace for the life of this value.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(test: u32, role: &str) -> Netns {
        require_root();
        static CLEANUP: Once = Once::new();
        CLEANUP.call_once(delete_stale_namespaces);
        let name = format!("{PREFIX}{}-{test}-{role}", std::process::id());
        must("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.exec(&[
            "sh",
            "-c",
            "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; \
             echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6; ip link set lo up",
        ]);
        ns
    }

    /// `ip -n NS args`, which must succeed.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        must("ip", &all)
    }

    /// Runs `args` inside the namespace; returns the output whatever the status.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut all = vec!["netns", "exec", self.name.as_str()];
        all.extend_from_slice(args);
        sh("ip", &all)
    }

    /// Runs `args` inside the namespace; it must succeed.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut all = vec!["netns", "exec", self.name.as_str()];
        all.extend_from_slice(args);
        must("ip", &all)
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// As [`Netns::spawn`], with stdin piped (the child runs until it is closed).
    pub fn spawn_with_stdin(&self, args: &[&str]) -> Child {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap()
    }

    pub fn has_link(&self, name: &str) -> bool {
        sh("ip", &["-n", &self.name, "link", "show", name])
            .status
            .success()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh("ip", &["netns", "del", &self.name]);
    }
}
