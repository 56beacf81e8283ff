//! Front-end lookup: every kind, NodePort only on node addresses, VIPs on other ports,
//! collisions.

use std::net::Ipv4Addr;

use super::spec;
use crate::flow::L4Proto;
use crate::tables::services::{
    BuildError, DEFAULT_MAGLEV_M, Frontend, FrontendKind, ServiceSpec, ServiceTable,
};

const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 20);
const EXTERNAL_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const LB_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const NODE_A: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 2);
const NODE_B: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 3);
const OTHER_NODE: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 4);

fn web() -> ServiceSpec {
    let mut web = spec("default/web:http", CLUSTER_IP);
    web.external_ips = vec![EXTERNAL_IP];
    web.lb_ips = vec![LB_IP];
    web.node_port = Some(30080);
    web
}

fn table(specs: Vec<ServiceSpec>) -> ServiceTable {
    ServiceTable::build(specs, &[NODE_A, NODE_B], DEFAULT_MAGLEV_M).unwrap()
}

fn hit(kind: FrontendKind) -> Frontend {
    Frontend::Service { id: 1, kind }
}

#[test]
fn each_kind_is_found_on_its_address_and_port() {
    let t = table(vec![web()]);
    assert_eq!(
        t.lookup(CLUSTER_IP, 80, L4Proto::Tcp),
        hit(FrontendKind::ClusterIp)
    );
    assert_eq!(
        t.lookup(EXTERNAL_IP, 80, L4Proto::Tcp),
        hit(FrontendKind::ExternalIp)
    );
    assert_eq!(
        t.lookup(LB_IP, 80, L4Proto::Tcp),
        hit(FrontendKind::LoadBalancer)
    );
    assert_eq!(
        t.lookup(NODE_A, 30080, L4Proto::Tcp),
        hit(FrontendKind::NodePort)
    );
    assert_eq!(
        t.lookup(NODE_B, 30080, L4Proto::Tcp),
        hit(FrontendKind::NodePort)
    );
    assert_eq!(
        t.service(1).map(|s| s.name().as_ref()),
        Some("default/web:http")
    );
}

#[test]
fn nodeport_answers_only_on_node_addresses() {
    let t = table(vec![web()]);
    assert_eq!(
        t.lookup(OTHER_NODE, 30080, L4Proto::Tcp),
        Frontend::NotService
    );
    assert_eq!(
        t.lookup(CLUSTER_IP, 30080, L4Proto::Tcp),
        Frontend::VipOtherPort
    );
    assert_eq!(t.lookup(NODE_A, 30080, L4Proto::Udp), Frontend::NotService);
    assert_eq!(t.lookup(NODE_A, 80, L4Proto::Tcp), Frontend::NotService);
}

#[test]
fn cluster_ip_on_other_port_or_protocol_never_looks_like_no_service() {
    let t = table(vec![web()]);
    assert!(t.is_vip(CLUSTER_IP));
    assert_eq!(
        t.lookup(CLUSTER_IP, 22, L4Proto::Tcp),
        Frontend::VipOtherPort
    );
    assert_eq!(
        t.lookup(CLUSTER_IP, 80, L4Proto::Udp),
        Frontend::VipOtherPort
    );
    assert_eq!(
        t.lookup(CLUSTER_IP, 0, L4Proto::Icmp),
        Frontend::VipOtherPort
    );
    assert!(!t.is_vip(NODE_A));
    assert!(!t.is_vip(Ipv4Addr::new(10, 96, 0, 21)));
    assert_eq!(
        t.lookup(Ipv4Addr::new(10, 96, 0, 21), 80, L4Proto::Tcp),
        Frontend::NotService
    );
}

#[test]
fn external_and_lb_ips_own_only_their_service_ports() {
    let t = table(vec![web()]);
    for ip in [EXTERNAL_IP, LB_IP] {
        assert!(!t.is_vip(ip), "{ip}");
        assert!(matches!(
            t.lookup(ip, 80, L4Proto::Tcp),
            Frontend::Service { .. }
        ));
        assert_eq!(t.lookup(ip, 22, L4Proto::Tcp), Frontend::NotService);
        assert_eq!(t.lookup(ip, 80, L4Proto::Udp), Frontend::NotService);
        assert_eq!(t.lookup(ip, 0, L4Proto::Icmp), Frontend::NotService);
    }
}

