//! The kernel path as Kubernetes runs it with flannel and kube-proxy, in the node
//! namespaces: a `flannel.1`-like VXLAN device (VNI 1, port 8472, no learning, a static FDB,
//! neighbour and route entry per remote node), a `cni0`-like bridge with the pods' veths, and
//! kube-proxy's rules in iptables or nftables mode; kernel conntrack.
//!
//! Invariants: each node's VTEP MAC and address follow from its index (`<pod network>.0/32`,
//! as flannel sets them), so every node can write every peer's entries without asking;
//! programming a Service set replaces the whole previous rule set on every node.

use std::path::PathBuf;

use testbed::error::{Error, context};
use testbed::netns::{exec, ip, sysctl};

use super::kube_iptables;
use super::kube_nftables;
use super::netdevs::{UPLINK, pod_with_veth, underlay_and_nodes};
use super::plan::{
    Cluster, NODES, POD_MTU, PODS, gateway, layout, node_addr, node_ns, planned_cluster,
    pod_network,
};
use super::services::ServiceSpec;
use super::{Result, Teardown};

/// The VXLAN device (flannel's `flannel.1`).
pub const VXLAN_DEV: &str = "fpcmp-vx";
/// The pods' bridge (the bridge CNI plugin's `cni0`).
pub const POD_BRIDGE: &str = "fpcmp-cni";

/// Which of kube-proxy's modes programs the Services.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyMode {
    Iptables,
    Nftables,
}

/// A built kernel-path cluster.
pub struct KernelBuild {
    mode: ProxyMode,
    cluster: Cluster,
    rules_dir: PathBuf,
    _teardown: Teardown,
}

/// The VTEP MAC of node `index`.
fn vtep_mac(index: usize) -> Result<String> {
    let [a, b, c, d] = node_addr(index)?.octets();
    Ok(format!("0e:fd:{a:02x}:{b:02x}:{c:02x}:{d:02x}"))
}

/// Builds the topology (removing any leftovers first); no Service is programmed yet.
pub fn build(mode: ProxyMode) -> Result<KernelBuild> {
    let teardown = Teardown::begin()?;
    let rules_dir = layout()?.run_dir().join("rules");
    std::fs::create_dir_all(&rules_dir).map_err(context(rules_dir.display()))?;
    underlay_and_nodes()?;
    for index in 0..NODES {
        node(index)?;
    }
    for pod in &PODS {
        let port = pod_with_veth(pod)?;
        ip(
            &node_ns(pod.node)?,
            &["link", "set", &port, "master", POD_BRIDGE],
        )?;
    }
    Ok(KernelBuild {
        mode,
        cluster: planned_cluster()?,
        rules_dir,
        _teardown: teardown,
    })
}

fn node(index: usize) -> Result<()> {
    let ns = node_ns(index)?;
    let own = node_addr(index)?;
    let mtu = POD_MTU.to_string();
    ip(&ns, &["addr", "add", &format!("{own}/24"), "dev", UPLINK])?;
    sysctl(&ns, "net/ipv4/ip_forward", "1")?;
    ip(
        &ns,
        &[
            "link",
            "add",
            VXLAN_DEV,
            "type",
            "vxlan",
            "id",
            "1",
            "local",
            &own.to_string(),
            "dev",
            UPLINK,
            "dstport",
            "8472",
            "nolearning",
        ],
    )?;
    ip(
        &ns,
        &[
            "link",
            "set",
            VXLAN_DEV,
            "address",
            &vtep_mac(index)?,
            "mtu",
            &mtu,
            "up",
        ],
    )?;
    ip(
        &ns,
        &[
            "addr",
            "add",
            &format!("{}/32", pod_network(index)?),
            "dev",
            VXLAN_DEV,
        ],
    )?;
    ip(&ns, &["link", "add", POD_BRIDGE, "type", "bridge"])?;
    ip(&ns, &["link", "set", POD_BRIDGE, "mtu", &mtu, "up"])?;
    ip(
        &ns,
        &[
            "addr",
            "add",
            &format!("{}/24", gateway(index)?),
            "dev",
            POD_BRIDGE,
        ],
    )?;
    // Kubernetes requires bridged pod traffic to pass the iptables hooks (br_netfilter).
    sysctl(&ns, "net/bridge/bridge-nf-call-iptables", "1")?;
    for peer in (0..NODES).filter(|&p| p != index) {
        let vtep = pod_network(peer)?.to_string();
        let mac = vtep_mac(peer)?;
        ip(
            &ns,
            &[
                "route",
                "add",
                &format!("{vtep}/24"),
                "via",
                &vtep,
                "dev",
                VXLAN_DEV,
                "onlink",
            ],
        )?;
        ip(
            &ns,
            &[
                "neigh",
                "add",
                &vtep,
                "lladdr",
                &mac,
                "dev",
                VXLAN_DEV,
                "nud",
                "permanent",
            ],
        )?;
        exec(
            &ns,
            &[
                "bridge",
                "fdb",
                "append",
                &mac,
                "dev",
                VXLAN_DEV,
                "dst",
                &node_addr(peer)?.to_string(),
            ],
        )?;
    }
    Ok(())
}

impl KernelBuild {
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Loads kube-proxy's rules for `services` on every node, replacing the previous set,
    /// and flushes conntrack so no earlier decision survives.
    pub fn program(&self, services: &[ServiceSpec]) -> Result<()> {
        for index in 0..NODES {
            let ns = node_ns(index)?;
            let node_cidr = format!("{}/24", pod_network(index)?);
            let (text, file, loader) = match self.mode {
                ProxyMode::Iptables => (
                    kube_iptables::ruleset(services, &self.cluster, &node_cidr),
                    self.rules_dir.join(format!("iptables-{index}.rules")),
                    vec!["iptables-restore"],
                ),
                ProxyMode::Nftables => (
                    kube_nftables::ruleset(services, &self.cluster, &node_cidr),
                    self.rules_dir.join(format!("nftables-{index}.nft")),
                    vec!["nft", "-f"],
                ),
            };
            std::fs::write(&file, text).map_err(context(file.display()))?;
            let path = file.display().to_string();
            let mut args = loader;
            args.push(&path);
            exec(&ns, &args).map_err(|e| Error(format!("loading {path}: {e}")))?;
            // `conntrack -F` exits 0 also when the table was empty.
            exec(&ns, &["conntrack", "-F"])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vtep_macs_follow_the_node_address() {
        assert_eq!(vtep_mac(0).unwrap(), "0e:fd:c0:a8:32:02");
        assert_eq!(vtep_mac(1).unwrap(), "0e:fd:c0:a8:32:03");
    }
}
