//! NetworkPolicy compilation, checked through the compiled table's own verdicts. Expected
//! verdicts follow the Kubernetes semantics (user-needs K1-K9), row by row.

use dataplane::flow::L4Proto::{Tcp, Udp};

use super::verdicts::{Seen::*, assert_egress, assert_ingress};
use super::*;
use crate::model::{Kind, ObjectRef, StoredKind};

fn store_app() -> Cluster {
    let mut cluster = Cluster::new();
    cluster.apply(
        &[
            pod(
                "default",
                "store-be-1",
                "app=store,role=be",
                NODE_A,
                &[("http", 80)],
            ),
            pod(
                "default",
                "store-be-2",
                "app=store,role=be",
                NODE_B,
                &[("http", 80)],
            ),
            pod(
                "default",
                "store-fe",
                "app=store,role=fe",
                NODE_A,
                &[("http", 80)],
            ),
            pod(
                "default",
                "store-db",
                "app=store,role=db",
                NODE_B,
                &[("redis", 6379)],
            ),
        ]
        .concat(),
    );
    cluster.apply(include_str!("../../../tests/seed/networkpolicy-store.yaml"));
    cluster
}

#[test]
fn the_seed_policy_lets_only_backends_reach_the_database() {
    let cluster = store_app();
    let [be1, be2, fe, db] = ["store-be-1", "store-be-2", "store-fe", "store-db"]
        .map(|name| cluster.ip("default", name));
    let policy = "default/store-net-policy";
    let b = cluster.compile(NODE_B);
    assert!(b.problems.is_empty(), "{:?}", b.problems);
    let table = &b.snapshot.policy;
    assert_ingress(
        table,
        &[
            (db, be1, Tcp, 6379, Allow(policy)),
            (db, be2, Tcp, 6379, Allow(policy)),
            (db, fe, Tcp, 6379, Deny(Some(policy))),
            (db, be1, Tcp, 80, Deny(Some(policy))),
            (db, be1, Udp, 6379, Deny(Some(policy))),
            (db, ip("8.8.8.8"), Tcp, 6379, Deny(Some(policy))),
            (be2, fe, Tcp, 80, Open),
        ],
    );
    assert_egress(table, &[(db, be1, Tcp, 80, Open)]);
    assert_eq!(table.is_isolated(db), (true, false));
    // node-a holds no selected pod: nothing to enforce there.
    let a = cluster.compile(NODE_A);
    assert!(a.snapshot.policy.is_empty());
    assert_ingress(&a.snapshot.policy, &[(db, fe, Tcp, 6379, Open)]);
}

#[test]
fn default_deny_namespace_isolates_every_pod_for_ingress() {
    let mut cluster = Cluster::new();
    cluster
        .apply(include_str!(
            "../../../tests/seed/namespace-store-defaultdeny.yaml"
        ))
        .apply(
            &[
                pod("store-namespace", "db", "role=db", NODE_A, &[]),
                pod("store-namespace", "be", "role=be", NODE_A, &[]),
                pod("store-namespace", "cache", "role=cache", NODE_A, &[]),
                pod("default", "outsider", "role=be", NODE_A, &[]),
            ]
            .concat(),
        )
        .apply(
            "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: db-from-be
  namespace: store-namespace
spec:
  podSelector:
    matchLabels:
      role: db
  ingress:
  - from:
    - podSelector:
        matchLabels:
          role: be
    ports:
    - port: 6379
",
        );
    let [db, be, cache] = ["db", "be", "cache"].map(|n| cluster.ip("store-namespace", n));
    let outsider = cluster.ip("default", "outsider");
    let a = cluster.compile(NODE_A).snapshot;
    let policy = "store-namespace/db-from-be";
    assert_ingress(
        &a.policy,
        &[
            (db, be, Tcp, 6379, Allow(policy)),
            (db, outsider, Tcp, 6379, Deny(Some(policy))),
            (db, cache, Tcp, 6379, Deny(Some(policy))),
            (cache, be, Tcp, 6379, Deny(None)),
            (be, db, Tcp, 80, Deny(None)),
            (outsider, db, Tcp, 80, Open),
        ],
    );
    assert_egress(&a.policy, &[(be, db, Tcp, 6379, Open)]);
}

#[test]
fn policy_types_decide_which_directions_are_isolated() {
    let mut cluster = Cluster::new();
    cluster
        .apply(&pod("default", "db", "role=db", NODE_A, &[]))
        .apply(
            "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: egress-only
spec:
  podSelector:
    matchLabels:
      role: db
  policyTypes: [Egress]
  ingress:
  - {}
  egress:
  - to:
    - ipBlock:
        cidr: 10.0.0.0/8
",
        );
    let db = cluster.ip("default", "db");
    let table = cluster.compile(NODE_A).snapshot.policy;
    assert_ingress(&table, &[(db, ip("8.8.8.8"), Tcp, 80, Open)]);
    assert_egress(
        &table,
        &[
            (db, ip("10.1.2.3"), Tcp, 80, Allow("default/egress-only")),
            (
                db,
                ip("8.8.8.8"),
                Tcp,
                80,
                Deny(Some("default/egress-only")),
            ),
        ],
    );
}

