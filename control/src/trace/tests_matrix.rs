//! The Service semantics table of `control/SEMANTICS.md`, row by row, through `trace`.
//!
//! Every row names a source, a destination, a traffic policy and where the endpoints are, and
//! the expectation written from kube-proxy's nftables proxier (not read back from ferroplane):
//! which endpoint the flow is DNATed to, whether it is masqueraded, and the verdict. Rows
//! where ferroplane differs on purpose carry the ferroplane outcome and are listed in the
//! document's second table.
//!
//! The cluster: node-a (192.168.50.11) and node-b (192.168.50.12); pods `client-a` (node-a),
//! `client-b` (node-b); endpoints `be-here` (node-a), `be-there` (node-b), `be-leaving`
//! (node-a, serving and terminating). "here" is node-a, where external clients enter.
//! One LoadBalancer Service per (policy, endpoints) with iTP = eTP = policy, an externalIP
//! and a NodePort.

use std::net::Ipv4Addr;

use dataplane::flow::L4Proto;

use super::*;
use crate::compile::tests::{Cluster, NODE_A, NODE_B, ip, pod};

const NODE_A_IP: &str = "192.168.50.11";
const NODE_B_IP: &str = "192.168.50.12";
const CLIENT: &str = "203.0.113.9";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Src {
    /// A pod on node-a.
    PodA,
    /// A pod on node-b.
    PodB,
    /// node-a's own stack.
    NodeA,
    /// node-b's own stack (reaching a NodePort of node-a over the underlay, or a VIP from
    /// itself).
    NodeB,
    /// An external client entering at node-a.
    External,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dst {
    ClusterIp,
    /// node-a's InternalIP : nodePort.
    NodePort,
    LoadBalancer,
    ExternalIp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Policy {
    Cluster,
    Local,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Eps {
    /// One ready endpoint on node-a.
    Here,
    /// One ready endpoint on node-b.
    There,
    None,
    /// Only a serving, terminating endpoint on node-a.
    Leaving,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// Delivered to this pod, DNATed to it; `true`: masqueraded.
    To(&'static str, bool),
    Reject,
    Drop(&'static str),
}

use Dst::*;
use Eps::*;
use Src::*;
use Verdict::*;

const HERE: &str = "be-here";
const THERE: &str = "be-there";
const LEAVING: &str = "be-leaving";
const MASQ: bool = true;
const KEEP: bool = false;
const NO_LOCAL: Verdict = Drop("no_local_endpoint");

type Row = (Src, Policy, Eps, Verdict);

/// ClusterIP (the policy is internalTrafficPolicy).
const CLUSTER_IP: &[Row] = &[
    (PodA, Policy::Cluster, Here, To(HERE, KEEP)),
    (PodB, Policy::Cluster, Here, To(HERE, KEEP)),
    (NodeA, Policy::Cluster, Here, To(HERE, MASQ)),
    (NodeB, Policy::Cluster, Here, To(HERE, MASQ)),
    (External, Policy::Cluster, Here, To(HERE, MASQ)),
    (PodA, Policy::Cluster, There, To(THERE, KEEP)),
    (PodB, Policy::Cluster, There, To(THERE, KEEP)),
    (NodeA, Policy::Cluster, There, To(THERE, MASQ)),
    (NodeB, Policy::Cluster, There, To(THERE, MASQ)),
    (External, Policy::Cluster, There, To(THERE, MASQ)),
    (PodA, Policy::Cluster, None, Reject),
    (PodB, Policy::Cluster, None, Reject),
    (NodeA, Policy::Cluster, None, Reject),
    (NodeB, Policy::Cluster, None, Reject),
    (External, Policy::Cluster, None, Reject),
    (PodA, Policy::Cluster, Leaving, To(LEAVING, KEEP)),
    (PodB, Policy::Cluster, Leaving, To(LEAVING, KEEP)),
    (NodeA, Policy::Cluster, Leaving, To(LEAVING, MASQ)),
    (NodeB, Policy::Cluster, Leaving, To(LEAVING, MASQ)),
    (External, Policy::Cluster, Leaving, To(LEAVING, MASQ)),
    (PodA, Policy::Local, Here, To(HERE, KEEP)),
    (PodB, Policy::Local, Here, NO_LOCAL),
    (NodeA, Policy::Local, Here, To(HERE, MASQ)),
    (NodeB, Policy::Local, Here, NO_LOCAL),
    (External, Policy::Local, Here, To(HERE, MASQ)),
    (PodA, Policy::Local, There, NO_LOCAL),
    (PodB, Policy::Local, There, To(THERE, KEEP)),
    (NodeA, Policy::Local, There, NO_LOCAL),
    (NodeB, Policy::Local, There, To(THERE, MASQ)),
    (External, Policy::Local, There, NO_LOCAL),
    (PodA, Policy::Local, None, Reject),
    (PodB, Policy::Local, None, Reject),
    (NodeA, Policy::Local, None, Reject),
    (NodeB, Policy::Local, None, Reject),
    (External, Policy::Local, None, Reject),
    (PodA, Policy::Local, Leaving, To(LEAVING, KEEP)),
    (PodB, Policy::Local, Leaving, NO_LOCAL),
    (NodeA, Policy::Local, Leaving, To(LEAVING, MASQ)),
    (NodeB, Policy::Local, Leaving, NO_LOCAL),
    (External, Policy::Local, Leaving, To(LEAVING, MASQ)),
];

/// node-a's NodePort (the policy is externalTrafficPolicy). Every source reaches node-a: pods
/// of node-b through the overlay (still pods), node-b's own address over the underlay
/// (outside the cluster, as for kube-proxy).
const NODE_PORT: &[Row] = &[
    (PodA, Policy::Cluster, Here, To(HERE, MASQ)),
    (PodB, Policy::Cluster, Here, To(HERE, MASQ)),
    (NodeA, Policy::Cluster, Here, To(HERE, MASQ)),
    (NodeB, Policy::Cluster, Here, To(HERE, MASQ)),
    (External, Policy::Cluster, Here, To(HERE, MASQ)),
    (PodA, Policy::Cluster, There, To(THERE, MASQ)),
    (PodB, Policy::Cluster, There, To(THERE, MASQ)),
    (NodeA, Policy::Cluster, There, To(THERE, MASQ)),
    (NodeB, Policy::Cluster, There, To(THERE, MASQ)),
    (External, Policy::Cluster, There, To(THERE, MASQ)),
    (PodA, Policy::Cluster, None, Reject),
    (PodB, Policy::Cluster, None, Reject),
    (NodeA, Policy::Cluster, None, Reject),
    (NodeB, Policy::Cluster, None, Reject),
    (External, Policy::Cluster, None, Reject),
    (PodA, Policy::Cluster, Leaving, To(LEAVING, MASQ)),
    (PodB, Policy::Cluster, Leaving, To(LEAVING, MASQ)),
    (NodeA, Policy::Cluster, Leaving, To(LEAVING, MASQ)),
    (NodeB, Policy::Cluster, Leaving, To(LEAVING, MASQ)),
    (External, Policy::Cluster, Leaving, To(LEAVING, MASQ)),
    (PodA, Policy::Local, Here, To(HERE, KEEP)),
    (PodB, Policy::Local, Here, To(HERE, KEEP)),
    (NodeA, Policy::Local, Here, To(HERE, MASQ)),
    (NodeB, Policy::Local, Here, To(HERE, KEEP)),
    (External, Policy::Local, Here, To(HERE, KEEP)),
    (PodA, Policy::Local, There, To(THERE, KEEP)),
    // Differs on purpose (SEMANTICS.md): back to node-b, so masqueraded.
    (PodB, Policy::Local, There, To(THERE, MASQ)),
    (NodeA, Policy::Local, There, To(THERE, MASQ)),
    (NodeB, Policy::Local, There, NO_LOCAL),
    (External, Policy::Local, There, NO_LOCAL),
    (PodA, Policy::Local, None, Reject),
    (PodB, Policy::Local, None, Reject),
    (NodeA, Policy::Local, None, Reject),
    (NodeB, Policy::Local, None, Reject),
    (External, Policy::Local, None, Reject),
    (PodA, Policy::Local, Leaving, To(LEAVING, KEEP)),
    (PodB, Policy::Local, Leaving, To(LEAVING, KEEP)),
    (NodeA, Policy::Local, Leaving, To(LEAVING, MASQ)),
    (NodeB, Policy::Local, Leaving, To(LEAVING, KEEP)),
    (External, Policy::Local, Leaving, To(LEAVING, KEEP)),
];

/// LoadBalancer IP and externalIP (the policy is externalTrafficPolicy). Pods and nodes are
/// handled on their own node (node-b's on node-b), external clients on node-a.
const EXTERNAL_VIP: &[Row] = &[
    (PodA, Policy::Cluster, Here, To(HERE, MASQ)),
    (PodB, Policy::Cluster, Here, To(HERE, MASQ)),
    (NodeA, Policy::Cluster, Here, To(HERE, MASQ)),
    (NodeB, Policy::Cluster, Here, To(HERE, MASQ)),
    (External, Policy::Cluster, Here, To(HERE, MASQ)),
    (PodA, Policy::Cluster, There, To(THERE, MASQ)),
    (PodB, Policy::Cluster, There, To(THERE, MASQ)),
    (NodeA, Policy::Cluster, There, To(THERE, MASQ)),
    (NodeB, Policy::Cluster, There, To(THERE, MASQ)),
    (External, Policy::Cluster, There, To(THERE, MASQ)),
    (PodA, Policy::Cluster, None, Reject),
    (PodB, Policy::Cluster, None, Reject),
    (NodeA, Policy::Cluster, None, Reject),
    (NodeB, Policy::Cluster, None, Reject),
    (External, Policy::Cluster, None, Reject),
    (PodA, Policy::Cluster, Leaving, To(LEAVING, MASQ)),
    (PodB, Policy::Cluster, Leaving, To(LEAVING, MASQ)),
    (NodeA, Policy::Cluster, Leaving, To(LEAVING, MASQ)),
    (NodeB, Policy::Cluster, Leaving, To(LEAVING, MASQ)),
    (External, Policy::Cluster, Leaving, To(LEAVING, MASQ)),
    (PodA, Policy::Local, Here, To(HERE, KEEP)),
    (PodB, Policy::Local, Here, To(HERE, KEEP)),
    (NodeA, Policy::Local, Here, To(HERE, MASQ)),
    (NodeB, Policy::Local, Here, To(HERE, MASQ)),
    (External, Policy::Local, Here, To(HERE, KEEP)),
    (PodA, Policy::Local, There, To(THERE, KEEP)),
    (PodB, Policy::Local, There, To(THERE, KEEP)),
    (NodeA, Policy::Local, There, To(THERE, MASQ)),
    (NodeB, Policy::Local, There, To(THERE, MASQ)),
    (External, Policy::Local, There, NO_LOCAL),
    (PodA, Policy::Local, None, Reject),
    (PodB, Policy::Local, None, Reject),
    (NodeA, Policy::Local, None, Reject),
    (NodeB, Policy::Local, None, Reject),
    (External, Policy::Local, None, Reject),
    (PodA, Policy::Local, Leaving, To(LEAVING, KEEP)),
    (PodB, Policy::Local, Leaving, To(LEAVING, KEEP)),
    (NodeA, Policy::Local, Leaving, To(LEAVING, MASQ)),
    (NodeB, Policy::Local, Leaving, To(LEAVING, MASQ)),
    (External, Policy::Local, Leaving, To(LEAVING, KEEP)),
];

fn service_name(policy: Policy, eps: Eps) -> String {
    format!("{policy:?}-{eps:?}").to_lowercase()
}

/// The matrix cluster: every (policy, endpoints) Service, and the manual slice of `leaving`.
fn matrix() -> Cluster {
    let mut cluster = Cluster::new();
    cluster.apply(
        &[
            pod("default", "client-a", "role=client", NODE_A, &[]),
            pod("default", "client-b", "role=client", NODE_B, &[]),
            pod("default", HERE, "at=here", NODE_A, &[]),
            pod("default", THERE, "at=there", NODE_B, &[]),
            pod("default", LEAVING, "role=leaving", NODE_A, &[]),
        ]
        .concat(),
    );
    let mut yaml = String::new();
    let mut n = 10;
    for policy in [Policy::Cluster, Policy::Local] {
        for eps in [Here, There, None, Leaving] {
            let selector = match eps {
                Here => "  selector:\n    at: here\n",
                There => "  selector:\n    at: there\n",
                None => "  selector:\n    at: nowhere\n",
                Leaving => "",
            };
            yaml.push_str(&format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  type: LoadBalancer\n  externalTrafficPolicy: {policy:?}\n  internalTrafficPolicy: {policy:?}\n  externalIPs: [192.0.2.{n}]\n{selector}  ports:\n  - name: http\n    port: 80\n---\n",
                name = service_name(policy, eps)
            ));
            if eps == Leaving {
                yaml.push_str(&format!(
                    "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-1\n  labels:\n    kubernetes.io/service-name: {name}\naddressType: IPv4\nports:\n- name: http\n  port: 80\n  protocol: TCP\nendpoints:\n- addresses: [{ip}]\n  nodeName: node-a\n  conditions: {{ready: false, serving: true, terminating: true}}\n---\n",
                    name = service_name(policy, eps),
                    ip = cluster.ip("default", LEAVING)
                ));
            }
            n += 1;
        }
    }
    cluster.apply(&yaml);
    cluster
}

fn spec(cluster: &Cluster, name: &str) -> k8s_openapi::api::core::v1::ServiceSpec {
    cluster
        .state()
        .service("default", name)
        .and_then(|s| s.spec.clone())
        .unwrap_or_else(|| panic!("service {name}"))
}

/// (destination address, port) of `dst` for Service `name`.
fn destination(cluster: &Cluster, name: &str, dst: Dst) -> (Ipv4Addr, u16) {
    let spec = spec(cluster, name);
    match dst {
        ClusterIp => (ip(spec.cluster_ip.as_deref().unwrap_or_default()), 80),
        NodePort => {
            let port = spec
                .ports
                .as_ref()
                .and_then(|p| p[0].node_port)
                .unwrap_or(0);
            (ip(NODE_A_IP), u16::try_from(port).unwrap_or(0))
        }
        ExternalIp => (ip(&spec.external_ips.unwrap_or_default()[0]), 80),
        LoadBalancer => {
            let stored = cluster.state().service("default", name).unwrap();
            let lb = crate::model::service::load_balancer_ips(stored)
                .next()
                .unwrap_or_else(|| panic!("{name} has no LB IP"));
            (ip(&lb.to_string()), 80)
        }
    }
}

fn request(src: Src, dst: Dst, to: (Ipv4Addr, u16), proto: L4Proto) -> TraceRequest {
    let pod = |name: &str| Source::Pod {
        namespace: "default".to_owned(),
        name: name.to_owned(),
    };
    let address = |a: &str| Source::Address {
        ip: ip(a),
        port: Option::None,
    };
    let (source, node) = match src {
        PodA => (pod("client-a"), Option::None),
        PodB => (pod("client-b"), Option::None),
        NodeA => (address(NODE_A_IP), Option::None),
        // node-b reaches node-a's NodePort over the underlay; other VIPs on itself.
        NodeB if dst == NodePort => (address(NODE_B_IP), Some(NODE_A.to_owned())),
        NodeB => (address(NODE_B_IP), Option::None),
        External => (address(CLIENT), Some(NODE_A.to_owned())),
    };
    TraceRequest {
        source,
        dst: to.0,
        dport: to.1,
        proto,
        node,
    }
}

fn check(cluster: &Cluster, dst: Dst, row: &Row) {
    let (src, policy, eps, expected) = *row;
    let name = service_name(policy, eps);
    let to = destination(cluster, &name, dst);
    let what = format!("{src:?} -> {dst:?} of {name} ({}:{})", to.0, to.1);
    let report = trace(cluster.state(), &request(src, dst, to, L4Proto::Tcp))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    match expected {
        To(pod_name, masquerade) => {
            assert_eq!(report.verdict, Outcome::Delivered, "{what}: {report:?}");
            assert_eq!(
                report.delivered_to.as_ref().map(|d| d.name.as_str()),
                Some(format!("default/{pod_name}").as_str()),
                "{what}"
            );
            let backend = cluster.ip("default", pod_name);
            assert_eq!(
                report.dnat,
                Some(Endpoint {
                    ip: backend,
                    port: 80
                }),
                "{what}"
            );
            assert_eq!(
                report.snat.is_some(),
                masquerade,
                "{what}: masquerade {:?}",
                report.snat
            );
        }
        Reject => {
            assert_eq!(report.verdict, Outcome::Reject, "{what}: {report:?}");
            assert_eq!(report.reason.as_deref(), Some("no endpoints"), "{what}");
        }
        Drop(reason) => {
            assert_eq!(report.verdict, Outcome::Drop, "{what}: {report:?}");
            assert_eq!(report.reason.as_deref(), Some(reason), "{what}");
        }
    }
}

#[test]
fn cluster_ip_rows() {
    let cluster = matrix();
    for row in CLUSTER_IP {
        check(&cluster, ClusterIp, row);
    }
}

#[test]
fn node_port_rows() {
    let cluster = matrix();
    for row in NODE_PORT {
        check(&cluster, NodePort, row);
    }
}

#[test]
fn load_balancer_ip_and_external_ip_rows() {
    let cluster = matrix();
    for row in EXTERNAL_VIP {
        check(&cluster, LoadBalancer, row);
        check(&cluster, ExternalIp, row);
    }
}

/// A pod IP is no Service: never translated, never masqueraded (kube-proxy does not handle it).
#[test]
fn pod_ip_rows() {
    let cluster = matrix();
    let target = (cluster.ip("default", HERE), 80);
    for src in [PodA, PodB, NodeA, NodeB, External] {
        let report = trace(
            cluster.state(),
            &request(src, ClusterIp, target, L4Proto::Tcp),
        )
        .unwrap_or_else(|e| panic!("{src:?}: {e}"));
        assert_eq!(report.verdict, Outcome::Delivered, "{src:?}: {report:?}");
        assert_eq!((report.dnat, report.snat), (Option::None, Option::None));
    }
}

/// kube-proxy's cluster-ips-check: an unserved port or protocol of a live ClusterIP is
/// rejected, an address of the Service CIDR that no Service holds is dropped; every source.
#[test]
fn unserved_cluster_ip_ports_reject_and_unallocated_addresses_drop() {
    let cluster = matrix();
    let (vip, _) = destination(&cluster, "cluster-here", ClusterIp);
    for src in [PodA, PodB, NodeA, NodeB, External] {
        for (port, proto) in [(81, L4Proto::Tcp), (80, L4Proto::Udp)] {
            let report = trace(
                cluster.state(),
                &request(src, ClusterIp, (vip, port), proto),
            )
            .unwrap_or_else(|e| panic!("{src:?}: {e}"));
            assert_eq!(report.verdict, Outcome::Reject, "{src:?} {proto:?}");
            assert_eq!(report.reason.as_deref(), Some("no service port"));
        }
        let report = trace(
            cluster.state(),
            &request(src, ClusterIp, (ip("10.100.200.200"), 80), L4Proto::Tcp),
        )
        .unwrap_or_else(|e| panic!("{src:?}: {e}"));
        assert_eq!(report.verdict, Outcome::Drop, "{src:?}: {report:?}");
        assert_eq!(report.reason.as_deref(), Some("service_unallocated"));
        assert_eq!(report.snat, Option::None, "never masqueraded");
    }
}

/// An unserved port of an LB IP or externalIP is no Service traffic (kube-proxy only matches
/// ip:port there): a pod's packet leaves the cluster like any other.
#[test]
fn unserved_ports_of_external_vips_are_not_handled() {
    let cluster = matrix();
    for dst in [LoadBalancer, ExternalIp] {
        let (vip, _) = destination(&cluster, "cluster-here", dst);
        let report = trace(
            cluster.state(),
            &request(PodA, dst, (vip, 81), L4Proto::Tcp),
        )
        .unwrap();
        assert_eq!(report.verdict, Outcome::Egress, "{dst:?}: {report:?}");
        assert_eq!(report.dnat, Option::None);
    }
}

fn ranged(ranges: &str) -> Cluster {
    let mut cluster = matrix();
    cluster.apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: ranged\nspec:\n  type: LoadBalancer\n  loadBalancerSourceRanges: [{ranges}]\n  externalIPs: [192.0.2.50]\n  selector:\n    at: here\n  ports:\n  - name: http\n    port: 80\n"
    ));
    cluster
}

/// loadBalancerSourceRanges filter every source of the LB IP, pods and nodes included;
/// NodePorts are never filtered.
#[test]
fn load_balancer_source_ranges_filter_every_source() {
    let cluster = ranged("203.0.113.0/24");
    let lb = destination(&cluster, "ranged", LoadBalancer);
    let allowed = trace(
        cluster.state(),
        &request(External, LoadBalancer, lb, L4Proto::Tcp),
    )
    .unwrap();
    assert_eq!(allowed.verdict, Outcome::Delivered);
    for src in [PodA, PodB, NodeA, NodeB] {
        let report = trace(
            cluster.state(),
            &request(src, LoadBalancer, lb, L4Proto::Tcp),
        )
        .unwrap();
        assert_eq!(report.verdict, Outcome::Drop, "{src:?}: {report:?}");
        assert_eq!(report.reason.as_deref(), Some("lb_source_range"));
    }
    let outsider = TraceRequest {
        source: Source::Address {
            ip: ip("198.18.0.9"),
            port: Option::None,
        },
        node: Some(NODE_A.to_owned()),
        ..request(External, LoadBalancer, lb, L4Proto::Tcp)
    };
    let report = trace(cluster.state(), &outsider).unwrap();
    assert_eq!(report.reason.as_deref(), Some("lb_source_range"));
    let node_port = destination(&cluster, "ranged", NodePort);
    let report = trace(
        cluster.state(),
        &TraceRequest {
            dst: node_port.0,
            dport: node_port.1,
            ..outsider
        },
    )
    .unwrap();
    assert_eq!(
        report.verdict,
        Outcome::Delivered,
        "NodePorts are not filtered"
    );
}

/// A range that holds the nodes' addresses admits the nodes (and pods stay filtered).
#[test]
fn a_source_range_listing_the_nodes_admits_them() {
    let cluster = ranged("192.168.50.0/24");
    let lb = destination(&cluster, "ranged", LoadBalancer);
    for src in [NodeA, NodeB] {
        let report = trace(
            cluster.state(),
            &request(src, LoadBalancer, lb, L4Proto::Tcp),
        )
        .unwrap();
        assert_eq!(report.verdict, Outcome::Delivered, "{src:?}: {report:?}");
    }
    let pod = trace(
        cluster.state(),
        &request(PodA, LoadBalancer, lb, L4Proto::Tcp),
    )
    .unwrap();
    assert_eq!(pod.reason.as_deref(), Some("lb_source_range"));
}

/// A Service whose endpoint is a hostNetwork pod works from everywhere, the node that runs
/// it included (masqueraded to the pod gateway so the node's kernel accepts it).
#[test]
fn a_host_network_endpoint_is_reached_from_every_source_its_own_node_included() {
    let mut cluster = matrix();
    cluster.apply(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: agent\n  labels:\n    app: agent\nspec:\n  nodeName: node-a\n  hostNetwork: true\n  containers:\n  - name: c\n    image: x\nstatus:\n  podIP: 192.168.50.11\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: agent\nspec:\n  selector:\n    app: agent\n  ports:\n  - port: 10250\n",
    );
    let vip = ip(spec(&cluster, "agent").cluster_ip.as_deref().unwrap());
    for src in [PodA, PodB, NodeA, NodeB, External] {
        let report = trace(
            cluster.state(),
            &request(src, ClusterIp, (vip, 10250), L4Proto::Tcp),
        )
        .unwrap();
        assert_eq!(report.verdict, Outcome::Delivered, "{src:?}: {report:?}");
        assert_eq!(
            report.delivered_to,
            Some(Delivery {
                kind: DeliveryKind::Host,
                name: NODE_A.to_owned()
            }),
            "{src:?}"
        );
    }
    let own = trace(
        cluster.state(),
        &request(NodeA, ClusterIp, (vip, 10250), L4Proto::Tcp),
    )
    .unwrap();
    assert_eq!(
        own.snat.map(|s| s.ip),
        Some(ip("10.244.0.1")),
        "the node reaching itself comes from its pod gateway"
    );
}

/// An IPv6 entry of loadBalancerSourceRanges in this IPv4 cluster is reported (apply shows
/// the compile problems as warnings) and matches no one.
#[test]
fn ipv6_source_ranges_are_reported() {
    let cluster = ranged("203.0.113.0/24, 2001:db8::/32");
    let compiled = cluster.compile(NODE_A);
    let messages: Vec<&str> = compiled
        .problems
        .iter()
        .filter(|p| p.object.ends_with("default/ranged"))
        .map(|p| p.message.as_str())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("spec.loadBalancerSourceRanges") && m.contains("2001:db8::/32")),
        "{messages:?}"
    );
}

