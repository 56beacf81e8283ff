//! The incremental [`Compiler::update`] gives what a fresh compile gives, whatever it cached.

use dataplane::flow::L4Proto::Tcp;
use dataplane::tables::policy::PolicyVerdict;

use super::*;
use crate::compile::Compiler;
use crate::model::Kind;

/// What a snapshot says, as comparable data: Services with their backends, local pods, routes.
type View = (
    Vec<(String, Vec<(Ipv4Addr, u16, bool, bool)>)>,
    Vec<(String, Ipv4Addr)>,
    Vec<String>,
);

fn view(snapshot: &Snapshot) -> View {
    let services = snapshot
        .services
        .iter()
        .map(|(_, s)| {
            let backends = s
                .backends()
                .iter()
                .map(|b| (b.ip, b.port, b.serving, b.node_local))
                .collect();
            (s.name().to_string(), backends)
        })
        .collect();
    let mut pods: Vec<(String, Ipv4Addr)> = snapshot
        .ports
        .pods()
        .map(|p| (p.name.to_string(), p.ip))
        .collect();
    pods.sort();
    let routes = snapshot
        .routes
        .nodes()
        .iter()
        .map(|n| format!("{} {} {}", n.name, n.pod_cidr, n.vtep_mac))
        .collect();
    (services, pods, routes)
}

const WEB: &str = "apiVersion: v1
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
---
apiVersion: v1
kind: Service
metadata:
  name: api
spec:
  selector:
    app: api
  ports:
  - port: 8080
";

/// Updates `compiler` with the cluster's last change and checks it against a fresh compile.
fn step(compiler: &mut Compiler, cluster: &Cluster) -> Snapshot {
    let ports = PortAssignments::sequential(cluster.state(), NODE_A);
    let incremental = compiler
        .update(cluster.state(), cluster.touched(), &ports)
        .unwrap()
        .snapshot;
    let fresh = cluster.compile(NODE_A).snapshot;
    assert_eq!(view(&incremental), view(&fresh));
    incremental
}

#[test]
fn updates_match_a_fresh_compile_after_each_change() {
    let mut cluster = Cluster::new();
    cluster.apply(WEB).apply(
        &[
            pod("default", "w1", "app=web", NODE_A, &[("http", 8080)]),
            pod("default", "a1", "app=api", NODE_B, &[]),
        ]
        .concat(),
    );
    let mut compiler = Compiler::new(NODE_A, NodeLocal::default());
    let first = step(&mut compiler, &cluster);
    assert_eq!(view(&first).0[1].1.len(), 1);

    // A new endpoint on another node: web's slices change.
    cluster.apply(&pod("default", "w2", "app=web", NODE_B, &[("http", 9090)]));
    let second = step(&mut compiler, &cluster);
    let w2 = cluster.ip("default", "w2");
    assert!(endpoints(service(&second, "default/web:http").unwrap()).contains(&(w2, 9090)));

    // A new local pod: ports change.
    cluster.apply(&pod("default", "w3", "app=web", NODE_A, &[("http", 8080)]));
    let third = step(&mut compiler, &cluster);
    assert!(third.ports.pod(cluster.ip("default", "w3")).is_some());

    // A policy appears: the cached policy must not be reused.
    let w1 = cluster.ip("default", "w1");
    let a1 = cluster.ip("default", "a1");
    assert_eq!(
        third.policy.check_ingress(w1, a1, Tcp, 8080),
        PolicyVerdict::NotIsolated
    );
    cluster.apply(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: only-web\nspec:\n  podSelector:\n    matchLabels:\n      app: web\n  ingress:\n  - from:\n    - podSelector:\n        matchLabels:\n          app: web\n",
    );
    let fourth = step(&mut compiler, &cluster);
    assert!(matches!(
        fourth.policy.check_ingress(w1, a1, Tcp, 8080),
        PolicyVerdict::Denied(Some(_))
    ));

    // A relabelled pod joins the policy's peers: pod changes reach the policy.
    cluster.apply(&pod("default", "a1", "app=web", NODE_B, &[]));
    let fifth = step(&mut compiler, &cluster);
    assert!(matches!(
        fifth.policy.check_ingress(w1, a1, Tcp, 8080),
        PolicyVerdict::Allowed(_)
    ));

    // A new node, then a Service and a pod go away.
    cluster.apply(&node("node-c", "192.168.50.13"));
    step(&mut compiler, &cluster);
    cluster.delete(&ObjectRef::new(Kind::Service, "default", "api"));
    let seventh = step(&mut compiler, &cluster);
    assert!(service(&seventh, "default/api:8080").is_none());
    cluster.delete(&ObjectRef::new(Kind::Pod, "default", "w3"));
    let eighth = step(&mut compiler, &cluster);
    assert_eq!(eighth.ports.pods().count(), 1);
}

