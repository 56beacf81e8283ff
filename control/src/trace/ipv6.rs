//! `trace` of an IPv6 packet: the probe (TCP SYN, UDP datagram or ICMPv6 echo request in an
//! IPv6 Ethernet frame with correct checksums) run through the real pipeline of the node it
//! enters, and no further.
//!
//! Whatever that pipeline does is reported as it did it: a build whose dataplane has no IPv6
//! path drops the probe (`unsupported_protocol`), and the report says so; a pipeline that
//! forwards it gets its decisions reported, and the note says that IPv6 traces stop after the
//! first node (the multi-node walk follows IPv4 underlay addresses only).
//!
//! Invariant: nothing here invents a result; every verdict comes from `Pipeline::process`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};

use dataplane::flow::L4Proto;
use dataplane::packet::Packet;
use dataplane::wire::{MacAddr, checksum, ethernet};

use super::outcome::{self, End, Step};
use super::{DEFAULT_SOURCE_PORT, HostPorts, NodeIndex, Nodes, TraceReport};
use crate::compile::{HOST_PORT, NodeLocal, UPLINK_PORT};
use crate::model::pod;
use crate::state::ClusterState;

/// Where an IPv6 probe comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source6 {
    /// A pod, by namespace and name (its IPv6 address is the source).
    Pod { namespace: String, name: String },
    /// An IPv6 address: a pod's, a node's, or an external client's.
    Address { ip: Ipv6Addr, port: Option<u16> },
}

/// An IPv6 trace request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceRequest6 {
    pub source: Source6,
    pub dst: Ipv6Addr,
    pub dport: u16,
    pub proto: L4Proto,
    pub node: Option<String>,
}

const PAYLOAD: &[u8] = b"ferroplane trace";
const IPV6_HEADER_LEN: usize = 40;
const NEXT_HEADER_ICMPV6: u8 = 58;

/// The IPv6 address of `pod`, if it has one.
fn pod_ipv6(pod: &k8s_openapi::api::core::v1::Pod) -> Option<Ipv6Addr> {
    pod::pod_ips(pod).into_iter().find_map(|ip| match ip {
        IpAddr::V6(v6) => Some(v6),
        IpAddr::V4(_) => None,
    })
}

/// How the probe enters: the node, whether from a pod (with the pod's IPv4 address, which
/// names its port), the host or the uplink, and the source address.
enum Entry6 {
    Pod(std::net::Ipv4Addr),
    Host,
    Uplink,
}

fn entry(
    state: &ClusterState,
    index: &NodeIndex,
    request: &TraceRequest6,
) -> Result<(String, Entry6, Ipv6Addr, u16), String> {
    let from_pod = |p: &k8s_openapi::api::core::v1::Pod, port: u16| {
        let name = p.metadata.name.as_deref().unwrap_or_default();
        let node = pod::node_name(p).ok_or_else(|| format!("pod {name} is not bound to a node"))?;
        let v6 = pod_ipv6(p).ok_or_else(|| format!("pod {name} has no IPv6 address"))?;
        let v4 = pod::pod_ips(p).into_iter().find_map(|ip| match ip {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        });
        let v4 = v4.ok_or_else(|| {
            format!(
                "pod {name} has no IPv4 address, which names its port on the node in this build"
            )
        })?;
        Ok::<_, String>((node.to_owned(), Entry6::Pod(v4), v6, port))
    };
    match &request.source {
        Source6::Pod { namespace, name } => {
            let p = state
                .pod(namespace, name)
                .ok_or_else(|| format!("pod {namespace}/{name} not found"))?;
            from_pod(p, DEFAULT_SOURCE_PORT)
        }
        Source6::Address { ip, port } => {
            let port = port.unwrap_or(DEFAULT_SOURCE_PORT);
            if let Some(p) = state.pods().find(|p| pod_ipv6(p) == Some(*ip)) {
                return from_pod(p, port);
            }
            let owner = state
                .nodes()
                .find(|n| crate::model::node::addresses(n).any(|a| a == IpAddr::V6(*ip)));
            let owner = owner.and_then(|n| n.metadata.name.clone());
            match (request.node.as_ref(), owner) {
                (None, Some(owner)) => Ok((owner, Entry6::Host, *ip, port)),
                (Some(node), Some(owner)) if *node == owner => Ok((owner, Entry6::Host, *ip, port)),
                (Some(node), _) => {
                    if !index.primary.contains_key(node) && state.node(node).is_none() {
                        return Err(format!("--node {node}: no such Node"));
                    }
                    Ok((node.clone(), Entry6::Uplink, *ip, port))
                }
                (None, None) => Err(format!(
                    "{ip} is neither a pod nor a node: give --node, the node where the packet enters"
                )),
            }
        }
    }
}

