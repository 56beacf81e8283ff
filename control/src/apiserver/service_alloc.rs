//! Service admission, part two: what the API server assigns. ClusterIP (requested one if free
//! and in range, else allocated), node ports, the health-check node port and the LoadBalancer
//! ingress IP, each kept across updates of the same Service.
//!
//! Runs after [`super::service::validate_and_default`], so the spec's type, ports and policies
//! are already defaulted and valid.

use std::collections::BTreeSet;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, Service, ServicePort, ServiceSpec, ServiceStatus,
};

use super::alloc;
use super::holdings::Holdings;
use super::service::is_external;
use crate::model::ObjectRef;
use crate::model::service::load_balancer_ips;
use crate::net::Cidr;
use crate::settings::ClusterSettings;
use crate::validate::{FieldError, Validation};

/// What an allocation looks at: the ranges, who holds what, and which Service is asking (its
/// own holdings are not in its way).
pub struct Allocating<'a> {
    pub settings: &'a ClusterSettings,
    /// Every Service range, the default one first (`super::service_cidr::ranges`).
    pub service_cidrs: &'a [Cidr],
    pub holdings: &'a Holdings,
    pub key: &'a ObjectRef,
}

/// Assigns ClusterIP, node ports, health-check node port and LoadBalancer ingress.
pub fn allocate(
    service: &mut Service,
    existing: Option<&Service>,
    ctx: &Allocating<'_>,
) -> Validation {
    let old_spec = existing.and_then(|s| s.spec.as_ref());
    let Some(spec) = service.spec.as_mut() else {
        return Ok(());
    };
    let type_ = spec.type_.clone().unwrap_or_default();
    cluster_ip(spec, old_spec, &type_, ctx)?;
    let own_ports = node_ports(spec, old_spec, &type_, ctx)?;
    health_check_node_port(spec, old_spec, &type_, &own_ports, ctx)?;

    let requested_lb_ip = spec.load_balancer_ip.clone();
    let has_class = spec.load_balancer_class.is_some();
    if type_ != "LoadBalancer" {
        service.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus::default()),
            ..ServiceStatus::default()
        });
    } else if has_class {
        // Another load-balancer controller owns this Service's ingress: keep what it reported.
        if service.status.is_none() {
            service.status = existing.and_then(|s| s.status.clone());
        }
    } else {
        let ingress = load_balancer_ip(requested_lb_ip.as_deref(), existing, ctx)?;
        let ingress = ingress.map(|ip| {
            vec![LoadBalancerIngress {
                ip: Some(ip.to_string()),
                ip_mode: Some("VIP".to_owned()),
                ..LoadBalancerIngress::default()
            }]
        });
        service.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus { ingress }),
            ..ServiceStatus::default()
        });
    }
    Ok(())
}

fn cluster_ip(
    spec: &mut ServiceSpec,
    old_spec: Option<&ServiceSpec>,
    type_: &str,
    ctx: &Allocating<'_>,
) -> Validation {
    if type_ == "ExternalName" {
        spec.cluster_ip = None;
        spec.cluster_ips = None;
        return Ok(());
    }
    let old_ip = old_spec
        .filter(|old| old.type_.as_deref() != Some("ExternalName"))
        .and_then(|old| old.cluster_ip.clone())
        .filter(|ip| !ip.is_empty());
    let ip = match (spec.cluster_ip.clone().filter(|ip| !ip.is_empty()), old_ip) {
        (Some(new), Some(old)) if new != old => {
            return Err(FieldError::new(
                "spec.clusterIP",
                format!("field is immutable: {old:?} cannot change to {new:?}"),
            ));
        }
        (Some(new), _) if new == "None" => new,
        (Some(new), Some(_)) => new,
        (Some(new), None) => check_requested_cluster_ip(&new, ctx)?,
        (None, Some(old)) => old,
        (None, None) => {
            let dns = ctx.settings.cluster_dns_ip;
            let taken = |ip| ctx.holdings.cluster_ip_holder(ip, ctx.key).is_some();
            ctx.service_cidrs
                .iter()
                .find_map(|cidr| alloc::pick_cluster_ip(cidr, dns, taken))
                .ok_or_else(|| {
                    FieldError::new(
                        "spec.clusterIP",
                        format!(
                            "no free IP left in the service CIDRs {}",
                            list(ctx.service_cidrs)
                        ),
                    )
                })?
                .to_string()
        }
    };
    spec.cluster_ips = Some(vec![ip.clone()]);
    spec.cluster_ip = Some(ip);
    Ok(())
}

fn list(cidrs: &[Cidr]) -> String {
    let names: Vec<String> = cidrs.iter().map(ToString::to_string).collect();
    names.join(", ")
}

fn check_requested_cluster_ip(text: &str, ctx: &Allocating<'_>) -> Result<String, FieldError> {
    let ip: IpAddr = text.parse().map_err(|_| {
        FieldError::new(
            "spec.clusterIP",
            format!("{text:?} must be a valid IP address or \"None\""),
        )
    })?;
    if !ctx
        .service_cidrs
        .iter()
        .any(|cidr| alloc::usable_cluster_ip(cidr, ip))
    {
        return Err(FieldError::new(
            "spec.clusterIP",
            format!(
                "{ip} is not in the valid range: the service CIDRs are {} (network and broadcast addresses excluded)",
                list(ctx.service_cidrs)
            ),
        ));
    }
    if let Some(holder) = ctx.holdings.cluster_ip_holder(ip, ctx.key) {
        return Err(FieldError::new(
            "spec.clusterIP",
            format!(
                "{ip} is already allocated to Service {}",
                holder.qualified_name()
            ),
        ));
    }
    Ok(ip.to_string())
}

