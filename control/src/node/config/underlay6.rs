//! `nodeIP6`: the node's IPv6 underlay address (VXLAN over IPv6, `dataplane::stages::vxlan6`).
//!
//! With it, IPv6 pods reach peers that publish an IPv6 underlay address
//! (`flannel.alpha.coreos.com/public-ipv6`) over IPv6, IPv4 pods keep the IPv4 underlay where
//! both ends have one (else they ride IPv6 too), and pods get the underlay MTU less 70 bytes
//! instead of 50. Without `nodeIP` and without an IPv4 InternalIP on the Node, the underlay is
//! IPv6 only. The address must be one a peer can send to: global or unique-local unicast.

use std::net::Ipv6Addr;

/// Checks `nodeIP6`: a unicast address a peer can reach (not link-local, multicast,
/// unspecified, loopback or IPv4-mapped).
pub fn check(ip: Option<Ipv6Addr>) -> Result<Option<Ipv6Addr>, String> {
    let Some(ip) = ip else {
        return Ok(None);
    };
    let why = if ip.is_unspecified() {
        "is unspecified"
    } else if ip.is_loopback() {
        "is loopback"
    } else if ip.is_multicast() {
        "is multicast"
    } else if ip.segments()[0] & 0xffc0 == 0xfe80 {
        "is link-local (a VXLAN peer cannot send to it off-link)"
    } else if ip.to_ipv4_mapped().is_some() {
        "is an IPv4-mapped address (give the IPv4 address as nodeIP)"
    } else {
        return Ok(Some(ip));
    };
    Err(format!("{ip} {why}; give the node's IPv6 underlay address"))
}

/// The MTU pods get: the underlay MTU less VXLAN's overhead (70 bytes with an IPv6 underlay
/// address, 50 without), or the whole of it when routed.
pub fn pod_mtu(
    underlay_mtu: u16,
    overlay: dataplane::tables::node::OverlayMode,
    node_ip6: Option<Ipv6Addr>,
) -> u16 {
    match overlay {
        dataplane::tables::node::OverlayMode::Routed => underlay_mtu,
        dataplane::tables::node::OverlayMode::Vxlan => {
            let overhead = if node_ip6.is_some() {
                dataplane::wire::vxlan::OVERHEAD_V6
            } else {
                dataplane::wire::vxlan::OVERHEAD_V4
            };
            underlay_mtu.saturating_sub(overhead as u16)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test literals")]
    use super::*;
    use dataplane::tables::node::OverlayMode;

    #[test]
    fn only_reachable_unicast_addresses_pass() {
        assert_eq!(check(None), Ok(None));
        let good: Ipv6Addr = "2001:db8:50::1".parse().unwrap();
        assert_eq!(check(Some(good)), Ok(Some(good)));
        let ula: Ipv6Addr = "fd00:50::1".parse().unwrap();
        assert_eq!(check(Some(ula)), Ok(Some(ula)));
        for (bad, says) in [
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("ff02::1", "multicast"),
            ("fe80::1", "link-local"),
            ("::ffff:192.168.0.1", "IPv4-mapped"),
        ] {
            let err = check(Some(bad.parse().unwrap())).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn node_yaml_takes_node_ip6_and_names_it_in_errors() {
        let text = |ip: &str| {
            format!("nodeName: n1\nnodeIP6: {ip}\nports:\n  uplink:\n    interface: eth0\n")
        };
        let resolved = |text: String| {
            crate::node::config::parse(&text)
                .and_then(|file| crate::node::config::resolve(file, &Default::default()))
        };
        let ok = resolved(text("2001:db8::7")).unwrap();
        assert_eq!(ok.local.node_ip6, Some("2001:db8::7".parse().unwrap()));
        let err = resolved(text("fe80::7")).unwrap_err().to_string();
        assert!(
            err.starts_with("nodeIP6") && err.contains("link-local"),
            "{err}"
        );
    }

    #[test]
    fn an_ipv6_underlay_costs_pods_70_bytes() {
        let ip6 = Some("2001:db8::1".parse().unwrap());
        assert_eq!(pod_mtu(1500, OverlayMode::Vxlan, None), 1450);
        assert_eq!(pod_mtu(1500, OverlayMode::Vxlan, ip6), 1430);
        assert_eq!(pod_mtu(1500, OverlayMode::Routed, ip6), 1500);
    }
}
