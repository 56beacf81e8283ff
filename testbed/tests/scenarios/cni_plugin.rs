//! Helpers of the scenarios that drive `ferroplane-cni` themselves (a DEL, an ADD while the
//! node process is down), through the testbed's own runtime call (`testbed::cni::call`).

use std::net::Ipv4Addr;
use std::process::Command;

use testbed::cni::{Attachment, call};
use testbed::layout::Layout;
use testbed::run_state::RunState;

use crate::cluster::Cluster;

/// Runs the plugin's `command` for pod `default/NAME` in namespace `netns` on `node`.
pub fn plugin(
    cluster: &Cluster,
    node: &str,
    command: &str,
    name: &str,
    netns: &str,
    ip: Ipv4Addr,
) -> Result<String, String> {
    let layout = Layout::new(&cluster.prefix).unwrap();
    let state = RunState::load(&layout).unwrap();
    let record = state.node(node).unwrap();
    let attachment = Attachment {
        pod_namespace: "default",
        pod_name: name,
        netns,
        ip,
        ip6: None,
    };
    call(
        &layout,
        &state.ferroplane,
        (state.io, state.mode),
        record,
        command,
        &attachment,
    )
    .map_err(|e| e.to_string())
}

/// The pod's network namespace, as the testbed names it.
pub fn pod_netns(cluster: &Cluster, name: &str) -> String {
    Layout::new(&cluster.prefix)
        .unwrap()
        .pod_ns("default", name)
}

/// The node's network namespace.
pub fn node_netns(cluster: &Cluster, node: &str) -> String {
    let layout = Layout::new(&cluster.prefix).unwrap();
    RunState::load(&layout)
        .unwrap()
        .node(node)
        .unwrap()
        .netns
        .clone()
}

/// The process ID of the node's ferroplane.
pub fn node_pid(cluster: &Cluster, node: &str) -> u32 {
    let layout = Layout::new(&cluster.prefix).unwrap();
    RunState::load(&layout).unwrap().node(node).unwrap().pid
}

/// The names of the links in network namespace `ns`.
pub fn links(ns: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-n", ns, "-o", "link", "show"])
        .output()
        .unwrap();
    assert!(out.status.success(), "ip -n {ns} link: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .collect()
}

/// The address files of the plugin's IPAM on `node` (one per allocated address).
pub fn leases(cluster: &Cluster, node: &str) -> Vec<String> {
    let dir = Layout::new(&cluster.prefix)
        .unwrap()
        .run_dir()
        .join("cni")
        .join(node)
        .join("ferroplane");
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.parse::<Ipv4Addr>().is_ok())
        .collect()
}

/// `ferroplane conntrack list --node-name NODE ARGS...` on the testbed's state.
pub fn conntrack(cluster: &Cluster, node: &str, args: &[&str]) -> String {
    let state = cluster.status()["state_dir"].as_str().unwrap().to_owned();
    let out = Command::new(crate::cluster::ferroplane())
        .args(["--state", &state, "conntrack", "list", "--node-name", node])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "conntrack list: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The node's ferroplane log.
pub fn node_log(cluster: &Cluster, node: &str) -> String {
    let layout = Layout::new(&cluster.prefix).unwrap();
    let path = RunState::load(&layout)
        .unwrap()
        .node(node)
        .unwrap()
        .log
        .clone();
    std::fs::read_to_string(path).unwrap()
}
