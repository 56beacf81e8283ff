//! Admission of Endpoints and EndpointSlices written by users, which Kubernetes allows for
//! Services without a selector. Objects the endpoints controller owns (the Endpoints of a
//! Service that has a selector, and slices labelled as managed by the controller) are refused:
//! the controller would overwrite them in the same transaction.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::controllers::{MANAGED_BY_CONTROLLER, MANAGED_BY_LABEL, service_selects_pods};
use crate::state::ClusterState;
use crate::validate::{self, FieldError, Validation};

fn ip(field: &str, text: &str) -> Validation {
    text.parse::<IpAddr>()
        .map(drop)
        .map_err(|_| FieldError::new(field, format!("{text:?} must be a valid IP address")))
}

pub fn admit_endpoints(endpoints: &mut Endpoints, state: &ClusterState) -> Validation {
    let namespace = endpoints.metadata.namespace.clone().unwrap_or_default();
    let name = endpoints.metadata.name.clone().unwrap_or_default();
    if state
        .service(&namespace, &name)
        .is_some_and(service_selects_pods)
    {
        return Err(FieldError::new(
            "metadata.name",
            format!(
                "Service {namespace}/{name} has a selector: its Endpoints are managed by the endpoints controller"
            ),
        ));
    }
    for (i, subset) in endpoints.subsets.iter_mut().flatten().enumerate() {
        let at = format!("subsets[{i}]");
        for (list, addresses) in [
            ("addresses", &subset.addresses),
            ("notReadyAddresses", &subset.not_ready_addresses),
        ] {
            for (j, address) in addresses.iter().flatten().enumerate() {
                ip(&format!("{at}.{list}[{j}].ip"), &address.ip)?;
            }
        }
        for (j, port) in subset.ports.iter_mut().flatten().enumerate() {
            validate::port_number(&format!("{at}.ports[{j}].port"), port.port)?;
            validate::normalize_protocol(&format!("{at}.ports[{j}].protocol"), &mut port.protocol)?;
        }
    }
    Ok(())
}

pub fn admit_endpoint_slice(slice: &mut EndpointSlice) -> Validation {
    let managed = slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL));
    if managed.is_some_and(|m| m == MANAGED_BY_CONTROLLER) {
        return Err(FieldError::new(
            format!("metadata.labels[{MANAGED_BY_LABEL}]"),
            format!(
                "{MANAGED_BY_CONTROLLER:?} is reserved for slices the endpoints controller writes"
            ),
        ));
    }
    validate::one_of(
        "addressType",
        &slice.address_type,
        &["IPv4", "IPv6", "FQDN"],
    )?;
    for (i, endpoint) in slice.endpoints.iter().enumerate() {
        if endpoint.addresses.is_empty() {
            return Err(FieldError::new(
                format!("endpoints[{i}].addresses"),
                "required: at least one address",
            ));
        }
        if slice.address_type != "FQDN" {
            for (j, address) in endpoint.addresses.iter().enumerate() {
                ip(&format!("endpoints[{i}].addresses[{j}]"), address)?;
            }
        }
    }
    for (i, port) in slice.ports.iter_mut().flatten().enumerate() {
        if let Some(number) = port.port {
            validate::port_number(&format!("ports[{i}].port"), number)?;
        }
        validate::normalize_protocol(&format!("ports[{i}].protocol"), &mut port.protocol)?;
    }
    Ok(())
}
