//! The endpoints controllers: for each Service with a selector, the pods it selects become its
//! Endpoints ([`endpoints`]) and EndpointSlices ([`slices`]) — "when you create a service, a
//! controller wakes up".
//!
//! They run inside the transaction that changed a Service or a Pod, so the stored state is
//! always consistent. They are level-triggered: [`reconcile_service`] computes the whole desired
//! set for a Service from the current state, so running it again is harmless and repairs
//! anything a crash left half-written.

pub mod endpoints;
pub mod hints;
pub mod index;
pub mod slices;

use std::collections::HashMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::model::{Kind, Object, ObjectRef, StoredKind, pod};
use crate::net::IpFamily;
use crate::state::ClusterState;
pub use index::Index;

/// Label naming who manages an EndpointSlice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// Its value on slices this controller writes (the Kubernetes controller's own value).
pub const MANAGED_BY_CONTROLLER: &str = "endpointslice-controller.k8s.io";
/// Label on the Endpoints and slices of a headless Service.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// Whether the endpoints controllers manage this Service's endpoints: it has a non-empty
/// selector and is not an ExternalName.
pub fn service_selects_pods(service: &Service) -> bool {
    service.spec.as_ref().is_some_and(|spec| {
        spec.type_.as_deref() != Some("ExternalName")
            && spec.selector.as_ref().is_some_and(|s| !s.is_empty())
    })
}

/// One port of a Service as resolved for one pod.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResolvedPort {
    pub name: Option<String>,
    pub port: i32,
    pub protocol: String,
    pub app_protocol: Option<String>,
}

/// A pod selected by a Service, with what the controllers need to know about it.
pub struct Backend<'a> {
    pub pod: &'a Pod,
    /// The pod's primary IP (`status.podIP`).
    pub ip: IpAddr,
    /// Every IP of the pod, primary first (one per family on a dual-stack pod).
    pub ips: Vec<IpAddr>,
    pub ready: bool,
    pub terminating: bool,
    /// The Service's ports this pod serves: a named targetPort the pod does not have is
    /// left out.
    pub ports: Vec<ResolvedPort>,
}

impl Backend<'_> {
    /// The pod's IP of `family`, if it has one.
    pub fn ip_of(&self, family: IpFamily) -> Option<IpAddr> {
        self.ips
            .iter()
            .copied()
            .find(|ip| IpFamily::of(*ip) == family)
    }

    /// The IP the legacy Endpoints object lists for this pod: the one of the Service's primary
    /// family (upstream's endpoints controller), or the pod's primary IP when the Service names
    /// no family.
    pub fn endpoints_ip(&self, service: &Service) -> Option<IpAddr> {
        match crate::model::service::ip_families(service) {
            Some(families) => self.ip_of(families[0]),
            None => Some(self.ip),
        }
    }
}

/// The pods a Service selects that have an IP and are not finished, sorted by IP then name.
pub fn backends<'a>(index: &Index<'a>, service: &Service) -> Vec<Backend<'a>> {
    let Some(spec) = service.spec.as_ref() else {
        return Vec::new();
    };
    let Some(selector) = spec.selector.as_ref() else {
        return Vec::new();
    };
    let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
    let mut found: Vec<Backend<'a>> = index
        .selected_pods(namespace, selector)
        .filter(|p| !pod::is_terminal(p))
        .filter_map(|p| {
            let ips = pod::pod_ips(p);
            let ip = *ips.first()?;
            let ports = spec
                .ports
                .iter()
                .flatten()
                .filter_map(|port| {
                    let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".to_owned());
                    let number = match &port.target_port {
                        None => port.port,
                        Some(IntOrString::Int(n)) => *n,
                        Some(IntOrString::String(name)) => {
                            pod::named_container_port(p, name, &protocol)?
                        }
                    };
                    Some(ResolvedPort {
                        name: port.name.clone(),
                        port: number,
                        protocol,
                        app_protocol: port.app_protocol.clone(),
                    })
                })
                .collect();
            Some(Backend {
                pod: p,
                ip,
                ips,
                ready: pod::is_ready(p),
                terminating: pod::is_terminating(p),
                ports,
            })
        })
        .collect();
    found.sort_by(|a, b| (a.ip, &a.pod.metadata.name).cmp(&(b.ip, &b.pod.metadata.name)));
    found
}

/// Whether a pod with these resolved ports belongs in the Service's endpoints: a Service
/// without ports (headless) takes every pod; otherwise the pod must serve at least one port.
pub fn serves_something(service: &Service, ports: &[ResolvedPort]) -> bool {
    !ports.is_empty()
        || service
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .is_none_or(Vec::is_empty)
}

/// The Node label carrying a node's zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// Zones of the nodes, by node name.
pub fn node_zones(state: &ClusterState) -> HashMap<String, String> {
    state
        .nodes()
        .filter_map(|n| {
            let zone = n.metadata.labels.as_ref()?.get(ZONE_LABEL)?;
            Some((n.metadata.name.clone()?, zone.clone()))
        })
        .collect()
}

/// What should change for one Service's derived objects.
pub struct Reconciled {
    /// Objects that must exist with this content (metadata identity fields are filled in by
    /// the writer).
    pub desired: Vec<Object>,
    /// Objects that must no longer exist.
    pub obsolete: Vec<ObjectRef>,
}

/// The desired Endpoints and EndpointSlices of the Service `key`, and which existing derived
/// objects must go. A Service that is gone loses its Endpoints and managed slices; one without
/// a selector keeps user-written Endpoints but loses managed slices.
pub fn reconcile_service(state: &ClusterState, index: &Index<'_>, key: &ObjectRef) -> Reconciled {
    let service = state.service(&key.namespace, &key.name);
    let managed_slices = index.managed_slices(&key.namespace, &key.name);
    let endpoints_key = ObjectRef::new(Kind::Endpoints, &key.namespace, &key.name);
    let Some(service) = service.filter(|s| service_selects_pods(s)) else {
        let mut obsolete = managed_slices;
        if service.is_none() && state.object(&endpoints_key).is_some() {
            obsolete.push(endpoints_key);
        }
        return Reconciled {
            desired: Vec::new(),
            obsolete,
        };
    };
    let found = backends(index, service);
    let taken_names = index.foreign_slice_names(&key.namespace);
    let new_slices = slices::desired(service, &found, index.zones(), &taken_names);
    let keep: Vec<ObjectRef> = new_slices
        .iter()
        .map(|s| s.clone().into_object().object_ref())
        .collect();
    let obsolete = managed_slices
        .into_iter()
        .filter(|r| !keep.contains(r))
        .collect();
    let mut desired = vec![endpoints::desired(service, &found).into_object()];
    desired.extend(new_slices.into_iter().map(StoredKind::into_object));
    Reconciled { desired, obsolete }
}
