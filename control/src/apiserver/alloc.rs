//! Allocators for ClusterIPs, NodePorts, LoadBalancer IPs, pod IPs and node podCIDRs.
//!
//! There is no allocator bitmap on disk: what is in use is derived from the stored objects
//! (`super::holdings`), under the transaction's exclusive lock, so deleting an object releases
//! what it held and two processes can never hand out the same value. The pickers here only
//! search: each takes a `taken` predicate. Every choice is deterministic: the lowest free value,
//! searching the dynamic band first where Kubernetes reserves a static band for user-requested
//! values (KEP-3070 for ClusterIPs, KEP-3668 for NodePorts).

use std::net::IpAddr;

use crate::net::{Cidr, PortRange};

/// Size of the band reserved for requested values: `clamp(size / divisor, low, high)`, never
/// more than the whole range.
fn static_band(size: u128, divisor: u128, low: u128, high: u128) -> u128 {
    (size / divisor).clamp(low, high).min(size)
}

/// Whether `ip` may be a ClusterIP of `cidr`: inside it and, for IPv4, neither the network nor
/// the broadcast address.
pub fn usable_cluster_ip(cidr: &Cidr, ip: IpAddr) -> bool {
    match cidr.offset_of(ip) {
        Some(offset) => !cidr.is_ipv4() || (offset != 0 && offset != cidr.size() - 1),
        None => false,
    }
}

/// A free ClusterIP. The static band (the first `clamp(size/16, 16, 256)` addresses) is used
/// only when the rest is full; the cluster DNS IP is never handed out dynamically.
pub fn pick_cluster_ip(
    cidr: &Cidr,
    dns_ip: IpAddr,
    taken: impl Fn(IpAddr) -> bool,
) -> Option<IpAddr> {
    let last = cidr.size().checked_sub(2)?;
    let band = static_band(cidr.size(), 16, 16, 256).min(last);
    let dns = cidr.offset_of(dns_ip);
    let offset = (band + 1..=last)
        .chain(1..=band)
        .find(|&offset| Some(offset) != dns && cidr.nth(offset).is_some_and(|ip| !taken(ip)))?;
    cidr.nth(offset)
}

/// A free NodePort. The static band (the first `clamp(len/32, 16, 128)` ports) is used only
/// when the rest is full.
pub fn pick_node_port(range: PortRange, taken: impl Fn(i32) -> bool) -> Option<i32> {
    let len = u128::from(range.port_count());
    let band = static_band(len, 32, 16, 128);
    let first = i32::from(range.first());
    (band..len)
        .chain(0..band)
        .filter_map(|offset| i32::try_from(offset).ok())
        .map(|offset| first + offset)
        .find(|port| !taken(*port))
}

/// Host addresses of a pool: all of it for /31 and /32, else without network and broadcast.
fn host_offsets(cidr: &Cidr) -> std::ops::RangeInclusive<u128> {
    let size = cidr.size();
    if size <= 2 {
        0..=size - 1
    } else {
        1..=size - 2
    }
}

/// Whether `ip` is an assignable address of the LoadBalancer pool.
pub fn usable_pool_ip(pool: &Cidr, ip: IpAddr) -> bool {
    pool.offset_of(ip)
        .is_some_and(|offset| host_offsets(pool).contains(&offset))
}

/// The lowest free address of the LoadBalancer pool.
pub fn pick_load_balancer_ip(pool: &Cidr, taken: impl Fn(IpAddr) -> bool) -> Option<IpAddr> {
    host_offsets(pool)
        .filter_map(|offset| pool.nth(offset))
        .find(|ip| !taken(*ip))
}

/// The next free pod IP of a node's podCIDR: from `.2` up (`.1` is the node's bridge gateway).
pub fn pick_pod_ip(pod_cidr: &Cidr, taken: impl Fn(IpAddr) -> bool) -> Option<IpAddr> {
    let last = pod_cidr.size().checked_sub(2)?;
    (2..=last)
        .filter_map(|offset| pod_cidr.nth(offset))
        .find(|ip| !taken(*ip))
}

