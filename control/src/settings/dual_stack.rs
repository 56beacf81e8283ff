//! The per-family view of the cluster settings: which families the cluster has (primary
//! first), the pod range, node mask size, Service range and LoadBalancer pool of each, and the
//! rules that keep them consistent.
//!
//! Invariants after [`ClusterSettings::validate_families`]: the pod families and the Service
//! families are the same list (primary first); each family has at most one pod range, one
//! Service range and one pool; every pool and externalIP range is of a cluster family.

use crate::net::{Cidr, IpFamily};

use super::ClusterSettings;

/// Upstream's default `--node-cidr-mask-size-ipv6`.
pub const DEFAULT_NODE_MASK_IPV6: u8 = 64;

/// Upstream's node IPAM refuses node prefixes more than 16 bits longer than the cluster's
/// (more than 65536 node ranges per cluster range).
const MAX_NODE_MASK_DIFF_IPV6: u8 = 16;

/// Upstream's IPv6 Service range limit: at most 2^20 addresses (`/108` or longer).
const MIN_SERVICE_PREFIX_IPV6: u8 = 108;

impl ClusterSettings {
    /// The pod ranges, primary first.
    pub fn cluster_cidrs(&self) -> Vec<Cidr> {
        std::iter::once(self.cluster_cidr)
            .chain(self.secondary_cluster_cidr)
            .collect()
    }

    /// The default Service ranges, primary first.
    pub fn service_cidrs(&self) -> Vec<Cidr> {
        std::iter::once(self.service_cidr)
            .chain(self.secondary_service_cidr)
            .collect()
    }

    /// The LoadBalancer pools, primary first.
    pub fn load_balancer_pools(&self) -> Vec<Cidr> {
        std::iter::once(self.load_balancer_pool)
            .chain(self.secondary_load_balancer_pool)
            .collect()
    }

    /// The cluster's families, primary first (those of the Service ranges).
    pub fn families(&self) -> Vec<IpFamily> {
        self.service_cidrs().iter().map(IpFamily::of_cidr).collect()
    }

    /// The family of `serviceCIDR`: what a Service without `ipFamilies` gets.
    pub fn primary_family(&self) -> IpFamily {
        IpFamily::of_cidr(&self.service_cidr)
    }

    pub fn is_dual_stack(&self) -> bool {
        self.families().len() == 2
    }

    /// The pod range of `family`, if the cluster has one.
    pub fn cluster_cidr_of(&self, family: IpFamily) -> Option<Cidr> {
        of_family(&self.cluster_cidrs(), family)
    }

    /// The default Service range of `family`, if the cluster has one.
    pub fn service_cidr_of(&self, family: IpFamily) -> Option<Cidr> {
        of_family(&self.service_cidrs(), family)
    }

    /// The LoadBalancer pool of `family`, if there is one.
    pub fn load_balancer_pool_of(&self, family: IpFamily) -> Option<Cidr> {
        of_family(&self.load_balancer_pools(), family)
    }

    /// The prefix length of a Node's podCIDR of `family`.
    pub fn node_cidr_mask_size_of(&self, family: IpFamily) -> u8 {
        match family {
            IpFamily::IPv4 => self.node_cidr_mask_size,
            IpFamily::IPv6 => self
                .node_cidr_mask_size_ipv6
                .unwrap_or(DEFAULT_NODE_MASK_IPV6),
        }
    }

    /// The per-family rules of the module doc; the error names the setting.
    pub(super) fn validate_families(&self) -> Result<(), String> {
        pair_of_families(
            "clusterCIDR",
            self.cluster_cidr,
            "secondaryClusterCIDR",
            self.secondary_cluster_cidr,
        )?;
        pair_of_families(
            "serviceCIDR",
            self.service_cidr,
            "secondaryServiceCIDR",
            self.secondary_service_cidr,
        )?;
        pair_of_families(
            "loadBalancerPool",
            self.load_balancer_pool,
            "secondaryLoadBalancerPool",
            self.secondary_load_balancer_pool,
        )?;
        let pod_families: Vec<IpFamily> =
            self.cluster_cidrs().iter().map(IpFamily::of_cidr).collect();
        let families = self.families();
        if pod_families != families {
            return Err(format!(
                "serviceCIDR/secondaryServiceCIDR: the Service ranges ({}) are {} but the cluster (pod) ranges ({}) are {}: both must list the same families, primary first",
                list(&self.service_cidrs()),
                names(&families),
                list(&self.cluster_cidrs()),
                names(&pod_families),
            ));
        }
        self.node_masks()?;
        for (name, cidr) in [
            ("serviceCIDR", Some(self.service_cidr)),
            ("secondaryServiceCIDR", self.secondary_service_cidr),
        ] {
            let Some(cidr) = cidr else { continue };
            service_range_size(name, cidr)?;
            if let Some(pods) = self.cluster_cidrs().iter().find(|c| c.overlaps(&cidr)) {
                return Err(format!("{name}: {cidr} overlaps the cluster CIDR {pods}"));
            }
        }
        for (name, pool) in [
            ("loadBalancerPool", Some(self.load_balancer_pool)),
            (
                "secondaryLoadBalancerPool",
                self.secondary_load_balancer_pool,
            ),
        ] {
            let Some(pool) = pool else { continue };
            let family = IpFamily::of_cidr(&pool);
            if !families.contains(&family) {
                return Err(format!(
                    "{name}: {pool} is {family} but this cluster has no {family} ranges (it is {}); set a pool of a cluster family",
                    names(&families)
                ));
            }
        }
        for cidr in &self.external_ip_cidrs {
            let family = IpFamily::of_cidr(cidr);
            if !families.contains(&family) {
                return Err(format!(
                    "externalIPCIDRs: {cidr} is {family} but this cluster has no {family} ranges (it is {})",
                    names(&families)
                ));
            }
        }
        Ok(())
    }

