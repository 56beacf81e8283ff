//! Test fixture: a two-node cluster seen from node A, frame builders (etherparse, an
//! independent implementation) and checks with checksums recomputed from scratch.
#![allow(dead_code)]

pub mod frames;

use std::net::Ipv4Addr;
use std::sync::Arc;

use dataplane::cidr::Cidr;
use dataplane::flow::L4Proto;
use dataplane::packet::{Packet, PortId, Verdict};
use dataplane::pipeline::Pipeline;
use dataplane::snapshot::Snapshot;
use dataplane::tables::affinity::AffinityTable;
use dataplane::tables::conntrack::{Conntrack, ConntrackConfig};
use dataplane::tables::node::{NodeConfig, OverlayMode};
use dataplane::tables::policy::{Peer, PodRules, PodSet, PolicyTable, PortRange, Rule};
use dataplane::tables::ports::{LocalPod, PortKind, PortTable};
use dataplane::tables::routes::{RemoteNode, RouteTable};
use dataplane::tables::services::{Backend, Scheduler, ServiceSpec, ServiceTable};
use dataplane::wire::MacAddr;

pub const UPLINK: PortId = PortId(0);
pub const HOST: PortId = PortId(1);
pub const CLIENT: PortId = PortId(2);
pub const BE1: PortId = PortId(3);
pub const DB: PortId = PortId(4);

pub fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("test address")
}

pub const NODE_A: &str = "192.168.50.2";
pub const NODE_B: &str = "192.168.50.3";
pub const CLIENT_IP: &str = "10.244.1.10";
pub const BE1_IP: &str = "10.244.1.11";
pub const DB_IP: &str = "10.244.1.12";
pub const REMOTE_BE: &str = "10.244.2.20";
pub const REMOTE_DNS: &str = "10.244.2.21";
pub const EXTERNAL: &str = "203.0.113.10";

pub const CLIENT_MAC: MacAddr = MacAddr([0x0a, 0, 0, 0, 1, 10]);
pub const BE1_MAC: MacAddr = MacAddr([0x0a, 0, 0, 0, 1, 11]);
pub const DB_MAC: MacAddr = MacAddr([0x0a, 0, 0, 0, 1, 12]);
pub const ROUTER_MAC: MacAddr = MacAddr([0x02, 0xfd, 0, 0, 0, 1]);
pub const NODE_B_UPLINK_MAC: MacAddr = MacAddr([0x02, 0xfe, 192, 168, 50, 3]);
pub const NODE_B_VTEP_MAC: MacAddr = MacAddr([0x02, 0xfc, 192, 168, 50, 3]);

/// Service VIPs of the fixture.
pub const VIP_STORE: &str = "10.96.0.100"; // TCP 80 -> remote 10.244.2.20:8080
pub const VIP_DNS: &str = "10.96.0.10"; // UDP 53 -> remote 10.244.2.21:5353
pub const VIP_EMPTY: &str = "10.96.0.50"; // TCP/UDP 80, no endpoints
pub const VIP_LOCAL: &str = "10.96.0.60"; // TCP 80 -> local store-be-1:80 (hairpin)
pub const LB_LOCAL: &str = "198.51.100.7"; // TCP 443, eTP Local, remote backends only
pub const NODE_PORT: u16 = 30080; // TCP -> remote 10.244.2.20:8080, eTP Cluster

pub fn node_a(overlay: OverlayMode) -> NodeConfig {
    let mut n = NodeConfig::example("node-a", ip(NODE_A), "10.244.1.0/24".parse().expect("cidr"));
    n.overlay = overlay;
    n.uplink_next_hop_mac = ROUTER_MAC;
    n
}

fn backend(addr: &str, port: u16, local: bool) -> Backend {
    Backend {
        ip: ip(addr),
        port,
        node_local: local,
        serving: true,
        terminating: false,
        pod: None,
    }
}

fn spec(name: &str, proto: L4Proto, vip: &str, port: u16, backends: Vec<Backend>) -> ServiceSpec {
    ServiceSpec {
        name: Arc::from(name),
        proto,
        port,
        cluster_ips: vec![ip(vip)],
        external_ips: vec![],
        lb_ips: vec![],
        node_port: None,
        backends,
        scheduler: Scheduler::Random,
        affinity_timeout: None,
        internal_local: false,
        external_local: false,
        lb_source_ranges: vec![],
    }
}

