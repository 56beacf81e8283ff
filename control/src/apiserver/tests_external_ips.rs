//! Admission of `spec.externalIPs`: node addresses refused, disabled unless the cluster lists
//! allowed ranges, and the allow-list enforced (security review H5).

use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeStatus, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::model::StoredKind;
use crate::net::Cidr;
use crate::settings::ClusterSettings;

fn server(allowed: &[&str]) -> ApiServer {
    let settings = ClusterSettings {
        external_ip_cidrs: allowed
            .iter()
            .map(|c| Cidr::parse_canonical(c).unwrap())
            .collect(),
        ..ClusterSettings::default()
    };
    ApiServer::new(
        ClusterState::new(settings),
        Timestamp::from_second(1_700_000_000).unwrap(),
    )
}

fn node(name: &str, internal: &str, external: &str) -> Object {
    let address = |type_: &str, address: &str| NodeAddress {
        type_: type_.to_owned(),
        address: address.to_owned(),
    };
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        status: Some(NodeStatus {
            addresses: Some(vec![
                address("InternalIP", internal),
                address("ExternalIP", external),
                address("Hostname", name),
            ]),
            ..NodeStatus::default()
        }),
        ..Node::default()
    }
    .into_object()
}

fn service(name: &str, external_ips: &[&str]) -> Object {
    Service {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort {
                port: 9999,
                ..ServicePort::default()
            }]),
            external_ips: Some(external_ips.iter().map(|s| (*s).to_owned()).collect()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
    .into_object()
}

fn refusal(api: &mut ApiServer, object: Object) -> String {
    match api.apply(object, None) {
        Ok(_) => panic!("admitted"),
        Err(rejection) => rejection.error.to_string(),
    }
}

#[test]
fn external_ips_are_disabled_by_default_with_a_clear_error() {
    let mut api = server(&[]);
    let error = refusal(&mut api, service("web", &["192.0.2.10"]));
    assert!(
        error.starts_with("spec.externalIPs[0]: externalIPs are disabled in this cluster"),
        "{error}"
    );
    assert!(error.contains("externalIPCIDRs"), "{error}");
    api.apply(service("plain", &[]), None)
        .expect("a Service without externalIPs is admitted");
}

#[test]
fn a_node_address_is_refused_even_when_allowed_by_the_list() {
    let mut api = server(&["192.168.50.0/24", "203.0.113.0/24"]);
    api.apply(node("node-1", "192.168.50.2", "203.0.113.2"), None)
        .unwrap();
    api.apply(node("node-2", "192.168.50.3", "203.0.113.3"), None)
        .unwrap();
    let error = refusal(&mut api, service("hijack", &["192.168.50.3"]));
    assert_eq!(
        error,
        "spec.externalIPs[0]: 192.168.50.3 is the InternalIP of node \"node-2\": a Service may \
         not take over a node's address"
    );
    let error = refusal(
        &mut api,
        service("hijack", &["192.168.50.9", "203.0.113.2"]),
    );
    assert!(
        error.starts_with("spec.externalIPs[1]: 203.0.113.2 is the ExternalIP of node \"node-1\""),
        "{error}"
    );
    api.apply(service("fine", &["192.168.50.9"]), None)
        .expect("a non-node address in the list is admitted");
}

#[test]
fn the_allow_list_is_enforced() {
    let mut api = server(&["192.0.2.0/28"]);
    api.apply(service("in", &["192.0.2.5"]), None).unwrap();
    let error = refusal(&mut api, service("out", &["192.0.2.5", "192.0.2.16"]));
    assert_eq!(
        error,
        "spec.externalIPs[1]: 192.0.2.16 is outside the cluster's externalIPCIDRs [192.0.2.0/28]"
    );
}

#[test]
fn an_update_keeps_admitted_external_ips_but_adds_no_new_ones() {
    let mut api = server(&["192.0.2.0/28"]);
    api.apply(service("web", &["192.0.2.5"]), None).unwrap();
    api.state.settings_mut().external_ip_cidrs.clear();
    api.apply(service("web", &["192.0.2.5"]), None)
        .expect("an unchanged externalIP stays");
    let error = refusal(&mut api, service("web", &["192.0.2.5", "192.0.2.6"]));
    assert!(
        error.starts_with("spec.externalIPs[1]: externalIPs are disabled"),
        "{error}"
    );
}
