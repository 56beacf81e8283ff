//! Playing CNI and kubelet for one pod: its namespace, its interface wired to the node's
//! ferroplane, its address and routes, and its server: `testbed netexec` on its ports, or for
//! pods of the image `ferroplane/dns` the cluster DNS server, `ferroplane dns`, on port 53.
//!
//! Invariants: the pod's interface is `eth0` with MAC `0a:58:<ip>` and `IP/24` without the
//! connected route; everything goes through the gateway (`.1` of the node's podCIDR), which the
//! dataplane answers ARP for. With AF_PACKET the pod's veth keeps TSO: the node's socket
//! takes GSO super-packets with a virtio-net header. With AF_XDP the pod side never emits them
//! (`gso_max_segs 1`) and computes its own checksums (TX offload off), as AF_XDP frames carry
//! neither GSO metadata nor a partial mark.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use control::node::pod_interface_name;

use crate::cluster::Ferroplane;
use crate::cni;
use crate::error::{Error, Result, context};
use crate::layout::{Layout, POD_IF, pod_mac};
use crate::netns::{add, exec, ip, spawn_until_ready, wait_for_link};
use crate::nodes::netns_dir;
use crate::run_state::{Io, Mode, NodeRecord, PodRecord};

const SERVER_READY_WITHIN: Duration = Duration::from_secs(10);

/// A pod to bring up on `node`.
pub struct PodSpec<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub ip: Ipv4Addr,
    /// Its IPv6 address, in a dual-stack cluster.
    pub ip6: Option<Ipv6Addr>,
    pub ports: &'a [u16],
    /// Run the cluster DNS server (`ferroplane dns` on port 53) instead of netexec.
    pub dns: Option<&'a Ferroplane>,
    /// Wire the pod through `ferroplane-cni` (this `ferroplane` binary) instead of by hand.
    pub cni: Option<&'a Path>,
}

/// Creates the pod's namespace, attaches it to `node` and starts its server.
pub fn start(
    layout: &Layout,
    (io, mode): (Io, Mode),
    node: &NodeRecord,
    pod: &PodSpec<'_>,
) -> Result<PodRecord> {
    let ns = layout.pod_ns(pod.namespace, pod.name);
    add(&ns)?;
    if pod.ip6.is_some() {
        crate::fabric6::enable_ipv6(&ns)?;
    }
    let link = Path::new("/run/netns").join(&ns);
    let bound = netns_dir(layout, &node.name).join(&ns);
    std::os::unix::fs::symlink(&link, &bound).map_err(context(bound.display()))?;
    let iface = pod_interface_name(pod.namespace, pod.name);
    if let Some(ferroplane) = pod.cni {
        if io == Io::Tap {
            // The node process creates the pod's TAP once it sees the Pod; the plugin moves it.
            wait_for_link(&node.netns, &iface, Duration::from_secs(10))?;
        }
        let attachment = cni::Attachment {
            pod_namespace: pod.namespace,
            pod_name: pod.name,
            netns: &ns,
            ip: pod.ip,
            ip6: pod.ip6,
        };
        cni::call(layout, ferroplane, (io, mode), node, "ADD", &attachment)?;
        if io == Io::AfXdp {
            exec(&ns, &["ethtool", "-K", POD_IF, "tx", "off"])?;
        }
    } else {
        wire_by_hand(node, &ns, &iface, (io, mode), pod.ip)?;
        if let Some(ip6) = pod.ip6 {
            wire_ipv6_by_hand(&ns, ip6)?;
        }
    }
    let server_pid = match pod.dns {
        Some(ferroplane) => Some(start_dns(layout, &ns, ferroplane)?),
        None if pod.ports.is_empty() => None,
        None => Some(start_server(layout, &ns, pod.name, pod.ports)?),
    };
    Ok(PodRecord {
        namespace: pod.namespace.to_owned(),
        name: pod.name.to_owned(),
        node: node.name.clone(),
        ip: pod.ip,
        ip6: pod.ip6,
        netns: ns,
        ports: pod.ports.to_vec(),
        server_pid,
        cni: pod.cni.is_some(),
    })
}

