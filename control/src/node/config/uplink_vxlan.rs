//! `ports.uplink.vxlan`: how VXLAN leaves and enters the node on an AF_PACKET uplink.

use serde::Deserialize;

/// `raw`: VXLAN is framed by the dataplane and goes through the AF_PACKET socket, one frame
/// per ~1,450-byte segment. `udp-socket`: a kernel UDP socket bound to the node IP and the
/// VXLAN port on the uplink carries it, a 64 KB super-packet as one `UDP_SEGMENT` send and
/// received with `UDP_GRO` (`dataplane::io::udp_tunnel`); the node's kernel must keep the
/// uplink's other traffic out of its own stack (see the dataplane README).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum UplinkVxlan {
    #[default]
    #[serde(rename = "raw")]
    Raw,
    #[serde(rename = "udp-socket", alias = "udp_socket")]
    UdpSocket,
}

/// What `udp-socket` needs from the rest of the configuration: the AF_PACKET uplink, the
/// VXLAN overlay (routed mode and pod -> internet stay on the raw socket: they are not VXLAN)
/// and an explicit node IP to bind to (the socket opens before the Node is read).
pub fn check(
    vxlan: UplinkVxlan,
    backend: super::UplinkBackend,
    node_ip: Option<std::net::Ipv4Addr>,
    overlay: dataplane::tables::node::OverlayMode,
) -> Result<(), String> {
    if vxlan == UplinkVxlan::Raw {
        return Ok(());
    }
    if backend != super::UplinkBackend::AfPacket {
        return Err("udp-socket needs ports.uplink.backend af-packet".to_owned());
    }
    if overlay != dataplane::tables::node::OverlayMode::Vxlan {
        return Err("udp-socket needs overlay vxlan (routed mode has no VXLAN)".to_owned());
    }
    if node_ip.is_none() {
        return Err(
            "udp-socket needs nodeIP (the tunnel socket binds to it; an IPv6-only underlay, \
             nodeIP6 alone, uses raw)"
                .to_owned(),
        );
    }
    Ok(())
}
