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
use crate::model::service::load_balancer_ips as load_balancer_ips_of;
use crate::net::{Cidr, IpFamily};
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
    super::service_ips::assign(spec, old_spec, &type_, ctx)?;
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
        let families = families_of(service.spec.as_ref());
        let ips = load_balancer_ips(requested_lb_ip.as_deref(), existing, &families, ctx)?;
        let ingress = (!ips.is_empty()).then(|| {
            ips.iter()
                .map(|ip| LoadBalancerIngress {
                    ip: Some(ip.to_string()),
                    ip_mode: Some("VIP".to_owned()),
                    ..LoadBalancerIngress::default()
                })
                .collect()
        });
        service.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus { ingress }),
            ..ServiceStatus::default()
        });
    }
    Ok(())
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

/// The Service's `ipFamilies` (defaulted by now), primary first.
fn families_of(spec: Option<&ServiceSpec>) -> Vec<IpFamily> {
    spec.and_then(|s| s.ip_families.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|f| IpFamily::parse(f))
        .collect()
}

/// The ingress IPs of a LoadBalancer Service, one per family of its `ipFamilies` that has a
/// pool, primary first: the requested `loadBalancerIP` for its family (must be a free pool
/// address), else the one it already has, else the lowest free pool address. A family whose
/// pool is exhausted gets none: the Service stays pending there, as with a cloud provider that
/// has no capacity.
fn load_balancer_ips(
    requested: Option<&str>,
    existing: Option<&Service>,
    families: &[IpFamily],
    ctx: &Allocating<'_>,
) -> Result<Vec<IpAddr>, FieldError> {
    let held = |ip: IpAddr| ctx.holdings.load_balancer_ip_held(ip, ctx.key);
    let requested = match requested {
        Some(text) => Some(text.parse::<IpAddr>().map_err(|_| {
            FieldError::new(
                "spec.loadBalancerIP",
                format!("{text:?} must be a valid IP address"),
            )
        })?),
        None => None,
    };
    if let Some(ip) = requested
        && !families.contains(&IpFamily::of(ip))
    {
        let names: Vec<&str> = families.iter().map(|f| f.as_str()).collect();
        return Err(FieldError::new(
            "spec.loadBalancerIP",
            format!(
                "{ip} is {} but the Service's ipFamilies are {names:?}",
                IpFamily::of(ip)
            ),
        ));
    }
    let mut ips = Vec::new();
    for family in families {
        let pool = ctx.settings.load_balancer_pool_of(*family);
        if let Some(ip) = requested.filter(|ip| IpFamily::of(*ip) == *family) {
            let Some(pool) = pool.filter(|p| alloc::usable_pool_ip(p, ip)) else {
                let pools: Vec<String> = ctx
                    .settings
                    .load_balancer_pools()
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                return Err(FieldError::new(
                    "spec.loadBalancerIP",
                    format!(
                        "{ip} is not an address of the LoadBalancer pool {}",
                        pools.join(", ")
                    ),
                ));
            };
            if held(ip) {
                return Err(FieldError::new(
                    "spec.loadBalancerIP",
                    format!("{ip} is already assigned to another Service (pool {pool})"),
                ));
            }
            ips.push(ip);
            continue;
        }
        let Some(pool) = pool else { continue };
        let kept = existing
            .into_iter()
            .flat_map(load_balancer_ips_of)
            .find(|ip| alloc::usable_pool_ip(&pool, *ip) && !held(*ip));
        if let Some(ip) = kept.or_else(|| alloc::pick_load_balancer_ip(&pool, held)) {
            ips.push(ip);
        }
    }
    Ok(ips)
}
