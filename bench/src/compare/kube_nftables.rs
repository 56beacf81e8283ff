//! kube-proxy's nftables mode and flannel's nftables rules, as one `nft -f` input for a node:
//! a `kube-proxy` table whose `services` chain looks the packet up in the `service-ips`
//! verdict map (address . protocol . port), per-Service-port chains choosing an endpoint with
//! `numgen random mod N vmap`, per-endpoint chains doing `dnat`, and the masquerade chains;
//! flannel's `flannel-ipv4` table beside it.
//!
//! Invariants: the input deletes and re-creates both tables in one transaction, so loading
//! it again with another Service set leaves nothing of the old one and the node is never
//! without rules; the first packet of a Service costs one map lookup whatever the number of
//! Services.

use std::fmt::Write;

use super::kube_iptables::{CLUSTER_CIDR, MASQ_MARK};
use super::plan::Cluster;
use super::services::{SERVICE_CIDR, ServiceSpec, chain_tag};

/// The `nft -f` input for a node whose pods are in `node_cidr`.
pub fn ruleset(services: &[ServiceSpec], cluster: &Cluster, node_cidr: &str) -> String {
    let mut chains = String::new();
    let mut service_ips = Vec::new();
    let mut cluster_ips = Vec::new();
    for service in services {
        let vip = service.cluster_ip;
        cluster_ips.push(vip.to_string());
        let endpoints = service.endpoints(cluster);
        for port in &service.ports {
            let proto = port.protocol.lower();
            let name = format!("default/{}/{proto}/{}", service.name, port.name);
            let tag = &chain_tag(&name)[..8];
            let chain = format!("service-{tag}-{name}");
            let picks: Vec<String> = endpoints
                .iter()
                .enumerate()
                .map(|(index, endpoint)| {
                    let target = format!("{endpoint}:{}", port.target);
                    let endpoint_chain = format!(
                        "endpoint-{}-{name}__{endpoint}/{}",
                        &chain_tag(&format!("{name}/{target}"))[..8],
                        port.target
                    );
                    let _ = writeln!(
                        chains,
                        "\tchain {endpoint_chain} {{\n\t\tip saddr {endpoint} jump mark-for-masquerade\n\t\tmeta l4proto {proto} dnat to {target}\n\t}}"
                    );
                    format!("{index} : goto {endpoint_chain}")
                })
                .collect();
            let _ = writeln!(
                chains,
                "\tchain {chain} {{\n\t\tip daddr {vip} {proto} dport {} ip saddr != {CLUSTER_CIDR} jump mark-for-masquerade\n\t\tnumgen random mod {} vmap {{ {} }}\n\t}}",
                port.port,
                picks.len(),
                picks.join(", ")
            );
            service_ips.push(format!("{vip} . {proto} . {} : goto {chain}", port.port));
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "add table ip kube-proxy\ndelete table ip kube-proxy\n\
         add table ip flannel-ipv4\ndelete table ip flannel-ipv4\n\
         table ip kube-proxy {{\n\
         \tcomment \"rules for kube-proxy\"\n\
         \tset cluster-ips {{ type ipv4_addr; comment \"Active ClusterIPs\"; }}\n\
         \tmap service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict; comment \"ClusterIP, ExternalIP and LoadBalancer IP traffic\"; }}\n\
         \tmap no-endpoint-services {{ type ipv4_addr . inet_proto . inet_service : verdict; }}\n\
         \tchain filter-forward {{ type filter hook forward priority -110; policy accept; ct state new jump service-endpoints-check; ct state new jump cluster-ips-check; }}\n\
         \tchain filter-output {{ type filter hook output priority -110; policy accept; ct state new jump service-endpoints-check; }}\n\
         \tchain filter-output-post-dnat {{ type filter hook output priority -90; policy accept; ct state new jump cluster-ips-check; }}\n\
         \tchain nat-prerouting {{ type nat hook prerouting priority -100; policy accept; jump services; }}\n\
         \tchain nat-output {{ type nat hook output priority -100; policy accept; jump services; }}\n\
         \tchain nat-postrouting {{ type nat hook postrouting priority 100; policy accept; jump masquerading; }}\n\
         \tchain mark-for-masquerade {{ meta mark set meta mark | {MASQ_MARK}; }}\n\
         \tchain masquerading {{ meta mark & {MASQ_MARK} == 0 return; meta mark set meta mark ^ {MASQ_MARK}; masquerade fully-random; }}\n\
         \tchain services {{ ip daddr . meta l4proto . th dport vmap @service-ips; }}\n\
         \tchain service-endpoints-check {{ ip daddr . meta l4proto . th dport vmap @no-endpoint-services; }}\n\
         \tchain cluster-ips-check {{ ip daddr @cluster-ips reject comment \"Reject traffic to invalid ports of ClusterIPs\"; ip daddr {SERVICE_CIDR} drop comment \"Drop traffic to unallocated ClusterIPs\"; }}"
    );
    out.push_str(&chains);
    let _ = writeln!(
        out,
        "}}\n\
         table ip flannel-ipv4 {{\n\
         \tchain forward {{ type filter hook forward priority filter; policy accept; ip saddr {CLUSTER_CIDR} accept; ip daddr {CLUSTER_CIDR} accept; }}\n\
         \tchain postrtg {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tmeta mark & {MASQ_MARK} == {MASQ_MARK} return\n\
         \t\tip saddr {node_cidr} ip daddr {CLUSTER_CIDR} return\n\
         \t\tip saddr {CLUSTER_CIDR} ip daddr {node_cidr} return\n\
         \t\tip saddr != {CLUSTER_CIDR} ip daddr {node_cidr} return\n\
         \t\tip saddr {CLUSTER_CIDR} ip daddr != 224.0.0.0/4 masquerade fully-random\n\
         \t\tip saddr != {CLUSTER_CIDR} ip daddr {CLUSTER_CIDR} masquerade fully-random\n\
         \t}}\n\
         }}"
    );
    if !cluster_ips.is_empty() {
        let _ = writeln!(
            out,
            "add element ip kube-proxy cluster-ips {{ {} }}\nadd element ip kube-proxy service-ips {{ {} }}",
            cluster_ips.join(", "),
            service_ips.join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::plan::planned_cluster;
    use crate::compare::services::{bench_service, catalog};

    #[test]
    fn each_service_port_is_one_map_element_and_one_numgen_choice() {
        let cluster = planned_cluster().unwrap();
        let text = ruleset(&[bench_service()], &cluster, "10.244.0.0/24");
        assert!(text.contains("10.96.100.10 . tcp . 9002 : goto service-"));
        assert!(text.contains("10.96.100.10 . udp . 9000 : goto service-"));
        assert_eq!(text.matches("numgen random mod 2 vmap").count(), 3);
        assert!(text.contains("meta l4proto tcp dnat to 10.244.1.3:9002"));
        assert!(text.starts_with("add table ip kube-proxy\ndelete table ip kube-proxy\n"));
    }

    #[test]
    fn every_goto_target_is_a_defined_chain() {
        let cluster = planned_cluster().unwrap();
        let text = ruleset(&catalog(20), &cluster, "10.244.0.0/24");
        let defined: std::collections::HashSet<&str> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("chain "))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        let mut targets = 0;
        for piece in text.split("goto ").skip(1) {
            let target = piece.split([' ', ',', '}', '\n']).next().unwrap();
            assert!(defined.contains(target), "{target}");
            targets += 1;
        }
        // 18 decoys x 1 port + bench x 3 + bulk x 1 = 22 map elements, plus their endpoint
        // choices: 18 x 2 + 3 x 2 + 1.
        assert_eq!(targets, 22 + 43);
    }
}