/// Every InternalIP / ExternalIP of a node is the node's own: traffic to a secondary address
/// reaches its host (it was `no_route` when only the first InternalIP counted).
#[test]
fn a_secondary_node_address_reaches_the_node() {
    let mut cluster = matrix();
    cluster.apply(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: node-c\nstatus:\n  addresses:\n  - type: InternalIP\n    address: 192.168.50.13\n  - type: ExternalIP\n    address: 198.18.5.13\n",
    );
    for (dst, entry) in [("198.18.5.13", "node-c"), ("198.18.5.13", NODE_A)] {
        let report = trace(
            cluster.state(),
            &TraceRequest {
                source: Source::Address {
                    ip: ip(CLIENT),
                    port: Option::None,
                },
                dst: ip(dst),
                dport: 22,
                proto: L4Proto::Tcp,
                node: Some(entry.to_owned()),
            },
        )
        .unwrap();
        if entry == "node-c" {
            assert_eq!(report.verdict, Outcome::Delivered, "{report:?}");
            assert_eq!(
                report.delivered_to,
                Some(Delivery {
                    kind: DeliveryKind::Host,
                    name: "node-c".to_owned()
                })
            );
        } else {
            assert_ne!(
                report.verdict,
                Outcome::Delivered,
                "not node-a's: {report:?}"
            );
        }
    }
}

