//! NetworkPolicy ports: numeric, named (per destination pod, both directions), ranges,
//! protocol defaults, and entries that must never widen a rule.

use dataplane::flow::L4Proto::{Sctp, Tcp, Udp};

use super::verdicts::{Seen::*, assert_egress, assert_ingress};
use super::*;

#[test]
fn ports_numeric_named_ranges_and_default_protocol() {
    let mut cluster = Cluster::new();
    cluster
        .apply(
            &[
                pod("default", "p1", "app=web", NODE_A, &[("web", 8080)]),
                pod("default", "p2", "app=web", NODE_A, &[("web", 9090)]),
                pod("default", "sctp", "app=sctp", NODE_A, &[]),
            ]
            .concat(),
        )
        .apply(
            "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web
spec:
  podSelector:
    matchLabels:
      app: web
  ingress:
  - ports:
    - port: web
  - ports:
    - port: 53
  - ports:
    - protocol: UDP
      port: 3000
      endPort: 3005
  - ports:
    - port: nosuch
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: sctp-only
spec:
  podSelector:
    matchLabels:
      app: sctp
  ingress:
  - ports:
    - protocol: SCTP
      port: 9
",
        );
    let [p1, p2, sctp] = ["p1", "p2", "sctp"].map(|n| cluster.ip("default", n));
    let anyone = ip("10.244.1.99");
    let compiled = cluster.compile(NODE_A);
    let table = &compiled.snapshot.policy;
    let (web, only) = ("default/web", "default/sctp-only");
    assert_ingress(
        table,
        &[
            (p1, anyone, Tcp, 8080, Allow(web)),
            (p1, anyone, Tcp, 9090, Deny(Some(web))),
            (p2, anyone, Tcp, 9090, Allow(web)),
            (p2, anyone, Tcp, 8080, Deny(Some(web))),
            (p1, anyone, Tcp, 53, Allow(web)),
            (p1, anyone, Udp, 53, Deny(Some(web))),
            (p1, anyone, Udp, 3000, Allow(web)),
            (p1, anyone, Udp, 3005, Allow(web)),
            (p1, anyone, Udp, 3006, Deny(Some(web))),
            (p1, anyone, Tcp, 3003, Deny(Some(web))),
            (sctp, anyone, Tcp, 9, Deny(Some(only))),
            (sctp, anyone, Udp, 9, Deny(Some(only))),
            (sctp, anyone, Sctp, 9, Allow(only)),
            (sctp, anyone, Sctp, 10, Deny(Some(only))),
            (p1, anyone, Sctp, 8080, Deny(Some(web))),
        ],
    );
    assert!(
        !compiled
            .problems
            .iter()
            .any(|p| p.object == "NetworkPolicy default/sctp-only"),
        "SCTP ports compile without a warning: {:?}",
        compiled.problems
    );
}

#[test]
fn egress_named_ports_resolve_per_destination_pod() {
    let mut cluster = Cluster::new();
    cluster
        .apply(
            &[
                pod("default", "client", "role=client", NODE_A, &[]),
                pod("default", "be-1", "role=be", NODE_A, &[("web", 8080)]),
                pod("default", "be-2", "role=be", NODE_B, &[("web", 9090)]),
                pod("default", "be-3", "role=be", NODE_B, &[]),
            ]
            .concat(),
        )
        .apply(
            "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: client-out
spec:
  podSelector:
    matchLabels:
      role: client
  policyTypes: [Egress]
  egress:
  - to:
    - podSelector:
        matchLabels:
          role: be
    ports:
    - port: web
",
        );
    let [client, be1, be2, be3] =
        ["client", "be-1", "be-2", "be-3"].map(|n| cluster.ip("default", n));
    let table = cluster.compile(NODE_A).snapshot.policy;
    let policy = "default/client-out";
    assert_egress(
        &table,
        &[
            (client, be1, Tcp, 8080, Allow(policy)),
            (client, be1, Tcp, 9090, Deny(Some(policy))),
            (client, be2, Tcp, 9090, Allow(policy)),
            (client, be2, Tcp, 8080, Deny(Some(policy))),
            (client, be3, Tcp, 8080, Deny(Some(policy))),
            (client, ip("8.8.8.8"), Tcp, 8080, Deny(Some(policy))),
        ],
    );
}
