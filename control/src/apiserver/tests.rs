//! In-memory tests of the API server write path (the integration tests drive the binary).

use k8s_openapi::api::core::v1::{
    Container, Namespace, Pod, PodSpec, PodStatus, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::model::StoredKind;
use crate::settings::ClusterSettings;

fn meta(name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        labels: Some(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        ..ObjectMeta::default()
    }
}

fn service(name: &str, selector: &[(&str, &str)]) -> Object {
    Service {
        metadata: meta(name, &[]),
        spec: Some(ServiceSpec {
            selector: Some(
                selector
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ports: Some(vec![ServicePort {
                port: 80,
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
    .into_object()
}

fn pod_with_ip(name: &str, ip: &str) -> Object {
    Pod {
        metadata: meta(name, &[("app", "web")]),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            pod_ip: Some(ip.to_owned()),
            ..PodStatus::default()
        }),
    }
    .into_object()
}

fn server() -> ApiServer {
    ApiServer::new(
        ClusterState::new(ClusterSettings::default()),
        Timestamp::from_second(1_700_000_000).unwrap(),
    )
}

#[test]
fn slices_hold_at_most_a_hundred_endpoints() {
    let mut api = server();
    api.apply(service("web", &[("app", "web")]), None).unwrap();
    for i in 0..250u32 {
        api.apply(
            pod_with_ip(
                &format!("p{i}"),
                &format!("10.244.{}.{}", i / 200, i % 200 + 2),
            ),
            None,
        )
        .unwrap();
    }
    let state = api.finish().state;
    let mut sizes: Vec<(String, usize)> = state
        .endpoint_slices_of("default", "web")
        .map(|s: &EndpointSlice| (s.metadata.name.clone().unwrap(), s.endpoints.len()))
        .collect();
    sizes.sort();
    assert_eq!(
        sizes,
        [
            ("web-1".to_owned(), 100),
            ("web-2".to_owned(), 100),
            ("web-3".to_owned(), 50)
        ]
    );
    let subsets = state
        .get::<k8s_openapi::api::core::v1::Endpoints>("default", "web")
        .unwrap()
        .subsets
        .clone()
        .unwrap();
    assert_eq!(subsets[0].addresses.as_ref().unwrap().len(), 250);
}

#[test]
fn shrinking_removes_surplus_slices_and_empty_service_keeps_a_placeholder() {
    let mut api = server();
    api.apply(service("web", &[("app", "web")]), None).unwrap();
    for i in 0..150u32 {
        api.apply(
            pod_with_ip(&format!("p{i}"), &format!("10.244.0.{}", i + 2)),
            None,
        )
        .unwrap();
    }
    let mut api = ApiServer::new(
        api.finish().state,
        Timestamp::from_second(1_700_000_100).unwrap(),
    );
    for i in 0..150u32 {
        api.delete(&ObjectRef::new(Kind::Pod, "default", &format!("p{i}")))
            .unwrap();
    }
    let state = api.finish().state;
    let slices: Vec<&EndpointSlice> = state.endpoint_slices_of("default", "web").collect();
    assert_eq!(slices.len(), 1);
    assert!(slices[0].endpoints.is_empty());
}

#[test]
fn a_rejected_object_changes_nothing() {
    let mut api = server();
    let mut bad = service("web", &[("app", "web")]);
    if let Object::Service(s) = &mut bad {
        s.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].port = 0;
    }
    let rejection = api.apply(bad, None).unwrap_err();
    assert_eq!(
        rejection.to_string(),
        "Service default/web: spec.ports[0].port: 0 is out of range: must be between 1 and 65535, inclusive"
    );
    let finished = api.finish();
    assert!(finished.touched.is_empty());
    assert_eq!(finished.state.generation(), 0);
}

#[test]
fn unchanged_apply_keeps_the_resource_version() {
    let mut api = server();
    let first = api.apply(service("web", &[("app", "web")]), None).unwrap();
    assert_eq!(first.outcome, Outcome::Created);
    let mut api = ApiServer::new(
        api.finish().state,
        Timestamp::from_second(1_700_000_100).unwrap(),
    );
    let second = api.apply(service("web", &[("app", "web")]), None).unwrap();
    assert_eq!(second.outcome, Outcome::Unchanged);
    assert_eq!(second.object, first.object);
    assert!(api.finish().touched.is_empty());
}

#[test]
fn deleting_a_namespace_deletes_its_contents_but_system_ones_are_protected() {
    let mut api = server();
    let namespace = Namespace {
        metadata: meta("team", &[]),
        ..Namespace::default()
    }
    .into_object();
    api.apply(namespace, None).unwrap();
    api.apply(service("web", &[("app", "web")]), Some("team"))
        .unwrap();
    api.apply(pod_with_ip("p", "10.244.0.5"), Some("team"))
        .unwrap();
    let mut api = ApiServer::new(
        api.finish().state,
        Timestamp::from_second(1_700_000_100).unwrap(),
    );
    api.delete(&ObjectRef::new(Kind::Namespace, "", "team"))
        .unwrap();
    let state = api.finish().state;
    assert!(
        Kind::ALL
            .iter()
            .all(|k| state.objects_in(*k, "team").next().is_none())
    );
    let mut api = ApiServer::new(state, Timestamp::from_second(1_700_000_200).unwrap());
    let default = Namespace {
        metadata: meta("default", &[]),
        ..Namespace::default()
    }
    .into_object();
    api.apply(default, None).unwrap();
    let err = api
        .delete(&ObjectRef::new(Kind::Namespace, "", "default"))
        .unwrap_err();
    assert!(err.to_string().contains("system namespace"), "{err}");
}

#[test]
fn every_write_of_a_session_shares_the_next_generation_as_resource_version() {
    let state = ClusterState::new(ClusterSettings::default());
    let mut api = ApiServer::new(state, Timestamp::from_second(1_700_000_000).unwrap());
    let svc = api.apply(service("web", &[("app", "web")]), None).unwrap();
    let pod = api.apply(pod_with_ip("p", "10.244.0.5"), None).unwrap();
    let finished = api.finish();
    assert_eq!(finished.state.generation(), 1);
    assert_eq!(svc.object.metadata().resource_version.as_deref(), Some("1"));
    assert_eq!(pod.object.metadata().resource_version.as_deref(), Some("1"));
    let endpoints = finished
        .state
        .object(&ObjectRef::new(Kind::Endpoints, "default", "web"))
        .unwrap();
    assert_eq!(endpoints.metadata().resource_version.as_deref(), Some("1"));
    assert_eq!(
        svc.object
            .metadata()
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second()),
        Some(1_700_000_000)
    );
}

#[test]
fn a_thousand_services_over_ten_thousand_pods_in_one_session() {
    let mut api = server();
    for s in 0..1000u32 {
        let app = format!("app-{s}");
        api.apply(service(&format!("svc-{s}"), &[("app", &app)]), None)
            .unwrap();
        for p in 0..10u32 {
            let n = s * 10 + p;
            let mut pod = pod_with_ip(
                &format!("pod-{n}"),
                &format!("10.{}.{}.{}", 1 + n / 65536, (n / 256) % 256, n % 256),
            );
            pod.metadata_mut().labels = Some([("app".to_owned(), app.clone())].into());
            api.apply(pod, None).unwrap();
        }
    }
    let state = api.finish().state;
    let cluster_ips: std::collections::BTreeSet<_> = state
        .services()
        .map(|s| s.spec.as_ref().unwrap().cluster_ip.clone().unwrap())
        .collect();
    assert_eq!(cluster_ips.len(), 1000);
    for s in [0u32, 517, 999] {
        let endpoints = state
            .get::<k8s_openapi::api::core::v1::Endpoints>("default", &format!("svc-{s}"))
            .unwrap();
        let addresses = endpoints.subsets.as_ref().unwrap()[0]
            .addresses
            .as_ref()
            .unwrap();
        assert_eq!(addresses.len(), 10, "svc-{s}");
        let first = s * 10;
        let expected = format!(
            "10.{}.{}.{}",
            1 + first / 65536,
            (first / 256) % 256,
            first % 256
        );
        assert!(
            addresses.iter().any(|a| a.ip == expected),
            "svc-{s} lacks {expected}"
        );
    }
}