/// The lowest sub-prefix of the cluster CIDR that overlaps no node's podCIDR.
pub fn pick_pod_cidr(cluster: &Cidr, prefix_len: u8, held: &[Cidr]) -> Option<Cidr> {
    (0..cluster.subnet_count(prefix_len))
        .filter_map(|index| cluster.subnet(prefix_len, index))
        .find(|candidate| !held.iter().any(|h| h.overlaps(candidate)))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn cidr(text: &str) -> Cidr {
        Cidr::parse_canonical(text).unwrap()
    }

    #[test]
    fn cluster_ips_come_from_above_the_static_band() {
        let service = cidr("10.96.0.0/12");
        let dns: IpAddr = "10.96.0.10".parse().unwrap();
        let mut taken = BTreeSet::new();
        // /12 has 2^20 addresses: band = min(max(16, 65536), 256) = 256, so 10.96.1.1 is first.
        let first = pick_cluster_ip(&service, dns, |ip| taken.contains(&ip)).unwrap();
        assert_eq!(first, "10.96.1.1".parse::<IpAddr>().unwrap());
        taken.insert(first);
        assert_eq!(
            pick_cluster_ip(&service, dns, |ip| taken.contains(&ip)).unwrap(),
            "10.96.1.2".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn small_service_range_falls_back_to_band_but_never_gives_dns_ip() {
        let service = cidr("10.0.0.0/28"); // 16 addresses, 14 usable, band covers them all
        let dns: IpAddr = "10.0.0.1".parse().unwrap();
        let mut taken = BTreeSet::new();
        let mut got = Vec::new();
        while let Some(ip) = pick_cluster_ip(&service, dns, |ip| taken.contains(&ip)) {
            taken.insert(ip);
            got.push(ip);
        }
        assert_eq!(got.len(), 13, "14 usable minus the DNS IP");
        assert!(!got.contains(&dns));
        assert!(!got.contains(&"10.0.0.0".parse().unwrap()));
        assert!(!got.contains(&"10.0.0.15".parse().unwrap()));
    }

    #[test]
    fn node_ports_start_above_the_static_band() {
        let range = PortRange::new(30000, 32767).unwrap();
        // 2768 ports: band = min(max(16, 86), 128) = 86.
        let mut taken = BTreeSet::new();
        assert_eq!(pick_node_port(range, |p| taken.contains(&p)), Some(30086));
        taken.extend(30086..=32767);
        assert_eq!(pick_node_port(range, |p| taken.contains(&p)), Some(30000));
        taken.extend(30000..30086);
        assert_eq!(pick_node_port(range, |p| taken.contains(&p)), None);
    }

    #[test]
    fn pool_skips_network_and_broadcast() {
        let pool = cidr("198.51.100.0/30");
        let mut taken = BTreeSet::new();
        let a = pick_load_balancer_ip(&pool, |ip| taken.contains(&ip)).unwrap();
        assert_eq!(a, "198.51.100.1".parse::<IpAddr>().unwrap());
        taken.insert(a);
        assert_eq!(
            pick_load_balancer_ip(&pool, |ip| taken.contains(&ip)),
            Some("198.51.100.2".parse().unwrap())
        );
        taken.insert("198.51.100.2".parse().unwrap());
        assert_eq!(pick_load_balancer_ip(&pool, |ip| taken.contains(&ip)), None);
        assert!(!usable_pool_ip(&pool, "198.51.100.3".parse().unwrap()));
    }

    #[test]
    fn pod_cidrs_avoid_held_prefixes() {
        let cluster = cidr("10.244.0.0/16");
        let held = [cidr("10.244.0.0/24"), cidr("10.244.2.0/24")];
        assert_eq!(
            pick_pod_cidr(&cluster, 24, &held),
            Some(cidr("10.244.1.0/24"))
        );
        let wide = [cidr("10.244.0.0/23")];
        assert_eq!(
            pick_pod_cidr(&cluster, 24, &wide),
            Some(cidr("10.244.2.0/24"))
        );
    }
}