/// Node ports of NodePort and LoadBalancer Services: requested ones checked, the rest kept from
/// the stored Service (matched by port and protocol) or allocated. Returns the numbers used.
fn node_ports(
    spec: &mut ServiceSpec,
    old_spec: Option<&ServiceSpec>,
    type_: &str,
    ctx: &Allocating<'_>,
) -> Result<BTreeSet<i32>, FieldError> {
    let old_ports: Vec<ServicePort> = old_spec
        .filter(|old| is_external(old.type_.as_deref().unwrap_or_default()))
        .and_then(|old| old.ports.clone())
        .unwrap_or_default();
    let allocate = is_external(type_) && spec.allocate_load_balancer_node_ports != Some(false);
    let range = ctx.settings.node_port_range;
    let mut numbers = BTreeSet::new();
    let mut pairs: BTreeSet<(i32, String)> = BTreeSet::new();
    for (i, port) in spec.ports.iter_mut().flatten().enumerate() {
        let protocol = port.protocol.clone().unwrap_or_default();
        let kept = old_ports
            .iter()
            .find(|old| old.port == port.port && old.protocol.as_deref() == Some(protocol.as_str()))
            .and_then(|old| old.node_port);
        let field = format!("spec.ports[{i}].nodePort");
        let chosen = match port.node_port {
            Some(requested) => {
                check_requested_node_port(&field, requested, ctx, &BTreeSet::new())?;
                Some(requested)
            }
            None if allocate => match kept {
                Some(old) => Some(old),
                None => Some(
                    alloc::pick_node_port(range, |p| {
                        numbers.contains(&p) || ctx.holdings.node_port_held(p, ctx.key)
                    })
                    .ok_or_else(|| {
                        FieldError::new(&field, format!("no free node port left in {range}"))
                    })?,
                ),
            },
            None => None,
        };
        if let Some(number) = chosen {
            if !pairs.insert((number, protocol.clone())) {
                return Err(FieldError::new(
                    field,
                    format!("{number}/{protocol} is used twice in this Service"),
                ));
            }
            numbers.insert(number);
        }
        port.node_port = chosen;
    }
    Ok(numbers)
}

fn health_check_node_port(
    spec: &mut ServiceSpec,
    old_spec: Option<&ServiceSpec>,
    type_: &str,
    own_ports: &BTreeSet<i32>,
    ctx: &Allocating<'_>,
) -> Validation {
    if type_ != "LoadBalancer" || spec.external_traffic_policy.as_deref() != Some("Local") {
        return Ok(());
    }
    let field = "spec.healthCheckNodePort";
    let taken = |p: i32| own_ports.contains(&p) || ctx.holdings.node_port_held(p, ctx.key);
    let kept = old_spec
        .and_then(|old| old.health_check_node_port)
        .filter(|p| !own_ports.contains(p));
    let port = match spec.health_check_node_port {
        Some(requested) => {
            check_requested_node_port(field, requested, ctx, own_ports)?;
            requested
        }
        None => match kept {
            Some(old) => old,
            None => {
                let range = ctx.settings.node_port_range;
                alloc::pick_node_port(range, taken).ok_or_else(|| {
                    FieldError::new(field, format!("no free node port left in {range}"))
                })?
            }
        },
    };
    spec.health_check_node_port = Some(port);
    Ok(())
}

fn check_requested_node_port(
    field: &str,
    port: i32,
    ctx: &Allocating<'_>,
    own: &BTreeSet<i32>,
) -> Validation {
    let range = ctx.settings.node_port_range;
    if !range.contains(port) {
        return Err(FieldError::new(
            field,
            format!("{port} is not in the valid node port range {range}"),
        ));
    }
    if own.contains(&port) || ctx.holdings.node_port_held(port, ctx.key) {
        return Err(FieldError::new(
            field,
            format!("{port} is already allocated"),
        ));
    }
    Ok(())
}

/// The ingress IP of a LoadBalancer Service: the requested `loadBalancerIP` (must be a free pool
/// address), else the one it already has, else the lowest free pool address. `None` when the
/// pool is exhausted: the Service stays pending, as with a cloud provider that has no capacity.
fn load_balancer_ip(
    requested: Option<&str>,
    existing: Option<&Service>,
    ctx: &Allocating<'_>,
) -> Result<Option<IpAddr>, FieldError> {
    let pool = ctx.settings.load_balancer_pool;
    let held = |ip: IpAddr| ctx.holdings.load_balancer_ip_held(ip, ctx.key);
    if let Some(text) = requested {
        let ip: IpAddr = text.parse().map_err(|_| {
            FieldError::new(
                "spec.loadBalancerIP",
                format!("{text:?} must be a valid IP address"),
            )
        })?;
        if !alloc::usable_pool_ip(&pool, ip) {
            return Err(FieldError::new(
                "spec.loadBalancerIP",
                format!("{ip} is not an address of the LoadBalancer pool {pool}"),
            ));
        }
        if held(ip) {
            return Err(FieldError::new(
                "spec.loadBalancerIP",
                format!("{ip} is already assigned to another Service"),
            ));
        }
        return Ok(Some(ip));
    }
    let kept = existing
        .into_iter()
        .flat_map(load_balancer_ips)
        .find(|ip| alloc::usable_pool_ip(&pool, *ip) && !held(*ip));
    Ok(kept.or_else(|| alloc::pick_load_balancer_ip(&pool, held)))
}