#[test]
fn a_failed_update_is_followed_by_a_full_compile() {
    let mut cluster = Cluster::new();
    cluster.apply(WEB);
    let mut compiler = Compiler::new(NODE_A, NodeLocal::default());
    step(&mut compiler, &cluster);
    cluster.delete(&ObjectRef::new(Kind::Node, "", NODE_A));
    let ports = PortAssignments::new();
    assert!(
        compiler
            .update(cluster.state(), cluster.touched(), &ports)
            .is_err()
    );
    cluster.apply(&node(NODE_A, "192.168.50.21"));
    // The failed call dropped the caches: the next update compiles everything.
    let snapshot = step(&mut compiler, &cluster);
    assert_eq!(snapshot.node.node_ip, ip("192.168.50.21"));
}

/// A Service `s{i}` selecting `app=s{i}`; `variant` picks its type, affinity and externalIP
/// (from a small pool, so two Services sometimes claim the same front end).
fn churn_service(i: u64, variant: u64) -> String {
    let type_ = if variant.is_multiple_of(3) {
        "NodePort"
    } else {
        "ClusterIP"
    };
    let affinity = if variant.is_multiple_of(2) {
        "ClientIP"
    } else {
        "None"
    };
    let external = if variant.is_multiple_of(5) {
        format!("  externalIPs:\n  - 192.0.2.{}\n", variant % 4 + 1)
    } else {
        String::new()
    };
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: s{i}\nspec:\n  type: {type_}\n  selector:\n    app: s{i}\n  sessionAffinity: {affinity}\n{external}  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n---\n"
    )
}

#[test]
fn random_churn_keeps_the_incremental_service_table_equal_to_a_fresh_compile() {
    let mut cluster = Cluster::new();
    let mut seed = 0x00c0_ffee_u64;
    let mut next = move |n: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    let services: String = (0..12).map(|i| churn_service(i, i * 5)).collect();
    cluster.apply(&services);
    let local = NodeLocal {
        external_ips: true,
        ..NodeLocal::default()
    };
    let mut compiler = Compiler::new(NODE_A, local.clone());
    let (mut colliding, mut clean) = (0, 0);
    for step_no in 0..150 {
        let pod_no = next(30);
        let node = if pod_no % 2 == 0 { NODE_A } else { NODE_B };
        match next(10) {
            // Endpoint churn: a pod (re)appears under some Service, or goes away.
            0..=5 => {
                let labels = format!("app=s{}", next(14));
                cluster.apply(&pod(
                    "default",
                    &format!("p{pod_no}"),
                    &labels,
                    node,
                    &[("http", 8080)],
                ));
            }
            6 => {
                let key = ObjectRef::new(Kind::Pod, "default", &format!("p{pod_no}"));
                if cluster.state().object(&key).is_some() {
                    cluster.delete(&key);
                } else {
                    continue;
                }
            }
            // Service churn: fields change, a Service appears or goes away.
            7 | 8 => {
                cluster.apply(&churn_service(next(14), next(30)));
            }
            _ => {
                let key = ObjectRef::new(Kind::Service, "default", &format!("s{}", next(14)));
                if cluster.state().object(&key).is_some() {
                    cluster.delete(&key);
                } else {
                    continue;
                }
            }
        }
        let ports = PortAssignments::sequential(cluster.state(), NODE_A);
        let incremental = compiler
            .update(cluster.state(), cluster.touched(), &ports)
            .unwrap();
        let fresh = compile(cluster.state(), NODE_A, &local, &ports).unwrap();
        assert_eq!(
            *incremental.snapshot.services, *fresh.snapshot.services,
            "step {step_no}: the incremental Service table differs from a fresh compile"
        );
        let messages = |c: &crate::compile::Compiled| -> Vec<String> {
            let mut m: Vec<String> = c.problems.iter().map(|p| format!("{p:?}")).collect();
            m.sort();
            m
        };
        assert_eq!(messages(&incremental), messages(&fresh), "step {step_no}");
        if messages(&fresh)
            .iter()
            .any(|m| m.contains("already claimed"))
        {
            colliding += 1;
        } else {
            clean += 1;
        }
    }
    // Both the patched rebuild (no collision) and the full one (a collision) were compared.
    assert!(
        colliding > 5 && clean > 5,
        "{colliding} colliding, {clean} clean"
    );
}