    fn node_masks(&self) -> Result<(), String> {
        match self.cluster_cidr_of(IpFamily::IPv4) {
            Some(cluster) => {
                let cluster_len = cluster.prefix_len();
                if self.node_cidr_mask_size < cluster_len || self.node_cidr_mask_size > 30 {
                    return Err(format!(
                        "nodeCIDRMaskSize: {} must be between the cluster CIDR's prefix length {cluster_len} and 30",
                        self.node_cidr_mask_size
                    ));
                }
            }
            None if self.node_cidr_mask_size != ClusterSettings::default().node_cidr_mask_size => {
                return Err(format!(
                    "nodeCIDRMaskSize: {} applies to the IPv4 pod range and this cluster has none; use nodeCIDRMaskSizeIPv6",
                    self.node_cidr_mask_size
                ));
            }
            None => {}
        }
        match (
            self.cluster_cidr_of(IpFamily::IPv6),
            self.node_cidr_mask_size_ipv6,
        ) {
            (Some(cluster), _) => {
                let mask = self.node_cidr_mask_size_of(IpFamily::IPv6);
                let cluster_len = cluster.prefix_len();
                if mask < cluster_len || mask > 126 {
                    return Err(format!(
                        "nodeCIDRMaskSizeIPv6: {mask} must be between the IPv6 cluster CIDR's prefix length {cluster_len} and 126"
                    ));
                }
                if mask - cluster_len > MAX_NODE_MASK_DIFF_IPV6 {
                    return Err(format!(
                        "nodeCIDRMaskSizeIPv6: {mask} is more than {MAX_NODE_MASK_DIFF_IPV6} bits longer than the IPv6 cluster CIDR {cluster} (at most 65536 node ranges, as upstream's node IPAM)"
                    ));
                }
            }
            (None, Some(mask)) => {
                return Err(format!(
                    "nodeCIDRMaskSizeIPv6: {mask} is set but this cluster has no IPv6 pod range"
                ));
            }
            (None, None) => {}
        }
        Ok(())
    }
}

fn of_family(cidrs: &[Cidr], family: IpFamily) -> Option<Cidr> {
    cidrs
        .iter()
        .find(|c| IpFamily::of_cidr(c) == family)
        .copied()
}

fn list(cidrs: &[Cidr]) -> String {
    let texts: Vec<String> = cidrs.iter().map(ToString::to_string).collect();
    texts.join(",")
}

fn names(families: &[IpFamily]) -> String {
    let texts: Vec<&str> = families.iter().map(|f| f.as_str()).collect();
    texts.join(",")
}

fn pair_of_families(
    primary_name: &str,
    primary: Cidr,
    secondary_name: &str,
    secondary: Option<Cidr>,
) -> Result<(), String> {
    match secondary {
        Some(second) if second.is_ipv4() == primary.is_ipv4() => Err(format!(
            "{secondary_name}: {second} is {}, the same family as {primary_name} {primary}; a dual-stack cluster has one range of each family",
            IpFamily::of_cidr(&second)
        )),
        _ => Ok(()),
    }
}

fn service_range_size(name: &str, cidr: Cidr) -> Result<(), String> {
    if cidr.is_ipv4() {
        if cidr.prefix_len() > 28 {
            return Err(format!("{name}: {cidr} is too small (at most /28)"));
        }
        return Ok(());
    }
    if cidr.prefix_len() < MIN_SERVICE_PREFIX_IPV6 {
        return Err(format!(
            "{name}: {cidr} is too large; for 128-bit addresses, the mask must be >= {MIN_SERVICE_PREFIX_IPV6}"
        ));
    }
    if cidr.prefix_len() > 124 {
        return Err(format!("{name}: {cidr} is too small (at most /124)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
