//! A Service's IP families and ClusterIPs, as the upstream API server validates, defaults and
//! allocates them (`ValidateServiceClusterIPsRelatedFields`, the registry's
//! `initIPFamilyFields` and `allocClusterIPs`, the upgrade/downgrade checks of
//! `ValidateServiceUpdate`):
//!
//! - `ipFamilyPolicy` absent: the stored Service's on update, `RequireDualStack` for a headless
//!   Service without selector, else `SingleStack`.
//! - `ipFamilies` absent: inferred from `clusterIPs`, else the cluster's primary family; a
//!   `PreferDualStack` or `RequireDualStack` Service in a dual-stack cluster gets the other
//!   family appended. `RequireDualStack` in a single-stack cluster, or a family the cluster has
//!   no Service range of, is refused with the upstream's text. A headless Service without
//!   selector may list both families in any cluster (it gets no ClusterIP).
//! - `clusterIPs`: one per family, in the order of `ipFamilies` (primary first); a requested
//!   one must be free and inside a Service range of its family, the rest come from the ranges
//!   of their family. `clusterIP` is always `clusterIPs[0]`.
//! - Update: ClusterIPs and families may not change once set; adding the secondary is an
//!   upgrade, dropping it needs `ipFamilyPolicy: SingleStack` (which drops it by itself when
//!   the rest is unchanged). A re-applied manifest without `clusterIP(s)`/`ipFamilies` keeps
//!   the stored values (what `kubectl apply` leaves in place).
//!
//! Errors name the field and read like upstream's: `spec.ipFamilies[0]: Invalid value:
//! "IPv6": not configured on this cluster`. Upstream reports every error at once; here the
//! first one found is reported.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::ServiceSpec;

use super::alloc;
use super::service_alloc::Allocating;
use crate::net::{Cidr, IpFamily};
use crate::validate::{self, FieldError, Validation};

const SINGLE: &str = "SingleStack";
const PREFER: &str = "PreferDualStack";
const REQUIRE: &str = "RequireDualStack";
const NONE: &str = "None";

/// `Invalid value: VALUE: DETAIL`, upstream's `field.Invalid` shape.
fn invalid(field: impl Into<String>, value: impl std::fmt::Debug, detail: &str) -> FieldError {
    FieldError::new(field, format!("Invalid value: {value:?}: {detail}"))
}

fn non_empty(list: &Option<Vec<String>>) -> &[String] {
    list.as_deref().unwrap_or_default()
}

fn text(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or_default()
}

fn is_headless(spec: &ServiceSpec) -> bool {
    non_empty(&spec.cluster_ips) == [NONE] || text(&spec.cluster_ip) == NONE
}

/// The checks that need nothing but the spec (upstream's
/// `ValidateServiceClusterIPsRelatedFields` plus the ExternalName rules). Runs on what the
/// user wrote and again after the stored values were carried over.
pub fn validate_related_fields(spec: &ServiceSpec, type_: &str) -> Validation {
    if type_ == "ExternalName" {
        if !non_empty(&spec.ip_families).is_empty() {
            return Err(FieldError::new(
                "spec.ipFamilies",
                "Forbidden: may not be set for ExternalName services",
            ));
        }
        if spec.ip_family_policy.is_some() {
            return Err(FieldError::new(
                "spec.ipFamilyPolicy",
                "Forbidden: may not be set for ExternalName services",
            ));
        }
        return Ok(());
    }
    let ips = non_empty(&spec.cluster_ips);
    let single = text(&spec.cluster_ip);
    if !single.is_empty() && !ips.is_empty() && ips[0] != single {
        return Err(invalid(
            "spec.clusterIPs",
            ips,
            "first value must match `clusterIP`",
        ));
    }
    let families = non_empty(&spec.ip_families);
    for (i, family) in families.iter().enumerate() {
        let field = format!("spec.ipFamilies[{i}]");
        validate::one_of(&field, family, &["IPv4", "IPv6"])?;
        if families[..i].contains(family) {
            return Err(FieldError::new(
                field,
                format!("Duplicate value: {family:?}"),
            ));
        }
    }
    if let Some(policy) = &spec.ip_family_policy {
        validate::one_of("spec.ipFamilyPolicy", policy, &[PREFER, REQUIRE, SINGLE])?;
    }
    let mut parsed = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        if ip == NONE {
            if i == 0 && ips.len() == 1 {
                continue;
            }
            return Err(invalid(
                "spec.clusterIPs",
                ips,
                "'None' must be the first and only value",
            ));
        }
        let addr: IpAddr = ip.parse().map_err(|_| {
            invalid(
                format!("spec.clusterIPs[{i}]"),
                ip,
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            )
        })?;
        parsed.push(addr);
    }
    if ips.len() > 2 {
        return Err(invalid(
            "spec.clusterIPs",
            ips,
            "may only hold up to 2 values",
        ));
    }
    if let [a, b] = parsed.as_slice()
        && a.is_ipv4() == b.is_ipv4()
    {
        return Err(invalid(
            "spec.clusterIPs",
            ips,
            "may specify no more than one IP for each IP family",
        ));
    }
    if !is_headless(spec) {
        for (i, (ip, family)) in parsed.iter().zip(families).enumerate() {
            let expected = IpFamily::parse(family);
            if expected.is_some_and(|f| f != IpFamily::of(*ip)) {
                return Err(invalid(
                    format!("spec.clusterIPs[{i}]"),
                    ip.to_string(),
                    &format!("expected an {family} value as indicated by `ipFamilies[{i}]`"),
                ));
            }
        }
    }
    Ok(())
}