pub fn services() -> Vec<ServiceSpec> {
    let mut node_port = spec(
        "default/store-np:http",
        L4Proto::Tcp,
        "10.96.0.101",
        80,
        vec![backend(REMOTE_BE, 8080, false)],
    );
    node_port.node_port = Some(NODE_PORT);
    let mut lb = spec(
        "default/store-lb:https",
        L4Proto::Tcp,
        "10.96.0.102",
        443,
        vec![backend(REMOTE_BE, 8443, false)],
    );
    lb.lb_ips = vec![ip(LB_LOCAL)];
    lb.external_local = true;
    vec![
        spec(
            "default/store-be:http",
            L4Proto::Tcp,
            VIP_STORE,
            80,
            vec![backend(REMOTE_BE, 8080, false)],
        ),
        spec(
            "kube-system/kube-dns:dns",
            L4Proto::Udp,
            VIP_DNS,
            53,
            vec![backend(REMOTE_DNS, 5353, false)],
        ),
        spec("default/empty:http", L4Proto::Tcp, VIP_EMPTY, 80, vec![]),
        spec("default/empty:udp", L4Proto::Udp, VIP_EMPTY, 80, vec![]),
        spec(
            "default/local:http",
            L4Proto::Tcp,
            VIP_LOCAL,
            80,
            vec![backend(BE1_IP, 80, true)],
        ),
        node_port,
        lb,
    ]
}

/// store-db only accepts store-be-1 on TCP 6379 (the seed's policy).
pub fn policy() -> PolicyTable {
    let mut b = PolicyTable::builder();
    let id = b.add_policy("default/store-net-policy");
    let be: PodSet = [ip(BE1_IP)].into_iter().collect();
    b.set_pod(
        ip(DB_IP),
        PodRules {
            ingress: Some(vec![Rule {
                peers: vec![Peer::Pods(Arc::new(be))],
                ports: vec![PortRange::single(L4Proto::Tcp, 6379)],
                policy: id,
            }]),
            egress: None,
            ingress_isolated_by: vec![id],
            egress_isolated_by: vec![],
        },
    );
    b.build()
}

pub fn snapshot(overlay: OverlayMode) -> Snapshot {
    let node = node_a(overlay);
    let pods = vec![
        LocalPod {
            name: Arc::from("default/client"),
            ip: ip(CLIENT_IP),
            mac: CLIENT_MAC,
            port: CLIENT,
        },
        LocalPod {
            name: Arc::from("default/store-be-1"),
            ip: ip(BE1_IP),
            mac: BE1_MAC,
            port: BE1,
        },
        LocalPod {
            name: Arc::from("default/store-db"),
            ip: ip(DB_IP),
            mac: DB_MAC,
            port: DB,
        },
    ];
    let ports = PortTable::new(
        vec![
            PortKind::Uplink,
            PortKind::Host,
            PortKind::Pod,
            PortKind::Pod,
            PortKind::Pod,
        ],
        pods,
    );
    let routes = RouteTable::new(vec![RemoteNode {
        name: "node-b".into(),
        node_ip: ip(NODE_B),
        node_ip6: None,
        pod_cidr: Cidr::new(ip("10.244.2.0"), 24).expect("cidr"),
        vtep_mac: NODE_B_VTEP_MAC,
        underlay_mac: NODE_B_UPLINK_MAC,
    }]);
    let services =
        ServiceTable::build(services(), &node.node_port_addresses, 251).expect("fixture services");
    Snapshot {
        generation: 1,
        node,
        ports,
        routes: std::sync::Arc::new(routes),
        services: Arc::new(services),
        policy: Arc::new(policy()),
        v6: Default::default(),
    }
}

pub fn tables(capacity: usize) -> (Arc<Conntrack>, Arc<AffinityTable>) {
    let ct = Conntrack::new(ConntrackConfig {
        capacity,
        ..ConntrackConfig::default()
    });
    (Arc::new(ct), Arc::new(AffinityTable::new(1024)))
}

pub struct Harness {
    pub snap: Snapshot,
    pub pipe: Pipeline,
}

impl Harness {
    pub fn new() -> Self {
        Self::with_overlay(OverlayMode::Vxlan)
    }

    pub fn with_overlay(overlay: OverlayMode) -> Self {
        let (ct, aff) = tables(4096);
        let mut pipe = Pipeline::new(ct, aff, 7);
        pipe.begin_batch(1000);
        Self {
            snap: snapshot(overlay),
            pipe,
        }
    }

    /// The same harness with SNAT ports drawn from a fixed key, so that two harnesses
    /// masquerade alike (tests that compare two runs byte for byte).
    pub fn reproducible(mut self) -> Self {
        self.pipe
            .set_snat_rng(dataplane::snat::SnatPortRng::from_seed([7; 32]));
        self
    }

    /// Runs one frame arriving on `port`; returns the verdict and the frame as it leaves.
    pub fn run(&mut self, port: PortId, frame: &[u8]) -> (Verdict, Vec<u8>) {
        let mut pkt = Packet::from_frame(frame).expect("frame fits");
        pkt.meta.in_port = port;
        let v = self.pipe.process(&self.snap, &mut pkt);
        (v, pkt.data().to_vec())
    }

    /// Like `run`, but asserts the packet is transmitted on `out`.
    pub fn expect_tx(&mut self, port: PortId, frame: &[u8], out: PortId) -> Vec<u8> {
        let (v, bytes) = self.run(port, frame);
        assert_eq!(v, Verdict::Tx(out), "verdict for frame from {port:?}");
        frames::assert_valid(&bytes);
        bytes
    }
}