/// The matrix cluster with an SCTP Service (`sctp-here`, NodePort, eTP Cluster) and a UDP
/// Service (`udp-here`), both on `be-here`, for the protocol and fragment rows.
fn with_sctp_and_udp() -> Cluster {
    let mut cluster = matrix();
    cluster.apply(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: sctp-here\nspec:\n  type: NodePort\n  selector:\n    at: here\n  ports:\n  - name: assoc\n    port: 9999\n    protocol: SCTP\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: udp-here\nspec:\n  selector:\n    at: here\n  ports:\n  - name: dns\n    port: 53\n    protocol: UDP\n",
    );
    cluster
}

/// SCTP Services behave as TCP and UDP ones do (SEMANTICS.md "Protocols and fragments"): the
/// INIT of an association is DNATed from every source, masqueraded where the table says, and
/// an unserved SCTP port of a live ClusterIP is rejected.
#[test]
fn sctp_service_rows() {
    let cluster = with_sctp_and_udp();
    let here = cluster.ip("default", HERE);
    let (vip, _) = destination(&cluster, "sctp-here", ClusterIp);
    for (src, masquerade) in [
        (PodA, KEEP),
        (PodB, KEEP),
        (NodeA, MASQ),
        (NodeB, MASQ),
        (External, MASQ),
    ] {
        let report = trace(
            cluster.state(),
            &request(src, ClusterIp, (vip, 9999), L4Proto::Sctp),
        )
        .unwrap_or_else(|e| panic!("{src:?}: {e}"));
        assert_eq!(report.verdict, Outcome::Delivered, "{src:?}: {report:?}");
        assert_eq!(
            report.dnat,
            Some(Endpoint {
                ip: here,
                port: 9999
            }),
            "{src:?}"
        );
        assert_eq!(report.snat.is_some(), masquerade, "{src:?}: {report:?}");
    }
    let (node_ip, node_port) = destination(&cluster, "sctp-here", NodePort);
    let report = trace(
        cluster.state(),
        &request(External, NodePort, (node_ip, node_port), L4Proto::Sctp),
    )
    .unwrap();
    assert_eq!(report.verdict, Outcome::Delivered, "{report:?}");
    assert!(report.snat.is_some(), "eTP Cluster masquerades: {report:?}");
    for (port, proto) in [(9998, L4Proto::Sctp), (9999, L4Proto::Tcp)] {
        let report = trace(
            cluster.state(),
            &request(PodA, ClusterIp, (vip, port), proto),
        )
        .unwrap();
        assert_eq!(report.verdict, Outcome::Reject, "{port} {proto:?}");
        assert_eq!(report.reason.as_deref(), Some("no service port"));
    }
}

