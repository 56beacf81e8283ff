//! kube-proxy's iptables mode and flannel's rules, as one `iptables-restore` input for a
//! node: `KUBE-SERVICES` -> `KUBE-SVC-*` (random choice with `-m statistic`) -> `KUBE-SEP-*`
//! (DNAT), `KUBE-MARK-MASQ` / `KUBE-POSTROUTING` (MASQUERADE), `KUBE-FORWARD`, and flannel's
//! `FLANNEL-POSTRTG` / `FLANNEL-FWD`.
//!
//! Invariants: the text replaces the whole `filter` and `nat` tables (no `--noflush`), so
//! loading it again with another Service set leaves nothing of the old one; every Service
//! port gets one `KUBE-SERVICES` rule in catalog order, so a Service's first packet walks the
//! rules before it, as with kube-proxy; endpoint `i` of `n` is chosen with probability
//! `1/(n-i)`, which makes the choice uniform.

use std::fmt::Write;

use super::plan::Cluster;
use super::services::{ServiceSpec, chain_tag};

/// The pod range of the whole cluster.
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";
/// kube-proxy's masquerade mark.
pub const MASQ_MARK: &str = "0x4000";

/// The `iptables-restore` input for a node whose pods are in `node_cidr`.
pub fn ruleset(services: &[ServiceSpec], cluster: &Cluster, node_cidr: &str) -> String {
    let mut out = String::new();
    filter_table(&mut out);
    nat_table(&mut out, services, cluster, node_cidr);
    out
}

fn filter_table(out: &mut String) {
    out.push_str(
        "*filter\n\
         :KUBE-NODEPORTS - [0:0]\n\
         :KUBE-SERVICES - [0:0]\n\
         :KUBE-EXTERNAL-SERVICES - [0:0]\n\
         :KUBE-FIREWALL - [0:0]\n\
         :KUBE-FORWARD - [0:0]\n\
         :KUBE-PROXY-FIREWALL - [0:0]\n\
         :FLANNEL-FWD - [0:0]\n\
         -A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL\n\
         -A INPUT -m comment --comment \"kubernetes health check service ports\" -j KUBE-NODEPORTS\n\
         -A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES\n\
         -A INPUT -j KUBE-FIREWALL\n\
         -A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL\n\
         -A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n\
         -A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES\n\
         -A FORWARD -m comment --comment \"flanneld forward\" -j FLANNEL-FWD\n\
         -A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL\n\
         -A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A OUTPUT -j KUBE-FIREWALL\n\
         -A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment \"block incoming localnet connections\" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP\n\
         -A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n",
    );
    let _ = writeln!(
        out,
        "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark {MASQ_MARK}/{MASQ_MARK} -j ACCEPT\n\
         -A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
         -A FLANNEL-FWD -s {CLUSTER_CIDR} -m comment --comment \"flanneld forward\" -j ACCEPT\n\
         -A FLANNEL-FWD -d {CLUSTER_CIDR} -m comment --comment \"flanneld forward\" -j ACCEPT\n\
         COMMIT"
    );
}

