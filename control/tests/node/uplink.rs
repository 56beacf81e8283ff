//! Traffic that leaves the node through the uplink: a pod reaching an underlay host is
//! masqueraded to the node IP and the replies find their way back, for each uplink backend.

use crate::harness::{Backend, NODE_IP, Node, UNDERLAY_IP};
use crate::scripts::TX_CSUM_OFF;

fn egress_is_masqueraded(tag: &str, uplink: &str) {
    let mut node = Node::start_with_uplink(tag, Backend::Tap, uplink, 1, 1, "");
    node.underlay.exec(&["python3", "-c", TX_CSUM_OFF, "ul0"]);
    node.serve_in(usize::MAX, 7000);
    assert!(
        node.ping(0, UNDERLAY_IP),
        "ping via the {uplink} uplink\n{}",
        node.debug()
    );
    // The underlay host sees the node IP, not the pod IP.
    assert_eq!(
        node.udp(0, UNDERLAY_IP, 7000, "out"),
        format!("out from {NODE_IP}")
    );
    assert_eq!(
        node.tcp(0, UNDERLAY_IP, 7000, "tcp-out"),
        format!("tcp-out from {NODE_IP}")
    );
    let listing = String::from_utf8_lossy(&node.cli(&["conntrack", "list"]).stdout).into_owned();
    assert!(
        listing.lines().any(|l| l.starts_with("udp")
            && l.contains(&format!("dst={NODE_IP}"))
            && l.contains("[SNAT]")),
        "{listing}"
    );
}

#[test]
fn egress_through_an_af_packet_uplink_is_masqueraded() {
    egress_is_masqueraded("ea", "af-packet");
}

#[test]
fn egress_through_an_af_xdp_uplink_is_masqueraded() {
    egress_is_masqueraded("ex", "af-xdp");
}