#[test]
fn node_address_used_as_external_ip_keeps_its_other_ports() {
    let mut svc = spec("kube-system/traefik:web", CLUSTER_IP);
    svc.lb_ips = vec![NODE_A];
    let t = table(vec![svc]);
    assert_eq!(
        t.lookup(NODE_A, 80, L4Proto::Tcp),
        hit(FrontendKind::LoadBalancer)
    );
    assert_eq!(t.lookup(NODE_A, 22, L4Proto::Tcp), Frontend::NotService);
    assert!(!t.is_vip(NODE_A));
}

#[test]
fn same_port_number_on_tcp_and_udp_are_two_services() {
    let tcp = spec("kube-system/dns:dns-tcp", Ipv4Addr::new(10, 96, 0, 10));
    let mut udp = spec("kube-system/dns:dns", Ipv4Addr::new(10, 96, 0, 10));
    udp.proto = L4Proto::Udp;
    let t = table(vec![tcp, udp]);
    let dns = Ipv4Addr::new(10, 96, 0, 10);
    assert_eq!(
        t.lookup(dns, 80, L4Proto::Tcp),
        Frontend::Service {
            id: 1,
            kind: FrontendKind::ClusterIp
        }
    );
    assert_eq!(
        t.lookup(dns, 80, L4Proto::Udp),
        Frontend::Service {
            id: 2,
            kind: FrontendKind::ClusterIp
        }
    );
    let ids: Vec<u32> = t.iter().map(|(id, _)| id).collect();
    assert_eq!(ids, [1, 2]);
    assert_eq!(t.len(), 2);
    assert!(t.service(0).is_none());
    assert!(t.service(3).is_none());
}

fn duplicate(specs: Vec<ServiceSpec>) -> (String, String, Ipv4Addr, u16) {
    match ServiceTable::build(specs, &[NODE_A, NODE_B], DEFAULT_MAGLEV_M) {
        Err(BuildError::DuplicateFrontend {
            service,
            holder,
            ip,
            port,
            proto,
        }) => {
            assert_eq!(proto, L4Proto::Tcp);
            (service.to_string(), holder.to_string(), ip, port)
        }
        other => panic!("expected a duplicate front end, got {other:?}"),
    }
}

#[test]
fn a_destination_claimed_twice_is_refused_naming_both_services() {
    let mut other = spec("default/other:http", Ipv4Addr::new(10, 96, 0, 30));
    other.lb_ips = vec![LB_IP];
    let found = duplicate(vec![web(), other]);
    assert_eq!(
        found,
        (
            "default/other:http".into(),
            "default/web:http".into(),
            LB_IP,
            80
        )
    );
}

#[test]
fn nodeport_collides_with_an_explicit_front_end_on_a_node_address() {
    let mut on_node = spec("default/agent:statsd", Ipv4Addr::new(10, 96, 0, 30));
    on_node.port = 30080;
    on_node.external_ips = vec![NODE_B];
    let found = duplicate(vec![web(), on_node.clone()]);
    assert_eq!(
        found,
        (
            "default/agent:statsd".into(),
            "default/web:http".into(),
            NODE_B,
            30080
        )
    );
    let found = duplicate(vec![on_node, web()]);
    assert_eq!(
        found,
        (
            "default/web:http".into(),
            "default/agent:statsd".into(),
            NODE_B,
            30080
        )
    );
}

#[test]
fn one_spec_may_repeat_an_address_but_not_under_two_kinds() {
    let mut repeated = web();
    repeated.lb_ips = vec![LB_IP, LB_IP];
    let t = table(vec![repeated]);
    assert_eq!(
        t.lookup(LB_IP, 80, L4Proto::Tcp),
        hit(FrontendKind::LoadBalancer)
    );

    let mut two_kinds = web();
    two_kinds.external_ips = vec![LB_IP];
    let found = duplicate(vec![two_kinds]);
    assert_eq!(
        found,
        (
            "default/web:http".into(),
            "default/web:http".into(),
            LB_IP,
            80
        )
    );
}
