//! Admission of the topology fields: `spec.trafficDistribution` of a Service and the `hints`
//! of a user-written EndpointSlice.
//!
//! - `trafficDistribution` takes upstream's values (`PreferClose`, `PreferSameZone`,
//!   `PreferSameNode`); anything else is refused naming the field, as upstream's validation
//!   does.
//! - EndpointSlice hints: at most 8 `forZones` and 8 `forNodes`, no empty names (upstream's
//!   limits); and hints on a slice of a Service that has no `trafficDistribution` are refused
//!   (the feature is off for that Service: hints there would silently steer its traffic).
//!
//! Invariant: errors name the field (`spec.trafficDistribution`,
//! `endpoints[i].hints.forZones[j].name`, ...).

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::controllers::hints::CLOSE_DISTRIBUTIONS;
use crate::state::{ClusterState, SERVICE_NAME_LABEL};
use crate::validate::{self, FieldError, Validation};

/// Upstream's limit on `forZones` / `forNodes` entries.
const MAX_HINTS: usize = 8;

/// `spec.trafficDistribution` is unset or one of upstream's values.
pub fn admit_service(service: &Service) -> Validation {
    let distribution = service
        .spec
        .as_ref()
        .and_then(|s| s.traffic_distribution.as_deref());
    match distribution {
        None => Ok(()),
        Some(value) => validate::one_of("spec.trafficDistribution", value, &CLOSE_DISTRIBUTIONS),
    }
}

/// The hints of a user-written slice are well-formed and its Service asks for them.
pub fn admit_slice_hints(slice: &EndpointSlice, state: &ClusterState) -> Validation {
    let namespace = slice.metadata.namespace.as_deref().unwrap_or("default");
    let service_name = slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SERVICE_NAME_LABEL));
    let service = service_name.and_then(|name| state.service(namespace, name));
    for (i, endpoint) in slice.endpoints.iter().enumerate() {
        let Some(hints) = endpoint.hints.as_ref() else {
            continue;
        };
        let zones = hints.for_zones.iter().flatten().map(|z| z.name.as_str());
        let nodes = hints.for_nodes.iter().flatten().map(|n| n.name.as_str());
        for (field, names) in [
            ("forZones", zones.collect::<Vec<_>>()),
            ("forNodes", nodes.collect::<Vec<_>>()),
        ] {
            if names.len() > MAX_HINTS {
                return Err(FieldError::new(
                    format!("endpoints[{i}].hints.{field}"),
                    format!("{} entries: at most {MAX_HINTS}", names.len()),
                ));
            }
            if let Some(j) = names.iter().position(|n| n.is_empty()) {
                return Err(FieldError::new(
                    format!("endpoints[{i}].hints.{field}[{j}].name"),
                    "required",
                ));
            }
        }
        if let Some(service) = service {
            let wanted = service
                .spec
                .as_ref()
                .is_some_and(|s| s.traffic_distribution.is_some());
            if !wanted {
                return Err(FieldError::new(
                    format!("endpoints[{i}].hints"),
                    format!(
                        "Service {namespace}/{} has no spec.trafficDistribution, so topology hints are off for it (set trafficDistribution: PreferClose, or drop the hints)",
                        service_name.map_or("", String::as_str)
                    ),
                ));
            }
        }
    }
    Ok(())
}
