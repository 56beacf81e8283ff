//! Service admission, part one: validation and defaulting of the spec, as the API server does
//! before it allocates anything ([`super::service_alloc`] does that).
//!
//! Defaults: type ClusterIP; per port protocol TCP and targetPort = port; sessionAffinity None
//! (ClientIP timeout 10800 s); internalTrafficPolicy Cluster; externalTrafficPolicy Cluster for
//! NodePort/LoadBalancer, or Local when the seed-era annotation
//! `service.beta.kubernetes.io/external-traffic: OnlyLocal` asks for it;
//! allocateLoadBalancerNodePorts true for LoadBalancer. IP families, policy and ClusterIPs
//! depend on the cluster's ranges: [`super::service_ips`] checks and defaults them.

use std::collections::BTreeSet;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{ClientIPConfig, Service, ServiceSpec, SessionAffinityConfig};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::net::Cidr;
use crate::validate::{self, FieldError, Validation};

/// The seed's (Kubernetes 1.5) annotation for what became `externalTrafficPolicy`.
pub const EXTERNAL_TRAFFIC_ANNOTATION: &str = "service.beta.kubernetes.io/external-traffic";

const TYPES: &[&str] = &["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];

/// Whether the type exposes node ports (NodePort and LoadBalancer).
pub fn is_external(type_: &str) -> bool {
    matches!(type_, "NodePort" | "LoadBalancer")
}

/// Validates the spec and fills in defaults. Nothing here looks at other objects.
pub fn validate_and_default(service: &mut Service) -> Validation {
    let annotation = service
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(EXTERNAL_TRAFFIC_ANNOTATION))
        .cloned();
    let spec = service.spec.get_or_insert_with(ServiceSpec::default);
    let type_ = spec
        .type_
        .get_or_insert_with(|| "ClusterIP".to_owned())
        .clone();
    validate::one_of("spec.type", &type_, TYPES)?;
    validate::labels("spec.selector", spec.selector.as_ref())?;

    if type_ == "ExternalName" {
        let name = spec.external_name.as_deref().unwrap_or_default();
        if name.is_empty() {
            return Err(FieldError::new(
                "spec.externalName",
                "required when type is ExternalName",
            ));
        }
        validate::dns1123_subdomain(name.trim_end_matches('.'))
            .map_err(|m| FieldError::new("spec.externalName", m))?;
        if spec.cluster_ip.as_deref().is_some_and(|ip| !ip.is_empty()) {
            return Err(FieldError::new(
                "spec.clusterIP",
                "may not be set when type is ExternalName",
            ));
        }
    } else if spec.external_name.is_some() {
        return Err(FieldError::new(
            "spec.externalName",
            "may only be set when type is ExternalName",
        ));
    }

    let headless = spec.cluster_ip.as_deref() == Some("None");
    if headless && type_ != "ClusterIP" {
        return Err(FieldError::new(
            "spec.clusterIP",
            format!("\"None\" (headless) is only allowed for type ClusterIP, not {type_}"),
        ));
    }
    ports(spec, &type_, headless)?;
    session_affinity(spec)?;
    traffic_policies(spec, &type_, annotation.as_deref())?;
    super::service_ips::validate_related_fields(spec, &type_)?;
    load_balancer_fields(spec, &type_)?;
    external_ips(spec)
}

fn ports(spec: &mut ServiceSpec, type_: &str, headless: bool) -> Validation {
    let ports = spec.ports.get_or_insert_with(Vec::new);
    if ports.is_empty() && !headless && type_ != "ExternalName" {
        return Err(FieldError::new(
            "spec.ports",
            "required: a Service needs at least one port (or clusterIP: None)",
        ));
    }
    let mut names = BTreeSet::new();
    let mut port_protocols = BTreeSet::new();
    let several = ports.len() > 1;
    for (i, port) in ports.iter_mut().enumerate() {
        let at = format!("spec.ports[{i}]");
        validate::port_number(&format!("{at}.port"), port.port)?;
        match port.name.as_deref().filter(|n| !n.is_empty()) {
            Some(name) => {
                validate::dns1123_label(name)
                    .map_err(|m| FieldError::new(format!("{at}.name"), m))?;
                if !names.insert(name.to_owned()) {
                    return Err(FieldError::new(
                        format!("{at}.name"),
                        format!("duplicate port name {name:?}"),
                    ));
                }
            }
            None if several => {
                return Err(FieldError::new(
                    format!("{at}.name"),
                    "required when a Service has more than one port",
                ));
            }
            None => {}
        }
        validate::normalize_protocol(&format!("{at}.protocol"), &mut port.protocol)?;
        let protocol = port.protocol.clone().unwrap_or_default();
        if !port_protocols.insert((port.port, protocol.clone())) {
            return Err(FieldError::new(
                at,
                format!("duplicate port {}/{protocol}", port.port),
            ));
        }
        let unset = matches!(&port.target_port, None | Some(IntOrString::Int(0)))
            || matches!(&port.target_port, Some(IntOrString::String(s)) if s.is_empty());
        if unset {
            port.target_port = Some(IntOrString::Int(port.port));
        }
        if let Some(target) = &port.target_port {
            validate::number_or_name(&format!("{at}.targetPort"), target)?;
        }
        if port.node_port == Some(0) {
            port.node_port = None;
        }
        if port.node_port.is_some() && !is_external(type_) {
            return Err(FieldError::new(
                format!("{at}.nodePort"),
                format!("may not be set when type is {type_}"),
            ));
        }
    }
    Ok(())
}

