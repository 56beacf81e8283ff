//! The control plane, through the real `ferroplane` CLI on the testbed's state directory:
//! `init`, `apply`, and reading back Nodes and Pods (with the IPs and podCIDRs it assigned).
//!
//! Invariant: the testbed never writes the state directory itself; every object goes through
//! `ferroplane apply`, which validates it and assigns addresses.

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::error::{Error, Result, context};
use crate::layout::{
    CLUSTER_CIDR, CLUSTER_CIDR6, LB_POOL, LB_POOL6, SERVICE_CIDR, SERVICE_CIDR6, UNDERLAY_CIDR,
};
use crate::run_state::IpFamily;

/// A Node as the control plane stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub ip: Ipv4Addr,
    pub pod_cidr: String,
    /// The IPv6 InternalIP and IPv6 podCIDR, in a dual-stack cluster.
    pub ip6: Option<Ipv6Addr>,
    pub pod_cidr6: Option<String>,
}

/// A Pod as the control plane stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub node: Option<String>,
    pub ip: Option<Ipv4Addr>,
    /// The IPv6 entry of `status.podIPs`, in a dual-stack cluster.
    pub ip6: Option<Ipv6Addr>,
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

    /// `ferroplane init` with the testbed's ranges: IPv4, or in a dual-stack testbed IPv4
    /// primary and IPv6 second (cluster, Service and LoadBalancer ranges).
    pub fn init(&self, family: IpFamily) -> Result<()> {
        let both = |v4: &str, v6: &str| match family {
            IpFamily::Ipv4 => v4.to_owned(),
            IpFamily::Dual => format!("{v4},{v6}"),
            IpFamily::Ipv6 => v6.to_owned(),
        };
        self.run(
            &[
                "init",
                "--cluster-cidr",
                &both(CLUSTER_CIDR, CLUSTER_CIDR6),
                "--service-cidr",
                &both(SERVICE_CIDR, SERVICE_CIDR6),
                "--lb-pool",
                &both(LB_POOL, LB_POOL6),
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
    let internal = || {
        node["status"]["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["type"] == "InternalIP")
            .filter_map(|a| a["address"].as_str())
    };
    let ip = internal()
        .find_map(|a| a.parse::<Ipv4Addr>().ok())
        .ok_or_else(|| Error(format!("Node {name} has no IPv4 InternalIP")))?;
    let ip6 = internal().find_map(|a| a.parse::<Ipv6Addr>().ok());
    let pod_cidrs: Vec<&str> = node["spec"]["podCIDRs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .chain(node["spec"]["podCIDR"].as_str())
        .collect();
    let pod_cidr = pod_cidrs
        .iter()
        .find(|c| !c.contains(':'))
        .ok_or_else(|| Error(format!("Node {name} was given no IPv4 podCIDR")))?
        .to_string();
    let pod_cidr6 = pod_cidrs
        .iter()
        .find(|c| c.contains(':'))
        .map(|c| c.to_string());
    Ok(NodeInfo {
        name,
        ip,
        pod_cidr,
        ip6,
        pod_cidr6,
    })
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
    let pod_ips = || {
        pod["status"]["podIPs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["ip"].as_str())
            .chain(pod["status"]["podIP"].as_str())
    };
    PodInfo {
        namespace: text(&pod["metadata"]["namespace"]).unwrap_or_else(|| "default".to_owned()),
        name: text(&pod["metadata"]["name"]).unwrap_or_default(),
        node: text(&pod["spec"]["nodeName"]),
        ip: pod_ips().find_map(|ip| ip.parse().ok()),
        ip6: pod_ips().find_map(|ip| ip.parse().ok()),
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
