//! Endpoints of a Service port from several EndpointSlices, or from a legacy Endpoints object.

use super::*;

const MANUAL: &str = "apiVersion: v1
kind: Service
metadata:
  name: manual
spec:
  ports:
  - name: http
    port: 80
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: manual-1
  labels:
    kubernetes.io/service-name: manual
addressType: IPv4
ports:
- name: http
  port: 8080
  protocol: TCP
endpoints:
- addresses: [10.244.0.5]
  conditions: {ready: false, serving: false, terminating: true}
- addresses: [10.244.1.6]
  nodeName: node-b
  conditions: {ready: true}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: manual-2
  labels:
    kubernetes.io/service-name: manual
addressType: IPv4
ports:
- name: http
  port: 8080
  protocol: TCP
endpoints:
- addresses: [10.244.0.5]
  nodeName: node-a
  conditions: {ready: true, serving: true, terminating: false}
- addresses: [10.244.0.7]
  nodeName: node-a
  conditions: {ready: false, serving: true, terminating: true}
- addresses: [10.244.0.8]
  conditions: {ready: false, serving: true, terminating: false}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: manual-metrics
  labels:
    kubernetes.io/service-name: manual
addressType: IPv4
ports:
- name: metrics
  port: 9100
endpoints:
- addresses: [10.244.0.9]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: someone-else
  labels:
    kubernetes.io/service-name: other
addressType: IPv4
ports:
- name: http
  port: 8080
endpoints:
- addresses: [10.244.0.10]
";

#[test]
fn slices_are_merged_and_deduplicated_preferring_the_serving_copy() {
    let mut cluster = Cluster::new();
    cluster.apply(MANUAL);
    let a = cluster.compile(NODE_A);
    let http = service(&a.snapshot, "default/manual:http").unwrap();
    assert_eq!(
        endpoints(http),
        [
            (ip("10.244.0.5"), 8080),
            (ip("10.244.0.7"), 8080),
            (ip("10.244.0.8"), 8080),
            (ip("10.244.1.6"), 8080),
        ]
    );
    let ghost = backend(http, ip("10.244.0.5"));
    assert!(ghost.serving && !ghost.terminating && ghost.node_local);
    let leaving = backend(http, ip("10.244.0.7"));
    assert!(leaving.serving && leaving.terminating, "fallback endpoint");
    let unready = backend(http, ip("10.244.0.8"));
    assert!(
        !unready.serving,
        "not ready and not terminating is never used"
    );
    assert_eq!(http.local_ready_endpoints(), 1);
}

#[test]
fn legacy_endpoints_serve_a_service_without_slices() {
    let mut cluster = Cluster::new();
    cluster.apply(
        "apiVersion: v1
kind: Service
metadata:
  name: legacy
spec:
  ports:
  - name: db
    port: 5432
---
apiVersion: v1
kind: Endpoints
metadata:
  name: legacy
subsets:
- addresses:
  - ip: 192.168.7.10
  notReadyAddresses:
  - ip: 192.168.7.11
  ports:
  - name: db
    port: 15432
",
    );
    let a = cluster.compile(NODE_A);
    let db = service(&a.snapshot, "default/legacy:db").unwrap();
    assert_eq!(
        endpoints(db),
        [(ip("192.168.7.10"), 15432), (ip("192.168.7.11"), 15432)]
    );
    assert!(backend(db, ip("192.168.7.10")).serving);
    assert!(!backend(db, ip("192.168.7.11")).serving);
}
