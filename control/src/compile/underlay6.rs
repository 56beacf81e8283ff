//! A peer's IPv6 underlay address, as a Node publishes it flannel-style: the
//! `flannel.alpha.coreos.com/public-ipv6` annotation, else `public-ip` when that is IPv6 (an
//! IPv6-only node). With this node's `nodeIP6` it carries VXLAN over IPv6 to that peer
//! (`dataplane::stages::vxlan6`: each pod family over its own underlay family where both ends
//! have one, else over the other).
//!
//! Invariant: an unparsable or non-IPv6 `public-ipv6` is reported, never guessed at: the peer
//! is then reached over its IPv4 underlay only.

use std::net::{IpAddr, Ipv6Addr};

use k8s_openapi::api::core::v1::Node;

use crate::model::node::{PUBLIC_IPV6, annotation};

/// The peer's IPv6 underlay address (`public_ip` is its parsed `public-ip`).
pub(super) fn peer_ip6(node: &Node, public_ip: IpAddr) -> Result<Option<Ipv6Addr>, String> {
    if let Some(text) = annotation(node, PUBLIC_IPV6) {
        return match text.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) if !ip.is_unspecified() && !ip.is_multicast() => Ok(Some(ip)),
            _ => Err(format!(
                "{PUBLIC_IPV6} {text:?} is not a unicast IPv6 address; reached over IPv4 only"
            )),
        };
    }
    Ok(match public_ip {
        IpAddr::V6(ip) => Some(ip),
        IpAddr::V4(_) => None,
    })
}
