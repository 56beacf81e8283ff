//! networking.k8s.io/v1 ServiceCIDR objects: stored, ClusterIPs allocated from every range,
//! overlaps and deletions of held ranges refused naming the field, and the dataplane dropping
//! unallocated addresses of every range (`service_unallocated`).

use dataplane::flow::L4Proto;
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::apiserver::ApiServer;
use crate::compile::tests::{NODE_A, ip, node, pod};
use crate::manifest;
use crate::model::{Kind, ObjectRef};
use crate::settings::ClusterSettings;

/// A cluster whose default Service range is a /28 (13 dynamic ClusterIPs besides the DNS IP).
struct Small {
    state: ClusterState,
}

impl Small {
    fn new() -> Small {
        let settings = ClusterSettings {
            service_cidr: "10.96.0.0/28".parse().unwrap(),
            ..ClusterSettings::default()
        };
        let mut small = Small {
            state: ClusterState::new(settings),
        };
        small.apply(&node(NODE_A, "192.168.50.11")).unwrap();
        small
    }

    fn server(&mut self) -> ApiServer {
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        ApiServer::new(std::mem::take(&mut self.state), now)
    }

    /// Applies every document; the first refusal is returned (what came before is kept).
    fn apply(&mut self, yaml: &str) -> Result<(), String> {
        let mut api = self.server();
        let mut result = Ok(());
        for entry in manifest::parse("test.yaml", yaml) {
            if let Err(e) = api.apply(entry.result.unwrap(), None) {
                result = Err(e.to_string());
                break;
            }
        }
        self.state = api.finish().state;
        result
    }

    fn delete(&mut self, key: &ObjectRef) -> Result<(), String> {
        let mut api = self.server();
        let result = api.delete(key).map(|_| ()).map_err(|e| e.to_string());
        self.state = api.finish().state;
        result
    }

    fn cluster_ip(&self, name: &str) -> Ipv4Addr {
        let service = self.state.service("default", name).unwrap();
        ip(service
            .spec
            .as_ref()
            .unwrap()
            .cluster_ip
            .as_deref()
            .unwrap())
    }
}

fn service_cidr(name: &str, cidr: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: ServiceCIDR\nmetadata:\n  name: {name}\nspec:\n  cidrs: [{cidr}]\n---\n"
    )
}

fn web(name: &str, cluster_ip: Option<&str>) -> String {
    let requested = cluster_ip.map_or_else(String::new, |ip| format!("  clusterIP: {ip}\n"));
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n{requested}  selector:\n    app: web\n  ports:\n  - port: 80\n---\n"
    )
}

/// ClusterIPs come from the default range first, then from the next ServiceCIDR; a
/// requested address inside a ServiceCIDR is accepted.
#[test]
fn cluster_ips_allocate_from_every_service_cidr() {
    let mut cluster = Small::new();
    let too_many: String = (0..14).map(|i| web(&format!("s{i}"), None)).collect();
    let error = cluster.apply(&too_many).unwrap_err();
    assert!(error.contains("no free IP left"), "{error}");
    cluster
        .apply(&service_cidr("extra", "10.97.0.0/24"))
        .unwrap();
    cluster.apply(&too_many).unwrap();
    let extra: crate::net::Cidr = "10.97.0.0/24".parse().unwrap();
    assert!(
        extra.contains(cluster.cluster_ip("s13").into()),
        "{}",
        cluster.cluster_ip("s13")
    );
    cluster.apply(&web("pinned", Some("10.97.0.200"))).unwrap();
    assert_eq!(cluster.cluster_ip("pinned"), ip("10.97.0.200"));
    let error = cluster
        .apply(&web("outside", Some("10.98.0.5")))
        .unwrap_err();
    assert!(error.contains("spec.clusterIP"), "{error}");
}

