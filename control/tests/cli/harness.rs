//! A temporary state directory and helpers to run `ferroplane` against it.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_ferroplane");

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// A state directory that disappears with the test.
pub struct Cluster {
    dir: tempfile::TempDir,
}

impl Cluster {
    pub fn new() -> Cluster {
        Cluster {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command.arg("--state").arg(self.dir.path()).args(args);
        command
    }

    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        Run {
            success: output.status.success(),
            stdout: String::from_utf8(output.stdout).unwrap(),
            stderr: String::from_utf8(output.stderr).unwrap(),
        }
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with_stdin(args, "")
    }

    /// `apply -f -` with YAML output; fails the test when the apply fails.
    pub fn apply(&self, manifest: &str) -> Vec<Value> {
        let run = self.run_with_stdin(&["apply", "-f", "-"], manifest);
        assert!(run.success, "apply failed: {}", run.stderr);
        parse_yaml_stream(&run.stdout)
    }

    /// `apply -f -` expected to fail; returns the run.
    pub fn apply_failing(&self, manifest: &str) -> Run {
        let run = self.run_with_stdin(&["apply", "-f", "-"], manifest);
        assert!(!run.success, "apply unexpectedly succeeded: {}", run.stdout);
        run
    }

    /// `get KIND NAME -n NS -o json`, `None` when not found.
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let run = self.run(&["get", kind, name, "-n", namespace, "-o", "json"]);
        run.success
            .then(|| serde_json::from_str(&run.stdout).unwrap())
    }

    /// `get KIND -A -o json` items.
    pub fn list(&self, kind: &str) -> Vec<Value> {
        let run = self.run(&["get", kind, "-A", "-o", "json"]);
        assert!(run.success, "{}", run.stderr);
        let list: Value = serde_json::from_str(&run.stdout).unwrap();
        list["items"].as_array().unwrap().clone()
    }

    pub fn generation(&self) -> u64 {
        std::fs::read_to_string(self.dir.path().join("generation"))
            .map(|t| t.trim().parse().unwrap())
            .unwrap_or(0)
    }
}

pub fn parse_yaml_stream(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple(text).unwrap()
}

/// A fixture from `tests/seed/`.
pub fn seed(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/seed")
            .join(name),
    )
    .unwrap()
}

pub fn seed_path(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/seed")
        .join(name)
        .display()
        .to_string()
}

/// Whether `ip` lies in `network/prefix`, computed independently of the crate.
pub fn in_cidr(ip: &str, network: &str, prefix: u32) -> bool {
    let ip: u32 = ip.parse::<Ipv4Addr>().unwrap().into();
    let network: u32 = network.parse::<Ipv4Addr>().unwrap().into();
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    ip & mask == network
}

pub fn str_of<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer} missing in {value}"))
}

pub fn int_of(value: &Value, pointer: &str) -> i64 {
    value
        .pointer(pointer)
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("{pointer} missing in {value}"))
}

/// A Pod manifest: labels as `k=v,k=v`, optional node, optional fixed IP, container ports as
/// `name:number`.
pub fn pod(
    name: &str,
    labels: &str,
    node: Option<&str>,
    ip: Option<&str>,
    ports: &[(&str, i32)],
) -> String {
    let labels: String = labels
        .split(',')
        .filter(|l| !l.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap();
            format!("    {k}: {v}\n")
        })
        .collect();
    let ports: String = ports
        .iter()
        .map(|(n, p)| format!("    - name: {n}\n      containerPort: {p}\n"))
        .collect();
    let ports = if ports.is_empty() {
        String::new()
    } else {
        format!("    ports:\n{ports}")
    };
    let node = node
        .map(|n| format!("  nodeName: {n}\n"))
        .unwrap_or_default();
    let status = ip
        .map(|ip| format!("status:\n  podIP: {ip}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n{labels}spec:\n{node}  containers:\n  - name: app\n{ports}{status}---\n"
    )
}

/// A Node manifest with an InternalIP.
pub fn node(name: &str, internal_ip: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\nstatus:\n  addresses:\n  - type: InternalIP\n    address: {internal_ip}\n---\n"
    )
}