#[test]
fn omitted_policy_types_default_to_ingress_plus_egress_when_egress_rules_exist() {
    let mut cluster = Cluster::new();
    cluster
        .apply(&pod("default", "db", "role=db", NODE_A, &[]))
        .apply(
            "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: both
spec:
  podSelector: {}
  egress:
  - to:
    - ipBlock:
        cidr: 10.0.0.0/8
",
        );
    // Strip what admission defaulted, as a policy from another source might arrive.
    let mut state = cluster.state().clone();
    let key = ObjectRef::new(Kind::NetworkPolicy, "default", "both");
    let mut policy = state
        .get::<k8s_openapi::api::networking::v1::NetworkPolicy>("default", "both")
        .unwrap()
        .clone();
    policy.spec.as_mut().unwrap().policy_types = None;
    state.insert(policy.into_object());
    assert!(state.object(&key).is_some());
    let db = cluster.ip("default", "db");
    let ports = PortAssignments::sequential(&state, NODE_A);
    let table = compile(&state, NODE_A, &NodeLocal::default(), &ports)
        .unwrap()
        .snapshot
        .policy;
    assert_eq!(table.is_isolated(db), (true, true));
}

#[test]
fn peer_selectors_and_in_one_item_or_across_items() {
    let mut cluster = Cluster::new();
    cluster
        .apply(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n  labels:\n    team: a\n",
        )
        .apply(
            &[
                pod("team-a", "client-a", "role=client", NODE_B, &[]),
                pod("team-a", "other-a", "role=other", NODE_B, &[]),
                pod("default", "client-d", "role=client", NODE_B, &[]),
                pod("default", "db-and", "role=db-and", NODE_A, &[]),
                pod("default", "db-or", "role=db-or", NODE_A, &[]),
            ]
            .concat(),
        )
        .apply(
            "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: and
spec:
  podSelector:
    matchLabels:
      role: db-and
  ingress:
  - from:
    - namespaceSelector:
        matchLabels:
          team: a
      podSelector:
        matchLabels:
          role: client
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: or
spec:
  podSelector:
    matchLabels:
      role: db-or
  ingress:
  - from:
    - namespaceSelector:
        matchLabels:
          team: a
    - podSelector:
        matchLabels:
          role: client
",
        );
    let [x, z] = ["client-a", "other-a"].map(|n| cluster.ip("team-a", n));
    let [y, db_and, db_or] = ["client-d", "db-and", "db-or"].map(|n| cluster.ip("default", n));
    let table = cluster.compile(NODE_A).snapshot.policy;
    assert_ingress(
        &table,
        &[
            (db_and, x, Tcp, 80, Allow("default/and")),
            (db_and, z, Tcp, 80, Deny(Some("default/and"))),
            (db_and, y, Tcp, 80, Deny(Some("default/and"))),
            (db_or, x, Tcp, 80, Allow("default/or")),
            (db_or, z, Tcp, 80, Allow("default/or")),
            (db_or, y, Tcp, 80, Allow("default/or")),
        ],
    );
}

#[test]
fn ip_blocks_honour_except_and_host_network_pods_never_match_selectors() {
    let mut cluster = Cluster::new();
    cluster
        .apply(&pod("default", "db", "role=db", NODE_A, &[]))
        .apply(&pod("default", "peer", "role=peer", NODE_B, &[]))
        .apply(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: agent\nspec:\n  nodeName: node-b\n  hostNetwork: true\n  containers:\n  - name: c\n    image: x\nstatus:\n  podIP: 192.168.50.12\n",
        )
        .apply(
            "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: mixed
spec:
  podSelector:
    matchLabels:
      role: db
  ingress:
  - from:
    - podSelector: {}
    - ipBlock:
        cidr: 172.16.0.0/12
        except: [172.17.0.0/16]
",
        );
    let db = cluster.ip("default", "db");
    let peer = cluster.ip("default", "peer");
    let table = cluster.compile(NODE_A).snapshot.policy;
    let policy = "default/mixed";
    assert_ingress(
        &table,
        &[
            (db, peer, Tcp, 80, Allow(policy)),
            (db, ip("192.168.50.12"), Tcp, 80, Deny(Some(policy))),
            (db, ip("172.16.1.1"), Udp, 53, Allow(policy)),
            (db, ip("172.17.1.1"), Udp, 53, Deny(Some(policy))),
            (db, ip("8.8.8.8"), Tcp, 80, Deny(Some(policy))),
        ],
    );
}