/// The families that have a Service range in this cluster, primary first.
pub fn cluster_families(ranges: &[Cidr]) -> Vec<IpFamily> {
    let mut families = Vec::new();
    for family in ranges.iter().map(IpFamily::of_cidr) {
        if !families.contains(&family) {
            families.push(family);
        }
    }
    families
}

/// Defaults and checks policy, families and ClusterIPs, then allocates the missing ClusterIPs
/// (see the module doc). `old` is the stored spec on update.
pub fn assign(
    spec: &mut ServiceSpec,
    old: Option<&ServiceSpec>,
    type_: &str,
    ctx: &Allocating<'_>,
) -> Validation {
    if type_ == "ExternalName" {
        spec.cluster_ip = None;
        spec.cluster_ips = None;
        spec.ip_families = None;
        spec.ip_family_policy = None;
        return Ok(());
    }
    let old = old.filter(|o| o.type_.as_deref() != Some("ExternalName"));
    carry_over(spec, old);
    if let Some(old) = old {
        check_primary_unchanged(spec, old)?;
    }
    validate_related_fields(spec, type_)?;
    let cluster = cluster_families(ctx.service_cidrs);
    init_families(spec, old, &cluster)?;
    if let Some(old) = old {
        check_update(spec, old)?;
    }
    allocate(spec, old, ctx)
}

/// What `kubectl apply` would leave in place: the stored ClusterIPs and families when the
/// manifest does not name them, and the stored policy.
fn carry_over(spec: &mut ServiceSpec, old: Option<&ServiceSpec>) {
    if let Some(old) = old {
        if text(&spec.cluster_ip).is_empty() && non_empty(&spec.cluster_ips).is_empty() {
            spec.cluster_ip = old.cluster_ip.clone();
        }
        if non_empty(&spec.cluster_ips).is_empty() && spec.cluster_ip == old.cluster_ip {
            spec.cluster_ips = old.cluster_ips.clone();
        }
        if non_empty(&spec.ip_families).is_empty() && spec.cluster_ips == old.cluster_ips {
            spec.ip_families = old.ip_families.clone();
        }
        if spec.ip_family_policy.is_none() {
            spec.ip_family_policy = old.ip_family_policy.clone();
        }
    }
    let single = text(&spec.cluster_ip).to_owned();
    if !single.is_empty() && non_empty(&spec.cluster_ips).is_empty() {
        spec.cluster_ips = Some(vec![single]);
    } else if single.is_empty()
        && let Some(first) = non_empty(&spec.cluster_ips).first()
    {
        spec.cluster_ip = Some(first.clone());
    }
}

fn selectorless(spec: &ServiceSpec) -> bool {
    spec.selector.as_ref().is_none_or(|s| s.is_empty())
}

