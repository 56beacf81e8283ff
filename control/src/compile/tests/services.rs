//! Service ports: front ends, traffic policies, endpoints from merged EndpointSlices.

use dataplane::flow::L4Proto;
use dataplane::tables::services::{Frontend, FrontendKind, Scheduler};

use super::*;

fn cluster_ip(cluster: &Cluster, name: &str) -> Ipv4Addr {
    let service = cluster.state().service("default", name).unwrap();
    let text = service.spec.as_ref().unwrap().cluster_ip.as_ref().unwrap();
    text.parse().unwrap()
}

const WEB_NAMED: &str = "apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: http
  - name: dns
    port: 53
    protocol: UDP
";

#[test]
fn named_target_port_resolves_per_endpoint_and_locality_per_node() {
    let mut cluster = Cluster::new();
    cluster.apply(WEB_NAMED).apply(
        &[
            pod("default", "w1", "app=web", NODE_A, &[("http", 8080)]),
            pod("default", "w2", "app=web", NODE_B, &[("http", 9090)]),
            pod("default", "w3", "app=web", NODE_A, &[("metrics", 9100)]),
        ]
        .concat(),
    );
    let (w1, w2, w3) = (
        cluster.ip("default", "w1"),
        cluster.ip("default", "w2"),
        cluster.ip("default", "w3"),
    );
    let a = cluster.compile(NODE_A);
    assert!(a.problems.is_empty(), "{:?}", a.problems);
    let http = service(&a.snapshot, "default/web:http").unwrap();
    assert_eq!(http.proto(), L4Proto::Tcp);
    assert_eq!(http.port(), 80);
    let mut want = vec![(w1, 8080), (w2, 9090)];
    want.sort();
    assert_eq!(endpoints(http), want, "w3 has no port named http");
    assert!(backend(http, w1).node_local);
    assert!(!backend(http, w2).node_local);
    assert_eq!(backend(http, w1).pod.as_deref(), Some("default/w1"));

    let dns = service(&a.snapshot, "default/web:dns").unwrap();
    assert_eq!(dns.proto(), L4Proto::Udp);
    let mut all = vec![(w1, 53), (w2, 53), (w3, 53)];
    all.sort();
    assert_eq!(
        endpoints(dns),
        all,
        "a numeric targetPort (= port) applies to every pod"
    );

    let vip = cluster_ip(&cluster, "web");
    assert!(matches!(
        a.snapshot.services.lookup(vip, 80, L4Proto::Tcp),
        Frontend::Service {
            kind: FrontendKind::ClusterIp,
            ..
        }
    ));
    assert_eq!(
        a.snapshot.services.lookup(vip, 81, L4Proto::Tcp),
        Frontend::VipOtherPort
    );

    let b = cluster.compile(NODE_B);
    let http = service(&b.snapshot, "default/web:http").unwrap();
    assert!(!backend(http, w1).node_local);
    assert!(backend(http, w2).node_local);
}

#[test]
fn traffic_policies_affinity_scheduler_and_source_ranges() {
    let mut cluster = Cluster::new();
    cluster
        .apply(
            "apiVersion: v1
kind: Service
metadata:
  name: lb
  annotations:
    ferroplane.io/lb-scheduler: maglev
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  internalTrafficPolicy: Local
  sessionAffinity: ClientIP
  sessionAffinityConfig:
    clientIP:
      timeoutSeconds: 60
  loadBalancerSourceRanges: [203.0.113.0/24]
  externalIPs: [192.0.2.10]
  selector:
    app: web
  ports:
  - name: https
    port: 443
    targetPort: 8443
---
apiVersion: v1
kind: Service
metadata:
  name: plain
spec:
  selector:
    app: web
  sessionAffinity: ClientIP
  ports:
  - port: 80
",
        )
        .apply(&pod("default", "w1", "app=web", NODE_A, &[]));
    let stored = cluster.state().service("default", "lb").unwrap();
    let node_port = u16::try_from(
        stored.spec.as_ref().unwrap().ports.as_ref().unwrap()[0]
            .node_port
            .unwrap(),
    )
    .unwrap();
    let lb_ip = crate::model::service::load_balancer_ips(stored)
        .next()
        .unwrap();
    let lb_ip: Ipv4Addr = lb_ip.to_string().parse().unwrap();

    let a = cluster.compile(NODE_A).snapshot;
    let https = service(&a, "default/lb:https").unwrap();
    assert!(https.external_local() && https.internal_local());
    assert_eq!(https.affinity_timeout(), Some(60));
    assert_eq!(https.scheduler(), Scheduler::Maglev);
    assert_eq!(https.node_port(), Some(node_port));
    assert_eq!(endpoints(https), [(cluster.ip("default", "w1"), 8443)]);
    let kind_of = |dst: Ipv4Addr, port: u16| match a.services.lookup(dst, port, L4Proto::Tcp) {
        Frontend::Service { kind, .. } => Some(kind),
        _ => None,
    };
    assert_eq!(kind_of(lb_ip, 443), Some(FrontendKind::LoadBalancer));
    assert_eq!(
        kind_of(ip("192.0.2.10"), 443),
        Some(FrontendKind::ExternalIp)
    );
    assert_eq!(
        kind_of(ip("192.168.50.11"), node_port),
        Some(FrontendKind::NodePort)
    );
    assert!(https.source_allowed(FrontendKind::LoadBalancer, ip("203.0.113.9")));
    assert!(!https.source_allowed(FrontendKind::LoadBalancer, ip("8.8.8.8")));

    let plain = service(&a, "default/plain:80").unwrap();
    assert_eq!(
        plain.affinity_timeout(),
        Some(10800),
        "kube-proxy's default"
    );
    assert_eq!(plain.scheduler(), Scheduler::Random);
    assert!(!plain.external_local() && !plain.internal_local());
    assert_eq!(plain.node_port(), None);

    let without_external_ips = NodeLocal {
        external_ips: false,
        ..NodeLocal::default()
    };
    let ports = PortAssignments::new();
    let off = compile(cluster.state(), NODE_A, &without_external_ips, &ports)
        .unwrap()
        .snapshot;
    assert_eq!(
        off.services.lookup(ip("192.0.2.10"), 443, L4Proto::Tcp),
        Frontend::NotService
    );
}

