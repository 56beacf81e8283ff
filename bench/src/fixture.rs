//! A synthetic cluster of any size, as node A's snapshot: local pods, remote nodes, Services
//! with remote endpoints, and NetworkPolicies on the local pods.
//!
//! Invariant: deterministic (no randomness), so every run measures the same tables.

use std::net::Ipv4Addr;
use std::sync::Arc;

use dataplane::cidr::Cidr;
use dataplane::flow::L4Proto;
use dataplane::packet::PortId;
use dataplane::snapshot::Snapshot;
use dataplane::tables::node::NodeConfig;
use dataplane::tables::policy::{Peer, PodRules, PolicyTable, PortRange, Rule};
use dataplane::tables::ports::{LocalPod, PortKind, PortTable};
use dataplane::tables::routes::{RemoteNode, RouteTable};
use dataplane::tables::services::{Backend, Scheduler, ServiceSpec, ServiceTable};
use dataplane::wire::MacAddr;

pub const UPLINK: PortId = PortId(0);
pub const HOST: PortId = PortId(1);
/// Port of local pod `i` is `FIRST_POD + i`.
pub const FIRST_POD: u16 = 2;
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 2);
pub const REMOTE_NODES: u32 = 16;
pub const TARGET_PORT: u16 = 8080;

/// How big the cluster is.
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    pub services: u32,
    pub endpoints_per_service: u32,
    pub policies: u32,
    pub local_pods: u32,
}

pub fn node() -> NodeConfig {
    NodeConfig::example("node-a", NODE_IP, cidr(Ipv4Addr::new(10, 244, 1, 0), 24))
}

fn cidr(net: Ipv4Addr, prefix: u8) -> Cidr {
    Cidr::new(net, prefix).expect("fixture CIDRs have prefixes <= 32")
}

pub fn local_pod_ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 244, 1, 10)) + i)
}

pub fn local_pod_mac(i: u32) -> MacAddr {
    let b = i.to_be_bytes();
    MacAddr([0x0a, 0x58, b[0], b[1], b[2], b[3]])
}

pub fn remote_node_ip(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(NODE_IP) + 1 + n)
}

pub fn remote_node_mac(n: u32) -> MacAddr {
    MacAddr([0x02, 0xfe, 0, 0, 0, n as u8])
}

/// Endpoint `j` of service `s`, on remote node `(s + j) % REMOTE_NODES`.
pub fn endpoint_ip(s: u32, j: u32) -> Ipv4Addr {
    let n = (s + j) % REMOTE_NODES;
    let host = 2 + (s.wrapping_mul(7).wrapping_add(j)) % 250;
    Ipv4Addr::new(10, 244, 2 + n as u8, host as u8)
}

pub fn service_vip(s: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + 16 + s)
}

pub fn snapshot(scale: Scale) -> Snapshot {
    let node = node();
    let pods: Vec<LocalPod> = (0..scale.local_pods)
        .map(|i| LocalPod {
            name: Arc::from(format!("default/client-{i}")),
            ip: local_pod_ip(i),
            mac: local_pod_mac(i),
            port: PortId(FIRST_POD + i as u16),
        })
        .collect();
    let mut kinds = vec![PortKind::Uplink, PortKind::Host];
    kinds.extend((0..scale.local_pods).map(|_| PortKind::Pod));
    let routes = RouteTable::new(
        (0..REMOTE_NODES)
            .map(|n| RemoteNode {
                name: format!("node-{n}"),
                node_ip: remote_node_ip(n),
                node_ip6: None,
                pod_cidr: cidr(Ipv4Addr::new(10, 244, 2 + n as u8, 0), 24),
                vtep_mac: MacAddr([0x02, 0xfc, 0, 0, 0, n as u8]),
                underlay_mac: remote_node_mac(n),
            })
            .collect(),
    );
    let specs = (0..scale.services)
        .map(|s| ServiceSpec {
            name: Arc::from(format!("default/svc-{s}:http")),
            proto: L4Proto::Tcp,
            port: 80,
            cluster_ips: vec![service_vip(s)],
            external_ips: vec![],
            lb_ips: vec![],
            node_port: None,
            backends: (0..scale.endpoints_per_service)
                .map(|j| Backend {
                    ip: endpoint_ip(s, j),
                    port: TARGET_PORT,
                    node_local: false,
                    serving: true,
                    terminating: false,
                    pod: None,
                })
                .collect(),
            scheduler: if s % 2 == 0 {
                Scheduler::Random
            } else {
                Scheduler::Maglev
            },
            affinity_timeout: None,
            internal_local: false,
            external_local: false,
            lb_source_ranges: vec![],
        })
        .collect();
    let (services, errors) = ServiceTable::build_lenient(specs, &node.node_port_addresses, 16381);
    assert!(errors.is_empty(), "fixture services: {errors:?}");
    Snapshot {
        generation: 1,
        ports: PortTable::new(kinds, pods),
        routes: std::sync::Arc::new(routes),
        services: std::sync::Arc::new(services),
        policy: std::sync::Arc::new(policies(scale)),
        node,
        v6: Default::default(),
    }
}

/// `scale.policies` egress policies spread over the local pods, each allowing the cluster
/// CIDR on the target port plus DNS, so benchmark traffic passes after a real rule scan.
fn policies(scale: Scale) -> PolicyTable {
    let mut b = PolicyTable::builder();
    let cluster = cidr(Ipv4Addr::new(10, 244, 0, 0), 16);
    let mut per_pod: Vec<Vec<Rule>> = vec![Vec::new(); scale.local_pods as usize];
    for p in 0..scale.policies {
        let id = b.add_policy(&format!("default/policy-{p}"));
        let pod = (p % scale.local_pods.max(1)) as usize;
        if let Some(rules) = per_pod.get_mut(pod) {
            rules.push(Rule {
                peers: vec![Peer::Block {
                    cidr: cluster,
                    except: vec![],
                }],
                ports: vec![
                    PortRange::single(L4Proto::Tcp, 9000 + (p % 100) as u16),
                    PortRange::single(L4Proto::Udp, 53),
                    PortRange::single(L4Proto::Tcp, TARGET_PORT),
                ],
                policy: id,
            });
        }
    }
    for (i, rules) in per_pod.into_iter().enumerate() {
        if rules.is_empty() {
            continue;
        }
        let ids = rules.iter().map(|r| r.policy).collect();
        b.set_pod(
            local_pod_ip(i as u32),
            PodRules {
                ingress: None,
                egress: Some(rules),
                ingress_isolated_by: vec![],
                egress_isolated_by: ids,
            },
        );
    }
    b.build()
}