fn nat_table(out: &mut String, services: &[ServiceSpec], cluster: &Cluster, node_cidr: &str) {
    let mut chains = String::new();
    let mut rules = String::new();
    let mut portals = String::new();
    for service in services {
        let endpoints = service.endpoints(cluster);
        for port in &service.ports {
            let id = service.port_id(port);
            let proto = port.protocol.lower();
            let vip = service.cluster_ip;
            let svc = format!("KUBE-SVC-{}", chain_tag(&format!("{id}/{proto}")));
            let _ = writeln!(chains, ":{svc} - [0:0]");
            let _ = writeln!(
                portals,
                "-A KUBE-SERVICES -d {vip}/32 -p {proto} -m comment --comment \"{id} cluster IP\" -m {proto} --dport {} -j {svc}",
                port.port
            );
            let _ = writeln!(
                rules,
                "-A {svc} ! -s {CLUSTER_CIDR} -d {vip}/32 -p {proto} -m comment --comment \"{id} cluster IP\" -m {proto} --dport {} -j KUBE-MARK-MASQ",
                port.port
            );
            for (index, endpoint) in endpoints.iter().enumerate() {
                let target = format!("{endpoint}:{}", port.target);
                let sep = format!("KUBE-SEP-{}", chain_tag(&format!("{id}/{proto}/{target}")));
                let _ = writeln!(chains, ":{sep} - [0:0]");
                let remaining = endpoints.len() - index;
                let choice = if remaining > 1 {
                    format!(
                        "-m statistic --mode random --probability {:.11} ",
                        1.0 / remaining as f64
                    )
                } else {
                    String::new()
                };
                let _ = writeln!(
                    rules,
                    "-A {svc} -m comment --comment \"{id} -> {target}\" {choice}-j {sep}\n\
                     -A {sep} -s {endpoint}/32 -m comment --comment \"{id}\" -j KUBE-MARK-MASQ\n\
                     -A {sep} -p {proto} -m comment --comment \"{id}\" -m {proto} -j DNAT --to-destination {target}"
                );
            }
        }
    }
    out.push_str(
        "*nat\n\
         :KUBE-SERVICES - [0:0]\n\
         :KUBE-NODEPORTS - [0:0]\n\
         :KUBE-POSTROUTING - [0:0]\n\
         :KUBE-MARK-MASQ - [0:0]\n\
         :FLANNEL-POSTRTG - [0:0]\n",
    );
    out.push_str(&chains);
    let _ = writeln!(
        out,
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n\
         -A POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG\n\
         -A KUBE-MARK-MASQ -j MARK --or-mark {MASQ_MARK}\n\
         -A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN\n\
         -A KUBE-POSTROUTING -j MARK --xor-mark {MASQ_MARK}\n\
         -A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n\
         -A FLANNEL-POSTRTG -m mark --mark {MASQ_MARK}/{MASQ_MARK} -m comment --comment \"flanneld masq\" -j RETURN\n\
         -A FLANNEL-POSTRTG -s {node_cidr} -d {CLUSTER_CIDR} -m comment --comment \"flanneld masq\" -j RETURN\n\
         -A FLANNEL-POSTRTG -s {CLUSTER_CIDR} -d {node_cidr} -m comment --comment \"flanneld masq\" -j RETURN\n\
         -A FLANNEL-POSTRTG ! -s {CLUSTER_CIDR} -d {node_cidr} -m comment --comment \"flanneld masq\" -j RETURN\n\
         -A FLANNEL-POSTRTG -s {CLUSTER_CIDR} ! -d 224.0.0.0/4 -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully\n\
         -A FLANNEL-POSTRTG ! -s {CLUSTER_CIDR} -d {CLUSTER_CIDR} -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully"
    );
    out.push_str(&portals);
    out.push_str(
        "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n",
    );
    out.push_str(&rules);
    out.push_str("COMMIT\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::plan::planned_cluster;
    use crate::compare::services::{bench_service, catalog};

    #[test]
    fn each_service_port_gets_a_portal_a_service_chain_and_one_dnat_per_endpoint() {
        let cluster = planned_cluster().unwrap();
        let text = ruleset(&[bench_service()], &cluster, "10.244.0.0/24");
        let portals: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("-A KUBE-SERVICES -d "))
            .collect();
        assert_eq!(portals.len(), 3);
        assert!(
            portals[2].contains("-d 10.96.100.10/32 -p tcp") && portals[2].contains("--dport 9002")
        );
        assert!(text.contains("-j DNAT --to-destination 10.244.1.2:9002"));
        assert!(text.contains("-j DNAT --to-destination 10.244.1.3:9000"));
        // Two endpoints: the first with probability 1/2, the last unconditionally.
        assert_eq!(
            text.matches("--probability 0.50000000000").count(),
            3,
            "one per port"
        );
        assert_eq!(text.matches("*filter").count(), 1);
        assert_eq!(text.matches("COMMIT").count(), 2);
    }

    #[test]
    fn every_chain_jumped_to_is_declared() {
        let cluster = planned_cluster().unwrap();
        let text = ruleset(&catalog(50), &cluster, "10.244.0.0/24");
        let declared: std::collections::HashSet<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix(':'))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        for line in text.lines().filter(|l| l.starts_with("-A ")) {
            let target = line
                .rsplit("-j ")
                .next()
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap();
            if target.starts_with("KUBE-") || target.starts_with("FLANNEL-") {
                assert!(declared.contains(target), "{target} in {line}");
            }
        }
        // 50 Services: 48 decoys with one port, bench with three, bulk with one.
        assert_eq!(text.matches("-A KUBE-SERVICES -d ").count(), 52);
    }
}