#[test]
fn the_seed_only_local_annotation_means_external_traffic_policy_local() {
    let mut cluster = Cluster::new();
    cluster.apply(include_str!(
        "../../../tests/seed/service-store-be-onlylocal.yaml"
    ));
    let a = cluster.compile(NODE_A).snapshot;
    let https = service(&a, "default/store-be:https").unwrap();
    assert!(https.external_local());
    assert!(!https.internal_local());
}

#[test]
fn headless_and_foreign_services_are_not_proxied() {
    let mut cluster = Cluster::new();
    cluster
        .apply(
            "apiVersion: v1
kind: Service
metadata:
  name: headless
spec:
  clusterIP: None
  selector:
    app: web
  ports:
  - port: 80
---
apiVersion: v1
kind: Service
metadata:
  name: foreign
  labels:
    service.kubernetes.io/service-proxy-name: another-proxy
spec:
  selector:
    app: web
  ports:
  - port: 80
---
apiVersion: v1
kind: Service
metadata:
  name: mine
spec:
  selector:
    app: web
  ports:
  - port: 80
",
        )
        .apply(&pod("default", "w1", "app=web", NODE_A, &[]));
    let a = cluster.compile(NODE_A);
    assert!(a.problems.is_empty(), "{:?}", a.problems);
    let names: Vec<String> = a
        .snapshot
        .services
        .iter()
        .map(|(_, s)| s.name().to_string())
        .collect();
    assert_eq!(names, ["default/mine:80"]);
}

#[test]
fn one_bad_service_is_reported_and_the_others_compile() {
    let service = |name: &str, extra: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  selector:\n    app: web\n{extra}  ports:\n  - name: http\n    port: 80\n---\n"
        )
    };
    let mut cluster = Cluster::new();
    cluster
        .apply(
            &[
                service("a-first", "  externalIPs: [192.0.2.20]\n"),
                service("b-second", "  externalIPs: [192.0.2.20]\n"),
                service("c-third", ""),
            ]
            .concat(),
        )
        .apply(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: d-mixed\nspec:\n  selector:\n    app: web\n  ports:\n  - name: sctp\n    port: 9\n    protocol: SCTP\n  - name: tcp\n    port: 9\n",
        )
        .apply(&pod("default", "w1", "app=web", NODE_A, &[]));
    let a = cluster.compile(NODE_A);
    let objects: Vec<&str> = a.problems.iter().map(|p| p.object.as_str()).collect();
    assert_eq!(objects, ["Service default/b-second"], "SCTP is no problem");
    assert!(
        a.problems[0].message.contains("192.0.2.20"),
        "{}",
        a.problems[0]
    );
    let compiled: Vec<String> = a
        .snapshot
        .services
        .iter()
        .map(|(_, s)| s.name().to_string())
        .collect();
    assert_eq!(
        compiled,
        [
            "default/a-first:http",
            "default/c-third:http",
            "default/d-mixed:sctp",
            "default/d-mixed:tcp"
        ]
    );
    let w1 = cluster.ip("default", "w1");
    let third = service_named(&a.snapshot, "default/c-third:http");
    assert_eq!(endpoints(third), [(w1, 80)]);
}

fn service_named<'a>(
    snapshot: &'a Snapshot,
    name: &str,
) -> &'a dataplane::tables::services::Service {
    super::service(snapshot, name).unwrap()
}