/// What a CNI does, done with `ip` commands: the pod's device, MAC, address and routes.
fn wire_by_hand(
    node: &NodeRecord,
    ns: &str,
    iface: &str,
    (io, mode): (Io, Mode),
    pod_ip: Ipv4Addr,
) -> Result<()> {
    let ns = ns.to_owned();
    let iface = iface.to_owned();
    match io {
        Io::Tap => {
            wait_for_link(&node.netns, &iface, Duration::from_secs(10))?;
            ip(&node.netns, &["link", "set", &iface, "netns", &ns])?;
            ip(&ns, &["link", "set", &iface, "name", POD_IF])?;
        }
        Io::AfPacket | Io::AfXdp => {
            let mtu = match mode {
                Mode::Vxlan => "1450",
                Mode::Routed => "1500",
            };
            ip(
                &node.netns,
                &[
                    "link", "add", &iface, "mtu", mtu, "type", "veth", "peer", "name", POD_IF,
                    "mtu", mtu, "netns", &ns,
                ],
            )?;
            ip(&node.netns, &["link", "set", &iface, "up"])?;
            if io == Io::AfXdp {
                // AF_XDP carries no GSO metadata nor "checksum partial" mark: the pod must send
                // wire-sized frames with whole checksums. AF_PACKET pods keep TSO on: their
                // socket takes super-packets with a virtio-net header.
                ip(&ns, &["link", "set", POD_IF, "gso_max_segs", "1"])?;
                exec(&ns, &["ethtool", "-K", POD_IF, "tx", "off"])?;
            }
        }
    }
    let gateway = gateway_of(&node.pod_cidr)?;
    ip(&ns, &["link", "set", POD_IF, "address", &pod_mac(pod_ip)])?;
    ip(
        &ns,
        &[
            "addr",
            "add",
            &format!("{pod_ip}/24"),
            "dev",
            POD_IF,
            "noprefixroute",
        ],
    )?;
    ip(&ns, &["link", "set", POD_IF, "up"])?;
    ip(
        &ns,
        &["route", "add", &gateway, "dev", POD_IF, "scope", "link"],
    )?;
    ip(&ns, &["route", "add", "default", "via", &gateway])?;
    Ok(())
}

/// The IPv6 half of [`wire_by_hand`]: the address without its connected route and the default
/// route via the dataplane's link-local gateway, as the plugin sets them.
fn wire_ipv6_by_hand(ns: &str, ip6: Ipv6Addr) -> Result<()> {
    ip(
        ns,
        &[
            "-6",
            "addr",
            "add",
            &format!("{ip6}/64"),
            "dev",
            POD_IF,
            "noprefixroute",
            "nodad",
        ],
    )?;
    let gateway = dataplane::tables::v6::GATEWAY_LINK_LOCAL.to_string();
    ip(
        ns,
        &[
            "-6", "route", "add", "default", "via", &gateway, "dev", POD_IF,
        ],
    )
    .map(|_| ())
}

/// The first address of a podCIDR (`10.244.1.0/24` -> `10.244.1.1`).
fn gateway_of(pod_cidr: &str) -> Result<String> {
    let network: Ipv4Addr = pod_cidr
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| Error(format!("podCIDR {pod_cidr:?} is not IPv4")))?;
    Ok(Ipv4Addr::from(u32::from(network) + 1).to_string())
}

/// Starts `testbed netexec` answering as `name` in namespace `ns` and waits until it prints
/// `ready` to its log (in the run directory's `servers/`).
pub fn start_server(layout: &Layout, ns: &str, name: &str, ports: &[u16]) -> Result<u32> {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    let mut command = Command::new(std::env::current_exe()?);
    command.args(["netexec", "--name", name, "--ports", &ports.join(",")]);
    spawn_in_pod(layout, ns, command, "ready")
}

/// Starts the cluster DNS server, `ferroplane dns` on port 53 (UDP and TCP) over the
/// cluster's state, and waits until it serves.
fn start_dns(layout: &Layout, ns: &str, ferroplane: &Ferroplane) -> Result<u32> {
    let mut command = Command::new(&ferroplane.bin);
    command
        .arg("--state")
        .arg(&ferroplane.state_dir)
        .args(["dns", "--listen", "0.0.0.0:53"]);
    spawn_in_pod(layout, ns, command, "serving ")
}

/// Runs `command` inside namespace `ns`, output in the run directory's `servers/`, and waits
/// until a line of its log starts with `ready_line`.
fn spawn_in_pod(layout: &Layout, ns: &str, command: Command, ready_line: &str) -> Result<u32> {
    let dir = layout.run_dir().join("servers");
    std::fs::create_dir_all(&dir).map_err(context(dir.display()))?;
    let log = dir.join(format!("{ns}.log"));
    spawn_until_ready(ns, &command, &log, ready_line, SERVER_READY_WITHIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_is_the_first_address_of_the_pod_cidr() {
        assert_eq!(gateway_of("10.244.1.0/24").unwrap(), "10.244.1.1");
        assert_eq!(gateway_of("10.244.255.0/24").unwrap(), "10.244.255.1");
        assert!(gateway_of("fd00::/64").is_err());
    }
}
