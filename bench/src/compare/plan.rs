//! The one topology every build of the comparison makes: two nodes on an underlay bridge, a
//! client pod on node 1 and two backend pods on node 2, with the names and addresses the load
//! tools use whatever dataplane carries the traffic.
//!
//! Invariants: every namespace and device name starts with [`PREFIX`] (device names fit
//! IFNAMSIZ); namespaces are named as the testbed names them (`fpcmp-node-1`,
//! `fpcmp-pod-default-client`), so one cleanup (`testbed::teardown::down`) removes any build;
//! node and pod addresses follow the testbed's plan (node IPs from 192.168.50.2, pod CIDR
//! 10.244.N.0/24, pod MACs `0a:58:<ip>`).

use std::net::Ipv4Addr;

use testbed::layout::{Layout, node_ip, node_name, pod_mac};

use super::Result;
use testbed::error::Error;

/// The prefix of every namespace, device and run directory of the comparison.
pub const PREFIX: &str = "fpcmp";
/// Nodes in the topology.
pub const NODES: usize = 2;
/// The pods' MTU: the underlay's 1500 less the VXLAN overhead.
pub const POD_MTU: u16 = 1450;
/// The Kubernetes namespace of every pod.
pub const POD_NAMESPACE: &str = "default";

/// A pod of the topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodSpec {
    pub name: &'static str,
    /// 0-based node index.
    pub node: usize,
    /// Its index among the pods of its node, from 1 (names its node-side interface).
    pub slot: u8,
}

/// The client pod and the backends, in the order the testbed applies them.
pub const PODS: [PodSpec; 3] = [
    PodSpec {
        name: "client",
        node: 0,
        slot: 1,
    },
    PodSpec {
        name: "backend-1",
        node: 1,
        slot: 1,
    },
    PodSpec {
        name: "backend-2",
        node: 1,
        slot: 2,
    },
];

/// Where one pod lives once a build made it: its namespace and address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodAddr {
    pub name: String,
    pub ns: String,
    pub ip: Ipv4Addr,
}

/// What the load tools need from a build: the client pod and the Service's backends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    pub client: PodAddr,
    /// Every backend of the `bench` Service; the first is the `bulk` Service's only one.
    pub backends: Vec<PodAddr>,
    /// Node namespaces, node 1 first.
    pub nodes: Vec<String>,
}

pub fn layout() -> Result<Layout> {
    Layout::new(PREFIX)
}

/// The namespace of node `index` (0-based).
pub fn node_ns(index: usize) -> Result<String> {
    Ok(layout()?.node_ns(&node_name(index)))
}

/// The namespace of a pod.
pub fn pod_ns(pod: &PodSpec) -> Result<String> {
    Ok(layout()?.pod_ns(POD_NAMESPACE, pod.name))
}

/// The underlay address of node `index`.
pub fn node_addr(index: usize) -> Result<Ipv4Addr> {
    node_ip(index).ok_or_else(|| Error(format!("no address for node {index}")))
}

/// The pod CIDR network of node `index`: 10.244.<index>.0 (a /24).
pub fn pod_network(index: usize) -> Result<Ipv4Addr> {
    let third = u8::try_from(index).map_err(|_| Error(format!("node {index}: no pod CIDR")))?;
    Ok(Ipv4Addr::new(10, 244, third, 0))
}

/// The gateway of node `index`'s pods: the first address of its pod CIDR.
pub fn gateway(index: usize) -> Result<Ipv4Addr> {
    Ok(offset(pod_network(index)?, 1))
}

/// A pod's address in the kernel and OVS builds: slot 1 is `.2`, slot 2 `.3`, ...
pub fn pod_ip(pod: &PodSpec) -> Result<Ipv4Addr> {
    Ok(offset(pod_network(pod.node)?, u32::from(pod.slot) + 1))
}

/// The MAC a pod (or a gateway) gets: `0a:58:` and its address, as ferroplane expects.
pub fn mac_of(ip: Ipv4Addr) -> String {
    pod_mac(ip)
}

/// The node-side interface of a pod in the kernel and OVS builds.
pub fn pod_port(pod: &PodSpec) -> String {
    format!("{PREFIX}-p{}", pod.slot)
}

/// The cluster of the kernel and OVS builds, from the plan alone.
pub fn planned_cluster() -> Result<Cluster> {
    let addr = |pod: &PodSpec| -> Result<PodAddr> {
        Ok(PodAddr {
            name: pod.name.to_owned(),
            ns: pod_ns(pod)?,
            ip: pod_ip(pod)?,
        })
    };
    Ok(Cluster {
        client: addr(&PODS[0])?,
        backends: PODS[1..].iter().map(addr).collect::<Result<_>>()?,
        nodes: (0..NODES).map(node_ns).collect::<Result<_>>()?,
    })
}

pub fn offset(base: Ipv4Addr, by: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(base).wrapping_add(by))
}

/// The RPS mask (hexadecimal, as `rps_cpus` takes it) that selects only `cpu`.
pub fn cpu_mask(cpu: usize) -> String {
    let mut mask = format!("{:x}", 1u32 << (cpu % 32));
    for _ in 0..cpu / 32 {
        mask.push_str(",00000000");
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_sit_in_their_nodes_pod_cidr_after_the_gateway() {
        assert_eq!(gateway(0).unwrap(), Ipv4Addr::new(10, 244, 0, 1));
        assert_eq!(pod_ip(&PODS[0]).unwrap(), Ipv4Addr::new(10, 244, 0, 2));
        assert_eq!(pod_ip(&PODS[2]).unwrap(), Ipv4Addr::new(10, 244, 1, 3));
        assert_eq!(mac_of(Ipv4Addr::new(10, 244, 1, 3)), "0a:58:0a:f4:01:03");
    }

    #[test]
    fn names_carry_the_prefix_and_fit_ifnamsiz() {
        let cluster = planned_cluster().unwrap();
        assert_eq!(cluster.client.ns, "fpcmp-pod-default-client");
        assert_eq!(cluster.nodes, ["fpcmp-node-1", "fpcmp-node-2"]);
        assert_eq!(cluster.backends.len(), 2);
        for pod in &PODS {
            let port = pod_port(pod);
            assert!(port.starts_with("fpcmp-") && port.len() <= 15, "{port}");
        }
    }

    #[test]
    fn cpu_masks_select_one_cpu() {
        assert_eq!(cpu_mask(0), "1");
        assert_eq!(cpu_mask(1), "2");
        assert_eq!(cpu_mask(33), "2,00000000");
    }
}