/// Upstream's `initIPFamilyFields`.
fn init_families(
    spec: &mut ServiceSpec,
    old: Option<&ServiceSpec>,
    cluster: &[IpFamily],
) -> Validation {
    let headless_selectorless = is_headless(spec) && selectorless(spec);
    let policy = spec
        .ip_family_policy
        .get_or_insert_with(|| {
            if headless_selectorless {
                REQUIRE.to_owned()
            } else {
                SINGLE.to_owned()
            }
        })
        .clone();
    let unchanged_prefer = old.is_some_and(|old| {
        policy == PREFER
            && old.ip_family_policy.as_deref() == Some(PREFER)
            && old.cluster_ips == spec.cluster_ips
            && old.ip_families == spec.ip_families
    });
    if unchanged_prefer {
        return Ok(());
    }
    let mut families: Vec<IpFamily> = non_empty(&spec.ip_families)
        .iter()
        .filter_map(|f| IpFamily::parse(f))
        .collect();
    let mut ips = non_empty(&spec.cluster_ips).to_vec();
    if let Some(old) = old {
        let same_ips = old.cluster_ips == spec.cluster_ips;
        let same_families = old.ip_families == spec.ip_families;
        if policy == SINGLE {
            if same_ips && ips.len() > 1 {
                ips.truncate(1);
            }
            if same_families && families.len() > 1 {
                families.truncate(1);
            }
        } else {
            if !ips.is_empty() && ips.len() < non_empty(&old.cluster_ips).len() {
                return Err(invalid(
                    "spec.ipFamilyPolicy",
                    &policy,
                    "must be 'SingleStack' to release the secondary cluster IP",
                ));
            }
            if !families.is_empty() && families.len() < non_empty(&old.ip_families).len() {
                return Err(invalid(
                    "spec.ipFamilyPolicy",
                    &policy,
                    "must be 'SingleStack' to release the secondary IP family",
                ));
            }
        }
    }
    if policy == SINGLE {
        if ips.len() == 2 {
            return Err(invalid(
                "spec.ipFamilyPolicy",
                &policy,
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified",
            ));
        }
        if families.len() == 2 {
            return Err(invalid(
                "spec.ipFamilyPolicy",
                &policy,
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified",
            ));
        }
    }
    for (i, ip) in ips.iter().enumerate() {
        if ip == NONE {
            break;
        }
        let Ok(addr) = ip.parse::<IpAddr>() else {
            break;
        };
        let family = IpFamily::of(addr);
        if i >= families.len() {
            if !cluster.contains(&family) {
                return Err(invalid(
                    format!("spec.clusterIPs[{i}]"),
                    &ips,
                    &format!("{family} is not configured on this cluster"),
                ));
            }
            families.push(family);
        }
    }
    let primary = cluster.first().copied().unwrap_or(IpFamily::IPv4);
    let finish = |spec: &mut ServiceSpec, families: Vec<IpFamily>, ips: Vec<String>| {
        spec.ip_families = Some(families.iter().map(|f| f.as_str().to_owned()).collect());
        spec.cluster_ips = (!ips.is_empty()).then_some(ips);
    };
    if headless_selectorless {
        if families.is_empty() {
            families.push(primary);
        }
        if families.len() < 2 && policy != SINGLE {
            families.push(families[0].other());
        }
        finish(spec, families, ips);
        return Ok(());
    }
    if policy == REQUIRE && cluster.len() < 2 {
        return Err(invalid(
            "spec.ipFamilyPolicy",
            &policy,
            "this cluster is not configured for dual-stack services",
        ));
    }
    if let Some((i, family)) = families
        .iter()
        .enumerate()
        .find(|(_, f)| !cluster.contains(f))
    {
        return Err(invalid(
            format!("spec.ipFamilies[{i}]"),
            family.as_str(),
            "not configured on this cluster",
        ));
    }
    if families.is_empty() {
        families.push(primary);
    }
    if policy != SINGLE && families.len() == 1 && cluster.len() == 2 {
        families.push(families[0].other());
    }
    finish(spec, families, ips);
    Ok(())
}

/// `clusterIP` never changes once set.
fn check_primary_unchanged(spec: &ServiceSpec, old: &ServiceSpec) -> Validation {
    let (new_first, old_first) = (text(&spec.cluster_ip), text(&old.cluster_ip));
    if !old_first.is_empty() && new_first != old_first {
        return Err(FieldError::new(
            "spec.clusterIP",
            format!("field is immutable: {old_first:?} cannot change to {new_first:?}"),
        ));
    }
    Ok(())
}

