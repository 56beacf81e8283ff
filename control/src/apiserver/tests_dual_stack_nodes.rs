//! Node podCIDRs, pod IPs, EndpointSlices and Endpoints per family in dual-stack clusters.

use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::*;
use crate::model::StoredKind;
use crate::settings::ClusterSettings;

fn server(settings: &str) -> ApiServer {
    ApiServer::new(
        ClusterState::new(ClusterSettings::from_json(settings.as_bytes()).unwrap()),
        Timestamp::from_second(1_700_000_000).unwrap(),
    )
}

const DUAL: &str =
    r#"{"secondaryClusterCIDR":"fd00:10:244::/56","secondaryServiceCIDR":"fd00:10:96::/108"}"#;
const DUAL_V6_FIRST: &str = r#"{"clusterCIDR":"fd00:10:244::/56","secondaryClusterCIDR":"10.244.0.0/16","serviceCIDR":"fd00:10:96::/108","secondaryServiceCIDR":"10.96.0.0/12","clusterDNS":"fd00:10:96::a","loadBalancerPool":"2001:db8::/120"}"#;

fn apply<T: serde::de::DeserializeOwned + StoredKind>(
    api: &mut ApiServer,
    value: serde_json::Value,
) -> Result<(), String> {
    let object: T = serde_json::from_value(value).unwrap();
    api.apply(object.into_object(), None)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn node(api: &mut ApiServer, name: &str, spec: serde_json::Value) -> Result<Vec<String>, String> {
    apply::<Node>(
        api,
        json!({"metadata": {"name": name}, "spec": spec,
               "status": {"addresses": [{"type": "InternalIP", "address": "192.168.50.11"}]}}),
    )?;
    let node = api.state().node(name).unwrap();
    let spec = node.spec.as_ref().unwrap();
    assert_eq!(
        spec.pod_cidr.as_ref(),
        spec.pod_cidrs.as_ref().unwrap().first()
    );
    Ok(spec.pod_cidrs.clone().unwrap())
}

fn pod(api: &mut ApiServer, name: &str) -> Vec<String> {
    apply::<Pod>(
        api,
        json!({"metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
               "spec": {"nodeName": "a", "containers": [{"name": "c"}]}}),
    )
    .unwrap();
    let pod = api.state().pod("default", name).unwrap();
    let status = pod.status.as_ref().unwrap();
    let ips: Vec<String> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.clone())
        .collect();
    assert_eq!(status.pod_ip.as_ref(), ips.first());
    ips
}

fn service(api: &mut ApiServer, name: &str, spec: serde_json::Value) {
    let mut full = json!({"selector": {"app": "web"}, "ports": [{"port": 80}]});
    for (k, v) in spec.as_object().unwrap() {
        full[k] = v.clone();
    }
    apply::<Service>(
        api,
        json!({"metadata": {"name": name, "namespace": "default"}, "spec": full}),
    )
    .unwrap();
}

/// (addressType, addresses) of each slice of the Service.
fn slices(state: &ClusterState, service: &str) -> Vec<(String, Vec<String>)> {
    let mut found: Vec<(String, Vec<String>)> = state
        .endpoint_slices_of("default", service)
        .map(|s: &EndpointSlice| s)
        .map(|s| {
            let addresses = s
                .endpoints
                .iter()
                .flat_map(|e| e.addresses.clone())
                .collect();
            (s.address_type.clone(), addresses)
        })
        .collect();
    found.sort();
    found
}

fn endpoints_addresses(state: &ClusterState, service: &str) -> Vec<String> {
    state
        .list::<Endpoints>()
        .filter(|e| e.metadata.name.as_deref() == Some(service))
        .flat_map(|e| e.subsets.clone().unwrap_or_default())
        .flat_map(|s| s.addresses.unwrap_or_default())
        .map(|a| a.ip)
        .collect()
}

#[test]
fn nodes_get_a_pod_cidr_of_each_family_primary_first() {
    let mut api = server(DUAL);
    assert_eq!(
        node(&mut api, "a", json!({})).unwrap(),
        ["10.244.0.0/24", "fd00:10:244::/64"]
    );
    assert_eq!(
        node(&mut api, "b", json!({})).unwrap(),
        ["10.244.1.0/24", "fd00:10:244:1::/64"]
    );
    // A re-apply without podCIDRs keeps them; a requested pair is honoured.
    assert_eq!(
        node(&mut api, "a", json!({})).unwrap(),
        ["10.244.0.0/24", "fd00:10:244::/64"]
    );
    let requested =
        json!({"podCIDR": "10.244.9.0/24", "podCIDRs": ["10.244.9.0/24", "fd00:10:244:9::/64"]});
    assert_eq!(
        node(&mut api, "c", requested).unwrap(),
        ["10.244.9.0/24", "fd00:10:244:9::/64"]
    );

    let mut api = server(DUAL_V6_FIRST);
    assert_eq!(
        node(&mut api, "a", json!({})).unwrap(),
        ["fd00:10:244::/64", "10.244.0.0/24"]
    );
}

