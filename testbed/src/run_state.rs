//! What a running testbed is made of, kept as `state.json` in its run directory so that every
//! later command (`status`, `probe`, `apply`, `down`) finds the nodes, pods and processes.
//!
//! Invariant: the file is rewritten whole (write to a temporary file, then rename), so a
//! reader sees the previous or the next state, never half of one.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Result, context};
use crate::layout::Layout;

/// How pods are attached to their node's ferroplane (the uplink is AF_PACKET in every case).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Io {
    /// A TAP per pod, created by ferroplane and moved into the pod.
    Tap,
    /// A veth per pod; ferroplane opens its node end with AF_PACKET rings.
    AfPacket,
    /// A veth per pod; ferroplane opens its node end with AF_XDP (generic XDP).
    AfXdp,
}

/// How pod traffic crosses the underlay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Vxlan,
    Routed,
}

/// The cluster's IP families (`up --ip-family`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum IpFamily {
    /// IPv4 only, as every testbed before dual-stack.
    #[default]
    Ipv4,
    /// IPv6 only: refused by `up` until the dataplane programs pods without an IPv4 address.
    Ipv6,
    /// IPv4 primary and IPv6: pods, nodes, Services and the internet host in both families.
    Dual,
}

impl IpFamily {
    pub fn has_ipv6(self) -> bool {
        self != IpFamily::Ipv4
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    pub ip: Ipv4Addr,
    pub pod_cidr: String,
    /// The node's IPv6 address and podCIDR (dual-stack testbeds).
    #[serde(default)]
    pub ip6: Option<Ipv6Addr>,
    #[serde(default)]
    pub pod_cidr6: Option<String>,
    pub netns: String,
    /// The `ferroplane run` process.
    pub pid: u32,
    pub config: PathBuf,
    pub log: PathBuf,
    pub admin_socket: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PodRecord {
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub ip: Ipv4Addr,
    /// The pod's IPv6 address (dual-stack testbeds).
    #[serde(default)]
    pub ip6: Option<Ipv6Addr>,
    pub netns: String,
    pub ports: Vec<u16>,
    /// The `testbed netexec` process, when the pod declares ports.
    pub server_pid: Option<u32>,
    /// Wired through `ferroplane-cni` (so removing it calls the plugin's DEL).
    #[serde(default)]
    pub cni: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunState {
    pub prefix: String,
    pub state_dir: PathBuf,
    pub ferroplane: PathBuf,
    pub io: Io,
    pub mode: Mode,
    #[serde(default)]
    pub ip_family: IpFamily,
    pub nodes: Vec<NodeRecord>,
    pub pods: Vec<PodRecord>,
}

impl RunState {
    fn path(layout: &Layout) -> PathBuf {
        layout.run_dir().join("state.json")
    }

    pub fn load(layout: &Layout) -> Result<RunState> {
        let path = Self::path(layout);
        let text = std::fs::read_to_string(&path).map_err(context(format!(
            "reading {} (is testbed {} up?)",
            path.display(),
            layout.prefix
        )))?;
        serde_json::from_str(&text).map_err(context(path.display()))
    }

    pub fn save(&self, layout: &Layout) -> Result<()> {
        let path = Self::path(layout);
        let temporary = path.with_extension("json.new");
        std::fs::write(&temporary, serde_json::to_vec_pretty(self)?)
            .map_err(context(temporary.display()))?;
        std::fs::rename(&temporary, &path).map_err(context(path.display()))
    }

    pub fn pod(&self, name: &str) -> Option<&PodRecord> {
        let (namespace, name) = split_pod_name(name);
        self.pods
            .iter()
            .find(|p| p.name == name && p.namespace == namespace)
    }

    pub fn node(&self, name: &str) -> Option<&NodeRecord> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

/// `NAMESPACE/NAME` or `NAME` (in `default`).
pub fn split_pod_name(name: &str) -> (&str, &str) {
    name.split_once('/').unwrap_or(("default", name))
}
