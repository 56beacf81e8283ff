//! Running the plugin as a runtime does: `ferroplane-cni` (a link to the built binary) exec'd
//! inside a throw-away "node" namespace with the CNI variables and the configuration on stdin,
//! for pods in namespaces of their own.
//!
//! Invariants: namespaces are `fpc1-<pid>-<n>` and deleted when dropped; namespaces of runs
//! whose process is gone are deleted first; the tests need root and say so.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

const PREFIX: &str = "fpc1-";

pub fn require_root() {
    let out = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "the CNI tests create network namespaces and veths: run them as root"
    );
}

pub fn must(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn delete_stale() {
    let listing = must("ip", &["netns", "list"]);
    for name in listing.lines().filter_map(|l| l.split_whitespace().next()) {
        if let Some(rest) = name.strip_prefix(PREFIX) {
            let pid = rest.split('-').next().unwrap_or_default();
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = Command::new("ip").args(["netns", "del", name]).output();
            }
        }
    }
}

pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Netns {
        require_root();
        static CLEANUP: Once = Once::new();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        CLEANUP.call_once(delete_stale);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{}-{n}", std::process::id());
        must("ip", &["netns", "add", &name]);
        must("ip", &["-n", &name, "link", "set", "lo", "up"]);
        Netns { name }
    }

    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        must("ip", &all)
    }

    pub fn has_link(&self, name: &str) -> bool {
        Command::new("ip")
            .args(["-n", &self.name, "link", "show", name])
            .output()
            .unwrap()
            .status
            .success()
    }

    /// Names of the links other than `lo`.
    pub fn links(&self) -> Vec<String> {
        self.ip(&["-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_owned())
            .filter(|n| n != "lo")
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// The plugin binary under its CNI name, in a directory of its own (the CNI_PATH).
pub fn plugin_dir() -> PathBuf {
    static LINK: Once = Once::new();
    let dir = std::env::temp_dir().join(format!("fp-cni-bin-{}", std::process::id()));
    LINK.call_once(|| {
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join("ferroplane-cni");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_ferroplane"), &link).unwrap();
    });
    dir
}

/// One call of a plugin: the answer on stdout and whether it succeeded.
pub struct Answer {
    pub ok: bool,
    pub json: Value,
    pub stderr: String,
}

/// Execs `plugin` (a path) in `node` with `vars` and `stdin`, as a runtime does.
pub fn exec_plugin(node: &Netns, plugin: &Path, vars: &[(&str, String)], stdin: &str) -> Answer {
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", &node.name])
        .arg(plugin)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in vars {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&stdout);
    Answer {
        ok: status.success(),
        json: if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("plugin printed non-JSON ({e}): {text}"))
        },
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// The variables of one attachment.
pub fn vars(
    command: &str,
    container: &str,
    netns: Option<&Netns>,
    pod: &str,
    extra_args: &str,
) -> Vec<(&'static str, String)> {
    // As containerd and CRI-O pass them: the reference plugins refuse unknown keys without
    // IgnoreUnknown.
    let mut args = format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod}");
    if !extra_args.is_empty() {
        args.push(';');
        args.push_str(extra_args);
    }
    let mut v = vec![
        ("CNI_COMMAND", command.to_owned()),
        ("CNI_CONTAINERID", container.to_owned()),
        ("CNI_IFNAME", "eth0".to_owned()),
        (
            "CNI_PATH",
            format!("{}:/usr/lib/cni", plugin_dir().display()),
        ),
        ("CNI_ARGS", args),
    ];
    if let Some(ns) = netns {
        v.push(("CNI_NETNS", ns.path().display().to_string()));
    }
    v
}

/// Our plugin's configuration entry.
pub fn our_conf(version: &str, data_dir: &Path, extra: &str) -> String {
    format!(
        r#"{{"cniVersion":"{version}","name":"fptest","type":"ferroplane-cni",
            "podCIDR":"10.244.7.0/24","dataDir":"{}","mtu":1450{extra}}}"#,
        data_dir.display()
    )
}

pub fn ours() -> PathBuf {
    plugin_dir().join("ferroplane-cni")
}

/// Address files the store holds.
pub fn leases(data_dir: &Path) -> Vec<String> {
    match std::fs::read_dir(data_dir.join("fptest")) {
        Ok(entries) => entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
            .collect(),
        Err(_) => Vec::new(),
    }
}