#[test]
fn bad_node_pod_cidrs_name_the_field() {
    let cases = [
        (
            DUAL,
            json!({"podCIDRs": ["10.244.9.0/24", "10.244.10.0/24"]}),
            "spec.podCIDRs: Invalid value: [\"10.244.9.0/24\", \"10.244.10.0/24\"]: may specify no more than one CIDR for each IP family",
        ),
        (
            DUAL,
            json!({"podCIDRs": ["10.244.9.0/24", "fd00:99::/64"]}),
            "spec.podCIDR: fd00:99::/64 must lie inside the cluster CIDR fd00:10:244::/56",
        ),
        (
            "{}",
            json!({"podCIDRs": ["10.244.9.0/24", "fd00:10:244::/64"]}),
            "spec.podCIDRs: fd00:10:244::/64 is IPv6: this cluster has no IPv6 pod range",
        ),
    ];
    for (settings, spec, expected) in cases {
        let mut api = server(settings);
        let err = node(&mut api, "a", spec.clone()).unwrap_err();
        assert!(
            err.contains(expected),
            "{spec}:\n got  {err}\n want {expected}"
        );
    }
}

#[test]
fn dual_stack_pods_get_an_ip_per_family_and_services_a_slice_per_family() {
    let mut api = server(DUAL);
    node(&mut api, "a", json!({})).unwrap();
    assert_eq!(pod(&mut api, "p1"), ["10.244.0.2", "fd00:10:244::2"]);
    assert_eq!(pod(&mut api, "p2"), ["10.244.0.3", "fd00:10:244::3"]);
    service(
        &mut api,
        "dual",
        json!({"ipFamilyPolicy": "RequireDualStack"}),
    );
    service(&mut api, "four", json!({}));
    service(&mut api, "six", json!({"ipFamilies": ["IPv6"]}));
    service(
        &mut api,
        "six-first",
        json!({"ipFamilies": ["IPv6", "IPv4"], "ipFamilyPolicy": "PreferDualStack"}),
    );

    let state = api.finish().state;
    let v4 = ["10.244.0.2".to_owned(), "10.244.0.3".to_owned()];
    let v6 = ["fd00:10:244::2".to_owned(), "fd00:10:244::3".to_owned()];
    assert_eq!(
        slices(&state, "dual"),
        [
            ("IPv4".to_owned(), v4.to_vec()),
            ("IPv6".to_owned(), v6.to_vec())
        ]
    );
    assert_eq!(slices(&state, "four"), [("IPv4".to_owned(), v4.to_vec())]);
    assert_eq!(slices(&state, "six"), [("IPv6".to_owned(), v6.to_vec())]);
    // Legacy Endpoints list the primary family's addresses (upstream's endpoints controller).
    assert_eq!(endpoints_addresses(&state, "dual"), v4);
    assert_eq!(endpoints_addresses(&state, "six"), v6);
    assert_eq!(endpoints_addresses(&state, "six-first"), v6);
}

#[test]
fn a_pod_ip_of_each_family_is_released_when_the_pod_goes() {
    let mut api = server(DUAL);
    node(&mut api, "a", json!({})).unwrap();
    assert_eq!(pod(&mut api, "p1"), ["10.244.0.2", "fd00:10:244::2"]);
    api.delete(&ObjectRef::new(Kind::Pod, "default", "p1"))
        .unwrap();
    assert_eq!(pod(&mut api, "p2"), ["10.244.0.2", "fd00:10:244::2"]);
    let err = apply::<Pod>(
        &mut api,
        json!({"metadata": {"name": "p3", "namespace": "default"},
               "spec": {"containers": [{"name": "c"}]},
               "status": {"podIP": "10.244.0.9", "podIPs": [{"ip": "10.244.0.9"}, {"ip": "10.244.0.10"}]}}),
    )
    .unwrap_err();
    assert!(
        err.contains("status.podIPs: may specify no more than one IP for each IP family"),
        "{err}"
    );
}