/// The upgrade/downgrade rules of `ValidateServiceUpdate` (headless Services may change
/// families freely).
fn check_update(spec: &ServiceSpec, old: &ServiceSpec) -> Validation {
    let new_ips = non_empty(&spec.cluster_ips);
    let old_ips = non_empty(&old.cluster_ips);
    let (new_headless, old_headless) = (is_headless(spec), is_headless(old));
    if !(new_headless && old_headless) {
        for (i, (new, old)) in new_ips.iter().zip(old_ips).enumerate() {
            if new != old {
                return Err(invalid(
                    format!("spec.clusterIPs[{i}]"),
                    new_ips,
                    "may not change once set",
                ));
            }
        }
    }
    if new_headless || old_headless {
        return Ok(());
    }
    let new_families = non_empty(&spec.ip_families);
    let old_families = non_empty(&old.ip_families);
    if let (Some(new), Some(old)) = (new_families.first(), old_families.first())
        && new != old
    {
        return Err(invalid(
            "spec.ipFamilies[0]",
            new_families,
            "may not change once set",
        ));
    }
    if new_families.len() == old_families.len() && new_families != old_families {
        return Err(invalid(
            "spec.ipFamilies[1]",
            new_families,
            "may not change once set",
        ));
    }
    Ok(())
}

/// Fills `clusterIPs` to one per family: stored ones kept, requested ones checked, the rest
/// allocated from the ranges of their family.
fn allocate(spec: &mut ServiceSpec, old: Option<&ServiceSpec>, ctx: &Allocating<'_>) -> Validation {
    if is_headless(spec) {
        spec.cluster_ip = Some(NONE.to_owned());
        spec.cluster_ips = Some(vec![NONE.to_owned()]);
        return Ok(());
    }
    let families: Vec<IpFamily> = non_empty(&spec.ip_families)
        .iter()
        .filter_map(|f| IpFamily::parse(f))
        .collect();
    let mut ips = non_empty(&spec.cluster_ips).to_vec();
    let old_ips = old.map(|o| non_empty(&o.cluster_ips)).unwrap_or_default();
    let mut chosen: Vec<IpAddr> = Vec::new();
    for (i, family) in families.iter().enumerate() {
        let field = if i == 0 {
            "spec.clusterIP".to_owned()
        } else {
            format!("spec.clusterIPs[{i}]")
        };
        let ranges: Vec<Cidr> = ctx
            .service_cidrs
            .iter()
            .filter(|c| IpFamily::of_cidr(c) == *family)
            .copied()
            .collect();
        let ip = match ips.get(i).filter(|ip| !ip.is_empty()) {
            Some(kept) if old_ips.contains(kept) => kept.clone(),
            Some(requested) => check_requested(&field, requested, &ranges, &chosen, ctx)?,
            None => {
                let dns = ctx.settings.cluster_dns_ip;
                let taken = |ip: IpAddr| {
                    chosen.contains(&ip) || ctx.holdings.cluster_ip_holder(ip, ctx.key).is_some()
                };
                ranges
                    .iter()
                    .find_map(|cidr| alloc::pick_cluster_ip(cidr, dns, taken))
                    .ok_or_else(|| {
                        FieldError::new(
                            &field,
                            format!(
                                "no free IP left in the {family} service CIDRs {}",
                                list(&ranges)
                            ),
                        )
                    })?
                    .to_string()
            }
        };
        if let Ok(addr) = ip.parse() {
            chosen.push(addr);
        }
        if i < ips.len() {
            ips[i] = ip;
        } else {
            ips.push(ip);
        }
    }
    spec.cluster_ip = ips.first().cloned();
    spec.cluster_ips = Some(ips);
    Ok(())
}

fn list(cidrs: &[Cidr]) -> String {
    let names: Vec<String> = cidrs.iter().map(ToString::to_string).collect();
    names.join(", ")
}

fn check_requested(
    field: &str,
    text: &str,
    ranges: &[Cidr],
    chosen: &[IpAddr],
    ctx: &Allocating<'_>,
) -> Result<String, FieldError> {
    let ip: IpAddr = text.parse().map_err(|_| {
        FieldError::new(
            field,
            format!("{text:?} must be a valid IP address or \"None\""),
        )
    })?;
    if !ranges.iter().any(|cidr| alloc::usable_cluster_ip(cidr, ip)) {
        return Err(FieldError::new(
            field,
            format!(
                "{ip} is not in the valid range: the {} service CIDRs are {} (network and broadcast addresses excluded)",
                IpFamily::of(ip),
                list(ranges)
            ),
        ));
    }
    if let Some(holder) = ctx.holdings.cluster_ip_holder(ip, ctx.key) {
        return Err(FieldError::new(
            field,
            format!(
                "{ip} is already allocated to Service {}",
                holder.qualified_name()
            ),
        ));
    }
    if chosen.contains(&ip) {
        return Err(FieldError::new(field, format!("{ip} is used twice")));
    }
    Ok(ip.to_string())
}
