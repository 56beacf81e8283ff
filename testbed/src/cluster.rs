//! The control plane, through the real `ferroplane` CLI on the testbed's state directory:
//! `init`, `apply`, and reading back Nodes and Pods (with the IPs and podCIDRs it assigned).
//!
//! Invariant: the testbed never writes the state directory itself; every object goes through
//! `ferroplane apply`, which validates it and assigns addresses.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::error::{Error, Result, context};
use crate::layout::{CLUSTER_CIDR, LB_POOL, SERVICE_CIDR, UNDERLAY_CIDR};

/// A Node as the control plane stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub ip: Ipv4Addr,
    pub pod_cidr: String,
}

/// A Pod as the control plane stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub node: Option<String>,
    pub ip: Option<Ipv4Addr>,
    pub ready: bool,
    /// Every containerPort of every container, sorted, without duplicates.
    pub ports: Vec<u16>,
    /// Whether a container runs the cluster DNS server (image [`DNS_IMAGE`]) instead of the
    /// netexec server.
    pub dns: bool,
}

/// The container image that makes a testbed pod run `ferroplane dns` (kube-dns's job).
pub const DNS_IMAGE: &str = "ferroplane/dns";

/// The `ferroplane` binary and the state directory it serves.
#[derive(Clone, Debug)]
pub struct Ferroplane {
    pub bin: PathBuf,
    pub state_dir: PathBuf,
}

impl Ferroplane {
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String> {
        let mut child = Command::new(&self.bin)
            .arg("--state")
            .arg(&self.state_dir)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(context(format!("running {}", self.bin.display())))?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            return Err(Error(format!(
                "ferroplane {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn init(&self) -> Result<()> {
        self.run(
            &[
                "init",
                "--cluster-cidr",
                CLUSTER_CIDR,
                "--service-cidr",
                SERVICE_CIDR,
                "--lb-pool",
                LB_POOL,
                // externalIPs may come from the underlay (node addresses stay refused).
                "--external-ip-cidr",
                UNDERLAY_CIDR,
            ],
            None,
        )
        .map(|_| ())
    }

    /// `ferroplane apply -f` each file; returns what it printed (`kind/name created`).
    pub fn apply_files(&self, files: &[PathBuf]) -> Result<String> {
        let mut args = vec!["apply".to_owned(), "-o".to_owned(), "name".to_owned()];
        for file in files {
            args.push("-f".to_owned());
            args.push(file.display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(&args, None)
    }

    /// `ferroplane apply -f -` with `manifest` on standard input.
    pub fn apply_text(&self, manifest: &str) -> Result<String> {
        self.run(&["apply", "-o", "name", "-f", "-"], Some(manifest))
    }

    /// One object as the control plane stores it (`ferroplane get KIND NAME -n NS -o json`).
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Result<Value> {
        let text = self.run(&["get", kind, name, "-n", namespace, "-o", "json"], None)?;
        Ok(serde_json::from_str(&text)?)
    }

    /// `ferroplane delete KIND NAME -n NS`.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) -> Result<()> {
        self.run(&["delete", kind, name, "-n", namespace], None)
            .map(|_| ())
    }

    fn list(&self, kind: &str) -> Result<Vec<Value>> {
        let text = self.run(&["get", kind, "-A", "-o", "json"], None)?;
        let list: Value = serde_json::from_str(&text)?;
        Ok(list["items"].as_array().cloned().unwrap_or_default())
    }

    pub fn nodes(&self) -> Result<Vec<NodeInfo>> {
        self.list("node")?.iter().map(node_info).collect()
    }

    pub fn pods(&self) -> Result<Vec<PodInfo>> {
        Ok(self.list("pod")?.iter().map(pod_info).collect())
    }
}

fn node_info(node: &Value) -> Result<NodeInfo> {
    let name = node["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let ip = node["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["type"] == "InternalIP")
        .and_then(|a| a["address"].as_str()?.parse().ok())
        .ok_or_else(|| Error(format!("Node {name} has no IPv4 InternalIP")))?;
    let pod_cidr = node["spec"]["podCIDR"]
        .as_str()
        .ok_or_else(|| Error(format!("Node {name} was given no podCIDR")))?
        .to_owned();
    Ok(NodeInfo { name, ip, pod_cidr })
}

fn pod_info(pod: &Value) -> PodInfo {
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let mut ports: Vec<u16> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| u16::try_from(p["containerPort"].as_u64()?).ok())
        .collect();
    ports.sort_unstable();
    ports.dedup();
    PodInfo {
        namespace: text(&pod["metadata"]["namespace"]).unwrap_or_else(|| "default".to_owned()),
        name: text(&pod["metadata"]["name"]).unwrap_or_default(),
        node: text(&pod["spec"]["nodeName"]),
        ip: pod["status"]["podIP"]
            .as_str()
            .and_then(|ip| ip.parse().ok()),
        ready: pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True"),
        ports,
        dns: pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["image"] == DNS_IMAGE),
    }
}

/// The `ferroplane` binary: `explicit`, else the one beside this executable, else `PATH`'s.
pub fn locate_ferroplane(explicit: Option<&Path>) -> PathBuf {
    if let Some(path) = explicit {
        return path.to_owned();
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("ferroplane")))
        .filter(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from("ferroplane"))
}