/// The fragment rows, on node-a's compiled snapshot (trace sends one unfragmented packet):
/// every fragment of a pod's UDP datagram to a ClusterIP reaches the endpoint the first one
/// was DNATed to; a later fragment whose first was not seen is `fragment_unknown`.
#[test]
fn fragment_rows() {
    use dataplane::drop::DropReason;
    use dataplane::packet::{Packet, Verdict};
    use dataplane::pipeline::Pipeline;
    use dataplane::tables::affinity::AffinityTable;
    use dataplane::tables::conntrack::{Conntrack, ConntrackConfig};
    use std::sync::Arc;

    let cluster = with_sctp_and_udp();
    let snap = cluster.compile(NODE_A).snapshot;
    let (vip, _) = destination(&cluster, "udp-here", ClusterIp);
    let (client, here) = (
        cluster.ip("default", "client-a"),
        cluster.ip("default", HERE),
    );
    let from = snap.ports.pod(client).expect("client-a's port").clone();
    let to = snap.ports.pod(here).expect("be-here's port").port;
    let ct = Conntrack::new(ConntrackConfig {
        capacity: 1024,
        ..ConntrackConfig::default()
    });
    let mut pipe = Pipeline::new(Arc::new(ct), Arc::new(AffinityTable::new(64)), 3);
    pipe.begin_batch(100);
    let train = |id: u16| {
        fragments(
            first_packet(&Probe {
                src_mac: from.mac,
                dst_mac: snap.node.gateway_mac,
                proto: L4Proto::Udp,
                src: client,
                sport: 40000,
                dst: vip,
                dport: 53,
            }),
            id,
        )
    };
    let mut run = |frame: &[u8]| {
        let mut pkt = Packet::from_frame(frame).expect("fits");
        pkt.meta.in_port = from.port;
        let v = pipe.process(&snap, &mut pkt);
        (v, pkt.data().to_vec())
    };
    let lone = train(1);
    assert_eq!(
        run(&lone[1]).0,
        Verdict::Drop(DropReason::FragmentUnknown),
        "a later fragment without its first"
    );
    for (i, f) in train(2).iter().enumerate() {
        let (v, out) = run(f);
        assert_eq!(v, Verdict::Tx(to), "fragment {i}");
        assert_eq!(
            &out[30..34],
            &here.octets(),
            "fragment {i} DNATed like the first"
        );
    }
}

/// Cuts the probe's IPv4 packet in two fragments: the UDP header plus 8 bytes, then the rest
/// (the probe's payload is 16 bytes). The IPv4 header checksum is recomputed.
fn fragments(frame: Vec<u8>, id: u16) -> Vec<Vec<u8>> {
    use dataplane::wire::Ipv4Packet;
    let (l3, l4) = (14, 34);
    let cut = l4 + 16;
    let make = |body: &[u8], offset: u16, more: bool| {
        let mut f = frame[..l4].to_vec();
        f.extend_from_slice(body);
        let total = (20 + body.len()) as u16;
        f[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
        f[l3 + 4..l3 + 6].copy_from_slice(&id.to_be_bytes());
        let flags = if more { 0x2000 } else { 0 } | (offset / 8);
        f[l3 + 6..l3 + 8].copy_from_slice(&flags.to_be_bytes());
        Ipv4Packet::new_unchecked(&mut f[l3..]).fill_checksum();
        f
    };
    vec![
        make(&frame[l4..cut], 0, true),
        make(&frame[cut..], 16, false),
    ]
}