/// Overlaps (with the default range, another ServiceCIDR or the pod CIDR), IPv6, two CIDRs
/// and changes of spec.cidrs are refused naming the field.
#[test]
fn bad_service_cidrs_name_the_field() {
    let mut cluster = Small::new();
    cluster
        .apply(&service_cidr("extra", "10.97.0.0/24"))
        .unwrap();
    for (yaml, field, words) in [
        (
            service_cidr("wide", "10.96.0.0/16"),
            "spec.cidrs[0]",
            "default service CIDR",
        ),
        (
            service_cidr("inner", "10.97.0.128/25"),
            "spec.cidrs[0]",
            "ServiceCIDR extra",
        ),
        (
            service_cidr("pods", "10.244.0.0/24"),
            "spec.cidrs[0]",
            "cluster (pod) CIDR",
        ),
        (
            service_cidr("six", "\"fd00::/108\""),
            "spec.cidrs[0]",
            "IPv6",
        ),
        (
            service_cidr("two", "10.98.0.0/24, 10.99.0.0/24"),
            "spec.cidrs",
            "exactly one CIDR per IP family",
        ),
        (
            service_cidr("extra", "10.98.0.0/24"),
            "spec.cidrs",
            "immutable",
        ),
        (
            service_cidr("hosty", "10.98.0.1/24"),
            "spec.cidrs[0]",
            "host bits",
        ),
    ] {
        let error = cluster.apply(&yaml).unwrap_err();
        assert!(
            error.contains(field) && error.contains(words),
            "{yaml}: {error}"
        );
    }
    cluster
        .apply(&service_cidr("kubernetes", "10.96.0.0/28"))
        .expect("a mirror of the default range is fine");
}

/// A ServiceCIDR still holding a Service's ClusterIP is not deleted; once the Service is gone
/// it is.
#[test]
fn a_service_cidr_holding_cluster_ips_is_not_deleted() {
    let mut cluster = Small::new();
    cluster
        .apply(&service_cidr("extra", "10.97.0.0/24"))
        .unwrap();
    cluster.apply(&web("pinned", Some("10.97.0.9"))).unwrap();
    let range = ObjectRef::new(Kind::ServiceCIDR, "", "extra");
    let error = cluster.delete(&range).unwrap_err();
    assert!(
        error.contains("10.97.0.9") && error.contains("default/pinned"),
        "{error}"
    );
    cluster
        .delete(&ObjectRef::new(Kind::Service, "default", "pinned"))
        .unwrap();
    cluster.delete(&range).unwrap();
    assert!(cluster.state.object(&range).is_none());
}

fn from_pod(cluster: &Small, dst: Ipv4Addr) -> TraceReport {
    let request = TraceRequest {
        source: Source::Pod {
            namespace: "default".to_owned(),
            name: "client".to_owned(),
        },
        dst,
        dport: 80,
        proto: L4Proto::Tcp,
        node: None,
    };
    trace(&cluster.state, &request).unwrap()
}

/// A Service allocated from the second range answers; an unallocated address in it is
/// dropped as `service_unallocated`, never masqueraded out; outside every range it is
/// ordinary egress.
#[test]
fn the_dataplane_drops_unallocated_addresses_of_every_service_cidr() {
    let mut cluster = Small::new();
    cluster
        .apply(
            &[
                service_cidr("extra", "10.97.0.0/24"),
                pod("default", "client", "role=client", NODE_A, &[]),
                pod("default", "web-1", "app=web", NODE_A, &[]),
                web("pinned", Some("10.97.0.9")),
            ]
            .concat(),
        )
        .unwrap();
    let answered = from_pod(&cluster, ip("10.97.0.9"));
    assert_eq!(answered.verdict, Outcome::Delivered, "{answered:?}");
    let unallocated = from_pod(&cluster, ip("10.97.0.77"));
    assert_eq!(unallocated.verdict, Outcome::Drop, "{unallocated:?}");
    assert_eq!(unallocated.reason.as_deref(), Some("service_unallocated"));
    assert_eq!(unallocated.snat, None);
    let outside = from_pod(&cluster, ip("10.98.0.77"));
    assert_eq!(outside.verdict, Outcome::Egress, "{outside:?}");
    cluster
        .delete(&ObjectRef::new(Kind::Service, "default", "pinned"))
        .unwrap();
    cluster
        .delete(&ObjectRef::new(Kind::ServiceCIDR, "", "extra"))
        .unwrap();
    let gone = from_pod(&cluster, ip("10.97.0.77"));
    assert_eq!(gone.verdict, Outcome::Egress, "range deleted: {gone:?}");
}
