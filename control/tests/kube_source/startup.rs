//! Connecting and the initial lists: what a ready source holds, readiness only after every
//! kind is listed, kubeconfig contexts and configuration errors.

use std::collections::BTreeSet;

use control::kube_source::{KubeSource, KubeSourceConfig, KubeSourceError, WATCHED_KINDS};
use control::model::Kind;
use control::model::node::vtep;
use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::server::{NETWORK_POLICIES, RecordedApi};
use super::{Fixture, recorded_dir, recorded_names, settings, state_names, wait_until};

#[test]
fn a_ready_source_holds_every_recorded_object() {
    let fixture = Fixture::start();
    let state = fixture.source.snapshot();
    for (kind, file) in [
        (Kind::Namespace, "namespaces.json"),
        (Kind::Node, "nodes.json"),
        (Kind::Pod, "pods.json"),
        (Kind::Service, "services.json"),
        (Kind::EndpointSlice, "endpointslices.json"),
        (Kind::NetworkPolicy, "networkpolicies.json"),
    ] {
        assert_eq!(state_names(&state, kind), recorded_names(file), "{kind}");
    }
    assert_eq!(state.settings(), &settings());
    // One completed list per kind, at least.
    assert!(state.generation() >= WATCHED_KINDS.len() as u64);

    let service = state.service("default", "store-be").unwrap();
    let spec = service.spec.as_ref().unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.9.3.76"));
    let port = &spec.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.port, &port.target_port),
        (Some("http"), 80, &Some(IntOrString::Int(80)))
    );

    // The slice carries the addresses of the seed's Endpoints slide.
    let seed: Endpoints = serde_saphyr::from_str(
        &std::fs::read_to_string(recorded_dir().join("../seed/endpoints-store-be.yaml")).unwrap(),
    )
    .unwrap();
    let seed_ips: BTreeSet<String> = seed.subsets.unwrap()[0]
        .addresses
        .iter()
        .flatten()
        .map(|a| a.ip.clone())
        .collect();
    let slices: Vec<_> = state.endpoint_slices_of("default", "store-be").collect();
    assert_eq!(slices.len(), 1);
    let slice_ips: BTreeSet<String> = slices[0]
        .endpoints
        .iter()
        .flat_map(|e| e.addresses.iter().cloned())
        .collect();
    assert_eq!(slice_ips, seed_ips);

    let policy = state
        .get::<k8s_openapi::api::networking::v1::NetworkPolicy>("default", "store-net-policy")
        .unwrap();
    let rule = &policy.spec.as_ref().unwrap().ingress.as_ref().unwrap()[0];
    assert_eq!(
        rule.ports.as_ref().unwrap()[0].port,
        Some(IntOrString::Int(6379))
    );
    assert!(state.default_deny_ingress("store-namespace"));
    assert!(!state.default_deny_ingress("default"));

    // Node annotations arrive intact: node-a's VTEP is its underlay IP.
    let node_a = vtep(state.node("node-a").unwrap()).unwrap();
    assert_eq!(node_a.node_ip.to_string(), "192.168.10.11");
    assert_eq!(node_a.pod_cidr.to_string(), "10.11.8.0/24");

    // managedFields (recorded on store-be and store-be-1) are not kept.
    for object in state
        .objects_of(Kind::Service)
        .chain(state.objects_of(Kind::Pod))
    {
        let fields = &object.metadata().managed_fields;
        assert!(fields.as_ref().is_none_or(Vec::is_empty), "{object:?}");
    }

    // Endpoints are neither read nor asked for: EndpointSlices are the source of truth.
    assert_eq!(state.endpoints().count(), 0);
    let requests = fixture.api.requests();
    assert!(
        requests.iter().all(|r| !r.path.ends_with("/endpoints")),
        "{requests:?}"
    );
}

#[test]
fn not_ready_until_every_kind_is_listed() {
    let fixture = Fixture::connect_with(|api| api.hold_lists(NETWORK_POLICIES));
    wait_until("five kinds listed", || {
        fixture.source.status().listed.len() == WATCHED_KINDS.len() - 1
    });
    assert!(!fixture.source.is_ready());
    assert!(
        !fixture
            .source
            .status()
            .listed
            .contains(&Kind::NetworkPolicy)
    );
    assert_eq!(fixture.source.snapshot().network_policies().count(), 0);

    fixture.api.release_lists(NETWORK_POLICIES);
    wait_until("ready", || fixture.source.is_ready());
    assert_eq!(
        state_names(&fixture.source.snapshot(), Kind::NetworkPolicy),
        recorded_names("networkpolicies.json")
    );
}

#[test]
fn the_named_context_is_used_instead_of_the_current_one() {
    let api = RecordedApi::start(&recorded_dir());
    let dir = tempfile::tempdir().unwrap();
    // The current context points at a port nothing listens on.
    let kubeconfig = super::write_kubeconfig(
        dir.path(),
        &[("stale", "http://127.0.0.1:1"), ("recorded", &api.url())],
    );
    let config = |context: Option<&str>| KubeSourceConfig {
        kubeconfig: Some(kubeconfig.clone()),
        context: context.map(str::to_owned),
    };

    let source = KubeSource::connect(config(Some("recorded")), settings()).unwrap();
    wait_until("ready", || source.is_ready());
    drop(source);

    let stale = KubeSource::connect(config(None), settings()).unwrap();
    wait_until("a watch error", || stale.status().watch_errors > 0);
    assert!(!stale.is_ready());
    assert!(stale.status().last_error.is_some());
    drop(stale);

    let missing = KubeSource::connect(config(Some("nonexistent")), settings());
    assert!(
        matches!(missing, Err(KubeSourceError::Kubeconfig(_))),
        "{missing:?}"
    );
}

#[test]
fn configuration_errors_fail_connect() {
    let path = recorded_dir().join("no-such-kubeconfig");
    let error = KubeSource::connect(
        KubeSourceConfig {
            kubeconfig: Some(path.clone()),
            context: None,
        },
        settings(),
    )
    .unwrap_err();
    assert!(matches!(error, KubeSourceError::Kubeconfig(_)));
    assert!(error.to_string().contains("no-such-kubeconfig"), "{error}");

    let mut bad = settings();
    bad.vxlan_vni = 0;
    let error = KubeSource::connect(KubeSourceConfig::default(), bad).unwrap_err();
    assert!(matches!(error, KubeSourceError::Settings(_)), "{error}");
}