/// The probe frame: Ethernet, IPv6 (hop limit 64), then the L4 header with its checksum.
pub fn first_packet6(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    proto: L4Proto,
    (src, sport): (Ipv6Addr, u16),
    (dst, dport): (Ipv6Addr, u16),
) -> Result<Vec<u8>, String> {
    let (next_header, l4_len) = match proto {
        L4Proto::Tcp => (6u8, 20usize),
        L4Proto::Udp => (17, 8 + PAYLOAD.len()),
        L4Proto::Icmp => (NEXT_HEADER_ICMPV6, 8 + PAYLOAD.len()),
        L4Proto::Sctp => return Err("trace does not build SCTP probes over IPv6".to_owned()),
    };
    let l3 = ethernet::HEADER_LEN;
    let l4 = l3 + IPV6_HEADER_LEN;
    let mut frame = vec![0u8; l4 + l4_len];
    frame[0..6].copy_from_slice(&dst_mac.0);
    frame[6..12].copy_from_slice(&src_mac.0);
    frame[12..14].copy_from_slice(&ethernet::ETHERTYPE_IPV6.to_be_bytes());
    let ip = &mut frame[l3..l4];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
    ip[6] = next_header;
    ip[7] = 64;
    ip[8..24].copy_from_slice(&src.octets());
    ip[24..40].copy_from_slice(&dst.octets());
    let segment = &mut frame[l4..];
    let checksum_at = match proto {
        L4Proto::Tcp => {
            segment[0..2].copy_from_slice(&sport.to_be_bytes());
            segment[2..4].copy_from_slice(&dport.to_be_bytes());
            segment[4..8].copy_from_slice(&1u32.to_be_bytes());
            segment[12] = 5 << 4;
            segment[13] = 0x02; // SYN
            segment[14..16].copy_from_slice(&64240u16.to_be_bytes());
            16
        }
        L4Proto::Udp => {
            segment[0..2].copy_from_slice(&sport.to_be_bytes());
            segment[2..4].copy_from_slice(&dport.to_be_bytes());
            segment[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            segment[8..].copy_from_slice(PAYLOAD);
            6
        }
        _ => {
            segment[0] = 128; // echo request
            segment[4..6].copy_from_slice(&sport.to_be_bytes());
            segment[6..8].copy_from_slice(&1u16.to_be_bytes());
            segment[8..].copy_from_slice(PAYLOAD);
            2
        }
    };
    let pseudo = checksum::pseudo_header_v6(src, dst, next_header, l4_len as u32);
    let mut sum = checksum::finish(checksum::combine(pseudo, checksum::sum(segment)));
    if proto == L4Proto::Udp && sum == 0 {
        sum = 0xffff;
    }
    segment[checksum_at..checksum_at + 2].copy_from_slice(&sum.to_be_bytes());
    Ok(frame)
}

/// Runs the IPv6 probe through the pipeline of the node it enters (see the module doc).
pub fn trace_ipv6(
    state: &ClusterState,
    request: &TraceRequest6,
    locals: &BTreeMap<String, NodeLocal>,
    host_ports: &HostPorts,
) -> Result<TraceReport, String> {
    let index = NodeIndex::new(state);
    let (node, entry, src, sport) = entry(state, &index, request)?;
    let mut nodes = Nodes {
        state,
        locals,
        compiled: BTreeMap::new(),
        host_ports,
    };
    let sim = nodes.get(&node)?;
    let config = &sim.snapshot.node;
    let (in_port, src_mac, dst_mac) = match entry {
        Entry6::Pod(v4) => {
            let local = sim
                .snapshot
                .ports
                .pod(v4)
                .ok_or_else(|| format!("pod {v4} has no port on {node}"))?;
            (local.port, local.mac, config.gateway_mac)
        }
        Entry6::Host => (HOST_PORT, config.host_mac, config.gateway_mac),
        Entry6::Uplink => (UPLINK_PORT, config.uplink_next_hop_mac, config.uplink_mac),
    };
    let frame = first_packet6(
        src_mac,
        dst_mac,
        request.proto,
        (src, sport),
        (request.dst, request.dport),
    )?;
    let mut packet = Packet::from_frame(&frame).ok_or("the probe does not fit a packet buffer")?;
    packet.meta.in_port = in_port;
    let verdict = sim.pipeline.process(&sim.snapshot, &mut packet);
    let events = sim.pipeline.take_trace();
    let mut report = TraceReport::default();
    report.nodes.push(node.clone());
    report.record(&sim.snapshot, &node, &events);
    let step = outcome::conclude(&sim.snapshot, &events, verdict, packet.data());
    let (end, note) = match step {
        Step::Done(end) if end.reason() == Some("unsupported_protocol") => (
            end,
            format!(
                "IPv6 packet {src} -> {}: node {node}'s pipeline in this build has no IPv6 path and drops it; nothing beyond that is traced",
                request.dst
            ),
        ),
        Step::Done(end) => (
            end,
            format!("IPv6: traced through the first node ({node}) only"),
        ),
        Step::Uplink(next) => (
            End::egress(),
            format!(
                "IPv6: node {node} sends the packet out of its uplink towards {next}; trace follows IPv6 packets through their first node only"
            ),
        ),
    };
    report.finish(end);
    report.note = Some(note);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use dataplane::wire::Ipv6Packet;

    use super::*;

    /// Every probe is a well-formed IPv6 packet whose L4 checksum verifies.
    #[test]
    fn probes_are_well_formed_with_valid_checksums() {
        let src: Ipv6Addr = "fd00:10:244::2".parse().unwrap();
        let dst: Ipv6Addr = "fd00:10:96::101".parse().unwrap();
        for proto in [L4Proto::Tcp, L4Proto::Udp, L4Proto::Icmp] {
            let frame = first_packet6(
                MacAddr([2, 0, 0, 0, 0, 1]),
                MacAddr([2, 0, 0, 0, 0, 2]),
                proto,
                (src, 40000),
                (dst, 80),
            )
            .unwrap();
            let ip = Ipv6Packet::new_checked(&frame[ethernet::HEADER_LEN..]).unwrap();
            assert_eq!((ip.src_addr(), ip.dst_addr()), (src, dst));
            let l4 = &frame[ethernet::HEADER_LEN + IPV6_HEADER_LEN..];
            let next = frame[ethernet::HEADER_LEN + 6];
            let pseudo = checksum::pseudo_header_v6(src, dst, next, l4.len() as u32);
            let total = checksum::combine(pseudo, checksum::sum(l4));
            assert_eq!(checksum::fold(total), 0xffff, "{proto:?}");
        }
        let sctp = first_packet6(
            MacAddr([2, 0, 0, 0, 0, 1]),
            MacAddr([2, 0, 0, 0, 0, 2]),
            L4Proto::Sctp,
            (src, 1),
            (dst, 2),
        );
        assert!(sctp.is_err());
    }
}