fn session_affinity(spec: &mut ServiceSpec) -> Validation {
    let affinity = spec
        .session_affinity
        .get_or_insert_with(|| "None".to_owned())
        .clone();
    validate::one_of("spec.sessionAffinity", &affinity, &["None", "ClientIP"])?;
    if affinity == "None" {
        if spec
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .is_some()
        {
            return Err(FieldError::new(
                "spec.sessionAffinityConfig",
                "must not be set when sessionAffinity is None",
            ));
        }
        return Ok(());
    }
    let config = spec
        .session_affinity_config
        .get_or_insert_with(SessionAffinityConfig::default);
    let client = config.client_ip.get_or_insert_with(ClientIPConfig::default);
    let timeout = *client.timeout_seconds.get_or_insert(10800);
    if !(1..=86400).contains(&timeout) {
        return Err(FieldError::new(
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
            format!("{timeout} must be between 1 and 86400 seconds"),
        ));
    }
    Ok(())
}

fn traffic_policies(spec: &mut ServiceSpec, type_: &str, annotation: Option<&str>) -> Validation {
    if type_ != "ExternalName" {
        let internal = spec
            .internal_traffic_policy
            .get_or_insert_with(|| "Cluster".to_owned());
        validate::one_of(
            "spec.internalTrafficPolicy",
            internal,
            &["Cluster", "Local"],
        )?;
    }
    let annotated = match annotation {
        None => None,
        Some("OnlyLocal") => Some("Local"),
        Some("Global") => Some("Cluster"),
        Some(other) => {
            return Err(FieldError::new(
                format!("metadata.annotations[{EXTERNAL_TRAFFIC_ANNOTATION}]"),
                format!("unsupported value {other:?}: supported values: \"OnlyLocal\", \"Global\""),
            ));
        }
    };
    if !is_external(type_) {
        if spec.external_traffic_policy.is_some() {
            return Err(FieldError::new(
                "spec.externalTrafficPolicy",
                format!("may only be set when type is NodePort or LoadBalancer, not {type_}"),
            ));
        }
        if spec.health_check_node_port.is_some() {
            return Err(FieldError::new(
                "spec.healthCheckNodePort",
                "may only be set for type LoadBalancer with externalTrafficPolicy Local",
            ));
        }
        return Ok(());
    }
    let policy = match (spec.external_traffic_policy.as_deref(), annotated) {
        (Some(field), Some(from_annotation)) if field != from_annotation => {
            return Err(FieldError::new(
                "spec.externalTrafficPolicy",
                format!(
                    "{field:?} contradicts the {EXTERNAL_TRAFFIC_ANNOTATION} annotation (which means {from_annotation:?})"
                ),
            ));
        }
        (Some(field), _) => field.to_owned(),
        (None, from_annotation) => from_annotation.unwrap_or("Cluster").to_owned(),
    };
    validate::one_of("spec.externalTrafficPolicy", &policy, &["Cluster", "Local"])?;
    let wants_health_check = type_ == "LoadBalancer" && policy == "Local";
    spec.external_traffic_policy = Some(policy);
    if spec.health_check_node_port == Some(0) {
        spec.health_check_node_port = None;
    }
    if spec.health_check_node_port.is_some() && !wants_health_check {
        return Err(FieldError::new(
            "spec.healthCheckNodePort",
            "may only be set for type LoadBalancer with externalTrafficPolicy Local",
        ));
    }
    Ok(())
}

fn load_balancer_fields(spec: &mut ServiceSpec, type_: &str) -> Validation {
    let is_lb = type_ == "LoadBalancer";
    let lb_only = [
        ("spec.loadBalancerIP", spec.load_balancer_ip.is_some()),
        ("spec.loadBalancerClass", spec.load_balancer_class.is_some()),
        (
            "spec.allocateLoadBalancerNodePorts",
            spec.allocate_load_balancer_node_ports.is_some(),
        ),
    ];
    if let Some((field, _)) = lb_only.iter().find(|(_, set)| *set && !is_lb) {
        return Err(FieldError::new(
            *field,
            format!("may only be set when type is LoadBalancer, not {type_}"),
        ));
    }
    if is_lb {
        spec.allocate_load_balancer_node_ports.get_or_insert(true);
    }
    if let Some(ip) = &spec.load_balancer_ip {
        ip.parse::<IpAddr>().map_err(|_| {
            FieldError::new(
                "spec.loadBalancerIP",
                format!("{ip:?} must be a valid IP address"),
            )
        })?;
    }
    if let Some(class) = &spec.load_balancer_class {
        validate::qualified_name(class)
            .map_err(|m| FieldError::new("spec.loadBalancerClass", m))?;
    }
    for (i, range) in spec
        .load_balancer_source_ranges
        .iter()
        .flatten()
        .enumerate()
    {
        Cidr::parse_lenient(range.trim())
            .map_err(|m| FieldError::new(format!("spec.loadBalancerSourceRanges[{i}]"), m))?;
    }
    Ok(())
}

fn external_ips(spec: &ServiceSpec) -> Validation {
    for (i, text) in spec.external_ips.iter().flatten().enumerate() {
        let field = format!("spec.externalIPs[{i}]");
        let ip: IpAddr = text
            .parse()
            .map_err(|_| FieldError::new(&field, format!("{text:?} must be a valid IP address")))?;
        let special = ip.is_unspecified()
            || ip.is_loopback()
            || ip.is_multicast()
            || matches!(ip, IpAddr::V4(v4) if v4.is_link_local())
            || matches!(ip, IpAddr::V6(v6) if v6.is_unicast_link_local());
        if special {
            return Err(FieldError::new(
                field,
                format!(
                    "{ip} may not be an unspecified, loopback, link-local or multicast address"
                ),
            ));
        }
    }
    Ok(())
}
